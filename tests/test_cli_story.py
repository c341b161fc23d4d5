"""The ``batten`` command tells one story (issue 15): what the README shows can be pasted, a
closed pipe ends a command quietly, a run that has ended offers and accepts no actions that
cannot work, read-only commands create nothing, the progress counts are right and the bar stays
readable on a real terminal, and an approval records who really decided.

Commands run in-process through ``batten.cli.main`` and, where pipes and terminals matter, as
real subprocesses of the ``batten`` console script (on a real pty for the live bar).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import batten
import pytest
from batten.cli.progress import Progress
from batten.errors import ApprovalError
from cli_support import batten_cli as cli
from cli_support import run_id_of, write

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
STORE = "sqlite:///.batten/runs.db"

TOOLS = """
import time
from pathlib import Path

def count(text):
    with open("calls.log", "a") as f:
        f.write(text + "\\n")
    return text

def shout(text):
    return text.upper()

def until_fixed(text):
    if Path("broken").exists():
        raise ValueError("still broken")
    return text + "!"

def items(n):
    return list(range(int(n)))

def label(item):
    return f"x{item}"

def nap(item):
    time.sleep(0.1)
    return item
"""

GATED = """\
name: gated
steps:
  - {id: draft, kind: tool, tool: storytools:count, args: {text: draft}}
  - {id: gate, kind: approval, prompt: "Publish {draft.result}?", depends_on: [draft]}
  - {id: publish, kind: tool, tool: storytools:shout, args: {text: "{draft.result}"},
     depends_on: [gate]}
"""

FIXABLE = """\
name: fixable
steps:
  - {id: first, kind: tool, tool: storytools:count, args: {text: a}}
  - {id: second, kind: tool, tool: storytools:until_fixed, args: {text: "{first.result}"}}
"""

# 1 + 20 items + 4 more top-level steps: 25 units; a gate halfway.
MAPPED = """\
name: mapped
steps:
  - {id: plan, kind: tool, tool: storytools:items, args: {n: "20"}}
  - id: each
    kind: map
    items: "{plan.result}"
    step: {id: one, kind: tool, tool: storytools:label}
  - {id: gate, kind: approval, prompt: "go on?", depends_on: [each]}
  - {id: publish, kind: tool, tool: storytools:shout, args: {text: "p"}, depends_on: [gate]}
  - {id: announce, kind: tool, tool: storytools:shout, args: {text: "a"}, depends_on: [publish]}
"""

# Long step ids running three at a time: their names compete with the bar for the width.
TERMINAL = """\
name: progress-on-a-terminal
steps:
  - {id: plan, kind: tool, tool: storytools:items, args: {n: "24"}}
  - id: check_every_file_of_the_package
    kind: map
    items: "{plan.result}"
    max_concurrency: 3
    step: {id: run_the_linter_on_one_file, kind: tool, tool: storytools:nap,
           args: {item: "{item}"}}
  - {id: gate, kind: approval, prompt: "publish?", depends_on: [check_every_file_of_the_package]}
  - {id: publish_the_report_far_away, kind: tool, tool: storytools:nap, args: {item: "x"},
     depends_on: [gate]}
"""


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    (tmp_path / "storytools.py").write_text(TOOLS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATTEN_STORE", raising=False)
    return tmp_path


def waiting_run(capsys) -> str:
    code, _, err = cli(capsys, "run", write(GATED))
    assert code == 3, err
    return run_id_of(err)


def cancelled_waiting_run(capsys) -> str:
    run_id = waiting_run(capsys)
    code, _, err = cli(capsys, "cancel", run_id)
    assert code == 0, err
    return run_id


def decisions(run_id: str) -> list[dict]:
    return [
        r.detail
        for r in batten.run_history(run_id, store=STORE)
        if isinstance(r.detail, dict) and r.detail.get("decision")
    ]


def batten_exe() -> str:
    return str(Path(sys.executable).with_name("batten"))


def counters(text: str) -> list[int]:
    """The ``done`` of every ``[done/total]`` plain progress line, in order."""
    return [int(m.group(1)) for m in re.finditer(r"^\[\s*(\d+)/\d+\]", text, flags=re.M)]


# -- 1. README's commands can be pasted; a closed pipe ends a command quietly ----------------


def shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    return [re.sub(r"\s{2,}#.*$", "", line) for line in lines]


def test_readme_shell_blocks_hold_one_command_per_line():
    lines = shell_lines()
    assert any(line.startswith("batten cancel RUN_ID") for line in lines)
    # "a | b" would run both at once, piping one into the other: never a way to write "or"
    piped = [line for line in lines if re.search(r"\|\s*batten\b", line)]
    assert piped == []


def closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize(
    "argv",
    [["runs"], ["runs", "--json"], ["status", "{run_id}"], ["run", "wf.yaml", "--yes"]],
    ids=["runs", "runs --json", "status", "run"],
)
def test_a_closed_stdout_ends_the_command_quietly_with_141(cwd, capsys, argv):
    run_id = waiting_run(capsys)
    stdout = closed_pipe()
    try:
        proc = subprocess.run(
            [batten_exe(), *(a.format(run_id=run_id) for a in argv)],
            cwd=cwd,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(stdout)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def batten_with_a_closed(stream: str, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Runs the installed ``batten ARGV...`` with its ``stream`` ("stdout" or "stderr") a pipe
    whose reader has gone away; the other stream is captured."""
    closed = closed_pipe()
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: closed}
    try:
        return subprocess.run([batten_exe(), *argv], cwd=cwd, text=True, timeout=120, **pipes)
    finally:
        os.close(closed)


def test_a_run_whose_progress_reader_went_away_still_completes(cwd):
    write(GATED)
    proc = batten_with_a_closed("stderr", cwd, "run", "wf.yaml", "--yes")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "DRAFT"
    (run,) = batten.list_runs(store=STORE)
    assert run.status == "completed"


def test_a_run_whose_stdout_reader_went_away_is_recorded_completed(cwd):
    write(GATED)
    proc = batten_with_a_closed("stdout", cwd, "run", "wf.yaml", "--yes")
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
    (run,) = batten.list_runs(store=STORE)
    assert run.status == "completed"
    assert Path("calls.log").read_text() == "draft\n"


def test_an_approval_whose_stderr_reader_went_away_still_continues_the_run(cwd, capsys):
    run_id = waiting_run(capsys)
    proc = batten_with_a_closed("stderr", cwd, "approve", run_id, "gate")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "DRAFT"
    assert batten.get_workflow_status(run_id, store=STORE).status == "completed"


# -- 2. a run that has ended offers and accepts no actions that cannot work ------------------


def test_status_of_a_cancelled_run_offers_no_approval(cwd, capsys):
    run_id = cancelled_waiting_run(capsys)
    code, out, _ = cli(capsys, "status", run_id)
    assert code == 1
    assert "batten approve" not in out and "batten reject" not in out
    assert "waiting for approval" not in out
    gate = next(line for line in out.splitlines() if line.startswith("gate "))
    assert "cancelled" in gate and "never decided" in gate


def test_approving_a_step_of_a_cancelled_run_is_refused_with_exit_2(cwd, capsys):
    run_id = cancelled_waiting_run(capsys)
    code, out, err = cli(capsys, "approve", run_id, "gate")
    assert code == 2
    assert f"run '{run_id}' is cancelled" in err and "can no longer be approved" in err
    assert "approved gate" not in out + err
    assert decisions(run_id) == []


def test_rejecting_a_step_of_a_failed_run_is_refused_with_exit_2(cwd, capsys):
    write("""\
        name: half
        steps:
          - {id: gate, kind: approval, prompt: "ok?", depends_on: []}
          - {id: broken, kind: tool, tool: storytools:until_fixed, args: {text: b},
             depends_on: []}
        """)
    Path("broken").touch()
    code, _, err = cli(capsys, "run", "wf.yaml")
    assert code == 1, err  # the failure ends the run while the gate waits
    run_id = run_id_of(err)
    code, _, err = cli(capsys, "reject", run_id, "gate")
    assert code == 2
    assert f"run '{run_id}' is failed" in err
    assert decisions(run_id) == []


def test_the_python_api_refuses_a_decision_on_a_cancelled_run(cwd, capsys):
    run_id = cancelled_waiting_run(capsys)
    with pytest.raises(ApprovalError, match=r"is cancelled: it has ended.*'gate'"):
        batten.approve(run_id, "gate", by="ann", store=STORE)
    assert decisions(run_id) == []
    assert batten.get_workflow_status(run_id, store=STORE).status == "cancelled"


def test_no_command_prints_none_about_a_cancelled_run(cwd, capsys):
    run_id = cancelled_waiting_run(capsys)
    for argv in (
        ["status", run_id],
        ["status", run_id, "--json"],
        ["runs"],
        ["approve", run_id, "gate"],
        ["reject", run_id, "gate"],
        ["resume", run_id],
        ["cancel", run_id],
    ):
        _, out, err = cli(capsys, *argv)
        assert "None" not in out + err, (argv, out + err)


def test_cancelling_a_run_that_has_ended_is_refused_and_its_resume_still_works(cwd, capsys):
    write(FIXABLE)
    Path("broken").touch()
    code, _, err = cli(capsys, "run", "wf.yaml")
    assert code == 1
    run_id = run_id_of(err)
    code, _, err = cli(capsys, "cancel", run_id)
    assert code == 2
    assert f"run {run_id} is failed: it has ended, nothing to cancel" in err
    Path("broken").unlink()
    code, out, err = cli(capsys, "resume", run_id)  # a cancel request left behind would stop it
    assert code == 0, out + err
    assert out.splitlines()[-1] == "a!"


def test_resuming_a_cancelled_run_is_refused_with_exit_2(cwd, capsys):
    run_id = cancelled_waiting_run(capsys)
    code, out, err = cli(capsys, "resume", run_id)
    assert code == 2
    assert f"run {run_id} is cancelled: it has ended, so there is nothing to resume" in err
    assert "resuming" not in err and out == ""


def test_status_of_a_waiting_run_shows_the_approval_waiting_and_dependents_pending(cwd, capsys):
    run_id = waiting_run(capsys)
    code, out, _ = cli(capsys, "status", run_id)
    assert code == 3
    steps = ("draft ", "gate ", "publish ")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith(steps)}
    assert rows == {"draft": "completed", "gate": "waiting_approval", "publish": "pending"}
    assert "ApprovalPending" not in out and "failed" not in out
    assert f"  approve: batten approve {run_id} gate" in out


def test_status_and_the_run_report_offer_the_same_next_steps(cwd, capsys):
    _, report, err = cli(capsys, "run", write(GATED))
    run_id = run_id_of(err)
    _, status, _ = cli(capsys, "status", run_id)
    offered = [line for line in report.splitlines() if "batten " in line]
    assert offered and all(line in status.splitlines() for line in offered)


# -- 3. read-only commands create nothing; "not found" names the store ----------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["runs"],
        ["runs", "--json"],
        ["status", "r1"],
        ["approve", "r1", "gate"],
        ["reject", "r1", "gate"],
        ["cancel", "r1"],
        ["resume", "r1"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_commands_about_recorded_runs_create_no_store(cwd, capsys, argv):
    cli(capsys, *argv)
    assert sorted(p.name for p in cwd.iterdir()) == ["storytools.py"]


def test_runs_without_a_store_says_which_store_it_looked_in(cwd, capsys):
    code, out, _ = cli(capsys, "runs")
    assert code == 0
    assert out.strip() == (
        f"no runs in {STORE} ({cwd / '.batten' / 'runs.db'}): no such store yet "
        "(batten run creates it)"
    )


def test_status_without_a_store_is_not_found_in_that_store(cwd, capsys):
    code, _, err = cli(capsys, "status", "r1", "--store", "sqlite:///elsewhere/runs.db")
    assert code == 2
    where = f"sqlite:///elsewhere/runs.db ({cwd / 'elsewhere' / 'runs.db'})"
    assert f"run r1 not found in {where}" in err
    assert not (cwd / "elsewhere").exists()


def test_an_unknown_run_in_an_existing_store_is_not_found_in_that_store(cwd, capsys):
    waiting_run(capsys)
    code, _, err = cli(capsys, "approve", "no-such-run", "gate")
    assert code == 2
    assert f"run no-such-run not found in {STORE} ({cwd / '.batten' / 'runs.db'})" in err


def test_no_matching_runs_names_the_store_and_the_filter(cwd, capsys):
    waiting_run(capsys)
    code, out, _ = cli(capsys, "runs", "--status", "failed")
    assert code == 0
    assert out.strip() == f"no failed runs in {STORE} ({cwd / '.batten' / 'runs.db'})"


# -- 4. progress: the right counts and words, a readable bar --------------------------------


def test_a_step_behind_an_undecided_approval_is_waiting_not_blocked(cwd, capsys):
    _, _, err = cli(capsys, "run", write(GATED))
    assert "[1/3] waiting publish (behind approval gate)" in err
    assert "blocked" not in err
    assert "gated: waiting_approval, 1/3 steps" in err


def test_the_plain_counter_never_goes_backwards_through_an_approval(cwd, capsys):
    code, _, err = cli(capsys, "run", write(MAPPED), "--yes")
    assert code == 0, err
    done = counters(err)
    assert done == sorted(done), err
    assert "mapped: completed, 25/25 steps" in err


def test_a_resumed_run_counts_the_steps_it_restored(cwd, capsys):
    code, _, err = cli(capsys, "run", write(MAPPED))
    assert code == 3 and "mapped: waiting_approval, 22/25 steps" in err
    code, _, err = cli(capsys, "approve", run_id_of(err), "gate")
    assert code == 0, err
    assert "[22/25] restored 22 from the store" in err
    assert "mapped: completed, 25/25 steps" in err
    done = counters(err)
    assert done == sorted(done), err


def test_a_step_blocked_by_a_real_failure_is_still_blocked_and_done():
    from types import SimpleNamespace

    stream = io.StringIO()
    progress = Progress(["gate", "lint", "report"], title="t", stream=stream, live=False)
    waiting = SimpleNamespace(error_type="ApprovalPending", error="w", execution_time_ms=0.0)
    broken = SimpleNamespace(error_type="ValueError", error="bad", execution_time_ms=1.0)
    progress.sink("failed", "gate", 1, waiting)
    progress.sink("failed", "lint", 1, broken)
    progress.sink("blocked", "report", 0, SimpleNamespace(error=None, execution_time_ms=0.0))
    assert (progress.done, progress.failed) == (2, 1)
    assert "[2/3] blocked report" in stream.getvalue()


def test_the_display_goes_quiet_when_its_stream_fails():
    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    progress = Progress(["a", "b"], title="t", stream=ClosedPipe(), live=False)  # type: ignore[arg-type]
    progress.sink("started", "a", 1, None)
    progress.sink("completed", "a", 1, batten.StepResult("a", "completed"))
    progress.finish("completed")
    assert progress.done == 1


def read_pty(master: int, proc: subprocess.Popen, timeout: float = 120) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("columns", [80, 120])
def test_the_live_bar_keeps_its_width_and_never_counts_backwards_on_a_terminal(cwd, columns):
    write(TERMINAL)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        proc = subprocess.Popen(
            [batten_exe(), "run", "wf.yaml", "--yes"],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        screen = read_pty(master, proc)
        proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, screen
    frames = [
        m
        for frame in re.split(r"[\r\n]", screen)
        if (m := re.fullmatch(r"progress-on-a-terminal:\s+\d+%\|(.*?)\| (\d+)/(\d+) .*", frame))
    ]
    assert len(frames) >= 3, screen
    widths = {len(m.group(1)) for m in frames}
    assert min(widths) >= 10, screen  # tqdm squeezed it to 1 cell when the postfix was long
    assert max(len(m.group(0)) for m in frames) <= columns, screen
    done = [int(m.group(2)) for m in frames]
    assert done == sorted(done), done
    assert frames[-1].group(2) == frames[-1].group(3) == "28"


# -- 5. the README's test command is CI's ----------------------------------------------------


def test_ci_runs_the_readme_commands_as_written_with_the_ci_pins():
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print-commands"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    lines = shell_lines()
    test_command = next(line for line in lines if line.startswith('pip install -e ".[test]"'))
    first = next(line for line in lines if line.startswith('pip install ".[examples]"'))
    assert printed == [test_command, first]
    assert "-c .ci/constraints.txt" in test_command
    assert "PIP_CONSTRAINT" not in [
        line.split("=")[0].split()[-1]
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("export ")
    ]


# -- 6. an approval records who really decided -----------------------------------------------


def os_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def test_a_decision_records_the_os_user_and_host_beside_the_asserted_name(cwd, capsys):
    run_id = waiting_run(capsys)
    batten.approve(run_id, "gate", by="somebody-else", comment="ok", store=STORE)
    (detail,) = decisions(run_id)
    assert detail["by"] == "somebody-else"
    assert detail["os_user"] == os_user()
    assert detail["host"] == socket.gethostname()


def test_status_shows_who_decided_and_from_which_account(cwd, capsys):
    run_id = waiting_run(capsys)
    code, _, err = cli(capsys, "approve", run_id, "gate", "--by", "ann", "-m", "looks good")
    assert code == 0, err
    code, out, _ = cli(capsys, "status", run_id)
    line = next(line for line in out.splitlines() if line.startswith("gate approved"))
    assert f"gate approved by ann (os user {os_user()} on {socket.gethostname()}) at " in line
    assert line.endswith(": looks good")
    code, out, _ = cli(capsys, "status", run_id, "--json")
    (decision,) = json.loads(out)["decisions"]
    assert decision["by"] == "ann" and decision["os_user"] == os_user()
