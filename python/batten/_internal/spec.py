"""``StepSpec``: how the native engine calls one step, named field by field (private).

The compiler (``batten._runtime.compile``) builds one per step and hands the list to ``_core.Plan``,
which reads each field by its name, so neither side counts tuple positions. A leaf: imports
nothing from batten but ``errors`` (and ``retry`` for type checking only).
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NamedTuple

    from batten.retry import RetryPolicy

__all__ = ["StepSpec"]

# NOTE: type checkers read the `NamedTuple` class below; at run time `StepSpec` is the plain
# `collections.namedtuple` with the same fields and default (tests/test_api.py compares them):
# the class statement would evaluate each string annotation as a `typing.ForwardRef`, one
# `compile()` apiece (~0.25 ms of `from batten import Workflow`).
_FIELDS = (
    "step_id",
    "depends_on",
    "refs",
    "invoke",
    "is_async",
    "wants_context",
    "timeout",
    "retry_policy",
    "conditions",
    "inline",
)

if TYPE_CHECKING:

    class StepSpec(NamedTuple):
        """One step as the engine runs it (``_core.Plan`` reads these fields by name; a field of
        the wrong type is a ``WorkflowDefinitionError`` naming the step).

        Attributes:
            step_id: the step's id, unique within its plan.
            depends_on: ids of the steps that must complete before it starts.
            refs: ids of the steps its ``{step_id.result}`` templates read; each must be an
                ancestor of the step.
            invoke: called with no arguments, or with ``context=`` when ``wants_context``; returns
                the output, or an awaitable for an async step (a composite's resolves to a
                ``_core.Nested``).
            is_async: ``invoke`` returns an awaitable, run as an ``asyncio`` task on the loop
                thread; otherwise it is called on a worker thread.
            wants_context: ``invoke`` takes the step's ``WorkflowContext`` as ``context=``.
            timeout: seconds each attempt may take (positive, finite); ``None`` for no limit.
            retry_policy: when, and after how many seconds, a failed attempt is retried.
            conditions: callables ``condition(context) -> bool``; the step is skipped unless every
                one returns true.
            inline: a sync step's ``with_inline``: ``True`` always called on the event loop's
                thread, ``False`` always on a worker thread, ``None`` (default) by the adaptive
                rule (see ``Step.with_inline``).
        """

        step_id: str
        depends_on: list[str]
        refs: list[str]
        invoke: Callable[..., Any]
        is_async: bool
        wants_context: bool
        timeout: float | None
        retry_policy: RetryPolicy
        conditions: list[Callable[..., Any]]
        inline: bool | None = None

else:
    StepSpec = namedtuple("StepSpec", _FIELDS, defaults=(None,))
    StepSpec.__doc__ = "One step as the engine runs it (its fields: the class above)."
