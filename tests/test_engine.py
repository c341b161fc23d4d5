"""WorkflowEngine (seeds 000 and 004): registry, default retries, input, run status."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from batten import (
    AgentStep,
    RetryPolicy,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowStatus,
)
from batten.engine import WorkflowEngine
from batten.registry import global_registry, tool


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def global_tool_name():
    """A tool name registered process-wide for one test (removed afterwards)."""
    name = f"global_tool_{uuid.uuid4().hex[:8]}"
    tool(lambda: "global", name=name)
    yield name
    global_registry()._entries["tool"].pop(name, None)


class Flaky:
    """Fails ``failures`` times, then returns ``"ok"``."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return "ok"


# -- registry ------------------------------------------------------------------------------------


def test_steps_given_names_resolve_in_the_engine_registry():
    engine = WorkflowEngine(
        tools={"validate_order": lambda order_id: {"order_valid": order_id.startswith("ORD")}},
        agents={"fulfillment_agent": lambda message: f"fulfilled: {message}"},
    )
    wf = (
        Workflow("orders")
        .add_step(ToolStep("validate_order", args={"order_id": "ORD-1"}))
        .add_step(AgentStep("fulfil", "fulfillment_agent", "order ok? {validate_order.result}"))
    )
    result = run(engine.execute_workflow(wf))

    assert result.status == WorkflowStatus.COMPLETED
    assert result.context["order_valid"] is True
    assert result.final_output == "fulfilled: order ok? {'order_valid': True}"


def test_engine_tools_override_process_wide_ones(global_tool_name):
    wf = Workflow("w").add_step(ToolStep("t", global_tool_name))

    overriding = WorkflowEngine(tools={global_tool_name: lambda: "engine"})
    plain = WorkflowEngine()

    assert run(overriding.execute_workflow(wf)).final_output == "engine"
    assert run(plain.execute_workflow(wf)).final_output == "global"


def test_tools_may_be_given_as_a_list_named_by_their_function_name():
    def check_inventory():
        return "in stock"

    engine = WorkflowEngine(tools=[check_inventory])
    wf = Workflow("w").add_step(ToolStep("check_inventory"))

    assert run(engine.execute_workflow(wf)).final_output == "in stock"


def test_an_unresolved_name_raises_before_any_step_runs():
    ran = threading.Event()
    wf = (
        Workflow("w")
        .add_step(ToolStep("first", ran.set))
        .add_step(ToolStep("second", "no_such_tool"))
    )
    engine = WorkflowEngine()

    with pytest.raises(
        WorkflowDefinitionError, match=r"step 'second'.*no tool named 'no_such_tool'"
    ):
        run(engine.execute_workflow(wf))
    assert not ran.is_set()
    with pytest.raises(KeyError):  # a run that never started is not recorded
        engine.get_workflow_status("w")


# -- default retry policy --------------------------------------------------------------------


def test_max_retries_gives_steps_without_a_policy_retries():
    flaky = Flaky(failures=2)
    engine = WorkflowEngine(max_retries=3, retry_delay=0)
    result = run(engine.execute_workflow(Workflow("w").add_step(ToolStep("pay", flaky))))

    step = result.step("pay")
    assert (step.status, step.output, step.attempts) == (StepStatus.COMPLETED, "ok", 3)


def test_max_retries_counts_retries_not_attempts():
    flaky = Flaky(failures=10)
    engine = WorkflowEngine(max_retries=3, retry_delay=0)
    result = run(engine.execute_workflow(Workflow("w").add_step(ToolStep("pay", flaky))))

    assert result.step("pay").status == StepStatus.FAILED
    assert flaky.calls == 4


def test_a_step_with_its_own_policy_keeps_it():
    flaky = Flaky(failures=10)
    step = ToolStep("pay", flaky).with_retry(policy=RetryPolicy(max_attempts=2, initial_interval=0))
    engine = WorkflowEngine(max_retries=5, retry_delay=0)
    run(engine.execute_workflow(Workflow("w").add_step(step)))

    assert flaky.calls == 2


def test_without_max_retries_steps_are_not_retried():
    flaky = Flaky(failures=1)
    result = run(WorkflowEngine().execute_workflow(Workflow("w").add_step(ToolStep("s", flaky))))

    assert result.step("s").status == StepStatus.FAILED
    assert flaky.calls == 1


def test_retry_delay_is_waited_before_a_retry():
    flaky = Flaky(failures=1)
    engine = WorkflowEngine(max_retries=1, retry_delay=0.2)
    started = time.perf_counter()
    result = run(engine.execute_workflow(Workflow("w").add_step(ToolStep("s", flaky))))

    assert result.step("s").output == "ok"
    assert time.perf_counter() - started >= 0.17  # 0.2 s, less at most 10% jitter


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"max_retries": 1, "retry_delay": -1}, "retry_delay"),
        ({"retry_delay": 5}, "retry_delay needs max_retries"),
        ({"max_parallel_steps": 0}, "max_parallel_steps"),
    ],
)
def test_bad_engine_settings_raise(kwargs, message):
    with pytest.raises(WorkflowDefinitionError, match=message):
        WorkflowEngine(**kwargs)


def test_max_parallel_steps_bounds_steps_in_flight(in_flight):
    def work():
        with in_flight:
            time.sleep(0.05)

    wf = Workflow("w")
    for i in range(6):
        wf.add_step(ToolStep(f"s{i}", work), depends_on=[])
    run(WorkflowEngine(max_parallel_steps=2).execute_workflow(wf))

    assert in_flight.maximum == 2


# -- input and context -----------------------------------------------------------------------


def test_execute_puts_the_input_in_the_run_variables():
    seen = {}

    def agent(message, context):
        seen.update(context.to_dict())
        return f"answer to {message}"

    wf = Workflow("w").add_step(
        AgentStep("a", agent).with_input_function(lambda ctx: ctx.get("input"))
    )
    context = WorkflowContext(
        "ctx-id", user_context={"user": "ada"}, variables={"tone": "dry"}, metadata={"m": 1}
    )
    result = run(WorkflowEngine().execute(wf, context, "Input prompt"))

    assert result["result"] == "answer to Input prompt"
    assert result["workflow_id"] == "w"
    assert seen["variables"] == {"tone": "dry", "input": "Input prompt"}
    assert (seen["workflow_id"], seen["user_context"], seen["metadata"]) == (
        "ctx-id",
        {"user": "ada"},
        {"m": 1},
    )
    assert "input" not in context  # the caller's context is not changed


def test_execute_accepts_a_dict_of_variables_or_no_context():
    wf = Workflow("w").add_step(ToolStep("t", lambda context: dict(context.variables)))
    engine = WorkflowEngine()

    assert run(engine.execute(wf, {"a": 1}, "in")).final_output == {"a": 1, "input": "in"}
    assert run(engine.execute(wf, None, "in")).final_output == {"input": "in"}
    assert run(engine.execute_workflow(wf, {"a": 1})).final_output == {"a": 1}
    assert run(engine.execute_workflow(wf)).final_output == {}


def test_execute_rejects_what_is_not_a_workflow_or_context():
    engine = WorkflowEngine()
    with pytest.raises(TypeError, match=r"batten\.Workflow"):
        run(engine.execute_workflow("not a workflow"))
    with pytest.raises(TypeError, match="context"):
        run(engine.execute(Workflow("w").add_step(ToolStep("t", lambda: 1)), ["x"], "in"))


# -- status ----------------------------------------------------------------------------------


def test_status_by_run_id_and_by_workflow_id():
    engine = WorkflowEngine()
    wf = Workflow("report").add_step(ToolStep("a", lambda: 1)).add_step(ToolStep("b", lambda: 2))
    result = run(engine.execute(wf, None, "go"))

    by_run = engine.get_workflow_status(result.run_id)
    by_workflow = engine.get_workflow_status(result["workflow_id"])

    assert by_run == by_workflow
    assert by_run["run_id"] == result.run_id
    assert by_run["workflow_id"] == "report"
    assert by_run["status"] == WorkflowStatus.COMPLETED
    assert (by_run["steps_completed"], by_run["total_steps"]) == (2, 2)
    assert by_run["error"] is None
    assert by_run["execution_time_ms"] == result.total_execution_time_ms
    assert by_run["started_at"] <= by_run["finished_at"]


def test_status_by_workflow_id_is_its_latest_run():
    engine = WorkflowEngine()
    outcomes = iter(["ok", "fail"])

    def step():
        if next(outcomes) == "fail":
            raise RuntimeError("second run broke")

    wf = Workflow("w").add_step(ToolStep("s", step))
    first = run(engine.execute_workflow(wf))
    second = run(engine.execute_workflow(wf))

    latest = engine.get_workflow_status("w")
    assert latest["run_id"] == second.run_id
    assert latest["status"] == WorkflowStatus.FAILED
    assert latest["error"] == "s: RuntimeError: second run broke"
    assert engine.get_workflow_status(first.run_id)["status"] == WorkflowStatus.COMPLETED


def test_a_running_run_is_reported_running():
    engine = WorkflowEngine()
    seen = {}

    async def step():
        seen.update(engine.get_workflow_status("live"))

    run(engine.execute_workflow(Workflow("live").add_step(ToolStep("s", step))))

    assert seen["status"] == WorkflowStatus.RUNNING
    assert (seen["run_id"], seen["finished_at"], seen["steps_completed"]) == (None, None, None)
    assert engine.get_workflow_status("live")["status"] == WorkflowStatus.COMPLETED


def test_a_cancelled_run_is_reported_cancelled():
    engine = WorkflowEngine()

    async def hang():
        await asyncio.sleep(10)

    wf = Workflow("slow").add_step(ToolStep("s", hang))

    async def main():
        task = asyncio.ensure_future(engine.execute_workflow(wf))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert engine.get_workflow_status("slow")["status"] == WorkflowStatus.CANCELLED


def test_an_unknown_id_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="nope-123"):
        WorkflowEngine().get_workflow_status("nope-123")


def test_only_the_latest_1000_runs_are_remembered():
    engine = WorkflowEngine()
    wf = Workflow("many").add_step(ToolStep("s", lambda: 1))

    async def many():
        return [await engine.execute_workflow(wf) for _ in range(1001)]

    results = run(many())

    with pytest.raises(KeyError):
        engine.get_workflow_status(results[0].run_id)
    assert engine.get_workflow_status(results[1].run_id)["run_id"] == results[1].run_id
    assert engine.get_workflow_status("many")["run_id"] == results[-1].run_id
