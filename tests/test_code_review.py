"""examples/code_review end to end, through the ``batten`` command, on real standard-library
source: the analysers really run, the report is written, the approval gate holds, and a run
killed in the middle of its maps is finished by ``batten resume`` without analysing again the
files already done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

import batten
import pytest
from batten.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "code_review" / "workflow.yaml"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
STORE = "sqlite:///.batten/runs.db"

pytestmark = pytest.mark.skipif(
    not (STDLIB / "json").is_dir() or not (STDLIB / "email").is_dir(),
    reason="this Python ships without the standard library's source",
)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATTEN_STORE", raising=False)
    # The local reviewer, whatever the environment says.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def py_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))


def test_reviews_a_standard_library_package_end_to_end(cwd, capsys):
    target = STDLIB / "json"
    code, out, err = cli(capsys, "run", WORKFLOW, "--input", f"target={target}", "--yes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "completed"
    report = doc["final_output"]
    assert report["files"] == len(py_files(target))
    md, js = Path(report["markdown"]), Path(report["json"])
    assert md.parent == cwd / "review-report" and md.is_file() and js.is_file()
    data = json.loads(js.read_text())
    assert data["target"] == str(target)
    assert sorted(f["path"] for f in data["files"]) == py_files(target)
    assert data["totals"]["findings"] == report["findings"] > 0
    # the analysers' real findings are there: ruff rule codes, radon's complexity
    codes = {f["code"] for f in data["files"] for f in f["findings"]}
    assert any(c[0].isalpha() and c[1:].isdigit() for c in codes), codes
    assert max(f["max_complexity"] for f in data["files"]) > 5
    text = md.read_text()
    assert str(target) in text and "hot spots" in text.lower()
    # each analyser ran once per file, as map items with their own status
    steps = {s["step_id"]: s for s in doc["steps"]}
    assert {steps[m]["status"] for m in ("ruff", "radon", "bandit")} == {"completed"}
    assert steps["triage"]["status"] == "completed"
    assert "approved approve (--yes)" in err


def test_without_yes_the_report_waits_for_batten_approve(cwd, capsys):
    target = STDLIB / "json"
    code, out, err = cli(capsys, "run", WORKFLOW, "--input", f"target={target}", "-q")
    assert code == 3
    assert not (cwd / "review-report").exists()  # nothing published before the approval
    run_id = next(line.split()[1] for line in err.splitlines() if line.startswith("run "))
    assert f"batten approve {run_id} approve" in out
    # ...and how to look at it and approve it in the browser.
    assert "in the browser: batten ui --store sqlite:///" in out
    assert f"then open http://127.0.0.1:8765/runs/{run_id}" in out
    code, out, err = cli(capsys, "approve", run_id, "approve", "-m", "ship it", "-q")
    assert code == 0, err
    assert (cwd / "review-report" / "report.md").is_file()


def test_a_bad_target_is_exit_1_and_a_missing_one_exit_2(cwd, capsys):
    code, _, err = cli(capsys, "run", WORKFLOW, "-q")
    assert code == 2 and "input 'target' is required" in err
    code, out, _ = cli(capsys, "run", WORKFLOW, "--input", "target=/no/such/dir", "-q")
    assert code == 1 and "discover" in out and "/no/such/dir" in out


def item_starts(run_id: str) -> Counter[str]:
    history = batten.run_history(run_id, store=STORE)
    return Counter(r.step_id for r in history if r.status == "running" and "[" in r.step_id)


def item_done(run_id: str) -> set[str]:
    history = batten.run_history(run_id, store=STORE)
    return {r.step_id for r in history if r.status == "completed" and "[" in r.step_id}


def test_a_run_killed_mid_map_is_finished_by_batten_resume(cwd, capsys):
    target = STDLIB / "email"
    files = 12
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("batten")),
            "run",
            str(WORKFLOW),
            "--input",
            f"target={target}",
            "--input",
            f"max_files={files}",
            "--yes",
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
    )
    try:
        deadline = time.monotonic() + 60
        run_id = None
        while time.monotonic() < deadline:
            if run_id is None and (cwd / ".batten" / "runs.db").exists():
                runs = batten.list_runs(store=STORE)
                run_id = runs[0].run_id if runs else None
            bandit_done = (
                {p for p in item_done(run_id) if p.startswith("bandit/")} if run_id else set()
            )
            if len(bandit_done) >= 3:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        else:
            raise AssertionError("the maps never got going")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert run_id is not None
    done_before = item_done(run_id)
    starts_before = item_starts(run_id)
    all_items = {f"{m}/run_{m}[{i}]" for m in ("ruff", "radon", "bandit") for i in range(files)}
    assert done_before < all_items  # killed mid-map: some items done, some not
    # its process is gone: the run shows as interrupted
    assert batten.get_workflow_status(run_id, store=STORE).status == "interrupted"

    code, out, err = cli(capsys, "resume", run_id, "--yes", "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["final_output"]["files"] == files
    starts_after = item_starts(run_id)
    for path in done_before:  # finished before the kill: not analysed again
        assert starts_after[path] == starts_before[path], path
    assert item_done(run_id) == all_items


def test_with_an_api_key_the_reviewer_is_an_llm_agent_run_through_the_adapter(
    cwd, capsys, monkeypatch
):
    pytest.importorskip("agents")
    from agents.testing import ModelStep, ScriptedModel, assistant_message

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    monkeypatch.setenv("BATTEN_REVIEWER", "")
    monkeypatch.syspath_prepend(str(WORKFLOW.parent))
    for name in ("reviewers", "review_tools", "review_report"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import reviewers
    from agents import Agent, set_tracing_disabled

    set_tracing_disabled(True)
    try:
        assert reviewers.reviewer_mode() == "llm"
        assert isinstance(reviewers.summary_reviewer, Agent)
        # the SDK's own offline test model instead of the network; the rest is real
        verdict = "**Verdict:** approve with comments\n\nThe JSON package is in good shape."
        for agent in (reviewers.summary_reviewer, reviewers.security_reviewer):
            agent.model = ScriptedModel([ModelStep(output=[assistant_message(verdict)])])
        code, _, err = cli(
            capsys, "run", WORKFLOW, "--input", f"target={STDLIB / 'json'}", "--yes", "-q"
        )
        assert code == 0, err
        report = (cwd / "review-report" / "report.md").read_text()
        assert "The JSON package is in good shape." in report
        data = json.loads((cwd / "review-report" / "report.json").read_text())
        assert data["review"] == verdict
    finally:
        for name in ("reviewers", "review_tools", "review_report"):
            sys.modules.pop(name, None)
