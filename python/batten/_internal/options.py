"""What compiling a step depends on besides the step itself (private, ``batten._internal``).

:class:`CompileOptions` is built by the public facades (``Workflow``, ``WorkflowEngine``) and
read by the step model and the runtime; it is data only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batten._core import StepResult, WorkflowContext

if TYPE_CHECKING:
    from batten.registry import Registry
    from batten.retry import RetryPolicy
    from batten.steps import Step

__all__ = ["DEFAULT_OPTIONS", "CompileOptions", "StepErrorHandler", "WorkflowErrorHandler"]

#: ``handler(step_result, context) -> Step | None`` (JAF's ``add_error_handler``).
StepErrorHandler = Callable[[StepResult, WorkflowContext], "Step | None"]
#: ``handler(error, step, state) -> {"action": ...}`` (JAF's builder ``with_error_handler``).
WorkflowErrorHandler = Callable[[BaseException, "Step", WorkflowContext], Any]


@dataclass(frozen=True, eq=False)
class CompileOptions:
    """What compiling a step depends on besides the step itself.

    Attributes:
        registry: where agent and tool names are looked up (``None``: the process-wide one).
        default_policy: the retry policy of steps that kept the default no-retry policy
            (``WorkflowEngine(max_retries=)``); ``None``: theirs.
        error_handlers: ``{step_id: [handler, ...]}`` (``Workflow.add_error_handler``).
        workflow_handler: the workflow-wide error handler (``WorkflowBuilder``), or ``None``.
        workflow_id: the id nested plans are named after (default ``"workflow"``).
        executor: where steps run by default: ``None`` (this process) or a
            ``RayExecutor`` (``Workflow(executor=)``).
    """

    registry: Registry | None = None
    #: Applied to steps that kept the default no-retry policy (``WorkflowEngine(max_retries=)``).
    default_policy: RetryPolicy | None = None
    error_handlers: Mapping[str, Sequence[StepErrorHandler]] = field(default_factory=dict)
    workflow_handler: WorkflowErrorHandler | None = None
    workflow_id: str = "workflow"
    executor: Any = None

    def __post_init__(self) -> None:
        handlers = tuple((k, tuple(map(id, v))) for k, v in self.error_handlers.items())
        key = (
            id(self.registry),
            self.default_policy,
            handlers,
            id(self.workflow_handler),
            id(self.executor),
        )
        object.__setattr__(self, "_key", key)

    def key(self) -> tuple[Any, ...]:
        """Identifies what a plan compiled under these options depends on (computed once, at
        creation: NOTE: rebuilding it cost ~6 µs of every run; options are made afresh
        whenever the handlers they hold change)."""
        key: tuple[Any, ...] = self.__dict__["_key"]
        return key


DEFAULT_OPTIONS = CompileOptions()
