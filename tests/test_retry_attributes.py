"""Retry classification reads HTTP facts wherever an exception keeps them: on the instance, on its
class, through a property, or on a ``response`` object."""

from __future__ import annotations

import time

from batten import RetryPolicy, ToolStep, Workflow, WorkflowStatus

FAST = RetryPolicy(max_attempts=3, initial_interval=0, jitter=0)


def attempts_of(exc_factory) -> int:
    def always_fails() -> None:
        raise exc_factory()

    wf = Workflow("classify", "classify")
    wf.add_step(ToolStep("call", always_fails).with_retry(policy=FAST))
    result = wf.run()
    assert result.status == WorkflowStatus.FAILED
    return result.step("call").attempts


class NotFound(Exception):
    status_code = 404  # a class attribute, as web frameworks' HTTP exceptions declare it


class Unavailable(Exception):
    status_code = 503


class PropertyStatus(Exception):
    @property
    def status_code(self) -> int:
        return 404


class Response:
    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers


class WithResponse(Exception):
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = Response(status_code, headers or {})


def test_a_class_level_4xx_status_is_not_retried() -> None:
    assert attempts_of(NotFound) == 1


def test_a_class_level_5xx_status_is_retried() -> None:
    assert attempts_of(Unavailable) == 3


def test_a_status_behind_a_property_is_read() -> None:
    assert attempts_of(PropertyStatus) == 1


def test_a_status_on_the_response_object_is_read() -> None:
    assert attempts_of(lambda: WithResponse(404)) == 1
    assert attempts_of(lambda: WithResponse(502)) == 3


def test_retry_after_in_the_response_headers_delays_the_next_attempt() -> None:
    starts: list[float] = []

    def rate_limited() -> str:
        starts.append(time.perf_counter())
        if len(starts) == 1:
            raise WithResponse(429, {"Retry-After": "0.3"})
        return "ok"

    wf = Workflow("retry-after", "retry-after")
    wf.add_step(ToolStep("call", rate_limited).with_retry(policy=FAST))
    result = wf.run()
    assert result.final_output == "ok"
    assert starts[1] - starts[0] >= 0.25
