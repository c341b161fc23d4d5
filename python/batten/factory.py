"""Workflows by name: seed 004's (aigen's) ``register_workflow_factory`` and ``create_workflow``.

A factory is any callable returning a workflow (``Workflow``, ``DeterministicWorkflow``,
``HandoffWorkflow``, a ``DagWorkflow``...); it is registered under a name with metadata, and
``create_workflow`` builds one from that name, from a list of agent names (a pipeline), or
from a workflow file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from batten._internal.checks import check_callable
from batten.errors import WorkflowDefinitionError

__all__ = ["create_workflow", "list_workflow_factories", "register_workflow_factory"]

_FILE_SUFFIXES = (".yaml", ".yml", ".json")

_lock = threading.Lock()
_factories: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}


def register_workflow_factory(
    name: str, factory: Callable[..., Any], metadata: Mapping[str, Any] | None = None
) -> None:
    """Registers ``factory`` under ``name`` (seed 004's ``register_workflow_factory``); a later
    registration of the same name replaces the earlier one.

    Args:
        name: the name ``create_workflow(name)`` uses (non-empty str).
        factory: ``factory(**kwargs) -> workflow``; ``create_workflow(name, **kwargs)`` passes
            its keyword arguments through.
        metadata: free-form facts about the workflow (``{"description": ...}``), returned by
            :func:`list_workflow_factories`. Default ``{}``.

    Raises:
        WorkflowDefinitionError: ``name`` is not a non-empty str or ``factory`` is not
            callable.
    """
    if not isinstance(name, str) or not name:
        raise WorkflowDefinitionError(
            f"a workflow factory's name must be a non-empty str, got {name!r}"
        )
    check_callable(factory, "factory", owner=f"workflow factory '{name}'")
    with _lock:
        _factories[name] = (factory, dict(metadata or {}))


def list_workflow_factories() -> dict[str, dict[str, Any]]:
    """``{name: metadata}`` of every registered workflow factory, sorted by name."""
    with _lock:
        return {name: dict(meta) for name, (_f, meta) in sorted(_factories.items())}


def create_workflow(spec: str | Path | Sequence[str], /, **kwargs: Any) -> Any:
    """Builds a workflow (seed 004's ``create_workflow``) from:

    - a registered factory's name: ``create_workflow("content_generation", **kwargs)`` calls
      the factory with ``kwargs``;
    - a list of agent names (or agents): ``create_workflow(["research", "writer", "editor"])``
      is a :class:`~batten.DeterministicWorkflow` pipeline of those registered agents, each fed
      the previous one's output (``kwargs`` go to it: ``name=``, ``description=``);
    - a workflow file's path (``.yaml``, ``.yml``, ``.json``, or any existing file):
      :func:`batten.load_workflow` (``kwargs``: ``registry=``).

    A name that is both registered and an existing file is taken as the registered name.

    Raises:
        WorkflowDefinitionError: an unknown name (the message lists the registered ones and
            says no such file exists), an empty agent list, or a factory that did not return a
            workflow.
        WorkflowConfigError: the file is malformed (see :func:`batten.load_workflow`).
    """
    from batten.builder import DagWorkflow
    from batten.workflow import Workflow

    if isinstance(spec, str | Path):
        text = str(spec)
        with _lock:
            entry = _factories.get(text)
        if entry is not None:
            made = entry[0](**kwargs)
            if not isinstance(made, Workflow | DagWorkflow):
                raise WorkflowDefinitionError(
                    f"workflow factory '{text}' returned {type(made).__name__}, not a workflow"
                )
            return made
        path = Path(text)
        if path.suffix.lower() in _FILE_SUFFIXES or path.is_file():
            from batten.config import load_workflow

            return load_workflow(path, **kwargs)
        known = ", ".join(sorted(_factories)) or "none"
        raise WorkflowDefinitionError(
            f"no workflow factory named '{text}' is registered (registered: {known}) and no "
            "such workflow file exists"
        )
    if isinstance(spec, Sequence) and not isinstance(spec, bytes):
        from batten.patterns import DeterministicWorkflow

        agents = list(spec)
        if not agents:
            raise WorkflowDefinitionError("create_workflow needs at least one agent name")
        name = kwargs.pop("name", "-".join(a if isinstance(a, str) else "agent" for a in agents))
        return DeterministicWorkflow(agents, name, **kwargs)
    raise WorkflowDefinitionError(
        "create_workflow takes a registered name, a list of agent names or a file path, got "
        f"{type(spec).__name__}"
    )
