"""pydantic-ai adapter: a ``pydantic_ai.Agent`` as an ``AgentStep``, a ``pydantic_ai.Tool`` as a
``ToolStep``.

An agent is run with ``await agent.run(message)``, as pydantic-ai's docs do; the step's output is
the run's ``result.output`` (a structured output, e.g. with ``output_type=SomeModel``, as
JSON-compatible data: a pydantic model becomes its ``model_dump(mode="json")``), and its metadata
holds ``"framework": "pydantic-ai"``, the model name of the last response and the run's usage
(``input_tokens``, ``output_tokens``, ``total_tokens``, ``requests``).

The agent gets no ``deps``: an agent whose tools read ``ctx.deps`` needs a wrapper function that
calls ``agent.run(message, deps=...)`` itself (a plain callable is an agent too).

A ``Tool`` runs its function directly, without a model: the step's arguments are validated
against the tool's schema first (so they are coerced as the model's would be), then the function
is called (a sync function in a worker thread, as the agent loop does). Only tools whose function
is a plain one are accepted: a tool that takes a ``RunContext`` needs an agent run to get one.

Exceptions propagate unchanged, so batten's retry policy classifies them: pydantic-ai's own
``ModelHTTPError`` carries the provider's ``status_code`` (and ``retry_after``), and an exception
raised by a model or a tool (``openai.RateLimitError``, ``httpx.ConnectError``, ...) reaches batten
as it was raised, so nothing needs unwrapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batten._core import Nested
from batten.adapters import ACCEPTS
from batten.errors import WorkflowDefinitionError

__all__ = ["adapt"]

_FRAMEWORK = "pydantic-ai"


def adapt(obj: Any, role: str, step_id: str) -> tuple[Callable[..., Any], bool] | None:
    """``(callable, single_input)`` running a pydantic-ai object for a step.

    Args:
        obj: the step's agent or tool; handled when it is a ``pydantic_ai.agent.AbstractAgent``
            (``Agent`` and its wrappers) for ``role == "agent"`` or a ``pydantic_ai.Tool`` for
            ``role == "tool"``.
        role: ``"agent"`` or ``"tool"``.
        step_id: the step's id, for error messages.

    Returns:
        For an agent, ``(async fn(message), False)``: ``fn`` runs ``await agent.run(message)``
        and returns ``Nested(output, metadata={"framework", "model", "usage"})``. For a tool,
        ``(async fn(args), True)``: ``fn`` validates ``args`` against the tool's schema, calls
        its function and returns ``Nested(output, metadata={"framework", "tool"})``. ``None``
        when pydantic-ai is not installed.

    Raises:
        WorkflowDefinitionError: any other pydantic-ai object (an agent given as a tool, a tool
            given as an agent, a model, a toolset, ...), or a tool whose function takes a
            ``RunContext``; the message names the step and what is accepted.
    """
    try:
        from pydantic_ai import Tool
        from pydantic_ai.agent import AbstractAgent
    except ImportError:
        return None

    if role == "agent" and isinstance(obj, AbstractAgent):
        return _agent_runner(obj), False
    if role == "tool" and isinstance(obj, Tool):
        if obj.takes_ctx:
            raise WorkflowDefinitionError(
                f"step '{step_id}': the pydantic-ai Tool {obj.name!r} takes a RunContext, which "
                "only an agent run provides; only tools of plain functions can run as a ToolStep "
                "(give it to an Agent run by an AgentStep, or wrap a function without ctx)"
            )
        return _tool_runner(obj), True

    hint = ""
    if isinstance(obj, AbstractAgent):
        hint = " (a pydantic-ai Agent runs as an AgentStep, not a ToolStep)"
    elif isinstance(obj, Tool):
        hint = " (a pydantic-ai Tool runs as a ToolStep, not an AgentStep)"
    raise WorkflowDefinitionError(
        f"step '{step_id}': batten cannot run a pydantic-ai {type(obj).__name__} as the {role}"
        f"{hint}; the {role} must be one of: {ACCEPTS}"
    )


def _agent_runner(agent: Any) -> Callable[..., Any]:
    """An ``async`` function running ``agent`` on a message (see :func:`adapt`)."""

    async def run_pydantic_ai_agent(message: Any) -> Any:
        """Runs the pydantic-ai agent on ``message`` through ``await agent.run(message)`` and
        returns ``Nested(output, metadata=...)``. A str, or pydantic-ai user content (an
        ``ImageUrl``, ``BinaryContent``, ... or a list of them and str), is the prompt as it is;
        other data (a dict an upstream step returned, a number) is sent as JSON, as pydantic-ai
        asks (it refuses a dict prompt).

        Raises:
            Exception: whatever the run raises, unchanged (e.g. ``ModelHTTPError``).
        """
        result = await agent.run(_prompt(message))
        metadata: dict[str, Any] = {"framework": _FRAMEWORK}
        model = _model_name(result, agent)
        if model is not None:
            metadata["model"] = model
        usage = _usage(result)
        if usage is not None:
            metadata["usage"] = usage
        return Nested(_jsonable(result.output), metadata=metadata)

    return run_pydantic_ai_agent


def _tool_runner(tool: Any) -> Callable[..., Any]:
    """An ``async`` function calling ``tool``'s function with a step's arguments (see
    :func:`adapt`)."""

    async def run_pydantic_ai_tool(args: dict[str, Any]) -> Any:
        """Validates ``args`` (dict) with the tool's schema, as the agent loop validates a model's
        tool call, then calls the tool's function (a sync one in a worker thread) and returns
        ``Nested(output, metadata={"framework", "tool"})``; a ``ToolReturn`` gives its
        ``return_value``.

        Raises:
            pydantic.ValidationError: ``args`` do not match the tool's parameters (not retried).
            Exception: whatever the function raises, unchanged.
        """
        from pydantic_ai.messages import ToolReturn

        schema = tool.function_schema
        validated = schema.validator.validate_python(args)
        # `FunctionSchema.call` is how pydantic-ai's tool manager calls a function (positional
        # parameters, sync functions in a thread); the RunContext is only passed to tools that
        # take one, which `adapt` refuses.
        output = await schema.call(validated, None)
        if isinstance(output, ToolReturn):
            output = output.return_value
        return Nested(_jsonable(output), metadata={"framework": _FRAMEWORK, "tool": tool.name})

    return run_pydantic_ai_tool


def _prompt(message: Any) -> Any:
    """``message`` as a pydantic-ai user prompt: a str, ``None`` or a list of str and pydantic-ai
    user content as it is; one content object in a list; anything else as JSON text."""
    if message is None or isinstance(message, str):
        return message
    if _is_user_content(message):
        return [message]
    if isinstance(message, list | tuple) and all(
        isinstance(item, str) or _is_user_content(item) for item in message
    ):
        return list(message)
    from pydantic_core import to_json

    return to_json(message, fallback=str).decode()


def _is_user_content(item: Any) -> bool:
    """Whether ``item`` is one of pydantic-ai's own message content objects."""
    return type(item).__module__.startswith("pydantic_ai.")


def _model_name(result: Any, agent: Any) -> str | None:
    """The model name of the run's last response, else of the agent's model (a ``Model`` or a
    ``"provider:name"`` string), else ``None``."""
    response = getattr(result, "response", None)
    name = getattr(response, "model_name", None)
    if isinstance(name, str) and name:
        return name
    model = getattr(agent, "model", None)
    if isinstance(model, str):
        return model
    name = getattr(model, "model_name", None)
    return name if isinstance(name, str) and name else None


def _usage(result: Any) -> dict[str, int] | None:
    """The run's token usage as ``{"input_tokens", "output_tokens", "total_tokens",
    "requests"}``. ``result.usage`` is a property in pydantic-ai 2 and a method in 1."""
    usage = getattr(result, "usage", None)
    if usage is None:
        return None
    if callable(usage) and not hasattr(usage, "input_tokens"):
        usage = usage()
    fields = ("input_tokens", "output_tokens", "total_tokens", "requests")
    found = {f: getattr(usage, f, None) for f in fields}
    report = {f: v for f, v in found.items() if isinstance(v, int) and not isinstance(v, bool)}
    return report or None


def _jsonable(output: Any) -> Any:
    """``output`` as JSON-compatible data, so a durable workflow can checkpoint it: pydantic
    models, dataclasses, datetimes, ... are converted as pydantic serializes them to JSON
    (``model_dump(mode="json")``); anything pydantic cannot serialize is returned as it is."""
    if output is None or isinstance(output, str | int | float | bool):
        return output
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(output)
    except PydanticSerializationError:
        return output
