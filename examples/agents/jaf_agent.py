"""A JAF (jaf-py) agent and tool as batten steps (``pip install batten[jaf]``).

``build_agent()`` returns ``batten.adapters.jaf.JafAgent(agent, run_config)``: a ``jaf.Agent``
with one tool, ``word_count``, bound to the ``jaf.RunConfig`` JAF runs it with. With
``OPENAI_API_KEY`` set the config's model provider is JAF's own
``make_litellm_provider(base_url, api_key)`` pointed at OpenAI's OpenAI-compatible endpoint
(``OPENAI_BASE_URL`` to use a LiteLLM proxy or another endpoint; model ``gpt-4o-mini``); without
it, an offline scripted provider that calls the tool on the user's message and then answers
with its result, so the example runs anywhere (JAF's real engine still runs: ``jaf.run``
executes the tool call and feeds its output back to the model).

batten runs the agent as an ``AgentStep`` (through ``jaf.run``; the step's metadata holds the
framework, the model name and the token usage) and the JAF tool itself as a ``ToolStep``.

Run it with ``python examples/agents/jaf_agent.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

# JAF imports LiteLLM, which otherwise downloads its model cost map at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import jaf
from batten import AgentStep, ToolStep, Workflow
from batten.adapters.jaf import JafAgent
from pydantic import BaseModel

REAL_MODEL = "gpt-4o-mini"


class WordCountArgs(BaseModel):
    text: str


async def _count_words(args: WordCountArgs, context: Any) -> str:
    return str(len(args.text.split()))


word_count = jaf.with_timeout(
    jaf.create_function_tool(
        {
            "name": "word_count",
            "description": "Counts the words in a text.",
            "execute": _count_words,
            "parameters": WordCountArgs,
        }
    ),
    10.0,
)
"""The tool (``word_count_timeout``): JAF's ``with_timeout`` around a function tool."""


class OfflineProvider:
    """A scripted stand-in for an LLM, implementing JAF's ``ModelProvider``: on a user message
    it calls the tool on it; once the tool's result is in the conversation it answers with the
    count."""

    async def get_completion(self, state: Any, agent: Any, config: Any) -> dict[str, Any]:
        last = state.messages[-1]
        usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
        if str(getattr(last.role, "value", last.role)) == "tool":
            # JAF's envelope {"result": ...} around with_timeout's {"result": "<count>", ...}
            count = json.loads(json.loads(last.text_content)["result"])["result"]
            message = {"content": f"Your message has {count} words.", "tool_calls": None}
        else:
            call = {
                "id": f"call_{len(state.messages)}",
                "type": "function",
                "function": {
                    "name": word_count.schema.name,
                    "arguments": json.dumps({"text": last.text_content}),
                },
            }
            message = {"content": None, "tool_calls": [call]}
        return {"model": "offline-scripted", "message": message, "usage": usage}


def build_agent() -> JafAgent:
    """The agent with its run config: ``gpt-4o-mini`` through JAF's ``make_litellm_provider``
    when ``OPENAI_API_KEY`` is set, else the offline provider."""
    api_key = os.environ.get("OPENAI_API_KEY")
    provider: Any
    if api_key:
        base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        provider = jaf.make_litellm_provider(base_url, api_key)
    else:
        provider = OfflineProvider()
    agent = jaf.Agent(
        name="word_counter",
        instructions=lambda state: (
            "Count the words of the user's message with the word_count_timeout tool, then "
            "answer with the count in one sentence."
        ),
        tools=[word_count],
        model_config=jaf.ModelConfig(name=REAL_MODEL if api_key else None),
    )
    config = jaf.RunConfig(agent_registry={agent.name: agent}, model_provider=provider, max_turns=5)
    return JafAgent(agent, config)


def build_workflow(message: str = "batten runs agents of many frameworks") -> Workflow:
    """``count`` (the agent, as an ``AgentStep``) and ``direct`` (the tool, as a
    ``ToolStep``), independent of each other."""
    wf = Workflow("jaf-demo")
    wf.add_step(AgentStep("count", build_agent(), message))
    wf.add_step(ToolStep("direct", word_count, {"text": message}), depends_on=[])
    return wf


if __name__ == "__main__":
    result = build_workflow().run()
    for step_id in ("count", "direct"):
        step = result.step(step_id)
        print(f"{step_id}: {step.output!r}  {step.metadata}")
