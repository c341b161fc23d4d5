"""JAF (``jaf-py``, the Juspay Agent Framework): agents and tools run as batten steps.

- A JAF ``Agent`` runs through JAF's own engine, ``jaf.run(initial_state, config)``, with the
  ``RunConfig`` the user gives (its model provider, agent registry, guardrails, memory...). JAF
  has no default model provider, so the agent comes with its configuration:
  ``JafAgent(agent, run_config)`` (or ``with_config(agent, run_config)``), or a bare ``Agent``
  once a default was registered with ``set_default_run_config(run_config_or_provider)``.
- A JAF tool (an object with a ``schema`` — ``name``, ``description``, ``parameters`` — and
  ``execute(args, context)``, as ``create_function_tool`` and ``@function_tool`` make) runs as a
  ``ToolStep``: the step's args are validated into ``schema.parameters`` and ``execute`` is
  awaited, as JAF's engine does when the model calls the tool.

Importing this module does not import JAF; ``adapt`` imports it the first time it sees one of its
objects.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from batten._core import Nested
from batten.adapters import CALL_METHODS, cannot_run, jsonable
from batten.errors import WorkflowDefinitionError

__all__ = [
    "JafAgent",
    "JafNonRetryableError",
    "JafRunError",
    "adapt",
    "set_default_run_config",
    "with_config",
]

#: Outcome error kinds a retry cannot change (the same input fails the same way).
_PERMANENT_KINDS = frozenset({"AgentNotFound", "InputGuardrailTripwire", "ValidationError"})

#: ``ToolResult`` statuses a retry cannot change.
_PERMANENT_TOOL_STATUSES = frozenset({"validation_error", "permission_denied", "not_found"})

_default_config: Any = None


class JafRunError(Exception):
    """A JAF run (or tool) ended with an error that JAF reports as a value, not an exception.

    JAF's engine returns ``RunResult(outcome=ErrorOutcome(error=...))`` instead of raising; the
    adapter raises this so the step fails and its retry policy applies (retried like any other
    exception). Model-provider exceptions are not wrapped: the provider's own exception
    (e.g. ``openai.RateLimitError``) is re-raised instead.

    Attributes:
        kind: JAF's error kind: the error's ``_tag`` (``"MaxTurnsExceeded"``,
            ``"ModelBehaviorError"``, ``"DecodeError"``, ``"OutputGuardrailTripwire"``...),
            ``"Interrupted"`` for a run waiting for tool approval, or a ``ToolResult``'s status.
        error: JAF's object: the error dataclass, the list of interruptions, or the ``ToolResult``.
        status_code: the HTTP status JAF reports (``NetworkError.status_code``; 429 for its
            ``RateLimitError``), else ``None``.
        retry_after: seconds JAF says to wait (``RateLimitError.retry_after_seconds``), else
            ``None``.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        error: Any = None,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.error = error
        self.status_code = status_code
        self.retry_after = retry_after


class JafNonRetryableError(JafRunError, ValueError):
    """A :class:`JafRunError` that retrying cannot fix (batten does not retry a ``ValueError``):
    ``AgentNotFound``, ``InputGuardrailTripwire``, ``ValidationError``, a ``NetworkError`` JAF
    marks not retryable, a run interrupted for tool approval, or a tool's ``ToolResult`` with
    status ``validation_error``, ``permission_denied`` or ``not_found``."""


def _import(module: str) -> Any:
    """``importlib.import_module(module)``, first telling LiteLLM (imported by JAF) to use its
    bundled model cost map instead of downloading one at import."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return importlib.import_module(module)


def _is_run_config(obj: Any) -> bool:
    types = _import("jaf.core.types")
    return isinstance(obj, types.RunConfig)


def _is_provider(obj: Any) -> bool:
    return not isinstance(obj, type) and callable(getattr(obj, "get_completion", None))


def _as_run_config(config: Any, what: str) -> Any:
    """``config`` as a JAF ``RunConfig``: a ``RunConfig`` as is, a model provider wrapped in one
    (empty agent registry; the agent is added when it runs)."""
    if _is_run_config(config):
        return config
    if _is_provider(config):
        types = _import("jaf.core.types")
        return types.RunConfig(agent_registry={}, model_provider=config)
    raise WorkflowDefinitionError(
        f"{what} must be a JAF RunConfig or a JAF model provider (an object with "
        f"`async get_completion(state, agent, config)`), got {type(config).__name__}"
    )


def set_default_run_config(config: Any) -> None:
    """Registers the JAF run configuration used for bare JAF ``Agent`` objects given to an
    ``AgentStep`` (agents wrapped in :class:`JafAgent` use their own).

    Args:
        config: a ``jaf.RunConfig``, or a JAF model provider (e.g.
            ``jaf.make_litellm_provider(base_url, api_key)``), which is wrapped in
            ``RunConfig(agent_registry={}, model_provider=config)``; ``None`` removes the
            default. The step's agent is added to the registry when it runs.

    Raises:
        WorkflowDefinitionError: ``config`` is neither a ``RunConfig`` nor a model provider.

    The default is read when an ``AgentStep`` is created and when its workflow is compiled, so
    register it before building the workflow.
    """
    global _default_config
    _default_config = None if config is None else _as_run_config(config, "the default run config")


class JafAgent:
    """A JAF ``Agent`` with the ``RunConfig`` it runs with: what an ``AgentStep`` accepts for a
    JAF agent.

    Args:
        agent: a ``jaf.Agent``.
        config: a ``jaf.RunConfig`` (model provider, agent registry for handoffs, max turns,
            guardrails, memory...) or a bare JAF model provider (wrapped in a ``RunConfig``).
        context: the JAF run context (``RunState.context``, given to the agent's instructions
            and tools). ``None`` (default) passes the step's ``batten.WorkflowContext`` (a
            read-only mapping of the workflow variables).

    Raises:
        WorkflowDefinitionError: ``agent`` is not a JAF ``Agent`` or ``config`` is neither a
            ``RunConfig`` nor a model provider.
    """

    __slots__ = ("agent", "config", "context")

    def __init__(self, agent: Any, config: Any, *, context: Any = None) -> None:
        types = _import("jaf.core.types")
        if not isinstance(agent, types.Agent):
            raise WorkflowDefinitionError(
                f"JafAgent expects a jaf.Agent, got {type(agent).__name__} {agent!r:.80}"
            )
        self.agent = agent
        self.config = _as_run_config(config, f"the run config of JAF agent {agent.name!r}")
        self.context = context

    async def arun(self, message: Any, *, context: Any = None) -> Any:
        """Runs the agent on ``message`` through JAF's engine (see :func:`adapt`); this is how
        ``AgentStep`` calls it.

        Args:
            message: the user message (a str; anything else is sent as JSON).
            context: the step's ``batten.WorkflowContext`` (the JAF run context unless one was
                given to the constructor).

        Returns:
            ``Nested(output, metadata={"framework": "jaf", "model"?, "usage"?, "requests"?})``.

        Raises:
            JafRunError: the run ended with an error outcome or was interrupted.
            Exception: the model provider's own exception (e.g. ``openai.RateLimitError``)
                when a model call failed.
        """
        jaf_context = self.context if self.context is not None else context
        return await _run_agent(self.agent, self.config, message, jaf_context)

    def __repr__(self) -> str:
        return f"JafAgent({self.agent.name!r})"


def with_config(agent: Any, config: Any, *, context: Any = None) -> JafAgent:
    """``JafAgent(agent, config, context=context)``: a JAF ``Agent`` bound to the ``RunConfig``
    (or model provider) it runs with, for an ``AgentStep``.

    Raises:
        WorkflowDefinitionError: as :class:`JafAgent`.
    """
    return JafAgent(agent, config, context=context)


class _ObservedProvider:
    """Wraps the run's model provider to see what JAF's engine hides: the exception a model call
    raised (the engine turns it into ``ModelBehaviorError(detail=str(exc))``), token usage and
    the model name each response reports (the engine does not put them in the ``RunResult``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.error: BaseException | None = None
        self.requests = 0
        self.usage: dict[str, int] | None = None
        self.model: str | None = None

    def __getattr__(self, name: str) -> Any:
        # Anything else the engine or a tool reads from the provider is the wrapped one's.
        if name == "_inner":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def _observe(self, usage: Any, model: Any) -> None:
        self.requests += 1
        if isinstance(model, str) and model and self.model is None:
            self.model = model
        if not isinstance(usage, dict):
            return
        found = {
            "input_tokens": usage.get("prompt_tokens", usage.get("input_tokens")),
            "output_tokens": usage.get("completion_tokens", usage.get("output_tokens")),
            "total_tokens": usage.get("total_tokens"),
        }
        if not any(isinstance(v, int) for v in found.values()):
            return
        total = self.usage or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        for key, value in found.items():
            if isinstance(value, int):
                total[key] += value
        if not isinstance(found["total_tokens"], int):
            total["total_tokens"] = total["input_tokens"] + total["output_tokens"]
        self.usage = total

    async def get_completion(self, state: Any, agent: Any, config: Any) -> Any:
        try:
            response = await self._inner.get_completion(state, agent, config)
        except Exception as exc:
            self.error = exc
            raise
        self.error = None
        if isinstance(response, dict):
            self._observe(response.get("usage"), response.get("model"))
        else:
            self._observe(getattr(response, "usage", None), getattr(response, "model", None))
        return response


class _ObservedStreamingProvider(_ObservedProvider):
    """An :class:`_ObservedProvider` for a provider with ``get_completion_stream`` (JAF's engine
    prefers streaming when the provider has it, and falls back to ``get_completion`` when the
    stream fails, so a stream's exception never ends the run and is not recorded)."""

    async def get_completion_stream(
        self, state: Any, agent: Any, config: Any
    ) -> AsyncIterator[Any]:
        usage: Any = None
        model: Any = None
        async for chunk in self._inner.get_completion_stream(state, agent, config):
            raw = getattr(chunk, "raw", None)
            if isinstance(raw, dict):
                usage = usage or raw.get("usage")
                model = model or raw.get("model")
            yield chunk
        self._observe(usage, model)


def _observed(provider: Any) -> _ObservedProvider:
    if callable(getattr(provider, "get_completion_stream", None)):
        return _ObservedStreamingProvider(provider)
    return _ObservedProvider(provider)


def _outcome_error(error: Any) -> JafRunError:
    """The exception for a JAF error value (``ErrorOutcome.error``)."""
    kind = str(getattr(error, "_tag", None) or type(error).__name__)
    try:
        message = _import("jaf.core.errors").JAFErrorHandler.format_error(error)
    except Exception:  # an error kind the formatter does not know
        message = str(error)
    if message.startswith("Unknown error") and getattr(error, "detail", None):
        message = str(error.detail)
    status: int | None = None
    retry_after: float | None = None
    permanent = kind in _PERMANENT_KINDS
    if kind == "RateLimitError":
        status = 429
        retry_after = getattr(error, "retry_after_seconds", None)
    elif kind == "NetworkError":
        status = getattr(error, "status_code", None)
        permanent = getattr(error, "is_retryable", True) is False
    cls = JafNonRetryableError if permanent else JafRunError
    return cls(kind, message, error, status_code=status, retry_after=retry_after)


async def _run_agent(agent: Any, config: Any, message: Any, jaf_context: Any) -> Any:
    """Runs ``agent`` on ``message`` with JAF's ``run(initial_state, config)``; see
    :func:`adapt` for the result and the exceptions."""
    engine = _import("jaf.core.engine")
    types = _import("jaf.core.types")
    provider = _observed(config.model_provider)
    registry = dict(config.agent_registry or {})
    registry[agent.name] = agent
    run_config = replace(config, model_provider=provider, agent_registry=registry)
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    state = types.RunState(
        run_id=types.generate_run_id(),
        trace_id=types.generate_trace_id(),
        messages=[types.Message(role=types.ContentRole.USER, content=text)],
        current_agent_name=agent.name,
        context={} if jaf_context is None else jaf_context,
        turn_count=0,
    )
    result = await engine.run(state, run_config)
    outcome = result.outcome
    status = getattr(outcome, "status", None)
    if status == "error":
        error = outcome.error
        cause = provider.error
        # JAF's engine catches the model provider's exception and returns
        # ModelBehaviorError(detail=str(exc)); re-raise the provider's own exception (an
        # openai.RateLimitError carries the HTTP status and Retry-After the retry policy reads).
        if (
            cause is not None
            and getattr(error, "_tag", None) == "ModelBehaviorError"
            and getattr(error, "detail", None) == str(cause)
        ):
            raise cause
        raise _outcome_error(error)
    if status == "interrupted":
        interruptions = list(getattr(outcome, "interruptions", None) or [])
        names = [
            getattr(getattr(getattr(i, "tool_call", None), "function", None), "name", "?")
            for i in interruptions
        ]
        raise JafNonRetryableError(
            "Interrupted",
            f"the run stopped for approval of tool call(s) {', '.join(names) or '?'}; JAF's "
            "tool approvals (needs_approval) are not supported in a batten step, use batten's "
            "approval steps instead",
            interruptions,
        )
    output = jsonable(getattr(outcome, "output", None))
    metadata: dict[str, Any] = {"framework": "jaf"}
    model_config = getattr(agent, "model_config", None)
    model = config.model_override or getattr(model_config, "name", None) or provider.model
    if model:
        metadata["model"] = str(model)
    if provider.usage is not None:
        metadata["usage"] = dict(provider.usage)
    if provider.requests:
        metadata["requests"] = provider.requests
    return Nested(output, metadata=metadata)


def _is_tool(obj: Any) -> bool:
    """Whether ``obj`` looks like a JAF ``Tool`` (JAF's ``Tool`` is a protocol: a ``schema``
    with ``name`` and ``parameters``, and ``execute(args, context)``)."""
    if isinstance(obj, type):
        return False
    schema = getattr(obj, "schema", None)
    return (
        hasattr(schema, "name")
        and hasattr(schema, "parameters")
        and callable(getattr(obj, "execute", None))
    )


def _tool_output(tool: Any, result: Any) -> Any:
    """A tool's return value as the step's output: a str as is; a ``ToolResult``'s ``data``
    (an error status raises); a multimodal result as ``{"text", "images"}``."""
    if isinstance(result, str):
        return result
    types = _import("jaf.core.types")
    if isinstance(result, types.MultiModalToolResult):
        return {
            "text": result.text,
            "images": [{"data": i.data, "mime_type": i.mime_type} for i in result.images],
        }
    tool_results = _import("jaf.core.tool_results")
    if isinstance(result, tool_results.ToolResult):
        if result.status == "success":
            return jsonable(result.data)
        info = result.error
        kind = str(result.status)
        message = getattr(info, "message", None) or "the tool failed"
        code = getattr(info, "code", None)
        cls = JafNonRetryableError if kind in _PERMANENT_TOOL_STATUSES else JafRunError
        raise cls(
            kind, f"tool {tool.schema.name!r}: {message}" + (f" ({code})" if code else ""), result
        )
    return jsonable(result)


def _tool_callable(tool: Any) -> Callable[..., Any]:
    async def call_jaf_tool(args: Any, *, context: Any = None) -> Any:
        """Validates ``args`` into the tool's ``schema.parameters`` (pydantic) and awaits
        ``tool.execute(args, context)``, within ``schema.timeout`` when set, as JAF's engine
        does for a model's tool call."""
        schema = tool.schema
        params = schema.parameters
        validated = params.model_validate(args) if hasattr(params, "model_validate") else args
        called = tool.execute(validated, {} if context is None else context)
        timeout = getattr(schema, "timeout", None)
        if inspect.isawaitable(called):
            result = await (asyncio.wait_for(called, timeout) if timeout else called)
        else:
            result = called
        return Nested(_tool_output(tool, result), metadata={"framework": "jaf"})

    return call_jaf_tool


def adapt(obj: Any, role: str, step_id: str) -> tuple[Callable[..., Any], bool] | None:
    """``(callable, single_input)`` running a JAF object for a step, or ``None`` for objects
    this adapter does not handle (or when JAF is not installed).

    Args:
        obj: a :class:`JafAgent`, a ``jaf.Agent`` (run with the default registered by
            :func:`set_default_run_config`), or a JAF tool.
        role: ``"agent"`` or ``"tool"``.
        step_id: the step's id, for error messages.

    Returns:
        For an agent, ``async fn(message, *, context=None)``: runs the agent through JAF's own
        engine, ``jaf.run(RunState(...), run_config)`` — the message as the user message, fresh
        run and trace ids (``generate_run_id`` / ``generate_trace_id``), the agent added to the
        run config's registry — and returns ``Nested(output, metadata=...)``: the completed
        outcome's output (a structured ``output_codec`` model as ``model_dump(mode="json")``);
        metadata ``framework`` ``"jaf"``, ``model`` (the config's ``model_override``, else the
        agent's ``model_config.name``, else what the provider reported), ``usage``
        (``input_tokens``, ``output_tokens``, ``total_tokens``, summed over the run) and
        ``requests`` when the provider reports usage in its responses.
        For a tool, ``async fn(args, *, context=None)`` (``single_input`` ``True``): validates
        ``args`` into ``schema.parameters`` and awaits ``execute(args, context)``, returning the
        string, the ``ToolResult``'s data, or the output as JSON-able data.
        The JAF context given to instructions and tools is the step's ``batten.WorkflowContext``
        unless a :class:`JafAgent` was given one.

    Raises:
        WorkflowDefinitionError: a bare ``jaf.Agent`` and no default run config; a JAF agent as
            a tool or a JAF tool as an agent; a JAF object that is neither (a ``RunConfig``, a
            ``Message``, a model provider...).

    The returned callables raise the model provider's own exception when a model call failed
    (JAF's engine turns it into a ``ModelBehaviorError`` value; the adapter re-raises the
    original, so an ``openai.RateLimitError`` is retried and a 400 is not), and
    :class:`JafRunError` / :class:`JafNonRetryableError` for other error outcomes, an
    interrupted run, or a ``ToolResult`` with an error status. Note that JAF's own providers
    (``make_litellm_provider``) already retry 429 and 5xx three times before raising.
    """
    try:
        types = _import("jaf.core.types")
    except ImportError:
        return None
    if isinstance(obj, JafAgent):
        if role != "agent":
            raise _cannot_run_jaf(obj.agent, role, step_id, "a JAF agent is run by an AgentStep")
        return obj.arun, False
    if isinstance(obj, types.Agent):
        if role != "agent":
            raise _cannot_run_jaf(
                obj,
                role,
                step_id,
                "a JAF Agent is run by an AgentStep (wrap it as `JafAgent(agent, run_config)`)",
            )
        config = _default_config
        if config is None:
            raise WorkflowDefinitionError(
                f"step '{step_id}': the JAF Agent {obj.name!r} needs a run configuration (JAF "
                "runs an agent with a RunConfig holding its model provider): give "
                "`batten.adapters.jaf.JafAgent(agent, run_config)` (or `with_config(agent, "
                "run_config)`) as the agent, or register a default first with "
                "`batten.adapters.jaf.set_default_run_config(run_config_or_model_provider)`"
            )
        agent = obj

        async def run_jaf_agent(message: Any, *, context: Any = None) -> Any:
            """Runs the JAF agent with the default run config (see ``adapt``)."""
            return await _run_agent(agent, config, message, context)

        return run_jaf_agent, False
    if _is_tool(obj):
        if role != "tool":
            raise _cannot_run_jaf(
                obj,
                role,
                step_id,
                f"{obj.schema.name!r} is a JAF tool: run it with a ToolStep, or give it to a "
                "jaf.Agent's tools",
            )
        return _tool_callable(obj), True
    if _is_run_config(obj):
        raise _cannot_run_jaf(
            obj, role, step_id, "give the agent with its config: `JafAgent(agent, run_config)`"
        )
    if _is_provider(obj):
        raise _cannot_run_jaf(
            obj,
            role,
            step_id,
            "a model provider is not an agent: give `JafAgent(agent, provider_or_run_config)`",
        )
    if callable(obj) or any(callable(getattr(obj, m, None)) for m in CALL_METHODS):
        return None  # the generic path calls it
    raise _cannot_run_jaf(obj, role, step_id, "it is neither an Agent nor a Tool")


def _cannot_run_jaf(obj: Any, role: str, step_id: str, hint: str) -> Exception:
    return cannot_run("JAF", obj, role, step_id, hint)
