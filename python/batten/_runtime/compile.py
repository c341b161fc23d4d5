"""Compiling steps into the native engine's plans (private, layer ``batten._runtime``).

Every construct -- a workflow, a ``ParallelStep``'s branches, a ``MapStep``'s items, a loop's
iteration, a step with a fallback -- becomes a native ``Plan`` run by the same engine, so
concurrency limits, retries, timeouts, cancellation and events behave the same at every level.
A composite step is an async step whose body starts a nested run from its own context and
returns a ``Nested`` record (output, state delta, child results, metadata); it compiles and runs
that run through :class:`Compiler`, this module's implementation of the step model's
``CompileContext``.

Wrappers that change how a step is called register here (dependency inversion: this module
never imports them): error recovery (:mod:`batten._runtime.recovery`) may take a step's call
over, process isolation (:mod:`batten._runtime.isolation`) moves it to a worker process, the
result cache (:mod:`batten._runtime.cache`) wraps it. ``batten._runtime`` imports them, so
they are registered before anything is compiled.

A workflow's compiled plan is cached on the workflow (:func:`compiled`) until a step, a handler
or an attached traffic control changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from batten._core import Plan
from batten._internal.epoch import mutation_epoch
from batten._internal.kinds import WorkflowKind
from batten._internal.options import CompileOptions
from batten._internal.spec import StepSpec
from batten._runtime.run import run_plan
from batten.errors import WorkflowDefinitionError
from batten.registry import global_registry
from batten.retry import RetryPolicy
from batten.steps.base import _NO_RETRY as UNSET
from batten.steps.base import Step, _Invocable, traffic_attached

__all__ = [
    "Compiler",
    "compile_plan",
    "compiled",
    "register_call_wrapper",
    "register_compile_key",
    "register_item_wrapper",
    "register_placement",
    "register_takeover",
    "register_takeover_wrapper",
    "spec_for",
]

# The call-wrapping signatures, for annotations only (issue 18: the step protocols' module and
# these aliases stay off the import path).
if TYPE_CHECKING:
    from batten.steps.protocol import CallSpec

    #: ``takeover(step, opts) -> invoke | None``: an async call that runs ``step`` entirely (its own
    #: retries, timeout and conditions inside a nested run) or ``None`` to leave it alone.
    Takeover = Callable[[Step, CompileOptions], "Callable[..., Any] | None"]
    #: ``wrap(step, opts, call_spec) -> call_spec``: ``step``'s call, wrapped or as it was.
    CallWrapper = Callable[[Step, CompileOptions, CallSpec], CallSpec]

    #: ``wrap(inner, workflow_id, inner_id, fn, is_async, wants_context) -> (fn, is_async,
    #: wants_context)``: a ``MapStep``'s per-item call (``inner`` its step or callable), wrapped or
    #: as it was.
    ItemWrapper = Callable[
        [Any, str, str, Callable[..., Any], bool, bool], tuple[Callable[..., Any], bool, bool]
    ]

    #: ``wrap(step, opts, invoke) -> invoke``: a takeover's async call, wrapped or as it was.
    TakeoverWrapper = Callable[[Step, CompileOptions, Callable[..., Any]], Callable[..., Any]]

    #: ``place(step, opts, call_spec) -> call_spec``: ``step``'s call made elsewhere (a Ray task)
    #: or as it was; applied before the call wrappers, so they wrap the placed call.
    Placer = Callable[[Step, CompileOptions, CallSpec], CallSpec]
    #: ``place(item_step, opts, item_arg, fn, is_async, wants_context) -> (fn, is_async,
    #: wants_context)``: the same for a ``MapStep``'s per-item call.
    ItemPlacer = Callable[
        [Any, CompileOptions, str, Callable[..., Any], bool, bool],
        tuple[Callable[..., Any], bool, bool],
    ]


_PLACERS: list[tuple[Placer, ItemPlacer]] = []
_TAKEOVERS: list[Takeover] = []
_TAKEOVER_WRAPPERS: list[TakeoverWrapper] = []
_CALL_WRAPPERS: list[CallWrapper] = []
_ITEM_WRAPPERS: list[ItemWrapper] = []
_COMPILE_KEYS: list[Callable[[], Any]] = []

Wanted = Callable[[Sequence[Step], CompileOptions], bool]
"""``wanted(steps, options)``: whether a takeover, placer or call wrapper may change any of
``steps`` compiled under ``options``; false promises that it would return every one of them
unchanged, so a plan's compile skips it for all of them."""

_WANTED: dict[Callable[..., Any], Wanted] = {}


def register_takeover(takeover: Takeover, *, wanted: Wanted | None = None) -> None:
    """Registers ``takeover`` (see :data:`Takeover`), asked for every step compiled with
    ``recover=True``, in registration order; the first that returns a call wins. ``wanted``
    (see :data:`Wanted`; ``None``: always) lets a plan's compile skip it."""
    _TAKEOVERS.append(takeover)
    if wanted is not None:
        _WANTED[takeover] = wanted


def register_placement(
    place: Placer, place_item: ItemPlacer, *, wanted: Wanted | None = None
) -> None:
    """Registers ``place`` (see :data:`Placer`) and ``place_item`` (see :data:`ItemPlacer`),
    applied to every step's call, and every ``MapStep`` item's call, before the wrappers.
    ``wanted`` (see :data:`Wanted`; ``None``: always) lets a plan's compile skip ``place``."""
    _PLACERS.append((place, place_item))
    if wanted is not None:
        _WANTED[place] = wanted


def register_takeover_wrapper(wrap: TakeoverWrapper) -> None:
    """Registers ``wrap`` (see :data:`TakeoverWrapper`), applied in registration order to the
    call of every step a takeover runs (telemetry gives it a span of its own)."""
    _TAKEOVER_WRAPPERS.append(wrap)


def register_call_wrapper(
    wrap: CallWrapper, *, innermost: bool = False, wanted: Wanted | None = None
) -> None:
    """Registers ``wrap`` (see :data:`CallWrapper`), applied to every step's call in
    registration order; ``innermost=True`` applies it before every wrapper registered so far
    (process isolation replaces the call itself, so the cache must wrap what it returns).
    ``wanted`` (see :data:`Wanted`; ``None``: always) lets a plan's compile skip it."""
    if innermost:
        _CALL_WRAPPERS.insert(0, wrap)
    else:
        _CALL_WRAPPERS.append(wrap)
    if wanted is not None:
        _WANTED[wrap] = wanted


def _hooks(steps: Sequence[Step], opts: CompileOptions) -> _Hooks:
    """The takeovers, placers and call wrappers that may change one of ``steps`` (see
    :data:`Wanted`), asked once for a plan's steps rather than once per step.
    NOTE: each hook asked per step was a Python call per step even when, as usual, no step
    uses its feature: ~14% of compiling issue 18's D3 (50 plain steps, compiled again by the
    recovering process)."""

    def wanted(hook: Callable[..., Any]) -> bool:
        ask = _WANTED.get(hook)
        return ask is None or ask(steps, opts)

    return _Hooks(
        [t for t in _TAKEOVERS if wanted(t)],
        [p for p, _item in _PLACERS if wanted(p)],
        [w for w in _CALL_WRAPPERS if wanted(w)],
    )


class _Hooks:
    """The hooks :func:`spec_for` applies (see :func:`_hooks`).
    NOTE: a slotted class, not a ``NamedTuple`` (whose class statement turns each string
    annotation into a ``typing.ForwardRef`` when this module is imported)."""

    __slots__ = ("placers", "takeovers", "wrappers")

    def __init__(
        self, takeovers: list[Takeover], placers: list[Placer], wrappers: list[CallWrapper]
    ) -> None:
        self.takeovers = takeovers
        self.placers = placers
        self.wrappers = wrappers


def register_item_wrapper(wrap: ItemWrapper) -> None:
    """Registers ``wrap`` (see :data:`ItemWrapper`), applied to every ``MapStep``'s per-item
    call in registration order when the map runs."""
    _ITEM_WRAPPERS.append(wrap)


def register_compile_key(key: Callable[[], Any]) -> None:
    """Registers ``key() -> hashable``: part of the plan cache's key, for a wrapper whose
    choice depends on process state (telemetry is on or off), so a workflow compiled before
    that state changed is compiled again."""
    _COMPILE_KEYS.append(key)


class Compiler:
    """The step model's ``CompileContext`` (:mod:`batten.steps.protocol`): compiling and running
    nested plans under ``options``."""

    __slots__ = ("options",)

    def __init__(self, options: CompileOptions) -> None:
        self.options = options

    #: A nested run: ``await run(plan, context, event_prefix=...)`` (see :func:`run_plan`).
    run = staticmethod(run_plan)

    def compile(
        self,
        plan_id: str,
        steps: Sequence[Step],
        deps: Sequence[Sequence[str]],
        *,
        max_parallel: int | None = None,
        **policy: Any,
    ) -> Any:
        """A nested plan of ``steps`` (see ``CompileContext.compile``)."""
        return compile_plan(
            plan_id, steps, deps, self.options, max_parallel=max_parallel, nested=True, **policy
        )

    def compile_workflow(self, workflow: Any) -> Any:
        """``workflow``'s nested plan, under these options."""
        return compiled(workflow, self.options, nested=True)

    def compile_fan_out(
        self,
        plan_id: str,
        inner_id: str,
        fn: Callable[..., Any],
        items: list[Any],
        is_async: bool,
        wants_context: bool,
        timeout: float | None,
        policy: RetryPolicy,
        conditions: list[Any],
        max_parallel: int | None,
        *,
        item_step: Any = None,
        item_arg: str = "item",
        **run_policy: Any,
    ) -> Any:
        """A native fan-out plan (``_core.Plan.fan_out``) running ``fn`` once per item;
        ``item_step`` is the step (or callable) ``fn`` runs, for the item placers and
        wrappers, and ``item_arg`` the name the item is given to it under."""
        for _place, place_item in _PLACERS:
            fn, is_async, wants_context = place_item(
                item_step, self.options, item_arg, fn, is_async, wants_context
            )
        for wrap in _ITEM_WRAPPERS:
            fn, is_async, wants_context = wrap(
                item_step, self.options.workflow_id, inner_id, fn, is_async, wants_context
            )
        return Plan.fan_out(
            plan_id,
            inner_id,
            fn,
            items,
            is_async,
            wants_context,
            timeout,
            policy,
            conditions,
            max_parallel,
            **run_policy,
        )

    def default_policy(self, policy: RetryPolicy) -> RetryPolicy:
        """``policy``, or the engine's default for a step that never called ``with_retry``."""
        return default_policy(policy, self.options)

    def inner_refs(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """Template references of ``steps`` to steps outside them."""
        return inner_refs(steps, self)

    def invocable_targets(self, step: Step) -> tuple[Any, ...]:
        """An agent/tool step's target object (and name)."""
        return invocable_targets(step, self.options)


def spec_for(
    step: Step,
    deps: Sequence[str],
    opts: CompileOptions,
    *,
    recover: bool = True,
    ctx: Compiler | None = None,
    hooks: _Hooks | None = None,
) -> StepSpec:
    """The engine's ``StepSpec`` for ``step`` (see ``_core.Plan``); ``ctx``: the ``Compiler``
    for ``opts`` (one is made when ``None``); ``hooks``: the ones to apply (see
    :func:`_hooks`; ``None``: every registered one)."""
    policy = step.retry_policy
    if policy is UNSET and opts.default_policy is not None:
        policy = opts.default_policy  # as `default_policy`, inlined: it runs once per step
    if ctx is None:
        ctx = Compiler(opts)
    if hooks is None:
        hooks = _Hooks(_TAKEOVERS, [p for p, _item in _PLACERS], _CALL_WRAPPERS)
    if recover:
        for takeover in hooks.takeovers:
            invoke = takeover(step, opts)
            if invoke is not None:
                for wrap_takeover in _TAKEOVER_WRAPPERS:
                    invoke = wrap_takeover(step, opts, invoke)
                return StepSpec(
                    step_id=step.step_id,
                    depends_on=list(deps),
                    refs=_outer_refs(step, ctx),
                    invoke=invoke,
                    is_async=True,
                    wants_context=True,
                    timeout=None,
                    retry_policy=_NO_RETRY,
                    conditions=[],
                )
    spec = step._call_spec(ctx)
    for place in hooks.placers:
        spec = place(step, opts, spec)
    for wrap in hooks.wrappers:
        spec = wrap(step, opts, spec)
    invoke, is_async, wants_context, refs = spec
    # NOTE: positional, in `StepSpec`'s field order (step_id, depends_on, refs, invoke,
    # is_async, wants_context, timeout, retry_policy, conditions, inline): ten keywords made a
    # dict per step for namedtuple's `__new__` (~4,000 instructions a step).
    return StepSpec(
        step.step_id,
        list(deps),
        list(refs),
        invoke,
        is_async,
        wants_context,
        step.timeout,
        policy,
        list(step.conditions),
        step.inline,
    )


_NO_RETRY = RetryPolicy.no_retry()


def default_policy(policy: RetryPolicy, opts: CompileOptions) -> RetryPolicy:
    """``policy``, or the engine's default for a step that never called ``with_retry``."""
    if opts.default_policy is not None and policy is UNSET:
        return opts.default_policy
    return policy


def _outer_refs(step: Step, ctx: Compiler) -> list[str]:
    _invoke, _a, _w, refs = step._call_spec(ctx)
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
    controls = {}
    attached = traffic_attached()  # as `traffic_controls` asks, once for all the steps
    for s in steps:
        found = traffic_controls(s, opts) if attached or s.traffic else None
        if found is not None:
            controls[s.step_id] = found
    if controls:
        policy["controls"] = controls
    specs = _Counted(len(steps), _specs(steps, deps, opts, nested, recover))
    return Plan(plan_id, specs, max_parallel, **policy)


class _Counted:
    """An iterator that knows its length, so ``Plan`` sizes its arrays once.

    NOTE: from a bare generator (no ``len``) the engine grew its per-step array by doubling;
    at 10,000 steps the outgrown copies were left as ~4 MB of free heap that the process kept
    (peak RSS of benchmark M).
    """

    __slots__ = ("_items", "_n")

    def __init__(self, n: int, items: Iterator[StepSpec]) -> None:
        self._n = n
        self._items = items

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[StepSpec]:
        return self._items


def _specs(
    steps: Sequence[Step],
    deps: Sequence[Sequence[str]],
    opts: CompileOptions,
    nested: bool,
    recover: bool,
) -> Iterator[StepSpec]:
    """Each step's ``StepSpec``, made as ``Plan`` reads it and dropped once read.

    A generator rather than a list: a list kept every spec alive until the plan was built, so
    at 10,000 steps their freed blocks were left scattered among the plan's long-lived objects
    and held ~1.4 MB of peak RSS (benchmark M, issue 13); one spec at a time reuses one block.
    """
    direct = {s.step_id for s in steps} if nested else set()
    known: set[str] | None = None  # every step id at any depth, found on the first reference
    ctx = Compiler(opts)
    hooks = _hooks(steps, opts)
    for step, step_deps in zip(steps, deps, strict=True):
        spec = spec_for(step, step_deps, opts, recover=recover, ctx=ctx, hooks=hooks)
        if nested:
            spec = spec._replace(refs=[r for r in spec.refs if r in direct])
        elif spec.refs:
            if known is None:
                known = _step_ids(steps)
            _check_references_exist(step, spec.refs, known, opts)
        yield spec
        del spec  # not kept alive while the next one is made


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
    step: Step, step_refs: Sequence[str], known: set[str], opts: CompileOptions
) -> None:
    """Raises when a top-level step's references (its own, or bubbled up from the steps it
    holds) name no step of the workflow (``known``: its step ids at any depth): the engine
    would only say "not one of its dependencies", which sends the reader looking for a missing
    ``depends_on``."""
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
        _invoke, _a, _w, refs = step._call_spec(Compiler(opts))
        return path if ref in refs else None
    for child in step._children():
        found = _holder_of(child, ref, opts, path + "/")
        if found is not None:
            return found
    return None


def traffic_controls(step: Step, opts: CompileOptions) -> tuple[list[Any], list[Any]] | None:
    """The native rate limiters and breakers guarding ``step``'s attempts: its own and those
    attached to its agent or tool (``batten.traffic``). A ``MapStep``'s apply to its items."""
    if not step.traffic and not traffic_attached():
        return None
    if getattr(step, "_is_composite", False) and hasattr(step, "item_arg"):
        return None  # a MapStep: its items get them (see MapStep)
    from batten import traffic  # on first use (see traffic_attached)

    return traffic.controls_for(
        step, invocable_targets(step, opts) if isinstance(step, _Invocable) else ()
    )


def invocable_targets(step: Any, opts: CompileOptions) -> tuple[Any, ...]:
    """An agent/tool step's target object and, when given by name, the name and the object
    it resolves to."""
    target = step._target()
    if target is None or isinstance(target, str):
        name = target or step.step_id
        reg = opts.registry or global_registry()
        try:
            return (name, reg.resolve(step._role, name, step.step_id))
        except WorkflowDefinitionError:
            return (name,)
    return (target,)


def inner_refs(steps: Sequence[Step], ctx: Compiler) -> tuple[str, ...]:
    """Template references of ``steps`` to steps outside them: a composite's own references."""
    ids = {s.step_id for s in steps}
    found: dict[str, None] = {}
    for s in steps:
        _invoke, _a, _w, refs = s._call_spec(ctx)
        for r in refs:
            if r not in ids:
                found[r] = None
    return tuple(found)


def workflow_options(workflow: Any, base: CompileOptions | None = None) -> CompileOptions:
    """The options ``workflow`` compiles under: ``base`` (a ``WorkflowEngine``'s) or the
    workflow's defaults, with its error handlers."""
    if base is None and not workflow._error_handlers and workflow._workflow_handler is None:
        options: CompileOptions = workflow._default_options
        return options
    base = base or workflow._default_options
    return CompileOptions(
        registry=base.registry,
        default_policy=base.default_policy,
        error_handlers=workflow._error_handlers,
        workflow_handler=workflow._workflow_handler,
        workflow_id=workflow.workflow_id,
        executor=base.executor or workflow._default_options.executor,
    )


#: ``workflow._plans``' entry for the last compile: ``(options, nested, compile keys' values,
#: workflow handler, mutation epoch, plan)``.
_LAST = ("last",)


def compiled(workflow: Any, base: CompileOptions | None = None, *, nested: bool = False) -> Any:
    """``workflow``'s plan, compiled under :func:`workflow_options` and cached on the workflow
    (``workflow._plans``) until a step, a handler or an attached traffic control changes.

    Raises:
        WorkflowDefinitionError: the workflow is malformed: duplicate ids, unknown
            dependencies, a cycle, a bad reference, an error handler for an unknown step, or
            a workflow or step that contains itself.
    """
    opts = workflow_options(workflow, base)
    extra = tuple([key() for key in _COMPILE_KEYS])
    handler = workflow._workflow_handler
    epoch = mutation_epoch()
    # NOTE: the run before compiled under the very same options object: compared field by
    # field, not hashed (hashing `okey`, a tuple of tuples, cost ~8,000 instructions of a
    # ~100,000-instruction pre-built 3-step run, W5).
    last = workflow._plans.get(_LAST)
    if (
        last is not None
        and last[0] is opts
        and last[1] is nested
        and last[2] == extra
        and last[3] is handler
        and last[4] == epoch
    ):
        return last[5]
    okey = opts.key()
    if extra:
        okey = (okey, *extra)
    fast = ("epoch", nested, okey, id(handler), epoch)
    plan = workflow._plans.get(fast)
    if plan is not None:
        workflow._plans[_LAST] = (opts, nested, extra, handler, epoch, plan)
        return plan
    check_nesting(workflow)  # before anything below walks the steps recursively
    key = (nested, okey, *(s._version_key() for s in workflow._steps))
    plan = workflow._plans.get(key)
    if plan is None:
        ids = {s.step_id for s in workflow._steps}
        unknown = sorted(set(workflow._error_handlers) - ids)
        if unknown:
            raise WorkflowDefinitionError(
                f"workflow '{workflow.workflow_id}': error handler for unknown step "
                f"{', '.join(map(repr, unknown))}"
            )
        plan = compile_plan(
            workflow.workflow_id,
            workflow._steps,
            workflow._deps,
            opts,
            max_parallel=workflow.max_parallel_steps,
            nested=nested,
            continue_on_error=workflow.continue_on_error,
            max_total_retries=workflow.max_total_retries,
        )
        workflow._plans.clear()  # only the newest compile per workflow is kept
        workflow._plans[key] = plan
    workflow._plans = {key: plan, fast: plan, _LAST: (opts, nested, extra, handler, epoch, plan)}
    return plan


def _holds_anything(node: Any) -> bool:
    """Whether ``node`` runs other steps or workflows inside itself: only such a node can be
    part of a cycle."""
    if isinstance(node, WorkflowKind):
        return True
    return node._is_composite or node.fallback is not None or node.compensation is not None


def _held(node: Any) -> list[Any]:
    """What ``node`` runs inside itself and may hold more: a workflow's steps; a step's inner
    steps, fallback and compensation, and (a ``SubWorkflowStep``) its workflow."""
    if isinstance(node, WorkflowKind):
        held: list[Any] = list(node._steps)
    else:
        held = [s for s in (node.fallback, node.compensation) if s is not None]
        sub = getattr(node, "workflow", None) if node._is_composite else None
        if isinstance(sub, WorkflowKind):
            held.append(sub)  # a SubWorkflowStep: its steps are reached through the workflow
        else:
            held.extend(node._children())
    return [h for h in held if _holds_anything(h)]


def check_nesting(root: Any) -> None:
    """Raises when a workflow contains itself (through ``SubWorkflowStep``s) or a step holds
    itself (a composite among its own branches, a fallback that runs its step): compiling
    or running either would recurse without end.

    Raises:
        WorkflowDefinitionError: naming the cycle (``workflow 'a' contains itself: a -> b ->
            a`` or ``step 'p' contains itself: p -> q -> p``).
    """
    # NOTE: plain steps are never visited (_held leaves them out): walking every one of the
    # 11,000 steps of 1,000 ten-branch ParallelSteps added ~10% to compiling them.
    # Depth-first without recursion, so a deep definition cannot overflow the stack here;
    # ``path`` is the chain from ``root`` to the node being explored.
    path: list[Any] = []
    on_path: dict[int, int] = {}
    finished: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        key = id(node)
        if not entering:
            path.pop()
            del on_path[key]
            finished.add(key)
            continue
        if key in on_path:
            raise _nesting_error([*path[on_path[key] :], node])
        if key in finished:
            continue
        on_path[key] = len(path)
        path.append(node)
        stack.append((node, False))
        stack.extend((child, True) for child in reversed(_held(node)))


def _nesting_error(cycle: list[Any]) -> WorkflowDefinitionError:
    """The error for ``cycle`` (its first node repeated last), worded by the workflows on it
    when there are any, else by its steps."""
    workflows = [n for n in cycle[:-1] if isinstance(n, WorkflowKind)]
    if workflows:
        names = [w.workflow_id for w in [*workflows, workflows[0]]]
        return WorkflowDefinitionError(
            f"workflow '{names[0]}' contains itself: {' -> '.join(names)} (through "
            "SubWorkflowStep); a workflow cannot run inside its own run"
        )
    names = [n.step_id for n in cycle if isinstance(n, Step)]
    return WorkflowDefinitionError(
        f"step '{names[0]}' contains itself: {' -> '.join(names)}; a step cannot run inside "
        "its own run"
    )
