"""``Workflow.run`` from synchronous code: one event loop per thread, reused across runs."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from batten import ToolStep, Workflow, WorkflowStatus

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def loop_recorder(seen: list[int]) -> Workflow:
    async def record_loop() -> int:
        loop_id = id(asyncio.get_running_loop())
        seen.append(loop_id)
        return loop_id

    wf = Workflow("loops", "record the running loop")
    wf.add_step(ToolStep("record", record_loop))
    return wf


def test_run_reuses_one_event_loop_per_thread() -> None:
    seen: list[int] = []
    wf = loop_recorder(seen)
    assert wf.run().status == WorkflowStatus.COMPLETED
    assert wf.run().status == WorkflowStatus.COMPLETED
    assert len(seen) == 2
    assert seen[0] == seen[1]


def test_run_in_another_thread_gets_that_threads_own_loop() -> None:
    seen: list[int] = []
    wf = loop_recorder(seen)
    wf.run()
    worker = threading.Thread(target=wf.run)
    worker.start()
    worker.join()
    assert len(seen) == 2
    assert seen[0] != seen[1]


def test_run_carries_the_callers_contextvars_on_every_call() -> None:
    def read() -> str:
        return request_id.get()

    wf = Workflow("ctx", "contextvars")
    wf.add_step(ToolStep("read", read))
    token = request_id.set("first")
    try:
        assert wf.run().final_output == "first"
        request_id.set("second")
        assert wf.run().final_output == "second"
    finally:
        request_id.reset(token)


# --------------------------------------------------------------------------------------------
# run() inside a running loop (a notebook cell)


async def _bound_event() -> tuple[asyncio.Event, asyncio.Task[Any]]:
    """An ``asyncio.Event`` bound to the running loop: a waiter on it makes asyncio attach it."""
    event = asyncio.Event()
    waiter = asyncio.get_running_loop().create_task(event.wait())
    await asyncio.sleep(0)  # the waiter runs and binds the event to this loop
    return event, waiter


def test_run_inside_a_running_loop_names_the_loop_mismatch_and_the_fix() -> None:
    async def cell() -> Any:
        event, waiter = await _bound_event()

        async def wait_for_notebook_event() -> str:
            await asyncio.wait_for(event.wait(), timeout=10)
            return "never"

        wf = Workflow("nb", "uses the notebook's event")
        wf.add_step(ToolStep("wait", wait_for_notebook_event))
        result = wf.run()  # blocks this loop; the step runs on the helper thread's loop
        event.set()
        await asyncio.wait_for(waiter, timeout=10)
        return result

    result = asyncio.run(cell())
    assert result.status == WorkflowStatus.FAILED
    step = result.steps[0]
    assert step.error_type == "EventLoopMismatchError"
    assert "different event loop" in str(step.error)  # asyncio's own words are kept
    assert "await workflow.execute(context)" in str(step.error)
    assert step.attempts == 1  # a BattenError: the default policy does not retry it


def test_execute_in_the_same_loop_uses_the_notebooks_objects() -> None:
    async def cell() -> Any:
        event, waiter = await _bound_event()

        async def wait_for_notebook_event() -> str:
            await asyncio.wait_for(event.wait(), timeout=10)
            return "set"

        wf = Workflow("nb", "uses the notebook's event")
        wf.add_step(ToolStep("wait", wait_for_notebook_event))
        asyncio.get_running_loop().call_later(0.05, event.set)
        result = await wf.execute()
        await asyncio.wait_for(waiter, timeout=10)
        return result

    result = asyncio.run(cell())
    assert result.status == WorkflowStatus.COMPLETED
    assert result.final_output == "set"


def test_a_loop_error_outside_run_in_a_loop_is_recorded_unchanged() -> None:
    async def raises() -> None:
        raise RuntimeError("Task got Future attached to a different loop")

    wf = Workflow("plain", "no running loop")
    wf.add_step(ToolStep("raise", raises).with_retry(max_attempts=1))
    result = wf.run()  # no running loop: run() does not use the helper thread
    assert result.steps[0].error_type == "RuntimeError"


def test_run_installs_its_ctrl_c_handler_only_while_it_runs() -> None:
    # `Workflow.run` sets asyncio.Runner's SIGINT handler through `_signal` (issue 18): the
    # handler (cancel the main task, then KeyboardInterrupt) is there while the run runs and
    # the default one is back afterwards, as with `Runner.run`.
    import signal

    seen = []

    async def step() -> None:
        seen.append(signal.getsignal(signal.SIGINT))

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    Workflow("sigint", "sigint").add_step(ToolStep("s", step)).run()
    assert seen and seen[0] is not signal.default_int_handler
    assert getattr(seen[0], "func", None) is not None  # Runner's functools.partial
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
