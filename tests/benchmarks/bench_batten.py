"""batten: each workload as a ``Workflow`` of ``ToolStep``s, written against /work/api-spec.md.

Runs are awaited with ``await workflow.execute(ctx)`` on one event loop per process; W5 also times
the blocking ``workflow.run(ctx)`` a script would call (it reuses one event loop per thread).

The durable workloads (C, D1-D4) use ``batten.SqliteStore`` (a file in a fresh temporary
directory) with ``durability="sync"``: each step's checkpoint is written before the next step
starts. D3's recovery is ``await workflow.resume(run_id)`` in a new process, timed from opening
the store. ISO runs its step in a child process with ``step.with_isolation("process")`` where
this batten has it (issue 14), beside the same step in-process. W1 and W5 also run with the
OpenTelemetry API imported but no provider, and with the SDK's providers exporting to memory
(issue 16), after their main variants (which run with OpenTelemetry not imported).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _harness import (
    NotApplicable,
    Runner,
    Sizes,
    Suite,
    Tally,
    d3_step,
    expect,
    flaky,
    random_dag,
    triangle,
)
from batten import (
    MapStep,
    RetryPolicy,
    SqliteStore,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowResult,
    WorkflowStatus,
)


def inc(context: Mapping[str, int]) -> dict[str, int]:
    return {"counter": context["counter"] + 1}


async def ainc(context: Mapping[str, int]) -> dict[str, int]:
    return {"counter": context["counter"] + 1}


def chain(name: str, tool: Callable[..., Any], n: int) -> Workflow:
    """`n` steps of `tool`, each after the previous one (add_step's default)."""
    workflow = Workflow(name, name)
    for i in range(n):
        workflow.add_step(ToolStep(f"s{i}", tool))
    return workflow


def counter_context(name: str) -> WorkflowContext:
    return WorkflowContext(name, variables={"counter": 0})


def completed(result: WorkflowResult, steps: int) -> WorkflowResult:
    """Check that a run completed every one of its `steps`."""
    expect((result.status, result.error), (WorkflowStatus.COMPLETED, None))
    expect(result.steps_completed, steps)
    return result


suite = Suite("batten")


@suite.workload("W1")
def w1(s: Sizes) -> Runner:
    workflow = chain("w1", inc, s.w1_steps)

    async def run() -> None:
        result = await workflow.execute(counter_context("w1"))
        expect(completed(result, s.w1_steps).context["counter"], s.w1_steps)

    return run


def new_store() -> SqliteStore:
    """A SQLite store in a fresh temporary directory."""
    return SqliteStore(os.path.join(tempfile.mkdtemp(prefix="batten-bench-"), "runs.db"))


def _durable_w1(s: Sizes, durability: str) -> Runner:
    workflow = chain("c", inc, s.w1_steps).with_store(new_store(), durability=durability)

    async def run() -> None:
        result = await workflow.execute(counter_context("c"))
        expect(completed(result, s.w1_steps).context["counter"], s.w1_steps)

    return run


@suite.workload("C", "sync")
def c_sync(s: Sizes) -> Runner:
    return _durable_w1(s, "sync")


@suite.workload("C", "batch")
def c_batch(s: Sizes) -> Runner:
    return _durable_w1(s, "batch")


@suite.workload("W1a")
def w1a(s: Sizes) -> Runner:
    workflow = chain("w1a", ainc, s.w1_steps)

    async def run() -> None:
        result = await workflow.execute(counter_context("w1a"))
        expect(completed(result, s.w1_steps).context["counter"], s.w1_steps)

    return run


@suite.workload("W2")
def w2(s: Sizes) -> Runner:
    async def sleeper(i: int) -> int:
        await asyncio.sleep(s.w2_sleep)
        return i

    workers = [f"w{i}" for i in range(s.w2_fanout)]

    def total(context: WorkflowContext) -> int:
        return sum(context.results[w] for w in workers)

    workflow = Workflow("w2", "w2")
    for i, worker in enumerate(workers):
        workflow.add_step(ToolStep(worker, sleeper, {"i": i}), depends_on=[])
    workflow.add_step(ToolStep("total", total), depends_on=workers)

    async def run() -> None:
        result = completed(await workflow.execute(), s.w2_fanout + 1)
        expect(result.final_output, triangle(s.w2_fanout))

    return run


@suite.workload("W6")
def w6(s: Sizes) -> Runner:
    async def sleeper(item: int) -> int:
        await asyncio.sleep(s.w2_sleep)
        return item

    workflow = Workflow("w6", "w6")
    workflow.add_step(ToolStep("plan", lambda: {"items": list(range(s.w6_items))}))
    workflow.add_step(MapStep("map", "items", sleeper))
    workflow.add_step(ToolStep("total", lambda context: sum(context.results["map"])))

    async def run() -> None:
        result = completed(await workflow.execute(), 3)
        expect(result.final_output, triangle(s.w6_items))

    return run


@suite.workload("W3")
def w3(s: Sizes) -> Runner:
    tally = Tally()
    workflow = Workflow("w3", "w3")
    for i, deps in enumerate(random_dag(s.w3_nodes)):
        workflow.add_step(ToolStep(f"n{i}", tally.noop), depends_on=[f"n{d}" for d in deps])

    async def run() -> None:
        completed(await workflow.execute(), s.w3_nodes)
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W4")
def w4(s: Sizes) -> Runner:
    policy = RetryPolicy(max_attempts=3, initial_interval=0)
    workflow = Workflow("w4", "w4")
    for i in range(s.w4_steps):
        workflow.add_step(ToolStep(f"s{i}", flaky()).with_retry(policy=policy), depends_on=[])

    async def run() -> None:
        result = completed(await workflow.execute(), s.w4_steps)
        expect({step.attempts for step in result.steps}, {3})

    return run


def w5_execute(s: Sizes, tool: Callable[..., Any]) -> Runner:
    """Awaits a pre-built 3-step chain of `tool` `s.w5_runs` times."""
    workflow = chain("w5", tool, 3)

    async def run() -> None:
        for _ in range(s.w5_runs):
            result = await workflow.execute(counter_context("w5"))
            expect(completed(result, 3).context["counter"], 3)

    return run


@suite.workload("W5", "execute")
def w5(s: Sizes) -> Runner:
    return w5_execute(s, inc)


@suite.workload("W5", "execute, async steps")
def w5_async(s: Sizes) -> Runner:
    """The same chain with `async def` steps: like plain asyncio's baseline, every step runs on
    the loop thread (batten runs sync steps on worker threads: a thread round trip per run)."""
    return w5_execute(s, ainc)


@suite.workload("W5", "run")
def w5_run(s: Sizes) -> Runner:
    workflow = chain("w5", inc, 3)

    def run() -> None:
        for _ in range(s.w5_runs):
            expect(completed(workflow.run(counter_context("w5")), 3).context["counter"], 3)

    return run


@suite.workload("ISO", "in-process")
def iso_in_process(s: Sizes) -> Runner:
    return _iso(s, isolated=False)


@suite.workload("ISO", "process")
def iso_process(s: Sizes) -> Runner:
    return _iso(s, isolated=True)


def inc_counter(counter: int) -> dict[str, int]:
    """``inc`` for ISO: an isolated callable cannot take ``context`` (it crosses by pickle)."""
    return {"counter": counter + 1}


def _counter(context: Mapping[str, int]) -> dict[str, int]:
    return {"counter": context["counter"]}


def _iso(s: Sizes, *, isolated: bool) -> Runner:
    # Both variants call the same callable the same way (its argument computed in this
    # process by with_params_function), so the difference is the process round trip.
    step = ToolStep("s0", inc_counter).with_params_function(_counter)
    if isolated:
        if not hasattr(step, "with_isolation"):
            raise NotApplicable(
                "this batten has no step.with_isolation (issue 14 lands it separately)"
            )
        step = step.with_isolation("process")
    workflow = Workflow("iso", "iso")
    workflow.add_step(step)

    async def run() -> None:
        for _ in range(s.iso_runs):
            result = await workflow.execute(counter_context("iso"))
            expect(completed(result, 1).context["counter"], 1)

    return run


@suite.workload("D1", "sync")
def d1(s: Sizes) -> Runner:
    workflow = chain("d1", inc, s.d1_steps).with_store(new_store(), durability="sync")

    async def run() -> None:
        result = await workflow.execute(counter_context("d1"))
        expect(completed(result, s.d1_steps).context["counter"], s.d1_steps)

    return run


@suite.workload("D2", "sync")
def d2(s: Sizes) -> Runner:
    async def sleeper(i: int) -> int:
        await asyncio.sleep(s.d2_sleep)
        return i

    workers = [f"w{i}" for i in range(s.d2_fanout)]

    def total(context: WorkflowContext) -> int:
        return sum(context.results[w] for w in workers)

    workflow = Workflow("d2", "d2").with_store(new_store(), durability="sync")
    for i, worker in enumerate(workers):
        workflow.add_step(ToolStep(worker, sleeper, {"i": i}), depends_on=[])
    workflow.add_step(ToolStep("total", total), depends_on=workers)

    async def run() -> None:
        result = completed(await workflow.execute(), s.d2_fanout + 1)
        expect(result.final_output, triangle(s.d2_fanout))

    return run


def d3_workflow(directory: Path, s: Sizes) -> Workflow:
    """D3's chain: step i records its side effect (the 25th kills the process once), then
    increments the counter."""

    def step(i: int) -> Callable[[Mapping[str, int]], dict[str, int]]:
        def body(context: Mapping[str, int]) -> dict[str, int]:
            d3_step(directory, i, s)
            return inc(context)

        return body

    workflow = Workflow("d3", "d3")
    for i in range(s.d3_steps):
        workflow.add_step(ToolStep(f"s{i}", step(i)))
    return workflow


@suite.recovery("sync")
def d3(phase: str, directory: Path, s: Sizes) -> float | None:
    workflow = d3_workflow(directory, s)
    path = str(directory / "runs.db")

    async def crash() -> None:
        workflow.with_store(SqliteStore(path), durability="sync")
        await workflow.execute(counter_context("d3"), run_id="d3")
        raise AssertionError("the run survived its SIGKILL")

    async def recover() -> float:
        start = time.perf_counter()
        workflow.with_store(SqliteStore(path), durability="sync")
        result = await workflow.resume("d3")
        seconds = time.perf_counter() - start
        expect(completed(result, s.d3_steps).context["counter"], s.d3_steps)
        return seconds

    return asyncio.run(recover() if phase == "recover" else crash())


@suite.workload("D4", "sync")
def d4(s: Sizes) -> Runner:
    workflow = chain("d4", inc, 3).with_store(new_store(), durability="sync")

    async def run() -> None:
        for _ in range(s.d4_runs):
            result = await workflow.execute(counter_context("d4"))
            expect(completed(result, 3).context["counter"], 3)

    return run


# ---- OpenTelemetry (issue 16): W1 and W5 without it, with the API only, with the SDK --------
# The harness runs one process per workload and its variants in registration order, so each
# workload's first variant ran with opentelemetry not imported at all; these come after it, in
# the order their setup only adds to: the API imported (no provider: batten must stay off),
# then the SDK's providers set (a tracer provider exporting to memory, a meter provider with an
# in-memory reader): the cost of real tracing per step. Neither is ever unset in the process.


def _otel_api() -> None:
    """Imports the OpenTelemetry API (trace and metrics) without setting a provider."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise NotApplicable(f"opentelemetry-api is not installed ({exc})") from None


def _otel_sdk() -> Callable[[], None]:
    """Sets SDK tracer and meter providers (spans to an ``InMemorySpanExporter`` through a
    ``SimpleSpanProcessor``, metrics to an ``InMemoryMetricReader``) as the process's globals,
    once; returns a function that drops the spans kept so far (called once per timed run, so
    memory stays flat)."""
    _otel_api()
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as exc:
        raise NotApplicable(f"opentelemetry-sdk is not installed ({exc})") from None
    provider = trace.get_tracer_provider()
    exporter = getattr(provider, "_batten_bench_exporter", None)
    if exporter is None:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider._batten_bench_exporter = exporter  # type: ignore[attr-defined]
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return exporter.clear


def _spans_made(before: int, steps: int) -> None:
    """Checks that a traced run made a span per step (else the variant measures nothing)."""
    from opentelemetry import trace

    exporter = trace.get_tracer_provider()._batten_bench_exporter  # type: ignore[attr-defined]
    made = len(exporter.get_finished_spans()) - before
    expect(made >= steps, True)


def _w1_traced(s: Sizes, *, sdk: bool) -> Runner:
    clear = _otel_sdk() if sdk else None
    if not sdk:
        _otel_api()
    workflow = chain("w1", inc, s.w1_steps)

    async def run() -> None:
        if clear is not None:
            clear()
        result = await workflow.execute(counter_context("w1"))
        expect(completed(result, s.w1_steps).context["counter"], s.w1_steps)
        if clear is not None:
            _spans_made(0, s.w1_steps)

    return run


@suite.workload("W1", "otel: API, no provider")
def w1_otel_api(s: Sizes) -> Runner:
    return _w1_traced(s, sdk=False)


@suite.workload("W1", "otel: SDK, in-memory exporter")
def w1_otel_sdk(s: Sizes) -> Runner:
    return _w1_traced(s, sdk=True)


def _w5_traced(s: Sizes, *, sdk: bool) -> Runner:
    clear = _otel_sdk() if sdk else None
    if not sdk:
        _otel_api()
    workflow = chain("w5", inc, 3)

    async def run() -> None:
        if clear is not None:
            clear()
        for _ in range(s.w5_runs):
            result = await workflow.execute(counter_context("w5"))
            expect(completed(result, 3).context["counter"], 3)
        if clear is not None:
            _spans_made(0, 3 * s.w5_runs)

    return run


@suite.workload("W5", "execute, otel: API, no provider")
def w5_otel_api(s: Sizes) -> Runner:
    return _w5_traced(s, sdk=False)


@suite.workload("W5", "execute, otel: SDK, in-memory exporter")
def w5_otel_sdk(s: Sizes) -> Runner:
    return _w5_traced(s, sdk=True)


if __name__ == "__main__":
    suite.main()
