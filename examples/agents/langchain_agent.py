"""A LangGraph agent for batten's examples: a code reviewer.

``build_agent()`` returns a compiled LangGraph graph (one model node over ``MessagesState``,
with a system prompt) that ``AgentStep`` runs as it is::

    AgentStep("review", build_agent(), "Review this diff: ...")

The step's output is the reviewer's text; its metadata has ``framework``, ``model`` and token
``usage``. With ``OPENAI_API_KEY`` set and ``langchain-openai`` installed the model is
``ChatOpenAI`` (``OPENAI_MODEL``, default ``gpt-4o-mini``); otherwise a scripted offline model
(LangChain's ``FakeMessagesListChatModel``) answers, so the example runs without network.

Run it with ``python examples/agents/langchain_agent.py``.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, SystemMessage
from langgraph.graph import START, MessagesState, StateGraph

REVIEWER = "You are a concise code reviewer. Answer with a short review and a verdict."

OFFLINE_REVIEW = (
    "The change is small and focused, and the new test covers the failure path. "
    "Nit: name the magic number 0.01. Verdict: approve."
)


def build_model() -> Any:
    """``ChatOpenAI`` when ``OPENAI_API_KEY`` is set and ``langchain-openai`` is installed,
    else an offline scripted chat model (the reason is printed)."""
    if os.environ.get("OPENAI_API_KEY"):
        try:
            from langchain_openai import ChatOpenAI
        except ImportError:
            print("OPENAI_API_KEY is set but langchain-openai is not installed: offline model")
        else:
            # max_retries=0: the step's batten retry policy handles 429s and 5xx, not the client.
            return ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), max_retries=0)
    answer = AIMessage(
        content=OFFLINE_REVIEW,
        response_metadata={"model_name": "offline-reviewer"},
        usage_metadata={"input_tokens": 42, "output_tokens": 24, "total_tokens": 66},
    )
    return FakeMessagesListChatModel(responses=[answer])


def build_agent(instructions: str = REVIEWER) -> Any:
    """A compiled LangGraph graph: ``review`` calls the model with ``instructions`` as the
    system prompt before the conversation. Its input is ``{"messages": [...]}``, which batten's
    LangChain adapter builds from the step's message."""
    model = build_model()

    async def review(state: MessagesState) -> dict[str, Any]:
        reply = await model.ainvoke([SystemMessage(instructions), *state["messages"]])
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node("review", review)
    builder.add_edge(START, "review")
    return builder.compile()


if __name__ == "__main__":
    from batten import AgentStep, Workflow

    wf = Workflow("langchain-review")
    wf.add_step(AgentStep("review", build_agent(), "Review: retry now waits 0.01 s between tries."))
    step = wf.run().step("review")
    print(step.output)
    print(step.metadata)
