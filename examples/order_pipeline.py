"""An order pipeline: a DAG with parallel branches, a flaky step that is retried and a hanging
attempt that times out, run by batten's native engine.

    validate ──┬── check_inventory (async) ──┬── charge_payment (flaky: retried) ── confirm
               │                   └── recommend (async: first attempt hangs, times out, retried)
               └── score_fraud (sync) ───────┘

Run it with ``python examples/order_pipeline.py``.
"""

from __future__ import annotations

import asyncio
import time

from batten import AgentStep, RetryPolicy, ToolStep, Workflow, WorkflowContext


def validate_order(context):
    """Sync tool: checks the order held in the context's variables."""
    items = context["items"]
    if not items:
        raise ValueError("an order needs at least one item")
    return {"order_valid": True, "order_total": sum(i["price"] * i["qty"] for i in items)}


async def check_inventory(skus):
    """Async tool: pretends to ask a warehouse service."""
    await asyncio.sleep(0.05)
    return {"in_stock": True, "checked": skus}


def score_fraud(total):
    """Sync (CPU or blocking) tool: runs on a batten worker thread, not on the event loop."""
    time.sleep(0.05)
    return {"fraud_score": 0.02 if total < 500 else 0.4}


class FlakyPaymentGateway:
    """Fails with a connection error twice, then charges: the default policy retries those."""

    def __init__(self):
        self.calls = 0

    async def arun(self, amount):
        self.calls += 1
        if self.calls < 3:
            raise ConnectionError(f"payment gateway unavailable (call {self.calls})")
        return {"charged": amount, "payment_id": "PAY-001"}


class Recommender:
    """An async agent whose first call hangs: the attempt is cancelled at its timeout and the
    retry answers."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, message):
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(10)
        return f"customers who bought {message} also bought B-3"


def confirm(message):
    """Sync agent: writes the confirmation."""
    return message


def build_workflow(gateway: FlakyPaymentGateway) -> Workflow:
    """The DAG above, built with JAF-style steps."""
    wf = Workflow("order_pipeline", "Order pipeline", "validate, check, charge, confirm")
    wf.add_step(ToolStep("validate", validate_order), depends_on=[])
    wf.add_step(
        ToolStep("check_inventory", check_inventory, {"skus": ["A-1", "B-2"]}),
        depends_on=["validate"],
    )
    wf.add_step(
        ToolStep("score_fraud", score_fraud, {"total": "{validate.result.order_total}"}),
        depends_on=["validate"],
    )
    wf.add_step(
        AgentStep("recommend", Recommender(), "{check_inventory.result.checked}")
        .with_timeout(0.2)
        .with_retry(policy=RetryPolicy(max_attempts=2, initial_interval=0.01)),
        depends_on=["check_inventory"],
    )
    wf.add_step(
        ToolStep("charge_payment", gateway, {"amount": "{validate.result.order_total}"})
        .with_retry(policy=RetryPolicy(max_attempts=4, initial_interval=0.05))
        .with_timeout(2)
        .add_condition(lambda ctx: ctx["in_stock"] and ctx["fraud_score"] < 0.5),
        depends_on=["check_inventory", "score_fraud"],
    )
    wf.add_step(
        AgentStep("confirm", confirm, "Order confirmed: payment {charge_payment.result.payment_id}")
    )
    return wf


def main() -> None:
    gateway = FlakyPaymentGateway()
    context = WorkflowContext(
        "order-12345",
        user_context={"customer_id": "CUST-1"},
        variables={
            "items": [
                {"sku": "A-1", "price": 29.99, "qty": 2},
                {"sku": "B-2", "price": 49.99, "qty": 1},
            ]
        },
    )
    result = build_workflow(gateway).run(context)
    print(f"status: {result.status}  ({result.total_execution_time_ms:.0f} ms)")
    for step in result.steps:
        detail = f"error={step.error_type}" if step.error else f"output={step.output!r}"
        print(f"  {step.step_id:16} {step.status:10} attempts={step.attempts}  {detail}")
    print(f"final output: {result.final_output}")
    print(f"success rate: {result.success_rate:.0f}%  failed: {result.failed_steps}")


if __name__ == "__main__":
    main()
