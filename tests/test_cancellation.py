"""Cancellation, contextvars, and running from plain code or from inside a running loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest
from batten import (
    RetryPolicy,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowStatus,
)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def context_reading_workflow():
    async def async_step():
        return request_id.get("unset")

    def sync_step():
        return request_id.get("unset")

    wf = Workflow("ctxvars", "contextvars")
    wf.add_step(ToolStep("async_step", async_step), depends_on=[])
    wf.add_step(ToolStep("sync_step", sync_step), depends_on=[])
    wf.add_step(ToolStep("sync_after_async", sync_step), depends_on=["async_step"])
    return wf


def outputs(result):
    return {s.step_id: s.output for s in result.steps}


# -- contextvars -------------------------------------------------------------------------------


def test_contextvars_set_by_the_caller_are_visible_in_async_and_sync_steps():
    wf = context_reading_workflow()

    async def main():
        request_id.set("req-42")
        return await wf.execute()

    result = asyncio.run(main())
    assert outputs(result) == {
        "async_step": "req-42",
        "sync_step": "req-42",
        "sync_after_async": "req-42",
    }


def test_contextvars_are_visible_in_steps_started_by_run():
    wf = context_reading_workflow()

    def main():
        request_id.set("req-run")
        return wf.run()

    result = contextvars.copy_context().run(main)
    assert set(outputs(result).values()) == {"req-run"}


def test_contextvars_are_visible_when_run_is_called_inside_a_running_loop():
    wf = context_reading_workflow()

    async def main():
        request_id.set("req-nested")
        return wf.run()

    result = asyncio.run(main())
    assert set(outputs(result).values()) == {"req-nested"}


def test_steps_setting_contextvars_do_not_leak_them_to_the_caller():
    def setter():
        request_id.set("from-step")

    async def async_setter():
        request_id.set("from-async-step")

    wf = Workflow("ctxvars", "no leak")
    wf.add_step(ToolStep("sync", setter))
    wf.add_step(ToolStep("async", async_setter))

    async def main():
        request_id.set("caller")
        await wf.execute()
        return request_id.get()

    assert asyncio.run(main()) == "caller"


# -- cancelling the caller's task --------------------------------------------------------------


def test_cancelling_the_task_awaiting_execute_cancels_every_running_step():
    finished = []
    started = []

    def long_step(name):
        async def step():
            started.append(name)
            try:
                await asyncio.sleep(30)
            finally:
                finished.append(name)

        return step

    wf = Workflow("cancel", "cancel")
    wf.add_step(ToolStep("a", long_step("a")), depends_on=[])
    wf.add_step(ToolStep("b", long_step("b")), depends_on=[])
    wf.add_step(ToolStep("after", lambda: started.append("after")), depends_on=["a", "b"])

    async def main():
        task = asyncio.create_task(wf.execute())
        deadline = time.monotonic() + 30
        while len(started) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert sorted(started) == ["a", "b"]
        start = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The steps' finally blocks ran before CancelledError came out of execute().
        assert sorted(finished) == ["a", "b"]
        # Not cancelled, the steps would sleep 30 s; 10 s is far from both that and 0.
        assert time.perf_counter() - start < 10
        await asyncio.sleep(0.05)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())
    assert "after" not in started


def test_cancelling_execute_does_not_wait_for_a_running_sync_step():
    running = threading.Event()
    release = threading.Event()

    def blocking():
        running.set()
        release.wait(30)  # blocks until the test ends (30 s at most)

    wf = Workflow("cancel", "cancel sync").add_step(ToolStep("blocking", blocking))

    async def main():
        task = asyncio.create_task(wf.execute())
        deadline = time.monotonic() + 30
        while not running.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert running.is_set()
        start = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - start

    try:
        # Waiting for the step would take 30 s; 10 s is far from both that and 0.
        assert asyncio.run(main()) < 10
    finally:
        release.set()


def test_cancelling_execute_stops_a_step_waiting_to_retry():
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError("down")

    policy = RetryPolicy(max_attempts=3, initial_interval=0.3, jitter=0.0)
    wf = Workflow("cancel", "retry wait").add_step(
        ToolStep("flaky", flaky).with_retry(policy=policy)
    )

    async def main():
        task = asyncio.create_task(wf.execute())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.4)

    asyncio.run(main())
    assert calls == [1]


def test_a_workflow_can_run_again_after_a_cancelled_run():
    async def slow():
        await asyncio.sleep(10)

    wf = Workflow("cancel", "rerun")
    wf.add_step(
        ToolStep("maybe_slow", slow).add_condition(lambda ctx: ctx.get("slow", False)),
        depends_on=[],
    )
    wf.add_step(ToolStep("quick", lambda: "quick"), depends_on=[])

    async def main():
        task = asyncio.create_task(wf.execute(WorkflowContext("cancel", variables={"slow": True})))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await wf.execute()

    result = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("maybe_slow").status == StepStatus.SKIPPED


def test_concurrent_executions_of_one_workflow_are_independent():
    async def echo(context):
        await asyncio.sleep(0.05)
        return context["n"]

    wf = Workflow("many", "concurrent").add_step(ToolStep("echo", echo))

    async def main():
        return await asyncio.gather(
            *(wf.execute(WorkflowContext("many", variables={"n": n})) for n in range(20))
        )

    results = asyncio.run(main())
    assert [r.final_output for r in results] == list(range(20))
    assert len({r.run_id for r in results}) == 20


# -- run() -------------------------------------------------------------------------------------


def mixed_workflow():
    async def async_step():
        await asyncio.sleep(0.01)
        return {"a": 1}

    def sync_step(context):
        return context["a"] + 1

    wf = Workflow("run", "run()")
    wf.add_step(ToolStep("async_step", async_step))
    wf.add_step(ToolStep("sync_step", sync_step))
    return wf


def test_run_works_without_an_event_loop():
    result = mixed_workflow().run()
    assert result.status == WorkflowStatus.COMPLETED
    assert result.final_output == 2


def test_run_accepts_a_context():
    wf = Workflow("run", "run ctx").add_step(ToolStep("read", lambda context: context["x"]))
    assert wf.run(WorkflowContext("run", variables={"x": 5})).final_output == 5


def test_run_works_inside_a_running_event_loop_like_jupyter():
    async def notebook_cell():
        return mixed_workflow().run()

    result = asyncio.run(notebook_cell())
    assert result.status == WorkflowStatus.COMPLETED
    assert result.final_output == 2


def test_run_inside_a_running_loop_runs_sync_steps_off_that_loops_thread():
    seen = {}

    def sync_step():
        seen["step"] = threading.get_ident()

    wf = Workflow("run", "nested").add_step(ToolStep("s", sync_step))

    async def notebook_cell():
        seen["loop"] = threading.get_ident()
        return wf.run()

    assert asyncio.run(notebook_cell()).status == WorkflowStatus.COMPLETED
    assert seen["step"] != seen["loop"]


def test_run_leaves_no_event_loop_set_behind():
    mixed_workflow().run()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_run_can_be_called_from_a_non_main_thread():
    box = {}

    def worker():
        box["result"] = mixed_workflow().run()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert box["result"].final_output == 2


def test_run_raises_definition_errors_inside_a_running_loop():
    wf = Workflow("run", "bad").add_step(ToolStep("a", lambda: 1), depends_on=["missing"])

    async def notebook_cell():
        with pytest.raises(WorkflowDefinitionError, match="missing"):
            wf.run()

    asyncio.run(notebook_cell())


def test_cancelling_before_an_async_step_task_starts_leaves_no_unawaited_coroutine():
    # The run is cancelled after the async step's task was created but before it ran: its
    # coroutine is never awaited, so the engine must close it (pytest turns the
    # "coroutine ... was never awaited" RuntimeWarning into an error).
    import gc
    import warnings

    async def later():
        await asyncio.sleep(1)

    async def main():
        wf = Workflow("w", "w")
        wf.add_step(ToolStep("first", lambda: 1))
        wf.add_step(ToolStep("second", later))
        runner = asyncio.current_task()
        assert runner is not None
        run_task = None

        def on_done(result):
            if result.step_id == "first":
                run_task.cancel()

        wf.on_step_completed(on_done)
        run_task = asyncio.ensure_future(wf.execute())
        with pytest.raises(asyncio.CancelledError):
            await run_task

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(20):
            asyncio.run(main())
            gc.collect()
