"""OpenAI Agents SDK objects run as batten steps (``batten.adapters.openai_agents``).

The SDK's real agent loop (``Runner.run``) runs offline against the SDK's own test double,
``agents.testing.ScriptedModel`` (a ``Model`` returning scripted ``ModelResponse``s or raising
scripted errors). Tracing is disabled for the module (``agents.set_tracing_disabled(True)``),
so nothing is exported.
"""

from __future__ import annotations

import asyncio
from typing import Any

import batten
import httpx
import openai
import pytest
from batten import AgentStep, StepStatus, ToolStep, Workflow, WorkflowStatus
from pydantic import BaseModel

agents = pytest.importorskip("agents")
from agents import Agent, ModelSettings, RunConfig, Usage, function_tool  # noqa: E402
from agents.testing import (  # noqa: E402
    ModelStep,
    ScriptedModel,
    assistant_message,
    function_call,
)
from agents.tool_context import ToolContext  # noqa: E402

FAST = batten.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)


@pytest.fixture(autouse=True, scope="module")
def _no_tracing() -> None:
    # The SDK's documented switch; the adapter itself leaves tracing settings alone.
    agents.set_tracing_disabled(True)


def run(wf: Workflow) -> Any:
    return asyncio.run(wf.execute())


def usage(requests: int, inp: int, out: int) -> Usage:
    return Usage(requests=requests, input_tokens=inp, output_tokens=out, total_tokens=inp + out)


def answer(text: str, inp: int = 10, out: int = 2) -> ModelStep:
    return ModelStep(output=[assistant_message(text)], usage=usage(1, inp, out))


def http_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "https://api.openai.com/v1/responses")
    return cls(f"HTTP {status}", response=httpx.Response(status, request=request), body=None)


class NamedScriptedModel(ScriptedModel):
    """A scripted model that reports a model name, as the SDK's OpenAI models do."""

    model = "scripted-mini"


# 1. a plain agent run -----------------------------------------------------------------------------


def test_agent_runs_through_runner_and_reports_usage() -> None:
    model = ScriptedModel([answer("2 + 2 = 4", inp=12, out=5)])
    agent = Agent(name="math", instructions="Answer briefly.", model=model)
    wf = Workflow("plain")
    wf.add_step(AgentStep("ask", agent, "What is 2+2?"))

    result = run(wf)

    step = result.step("ask")
    assert step.status == StepStatus.COMPLETED
    assert step.output == "2 + 2 = 4"
    assert result.final_output == "2 + 2 = 4"
    assert step.metadata["framework"] == "openai-agents"
    assert step.metadata["agent"] == "math"
    assert step.metadata["usage"] == {
        "requests": 1,
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
    }
    assert "model" not in step.metadata  # ScriptedModel has no model name
    call = model.first_call
    assert call is not None and call.system_instructions == "Answer briefly."
    assert call.input[0]["content"] == "What is 2+2?"
    model.assert_complete()


def test_model_name_of_a_model_object_and_templated_message() -> None:
    first = ScriptedModel([answer("Paris")])
    second = NamedScriptedModel([answer("About 2.1 million people.")])
    wf = Workflow("named")
    wf.add_step(AgentStep("capital", Agent(name="geo", model=first), "Capital of France?"))
    wf.add_step(
        AgentStep("size", Agent(name="stats", model=second), "Population of {capital.result}?"),
        depends_on=["capital"],
    )

    result = run(wf)

    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("size").metadata["model"] == "scripted-mini"
    call = second.first_call
    assert call is not None and call.input[0]["content"] == "Population of Paris?"


# 2. the agent calls a tool ------------------------------------------------------------------------


def test_agent_calls_a_function_tool_then_answers() -> None:
    looked_up: list[str] = []

    @function_tool
    def weather(city: str) -> str:
        """Current weather in a city."""
        looked_up.append(city)
        return f"sunny, 21 C in {city}"

    model = ScriptedModel(
        [
            ModelStep(
                output=[function_call("weather", {"city": "Paris"}, call_id="call-1")],
                usage=usage(1, 20, 4),
            ),
            answer("It is sunny in Paris (21 C).", inp=30, out=8),
        ]
    )
    agent = Agent(name="forecaster", model=model, tools=[weather])
    wf = Workflow("tool-loop")
    wf.add_step(AgentStep("forecast", agent, "Weather in Paris?"))

    result = run(wf)

    step = result.step("forecast")
    assert step.status == StepStatus.COMPLETED
    assert looked_up == ["Paris"]  # the SDK really executed the tool
    assert step.output == "It is sunny in Paris (21 C)."
    assert step.metadata["usage"] == {
        "requests": 2,
        "input_tokens": 50,
        "output_tokens": 12,
        "total_tokens": 62,
    }
    # The second model call saw the tool's output.
    outputs = [
        item
        for item in model.calls[1].input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    assert [o["output"] for o in outputs] == ["sunny, 21 C in Paris"]
    model.assert_complete()


# 3. model errors: retried when transient, not when a 4xx ------------------------------------------


def test_rate_limit_from_the_model_is_retried() -> None:
    rate_limited = http_error(openai.RateLimitError, 429)
    model = ScriptedModel([rate_limited, answer("recovered")])
    wf = Workflow("retry")
    wf.add_step(AgentStep("ask", Agent(name="a", model=model), "hi").with_retry(policy=FAST))

    result = run(wf)

    step = result.step("ask")
    assert step.status == StepStatus.COMPLETED
    assert step.attempts == 2
    assert step.output == "recovered"
    model.assert_complete()


def test_the_sdk_propagates_the_openai_error_unchanged() -> None:
    error = http_error(openai.RateLimitError, 429)
    model = ScriptedModel([error])

    async def go() -> None:
        await agents.Runner.run(Agent(name="a", model=model), "hi")

    with pytest.raises(openai.RateLimitError) as raised:
        asyncio.run(go())
    assert raised.value is error


def test_bad_request_from_the_model_is_not_retried() -> None:
    model = ScriptedModel([http_error(openai.BadRequestError, 400), answer("never")])
    wf = Workflow("no-retry")
    wf.add_step(AgentStep("ask", Agent(name="a", model=model), "hi").with_retry(policy=FAST))

    result = run(wf)

    step = result.step("ask")
    assert step.status == StepStatus.FAILED
    assert step.attempts == 1
    assert step.error_type == "BadRequestError"
    assert result.status == WorkflowStatus.FAILED
    assert model.remaining_steps == 1


# 4. a FunctionTool as a ToolStep ------------------------------------------------------------------


class Total(BaseModel):
    total: int
    items: list[str]


def test_function_tool_runs_as_a_tool_step() -> None:
    calls: list[tuple[int, int]] = []

    @function_tool
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        calls.append((a, b))
        return a + b

    @function_tool
    async def basket(ctx: ToolContext[Any], items: list[str], price: int) -> Total:
        """Prices a basket."""
        seen_call_ids.append(ctx.tool_call_id)
        return Total(total=len(items) * price, items=items)

    seen_call_ids: list[str] = []
    wf = Workflow("tools")
    wf.add_step(ToolStep("add", add, {"a": 2, "b": 3}))
    wf.add_step(ToolStep("basket", basket, {"items": ["x", "y"], "price": "{add.result}"}))

    result = run(wf)

    assert result.status == WorkflowStatus.COMPLETED
    assert calls == [(2, 3)]
    assert result.step("add").output == 5
    assert result.step("add").metadata == {"framework": "openai-agents", "tool": "add"}
    assert result.step("basket").output == {"total": 10, "items": ["x", "y"]}
    assert len(seen_call_ids) == 1 and seen_call_ids[0]


def test_a_failing_tool_fails_the_step_instead_of_returning_the_sdk_message() -> None:
    attempts: list[int] = []

    @function_tool
    def flaky(n: int) -> int:
        """Fails once with a connection error."""
        attempts.append(n)
        if len(attempts) == 1:
            raise ConnectionError("reset by peer")
        return n * 2

    @function_tool
    def broken(n: int) -> int:
        """Always rejects its input."""
        raise ValueError(f"bad n: {n}")

    wf = Workflow("tool-errors")
    wf.add_step(ToolStep("flaky", flaky, {"n": 4}).with_retry(policy=FAST))
    wf.add_step(ToolStep("broken", broken, {"n": 1}).with_retry(policy=FAST), depends_on=[])

    result = run(wf)

    assert result.step("flaky").status == StepStatus.COMPLETED
    assert result.step("flaky").attempts == 2
    assert result.step("flaky").output == 8
    assert result.step("broken").status == StepStatus.FAILED
    assert result.step("broken").attempts == 1
    assert result.step("broken").error_type == "ValueError"


def test_tool_timeout_seconds_is_enforced() -> None:
    @function_tool(timeout=0.05)
    async def slow() -> str:
        """Takes too long."""
        await asyncio.sleep(5)
        return "late"

    wf = Workflow("tool-timeout")
    wf.add_step(ToolStep("slow", slow, {}))

    result = run(wf)

    assert result.step("slow").status == StepStatus.FAILED
    assert "Timeout" in (result.step("slow").error_type or "")


# 5. structured output -----------------------------------------------------------------------------


class Forecast(BaseModel):
    city: str
    temp_c: int


def test_structured_output_is_a_dict() -> None:
    model = ScriptedModel([answer('{"city": "Paris", "temp_c": 21}')])
    agent = Agent(name="structured", model=model, output_type=Forecast)
    wf = Workflow("structured")
    wf.add_step(AgentStep("forecast", agent, "Forecast for Paris"))

    result = run(wf)

    step = result.step("forecast")
    assert step.status == StepStatus.COMPLETED
    assert step.output == {"city": "Paris", "temp_c": 21}
    call = model.first_call
    assert call is not None and call.output_schema is not None


def test_durable_workflow_checkpoints_the_outputs() -> None:
    model = ScriptedModel([answer('{"city": "Oslo", "temp_c": 3}'), answer("Wear a coat.")])
    wf = Workflow("durable").with_store(batten.MemoryStore())
    wf.add_step(AgentStep("forecast", Agent(name="f", model=model, output_type=Forecast), "Oslo"))
    wf.add_step(
        AgentStep(
            "advice", Agent(name="adv", model=model), "Advice for {forecast.result.temp_c} C"
        ),
        depends_on=["forecast"],
    )

    result = run(wf)

    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("forecast").output == {"city": "Oslo", "temp_c": 3}
    assert result.final_output == "Wear a coat."
    call = model.last_call
    assert call is not None and call.input[0]["content"] == "Advice for 3 C"


# 6. SDK objects batten cannot run ---------------------------------------------------------------


@function_tool
def _add(a: int, b: int) -> int:
    """Adds."""
    return a + b


@function_tool(needs_approval=True)
def _delete_everything() -> str:
    """Needs a human's approval."""
    return "deleted"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: AgentStep("bad_agent", _add, "hi"), "FunctionTool"),
        (lambda: ToolStep("bad_tool", Agent(name="x", model=ScriptedModel()), {}), "as_tool"),
        (lambda: AgentStep("bad_settings", ModelSettings(temperature=0), "hi"), "ModelSettings"),
        (lambda: ToolStep("bad_config", RunConfig(), {}), "RunConfig"),
        (lambda: ToolStep("bad_approval", _delete_everything, {}), "needs_approval"),
    ],
)
def test_sdk_objects_that_cannot_run_are_refused(make: Any, needle: str) -> None:
    with pytest.raises(batten.WorkflowDefinitionError) as raised:
        make()
    message = str(raised.value)
    assert message.startswith("step 'bad_")
    assert needle in message


def test_agent_as_tool_runs_as_a_tool_step() -> None:
    model = ScriptedModel([answer("Bonjour")])
    translator = Agent(name="translator", model=model)
    tool = translator.as_tool(tool_name="translate", tool_description="Translates to French.")
    wf = Workflow("as-tool")
    wf.add_step(ToolStep("translate", tool, {"input": "Hello"}))

    result = run(wf)

    assert result.step("translate").status == StepStatus.COMPLETED
    assert result.step("translate").output == "Bonjour"


def test_a_users_own_agents_package_is_left_to_the_generic_path() -> None:
    class UserAgent:
        def run(self, message: str) -> str:
            return f"user agent got {message}"

    UserAgent.__module__ = "agents.my_own"  # a user's package also named "agents"
    wf = Workflow("user-pkg")
    wf.add_step(AgentStep("mine", UserAgent(), "hi"))

    assert run(wf).step("mine").output == "user agent got hi"


def test_the_example_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    from pathlib import Path

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = Path(__file__).resolve().parents[2] / "examples" / "agents" / "openai_agents_agent.py"
    spec = importlib.util.spec_from_file_location("example_openai_agents_agent", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    result = run(example.build_workflow("one two three"))

    assert result.step("count").output == "Your message has 3 words."
    assert result.step("count").metadata["model"] == "offline-scripted"
    assert result.step("direct").output == 3
