"""pydantic-ai agents and tools run as batten steps.

pydantic-ai's real agent loop is driven offline by its own test models: ``TestModel`` (answers,
or calls every tool with generated arguments) and ``FunctionModel`` (a scripted function decides
each model response, or raises). No network, no API keys.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import batten
import httpx
import openai
import pytest
from batten import AgentStep, StepStatus, ToolStep, Workflow, WorkflowStatus
from batten.adapters.pydantic_ai import _prompt, adapt
from batten.errors import WorkflowDefinitionError
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext, Tool
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import (
    ImageUrl,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

FAST = batten.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0.0)
OPENAI_URL = "https://api.openai.com/v1/chat/completions"


def run(wf: Workflow) -> Any:
    return asyncio.run(wf.execute())


def one_step(step: Any, wf_id: str = "wf") -> Any:
    wf = Workflow(wf_id)
    wf.add_step(step)
    return run(wf)


def last_prompt(messages: list[ModelMessage]) -> str:
    """The text of the user prompt in the conversation so far."""
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    raise AssertionError("no user prompt")


class City(BaseModel):
    name: str
    population: int


# -- 1. a plain agent run ---------------------------------------------------------------------


def test_adapter_returns_an_async_function() -> None:
    fn, single = adapt(Agent(TestModel()), "agent", "ask") or (None, None)
    assert inspect.iscoroutinefunction(fn)
    assert single is False
    tool_fn, tool_single = adapt(Tool(lambda: 1), "tool", "t") or (None, None)
    assert inspect.iscoroutinefunction(tool_fn)
    assert tool_single is True


def test_agent_run_output_and_metadata() -> None:
    agent = Agent(TestModel(custom_output_text="four"))
    result = one_step(AgentStep("ask", agent, "What is 2+2?"))
    step = result.step("ask")
    assert step.status is StepStatus.COMPLETED
    assert step.output == "four"
    assert result.final_output == "four"
    assert step.metadata["framework"] == "pydantic-ai"
    assert step.metadata["model"] == "test"
    usage = step.metadata["usage"]
    assert usage["requests"] == 1
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_agent_gets_the_rendered_message() -> None:
    seen: list[str] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(last_prompt(messages))
        return ModelResponse(parts=[TextPart("Bonjour")])

    wf = Workflow("wf")
    wf.add_step(ToolStep("word", lambda: "hello"))
    wf.add_step(
        AgentStep("translate", Agent(FunctionModel(answer)), "Translate: {word.result}"),
        depends_on=["word"],
    )
    result = run(wf)
    assert result.status is WorkflowStatus.COMPLETED
    assert seen == ["Translate: hello"]
    step = result.step("translate")
    assert step.output == "Bonjour"
    assert step.metadata["model"] == "function:answer:"


# -- 2. the agent calls a tool ----------------------------------------------------------------


def test_agent_calls_a_tool_scripted_with_function_model() -> None:
    calls: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        calls.append((a, b))
        return a + b

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert [t.name for t in info.function_tools] == ["add"]
        for part in messages[-1].parts:
            if isinstance(part, ToolReturnPart):
                return ModelResponse(parts=[TextPart(f"The sum is {part.content}")])
        return ModelResponse(parts=[ToolCallPart("add", {"a": 2, "b": 3})])

    agent = Agent(FunctionModel(script), tools=[add])
    step = one_step(AgentStep("ask", agent, "Add 2 and 3")).step("ask")
    assert step.status is StepStatus.COMPLETED
    assert calls == [(2, 3)]
    assert step.output == "The sum is 5"
    assert step.metadata["usage"]["requests"] == 2


def test_agent_calls_a_tool_with_test_model() -> None:
    calls: list[str] = []
    agent = Agent(TestModel(call_tools=["lookup"]))

    @agent.tool_plain
    def lookup(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return "sunny"

    step = one_step(AgentStep("ask", agent, "Weather?")).step("ask")
    assert step.status is StepStatus.COMPLETED
    assert len(calls) == 1
    # TestModel answers with the tools' results as JSON.
    assert step.output == '{"lookup":"sunny"}'
    assert step.metadata["usage"]["requests"] == 2


# -- 3. transient and permanent model failures ------------------------------------------------


def failing_once(error: BaseException) -> tuple[FunctionModel, list[int]]:
    """A model that raises ``error`` on its first request, then answers "recovered"."""
    calls: list[int] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return ModelResponse(parts=[TextPart("recovered")])

    return FunctionModel(script), calls


@pytest.mark.parametrize(
    "error",
    [
        ModelHTTPError(status_code=429, model_name="gpt-test", body={"error": "rate limited"}),
        ModelHTTPError(status_code=503, model_name="gpt-test", body="overloaded"),
        openai.RateLimitError(
            "rate limited",
            response=httpx.Response(429, request=httpx.Request("POST", OPENAI_URL)),
            body=None,
        ),
        httpx.ConnectError("connection refused"),
    ],
    ids=["ModelHTTPError-429", "ModelHTTPError-503", "openai-RateLimitError", "ConnectError"],
)
def test_transient_model_error_is_retried(error: BaseException) -> None:
    model, calls = failing_once(error)
    step = AgentStep("ask", Agent(model), "hi").with_retry(policy=FAST)
    result = one_step(step).step("ask")
    assert result.status is StepStatus.COMPLETED
    assert result.attempts == 2
    assert result.output == "recovered"
    assert len(calls) == 2


@pytest.mark.parametrize(
    "error",
    [
        ModelHTTPError(status_code=400, model_name="gpt-test", body="bad request"),
        openai.BadRequestError(
            "bad request",
            response=httpx.Response(400, request=httpx.Request("POST", OPENAI_URL)),
            body=None,
        ),
    ],
    ids=["ModelHTTPError-400", "openai-BadRequestError"],
)
def test_client_error_is_not_retried(error: BaseException) -> None:
    model, calls = failing_once(error)
    step = AgentStep("ask", Agent(model), "hi").with_retry(policy=FAST)
    result = one_step(step)
    assert result.status is WorkflowStatus.FAILED
    step_result = result.step("ask")
    assert step_result.status is StepStatus.FAILED
    assert step_result.attempts == 1
    assert step_result.error_type == type(error).__name__
    assert len(calls) == 1


# -- 4. a pydantic-ai Tool as a ToolStep ------------------------------------------------------


def test_tool_runs_as_tool_step_with_validated_args() -> None:
    calls: list[tuple[int, int]] = []

    def multiply(a: int, b: int) -> int:
        """Multiply two numbers."""
        calls.append((a, b))
        return a * b

    # "4" is coerced to 4 by the tool's schema, as a model's JSON arguments would be.
    step = one_step(ToolStep("t", Tool(multiply), {"a": "4", "b": 5})).step("t")
    assert step.status is StepStatus.COMPLETED
    assert step.output == 20
    assert calls == [(4, 5)]
    assert step.metadata == {"framework": "pydantic-ai", "tool": "multiply"}


def test_async_tool_with_model_argument_and_upstream_args() -> None:
    async def describe(city: City, unit: str = "people") -> City:
        await asyncio.sleep(0)
        return City(name=city.name.upper(), population=city.population)

    wf = Workflow("wf")
    wf.add_step(ToolStep("src", lambda: {"name": "Paris", "population": 2}))
    wf.add_step(
        ToolStep("t", Tool(describe, name="describe_city"), {"city": "{src.result}"}),
        depends_on=["src"],
    )
    result = run(wf)
    step = result.step("t")
    assert step.status is StepStatus.COMPLETED, step.error
    assert step.output == {"name": "PARIS", "population": 2}
    assert step.metadata["tool"] == "describe_city"


def test_tool_with_bad_args_fails_without_retry() -> None:
    def square(x: int) -> int:
        return x * x

    step = ToolStep("t", Tool(square), {"x": "not a number"}).with_retry(policy=FAST)
    result = one_step(step).step("t")
    assert result.status is StepStatus.FAILED
    assert result.attempts == 1
    assert result.error_type == "ValidationError"


def test_tool_taking_run_context_is_refused() -> None:
    def with_ctx(ctx: RunContext[None], x: int) -> int:
        return x

    with pytest.raises(WorkflowDefinitionError, match=r"step 't'.*RunContext.*plain functions"):
        ToolStep("t", Tool(with_ctx), {"x": 1})


# -- 5. structured output ---------------------------------------------------------------------


def test_structured_output_is_a_dict() -> None:
    agent = Agent(
        TestModel(custom_output_args={"name": "Paris", "population": 2_100_000}),
        output_type=City,
    )
    step = one_step(AgentStep("ask", agent, "Largest city in France?")).step("ask")
    assert step.status is StepStatus.COMPLETED
    assert step.output == {"name": "Paris", "population": 2_100_000}
    assert step.metadata["framework"] == "pydantic-ai"


# -- 6. pydantic-ai objects batten cannot run ---------------------------------------------------


@pytest.mark.parametrize(
    ("make_step", "needle"),
    [
        (lambda: AgentStep("ask", TestModel(), "hi"), "TestModel as the agent"),
        (lambda: AgentStep("ask", Tool(lambda: 1), "hi"), "Tool runs as a ToolStep"),
        (lambda: ToolStep("ask", Agent(TestModel()), {}), "Agent runs as an AgentStep"),
    ],
    ids=["model-as-agent", "tool-as-agent", "agent-as-tool"],
)
def test_unrunnable_objects_are_refused(make_step: Any, needle: str) -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        make_step()
    message = str(info.value)
    assert "step 'ask'" in message
    assert needle in message
    assert "must be one of" in message


# -- durable: the output is checkpointed as JSON ----------------------------------------------


def test_durable_workflow_checkpoints_agent_output() -> None:
    seen: list[str] = []

    def describe(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(last_prompt(messages))
        return ModelResponse(parts=[TextPart("a city in France")])

    city_agent = Agent(
        TestModel(custom_output_args={"name": "Lyon", "population": 500_000}),
        output_type=City,
    )
    wf = Workflow("durable").with_store(batten.MemoryStore())
    wf.add_step(AgentStep("ask", city_agent, "A city?"))
    # A message that is exactly one reference receives the upstream dict itself; pydantic-ai
    # refuses a dict prompt, so the adapter sends it as JSON.
    wf.add_step(AgentStep("chat", Agent(FunctionModel(describe)), "{ask.result}"))
    result = run(wf)
    assert result.status is WorkflowStatus.COMPLETED, result.error
    assert result.step("ask").output == {"name": "Lyon", "population": 500_000}
    assert result.step("chat").output == "a city in France"
    assert seen == ['{"name":"Lyon","population":500000}']


def test_non_text_messages_become_json_prompts() -> None:
    image = ImageUrl(url="https://example.com/cat.png")
    assert _prompt("hi") == "hi"
    assert _prompt(image) == [image]
    assert _prompt(["look:", image]) == ["look:", image]
    assert _prompt(7) == "7"
    assert _prompt({"a": [1, "x"]}) == '{"a":[1,"x"]}'
