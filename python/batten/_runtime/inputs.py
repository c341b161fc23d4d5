"""A workflow's declared inputs applied to a run's initial context (private, layer
``batten._runtime``).

A workflow built from a file or a config dict declares its ``inputs`` (``{name: {"type",
"default", "required", "description"}}``; seed 002's phases format declares ``requirements``
with the default ``""``). Every way of running it (``Workflow.run`` / ``execute`` / ``stream``
/ ``resume``, ``WorkflowEngine``, the ``batten`` command) starts from a context in which each
declared input the caller did not give holds its default; a required input without a default
that the caller did not give is a :class:`~batten.WorkflowConfigError` before anything runs
(as the ``batten run`` command, which also converts ``--input`` text to each input's type).
"""

from __future__ import annotations

from typing import Any

from batten._core import WorkflowContext
from batten.errors import WorkflowConfigError

__all__ = ["with_input_defaults"]


def with_input_defaults(workflow: Any, context: WorkflowContext | None) -> WorkflowContext | None:
    """``context`` with each declared input of ``workflow`` that it lacks set to its default.

    Args:
        workflow: the ``Workflow`` (its ``inputs`` attribute; ``{}`` declares none).
        context: the caller's initial context, or ``None`` (an empty one).

    Returns:
        ``context`` itself when nothing is missing (or ``workflow`` declares no inputs), else a
        new ``WorkflowContext`` with the same ``workflow_id``, ``user_context`` and
        ``metadata`` and the variables plus the defaults (the caller's object is not changed).
        Variables the workflow does not declare are kept as given.

    Raises:
        WorkflowConfigError: a required input (declared without a default) is missing; the
            message names the input and the workflow, ``field`` is ``inputs.<name>``.
    """
    declared: dict[str, dict[str, Any]] = getattr(workflow, "inputs", None) or {}
    if not declared or (context is not None and not isinstance(context, WorkflowContext)):
        return context  # a wrong context type is reported by the caller's own check
    given = dict(context.variables) if context is not None else {}
    missing = {name: spec for name, spec in declared.items() if name not in given}
    if not missing:
        return context
    for name, spec in missing.items():
        if spec.get("required") and spec.get("default") is None:
            what = spec.get("description") or spec.get("type") or "a value"
            raise WorkflowConfigError(
                f"workflow '{workflow.workflow_id}': input '{name}' is required ({what}) and "
                f"has no default; pass it as a variable of the run's context: "
                f"WorkflowContext(variables={{{name!r}: ...}}) (or --input {name}=... to "
                "`batten run`)",
                file=getattr(workflow, "source", None),
                field=f"inputs.{name}",
            )
        given[name] = spec.get("default")
    if context is None:
        return WorkflowContext(workflow.workflow_id, variables=given)
    return WorkflowContext(
        context.workflow_id, dict(context.user_context), given, dict(context.metadata)
    )
