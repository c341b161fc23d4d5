"""JAF (jaf-py) objects run as batten steps (``batten.adapters.jaf``).

JAF's real engine (``jaf.run``) runs offline against a scripted model provider: an object with
JAF's ``ModelProvider`` method ``async get_completion(state, agent, config)`` returning the dict
JAF's engine reads (``{"message": {"content", "tool_calls"}, "usage", "model"}``, the shape of
``make_litellm_provider``'s responses) or raising scripted errors.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import batten
import httpx
import openai
import pytest
from batten import AgentStep, StepStatus, ToolStep, Workflow, WorkflowStatus
from batten.errors import WorkflowDefinitionError
from pydantic import BaseModel

# Before JAF imports LiteLLM: use the bundled model cost map instead of fetching it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
jaf = pytest.importorskip("jaf")
from batten.adapters import jaf as jaf_adapter  # noqa: E402
from batten.adapters.jaf import (  # noqa: E402
    JafAgent,
    JafNonRetryableError,
    JafRunError,
    set_default_run_config,
    with_config,
)

FAST = batten.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)
MODEL = "gpt-test"


class ScriptedProvider:
    """A JAF model provider returning (or raising) scripted responses, one per model call."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.seen: list[list[tuple[str, str]]] = []  # the messages of each call
        self.instructions: list[str] = []

    async def get_completion(self, state: Any, agent: Any, config: Any) -> dict[str, Any]:
        self.seen.append(
            [(str(getattr(m.role, "value", m.role)), m.text_content) for m in state.messages]
        )
        self.instructions.append(agent.instructions(state))
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def usage(inp: int, out: int) -> dict[str, int]:
    return {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}


def answer(text: str, inp: int = 10, out: int = 2) -> dict[str, Any]:
    return {
        "id": "resp-1",
        "model": "gpt-test-2025",
        "message": {"content": text, "tool_calls": None},
        "usage": usage(inp, out),
    }


def tool_call(name: str, args: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }
    return {"message": {"content": None, "tool_calls": [call]}, "usage": usage(20, 5)}


def http_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
    return cls(f"HTTP {status}", response=httpx.Response(status, request=request), body=None)


def make_agent(tools: list[Any] | None = None, **kwargs: Any) -> Any:
    return jaf.Agent(
        name="calc",
        instructions=lambda state: "Answer briefly.",
        tools=tools,
        model_config=jaf.ModelConfig(name=MODEL),
        **kwargs,
    )


def config(provider: Any, **kwargs: Any) -> Any:
    return jaf.RunConfig(agent_registry={}, model_provider=provider, **kwargs)


def run(wf: Workflow) -> Any:
    return asyncio.run(wf.execute())


def one_step(step: Any, wf_id: str = "wf") -> Any:
    wf = Workflow(wf_id)
    wf.add_step(step)
    return run(wf)


class AddArgs(BaseModel):
    a: int
    b: int


def add_tool(calls: list[tuple[int, int]]) -> Any:
    async def add(args: AddArgs, context: Any) -> str:
        calls.append((args.a, args.b))
        return str(args.a + args.b)

    return jaf.create_function_tool(
        {"name": "add", "description": "Adds two integers.", "execute": add, "parameters": AddArgs}
    )


# 1. a plain agent run


def test_agent_runs_through_jafs_engine_with_metadata() -> None:
    provider = ScriptedProvider(answer("4", inp=12, out=3))
    result = one_step(AgentStep("ask", JafAgent(make_agent(), config(provider)), "What is 2+2?"))
    step = result.step("ask")
    assert step.status == StepStatus.COMPLETED, step.error
    assert step.output == "4"
    assert result.final_output == "4"
    assert step.metadata == {
        "framework": "jaf",
        "model": MODEL,  # the agent's model_config.name, what JAF asked the provider for
        "usage": {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        "requests": 1,
    }
    assert provider.seen == [[("user", "What is 2+2?")]]
    assert provider.instructions == ["Answer briefly."]


def test_model_override_and_provider_reported_model() -> None:
    cfg = config(ScriptedProvider(answer("hi")), model_override="gpt-override")
    meta = one_step(AgentStep("a", with_config(make_agent(), cfg), "hi")).step("a").metadata
    assert meta["model"] == "gpt-override"
    # No model configured anywhere: the model the provider reported.
    bare = jaf.Agent(name="bare", instructions=lambda s: "x")
    meta = (
        one_step(AgentStep("b", JafAgent(bare, ScriptedProvider(answer("hi"))), "hi"))
        .step("b")
        .metadata
    )
    assert meta["model"] == "gpt-test-2025"


def test_bare_agent_uses_the_registered_default_and_the_step_context() -> None:
    seen: list[Any] = []
    agent = jaf.Agent(
        name="ctx",
        instructions=lambda state: seen.append(state.context["city"]) or "x",
        model_config=jaf.ModelConfig(name=MODEL),
    )
    set_default_run_config(ScriptedProvider(answer("sunny")))  # a bare provider is accepted
    try:
        wf = Workflow("d")
        wf.add_step(ToolStep("setup", lambda: {"city": "Pune"}, {}))
        wf.add_step(
            AgentStep("weather", agent, "Weather in {setup.result.city}?"), depends_on=["setup"]
        )
        result = run(wf)
    finally:
        set_default_run_config(None)
    step = result.step("weather")
    assert step.status == StepStatus.COMPLETED, step.error
    assert step.output == "sunny"
    assert seen == ["Pune"]  # the JAF context is the step's WorkflowContext (its variables)


# 2. the model calls a tool, JAF executes it, the model answers


def test_agent_calls_a_tool_then_answers() -> None:
    calls: list[tuple[int, int]] = []
    provider = ScriptedProvider(tool_call("add", {"a": 2, "b": 3}), answer("2 + 3 = 5", 30, 6))
    agent = make_agent(tools=[add_tool(calls)])
    step = one_step(AgentStep("ask", JafAgent(agent, config(provider)), "Add 2 and 3")).step("ask")
    assert step.status == StepStatus.COMPLETED, step.error
    assert calls == [(2, 3)]  # the tool really ran, inside JAF's engine
    assert step.output == "2 + 3 = 5"
    # The second model call saw the tool's result (JAF's envelope around "5").
    role, content = provider.seen[1][-1]
    assert role == "tool" and json.loads(content)["result"] == "5"
    assert step.metadata["usage"] == {"input_tokens": 50, "output_tokens": 11, "total_tokens": 61}
    assert step.metadata["requests"] == 2


class StreamingProvider(ScriptedProvider):
    """A provider that also streams (JAF's engine then prefers ``get_completion_stream`` and
    falls back to ``get_completion`` when the stream fails)."""

    def __init__(self, *script: Any, stream_error: BaseException | None = None) -> None:
        super().__init__(*script)
        self.stream_error = stream_error

    async def get_completion_stream(self, state: Any, agent: Any, config: Any) -> Any:
        if self.stream_error is not None:
            raise self.stream_error
        for word in ("Hello", " there"):
            yield jaf.core.types.CompletionStreamChunk(delta=word)
        raw = {"model": "gpt-stream", "usage": usage(7, 2)}
        yield jaf.core.types.CompletionStreamChunk(is_done=True, finish_reason="stop", raw=raw)


def test_streaming_provider_and_fallback() -> None:
    bare = jaf.Agent(name="s", instructions=lambda s: "x")
    res = one_step(AgentStep("s", JafAgent(bare, StreamingProvider()), "hi")).step("s")
    assert res.status == StepStatus.COMPLETED, res.error
    assert res.output == "Hello there"
    assert res.metadata == {
        "framework": "jaf",
        "model": "gpt-stream",
        "usage": {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
        "requests": 1,
    }
    # The stream fails, JAF falls back to get_completion, which raises: the step sees the 429.
    provider = StreamingProvider(
        http_error(openai.RateLimitError, 429),
        answer("ok"),
        stream_error=http_error(openai.RateLimitError, 429),
    )
    step = AgentStep("f", JafAgent(bare, provider), "hi").with_retry(policy=FAST)
    res = one_step(step).step("f")
    assert (res.status, res.attempts, res.output) == (StepStatus.COMPLETED, 2, "ok")


# 3. model errors: JAF turns them into a ModelBehaviorError value; the adapter re-raises them


def test_rate_limit_is_re_raised_and_retried() -> None:
    provider = ScriptedProvider(http_error(openai.RateLimitError, 429), answer("ok"))
    step = AgentStep("ask", JafAgent(make_agent(), config(provider)), "hi").with_retry(policy=FAST)
    res = one_step(step).step("ask")
    assert res.status == StepStatus.COMPLETED, res.error
    assert res.attempts == 2
    assert res.output == "ok"


def test_bad_request_is_not_retried() -> None:
    provider = ScriptedProvider(http_error(openai.BadRequestError, 400), answer("never"))
    step = AgentStep("ask", JafAgent(make_agent(), config(provider)), "hi").with_retry(policy=FAST)
    result = one_step(step)
    res = result.step("ask")
    assert result.status == WorkflowStatus.FAILED
    assert res.status == StepStatus.FAILED
    assert res.attempts == 1
    assert res.error_type == "BadRequestError"
    assert len(provider.script) == 1  # the model was called once


def test_error_outcomes_raise_with_jafs_error_kind() -> None:
    # max_turns=1: the tool call uses the only turn, so JAF ends with MaxTurnsExceeded.
    calls: list[tuple[int, int]] = []
    provider = ScriptedProvider(tool_call("add", {"a": 1, "b": 1}))
    agent = JafAgent(make_agent(tools=[add_tool(calls)]), config(provider, max_turns=1))
    res = one_step(AgentStep("loop", agent, "go")).step("loop")
    assert res.status == StepStatus.FAILED
    assert res.error_type == "JafRunError"
    assert res.error.startswith("MaxTurnsExceeded: ")

    def reject(text: str) -> Any:
        return jaf.InvalidValidationResult(error_message="no secrets")

    provider = ScriptedProvider(answer("never"))
    cfg = config(provider, initial_input_guardrails=[reject])
    step = AgentStep("g", JafAgent(make_agent(), cfg), "the password").with_retry(policy=FAST)
    res = one_step(step).step("g")
    assert res.status == StepStatus.FAILED
    assert res.attempts == 1  # an input guardrail rejects the same input again: not retried
    assert res.error_type == "JafNonRetryableError"
    assert "InputGuardrailTripwire" in res.error and "no secrets" in res.error


def test_run_error_exceptions_keep_jafs_error() -> None:
    error = jaf.core.types.RateLimitError(detail="slow down", retry_after_seconds=3.0)
    exc = jaf_adapter._outcome_error(error)
    assert type(exc) is JafRunError
    assert (exc.kind, exc.status_code, exc.retry_after, exc.error) == (
        "RateLimitError",
        429,
        3.0,
        error,
    )
    exc = jaf_adapter._outcome_error(jaf.core.types.AgentNotFound(agent_name="ghost"))
    assert isinstance(exc, JafNonRetryableError) and "ghost" in str(exc)


# 4. a JAF tool as a ToolStep


def test_jaf_tool_object_runs_as_tool_step() -> None:
    calls: list[tuple[int, int]] = []
    tool = jaf.with_timeout(add_tool(calls), 5.0)  # a JAF Tool object (class in jaf.core)
    res = one_step(ToolStep("t", tool, {"a": 4, "b": 5})).step("t")
    assert res.status == StepStatus.COMPLETED, res.error
    assert calls == [(4, 5)]
    assert json.loads(res.output) == {"result": "9", "timeout_seconds": 5.0, "timed_out": False}
    assert res.metadata == {"framework": "jaf"}


def test_function_tool_via_adapt() -> None:
    calls: list[tuple[int, int]] = []
    fn, single = jaf_adapter.adapt(add_tool(calls), "tool", "t")
    assert single is True
    out = asyncio.run(fn({"a": 1, "b": 2}, context={"user": "u1"}))
    assert (out.output, calls) == ("3", [(1, 2)])
    with pytest.raises(ValueError):  # pydantic's ValidationError: batten does not retry it
        asyncio.run(fn({"a": "x", "b": 2}))


def test_class_tool_and_tool_results_via_adapt() -> None:
    class Lookup:
        """A JAF tool written as a class, as JAF's docs show."""

        @property
        def schema(self) -> Any:
            return jaf.core.types.ToolSchema(name="lookup", description="d", parameters=AddArgs)

        async def execute(self, args: AddArgs, context: Any) -> Any:
            if args.a < 0:
                return jaf.ToolResponse.validation_error("a must be >= 0")
            return jaf.ToolResponse.success({"sum": args.a + args.b, "user": context["user"]})

    fn, _ = jaf_adapter.adapt(Lookup(), "tool", "t")
    out = asyncio.run(fn({"a": 1, "b": 2}, context={"user": "u1"}))
    assert out.output == {"sum": 3, "user": "u1"}
    with pytest.raises(JafNonRetryableError, match="a must be >= 0"):
        asyncio.run(fn({"a": -1, "b": 2}, context={"user": "u1"}))


def test_function_tool_runs_as_tool_step() -> None:
    # create_function_tool's tools are defined outside `jaf`: routed by JAF's tool protocol.
    calls: list[tuple[int, int]] = []
    res = one_step(ToolStep("t", add_tool(calls), {"a": 4, "b": 5})).step("t")
    assert res.status == StepStatus.COMPLETED, res.error
    assert (res.output, calls) == ("9", [(4, 5)])


# 5. structured output


class Answer(BaseModel):
    value: int
    explanation: str


def test_structured_output_is_a_json_dict() -> None:
    provider = ScriptedProvider(answer('{"value": 4, "explanation": "2 + 2"}'))
    agent = make_agent(output_codec=Answer)
    step = one_step(AgentStep("ask", JafAgent(agent, config(provider)), "2+2?")).step("ask")
    assert step.status == StepStatus.COMPLETED, step.error
    assert step.output == {"value": 4, "explanation": "2 + 2"}


# 6. JAF objects batten cannot run


def test_objects_batten_cannot_run() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"step 'bare'.*set_default_run_config"):
        AgentStep("bare", make_agent(), "hi")
    with pytest.raises(WorkflowDefinitionError, match=r"step 'cfg'.*RunConfig.*JafAgent"):
        AgentStep("cfg", config(ScriptedProvider()), "hi")
    with pytest.raises(WorkflowDefinitionError, match=r"step 'msg'.*Message"):
        AgentStep("msg", jaf.Message(role=jaf.ContentRole.USER, content="hi"), "hi")
    with pytest.raises(WorkflowDefinitionError, match=r"step 'as-tool'.*AgentStep"):
        ToolStep("as-tool", make_agent(), {})
    with pytest.raises(WorkflowDefinitionError, match=r"step 'tool-as-agent'.*ToolStep"):
        AgentStep("tool-as-agent", jaf.with_timeout(add_tool([]), 1.0), "hi")
    with pytest.raises(WorkflowDefinitionError, match=r"JafAgent expects a jaf\.Agent"):
        JafAgent("not an agent", ScriptedProvider())
    with pytest.raises(WorkflowDefinitionError, match="RunConfig or a JAF model provider"):
        JafAgent(make_agent(), object())


# durable: the output is JSON-checkpointable


def test_durable_workflow_checkpoints_the_agent_output() -> None:
    store = batten.MemoryStore()
    wf = Workflow("x").with_store(store)
    provider = ScriptedProvider(answer('{"value": 4, "explanation": "sum"}'))
    wf.add_step(
        AgentStep("ask", JafAgent(make_agent(output_codec=Answer), config(provider)), "2+2?")
    )
    result = run(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("ask").output == {"value": 4, "explanation": "sum"}


def test_example_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    from pathlib import Path

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = Path(__file__).resolve().parents[2] / "examples" / "agents" / "jaf_agent.py"
    spec = importlib.util.spec_from_file_location("example_jaf_agent", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.build_agent(), JafAgent)
    result = run(module.build_workflow("one two three"))
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("count").output == "Your message has 3 words."
    assert result.step("count").metadata["usage"]["total_tokens"] == 56
    assert json.loads(result.step("direct").output)["result"] == "3"
