"""One workflow, three agent frameworks: a LangGraph reviewer, an OpenAI Agents SDK agent and
a JAF agent run as ordinary batten steps, under one rate limit and one circuit breaker.

Offline by default: each framework's scripted test model answers. With ``OPENAI_API_KEY`` set
the agents call the real models (see each ``*_agent.py``). Run it with::

    pip install -e ".[langchain,openai-agents,jaf]"
    python examples/agents/workflow.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import batten
import jaf_agent
import langchain_agent
import openai_agents_agent
from batten import AgentStep, RetryPolicy, ToolStep, Workflow

DIFF = "Replace the hard-coded 0.01 backoff with RetryPolicy(initial_interval=0.01)."


def summarize(context: Any) -> dict[str, Any]:
    """Joins the three agents' answers and their token usage."""
    steps = ("review", "count_openai", "count_jaf")
    return {
        "review": context.results["review"],
        "word_counts": [context.results["count_openai"], context.results["count_jaf"]],
        "agents": len(steps),
    }


def _quiet_offline() -> None:
    """Offline, the Agents SDK has nowhere to export traces: turn its tracing off."""
    if not os.environ.get("OPENAI_API_KEY"):
        import agents

        agents.set_tracing_disabled(True)


def build_workflow() -> Workflow:
    """``review`` (LangGraph), ``count_openai`` (OpenAI Agents SDK) and ``count_jaf`` (JAF)
    run in parallel, each retried on transient errors and held to one shared rate limit;
    ``summary`` joins them."""
    _quiet_offline()
    llm = batten.RateLimit("examples-llm", requests_per_second=5)
    breaker = batten.CircuitBreaker(failure_threshold=3, recovery_timeout=30, key="examples")
    retry = RetryPolicy(max_attempts=3, initial_interval=0.5)
    wf = Workflow("agents-demo", "Three frameworks, one workflow")
    agents = {
        "review": langchain_agent.build_agent(),
        "count_openai": openai_agents_agent.build_agent(),
        "count_jaf": jaf_agent.build_agent(),
    }
    for step_id, agent in agents.items():
        wf.add_step(
            AgentStep(step_id, agent, DIFF)
            .with_retry(policy=retry)
            .with_rate_limit(llm)
            .with_circuit_breaker(breaker),
            depends_on=[],
        )
    wf.add_step(ToolStep("summary", summarize), depends_on=list(agents))
    return wf


async def main() -> batten.WorkflowResult:
    result = await build_workflow().execute()
    for step in result.steps:
        meta = step.metadata
        print(
            f"{step.step_id:13} {step.status:10} {meta.get('framework', '-'):14} "
            f"tokens={meta.get('usage', {}).get('total_tokens', '-')}"
        )
    print(result.final_output)
    return result


if __name__ == "__main__":
    asyncio.run(main())
