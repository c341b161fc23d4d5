"""What a step may ask of the runtime while it is compiled (private): the
:class:`CompileContext` protocol, and the shapes of what steps hand the engine.

The step model never imports ``batten._runtime``: a composite step compiles and runs its inner
steps through the ``CompileContext`` passed to its ``_call_spec`` (the runtime's
``batten._runtime.compile.Compiler`` implements it), so a new step kind is written against this
protocol alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from batten._core import StepResult, WorkflowContext
from batten._internal.options import CompileOptions

if TYPE_CHECKING:
    from batten.retry import RetryPolicy
    from batten.steps.base import Step

__all__ = ["CallSpec", "CompileContext", "ItemSpec", "NestedOutcome"]

#: ``(invoke, is_async, wants_context, template_refs)``: how the engine calls one step.
CallSpec = tuple[Callable[..., Any], bool, bool, tuple[str, ...]]

#: ``(invoke, is_async, wants_context, template_refs)``: ``invoke(item[, context=])`` runs one
#: item of a ``MapStep``.
ItemSpec = tuple[Callable[..., Any], bool, bool, tuple[str, ...]]


class NestedOutcome(Protocol):
    """A finished nested run, as :meth:`CompileContext.run` returns it."""

    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def steps(self) -> list[StepResult]: ...
    @property
    def final_output(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def context(self) -> WorkflowContext: ...


class CompileContext(Protocol):
    """The runtime's capabilities a step uses while it is compiled: compiling the steps it
    holds into nested plans, and running those plans from its body."""

    @property
    def options(self) -> CompileOptions:
        """The options the enclosing plan is compiled under (registry, default retry policy,
        error handlers, workflow id)."""
        ...

    def compile(
        self,
        plan_id: str,
        steps: Sequence[Step],
        deps: Sequence[Sequence[str]],
        *,
        max_parallel: int | None = None,
        **policy: Any,
    ) -> Any:
        """A nested plan of ``steps`` (``deps`` per step, ``max_parallel`` at most in flight;
        ``policy``: ``fail_fast``, ``first_success``, ``min_success``, ``continue_on_error``).

        Raises:
            WorkflowDefinitionError: a step is malformed.
        """
        ...

    def compile_workflow(self, workflow: Any) -> Any:
        """The nested plan of a whole workflow (a ``SubWorkflowStep``'s), under its own policies.

        Raises:
            WorkflowDefinitionError: the workflow is malformed or contains itself.
        """
        ...

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
        """A nested plan running ``fn`` once per item as steps ``"<inner_id>[<index>]"``;
        ``item_step`` is the step or callable ``fn`` runs (for wrappers that describe it) and
        ``item_arg`` the name the item is given to it under."""
        ...

    def run(
        self, plan: Any, context: WorkflowContext, *, event_prefix: str
    ) -> Awaitable[NestedOutcome]:
        """Runs ``plan`` from ``context`` as a nested run whose events and checkpoints carry
        ``event_prefix`` (``"parent/child"``); cancelling the awaiting task cancels it."""
        ...

    def default_policy(self, policy: RetryPolicy) -> RetryPolicy:
        """``policy``, or the engine's default for a step that never called ``with_retry``."""
        ...

    def inner_refs(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """Template references of ``steps`` to steps outside them: a composite's own
        references."""
        ...

    def invocable_targets(self, step: Step) -> tuple[Any, ...]:
        """An agent/tool step's target object and, when given by name, the name and the object
        it resolves to (traffic controls attached to either apply)."""
        ...
