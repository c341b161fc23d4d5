"""aigen's multi-agent patterns (seed 004): DeterministicWorkflow and HandoffWorkflow."""

from __future__ import annotations

import asyncio
import threading

import pytest
from batten import BattenError, StepStatus, Workflow, WorkflowDefinitionError, WorkflowStatus
from batten.engine import WorkflowEngine
from batten.patterns import Agent, DeterministicWorkflow, Handoff, HandoffError, HandoffWorkflow


def run(workflow, input, engine=None):
    engine = engine or WorkflowEngine()
    return asyncio.run(engine.execute(workflow, None, input))


# -- DeterministicWorkflow -----------------------------------------------------------------------


def test_deterministic_workflow_feeds_each_agent_the_previous_output():
    async def research(message):
        await asyncio.sleep(0)
        return f"notes on {message}"

    workflow = DeterministicWorkflow(
        agents=[
            Agent("research", research),
            Agent("writer", lambda m: f"draft from [{m}]"),
            Agent("editor", lambda m: f"edited <{m}>"),
        ],
        name="content_generation",
    )
    result = run(workflow, "Generate content about AI")

    assert isinstance(workflow, Workflow)
    assert result.status == WorkflowStatus.COMPLETED
    assert [s.step_id for s in result.steps] == ["research", "writer", "editor"]
    assert result.step("research").output == "notes on Generate content about AI"
    assert result.step("writer").output == "draft from [notes on Generate content about AI]"
    assert result["result"] == "edited <draft from [notes on Generate content about AI]>"


def test_deterministic_workflow_accepts_plain_callables_and_suffixes_repeated_ids():
    def shout(message):
        return message.upper()

    def exclaim(message):
        return message + "!"

    workflow = DeterministicWorkflow([shout, exclaim, shout], name="loud")
    result = run(workflow, "hi")

    assert [s.step_id for s in workflow.steps] == ["shout", "exclaim", "shout-2"]
    assert result["result"] == "HI!"


def test_deterministic_workflow_resolves_agent_names_in_the_engine():
    engine = WorkflowEngine(agents={"research": lambda m: f"R({m})", "writer": lambda m: f"W({m})"})
    result = run(DeterministicWorkflow(["research", "writer"]), "x", engine)

    assert result["result"] == "W(R(x))"


def test_a_failed_agent_stops_the_sequence():
    called = []

    def broken(message):
        raise RuntimeError("model unavailable")

    def editor(message):
        called.append(message)

    result = run(DeterministicWorkflow([Agent("writer", broken), Agent("editor", editor)]), "x")

    assert result.status == WorkflowStatus.FAILED
    assert result.step("editor").status == StepStatus.BLOCKED
    assert called == []


def test_deterministic_workflow_needs_agents():
    with pytest.raises(WorkflowDefinitionError, match="empty"):
        DeterministicWorkflow([], name="nothing")


# -- HandoffWorkflow -------------------------------------------------------------------------


def content_team():
    calls = []

    def triage(message):
        calls.append(("triage", message))
        return Handoff("research", f"research: {message}")

    async def research(message):
        calls.append(("research", message))
        return {"handoff_to": "writer", "message": f"facts about {message}"}

    def writer(message):
        calls.append(("writer", message))
        return f"article on {message}"

    agents = [Agent("triage", triage), Agent("research", research), Agent("writer", writer)]
    triage_agent, research_agent, writer_agent = agents
    triage_agent.add_handoff(research_agent.agent_id)
    research_agent.add_handoff(writer_agent.agent_id)
    return agents, calls


def test_handoff_workflow_follows_declared_handoffs():
    agents, calls = content_team()
    workflow = HandoffWorkflow(agents=agents, name="dynamic_content")
    result = run(workflow, "quantum computing")

    assert result.status == WorkflowStatus.COMPLETED
    assert calls == [
        ("triage", "quantum computing"),
        ("research", "research: quantum computing"),
        ("writer", "facts about research: quantum computing"),
    ]
    assert result["result"] == "article on facts about research: quantum computing"
    step = result.step("dynamic_content")
    assert step.metadata["path"] == ["triage", "research", "writer"]
    assert step.metadata["handoffs"] == 2


def test_a_handoff_without_a_message_passes_the_same_message_on():
    a = Agent("a", lambda m: Handoff("b")).add_handoff("b")
    b = Agent("b", lambda m: f"b got {m}")

    assert run(HandoffWorkflow([a, b]), "original")["result"] == "b got original"


def test_an_agent_that_does_not_hand_off_ends_the_workflow_at_once():
    a = Agent("a", lambda m: f"answered {m}").add_handoff("b")
    b = Agent("b", lambda m: pytest.fail("b must not run"))
    result = run(HandoffWorkflow([a, b]), "q")

    assert result["result"] == "answered q"
    assert result.steps[0].metadata["path"] == ["a"]


def test_ping_pong_stops_at_max_handoffs_with_a_handoff_error():
    calls = []

    def ping(message):
        calls.append("a")
        return Handoff("b")

    def pong(message):
        calls.append("b")
        return Handoff("a")

    a, b = Agent("a", ping), Agent("b", pong)
    a.add_handoff(b)
    b.add_handoff(a)
    result = run(HandoffWorkflow([a, b], name="pingpong", max_handoffs=3), "serve")

    step = result.step("pingpong")
    assert result.status == WorkflowStatus.FAILED
    assert step.status == StepStatus.FAILED
    assert step.error_type == "HandoffError"
    assert "at most 3 handoffs" in step.error
    assert calls == ["a", "b", "a", "b"]  # 3 handoffs done, the 4th refused
    assert step.metadata["path"] == ["a", "b", "a", "b"]
    assert isinstance(step.exception, HandoffError)
    assert (step.exception.agent_id, step.exception.target) == ("b", "a")


def test_an_undeclared_handoff_fails_naming_both_agents_and_the_declared_ones():
    a = Agent("a", lambda m: Handoff("c")).add_handoff("b")
    b = Agent("b", lambda m: "b")
    c = Agent("c", lambda m: pytest.fail("c must not run"))
    result = run(HandoffWorkflow([a, b, c], name="h"), "x")

    step = result.step("h")
    assert step.error_type == "HandoffError"
    assert step.error == (
        "agent 'a' handed off to 'c', which it did not declare with add_handoff (declared: b)"
    )


def test_a_handoff_to_an_agent_outside_the_workflow_fails():
    a = Agent("a", lambda m: Handoff("ghost")).add_handoff("ghost")
    result = run(HandoffWorkflow([a], name="h"), "x")

    assert result.step("h").error_type == "HandoffError"
    assert "'ghost', which is not an agent of this workflow" in result.step("h").error


def test_a_handoff_error_is_not_retried_by_the_engine_default():
    calls = []

    def a_fn(message):
        calls.append(message)
        return Handoff("b")

    a = Agent("a", a_fn)
    engine = WorkflowEngine(max_retries=3, retry_delay=0)
    result = run(HandoffWorkflow([a, Agent("b", str)], name="h"), "x", engine)

    assert result.step("h").attempts == 1
    assert calls == ["x"]
    assert issubclass(HandoffError, BattenError)


def test_an_agent_that_raises_fails_the_step_with_its_exception_and_keeps_the_path():
    def broken(message):
        raise ConnectionError("model down")

    a = Agent("a", lambda m: Handoff("b")).add_handoff("b")
    result = run(HandoffWorkflow([a, Agent("b", broken)], name="h"), "x")

    step = result.step("h")
    assert (step.error_type, step.error) == ("ConnectionError", "model down")
    assert step.metadata["path"] == ["a", "b"]


def test_objects_with_agent_id_and_handoffs_take_part():
    class ModelAgent:
        def __init__(self, agent_id, reply):
            self.agent_id = agent_id
            self.reply = reply
            self.handoffs = []

        def add_handoff(self, agent_id):
            self.handoffs.append(agent_id)

        async def arun(self, message):
            return self.reply(message)

    triage = ModelAgent("orchestrator", lambda m: Handoff("writer", m * 2))
    writer = ModelAgent("writer", lambda m: f"wrote {m}")
    triage.add_handoff(writer.agent_id)

    assert run(HandoffWorkflow([triage, writer]), "ab")["result"] == "wrote abab"


def test_sync_agents_run_off_the_event_loop_thread():
    threads = []

    def agent(message):
        threads.append(threading.get_ident())
        return "done"

    async def main():
        threads.append(threading.get_ident())
        return await WorkflowEngine().execute(HandoffWorkflow([Agent("a", agent)]), None, "x")

    assert asyncio.run(main())["result"] == "done"
    loop_thread, agent_thread = threads
    assert agent_thread != loop_thread


def test_agents_declaring_context_receive_it():
    def agent(message, context):
        return f"{message} for {context['customer']}"

    result = asyncio.run(
        WorkflowEngine().execute(HandoffWorkflow([Agent("a", agent)]), {"customer": "Ada"}, "hi")
    )

    assert result["result"] == "hi for Ada"


@pytest.mark.parametrize(
    ("agents", "kwargs", "message"),
    [
        ([], {}, "empty"),
        ([Agent("a", str), Agent("a", repr)], {}, "two agents have the id 'a'"),
        ([Agent("a", str)], {"max_handoffs": -1}, "max_handoffs"),
        ([object()], {}, "has no id"),
        (["by_name"], {}, "callable"),
    ],
)
def test_bad_handoff_workflows_raise_at_creation(agents, kwargs, message):
    with pytest.raises(WorkflowDefinitionError, match=message):
        HandoffWorkflow(agents, **kwargs)


def test_agent_wrapper_declares_handoffs_once_and_is_callable():
    a = Agent("a", lambda m: m + "!", description="shouts")
    b = Agent("b", str)
    a.add_handoff(b).add_handoff("b")

    assert a.handoffs == ["b"]
    assert a("hey") == "hey!"
    assert a.description == "shouts"
    with pytest.raises(WorkflowDefinitionError):
        Agent("", str)
    with pytest.raises(WorkflowDefinitionError):
        Agent("x", "not callable")
