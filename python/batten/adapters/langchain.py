"""LangChain and LangGraph objects as batten steps.

- **Agent** (``AgentStep``): any LangChain ``Runnable`` -- a chat model, an LCEL chain, a
  compiled LangGraph graph (``StateGraph(...).compile()``, ``create_react_agent``,
  ``langchain.agents.create_agent``) -- is run with ``await runnable.ainvoke(input, config)``,
  the Runnable interface's async entry point. The input is built from the step's message:

  - a graph (or chain) whose input schema has a ``"messages"`` key gets
    ``{"messages": [("user", message)]}``, as LangGraph's chat agents expect;
  - a Runnable whose input schema is an object with a single (required) key, e.g. the chain
    ``ChatPromptTemplate.from_template("... {question}") | model``, gets ``{key: message}``;
  - anything else (chat models, string chains) gets the message str itself;
  - a message that is not a str (a ``MapStep`` item, say) is passed unchanged.

  The output is made JSON-checkpointable: a message (``AIMessage``...) becomes its text; a graph
  state with ``"messages"`` becomes the last message's text (or the state's
  ``"structured_response"`` when the graph produced one); ``with_structured_output(...,
  include_raw=True)``'s ``{"raw", "parsed", "parsing_error"}`` becomes ``parsed``; pydantic
  models become ``model_dump(mode="json")``; other values are returned as they are (messages and
  models inside dicts and lists converted the same way).

  The step's metadata gets ``"framework"`` (``"langgraph"`` for a compiled graph, else
  ``"langchain"``), ``"model"`` (the ``model_name``/``model`` of the last AI message's
  ``response_metadata``) and ``"usage"`` (``input_tokens``, ``output_tokens``,
  ``total_tokens`` summed over the ``usage_metadata`` of the run's AI messages, and
  ``requests``: how many AI messages, i.e. model calls, they come from). For a graph, the run's
  AI messages are those after the last human message of the returned state.

  A graph compiled with a checkpointer runs on the thread ``"batten:<idempotency key>:<input
  hash>"``, stable across the step's attempts and a durable run's resume: when an earlier
  attempt stopped mid-run (its saved state has pending nodes), the next attempt resumes it from
  the last checkpoint with ``ainvoke(None, config)``, as LangGraph's durable-execution docs do,
  so nodes that already completed (tools that already ran) do not run again.

- **Tool** (``ToolStep``): a ``BaseTool`` (``@tool`` functions, ``StructuredTool``...) is run
  with ``await tool.ainvoke(args)``; the output is the tool's return value. Any other Runnable
  given as a tool gets the args dict as its input (``await runnable.ainvoke(args)``).

- A ``BaseTool`` given as an **agent** is refused with ``WorkflowDefinitionError`` when the step
  is created: a tool is not an agent (it needs named arguments, not a message), so the error
  says to use ``ToolStep`` or an agent that calls the tool. A LangChain/LangGraph object that is
  neither a Runnable nor a tool and has no call method (a ``Document``, an uncompiled
  ``StateGraph``, a message) is refused the same way.

Every call gets ``config={"run_name": <step id>, "tags": ["batten"], "metadata":
{"batten_workflow_id", "batten_run_id", "batten_step_id", "batten_idempotency_key"}}``, so
LangChain callbacks and tracing (LangSmith, Langfuse) see which workflow step ran.

Errors raised by models and tools propagate unchanged: LangChain and LangGraph re-raise the
provider's exception (an ``openai.RateLimitError`` stays one), so batten's retry policy
classifies it by its HTTP status.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from batten._core import Nested
from batten.adapters import ACCEPTS, CALL_METHODS
from batten.errors import WorkflowDefinitionError

__all__ = ["adapt"]


def adapt(obj: Any, role: str, step_id: str) -> tuple[Callable[..., Any], bool] | None:
    """Adapts a LangChain ``Runnable`` or ``BaseTool`` for a step (see the module docs).

    Args:
        obj: the object given to ``AgentStep`` / ``ToolStep`` (its type comes from
            ``langchain_core``, ``langchain``, ``langgraph`` or ``langchain_community``).
        role: ``"agent"`` or ``"tool"``.
        step_id: the step's id, for error messages and the run's config.

    Returns:
        ``(fn, single_input)``: ``fn`` is an ``async def`` taking the message (agent) or the
        args dict (tool, ``single_input`` True) and a ``context`` keyword, and returning
        ``batten._core.Nested(output, metadata={...})``. ``None`` when LangChain is not installed
        or ``obj`` is some other callable object of these packages, left to batten's generic path.

    Raises:
        WorkflowDefinitionError: ``obj`` is a ``BaseTool`` given as an agent, or a LangChain
            object that cannot be run (neither a Runnable nor a tool, and not callable).
    """
    try:
        from langchain_core.runnables import Runnable
        from langchain_core.tools import BaseTool
    except ImportError:
        return None
    if isinstance(obj, BaseTool):
        if role == "tool":
            return _tool_fn(obj, step_id), True
        raise WorkflowDefinitionError(
            f"step '{step_id}': the agent is a LangChain tool ({_type_name(obj)} "
            f"{getattr(obj, 'name', '')!r}), which takes named arguments, not a message; run it "
            f"with ToolStep('{step_id}', tool, args) or give an agent (e.g. a LangGraph graph) "
            f"that calls it. An agent must be one of: {_accepts()}"
        )
    if isinstance(obj, Runnable):
        if role == "agent":
            return _agent_fn(obj, step_id), False
        return _runnable_tool_fn(obj, step_id), True
    if callable(obj) or any(callable(getattr(obj, name, None)) for name in CALL_METHODS):
        return None  # not a Runnable but callable: batten's generic path runs it
    hint = (
        " (call .compile() on the graph first)" if callable(getattr(obj, "compile", None)) else ""
    )
    raise WorkflowDefinitionError(
        f"step '{step_id}': a {_type_name(obj)} cannot be run as the {role}{hint}; the {role} "
        f"must be one of: {_accepts()}"
    )


def _accepts() -> str:
    return ACCEPTS


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _agent_fn(runnable: Any, step_id: str) -> Callable[..., Any]:
    """The async function running ``runnable`` on a step's message."""
    input_key = _input_key(runnable)
    durable = _has_checkpointer(runnable)

    async def run_langchain_agent(message: Any, context: Any = None) -> Any:
        """Runs the Runnable with ``await runnable.ainvoke(input, config)`` (LangChain's async
        Runnable interface) on ``message`` (str, or any value passed as it is) and returns
        ``Nested(output, metadata={"framework", "model", "usage"})``. Exceptions of the model
        or its tools propagate unchanged."""
        return await _run(runnable, _agent_input(message, input_key), step_id, context, durable)

    return run_langchain_agent


def _tool_fn(tool: Any, step_id: str) -> Callable[..., Any]:
    """The async function running a ``BaseTool`` with a step's args."""

    async def run_langchain_tool(args: Mapping[str, Any], context: Any = None) -> Any:
        """Runs the tool with ``await tool.ainvoke(args, config)`` (``BaseTool``'s async
        interface, which validates ``args`` against its schema) and returns
        ``Nested(<the tool's return value>, metadata={"framework": "langchain"})``. The tool's
        exceptions propagate unchanged."""
        result = await tool.ainvoke(dict(args), config=_config(step_id, context))
        return _nested(_jsonable(result), "langchain", [], {})

    return run_langchain_tool


def _runnable_tool_fn(runnable: Any, step_id: str) -> Callable[..., Any]:
    """The async function running any other Runnable as a tool, with the args dict as input."""
    durable = _has_checkpointer(runnable)

    async def run_langchain_runnable(args: Mapping[str, Any], context: Any = None) -> Any:
        """Runs ``await runnable.ainvoke(args, config)`` with the step's args dict as the input
        and returns ``Nested(output, metadata=...)`` as an agent step does. Exceptions
        propagate unchanged."""
        return await _run(runnable, dict(args), step_id, context, durable)

    return run_langchain_runnable


async def _run(runnable: Any, payload: Any, step_id: str, context: Any, durable: bool) -> Any:
    """``await runnable.ainvoke(payload, config)``, on a checkpointed thread when ``durable``
    (resuming an earlier attempt's unfinished run), as ``Nested(output, metadata=...)``."""
    config = _config(step_id, context)
    if durable:
        config["configurable"] = {"thread_id": _thread_id(context, payload)}
        snapshot = await runnable.aget_state(config)
        if snapshot.next:
            payload = None  # an earlier attempt stopped mid-run: resume from its checkpoint
    result = await runnable.ainvoke(payload, config=config)
    output, messages, extra = _agent_output(result)
    framework = "langgraph" if _is_graph(runnable) else "langchain"
    return _nested(output, framework, messages, extra)


def _is_graph(obj: Any) -> bool:
    try:
        from langgraph.pregel import Pregel
    except ImportError:
        return False
    return isinstance(obj, Pregel)


def _has_checkpointer(obj: Any) -> bool:
    """True for a compiled graph with its own checkpoint saver (not ``None``/``True``/``False``,
    which mean none or the parent graph's)."""
    if not _is_graph(obj):
        return False
    try:
        from langgraph.checkpoint.base import BaseCheckpointSaver
    except ImportError:
        return False
    return isinstance(getattr(obj, "checkpointer", None), BaseCheckpointSaver)


def _input_key(runnable: Any) -> str | None:
    """``"messages"`` when the input schema has that key; the single (required) key of an
    object input schema; else ``None`` (the message is passed as it is)."""
    try:
        schema = runnable.get_input_jsonschema()
    except Exception:  # a schema LangChain cannot build: pass the message as it is
        return None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    properties = schema.get("properties") or {}
    if "messages" in properties:
        return "messages"
    keys = list(schema.get("required") or properties)
    return keys[0] if len(keys) == 1 else None


def _agent_input(message: Any, input_key: str | None) -> Any:
    if not isinstance(message, str) or input_key is None:
        return message
    if input_key == "messages":
        return {"messages": [("user", message)]}
    return {input_key: message}


def _thread_id(context: Any, payload: Any) -> str:
    """A LangGraph thread for this step's run: stable across attempts and resume (the
    idempotency key) and distinct per input (a ``MapStep``'s items share the step's key)."""
    key = getattr(context, "idempotency_key", None) or uuid.uuid4().hex
    digest = hashlib.sha256(repr(payload).encode()).hexdigest()[:16]
    return f"batten:{key}:{digest}"


def _config(step_id: str, context: Any) -> dict[str, Any]:
    """The ``RunnableConfig`` of a step's call: run name, tag and the step's identity."""
    metadata: dict[str, Any] = {"batten_step_id": step_id}
    if context is not None:
        for name in ("workflow_id", "run_id", "idempotency_key"):
            value = getattr(context, name, None)
            if value is not None:
                metadata[f"batten_{name}"] = value
    return {"run_name": step_id, "tags": ["batten"], "metadata": metadata}


def _message_text(message: Any) -> Any:
    """A message's content: the str itself, else the text of its content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    text = message.text  # a property since langchain-core 1.0, a method before
    return text() if callable(text) else text


def _jsonable(value: Any) -> Any:
    """``value`` with messages turned into their text and pydantic models into dicts."""
    from langchain_core.messages import BaseMessage
    from pydantic import BaseModel

    if isinstance(value, BaseMessage):
        return _message_text(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _agent_output(result: Any) -> tuple[Any, list[Any], dict[str, Any]]:
    """``(output, the run's AI messages, extra metadata)`` of a Runnable's result."""
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

    if isinstance(result, BaseMessage):
        return _message_text(result), [result] if isinstance(result, AIMessage) else [], {}
    if isinstance(result, Mapping):
        raw = result.get("raw")
        if "parsed" in result and isinstance(raw, AIMessage):
            # with_structured_output(schema, include_raw=True): {"raw", "parsed", "parsing_error"}
            extra: dict[str, Any] = {}
            if result.get("parsing_error") is not None:
                extra["parsing_error"] = str(result["parsing_error"])
            return _jsonable(result["parsed"]), [raw], extra
        messages = result.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], BaseMessage):
            start = 0
            for i, m in enumerate(messages):
                if isinstance(m, HumanMessage):
                    start = i + 1
            run = [m for m in messages[start:] if isinstance(m, AIMessage)]
            if result.get("structured_response") is not None:
                return _jsonable(result["structured_response"]), run, {}
            return _message_text(messages[-1]), run, {}
    return _jsonable(result), [], {}


def _nested(output: Any, framework: str, messages: list[Any], extra: dict[str, Any]) -> Any:
    """``Nested(output, metadata=...)`` with the framework, model and usage of ``messages``."""
    metadata: dict[str, Any] = {"framework": framework}
    for message in reversed(messages):
        info = getattr(message, "response_metadata", None) or {}
        model = info.get("model_name") or info.get("model")
        if isinstance(model, str) and model:
            metadata["model"] = model
            break
    reported = [m.usage_metadata for m in messages if getattr(m, "usage_metadata", None)]
    if reported:
        metadata["usage"] = {
            name: sum(int(u.get(name) or 0) for u in reported)
            for name in ("input_tokens", "output_tokens", "total_tokens")
        } | {"requests": len(messages)}
    metadata.update(extra)
    return Nested(output, metadata=metadata)
