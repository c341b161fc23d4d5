"""The default retry classification against the real exceptions of ``openai`` and ``httpx``.

Rate limits (429, honouring Retry-After), server errors (5xx), timeouts and connection errors
retry; 400/401/403/404/422 and validation errors do not (DESIGN §4 "Retries").
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from batten import RetryPolicy, StepStatus, ToolStep, Workflow

REQUEST = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=REQUEST)


def api_error(cls: type[openai.APIStatusError], status: int, **headers: str) -> Exception:
    return cls(f"HTTP {status}", response=response(status, **headers), body=None)


RETRIED = {
    "openai 429 RateLimitError": lambda: api_error(openai.RateLimitError, 429),
    "openai 500 InternalServerError": lambda: api_error(openai.InternalServerError, 500),
    "openai 503 APIStatusError": lambda: api_error(openai.APIStatusError, 503),
    "openai APITimeoutError": lambda: openai.APITimeoutError(request=REQUEST),
    "openai APIConnectionError": lambda: openai.APIConnectionError(request=REQUEST),
    "httpx ReadTimeout": lambda: httpx.ReadTimeout("timed out", request=REQUEST),
    "httpx ConnectTimeout": lambda: httpx.ConnectTimeout("timed out", request=REQUEST),
    "httpx ConnectError": lambda: httpx.ConnectError("refused", request=REQUEST),
    "httpx 502 HTTPStatusError": lambda: httpx.HTTPStatusError(
        "bad gateway", request=REQUEST, response=response(502)
    ),
    "httpx 429 HTTPStatusError": lambda: httpx.HTTPStatusError(
        "slow down", request=REQUEST, response=response(429)
    ),
}

NOT_RETRIED = {
    "openai 400 BadRequestError": lambda: api_error(openai.BadRequestError, 400),
    "openai 401 AuthenticationError": lambda: api_error(openai.AuthenticationError, 401),
    "openai 403 PermissionDeniedError": lambda: api_error(openai.PermissionDeniedError, 403),
    "openai 404 NotFoundError": lambda: api_error(openai.NotFoundError, 404),
    "openai 422 UnprocessableEntityError": lambda: api_error(openai.UnprocessableEntityError, 422),
    "httpx 404 HTTPStatusError": lambda: httpx.HTTPStatusError(
        "missing", request=REQUEST, response=response(404)
    ),
    "httpx 401 HTTPStatusError": lambda: httpx.HTTPStatusError(
        "unauthorized", request=REQUEST, response=response(401)
    ),
}


def attempts_until_done(make_error, execute, policy: RetryPolicy) -> tuple[int, float]:
    calls = []

    def call_model():
        calls.append(time.perf_counter())
        raise make_error()

    wf = Workflow("llm", "llm")
    wf.add_step(ToolStep("call_model", call_model).with_retry(policy=policy))
    result = execute(wf)
    step = result.step("call_model")
    assert step.status == StepStatus.FAILED
    assert step.attempts == len(calls)
    return len(calls), calls[-1] - calls[0]


@pytest.mark.parametrize("name", sorted(RETRIED))
def test_transient_llm_errors_are_retried(name, execute):
    n, _ = attempts_until_done(
        RETRIED[name], execute, RetryPolicy(max_attempts=3, initial_interval=0)
    )
    assert n == 3, name


@pytest.mark.parametrize("name", sorted(NOT_RETRIED))
def test_client_errors_are_not_retried(name, execute):
    n, _ = attempts_until_done(
        NOT_RETRIED[name], execute, RetryPolicy(max_attempts=3, initial_interval=0)
    )
    assert n == 1, name


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: api_error(openai.RateLimitError, 429, **{"retry-after": "0.3"}),
        lambda: httpx.HTTPStatusError(
            "slow down", request=REQUEST, response=response(429, **{"Retry-After": "0.3"})
        ),
    ],
    ids=["openai", "httpx"],
)
def test_retry_after_from_the_response_headers_is_honoured(make_error, execute):
    # Zero backoff of its own: only the server's Retry-After can space the attempts.
    n, spread = attempts_until_done(
        make_error, execute, RetryPolicy(max_attempts=2, initial_interval=0)
    )
    assert n == 2
    assert spread >= 0.28, spread
