"""LangChain / LangGraph objects as batten steps (batten.adapters.langchain).

The real LangChain Runnable machinery and the real LangGraph agent loop (``StateGraph`` +
``ToolNode`` + ``tools_condition``) run offline on LangChain's own fake chat models
(``langchain_core.language_models.fake_chat_models``) or a small ``BaseChatModel`` subclass
that follows a script (answers, or raises real ``openai`` errors). The fake models report no
token usage of their own, so the scripted ``AIMessage``s carry ``usage_metadata`` and
``response_metadata`` as a provider's do, and the tests check they reach the step's metadata.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import batten
import httpx
import openai
import pytest
from batten import AgentStep, StepStatus, ToolStep, Workflow, WorkflowStatus
from batten.errors import WorkflowDefinitionError
from langchain_core.documents import Document
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
    ParrotFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel, Field

FAST = batten.RetryPolicy(max_attempts=3, initial_interval=0.01)
REQUEST = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")


def usage(i: int, o: int) -> dict[str, int]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


def reply(text: str, i: int = 10, o: int = 5, **kw: Any) -> AIMessage:
    return AIMessage(
        content=text,
        usage_metadata=usage(i, o),
        response_metadata={"model_name": "fake-model-1"},
        **kw,
    )


def call(name: str, args: dict[str, Any], call_id: str = "call_1") -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}],
        usage_metadata=usage(20, 8),
        response_metadata={"model_name": "fake-model-1"},
    )


def rate_limited() -> openai.RateLimitError:
    response = httpx.Response(429, request=REQUEST, headers={"retry-after": "0"})
    return openai.RateLimitError("Rate limit reached", response=response, body=None)


def bad_request() -> openai.BadRequestError:
    response = httpx.Response(400, request=REQUEST)
    return openai.BadRequestError("Invalid 'messages'", response=response, body=None)


class ToolCallingFakeModel(FakeMessagesListChatModel):
    """LangChain's fake list model, made tool-capable: ``bind_tools`` returns the model itself
    (the script already holds the tool calls)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


class ScriptedChatModel(BaseChatModel):
    """Answers with the next scripted ``AIMessage``, or raises it when it is an exception."""

    script: list[Any]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=item)])

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    @property
    def _llm_type(self) -> str:
        return "scripted"


def react_graph(model: Any, tools: list[Any], checkpointer: Any = None) -> Any:
    """The ReAct loop as LangGraph's docs build it: model node, ToolNode, tools_condition."""
    bound = model.bind_tools(tools)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


def adder(log: list[tuple[int, int]]) -> Any:
    @tool
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        log.append((a, b))
        return a + b

    return add


def run_one(step: Any, workflow: Workflow | None = None) -> Any:
    wf = workflow or Workflow("lc")
    wf.add_step(step)
    return asyncio.run(wf.execute())


# 1. a plain agent run


def test_chat_model_answer_with_reported_model_and_usage() -> None:
    model = FakeMessagesListChatModel(responses=[reply("Four.", 12, 3)])
    r = run_one(AgentStep("ask", model, "What is 2+2?")).step("ask")
    assert r.status == StepStatus.COMPLETED
    assert r.output == "Four."
    assert r.metadata == {
        "framework": "langchain",
        "model": "fake-model-1",
        "usage": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15, "requests": 1},
    }


def test_model_reporting_nothing_gives_only_the_framework() -> None:
    model = GenericFakeChatModel(messages=iter(["plain answer"]))
    r = run_one(AgentStep("ask", model, "hi")).step("ask")
    assert r.output == "plain answer"
    assert r.metadata == {"framework": "langchain"}


def test_lcel_chain_with_one_prompt_variable_gets_the_message_in_it() -> None:
    # ParrotFakeChatModel answers with the last message it got: the rendered prompt.
    prompt = ChatPromptTemplate.from_template("Question: {question}")
    chain = prompt | ParrotFakeChatModel() | StrOutputParser()
    r = run_one(AgentStep("ask", chain, "What is 2+2?")).step("ask")
    assert r.status == StepStatus.COMPLETED
    assert r.output == "Question: What is 2+2?"
    assert r.metadata == {"framework": "langchain"}


def test_graph_answer_without_tools_and_upstream_reference() -> None:
    model = ToolCallingFakeModel(responses=[reply("Paris is the capital.", 7, 4)])
    wf = Workflow("lc")
    wf.add_step(ToolStep("country", lambda: "France"))
    wf.add_step(
        AgentStep("ask", react_graph(model, []), "Capital of {country.result}?"),
        depends_on=["country"],
    )
    r = asyncio.run(wf.execute()).step("ask")
    assert r.output == "Paris is the capital."
    assert r.metadata["framework"] == "langgraph"
    assert r.metadata["usage"] == {**usage(7, 4), "requests": 1}


def test_config_carries_the_step_identity() -> None:
    seen: list[RunnableConfig] = []

    def echo(text: str, config: RunnableConfig) -> str:
        seen.append(config)
        return text.upper()

    wf = Workflow("cfg-wf")
    wf.add_step(AgentStep("shout", RunnableLambda(echo), "hello"))
    result = asyncio.run(wf.execute())
    assert result.step("shout").output == "HELLO"
    (config,) = seen
    assert "batten" in config["tags"]
    meta = config["metadata"]
    assert meta["batten_step_id"] == "shout"
    assert meta["batten_workflow_id"] == "cfg-wf"
    assert meta["batten_idempotency_key"].endswith(":shout")


# 2. the agent calls a tool


def test_graph_agent_calls_a_tool_then_answers() -> None:
    log: list[tuple[int, int]] = []
    model = ToolCallingFakeModel(
        responses=[call("add", {"a": 2, "b": 3}), reply("2 + 3 = 5", 30, 6)]
    )
    r = run_one(AgentStep("math", react_graph(model, [adder(log)]), "Add 2 and 3")).step("math")
    assert r.status == StepStatus.COMPLETED
    assert log == [(2, 3)]  # LangGraph's ToolNode really ran the tool
    assert r.output == "2 + 3 = 5"
    assert r.metadata == {
        "framework": "langgraph",
        "model": "fake-model-1",
        "usage": {"input_tokens": 50, "output_tokens": 14, "total_tokens": 64, "requests": 2},
    }


# 3. transient and permanent model errors


def test_rate_limited_chat_model_is_retried() -> None:
    model = ScriptedChatModel(script=[rate_limited(), reply("recovered")])
    r = run_one(AgentStep("ask", model, "hi").with_retry(policy=FAST)).step("ask")
    assert r.status == StepStatus.COMPLETED
    assert r.attempts == 2
    assert r.output == "recovered"
    assert len(model.seen) == 2


def test_rate_limit_inside_a_graph_propagates_and_the_run_is_retried() -> None:
    log: list[tuple[int, int]] = []
    model = ScriptedChatModel(
        script=[
            call("add", {"a": 1, "b": 1}),
            rate_limited(),
            call("add", {"a": 1, "b": 1}),
            reply("2"),
        ]
    )
    graph = react_graph(model, [adder(log)])
    r = run_one(AgentStep("g", graph, "1+1?").with_retry(policy=FAST)).step("g")
    assert (r.status, r.attempts, r.output) == (StepStatus.COMPLETED, 2, "2")
    assert log == [(1, 1), (1, 1)]  # no checkpointer: the second attempt starts over


def test_checkpointed_graph_resumes_where_the_failed_attempt_stopped() -> None:
    log: list[tuple[int, int]] = []
    model = ScriptedChatModel(
        script=[call("add", {"a": 4, "b": 5}), rate_limited(), reply("9", 40, 2)]
    )
    graph = react_graph(model, [adder(log)], checkpointer=InMemorySaver())
    r = run_one(AgentStep("g", graph, "4+5?").with_retry(policy=FAST)).step("g")
    assert (r.status, r.attempts, r.output) == (StepStatus.COMPLETED, 2, "9")
    assert log == [(4, 5)]  # the tool that had run is not run again
    # the resumed model call saw the whole conversation: question, tool call, tool result
    assert [m.type for m in model.seen[-1]] == ["human", "ai", "tool"]
    assert r.metadata["usage"]["requests"] == 2


def test_bad_request_is_not_retried() -> None:
    model = ScriptedChatModel(script=[bad_request(), reply("never")])
    graph = react_graph(model, [])
    r = run_one(AgentStep("g", graph, "hi").with_retry(policy=FAST)).step("g")
    assert r.status == StepStatus.FAILED
    assert r.attempts == 1
    assert r.error_type == "BadRequestError"
    assert isinstance(r.exception, openai.BadRequestError)


# 4. a LangChain tool as a ToolStep


def test_base_tool_as_tool_step() -> None:
    log: list[tuple[int, int]] = []
    r = run_one(ToolStep("sum", adder(log), {"a": 20, "b": 22})).step("sum")
    assert r.status == StepStatus.COMPLETED
    assert r.output == 42
    assert log == [(20, 22)]
    assert r.metadata == {"framework": "langchain"}


def test_tool_with_invalid_args_fails_without_retry() -> None:
    log: list[tuple[int, int]] = []
    step = ToolStep("sum", adder(log), {"a": 1}).with_retry(policy=FAST)
    r = run_one(step).step("sum")
    assert r.status == StepStatus.FAILED
    assert r.attempts == 1  # pydantic's ValidationError is a ValueError: not retried
    assert log == []


class Quote(BaseModel):
    sku: str
    price: float


def test_tool_returning_a_model_gives_a_dict() -> None:
    @tool
    def quote(sku: str) -> Quote:
        """Prices a SKU."""
        return Quote(sku=sku, price=9.5)

    r = run_one(ToolStep("q", quote, {"sku": "A-1"})).step("q")
    assert r.output == {"sku": "A-1", "price": 9.5}


# 5. structured output


class Review(BaseModel):
    verdict: str
    score: int


def test_structured_output_is_a_dict() -> None:
    model = ToolCallingFakeModel(responses=[call("Review", {"verdict": "ship it", "score": 8})])
    r = run_one(AgentStep("review", model.with_structured_output(Review), "Review this")).step(
        "review"
    )
    assert r.status == StepStatus.COMPLETED
    assert r.output == {"verdict": "ship it", "score": 8}


def test_structured_output_with_raw_reports_usage() -> None:
    model = ToolCallingFakeModel(responses=[call("Review", {"verdict": "fix it", "score": 3})])
    agent = model.with_structured_output(Review, include_raw=True)
    r = run_one(AgentStep("review", agent, "Review this")).step("review")
    assert r.output == {"verdict": "fix it", "score": 3}
    assert r.metadata["usage"] == {**usage(20, 8), "requests": 1}
    assert r.metadata["model"] == "fake-model-1"


# 6. objects batten cannot run


def test_document_is_refused_naming_the_step() -> None:
    with pytest.raises(WorkflowDefinitionError, match="step 'doc'") as err:
        AgentStep("doc", Document(page_content="text"), "hi")
    assert "Document" in str(err.value)
    assert "Runnable" in str(err.value)  # says what is accepted


def test_tool_as_agent_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"step 'a'.*ToolStep"):
        AgentStep("a", adder([]), "add things")


def test_uncompiled_graph_is_refused_with_a_hint() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"step 'g'.*compile\(\)"):
        AgentStep("g", StateGraph(MessagesState), "hi")


# durable runs checkpoint the output


def test_graph_agent_in_a_durable_workflow() -> None:
    log: list[tuple[int, int]] = []
    model = ToolCallingFakeModel(responses=[call("add", {"a": 1, "b": 2}), reply("3")])
    wf = Workflow("durable-lc").with_store(batten.MemoryStore())
    wf.add_step(AgentStep("math", react_graph(model, [adder(log)]), "1+2?"))
    result = asyncio.run(wf.execute())
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("math").output == "3"
    assert log == [(1, 2)]


# the example agent other examples build on


def test_example_agent_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = Path(__file__).resolve().parents[2] / "examples" / "agents" / "langchain_agent.py"
    spec = importlib.util.spec_from_file_location("example_langchain_agent", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = run_one(AgentStep("review", module.build_agent(), "Review: x = 1")).step("review")
    assert r.status == StepStatus.COMPLETED
    assert r.output == module.OFFLINE_REVIEW
    assert r.metadata["framework"] == "langgraph"
    assert r.metadata["model"] == "offline-reviewer"
    assert r.metadata["usage"]["total_tokens"] == 66
