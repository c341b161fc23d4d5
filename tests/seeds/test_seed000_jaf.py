"""Seed 000 (JAF's workflow orchestration docs): every code example runs on batten as written,
apart from the import lines, and does what the docs say it does.

The agents and tools the docs leave undefined are small real functions below, registered by
name with ``@batten.tool`` / ``@batten.agent`` where the docs refer to them by name only
(``ToolStep("validate_order")``). JAF's own ``Agent(...)`` / ``Tool(...)`` classes are not
batten's: where the docs build one, a plain callable with the same name stands in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import batten
import pytest
from batten import (
    AgentStep,
    ConditionalStep,
    LoopStep,
    ParallelStep,
    PartialFailureError,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowBuilder,
    WorkflowContext,
    WorkflowEngine,
    WorkflowLogger,
    WorkflowStatus,
    execute_workflow_stream,
)

logger = logging.getLogger("seed000")

#: Every agent and tool call: (name, what it was called with).
CALLS: list[tuple[str, object]] = []
#: Exceptions the next calls of a tool raise, by tool name (popped one per call).
FAULTS: dict[str, list[BaseException]] = {}
#: Back-office systems that reject updates (the partial-failure example).
DOWN: set[str] = set()
#: The user store behind create_user_account (the idempotency example).
USERS: dict[str, str] = {}
#: A test may set "meeting" to a rendezvous the two slow customer-setup branches must both reach.
MEETING: dict[str, Any] = {}


#: The tools and agents below registered by name with @batten.tool / @batten.agent.
NAMED_TOOLS = (
    "create_user_account",
    "update_crm",
    "update_billing",
    "update_analytics",
    "quick_validation",
    "heavy_computation",
    "validate_order",
    "check_inventory",
    "process_payment",
    "update_inventory",
    "create_shipping_label",
    "send_confirmation_email",
)
NAMED_AGENTS = ("human_review", "order_validation_agent", "inventory_agent", "fulfillment_agent")


@pytest.fixture(autouse=True)
def _fresh_state():
    CALLS.clear()
    FAULTS.clear()
    DOWN.clear()
    USERS.clear()
    MEETING.clear()
    # Names are process-wide: make sure another test module has not replaced ours.
    for name in NAMED_TOOLS:
        batten.tool(globals()[name])
    for name in NAMED_AGENTS:
        batten.agent(globals()[name])


def _called(name):
    return [arg for n, arg in CALLS if n == name]


def _fault(name):
    queued = FAULTS.get(name)
    if queued:
        raise queued.pop(0)


class ServiceError(Exception):
    """An HTTP error from a back-office service (batten reads ``status_code``: 4xx are final)."""

    def __init__(self, message, status_code):
        super().__init__(message)
        self.status_code = status_code


# -- agents and tools of the small examples ------------------------------------------------------


def welcome_agent(message, context):
    CALLS.append(("welcome_agent", message))
    return f"{message}: {context.get('customer_email', 'unknown email')}"


def account_tool(type, context):
    CALLS.append(("account_tool", type))
    customer = context.user_context.get("customer_id", "anonymous")
    return {"account_id": f"ACC-{customer}", "account_type": type, "verification_status": "done"}


# JAF's `Tool(name="send_email", ...)` is jaf's own class; this plain function stands in for it.
def email_tool(template, to="customer", subject=""):
    CALLS.append(("email_tool", template))
    return {"sent_to": to, "subject": subject, "template": template}


def high_value_agent(message):
    CALLS.append(("high_value_agent", message))
    return {"approved_by": "risk-team", "note": message}


def auto_approve_tool(auto_approve):
    CALLS.append(("auto_approve_tool", auto_approve))
    return {"approved_by": "auto", "auto_approve": auto_approve}


async def database_tool(table):
    await asyncio.sleep(0.2)
    if "meeting" in MEETING:
        await MEETING["meeting"].arrive()
    CALLS.append(("database_tool", table))
    return {"record_created_in": table}


async def manager_agent(message):
    await asyncio.sleep(0.2)
    if "meeting" in MEETING:
        await MEETING["meeting"].arrive()
    CALLS.append(("manager_agent", message))
    return "manager: Alice"


def processing_tool(context):
    """Processes the next order: the previous iteration's output says how many are done."""
    processed = list(context.get("processed", []))
    order = context["orders"][len(processed)]
    CALLS.append(("processing_tool", order))
    return {"processed": [*processed, order]}


def payment_tool(amount=None, retry=False):
    CALLS.append(("payment_tool", {"amount": amount, "retry": retry}))
    _fault("payment_tool")
    return {"payment_successful": True, "amount": amount, "retry": retry}


def review_agent(message):
    CALLS.append(("review_agent", message))
    return f"queued for a human: {message}"


# -- Core Components: Workflow Definition --------------------------------------------------------


def test_workflow_class_runs_the_added_agent_step(execute):
    # fmt: off
    # Verbatim from the docs.
    # Create a simple workflow
    workflow = Workflow(
        workflow_id="customer_onboarding",
        name="Customer Onboarding Process",
        description="Complete customer onboarding workflow"
    )

    # Add steps to workflow
    agent_step = AgentStep("welcome_step", welcome_agent, "Welcome new customer")
    workflow.add_step(agent_step)
    # fmt: on

    result = execute(
        workflow,
        WorkflowContext("customer_onboarding", variables={"customer_email": "a@b.c"}),
    )
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("welcome_step").output == "Welcome new customer: a@b.c"
    assert workflow.name == "Customer Onboarding Process"
    assert workflow.description == "Complete customer onboarding workflow"


def onboarding_workflow():
    # fmt: off
    # Verbatim from the docs (the builder form).
    # Or use the builder pattern
    workflow = WorkflowBuilder("customer_onboarding", "Customer Onboarding") \
        .add_agent_step("welcome", welcome_agent, "Welcome new customer") \
        .add_tool_step("create_account", account_tool, {"type": "standard"}) \
        .build()
    # fmt: on
    return workflow


def test_builder_pattern_runs_the_agent_step_then_the_tool_step(execute):
    workflow = onboarding_workflow()

    result = execute(workflow)

    assert result.status == WorkflowStatus.COMPLETED
    assert [s.step_id for s in result.steps] == ["welcome", "create_account"]
    assert [name for name, _ in CALLS] == ["welcome_agent", "account_tool"]
    assert result.step("create_account").output == {
        "account_id": "ACC-anonymous",
        "account_type": "standard",
        "verification_status": "done",
    }
    assert workflow.workflow_id == "customer_onboarding"
    assert workflow.name == "Customer Onboarding"


# -- Workflow Execution ----------------------------------------------------------------------------


def test_execution_prints_status_time_steps_and_success_rate(capsys):
    workflow = onboarding_workflow()

    async def run():
        # fmt: off
        # Verbatim from the docs.
        # Create execution context
        context = WorkflowContext(
            workflow_id="onboarding_001",
            user_context={"customer_id": "cust_12345"},
            variables={
                "customer_email": "john@example.com",
                "verification_status": "pending"
            },
            metadata={
                "started_by": "system",
                "priority": "high"
            }
        )

        # Execute workflow
        result = await workflow.execute(context)

        print(f"Workflow Status: {result.status}")
        print(f"Execution Time: {result.total_execution_time_ms}ms")
        print(f"Steps Completed: {len(result.steps)}")
        print(f"Success Rate: {result.success_rate}%")
        # fmt: on
        return result

    result = asyncio.run(run())

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Workflow Status: completed"
    assert re.fullmatch(r"Execution Time: \d+(\.\d+)?ms", lines[1])
    assert lines[2:] == ["Steps Completed: 2", "Success Rate: 100.0%"]
    assert result.step("welcome").output == "Welcome new customer: john@example.com"
    assert result.step("create_account").output["account_id"] == "ACC-cust_12345"


# -- Step Types: AgentStep -------------------------------------------------------------------------


def make_customer_service_step():
    # fmt: off
    # Verbatim from the docs, except JAF's Agent.
    # Create an agent
    def instructions(state):
        return "You are a helpful customer service agent."

    # JAF's `Agent(name="CustomerServiceAgent", instructions=instructions, tools=[])` is jaf's
    # own class; batten runs any callable as an agent, so this function stands in for it.
    def customer_agent(message):
        CALLS.append(("customer_agent", message))
        return f"[{instructions(None)}] {message}: resolved"

    # Create agent step
    agent_step = AgentStep(
        step_id="customer_service",
        agent=customer_agent,
        message="Handle customer inquiry about billing"
    )

    # Configure step options
    agent_step.with_timeout(60).with_retry(3)

    # Add execution conditions
    agent_step.add_condition(lambda context: context.variables.get("priority") == "high")
    # fmt: on
    return agent_step


def test_agent_step_runs_when_its_condition_holds(execute):
    agent_step = make_customer_service_step()
    workflow = Workflow("support", "Support").add_step(agent_step)

    result = execute(workflow, WorkflowContext("support", variables={"priority": "high"}))

    step = result.step("customer_service")
    assert step.status == StepStatus.COMPLETED
    assert step.output == (
        "[You are a helpful customer service agent.] Handle customer inquiry about billing: "
        "resolved"
    )
    assert agent_step.timeout == 60
    assert agent_step.retry_policy.max_attempts == 4  # with_retry(3): 3 retries


def test_agent_step_is_skipped_when_its_condition_fails(execute):
    workflow = Workflow("support", "Support").add_step(make_customer_service_step())

    result = execute(workflow, WorkflowContext("support", variables={"priority": "low"}))

    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("customer_service").status == StepStatus.SKIPPED
    assert _called("customer_agent") == []


# -- Step Types: ToolStep --------------------------------------------------------------------------


def test_tool_step_calls_the_tool_with_its_args(execute):
    # fmt: off
    # Verbatim from the docs (email_tool is defined above in place of JAF's Tool).
    # Create tool step
    tool_step = ToolStep(
        step_id="send_welcome_email",
        tool=email_tool,
        args={
            "to": "customer@example.com",
            "subject": "Welcome to our service",
            "template": "welcome_email"
        }
    )

    # Configure step options
    tool_step.with_timeout(30).with_retry(2)
    # fmt: on

    result = execute(Workflow("emails", "Emails").add_step(tool_step))

    assert result.step("send_welcome_email").output == {
        "sent_to": "customer@example.com",
        "subject": "Welcome to our service",
        "template": "welcome_email",
    }
    assert tool_step.timeout == 30
    assert tool_step.retry_policy.max_attempts == 3


# -- Step Types: ConditionalStep -------------------------------------------------------------------


def make_payment_check():
    # fmt: off
    # Verbatim from the docs.
    # Create conditional step
    conditional_step = ConditionalStep(
        step_id="payment_check",
        condition=lambda context: context.variables.get("payment_amount", 0) > 1000,
        true_step=AgentStep("approval", high_value_agent, "Review high-value transaction"),
        false_step=ToolStep("auto_approve", auto_approve_tool, {"auto_approve": True})
    )
    # fmt: on
    return conditional_step


def test_conditional_step_sends_a_high_value_payment_to_the_agent(execute):
    workflow = Workflow("payments", "Payments").add_step(make_payment_check())

    result = execute(workflow, WorkflowContext("payments", variables={"payment_amount": 5000}))

    step = result.step("payment_check")
    assert step.status == StepStatus.COMPLETED
    assert step.metadata["branch"] == "approval"
    assert [c.step_id for c in step.children] == ["approval"]
    assert step.output == {"approved_by": "risk-team", "note": "Review high-value transaction"}
    assert result.context["approved_by"] == "risk-team"
    assert _called("auto_approve_tool") == []


def test_conditional_step_auto_approves_a_small_payment(execute):
    workflow = Workflow("payments", "Payments").add_step(make_payment_check())

    result = execute(workflow, WorkflowContext("payments", variables={"payment_amount": 50}))

    step = result.step("payment_check")
    assert step.metadata["branch"] == "auto_approve"
    assert step.output == {"approved_by": "auto", "auto_approve": True}
    assert _called("high_value_agent") == []


# -- Step Types: ParallelStep ----------------------------------------------------------------------


def make_customer_setup():
    # fmt: off
    # Verbatim from the docs.
    # Create steps for parallel execution
    create_record_step = ToolStep("create_record", database_tool, {"table": "customers"})
    send_email_step = ToolStep("send_email", email_tool, {"template": "welcome"})
    assign_manager_step = AgentStep("assign_manager", manager_agent, "Assign account manager")

    # Create parallel step
    parallel_step = ParallelStep(
        step_id="customer_setup",
        steps=[create_record_step, send_email_step, assign_manager_step],
        wait_for_all=True  # Wait for all steps to complete
    )

    # Configure timeout
    parallel_step.with_timeout(120)
    # fmt: on
    return parallel_step


def test_parallel_step_runs_every_branch_at_once(execute, rendezvous):
    # The two slow branches must both be running to pass the meeting point: run in turn, the
    # first would wait alone and time out after 30 s.
    MEETING["meeting"] = meeting = rendezvous(2)
    parallel_step = make_customer_setup()

    result = execute(Workflow("setup", "Setup").add_step(parallel_step))

    step = result.step("customer_setup")
    assert step.status == StepStatus.COMPLETED
    assert step.output == [
        {"record_created_in": "customers"},
        {"sent_to": "customer", "subject": "", "template": "welcome"},
        "manager: Alice",
    ]
    assert sorted(c.step_id for c in step.children) == [
        "assign_manager",
        "create_record",
        "send_email",
    ]
    assert all(c.status == StepStatus.COMPLETED for c in step.children)
    assert meeting.arrived == 2
    assert parallel_step.timeout == 120


# -- Step Types: LoopStep --------------------------------------------------------------------------


def make_process_orders():
    # fmt: off
    # Verbatim from the docs.
    # Create step to execute in loop
    process_step = ToolStep("process_item", processing_tool, {})

    # Create loop step with condition
    loop_step = LoopStep(
        step_id="process_orders",
        step=process_step,
        condition=lambda context, iteration: iteration < len(context.variables.get("orders", [])),
        max_iterations=10
    )

    # Configure timeout
    loop_step.with_timeout(300)
    # fmt: on
    return loop_step


def test_loop_step_processes_each_order_once(execute):
    orders = ["ORD-1", "ORD-2", "ORD-3"]
    workflow = Workflow("orders", "Orders").add_step(make_process_orders())

    result = execute(workflow, WorkflowContext("orders", variables={"orders": orders}))

    step = result.step("process_orders")
    assert step.status == StepStatus.COMPLETED
    assert step.metadata == {"iterations": 3, "max_iterations_reached": False}
    assert len(step.children) == 3
    assert _called("processing_tool") == orders
    assert result.context["processed"] == orders


def test_loop_step_stops_at_max_iterations(execute):
    orders = [f"ORD-{i}" for i in range(15)]
    workflow = Workflow("orders", "Orders").add_step(make_process_orders())

    result = execute(workflow, WorkflowContext("orders", variables={"orders": orders}))

    step = result.step("process_orders")
    assert step.metadata == {"iterations": 10, "max_iterations_reached": True}
    assert _called("processing_tool") == orders[:10]


def test_loop_step_with_no_orders_runs_no_iteration(execute):
    workflow = Workflow("orders", "Orders").add_step(make_process_orders())

    result = execute(workflow)

    assert result.step("process_orders").metadata["iterations"] == 0
    assert _called("processing_tool") == []


# -- Advanced Features: Error Handling and Recovery ----------------------------------------------


def make_payment_processing():
    # fmt: off
    # Verbatim from the docs.
    # Create workflow with error handling
    workflow = Workflow("payment_processing", "Payment Processing")

    # Add error handler for specific step
    def payment_error_handler(step_result, context):
        if "timeout" in step_result.error:
            # Return a retry step
            return ToolStep("retry_payment", payment_tool, {"retry": True})
        else:
            # Return a fallback step
            return AgentStep("manual_review", review_agent, "Manual payment review required")

    workflow.add_error_handler("process_payment", payment_error_handler)

    # Configure step-level retry
    payment_step = ToolStep("process_payment", payment_tool, {"amount": 100})
    payment_step.with_retry(max_retries=3).with_timeout(30)
    workflow.add_step(payment_step)
    # fmt: on
    return workflow


def test_payment_succeeds_without_the_error_handler(execute):
    result = execute(make_payment_processing())

    step = result.step("process_payment")
    assert step.status == StepStatus.COMPLETED
    assert step.output == {"payment_successful": True, "amount": 100, "retry": False}
    assert "recovered_by" not in step.metadata


def test_payment_timeout_is_recovered_by_the_handlers_retry_step(execute):
    # An HTTP 408 from the gateway is final for batten's default retry classification, so the
    # step fails at once (no backoff waits) and its error handler takes over.
    FAULTS["payment_tool"] = [ServiceError("gateway timeout after 30s", status_code=408)]

    result = execute(make_payment_processing())

    assert result.status == WorkflowStatus.COMPLETED
    step = result.step("process_payment")
    assert step.status == StepStatus.COMPLETED
    assert step.metadata["recovered_by"] == "retry_payment"
    assert step.output == {"payment_successful": True, "amount": None, "retry": True}
    assert _called("payment_tool") == [
        {"amount": 100, "retry": False},
        {"amount": None, "retry": True},
    ]
    assert _called("review_agent") == []


def test_other_payment_errors_fall_back_to_manual_review(execute):
    FAULTS["payment_tool"] = [ValueError("card declined")]

    result = execute(make_payment_processing())

    assert result.status == WorkflowStatus.COMPLETED
    step = result.step("process_payment")
    assert step.metadata["recovered_by"] == "manual_review"
    assert step.output == "queued for a human: Manual payment review required"
    assert len(_called("payment_tool")) == 1
    assert [c.step_id for c in step.children] == ["process_payment", "manual_review"]


# -- Advanced Features: State Management ---------------------------------------------------------


def test_context_is_updated_with_step_results(capsys):
    workflow = onboarding_workflow()

    async def run():
        # fmt: off
        # Verbatim from the docs.
        # Create context with initial state
        context = WorkflowContext(
            workflow_id="customer_onboarding",
            user_context={"customer_id": "12345"},
            variables={
                "customer_tier": "premium",
                "verification_status": "pending"
            }
        )

        # Context is automatically updated with step results
        # Access updated context after execution
        result = await workflow.execute(context)
        final_context = result.context

        print(f"Final variables: {final_context.variables}")
        print(f"Step results: {[step.output for step in result.steps]}")
        # fmt: on
        return final_context

    final_context = asyncio.run(run())

    assert final_context.variables.to_dict() == {
        "account_id": "ACC-12345",
        "account_type": "standard",
        "customer_tier": "premium",
        "verification_status": "done",
    }
    assert final_context.user_context == {"customer_id": "12345"}
    out = capsys.readouterr().out
    assert "Step results: ['Welcome new customer: unknown email', {'account_id': 'ACC-12345'" in out


# -- Advanced Features: Streaming Execution ------------------------------------------------------


async def stream_and_print(workflow, context):
    # fmt: off
    # Verbatim from the docs.
    # Stream workflow execution
    async for step_result in execute_workflow_stream(workflow, context):
        print(f"Step {step_result.step_id}: {step_result.status}")
        if step_result.is_success:
            print(f"  Output: {step_result.output}")
        elif step_result.is_failure:
            print(f"  Error: {step_result.error}")
        print(f"  Execution time: {step_result.execution_time_ms}ms")
    # fmt: on


def test_streaming_yields_each_step_result_as_it_finishes(capsys):
    context = WorkflowContext("customer_onboarding", variables={"customer_email": "j@x.io"})

    asyncio.run(stream_and_print(onboarding_workflow(), context))

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Step welcome: completed"
    assert lines[1] == "  Output: Welcome new customer: j@x.io"
    assert re.fullmatch(r"  Execution time: \d+(\.\d+)?ms", lines[2])
    assert lines[3] == "Step create_account: completed"
    assert lines[4].startswith("  Output: {'account_id': 'ACC-anonymous'")
    assert len(lines) == 6


def test_streaming_reports_a_failed_step_with_its_error(capsys):
    def charge(amount):
        raise ValueError(f"amount {amount} exceeds the card limit")

    workflow = Workflow("charge", "Charge")
    workflow.add_step(ToolStep("charge", charge, {"amount": 9000}))
    workflow.add_step(ToolStep("receipt", lambda: "receipt"))

    asyncio.run(stream_and_print(workflow, WorkflowContext("charge")))

    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Step charge: failed", "  Error: amount 9000 exceeds the card limit"]
    assert "Step receipt: blocked" in lines
    assert not any(line.startswith("  Output") for line in lines)


# -- Best Practices 1: Design for Idempotency ----------------------------------------------------


@batten.tool
def create_user_account(user_id=None, email=None, upsert=False, context=None):
    user_id = user_id or context["user_id"]
    email = email or context["email"]
    CALLS.append(("create_user_account", user_id))
    if user_id in USERS and not upsert:
        raise ValueError(f"user {user_id} already exists")
    created = user_id not in USERS
    USERS[user_id] = email
    return {"user_id": user_id, "created": created}


def user_exists(user_id):
    return user_id in USERS


def make_idempotency_steps():
    # fmt: off
    # Verbatim from the docs.
    # Good: Idempotent step
    idempotent_step = ToolStep("create_user_account") \
        .with_params_function(
            lambda state: {
                "user_id": state["user_id"],
                "email": state["email"],
                "upsert": True  # Create or update
            }
        )

    # Good: Check before action
    safe_step = ConditionalStep("create_if_not_exists") \
        .condition(lambda state: not user_exists(state["user_id"])) \
        .if_true(ToolStep("create_user_account"))
    # fmt: on
    return idempotent_step, safe_step


USER = {"user_id": "u-1", "email": "u1@example.com"}


def test_idempotent_step_can_run_again_safely(execute):
    idempotent_step, _ = make_idempotency_steps()
    workflow = Workflow("signup", "Signup").add_step(idempotent_step)

    first = execute(workflow, WorkflowContext("signup", variables=USER))
    again = execute(workflow, WorkflowContext("signup", variables=USER))

    assert first.step("create_user_account").output == {"user_id": "u-1", "created": True}
    assert again.status == WorkflowStatus.COMPLETED
    assert again.step("create_user_account").output == {"user_id": "u-1", "created": False}
    assert USERS == {"u-1": "u1@example.com"}


def test_check_before_action_creates_only_a_missing_user(execute):
    _, safe_step = make_idempotency_steps()
    workflow = Workflow("signup", "Signup").add_step(safe_step)

    first = execute(workflow, WorkflowContext("signup", variables=USER))
    again = execute(workflow, WorkflowContext("signup", variables=USER))

    assert first.step("create_if_not_exists").metadata["branch"] == "create_user_account"
    assert first.step("create_if_not_exists").output == {"user_id": "u-1", "created": True}
    assert again.status == WorkflowStatus.COMPLETED
    assert again.step("create_if_not_exists").status == StepStatus.SKIPPED
    assert _called("create_user_account") == ["u-1"]


# -- Best Practices 2: Handle Partial Failures ---------------------------------------------------


def _back_office(system, key):
    if system in DOWN:
        # A 4xx is final for batten's default retry classification: the branch fails at once.
        raise ServiceError(f"{system} rejected the update", status_code=409)
    CALLS.append((f"update_{system}", key))
    return {f"{system}_updated": key}


@batten.tool
def update_crm(customer_id="CUST-0", order_value=None):
    return _back_office("crm", customer_id)


@batten.tool
async def update_billing():
    return _back_office("billing", True)


@batten.tool
async def update_analytics():
    return _back_office("analytics", True)


def make_robust_parallel():
    # fmt: off
    # Verbatim from the docs.
    # Parallel step with failure handling
    robust_parallel = ParallelStep("multi_system_update") \
        .add_branch(ToolStep("update_crm").with_retry(max_attempts=3)) \
        .add_branch(ToolStep("update_billing").with_retry(max_attempts=3)) \
        .add_branch(ToolStep("update_analytics").with_retry(max_attempts=2)) \
        .with_failure_policy("continue_on_partial_failure") \
        .with_minimum_success_count(2)  # Require at least 2 successes
    # fmt: on
    return robust_parallel


def test_partial_failure_with_one_of_three_failing_completes(execute):
    DOWN.add("analytics")
    workflow = Workflow("sync", "Sync").add_step(make_robust_parallel())

    result = execute(workflow)

    assert result.status == WorkflowStatus.COMPLETED
    step = result.step("multi_system_update")
    assert step.status == StepStatus.COMPLETED
    assert step.output == [{"crm_updated": "CUST-0"}, {"billing_updated": True}, None]
    assert step.metadata["succeeded"] == 2
    assert step.metadata["failed"] == 1
    failed = [c for c in step.children if c.is_failure]
    assert [(c.step_id, c.error) for c in failed] == [
        ("update_analytics", "analytics rejected the update")
    ]


def test_partial_failure_with_two_of_three_failing_fails(execute):
    DOWN.update({"analytics", "billing"})
    workflow = Workflow("sync", "Sync").add_step(make_robust_parallel())

    result = execute(workflow)

    assert result.status == WorkflowStatus.FAILED
    step = result.step("multi_system_update")
    assert step.status == StepStatus.FAILED
    assert isinstance(step.exception, PartialFailureError)
    assert step.metadata["succeeded"] == 1
    assert sorted(c.step_id for c in step.children if c.is_failure) == [
        "update_analytics",
        "update_billing",
    ]


# -- Best Practices 3: Use Timeouts Appropriately ------------------------------------------------


@batten.tool
def quick_validation():
    return {"valid": True}


@batten.tool
async def heavy_computation():
    await asyncio.sleep(0.05)
    return {"rows": 1_000}


@batten.agent
def human_review(message):
    return "approved"


def test_steps_with_different_timeouts_run_in_order(execute):
    # fmt: off
    # Verbatim from the docs.
    # Different timeouts for different step types
    workflow = WorkflowBuilder("data_processing") \
        .add_step(
            ToolStep("quick_validation")
            .with_timeout(10)  # Fast operation
        ) \
        .add_step(
            ToolStep("heavy_computation")
            .with_timeout(300)  # Allow 5 minutes
        ) \
        .add_step(
            AgentStep("human_review")
            .with_timeout(3600)  # Allow 1 hour
        ) \
        .build()
    # fmt: on

    result = execute(workflow)

    assert result.status == WorkflowStatus.COMPLETED
    assert [s.step_id for s in result.steps] == [
        "quick_validation",
        "heavy_computation",
        "human_review",
    ]
    assert [s.timeout for s in workflow.steps] == [10, 300, 3600]
    assert result.context["rows"] == 1_000
    assert result.final_output == "approved"


# -- Best Practices 4: Implement Proper Logging --------------------------------------------------


def make_logged_workflow():
    # fmt: off
    # Verbatim from the docs.
    # Custom logger
    class DetailedWorkflowLogger(WorkflowLogger):
        def log_step_start(self, step_name, state):
            logger.info(f"Starting step: {step_name}", extra={
                "workflow_id": state.workflow_id,
                "step_name": step_name,
                "state_keys": list(state.data.keys())
            })

        def log_step_complete(self, step_name, result, duration_ms):
            logger.info(f"Completed step: {step_name} in {duration_ms}ms", extra={
                "step_name": step_name,
                "duration_ms": duration_ms,
                "success": result.success
            })

    # Use custom logger
    workflow = WorkflowBuilder("logged_workflow") \
        .with_logger(DetailedWorkflowLogger()) \
        .build()
    # fmt: on
    return workflow


def test_a_custom_logger_sees_every_step_start_and_end(execute, caplog):
    workflow = make_logged_workflow()
    workflow.add_step(ToolStep("extract", lambda: {"rows": 3}))
    workflow.add_step(ToolStep("load", lambda: {"loaded": True}))

    with caplog.at_level(logging.INFO, logger="seed000"):
        result = execute(workflow, WorkflowContext("logged_workflow", variables={"source": "s3"}))

    assert result.status == WorkflowStatus.COMPLETED
    records = [r for r in caplog.records if r.name == "seed000"]
    assert [r.getMessage().split(" in ")[0] for r in records] == [
        "Starting step: extract",
        "Completed step: extract",
        "Starting step: load",
        "Completed step: load",
    ]
    start_extract, done_extract, start_load, _ = records
    assert start_extract.workflow_id == "logged_workflow"
    assert start_extract.state_keys == ["source"]
    assert start_load.state_keys == ["rows", "source"]
    assert done_extract.success is True
    assert re.fullmatch(r"Completed step: extract in \d+(\.\d+)?ms", done_extract.getMessage())


# -- Example: Complete E-commerce Order Processing -----------------------------------------------

KNOWN_ORDERS = {"ORD-12345"}
STOCK = {"ITEM-001": 10, "ITEM-002": 3}


@batten.tool
def validate_order(order_id):
    CALLS.append(("validate_order", order_id))
    return {"order_valid": order_id in KNOWN_ORDERS}


@batten.tool
async def check_inventory(items):
    CALLS.append(("check_inventory", [i["sku"] for i in items]))
    return {"inventory_available": all(STOCK.get(i["sku"], 0) >= i["quantity"] for i in items)}


@batten.tool
async def process_payment(amount, payment_method):
    CALLS.append(("process_payment", (amount, payment_method)))
    _fault("process_payment")
    return {"payment_successful": True, "charged": amount}


@batten.tool
def update_inventory(items):
    time.sleep(0.1)  # a blocking warehouse client, run on a batten worker thread
    CALLS.append(("update_inventory", [i["sku"] for i in items]))
    return {"inventory_reserved": sum(i["quantity"] for i in items)}


@batten.tool
async def create_shipping_label(address, items):
    await asyncio.sleep(0.1)
    CALLS.append(("create_shipping_label", address["zip"]))
    return {
        "tracking_number": f"TRK-{address['zip']}-{len(items)}",
        "fulfillment_status": "shipped",
    }


@batten.tool
async def send_confirmation_email(customer_email, order_id):
    await asyncio.sleep(0.1)
    CALLS.append(("send_confirmation_email", (customer_email, order_id)))
    return {"confirmation_sent_to": customer_email}


@batten.agent
def order_validation_agent(message):
    CALLS.append(("order_validation_agent", message))
    return "order rejected: unknown order id"


@batten.agent
def inventory_agent(message):
    CALLS.append(("inventory_agent", message))
    return "backorder created"


@batten.agent
async def fulfillment_agent(message):
    CALLS.append(("fulfillment_agent", message))
    return f"done: {message.splitlines()[0]}"


# fmt: off
# Verbatim from the docs, apart from the imports.
async def create_order_processing_workflow():
    """Create a comprehensive order processing workflow."""

    return WorkflowBuilder("ecommerce_order_processing") \
        .description("Complete e-commerce order processing pipeline") \
        .add_step(
            # Step 1: Validate order
            ToolStep("validate_order")
            .with_params_function(
                lambda state: {"order_id": state["order_id"]}
            )
            .with_timeout(30)
            .with_retry(max_attempts=3)
        ) \
        .add_step(
            # Step 2: Check inventory
            ConditionalStep("inventory_check")
            .condition(lambda state: state.get("order_valid", False))
            .if_true(
                ToolStep("check_inventory")
                .with_params_function(
                    lambda state: {"items": state["order_items"]}
                )
            )
            .if_false(
                AgentStep("order_validation_agent")
                .with_input("Handle invalid order")
            )
        ) \
        .add_step(
            # Step 3: Process payment
            ConditionalStep("payment_processing")
            .condition(lambda state: state.get("inventory_available", False))
            .if_true(
                ToolStep("process_payment")
                .with_params_function(
                    lambda state: {
                        "amount": state["order_total"],
                        "payment_method": state["payment_method"]
                    }
                )
                .with_timeout(60)
                .with_retry(max_attempts=2)
            )
            .if_false(
                AgentStep("inventory_agent")
                .with_input("Handle out of stock items")
            )
        ) \
        .add_step(
            # Step 4: Parallel fulfillment
            ConditionalStep("fulfillment_check")
            .condition(lambda state: state.get("payment_successful", False))
            .if_true(
                ParallelStep("order_fulfillment")
                .add_branch(
                    # Update inventory
                    ToolStep("update_inventory")
                    .with_params_function(
                        lambda state: {"items": state["order_items"]}
                    )
                )
                .add_branch(
                    # Generate shipping label
                    ToolStep("create_shipping_label")
                    .with_params_function(
                        lambda state: {
                            "address": state["shipping_address"],
                            "items": state["order_items"]
                        }
                    )
                )
                .add_branch(
                    # Send confirmation email
                    ToolStep("send_confirmation_email")
                    .with_params_function(
                        lambda state: {
                            "customer_email": state["customer_email"],
                            "order_id": state["order_id"]
                        }
                    )
                )
                .add_branch(
                    # Update CRM
                    ToolStep("update_crm")
                    .with_params_function(
                        lambda state: {
                            "customer_id": state["customer_id"],
                            "order_value": state["order_total"]
                        }
                    )
                )
                .with_timeout(120)
                .with_failure_policy("continue_on_partial_failure")
                .with_minimum_success_count(3)
            )
        ) \
        .add_step(
            # Step 5: Final notification
            AgentStep("fulfillment_agent")
            .with_input_function(
                lambda state: f"Complete order fulfillment for order {state['order_id']}"
            )
            .with_context_function(
                lambda state: {
                    "order_status": state.get("fulfillment_status", "unknown"),
                    "customer_tier": state.get("customer_tier", "standard")
                }
            )
        ) \
        .with_error_handler(
            lambda error, step, state: {
                "action": "retry" if "network" in str(error).lower() else "fail",
                "escalate": True,
                "notify_team": True
            }
        ) \
        .build()

async def main():
    """Demonstrate the complete order processing workflow."""

    # Create workflow
    workflow = await create_order_processing_workflow()

    # Create engine
    engine = WorkflowEngine()

    # Create execution context
    context = WorkflowContext(
        workflow_id="order_12345",
        initial_data={
            "order_id": "ORD-12345",
            "customer_id": "CUST-67890",
            "customer_email": "customer@example.com",
            "order_items": [
                {"sku": "ITEM-001", "quantity": 2, "price": 29.99},
                {"sku": "ITEM-002", "quantity": 1, "price": 49.99}
            ],
            "order_total": 109.97,
            "payment_method": "credit_card",
            "shipping_address": {
                "street": "123 Main St",
                "city": "Anytown",
                "state": "CA",
                "zip": "12345"
            },
            "customer_tier": "premium"
        },
        metadata={
            "started_by": "order_service",
            "priority": "normal",
            "source": "web"
        }
    )

    # Execute workflow
    print("🚀 Starting order processing workflow...")
    result = await engine.execute_workflow(workflow, context)

    # Display results
    print(f"✅ Workflow completed with status: {result.status}")
    print(f"⏱️ Total execution time: {result.execution_time_ms}ms")
    print(f"📊 Steps completed: {result.steps_completed}/{result.total_steps}")

    if result.status == "failed":
        print(f"❌ Error: {result.error}")
    else:
        print(f"🎉 Order {context.initial_data['order_id']} processed successfully!")
# fmt: on


ORDER = {
    "order_id": "ORD-12345",
    "customer_id": "CUST-67890",
    "customer_email": "customer@example.com",
    "order_items": [
        {"sku": "ITEM-001", "quantity": 2, "price": 29.99},
        {"sku": "ITEM-002", "quantity": 1, "price": 49.99},
    ],
    "order_total": 109.97,
    "payment_method": "credit_card",
    "shipping_address": {"street": "123 Main St", "city": "Anytown", "state": "CA", "zip": "12345"},
    "customer_tier": "premium",
}


def _find(step_result, step_id):
    """The result named ``step_id`` in ``step_result``'s tree (pre-order); where a workflow
    error handler kept the one run of the step as its only child, that run's own record."""
    if step_result.step_id == step_id:
        while len(step_result.children) == 1 and step_result.children[0].step_id == step_id:
            step_result = step_result.children[0]
        return step_result
    for child in step_result.children:
        found = _find(child, step_id)
        if found is not None:
            return found
    return None


def _branch(result, step_id):
    """The branch a conditional step of ``result`` took."""
    return _find(result.step(step_id), step_id).metadata.get("branch")


def run_order(**changes):
    """Runs the docs' workflow on the docs' order (with ``changes``) as ``main()`` does."""

    async def run():
        workflow = await create_order_processing_workflow()
        engine = WorkflowEngine()
        context = WorkflowContext(workflow_id="order_12345", initial_data={**ORDER, **changes})
        return await engine.execute_workflow(workflow, context)

    return asyncio.run(run())


def test_ecommerce_main_prints_a_completed_run(capsys):
    asyncio.run(main())

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "🚀 Starting order processing workflow..."
    assert lines[1] == "✅ Workflow completed with status: completed"
    assert re.fullmatch(r"⏱️ Total execution time: \d+(\.\d+)?ms", lines[2])
    assert lines[3:] == ["📊 Steps completed: 5/5", "🎉 Order ORD-12345 processed successfully!"]


def test_ecommerce_order_goes_through_every_step_in_order():
    result = run_order()

    assert result.status == WorkflowStatus.COMPLETED
    assert [(s.step_id, s.status) for s in result.steps] == [
        ("validate_order", StepStatus.COMPLETED),
        ("inventory_check", StepStatus.COMPLETED),
        ("payment_processing", StepStatus.COMPLETED),
        ("fulfillment_check", StepStatus.COMPLETED),
        ("fulfillment_agent", StepStatus.COMPLETED),
    ]
    assert (result.steps_completed, result.total_steps) == (5, 5)
    assert result.execution_time_ms == result.total_execution_time_ms > 0
    assert result.step("inventory_check").metadata["branch"] == "check_inventory"
    assert result.step("payment_processing").metadata["branch"] == "process_payment"
    assert result.step("fulfillment_check").metadata["branch"] == "order_fulfillment"
    assert _called("validate_order") == ["ORD-12345"]
    assert _called("check_inventory") == [["ITEM-001", "ITEM-002"]]
    assert _called("process_payment") == [(109.97, "credit_card")]
    assert _called("order_validation_agent") == _called("inventory_agent") == []


def test_ecommerce_fulfillment_branches_all_run_concurrently():
    result = run_order()

    fulfillment = _find(result.step("fulfillment_check"), "order_fulfillment")
    assert sorted(c.step_id for c in fulfillment.children) == [
        "create_shipping_label",
        "send_confirmation_email",
        "update_crm",
        "update_inventory",
    ]
    assert all(c.status == StepStatus.COMPLETED for c in fulfillment.children)
    assert fulfillment.metadata["succeeded"] == 4
    assert fulfillment.output == [
        {"inventory_reserved": 3},
        {"tracking_number": "TRK-12345-2", "fulfillment_status": "shipped"},
        {"confirmation_sent_to": "customer@example.com"},
        {"crm_updated": "CUST-67890"},
    ]
    assert _called("send_confirmation_email") == [("customer@example.com", "ORD-12345")]
    # Three 0.1 s branches one after another would take 0.3 s.
    assert fulfillment.execution_time_ms < 280


def test_ecommerce_final_agent_gets_the_order_message_and_its_context():
    result = run_order()

    (message,) = _called("fulfillment_agent")
    text, _, extra = message.partition("\n\nContext: ")
    assert text == "Complete order fulfillment for order ORD-12345"
    assert json.loads(extra) == {"order_status": "shipped", "customer_tier": "premium"}
    assert result.final_output == "done: Complete order fulfillment for order ORD-12345"


def test_ecommerce_invalid_order_takes_the_if_false_branch():
    result = run_order(order_id="ORD-99999")

    assert result.status == WorkflowStatus.COMPLETED
    assert _branch(result, "inventory_check") == "order_validation_agent"
    assert _called("order_validation_agent") == ["Handle invalid order"]
    assert _called("check_inventory") == [] and _called("process_payment") == []
    # Nothing says the inventory is available, so payment hands over to the inventory agent
    # and there is nothing to fulfil.
    assert _branch(result, "payment_processing") == "inventory_agent"
    assert result.step("fulfillment_check").status == StepStatus.SKIPPED
    assert (result.steps_completed, result.total_steps) == (4, 5)
    assert _called("fulfillment_agent")[0].startswith(
        "Complete order fulfillment for order ORD-99999"
    )


def test_ecommerce_out_of_stock_order_goes_to_the_inventory_agent():
    result = run_order(order_items=[{"sku": "ITEM-002", "quantity": 5, "price": 49.99}])

    assert result.status == WorkflowStatus.COMPLETED
    assert result.context["inventory_available"] is False
    assert _branch(result, "payment_processing") == "inventory_agent"
    assert _called("inventory_agent") == ["Handle out of stock items"]
    assert _called("process_payment") == []
    assert result.step("fulfillment_check").status == StepStatus.SKIPPED


def test_ecommerce_network_failure_is_retried_by_the_error_handler():
    # Both attempts that with_retry(max_attempts=2) allows fail; the handler sees "network"
    # and asks for a retry, which charges the card.
    FAULTS["process_payment"] = [ConnectionError("Network unreachable")] * 2

    result = run_order()

    assert result.status == WorkflowStatus.COMPLETED
    assert len(_called("process_payment")) == 3
    payment = _find(result.step("payment_processing"), "process_payment")
    assert payment.output == {"payment_successful": True, "charged": 109.97}
    assert payment.attempts == 3
    assert _branch(result, "fulfillment_check") == "order_fulfillment"


def test_ecommerce_lasting_network_failure_is_retried_once_then_fails_the_run():
    FAULTS["process_payment"] = [ConnectionError("Network unreachable") for _ in range(10)]

    result = run_order()

    assert result.status == WorkflowStatus.FAILED
    assert "Network unreachable" in result.error
    # with_retry(max_attempts=2), then the handler's one retry of the step (2 attempts again).
    assert len(_called("process_payment")) == 4
    assert result.step("fulfillment_check").status == StepStatus.BLOCKED


def test_ecommerce_main_prints_the_error_of_a_failed_run(capsys):
    FAULTS["process_payment"] = [ValueError("card declined")]

    asyncio.run(main())

    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "✅ Workflow completed with status: failed"
    assert lines[3:] == [
        "📊 Steps completed: 2/5",
        "❌ Error: payment_processing: ValueError: card declined",
    ]


def test_ecommerce_other_failures_fail_the_run():
    FAULTS["process_payment"] = [ValueError("card declined")]

    result = run_order()

    assert result.status == WorkflowStatus.FAILED
    assert len(_called("process_payment")) == 1  # "fail": no retry
    assert "card declined" in result.error
    assert result.step("payment_processing").status == StepStatus.FAILED
    assert result.step("fulfillment_check").status == StepStatus.BLOCKED
    assert result.step("fulfillment_agent").status == StepStatus.BLOCKED
    assert (result.steps_completed, result.total_steps) == (2, 5)


def test_ecommerce_fulfillment_tolerates_one_failed_branch():
    DOWN.add("crm")

    result = run_order()

    assert result.status == WorkflowStatus.COMPLETED
    fulfillment = _find(result.step("fulfillment_check"), "order_fulfillment")
    assert fulfillment.metadata["succeeded"] == 3
    assert fulfillment.output[3] is None
    assert _called("fulfillment_agent")


def test_ecommerce_fulfillment_fails_below_three_successful_branches():
    DOWN.add("crm")

    async def label_down(address, items):
        raise ServiceError("label printer offline", status_code=400)

    engine = WorkflowEngine(tools={"create_shipping_label": label_down})

    async def run():
        workflow = await create_order_processing_workflow()
        context = WorkflowContext(workflow_id="order_12345", initial_data=ORDER)
        return await engine.execute_workflow(workflow, context)

    result = asyncio.run(run())

    assert result.status == WorkflowStatus.FAILED
    assert result.step("fulfillment_check").status == StepStatus.FAILED
    assert result.step("fulfillment_agent").status == StepStatus.BLOCKED
    assert "2 of 4 branches completed" in result.error
