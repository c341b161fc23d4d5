"""``Workflow.run`` from synchronous code: one event loop per thread, reused across runs."""

from __future__ import annotations

import asyncio
import contextvars
import threading

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
