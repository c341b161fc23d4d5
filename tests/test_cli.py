"""The ``batten`` command: every subcommand and every exit code (0 completed, 1 failed, 2 bad
input, 3 waiting), run in-process through ``batten.cli.main`` and, for the installed entry
point, cancellation and a crash, as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import batten
import pytest
from batten.cli import main
from cli_support import batten_cli, run_id_of, write

TOOLS = """
import os, time
from pathlib import Path

def greet(name):
    return f"hello {name}"

def shout(text):
    return text.upper()

def boom(text):
    raise ValueError(f"cannot handle {text!r}")

def until_fixed(text):
    # fails while the file "broken" exists (a cause fixed between run and resume)
    if Path("broken").exists():
        raise ValueError("still broken")
    return text + "!"

def count(text):
    with open("calls.log", "a") as f:
        f.write(text + "\\n")
    return text

def slow(text):
    time.sleep(float(os.environ.get("SLOW", "30")))
    return text
"""

GREET = """\
name: greet
inputs:
  name: {required: true}
  times: {default: 1}
steps:
  - {id: hello, kind: tool, tool: clitools:greet, args: {name: "{inputs.name}"}}
  - {id: loud, kind: tool, tool: clitools:shout, args: {text: "{hello.result}"}}
"""


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    (tmp_path / "clitools.py").write_text(TOOLS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATTEN_STORE", raising=False)
    return tmp_path


def test_run_completes_with_exit_0_and_prints_the_output(cwd, capsys):
    code, out, err = batten_cli(capsys, "run", write(GREET), "--input", "name=ada")
    assert code == 0
    assert out.splitlines()[-1] == "HELLO ADA"
    assert " completed" in out.splitlines()[0]
    # not a terminal: plain progress lines, no carriage returns
    assert "completed hello" in err and "\r" not in err
    assert (cwd / ".batten" / "runs.db").is_file()  # the default store
    run_id = run_id_of(err)
    info = batten.get_workflow_status(run_id, store="sqlite:///.batten/runs.db")
    assert info.status == "completed" and info.input["variables"] == {"name": "ada", "times": 1}


def test_json_output_and_input_file(cwd, capsys):
    Path("inputs.json").write_text(json.dumps({"name": "bob", "times": 2}))
    code, out, _ = batten_cli(
        capsys, "run", write(GREET), "--input-file", "inputs.json", "--json", "-q"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "completed" and doc["final_output"] == "HELLO BOB"
    assert [(s["step_id"], s["status"], s["attempts"]) for s in doc["steps"]] == [
        ("hello", "completed", 1),
        ("loud", "completed", 1),
    ]


def test_a_failed_run_exits_1_and_resume_finishes_it_after_the_fix(cwd, capsys):
    wf = write("""\
        name: fix
        steps:
          - {id: first, kind: tool, tool: clitools:count, args: {text: a}}
          - {id: second, kind: tool, tool: clitools:until_fixed, args: {text: "{first.result}"}}
        """)
    Path("broken").touch()
    code, out, err = batten_cli(capsys, "run", wf)
    assert code == 1
    assert "error: second: ValueError: still broken" in out
    run_id = run_id_of(err)
    assert f"batten resume {run_id}" in out
    Path("broken").unlink()
    code, out, _ = batten_cli(capsys, "resume", run_id)
    assert code == 0 and out.splitlines()[-1] == "a!"
    assert Path("calls.log").read_text() == "a\n"  # the completed step did not run again
    code, out, _ = batten_cli(capsys, "status", run_id)
    assert code == 0 and "completed" in out


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["run", "wf.yaml"], "input 'name' is required"),
        (["run", "wf.yaml", "--input", "name"], "--input expects KEY=VALUE"),
        (["run", "wf.yaml", "--input", "name=a", "--input", "nope=1"], "has no input 'nope'"),
        (["run", "missing.yaml"], "missing.yaml: no such workflow file"),
        (["run", "wf.yaml", "--input-file", "absent.json"], "--input-file absent.json"),
        (["status", "no-such-run"], "no-such-run"),
        (["resume", "no-such-run"], "no-such-run"),
        (["approve", "no-such-run", "gate"], "no-such-run"),
        (["cancel", "no-such-run"], "no-such-run"),
        (["run", "wf.yaml", "--input", "name=a", "--store", "ftp://x"], "ftp"),
    ],
)
def test_bad_input_exits_2_with_a_message(cwd, capsys, argv, text):
    write(GREET)
    code, _, err = batten_cli(capsys, *argv)
    assert code == 2
    assert text in err


def test_argument_errors_exit_2(cwd, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["run", "wf.yaml", "--max-concurrency", "0"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["runs", "--status", "bogus"])
    assert info.value.code == 2


def test_validate_reports_the_line_of_a_broken_file(cwd, capsys):
    code, out, _ = batten_cli(capsys, "validate", write(GREET))
    assert code == 0 and "valid (2 steps" in out
    broken = write(
        """\
        name: broken
        steps:
          - id: hello
            kind: tool
            tool: clitools:greet
            retry: {max_attempts: 0}
        """,
        "broken.yaml",
    )
    code, _, err = batten_cli(capsys, "validate", broken)
    assert code == 2
    assert "broken.yaml:6: steps[0].retry.max_attempts: 0 is less than the minimum of 1" in err
    code, out, _ = batten_cli(capsys, "validate", broken, "--json")
    assert code == 2
    assert json.loads(out) == {
        "valid": False,
        "file": "broken.yaml",
        "line": 6,
        "field": "steps[0].retry.max_attempts",
        "error": "0 is less than the minimum of 1",
    }


APPROVAL = """\
name: gated
steps:
  - {id: draft, kind: tool, tool: clitools:count, args: {text: draft}}
  - {id: gate, kind: approval, prompt: "Publish {draft.result}?", depends_on: [draft]}
  - {id: publish, kind: tool, tool: clitools:shout, args: {text: "{draft.result}"},
     depends_on: [gate]}
"""


def test_an_approval_gate_says_how_to_approve_it_in_the_browser(cwd, capsys):
    code, out, err = batten_cli(capsys, "run", write(APPROVAL))
    assert code == 3
    run_id = run_id_of(err)
    db = cwd / ".batten" / "runs.db"
    hint = (
        f"  in the browser: batten ui --store sqlite:///{db}, "
        f"then open http://127.0.0.1:8765/runs/{run_id}"
    )
    lines = out.splitlines()
    assert hint in lines
    assert lines.index(hint) > lines.index(f"  approve: batten approve {run_id} gate")
    code, out, _ = batten_cli(capsys, "status", run_id)  # the same next steps
    assert code == 3 and hint in out.splitlines()
    code, out, _ = batten_cli(capsys, "run", write(APPROVAL), "--yes")
    assert code == 0 and "batten ui" not in out  # nothing waits: no hint


def test_an_approval_waits_with_exit_3_and_batten_approve_releases_it(cwd, capsys):
    code, out, err = batten_cli(capsys, "run", write(APPROVAL))
    assert code == 3
    run_id = run_id_of(err)
    assert "waiting for approval: gate" in out
    assert f"batten approve {run_id} gate" in out
    code, out, _ = batten_cli(capsys, "status", run_id)
    assert code == 3 and "waiting_approval" in out
    code, out, _ = batten_cli(capsys, "runs", "--status", "waiting_approval")
    assert run_id in out
    code, out, err = batten_cli(
        capsys, "approve", run_id, "gate", "-m", "looks good", "--by", "ann"
    )
    assert code == 0, err
    assert out.splitlines()[-1] == "DRAFT"
    assert Path("calls.log").read_text() == "draft\n"  # draft ran once across both processes
    decision = [
        r for r in batten.run_history(run_id, store="sqlite:///.batten/runs.db") if r.detail
    ]
    assert any(
        r.detail.get("by") == "ann" and r.detail.get("comment") == "looks good" for r in decision
    )


def test_reject_fails_the_run_with_exit_1(cwd, capsys):
    _, _, err = batten_cli(capsys, "run", write(APPROVAL))
    run_id = run_id_of(err)
    code, out, _ = batten_cli(capsys, "reject", run_id, "gate", "-m", "no")
    assert code == 1
    assert "ApprovalRejectedError" in out


def test_yes_approves_and_records_who(cwd, capsys):
    code, out, err = batten_cli(capsys, "run", write(APPROVAL), "--yes")
    assert code == 0 and out.splitlines()[-1] == "DRAFT"
    assert "approved gate (--yes)" in err
    history = batten.run_history(run_id_of(err), store="sqlite:///.batten/runs.db")
    assert any((r.detail or {}).get("by") == "batten-cli (--yes)" for r in history)


def test_graph_prints_mermaid(cwd, capsys):
    code, out, _ = batten_cli(capsys, "graph", write(APPROVAL), "--direction", "LR")
    assert code == 0
    assert out.startswith("flowchart LR")
    assert "gate" in out and "-->" in out


def test_runs_lists_newest_first_and_filters(cwd, capsys):
    batten_cli(capsys, "run", write(GREET), "-i", "name=a", "-q")
    batten_cli(capsys, "run", "wf.yaml", "-i", "name=b", "-q")
    code, out, _ = batten_cli(capsys, "runs", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    code, out, _ = batten_cli(capsys, "runs", "--status", "failed")
    store = f"sqlite:///.batten/runs.db ({cwd / '.batten' / 'runs.db'})"
    assert out.strip() == f"no failed runs in {store}"


def test_seed_002_output_options_are_honoured(cwd, capsys):
    Path("agents002.py").write_text(
        "import batten\n"
        "@batten.agent(name='cli_planner')\n"
        "def plan(message):\n    return 'plan for ' + message\n"
    )
    write(
        """\
        name: phased
        agents: [cli_planner]
        phases:
          - {name: planning, agent: cli_planner, timeout: 5}
        error_handling: {continue_on_error: false, fallback_workflow: null}
        output: {format: structured, include_agent_outputs: true, save_to_file: true}
        """
    )
    # Seed 002 names registered agents; an app registers them at start-up (here: in-process).
    import importlib

    sys.path.insert(0, str(cwd))
    try:
        importlib.import_module("agents002")
        code, out, err = batten_cli(
            capsys, "run", "wf.yaml", "-i", "requirements=a CLI", "--json", "-q"
        )
    finally:
        sys.path.remove(str(cwd))
        batten.registry.global_registry()._entries["agent"].pop("cli_planner", None)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["outputs"] == {"planning": "plan for a CLI"}
    saved = cwd / ".batten" / "results" / f"{doc['run_id']}.json"
    assert json.loads(saved.read_text())["final_output"] == "plan for a CLI"


# -- as real processes ------------------------------------------------------------------------


def batten_process(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("batten")
    return subprocess.Popen(
        [str(exe), *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_run(cwd: Path, status: str = "running", timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (cwd / ".batten" / "runs.db").exists():
            runs = batten.list_runs(store=f"sqlite:///{cwd}/.batten/runs.db", status=status)
            if runs:
                return runs[0].run_id
        time.sleep(0.05)
    raise AssertionError("the run never started")


def wait_until(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_installed_entry_point_and_python_m_batten(cwd):
    write(GREET)
    proc = batten_process("--version", cwd=cwd)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == f"batten {batten.__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "batten", "validate", "wf.yaml"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "valid" in done.stdout


SLOW = """\
name: slow
steps:
  - {id: first, kind: tool, tool: clitools:count, args: {text: first}}
  - {id: wait, kind: tool, tool: clitools:slow, args: {text: "{first.result}"}}
  - {id: last, kind: tool, tool: clitools:count, args: {text: "{wait.result}"}}
"""


def test_batten_cancel_stops_a_running_process(cwd, capsys):
    write(SLOW)
    proc = batten_process("run", "wf.yaml", cwd=cwd, env={"SLOW": "30"})
    try:
        run_id = wait_for_run(cwd)
        wait_until(lambda: (cwd / "calls.log").exists())
        code, _, err = batten_cli(capsys, "cancel", run_id)
        assert code == 0 and "cancel requested" in err
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "cancelled" in out
    code, out, _ = batten_cli(capsys, "status", run_id)
    assert code == 1 and "cancelled" in out


def test_a_killed_run_is_finished_by_batten_resume(cwd, capsys):
    write(SLOW)
    proc = batten_process("run", "wf.yaml", cwd=cwd, env={"SLOW": "30"})
    try:
        run_id = wait_for_run(cwd)
        history = lambda: batten.run_history(run_id, store="sqlite:///.batten/runs.db")  # noqa: E731
        wait_until(lambda: any(r.step_id == "wait" for r in history()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    # Its process is gone: the run shows as interrupted.
    status = batten.get_workflow_status(run_id, store="sqlite:///.batten/runs.db").status
    assert status == "interrupted"
    os.environ["SLOW"] = "0"
    try:
        code, out, err = batten_cli(capsys, "resume", run_id)
    finally:
        del os.environ["SLOW"]
    assert code == 0, err
    assert out.splitlines()[-1] == "first"
    assert Path("calls.log").read_text() == "first\nfirst\n"  # "first" once, then "last"


def test_rerun_from_a_step_reuses_earlier_outputs_and_status_shows_the_origin(cwd, capsys):
    wf = write(
        """\
        name: forkme
        steps:
          - {id: first, kind: tool, tool: clitools:count, args: {text: a}}
          - {id: second, kind: tool, tool: clitools:until_fixed, args: {text: "{first.result}"}}
        """
    )
    Path("broken").write_text("")
    code, _, err = batten_cli(capsys, "run", wf)
    assert code == 1
    origin = run_id_of(err)
    code, _, err = batten_cli(capsys, "rerun", origin, "--from", "nope")
    assert code == 2 and "has no step 'nope'" in err
    Path("broken").unlink()
    code, out, err = batten_cli(capsys, "rerun", origin, "--from", "second")
    assert code == 0, err
    assert out.splitlines()[-1] == "a!"
    assert Path("calls.log").read_text() == "a\n"  # first was reused, not run again
    new = next(line.split()[-1] for line in err.splitlines() if line.startswith("forked run"))
    code, out, _ = batten_cli(capsys, "status", new)
    assert f"forked from run {origin} at step second" in out
