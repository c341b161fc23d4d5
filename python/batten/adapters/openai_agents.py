"""Adapter for the OpenAI Agents SDK (``pip install batten[openai-agents]``, imported as
``agents``).

- An ``agents.Agent`` runs as an ``AgentStep``: ``await Runner.run(agent, message)``, as the
  SDK's docs do, with the SDK's defaults (``max_turns`` is the SDK's ``DEFAULT_MAX_TURNS``, no
  ``RunConfig``, no run context). The step's output is ``result.final_output``: text, or for an
  agent with an ``output_type`` the structured value made JSON-able (pydantic models through
  ``model_dump(mode="json")``, dataclasses through ``dataclasses.asdict``) so it can be
  checkpointed. Metadata: ``framework`` (``"openai-agents"``), ``agent`` (the name of the agent
  that produced the final output, after handoffs), ``model`` (that agent's model name, when the
  SDK exposes one) and ``usage`` (``requests``, ``input_tokens``, ``output_tokens``,
  ``total_tokens`` from ``result.context_wrapper.usage``, summed over the run's model calls).
- An ``agents.FunctionTool`` (``@function_tool``) runs as a ``ToolStep``: its
  ``on_invoke_tool(ToolContext, json_args)`` is awaited, as the SDK's runner does, with the
  step's arguments serialised to JSON. The output is the tool function's return value (made
  JSON-able as above).

Errors propagate unchanged, so the step's retry policy classifies them: the SDK re-raises a
model's ``openai.RateLimitError`` / ``openai.APIStatusError`` as is (it is retried on 429/5xx,
not on other 4xx). The SDK's own model retries (``ModelSettings.retry``) are opt-in and off by
default, so batten's policy is the only retry layer unless you enable them.

Inside an agent run the SDK turns a failing tool into a message for the model
(``failure_error_function``). A ``ToolStep`` has no model to read it, so the adapter runs a copy
of the tool with that handler removed: the tool's exception fails the step (and is retried or
not by the step's policy). The user's tool object is not modified. A tool's ``timeout_seconds``
is enforced by raising ``TimeoutError``. Tools with ``needs_approval`` or tool guardrails are
refused (those only run inside an agent run; a ``ToolStep`` would bypass them): put a
``HumanApprovalStep`` before the ``ToolStep`` or call the tool through an agent instead.

Tracing: the adapter does not change the SDK's tracing settings. Without ``OPENAI_API_KEY`` the
SDK's exporter skips uploading traces; call ``agents.set_tracing_disabled(True)`` to turn tracing
off (the tests do).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from batten._core import Nested
from batten.adapters import cannot_run, jsonable
from batten.errors import WorkflowDefinitionError

__all__ = ["FRAMEWORK", "adapt"]

#: The ``"framework"`` value in a step's metadata.
FRAMEWORK = "openai-agents"


def adapt(obj: Any, role: str, step_id: str) -> tuple[Callable[..., Any], bool] | None:
    """``(callable, single_input)`` running an OpenAI Agents SDK object for a step.

    Args:
        obj: the object given to the step; handled when it is an ``agents.Agent`` (role
            ``"agent"``) or an ``agents.FunctionTool`` (role ``"tool"``).
        role: ``"agent"`` (``AgentStep``) or ``"tool"`` (``ToolStep``).
        step_id: the step's id, for error messages.

    Returns:
        For an ``Agent``: an ``async def`` taking the message and running
        ``agents.Runner.run(agent, message)``. For a ``FunctionTool``: an ``async def`` taking
        the arguments dict (``single_input`` is ``True``) and an optional ``context`` keyword,
        awaiting the tool's ``on_invoke_tool``. Both return ``batten._core.Nested(output,
        metadata={...})``. ``None`` when the SDK cannot be imported (e.g. a user's own package
        named ``agents``) or ``obj`` is not defined by the SDK, so the generic path handles it.

    Raises:
        WorkflowDefinitionError: ``obj`` is an SDK object that cannot run as ``role`` (an
            ``Agent`` as a tool, a ``FunctionTool`` as an agent, a tool with ``needs_approval``
            or tool guardrails, a hosted tool, a ``Model``, a ``RunConfig``...).
    """
    try:
        import agents as sdk
        from agents.agent import Agent
        from agents.run import Runner
        from agents.tool import FunctionTool
    except ImportError:
        return None

    if isinstance(obj, Agent):
        if role == "agent":
            return _agent_callable(obj, Runner), True
        raise cannot_run(
            "OpenAI Agents SDK",
            obj,
            role,
            step_id,
            "an Agent runs as an AgentStep; for a ToolStep pass agent.as_tool(tool_name=..., "
            "tool_description=...)",
        )
    if isinstance(obj, FunctionTool):
        if role != "tool":
            raise cannot_run(
                "OpenAI Agents SDK",
                obj,
                role,
                step_id,
                "a FunctionTool runs as a ToolStep, or give it to an Agent(tools=[...])",
            )
        _check_tool_runs_standalone(obj, step_id)
        return _tool_callable(obj, step_id), True
    if _defined_by_sdk(obj, sdk):
        raise cannot_run(
            "OpenAI Agents SDK",
            obj,
            role,
            step_id,
            "of the OpenAI Agents SDK only an Agent (as an agent) or a FunctionTool (as a tool) "
            "can run as a step",
        )
    return None


def _defined_by_sdk(obj: Any, sdk: Any) -> bool:
    """Whether ``type(obj)`` is defined in the imported SDK's package directory (and not in a
    user's package also named ``agents``, or in a user's subclass of an SDK class)."""
    sdk_file = getattr(sdk, "__file__", None)
    if not isinstance(sdk_file, str):
        return False
    root = os.path.dirname(os.path.abspath(sdk_file))
    module = sys.modules.get(type(obj).__module__)
    path = getattr(module, "__file__", None)
    return isinstance(path, str) and os.path.abspath(path).startswith(root + os.sep)


def _check_tool_runs_standalone(tool: Any, step_id: str) -> None:
    """Refuses a tool whose safety features only run inside an agent run."""
    bypassed = []
    if getattr(tool, "needs_approval", False) is not False:
        bypassed.append("needs_approval")
    if getattr(tool, "tool_input_guardrails", None) or getattr(
        tool, "tool_output_guardrails", None
    ):
        bypassed.append("tool guardrails")
    if bypassed:
        raise WorkflowDefinitionError(
            f"step '{step_id}': the OpenAI Agents SDK FunctionTool {tool.name!r} has "
            f"{' and '.join(bypassed)}, which the SDK applies only inside an agent run and a "
            "ToolStep would bypass; put a HumanApprovalStep before the ToolStep with a tool "
            "without them, or let an Agent call the tool"
        )


def _agent_callable(agent: Any, runner: Any) -> Callable[..., Any]:
    """The ``async def`` an ``AgentStep`` calls for ``agent``."""

    async def run_openai_agent(message: Any) -> Any:
        """Runs the agent on ``message`` through ``agents.Runner.run(agent, message)``, the
        SDK's async entry point, with the SDK's defaults.

        Args:
            message: the step's message (str; anything else is sent as its JSON text).

        Returns:
            ``Nested(final_output, metadata={"framework", "agent", "model", "usage"})``; the
            final output is text or, for a structured ``output_type``, a JSON-able value.

        Raises:
            Whatever the run raises, unchanged: the model's ``openai`` errors (e.g.
            ``RateLimitError``), the SDK's ``MaxTurnsExceeded``, guardrail tripwires...
        """
        text = message if isinstance(message, str) else json.dumps(message, default=str)
        result = await runner.run(agent, text)
        last = getattr(result, "last_agent", None) or agent
        metadata: dict[str, Any] = {"framework": FRAMEWORK}
        name = getattr(last, "name", None)
        if isinstance(name, str):
            metadata["agent"] = name
        model = _model_name(getattr(last, "model", None))
        if model is not None:
            metadata["model"] = model
        usage = _usage(getattr(getattr(result, "context_wrapper", None), "usage", None))
        if usage:
            metadata["usage"] = usage
        return Nested(jsonable(result.final_output), metadata=metadata)

    return run_openai_agent


def _model_name(model: Any) -> str | None:
    """The model name of ``Agent.model``: the str itself, a ``Model`` object's ``model``
    attribute (the SDK's OpenAI, LiteLLM and any-llm models have one), or for ``None`` the SDK's
    default model name (what ``Runner.run`` then uses without a ``RunConfig``)."""
    if isinstance(model, str):
        return model
    if model is None:
        try:
            from agents.models import get_default_model
        except ImportError:
            return None
        default: Any = get_default_model()
        return default if isinstance(default, str) else None
    name = getattr(model, "model", None)
    return name if isinstance(name, str) else None


def _usage(usage: Any) -> dict[str, int]:
    """``requests`` and token counts of the SDK's ``Usage``, those that are ints."""
    found: dict[str, int] = {}
    for key in ("requests", "input_tokens", "output_tokens", "total_tokens"):
        value = getattr(usage, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            found[key] = value
    return found


def _tool_callable(tool: Any, step_id: str) -> Callable[..., Any]:
    """The ``async def`` a ``ToolStep`` calls for ``tool``."""
    from agents.tool_context import ToolContext
    from agents.usage import Usage

    runnable = _raising_copy(tool)
    timeout = getattr(tool, "timeout_seconds", None)

    async def run_openai_tool(args: dict[str, Any], context: Any = None) -> Any:
        """Invokes the tool as the SDK's runner does: ``await tool.on_invoke_tool(ctx,
        json_args)`` with a ``ToolContext`` (no run context; the call id is the step's
        ``context.idempotency_key``, stable across retries, else ``"batten-<step_id>"``).

        Args:
            args: the step's arguments, sent to the tool as a JSON object.
            context: the step's ``WorkflowContext`` (passed by batten).

        Returns:
            ``Nested(output, metadata={"framework", "tool"})``; ``output`` is the tool
            function's return value, JSON-able.

        Raises:
            The tool's own exception, unchanged (the SDK's failure handler, which would turn it
            into a message for a model, is removed); ``agents.ModelBehaviorError`` for
            arguments the tool's schema rejects; ``TimeoutError`` after the tool's
            ``timeout_seconds``; ``TypeError`` for arguments that are not JSON-serialisable.
        """
        arguments = json.dumps(args)
        call_id = getattr(context, "idempotency_key", None) or f"batten-{step_id}"
        tool_context = ToolContext(
            context=None,
            usage=Usage(),
            tool_name=tool.name,
            tool_call_id=call_id,
            tool_arguments=arguments,
        )
        invocation = runnable.on_invoke_tool(tool_context, arguments)
        if timeout is not None:
            output = await asyncio.wait_for(invocation, timeout)
        else:
            output = await invocation
        return Nested(jsonable(output), metadata={"framework": FRAMEWORK, "tool": tool.name})

    return run_openai_tool


def _raising_copy(tool: Any) -> Any:
    """A copy of ``tool`` whose exceptions propagate instead of becoming a message for the
    model (``set_function_tool_failure_error_function(copy, None)``, the state
    ``@function_tool(failure_error_function=None)`` creates); ``tool`` itself if this SDK
    version cannot do that."""
    try:
        from agents.tool import set_function_tool_failure_error_function
    except ImportError:
        return tool
    runnable = copy.copy(tool)
    set_function_tool_failure_error_function(runnable, None)
    return runnable
