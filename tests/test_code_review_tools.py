"""Unit tests of the code-review example's tools (examples/code_review): file discovery with
.gitignore semantics, the three real analysers (ruff, radon, bandit) on files written here,
cancellation and crash handling, merging, the local reviewers, the triage condition and the
report."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pickle
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from batten import AgentStep, ConditionalStep, ToolStep, Workflow, WorkflowContext

EXAMPLE_DIR = str(Path(__file__).parents[1] / "examples" / "code_review")
sys.path.insert(0, EXAMPLE_DIR)

import review_report  # noqa: E402
import review_tools  # noqa: E402
import reviewers  # noqa: E402
from review_tools import (  # noqa: E402
    AnalyserError,
    collect,
    discover_files,
    rank_findings,
    ruff_severity,
    run_bandit,
    run_radon,
    run_ruff,
)

BRANCHY = (
    "def branchy(x):\n"
    + "".join(
        f"    {'if' if i == 0 else 'elif'} x == {i}:\n        return {i}\n" for i in range(14)
    )
    + "    return -1\n"
)

SAMPLES = {
    # Lint F401 (medium) and F821 (high); security B404 (low) and B602 (high).
    "pkg/shell.py": textwrap.dedent(
        """\
        import os
        import subprocess


        def run(cmd):
            subprocess.call(cmd, shell=True)
            return undefined_name
        """
    ),
    # Complexity 15 (> 10), a class with a method.
    "pkg/complex.py": BRANCHY
    + textwrap.dedent(
        """\


        class Box:
            def size(self, a):
                if a:
                    return 1
                return 2
        """
    ),
    "clean.py": 'def add(a, b):\n    """Adds."""\n    return a + b\n',
}


@pytest.fixture(scope="module", autouse=True)
def _forget_example_modules() -> Any:
    """Afterwards, drop the example's modules and path: ``reviewers`` picks its reviewers when
    imported, so a later test (or the YAML loader) must import it afresh under its own
    environment."""
    yield
    for name in ("review_tools", "reviewers", "review_report"):
        sys.modules.pop(name, None)
    while EXAMPLE_DIR in sys.path:
        sys.path.remove(EXAMPLE_DIR)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("sample"), SAMPLES)


@pytest.fixture(scope="module")
def analysed(sample: Path) -> dict[str, Any]:
    """The three analysers run once over the sample tree, as the workflow's MapSteps would."""
    files = discover_files(str(sample))

    async def run_all() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(
            *(
                asyncio.gather(*(tool(str(sample), f) for f in files))
                for tool in (run_ruff, run_radon, run_bandit)
            )
        )

    ruff, radon, bandit = asyncio.run(run_all())
    return {"files": files, "ruff": ruff, "radon": radon, "bandit": bandit}


def by_path(results: list[dict[str, Any]], path: str) -> dict[str, Any]:
    return next(r for r in results if r["path"] == path)


# ------------------------------------------------------------------------------------------
# discover_files


def test_discover_lists_python_files_sorted(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"a.py": "", "a/b.py": "", "z.py": "", "notes.txt": "", "stub.pyi": "", "m/x.PY": ""},
    )
    assert discover_files(str(tmp_path)) == ["a.py", "a/b.py", "z.py"]


def test_discover_honours_root_and_nested_gitignore(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            ".gitignore": "build/\n*_gen.py\n!keep_gen.py\n!build/x.py\n# comment\n",
            "app.py": "",
            "api_gen.py": "",
            "keep_gen.py": "",
            "build/out.py": "",
            "build/x.py": "",
            "sub/build/deep.py": "",  # `build/` matches at any depth
            "pkg/.gitignore": "/local.py\n!special_gen.py\ncache/\n",
            "pkg/mod.py": "",
            "pkg/local.py": "",  # anchored to pkg/ by the nested file
            "pkg/deeper/local.py": "",  # ... so not ignored one level down
            "pkg/special_gen.py": "",  # re-included by the deeper .gitignore
            "pkg/other_gen.py": "",
            "pkg/cache/c.py": "",
            "other/cache/kept.py": "",  # pkg's `cache/` does not apply outside pkg/
            ".git/hooks/hook.py": "",
            ".git/info/exclude": "excluded_locally.py\n",
            "excluded_locally.py": "",
        },
    )
    assert discover_files(str(tmp_path)) == [
        "app.py",
        "keep_gen.py",
        "other/cache/kept.py",
        "pkg/deeper/local.py",
        "pkg/mod.py",
        "pkg/special_gen.py",
    ]


def test_discover_cannot_reinclude_inside_ignored_directory(tmp_path: Path) -> None:
    # git: "It is not possible to re-include a file if a parent directory of that file is
    # excluded."
    write_tree(tmp_path, {".gitignore": "vendor/\n!vendor/keep.py\n", "vendor/keep.py": ""})
    assert discover_files(str(tmp_path)) == []
    # ... but ignoring the directory's contents (not the directory) lets a negation work.
    (tmp_path / ".gitignore").write_text("vendor/*\n!vendor/keep.py\n")
    assert discover_files(str(tmp_path)) == ["vendor/keep.py"]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, 4), ("", 4), (2, 2), ("3", 3), (" 1 ", 1), (0, 0), (99, 4)],
)
def test_discover_limit(tmp_path: Path, limit: Any, expected: int) -> None:
    write_tree(tmp_path, {f"m{i}.py": "" for i in range(4)})
    files = discover_files(str(tmp_path), limit)
    assert files == [f"m{i}.py" for i in range(expected)]


@pytest.mark.parametrize("limit", ["many", -1, "-2", "1.5", 1.5, True])
def test_discover_bad_limit(tmp_path: Path, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        discover_files(str(tmp_path), limit)


def test_discover_bad_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        discover_files(str(missing))
    file = tmp_path / "f.py"
    file.write_text("")
    with pytest.raises(NotADirectoryError, match=r"f\.py"):
        discover_files(str(file))


# ------------------------------------------------------------------------------------------
# analysers


def test_ruff_findings_and_severity(analysed: dict[str, Any]) -> None:
    result = by_path(analysed["ruff"], "pkg/shell.py")
    codes = {(f["code"], f["line"], f["severity"]) for f in result["findings"]}
    assert ("F401", 1, "medium") in codes  # `import os` unused
    assert ("F821", 7, "high") in codes  # undefined name
    assert all(f["tool"] == "ruff" and f["message"] for f in result["findings"])
    assert result["findings"][0]["severity"] == "high"  # worst first
    assert by_path(analysed["ruff"], "clean.py")["findings"] == []
    json.dumps(analysed["ruff"])  # JSON-able


@pytest.mark.parametrize(
    "config",
    [
        '[tool.ruff.lint.per-file-ignores]\n"m.py" = ["F401"]\n',  # would hide the finding
        "[tool.ruff]\nno-such-option = 1\n",  # would make ruff exit 2
    ],
)
def test_ruff_ignores_the_target_config_and_reports_syntax_errors(
    tmp_path: Path, config: str
) -> None:
    write_tree(
        tmp_path,
        {"pyproject.toml": config, "m.py": "import os\n", "broken.py": "def f(:\n    pass\n"},
    )
    result = asyncio.run(run_ruff(str(tmp_path), "m.py"))
    assert [f["code"] for f in result["findings"]] == ["F401"]
    broken = asyncio.run(run_ruff(str(tmp_path), "broken.py"))
    assert broken["findings"]
    assert {f["severity"] for f in broken["findings"]} == {"high"}


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        (None, "high"),
        ("invalid-syntax", "high"),
        ("E999", "high"),
        ("F821", "high"),
        ("F706", "high"),
        ("F401", "medium"),
        ("E902", "medium"),
        ("B006", "medium"),
        ("E722", "medium"),
        ("E701", "low"),
        ("E402", "low"),
        ("W291", "low"),
    ],
)
def test_ruff_severity_mapping(code: str | None, severity: str) -> None:
    assert ruff_severity(code) == severity


def test_radon_complexity(analysed: dict[str, Any]) -> None:
    result = by_path(analysed["radon"], "pkg/complex.py")
    blocks = {b["name"]: b for b in result["blocks"]}
    assert blocks["branchy"]["type"] == "function"
    assert blocks["branchy"]["complexity"] == 15
    assert blocks["branchy"]["rank"] == "C"
    assert blocks["branchy"]["line"] == 1
    assert blocks["Box"]["type"] == "class"
    assert blocks["Box.size"]["type"] == "method"
    assert blocks["Box.size"]["complexity"] == 2
    assert result["max_complexity"] == 15
    assert result["average_complexity"] == pytest.approx((15 + 2) / 2)


def test_radon_module_without_blocks_and_syntax_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"consts.py": "X = 1\n", "broken.py": "def f(:\n"})
    assert asyncio.run(run_radon(str(tmp_path), "consts.py")) == {
        "path": "consts.py",
        "blocks": [],
        "max_complexity": 0,
        "average_complexity": 0.0,
    }
    broken = asyncio.run(run_radon(str(tmp_path), "broken.py"))
    assert broken["blocks"] == []
    assert "invalid syntax" in broken["error"]


def test_radon_flattens_closures(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"c.py": "def outer(a):\n    def inner(b):\n        return b or a\n    return inner\n"},
    )
    result = asyncio.run(run_radon(str(tmp_path), "c.py"))
    assert [(b["name"], b["type"]) for b in result["blocks"]] == [
        ("outer", "function"),
        ("outer.inner", "function"),
    ]


def test_bandit_findings(analysed: dict[str, Any]) -> None:
    findings = by_path(analysed["bandit"], "pkg/shell.py")["findings"]
    assert findings[0] == {
        "tool": "bandit",
        "code": "B602",
        "message": findings[0]["message"],
        "line": 6,
        "severity": "high",
        "confidence": "high",
    }
    assert "shell=True" in findings[0]["message"]
    assert ("B404", "low") in {(f["code"], f["severity"]) for f in findings}
    assert by_path(analysed["bandit"], "clean.py") == {"path": "clean.py", "findings": []}


def test_bandit_syntax_error_is_reported_not_raised(tmp_path: Path) -> None:
    write_tree(tmp_path, {"broken.py": "def f(:\n"})
    result = asyncio.run(run_bandit(str(tmp_path), "broken.py"))
    assert result["findings"] == []
    assert result["errors"]


@pytest.mark.parametrize("tool", [run_ruff, run_radon, run_bandit])
def test_analysers_reject_missing_file(tmp_path: Path, tool: Any) -> None:
    with pytest.raises(FileNotFoundError, match=r"gone\.py"):
        asyncio.run(tool(str(tmp_path), "gone.py"))


def test_analyser_crash_raises_analyser_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(tmp_path, {"m.py": "x = 1\n"})
    crash = "import sys; sys.stderr.write('kaboom: internal error'); sys.exit(2)"
    monkeypatch.setattr(review_tools, "_bandit_argv", lambda file: [sys.executable, "-c", crash])
    with pytest.raises(AnalyserError, match="kaboom") as info:
        asyncio.run(run_bandit(str(tmp_path), "m.py"))
    error = info.value
    assert isinstance(error, RuntimeError)  # so batten's default retry policy retries it
    assert (error.tool, error.path) == ("bandit", "m.py")
    assert "exit code 2" in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again)) == (AnalyserError, str(error))

    garbage = "print('this is not json')"
    monkeypatch.setattr(review_tools, "_radon_argv", lambda file: [sys.executable, "-c", garbage])
    with pytest.raises(AnalyserError, match="not JSON"):
        asyncio.run(run_radon(str(tmp_path), "m.py"))


def _children(pid: int) -> dict[int, str]:
    """Live (or zombie) child processes of ``pid``: ``{child pid: command line}``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry)] = cmdline.decode(errors="replace")
    return found


def _cancel_midway(tool: Any, root: Path, name: str, delay: float) -> tuple[int, float]:
    """Starts ``tool`` on ``pkg/shell.py``, waits until its child process ``name`` runs, then
    ``delay`` seconds more, cancels the task; returns the child's pid and the seconds from
    cancel() to the task's end."""

    async def scenario() -> tuple[int, float]:
        task = asyncio.create_task(tool(str(root), "pkg/shell.py"))
        deadline = time.monotonic() + 5
        pids: list[int] = []
        while not pids and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            pids = [p for p, cmd in _children(os.getpid()).items() if name in cmd]
        assert len(pids) == 1, "the analyser never started"
        await asyncio.sleep(delay)
        assert not task.done()
        task.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids[0], time.monotonic() - cancelled_at

    return asyncio.run(scenario())


def _assert_reaped(pid: int) -> None:
    assert pid not in _children(os.getpid())
    with pytest.raises(ProcessLookupError):  # gone *and* reaped: not even a zombie is left
        os.kill(pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("tool", "name", "delay"),
    # bandit's imports alone take ~0.3 s, radon's ~0.1 s: cancelled while they run.
    [(run_bandit, "bandit", 0.05), (run_radon, "radon", 0.0)],
)
def test_cancellation_leaves_no_analyser_process(
    sample: Path, tool: Any, name: str, delay: float
) -> None:
    pid, _ = _cancel_midway(tool, sample, name, delay)
    _assert_reaped(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancellation_kills_a_hung_analyser(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An analyser that would hang for a minute: cancelling must kill it, not wait for it.
    hang = "import time; time.sleep(60)  # hung-analyser"
    monkeypatch.setattr(review_tools, "_bandit_argv", lambda file: [sys.executable, "-c", hang])
    pid, waited = _cancel_midway(run_bandit, sample, "hung-analyser", 0.05)
    assert waited < 5
    _assert_reaped(pid)


# ------------------------------------------------------------------------------------------
# collect


def test_collect_merges_real_results(analysed: dict[str, Any]) -> None:
    summary = collect(analysed["files"], analysed["ruff"], analysed["radon"], analysed["bandit"])
    json.dumps(summary)
    assert [r["path"] for r in summary["files"]] == ["clean.py", "pkg/complex.py", "pkg/shell.py"]
    shell = summary["files"][2]
    severities = [f["severity"] for f in shell["findings"]]
    assert severities == sorted(severities, key=["high", "medium", "low"].index)
    assert {f["code"] for f in shell["findings"]} >= {"F401", "F821", "B602", "B404"}
    complex_ = summary["files"][1]
    assert complex_["max_complexity"] == 15
    assert [b["name"] for b in complex_["complex_blocks"]] == ["branchy"]
    totals = summary["totals"]
    assert totals["files"] == 3
    assert totals["high_severity"] == totals["by_severity"]["high"] == 2  # F821 + B602
    assert totals["findings"] == sum(totals["by_severity"].values())
    assert totals["by_tool"]["bandit"] == 2
    assert totals["complex_blocks"] == 1
    assert summary["hot_spots"][0] == {
        "path": "pkg/complex.py",
        "name": "branchy",
        "type": "function",
        "line": 1,
        "complexity": 15,
        "rank": "C",
    }
    assert summary["missing"] == []
    digest = summary["digest"]
    assert "3 Python files" in digest
    assert "high 2" in digest
    assert "pkg/shell.py:6 bandit B602" in digest
    assert "pkg/complex.py:1 function branchy: complexity 15" in digest


def _finding(tool: str, code: str, line: int, severity: str, message: str = "m") -> dict:
    return {"tool": tool, "code": code, "message": message, "line": line, "severity": severity}


def test_collect_records_missing_results_and_ranks_hot_spots() -> None:
    files = ["a.py", "b.py"]
    ruff = [
        {"path": "a.py", "findings": [_finding("ruff", "E701", 9, "low")]},
        None,  # this item failed after its retries
    ]
    blocks = [
        {"name": f"f{i}", "type": "function", "line": i, "complexity": i, "rank": "A"}
        for i in range(1, 15)
    ]
    radon = [
        {"path": "a.py", "blocks": blocks, "max_complexity": 14, "average_complexity": 7.5},
        {
            "path": "b.py",
            "blocks": [{"name": "K", "type": "class", "line": 1, "complexity": 50, "rank": "F"}],
            "max_complexity": 0,
            "average_complexity": 0.0,
        },
    ]
    bandit = [
        {"path": "b.py", "findings": [_finding("bandit", "B101", 3, "low")]},
        {"path": "a.py", "findings": [_finding("bandit", "B602", 20, "high")]},
    ]
    summary = collect(files, ruff, radon, bandit)
    assert summary["missing"] == [{"path": "b.py", "tool": "ruff"}]
    assert summary["totals"]["missing"] == 1
    a = summary["files"][0]
    assert [(f["code"], f["line"]) for f in a["findings"]] == [("B602", 20), ("E701", 9)]
    assert [b["name"] for b in a["complex_blocks"]] == ["f14", "f13", "f12", "f11"]
    # Classes are not hot spots (their complexity summarises their methods').
    assert [b["complexity"] for b in summary["hot_spots"]] == list(range(14, 4, -1))
    assert summary["totals"]["by_severity"] == {"high": 1, "medium": 0, "low": 2}
    assert "Missing analyser results: 1 (ruff:b.py)" in summary["digest"]


def test_collect_of_nothing() -> None:
    summary = collect([], [], [], [])
    assert summary["totals"]["findings"] == 0
    assert summary["hot_spots"] == []
    assert "0 Python files" in summary["digest"]


def test_digest_stays_small() -> None:
    files = [f"very/long/path/{'x' * 150}/module_{i}.py" for i in range(300)]
    findings = [
        {
            "path": p,
            "findings": [_finding("ruff", "F401", n, "medium", "y" * 300) for n in range(9)],
        }
        for p in files
    ]
    radon = [
        {
            "path": p,
            "blocks": [{"name": "f" * 200, "type": "function", "line": 1, "complexity": 30}],
            "max_complexity": 30,
            "average_complexity": 30.0,
        }
        for p in files
    ]
    for block in radon:
        block["blocks"][0]["rank"] = "D"
    summary = collect(files, findings, radon, [None] * len(files))
    assert summary["totals"]["findings"] == 2700
    assert len(summary["digest"]) <= review_tools.DIGEST_MAX_CHARS
    assert "Top findings" in summary["digest"]


def test_rank_findings_by_severity_then_file_complexity() -> None:
    summary = {
        "files": [
            {"path": "simple.py", "max_complexity": 2, "findings": [
                _finding("ruff", "F821", 1, "high"), _finding("ruff", "F401", 1, "medium"),
            ]},
            {"path": "tangled.py", "max_complexity": 40, "findings": [
                _finding("ruff", "F401", 5, "medium"), _finding("bandit", "B602", 9, "high"),
                _finding("ruff", "E701", 2, "low"),
            ]},
        ]
    }  # fmt: skip
    ranked = rank_findings(summary)
    assert [(f["path"], f["code"]) for f in ranked] == [
        ("tangled.py", "B602"),
        ("simple.py", "F821"),
        ("tangled.py", "F401"),
        ("simple.py", "F401"),
        ("tangled.py", "E701"),
    ]
    assert ranked[0]["file_complexity"] == 40
    assert len(rank_findings(summary, 2)) == 2
    # per_file: a noisy file's further findings come after the other files' first ones.
    noisy = {
        "files": [
            {"path": "noisy.py", "max_complexity": 40,
             "findings": [_finding("ruff", "F821", n, "high") for n in (1, 2, 3)]},
            {"path": "quiet.py", "max_complexity": 1,
             "findings": [_finding("bandit", "B602", 7, "high")]},
        ]
    }  # fmt: skip
    assert [(f["path"], f["line"]) for f in rank_findings(noisy)] == [
        ("noisy.py", 1), ("noisy.py", 2), ("noisy.py", 3), ("quiet.py", 7),
    ]  # fmt: skip
    assert [(f["path"], f["line"]) for f in rank_findings(noisy, per_file=2)] == [
        ("noisy.py", 1), ("noisy.py", 2), ("quiet.py", 7), ("noisy.py", 3),
    ]  # fmt: skip
    assert len(rank_findings(noisy, 3, per_file=1)) == 3


# ------------------------------------------------------------------------------------------
# reviewers


class FakeContext:
    """What a reviewer or condition reads from a batten.WorkflowContext."""

    def __init__(self, results: dict[str, Any], variables: dict[str, Any] | None = None) -> None:
        self.results = results
        self._variables = variables or {}

    def __getitem__(self, key: str) -> Any:
        return self._variables[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._variables.get(key, default)


def _summary_with(high: int, medium: int = 0, low: int = 0, complexity: int = 3) -> dict:
    findings = (
        [_finding("bandit", "B602", 10 + i, "high") for i in range(high)]
        + [_finding("ruff", "F401", 100 + i, "medium") for i in range(medium)]
        + [_finding("ruff", "E701", 200 + i, "low") for i in range(low)]
    )
    files = ["main.py"]
    blocks = [{"name": "f", "type": "function", "line": 1, "complexity": complexity, "rank": "B"}]
    return collect(
        files,
        [{"path": "main.py", "findings": [f for f in findings if f["tool"] == "ruff"]}],
        [{"path": "main.py", "blocks": blocks, "max_complexity": complexity,
          "average_complexity": float(complexity)}],
        [{"path": "main.py", "findings": [f for f in findings if f["tool"] == "bandit"]}],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("high", "threshold", "expected"),
    [(0, None, False), (1, None, True), (1, "1", True), (2, "3", False), (3, 3, True),
     (5, "", True), (0, "0", True)],
)  # fmt: skip
def test_needs_security_review(high: int, threshold: Any, expected: bool) -> None:
    variables = {} if threshold is None else {"security_threshold": threshold}
    context = FakeContext({"collect": _summary_with(high)}, variables)
    assert reviewers.needs_security_review(context) is expected


def test_local_reviewers_rank_and_are_deterministic(analysed: dict[str, Any]) -> None:
    summary = collect(analysed["files"], analysed["ruff"], analysed["radon"], analysed["bandit"])
    context = FakeContext({"collect": summary})
    security = asyncio.run(reviewers.local_security_review(summary["digest"], context=context))
    again = asyncio.run(reviewers.local_security_review(summary["digest"], context=context))
    assert security == again
    json.dumps(security)
    assert (security["reviewer"], security["kind"]) == ("local", "security")
    assert security["verdict"] == "request changes"
    # Security review: bandit's findings only, worst first; the F821 is lint, listed apart.
    assert [(f["code"], f["severity"]) for f in security["top_findings"]] == [
        ("B602", "high"),
        ("B404", "low"),
    ]
    assert security["top_findings"] == security["security_findings"]
    assert ("F821", "high") in [(f["code"], f["severity"]) for f in security["lint_findings"]]
    assert "`pkg/shell.py:6` **high** bandit `B602`" in security["text"]
    assert security["hot_spots"][0]["name"] == "branchy"

    summary_review = asyncio.run(reviewers.local_summary_review("", context=context))
    assert summary_review["kind"] == "summary"
    codes = [f["code"] for f in summary_review["top_findings"]]
    assert codes[:2] == ["B602", "F821"] and "F401" in codes


def test_local_review_verdicts_and_limits() -> None:
    def review(summary: dict) -> dict:
        return asyncio.run(
            reviewers.local_summary_review("", context=FakeContext({"collect": summary}))
        )

    crowded = review(_summary_with(high=0, medium=20, low=5))
    assert crowded["verdict"] == "approve with comments"
    assert len(crowded["top_findings"]) == reviewers.TOP_FINDINGS == 15
    assert "and 10 more" in crowded["text"]
    assert review(_summary_with(high=0, low=2))["verdict"] == "approve"
    assert review(_summary_with(high=0, complexity=25))["verdict"] == "approve with comments"
    assert review(_summary_with(high=1))["verdict"] == "request changes"


def test_local_review_without_collect_result_uses_the_message() -> None:
    result = asyncio.run(reviewers.local_security_review("the digest", context=FakeContext({})))
    assert result["verdict"] == "comment"
    assert "the digest" in result["text"]


def test_triage_in_a_batten_workflow(analysed: dict[str, Any]) -> None:
    summary = collect(analysed["files"], analysed["ruff"], analysed["radon"], analysed["bandit"])

    def run(threshold: str) -> Any:
        wf = Workflow("triage_test")
        wf.add_step(ToolStep("collect", lambda: summary))
        wf.add_step(
            ConditionalStep(
                "triage",
                reviewers.needs_security_review,
                AgentStep(
                    "security_review", reviewers.local_security_review, "{collect.result.digest}"
                ),
                AgentStep(
                    "summary_review", reviewers.local_summary_review, "{collect.result.digest}"
                ),
            ),
            depends_on=["collect"],
        )
        context = WorkflowContext("triage_test", variables={"security_threshold": threshold})
        result = asyncio.run(wf.execute(context))
        assert result.status == "completed", [(s.step_id, s.error) for s in result.steps]
        return next(s for s in result.steps if s.step_id == "triage")

    # 2 high-severity findings, one a security one (B602): the F821 is lint and does not count.
    triage = run("1")
    assert triage.metadata["branch"] == "security_review"
    assert triage.output["kind"] == "security"
    assert triage.output["top_findings"][0]["code"] == "B602"  # it saw context.results
    triage = run("2")
    assert triage.metadata["branch"] == "summary_review"
    assert triage.output["kind"] == "summary"


def test_reviewer_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    agents = pytest.importorskip("agents")
    try:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "BATTEN_REVIEWER"):
            monkeypatch.delenv(name, raising=False)
        importlib.reload(reviewers)
        assert reviewers.reviewer_mode() == "local"
        assert reviewers.security_reviewer is reviewers.local_security_review
        assert reviewers.summary_reviewer is reviewers.local_summary_review

        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        monkeypatch.setenv("BATTEN_REVIEW_MODEL", "local-model")
        importlib.reload(reviewers)
        assert reviewers.reviewer_mode() == "llm"
        for agent in (reviewers.security_reviewer, reviewers.summary_reviewer):
            assert isinstance(agent, agents.Agent)
            assert isinstance(agent.model, agents.OpenAIChatCompletionsModel)
            assert agent.model.model == "local-model"
        assert reviewers.security_reviewer.instructions == reviewers.SECURITY_INSTRUCTIONS

        monkeypatch.setenv("BATTEN_REVIEWER", "local")
        importlib.reload(reviewers)
        assert reviewers.reviewer_mode() == "local"
    finally:
        monkeypatch.undo()
        importlib.reload(reviewers)


# ------------------------------------------------------------------------------------------
# write_report


def test_write_report(tmp_path: Path, analysed: dict[str, Any]) -> None:
    summary = collect(analysed["files"], analysed["ruff"], analysed["radon"], analysed["bandit"])
    review = asyncio.run(
        reviewers.local_security_review("", context=FakeContext({"collect": summary}))
    )
    out = tmp_path / "deep" / "out"
    written = review_report.write_report(summary, review, str(out), "my/project")
    assert written == {
        "markdown": str((out / "report.md").resolve()),
        "json": str((out / "report.json").resolve()),
        "files": 3,
        "findings": summary["totals"]["findings"],
        "high_severity": 2,
    }
    md = (out / "report.md").read_text()
    assert md.startswith("# Code review: `my/project`")
    assert f"| 3 | {summary['totals']['findings']} | 2 |" in md
    assert review["text"].strip() in md
    assert "| `pkg/complex.py` | 1 | `branchy` | function | 15 | C |" in md
    # Only files with findings get a section.
    assert "### `clean.py`" not in md
    assert "| 6 | high | bandit | security | `B602` |" in md

    document = json.loads((out / "report.json").read_text())
    assert set(document) == {
        "target", "generated_at", "totals", "review", "files", "hot_spots", "missing",
    }  # fmt: skip
    assert document["target"] == "my/project"
    assert document["generated_at"].endswith("Z")
    assert document["review"] == review
    assert document["totals"] == summary["totals"]
    assert document["files"] == summary["files"]
    assert not list(out.glob(".*.tmp"))


def test_write_report_limits_findings_per_file_and_orders_files(tmp_path: Path) -> None:
    files = ["lots.py", "bad.py", "meh.py"]
    ruff = [
        {"path": "lots.py", "findings": [_finding("ruff", "E701", i, "low") for i in range(1, 9)]},
        {"path": "bad.py", "findings": [_finding("ruff", "F821", 3, "high", "a | b")]},
        {"path": "meh.py", "findings": [_finding("ruff", "F401", 1, "medium")]},
    ]
    summary = collect(files, ruff, [None] * 3, [None] * 3)
    review_report.write_report(summary, "LLM says: fine.", str(tmp_path), "t")
    md = (tmp_path / "report.md").read_text()
    assert md.index("### `bad.py`") < md.index("### `meh.py`") < md.index("### `lots.py`")
    lots = md[md.index("### `lots.py`") :]
    assert lots.count("| ruff |") == review_report.FINDINGS_PER_FILE == 5
    assert "and 3 more" in lots
    assert "a \\| b" in md  # pipes in messages do not break the table
    assert "## Review\n\nLLM says: fine." in md
    assert "- radon: `meh.py`" in md  # missing results are listed
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["review"] == "LLM says: fine."
    assert len(document["missing"]) == 6


def test_write_report_without_review(tmp_path: Path) -> None:
    written = review_report.write_report(collect([], [], [], []), None, str(tmp_path), "t")
    assert written["findings"] == 0
    assert "No review was produced" in Path(written["markdown"]).read_text()
