"""Workflows as files: YAML or JSON read into a :class:`~batten.Workflow`.

Two formats are read:

- **format 1** (batten's own, checked by the JSON Schema ``workflow.schema.json`` shipped here;
  :func:`schema` returns it): ``name``, ``inputs``, ``defaults``, ``imports`` and ``steps``,
  each with ``id``, ``kind`` (``tool``, ``agent``, ``map``, ``parallel``, ``condition``,
  ``approval``, ``loop``), an agent or tool as ``module:attribute`` or a registered name,
  ``args`` / ``message`` with ``{step.result}`` and ``{inputs.name}`` references,
  ``depends_on``, ``retry``, ``timeout`` (seconds) and ``condition``. A step also depends on
  the top-level steps its texts reference, so ``depends_on`` may be left out for them.
- **seed 002's ``WORKFLOW_CONFIG``** (``name``, ``version``, ``agents``, ``phases``,
  ``error_handling``, ``output``), recognised by its ``phases`` key; see
  :mod:`batten.config.phases` for how each key maps.

Every error is a :class:`~batten.WorkflowConfigError` naming the file, the line and the field,
raised before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batten.config.build import Builder, coerce_input, schema
from batten.config.source import LineMap, read
from batten.errors import WorkflowConfigError

if TYPE_CHECKING:
    from batten.registry import Registry
    from batten.workflow import Workflow

__all__ = ["coerce_input", "initial_variables", "load_workflow", "schema", "workflow_from_config"]


def load_workflow(path: str | Path, *, registry: Registry | None = None) -> Workflow:
    """Reads the workflow file at ``path`` (YAML, or JSON for ``.json``).

    ``module:attribute`` references are imported with the file's directory first on
    ``sys.path``, so modules next to the file need no packaging. The workflow's ``source`` is
    the file's absolute path (``batten resume`` reloads it from there).

    Args:
        path: the file (str or Path).
        registry: where agent and tool names are looked up (default: the process-wide one
            that ``@batten.agent`` / ``@batten.tool`` fill).

    Raises:
        WorkflowConfigError: the file is missing or unreadable, not valid YAML/JSON, breaks
            the schema, names something that cannot be imported or is not registered, or
            describes an invalid graph (an unknown ``depends_on``, a cycle); the message reads
            ``file:line: field: problem``.
    """
    file = Path(path)
    data, lines = read(file)
    workflow = _build(data, lines, file.resolve().parent, registry)
    workflow.source = str(file.resolve())
    return workflow


def workflow_from_config(
    config: Mapping[str, Any],
    *,
    base_dir: str | Path | None = None,
    registry: Registry | None = None,
) -> Workflow:
    """A workflow from a config dict in either format (see the module docstring); the
    implementation of :meth:`batten.Workflow.from_config`.

    Args:
        config: the document as a dict (format 1, or seed 002's with ``phases``).
        base_dir: a directory put first on ``sys.path`` while importing references (default:
            none).
        registry: where agent and tool names are looked up (default: the process-wide one).

    Raises:
        WorkflowConfigError: as :func:`load_workflow`, with the field but no file or line.
        TypeError: ``config`` is not a mapping.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"a workflow config must be a dict, got {type(config).__name__}")
    return _build(config, LineMap(None), Path(base_dir) if base_dir else None, registry)


def _build(data: Any, lines: LineMap, base_dir: Path | None, registry: Registry | None) -> Workflow:
    if not isinstance(data, Mapping):
        raise lines.error((), f"a workflow file holds a mapping, got {type(data).__name__}")
    if "phases" in data and "steps" not in data:
        from batten.config import phases

        native, native_lines, extras = phases.to_native(data, lines)
        workflow = Builder(native, native_lines, base_dir, registry).build()
        phases.apply_extras(workflow, extras, native_lines)
        return workflow
    return Builder(data, lines, base_dir, registry).build()


def initial_variables(workflow: Workflow, given: Mapping[str, Any]) -> dict[str, Any]:
    """The run's variables from its declared ``inputs`` and the values ``given`` (text from a
    command line is converted to each input's type; defaults fill the rest).

    Args:
        workflow: a workflow whose ``inputs`` were declared by its file (others accept any
            names as given).
        given: ``{name: value}``.

    Raises:
        WorkflowConfigError: an input the workflow does not declare, a required input
            missing, or a value that does not fit its type.
    """
    declared: dict[str, dict[str, Any]] = getattr(workflow, "inputs", {}) or {}
    source = getattr(workflow, "source", None)
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = declared.get(name)
        if spec is None:
            if declared:
                raise WorkflowConfigError(
                    f"the workflow has no input '{name}' (inputs: {', '.join(declared)})",
                    file=source,
                    field=f"inputs.{name}",
                )
            out[name] = value
            continue
        try:
            out[name] = coerce_input(name, spec["type"], value)
        except ValueError as exc:
            raise WorkflowConfigError(str(exc), file=source, field=f"inputs.{name}") from None
    for name, spec in declared.items():
        if name in out:
            continue
        if spec["required"] and spec["default"] is None:
            raise WorkflowConfigError(
                f"input '{name}' is required ({spec['description'] or spec['type']}); pass "
                f"--input {name}=...",
                file=source,
                field=f"inputs.{name}",
            )
        out[name] = spec["default"]
    return out
