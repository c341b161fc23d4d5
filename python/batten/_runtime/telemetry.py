"""OpenTelemetry traces and metrics of runs, in the GenAI semantic conventions (private, layer
``batten._runtime``; documented for users in the README's "Tracing and metrics").

batten never configures OpenTelemetry: it uses the tracer and meter providers the application
set (``opentelemetry.trace.set_tracer_provider`` / ``opentelemetry.metrics.set_meter_provider``).
Whether a run is observed is decided once, when it starts (:func:`start_run`): with
``opentelemetry-api`` not imported by anyone, or with only the API's default proxy/no-op
providers, nothing here runs: no step call is wrapped (compile asks :func:`compile_key` and
:func:`wrap_call` returns the call as it was) and no event sink is added. ``import batten``
never imports ``opentelemetry``.

Spans (``SpanKind.INTERNAL``), as the GenAI agent-span conventions name them:

- a run is ``invoke_workflow {workflow name}`` under the caller's current span;
- each attempt of a step is a child of the span of the run (or composite step) it runs in:
  ``invoke_agent {agent name}`` for an ``AgentStep`` (framework adapters included),
  ``execute_tool {tool name}`` for a ``ToolStep``, ``invoke_workflow {name}`` for a
  ``SubWorkflowStep``, ``{kind} {step id}`` (``parallel``, ``map``, ``loop``, ``conditional``,
  ``router``, ``approval``, ``step``) for other steps; a ``MapStep``'s items, a
  ``ParallelStep``'s branches, a ``LoopStep``'s iterations nest under their step's span.
- attributes: ``gen_ai.operation.name``, ``gen_ai.agent.name`` / ``gen_ai.tool.name``,
  ``gen_ai.workflow.name``, ``gen_ai.request.model`` and ``gen_ai.usage.input_tokens`` /
  ``output_tokens`` when an adapter reports them (see the token rule below), ``error.type``,
  ``batten.run_id``, ``batten.workflow.id``, ``batten.step.id``, ``batten.step.path``
  (``"parent/child"``) and ``batten.step.attempt`` (1-based: the engine's attempt number, plus,
  in a resumed durable run, the attempts its earlier stretches recorded for the step, so the
  numbers go on across a resume instead of restarting at 1).
- a failed attempt has status ERROR, an ``exception`` event and ``error.type`` (the
  exception's class name; ``StepTimeoutError`` for a timed-out attempt). An attempt that will
  be retried gets a ``batten.retry`` event (``batten.retry.delay`` in seconds, ``error.type``,
  ``batten.retry.reason``) before it ends.
- skipped, blocked and cancelled steps never ran, so they get no span: each is a
  ``batten.step.skipped`` / ``.blocked`` / ``.cancelled`` event on the span of the run or
  composite step that holds it (attributes ``batten.step.id`` and ``batten.step.path``).
- a step with a fallback or error handler (run by :mod:`.recovery`) gets a ``recover {step
  id}`` span (``batten.step.kind = "recovery"``) holding its own attempts' spans and its
  recovery step's (paths ``"{id}/{id}"`` and ``"{id}/{recovery id}"``, as its events name them).
- the user's own spans inside a step nest under the step's span: async steps run in a task
  whose context holds it, sync steps get it attached on their worker thread. A step run
  elsewhere (a child process: ``with_isolation("process")``) carries it over as a W3C carrier
  dict: the parent calls :func:`inject_carrier` while the step's span is current and sends the
  dict along; the child runs the step inside ``with attached_carrier(carrier):``. Process
  isolation (:mod:`.isolation`) does exactly this for every isolated call; the worker needs its
  own tracer provider (the step's ``with_isolation(..., initializer=...)``). Both cost nothing
  without OpenTelemetry.
- durable runs: steps restored from a checkpoint are not called, so they make no span (as
  Temporal's replay-safe interceptors). The run's W3C trace context (``traceparent``) is
  stored with the run's input context; a resumed run (``resume``, an approval continued in
  another process) has its span's parent set to the original run span, so the whole run is one
  trace, and links (``batten.link = "previous_stretch"``) to the span that ended the previous
  stretch: each stretch that ends (completed, paused, waiting for approval, failed, cancelled)
  keeps its run span's trace context in the store's cache (key :func:`end_key`, kept
  :data:`END_TTL` s); a stretch that ended without saying so (its process was killed) is not
  there, so the link then goes to the latest stretch that did, else to the original run span.

Tokens are counted once: batten puts an agent step's usage on its ``invoke_agent`` span and in
the ``gen_ai.client.token.usage`` histogram, except when the framework emits its own GenAI
telemetry for that call (a pydantic-ai agent with instrumentation on: ``Agent(instrument=...)``
or ``Agent.instrument_all()``); then its spans, which nest under batten's step span, and its
metric carry the tokens, and batten's span carries only the model.

Metrics (meter ``batten``; attributes are low-cardinality: workflow id, step path with map
indices removed, status, error type; never a run id):

- ``batten.workflow.duration`` (histogram, s): a run's duration by workflow and status;
- ``batten.step.duration`` (histogram, s): a step's duration (first attempt to end) by workflow,
  step and status; ``batten.step.attempts`` (counter) attempts started;
  ``batten.step.retries`` (counter) by ``error.type``; ``batten.step.timeouts`` (counter);
- ``batten.step.queue_wait`` (histogram, s): the time a ready step waited for a concurrency
  slot (the run's ``max_concurrency`` / ``max_parallel_steps``, a ``ParallelStep``'s /
  ``MapStep``'s ``with_max_concurrency`` for its branches / items), from the moment its
  dependencies were done to its first attempt being started by the engine; one point per
  step (0 when it did not wait). Reported by the engine's ``"waited"`` event (kind
  ``"concurrency"``);
- ``batten.step.start_delay`` (histogram, s): from the engine starting an attempt (after its
  rate limits and breakers admitted it) to the step's code running (waiting for a worker
  thread or the event loop);
- ``batten.traffic.wait`` (histogram, s): the time an attempt was parked by a rate limit
  (``batten.traffic.kind = "rate_limit"``) or an open circuit with ``wait=True``
  (``"circuit"``), by ``batten.traffic.name`` (the limit's / breaker's key), from the engine's
  ``"waited"`` event; an attempt refused by an open circuit fails instead (a retry, counted);
- ``batten.circuit.transitions`` (counter): circuit breaker state changes by breaker, from, to;
- agent pools (every live ``AgentPool``, by ``batten.pool.name``, ``"AgentPool"`` for unnamed
  pools, summed over pools of one name): ``batten.agent_pool.size`` / ``.busy`` / ``.waiting``
  (observable gauges, {instance}), ``batten.agent_pool.calls`` / ``.waits`` /
  ``.replacements`` (observable counters, read from ``pool.stats()`` at each collection), and
  ``batten.agent_pool.wait`` (histogram, s) of each wait for an instance. They exist once a
  meter provider is configured and a run started; creating a pool never imports
  ``opentelemetry``;
- ``gen_ai.client.token.usage`` (histogram, {token}) by ``gen_ai.token.type``,
  ``gen_ai.request.model`` and ``gen_ai.operation.name``.

The engine's ``"waited"`` event (``(kind, step_id, attempt, (seconds, wait kind, name))``) is
emitted only when the run has an event subscriber (this module adds one to observed runs); the
typed event stream (``batten.events``) does not surface it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from batten._internal.options import CompileOptions
from batten._runtime.compile import (
    register_call_wrapper,
    register_compile_key,
    register_item_wrapper,
    register_takeover_wrapper,
)
from batten.steps.base import Step

if TYPE_CHECKING:
    from batten.steps.protocol import CallSpec

__all__ = [
    "END_TTL",
    "RunTelemetry",
    "attached_carrier",
    "compile_key",
    "end_key",
    "inject_carrier",
    "start_run",
]

#: The observed run a task or worker thread belongs to (``None``: not observed).
_RUN: ContextVar[RunTelemetry | None] = ContextVar("batten_telemetry_run", default=None)
#: The path of the step attempt a task or thread runs in (``""`` at the top level); a nested
#: run's steps have paths ``"<this>/<their id>"``, as the run's events name them.
_PREFIX: ContextVar[str] = ContextVar("batten_telemetry_prefix", default="")

_SCOPE = "batten"


_MISSING = object()
#: ``((tracer provider, meter provider) globals, (tracer, instruments))`` of the last look.
_LAST: list[Any] = [(_MISSING, _MISSING), (None, None)]


def _providers() -> tuple[Any, Any]:
    """``(tracer, instruments)`` of the application's configured providers, each ``None`` when
    not configured. Never imports ``opentelemetry``: an application that configured a provider
    has imported it.

    NOTE: called once per run and per compile, so it must cost nothing measurable: it reads the
    API's two provider globals (unset: ``None``) and redoes the work only when they changed
    (~0.3 µs; the public getters cost ~4 µs together)."""
    trace_mod = sys.modules.get("opentelemetry.trace")
    metrics_mod = sys.modules.get("opentelemetry.metrics._internal")
    if trace_mod is None and metrics_mod is None:
        return None, None
    tp = getattr(trace_mod, "_TRACER_PROVIDER", _MISSING) if trace_mod is not None else None
    mp = getattr(metrics_mod, "_METER_PROVIDER", _MISSING) if metrics_mod is not None else None
    seen, found = _LAST
    if tp is seen[0] and mp is seen[1] and tp is not _MISSING and mp is not _MISSING:
        return found  # type: ignore[no-any-return]
    found = _look(trace_mod, metrics_mod, tp, mp)
    _LAST[:] = [(tp, mp), found]
    return found


def _look(trace_mod: Any, metrics_mod: Any, tp: Any, mp: Any) -> tuple[Any, Any]:
    """The public API's view of the providers (an unset global may be configured from the
    ``OTEL_PYTHON_TRACER_PROVIDER`` / ``OTEL_PYTHON_METER_PROVIDER`` environment)."""
    import os

    tracer = meters = None
    if trace_mod is not None and (tp is not None or os.environ.get("OTEL_PYTHON_TRACER_PROVIDER")):
        provider = trace_mod.get_tracer_provider()
        if not isinstance(provider, trace_mod.ProxyTracerProvider | trace_mod.NoOpTracerProvider):
            tracer = _cached(provider, lambda: provider.get_tracer(_SCOPE, _version()))
    if metrics_mod is not None and (mp is not None or os.environ.get("OTEL_PYTHON_METER_PROVIDER")):
        mprovider = metrics_mod.get_meter_provider()
        noop = (metrics_mod._ProxyMeterProvider, metrics_mod.NoOpMeterProvider)
        if not isinstance(mprovider, noop):
            meters = _cached(mprovider, lambda: _Instruments(mprovider.get_meter(_SCOPE)))
    return tracer, meters


_CACHE: dict[int, tuple[Any, Any]] = {}


def _cached(provider: Any, make: Callable[[], Any]) -> Any:
    """One tracer / set of instruments per provider (the provider is kept alive with it, so
    its id is not reused)."""
    hit = _CACHE.get(id(provider))
    if hit is None or hit[0] is not provider:
        hit = (provider, make())
        _CACHE[id(provider)] = hit
    return hit[1]


def _version() -> str:
    from batten._core import __version__

    return str(__version__)


def compile_key() -> bool:
    """Whether steps compiled now get telemetry wrappers (part of the plan cache's key, so a
    workflow compiled before the application configured OpenTelemetry is compiled again)."""
    tracer, meters = _providers()
    return tracer is not None or meters is not None


class _Instruments:
    """batten's metric instruments on one meter."""

    def __init__(self, meter: Any) -> None:
        self.run_duration = meter.create_histogram(
            "batten.workflow.duration", unit="s", description="Duration of a workflow run"
        )
        self.step_duration = meter.create_histogram(
            "batten.step.duration",
            unit="s",
            description="Duration of a step, from its first attempt's start to its end",
        )
        self.attempts = meter.create_counter(
            "batten.step.attempts", unit="{attempt}", description="Step attempts started"
        )
        self.retries = meter.create_counter(
            "batten.step.retries", unit="{retry}", description="Step attempts retried"
        )
        self.timeouts = meter.create_counter(
            "batten.step.timeouts", unit="{timeout}", description="Step attempts timed out"
        )
        self.queue_wait = meter.create_histogram(
            "batten.step.queue_wait",
            unit="s",
            description="Time a ready step waited for a concurrency slot before its first attempt",
        )
        self.start_delay = meter.create_histogram(
            "batten.step.start_delay",
            unit="s",
            description="Time from the engine starting an attempt to the step's code running",
        )
        self.traffic_wait = meter.create_histogram(
            "batten.traffic.wait",
            unit="s",
            description="Time an attempt was held back by a rate limit or an open circuit",
        )
        self.circuit = meter.create_counter(
            "batten.circuit.transitions",
            unit="{transition}",
            description="Circuit breaker state changes",
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
        )
        _pool_instruments(meter)


def _pool_instruments(meter: Any) -> None:
    """The observable instruments of every live ``AgentPool`` (read from ``pool.stats()`` at
    each collection, summed per ``batten.pool.name``) and the pool wait histogram (fed by the
    pool's wait hook). Imports ``batten.pool`` (only here: a meter provider is configured)."""
    from opentelemetry.metrics import Observation

    from batten import pool as pool_mod

    def observe(*fields: str) -> Callable[[Any], list[Any]]:
        def callback(_options: Any) -> list[Any]:
            sums: dict[str, float] = {}
            for p in list(pool_mod.LIVE):
                stats = p.stats()
                name = p.name or "AgentPool"
                sums[name] = sums.get(name, 0) + sum(getattr(stats, f) for f in fields)
            return [Observation(v, {"batten.pool.name": k}) for k, v in sums.items()]

        return callback

    for name, field, desc in (
        ("batten.agent_pool.size", "size", "The most instances an agent pool holds"),
        ("batten.agent_pool.busy", "busy", "Calls holding an agent pool instance now"),
        ("batten.agent_pool.waiting", "waiting", "Calls waiting for an agent pool instance"),
    ):
        meter.create_observable_gauge(
            name, callbacks=[observe(field)], unit="{instance}", description=desc
        )
    for name, field, unit, desc in (
        ("batten.agent_pool.waits", "waits", "{wait}", "Calls that waited for an instance"),
        (
            "batten.agent_pool.replacements",
            "replaced",
            "{instance}",
            "Instances dropped because their call raised one of replace_on",
        ),
        ("batten.agent_pool.calls", "calls", "{call}", "Calls given an instance"),
    ):
        meter.create_observable_counter(
            name, callbacks=[observe(field)], unit=unit, description=desc
        )
    waited = meter.create_histogram(
        "batten.agent_pool.wait",
        unit="s",
        description="Time a call waited for an agent pool instance",
    )

    def on_wait(p: Any, seconds: float) -> None:
        waited.record(seconds, {"batten.pool.name": p.name or "AgentPool"})

    pool_mod.WAIT_HOOK[0] = on_wait


def _low(path: str) -> str:
    """``path`` without map item indices (``"map/item[3]"`` -> ``"map/item"``)."""
    if "[" not in path:
        return path
    return "/".join(part.split("[", 1)[0] for part in path.split("/"))


class _Meta:
    """What a step's spans say about it, worked out once when it is compiled."""

    __slots__ = ("attrs", "name", "operation", "target")

    def __init__(
        self, name: str, operation: str | None, attrs: dict[str, Any], target: Any = None
    ) -> None:
        self.name = name
        self.operation = operation
        self.attrs = attrs
        #: the agent object (for :func:`_framework_instrumented`), or ``None``
        self.target = target


def _target_name(target: Any, fallback: str) -> str:
    if isinstance(target, str) and target:
        return target
    for attr in ("name", "__name__"):
        value = getattr(target, attr, None)
        if isinstance(value, str) and value:
            return value
    return fallback


def _framework_instrumented(target: Any) -> bool:
    """Whether ``target`` emits its own GenAI spans and token metric: a pydantic-ai agent with
    instrumentation on (``Agent(..., instrument=...)`` / ``agent.instrument = ...`` /
    ``Agent.instrument_all()``). Asked when an attempt ends, so a later switch counts."""
    if type(target).__module__.split(".", 1)[0] != "pydantic_ai":
        return False
    resolve = getattr(target, "_resolve_instrumentation_settings", None)
    if callable(resolve):
        try:
            return resolve() is not None
        except Exception:
            return False
    return bool(getattr(target, "instrument", None) or getattr(target, "_instrument_default", 0))


def _meta(step: Any, workflow_id: str) -> _Meta:
    sid = step.step_id
    attrs: dict[str, Any] = {"batten.workflow.id": workflow_id, "batten.step.id": sid}
    role = getattr(step, "_role", None)
    if role in ("agent", "tool") and not getattr(step, "_is_composite", False):
        target = step._target()
        name = _target_name(target, sid)
        if role == "agent":
            attrs.update({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name})
            return _Meta(f"invoke_agent {name}", "invoke_agent", attrs, target)
        attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})
        return _Meta(f"execute_tool {name}", "execute_tool", attrs)
    kind = type(step).__name__
    sub = getattr(step, "workflow", None) if getattr(step, "_is_composite", False) else None
    if sub is not None and hasattr(sub, "workflow_id"):
        name = getattr(sub, "name", None) or sub.workflow_id
        attrs.update({"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": name})
        return _Meta(f"invoke_workflow {name}", "invoke_workflow", attrs)
    short = {
        "ParallelStep": "parallel",
        "MapStep": "map",
        "LoopStep": "loop",
        "ConditionalStep": "conditional",
        "RouterStep": "router",
        "HumanApprovalStep": "approval",
    }.get(kind, "step")
    attrs["batten.step.kind"] = kind
    return _Meta(f"{short} {sid}", None, attrs)


class _Attempt:
    """One attempt's span, ended once: by its call when it succeeds, by the run's event sink
    when it failed (after the retry event) or was abandoned (a sync step that timed out)."""

    __slots__ = ("ended", "meta", "span", "started")

    def __init__(self, span: Any, meta: _Meta, started: float) -> None:
        self.span = span
        self.meta = meta
        self.started = started
        self.ended = False


class RunTelemetry:
    """One run's observation (private): its span, the attempts in flight, the instruments."""

    def __init__(
        self,
        tracer: Any,
        instruments: Any,
        workflow: Any,
        parent: Any = None,
        links: tuple[Any, ...] = (),
        resumed: bool = False,
    ) -> None:
        self.tracer = tracer
        self.inst = instruments
        self.workflow_id = workflow.workflow_id
        self.name = workflow.name or workflow.workflow_id
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        #: ``{path: attempt}`` the engine numbered each step's latest attempt (its "started").
        self.numbered: dict[str, int] = {}
        #: ``{path: attempts}`` recorded by earlier stretches of a resumed durable run.
        self.earlier: dict[str, int] = {}
        #: ``{path: seconds}`` a step waited for a concurrency slot, until its "started".
        self.slot_waits: dict[str, float] = {}
        self.current: dict[str, _Attempt] = {}
        self.started_at: dict[str, float] = {}
        self.t0 = time.monotonic()
        self.span: Any = None
        self.run_id: str | None = None
        self.finished = False
        self._tokens: list[Any] = []
        if tracer is not None:
            from opentelemetry import trace

            attrs = {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": self.name,
                "batten.workflow.id": self.workflow_id,
            }
            if resumed:
                attrs["batten.run.resumed"] = True
            self.span = tracer.start_span(
                f"invoke_workflow {self.name}",
                context=parent,
                kind=trace.SpanKind.INTERNAL,
                attributes=attrs,
                links=list(links) or None,
            )

    # -- the run ---------------------------------------------------------------------------

    def carrier(self) -> dict[str, str]:
        """The run span's W3C trace context (``{"traceparent": ...}``)."""
        if self.span is None:
            return {}
        from opentelemetry import trace
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier

    def set_run_id(self, run_id: str | None) -> None:
        """Records the run's id (known when the run is durable, else with its first step)."""
        if not run_id:
            return
        self.run_id = run_id
        if self.span is not None:
            self.span.set_attribute("batten.run_id", run_id)

    def enter(self) -> None:
        """Makes the run span current in the calling task (before its plan is started, so the
        run's steps inherit it)."""
        self._tokens.append(_RUN.set(self))
        if self.span is not None:
            from opentelemetry import context, trace

            self._tokens.append(context.attach(trace.set_span_in_context(self.span)))

    def exit(self) -> None:
        if self.span is not None and len(self._tokens) > 1:
            from opentelemetry import context

            context.detach(self._tokens.pop())
        if self._tokens:
            _RUN.reset(self._tokens.pop())

    def abandon(self) -> None:
        """Ends the run span of a run that never started (its record could not be written)."""
        if self.span is not None:
            self.span.end()

    def finish(self, status: str, error: str | None, run_id: str | None) -> None:
        """Ends the run: leftover attempt spans, the run span (ERROR for a failed run), the
        run duration metric. Only the first call counts."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            left = list(self.current.values())
            self.current.clear()
        for att in left:
            self._end(att)
        if self.inst is not None:
            self.inst.run_duration.record(
                time.monotonic() - self.t0,
                {"batten.workflow.id": self.workflow_id, "batten.workflow.status": status},
            )
        if self.span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self.set_run_id(run_id)
        self.span.set_attribute("batten.workflow.status", status)
        if status in ("failed", "compensated", "cancelled"):
            self.span.set_attribute(
                "error.type", "WorkflowFailed" if status != "cancelled" else "cancelled"
            )
            self.span.set_status(Status(StatusCode.ERROR, error or status))
        self.span.end()

    # -- attempts --------------------------------------------------------------------------

    def begin_attempt(self, meta: _Meta, context: Any) -> tuple[_Attempt, str, Any]:
        prefix = _PREFIX.get()
        sid = getattr(context, "step_id", None) or meta.attrs["batten.step.id"]
        path = f"{prefix}/{sid}" if prefix else sid
        if not prefix and self.run_id is None:
            self.set_run_id(getattr(context, "run_id", None))
        now = time.monotonic()
        with self.lock:
            n = self.attempts.get(path, 0) + 1
            self.attempts[path] = n
            queued = self.started_at.pop(path, None)
            n = self.numbered.get(path, n) + self.earlier.get(path, 0)
        if self.inst is not None and queued is not None:
            self.inst.start_delay.record(
                max(0.0, now - queued),
                {"batten.workflow.id": self.workflow_id, "batten.step.path": _low(path)},
            )
        span: Any = None
        otel_token: Any = None
        if self.tracer is not None:
            from opentelemetry import context as otel_context
            from opentelemetry import trace

            attrs = dict(meta.attrs)
            attrs["batten.step.path"] = path
            attrs["batten.step.attempt"] = n
            if self.run_id:
                attrs["batten.run_id"] = self.run_id
            span = self.tracer.start_span(meta.name, kind=trace.SpanKind.INTERNAL, attributes=attrs)
            otel_token = otel_context.attach(trace.set_span_in_context(span))
        token = (otel_token, _PREFIX.set(path))
        att = _Attempt(span, meta, now)
        with self.lock:
            self.current[path] = att
        return att, path, token

    def end_attempt(self, att: _Attempt, path: str, token: Any, out: Any, exc: Any) -> None:
        otel_token, prefix_token = token
        with contextlib.suppress(ValueError):  # reset in another context: nothing to undo
            _PREFIX.reset(prefix_token)
        if otel_token is not None:
            from opentelemetry import context as otel_context

            otel_context.detach(otel_token)
        if exc is None:
            if att.meta.operation == "invoke_agent":
                return  # ended by the step's "completed" event, which carries its usage
            with self.lock:
                if self.current.get(path) is att:
                    del self.current[path]
            self._end(att)
            return
        if att.span is not None and not att.ended:
            from opentelemetry.trace import Status, StatusCode

            att.span.set_attribute("error.type", type(exc).__qualname__)
            att.span.record_exception(exc)
            att.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        # Ended by the sink (after the retry event) or at the run's end.

    def _end(self, att: _Attempt) -> None:
        with self.lock:
            if att.ended:
                return
            att.ended = True
        if att.span is not None:
            att.span.end()

    def _usage(self, att: _Attempt, meta: Any) -> None:
        """An agent attempt's model and token usage, from its step result's ``metadata``
        (``"model"``, ``"usage"``: what the adapters report)."""
        if not isinstance(meta, Mapping) or att.meta.operation != "invoke_agent":
            return
        model = meta.get("model")
        usage = meta.get("usage")
        if att.span is not None and isinstance(model, str):
            att.span.set_attribute("gen_ai.request.model", model)
        if not isinstance(usage, Mapping) or _framework_instrumented(att.meta.target):
            return  # the framework's own telemetry counts these tokens
        for kind, key in (("input", "input_tokens"), ("output", "output_tokens")):
            value = usage.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            if att.span is not None:
                att.span.set_attribute(f"gen_ai.usage.{key}", value)
            if self.inst is not None:
                attrs = {"gen_ai.token.type": kind, "gen_ai.operation.name": "invoke_agent"}
                if isinstance(model, str):
                    attrs["gen_ai.request.model"] = model
                self.inst.tokens.record(value, attrs)

    # -- events ----------------------------------------------------------------------------

    def sink(self, inner: Callable[[str, str, int, Any], None] | None) -> Callable[..., None]:
        """The run's event sink: this observation's handling, then ``inner``'s."""

        def on_event(kind: str, step_id: str, attempt: int, payload: Any) -> None:
            try:
                self.event(kind, step_id, attempt, payload)
            except Exception:  # telemetry never breaks a run
                pass
            if inner is not None:
                inner(kind, step_id, attempt, payload)

        return on_event

    def event(self, kind: str, path: str, attempt: int, payload: Any) -> None:
        base = {"batten.workflow.id": self.workflow_id, "batten.step.path": _low(path)}
        if kind == "started":
            with self.lock:
                self.started_at[path] = time.monotonic()
                self.numbered[path] = attempt
                slot_wait = self.slot_waits.pop(path, 0.0)
            if self.inst is not None:
                self.inst.attempts.add(1, base)
                if attempt == 1:
                    self.inst.queue_wait.record(slot_wait, base)
            return
        if kind == "waited":
            seconds, what, name = payload
            if what == "concurrency":
                with self.lock:
                    self.slot_waits[path] = float(seconds)
            elif self.inst is not None:
                self.inst.traffic_wait.record(
                    float(seconds),
                    {
                        "batten.workflow.id": self.workflow_id,
                        "batten.traffic.kind": what,
                        "batten.traffic.name": str(name),
                    },
                )
            return
        if kind == "retrying":
            delay, error = payload
            etype = type(error).__qualname__
            if self.inst is not None:
                self.inst.retries.add(1, {**base, "error.type": etype})
                if etype == "StepTimeoutError":
                    self.inst.timeouts.add(1, base)
            att = self._pop(path)
            if att is not None and att.span is not None:
                self._failed(att, error)
                att.span.add_event(
                    "batten.retry",
                    {
                        "batten.retry.delay": float(delay),
                        "batten.step.attempt": attempt,
                        "error.type": etype,
                        "batten.retry.reason": f"{type(error).__name__}: {error}"[:1000],
                    },
                )
            if att is not None:
                self._end(att)
            return
        if kind == "circuit":
            if self.inst is not None:
                breaker, old, new = payload
                self.inst.circuit.add(
                    1,
                    {
                        "batten.circuit.breaker": str(breaker),
                        "batten.circuit.from": old,
                        "batten.circuit.to": new,
                    },
                )
            return
        if kind not in ("completed", "failed", "timeout", "skipped", "blocked", "cancelled"):
            return
        att = self._pop(path)
        ran = att is not None or path in self.attempts
        if self.inst is not None and ran:
            ms = getattr(payload, "execution_time_ms", None) or 0.0
            self.inst.step_duration.record(ms / 1000.0, {**base, "batten.step.status": kind})
            if kind == "timeout":
                self.inst.timeouts.add(1, base)
        if att is not None:
            if kind == "completed":
                self._usage(att, getattr(payload, "metadata", None))
            elif att.span is not None:
                exc = getattr(payload, "exception", None)
                self._failed(att, exc, getattr(payload, "error_type", None), kind)
            self._end(att)
        elif kind in ("skipped", "blocked", "cancelled"):
            holder = self._holder(path)
            if holder is not None:
                holder.add_event(
                    f"batten.step.{kind}",
                    {"batten.step.id": path.rsplit("/", 1)[-1], "batten.step.path": path},
                )

    def _pop(self, path: str) -> _Attempt | None:
        with self.lock:
            return self.current.pop(path, None)

    def _holder(self, path: str) -> Any:
        """The span of the run or composite step attempt that holds step ``path``."""
        if "/" in path:
            with self.lock:
                att = self.current.get(path.rsplit("/", 1)[0])
            if att is not None and att.span is not None:
                return att.span
        return self.span

    def _failed(
        self, att: _Attempt, exc: Any, etype: str | None = None, kind: str | None = None
    ) -> None:
        """Marks ``att`` failed (a timed-out sync attempt still running has not said so)."""
        from opentelemetry.trace import Status, StatusCode

        if etype is None and exc is not None:
            etype = type(exc).__qualname__
        if kind == "timeout" or etype == "StepTimeoutError":
            etype = "StepTimeoutError"
        if etype:
            att.span.set_attribute("error.type", etype)
        if not att.ended and etype == "StepTimeoutError":
            att.span.set_status(Status(StatusCode.ERROR, "StepTimeoutError: attempt timed out"))


def start_run(
    workflow: Any,
    carrier: Mapping[str, str] | None = None,
    previous: Mapping[str, str] | None = None,
    earlier_attempts: Mapping[str, int] | None = None,
) -> RunTelemetry | None:
    """The observation of a run of ``workflow`` starting now, or ``None`` when no tracer or
    meter provider is configured (decided here, once per run).

    Args:
        workflow: the ``Workflow``.
        carrier: the W3C trace context stored with a durable run being resumed
            (``{"traceparent": ...}``, its first run span), or ``None`` for a new run: the run
            span's parent is then the caller's current span.
        previous: the W3C trace context of the run span that ended the run's previous stretch
            (paused, waiting for approval, failed; see :func:`end_key`), or ``None``: the new
            run span links to it (``batten.link = "previous_stretch"``), else to ``carrier``'s.
        earlier_attempts: ``{step path: attempts}`` recorded by earlier stretches, added to the
            engine's attempt numbers (``batten.step.attempt`` counts across a resume).
    """
    tracer, instruments = _providers()
    if tracer is None and instruments is None:
        return None
    parent = None
    links: tuple[Any, ...] = ()
    if tracer is not None and carrier:
        from opentelemetry import trace
        from opentelemetry.propagate import extract

        parent = extract(dict(carrier))
        stored = trace.get_current_span(parent).get_span_context()
        if stored.is_valid:
            before = stored
            if previous:
                ended = trace.get_current_span(extract(dict(previous))).get_span_context()
                if ended.is_valid and ended.trace_id == stored.trace_id:
                    before = ended
            links = (trace.Link(before, {"batten.link": "previous_stretch"}),)
            caller = trace.get_current_span().get_span_context()
            if caller.is_valid and caller.trace_id != stored.trace_id:
                links += (trace.Link(caller, {"batten.link": "resumed_by"}),)
        else:
            parent = None
    tel = RunTelemetry(tracer, instruments, workflow, parent, links, resumed=bool(carrier))
    if earlier_attempts:
        tel.earlier.update(earlier_attempts)
    return tel


def end_key(run_id: str) -> str:
    """The store cache key under which a traced durable run keeps the W3C trace context of the
    run span that ended its latest stretch (``{"traceparent": ...}``), for the next resume's
    link. Kept :data:`END_TTL` seconds."""
    return f"batten:trace-end:{run_id}"


#: Seconds a stretch's end span context is kept in the store (400 days: a paused run may be
#: resumed long after).
END_TTL = 400 * 24 * 3600.0


def _wrap(meta: _Meta, invoke: Callable[..., Any], is_async: bool, wants: bool) -> Any:
    """``invoke`` (a step call) making one attempt span per call; always takes ``context``."""
    if is_async:

        async def traced_async(context: Any) -> Any:
            rs = _RUN.get()
            if rs is None:
                return await (invoke(context=context) if wants else invoke())
            att, path, token = rs.begin_attempt(meta, context)
            try:
                out = await (invoke(context=context) if wants else invoke())
            except BaseException as exc:
                rs.end_attempt(att, path, token, None, exc)
                raise
            rs.end_attempt(att, path, token, out, None)
            return out

        return traced_async

    def traced(context: Any) -> Any:
        rs = _RUN.get()
        if rs is None:
            return invoke(context=context) if wants else invoke()
        att, path, token = rs.begin_attempt(meta, context)
        try:
            out = invoke(context=context) if wants else invoke()
        except BaseException as exc:
            rs.end_attempt(att, path, token, None, exc)
            raise
        rs.end_attempt(att, path, token, out, None)
        return out

    return traced


def wrap_call(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    """``spec`` with its call making a span per attempt, when telemetry is on at compile time
    (the plan cache is keyed by :func:`compile_key`); else ``spec`` unchanged."""
    if not compile_key():
        return spec
    invoke, is_async, wants, refs = spec
    return _wrap(_meta(step, opts.workflow_id), invoke, is_async, wants), is_async, True, refs


def wrap_takeover(step: Step, opts: CompileOptions, invoke: Callable[..., Any]) -> Any:
    """A takeover's call (a step with a fallback or error handler, :mod:`.recovery`) making a
    ``recover {step id}`` span that holds the step's own attempts and its recovery step's, when
    telemetry is on at compile time; else ``invoke`` unchanged."""
    if not compile_key():
        return invoke
    sid = step.step_id
    meta = _Meta(
        f"recover {sid}",
        None,
        {
            "batten.workflow.id": opts.workflow_id,
            "batten.step.id": sid,
            "batten.step.kind": "recovery",
        },
    )
    return _wrap(meta, invoke, True, True)


def wrap_item(
    step: Any,
    workflow_id: str,
    inner_id: str,
    fn: Callable[..., Any],
    is_async: bool,
    wants: bool,
) -> tuple[Callable[..., Any], bool, bool]:
    """A ``MapStep`` item call ``fn(item[, context=])`` making a span per attempt, when
    telemetry is on; else as it was. ``step`` is the map's inner step, or the plain callable
    it maps (then an ``execute_tool`` span named after it)."""
    if not compile_key():
        return fn, is_async, wants
    if isinstance(step, Step):
        meta = _meta(step, workflow_id)
    else:
        name = _target_name(step, inner_id)
        meta = _Meta(
            f"execute_tool {name}",
            "execute_tool",
            {
                "batten.workflow.id": workflow_id,
                "batten.step.id": inner_id,
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
            },
        )

    def bind(item: Any) -> Callable[..., Any]:
        return (lambda context: fn(item, context=context)) if wants else (lambda: fn(item))

    if is_async:

        async def item_async(item: Any, context: Any) -> Any:
            call = _wrap(meta, bind(item), True, wants)
            return await call(context)

        return item_async, True, True

    def item_sync(item: Any, context: Any) -> Any:
        return _wrap(meta, bind(item), False, wants)(context)

    return item_sync, False, True


# -- W3C carriers: a step run in another process (``with_isolation("process")``) ------------


def inject_carrier() -> dict[str, str]:
    """The current trace context (the running step's span) as a W3C carrier dict
    (``{"traceparent": ..., "tracestate"?: ...}``) to hand to a child process; ``{}`` when
    OpenTelemetry is not in use. Pair with :func:`attached_carrier` in the child.

    The hook for steps run in another process (``with_isolation("process")``): call it in the
    parent while the step's attempt span is current (inside the step's call), send the dict
    with the step's input (it is JSON-safe), and wrap the child's call in
    ``attached_carrier(carrier)``; the child needs its own tracer provider (and exporter) for
    its spans to be recorded. As OpenTelemetry's ``propagate.inject`` with the globally
    configured propagator (W3C Trace Context by default). Never imports ``opentelemetry``;
    never raises."""
    if "opentelemetry.trace" not in sys.modules:
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextlib.contextmanager
def attached_carrier(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Makes the trace context in ``carrier`` (from :func:`inject_carrier`) current inside the
    ``with`` block, so spans made there are children of the step span in the parent process.
    Does nothing for an empty carrier or without ``opentelemetry-api`` installed."""
    if not carrier:
        yield
        return
    try:
        from opentelemetry import context
        from opentelemetry.propagate import extract
    except ImportError:
        yield
        return
    token = context.attach(extract(dict(carrier)))
    try:
        yield
    finally:
        context.detach(token)


register_compile_key(compile_key)
register_call_wrapper(wrap_call, wanted=lambda steps, opts: compile_key())
register_item_wrapper(wrap_item)
register_takeover_wrapper(wrap_takeover)
