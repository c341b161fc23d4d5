"""OpenTelemetry traces and metrics of runs (issue 16; seeds 002 "Distributed Tracing" /
"Workflow Metrics" and 004 "tracing of each run").

Spans go to the SDK's ``InMemorySpanExporter``, metrics to its ``InMemoryMetricReader``, both
on real SDK providers set as the process's globals for one test and removed after it (so the
rest of the suite runs with OpenTelemetry off, as users without it do). Across processes a small
JSON-lines ``SpanExporter`` (tests/telemetry_durable.py) writes each process's spans; the OTLP
test exports through the real OTLP/HTTP exporter to a local HTTP receiver.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import batten
import pytest
from batten import (
    AgentStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RetryPolicy,
    SubWorkflowStep,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
)
from batten._runtime import telemetry
from batten._runtime.compile import spec_for
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

HERE = Path(__file__).parent
FAST = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0.0)


def _reset_globals() -> None:
    import opentelemetry.metrics._internal as metrics_internal

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


class Otel:
    """The providers of one test: ``spans()`` finished so far, ``metrics()`` by name."""

    def __init__(self, metric_reader: Any = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = metric_reader or InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        self.tracer = trace.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        for s in self.spans():
            if s.context.span_id == span.parent.span_id:
                return s
        return None

    def metrics(self) -> dict[str, list[Any]]:
        """Each metric's data points, by metric name."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    _reset_globals()
    o = Otel()
    try:
        yield o
    finally:
        o.tracer_provider.shutdown()
        o.meter_provider.shutdown()
        _reset_globals()


def run_under(o: Otel, wf: Workflow, ctx: WorkflowContext | None = None, **kw: Any) -> Any:
    async def go() -> Any:
        with o.tracer.start_as_current_span("caller"):
            return await wf.execute(ctx, **kw)

    return asyncio.run(go())


# -- cost: nothing without OpenTelemetry ------------------------------------------------------


def test_import_batten_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, batten\n"
        "from batten import Workflow, ToolStep\n"
        "import asyncio\n"
        "wf = Workflow('w').add_step(ToolStep('t', lambda: 1))\n"
        "assert asyncio.run(wf.execute()).status.value == 'completed'\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def _tool() -> int:
    return 1


def test_without_a_provider_the_compiled_call_is_the_unwrapped_one() -> None:
    _reset_globals()  # opentelemetry imported (by this module) but nothing configured
    wf = Workflow("plain")
    step = ToolStep("t", _tool)
    wf.add_step(step)
    assert telemetry.compile_key() is False
    spec = spec_for(step, [], wf._default_options)
    assert spec.invoke is _tool  # the tool itself (no args to bind): no wrapper at all
    assert asyncio.run(wf.execute()).status == WorkflowStatus.COMPLETED


def test_with_a_provider_the_call_is_wrapped_and_the_plan_recompiled(otel: Otel) -> None:
    wf = Workflow("wrapped")
    step = ToolStep("t", _tool)
    wf.add_step(step)
    spec = spec_for(step, [], wf._default_options)
    assert spec.invoke.__name__ == "traced"
    _reset_globals()
    plain = spec_for(step, [], wf._default_options)
    assert plain.invoke is _tool


def test_a_workflow_compiled_before_the_provider_is_traced_after_it() -> None:
    _reset_globals()
    wf = Workflow("late").add_step(ToolStep("t", _tool))
    asyncio.run(wf.execute())  # compiled and cached without telemetry
    o = Otel()
    try:
        asyncio.run(wf.execute())
        assert [s.name for s in o.spans()] == ["execute_tool _tool", "invoke_workflow late"]
    finally:
        _reset_globals()


# -- seed 002: one span per phase -------------------------------------------------------------


SEED_002 = {
    "name": "your_workflow",
    "version": "1.0.0",
    "agents": ["planner_agent", "designer_agent", "coder_agent", "reviewer_agent"],
    "phases": [
        {"name": "planning", "agent": "planner_agent", "timeout": 120, "retries": 2},
        {
            "name": "design",
            "agent": "designer_agent",
            "timeout": 180,
            "retries": 3,
            "depends_on": ["planning"],
        },
        {
            "name": "implementation",
            "agent": "coder_agent",
            "timeout": 300,
            "retries": 3,
            "depends_on": ["design"],
        },
        {
            "name": "review",
            "agent": "reviewer_agent",
            "timeout": 120,
            "retries": 1,
            "depends_on": ["implementation"],
        },
    ],
    "error_handling": {"continue_on_error": False, "fallback_workflow": None},
}


@pytest.fixture
def phase_agents() -> Iterator[dict[str, int]]:
    """The seed's agents, registered by name; ``failures[name]`` attempts of ``name`` fail."""
    reg = batten.registry.global_registry()
    saved = dict(reg._entries["agent"])
    failures: dict[str, int] = {}

    def make(name: str) -> Any:
        async def agent(message: str) -> str:
            if failures.get(name, 0):
                failures[name] -= 1
                raise ConnectionError(f"{name}: model overloaded")
            return f"{name}: done"

        return agent

    for name in SEED_002["agents"]:
        batten.agent(make(name), name=name)
    yield failures
    reg._entries["agent"] = saved


def _seed_context() -> WorkflowContext:
    return WorkflowContext("your_workflow", variables={"requirements": "a calculator API"})


def _seed_workflow() -> Workflow:
    wf = Workflow.from_config(SEED_002)
    for s in wf.steps:  # the seed's retry counts, without its waits
        s.with_retry(
            policy=RetryPolicy(
                max_attempts=s.retry_policy.max_attempts, initial_interval=0.01, jitter=0.0
            )
        )
    return wf


def test_seed_002_span_tree_one_span_per_phase(otel: Otel, phase_agents: dict[str, int]) -> None:
    phase_agents["designer_agent"] = 1
    result = run_under(otel, _seed_workflow(), _seed_context())
    assert result.status == WorkflowStatus.COMPLETED
    caller = otel.one("caller")
    run = otel.one("invoke_workflow your_workflow")
    assert otel.parent_of(run) is caller
    assert run.kind == trace.SpanKind.INTERNAL
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["batten.run_id"] == result.run_id
    assert run.attributes["batten.workflow.id"] == "your_workflow"
    phases = [s for s in otel.spans() if s.name.startswith("invoke_agent")]
    assert [s.name for s in sorted(phases, key=lambda s: s.start_time)] == [
        "invoke_agent planner_agent",
        "invoke_agent designer_agent",
        "invoke_agent designer_agent",
        "invoke_agent coder_agent",
        "invoke_agent reviewer_agent",
    ]
    for span in phases:
        assert otel.parent_of(span) is run
        assert span.context.trace_id == caller.context.trace_id
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert span.attributes["batten.run_id"] == result.run_id
    first, second = sorted(otel.named("invoke_agent designer_agent"), key=lambda s: s.start_time)
    assert (first.attributes["batten.step.attempt"], second.attributes["batten.step.attempt"]) == (
        1,
        2,
    )
    assert first.attributes["batten.step.id"] == "design"
    assert first.attributes["batten.step.path"] == "design"
    assert first.attributes["gen_ai.agent.name"] == "designer_agent"
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes["error.type"] == "ConnectionError"
    exc = [e for e in first.events if e.name == "exception"]
    assert exc and exc[0].attributes["exception.type"].endswith("ConnectionError")
    retry = [e for e in first.events if e.name == "batten.retry"]
    assert len(retry) == 1
    assert retry[0].attributes["batten.retry.delay"] >= 0.0
    assert "model overloaded" in retry[0].attributes["batten.retry.reason"]
    assert second.status.status_code == StatusCode.UNSET
    assert "error.type" not in second.attributes


def test_failing_phase_is_an_error_span_and_blocks_the_rest(
    otel: Otel, phase_agents: dict[str, int]
) -> None:
    phase_agents["coder_agent"] = 99
    result = run_under(otel, _seed_workflow(), _seed_context())
    assert result.status == WorkflowStatus.FAILED
    coder = otel.named("invoke_agent coder_agent")
    assert len(coder) == 3  # its three attempts
    for span in coder:
        assert span.status.status_code == StatusCode.ERROR
        assert any(e.name == "exception" for e in span.events)
    assert sum(1 for s in coder for e in s.events if e.name == "batten.retry") == 2
    run = otel.one("invoke_workflow your_workflow")
    assert run.status.status_code == StatusCode.ERROR
    assert run.attributes["batten.workflow.status"] == "failed"
    assert not otel.named("invoke_agent reviewer_agent")
    blocked = [e for e in run.events if e.name == "batten.step.blocked"]
    assert [e.attributes["batten.step.id"] for e in blocked] == ["review"]


# -- timeouts, composites, the user's own spans -----------------------------------------------


def test_timeouts_set_error_type_for_sync_and_async_steps(otel: Otel) -> None:
    def slow_sync() -> None:
        time.sleep(1.5)

    async def slow_async() -> None:
        await asyncio.sleep(30)

    wf = Workflow("timeouts", continue_on_error=True)
    wf.add_step(ToolStep("s", slow_sync).with_timeout(0.2))
    wf.add_step(ToolStep("a", slow_async).with_timeout(0.2), depends_on=[])
    result = run_under(otel, wf)
    assert {s.step_id: s.status.value for s in result.steps} == {"s": "timeout", "a": "timeout"}
    for name in ("execute_tool slow_sync", "execute_tool slow_async"):
        span = otel.one(name)
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == "StepTimeoutError"
    # the abandoned sync call's span ended at the timeout, not when the call returned
    sync_span = otel.one("execute_tool slow_sync")
    assert (sync_span.end_time - sync_span.start_time) / 1e9 < 1.2


def test_composites_nest_and_user_spans_nest_under_the_step(otel: Otel) -> None:
    tracer = otel.tracer

    def sync_work(item: int) -> int:
        with tracer.start_as_current_span("user sync"):
            return item * 2

    async def async_work() -> str:
        with tracer.start_as_current_span("user async"):
            await asyncio.sleep(0)
            return "ok"

    def inner_tool() -> str:
        return "inner"

    sub = Workflow("child_flow", name="Child flow").add_step(ToolStep("inner", inner_tool))
    counter = {"n": 0}

    def body() -> int:
        counter["n"] += 1
        return counter["n"]

    wf = Workflow("composites")
    wf.add_step(MapStep("m", [1, 2, 3], sync_work))
    wf.add_step(ParallelStep("p", [ToolStep("b1", async_work), ToolStep("b2", inner_tool)]))
    wf.add_step(SubWorkflowStep("sub", sub))
    wf.add_step(LoopStep("loop", ToolStep("it", body), lambda ctx, i: i < 2))
    wf.add_step(ToolStep("never", inner_tool).add_condition(lambda ctx: False))
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    run = otel.one("invoke_workflow composites")
    mapper = otel.one("map m")
    assert otel.parent_of(mapper) is run
    items = otel.named("execute_tool sync_work")
    assert len(items) == 3
    assert {s.attributes["batten.step.path"] for s in items} == {"m/m[0]", "m/m[1]", "m/m[2]"}
    for item in items:
        assert otel.parent_of(item) is mapper
    user_sync = otel.named("user sync")
    assert len(user_sync) == 3 and all(otel.parent_of(u) in items for u in user_sync)
    par = otel.one("parallel p")
    b1 = otel.one("execute_tool async_work")
    assert otel.parent_of(b1) is par
    assert b1.attributes["batten.step.path"] == "p/b1"
    assert otel.parent_of(otel.one("user async")) is b1
    sub_span = otel.one("invoke_workflow Child flow")
    assert sub_span.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert otel.parent_of(sub_span) is run
    inner = [s for s in otel.named("execute_tool inner_tool") if otel.parent_of(s) is sub_span]
    assert len(inner) == 1
    loop = otel.one("loop loop")
    iterations = otel.named("execute_tool body")
    assert len(iterations) == 2 and all(otel.parent_of(s) is loop for s in iterations)
    skipped = [e for e in run.events if e.name == "batten.step.skipped"]
    assert [e.attributes["batten.step.id"] for e in skipped] == ["never"]
    assert len({s.context.trace_id for s in otel.spans()}) == 1


def test_an_isolated_steps_own_spans_nest_under_the_step_span(otel: Otel, tmp_path: Path) -> None:
    """Issue 16: "isolated steps in child processes (propagate the context)". The worker
    process's tracer provider comes from the step's initializer; its spans (written as JSON
    lines by the worker) have the parent's step span as their parent, in the same trace."""
    import functools
    import os

    import isolated_tools

    spans_file, inits_file = tmp_path / "child-spans.jsonl", tmp_path / "inits"
    init = functools.partial(isolated_tools.trace_to_file, str(spans_file), str(inits_file))
    wf = Workflow("isolated_traced")
    for n in (1, 2):
        step = ToolStep(f"w{n}", isolated_tools.traced_work, {"n": n})
        wf.add_step(step.with_isolation("process", initializer=init))
    wf.add_step(ToolStep("w3", isolated_tools.traced_work, {"n": 3}), depends_on=["w1", "w2"])
    wf.steps[-1].with_isolation("process")  # no initializer: the worker keeps what it has
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    step_spans = {s.attributes["batten.step.id"]: s for s in otel.named("execute_tool traced_work")}
    assert set(step_spans) == {"w1", "w2", "w3"}
    child = [json.loads(line) for line in spans_file.read_text().splitlines()]
    by_name = {c["name"]: c for c in child}
    for n in (1, 2):
        user, parent = by_name[f"user work {n}"], step_spans[f"w{n}"]
        assert user["pid"] != os.getpid() and user["pid"] == result.step(f"w{n}").output
        assert user["parent"] == f"{parent.context.span_id:016x}"
        assert user["trace_id"] == f"{parent.context.trace_id:032x}"
    # w3 may land in a worker no initializer of this test configured: then its span is not
    # recorded there, but where it is, it nests under w3's span too.
    if "user work 3" in by_name:
        assert by_name["user work 3"]["parent"] == f"{step_spans['w3'].context.span_id:016x}"
    # Once per worker process: as many initializer runs as distinct workers that ran w1/w2.
    inits = inits_file.read_text().split()
    assert len(inits) == len(set(inits)) and set(inits) >= {
        str(by_name[f"user work {n}"]["pid"]) for n in (1, 2)
    }


def test_an_isolation_initializer_is_checked_before_anything_runs() -> None:
    with pytest.raises(batten.WorkflowDefinitionError, match="initializer"):
        ToolStep("t", _tool).with_isolation("thread", initializer=_tool)
    with pytest.raises(batten.WorkflowDefinitionError, match="initializer"):
        ToolStep("t", _tool).with_isolation("process", initializer=42)  # type: ignore[arg-type]
    import isolated_tools

    wf = Workflow("bad_init").add_step(
        ToolStep("t", isolated_tools.noop).with_isolation("process", initializer=lambda: None)
    )
    with pytest.raises(batten.WorkflowDefinitionError, match="its initializer"):
        wf.run()


def test_sync_run_in_a_script_is_traced(otel: Otel) -> None:
    wf = Workflow("scripted").add_step(ToolStep("t", _tool))
    with otel.tracer.start_as_current_span("caller"):
        assert wf.run().status == WorkflowStatus.COMPLETED
    run = otel.one("invoke_workflow scripted")
    assert otel.parent_of(run) is otel.one("caller")


# -- framework adapters -----------------------------------------------------------------------


def test_langgraph_graph_as_an_agent_step(otel: Otel) -> None:
    pytest.importorskip("langgraph")
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    model = FakeMessagesListChatModel(
        responses=[
            AIMessage(
                content="Four.",
                usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
                response_metadata={"model_name": "fake-model-1"},
            )
        ]
    )

    async def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_edge(START, "model")
    graph = builder.compile(name="math_graph")
    wf = Workflow("lg").add_step(AgentStep("ask", graph, "2+2?"))
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    span = otel.one("invoke_agent math_graph")
    assert span.attributes["gen_ai.request.model"] == "fake-model-1"
    assert span.attributes["gen_ai.usage.input_tokens"] == 12
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    tokens = otel.metrics()["gen_ai.client.token.usage"]
    by_type = {dp.attributes["gen_ai.token.type"]: dp.sum for dp in tokens}
    assert by_type == {"input": 12, "output": 3}
    assert all(dp.attributes["gen_ai.request.model"] == "fake-model-1" for dp in tokens)


@pytest.mark.parametrize("instrumented", [False, True])
def test_pydantic_ai_agent_tokens_are_counted_once(otel: Otel, instrumented: bool) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    agent = Agent(TestModel(custom_output_text="hello"), name="greeter")
    agent.instrument = instrumented
    wf = Workflow("pai").add_step(AgentStep("greet", agent, "say hello"))
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    usage = result.step("greet").metadata["usage"]
    assert usage["input_tokens"] > 0
    mine = [
        s
        for s in otel.named("invoke_agent greeter")
        if s.instrumentation_scope is not None and s.instrumentation_scope.name == "batten"
    ]
    assert len(mine) == 1
    span = mine[0]
    assert span.attributes["gen_ai.request.model"] == "test"
    points = otel.metrics().get("gen_ai.client.token.usage", [])
    input_total = sum(dp.sum for dp in points if dp.attributes.get("gen_ai.token.type") == "input")
    # whoever counts, the input tokens are counted exactly once
    assert input_total == usage["input_tokens"]
    if instrumented:
        assert "gen_ai.usage.input_tokens" not in span.attributes
        own = [
            s
            for s in otel.spans()
            if s.instrumentation_scope.name != "batten" and s.name != "caller"
        ]
        assert own and all(s.context.trace_id == span.context.trace_id for s in own)
        # pydantic-ai's own spans nest under batten's step span
        roots = [s for s in own if otel.parent_of(s) is span]
        assert roots
    else:
        assert span.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_for_a_run_with_retries_and_a_timeout(otel: Otel) -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("try again")
        return "ok"

    async def hangs() -> None:
        await asyncio.sleep(30)

    wf = Workflow("measured", continue_on_error=True)
    wf.add_step(ToolStep("flaky", flaky).with_retry(policy=FAST))
    wf.add_step(ToolStep("hangs", hangs).with_timeout(0.1), depends_on=[])
    result = run_under(otel, wf)
    assert {s.step_id: s.status.value for s in result.steps} == {
        "flaky": "completed",
        "hangs": "timeout",
    }
    m = otel.metrics()

    def total(name: str, **attrs: Any) -> float:
        return sum(
            dp.value
            for dp in m.get(name, [])
            if all(dp.attributes.get(k) == v for k, v in attrs.items())
        )

    assert total("batten.step.attempts", **{"batten.step.path": "flaky"}) == 3
    assert total("batten.step.attempts", **{"batten.step.path": "hangs"}) == 1
    assert total("batten.step.retries", **{"error.type": "ConnectionError"}) == 2
    assert total("batten.step.timeouts", **{"batten.step.path": "hangs"}) == 1
    durations = {
        (dp.attributes["batten.step.path"], dp.attributes["batten.step.status"]): dp
        for dp in m["batten.step.duration"]
    }
    assert set(durations) == {("flaky", "completed"), ("hangs", "timeout")}
    hung = durations[("hangs", "timeout")]
    assert hung.count == 1 and 0.05 < hung.sum < 5.0
    # the 0.1 s timeout falls in the (0.1, 0.25] .. (0, 5] buckets, not the first (0, 0]
    assert hung.bucket_counts[0] == 0 and sum(hung.bucket_counts) == 1
    (run,) = m["batten.workflow.duration"]
    assert run.count == 1 and run.attributes == {
        "batten.workflow.id": "measured",
        "batten.workflow.status": result.status.value,
    }
    assert all("batten.run_id" not in dp.attributes for pts in m.values() for dp in pts)
    assert {dp.attributes["batten.step.path"] for dp in m["batten.step.queue_wait"]} == {
        "flaky",
        "hangs",
    }


def test_prometheus_exporter_shows_battens_metrics() -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY, generate_latest

    _reset_globals()
    reader = PrometheusMetricReader()
    o = Otel(metric_reader=reader)
    try:
        wf = Workflow("prom").add_step(ToolStep("t", _tool))
        asyncio.run(wf.execute())
        text = generate_latest(REGISTRY).decode()
    finally:
        o.meter_provider.shutdown()  # unregisters the reader's collector
        _reset_globals()
    assert 'batten_step_duration_seconds_bucket{batten_step_path="t"' in text
    assert "batten_workflow_duration_seconds_count" in text
    assert "batten_step_attempts_total" in text


# -- across processes -------------------------------------------------------------------------


def _read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_durable_run_killed_and_resumed_is_one_trace(tmp_path: Path) -> None:
    db, marker = tmp_path / "runs.db", tmp_path / "in_c"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    run_id = uuid.uuid4().hex
    script = str(HERE / "telemetry_durable.py")
    proc = subprocess.Popen(
        [sys.executable, script, "start", str(db), str(first), run_id, str(marker)]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the first process ended before step c"
            assert time.monotonic() < deadline, "step c never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    out = subprocess.run(
        [sys.executable, script, "resume", str(db), str(second), run_id, str(marker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed"
    before, after = _read_spans(first), _read_spans(second)
    assert sorted(s["name"] for s in before) == ["execute_tool a", "execute_tool b"]
    assert sorted(s["name"] for s in after) == [
        "execute_tool d",
        "execute_tool slow",
        "invoke_workflow otel_durable",
    ]
    assert len({s["trace_id"] for s in before + after}) == 1  # one trace
    original_run_span = before[0]["parent"]
    assert all(s["parent"] == original_run_span for s in before)
    resumed = next(s for s in after if s["name"].startswith("invoke_workflow"))
    assert resumed["parent"] == original_run_span
    assert original_run_span in resumed["links"]
    assert resumed["attributes"]["batten.run.resumed"] is True
    assert resumed["attributes"]["batten.run_id"] == run_id
    for s in after:
        if s["name"].startswith("execute_tool"):
            assert s["parent"] == resumed["span_id"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_spans_arrive_through_the_real_otlp_http_exporter() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    _Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _reset_globals()
    provider = TracerProvider()
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/traces", timeout=10
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        wf = Workflow("otlp").add_step(AgentStep("ask", lambda m: "yes", "hi"))
        assert asyncio.run(wf.execute()).status == WorkflowStatus.COMPLETED
        provider.force_flush(10_000)
    finally:
        provider.shutdown()
        _reset_globals()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    names: dict[str, dict[str, Any]] = {}
    for path, body in _Receiver.bodies:
        assert path == "/v1/traces"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {a.key: a.value for a in span.attributes}
                    names[span.name] = {"scope": ss.scope.name, "attrs": attrs}
    assert set(names) == {"invoke_workflow otlp", "invoke_agent <lambda>"}
    agent = names["invoke_agent <lambda>"]
    assert agent["scope"] == "batten"
    assert agent["attrs"]["gen_ai.operation.name"].string_value == "invoke_agent"
    assert agent["attrs"]["batten.step.attempt"].int_value == 1


# -- carriers for steps run in another process ------------------------------------------------


def test_carrier_round_trip_parents_a_span_in_the_child(otel: Otel) -> None:
    with otel.tracer.start_as_current_span("step") as step:
        carrier = telemetry.inject_carrier()
    assert carrier["traceparent"].split("-")[2] == f"{step.get_span_context().span_id:016x}"
    with telemetry.attached_carrier(carrier):
        with otel.tracer.start_as_current_span("in child"):
            pass
    assert otel.parent_of(otel.one("in child")) is otel.one("step")
    with telemetry.attached_carrier({}):
        pass  # nothing to attach


def test_approval_continued_later_joins_the_trace_and_restored_steps_make_no_span(
    otel: Otel, tmp_path: Path
) -> None:
    store = batten.SqliteStore(tmp_path / "runs.db")
    wf = Workflow("gated").with_store(store)
    wf.add_step(ToolStep("a", _tool))
    wf.add_step(batten.HumanApprovalStep("gate", "go?"))
    wf.add_step(ToolStep("b", _tool))
    first = run_under(otel, wf)
    assert first.status == WorkflowStatus.WAITING_APPROVAL
    run1 = otel.one("invoke_workflow gated")
    assert run1.attributes["batten.workflow.status"] == "waiting_approval"
    assert run1.status.status_code == StatusCode.UNSET
    otel.exporter.clear()
    batten.approve(first.run_id, "gate", by="ops", store=store)

    async def later() -> Any:
        with otel.tracer.start_as_current_span("operator"):
            return await wf.resume(first.run_id)

    second = asyncio.run(later())
    assert second.status == WorkflowStatus.COMPLETED
    run2 = otel.one("invoke_workflow gated")
    assert run2.context.trace_id == run1.context.trace_id
    assert run2.parent is not None and run2.parent.span_id == run1.context.span_id
    linked = {ln.context.span_id for ln in run2.links}
    assert run1.context.span_id in linked
    assert otel.one("operator").context.span_id in linked  # who resumed it, in its own trace
    assert run2.attributes["batten.run.resumed"] is True
    names = sorted(s.name for s in otel.spans() if s.name.startswith(("execute", "approval")))
    assert names == ["approval gate", "execute_tool _tool"]  # b (and the gate); not a again


# -- the gaps closed by the second pass: pools, traffic, queue wait, resumes -------------------


def _points(o: Otel, name: str, **attrs: Any) -> list[Any]:
    return [
        dp
        for dp in o.metrics().get(name, [])
        if all(dp.attributes.get(k) == v for k, v in attrs.items())
    ]


def test_agent_pool_metrics_size_busy_waits_and_replacements(otel: Otel) -> None:
    held = {"n": 0}
    lock = threading.Lock()

    class Agent:
        def run(self, message: str) -> str:
            if message == "boom":
                raise ValueError("bad state")
            with lock:
                held["n"] += 1
                first = held["n"] == 1
            if first:  # keeps its instance until the other call waits for one (bounded)
                deadline = time.monotonic() + 10
                while pool.stats().waiting < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.05)
            return message

    pool = batten.AgentPool(Agent, 1, name="planner")
    wf = Workflow("pooled")
    wf.add_step(MapStep("fan", ["a", "b"], AgentStep("work", pool, "{item}")))
    assert run_under(otel, wf).status == WorkflowStatus.COMPLETED
    bad = Workflow("pooled_bad")
    bad.add_step(AgentStep("x", pool, "boom").with_retry(max_attempts=1))
    assert run_under(otel, bad).status == WorkflowStatus.FAILED
    by = {"batten.pool.name": "planner"}
    (size,) = _points(otel, "batten.agent_pool.size", **by)
    assert size.value == 1
    (busy,) = _points(otel, "batten.agent_pool.busy", **by)
    (waiting,) = _points(otel, "batten.agent_pool.waiting", **by)
    assert busy.value == 0 and waiting.value == 0  # nothing in flight at collection
    (waits,) = _points(otel, "batten.agent_pool.waits", **by)
    assert waits.value >= 1
    (replaced,) = _points(otel, "batten.agent_pool.replacements", **by)
    assert replaced.value == 1
    (calls,) = _points(otel, "batten.agent_pool.calls", **by)
    assert calls.value == 3
    (wait,) = _points(otel, "batten.agent_pool.wait", **by)
    assert wait.count >= 1 and 0 < wait.sum < 10
    from batten import pool as pool_mod

    assert pool in pool_mod.LIVE


def test_creating_a_pool_without_a_provider_imports_no_opentelemetry() -> None:
    code = (
        "import sys, batten; p = batten.AgentPool(lambda: (lambda m: m), 2, name='p');"
        "wf = batten.Workflow('w'); wf.add_step(batten.AgentStep('a', p, 'hi'));"
        "assert wf.run().final_output == 'hi';"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_rate_limit_waits_are_measured_by_limiter(otel: Otel) -> None:
    limit = batten.RateLimit(f"api-{uuid.uuid4().hex[:6]}", max_concurrency=1)

    def slow() -> str:
        time.sleep(0.2)
        return "ok"

    wf = Workflow("limited")
    wf.add_step(ToolStep("a", slow).with_rate_limit(limit))
    wf.add_step(ToolStep("b", slow).with_rate_limit(limit), depends_on=[])
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    (wait,) = _points(otel, "batten.traffic.wait", **{"batten.traffic.name": limit.key})
    assert wait.attributes["batten.traffic.kind"] == "rate_limit"
    assert wait.count == 1  # one of the two waited for the other's slot
    assert 0.1 < wait.sum < 10


def test_circuit_breaker_wait_and_transitions_are_measured(otel: Otel) -> None:
    key = f"cb-{uuid.uuid4().hex[:6]}"
    breaker = batten.CircuitBreaker(failure_threshold=1, recovery_timeout=0.2, wait=True, key=key)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("down")
        return "up"

    wf = Workflow("guarded")
    wf.add_step(
        ToolStep("t", flaky)
        .with_circuit_breaker(breaker)
        .with_retry(policy=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0.0))
    )
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    (wait,) = _points(otel, "batten.traffic.wait", **{"batten.traffic.kind": "circuit"})
    assert wait.attributes["batten.traffic.name"] == key
    assert wait.count == 1 and 0.1 < wait.sum < 10  # parked until the circuit half-opened
    moves = {
        (dp.attributes["batten.circuit.from"], dp.attributes["batten.circuit.to"]): dp.value
        for dp in _points(otel, "batten.circuit.transitions")
    }
    assert moves == {("closed", "open"): 1, ("open", "half_open"): 1, ("half_open", "closed"): 1}


def test_queue_wait_is_the_time_a_ready_step_waited_for_a_slot(otel: Otel) -> None:
    def slow() -> str:
        time.sleep(1.5)
        return "ok"

    wf = Workflow("queued")
    wf.add_step(ToolStep("a", slow))
    wf.add_step(ToolStep("b", slow), depends_on=[])
    result = run_under(otel, wf, max_concurrency=1)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    waits = sorted(dp.sum for dp in _points(otel, "batten.step.queue_wait"))
    assert len(waits) == 2
    # The second waited for the first's slot: at least the first's 1.5 s sleep (a lower bound
    # no load can break); a step ready at once waits well under half that.
    assert waits[0] < 0.75 and 1.45 <= waits[1] < 10, waits
    free = Workflow("free")
    free.add_step(ToolStep("a", slow))
    free.add_step(ToolStep("b", slow), depends_on=[])
    run_under(otel, free)
    unbounded = _points(otel, "batten.step.queue_wait", **{"batten.workflow.id": "free"})
    assert len(unbounded) == 2 and all(dp.sum < 0.75 for dp in unbounded), unbounded


def test_resumes_count_attempts_on_and_link_to_the_previous_stretch(
    otel: Otel, tmp_path: Path
) -> None:
    store = batten.SqliteStore(tmp_path / "runs.db")
    fails = {"left": 4}

    def flaky() -> str:
        if fails["left"] > 0:
            fails["left"] -= 1
            raise ConnectionError("down")
        return "up"

    wf = Workflow("stretches").with_store(store)
    wf.add_step(
        ToolStep("t", flaky).with_retry(
            policy=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0.0)
        )
    )
    first = run_under(otel, wf)
    assert first.status == WorkflowStatus.FAILED
    run1 = otel.one("invoke_workflow stretches")

    def attempts() -> list[int]:
        return sorted(s.attributes["batten.step.attempt"] for s in otel.named("execute_tool flaky"))

    assert attempts() == [1, 2]
    otel.exporter.clear()
    second = asyncio.run(wf.resume(first.run_id, retry_failed=True))
    assert second.status == WorkflowStatus.FAILED
    run2 = otel.one("invoke_workflow stretches")
    assert attempts() == [3, 4]  # counted on from the first stretch's recorded attempts
    assert [ln.context.span_id for ln in run2.links] == [run1.context.span_id]
    otel.exporter.clear()
    third = asyncio.run(wf.resume(first.run_id, retry_failed=True))
    assert third.status == WorkflowStatus.COMPLETED, third.error
    run3 = otel.one("invoke_workflow stretches")
    assert attempts() == [5]
    # one trace, parented by the first run span, linked to the span that ended stretch 2
    assert run3.context.trace_id == run1.context.trace_id
    assert run3.parent is not None and run3.parent.span_id == run1.context.span_id
    assert [ln.context.span_id for ln in run3.links] == [run2.context.span_id]
    assert run3.links[0].attributes == {"batten.link": "previous_stretch"}


def test_a_step_with_a_fallback_gets_a_recovery_span_holding_its_attempts(otel: Otel) -> None:
    def down() -> str:
        raise ConnectionError("down")

    def spare() -> str:
        return "spare"

    wf = Workflow("recovering")
    wf.add_step(ToolStep("s", down).with_retry(policy=FAST).with_fallback(ToolStep("fb", spare)))
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    run = otel.one("invoke_workflow recovering")
    recover = otel.one("recover s")
    assert otel.parent_of(recover) is run
    assert recover.attributes["batten.step.kind"] == "recovery"
    tries = otel.named("execute_tool down")
    assert sorted(s.attributes["batten.step.attempt"] for s in tries) == [1, 2, 3]
    assert all(otel.parent_of(s) is recover for s in tries)
    assert all(s.attributes["batten.step.path"] == "s/s" for s in tries)
    assert sum(len([e for e in s.events if e.name == "batten.retry"]) for s in tries) == 2
    spare_span = otel.one("execute_tool spare")
    assert otel.parent_of(spare_span) is recover
    assert spare_span.attributes["batten.step.path"] == "s/fb"
    run_id = run.attributes["batten.run_id"]
    assert all(s.attributes["batten.run_id"] == run_id for s in [recover, spare_span, *tries])


def test_map_items_held_back_by_the_maps_max_concurrency_have_queue_waits(otel: Otel) -> None:
    def slow(item: int) -> int:
        time.sleep(0.1)
        return item

    wf = Workflow("mapped")
    wf.add_step(MapStep("fan", [1, 2, 3], slow).with_max_concurrency(1))
    result = run_under(otel, wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    (items,) = _points(otel, "batten.step.queue_wait", **{"batten.step.path": "fan/fan"})
    # three items one at a time: the 2nd waits ~0.1 s, the 3rd ~0.2 s, the 1st not at all
    assert items.count == 3 and 0.2 < items.sum < 10
