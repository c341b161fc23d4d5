"""Timeouts per attempt and per run really stop the work (async) or abandon it (sync)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from batten import (
    RetryPolicy,
    StepStatus,
    StepTimeoutError,
    ToolStep,
    Workflow,
    WorkflowStatus,
)


def test_async_step_past_its_timeout_is_cancelled_and_its_finally_has_run(execute):
    events = []

    async def slow():
        try:
            events.append("started")
            await asyncio.sleep(30)
            events.append("finished")  # pragma: no cover - must be cancelled
        finally:
            events.append("finally")

    wf = Workflow("timeout", "async timeout").add_step(ToolStep("slow", slow).with_timeout(0.1))
    start = time.perf_counter()
    result = execute(wf)
    elapsed = time.perf_counter() - start

    assert events == ["started", "finally"]
    assert elapsed < 10  # not cancelled, the step would sleep 30 s
    step = result.step("slow")
    assert step.status == StepStatus.TIMEOUT
    assert step.error_type == "StepTimeoutError"
    assert isinstance(step.exception, StepTimeoutError)
    assert step.attempts == 1
    assert step.is_failure
    assert result.status == WorkflowStatus.FAILED
    assert result.failed_steps == ["slow"]
    assert "slow" in result.error


def test_async_step_within_its_timeout_completes(execute):
    async def quick():
        await asyncio.sleep(0.05)
        return "quick"

    wf = Workflow("timeout", "within").add_step(ToolStep("quick", quick).with_timeout(1.0))
    result = execute(wf)
    assert result.step("quick").status == StepStatus.COMPLETED
    assert result.final_output == "quick"


def test_async_step_that_swallows_cancellation_still_ends_as_timeout(execute):
    async def stubborn():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "ignored the cancel"

    wf = Workflow("timeout", "stubborn").add_step(ToolStep("stubborn", stubborn).with_timeout(0.1))
    start = time.perf_counter()
    result = execute(wf)
    assert time.perf_counter() - start < 10  # not cancelled, the step would sleep 30 s
    assert result.step("stubborn").status == StepStatus.TIMEOUT


@pytest.fixture
def release():
    """A ``threading.Event`` set when the test ends: sync steps block on it (30 s at most)."""
    event = threading.Event()
    yield event
    event.set()


def test_sync_step_past_its_timeout_is_abandoned_and_the_run_moves_on(execute, release):
    def stuck():
        release.wait(30)  # blocks until the test ends
        return "too late"

    wf = Workflow("timeout", "sync timeout")
    wf.add_step(ToolStep("stuck", stuck).with_timeout(0.1), depends_on=[])
    wf.add_step(ToolStep("after_stuck", lambda: "never"), depends_on=["stuck"])
    wf.add_step(ToolStep("sibling", lambda: "sibling"), depends_on=[])
    start = time.perf_counter()
    result = execute(wf)
    elapsed = time.perf_counter() - start

    assert elapsed < 10  # waiting for the stuck step would take 30 s
    assert result.step("stuck").status == StepStatus.TIMEOUT
    assert result.step("stuck").error_type == "StepTimeoutError"
    assert result.step("after_stuck").status == StepStatus.BLOCKED
    assert result.step("sibling").status == StepStatus.COMPLETED
    assert result.status == WorkflowStatus.FAILED


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_timeout_applies_per_attempt(execute, release, kind):
    attempts = []

    def sync_tool():
        attempts.append(1)
        if len(attempts) == 1:
            release.wait(30)  # blocks until the test ends
        return "second attempt"

    async def async_tool():
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(30)
        return "second attempt"

    step = (
        ToolStep("step", sync_tool if kind == "sync" else async_tool)
        .with_timeout(0.15)
        .with_retry(policy=RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=0.0))
    )
    result = execute(Workflow("timeout", "per attempt").add_step(step))
    assert result.step("step").status == StepStatus.COMPLETED
    assert result.step("step").attempts == 2
    assert result.final_output == "second attempt"


def test_each_attempt_gets_the_full_timeout(execute):
    """Three 0.6 s attempts under a 1.5 s timeout: the budget is not shared across attempts.

    Shared, the three attempts (1.8 s at least, as a sleep never returns early) would overrun
    it; each attempt alone has 0.9 s to spare for a loaded machine.
    """
    attempts = []

    async def slow_then_ok():
        attempts.append(1)
        await asyncio.sleep(0.6)
        if len(attempts) < 3:
            raise ConnectionError("flaky")
        return "ok"

    step = (
        ToolStep("step", slow_then_ok)
        .with_timeout(1.5)
        .with_retry(policy=RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=0.0))
    )
    result = execute(Workflow("timeout", "per attempt").add_step(step))
    assert result.step("step").status == StepStatus.COMPLETED
    assert result.step("step").attempts == 3


def test_step_timing_out_on_every_attempt_ends_as_timeout(execute):
    async def hang():
        await asyncio.sleep(30)

    step = (
        ToolStep("hang", hang)
        .with_timeout(0.05)
        .with_retry(policy=RetryPolicy(max_attempts=3, initial_interval=0.0, jitter=0.0))
    )
    start = time.perf_counter()
    result = execute(Workflow("timeout", "always").add_step(step))
    assert time.perf_counter() - start < 10  # three uncancelled attempts would take 90 s
    assert result.step("hang").status == StepStatus.TIMEOUT
    assert result.step("hang").attempts == 3


def test_run_timeout_cancels_running_steps_and_never_starts_the_rest(execute):
    events = []

    async def long_running():
        try:
            await asyncio.sleep(30)
        finally:
            events.append("finally")

    wf = Workflow("deadline", "run timeout")
    wf.add_step(ToolStep("quick", lambda: "quick"), depends_on=[])
    wf.add_step(ToolStep("running", long_running), depends_on=[])
    wf.add_step(ToolStep("later", lambda: events.append("later ran")), depends_on=["running"])
    start = time.perf_counter()
    result = execute(wf, timeout=0.2)
    elapsed = time.perf_counter() - start

    assert elapsed < 10  # not cancelled, "running" would sleep 30 s
    assert events == ["finally"]
    assert result.status == WorkflowStatus.FAILED
    assert result.step("quick").status == StepStatus.COMPLETED
    assert result.step("running").status == StepStatus.TIMEOUT
    assert result.step("running").error_type == "StepTimeoutError"
    assert result.step("later").status == StepStatus.CANCELLED
    assert "timeout" in result.error.lower() or "timed out" in result.error.lower()


def test_run_timeout_does_not_wait_for_a_running_sync_step(execute, release):
    wf = Workflow("deadline", "run timeout sync")
    wf.add_step(ToolStep("blocking", lambda: release.wait(30)))  # blocks until the test ends
    wf.add_step(ToolStep("later", lambda: "later"))
    start = time.perf_counter()
    result = execute(wf, timeout=0.15)
    assert time.perf_counter() - start < 10  # waiting for "blocking" would take 30 s
    assert result.step("blocking").status == StepStatus.TIMEOUT
    assert result.step("later").status == StepStatus.CANCELLED
    assert result.status == WorkflowStatus.FAILED


def test_run_timeout_cancels_a_step_waiting_to_retry(execute):
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError("down")

    policy = RetryPolicy(max_attempts=5, initial_interval=30.0, jitter=0.0)
    wf = Workflow("deadline", "retry wait").add_step(
        ToolStep("flaky", flaky).with_retry(policy=policy)
    )
    start = time.perf_counter()
    result = execute(wf, timeout=0.2)
    assert time.perf_counter() - start < 10  # the retry wait alone is 30 s
    assert len(calls) == 1
    assert result.status == WorkflowStatus.FAILED
    assert result.step("flaky").status in {
        StepStatus.TIMEOUT,
        StepStatus.FAILED,
        StepStatus.CANCELLED,
    }


def test_run_finishing_before_its_timeout_is_unaffected(execute):
    wf = Workflow("deadline", "in time").add_step(ToolStep("a", lambda: "a"))
    result = execute(wf, timeout=5.0)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.error is None


def test_run_timeout_is_accepted_by_run_as_well():
    async def hang():
        await asyncio.sleep(30)

    wf = Workflow("deadline", "run()").add_step(ToolStep("hang", hang))
    start = time.perf_counter()
    result = wf.run(timeout=0.1)
    assert time.perf_counter() - start < 10  # not cancelled, the step would sleep 30 s
    assert result.status == WorkflowStatus.FAILED
    assert result.step("hang").status == StepStatus.TIMEOUT
