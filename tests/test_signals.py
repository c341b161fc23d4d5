"""A run stopped by a signal says so: ``batten run`` on SIGTERM, SIGINT and SIGHUP records the
run ``interrupted``, exits 143/130/129 naming the run and its resume command, and ``batten
resume`` finishes it without redoing finished steps; a second signal exits at once; a durable
``execute()`` that is cancelled or hit by ``KeyboardInterrupt`` records ``interrupted``.

Every test runs ``batten`` (or a script) as a real process against a real SQLite file (or a
real redis-server), waits on the store (bounded), and kills what it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import batten
import pytest
from batten import ToolStep, Workflow, WorkflowStatus
from cli_support import batten_cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

STEPS = 10
#: Each step's work, seconds: long enough that a signal lands mid-run, short enough to resume.
WORK_S = 0.3

TOOLS = f"""
import asyncio
import time


def _effect(text):
    with open("effects.log", "a") as f:
        f.write(text + "\\n")


def work(text):
    time.sleep({WORK_S})
    _effect(text)
    return text


async def awork(text):
    await asyncio.sleep({WORK_S})
    _effect(text)
    return text


async def stubborn(text):
    # Ignores cancellation for a while, so a shutdown has something to wait for.
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        await asyncio.sleep(30)
    return text
"""


def _chain(tools: list[str]) -> str:
    lines = ["name: sleepy", "steps:"]
    for i, tool in enumerate(tools):
        dep = f", depends_on: [s{i - 1}]" if i else ""
        lines.append(
            f"  - {{id: s{i}, kind: tool, tool: sigtools:{tool}, args: {{text: s{i}}}{dep}}}"
        )
    return "\n".join(lines) + "\n"


#: Ten steps of WORK_S seconds in a chain, sync and async alternating.
CHAIN = _chain(["work" if i % 2 == 0 else "awork" for i in range(STEPS)])


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    (tmp_path / "sigtools.py").write_text(TOOLS)
    (tmp_path / "wf.yaml").write_text(CHAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATTEN_STORE", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _batten(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("batten")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [str(exe), *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _run_id(store: str) -> str | None:
    try:
        runs = batten.list_runs(store=store)
    except batten.BattenError:
        return None  # the store file is being created
    return runs[0].run_id if runs else None


def _completed(store: str, run_id: str) -> set[str]:
    return {r.step_id for r in batten.run_history(run_id, store=store) if r.status == "completed"}


def _shown_seconds(status_out: str) -> float:
    """The run's duration from ``batten status``'s summary line (``... · 1.52 s`` or
    ``... · 523.5 ms``)."""
    summary = next(line for line in status_out.splitlines() if " · run " in line)
    value, unit = summary.rsplit("·", 1)[1].split()
    return float(value) / (1000.0 if unit == "ms" else 1.0)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)],
    ids=["SIGTERM", "SIGINT", "SIGHUP"],
)
def test_a_signalled_batten_run_records_interrupted_and_resumes(cwd, capsys, sig, code):
    store = f"sqlite:///{cwd}/.batten/runs.db"
    proc = _batten("run", "wf.yaml", cwd=cwd)
    try:
        run_id = _wait(lambda: (cwd / ".batten" / "runs.db").exists() and _run_id(store), "run")
        _wait(lambda: len(_completed(store, run_id)) >= 3, "3 steps completed")
        proc.send_signal(sig)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        _stop(proc)
    assert proc.returncode == code, err
    assert took < 15, f"exited {took:.1f} s after the signal"  # a 10-step run would need 3 s
    name = sig.name
    assert f"batten: {name}: run {run_id} stopped and is recorded interrupted" in err, err
    assert f"continue it with: batten resume {run_id}\n" in err, err
    assert f"run {run_id}: interrupted" in out
    assert batten.get_workflow_status(run_id, store=store).status == WorkflowStatus.INTERRUPTED
    done_before = _completed(store, run_id)
    assert 3 <= len(done_before) < STEPS

    code_, out, _ = batten_cli(capsys, "status", run_id)
    assert code_ == 3
    assert f"run {run_id}: interrupted" in out
    assert f"interrupted by {name}; continue with: batten resume {run_id}" in out
    assert _shown_seconds(out) >= 0.5  # started -> interrupted (3 steps of 0.3 s), not zero
    _, out, _ = batten_cli(capsys, "runs")
    assert run_id in out and "interrupted" in out
    _, out, _ = batten_cli(capsys, "runs", "--status", "interrupted")
    assert run_id in out

    code_, out, err = batten_cli(capsys, "resume", run_id)
    assert code_ == 0, err
    assert out.splitlines()[-1] == f"s{STEPS - 1}"
    effects = Counter((cwd / "effects.log").read_text().split())
    assert set(effects) == {f"s{i}" for i in range(STEPS)}
    # the steps that had completed ran once; only the one in flight may have run twice
    assert {s: effects[s] for s in done_before} == dict.fromkeys(done_before, 1)
    assert sum(effects.values()) <= STEPS + 1
    assert batten.get_workflow_status(run_id, store=store).status == WorkflowStatus.COMPLETED


def test_the_resume_command_names_a_non_default_store_and_yes(cwd, capsys, redis_store_url):
    proc = _batten("run", "wf.yaml", "--store", redis_store_url, "--yes", "-q", cwd=cwd)
    try:
        run_id = _wait(lambda: _run_id(redis_store_url), "run")
        _wait(lambda: len(_completed(redis_store_url, run_id)) >= 2, "2 steps completed")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 143, err
    command = f"batten resume {run_id} --store {redis_store_url} --yes"
    assert f"continue it with: {command}\n" in err, err
    info = batten.get_workflow_status(run_id, store=redis_store_url)
    assert info.status == WorkflowStatus.INTERRUPTED
    # `batten status` (another process, later) offers the same command, --yes included: the
    # run records that it was started with --yes.
    code, out, _ = batten_cli(capsys, "status", run_id, "--store", redis_store_url)
    assert code == 3 and out.rstrip().endswith(f"continue with: {command}"), out
    resumed = _batten(*command.split()[1:], cwd=cwd)
    try:
        _, err = resumed.communicate(timeout=60)
    finally:
        _stop(resumed)
    assert resumed.returncode == 0, err
    assert batten.get_workflow_status(run_id, store=redis_store_url).status == "completed"


def test_without_yes_the_message_says_approvals_wait_again(cwd, capsys):
    (cwd / "wf.yaml").write_text(
        CHAIN + "  - {id: gate, kind: approval, prompt: ok?, depends_on: [s9]}\n"
    )
    store = f"sqlite:///{cwd}/.batten/runs.db"
    proc = _batten("run", "wf.yaml", cwd=cwd)
    try:
        run_id = _wait(lambda: (cwd / ".batten" / "runs.db").exists() and _run_id(store), "run")
        _wait(lambda: _completed(store, run_id), "a step completed")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 143, err
    assert f"continue it with: batten resume {run_id} (its undecided approval steps" in err
    code, out, _ = batten_cli(capsys, "status", run_id)
    assert code == 3 and out.rstrip().endswith(f"continue with: batten resume {run_id}"), out


def test_a_second_sigint_exits_at_once(cwd):
    (cwd / "wf.yaml").write_text(_chain(["awork", "stubborn", "awork"]))
    store = f"sqlite:///{cwd}/.batten/runs.db"
    proc = _batten("run", "wf.yaml", "-q", cwd=cwd)
    try:
        run_id = _wait(lambda: (cwd / ".batten" / "runs.db").exists() and _run_id(store), "run")
        _wait(lambda: _completed(store, run_id), "the first step completed")
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        # The first signal's notice; the shutdown then waits for `stubborn` to unwind.
        line = ""
        deadline = time.monotonic() + 30
        while "stopping run" not in line:
            assert time.monotonic() < deadline
            line = proc.stderr.readline()
            assert line, "stderr closed before the first signal's notice"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 130, err
    assert "second SIGINT: exiting now" in err
    assert "recorded interrupted" not in err  # it did not wait for the graceful end


# -- the Python API ------------------------------------------------------------------------


async def _forever() -> None:
    await asyncio.sleep(30)


def test_a_cancelled_durable_execute_records_interrupted(tmp_path):
    store = f"sqlite:///{tmp_path}/runs.db"
    calls: list[str] = []

    def first() -> str:
        calls.append("first")
        return "ok"

    async def second() -> str:
        if len(calls) == 1:
            calls.append("second (hangs)")
            await _forever()
        calls.append("second")
        return "done"

    wf = Workflow("api", "api").with_store(store)
    wf.add_step(ToolStep("first", first))
    wf.add_step(ToolStep("second", second))

    async def main() -> None:
        task = asyncio.create_task(wf.execute(run_id="r1"))
        deadline = time.monotonic() + 30
        while len(calls) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    info = batten.get_workflow_status("r1", store=store)
    assert info.status == WorkflowStatus.INTERRUPTED
    assert info.error == "interrupted: CancelledError"
    result = asyncio.run(wf.resume("r1"))
    assert result.status == WorkflowStatus.COMPLETED
    assert calls == ["first", "second (hangs)", "second"]  # `first` was not redone


def test_batten_cancel_ends_an_interrupted_run_at_once(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/runs.db"
    wf = Workflow("api", "api").with_store(store)
    wf.add_step(ToolStep("forever", _forever))

    async def main() -> None:
        task = asyncio.create_task(wf.execute(run_id="r2"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert batten.get_workflow_status("r2", store=store).status == "interrupted"
    code, _, err = batten_cli(capsys, "cancel", "r2", "--store", store)
    assert code == 0 and "cancelled run r2 (it was interrupted)" in err
    assert batten.get_workflow_status("r2", store=store).status == "cancelled"


KEYBOARD_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import batten
    from batten import ToolStep, Workflow

    store = sys.argv[1]

    async def forever():
        print("started", flush=True)
        await asyncio.sleep(30)

    wf = Workflow("kbd", "kbd").with_store(store)
    wf.add_step(ToolStep("first", lambda: 1))
    wf.add_step(ToolStep("forever", forever))
    try:
        wf.run()
    except KeyboardInterrupt:
        info = batten.list_runs(store=store)[0]
        print(f"KeyboardInterrupt {info.run_id} {info.status}", flush=True)
    """
)


def test_ctrl_c_in_a_durable_run_records_interrupted(tmp_path):
    script = tmp_path / "kbd.py"
    script.write_text(KEYBOARD_SCRIPT)
    store = f"sqlite:///{tmp_path}/runs.db"
    proc = subprocess.Popen(
        [sys.executable, str(script), store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err[-2000:]
    word, run_id, status = out.split()
    assert (word, status) == ("KeyboardInterrupt", "interrupted")
    assert batten.get_workflow_status(run_id, store=store).status == "interrupted"
    history = batten.run_history(run_id, store=store)
    assert [r.step_id for r in history if r.status == "completed"] == ["first"]


def test_interrupted_is_resumable_and_not_finished():
    from batten.durable import is_finished

    assert WorkflowStatus.INTERRUPTED == "interrupted"
    assert not is_finished(WorkflowStatus.INTERRUPTED)
    assert not is_finished("interrupted")


def test_status_of_a_running_run_counts_time_so_far(tmp_path, capsys, monkeypatch):
    """A run whose process died is left ``running``: its duration is now - started."""
    store = f"sqlite:///{tmp_path}/runs.db"
    wf = Workflow("old", "old").with_store(store)
    wf.add_step(ToolStep("a", lambda: 1))
    from batten._runtime.lifecycle import begin_durable

    begin_durable(wf, None, None, "r-running")
    time.sleep(0.3)
    code, out, _ = batten_cli(capsys, "status", "r-running", "--store", store)
    assert code == 0 and "running" in out
    assert _shown_seconds(out) >= 0.2, out
    _, out, _ = batten_cli(capsys, "runs", "--store", store, "--json")
    assert json.loads(out)[0]["status"] == "running"
    _, out, _ = batten_cli(capsys, "runs", "--store", store)
    header, row = out.splitlines()[:2]
    seconds = row[header.index("SECONDS") :].split()[0]
    assert float(seconds) >= 0.2, out
