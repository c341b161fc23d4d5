"""Workflows as files: YAML or JSON read into a :class:`~batten.Workflow`.

Two formats are read:

- **format 1** (batten's own, checked by the JSON Schema ``workflow.schema.json`` shipped here;
  :func:`schema` returns it): ``name``, ``inputs``, ``defaults``, ``imports`` and ``steps``,
  each with ``id``, ``kind`` (``tool``, ``agent``, ``map``, ``parallel``, ``condition``,
  ``approval``, ``loop``), an agent or tool as ``module:attribute`` or a registered name,
  ``args`` / ``message`` with ``{step.result}`` and ``{inputs.name}`` references,
  ``depends_on``, ``retry``, ``timeout`` (seconds), ``isolation`` (an agent or tool: ``thread``
  or ``process``) and ``condition``. A step also depends on
  the top-level steps its texts reference, so ``depends_on`` may be left out for them.
- **seed 002's ``WORKFLOW_CONFIG``** (``name``, ``version``, ``agents``, ``phases``,
  ``error_handling``, ``output``), recognised by its ``phases`` key; see
  :mod:`batten.config.phases` for how each key maps.

Every error is a :class:`~batten.WorkflowConfigError` naming the file, the line and the field,
raised before anything runs. Reading is bounded in time and memory whatever the file holds (at
most 1 MiB, 50 levels of nesting and 100,000 values with YAML aliases expanded; see
:mod:`batten.config.source`); a config dict is held to the same nesting and value bounds.

**A workflow file is code.** ``imports`` runs its modules' code while the file loads, and a
``module:attribute`` reference names any callable (``tool: os:system`` runs shell commands when
the step runs), so load only files you trust. ``resolve=False`` (``batten graph``, ``batten
validate --no-import``) imports nothing: references are checked for form only and listed as
unresolved, and the workflow can be inspected but not run.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batten.config import phases
from batten.config.build import Builder, coerce_input, schema
from batten.config.source import DocPath, LineMap, bounds_problem, field_name, read
from batten.errors import WorkflowConfigError

if TYPE_CHECKING:
    from batten.registry import Registry
    from batten.workflow import Workflow

__all__ = [
    "LoadedWorkflow",
    "UnresolvedReference",
    "coerce_input",
    "initial_variables",
    "load_workflow",
    "read_workflow",
    "schema",
    "workflow_from_config",
]

#: The workflow files being loaded in this context, outermost first (fallback files nest).
_LOADING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "batten_config_loading", default=()
)


def loading() -> tuple[str, ...]:
    """The absolute paths of the workflow files being loaded here, outermost first."""
    return _LOADING.get()


@contextmanager
def _loading(path: str) -> Iterator[None]:
    token = _LOADING.set((*_LOADING.get(), path))
    try:
        yield
    finally:
        _LOADING.reset(token)


@dataclass(frozen=True)
class UnresolvedReference:
    """A reference a load with ``resolve=False`` did not import or look up.

    Attributes:
        file: the workflow file (str).
        line: the 1-based line where it is written (int), or ``None``.
        field: its field's path (``"steps[2].tool"``, ``"imports[0]"``).
        reference: the text as written (``"os:system"``, a module name, a registered name).
    """

    file: str | None
    line: int | None
    field: str
    reference: str


@dataclass(frozen=True)
class LoadedWorkflow:
    """What :func:`read_workflow` read.

    Attributes:
        workflow: the :class:`~batten.Workflow`.
        unresolved: the references left unchecked (empty when loaded with ``resolve=True``).
    """

    workflow: Workflow
    unresolved: tuple[UnresolvedReference, ...]


def load_workflow(
    path: str | Path, *, registry: Registry | None = None, resolve: bool = True
) -> Workflow:
    """Reads the workflow file at ``path`` (YAML, or JSON for ``.json``).

    ``module:attribute`` references are imported with the file's directory first on
    ``sys.path``, so modules next to the file need no packaging. The workflow's ``source`` is
    the file's absolute path (``batten resume`` reloads it from there).

    A workflow file is code: loading it imports the modules it lists in ``imports`` (their code
    runs), and its steps call whatever callables it names. Load only files you trust, or pass
    ``resolve=False``.

    Args:
        path: the file (str or Path).
        registry: where agent and tool names are looked up (default: the process-wide one
            that ``@batten.agent`` / ``@batten.tool`` fill). A name found in a registry passed
            here is replaced by the object registered there (the process-wide registry is
            consulted only as that registry's ``parent``); one found in the process-wide
            registry is kept as a name, so a ``WorkflowEngine``'s own registry can supply it
            when the workflow runs.
        resolve: import ``imports`` and ``module:attribute`` references (default ``True``).
            ``False`` imports nothing and runs nothing of the file's: references are checked
            for form only (:func:`read_workflow` lists them), and agents, tools and conditions
            become stand-ins named as written that raise when called: the workflow can be
            validated and drawn (:meth:`~batten.Workflow.to_mermaid`) but not run.

    Raises:
        WorkflowConfigError: the file is missing or unreadable, larger than 1 MiB, not valid
            YAML/JSON, breaks the schema or a bound of :mod:`batten.config.source`, names
            something that cannot be imported or is not registered (with ``resolve=True``), or
            describes an invalid graph (an unknown ``depends_on``, a cycle); the message reads
            ``file:line: field: problem``.
    """
    return _read_workflow(path, registry=registry, resolve=resolve).workflow


def read_workflow(
    path: str | Path, *, registry: Registry | None = None, resolve: bool = True
) -> LoadedWorkflow:
    """As :func:`load_workflow`, also giving the references left unresolved (with
    ``resolve=False``: every ``imports`` module, ``module:attribute`` reference and name not
    in the registry, in file order; those of a ``fallback_workflow`` file are listed under
    ``fallback_workflow``).

    Raises:
        WorkflowConfigError: as :func:`load_workflow`.
    """
    return _read_workflow(path, registry=registry, resolve=resolve)


def _read_workflow(path: str | Path, *, registry: Registry | None, resolve: bool) -> LoadedWorkflow:
    file = Path(path)
    data, lines = read(file)
    absolute = str(file.resolve())
    with _loading(absolute):
        workflow, builder = _build(data, lines, file.resolve().parent, registry, resolve)
    workflow.source = absolute
    seen: set[tuple[DocPath, str]] = set()
    unresolved = []
    for where, text in builder.unresolved:
        if (where, text) in seen:  # defaults.retry is applied to every step
            continue
        seen.add((where, text))
        line = builder.lines.line(where)
        name = field_name(builder.lines.original(where))
        unresolved.append(UnresolvedReference(lines.source, line, name, text))
    return LoadedWorkflow(workflow, tuple(unresolved))


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
        registry: where agent and tool names are looked up (default: the process-wide one;
            see :func:`load_workflow`).

    Raises:
        WorkflowConfigError: as :func:`load_workflow`, with the field but no file or line.
        TypeError: ``config`` is not a mapping.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"a workflow config must be a dict, got {type(config).__name__}")
    problem = bounds_problem(config)
    if problem is not None:
        raise WorkflowConfigError(problem)
    base = Path(base_dir) if base_dir else None
    return _build(config, LineMap(None), base, registry, True)[0]


def _build(
    data: Any, lines: LineMap, base_dir: Path | None, registry: Registry | None, resolve: bool
) -> tuple[Workflow, Builder]:
    if not isinstance(data, Mapping):
        raise lines.error((), f"a workflow file holds a mapping, got {type(data).__name__}")
    if "phases" in data and "steps" not in data:
        native, native_lines, extras = phases.to_native(data, lines)
        builder = Builder(native, native_lines, base_dir, registry, resolve=resolve)
        workflow = builder.build()
        phases.apply_extras(workflow, extras, native_lines)
        return workflow, builder
    builder = Builder(data, lines, base_dir, registry, resolve=resolve)
    return builder.build(), builder


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
