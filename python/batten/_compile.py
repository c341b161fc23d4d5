"""Compiling steps into the native engine's plans, and running plans (private).

Every construct -- a workflow, a ``ParallelStep``'s branches, a ``MapStep``'s items, a loop's
iteration, a step with a fallback -- becomes a native ``Plan`` run by the same engine, so
concurrency limits, retries, timeouts, cancellation and events behave the same at every level.
A composite step is an async step whose body starts a nested run from its own context and
returns a ``Nested`` record (output, state delta, child results, metadata).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from batten import _core
from batten._core import CompositeFailure, Nested, RunOutcome, StepResult, WorkflowContext
from batten._internal.spec import StepSpec
from batten._status import StepStatus
from batten.errors import WorkflowDefinitionError
from batten.registry import Registry
from batten.retry import RetryPolicy

if TYPE_CHECKING:
    from batten.steps import Step

#: ``(kind, step_id, attempt, payload)`` -> None; see ``Run.start``'s ``on_event``.
EventSink = Callable[[str, str, int, Any], None]

#: The event subscriber of the run a task belongs to; nested runs report through it with their
#: step ids prefixed by the composite's id (``"parallel/branch"``).
EVENT_SINK: contextvars.ContextVar[EventSink | None] = contextvars.ContextVar(
    "batten_event_sink", default=None
)

#: The checkpoint journal (``_core.Journal``) of the durable run a task belongs to; a nested run
#: writes through ``journal.child(prefix)`` so its steps have paths ``"parent/step"``.
JOURNAL: contextvars.ContextVar[Any] = contextvars.ContextVar("batten_journal", default=None)

#: ``handler(step_result, context) -> Step | None`` (JAF's ``add_error_handler``).
StepErrorHandler = Callable[[StepResult, WorkflowContext], "Step | None"]
#: ``handler(error, step, state) -> {"action": ...}`` (JAF's builder ``with_error_handler``).
WorkflowErrorHandler = Callable[[BaseException, "Step", WorkflowContext], Any]


@dataclass(frozen=True, eq=False)
class CompileOptions:
    """What compiling a step depends on besides the step itself."""

    registry: Registry | None = None
    #: Applied to steps that kept the default no-retry policy (``WorkflowEngine(max_retries=)``).
    default_policy: RetryPolicy | None = None
    error_handlers: Mapping[str, Sequence[StepErrorHandler]] = field(default_factory=dict)
    workflow_handler: WorkflowErrorHandler | None = None
    workflow_id: str = "workflow"

    def __post_init__(self) -> None:
        handlers = tuple((k, tuple(map(id, v))) for k, v in self.error_handlers.items())
        key = (id(self.registry), self.default_policy, handlers, id(self.workflow_handler))
        object.__setattr__(self, "_key", key)

    def key(self) -> tuple[Any, ...]:
        """Identifies what a plan compiled under these options depends on (computed once, at
        creation: NOTE: rebuilding it cost ~6 µs of every run; options are made afresh
        whenever the handlers they hold change)."""
        key: tuple[Any, ...] = self.__dict__["_key"]
        return key


DEFAULT_OPTIONS = CompileOptions()


def spec_for(
    step: Step, deps: Sequence[str], opts: CompileOptions, *, recover: bool = True
) -> StepSpec:
    """The engine's ``StepSpec`` for ``step`` (see ``_core.Plan``)."""
    policy = default_policy(step.retry_policy, opts)
    if recover and _needs_recovery(step, opts):
        from batten.recovery import recovering_call

        invoke = recovering_call(step, opts)
        outer = _outer_refs(step, opts)
        return StepSpec(
            step_id=step.step_id,
            depends_on=list(deps),
            refs=outer,
            invoke=invoke,
            is_async=True,
            wants_context=True,
            timeout=None,
            retry_policy=_NO_RETRY,
            conditions=[],
        )
    invoke, is_async, wants_context, refs = step._call_spec(opts)
    if step.cache is not None:
        from batten.cache import cached_call

        ttl, key_fn = step.cache
        invoke = cached_call(
            step.step_id, opts.workflow_id, invoke, is_async, wants_context, ttl, key_fn
        )
        wants_context = True
    return StepSpec(
        step_id=step.step_id,
        depends_on=list(deps),
        refs=list(refs),
        invoke=invoke,
        is_async=is_async,
        wants_context=wants_context,
        timeout=step.timeout,
        retry_policy=policy,
        conditions=list(step.conditions),
    )


_NO_RETRY = RetryPolicy.no_retry()


def default_policy(policy: RetryPolicy, opts: CompileOptions) -> RetryPolicy:
    """``policy``, or the engine's default for a step that never called ``with_retry``."""
    from batten.steps import _NO_RETRY as UNSET

    if opts.default_policy is not None and policy is UNSET:
        return opts.default_policy
    return policy


def _needs_recovery(step: Step, opts: CompileOptions) -> bool:
    return (
        step.fallback is not None
        or bool(opts.error_handlers.get(step.step_id))
        # The workflow-wide handler decides for the step where an error happens, so it wraps
        # plain steps only: a composite's failure was already decided inside it.
        or (opts.workflow_handler is not None and not step._is_composite)
    )


def _outer_refs(step: Step, opts: CompileOptions) -> list[str]:
    _invoke, _a, _w, refs = step._call_spec(opts)
    return list(refs)


def compile_plan(
    plan_id: str,
    steps: Sequence[Step],
    deps: Sequence[Sequence[str]],
    opts: CompileOptions,
    *,
    max_parallel: int | None = None,
    nested: bool = False,
    recover: bool = True,
    **policy: Any,
) -> Any:
    """A native ``Plan`` for ``steps``. ``nested`` drops template references to steps outside
    ``steps`` (the enclosing composite's own references were checked one level up).

    Raises:
        WorkflowDefinitionError: a step is malformed; at the top level (not ``nested``), also a
            ``{x.result}`` reference naming no step at any depth (the engine itself checks that
            a reference names an ancestor).
    """
    specs = [spec_for(s, d, opts, recover=recover) for s, d in zip(steps, deps, strict=True)]
    if nested:
        ids = {s.step_id for s in steps}
        specs = [sp._replace(refs=[r for r in sp.refs if r in ids]) for sp in specs]
    else:
        _check_references_exist(steps, [sp.refs for sp in specs], opts)
    controls = {}
    for s in steps:
        found = traffic_controls(s, opts)
        if found is not None:
            controls[s.step_id] = found
    if controls:
        policy["controls"] = controls
    return _core.Plan(plan_id, specs, max_parallel, **policy)


def _step_ids(steps: Sequence[Step]) -> set[str]:
    """The ids of ``steps`` and of every step they hold, at any depth."""
    ids: set[str] = set()
    seen: set[int] = set()
    pending = list(steps)
    while pending:
        step = pending.pop()
        if id(step) in seen:
            continue
        seen.add(id(step))
        ids.add(step.step_id)
        if step._is_composite:
            pending.extend(step._children())
    return ids


def _check_references_exist(
    steps: Sequence[Step], refs: Sequence[Sequence[str]], opts: CompileOptions
) -> None:
    """Raises when a top-level step's references (its own, or bubbled up from the steps it
    holds) name no step of the workflow at all: the engine would only say "not one of its
    dependencies", which sends the reader looking for a missing ``depends_on``."""
    if not any(refs):
        return
    known = _step_ids(steps)
    for step, step_refs in zip(steps, refs, strict=True):
        for ref in step_refs:
            if ref not in known:
                where = _holder_of(step, ref, opts) or step.step_id
                raise WorkflowDefinitionError(
                    f"step '{where}' references '{{{ref}.result}}', but '{ref}' names no step "
                    "of this workflow"
                )


def _holder_of(step: Step, ref: str, opts: CompileOptions, prefix: str = "") -> str | None:
    """The path (``"parallel/branch"``) of the innermost step under ``step`` whose own template
    references include ``ref``, or ``None``. Only called to word an error."""
    path = prefix + step.step_id
    if not step._is_composite:
        _invoke, _a, _w, refs = step._call_spec(opts)
        return path if ref in refs else None
    for child in step._children():
        found = _holder_of(child, ref, opts, path + "/")
        if found is not None:
            return found
    return None


def traffic_controls(step: Step, opts: CompileOptions) -> tuple[list[Any], list[Any]] | None:
    """The native rate limiters and breakers guarding ``step``'s attempts: its own and those
    attached to its agent or tool (``batten.traffic``). A ``MapStep``'s apply to its items."""
    from batten import traffic
    from batten.steps import _Invocable

    if not step.traffic and not traffic._ATTACHED:
        return None
    if getattr(step, "_is_composite", False) and hasattr(step, "item_arg"):
        return None  # a MapStep: its items get them (see MapStep)
    return traffic.controls_for(
        step, invocable_targets(step, opts) if isinstance(step, _Invocable) else ()
    )


def invocable_targets(step: Any, opts: CompileOptions) -> tuple[Any, ...]:
    """An agent/tool step's target object and, when given by name, the name and the object
    it resolves to."""
    target = step._target()
    if target is None or isinstance(target, str):
        name = target or step.step_id
        reg = opts.registry
        if reg is None:
            from batten.registry import global_registry

            reg = global_registry()
        try:
            return (name, reg.resolve(step._role, name, step.step_id))
        except WorkflowDefinitionError:
            return (name,)
    return (target,)


def inner_refs(steps: Sequence[Step], opts: CompileOptions) -> tuple[str, ...]:
    """Template references of ``steps`` to steps outside them: a composite's own references."""
    ids = {s.step_id for s in steps}
    found: dict[str, None] = {}
    for s in steps:
        _invoke, _a, _w, refs = s._call_spec(opts)
        for r in refs:
            if r not in ids:
                found[r] = None
    return tuple(found)


#: A finished run (``_core.RunOutcome``): ``run_id``, ``status``, ``steps``, ``final_output``,
#: ``error``, ``elapsed_ms`` (milliseconds), ``context``, and ``by_id(step_id)``.
Outcome = RunOutcome


async def run_plan(
    plan: Any,
    context: WorkflowContext,
    *,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    on_event: EventSink | None = None,
    event_prefix: str | None = None,
    journal: Any = None,
    on_run: Callable[[Any], None] | None = None,
) -> Outcome:
    """Runs ``plan`` on the running loop from ``context`` and waits for it.

    Cancelling the awaiting task cancels the run and waits until its tasks have unwound before
    ``CancelledError`` propagates. A nested run (``event_prefix`` given) reports its events to
    the enclosing run's subscriber with ids ``"<prefix>/<step_id>"``, and checkpoints through
    the enclosing durable run's journal under the same paths. ``journal`` makes a top-level run
    durable; ``on_run(run)`` is called with the started ``_core.Run`` (pause/cancel control).
    """
    if on_event is None and event_prefix is not None:
        parent = EVENT_SINK.get()
        if parent is not None:
            prefix = event_prefix + "/"

            def on_event(kind: str, step_id: str, attempt: int, payload: Any) -> None:
                parent(kind, prefix + step_id, attempt, payload)

    if journal is None and event_prefix is not None:
        parent_journal = JOURNAL.get()
        if parent_journal is not None:
            journal = parent_journal.child(event_prefix)
    pyctx = contextvars.copy_context()
    if on_event is not None:
        pyctx.run(EVENT_SINK.set, on_event)
    if journal is not None:
        pyctx.run(JOURNAL.set, journal)
    run = _core.Run.start(
        plan,
        context,
        pycontext=pyctx,
        timeout=timeout,
        max_concurrency=max_concurrency,
        on_event=on_event,
        journal=journal,
    )
    if on_run is not None:
        on_run(run)
    try:
        await run.done
    except asyncio.CancelledError:
        unwinding = run.cancel()
        if unwinding is not None:
            await unwinding
        raise
    return run.outcome()


def state_delta(initial: WorkflowContext, final: WorkflowContext) -> dict[str, Any]:
    """The variables a nested run added or replaced: what its composite step merges upstream."""
    before = initial.variables
    delta: dict[str, Any] = {}
    for key, value in final.variables.items():
        if key not in before or before[key] is not value:
            delta[key] = value
    return delta


def raise_failed(child: StepResult, nested: Nested, step_id: str) -> NoReturn:
    """Fails the composite ``step_id`` with ``child``'s exception, keeping ``nested``.

    Raises:
        CompositeFailure: always; the engine records its ``error`` as the step's exception.
    """
    exc = child.exception
    if not isinstance(exc, BaseException) or isinstance(exc, asyncio.CancelledError):
        exc = RuntimeError(f"step '{step_id}': {child.step_id} {child.status}: {child.error}")
    raise CompositeFailure(exc, nested)


def is_done_ok(status: StepStatus | str) -> bool:
    """True for ``COMPLETED`` and ``SKIPPED``: the statuses that do not fail a run."""
    return status in (StepStatus.COMPLETED, StepStatus.SKIPPED)
