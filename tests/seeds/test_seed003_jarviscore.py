"""Seed 003 (JarvisCore workflow DAGs): its code examples run on batten as written, apart from the
import lines, with the behaviour the seed documents asserted.

JarvisCore dispatches each step to the agent whose ``role`` matches; batten's
:class:`~batten.WorkflowEngine` plays JarvisCore's ``Mesh`` here (its ``agents=`` registry resolves
the roles). The agents are small real functions whose outputs are checkable strings.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import types

import pytest
from batten import WorkflowBuilder
from batten import WorkflowEngine as Mesh

logger = logging.getLogger("seed003")

# -- the agents, one per role ------------------------------------------------------------------

#: (role, task, start, end) per agent call, perf_counter seconds.
CALLS: list[tuple[str, str, float, float]] = []


def _recorded(role, fn):
    async def agent(task):
        start = time.perf_counter()
        try:
            return await fn(task)
        finally:
            CALLS.append((role, task, start, time.perf_counter()))

    agent.__name__ = role
    return agent


async def _research(task):
    await asyncio.sleep(0.2)  # a slow web search
    return f"DATA<{task}>"


async def _analyse(task):
    return f"INSIGHTS<{task}>"


async def _write(task):
    return f"REPORT<{task}>"


async def _review(task):
    return f"APPROVED<{task}>"


async def _scrape(task):
    raise ConnectionError(f"competitor site unreachable for: {task}")


async def _archive(task):
    return "x" * 2000  # an output longer than JarvisCore's 500-character substitution cap


async def _structured(task):
    return {"output": f"STRUCTURED<{task}>", "sources": 3}


async def _legacy(task):
    return {"result": f"LEGACY<{task}>", "cached": True}


async def _hang(task):
    await asyncio.sleep(30)
    return "never"


ROLES = {
    "researcher": _research,
    "analyst": _analyse,
    "writer": _write,
    "reviewer": _review,
    "scraper": _scrape,
    "archivist": _archive,
    "data_service": _structured,
    "legacy_service": _legacy,
    "slowpoke": _hang,
}


@pytest.fixture
def mesh():
    CALLS.clear()
    return Mesh(agents={role: _recorded(role, fn) for role, fn in ROLES.items()})


def _calls(role):
    return [c for c in CALLS if c[0] == role]


# -- Building a Workflow -------------------------------------------------------------------------


def build_ev_report():
    # fmt: off
    # Verbatim from the seed.
    wf = (
        WorkflowBuilder()
        .step("research",  "researcher", "Gather market data on EV adoption in Europe for Q1 2026.")
        .step("analyse",   "analyst",    "Analyse findings: {research.result}", depends_on=["research"])  # noqa: E501
        .step("draft",     "writer",     "Draft executive report from: {analyse.result}", depends_on=["analyse"])  # noqa: E501
        .step("review",    "reviewer",   "QA the draft for accuracy and tone.", depends_on=["draft"])  # noqa: E501
        .build(title="EV Market Report", team="market-intelligence")
    )
    # fmt: on
    return wf


RESEARCH_OUT = "DATA<Gather market data on EV adoption in Europe for Q1 2026.>"
ANALYSE_OUT = f"INSIGHTS<Analyse findings: {RESEARCH_OUT}>"
DRAFT_OUT = f"REPORT<Draft executive report from: {ANALYSE_OUT}>"
REVIEW_OUT = "APPROVED<QA the draft for accuracy and tone.>"


def test_chain_substitutes_each_result_into_the_next_task(mesh):
    wf = build_ev_report()
    results = asyncio.run(wf.execute(mesh))

    assert [(r["step_id"], r["output"]) for r in results] == [
        ("research", RESEARCH_OUT),
        ("analyse", ANALYSE_OUT),
        ("draft", DRAFT_OUT),
        ("review", REVIEW_OUT),
    ]
    assert [c[:2] for c in CALLS] == [
        ("researcher", "Gather market data on EV adoption in Europe for Q1 2026."),
        ("analyst", f"Analyse findings: {RESEARCH_OUT}"),
        ("writer", f"Draft executive report from: {ANALYSE_OUT}"),
        ("reviewer", "QA the draft for accuracy and tone."),
    ]


def test_chain_runs_in_topological_order(mesh):
    asyncio.run(build_ev_report().execute(mesh))

    for earlier, later in itertools.pairwise(CALLS):
        assert earlier[3] <= later[2], f"{later[0]} started before {earlier[0]} ended"


def test_execute_returns_the_documented_step_result_dicts(mesh):
    results = asyncio.run(build_ev_report().execute(mesh))

    assert len(results) == 4
    for r, (step_id, agent) in zip(
        results,
        [
            ("research", "researcher"),
            ("analyse", "analyst"),
            ("draft", "writer"),
            ("review", "reviewer"),
        ],
        strict=True,
    ):
        assert set(r) == {"step_id", "agent", "status", "output", "error", "elapsed_ms"}
        assert (r["step_id"], r["agent"], r["status"], r["error"]) == (
            step_id,
            agent,
            "success",
            None,
        )
        assert r["elapsed_ms"] >= 0
    assert results[0]["elapsed_ms"] >= 150  # the researcher's 0.2 s search


def test_build_returns_a_workflow_with_the_title_team_and_steps():
    wf = build_ev_report()

    assert wf.title == "EV Market Report"
    assert wf.team == "market-intelligence"
    assert [s.step_id for s in wf.steps] == ["research", "analyse", "draft", "review"]


def test_builder_step_accepts_the_documented_keywords(mesh):
    builder = WorkflowBuilder()
    builder.step(
        step_id="prior_step_id",
        agent="researcher",
        task="Gather market data on topic Y.",
    )
    builder.step(
        step_id="research",
        agent="researcher",
        task="Gather market data on topic X.",
        depends_on=["prior_step_id"],  # optional
    )
    workflow = builder.build(title="My Pipeline", team="my-team")

    results = asyncio.run(workflow.execute(mesh))
    assert [(r["step_id"], r["output"]) for r in results] == [
        ("prior_step_id", "DATA<Gather market data on topic Y.>"),
        ("research", "DATA<Gather market data on topic X.>"),
    ]


def test_depending_on_an_undeclared_step_raises_value_error():
    with pytest.raises(ValueError, match="later"):
        (
            WorkflowBuilder()
            .step("early", "analyst", "Analyse: {later.result}", depends_on=["later"])
            .step("later", "researcher", "Gather data.")
            .build(title="Out of order")
        )


def test_build_without_steps_raises_value_error():
    with pytest.raises(ValueError):
        WorkflowBuilder().build(title="Empty")


# -- Result Reference Syntax ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("data_service", "STRUCTURED<Fetch EV registrations.>"),
        ("legacy_service", "LEGACY<Fetch EV registrations.>"),
    ],
)
def test_a_dict_output_is_substituted_by_its_output_or_result_key(mesh, role, expected):
    wf = (
        WorkflowBuilder()
        .step("research", role, "Fetch EV registrations.")
        .step(
            "analyse",
            "analyst",
            "Analyse these findings: {research.result}",
            depends_on=["research"],
        )
        .build(title="Dict output")
    )
    results = asyncio.run(wf.execute(mesh))

    assert results[1]["output"] == f"INSIGHTS<Analyse these findings: {expected}>"


def test_a_substituted_value_is_capped_at_500_characters(mesh):
    wf = (
        WorkflowBuilder()
        .step("research", "archivist", "Dump the archive.")
        .step(
            "analyse",
            "analyst",
            "Analyse these findings: {research.result}",
            depends_on=["research"],
        )
        .build(title="Long output")
    )
    results = asyncio.run(wf.execute(mesh))

    task = _calls("analyst")[0][1]
    assert task == "Analyse these findings: " + "x" * 500
    assert results[1]["status"] == "success"


# -- Registering and Executing ------------------------------------------------------------------


def test_register_without_redis_returns_the_workflow_id():
    wf = build_ev_report()
    redis_store = None

    workflow_id = asyncio.run(wf.register(redis_store))

    assert isinstance(workflow_id, str) and workflow_id
    assert workflow_id == wf.workflow_id


def test_execute_with_redis_store_none_runs_in_memory(mesh):
    redis_store = None
    results = asyncio.run(
        build_ev_report().execute(mesh, redis_store=redis_store, timeout_per_step=300)
    )

    assert [r["status"] for r in results] == ["success"] * 4


def test_a_step_past_timeout_per_step_is_marked_timeout(mesh):
    wf = (
        WorkflowBuilder()
        .step("quick", "analyst", "Quick look.")
        .step("stuck", "slowpoke", "Wait for a reply that never comes.")
        .step("after_stuck", "writer", "Write up: {stuck.result}", depends_on=["stuck"])
        .build(title="Timeouts")
    )

    started = time.perf_counter()
    results = asyncio.run(wf.execute(mesh, timeout_per_step=0.3))
    elapsed = time.perf_counter() - started

    by_id = {r["step_id"]: r for r in results}
    assert by_id["quick"]["status"] == "success"
    assert by_id["stuck"]["status"] == "timeout"
    assert by_id["stuck"]["output"] is None
    assert "after_stuck" not in by_id  # blocked by the timed-out step
    assert elapsed < 10  # not timed out, "stuck" would hang 30 s


# -- Full Example: Research-to-Report Pipeline ---------------------------------------------------


class CustomAgent:
    """Stand-in for ``jarviscore.CustomAgent`` (not part of batten: batten's agents are plain
    callables): the Mesh injects itself, the Redis store and a logger into the agent."""

    def __init__(self, mesh, redis_store=None):
        self._mesh = mesh
        self._redis_store = redis_store
        self._logger = logging.getLogger(f"seed003.{type(self).__name__}")


# fmt: off
# Verbatim from the seed, apart from the imports.
class OrchestratorAgent(CustomAgent):
    name = "Orchestrator"
    role = "orchestrator"
    description = "Composes and executes research-to-report workflows."

    async def on_peer_request(self, msg) -> dict:
        mesh = self._mesh  # Mesh injects itself at add() time

        task = msg.data.get("task", "")

        # 1. Compose the DAG
        wf = (
            WorkflowBuilder()
            .step(
                "intel",
                "researcher",
                f"Research the following and return a structured summary: {task}",
            )
            .step(
                "analysis",
                "analyst",
                "Analyse the research and identify three key insights: {intel.result}",
                depends_on=["intel"],
            )
            .step(
                "report",
                "writer",
                "Write a 500-word executive report from these insights: {analysis.result}",
                depends_on=["analysis"],
            )
            .build(title=f"Research pipeline: {task[:60]}", team="research-ops")
        )

        # 2. Register with Redis (enables dashboard visibility)
        workflow_id = await wf.register(self._redis_store)
        self._logger.info("Workflow %s registered", workflow_id)

        # 3. Execute
        results = await wf.execute(
            mesh,
            redis_store=self._redis_store,
            timeout_per_step=600,
        )

        # 4. Return summary
        final_step = next((r for r in results if r["step_id"] == "report"), None)
        return {
            "workflow_id": workflow_id,
            "steps": len(results),
            "successes": sum(1 for r in results if r["status"] == "success"),
            "report": final_step["output"] if final_step else None,
        }
# fmt: on


def test_full_example_orchestrator_returns_the_report_summary(mesh, caplog):
    agent = OrchestratorAgent(mesh)
    msg = types.SimpleNamespace(data={"task": "solid-state batteries"})

    with caplog.at_level(logging.INFO, logger="seed003"):
        summary = asyncio.run(agent.on_peer_request(msg))

    intel = "DATA<Research the following and return a structured summary: solid-state batteries>"
    analysis = f"INSIGHTS<Analyse the research and identify three key insights: {intel}>"
    assert summary == {
        "workflow_id": summary["workflow_id"],
        "steps": 3,
        "successes": 3,
        "report": f"REPORT<Write a 500-word executive report from these insights: {analysis}>",
    }
    assert f"Workflow {summary['workflow_id']} registered" in caplog.messages


# -- Parallel Steps --------------------------------------------------------------------------------


def build_emea():
    # fmt: off
    # Verbatim from the seed.
    wf = (
        WorkflowBuilder()
        # Research and competitive scan run in parallel
        .step("market_research", "researcher", "Gather market size data for EMEA.")
        .step("competitor_scan", "researcher", "Identify top 5 competitors and their positioning.")
        # Synthesis waits for both
        .step(
            "synthesis",
            "analyst",
            "Synthesise market data and competitive landscape: {market_research.result} + {competitor_scan.result}",  # noqa: E501
            depends_on=["market_research", "competitor_scan"],
        )
        .build(title="EMEA Market Analysis")
    )
    # fmt: on
    return wf


def test_independent_steps_run_concurrently_and_the_join_waits_for_both(mesh):
    results = asyncio.run(build_emea().execute(mesh))

    assert [r["status"] for r in results] == ["success"] * 3
    research = _calls("researcher")
    assert len(research) == 2
    (_, _, start_a, end_a), (_, _, start_b, end_b) = research
    # The two searches overlapped (one after the other, one would start after the other ended).
    assert max(start_a, start_b) < min(end_a, end_b)
    ((_, synthesis_task, synthesis_start, _),) = _calls("analyst")
    assert synthesis_start >= max(end_a, end_b)
    assert synthesis_task == (
        "Synthesise market data and competitive landscape: "
        "DATA<Gather market size data for EMEA.> + "
        "DATA<Identify top 5 competitors and their positioning.>"
    )


# -- Error Handling --------------------------------------------------------------------------------


def build_with_failure():
    return (
        WorkflowBuilder()
        .step("market_research", "researcher", "Gather market size data for EMEA.")
        .step("competitor_scan", "scraper", "Identify top 5 competitors and their positioning.")
        .step(
            "synthesis",
            "analyst",
            "Synthesise: {market_research.result} + {competitor_scan.result}",
            depends_on=["market_research", "competitor_scan"],
        )
        .step(
            "sizing_memo",
            "writer",
            "Memo: {market_research.result}",
            depends_on=["market_research"],
        )
        .build(title="EMEA with a failing scan")
    )


def test_a_failed_step_blocks_only_its_dependents(mesh, caplog):
    wf = build_with_failure()

    async def run():
        # fmt: off
        # Verbatim from the seed.
        results = await wf.execute(mesh)
        failures = [r for r in results if r["status"] != "success"]
        for f in failures:
            logger.error("Step %s failed: %s", f["step_id"], f["error"])
        # fmt: on
        return results

    with caplog.at_level(logging.ERROR, logger="seed003"):
        results = asyncio.run(run())

    by_id = {r["step_id"]: r for r in results}
    assert set(by_id) == {"market_research", "competitor_scan", "sizing_memo"}
    assert by_id["competitor_scan"]["status"] == "failure"
    assert by_id["competitor_scan"]["error"] == (
        "competitor site unreachable for: Identify top 5 competitors and their positioning."
    )
    assert by_id["competitor_scan"]["output"] is None
    assert by_id["market_research"]["status"] == "success"
    assert by_id["sizing_memo"]["status"] == "success"
    assert by_id["sizing_memo"]["output"] == "REPORT<Memo: DATA<Gather market size data for EMEA.>>"
    assert _calls("analyst") == []  # synthesis never ran
    assert caplog.messages == [
        "Step competitor_scan failed: competitor site unreachable for: "
        "Identify top 5 competitors and their positioning."
    ]


def test_blocked_steps_are_found_by_comparing_results_to_steps(mesh, caplog):
    wf = build_with_failure()
    results = asyncio.run(wf.execute(mesh))

    with caplog.at_level(logging.WARNING, logger="seed003"):
        # fmt: off
        # Verbatim from the seed.
        if len(results) < len(wf.steps):
            blocked = [s.step_id for s in wf.steps if s.step_id not in {r["step_id"] for r in results}]  # noqa: E501
            logger.warning("Blocked steps: %s", blocked)
        # fmt: on

    assert blocked == ["synthesis"]
    assert caplog.messages == ["Blocked steps: ['synthesis']"]
