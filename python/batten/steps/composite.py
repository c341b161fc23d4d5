"""Composite steps: conditional, parallel, loop, map, sub-workflow and routing (layer
``batten.steps``; public as :mod:`batten.composite` and ``batten``).

Each composite runs the steps it holds as a *nested run* of the native engine, started from the
composite's own context (so inner steps see what the composite sees, ``{x.result}`` references
to the composite's ancestors included). Concurrency limits, retries, timeouts and cancellation
inside a composite are therefore the engine's, exactly as at the top level: a ``ParallelStep``
whose first branch fails under ``fail_fast`` cancels its other branches' tasks (their ``finally``
blocks run) before it reports; a composite whose own timeout passes cancels its nested run.

A composite's ``StepResult`` keeps the nested results in ``children`` and facts such as the
chosen branch or the iteration count in ``metadata``. A dict output of the nested steps is merged
into the variables the composite's dependents see, as a plain step's dict output is.

A composite never imports the runtime: it compiles and runs its nested plans through the
:class:`~batten.steps.protocol.CompileContext` its ``_call_spec`` is given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

from batten._core import CompositeFailure, Nested, StepResult, WorkflowContext
from batten._internal.checks import check_callable, check_count
from batten._internal.context import EVENT_SINK
from batten._internal.kinds import WorkflowKind
from batten._internal.outcome import raise_failed, state_delta
from batten._internal.status import StepStatus
from batten._internal.view import StepView, items_text, name_of, settings_text
from batten.errors import LoopLimitError, PartialFailureError, RouteError, WorkflowDefinitionError
from batten.retry import RetryPolicy
from batten.steps.base import Step, _accepts_context, _Invocable, _is_async, traffic_attached
from batten.steps.protocol import CallSpec, CompileContext, NestedOutcome

if TYPE_CHECKING:
    from batten.workflow import Workflow

__all__ = [
    "ConditionalStep",
    "LoopStep",
    "MapStep",
    "ParallelStep",
    "RouterStep",
    "SubWorkflowStep",
]

FailurePolicy = Literal["fail_fast", "continue_on_partial_failure"]
FAILURE_POLICIES: tuple[str, ...] = ("fail_fast", "continue_on_partial_failure")


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class _Composite(Step):
    """Base of the composite steps: an async step that runs a nested plan."""

    __slots__ = ()
    _is_composite = True

    def _titled(self, what: str) -> str:
        """A group title: ``what`` and the step's non-default settings."""
        settings = settings_text(self)
        return f"{what}, {settings}" if settings else what

    def _version_key(self) -> Any:
        return (super()._version_key(), *(c._version_key() for c in self._children()))

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        raise TypeError(f"{type(self).__name__} defines no body")  # pragma: no cover

    def _call_spec(self, ctx: CompileContext) -> CallSpec:
        return self._invoke(ctx), True, True, ctx.inner_refs(self._children())


def _one(step: Step, ctx: CompileContext) -> Any:
    return ctx.compile(ctx.options.workflow_id, [step], [[]])


def _single_outcome(
    step_id: str,
    context: WorkflowContext,
    out: NestedOutcome,
    meta: dict[str, Any],
    before: Sequence[StepResult] = (),
) -> Nested:
    """The Nested record of a composite that ran one inner step (or raises its failure);
    ``before`` are results to list first (a router's routing step)."""
    child = out.steps[0]
    children = [*before, *out.steps]
    if child.status == StepStatus.COMPLETED:
        return Nested(
            child.output,
            delta=state_delta(context, out.context),
            children=children,
            metadata=meta,
        )
    if child.status == StepStatus.SKIPPED:
        return Nested(skipped=True, children=children, metadata=meta)
    raise_failed(child, Nested(children=children, metadata=meta), step_id)


class ConditionalStep(_Composite):
    """Runs one of two steps depending on a condition (JAF's ``ConditionalStep``).

    Args:
        step_id: unique id within the workflow.
        condition: ``condition(context) -> bool`` (sync or async), evaluated when the step runs
            with the step's :class:`~batten.WorkflowContext` (a mapping over the variables, so
            JAF's ``lambda state: state.get("order_valid")`` works).
        true_step: run when the condition is true.
        false_step: run when it is false (default none).

    Also the fluent form ``ConditionalStep("id").condition(fn).if_true(step).if_false(step)``.
    Only the chosen branch runs; its output is the step's output (a dict output is merged into
    the variables). With no branch to take the step is ``SKIPPED`` (its dependents still run).
    ``metadata["branch"]`` names the branch that ran and ``metadata["condition"]`` holds the
    condition's truth value.

    Raises:
        WorkflowDefinitionError: ``condition`` is not callable, a branch is not a step, or
            (when the workflow is compiled) no condition or no branch was given.
    """

    __slots__ = ("_condition", "false_step", "true_step")

    def __init__(
        self,
        step_id: str,
        condition: Callable[[WorkflowContext], Any] | None = None,
        true_step: Step | None = None,
        false_step: Step | None = None,
    ) -> None:
        super().__init__(step_id)
        if condition is not None:
            check_callable(condition, "the condition", owner=f"step '{self.step_id}'")
        self._condition = condition
        self.true_step = self._step_arg("true_step", true_step) if true_step else None
        self.false_step = self._step_arg("false_step", false_step) if false_step else None

    def condition(self, fn: Callable[[WorkflowContext], Any]) -> Self:
        """Sets ``condition(context) -> bool`` (JAF's fluent form). Returns the step.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable.
        """
        check_callable(fn, "the condition", owner=f"step '{self.step_id}'")
        self._condition = fn
        self._changed()
        return self

    def if_true(self, step: Step) -> Self:
        """Sets the step run when the condition holds. Returns the step.

        Raises:
            WorkflowDefinitionError: ``step`` is not a batten step.
        """
        self.true_step = self._step_arg("if_true", step)
        self._changed()
        return self

    def if_false(self, step: Step) -> Self:
        """Sets the step run when the condition does not hold. Returns the step.

        Raises:
            WorkflowDefinitionError: ``step`` is not a batten step.
        """
        self.false_step = self._step_arg("if_false", step)
        self._changed()
        return self

    def _children(self) -> list[Step]:
        return [s for s in (self.true_step, self.false_step) if s is not None]

    def _describe(self) -> StepView:
        """A group entered at a rhombus with ``true`` / ``false`` edges to the branches."""
        condition = self._condition
        test = f"if {name_of(condition)}" if condition is not None else "no condition"
        branches = (("true", self.true_step), ("false", self.false_step))
        return StepView(
            type(self).__name__,
            "group",
            title=self._titled("conditional"),
            test=(self.step_id, test),
            branches=tuple((flag, b) for flag, b in branches if b is not None),
        )

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        step_id, condition = self.step_id, self._condition
        if condition is None:
            raise WorkflowDefinitionError(f"step '{step_id}': a ConditionalStep needs a condition")
        if not self._children():
            raise WorkflowDefinitionError(
                f"step '{step_id}': a ConditionalStep needs if_true and/or if_false"
            )
        plans = {
            True: _one(self.true_step, ctx) if self.true_step else None,
            False: _one(self.false_step, ctx) if self.false_step else None,
        }
        names = {True: self.true_step, False: self.false_step}

        async def invoke(context: WorkflowContext) -> Nested:
            taken = bool(await _maybe_await(condition(context)))
            plan = plans[taken]
            if plan is None:
                return Nested(skipped=True, metadata={"condition": taken, "branch": None})
            branch = names[taken]
            assert branch is not None
            out = await ctx.run(plan, context, event_prefix=step_id)
            meta = {"condition": taken, "branch": branch.step_id}
            return _single_outcome(step_id, context, out, meta)

        return invoke


class _FanOut(_Composite):
    """Failure policies shared by ``ParallelStep`` and ``MapStep`` (JAF's ``ParallelStep``)."""

    __slots__ = ("failure_policy", "max_concurrency", "minimum_success_count", "wait_for_all")

    def __init__(self, step_id: str, wait_for_all: bool, max_concurrency: int | None) -> None:
        super().__init__(step_id)
        check_count(max_concurrency, "max_concurrency", owner=f"step '{step_id}'", allow_none=True)
        self.wait_for_all = bool(wait_for_all)
        self.failure_policy: FailurePolicy = "fail_fast"
        self.minimum_success_count: int | None = None
        self.max_concurrency = max_concurrency

    def with_failure_policy(self, policy: FailurePolicy) -> Self:
        """``"fail_fast"`` (default): the first failure cancels the other branches (their tasks
        are cancelled and awaited; sync branches are abandoned) and fails the step.
        ``"continue_on_partial_failure"``: every branch runs to its end and the step completes
        when at least ``minimum_success_count`` branches completed (default 1). Returns the
        step.

        Raises:
            WorkflowDefinitionError: an unknown policy name.
        """
        if policy not in FAILURE_POLICIES:
            raise WorkflowDefinitionError(
                f"step '{self.step_id}': failure policy must be one of "
                f"{', '.join(FAILURE_POLICIES)}; got {policy!r}"
            )
        self.failure_policy = policy
        self._changed()
        return self

    def with_minimum_success_count(self, count: int) -> Self:
        """Completes the step once at least ``count`` (int >= 1) branches completed; implies
        ``"continue_on_partial_failure"`` (JAF's ``with_minimum_success_count``). Returns the
        step.

        Raises:
            WorkflowDefinitionError: ``count`` is not an int >= 1 (a count above the number of
                branches is reported when the workflow is compiled).
        """
        check_count(count, "minimum_success_count", owner=f"step '{self.step_id}'")
        self.minimum_success_count = count
        self.failure_policy = "continue_on_partial_failure"
        self._changed()
        return self

    def with_max_concurrency(self, n: int) -> Self:
        """Runs at most ``n`` (int from 1 to ``2**31 - 1``) branches at once. Returns the step.

        Raises:
            WorkflowDefinitionError: ``n`` is not such an int.
        """
        check_count(n, "max_concurrency", owner=f"step '{self.step_id}'")
        self.max_concurrency = n
        self._changed()
        return self

    def _policy(self) -> dict[str, Any]:
        if not self.wait_for_all:
            return {"first_success": True}
        if self.failure_policy == "fail_fast":
            return {"fail_fast": True}
        return {"min_success": self.minimum_success_count or 1}

    def _settle(
        self, out: NestedOutcome, outputs: list[Any], meta: dict[str, Any], delta: dict[str, Any]
    ) -> Nested:
        done = sum(s.status == StepStatus.COMPLETED for s in out.steps)
        meta = {**meta, "succeeded": done, "failed": sum(s.is_failure for s in out.steps)}
        if out.status == "completed":
            return Nested(outputs, delta=delta, children=out.steps, metadata=meta)
        nested = Nested(children=out.steps, metadata=meta)
        failures = [s for s in out.steps if s.is_failure]
        if self.failure_policy == "fail_fast" and self.wait_for_all and failures:
            raise_failed(failures[0], nested, self.step_id)
        need = 1 if not self.wait_for_all else (self.minimum_success_count or 1)
        exc = PartialFailureError(
            f"step '{self.step_id}': {done} of {len(out.steps)} branches completed, at least "
            f"{need} required; "
            + "; ".join(f"{s.step_id}: {s.error_type}: {s.error}" for s in failures),
            results=list(out.steps),
        )
        raise CompositeFailure(exc, nested)


class ParallelStep(_FanOut):
    """Runs several steps at once (JAF's ``ParallelStep``).

    Args:
        step_id: unique id within the workflow.
        steps: the branches (default none; add more with ``add_branch``). Branch ids must be
            unique within the step.
        wait_for_all: ``True`` (default) runs every branch under the failure policy;
            ``False`` completes at the first branch that completes and cancels the rest (the
            step fails only when every branch failed).
        max_concurrency: at most this many branches at once (int from 1 to ``2**31 - 1``;
            default ``None``: all).

    The output is the list of branch outputs in declaration order (``None`` for a branch that
    did not complete); dict outputs are also merged into the variables in declaration order.
    ``metadata`` counts ``succeeded`` and ``failed`` branches; ``children`` holds their results.

    Raises:
        WorkflowDefinitionError: a branch is not a step or a bad ``max_concurrency``; when the
            workflow is compiled, no branches or ``minimum_success_count`` above their number.
    """

    __slots__ = ("branches",)

    def __init__(
        self,
        step_id: str,
        steps: Sequence[Step] | None = None,
        wait_for_all: bool = True,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(step_id, wait_for_all, max_concurrency)
        self.branches: list[Step] = [self._step_arg("a branch", s) for s in steps or ()]

    def add_branch(self, step: Step) -> Self:
        """Adds a branch (JAF's fluent form). Returns the step.

        Raises:
            WorkflowDefinitionError: ``step`` is not a batten step.
        """
        self.branches.append(self._step_arg("a branch", step))
        self._changed()
        return self

    def _children(self) -> list[Step]:
        return list(self.branches)

    def _describe(self) -> StepView:
        """A group of the branches, titled with the failure policy and the concurrency."""
        how = ["parallel"]
        if not self.wait_for_all:
            how.append("first success wins")
        elif self.failure_policy != "fail_fast":
            how.append(f"at least {self.minimum_success_count or 1} must succeed")
        if self.max_concurrency is not None:
            how.append(f"{self.max_concurrency} at once")
        return StepView(
            type(self).__name__,
            "group",
            title=self._titled(", ".join(how)),
            branches=tuple((None, b) for b in self.branches),
            empty="no branches",
        )

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        step_id, n = self.step_id, len(self.branches)
        if not n:
            raise WorkflowDefinitionError(f"step '{step_id}': a ParallelStep needs branches")
        k = self.minimum_success_count
        if k is not None and k > n:
            raise WorkflowDefinitionError(
                f"step '{step_id}': minimum_success_count {k} is above the number of branches ({n})"
            )
        plan = ctx.compile(
            f"{ctx.options.workflow_id}/{step_id}",
            self.branches,
            [[] for _ in self.branches],
            max_parallel=self.max_concurrency,
            **self._policy(),
        )
        ids = [b.step_id for b in self.branches]
        settle = self._settle

        async def invoke(context: WorkflowContext) -> Nested:
            out = await ctx.run(plan, context, event_prefix=step_id)
            by_id = {s.step_id: s for s in out.steps}
            outputs = [by_id[i].output if i in by_id else None for i in ids]
            return settle(out, outputs, {}, state_delta(context, out.context))

        return invoke


def _item_controls(
    map_step: Step, inner: Step | Callable[..., Any], ctx: CompileContext
) -> tuple[list[Any], list[Any]] | None:
    """Rate limits and breakers for a map's items: the map step's own, the inner step's, and
    those attached to the inner agent/tool (or callable)."""
    own = [*map_step.traffic]
    targets: tuple[Any, ...] = (inner,)
    if isinstance(inner, Step):
        own.extend(inner.traffic)
        targets = ctx.invocable_targets(inner) if isinstance(inner, _Invocable) else ()
    if not own and not traffic_attached():
        return None
    from batten import traffic  # on first use (see traffic_attached)

    probe = Step.__new__(Step)
    probe.traffic = tuple(own)
    return traffic.controls_for(probe, targets)


class MapStep(_FanOut):
    """Runs one step per item of a list computed at run time (fan-out; seed 001's
    orchestrator-worker pattern, LangGraph's ``Send`` map-reduce).

    Args:
        step_id: unique id within the workflow.
        items: the items: a callable ``items(context) -> iterable`` (sync or async), the name
            of a variable holding them (str), or a fixed iterable.
        step: what to run per item: a plain callable called as ``step(item)`` (sync or async;
            it also gets ``context=`` if it declares that parameter), a ``ToolStep`` (called
            with its ``args`` plus ``item=<item>``), or an ``AgentStep`` (``{item}`` in its
            message is replaced by the item; with no message the item is the message).
        max_concurrency: at most this many items in flight (int from 1 to ``2**31 - 1``;
            default ``None``: all).
        item_arg: the keyword/placeholder name for the item (default ``"item"``).

    The output is the list of per-item outputs in item order (``None`` where an item did not
    complete). Items run as steps ``"<inner id>[<index>]"`` with the inner step's timeout,
    retry policy and conditions; failures follow the ``ParallelStep`` failure policies
    (default ``fail_fast``). Zero items complete at once with ``[]``.

    Raises:
        WorkflowDefinitionError: ``step`` is neither callable nor an AgentStep/ToolStep, or a
            bad ``max_concurrency`` / ``item_arg``. Items that are not iterable at run time fail
            the step with ``TypeError`` naming it.
    """

    __slots__ = ("item_arg", "items", "step")

    def __init__(
        self,
        step_id: str,
        items: Callable[[WorkflowContext], Any] | str | Iterable[Any],
        step: Step | Callable[..., Any],
        max_concurrency: int | None = None,
        *,
        item_arg: str = "item",
    ) -> None:
        super().__init__(step_id, True, max_concurrency)
        if not isinstance(item_arg, str) or not item_arg.isidentifier():
            raise WorkflowDefinitionError(
                f"step '{step_id}': item_arg must be an identifier, got {item_arg!r}"
            )
        if isinstance(step, Step):
            if not hasattr(step, "_item_spec"):
                raise WorkflowDefinitionError(
                    f"step '{step_id}': a MapStep runs a callable, ToolStep or AgentStep per "
                    f"item; got {type(step).__name__}"
                )
        elif not callable(step):
            raise WorkflowDefinitionError(
                f"step '{step_id}': a MapStep's step must be callable or a step, got {step!r:.80}"
            )
        self.items = items
        self.step = step
        self.item_arg = item_arg

    def _children(self) -> list[Step]:
        return [self.step] if isinstance(self.step, Step) else []

    def _describe(self) -> StepView:
        """A subroutine node: what it maps over, the inner step and its per-item settings."""
        inner = self.step
        if isinstance(inner, Step):
            each = f"{inner.step_id} ({inner._describe().kind})"
            inner_settings = settings_text(inner)
        else:
            each, inner_settings = name_of(inner), ""
        lines = [f"map over {items_text(self.items)} → {each}"]
        per_item = [inner_settings] if inner_settings else []
        if self.max_concurrency is not None:
            per_item.append(f"{self.max_concurrency} at once")
        if per_item:
            lines.append(f"per item: {', '.join(per_item)}")
        lines.append(settings_text(self))
        return StepView(type(self).__name__, "subroutine", lines=tuple(lines))

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        step_id, items_src, inner = self.step_id, self.items, self.step
        if isinstance(inner, Step):
            if inner.isolation != "thread":
                raise WorkflowDefinitionError(
                    f"step '{step_id}': a MapStep's inner step cannot run with_isolation"
                    f"('{inner.isolation}') yet; isolate the callable of a ToolStep or AgentStep "
                    "outside a MapStep"
                )
            fn, is_async, wants, _refs = inner._item_spec(ctx, self.item_arg)
            inner_id, timeout, conditions = inner.step_id, inner.timeout, list(inner.conditions)
            policy = ctx.default_policy(inner.retry_policy)
        else:
            fn = inner
            is_async, wants = _is_async(fn), _accepts_context(fn)
            inner_id, timeout, conditions = step_id, None, []
            policy = ctx.options.default_policy or RetryPolicy.no_retry()
        plan_id = f"{ctx.options.workflow_id}/{step_id}"
        max_parallel, run_policy, settle = self.max_concurrency, self._policy(), self._settle
        controls = _item_controls(self, inner, ctx)
        if controls is not None:
            run_policy = {**run_policy, "limiters": controls[0], "breakers": controls[1]}

        async def invoke(context: WorkflowContext) -> Nested:
            source = items_src
            if callable(source):
                source = await _maybe_await(source(context))
            elif isinstance(source, str):
                if source not in context:
                    raise KeyError(
                        f"step '{step_id}': no variable '{source}' holds the items to map over"
                    )
                source = context[source]
            if isinstance(source, str | bytes) or not isinstance(source, Iterable):
                raise TypeError(
                    f"step '{step_id}': the items to map over must be iterable (a list), "
                    f"got {type(source).__name__}"
                )
            items = list(source)
            sink = EVENT_SINK.get()
            if sink is not None:  # progress displays size the map (batten run)
                sink("fanout", step_id, 0, len(items))
            if not items:
                return Nested([], metadata={"items": 0, "succeeded": 0, "failed": 0})
            plan = ctx.compile_fan_out(
                plan_id,
                inner_id,
                fn,
                items,
                is_async,
                wants,
                timeout,
                policy,
                conditions,
                max_parallel,
                item_step=inner,
                item_arg=self.item_arg,
                **run_policy,
            )
            out = await ctx.run(plan, context, event_prefix=step_id)
            outputs: list[Any] = [None] * len(items)
            for s in out.steps:
                if s.status == StepStatus.COMPLETED:
                    outputs[int(s.step_id.rsplit("[", 1)[1][:-1])] = s.output
            # Per-item dict outputs stay in the list; they are not merged into the variables.
            return settle(out, outputs, {"items": len(items)}, {})

        return invoke


class LoopStep(_Composite):
    """Repeats a step while a condition holds (JAF's ``LoopStep``; seed 001's ReAct loop).

    Args:
        step_id: unique id within the workflow.
        step: the body, run once per iteration as a nested run (its retries and timeout apply
            per iteration).
        condition: ``condition(context, iteration) -> bool`` (sync or async), checked before
            each iteration with the 0-based number of iterations done so far; the loop goes on
            while it is true. ``context`` carries the previous iteration's output: in
            ``context.results[<body id>]`` and, for a dict output, merged into the variables.
        max_iterations: the most iterations (int from 1 to ``2**31 - 1``, default 10), so a
            loop always ends.
        on_max_iterations: what reaching ``max_iterations`` with the condition still true
            does: ``"complete"`` (default: the step completes with the last output and
            ``metadata["max_iterations_reached"] = True``) or ``"fail"`` (the step fails with
            :class:`~batten.errors.LoopLimitError`).

    The output is the last iteration's output (``None`` if none ran). ``metadata`` holds
    ``iterations`` and ``max_iterations_reached``; ``children`` every iteration's result.

    Raises:
        WorkflowDefinitionError: ``step`` is not a step, ``condition`` not callable,
            ``max_iterations`` not such an int, or an unknown ``on_max_iterations``.
    """

    __slots__ = ("_condition", "max_iterations", "on_max_iterations", "step")

    def __init__(
        self,
        step_id: str,
        step: Step,
        condition: Callable[[WorkflowContext, int], Any],
        max_iterations: int = 10,
        *,
        on_max_iterations: Literal["complete", "fail"] = "complete",
    ) -> None:
        super().__init__(step_id)
        self.step = self._step_arg("the loop body", step)
        check_callable(condition, "the loop condition", owner=f"step '{self.step_id}'")
        check_count(max_iterations, "max_iterations", owner=f"step '{step_id}'")
        if on_max_iterations not in ("complete", "fail"):
            raise WorkflowDefinitionError(
                f"step '{step_id}': on_max_iterations must be 'complete' or 'fail', "
                f"got {on_max_iterations!r}"
            )
        self._condition = condition
        self.max_iterations = max_iterations
        self.on_max_iterations = on_max_iterations

    def _children(self) -> list[Step]:
        return [self.step]

    def _describe(self) -> StepView:
        """A group whose ``while`` rhombus leads to the body and the body back to it."""
        return StepView(
            type(self).__name__,
            "group",
            title=self._titled(f"loop, at most {self.max_iterations} iterations"),
            test=(f"while {name_of(self._condition)}",),
            branches=(("repeat", self.step),),
            repeat=True,
        )

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        step_id, condition, limit = self.step_id, self._condition, self.max_iterations
        fail_at_limit = self.on_max_iterations == "fail"
        plan = _one(self.step, ctx)

        async def invoke(context: WorkflowContext) -> Nested:
            state = context
            children: list[StepResult] = []
            output: Any = None
            i = 0
            while i < limit and await _maybe_await(condition(state, i)):
                out = await ctx.run(plan, state, event_prefix=f"{step_id}[{i}]")
                child = out.steps[0]
                children.extend(out.steps)
                i += 1
                if child.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                    meta = {"iterations": i, "max_iterations_reached": False}
                    raise_failed(child, Nested(children=children, metadata=meta), step_id)
                output = child.output
                state = out.context
            reached = i == limit and bool(await _maybe_await(condition(state, i)))
            meta = {"iterations": i, "max_iterations_reached": reached}
            if reached and fail_at_limit:
                exc = LoopLimitError(
                    f"step '{step_id}': the loop reached max_iterations={limit} with its "
                    "condition still true"
                )
                raise CompositeFailure(exc, Nested(children=children, metadata=meta))
            return Nested(
                output, delta=state_delta(context, state), children=children, metadata=meta
            )

        return invoke


class SubWorkflowStep(_Composite):
    """Runs a whole workflow as one step (Temporal's child workflow).

    Args:
        step_id: unique id within the parent workflow.
        workflow: the :class:`~batten.Workflow` to run. It starts from this step's context (the
            parent's variables and ancestor results) and keeps its own policies
            (``max_parallel_steps``, ``continue_on_error``, ``max_total_retries``, error
            handlers).

    The output is the sub-workflow's ``final_output``; the variables its steps add are merged
    into the parent's; ``children`` holds its step results. The step fails, with the first
    failed inner step's exception, when the sub-workflow fails.

    Raises:
        WorkflowDefinitionError: ``workflow`` is not a Workflow (or, when compiled, is
            malformed or contains the workflow this step is in).
    """

    __slots__ = ("workflow",)

    def __init__(self, step_id: str, workflow: Workflow) -> None:
        super().__init__(step_id)
        if not isinstance(workflow, WorkflowKind):
            raise WorkflowDefinitionError(
                f"step '{step_id}': SubWorkflowStep needs a batten.Workflow, got {workflow!r:.80}"
            )
        self.workflow = workflow

    def _children(self) -> list[Step]:
        return self.workflow.steps

    def _describe(self) -> StepView:
        """A group holding the sub-workflow's own graph."""
        return StepView(
            type(self).__name__,
            "group",
            title=self._titled(f"sub-workflow {self.workflow.workflow_id}"),
            workflow=self.workflow,
            empty="no steps",
        )

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        step_id, sub = self.step_id, self.workflow
        plan = ctx.compile_workflow(sub)

        async def invoke(context: WorkflowContext) -> Nested:
            out = await ctx.run(plan, context, event_prefix=step_id)
            meta = {"workflow_id": sub.workflow_id, "run_id": out.run_id}
            if out.status == "completed":
                return Nested(
                    out.final_output,
                    delta=state_delta(context, out.context),
                    children=out.steps,
                    metadata=meta,
                )
            failed = [s for s in out.steps if s.is_failure] or [
                s for s in out.steps if s.status != StepStatus.COMPLETED
            ]
            raise_failed(failed[0], Nested(children=out.steps, metadata=meta), step_id)

        return invoke


class RouterStep(_Composite):
    """Routes to one of several branches chosen at run time (seed 001's conditional routing,
    LangGraph's ``add_conditional_edges``).

    Args:
        step_id: unique id within the workflow.
        route: what picks the branch: a callable ``route(context) -> branch id`` (sync or
            async), or a step (e.g. an ``AgentStep`` classifying the request) whose output is
            the branch id; a str output is stripped of surrounding whitespace.
        branches: ``{branch id: step}``, or a list of steps (each id is the step's id).

    Only the chosen branch runs; its output is the step's output and ``metadata["branch"]``
    names it (a routing step's result is in ``children`` too). A route that returns an id not
    among the branches fails the step with :class:`~batten.errors.RouteError` naming the id it
    got and the ids allowed.

    Raises:
        WorkflowDefinitionError: ``route`` is neither callable nor a step, no branches, or a
            branch is not a step.
    """

    __slots__ = ("branches", "route")

    def __init__(
        self,
        step_id: str,
        route: Callable[[WorkflowContext], Any] | Step,
        branches: Mapping[str, Step] | Sequence[Step],
    ) -> None:
        super().__init__(step_id)
        if not isinstance(route, Step) and not callable(route):
            raise WorkflowDefinitionError(
                f"step '{step_id}': route must be a callable or a step, got {route!r:.80}"
            )
        if isinstance(branches, Mapping):
            table = {str(k): self._step_arg("a branch", v) for k, v in branches.items()}
        else:
            table = {}
            for b in branches or ():
                table[self._step_arg("a branch", b).step_id] = b
        if not table:
            raise WorkflowDefinitionError(f"step '{step_id}': a RouterStep needs branches")
        self.route = route
        self.branches: dict[str, Step] = table

    def _children(self) -> list[Step]:
        route = [self.route] if isinstance(self.route, Step) else []
        return [*route, *self.branches.values()]

    def _describe(self) -> StepView:
        """A group whose rhombus (after the routing step, when the route is one) has an edge
        per branch labelled with its key."""
        route = self.route
        routed_by_step = isinstance(route, Step)
        return StepView(
            type(self).__name__,
            "group",
            title=self._titled("router"),
            test=("route by its output",) if routed_by_step else (f"route: {name_of(route)}",),
            lead=route if routed_by_step else None,
            branches=tuple(self.branches.items()),
        )

    def _invoke(self, ctx: CompileContext) -> Callable[[WorkflowContext], Any]:
        step_id, route = self.step_id, self.route
        plans = {k: _one(v, ctx) for k, v in self.branches.items()}
        route_plan = _one(route, ctx) if isinstance(route, Step) else None

        async def invoke(context: WorkflowContext) -> Nested:
            pre: list[StepResult] = []
            if route_plan is not None:
                routed = await ctx.run(route_plan, context, event_prefix=step_id)
                pre = list(routed.steps)
                if routed.steps[0].status != StepStatus.COMPLETED:
                    raise_failed(routed.steps[0], Nested(children=pre), step_id)
                choice = routed.steps[0].output
            else:
                assert callable(route)
                choice = await _maybe_await(route(context))
            if isinstance(choice, str):
                choice = choice.strip()
            if choice not in plans:
                exc = RouteError(
                    f"step '{step_id}': the route returned {choice!r}, which is not a branch; "
                    f"allowed: {', '.join(plans)}",
                    got=choice,
                    allowed=list(plans),
                )
                raise CompositeFailure(exc, Nested(children=pre))
            out = await ctx.run(plans[choice], context, event_prefix=step_id)
            return _single_outcome(step_id, context, out, {"branch": choice}, pre)

        return invoke
