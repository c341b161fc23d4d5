"""Seed 004 (aigen's workflow system): its code examples run on batten as written, apart from
the import lines, with the behaviour the seed documents asserted.

aigen's ``create_agent("research")`` builds an LLM agent; here it is a small stand-in (below)
that returns a :class:`batten.Agent` whose function transforms its input in a
checkable way. The seed's tracing section is aigen's own implementation (OpenAI Agents SDK
traces inside ``execute_deterministic``), not user code, so it has no test here. aigen's
``agent.execute(context, input) -> response`` (used by the branching example) is part of the
same stand-in.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import types
from typing import Any

import batten
import pytest
from batten import (
    Agent,
    DeterministicWorkflow,
    Handoff,
    HandoffError,
    HandoffWorkflow,
    StepStatus,
    WorkflowDefinitionError,
    WorkflowEngine,
    WorkflowStatus,
    create_workflow,
    list_workflow_factories,
    register_workflow_factory,
)
from batten import WorkflowContext as Context
from batten.registry import global_registry

# -- stand-ins for aigen's agent factory ----------------------------------------------------------

#: (agent id, the message it got), in call order.
CALLS: list[tuple[str, object]] = []
#: A test may set "research" to a rendezvous every "research" agent must reach before going on.
MEETING: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()
    MEETING.clear()


BEHAVIOUR = {
    "orchestrator": lambda m: f"TRIAGE<{m}>",
    "research": lambda m: f"NOTES<{m}>",
    "writer": lambda m: f"DRAFT<{m}>",
    "editor": lambda m: f"EDITED<{m}>",
    "technical_writer": lambda m: f"SPEC<{m}>",
    "creative_writer": lambda m: f"STORY<{m}>",
    # the branching example's classifier
    "strategy": lambda m: (
        "technical" if "API" in m else "creative" if "poem" in m.lower() else "general"
    ),
}


def _hands_off(kind, message):
    # The orchestrator (triage) sends writing requests on and answers anything else itself;
    # other agents always pass their work on to the agent they may hand off to.
    return kind != "orchestrator" or "write" in message.lower()


def create_agent(kind, instructions=None, delay=0.0):
    """Stand-in for ``aigen.agents.create_agent(kind, instructions=...)`` (an LLM agent): a
    batten Agent whose output is a checkable function of its input. An agent given a handoff
    (``add_handoff``) passes its output on to it: as a ``{"handoff_to": ...}`` dict from the
    orchestrator, as a ``Handoff`` from the others."""
    transform = BEHAVIOUR.get(kind, lambda m: f"{kind.upper()}<{m}>")

    async def run(message):
        CALLS.append((kind, message))
        if kind == "research" and "research" in MEETING:
            await MEETING["research"].arrive()
        await asyncio.sleep(delay)
        output = transform(message)
        if agent.handoffs and _hands_off(kind, message):
            target = agent.handoffs[0]
            if kind == "orchestrator":
                return {"handoff_to": target, "message": output}
            return Handoff(target, output)
        return output

    if kind == "strategy":
        return _Analyst(kind, transform)
    agent = Agent(kind, run, description=instructions or "")
    return agent


class _Analyst:
    """aigen's agent call outside a workflow: ``await agent.execute(context, input)`` returns a
    response whose ``content`` is the text (used by the seed's branching example)."""

    def __init__(self, kind, transform):
        self.kind, self.transform = kind, transform

    async def execute(self, context, input_text):
        CALLS.append((self.kind, input_text))
        return types.SimpleNamespace(content=self.transform(input_text))


# -- Engine Core -------------------------------------------------------------------------------


def test_context_needs_no_arguments():
    context = Context()

    assert len(context) == 0


async def engine_core(workflow):
    # fmt: off
    # Verbatim from the seed.
    # Create workflow engine
    engine = WorkflowEngine(max_retries=3, retry_delay=5)

    # Execute a workflow with a context
    context = Context()
    result = await engine.execute(workflow, context, "Input prompt")

    # Get workflow status
    status = engine.get_workflow_status(result["workflow_id"])
    # fmt: on
    return engine, result, status


def test_engine_executes_a_workflow_on_the_input_and_reports_its_status():
    workflow = DeterministicWorkflow(agents=[create_agent("research"), create_agent("writer")])

    engine, result, status = asyncio.run(engine_core(workflow))

    assert result["result"] == "DRAFT<NOTES<Input prompt>>"
    assert result["status"] == WorkflowStatus.COMPLETED
    assert status["status"] == WorkflowStatus.COMPLETED == "completed"
    assert status["workflow_id"] == result["workflow_id"] == workflow.workflow_id
    assert (status["steps_completed"], status["total_steps"]) == (2, 2)
    assert status["error"] is None
    assert status["run_id"] == result["run_id"]
    assert engine.max_retries == 3 and engine.retry_delay == 5


def test_engine_max_retries_retries_a_failing_agent_after_retry_delay():
    attempts = []

    async def flaky(message):
        attempts.append(time.perf_counter())
        if len(attempts) < 3:
            raise RuntimeError("model overloaded")
        return f"OK<{message}>"

    engine = WorkflowEngine(max_retries=3, retry_delay=0.1)
    workflow = DeterministicWorkflow(agents=[Agent("flaky", flaky)], name="retried")

    result = asyncio.run(engine.execute(workflow, Context(), "Input prompt"))

    assert result["result"] == "OK<Input prompt>"
    assert result.step("flaky").attempts == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(0.08 <= gap < 1.0 for gap in gaps)


def test_engine_gives_up_after_max_retries():
    calls = []

    async def broken(message):
        calls.append(message)
        raise RuntimeError("model unavailable")

    engine = WorkflowEngine(max_retries=2, retry_delay=0.01)
    workflow = DeterministicWorkflow(agents=[Agent("broken", broken)], name="broken")

    result = asyncio.run(engine.execute(workflow, Context(), "Input prompt"))
    status = engine.get_workflow_status(result["workflow_id"])

    assert len(calls) == 3
    assert result["status"] == WorkflowStatus.FAILED
    assert status["status"] == WorkflowStatus.FAILED
    assert status["error"] == "broken: RuntimeError: model unavailable"


# -- Deterministic Workflow ------------------------------------------------------------------------


async def deterministic_example(engine, context):
    # fmt: off
    # Verbatim from the seed.
    # Create agents
    research_agent = create_agent("research")
    writer_agent = create_agent("writer")
    editor_agent = create_agent("editor")

    # Create workflow with fixed sequence
    workflow = DeterministicWorkflow(
        agents=[research_agent, writer_agent, editor_agent],
        name="content_generation"
    )

    # Execute
    result = await engine.execute(workflow, context, "Generate content about AI")
    final_content = result["result"]
    # fmt: on
    return result, final_content


def test_deterministic_workflow_passes_each_output_to_the_next_agent():
    engine = WorkflowEngine(max_retries=3, retry_delay=5)

    result, final_content = asyncio.run(deterministic_example(engine, Context()))

    assert final_content == "EDITED<DRAFT<NOTES<Generate content about AI>>>"
    assert CALLS == [
        ("research", "Generate content about AI"),
        ("writer", "NOTES<Generate content about AI>"),
        ("editor", "DRAFT<NOTES<Generate content about AI>>"),
    ]
    assert [s.step_id for s in result["steps"]] == ["research", "writer", "editor"]
    assert result["workflow_id"] == "content_generation"
    assert engine.get_workflow_status("content_generation")["status"] == "completed"


# -- Handoff Workflow ----------------------------------------------------------------------------


async def handoff_example(engine, context):
    # fmt: off
    # Verbatim from the seed.
    # Create agents
    triage_agent = create_agent("orchestrator")
    research_agent = create_agent("research")
    writer_agent = create_agent("writer")

    # Configure handoffs
    triage_agent.add_handoff(research_agent.agent_id)
    research_agent.add_handoff(writer_agent.agent_id)

    # Create handoff workflow
    workflow = HandoffWorkflow(
        agents=[triage_agent, research_agent, writer_agent],
        name="dynamic_content"
    )

    # Execute - agents will determine the flow dynamically
    result = await engine.execute(workflow, context, "Research and write about quantum computing")
    # fmt: on
    return workflow, result


REQUEST = "Research and write about quantum computing"


def test_handoff_workflow_follows_the_handoffs_the_agents_choose():
    engine = WorkflowEngine()

    _, result = asyncio.run(handoff_example(engine, Context()))

    assert result["status"] == WorkflowStatus.COMPLETED
    assert CALLS == [
        ("orchestrator", REQUEST),
        ("research", f"TRIAGE<{REQUEST}>"),
        ("writer", f"NOTES<TRIAGE<{REQUEST}>>"),
    ]
    assert result["result"] == f"DRAFT<NOTES<TRIAGE<{REQUEST}>>>"
    step = result.step("dynamic_content")
    assert step.metadata["path"] == ["orchestrator", "research", "writer"]
    assert step.metadata["handoffs"] == 2
    assert engine.get_workflow_status(result["workflow_id"])["status"] == "completed"


def test_handoff_workflow_stops_where_no_agent_hands_off():
    engine = WorkflowEngine()
    workflow, _ = asyncio.run(handoff_example(engine, Context()))
    CALLS.clear()

    result = asyncio.run(engine.execute(workflow, Context(), "What time is it?"))

    assert result["result"] == "TRIAGE<What time is it?>"
    assert result.step("dynamic_content").metadata["path"] == ["orchestrator"]
    assert CALLS == [("orchestrator", "What time is it?")]


def test_handoff_to_an_undeclared_agent_fails_the_run():
    def triage(message):
        return Handoff("research", message)

    def research(message):
        return Handoff("writer", f"NOTES<{message}>")  # never declared with add_handoff

    triage_agent = Agent("orchestrator", triage).add_handoff("research")
    workflow = HandoffWorkflow(
        agents=[triage_agent, Agent("research", research), create_agent("writer")],
        name="undeclared",
    )

    result = asyncio.run(WorkflowEngine().execute(workflow, Context(), REQUEST))

    assert result["status"] == WorkflowStatus.FAILED
    step = result.step("undeclared")
    assert step.status == StepStatus.FAILED
    assert isinstance(step.exception, HandoffError)
    assert step.exception.agent_id == "research"
    assert step.exception.target == "writer"
    assert step.metadata["path"] == ["orchestrator", "research"]
    assert CALLS == []  # the writer never ran


# -- Workflow Factory ------------------------------------------------------------------------------


@pytest.fixture
def aigen_agents():
    """aigen's agents by name (its ``create_agent`` registry), as an app registers them at
    start-up; removed again afterwards."""
    reg = global_registry()
    saved = dict(reg._entries["agent"])
    for kind in (*BEHAVIOUR, "technical_editor", "creative_research", "creative_editor"):
        batten.agent(create_agent(kind), name=kind)
    yield
    reg._entries["agent"] = saved


def test_workflow_factory(aigen_agents, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "my_workflow.yaml").write_text(
        "name: my_workflow\n"
        "inputs: {input: {default: ''}}\n"
        "steps:\n"
        "  - {id: research, kind: agent, message: '{inputs.input}'}\n"
        "  - {id: writer, kind: agent, message: '{research.result}'}\n"
    )

    # fmt: off
    # Verbatim from the seed (its `agents=[...]` placeholder filled in).
    # Register custom workflow
    register_workflow_factory(
        "my_workflow",
        lambda **kwargs: DeterministicWorkflow(agents=[create_agent("editor")], **kwargs),
        {"description": "Custom workflow implementation"}
    )

    # Create a workflow by name
    workflow = create_workflow("content_generation")
    by_name = workflow

    # Create from agent list
    workflow = create_workflow(["research", "writer", "editor"])
    from_list = workflow

    # Create from config file
    workflow = create_workflow("workflows/my_workflow.yaml")
    # fmt: on

    engine = WorkflowEngine()

    def run(wf, text="Explain tides"):
        return asyncio.run(engine.execute(wf, Context(), text))

    assert run(by_name)["result"] == "EDITED<DRAFT<NOTES<Explain tides>>>"
    assert run(from_list)["result"] == "EDITED<DRAFT<NOTES<Explain tides>>>"
    assert from_list.workflow_id == "research-writer-editor"
    assert run(workflow)["result"] == "DRAFT<NOTES<Explain tides>>"
    assert workflow.workflow_id == "my_workflow"
    custom = create_workflow("my_workflow", name="custom")
    assert isinstance(custom, DeterministicWorkflow) and custom.workflow_id == "custom"
    assert run(custom)["result"] == "EDITED<Explain tides>"
    assert list_workflow_factories()["my_workflow"] == {
        "description": "Custom workflow implementation"
    }
    with pytest.raises(WorkflowDefinitionError, match="content_generation, my_workflow"):
        create_workflow("no_such_workflow")


# -- Specialized Workflow Patterns: Branching Workflows ----------------------------------------


async def execute_branching_workflow(context: Context, input_text: str) -> str:
    """Execute a workflow with conditional branching based on content type."""

    # fmt: off
    # Verbatim from the seed.
    # First, analyze the input to determine the content type
    analysis_agent = create_agent("strategy",
                                 instructions="Analyze the input and classify it as technical, creative, or general.")  # noqa: E501

    analysis_response = await analysis_agent.execute(context, input_text)
    content_type = _extract_content_type(analysis_response.content)

    # Create different workflow paths based on content type
    if content_type == "technical":
        workflow = create_workflow([
            "research",
            "technical_writer",  # Specialized technical writer
            "technical_editor"   # Specialized technical editor
        ])
    elif content_type == "creative":
        workflow = create_workflow([
            "creative_research",  # More open-ended research
            "writer",
            "creative_editor"     # Focus on style and engagement
        ])
    else:  # General content
        workflow = create_workflow("content_generation")  # Standard workflow

    # Execute the selected workflow
    engine = WorkflowEngine()
    result = await engine.execute(workflow, context, input_text)

    return result["result"]


def _extract_content_type(analysis_text: str) -> str:
    """Extract content type from analysis text."""
    analysis_text = analysis_text.lower()

    if "technical" in analysis_text:
        return "technical"
    elif "creative" in analysis_text:
        return "creative"
    else:
        return "general"
    # fmt: on


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("Document the REST API", "TECHNICAL_EDITOR<SPEC<NOTES<Document the REST API>>>"),
        ("A poem about rain", "CREATIVE_EDITOR<DRAFT<CREATIVE_RESEARCH<A poem about rain>>>"),
        ("Plan a garden", "EDITED<DRAFT<NOTES<Plan a garden>>>"),
    ],
)
def test_branching_workflow(aigen_agents, request_text, expected):
    assert asyncio.run(execute_branching_workflow(Context(), request_text)) == expected


# -- Specialized Workflow Patterns: Parallel Workflows with Aggregation ------------------------


def create_domain_workflow(domain):
    # The seed leaves this helper undefined: a domain-specific research -> writer pipeline.
    return DeterministicWorkflow(
        agents=[create_agent("research", delay=0.1), create_agent(f"{domain}_writer", delay=0.1)],
        name=f"{domain}_content",
    )


# aigen ships a "content_generation" workflow; on batten an app registers it once at start-up.
register_workflow_factory(
    "content_generation",
    lambda **kwargs: DeterministicWorkflow(
        agents=[
            create_agent("research", delay=0.1),
            create_agent("writer", delay=0.1),
            create_agent("editor", delay=0.1),
        ],
        name="content_generation",
        **kwargs,
    ),
    {"description": "research -> writer -> editor"},
)


async def execute_parallel_workflows(context: Context, input_text: str) -> str:
    """Execute multiple workflows in parallel and aggregate results."""

    # fmt: off
    # Verbatim from the seed.
    # Create different workflow configurations
    workflows = {
        "technical": create_domain_workflow("technical"),
        "creative": create_domain_workflow("creative"),
        "general": create_workflow("content_generation")
    }

    # Create isolated contexts for each workflow
    contexts = {name: Context() for name in workflows.keys()}

    # Execute workflows in parallel
    engine = WorkflowEngine()
    tasks = {
        name: engine.execute(workflow, contexts[name], input_text)
        for name, workflow in workflows.items()
    }

    # Wait for all workflows to complete
    import asyncio
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    workflow_results = dict(zip(tasks.keys(), results))  # noqa: B905

    # Create an aggregation agent to combine results
    aggregator = create_agent("editor",
                            instructions="Combine the different content versions into a cohesive final piece.")  # noqa: E501

    # Prepare combined input for the aggregator
    combined_input = f"Original request: {input_text}\n\n"
    for name, result in workflow_results.items():
        if isinstance(result, Exception):
            combined_input += f"{name.upper()} VERSION: Error - {str(result)}\n\n"  # noqa: RUF010
        else:
            combined_input += f"{name.upper()} VERSION:\n{result.get('result', 'No result')}\n\n"
    # fmt: on

    # The seed's text ends here ("# Get the aggregated re"); the aggregator runs as a
    # one-agent workflow on the same engine.
    aggregated = await engine.execute(
        DeterministicWorkflow(agents=[aggregator], name="aggregate"), context, combined_input
    )
    return aggregated["result"]


def test_parallel_workflows_run_concurrently_and_are_aggregated(rendezvous):
    # Each workflow starts with a "research" agent, and the three must all be running at once
    # to pass the meeting point: run one workflow after another, the first would time out.
    MEETING["research"] = meeting = rendezvous(3)
    final = asyncio.run(execute_parallel_workflows(Context(), "Explain solar panels"))

    assert final == (
        "EDITED<Original request: Explain solar panels\n\n"
        "TECHNICAL VERSION:\nSPEC<NOTES<Explain solar panels>>\n\n"
        "CREATIVE VERSION:\nSTORY<NOTES<Explain solar panels>>\n\n"
        "GENERAL VERSION:\nEDITED<DRAFT<NOTES<Explain solar panels>>>\n\n>"
    )
    assert meeting.arrived == 3


def test_workflows_executed_with_gather_overlap_and_keep_their_own_results(rendezvous):
    MEETING["research"] = meeting = rendezvous(3)  # all three workflows at once, as above
    engine = WorkflowEngine()
    workflows = {
        "technical": create_domain_workflow("technical"),
        "creative": create_domain_workflow("creative"),
        "general": create_workflow("content_generation"),
    }

    async def run():
        tasks = {
            name: engine.execute(workflow, Context(), "Explain solar panels")
            for name, workflow in workflows.items()
        }
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        return dict(zip(tasks.keys(), results, strict=True))

    results = asyncio.run(run())

    assert {name: r["result"] for name, r in results.items()} == {
        "technical": "SPEC<NOTES<Explain solar panels>>",
        "creative": "STORY<NOTES<Explain solar panels>>",
        "general": "EDITED<DRAFT<NOTES<Explain solar panels>>>",
    }
    assert all(r["status"] == WorkflowStatus.COMPLETED for r in results.values())
    assert meeting.arrived == 3
    for name, r in results.items():
        status = engine.get_workflow_status(r["run_id"])
        assert status["workflow_id"] == workflows[name].workflow_id
        assert status["status"] == "completed"
