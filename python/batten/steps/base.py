"""Step definitions: what to call, with which input, under which timeout, retry and conditions.

A step is a description; the native engine decides when it runs. Everything that can be decided
once (which method of an agent object to call, whether it is async, whether it takes a
``context`` parameter, which ``{step_id.result}`` references its input holds) is decided here, at
step creation, never per call.

Layer ``batten.steps`` (the step model): imports ``batten._internal``, ``batten.errors``,
``batten.retry``, ``batten.registry``, ``batten.traffic`` and ``batten.adapters``; never the
runtime, which it reaches through the :class:`~batten.steps.protocol.CompileContext` passed to
``_call_spec``.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from batten._internal.checks import (
    MAX_COUNT,
    check_callable,
    check_count,
    check_seconds,
    check_step_id,
)
from batten._internal.epoch import bump_epoch
from batten._internal.placement import RayPlacement, require_ray
from batten._internal.templates import render, template_refs
from batten.adapters import ACCEPTS, CALL_METHODS, adapt
from batten.errors import WorkflowDefinitionError
from batten.registry import global_registry
from batten.retry import RetryPolicy

if TYPE_CHECKING:
    # Annotations only: importing the module (two Protocol classes) cost ~1 M instructions of
    # `from batten import Workflow` (issue 18).
    # Imported where a step is drawn (`_describe`, for `batten.display`): not on a run's path.
    from batten._internal.view import StepView
    from batten.steps.protocol import CallSpec, CompileContext, ItemSpec

__all__ = ["AgentStep", "Step", "ToolStep"]

# `ainvoke`/`invoke` take their input as one positional argument (LangChain's Runnable protocol);
# the others take a tool's args as keyword arguments.
_SINGLE_INPUT = frozenset({"ainvoke", "invoke"})

_NO_RETRY = RetryPolicy.no_retry()  # frozen, so every step without with_retry shares it


# NOTE: a plain `collections.namedtuple` at run time, the `NamedTuple` class for type checkers
# (as `batten._internal.spec.StepSpec`, which says why; tests/test_api.py compares them).
if TYPE_CHECKING:

    class RemoteCall(NamedTuple):
        """An agent or tool step's call as made in another process (a process-isolated worker or a
        Ray task): ``fn(*args, **kwargs)``, where ``(args, kwargs) = prepare(context[, item])`` is
        computed in this process (templates, input and params functions; with the ``MapStep`` item
        when given). See ``_Invocable._remote_call``."""

        fn: Callable[..., Any]
        is_async: bool
        #: ``fn`` declares a ``context`` parameter.
        wants_context: bool
        prepare: Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]
        #: The arguments when they are known at definition (checked for serializability before
        #: anything runs), ``None`` when they depend on the context.
        static_args: Any

else:
    RemoteCall = namedtuple(
        "RemoteCall", ("fn", "is_async", "wants_context", "prepare", "static_args")
    )


_accepts_context_cache: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _accepts_context(fn: Callable[..., Any]) -> bool:
    if _plain_function(fn):
        # NOTE: what inspect.signature answers for a plain function, read off its code object:
        # ~40 µs a callable less, which was ~3 ms of compiling issue 18's D3 (50 steps, each its
        # own closure, compiled again in the recovering process). Cheaper than the cache.
        return _takes_context(fn.__code__)
    key = getattr(fn, "__func__", fn)
    try:
        return _accepts_context_cache[key]
    except (KeyError, TypeError):
        pass
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        answer = False
    else:
        p = params.get("context")
        answer = p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    try:
        _accepts_context_cache[key] = answer
    except TypeError:
        pass
    return answer


def _plain_traits(fn: types.FunctionType) -> tuple[bool, bool] | None:
    """``(is_async, wants_context)`` of a plain ``def`` function that is its own call (see
    ``_resolve``: no JAF ``schema``; ``_plain_function``: its code's own signature), as
    ``_is_async`` and ``_accepts_context`` answer; ``None`` for any other function.
    NOTE: one call where compiling a step made four (issue 18's D3 compiles its 50 steps again
    in the recovering process)."""
    attrs = fn.__dict__
    if attrs and ("schema" in attrs or "__wrapped__" in attrs or "__signature__" in attrs):
        return None
    code = fn.__code__
    return bool(code.co_flags & inspect.CO_COROUTINE), _takes_context(code)


def _takes_context(code: types.CodeType) -> bool:
    """Whether a function of ``code`` has a parameter ``context`` that can be passed by keyword
    (what ``inspect.signature`` says of a function whose signature is its code's own)."""
    end = code.co_argcount + code.co_kwonlyargcount
    return "context" in code.co_varnames[code.co_posonlyargcount : end]


def _plain_function(fn: Any) -> bool:
    """A ``def`` function whose signature is its code's own: no ``__wrapped__`` (which
    ``inspect.signature`` follows) and no ``__signature__`` override."""
    return (
        type(fn) is types.FunctionType
        and "__wrapped__" not in fn.__dict__
        and "__signature__" not in fn.__dict__
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    if type(fn) is types.FunctionType:
        # NOTE: what the two checks below answer for a plain function (`function`'s own
        # `__call__` is a slot wrapper, never a coroutine function), read off its code flags:
        # ~1 µs a step of compiling, and several times that the first time a process compiles
        # (issue 18's D3 compiles its 50 steps again in the recovering process).
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    if inspect.iscoroutinefunction(fn):
        return True
    # A callable object whose class defines `async def __call__`.
    dunder_call = type(fn).__dict__.get("__call__")
    return dunder_call is not None and inspect.iscoroutinefunction(dunder_call)


def traffic_attached() -> bool:
    """Whether any rate limit or breaker is attached to an agent or tool (``batten.traffic``).

    ``batten.traffic`` loads on first use (``import batten`` and a run without traffic controls
    never import it; issue 13's M benchmark counts every eager module), and nothing can be
    attached before it is imported, so the compiler asks this before importing it.
    """
    traffic = sys.modules.get("batten.traffic")
    return traffic is not None and bool(traffic._ATTACHED)


def _resolve(
    target: Any, role: str, step_id: str, timeout: float | None = None
) -> tuple[Callable[..., Any], bool]:
    """Returns ``(callable, single_input)`` for an agent or tool: a framework's object through
    its adapter (``batten.adapters``), else the callable or its first call method. A pool
    (:class:`~batten.AgentPool`) binds a call that takes one of its instances, each resolved
    here; its wait for one is bounded by ``timeout`` (the step's seconds per attempt, or
    ``None``)."""
    if type(target) is types.FunctionType and "schema" not in target.__dict__:
        # A plain `def` function (the usual agent or tool) is called as it is: `function` has
        # no `_batten_bind`/`_batten_target`, and no adapter claims it (see `adapt`). Asking
        # raised and formatted two AttributeErrors a step (~5% of compiling a plan).
        return target, False
    bind = getattr(type(target), "_batten_bind", None)
    if bind is not None:
        bound: tuple[Callable[..., Any], bool] = bind(target, role, step_id, timeout, _pooled)
        return bound
    # A batten.Agent found by name in the registry: call its function, not its sync __call__
    # (which would hide an async function's coroutine from the engine).
    unwrap = getattr(type(target), "_batten_target", None)
    if unwrap is not None:
        target = unwrap(target)
    adapted = adapt(target, role, step_id)
    if adapted is not None:
        return adapted
    plain = (
        inspect.isfunction(target)
        or inspect.ismethod(target)
        or inspect.isbuiltin(target)
        or isinstance(target, functools.partial)
    )
    if not plain:
        for name in CALL_METHODS:
            method = getattr(target, name, None)
            if callable(method):
                return method, name in _SINGLE_INPUT
    if callable(target):
        return target, False
    raise WorkflowDefinitionError(
        f"step '{step_id}': the {role} must be one of: {ACCEPTS}; got {type(target).__name__} "
        f"{target!r:.80}"
    )


def _pooled(instance: Any, role: str, step_id: str) -> tuple[Callable[..., Any], bool, bool, bool]:
    """``(fn, single_input, is_async, wants_context)`` for one instance of a pool."""
    fn, single = _resolve(instance, role, step_id)
    return fn, single, _is_async(fn), _accepts_context(fn)


def _checked_at_creation(target: Any, role: str, step_id: str) -> None:
    """Fails a step's constructor on an object that cannot be called (a name is looked up,
    and a pool makes its first instance, only when the workflow is compiled)."""
    if target is None or isinstance(target, str) or hasattr(type(target), "_batten_bind"):
        return
    _resolve(target, role, step_id)


class Step:
    """Base class of every step: an id plus timeout, retry policy and conditions.

    Args:
        step_id: unique within its workflow; a non-empty str without ``/`` (which joins a
            composite step's id to its inner steps' ids in paths such as ``"parallel/branch"``).

    Raises:
        WorkflowDefinitionError: ``step_id`` is not a non-empty str, or holds ``/``.
    """

    # NOTE: slots, not a __dict__: a 10,000-step fan-out (W2) held ~500 bytes per step, most of
    # it the instance dicts. Subclasses without __slots__ still get a __dict__.
    __slots__ = (
        "_version",
        "cache",
        "compensation",
        "conditions",
        "fallback",
        "inline",
        "isolation",
        "isolation_initializer",
        "placement",
        "retry_policy",
        "step_id",
        "timeout",
        "traffic",
    )

    #: True for steps that run other steps (``batten.composite``).
    _is_composite = False

    def __init__(self, step_id: str) -> None:
        self.step_id: str = check_step_id(step_id)
        self.timeout: float | None = None
        self.retry_policy: RetryPolicy = _NO_RETRY
        self.conditions: tuple[Callable[[Any], Any], ...] = ()
        self.fallback: Step | None = None
        self.compensation: Step | None = None
        #: ``(ttl_seconds, key_fn)`` set by ``with_cache``; ``None``: not cached.
        self.cache: tuple[float, Callable[[Any], Any] | None] | None = None
        #: The step's own ``RateLimit``s and ``CircuitBreaker``s.
        self.traffic: tuple[Any, ...] = ()
        #: ``"thread"`` (default: a sync step runs on a worker thread) or ``"process"`` (see
        #: ``with_isolation``).
        self.isolation: str = "thread"
        #: Where the step's callable runs: ``None`` (this process, or the workflow's executor)
        #: or a ``RayPlacement`` set by ``on_ray``.
        self.placement: Any = None
        #: Run once in each worker process before its first call of this step (see
        #: ``with_isolation``); ``None``: nothing.
        self.isolation_initializer: Callable[[], Any] | None = None
        #: ``with_inline``: ``None`` (default) adaptive, ``True`` / ``False`` forced.
        self.inline: bool | None = None
        self._version = 0

    def _changed(self) -> None:
        self._version += 1
        bump_epoch()

    def _children(self) -> list[Step]:
        """The steps this step runs inside itself (a composite's branches, body, route...);
        none for a plain step."""
        return []

    def _step_arg(self, what: str, step: Any) -> Step:
        if not isinstance(step, Step):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': {what} must be a batten step (AgentStep, ToolStep, ...), "
                f"got {step!r:.80}"
            )
        return step

    def with_fallback(self, step: Step) -> Self:
        """Runs ``step`` when this step fails after its retries (or times out); the fallback's
        output stands in for this step's, and the step ends ``COMPLETED`` with
        ``metadata["recovered_by"]`` naming the fallback and both results in ``children``. A
        fallback that fails too fails the step. As LangChain's ``with_fallbacks``. Returns the
        step.

        Raises:
            WorkflowDefinitionError: ``step`` is not a batten step.
        """
        self.fallback = self._step_arg("a fallback", step)
        self._changed()
        return self

    def with_compensation(self, step: Step) -> Self:
        """Registers the saga compensation that undoes this step (seed 001's rollback).

        When a run fails, the compensations of the steps that completed run in reverse
        completion order, each recorded as a step result (id ``"<compensation id>"``), and the
        run ends ``COMPENSATED`` (``FAILED`` if a compensation fails too). The compensation
        sees the final context, this step's output included. Returns the step.

        Raises:
            WorkflowDefinitionError: ``step`` is not a batten step.
        """
        self.compensation = self._step_arg("a compensation", step)
        self._changed()
        return self

    def with_timeout(self, seconds: float) -> Self:
        """Bounds each attempt to ``seconds`` (float, > 0 and at most ``MAX_SECONDS``, 365
        days), as JAF's ``with_timeout``.

        An async step past its timeout is cancelled (its ``finally`` blocks run); a sync step is
        abandoned (its thread finishes on its own, its result is discarded). Either ends the
        attempt with :class:`~batten.StepTimeoutError`, which the retry policy may retry; the
        step's final status is ``TIMEOUT``. Returns the step.

        Raises:
            WorkflowDefinitionError: ``seconds`` is not a positive number of seconds up to
                365 days.
        """
        check_seconds(seconds, "timeout", owner=f"step '{self.step_id}'")
        self.timeout = float(seconds)
        self._changed()
        return self

    def with_isolation(self, mode: str, *, initializer: Callable[[], Any] | None = None) -> Self:
        """Where this sync step's call runs: ``"thread"`` (default) or ``"process"``.

        ``"thread"``: on batten's worker threads, in this process; a timeout abandons the call
        (it keeps its thread until it returns). ``"process"``: in a worker process of a standard
        ``concurrent.futures.ProcessPoolExecutor`` (``forkserver`` start method on Linux,
        ``spawn`` elsewhere), so a timeout really stops the work: the process is sent SIGTERM,
        then SIGKILL after ``batten._runtime.isolation.KILL_GRACE_SECONDS`` (1.0 s) if it is
        still alive, and replaced. The attempt ends ``TIMEOUT`` with ``metadata["killed"] is
        True``; the run moves on at once. Temporal's Python SDK cannot stop a sync activity at
        its timeout (sdk-python #1048); this can.

        The callable, its arguments, its output and its exceptions cross by pickle: the callable
        must be importable by reference (a module-level function or class, not a lambda or a
        closure) and must not take ``context``; an exception keeps its type and message.
        Retries, timeouts, rate limits, circuit breakers, checkpoints and events behave as for
        a step in the process. Cost: a round trip to a warm worker process, ~0.3-0.4 ms a call
        (a chain of 200 no-op steps, 2 cores: 290-390 µs a step, against 6-8 µs on a thread),
        plus ~15-50 ms to start a worker when none is idle (~0.3 s for the process's first, which
        starts the forkserver), which counts against the step's
        timeout (a timeout that passes while its worker starts kills nothing: none of the call
        ran, and ``metadata["killed"]`` is absent); choose it for CPU-bound or
        untrusted calls and for calls that must really stop at their timeout (C code that
        never returns to Python, runaway loops). Returns the step.

        ``initializer`` (a picklable no-argument callable, default ``None``; only with
        ``"process"``) runs once in each worker process before the first call of a step that
        names it (per worker and initializer: workers are shared by all isolated steps), as
        ``ProcessPoolExecutor``'s ``initializer``. Its exception fails that call (and the next
        call in that worker tries it again). Use it to configure what the worker process needs
        and does not inherit, such as OpenTelemetry: when the run is traced, the step's call
        runs in the worker under the step's span context (a W3C ``traceparent`` carried over),
        so spans the callable makes nest under batten's step span, but only if the worker has a
        tracer provider: set one in the initializer (``trace.set_tracer_provider(...)`` with an
        exporter). Worker processes are killed, not shut down, when the interpreter exits, so
        export synchronously there (``SimpleSpanProcessor``) or ``force_flush()`` the provider
        at the end of the callable; spans a ``BatchSpanProcessor`` still holds are lost.

        Raises:
            WorkflowDefinitionError: ``mode`` is not ``"thread"`` or ``"process"``;
                ``initializer`` is not callable, or is given with ``"thread"``. When the
                workflow is validated or compiled (before anything runs): a process-isolated
                step that is async, holds other steps, takes ``context``, or whose callable,
                initializer or definition-time arguments cannot be pickled.
        """
        if mode not in ("thread", "process"):
            raise WorkflowDefinitionError(
                f'step \'{self.step_id}\': with_isolation expects "thread" or "process", '
                f"got {mode!r:.80}"
            )
        if initializer is not None and (mode != "process" or not callable(initializer)):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': with_isolation's initializer must be a callable and "
                f'needs mode "process", got {initializer!r:.80} with mode {mode!r}'
            )
        self.isolation = mode
        self.isolation_initializer = initializer
        self._changed()
        return self

    def with_inline(self, inline: bool) -> Self:
        """Whether this sync step's call may run on the event loop's thread instead of a
        worker thread (``inline``: bool; default, without this call: the adaptive rule).

        The adaptive rule (issue 18): a sync step's first calls run on a worker thread and are
        timed (wall time). After 8 calls in a row that each returned within 1 ms, the loop's
        thread calls the step itself, in the run's contextvars copy and with the running loop
        hidden (as on a worker, ``asyncio.get_running_loop()`` raises), saving the two thread
        hops (~35 µs each on 2 cores) that cost more than a trivial step. A call on the loop
        that takes longer than 1 ms is a strike: the step goes back to worker threads and must
        again return within 1 ms 8 times in a row to come back; after 3 strikes it stays on
        worker threads for good (1,000 fast calls on the loop forgive one strike, so that
        rare pauses of the whole process, a GC pass or the OS preempting the thread, do not
        exile a trivial step). The rule is learnt per step of a compiled workflow and kept
        across its runs. Honest limit: a strike is a call that blocked the loop for its whole
        length (no rule can tell before the call returns), so a step that turns slow blocks the
        loop at most 3 times, and a step slow less than once per 1,000 calls blocks it once
        per slow call; a step that is slow from its first call never runs on the loop. Steps
        with a timeout, process-isolated steps and ``MapStep`` items never run on the loop.

        ``with_inline(False)``: always a worker thread (for a call that is fast in general but
        may block: a cache lookup that sometimes goes to the network). ``with_inline(True)``:
        always the loop's thread, never demoted (only for calls that never block; a timeout
        still sends the step to a worker thread, where it can be abandoned). As Trio's and
        AnyIO's rule that sync code runs on the loop's thread unless sent to a thread, made
        automatic. Async steps ignore it. Returns the step.

        Raises:
            WorkflowDefinitionError: ``inline`` is not a bool.
        """
        if not isinstance(inline, bool):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': with_inline expects True or False, got {inline!r:.80}"
            )
        self.inline = inline
        self._changed()
        return self

    def with_rate_limit(self, limit: Any) -> Self:
        """Holds each attempt of this step to ``limit`` (a :class:`~batten.RateLimit`): the
        attempt waits before it starts until the limit allows it; it never fails for it. For
        a ``MapStep`` the limit applies to each item. Returns the step.

        Raises:
            WorkflowDefinitionError: ``limit`` is not a ``RateLimit``.
        """
        from batten.traffic import RateLimit  # on first use: see traffic_attached

        if not isinstance(limit, RateLimit):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': with_rate_limit expects a batten.RateLimit, got "
                f"{limit!r:.80}"
            )
        self.traffic = (*self.traffic, limit)
        self._changed()
        return self

    def with_circuit_breaker(self, breaker: Any) -> Self:
        """Guards this step with ``breaker`` (a :class:`~batten.CircuitBreaker`): while it is
        open the step fails fast with ``CircuitOpenError`` (or waits, with ``wait=True``), and
        each attempt's outcome counts towards it. For a ``MapStep`` it guards each item.
        Returns the step.

        Raises:
            WorkflowDefinitionError: ``breaker`` is not a ``CircuitBreaker``.
        """
        from batten.traffic import CircuitBreaker  # on first use: see traffic_attached

        if not isinstance(breaker, CircuitBreaker):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': with_circuit_breaker expects a batten.CircuitBreaker, "
                f"got {breaker!r:.80}"
            )
        self.traffic = (*self.traffic, breaker)
        self._changed()
        return self

    def with_cache(self, ttl: float, key: Callable[[Any], Any] | None = None) -> Self:
        """Reuses this step's output across runs (seed 002's result caching): a later run
        whose cache key matches within ``ttl`` seconds gets the stored output without running
        the step, and the step's result says so (``metadata["cached"] is True``).

        Args:
            ttl: seconds (float, > 0, at most 365 days) a cached output stays valid.
            key: ``key(context) -> str`` (any JSON-able value), e.g.
                ``lambda ctx: ctx["user_id"]``. Default: the step's id with its context's
                variables and the results it depends on, hashed.

        Outputs are cached in the run's store (``Workflow.with_store``), so other processes
        sharing it reuse them; without a store, in this process. Only JSON outputs are
        cached; a step whose output is not JSON simply runs each time. Returns the step.

        Raises:
            WorkflowDefinitionError: ``ttl`` is not a positive number of seconds up to 365
                days, or ``key`` is not callable.
        """
        owner = f"step '{self.step_id}'"
        check_seconds(ttl, "cache ttl", owner=owner)
        if key is not None:
            check_callable(key, "cache key", owner=owner)
        self.cache = (float(ttl), key)
        self._changed()
        return self

    def with_retry(
        self,
        max_retries: int | None = None,
        *,
        max_attempts: int | None = None,
        policy: RetryPolicy | None = None,
    ) -> Self:
        """Retries the step on failure. Returns the step.

        ``with_retry(3)`` allows 3 retries after the first attempt (4 attempts), as JAF's
        ``with_retry(max_retries)``; ``with_retry(max_attempts=3)`` allows 3 attempts in all, as
        JAF's e-commerce example and Temporal's ``maximum_attempts``. ``policy`` sets backoff,
        jitter and which exceptions retry (default: ``RetryPolicy()``, i.e. 1 s initial
        interval doubling up to 100 s); a count given beside it overrides its ``max_attempts``.

        Raises:
            WorkflowDefinitionError: both counts given, a count that is not an int from its
                minimum (0 retries, 1 attempt) to ``MAX_COUNT`` attempts (``2**31 - 1``), or
                ``policy`` is not a RetryPolicy.
        """
        if max_retries is not None and max_attempts is not None:
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': with_retry takes max_retries or max_attempts, not both"
            )
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': policy must be a batten.RetryPolicy, "
                f"got {type(policy).__name__}"
            )
        base = policy if policy is not None else RetryPolicy()
        owner = f"step '{self.step_id}'"
        if max_retries is not None:
            # One attempt more than the retries must still fit RetryPolicy.max_attempts.
            check_count(max_retries, "max_retries", owner=owner, minimum=0, maximum=MAX_COUNT - 1)
        if max_attempts is not None:
            check_count(max_attempts, "max_attempts", owner=owner)
        if max_retries is not None:
            base = replace(base, max_attempts=max_retries + 1)
        elif max_attempts is not None:
            base = replace(base, max_attempts=max_attempts)
        self.retry_policy = base
        self._changed()
        return self

    def on_ray(
        self,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | None = None,
        resources: Mapping[str, float] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        output: str = "value",
    ) -> Self:
        """Runs this step's callable as a Ray task (``batten[ray]`` extra), placed with Ray's
        own task options, as ``ray.remote(...).options(...)``. For a ``MapStep``, call it on
        the map's inner step: each item is then one Ray task.

        Args:
            num_cpus: logical CPUs the task needs (float, default Ray's: 1).
            num_gpus: GPUs the task needs (float, default 0).
            memory: memory the task reserves, in bytes (int, default none reserved).
            resources: custom resources, e.g. ``{"node_a": 1}`` to pin it to a node started
                with that resource (dict of str to amounts, default none).
            runtime_env: Ray's ``runtime_env`` for this step's tasks (dict), over the
                executor's.
            output: ``"value"`` (default): the output comes back to this process, where the
                run (and a durable run's checkpoint) holds it. ``"ref"``: it stays in Ray's
                object store (as a task's return value does in Ray) and the run holds its
                ``ray.ObjectRef``; a step on Ray that takes it as a whole argument value
                (``"{step.result}"``) gets the value inside its own task, fetched by Ray from
                node to node, never through this process. Other steps and
                ``result.step(id).output`` get the ``ObjectRef`` (``ray.get`` / ``await``
                it). In a durable run (``with_store``) the output is fetched once, on the
                event loop, and checkpointed as with ``"value"``: a ref lives only as long as
                the process that made it, so a resumed run could not use it.

        The cluster is the workflow's :class:`~batten.RayExecutor`, or without one Ray's
        default (``ray.init()``: ``RAY_ADDRESS`` or a new local cluster). batten keeps its own
        retries (Ray's ``max_retries=0``), timeouts (a timed-out attempt's worker process is
        killed: ``ray.cancel(force=True)``), cancellation, rate limits, breakers, checkpoints,
        events and tracing. The callable, its arguments and its output cross processes by
        Ray's serialization; a step that declares ``context`` gets a copy of it. Returns the
        step.

        Raises:
            WorkflowDefinitionError: ``ray`` is not installed (naming the ``batten[ray]``
                extra) or a value has the wrong type. A callable Ray cannot serialize is
                reported when the workflow is compiled, before anything runs.
        """
        owner = f"step '{self.step_id}'"
        self.placement = RayPlacement.checked(
            owner, num_cpus, num_gpus, memory, resources, runtime_env, output
        )
        require_ray(owner)
        self._changed()
        return self

    def add_condition(self, condition: Callable[[Any], Any]) -> Self:
        """Adds ``condition(context) -> bool``, checked just before the step runs.

        All conditions must be true or the step is ``SKIPPED``; a skipped step does not block
        its dependents (JAF's ``add_condition``). ``context`` is the step's
        :class:`~batten.WorkflowContext`. A condition that raises fails the step with that
        exception. Returns the step.

        Raises:
            WorkflowDefinitionError: ``condition`` is not callable.
        """
        check_callable(condition, "a condition", owner=f"step '{self.step_id}'")
        self.conditions = (*self.conditions, condition)
        self._changed()
        return self

    def _call_spec(self, ctx: CompileContext) -> CallSpec:
        """``(invoke, is_async, wants_context, template_refs)`` for the engine; names are
        resolved in ``ctx.options.registry`` (default: the process-wide one), and a step that
        runs other steps compiles and runs them through ``ctx``.

        Raises:
            WorkflowDefinitionError: a named agent or tool is not registered.
        """
        raise TypeError(f"{type(self).__name__} cannot be run by the core engine")

    def _describe(self) -> StepView:
        """How ``batten.display`` draws this step: a box with its kind and non-default
        settings, or (a composite the display has no view for) a group of the steps it holds."""
        from batten._internal.view import StepView, settings_text

        kind = type(self).__name__
        settings = settings_text(self)
        children = self._children() if self._is_composite else []
        if children:
            return StepView(
                kind,
                "group",
                title=f"{kind}, {settings}" if settings else kind,
                branches=tuple((None, child) for child in children),
            )
        return StepView(kind, lines=(kind, settings))

    def _version_key(self) -> Any:
        """Changes whenever the step, or a step it holds, changes (plan cache key)."""
        if self.fallback is None and self.compensation is None:
            return self._version
        parts = (self.fallback, self.compensation)
        return (self._version, *(p._version_key() if p else None for p in parts))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.step_id!r})"


class _Invocable(Step):
    """A step that calls one agent or tool object (``AgentStep``, ``ToolStep``)."""

    __slots__ = ("_input_fn",)
    _role: str = "tool"

    def __init__(self, step_id: str) -> None:
        super().__init__(step_id)
        self._input_fn: Callable[[Any], Any] | None = None

    def _target(self) -> Any:
        return getattr(self, self._role)

    def _remote_call(self, ctx: CompileContext, item_arg: str | None = None) -> RemoteCall:
        """The step's call for another process (process isolation, a Ray task): the target
        and ``prepare(context[, item]) -> (args, kwargs)`` computing its input here; with
        ``item_arg``, ``prepare`` takes the ``MapStep`` item as ``_item_spec`` does. Abstract:
        ``AgentStep`` and ``ToolStep``, the only ``_Invocable`` kinds, each compute their input
        their own way."""
        raise NotImplementedError

    def _describe(self) -> StepView:
        """A box naming the agent or tool (``"tool: fetch"``; a target given by name, or by
        none, under that name or the step's id) and the non-default settings."""
        from batten._internal.view import StepView, name_of, settings_text

        target = self._target()
        kind = f"{self._role}: {name_of(self.step_id if target is None else target)}"
        return StepView(kind, lines=(kind, settings_text(self)))

    def _resolved(self, ctx: CompileContext) -> tuple[Callable[..., Any], bool, bool, bool]:
        """``(fn, single_input, is_async, wants_context)``, the target looked up by name if it
        was given as one."""
        target = getattr(self, self._role)  # `_target()`, inlined (once per step compiled)
        if type(target) is types.FunctionType:
            traits = _plain_traits(target)
            if traits is not None:  # what the calls below answer for it, in one
                return target, False, traits[0], traits[1]
        if target is None or isinstance(target, str):
            name = target or self.step_id
            reg = ctx.options.registry or global_registry()
            target = reg.resolve(self._role, name, self.step_id)  # type: ignore[arg-type]
        fn, single = _resolve(target, self._role, self.step_id, self.timeout)
        return fn, single, _is_async(fn), _accepts_context(fn)


class AgentStep(_Invocable):
    """Runs an agent on a message (JAF's ``AgentStep``).

    Args:
        step_id: unique id within the workflow.
        agent: a sync or async callable called as ``agent(message)``; an object with one of
            ``arun``, ``ainvoke``, ``run``, ``invoke``, ``execute`` (looked up in that order and
            called with the message); or a name (str) looked up in the registry (see
            :mod:`batten.registry`). ``None`` (default) looks up the ``step_id`` itself, as JAF's
            ``AgentStep("fulfillment_agent")``. If the callable declares a ``context``
            parameter it also gets ``context=`` (the step's :class:`~batten.WorkflowContext`).
        message: the input text; ``{step_id.result}`` and ``{step_id.result.key}`` are replaced
            by upstream outputs when the step runs (the referenced step must be an ancestor).

    Raises:
        WorkflowDefinitionError: ``agent`` cannot be called, or ``message`` is not a str. A name
            that is not registered is reported when the workflow is compiled, before it runs.
    """

    __slots__ = ("_context_fn", "agent", "message")
    _role = "agent"

    def __init__(self, step_id: str, agent: Any = None, message: str = "") -> None:
        super().__init__(step_id)
        if not isinstance(message, str):
            raise WorkflowDefinitionError(
                f"step '{step_id}': message must be a str, got {type(message).__name__}"
            )
        _checked_at_creation(agent, "agent", step_id)  # a bad object fails here
        self.agent = agent
        self.message = message
        self._context_fn: Callable[[Any], Any] | None = None

    def with_input(self, message: str) -> Self:
        """Sets the message (str, may hold ``{step_id.result}`` references), as JAF's
        e-commerce example. Returns the step.

        Raises:
            WorkflowDefinitionError: ``message`` is not a str.
        """
        if not isinstance(message, str):
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': with_input expects a str, got {type(message).__name__}"
            )
        self.message = message
        self._changed()
        return self

    def with_input_function(self, fn: Callable[[Any], Any]) -> Self:
        """Computes the message when the step runs: ``fn(context) -> str`` (JAF's
        ``with_input_function``). Replaces ``message``. Returns the step.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable.
        """
        check_callable(fn, "the input function", owner=f"step '{self.step_id}'")
        self._input_fn = fn
        self._changed()
        return self

    def with_context_function(self, fn: Callable[[Any], Any]) -> Self:
        """Adds context for the agent, computed when the step runs: ``fn(context) -> dict``
        (JAF's ``with_context_function``). The dict is appended to the message as
        ``"\\n\\nContext: <json>"`` (non-JSON values via ``str``). Returns the step.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable.
        """
        check_callable(fn, "the context function", owner=f"step '{self.step_id}'")
        self._context_fn = fn
        self._changed()
        return self

    def _message_for(self, context: Any) -> Any:
        if self._input_fn is not None:
            text = self._input_fn(context)
        else:
            text = render(self.message, context.results, self.step_id)
        if self._context_fn is not None:
            import json  # not at import time: `import batten` stays lean (workload I)

            extra = json.dumps(self._context_fn(context), default=str, sort_keys=True)
            text = f"{text}\n\nContext: {extra}"
        return text

    def _call_spec(self, ctx: CompileContext) -> CallSpec:
        fn, _single, is_async, wants = self._resolved(ctx)
        refs = template_refs(self.message) if self._input_fn is None else ()
        if not refs and self._input_fn is None and self._context_fn is None:
            return functools.partial(fn, self.message), is_async, wants, ()
        message_for = self._message_for

        def invoke(context: Any) -> Any:
            text = message_for(context)
            return fn(text, context=context) if wants else fn(text)

        return invoke, is_async, True, refs

    def _remote_call(self, ctx: CompileContext, item_arg: str | None = None) -> RemoteCall:
        """The agent, called elsewhere with one positional argument: the message, rendered
        here (``{item}`` replaced by the ``MapStep`` item as ``_item_spec`` does)."""
        fn, _single, is_async, wants = self._resolved(ctx)
        message_for = self._message_for
        placeholder = "{" + (item_arg or "item") + "}"

        def prepare(context: Any, *item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
            text = message_for(context)
            if item:
                if isinstance(text, str) and placeholder in text:
                    text = text.replace(placeholder, str(item[0]))
                elif text == "":
                    text = item[0]
            return (text,), {}

        static = None
        if self._input_fn is None and self._context_fn is None and not template_refs(self.message):
            static = (self.message,)
        return RemoteCall(fn, is_async, wants, prepare, static)

    def _item_spec(self, ctx: CompileContext, item_arg: str) -> ItemSpec:
        """For ``MapStep``: ``(invoke, is_async, wants_context, refs)`` where
        ``invoke(item, context=...)`` runs the step for one item: ``{item}`` in the message is
        replaced by ``str(item)``; with no message the item itself is the message."""
        fn, _single, is_async, wants = self._resolved(ctx)
        message_for = self._message_for
        placeholder = "{" + item_arg + "}"

        def invoke(item: Any, context: Any) -> Any:
            text = message_for(context)
            if isinstance(text, str) and placeholder in text:
                text = text.replace(placeholder, str(item))
            elif text == "":
                text = item
            return fn(text, context=context) if wants else fn(text)

        refs = template_refs(self.message) if self._input_fn is None else ()
        return invoke, is_async, True, refs


def _bound_call(fn: Callable[..., Any], single: bool, args: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` with a tool step's fixed ``args`` bound: as one dict (``single``) or as keyword
    arguments (``functools.partial`` either way), or ``fn`` itself when there are none.

    NOTE: the keyword form shares ``args`` (the step's own copy) rather than copying it, as
    ``functools.partial(fn, **args)`` would: with one bound call per step kept in the compiled
    plan, that copy was ~180 of the ~260 bytes each step added (~1.8 MB of benchmark M's
    10,000-step fan-out). ``partial`` copies its keywords into each call's arguments anyway,
    so the callee never sees the shared dict; ``__setstate__`` is ``partial``'s documented
    (pickle) way to set them without a copy.
    """
    if single:
        return functools.partial(fn, args)
    if not args:
        return fn
    bound = functools.partial(fn)
    bound.__setstate__((fn, (), args, None))  # type: ignore[attr-defined]  # not in typeshed
    return bound


class ToolStep(_Invocable):
    """Calls a tool with arguments (JAF's ``ToolStep``).

    Args:
        step_id: unique id within the workflow.
        tool: a sync or async callable called as ``tool(**args)``; an object with one of
            ``arun``, ``ainvoke``, ``run``, ``invoke``, ``execute`` (in that order;
            ``ainvoke``/``invoke`` get ``args`` as one dict, the others ``**args``); or a name
            (str) looked up in the registry. ``None`` (default) looks up the ``step_id``, as
            JAF's ``ToolStep("validate_order")``. If it declares a ``context`` parameter it
            also gets ``context=``.
        args: keyword arguments (dict with str keys, default none). String values may hold
            ``{step_id.result}`` / ``{step_id.result.key}`` references; a value that is exactly
            one reference receives the referenced object itself.

    Raises:
        WorkflowDefinitionError: ``tool`` cannot be called, or ``args`` is not a dict. A name
            that is not registered is reported when the workflow is compiled, before it runs.
    """

    __slots__ = ("args", "tool")

    def __init__(
        self, step_id: str, tool: Any = None, args: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(step_id)
        if args is not None and not isinstance(args, Mapping):
            raise WorkflowDefinitionError(
                f"step '{step_id}': args must be a dict, got {type(args).__name__}"
            )
        _checked_at_creation(tool, "tool", step_id)
        self.tool = tool
        self.args: dict[str, Any] = dict(args or {})

    def with_params_function(self, fn: Callable[[Any], Mapping[str, Any]]) -> Self:
        """Computes the tool's arguments when the step runs: ``fn(context) -> dict`` (JAF's
        ``with_params_function``); they are merged over ``args``. Returns the step.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable. A non-dict return value fails the
                step with ``TypeError``.
        """
        check_callable(fn, "the params function", owner=f"step '{self.step_id}'")
        self._input_fn = fn
        self._changed()
        return self

    def _args_for(self, context: Any) -> dict[str, Any]:
        args = render(self.args, context.results, self.step_id) if self.args else {}
        if self._input_fn is not None:
            extra = self._input_fn(context)
            if not isinstance(extra, Mapping):
                raise TypeError(
                    f"step '{self.step_id}': the params function must return a dict, "
                    f"got {type(extra).__name__}"
                )
            args = {**args, **extra}
        return args

    def _call_spec(self, ctx: CompileContext) -> CallSpec:
        fn, single, is_async, wants = self._resolved(ctx)
        args = self.args
        if not args and not single and self._input_fn is None:
            return fn, is_async, wants, ()  # as `_bound_call` would, without the calls
        refs = template_refs(args)
        if not refs and self._input_fn is None:
            return _bound_call(fn, single, args), is_async, wants, ()
        args_for = self._args_for

        def invoke_rendered(context: Any) -> Any:
            rendered = args_for(context)
            extra = {"context": context} if wants else {}
            return fn(rendered, **extra) if single else fn(**rendered, **extra)

        return invoke_rendered, is_async, True, refs

    def _remote_call(self, ctx: CompileContext, item_arg: str | None = None) -> RemoteCall:
        """The tool, called elsewhere with its ``args`` rendered here (one dict for
        ``invoke``-style tools, else keyword arguments), plus ``{item_arg: item}`` for a
        ``MapStep`` item as ``_item_spec`` does."""
        fn, single, is_async, wants = self._resolved(ctx)
        args_for = self._args_for
        static = self.args if not template_refs(self.args) and self._input_fn is None else None

        def prepare(context: Any, *item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
            rendered = dict(static) if static is not None else args_for(context)
            if item:
                rendered[item_arg or "item"] = item[0]
            return ((rendered,), {}) if single else ((), rendered)

        return RemoteCall(fn, is_async, wants, prepare, static)

    def _item_spec(self, ctx: CompileContext, item_arg: str) -> ItemSpec:
        """For ``MapStep``: ``invoke(item, context=...)`` calls the tool with ``args`` plus
        ``{item_arg: item}``."""
        fn, single, is_async, wants = self._resolved(ctx)
        args_for = self._args_for

        def invoke(item: Any, context: Any) -> Any:
            rendered = {**args_for(context), item_arg: item}
            extra = {"context": context} if wants else {}
            return fn(rendered, **extra) if single else fn(**rendered, **extra)

        return invoke, is_async, True, template_refs(self.args)
