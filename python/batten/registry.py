"""Agents and tools by name: the ``@batten.tool`` / ``@batten.agent`` decorators and ``Registry``.

A step given a name instead of an object -- ``ToolStep("validate_order")``,
``AgentStep("fulfillment_agent")``, JarvisCore's ``.step("research", "researcher", ...)`` --
is resolved when its workflow is compiled, before anything runs: first in the registry of the
:class:`~batten.WorkflowEngine` running it (``WorkflowEngine(tools=..., agents=...)``), then in the
process-wide registry the decorators fill. An unresolved name is a
:class:`~batten.WorkflowDefinitionError` naming the step and the names that are registered.

Workflow factories are named here too (:func:`register_workflow_factory`; public as
:mod:`batten.factory`), so that a workflow file can name one as its fallback without the
config layer importing the factory layer above it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, overload

from batten._internal.checks import check_callable
from batten._internal.kinds import WorkflowHolderKind, WorkflowKind
from batten.errors import WorkflowDefinitionError

__all__ = ["Registry", "agent", "global_registry", "tool"]

_factories_lock = threading.Lock()
_factories: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}

F = TypeVar("F")

Kind = Literal["tool", "agent"]


def _name_of(obj: Any) -> str | None:
    for attr in ("name", "agent_id", "role", "__name__"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class Registry:
    """Named tools and agents, looked up by steps that were given a name.

    Args:
        tools: ``{name: tool}`` or an iterable of tools named by their ``name`` /
            ``__name__`` attribute.
        agents: the same for agents (also named by ``agent_id`` or ``role``).
        parent: a registry consulted when a name is not found here (default: none).

    Raises:
        WorkflowDefinitionError: an entry of an iterable has no usable name.
    """

    def __init__(
        self,
        tools: Mapping[str, Any] | Iterable[Any] | None = None,
        agents: Mapping[str, Any] | Iterable[Any] | None = None,
        parent: Registry | None = None,
    ) -> None:
        self._entries: dict[Kind, dict[str, Any]] = {"tool": {}, "agent": {}}
        self.parent = parent
        for kind, given in (("tool", tools), ("agent", agents)):
            if given is None:
                continue
            items = given.items() if isinstance(given, Mapping) else ((None, g) for g in given)
            for name, obj in items:
                self.register(kind, obj, name)  # type: ignore[arg-type]

    def register(self, kind: Kind, obj: Any, name: str | None = None) -> Any:
        """Registers ``obj`` as a ``"tool"`` or ``"agent"`` under ``name`` (default: its
        ``name`` / ``agent_id`` / ``role`` / ``__name__``); a later registration of the same name
        replaces the earlier one. Returns ``obj``.

        Raises:
            WorkflowDefinitionError: no name given and ``obj`` has none, or ``kind`` is neither.
        """
        if kind not in self._entries:
            raise WorkflowDefinitionError(f"registry kind must be 'tool' or 'agent', got {kind!r}")
        key = name if name is not None else _name_of(obj)
        if not isinstance(key, str) or not key:
            raise WorkflowDefinitionError(
                f"cannot register {obj!r:.60} as a {kind}: pass name= (a non-empty str)"
            )
        self._entries[kind][key] = obj
        return obj

    def get(self, kind: Kind, name: str) -> Any | None:
        """The ``kind`` registered as ``name`` here or in a parent, or ``None``."""
        reg: Registry | None = self
        while reg is not None:
            found = reg._entries[kind].get(name)
            if found is not None:
                return found
            reg = reg.parent
        return None

    def names(self, kind: Kind) -> list[str]:
        """Every name of ``kind`` visible from this registry, sorted."""
        seen: set[str] = set()
        reg: Registry | None = self
        while reg is not None:
            seen.update(reg._entries[kind])
            reg = reg.parent
        return sorted(seen)

    def resolve(self, kind: Kind, name: str, step_id: str) -> Any:
        """The ``kind`` named ``name``, for step ``step_id``.

        Raises:
            WorkflowDefinitionError: nothing of that kind is registered under ``name``; the
                message names the step and lists the registered names.
        """
        found = self.get(kind, name)
        if found is None:
            known = ", ".join(self.names(kind)) or "none"
            raise WorkflowDefinitionError(
                f"step '{step_id}': no {kind} named '{name}' is registered (registered {kind}s: "
                f"{known}); register it with @batten.{kind} or WorkflowEngine({kind}s=...)"
            )
        return found

    def __repr__(self) -> str:
        return f"Registry(tools={self.names('tool')}, agents={self.names('agent')})"


_GLOBAL = Registry()


def global_registry() -> Registry:
    """The process-wide registry that ``@batten.tool`` and ``@batten.agent`` fill."""
    return _GLOBAL


def _decorator(kind: Kind, obj: Any, name: str | None) -> Any:
    if obj is None:
        return lambda target: _GLOBAL.register(kind, target, name)
    return _GLOBAL.register(kind, obj, name)


@overload
def tool(obj: F, /) -> F: ...
@overload
def tool(obj: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...
def tool(obj: Any = None, /, *, name: str | None = None) -> Any:
    """Registers a tool by name in the process-wide registry: ``@batten.tool`` or
    ``@batten.tool(name="validate_order")``. The name defaults to the object's ``name`` or
    ``__name__``. Returns the object unchanged, so it stays an ordinary function.

    Raises:
        WorkflowDefinitionError: no name given and the object has none.
    """
    return _decorator("tool", obj, name)


@overload
def agent(obj: F, /) -> F: ...
@overload
def agent(obj: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...
def agent(obj: Any = None, /, *, name: str | None = None) -> Any:
    """Registers an agent by name in the process-wide registry: ``@batten.agent`` or
    ``@batten.agent(name="researcher")`` (JarvisCore's agent roles are such names). The name
    defaults to the object's ``name``, ``agent_id``, ``role`` or ``__name__``. Returns the object
    unchanged.

    Raises:
        WorkflowDefinitionError: no name given and the object has none.
    """
    return _decorator("agent", obj, name)


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
    with _factories_lock:
        _factories[name] = (factory, dict(metadata or {}))


def list_workflow_factories() -> dict[str, dict[str, Any]]:
    """``{name: metadata}`` of every registered workflow factory, sorted by name."""
    with _factories_lock:
        return {name: dict(meta) for name, (_f, meta) in sorted(_factories.items())}


def has_workflow_factory(name: str) -> bool:
    """Whether a workflow factory is registered as ``name``."""
    with _factories_lock:
        return name in _factories


def build_registered_workflow(name: str, /, **kwargs: Any) -> Any:
    """The workflow that the factory registered as ``name`` makes when called with
    ``kwargs``; ``None`` when no factory has that name.

    Raises:
        WorkflowDefinitionError: the factory returned something that is not a workflow.
    """
    with _factories_lock:
        entry = _factories.get(name)
    if entry is None:
        return None
    made = entry[0](**kwargs)
    if not isinstance(made, WorkflowKind | WorkflowHolderKind):
        raise WorkflowDefinitionError(
            f"workflow factory '{name}' returned {type(made).__name__}, not a workflow"
        )
    return made


def unknown_workflow(name: str) -> WorkflowDefinitionError:
    """The error for a name that no workflow factory and no file has."""
    with _factories_lock:
        known = ", ".join(sorted(_factories)) or "none"
    return WorkflowDefinitionError(
        f"no workflow factory named '{name}' is registered (registered: {known}) and no "
        "such workflow file exists"
    )
