"""Async steps: the step driver each Task runs, and chains of async steps sharing one Task.

A chain of async steps (each readied by the one before) runs on one asyncio Task, each step
renamed and in a context of its own (see ``Driver`` in src/py/run/callback.rs); these tests pin
what a user can observe of that to what a Task per step gave.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time
import warnings

import pytest
from batten import ToolStep, Workflow, WorkflowContext, WorkflowStatus

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("MARK", default="unset")


def chain_of(n: int, tool, name: str = "chain") -> Workflow:
    workflow = Workflow(name, name)
    for i in range(n):
        workflow.add_step(ToolStep(f"s{i}", tool))
    return workflow


def test_each_chained_async_step_sees_its_own_task_name_and_a_fresh_context():
    seen: list[tuple[str, str]] = []

    async def step():
        name = asyncio.current_task().get_name()
        seen.append((name, MARK.get()))
        MARK.set(name)  # must not leak into the next step
        await asyncio.sleep(0)
        assert MARK.get() == name  # still this step's own context after suspending
        return {"n": len(seen)}

    async def main():
        MARK.set("caller")
        return await chain_of(20, step).execute()

    result = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert seen == [(f"s{i}", "caller") for i in range(20)]


def test_chained_steps_without_awaits_complete_and_pass_outputs_along():
    async def inc(context):
        return {"counter": context["counter"] + 1}

    workflow = chain_of(500, inc)
    result = asyncio.run(workflow.execute(WorkflowContext("chain", variables={"counter": 0})))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.context["counter"] == 500
    assert [s.step_id for s in result.steps] == [f"s{i}" for i in range(500)]


def test_a_long_chain_of_busy_async_steps_still_lets_the_loop_run_other_callbacks():
    # Each step holds the loop ~0.2 ms without awaiting; a chain shares one Task only for
    # ~1 ms of loop time, then the next step gets a Task (a loop turn), so another coroutine
    # keeps ticking. With no bound the 400 steps (~80 ms) would run in one loop turn.
    async def busy():
        end = time.perf_counter() + 0.0002
        while time.perf_counter() < end:
            pass

    ticks = 0
    stop = False

    async def ticker():
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    async def main():
        nonlocal stop
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        result = await chain_of(400, busy).execute()
        during = ticks - before
        stop = True
        await asyncio.wait_for(tick, 10)
        return result, during

    result, during = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert during >= 20, during  # ~80 loop turns expected; one turn means the loop was held


def test_a_callback_queued_before_a_step_ends_runs_before_the_next_async_step():
    # What was queued on the loop before the next async step would have got its own Task
    # runs before that step starts, chained or not (asyncio's FIFO order of ready callbacks).
    order = []

    async def first():
        asyncio.get_running_loop().call_soon(order.append, "callback")
        return 1

    async def second():
        order.append("second")

    workflow = Workflow("w", "w")
    workflow.add_step(ToolStep("first", first))
    workflow.add_step(ToolStep("second", second))
    result = asyncio.run(asyncio.wait_for(workflow.execute(), 30))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert order == ["callback", "second"]


def test_cancelling_the_run_as_a_step_ends_never_starts_the_next_async_step():
    # The run is cancelled from inside the report of "first" (a sync step readied by it
    # cancels the run's task... here: the awaiting task is cancelled by the first step
    # itself before it returns), so "second" must never start, and no coroutine is left
    # unawaited.
    started = []

    async def second():
        started.append("second")
        await asyncio.sleep(5)

    async def main():
        run_task = None

        async def first():
            run_task.cancel()
            return 1

        workflow = Workflow("w", "w")
        workflow.add_step(ToolStep("first", first))
        workflow.add_step(ToolStep("second", second))
        run_task = asyncio.ensure_future(workflow.execute())
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run_task, 10)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        gc.collect()
    assert started == []


def test_a_timeout_cancels_a_chained_step_and_the_retry_runs():
    calls = []

    async def quick():
        return 1

    async def slow_once():
        calls.append(asyncio.current_task().get_name())
        if len(calls) == 1:
            await asyncio.sleep(30)
        return 2

    from batten import RetryPolicy

    workflow = Workflow("t", "t")
    workflow.add_step(ToolStep("quick", quick))
    workflow.add_step(
        ToolStep("slow", slow_once)
        .with_timeout(0.2)
        .with_retry(policy=RetryPolicy(max_attempts=2, initial_interval=0))
    )
    result = asyncio.run(asyncio.wait_for(workflow.execute(), 30))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == 2
    assert calls == ["slow", "slow"]
    assert next(s for s in result.steps if s.step_id == "slow").attempts == 2


def test_an_awaitable_object_that_is_not_a_coroutine_runs_as_a_step():
    class Later:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "done"

    workflow = Workflow("a", "a")

    async def before():
        return 0

    workflow.add_step(ToolStep("before", before))
    workflow.add_step(ToolStep("later", lambda: Later()))
    result = asyncio.run(workflow.execute())
    assert result.status == WorkflowStatus.COMPLETED, result.error


def test_keyboard_interrupt_in_an_async_step_is_recorded_and_reraised():
    async def interrupted():
        raise KeyboardInterrupt

    workflow = Workflow("k", "k").add_step(ToolStep("k", interrupted))
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(asyncio.wait_for(workflow.execute(), 30))


def test_a_tools_fixed_args_reach_every_run_unchanged_even_if_the_tool_mutates_them():
    # The compiled plan binds a step's args without copying them (see steps.base._bound_call);
    # each call still gets its own keyword dict, so a tool mutating its kwargs changes nothing.
    seen = []

    async def tool(**kwargs):
        seen.append(dict(kwargs))
        kwargs["n"] = 99
        kwargs["extra"] = True

    workflow = Workflow("args", "args").add_step(ToolStep("t", tool, {"n": 1}))
    for _ in range(3):
        assert asyncio.run(workflow.execute()).status == WorkflowStatus.COMPLETED
    assert seen == [{"n": 1}] * 3
