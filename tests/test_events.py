"""Run events: streaming (``stream``, ``execute_workflow_stream``), step and completion
callbacks, and ``WorkflowLogger`` hooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import pytest
from batten import (
    ParallelStep,
    RetryPolicy,
    Step,
    StepResult,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowResult,
    WorkflowStatus,
)
from batten.events import (
    RunFinished,
    StepBlocked,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepFinished,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepTimedOut,
    WorkflowEvent,
    WorkflowLogger,
    execute_workflow_stream,
    stream,
)

# Generous bound for anything that should take milliseconds (2-core, noisy CI machines).
PATIENCE = 10.0


def chain(*steps: Step, **kwargs: Any) -> Workflow:
    """A workflow running ``steps`` one after another."""
    wf = Workflow("wf", "wf", **kwargs)
    for s in steps:
        wf.add_step(s)
    return wf


async def collect(wf: Workflow, context: WorkflowContext | None = None, **kw: Any) -> list[Any]:
    return [e async for e in stream(wf, context, **kw)]


def streamed(wf: Workflow, context: WorkflowContext | None = None, **kw: Any) -> list[Any]:
    """Every event of one run of ``wf``, in the order the stream yielded them."""
    return asyncio.run(asyncio.wait_for(collect(wf, context, **kw), PATIENCE))


def trace(events: list[WorkflowEvent]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.step_id) for e in events]


def assert_causal(events: list[WorkflowEvent], deps: dict[str, list[str]]) -> None:
    """Each step starts after its dependencies ended and ends after it started."""
    position = {(e.kind, e.step_id, getattr(e, "attempt", 0)): i for i, e in enumerate(events)}
    ends = {e.step_id: i for i, e in enumerate(events) if isinstance(e, StepFinished)}
    for i, e in enumerate(events):
        if isinstance(e, StepStarted):
            assert all(ends[d] < i for d in deps.get(e.step_id, [])), trace(events)
        if isinstance(e, StepFinished) and e.result.attempts:
            assert position[("started", e.step_id, 1)] < i, trace(events)


def boom() -> None:
    raise ValueError("boom")


# --- stream: what is reported, in which order ------------------------------------------------


def test_events_are_streamed_while_the_run_is_still_going() -> None:
    # The step waits for the consumer, which only releases it after having received the step's
    # StepStarted: a stream built after the run ended would never get there.
    async def scenario() -> list[tuple[str, str | None]]:
        gate = asyncio.Event()

        async def waits_for_the_consumer() -> str:
            await gate.wait()
            return "released"

        wf = chain(ToolStep("first", lambda: 1), ToolStep("gated", waits_for_the_consumer))
        seen = []
        async for event in stream(wf):
            seen.append(event)
            if isinstance(event, StepStarted) and event.step_id == "gated":
                gate.set()
        assert isinstance(seen[-1], RunFinished)
        assert seen[-1].result.final_output == "released"
        return trace(seen)

    assert asyncio.run(asyncio.wait_for(scenario(), PATIENCE)) == [
        ("started", "first"),
        ("completed", "first"),
        ("started", "gated"),
        ("completed", "gated"),
        ("finished", None),
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_step_starts_after_its_dependency_ended_and_ends_after_it_started(kind: str) -> None:
    def sync_step(tag: str) -> Any:
        def run() -> str:
            time.sleep(0.01)
            return tag

        return run

    def async_step(tag: str) -> Any:
        async def run() -> str:
            await asyncio.sleep(0.01)
            return tag

        return run

    make = sync_step if kind == "sync" else async_step
    wf = chain(*(ToolStep(tag, make(tag)) for tag in "abcd"))
    events = streamed(wf)
    assert trace(events) == [
        *((k, tag) for tag in "abcd" for k in ("started", "completed")),
        ("finished", None),
    ]
    assert [e.result.output for e in events if isinstance(e, StepCompleted)] == list("abcd")


def test_sync_and_async_steps_of_a_diamond_are_reported_in_causal_order() -> None:
    threads: dict[str, int] = {}

    def on_a_worker(tag: str) -> Any:
        def run() -> str:
            threads[tag] = threading.get_ident()
            time.sleep(0.02)
            return tag

        return run

    async def on_the_loop() -> str:
        await asyncio.sleep(0.01)
        return "c"

    wf = Workflow("diamond", "diamond")
    wf.add_step(ToolStep("a", on_a_worker("a")), depends_on=[])
    wf.add_step(ToolStep("b", on_a_worker("b")), depends_on=["a"])
    wf.add_step(ToolStep("c", on_the_loop), depends_on=["a"])
    wf.add_step(ToolStep("d", on_a_worker("d")), depends_on=["b", "c"])
    for _ in range(20):
        events = streamed(wf)
        assert threading.get_ident() not in threads.values()  # sync steps ran on workers
        assert_causal(events, {"b": ["a"], "c": ["a"], "d": ["b", "c"]})
        assert sorted(e.step_id for e in events if isinstance(e, StepCompleted)) == list("abcd")


def test_a_started_event_carries_the_context_the_step_runs_with() -> None:
    def source() -> dict[str, int]:
        return {"n": 41}

    wf = chain(ToolStep("source", source), ToolStep("sink", lambda context: context["n"] + 1))
    started = [
        e
        for e in streamed(wf, WorkflowContext("wf", variables={"seed": 1}))
        if isinstance(e, StepStarted)
    ]
    assert [(e.step_id, e.attempt) for e in started] == [("source", 1), ("sink", 1)]
    assert all(isinstance(e.context, WorkflowContext) for e in started)
    assert started[0].context.workflow_id == "wf"
    assert dict(started[1].context.variables) == {"seed": 1, "n": 41}


def test_a_retried_step_reports_each_failed_attempt_before_the_next_starts() -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    policy = RetryPolicy(max_attempts=3, initial_interval=0.01)
    events = streamed(chain(ToolStep("flaky", flaky).with_retry(policy=policy)))
    assert trace(events) == [
        ("started", "flaky"),
        ("retrying", "flaky"),
        ("started", "flaky"),
        ("retrying", "flaky"),
        ("started", "flaky"),
        ("completed", "flaky"),
        ("finished", None),
    ]
    retries = [e for e in events if isinstance(e, StepRetrying)]
    assert [e.attempt for e in retries] == [1, 2]
    assert [str(e.error) for e in retries] == ["try 1", "try 2"]
    assert all(isinstance(e.error, ConnectionError) for e in retries)
    # 10 ms then 20 ms, +-10% jitter.
    assert 0.009 <= retries[0].delay <= 0.011
    assert 0.018 <= retries[1].delay <= 0.022
    assert [e.attempt for e in events if isinstance(e, StepStarted)] == [1, 2, 3]
    assert events[-2].result.attempts == 3


def test_a_step_past_its_timeout_ends_with_step_timed_out() -> None:
    async def slow() -> None:
        await asyncio.sleep(PATIENCE)

    events = streamed(chain(ToolStep("slow", slow).with_timeout(0.05)))
    assert trace(events) == [("started", "slow"), ("timeout", "slow"), ("finished", None)]
    ended = events[1]
    assert isinstance(ended, StepTimedOut)
    assert ended.result.status == StepStatus.TIMEOUT
    assert ended.result.error_type == "StepTimeoutError"


def test_at_the_run_deadline_the_running_step_times_out_and_the_rest_are_cancelled() -> None:
    async def slow() -> None:
        await asyncio.sleep(PATIENCE)

    events = streamed(chain(ToolStep("slow", slow), ToolStep("after", lambda: 1)), timeout=0.1)
    assert trace(events) == [
        ("started", "slow"),
        ("timeout", "slow"),
        ("cancelled", "after"),
        ("finished", None),
    ]
    assert isinstance(events[2], StepCancelled)
    assert events[2].result.status == StepStatus.CANCELLED
    assert events[-1].result.status == WorkflowStatus.FAILED


def test_a_dependent_of_a_failed_step_is_blocked_without_starting() -> None:
    events = streamed(chain(ToolStep("fails", boom), ToolStep("after", lambda: 1)))
    assert trace(events) == [
        ("started", "fails"),
        ("failed", "fails"),
        ("blocked", "after"),
        ("finished", None),
    ]
    failed, blocked = events[1], events[2]
    assert isinstance(failed, StepFailed)
    assert failed.result.error_type == "ValueError"
    assert isinstance(failed.result.exception, ValueError)
    assert isinstance(blocked, StepBlocked)
    assert blocked.result.attempts == 0
    assert events[-1].result.status == WorkflowStatus.FAILED


def test_a_step_whose_condition_is_false_starts_and_is_skipped() -> None:
    ran = []
    skipped = ToolStep("skipped", lambda: ran.append(1)).add_condition(lambda ctx: False)
    events = streamed(chain(skipped, ToolStep("after", lambda: "after")))
    assert trace(events) == [
        ("started", "skipped"),
        ("skipped", "skipped"),
        ("started", "after"),
        ("completed", "after"),
        ("finished", None),
    ]
    assert isinstance(events[1], StepSkipped)
    assert events[1].result.status == StepStatus.SKIPPED
    assert ran == []


def test_steps_of_a_composite_are_reported_as_parent_slash_child() -> None:
    par = (
        ParallelStep("par")
        .add_branch(ToolStep("x", lambda: 1))
        .add_branch(ToolStep("y", lambda: 2))
    )
    events = streamed(chain(par, ToolStep("after", lambda: 3)))
    ids = [e.step_id for e in events if isinstance(e, StepFinished)]
    assert sorted(ids[:2]) == ["par/x", "par/y"]
    assert ids[2:] == ["par", "after"]
    nested = [e for e in events if isinstance(e, StepFinished) and e.step_id.startswith("par/")]
    assert sorted(e.result.step_id for e in nested) == ["x", "y"]


def test_run_finished_comes_last_and_carries_the_run_result() -> None:
    events = streamed(chain(ToolStep("one", lambda: {"a": 1}), ToolStep("two", lambda: "out")))
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.step_id is None
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    result = finished.result
    assert isinstance(result, WorkflowResult)
    assert (result.workflow_id, result.status, result.final_output, result.error) == (
        "wf",
        WorkflowStatus.COMPLETED,
        "out",
        None,
    )
    assert result.total_steps == 2 and len(result.run_id) == 32
    assert result.context["a"] == 1
    ended = [e.result for e in events if isinstance(e, StepFinished)]
    assert [(s.step_id, s.status, s.output) for s in result.steps] == [
        (s.step_id, s.status, s.output) for s in ended
    ]


def test_event_classes_are_frozen_and_name_their_kind() -> None:
    result = StepResult("s", "completed", output=1)
    event = StepCompleted("s", result)
    assert (event.kind, event.step_id, event.result) == ("completed", "s", result)
    with pytest.raises(AttributeError):
        event.step_id = "other"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    classes: list[type[WorkflowEvent]] = [StepStarted, StepRetrying, StepCompleted, StepFailed]
    classes += [StepTimedOut, StepSkipped, StepBlocked, StepCancelled, RunFinished]
    kinds = {cls.kind for cls in classes}
    assert kinds == {
        "started",
        "retrying",
        "completed",
        "failed",
        "timeout",
        "skipped",
        "blocked",
        "cancelled",
        "finished",
    }


def test_a_malformed_workflow_raises_from_the_stream_before_any_step_runs() -> None:
    ran = []
    wf = Workflow("bad", "bad")
    wf.add_step(ToolStep("a", lambda: ran.append(1)), depends_on=["missing"])
    with pytest.raises(WorkflowDefinitionError, match="missing"):
        streamed(wf)
    assert ran == []


# --- stream: leaving early -------------------------------------------------------------------


class Blocker:
    """A workflow whose second step blocks until cancelled; make it inside the event loop.

    Consumers leave only once the step's body is running (``entered``): a run cancelled
    between a step's StepStarted and its first line never runs the step at all.
    """

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.unwound = asyncio.Event()
        self.log: list[str] = []

        async def blocks() -> None:
            self.entered.set()
            try:
                await asyncio.sleep(PATIENCE)
            finally:
                self.log.append("finally")
                self.unwound.set()

        self.workflow = chain(
            ToolStep("first", lambda: 1), ToolStep("blocks", blocks), ToolStep("never", boom)
        )

    async def running(self, event: WorkflowEvent) -> bool:
        """True once ``event`` is the blocking step's start and its body is running."""
        if isinstance(event, StepStarted) and event.step_id == "blocks":
            await self.entered.wait()
            return True
        return False


def test_leaving_the_stream_with_aclose_cancels_the_run_and_waits_for_it() -> None:
    async def scenario() -> None:
        before = asyncio.all_tasks()
        blocker = Blocker()
        async with contextlib.aclosing(stream(blocker.workflow)) as events:
            async for event in events:
                if await blocker.running(event):
                    break
        assert blocker.log == ["finally"]
        assert asyncio.all_tasks() == before  # the run's task is gone

    asyncio.run(asyncio.wait_for(scenario(), PATIENCE))


def test_a_bare_break_cancels_the_run_once_the_stream_is_finalized() -> None:
    async def scenario() -> list[str]:
        blocker = Blocker()
        async for event in stream(blocker.workflow):
            if await blocker.running(event):
                break
        await blocker.unwound.wait()
        return blocker.log

    assert asyncio.run(asyncio.wait_for(scenario(), PATIENCE)) == ["finally"]


def test_cancelling_the_consumer_cancels_the_run() -> None:
    async def consume(blocker: Blocker, started: asyncio.Event) -> None:
        async for event in stream(blocker.workflow):
            if await blocker.running(event):
                started.set()

    async def scenario() -> None:
        before = asyncio.all_tasks()
        blocker, started = Blocker(), asyncio.Event()
        consumer = asyncio.create_task(consume(blocker, started))
        await started.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert blocker.log == ["finally"]
        assert asyncio.all_tasks() == before

    asyncio.run(asyncio.wait_for(scenario(), PATIENCE))


# --- execute_workflow_stream -----------------------------------------------------------------


def test_execute_workflow_stream_yields_each_step_result_in_completion_order() -> None:
    def slow() -> str:
        time.sleep(0.3)
        return "slow"

    wf = Workflow("wf", "wf")
    wf.add_step(ToolStep("slow", slow), depends_on=[])
    wf.add_step(ToolStep("fast", lambda: "fast"), depends_on=[])
    wf.add_step(ToolStep("fails", boom), depends_on=["fast"])
    wf.add_step(ToolStep("blocked", lambda: 1), depends_on=["fails"])

    async def scenario() -> list[StepResult]:
        return [r async for r in execute_workflow_stream(wf, WorkflowContext("wf"))]

    results = asyncio.run(asyncio.wait_for(scenario(), PATIENCE))
    assert all(isinstance(r, StepResult) for r in results)
    assert [(r.step_id, r.status) for r in results] == [
        ("fast", StepStatus.COMPLETED),
        ("fails", StepStatus.FAILED),
        ("blocked", StepStatus.BLOCKED),
        ("slow", StepStatus.COMPLETED),
    ]
    fast, fails, _, slow_result = results
    assert (fast.is_success, fast.output, fast.error) == (True, "fast", None)
    assert (fails.is_failure, fails.error) == (True, "boom")
    assert slow_result.execution_time_ms >= 250


def test_execute_workflow_stream_leaves_nested_steps_to_their_composite() -> None:
    par = (
        ParallelStep("par")
        .add_branch(ToolStep("x", lambda: 1))
        .add_branch(ToolStep("y", lambda: 2))
    )

    async def scenario() -> list[StepResult]:
        return [r async for r in execute_workflow_stream(chain(par))]

    results = asyncio.run(asyncio.wait_for(scenario(), PATIENCE))
    assert [(r.step_id, r.output) for r in results] == [("par", [1, 2])]


# --- callbacks -------------------------------------------------------------------------------


def test_step_callbacks_get_each_result_and_completion_callbacks_the_run(execute: Any) -> None:
    seen: list[tuple[str, str]] = []

    def on_step(result: StepResult) -> None:
        seen.append(("sync", result.step_id))

    async def on_step_async(result: StepResult) -> None:
        await asyncio.sleep(0.01)
        seen.append(("async", result.step_id))

    async def on_run_async(result: WorkflowResult) -> None:
        await asyncio.sleep(0)
        seen.append(("run async", result.status))

    wf = chain(ToolStep("a", lambda: 1), ToolStep("b", lambda: 2))
    wf.on_step_completed(on_step).on_step_completed(on_step_async)
    wf.on_workflow_completed(lambda r: seen.append(("run", r.status)))
    wf.on_workflow_completed(on_run_async)
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    # Async step callbacks finish before the completion callbacks run.
    assert seen[:4] in (
        [("sync", "a"), ("sync", "b"), ("async", "a"), ("async", "b")],
        [("sync", "a"), ("async", "a"), ("sync", "b"), ("async", "b")],
    )
    assert seen[4:] == [("run", "completed"), ("run async", "completed")]


def test_step_callbacks_see_results_in_completion_order_on_the_loop_thread(execute: Any) -> None:
    threads: set[int] = set()
    seen: list[str] = []

    def on_step(result: StepResult) -> None:
        threads.add(threading.get_ident())
        seen.append(result.step_id)

    wf = chain(*(ToolStep(tag, lambda: time.sleep(0.005)) for tag in "abcde"))
    wf.on_step_completed(on_step)

    async def scenario() -> int:
        await wf.execute()
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert seen == list("abcde")
    assert threads == {loop_thread}


def test_a_raising_callback_is_logged_and_the_run_completes(
    execute: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def async_raises(result: StepResult) -> None:
        raise RuntimeError(f"async step callback for {result.step_id}")

    def raises(result: Any) -> None:
        raise RuntimeError("sync callback")

    wf = chain(ToolStep("a", lambda: 1), ToolStep("b", lambda: 2))
    wf.on_step_completed(raises).on_step_completed(async_raises).on_workflow_completed(raises)
    seen: list[str] = []
    wf.on_workflow_completed(lambda r: seen.append("after the raising one"))
    with caplog.at_level(logging.ERROR, logger="batten"):
        result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.steps_completed == 2
    assert seen == ["after the raising one"]
    errors = [r for r in caplog.records if r.name == "batten" and r.levelno == logging.ERROR]
    messages = [str(r.exc_info[1]) for r in errors if r.exc_info]
    assert messages.count("sync callback") == 3  # two steps, one run
    assert sorted(m for m in messages if m.startswith("async")) == [
        "async step callback for a",
        "async step callback for b",
    ]


def test_callbacks_run_when_the_run_is_streamed() -> None:
    seen: list[str] = []
    wf = chain(ToolStep("a", lambda: 1))
    wf.on_step_completed(lambda r: seen.append(r.step_id))
    wf.on_workflow_completed(lambda r: seen.append("run"))
    events = streamed(wf)
    assert trace(events) == [("started", "a"), ("completed", "a"), ("finished", None)]
    assert seen == ["a", "run"]


# --- WorkflowLogger --------------------------------------------------------------------------


class RecordingLogger(WorkflowLogger):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def log_step_start(self, step_name: str, state: WorkflowContext) -> None:
        self.calls.append(("start", step_name, state))

    def log_step_complete(self, step_name: str, result: StepResult, duration_ms: float) -> None:
        self.calls.append(("complete", step_name, result, duration_ms))

    def log_step_retry(
        self, step_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        self.calls.append(("retry", step_name, attempt, delay, error))

    def log_workflow_complete(self, result: WorkflowResult) -> None:
        self.calls.append(("workflow", result))


def test_a_workflow_logger_hears_starts_retries_ends_and_the_run(execute: Any) -> None:
    failures = []

    def flaky() -> dict[str, str]:
        failures.append(1)
        if len(failures) == 1:
            raise ConnectionError("once")
        return {"v": "x"}

    policy = RetryPolicy(max_attempts=3, initial_interval=0.01)
    logger = RecordingLogger()
    wf = chain(ToolStep("flaky", flaky).with_retry(policy=policy), ToolStep("after", boom))
    wf.add_logger(logger)
    result = execute(wf, WorkflowContext("wf", variables={"k": 1}))
    assert [c[:2] for c in logger.calls] == [
        ("start", "flaky"),
        ("retry", "flaky"),
        ("start", "flaky"),
        ("complete", "flaky"),
        ("start", "after"),
        ("complete", "after"),
        ("workflow", result),
    ]
    start = logger.calls[0]
    assert isinstance(start[2], WorkflowContext)
    assert start[2].workflow_id == "wf"
    assert list(start[2].variables.keys()) == ["k"]
    _, _, attempt, delay, error = logger.calls[1]
    assert attempt == 1 and 0.009 <= delay <= 0.011 and isinstance(error, ConnectionError)
    _, _, flaky_result, duration_ms = logger.calls[3]
    assert flaky_result.status == StepStatus.COMPLETED and flaky_result.attempts == 2
    assert duration_ms == flaky_result.execution_time_ms >= 10
    assert logger.calls[5][2].status == StepStatus.FAILED
    assert logger.calls[6][1] is result


def test_the_workflow_logger_base_class_hooks_do_nothing(execute: Any) -> None:
    wf = chain(ToolStep("a", boom).with_retry(policy=RetryPolicy(2, initial_interval=0.0)))
    wf.add_logger(WorkflowLogger())
    assert execute(wf).status == WorkflowStatus.FAILED


def test_a_logger_with_async_hooks_is_awaited_before_the_run_returns(execute: Any) -> None:
    calls: list[str] = []

    class AsyncLogger(WorkflowLogger):
        async def log_step_complete(  # type: ignore[override]
            self, step_name: str, result: StepResult, duration_ms: float
        ) -> None:
            await asyncio.sleep(0.01)
            calls.append(step_name)

        async def log_workflow_complete(self, result: WorkflowResult) -> None:  # type: ignore[override]
            calls.append("workflow")

    wf = chain(ToolStep("a", lambda: 1), ToolStep("b", lambda: 2)).add_logger(AsyncLogger())
    execute(wf)
    assert calls == ["a", "b", "workflow"]


def test_step_callbacks_and_loggers_hear_only_the_workflows_own_steps(execute: Any) -> None:
    seen: list[str] = []
    started: list[str] = []

    class Starts(WorkflowLogger):
        def log_step_start(self, step_name: str, state: WorkflowContext) -> None:
            started.append(step_name)

    wf = Workflow("wf", "wf")
    wf.add_step(ParallelStep("p", [ToolStep("a", lambda: 1), ToolStep("b", lambda: 2)]))
    wf.add_step(ToolStep("after", lambda: 3))
    wf.on_step_completed(lambda r: seen.append(r.step_id))
    wf.add_logger(Starts())
    execute(wf)
    assert seen == ["p", "after"]
    assert started == ["p", "after"]
