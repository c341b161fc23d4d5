"""Retry policies: attempt counting, which exceptions retry, backoff delays and Retry-After."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from batten import BattenError, RetryPolicy, StepStatus, ToolStep, Workflow, WorkflowStatus

NO_WAIT = {"initial_interval": 0.0, "jitter": 0.0}


class HTTPError(Exception):
    """An HTTP client error carrying its status the way requests/httpx/openai exceptions do."""

    def __init__(self, message, *, status_code=None, status=None, response=None, retry_after=None):
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        if status is not None:
            self.status = status
        if response is not None:
            self.response = response
        if retry_after is not None:
            self.retry_after = retry_after


class Flaky:
    """A tool that raises the given exceptions in turn, then returns ``"ok"``.

    ``starts`` records the ``perf_counter`` time at which each attempt began.
    """

    def __init__(self, *errors):
        self.errors = list(errors)
        self.starts = []

    @property
    def calls(self):
        return len(self.starts)

    def __call__(self):
        self.starts.append(time.perf_counter())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    def gaps(self):
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


def run_step(execute, tool, policy):
    wf = Workflow("retry", "retry").add_step(ToolStep("step", tool).with_retry(policy=policy))
    return execute(wf).step("step")


def test_step_failing_twice_then_succeeding_completes_on_its_third_attempt(execute):
    tool = Flaky(RuntimeError("1"), RuntimeError("2"))
    step = run_step(execute, tool, RetryPolicy(max_attempts=3, **NO_WAIT))
    assert step.status == StepStatus.COMPLETED
    assert step.output == "ok"
    assert step.attempts == 3
    assert tool.calls == 3
    assert step.error is None


def test_step_failing_on_every_attempt_fails_after_max_attempts(execute):
    tool = Flaky(*(RuntimeError(str(i)) for i in range(10)))
    step = run_step(execute, tool, RetryPolicy(max_attempts=3, **NO_WAIT))
    assert step.status == StepStatus.FAILED
    assert step.attempts == 3
    assert tool.calls == 3


def test_async_step_is_retried_too(execute):
    calls = []

    async def tool():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    step = run_step(execute, tool, RetryPolicy(max_attempts=5, **NO_WAIT))
    assert step.status == StepStatus.COMPLETED
    assert step.attempts == 3


def test_a_retried_step_succeeding_lets_the_run_complete(execute):
    tool = Flaky(ConnectionError("reset"))
    wf = Workflow("retry", "retry")
    wf.add_step(ToolStep("step", tool).with_retry(policy=RetryPolicy(max_attempts=2, **NO_WAIT)))
    wf.add_step(ToolStep("after", lambda: "after"))
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.final_output == "after"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        TypeError("bad type"),
        KeyError("missing"),
        AttributeError("no attr"),
        NameError("no name"),
        NotImplementedError("todo"),
        BattenError("batten"),
        HTTPError("not found", status_code=404),
        HTTPError("bad request", status=400),
        HTTPError("forbidden", response=SimpleNamespace(status_code=403, headers={})),
    ],
    ids=[
        "ValueError",
        "TypeError",
        "KeyError",
        "AttributeError",
        "NameError",
        "NotImplementedError",
        "BattenError",
        "status_code-404",
        "status-400",
        "response-403",
    ],
)
def test_non_retryable_errors_fail_at_once_by_default(execute, error):
    tool = Flaky(error, error, error)
    step = run_step(execute, tool, RetryPolicy(max_attempts=3, **NO_WAIT))
    assert step.status == StepStatus.FAILED
    assert step.attempts == 1
    assert tool.calls == 1
    assert step.error_type == type(error).__name__


@pytest.mark.parametrize(
    "error",
    [
        HTTPError("unavailable", status_code=503),
        HTTPError("server error", status_code=500),
        HTTPError("rate limited", status_code=429),
        HTTPError("bad gateway", status=502),
        HTTPError("rate limited", response=SimpleNamespace(status_code=429, headers={})),
        ConnectionError("reset"),
        ConnectionResetError("reset by peer"),
        TimeoutError("slow upstream"),
        RuntimeError("generic"),
    ],
    ids=[
        "status_code-503",
        "status_code-500",
        "status_code-429",
        "status-502",
        "response-429",
        "ConnectionError",
        "ConnectionResetError",
        "TimeoutError",
        "RuntimeError",
    ],
)
def test_transient_errors_are_retried_by_default(execute, error):
    tool = Flaky(error, error)
    step = run_step(execute, tool, RetryPolicy(max_attempts=3, **NO_WAIT))
    assert step.status == StepStatus.COMPLETED
    assert step.attempts == 3


def test_retry_on_restricts_retries_to_the_listed_exceptions(execute):
    policy = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,), **NO_WAIT)
    not_listed = Flaky(RuntimeError("generic"), RuntimeError("generic"))
    listed = Flaky(ConnectionError("reset"), ConnectionError("reset"))
    assert run_step(execute, not_listed, policy).attempts == 1
    assert run_step(execute, listed, policy).attempts == 3


def test_retry_on_matches_subclasses(execute):
    policy = RetryPolicy(max_attempts=3, retry_on=(OSError,), **NO_WAIT)
    tool = Flaky(ConnectionResetError("reset"), FileNotFoundError("gone"))
    step = run_step(execute, tool, policy)
    assert step.status == StepStatus.COMPLETED
    assert step.attempts == 3


def test_retry_on_can_make_a_normally_final_error_retryable(execute):
    policy = RetryPolicy(max_attempts=2, retry_on=(ValueError,), **NO_WAIT)
    step = run_step(execute, Flaky(ValueError("parse")), policy)
    assert step.status == StepStatus.COMPLETED
    assert step.attempts == 2


def test_non_retryable_exceptions_are_never_retried(execute):
    policy = RetryPolicy(max_attempts=3, non_retryable=(ConnectionError,), **NO_WAIT)
    step = run_step(execute, Flaky(ConnectionResetError("reset")), policy)
    assert step.status == StepStatus.FAILED
    assert step.attempts == 1


def test_non_retryable_wins_over_retry_on(execute):
    policy = RetryPolicy(
        max_attempts=3, retry_on=(OSError,), non_retryable=(ConnectionError,), **NO_WAIT
    )
    step = run_step(execute, Flaky(ConnectionError("reset")), policy)
    assert step.attempts == 1


def test_final_step_result_keeps_the_last_exception(execute):
    last = RuntimeError("attempt 3 failed")
    tool = Flaky(ConnectionError("attempt 1"), ConnectionError("attempt 2"), last)
    step = run_step(execute, tool, RetryPolicy(max_attempts=3, **NO_WAIT))
    assert step.status == StepStatus.FAILED
    assert step.attempts == 3
    assert step.error_type == "RuntimeError"
    assert step.error == "attempt 3 failed"
    assert step.exception is last


def test_exhausted_retries_report_the_step_in_the_run_error(execute):
    tool = Flaky(ConnectionError("a"), ConnectionError("down"))
    wf = Workflow("retry", "retry")
    wf.add_step(ToolStep("fetch", tool).with_retry(policy=RetryPolicy(max_attempts=2, **NO_WAIT)))
    result = execute(wf)
    assert result.status == WorkflowStatus.FAILED
    assert result.error == "fetch: ConnectionError: down"
    assert result.failed_steps == ["fetch"]


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_grows_by_the_coefficient(execute):
    tool = Flaky(*(ConnectionError(str(i)) for i in range(3)))
    policy = RetryPolicy(max_attempts=3, initial_interval=0.1, backoff_coefficient=3.0, jitter=0.0)
    step = run_step(execute, tool, policy)
    assert step.attempts == 3
    first, second = tool.gaps()
    # A sleep never returns early, so the lower bounds are exact (less a little clock slack):
    # without the coefficient the second gap would be 0.1 s, not 0.3 s. The upper bounds only
    # catch a grossly wrong delay (5x plus 1 s), so a loaded machine cannot trip them.
    assert 0.095 <= first < 1.5, (first, second)
    assert 0.295 <= second < 2.5, (first, second)


def test_backoff_is_capped_at_max_interval(execute):
    tool = Flaky(*(ConnectionError(str(i)) for i in range(4)))
    policy = RetryPolicy(
        max_attempts=4,
        initial_interval=0.05,
        backoff_coefficient=60.0,
        max_interval=0.08,
        jitter=0.0,
    )
    run_step(execute, tool, policy)
    gaps = tool.gaps()
    assert len(gaps) == 3
    assert 0.045 <= gaps[0] < 1.5, gaps
    # Uncapped, the second gap would be 3 s (0.05 x 60): a 2 s bound is wide for the 0.08 s cap
    # yet still fails without it.
    assert all(0.075 <= gap < 2.0 for gap in gaps[1:]), gaps


def test_jitter_keeps_delays_within_its_bounds(execute):
    tool = Flaky(*(ConnectionError(str(i)) for i in range(5)))
    policy = RetryPolicy(max_attempts=5, initial_interval=0.06, backoff_coefficient=1.0, jitter=0.5)
    run_step(execute, tool, policy)
    gaps = tool.gaps()
    assert len(gaps) == 4
    # 0.06 s +/- 50 % is at least 0.03 s (a sleep never returns early); the upper bound only
    # catches a grossly wrong delay (5x the 0.09 s maximum plus 1 s).
    assert all(0.028 <= gap < 1.45 for gap in gaps), gaps


def test_zero_interval_retries_immediately(execute):
    tool = Flaky(*(ConnectionError(str(i)) for i in range(5)))
    start = time.perf_counter()
    step = run_step(execute, tool, RetryPolicy(max_attempts=6, **NO_WAIT))
    assert step.attempts == 6
    # With the default 1 s initial interval five retries would wait 5 s or more.
    assert time.perf_counter() - start < 3.0


def test_retry_after_attribute_is_honoured_as_a_minimum_delay(execute):
    tool = Flaky(HTTPError("slow down", status_code=429, retry_after=0.3))
    policy = RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0.0)
    step = run_step(execute, tool, policy)
    assert step.status == StepStatus.COMPLETED
    assert step.attempts == 2
    assert tool.gaps()[0] >= 0.25


def test_retry_after_header_is_honoured_as_a_minimum_delay(execute):
    response = SimpleNamespace(status_code=429, headers={"Retry-After": "1"})
    tool = Flaky(HTTPError("slow down", response=response))
    policy = RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0.0)
    step = run_step(execute, tool, policy)
    assert step.status == StepStatus.COMPLETED
    assert tool.gaps()[0] >= 0.9


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it(execute):
    tool = Flaky(HTTPError("slow down", status_code=503, retry_after=0.0))
    policy = RetryPolicy(max_attempts=2, initial_interval=0.2, jitter=0.0)
    run_step(execute, tool, policy)
    assert tool.gaps()[0] >= 0.18


def test_other_steps_keep_running_while_a_step_waits_to_retry(execute):
    done = []
    flaky = Flaky(ConnectionError("x"))

    async def other():
        # Start only once "flaky" has failed its first attempt and is waiting to retry.
        deadline = time.monotonic() + 30
        while flaky.calls < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        done.append(time.perf_counter())

    wf = Workflow("retry", "retry")
    policy = RetryPolicy(max_attempts=2, initial_interval=2.0, jitter=0.0)
    wf.add_step(ToolStep("flaky", flaky).with_retry(policy=policy))
    wf.add_step(ToolStep("other", other), depends_on=[])
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert flaky.calls == 2
    # "other" ran inside flaky's 2 s retry wait, not after it (were the run blocked by the
    # wait, "other" would finish after the second attempt started).
    assert flaky.starts[0] <= done[0] < flaky.starts[1]
