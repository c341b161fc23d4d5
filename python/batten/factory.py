"""Workflows by name: seed 004's (aigen's) ``register_workflow_factory`` and ``create_workflow``.

A factory is any callable returning a workflow (``Workflow``, ``DeterministicWorkflow``,
``HandoffWorkflow``, a ``DagWorkflow``...); it is registered under a name with metadata, and
``create_workflow`` builds one from that name, from a list of agent names (a pipeline), or
from a workflow file.

Layer: above ``batten.builder``, ``batten.patterns`` and ``batten.config``. The factories
themselves are named in :mod:`batten.registry` (re-exported here), so that the config layer
can resolve a fallback workflow's name without importing this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batten.errors import WorkflowDefinitionError
from batten.patterns import DeterministicWorkflow
from batten.registry import (
    build_registered_workflow,
    list_workflow_factories,
    register_workflow_factory,
    unknown_workflow,
)

__all__ = ["create_workflow", "list_workflow_factories", "register_workflow_factory"]

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def create_workflow(spec: str | Path | Sequence[str], /, **kwargs: Any) -> Any:
    """Builds a workflow (seed 004's ``create_workflow``) from:

    - a registered factory's name: ``create_workflow("content_generation", **kwargs)`` calls
      the factory with ``kwargs``;
    - a list of agent names (or agents): ``create_workflow(["research", "writer", "editor"])``
      is a :class:`~batten.DeterministicWorkflow` pipeline of those registered agents, each fed
      the previous one's output (``kwargs`` go to it: ``name=``, ``description=``; with
      ``registry=`` a :class:`~batten.Registry`, the names are looked up there now instead of
      in the process-wide registry when the workflow runs);
    - a workflow file's path (``.yaml``, ``.yml``, ``.json``, or any existing file):
      :func:`batten.load_workflow` (``kwargs``: ``registry=``).

    A name that is both registered and an existing file is taken as the registered name.

    Raises:
        WorkflowDefinitionError: an unknown name (the message lists the registered ones and
            says no such file exists), an empty agent list, an agent name not in ``registry=``,
            or a factory that did not return a workflow.
        WorkflowConfigError: the file is malformed (see :func:`batten.load_workflow`).
    """
    if isinstance(spec, str | Path):
        text = str(spec)
        made = build_registered_workflow(text, **kwargs)
        if made is not None:
            return made
        path = Path(text)
        if path.suffix.lower() in _FILE_SUFFIXES or path.is_file():
            # NOTE: imported on first use: batten.config loads PyYAML and jsonschema, which
            # `from batten import create_workflow` must not (test_process checks import time).
            from batten.config import load_workflow

            return load_workflow(path, **kwargs)
        raise unknown_workflow(text)
    if isinstance(spec, Sequence) and not isinstance(spec, bytes):
        agents = list(spec)
        if not agents:
            raise WorkflowDefinitionError("create_workflow needs at least one agent name")
        name = kwargs.pop("name", "-".join(a if isinstance(a, str) else "agent" for a in agents))
        registry = kwargs.pop("registry", None)
        if registry is not None:
            agents = [registry.resolve("agent", a, a) if isinstance(a, str) else a for a in agents]
        return DeterministicWorkflow(agents, name, **kwargs)
    raise WorkflowDefinitionError(
        "create_workflow takes a registered name, a list of agent names or a file path, got "
        f"{type(spec).__name__}"
    )
