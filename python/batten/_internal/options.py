"""What compiling a step depends on besides the step itself (private, ``batten._internal``).

:class:`CompileOptions` is built by the public facades (``Workflow``, ``WorkflowEngine``) and
read by the step model and the runtime; it is data only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


class CompileOptions:
    """What compiling a step depends on besides the step itself (immutable; compared by
    identity).

    NOTE: a plain slotted class, not a dataclass: ``import dataclasses`` and the ``exec`` of a
    dataclass's generated methods cost ~1 ms of importing ``batten.workflow`` (issue 18).

    Args (all keyword-only):
        registry: where agent and tool names are looked up (``None``: the process-wide one).
        default_policy: the retry policy of steps that kept the default no-retry policy
            (``WorkflowEngine(max_retries=)``); ``None``: theirs.
        error_handlers: ``{step_id: [handler, ...]}`` (``Workflow.add_error_handler``); default
            empty.
        workflow_handler: the workflow-wide error handler (``WorkflowBuilder``), or ``None``.
        workflow_id: the id nested plans are named after (default ``"workflow"``).
        executor: where steps run by default: ``None`` (this process) or a
            ``RayExecutor`` (``Workflow(executor=)``).

    Raises:
        AttributeError: on assigning to an attribute (the options are immutable).
    """

    __slots__ = (
        "_key",
        "default_policy",
        "error_handlers",
        "executor",
        "registry",
        "workflow_handler",
        "workflow_id",
    )

    registry: Registry | None
    default_policy: RetryPolicy | None
    error_handlers: Mapping[str, Sequence[StepErrorHandler]]
    workflow_handler: WorkflowErrorHandler | None
    workflow_id: str
    executor: Any
    _key: tuple[Any, ...]

    def __init__(
        self,
        *,
        registry: Registry | None = None,
        default_policy: RetryPolicy | None = None,
        error_handlers: Mapping[str, Sequence[StepErrorHandler]] | None = None,
        workflow_handler: WorkflowErrorHandler | None = None,
        workflow_id: str = "workflow",
        executor: Any = None,
    ) -> None:
        if error_handlers is None:
            error_handlers = {}
        handlers = tuple((k, tuple(map(id, v))) for k, v in error_handlers.items())
        init = object.__setattr__
        init(self, "registry", registry)
        init(self, "default_policy", default_policy)
        init(self, "error_handlers", error_handlers)
        init(self, "workflow_handler", workflow_handler)
        init(self, "workflow_id", workflow_id)
        init(self, "executor", executor)
        key = (id(registry), default_policy, handlers, id(workflow_handler), id(executor))
        init(self, "_key", key)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"CompileOptions is immutable: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"CompileOptions is immutable: cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"CompileOptions(registry={self.registry!r}, default_policy={self.default_policy!r}, "
            f"error_handlers={self.error_handlers!r}, workflow_handler={self.workflow_handler!r}, "
            f"workflow_id={self.workflow_id!r}, executor={self.executor!r})"
        )

    def replace(self, **changes: Any) -> CompileOptions:
        """A copy with ``changes`` (keyword arguments of the constructor) applied, as
        ``dataclasses.replace``.

        Raises:
            TypeError: a keyword is not one of the constructor's.
        """
        fields = self._asdict()
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"CompileOptions.replace() got unknown fields {sorted(unknown)}")
        return CompileOptions(**{**fields, **changes})

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy: rebuilt by the constructor
        return (_rebuild, (self._asdict(),))

    def _asdict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "default_policy": self.default_policy,
            "error_handlers": self.error_handlers,
            "workflow_handler": self.workflow_handler,
            "workflow_id": self.workflow_id,
            "executor": self.executor,
        }

    def key(self) -> tuple[Any, ...]:
        """Identifies what a plan compiled under these options depends on (computed once, at
        creation: NOTE: rebuilding it cost ~6 µs of every run; options are made afresh
        whenever the handlers they hold change)."""
        return self._key


def _rebuild(fields: dict[str, Any]) -> CompileOptions:
    return CompileOptions(**fields)


DEFAULT_OPTIONS = CompileOptions()
