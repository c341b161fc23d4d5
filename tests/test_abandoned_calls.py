"""Abandoned sync calls (past their timeout, not isolated) never starve later sync steps, a
step's timeout covers its wait for a worker, and the interpreter does not wait for them at
exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from batten import StepStatus, ToolStep, Workflow, _core

# More than the worker pool's cap (256, src/py/threads/pool.rs).
STUCK = 300


def _stuck_steps(release: threading.Event) -> Workflow:
    def stuck() -> str:
        release.wait(30)
        return "late"

    wf = Workflow("stuck", "abandoned calls", max_parallel_steps=STUCK)
    for i in range(STUCK):
        # 1 s: time for all of them to get a thread (the pool adds one per ~0.2 ms while every
        # worker is blocked) before their deadlines abandon them.
        wf.add_step(ToolStep(f"s{i}", stuck).with_timeout(1.0), depends_on=[])
    return wf


def test_abandoned_calls_do_not_starve_a_later_sync_step(execute):
    release = threading.Event()
    try:
        result = execute(_stuck_steps(release))
        assert all(r.status == StepStatus.TIMEOUT for r in result.steps)
        running, _total = _core._abandoned_calls()
        assert running > 256  # beyond the pool's cap: abandoned threads do not count

        quick = Workflow("quick", "after the stuck ones").add_step(
            ToolStep("quick", lambda: "ok").with_timeout(1)
        )
        start = time.perf_counter()
        after = execute(quick)
        elapsed = time.perf_counter() - start
        # The 1 s attempt timeout covers the wait for a worker, so COMPLETED is the proof; the
        # elapsed bound only catches a run that hung on after it.
        assert after.step("quick").status == StepStatus.COMPLETED
        assert elapsed < 10, f"a trivial step waited {elapsed:.1f}s behind abandoned calls"
    finally:
        release.set()
    deadline = time.monotonic() + 20
    while _core._abandoned_calls()[0] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _core._abandoned_calls()[0] == 0, "abandoned threads did not exit once released"


def test_abandoned_call_count_is_in_the_warning(execute, caplog):
    release = threading.Event()

    def stuck() -> None:
        release.wait(30)

    wf = Workflow("warn", "warning").add_step(ToolStep("stuck", stuck).with_timeout(0.05))
    try:
        with caplog.at_level("WARNING", logger="batten"):
            result = execute(wf)
    finally:
        release.set()
    assert result.step("stuck").metadata.get("abandoned") is True
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "abandoned calls still running in this process" in text


def test_a_queued_sync_step_times_out_while_it_waits_for_a_worker():
    # A child process with a cap of 256 workers all blocked by steps without timeouts: a
    # step queued behind them must time out at its own deadline, never having started.
    script = textwrap.dedent(
        """
        import threading, time
        from batten import StepStatus, ToolStep, Workflow

        release = threading.Event()
        started = []

        def block():
            release.wait(60)

        def queued():
            started.append(True)
            return "ran"

        wf = Workflow("busy", "busy", max_parallel_steps=400)
        for i in range(256):
            wf.add_step(ToolStep(f"b{i}", block), depends_on=[])
        wf.add_step(ToolStep("queued", queued).with_timeout(1.0), depends_on=[])

        import asyncio

        async def main():
            task = asyncio.ensure_future(wf.execute())
            start = time.monotonic()
            while time.monotonic() - start < 4:  # past the queued step's 1 s deadline
                await asyncio.sleep(0.05)
            release.set()
            result = await asyncio.wait_for(task, 30)
            q = result.step("queued")
            print("STATUS", q.status.name, "STARTED", bool(started), "ERR", q.error)

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "STATUS TIMEOUT STARTED False" in out.stdout, out.stdout + out.stderr
    assert "waiting for a worker" in out.stdout


def test_the_interpreter_does_not_wait_for_an_abandoned_call_at_exit():
    script = textwrap.dedent(
        """
        import time
        from batten import ToolStep, Workflow

        wf = Workflow("exit", "exit").add_step(
            ToolStep("sleepy", lambda: time.sleep(30)).with_timeout(0.1)
        )
        print(wf.run().step("sleepy").status.name, flush=True)
        """
    )
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "TIMEOUT"
    assert elapsed < 10, f"the interpreter waited {elapsed:.1f}s for an abandoned call"


def test_an_abandoned_call_returning_during_interpreter_exit_does_not_crash_it(tmp_path):
    # The abandoned call wakes while the interpreter is finalizing (a module global's __del__
    # keeps it there for 1.5 s): the process must still exit 0, every time (DESIGN §3, 3).
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from batten import ToolStep, Workflow

            class SlowToFinalize:
                def __del__(self):
                    time.sleep(1.5)

            keep = SlowToFinalize()
            wf = Workflow("exit", "exit").add_step(
                ToolStep("sleepy", lambda: time.sleep(0.6)).with_timeout(0.1)
            )
            print(wf.run().step("sleepy").status.name, flush=True)
            """
        )
    )
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "TIMEOUT"


def test_abandoned_calls_released_just_before_exit_do_not_crash_the_interpreter(tmp_path):
    # 300 abandoned calls all return while the interpreter exits: each must be out of CPython
    # before it finalizes (this aborted or crashed the process every time before the fix).
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            from batten import ToolStep, Workflow

            release = threading.Event()

            def stuck():
                release.wait(30)

            wf = Workflow("stuck", "stuck", max_parallel_steps=300)
            for i in range(300):
                wf.add_step(ToolStep(f"s{i}", stuck).with_timeout(1.0), depends_on=[])
            wf.run()
            release.set()
            print("done", flush=True)
            """
        )
    )
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "done"
