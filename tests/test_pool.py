"""``AgentPool`` (seed 002's "Resource Pooling"): a bounded set of agent instances, each used
by one call at a time, waited for without blocking the event loop, replaced after the
configured exceptions, bounded by the step's timeout, counted by ``stats()``.

Instances record their own concurrency, so "at most one call per instance" and "at most
``size`` calls at once" are checked from the instances' side, not the pool's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from batten import (
    AgentPool,
    AgentStep,
    MapStep,
    Registry,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
)
from batten.errors import StepTimeoutError, WorkflowDefinitionError
from batten.pool import PoolStats


class Tracker:
    """Calls in flight across all instances, and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.instances: list[Any] = []

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


class SyncAgent:
    """A sync agent object (``run(message)``) that records its own concurrency."""

    def __init__(self, tracker: Tracker, hold: Any) -> None:
        self.tracker = tracker
        self.hold = hold
        self.active = 0
        self.most = 0
        self.messages: list[str] = []
        tracker.instances.append(self)

    def run(self, message: str) -> str:
        self.active += 1
        self.most = max(self.most, self.active)
        self.tracker.enter()
        try:
            self.hold()
            self.messages.append(message)
            return f"{id(self)}:{message}"
        finally:
            self.tracker.leave()
            self.active -= 1


class AsyncAgent:
    """An async agent object (``arun(message)``) that records its own concurrency."""

    def __init__(self, tracker: Tracker, seconds: float) -> None:
        self.tracker = tracker
        self.seconds = seconds
        self.active = 0
        self.most = 0
        tracker.instances.append(self)

    async def arun(self, message: str) -> str:
        self.active += 1
        self.most = max(self.most, self.active)
        self.tracker.enter()
        try:
            await asyncio.sleep(self.seconds)
            return f"done {message}"
        finally:
            self.tracker.leave()
            self.active -= 1


def step_of(result: Any, step_id: str) -> Any:
    return next(s for s in result.steps if s.step_id == step_id)


def fan_out(pool: AgentPool, items: list[Any]) -> Workflow:
    wf = Workflow("fan")
    wf.add_step(MapStep("fan", items, AgentStep("work", pool, "{item}")))
    return wf


def wait_until(check: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_sync_pool_of_two_runs_six_items_two_at_a_time() -> None:
    tracker = Tracker()
    first_calls = [0]
    lock = threading.Lock()
    holder: list[AgentPool] = []

    def hold() -> None:
        # The first two calls keep their instance until another call waits for one (at most
        # 10 s), so the waits below are certain, not a matter of timing.
        with lock:
            first_calls[0] += 1
            first = first_calls[0] <= 2
        if first:
            wait_until(lambda: holder[0].stats().waiting >= 1)
        time.sleep(0.02)

    pool = AgentPool(lambda: SyncAgent(tracker, hold), 2, name="workers")
    holder.append(pool)
    result = fan_out(pool, list(range(6))).run(timeout=60)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert [o.partition(":")[2] for o in result.final_output] == [str(i) for i in range(6)]
    assert tracker.most <= 2
    assert len(tracker.instances) <= 2
    assert all(agent.most == 1 for agent in tracker.instances)
    assert sum(len(a.messages) for a in tracker.instances) == 6
    stats = pool.stats()
    assert stats.waits >= 1 and stats.wait_seconds > 0
    assert (stats.size, stats.busy, stats.waiting, stats.calls) == (2, 0, 0, 6)
    assert stats.idle == stats.instances == stats.created == len(tracker.instances)


def test_async_pool_waits_on_the_loop_without_blocking_it() -> None:
    tracker = Tracker()
    pool = AgentPool(lambda: AsyncAgent(tracker, 0.1), 2)

    async def main() -> tuple[Any, int]:
        ticks_while_waiting = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks_while_waiting
            while not done.is_set():
                if pool.stats().waiting:
                    ticks_while_waiting += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        result = await fan_out(pool, list(range(6))).execute(timeout=60)
        done.set()
        await task
        return result, ticks_while_waiting

    result, ticks = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == [f"done {i}" for i in range(6)]
    assert tracker.most == 2  # six items on one loop: all start at once, two get instances
    assert len(tracker.instances) == 2
    assert all(agent.most == 1 for agent in tracker.instances)
    assert ticks >= 1  # the loop ran other code while calls waited for an instance
    stats = pool.stats()
    assert stats.waits == 4 and stats.wait_seconds > 0
    assert (stats.busy, stats.waiting, stats.idle, stats.calls) == (0, 0, 2, 6)


def test_an_instance_that_raises_a_replace_on_exception_is_replaced_others_are_reused() -> None:
    made: list[Any] = []

    class Flaky:
        def __init__(self) -> None:
            made.append(self)
            self.served: list[str] = []

        def run(self, message: str) -> str:
            self.served.append(message)
            if message == "boom":
                raise ValueError("bad state")
            if message == "key":
                raise KeyError("not a reason to replace")
            return message

    pool = AgentPool(Flaky, 2, replace_on=(ValueError,))
    wf = Workflow("one")
    wf.add_step(
        AgentStep("a", pool).with_input_function(lambda c: c["m"]).with_retry(max_attempts=1)
    )

    def call(message: str) -> Any:
        return wf.run(WorkflowContext("one", variables={"m": message}))

    assert call("x").final_output == "x"
    assert call("y").final_output == "y"
    assert len(made) == 1  # reused, one at a time
    assert call("key").status == WorkflowStatus.FAILED
    assert call("z").final_output == "z"
    assert len(made) == 1  # KeyError is not in replace_on: kept
    failed = call("boom")
    assert failed.status == WorkflowStatus.FAILED
    assert step_of(failed, "a").error_type == "ValueError"
    assert call("w").final_output == "w"
    assert len(made) == 2  # the factory made a replacement
    assert made[0].served == ["x", "y", "key", "z", "boom"]
    assert made[1].served == ["w"]
    stats = pool.stats()
    assert (stats.created, stats.replaced, stats.instances, stats.calls) == (2, 1, 1, 6)


def test_default_replace_on_replaces_after_any_exception() -> None:
    made: list[int] = []

    def factory() -> Any:
        made.append(1)

        def agent(message: str) -> str:
            raise RuntimeError("down")

        return agent

    pool = AgentPool(factory, 1)
    wf = Workflow("w")
    wf.add_step(AgentStep("a", pool, "hi").with_retry(max_attempts=1))
    assert wf.run().status == WorkflowStatus.FAILED
    assert wf.run().status == WorkflowStatus.FAILED
    assert len(made) == 2  # the first (made at compile time), then a replacement for it
    assert pool.stats().replaced == 2


def two_steps_sharing(pool: AgentPool, wait_timeout: float) -> Workflow:
    wf = Workflow("share", continue_on_error=True)
    wf.add_step(AgentStep("holder", pool, "hold").with_retry(max_attempts=1))
    wf.add_step(
        AgentStep("waiter", pool, "wait").with_timeout(wait_timeout).with_retry(max_attempts=1),
        depends_on=[],
    )
    return wf


def test_a_sync_wait_gives_up_at_the_steps_timeout() -> None:
    tracker = Tracker()
    order: list[str] = []

    def hold() -> None:
        order.append("start")
        time.sleep(1.5)  # 5x the waiter's timeout

    pool = AgentPool(lambda: SyncAgent(tracker, hold), 1)
    result = two_steps_sharing(pool, 0.3).run(timeout=60)
    assert step_of(result, "holder").status == StepStatus.COMPLETED
    assert step_of(result, "waiter").status == StepStatus.TIMEOUT
    # The abandoned call's wait ended with the timeout: it never took the instance after the
    # holder gave it back.
    time.sleep(0.3)
    assert tracker.instances[0].messages == ["hold"]
    stats = pool.stats()
    assert (stats.calls, stats.waits, stats.waiting, stats.busy, stats.idle) == (1, 1, 0, 0, 1)
    assert 0.1 < stats.wait_seconds < 1.4


def test_an_async_wait_is_cancelled_at_the_steps_timeout() -> None:
    tracker = Tracker()
    pool = AgentPool(lambda: AsyncAgent(tracker, 1.5), 1)
    result = asyncio.run(two_steps_sharing(pool, 0.3).execute(timeout=60))
    assert step_of(result, "holder").status == StepStatus.COMPLETED
    assert step_of(result, "waiter").status == StepStatus.TIMEOUT
    stats = pool.stats()
    assert (stats.calls, stats.waits, stats.waiting, stats.busy, stats.idle) == (1, 1, 0, 0, 1)


def test_acquire_timeout_is_a_step_timeout_error() -> None:
    tracker = Tracker()
    pool = AgentPool(lambda: AsyncAgent(tracker, 1.5), 1, acquire_timeout=0.2)
    result = asyncio.run(two_steps_sharing(pool, 30).execute(timeout=60))
    waiter = step_of(result, "waiter")
    assert waiter.status == StepStatus.TIMEOUT  # as any StepTimeoutError a step raises
    assert waiter.error_type == "StepTimeoutError"
    assert "agent pool (size 1)" in (waiter.error or "")
    assert pool.stats().waiting == 0


def test_a_pool_in_a_private_registry_serves_a_phases_workflow() -> None:
    seen: list[str] = []

    def factory() -> Any:
        def planner(message: str) -> str:
            seen.append(message)
            return "planned"

        return planner

    pool = AgentPool(factory, 2, name="pooled_planner_16")
    reg = Registry(agents=[pool])
    config = {
        "name": "pooled",
        "phases": [
            {"name": "one", "agent": "pooled_planner_16"},
            {"name": "two", "agent": "pooled_planner_16"},
        ],
    }
    result = Workflow.from_config(config, registry=reg).run()
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert seen == ["", ""]
    assert pool.stats().calls == 2


def test_a_pydantic_ai_agent_as_the_pooled_instance() -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    made: list[Any] = []

    def factory() -> Any:
        agent = Agent(TestModel(custom_output_text="pooled answer"))
        made.append(agent)
        return agent

    pool = AgentPool(factory, 2)
    result = fan_out(pool, ["a", "b", "c", "d"]).run(timeout=60)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == ["pooled answer"] * 4
    assert 1 <= len(made) <= 2
    stats = pool.stats()
    assert stats.calls == 4 and stats.busy == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"factory": 42, "size": 2}, "factory"),
        ({"factory": lambda: None, "size": 0}, "size"),
        ({"factory": lambda: None, "size": "2"}, "size"),
        ({"factory": lambda: None, "size": True}, "size"),
        ({"factory": lambda: None, "size": 2, "replace_on": 42}, "replace_on"),
        ({"factory": lambda: None, "size": 2, "replace_on": (int,)}, "replace_on"),
        ({"factory": lambda: None, "size": 2, "acquire_timeout": -1}, "acquire_timeout"),
        ({"factory": lambda: None, "size": 2, "name": 3}, "name"),
    ],
)
def test_bad_arguments_are_typed_errors_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=field):
        AgentPool(**kwargs)


def test_an_async_factory_is_refused() -> None:
    async def factory() -> Any:
        return None

    with pytest.raises(WorkflowDefinitionError, match="factory"):
        AgentPool(factory, 1)


def test_instances_are_made_lazily_and_a_bad_instance_fails_at_compile() -> None:
    made: list[int] = []

    def factory() -> Any:
        made.append(1)
        return lambda m: m

    pool = AgentPool(factory, 3)
    step = AgentStep("a", pool, "x")
    assert made == []  # not at the step's creation
    wf = Workflow("w")
    wf.add_step(step)
    wf.validate()
    assert made == [1]  # the first, to learn the call's kind
    assert wf.run().final_output == "x"
    assert made == [1]

    broken = AgentPool(lambda: 42, 1)
    wf = Workflow("w2")
    wf.add_step(AgentStep("a", broken, "x"))
    with pytest.raises(WorkflowDefinitionError, match="step 'a'"):
        wf.validate()
    assert broken.stats().instances == 0  # the unusable instance was dropped


def test_stats_is_a_frozen_snapshot() -> None:
    pool = AgentPool(lambda: lambda m: m, 4)
    stats = pool.stats()
    assert isinstance(stats, PoolStats)
    assert stats == PoolStats(4, 0, 0, 0, 0, 0, 0, 0.0, 0, 0)
    with pytest.raises(AttributeError):
        stats.busy = 3  # type: ignore[misc]
    assert "size=4" in repr(pool)


def test_a_failing_factory_gives_its_room_back() -> None:
    attempts: list[int] = []

    def factory() -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("no connection")
        return lambda m: m

    pool = AgentPool(factory, 1)
    wf = Workflow("w")
    wf.add_step(AgentStep("a", pool, "x"))
    with pytest.raises(OSError):
        wf.validate()
    assert pool.stats().instances == 0
    assert wf.run().final_output == "x"


def test_sync_wait_bound_by_acquire_timeout_raises_step_timeout() -> None:
    release = threading.Event()

    def factory() -> Any:
        def agent(message: str) -> str:
            release.wait(10)
            return message

        return agent

    pool = AgentPool(factory, 1, acquire_timeout=0.2)
    wf = Workflow("w", continue_on_error=True)
    wf.add_step(AgentStep("a", pool, "x").with_retry(max_attempts=1))
    wf.add_step(AgentStep("b", pool, "y").with_retry(max_attempts=1), depends_on=[])
    timer = threading.Timer(1.5, release.set)
    timer.start()
    try:
        result = wf.run(timeout=60)
    finally:
        timer.cancel()
        release.set()
    statuses = sorted(s.status for s in result.steps)
    assert statuses == sorted([StepStatus.COMPLETED, StepStatus.TIMEOUT])
    failed = next(s for s in result.steps if s.status == StepStatus.TIMEOUT)
    assert failed.error_type == "StepTimeoutError"
    assert "was free within 0.2 s" in (failed.error or "")
    assert issubclass(StepTimeoutError, TimeoutError)


def test_a_pool_of_tools_and_one_pool_shared_by_two_workflows() -> None:
    made: list[int] = []

    def factory() -> Any:
        made.append(1)

        def add(a: int, b: int) -> int:
            return a + b

        return add

    pool = AgentPool(factory, 1)
    tools = Workflow("tools")
    tools.add_step(ToolStep("sum", pool, {"a": 2, "b": 3}))
    agents = Workflow("agents")
    agents.add_step(AgentStep("one", AgentPool(lambda: lambda m: m * 2, 1), "ab"))
    assert tools.run().final_output == 5
    assert agents.run().final_output == "abab"
    again = Workflow("again")
    again.add_step(ToolStep("sum2", pool, {"a": 1, "b": 1}))
    assert again.run().final_output == 2
    assert made == [1]
    assert pool.stats().calls == 2
