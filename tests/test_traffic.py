"""Rate limits and circuit breakers, enforced natively before a step's attempt starts."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import batten
import pytest
from batten import MapStep, StepStatus, ToolStep, Workflow, WorkflowStatus

_N = [0]


def _key(name: str) -> str:
    """A fresh key per test: limits are shared process-wide by key."""
    _N[0] += 1
    return f"{name}-{_N[0]}-{time.monotonic_ns()}"


def _max_in_window(starts: list[float], window: float = 1.0) -> int:
    s = sorted(starts)
    return max(sum(1 for x in s if a <= x < a + window) for a in s)


def test_fifty_steps_under_ten_per_second_wait_and_never_burst() -> None:
    starts: list[float] = []

    async def call() -> int:
        starts.append(time.monotonic())
        await asyncio.sleep(0.01)
        return 1

    limit = batten.RateLimit(_key("llm"), requests_per_second=10)
    wf = Workflow("rl")
    for i in range(50):
        wf.add_step(ToolStep(f"s{i}", call).with_rate_limit(limit), depends_on=[])
    began = time.monotonic()
    r = asyncio.run(wf.execute())
    elapsed = time.monotonic() - began
    assert r.status == WorkflowStatus.COMPLETED, "steps wait; they do not fail"
    assert len(starts) == 50
    assert elapsed >= 4.85
    assert _max_in_window(starts) <= 10


def test_a_limit_attached_to_a_tool_holds_every_step_and_run_using_it() -> None:
    starts: list[float] = []

    def lookup(q: str) -> str:
        starts.append(time.monotonic())
        return q

    batten.RateLimit(_key("tool"), requests_per_second=20).attach(lookup)
    wf1, wf2 = Workflow("a"), Workflow("b")
    for wf in (wf1, wf2):
        for i in range(10):
            wf.add_step(ToolStep(f"q{i}", lookup, {"q": str(i)}), depends_on=[])

    async def both() -> list[Any]:
        return list(await asyncio.gather(wf1.execute(), wf2.execute()))

    began = time.monotonic()
    results = asyncio.run(both())
    assert all(r.status == WorkflowStatus.COMPLETED for r in results)
    # 20 starts across two runs at 20/s: shared, so >= 19 intervals of 50 ms.
    assert time.monotonic() - began >= 0.9
    assert _max_in_window(starts) <= 20


def test_a_map_over_items_is_rate_limited_per_item() -> None:
    starts: list[float] = []

    def score(item: int) -> int:
        starts.append(time.monotonic())
        return item * 2

    limit = batten.RateLimit(_key("map"), requests_per_second=20)
    wf = Workflow("m")
    wf.add_step(MapStep("scores", list(range(10)), score).with_rate_limit(limit))
    began = time.monotonic()
    r = asyncio.run(wf.execute())
    assert r.final_output == [i * 2 for i in range(10)]
    assert time.monotonic() - began >= 0.42


def test_max_concurrency_is_shared_across_runs() -> None:
    lock = threading.Lock()
    now = [0]
    peak = [0]

    async def work() -> None:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        await asyncio.sleep(0.05)
        with lock:
            now[0] -= 1

    limit = batten.RateLimit(_key("conc"), max_concurrency=2)
    wfs = []
    for n in range(3):
        wf = Workflow(f"c{n}")
        for i in range(4):
            wf.add_step(ToolStep(f"w{i}", work).with_rate_limit(limit), depends_on=[])
        wfs.append(wf)

    async def all_runs() -> list[Any]:
        return list(await asyncio.gather(*(wf.execute() for wf in wfs)))

    results = asyncio.run(all_runs())
    assert all(r.status == WorkflowStatus.COMPLETED for r in results)
    assert peak[0] == 2


def _token_run(key: str, first_call_tokens: int) -> float:
    """Seconds between the end of a step reporting ``first_call_tokens`` and the start of the
    next step under a 6,000 tokens/minute (100/s) limit."""
    marks: dict[str, float] = {}

    async def llm(context: Any) -> Any:
        from batten._core import Nested

        marks[context.step_id] = time.monotonic()
        tokens = first_call_tokens if context.step_id == "a" else 10
        return Nested("ok", metadata={"usage": {"total_tokens": tokens}})

    limit = batten.RateLimit(key, tokens_per_minute=6000)
    wf = Workflow("tpm")
    wf.add_step(ToolStep("a", llm).with_rate_limit(limit))
    wf.add_step(ToolStep("b", llm).with_rate_limit(limit))
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.COMPLETED
    assert r.step("a").metadata["usage"]["total_tokens"] == first_call_tokens
    return marks["b"] - marks["a"]


def test_reported_token_usage_spends_the_per_minute_budget() -> None:
    # Within budget: the next step starts at once (1 s is wide for "at once", and well under
    # the 2.5 s wait below).
    assert _token_run(_key("tpm-ok"), 100) < 1.0
    # 6,249 tokens against a 6,000 budget: 249 over, so the next step waits until the budget is
    # positive again, (249 + 1) tokens at 100 a second = 2.5 s (a lower bound: never shorter).
    assert _token_run(_key("tpm-over"), 6249) >= 2.45


def test_rate_limit_arguments_are_checked() -> None:
    with pytest.raises(batten.WorkflowDefinitionError, match="requests_per_second"):
        batten.RateLimit(_key("bad"), requests_per_second=0)
    with pytest.raises(batten.WorkflowDefinitionError, match="max_concurrency"):
        batten.RateLimit(_key("bad"), max_concurrency=1.5)  # type: ignore[arg-type]
    key = _key("same")
    assert batten.RateLimit(key, 5) is batten.RateLimit(key, 5)
    with pytest.raises(batten.WorkflowDefinitionError, match="exists"):
        batten.RateLimit(key, 6)
    with pytest.raises(batten.WorkflowDefinitionError, match="with_rate_limit"):
        ToolStep("t", lambda: 1).with_rate_limit("10/s")


def _flaky(fail_times: int) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise ConnectionError("provider down")
        return "ok"

    return call, calls


def test_an_open_circuit_fails_steps_fast_and_the_stream_shows_it() -> None:
    call, calls = _flaky(100)
    breaker = batten.CircuitBreaker(failure_threshold=3, recovery_timeout=60, key=_key("cb"))
    wf = Workflow("cb", continue_on_error=True)
    for i in range(5):
        wf.add_step(ToolStep(f"c{i}", call).with_circuit_breaker(breaker))

    async def main() -> list[Any]:
        return [e async for e in wf.stream()]

    events = asyncio.run(main())
    result = events[-1].result
    assert len(calls) == 3, "the 4th and 5th calls were never made"
    assert [result.step(f"c{i}").error_type for i in range(5)] == [
        "ConnectionError",
        "ConnectionError",
        "ConnectionError",
        "CircuitOpenError",
        "CircuitOpenError",
    ]
    assert result.step("c3").attempts == 1
    changes = [(e.breaker, e.old, e.new, e.step_id) for e in events if e.kind == "circuit"]
    assert changes == [(breaker.key, "closed", "open", "c2")]
    assert breaker.state == "open"


def test_a_circuit_half_opens_after_its_timeout_and_a_success_closes_it() -> None:
    call, calls = _flaky(2)
    breaker = batten.CircuitBreaker(failure_threshold=2, recovery_timeout=0.2, key=_key("cb2"))
    wf = Workflow("cb2", continue_on_error=True)
    wf.add_step(ToolStep("a", call).with_circuit_breaker(breaker))
    wf.add_step(ToolStep("b", call).with_circuit_breaker(breaker))
    r = asyncio.run(wf.execute())
    assert breaker.state == "open"
    assert [s.status for s in r.steps] == [StepStatus.FAILED, StepStatus.FAILED]
    time.sleep(0.25)
    assert breaker.state == "half_open"
    wf2 = Workflow("cb3")
    wf2.add_step(ToolStep("trial", call).with_circuit_breaker(breaker))

    async def main() -> list[Any]:
        return [e async for e in wf2.stream()]

    events = asyncio.run(main())
    assert events[-1].result.status == WorkflowStatus.COMPLETED
    assert len(calls) == 3, "two failures, then the trial call"
    assert [(e.old, e.new) for e in events if e.kind == "circuit"] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert breaker.state == "closed"


def test_a_waiting_breaker_holds_steps_until_it_half_opens() -> None:
    call, calls = _flaky(1)
    breaker = batten.CircuitBreaker(
        failure_threshold=1, recovery_timeout=0.3, wait=True, key=_key("cbw")
    )
    wf = Workflow("cbw", continue_on_error=True)
    wf.add_step(ToolStep("a", call).with_circuit_breaker(breaker))
    wf.add_step(ToolStep("b", call).with_circuit_breaker(breaker))
    began = time.monotonic()
    r = asyncio.run(wf.execute())
    assert r.step("a").status == StepStatus.FAILED
    assert r.step("b").status == StepStatus.COMPLETED, "b waited for the circuit"
    assert len(calls) == 2
    assert time.monotonic() - began >= 0.28


def test_a_breaker_attached_to_an_agent_guards_every_step_using_it() -> None:
    calls: list[str] = []

    def agent(msg: str) -> str:
        calls.append(msg)
        raise TimeoutError("slow model")

    batten.CircuitBreaker(failure_threshold=2, recovery_timeout=60, key=_key("ag")).attach(agent)
    wf = Workflow("ag", continue_on_error=True)
    for i in range(4):
        wf.add_step(batten.AgentStep(f"a{i}", agent, f"m{i}"))
    r = asyncio.run(wf.execute())
    assert calls == ["m0", "m1"]
    assert r.step("a3").error_type == "CircuitOpenError"
    assert "circuit" in (r.step("a3").error or "")


def test_breaker_arguments_are_checked() -> None:
    with pytest.raises(batten.WorkflowDefinitionError, match="failure_threshold"):
        batten.CircuitBreaker(failure_threshold=0)
    with pytest.raises(batten.WorkflowDefinitionError, match="recovery_timeout"):
        batten.CircuitBreaker(recovery_timeout=-1)
    with pytest.raises(batten.WorkflowDefinitionError, match="with_circuit_breaker"):
        ToolStep("t", lambda: 1).with_circuit_breaker(object())
