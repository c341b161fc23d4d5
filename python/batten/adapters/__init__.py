"""Adapters: agents and tools of other frameworks run as ``AgentStep`` / ``ToolStep``.

An object is recognised by the modules of its type (and its bases), so a framework is imported
only when the user already handed batten one of its objects: ``import batten`` never imports
LangChain, the OpenAI Agents SDK, JAF or pydantic-ai. Each framework is an optional extra
(``batten[langchain]``, ``batten[openai-agents]``, ``batten[jaf]``, ``batten[pydantic-ai]``).

An adapter module exports ``adapt(obj, role, step_id)`` returning ``(callable, single_input)``
or ``None`` when it does not handle ``obj``:

- for ``role == "agent"`` the callable is called with the step's message (``fn(message)``);
- for ``role == "tool"`` with the step's arguments: ``fn(args_dict)`` when ``single_input``,
  else ``fn(**args)``;
- either may be ``async def`` and may take a ``context`` keyword (the step's
  ``WorkflowContext``);
- it returns the framework's final output (text or structured), or ``batten._core.Nested(output,
  metadata={...})`` to put ``"framework"``, ``"model"`` and ``"usage"`` (``input_tokens``,
  ``output_tokens``, ``total_tokens``) into the ``StepResult``'s metadata.

Exceptions from the framework propagate unchanged, so the step's retry policy classifies them
(an ``openai.RateLimitError`` raised inside an agent is retried like any HTTP 429).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any

from batten.errors import WorkflowDefinitionError

__all__ = ["ACCEPTS", "CALL_METHODS", "adapt", "cannot_run", "jsonable"]

#: Methods looked up on an agent or tool object that is not a plain function (nor a framework's
#: object with an adapter), in this order: async methods first, so an object offering both
#: (LangChain's ``ainvoke``/``invoke``) runs on the event loop instead of a worker thread.
CALL_METHODS = ("arun", "ainvoke", "run", "invoke", "execute")

#: Top-level package names of a framework's types -> the adapter module for them.
_ADAPTERS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"langchain_core", "langchain", "langgraph", "langchain_community"}),
        "batten.adapters.langchain",
    ),
    (frozenset({"agents"}), "batten.adapters.openai_agents"),
    (frozenset({"jaf"}), "batten.adapters.jaf"),
    (frozenset({"pydantic_ai"}), "batten.adapters.pydantic_ai"),
)

#: What ``AgentStep`` / ``ToolStep`` accept, for error messages.
ACCEPTS = (
    "a sync or async callable; an object with arun/ainvoke/run/invoke/execute; a LangChain or "
    "LangGraph Runnable (chat model, chain, compiled graph) or BaseTool; an OpenAI Agents SDK "
    "Agent or FunctionTool; a JAF Agent or Tool; a pydantic-ai Agent or Tool"
)


def _packages(obj: Any) -> set[str]:
    """Top-level package names of the modules defining ``type(obj)`` and its bases."""
    found: set[str] = set()
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", None) or ""
        found.add(module.partition(".")[0])
    return found


def adapt(obj: Any, role: str, step_id: str) -> tuple[Callable[..., Any], bool] | None:
    """``(callable, single_input)`` running ``obj`` (an agent or tool of a supported
    framework) for a step, or ``None`` when no adapter recognises it (see the module docs).

    Raises:
        WorkflowDefinitionError: a framework object of a kind batten cannot run (the message
            says what is accepted).
    """
    if type(obj) is FunctionType and "schema" not in obj.__dict__:
        # A plain `def` function (the usual tool): its type is defined in `builtins`, which no
        # adapter claims, and without a `schema` attribute it is no JAF tool.
        return None
    if obj is None or isinstance(obj, str | int | float | bool | bytes):
        return None
    packages = _packages(obj)
    for names, module in _ADAPTERS:
        if packages & names:
            adapter = importlib.import_module(module)
            found: tuple[Callable[..., Any], bool] | None = adapter.adapt(obj, role, step_id)
            if found is not None:
                return found
    if _looks_like_jaf_tool(obj):
        # JAF's function tools and users' own tool classes are defined outside the `jaf`
        # package; they are recognised by JAF's tool protocol (a schema and `execute`).
        jaf = importlib.import_module("batten.adapters.jaf")
        tool: tuple[Callable[..., Any], bool] | None = jaf.adapt(obj, role, step_id)
        if tool is not None:
            return tool
    return None


def _looks_like_jaf_tool(obj: Any) -> bool:
    schema = getattr(obj, "schema", None)
    return (
        not isinstance(obj, type)
        and hasattr(schema, "name")
        and hasattr(schema, "parameters")
        and callable(getattr(obj, "execute", None))
    )


def jsonable(value: Any) -> Any:
    """``value`` as JSON-able data for a step's output (so a durable run can checkpoint it):
    pydantic models as ``model_dump(mode="json")``, dataclass instances as ``asdict``, inside
    dicts, lists and tuples too; anything else as is."""
    if isinstance(value, type):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def cannot_run(framework: str, obj: Any, role: str, step_id: str, hint: str) -> Exception:
    """The ``WorkflowDefinitionError`` for a ``framework`` object batten cannot run as the
    ``role`` of step ``step_id``: names the step and the type, gives ``hint`` and lists what
    is accepted."""
    return WorkflowDefinitionError(
        f"step '{step_id}': batten cannot run a {framework} {type(obj).__name__} as the {role} "
        f"({hint}); the {role} must be one of: {ACCEPTS}"
    )
