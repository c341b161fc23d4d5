"""Seed 001 (a course chapter on enterprise agent-workflow engines): its five patterns --
sequential, parallel, orchestrator-worker, conditional routing, ReAct -- and its
``WorkflowStatus`` lifecycle, each written as a batten workflow whose behaviour is asserted.

The seed's own code is its engine's skeleton (LangGraph, its own step executor), not an API to
call, so each pattern is written here the way a batten user would write it. Human approval is not
in scope here.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from batten import (
    AgentStep,
    LoopLimitError,
    LoopStep,
    MapStep,
    ParallelStep,
    RouteError,
    RouterStep,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
)

# -- 1. Sequential orchestration: each agent's output becomes the next agent's input ----------


def intake_agent(message):
    return f"ticket[{message}]"


def diagnose_agent(message):
    return f"diagnosis of {message}"


def reply_agent(message):
    return f"Dear customer, {message}."


def test_sequential_each_agents_output_is_the_next_agents_input(execute):
    calls = []

    def recorded(fn):
        def agent(message):
            calls.append((fn.__name__, message, time.perf_counter()))
            return fn(message)

        return agent

    wf = Workflow("support_chain", "Customer support chain")
    wf.add_step(AgentStep("intake", recorded(intake_agent), "printer is offline"))
    wf.add_step(AgentStep("diagnose", recorded(diagnose_agent), "{intake.result}"))
    wf.add_step(AgentStep("reply", recorded(reply_agent), "{diagnose.result}"))

    result = execute(wf, WorkflowContext("support_chain"))

    assert result.status == WorkflowStatus.COMPLETED
    assert [c[:2] for c in calls] == [
        ("intake_agent", "printer is offline"),
        ("diagnose_agent", "ticket[printer is offline]"),
        ("reply_agent", "diagnosis of ticket[printer is offline]"),
    ]
    assert result.final_output == "Dear customer, diagnosis of ticket[printer is offline]."
    assert [s.step_id for s in result.steps] == ["intake", "diagnose", "reply"]


def test_sequential_conversation_history_is_preserved_through_the_chain(execute):
    def turn(speaker):
        def agent(message, context):
            history = list(context.get("history", []))
            history.append(f"{speaker}: {message}")
            return {"history": history}

        return agent

    wf = Workflow("conversation", "History-preserving chain")
    wf.add_step(ToolStep("greet", lambda: {"history": ["customer: my order is late"]}))
    wf.add_step(AgentStep("triage", turn("triage"), "looking up the order"))
    wf.add_step(AgentStep("shipping", turn("shipping"), "it ships tomorrow"))

    result = execute(wf)

    assert result.context["history"] == [
        "customer: my order is late",
        "triage: looking up the order",
        "shipping: it ships tomorrow",
    ]


# -- 2. Parallel processing: independent sub-tasks run concurrently ----------------------------


def _reviewer(aspect, rendezvous=None):
    async def review(code):
        if rendezvous is None:
            await asyncio.sleep(0.2)
        else:
            # Every branch waits here until all three have arrived: run one after another,
            # the first would wait alone and time out (no wall-clock bound to flake on).
            rendezvous["arrived"] += 1
            if rendezvous["arrived"] == 3:
                rendezvous["all"].set()
            await asyncio.wait_for(rendezvous["all"].wait(), 30)
        return {"aspect": aspect, "lines": len(code.splitlines())}

    review.__name__ = f"{aspect}_reviewer"
    return review


CODE = "def f(x):\n    return eval(x)\n"


def test_parallel_code_review_branches_run_concurrently_and_keep_declaration_order(execute):
    rendezvous = {"arrived": 0, "all": asyncio.Event()}
    review = ParallelStep(
        "code_review",
        steps=[
            ToolStep("security", _reviewer("security", rendezvous), {"code": CODE}),
            ToolStep("style", _reviewer("style", rendezvous), {"code": CODE}),
            ToolStep("performance", _reviewer("performance", rendezvous), {"code": CODE}),
        ],
    )
    wf = Workflow("review", "Parallel code review")
    wf.add_step(review)
    wf.add_step(
        ToolStep("summary", lambda findings: len(findings), {"findings": "{code_review.result}"})
    )

    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert rendezvous["arrived"] == 3
    step = result.step("code_review")
    assert step.output == [
        {"aspect": "security", "lines": 2},
        {"aspect": "style", "lines": 2},
        {"aspect": "performance", "lines": 2},
    ]
    assert sorted(c.step_id for c in step.children) == ["performance", "security", "style"]
    assert all(c.status == StepStatus.COMPLETED for c in step.children)
    assert step.metadata["succeeded"] == 3
    assert result.final_output == 3


# -- 3. Orchestrator-worker: the orchestrator splits the work, workers run one sub-task each ---


def orchestrator(question):
    topics = ["history", "economics", "outlook"]
    return {"subtasks": [f"{question} -- {topic}" for topic in topics]}


async def search_worker(message):
    await asyncio.sleep(0.1)
    return f"found: {message}"


def synthesizer(findings):
    return " | ".join(findings)


def test_orchestrator_worker_fans_out_over_the_orchestrators_plan_and_synthesizes(
    execute, rendezvous
):
    seen = []
    # The three workers must all be running to pass the meeting point: run in turn, the first
    # would wait alone and time out after 30 s.
    meeting = rendezvous(3)

    async def worker(message):
        seen.append(message)
        found = await search_worker(message)
        await meeting.arrive()
        return found

    wf = Workflow("rag", "Orchestrator-worker research")
    wf.add_step(ToolStep("plan", orchestrator, {"question": "EV adoption"}))
    wf.add_step(MapStep("workers", "subtasks", AgentStep("search", worker, "Search for: {item}")))
    wf.add_step(ToolStep("synthesize", synthesizer, {"findings": "{workers.result}"}))

    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert meeting.arrived == 3
    assert sorted(seen) == [
        "Search for: EV adoption -- economics",
        "Search for: EV adoption -- history",
        "Search for: EV adoption -- outlook",
    ]
    workers = result.step("workers")
    assert workers.metadata["items"] == 3
    assert len(workers.children) == 3
    assert result.final_output == (
        "found: Search for: EV adoption -- history | "
        "found: Search for: EV adoption -- economics | "
        "found: Search for: EV adoption -- outlook"
    )


def test_orchestrator_worker_with_an_empty_plan_runs_no_worker(execute):
    wf = Workflow("rag_empty", "Orchestrator-worker, nothing to do")
    wf.add_step(ToolStep("plan", lambda: {"subtasks": []}))
    wf.add_step(MapStep("workers", "subtasks", AgentStep("search", search_worker, "{item}")))
    wf.add_step(ToolStep("synthesize", synthesizer, {"findings": "{workers.result}"}))

    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("workers").output == []
    assert result.final_output == ""


# -- 4. Conditional routing: a classifier sends each request to one specialist -----------------


def classify(message):
    text = message.lower()
    if "invoice" in text or "refund" in text:
        return "billing"
    if "error" in text or "crash" in text:
        return "technical"
    if "poem" in text:
        return "poetry"  # no such specialist
    return "general"


def _specialist(name, calls):
    def specialist(message):
        calls.append(name)
        return f"{name} specialist answers: {message}"

    return specialist


def _routing_workflow(calls):
    wf = Workflow("routing", "Conditional routing")
    wf.add_step(
        RouterStep(
            "route_to_specialist",
            route=AgentStep("classifier", classify, "{intake.result}"),
            branches={
                "billing": AgentStep("billing", _specialist("billing", calls), "{intake.result}"),
                "technical": AgentStep(
                    "technical", _specialist("technical", calls), "{intake.result}"
                ),
                "general": AgentStep("general", _specialist("general", calls), "{intake.result}"),
            },
        ),
        depends_on=["intake"],
    )
    wf.add_step(ToolStep("intake", lambda context: context["request"]), depends_on=[])
    return wf


@pytest.mark.parametrize(
    ("request_text", "branch"),
    [
        ("Where is my refund?", "billing"),
        ("The app shows error 500", "technical"),
        ("What are your opening hours?", "general"),
    ],
)
def test_routing_sends_the_request_to_exactly_the_matching_specialist(
    execute, request_text, branch
):
    calls = []
    result = execute(
        _routing_workflow(calls), WorkflowContext("routing", variables={"request": request_text})
    )

    assert result.status == WorkflowStatus.COMPLETED
    routed = result.step("route_to_specialist")
    assert routed.metadata["branch"] == branch
    assert calls == [branch]
    assert routed.output == f"{branch} specialist answers: {request_text}"
    assert [c.step_id for c in routed.children] == ["classifier", branch]


def test_routing_to_an_unknown_specialist_fails_the_step_naming_the_route(execute):
    calls = []
    result = execute(
        _routing_workflow(calls),
        WorkflowContext("routing", variables={"request": "write me a poem"}),
    )

    assert result.status == WorkflowStatus.FAILED
    routed = result.step("route_to_specialist")
    assert routed.status == StepStatus.FAILED
    assert isinstance(routed.exception, RouteError)
    assert routed.exception.got == "poetry"
    assert sorted(routed.exception.allowed) == ["billing", "general", "technical"]
    assert calls == []


# -- 5. ReAct: reason, act with a tool, observe, until a final answer or the iteration limit ---

FACTS = {"capital of France": "Paris", "population of Paris": "2100000"}


def lookup(query):
    return FACTS.get(query, "unknown")


def calculator(expression):
    left, op, right = expression.split()
    a, b = int(left), int(right)
    return str(a * b if op == "*" else a + b)


TOOLS = {"lookup": lookup, "calculator": calculator}


def react_agent(message, context):
    """One ReAct turn: read the scratchpad, think, call one tool or answer."""
    scratchpad = list(context.get("scratchpad", []))
    observations = [entry["observation"] for entry in scratchpad]
    if message == "How many people live in the capital of France, doubled?":
        if not observations:
            thought, action, arg = "I need the capital first", "lookup", "capital of France"
        elif len(observations) == 1:
            thought, action, arg = (
                "Now its population",
                "lookup",
                f"population of {observations[0]}",
            )
        elif len(observations) == 2:
            thought, action, arg = "Double it", "calculator", f"{observations[1]} * 2"
        else:
            return {"scratchpad": scratchpad, "final_answer": observations[-1]}
    else:
        thought, action, arg = "Let me look that up", "lookup", message
    scratchpad.append(
        {"thought": thought, "action": action, "input": arg, "observation": TOOLS[action](arg)}
    )
    return {"scratchpad": scratchpad}


def _react_workflow(question, max_iterations, on_max_iterations="complete"):
    wf = Workflow("react", "ReAct agent")
    wf.add_step(
        LoopStep(
            "react",
            AgentStep("turn", react_agent, question),
            condition=lambda context, iteration: "final_answer" not in context,
            max_iterations=max_iterations,
            on_max_iterations=on_max_iterations,
        )
    )
    return wf


def test_react_alternates_reasoning_and_tool_calls_until_a_final_answer(execute):
    question = "How many people live in the capital of France, doubled?"
    result = execute(_react_workflow(question, max_iterations=8))

    assert result.status == WorkflowStatus.COMPLETED
    react = result.step("react")
    assert react.metadata == {"iterations": 4, "max_iterations_reached": False}
    assert len(react.children) == 4
    assert result.context["final_answer"] == "4200000"
    assert [(e["action"], e["input"], e["observation"]) for e in result.context["scratchpad"]] == [
        ("lookup", "capital of France", "Paris"),
        ("lookup", "population of Paris", "2100000"),
        ("calculator", "2100000 * 2", "4200000"),
    ]


def test_react_stops_at_the_iteration_limit_without_an_answer(execute):
    result = execute(_react_workflow("meaning of life", max_iterations=3))

    assert result.status == WorkflowStatus.COMPLETED
    react = result.step("react")
    assert react.metadata == {"iterations": 3, "max_iterations_reached": True}
    assert "final_answer" not in result.context
    assert len(result.context["scratchpad"]) == 3
    assert {e["observation"] for e in result.context["scratchpad"]} == {"unknown"}


def test_react_can_treat_the_iteration_limit_as_a_failure(execute):
    result = execute(_react_workflow("meaning of life", max_iterations=2, on_max_iterations="fail"))

    assert result.status == WorkflowStatus.FAILED
    react = result.step("react")
    assert react.status == StepStatus.FAILED
    assert isinstance(react.exception, LoopLimitError)
    assert react.metadata["iterations"] == 2


# -- the seed's customer-service workflow: the patterns combined --------------------------------


def test_customer_service_workflow_classifies_routes_then_drafts_in_parallel(execute):
    """The seed's CustomerServiceWorkflow without its human quality check: classify_inquiry
    (sequential), route_to_specialist (conditional), generate_response (parallel)."""
    calls = []
    wf = Workflow("customer_service", "Customer service")
    wf.add_step(AgentStep("classify_inquiry", classify, "{intake.result}"), depends_on=["intake"])
    wf.add_step(
        RouterStep(
            "route_to_specialist",
            route=lambda context: context.results["classify_inquiry"],
            branches=[
                AgentStep("billing", _specialist("billing", calls), "{intake.result}"),
                AgentStep("general", _specialist("general", calls), "{intake.result}"),
            ],
        )
    )
    wf.add_step(
        ParallelStep(
            "generate_response",
            [
                AgentStep("apology", lambda m: f"Sorry about: {m}", "{route_to_specialist.result}"),
                AgentStep("next_steps", lambda m: f"Next: {m}", "{route_to_specialist.result}"),
            ],
        )
    )
    wf.add_step(ToolStep("intake", lambda context: context["inquiry"]), depends_on=[])

    result = execute(
        wf, WorkflowContext("customer_service", variables={"inquiry": "double invoice"})
    )

    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("classify_inquiry").output == "billing"
    assert result.step("route_to_specialist").metadata["branch"] == "billing"
    assert calls == ["billing"]
    assert result.step("generate_response").output == [
        "Sorry about: billing specialist answers: double invoice",
        "Next: billing specialist answers: double invoice",
    ]


# -- WorkflowConfiguration.max_parallel_steps ---------------------------------------------------


def test_max_parallel_steps_bounds_how_many_steps_run_at_once(execute, in_flight):
    async def work():
        with in_flight:
            await asyncio.sleep(0.05)

    wf = Workflow("bounded", "Bounded", max_parallel_steps=2)
    for i in range(6):
        wf.add_step(ToolStep(f"job{i}", work), depends_on=[])

    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED
    assert in_flight.maximum == 2


# -- WorkflowStatus -------------------------------------------------------------------------

#: The seed's enum, verbatim: name -> value.
SEED_STATUSES = {
    "INITIALIZING": "initializing",
    "RUNNING": "running",
    "PAUSED": "paused",
    "WAITING_APPROVAL": "waiting_approval",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "ROLLBACK": "rollback",
}


@pytest.mark.parametrize(("name", "value"), SEED_STATUSES.items())
def test_workflow_status_has_the_seeds_lifecycle_states(name, value):
    assert WorkflowStatus[name] == value


def test_a_successful_run_ends_completed_and_a_failed_one_failed(execute):
    def boom():
        raise ValueError("bad input")

    ok = Workflow("ok", "ok").add_step(ToolStep("a", lambda: 1))
    bad = Workflow("bad", "bad").add_step(ToolStep("a", boom))

    assert execute(ok).status == WorkflowStatus.COMPLETED == "completed"
    failed = execute(bad)
    assert failed.status == WorkflowStatus.FAILED == "failed"
    assert failed.error == "a: ValueError: bad input"
