"""Process-isolated sync steps (``with_isolation("process")``): a timeout kills the worker
process, values and exceptions cross by pickle, and what cannot cross is a definition error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import batten
import isolated_tools as tools
import pytest
from batten import (
    AgentStep,
    MapStep,
    ParallelStep,
    RetryPolicy,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowConfigError,
    WorkflowDefinitionError,
)

TESTS = Path(__file__).parent
#: Isolated calls at once in the many-kills test.
PARALLEL = 10


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children() -> set[int]:
    """Pids of this process's live children (from /proc: no psutil needed)."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _descendants() -> set[int]:
    """Pids of this process's live descendants (the forkserver's workers are grandchildren)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def test_timeout_kills_the_worker_process_and_the_run_moves_on(execute, tmp_path):
    pid_file = tmp_path / "pid"
    step = (
        ToolStep(
            "sleepy",
            tools.sleep_after_writing_pid,
            args={"pid_file": str(pid_file), "seconds": 30},
        )
        .with_timeout(0.5)
        .with_isolation("process")
    )
    wf = Workflow("kill", "timeout kills").add_step(step)
    execute(Workflow("warm", "warm").add_step(ToolStep("w", tools.noop).with_isolation("process")))
    start = time.monotonic()
    result = execute(wf)
    elapsed = time.monotonic() - start

    r = result.step("sleepy")
    assert r.status == StepStatus.TIMEOUT
    assert r.metadata.get("killed") is True
    assert "worker process was killed" in (r.error or "")
    # Not killed, the step would sleep 30 s; 10 s is far from both that and the 0.5 s timeout.
    assert elapsed < 10, f"the run took {elapsed:.2f}s to move on"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"worker process {pid} is still alive"


def test_a_script_with_a_killed_step_exits_promptly(tmp_path):
    pid_file = tmp_path / "pid"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            import isolated_tools as tools
            from batten import ToolStep, Workflow

            if __name__ == "__main__":
                # A first call starts the worker pool (the forkserver, a worker): a timeout
                # that passes while a worker starts has nothing to kill.
                Workflow("warm", "warm").add_step(
                    ToolStep("w", tools.noop).with_isolation("process")
                ).run()
                wf = Workflow("exit", "exit").add_step(
                    ToolStep(
                        "sleepy",
                        tools.sleep_after_writing_pid,
                        args={{"pid_file": {str(pid_file)!r}, "seconds": 30}},
                    )
                    .with_timeout(0.5)
                    .with_isolation("process")
                )
                r = wf.run().step("sleepy")
                print(r.status.name, r.metadata.get("killed"), flush=True)
            """
        )
    )
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["TIMEOUT", "True"]
    assert elapsed < 10, f"the script took {elapsed:.1f}s to exit"
    assert not _alive(int(pid_file.read_text()))


def test_a_script_exits_without_waiting_for_a_running_isolated_call(tmp_path):
    # A run given up by its caller (no timeout on the step): exit kills the worker.
    pid_file = tmp_path / "pid"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys, time
            from pathlib import Path
            sys.path.insert(0, {str(TESTS)!r})
            import isolated_tools as tools
            from batten import ToolStep, Workflow

            async def main():
                wf = Workflow("exit", "exit").add_step(
                    ToolStep(
                        "sleepy",
                        tools.sleep_after_writing_pid,
                        args={{"pid_file": {str(pid_file)!r}, "seconds": 60}},
                    ).with_isolation("process")
                )
                task = asyncio.ensure_future(wf.execute())
                while not Path({str(pid_file)!r}).exists():
                    await asyncio.sleep(0.05)
                print("started", flush=True)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
    )
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=40, check=False
    )
    elapsed = time.monotonic() - start
    assert "started" in out.stdout, out.stderr
    assert elapsed < 20, f"the script took {elapsed:.1f}s to exit"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_many_killed_steps_leave_no_threads_or_processes_behind(execute, tmp_path):
    warm = Workflow("warm", "warm", max_parallel_steps=PARALLEL)
    for i in range(PARALLEL):
        warm.add_step(
            ToolStep(f"w{i}", tools.sleep, args={"seconds": 5})
            .with_timeout(0.3)
            .with_isolation("process"),
            depends_on=[],
        )
    execute(warm)  # starts the forkserver, the reaper thread and the pool's idle slots
    time.sleep(1.5)
    threads_before = threading.active_count()
    procs_before = len(_descendants())

    wf = Workflow("many", "many kills", max_parallel_steps=PARALLEL)
    for i in range(300):
        wf.add_step(
            ToolStep(
                f"s{i}",
                tools.sleep_after_writing_pid,
                args={"pid_file": str(tmp_path / str(i)), "seconds": 30},
            )
            .with_timeout(0.5)
            .with_isolation("process"),
            depends_on=[],
        )
    result = execute(wf)
    assert [r.status for r in result.steps] == [StepStatus.TIMEOUT] * 300
    # Every call that started (wrote its pid) was killed. A timeout that passed while a fresh
    # worker was still starting (a loaded machine) had nothing of the call to kill.
    started = {int(p.name): int(p.read_text()) for p in tmp_path.iterdir() if p.suffix != ".tmp"}
    for r in result.steps:
        if int(r.step_id[1:]) in started:
            assert r.metadata.get("killed") is True, (r.step_id, r.metadata, r.error)
    assert len(started) >= 100, f"only {len(started)} of 300 calls started"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in started.values()):
        time.sleep(0.1)
    assert not [p for p in started.values() if _alive(p)]

    # The pool keeps warm workers (each a process, a manager thread and a queue-feeder thread),
    # at most one per concurrent call plus the idle ones, however many were killed: 300 kills
    # leaking anything would show hundreds of threads or processes.
    slack_threads, slack_procs = 2 * PARALLEL, PARALLEL
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (
            threading.active_count() <= threads_before + slack_threads
            and len(_descendants()) <= procs_before + slack_procs
        ):
            break
        time.sleep(0.1)
    names = [t.name for t in threading.enumerate()]
    assert threading.active_count() <= threads_before + slack_threads, names
    assert len(_descendants()) <= procs_before + slack_procs


def test_an_exception_keeps_its_type_and_message(execute):
    wf = Workflow("exc", "exc").add_step(
        ToolStep("boom", tools.raise_value_error, args={"message": "x"}).with_isolation("process")
    )
    r = execute(wf).step("boom")
    assert r.status == StepStatus.FAILED
    assert isinstance(r.exception, ValueError)
    assert str(r.exception) == "x"
    assert r.error_type == "ValueError"


def test_a_retry_policy_retries_an_isolated_step(execute, tmp_path):
    counter = tmp_path / "n"
    wf = Workflow("retry", "retry").add_step(
        ToolStep("flaky", tools.fail_until, args={"counter_file": str(counter), "failures": 2})
        .with_retry(
            policy=RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=(ValueError,))
        )
        .with_isolation("process")
    )
    r = execute(wf).step("flaky")
    assert r.status == StepStatus.COMPLETED
    assert r.output == "succeeded after 2 failures"
    assert r.attempts == 3


def test_output_and_rendered_arguments_round_trip(execute):
    wf = Workflow("trip", "round trip")
    wf.add_step(ToolStep("first", tools.echo, args={"n": 1, "nested": {"a": [1, 2]}}))
    wf.add_step(
        ToolStep("second", tools.echo, args={"prev": "{first.result}"}).with_isolation("process")
    )
    result = execute(wf)
    second = result.step("second").output
    assert second["got"] == {"prev": {"got": {"n": 1, "nested": {"a": [1, 2]}}, "pid": os.getpid()}}
    assert second["pid"] != os.getpid()


def test_an_agent_step_runs_isolated(execute):
    wf = Workflow("agent", "agent").add_step(
        AgentStep("a", tools.raise_value_error, message="from the agent").with_isolation("process")
    )
    r = execute(wf).step("a")
    assert isinstance(r.exception, ValueError)
    assert str(r.exception) == "from the agent"


@pytest.mark.parametrize(
    "make",
    [
        lambda: ToolStep("bad", lambda: 1),
        lambda: ToolStep("bad", _closure()),
        lambda: ToolStep("bad", tools.echo, args={"lock": threading.Lock()}),
    ],
    ids=["lambda", "closure", "argument"],
)
def test_what_cannot_be_pickled_is_a_definition_error_naming_the_step(make):
    wf = Workflow("bad", "bad").add_step(make().with_isolation("process"))
    with pytest.raises(WorkflowDefinitionError, match=r"step 'bad'.*pickle"):
        wf.validate()


def _closure():
    captured = 1

    def inner() -> int:
        return captured

    return inner


def test_an_async_callable_cannot_be_isolated():
    async def coro() -> None:
        pass

    wf = Workflow("bad", "bad").add_step(ToolStep("a", coro).with_isolation("process"))
    with pytest.raises(WorkflowDefinitionError, match=r"step 'a'.*async"):
        wf.validate()


def test_an_unknown_isolation_mode_is_a_definition_error():
    with pytest.raises(WorkflowDefinitionError, match=r"step 's'.*\"thread\" or \"process\""):
        ToolStep("s", tools.noop).with_isolation("fiber")


def test_thread_isolation_is_the_default_and_runs_in_this_process(execute):
    step = ToolStep("p", tools.pid)
    assert step.isolation == "thread"
    assert (
        execute(Workflow("t", "t").add_step(step.with_isolation("thread"))).step("p").output
        == os.getpid()
    )


def test_a_workflow_file_sets_isolation_per_step(execute, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: iso
            steps:
              - {id: inside, kind: tool, tool: "isolated_tools:pid"}
              - {id: outside, kind: tool, tool: "isolated_tools:pid", isolation: process}
            """
        )
    )
    wf = batten.load_workflow(path)
    assert [s.isolation for s in wf.steps] == ["thread", "process"]
    result = execute(wf)
    assert result.step("inside").output == os.getpid()
    assert result.step("outside").output != os.getpid()


def test_a_workflow_file_with_an_unknown_isolation_is_a_config_error(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: iso\nsteps:\n  - {id: s, kind: tool, tool: 'isolated_tools:pid', isolation: fiber}\n"
    )
    with pytest.raises(WorkflowConfigError, match="isolation"):
        batten.load_workflow(path)


def test_an_isolated_step_inside_a_map_step_is_a_definition_error():
    inner = ToolStep("each", tools.echo).with_isolation("process")
    wf = Workflow("map", "map").add_step(MapStep("m", [1, 2], inner))
    with pytest.raises(WorkflowDefinitionError, match=r"step 'm'.*with_isolation"):
        wf.validate()


def test_an_isolated_step_inside_a_parallel_step_runs_in_a_process(execute):
    par = ParallelStep(
        "par",
        [ToolStep("inside", tools.pid), ToolStep("outside", tools.pid).with_isolation("process")],
    )
    result = execute(Workflow("par", "par").add_step(par))
    assert result.step("par").status == StepStatus.COMPLETED
    inside, outside = result.step("par").output  # branch outputs, in declaration order
    assert inside == os.getpid()
    assert outside != os.getpid()
