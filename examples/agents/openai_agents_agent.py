"""An OpenAI Agents SDK agent and tool as batten steps (``pip install batten[openai-agents]``).

``build_agent()`` returns an ``agents.Agent`` with one function tool, ``word_count``. With
``OPENAI_API_KEY`` set the agent uses a real model (``gpt-4o-mini``); without it, an offline
scripted model that calls the tool on the user's message and then answers with its result, so
the example runs anywhere (the SDK's real agent loop still runs: ``Runner.run`` executes the tool
call and feeds its output back to the model).

batten runs the agent as an ``AgentStep`` (through ``Runner.run``; the step's metadata holds the
framework, the model name and the token usage) and the ``FunctionTool`` itself as a
``ToolStep``.

Run it with ``python examples/agents/openai_agents_agent.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, ModelResponse, Usage, function_tool, set_tracing_disabled
from agents.models.interface import Model
from batten import AgentStep, ToolStep, Workflow
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

REAL_MODEL = "gpt-4o-mini"


@function_tool
def word_count(text: str) -> int:
    """Counts the words in a text."""
    return len(text.split())


class OfflineModel(Model):
    """A scripted stand-in for an LLM: on a user message it calls ``word_count`` on it; once the
    tool's output is in the conversation it answers with the count."""

    model = "offline-scripted"

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        last = items[-1]
        usage = Usage(requests=1, input_tokens=20, output_tokens=8, total_tokens=28)
        if last.get("type") == "function_call_output":
            text = f"Your message has {last['output']} words."
            message = ResponseOutputMessage(
                id="msg-1",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            )
            return ModelResponse(output=[message], usage=usage, response_id=None)
        call = ResponseFunctionToolCall(
            id="fc-1",
            call_id=f"call-{len(items)}",
            type="function_call",
            name="word_count",
            arguments=json.dumps({"text": str(last.get("content", ""))}),
        )
        return ModelResponse(output=[call], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the offline model does not stream")


def build_agent() -> Agent[Any]:
    """The agent: ``gpt-4o-mini`` when ``OPENAI_API_KEY`` is set, else the offline model."""
    model: str | Model = REAL_MODEL if os.environ.get("OPENAI_API_KEY") else OfflineModel()
    return Agent(
        name="word_counter",
        instructions="Count the words of the user's message with the word_count tool, then "
        "answer with the count in one sentence.",
        model=model,
        tools=[word_count],
    )


def build_workflow(message: str = "batten runs agents of many frameworks") -> Workflow:
    """``count`` (the agent, as an ``AgentStep``) and ``direct`` (the tool, as a
    ``ToolStep``), independent of each other."""
    wf = Workflow("openai-agents-demo")
    wf.add_step(AgentStep("count", build_agent(), message))
    wf.add_step(ToolStep("direct", word_count, {"text": message}), depends_on=[])
    return wf


if __name__ == "__main__":
    if not os.environ.get("OPENAI_API_KEY"):
        set_tracing_disabled(True)  # nothing to export traces to offline
    result = build_workflow().run()
    for step_id in ("count", "direct"):
        step = result.step(step_id)
        print(f"{step_id}: {step.output!r}  {step.metadata}")
