"""The code-review example's verdict is honest: security findings apart from lint, test files
apart from library code, in the review and in the report (issue 19: on ``idlelib`` the "Fix
first" security list held ``F821 undefined name`` and deliberate code in ``idle_test/``).

The workflow runs end to end through the ``batten`` command on a package written here, with the
real analysers (ruff, bandit, radon) and the local reviewer.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from batten.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = ROOT / "examples" / "code_review"
WORKFLOW = EXAMPLE_DIR / "workflow.yaml"

PACKAGE = {
    # Library code: an undefined name (ruff F821, lint) and a shell command built from input
    # (bandit B602, security, high).
    "pkg/__init__.py": "",
    "pkg/runner.py": textwrap.dedent(
        """\
        import subprocess


        def run(cmd):
            return subprocess.call(cmd, shell=True)


        def broken():
            return undefined_helper()
        """
    ),
    # Test code doing the same on purpose: a finding bandit rates high, in a test file.
    "pkg/tests/test_runner.py": textwrap.dedent(
        """\
        import subprocess


        def test_shell():
            assert subprocess.call("true", shell=True) == 0
        """
    ),
}


@pytest.fixture
def reviewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Runs the example on PACKAGE with ``--yes``; returns report.json, report.md and the
    review step's output."""
    target = tmp_path / "src"
    for rel, text in PACKAGE.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("BATTEN_STORE", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name in ("review_tools", "reviewers", "review_report"):
        sys.modules.pop(name, None)  # the reviewers are chosen at import: the local ones here
    code = main(["run", str(WORKFLOW), "--input", f"target={target}", "--yes", "--json", "-q"])
    assert code == 0
    data = json.loads((work / "review-report" / "report.json").read_text())
    md = (work / "review-report" / "report.md").read_text()
    return {"json": data, "md": md, "review": data["review"]}


def _keys(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["path"], f["code"]) for f in findings]


def test_the_verdict_lists_only_library_security_findings_as_security(reviewed):
    review = reviewed["review"]
    assert review["kind"] == "security"  # one high-severity security finding in library code
    # The security list: the library's B602 only; not the F821 (lint), not the test file's.
    # (B404 is bandit's low-severity note on `import subprocess`.)
    assert _keys(review["security_findings"]) == [
        ("pkg/runner.py", "B602"),
        ("pkg/runner.py", "B404"),
    ]
    assert review["top_findings"] == review["security_findings"]
    # Lint is reported separately.
    assert ("pkg/runner.py", "F821") in _keys(review["lint_findings"])
    assert all(f["category"] == "lint" for f in review["lint_findings"])
    # Test-file findings are listed apart, never under "fix first".
    assert ("pkg/tests/test_runner.py", "B602") in _keys(review["test_findings"])
    text = review["text"]
    fix_first = text.split("### Security issues to fix first", 1)[1].split("###", 1)[0]
    assert "pkg/runner.py:5" in fix_first
    assert "F821" not in fix_first and "test_runner" not in fix_first
    in_tests = text.split("### In test files (not counted in the verdict)", 1)[1]
    assert "`pkg/tests/test_runner.py:5`" in in_tests.split("###", 1)[0]
    assert review["verdict"] == "request changes"
    verdict = next(line for line in text.splitlines() if line.startswith("**Verdict:**"))
    assert "1 high-severity security finding(s)" in verdict
    assert "1 lint error(s) that break at run time" in verdict


def test_the_report_separates_security_lint_and_test_files(reviewed):
    data, md = reviewed["json"], reviewed["md"]
    totals = data["totals"]
    assert totals["security"]["high"] == 1 == totals["security_high"]  # the test's not counted
    assert totals["lint"]["high"] >= 1  # F821
    assert totals["test_code"]["files"] == 1
    assert totals["test_code"]["security"] >= 1
    records = {r["path"]: r for r in data["files"]}
    assert records["pkg/tests/test_runner.py"]["test_code"] is True
    assert records["pkg/runner.py"]["test_code"] is False
    kinds = {(f["code"], f["category"]) for f in records["pkg/runner.py"]["findings"]}
    assert {("B602", "security"), ("F821", "lint")} <= kinds
    library = md.split("## Findings in library code", 1)[1].split("## Findings in test files")[0]
    tests = md.split("## Findings in test files", 1)[1]
    assert "### `pkg/runner.py`" in library and "test_runner" not in library
    assert "### `pkg/tests/test_runner.py`" in tests
    assert "| security | `B602` |" in library and "| lint | `F821` |" in library
    assert "| Security (bandit) | 1 |" in md


def test_a_package_whose_only_security_findings_are_in_tests_gets_the_summary_review(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        for name in ("review_tools", "reviewers"):
            sys.modules.pop(name, None)
        import review_tools
        import reviewers

        summary = review_tools.collect(
            ["lib.py", "idle_test/htest.py"],
            [{"path": "lib.py", "findings": []}, {"path": "idle_test/htest.py", "findings": []}],
            [None, None],
            [
                {"path": "lib.py", "findings": []},
                {
                    "path": "idle_test/htest.py",
                    "findings": [
                        {"tool": "bandit", "code": "B102", "message": "exec", "line": 3,
                         "severity": "high"},
                    ],
                },
            ],
        )  # fmt: skip

        class Context:
            def __init__(self) -> None:
                self.results = {"collect": summary}

            def get(self, key: str, default: Any = None) -> Any:
                return default

        assert summary["totals"]["high_severity"] == 1  # still counted in the raw totals
        assert summary["totals"]["security_high"] == 0
        assert reviewers.needs_security_review(Context()) is False
    finally:
        for name in ("review_tools", "reviewers"):
            sys.modules.pop(name, None)
        sys.path.remove(str(EXAMPLE_DIR))


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("pkg/runner.py", False),
        ("test_x.py", True),
        ("pkg/x_test.py", True),
        ("conftest.py", True),
        ("pkg/tests/helpers.py", True),
        ("Lib/test/support.py", True),
        ("idlelib/idle_test/htest.py", True),
        ("pkg/integration_tests/data.py", True),
        ("pkg/testing.py", False),
        ("pkg/contest.py", False),
        ("pkg/latest/x.py", False),
    ],
)
def test_is_test_path(path: str, is_test: bool) -> None:
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        sys.modules.pop("review_tools", None)
        import review_tools

        assert review_tools.is_test_path(path) is is_test
    finally:
        sys.modules.pop("review_tools", None)
        sys.path.remove(str(EXAMPLE_DIR))
