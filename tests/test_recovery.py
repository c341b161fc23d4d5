"""Error recovery: fallbacks, error handlers, compensation, continue_on_error, retry budgets."""

from __future__ import annotations

import asyncio

import batten
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


def boom():
    raise ValueError("boom")


def wf_of(*steps, **kwargs):
    wf = Workflow("wf", "wf", **kwargs)
    for s in steps:
        wf.add_step(s)
    return wf


def test_fallback_output_stands_in_after_the_retries(execute):
    tries = []

    def flaky():
        tries.append(1)
        raise ConnectionError("down")

    step = (
        ToolStep("fetch", flaky)
        .with_retry(policy=RetryPolicy(max_attempts=3, initial_interval=0))
        .with_fallback(ToolStep("cache", lambda: {"source": "cache"}))
    )
    after = ToolStep("use", lambda context: context["source"])
    result = execute(wf_of(step, after))
    fetch = result.step("fetch")
    assert len(tries) == 3
    assert fetch.status == StepStatus.COMPLETED
    assert fetch.output == {"source": "cache"}
    assert fetch.attempts == 3
    assert fetch.metadata["recovered_by"] == "cache"
    assert fetch.metadata["error"] == "down"
    assert [c.step_id for c in fetch.children] == ["fetch", "cache"]
    assert result.step("use").output == "cache"


def test_failing_fallback_fails_the_step_with_its_error(execute):
    step = ToolStep("a", boom).with_fallback(ToolStep("b", lambda: 1 / 0))
    a = execute(wf_of(step)).step("a")
    assert a.status == StepStatus.FAILED
    assert a.error_type == "ZeroDivisionError"


def test_add_error_handler_returns_a_recovery_step(execute):
    seen = []

    def handler(step_result, context):
        seen.append((step_result.step_id, step_result.error, context["amount"]))
        if "timeout" in step_result.error:
            return ToolStep("retry_payment", lambda: "retried")
        return AgentStep("manual_review", lambda msg: f"review: {msg}", "Manual review")

    def pay(amount):
        raise RuntimeError("card declined")

    wf = Workflow("payment_processing", "Payment Processing")
    wf.add_step(ToolStep("prepare", lambda: {"amount": 100}))
    wf.add_step(ToolStep("process_payment", pay, {"amount": 100}))
    wf.add_error_handler("process_payment", handler)
    result = execute(wf)
    pay_result = result.step("process_payment")
    assert seen == [("process_payment", "card declined", 100)]
    assert pay_result.status == StepStatus.COMPLETED
    assert pay_result.output == "review: Manual review"
    assert pay_result.metadata["recovered_by"] == "manual_review"
    assert result.status == WorkflowStatus.COMPLETED


def test_error_handler_returning_none_leaves_the_failure(execute):
    wf = wf_of(ToolStep("a", boom))
    wf.add_error_handler("a", lambda r, c: None)
    result = execute(wf)
    assert result.status == WorkflowStatus.FAILED
    assert result.step("a").error == "boom"


def test_error_handler_for_unknown_step_or_not_callable():
    wf = wf_of(ToolStep("a", lambda: 1))
    with pytest.raises(WorkflowDefinitionError, match=r"'a'.*callable"):
        wf.add_error_handler("a", 42)  # type: ignore[arg-type]
    wf.add_error_handler("nope", lambda r, c: None)
    with pytest.raises(WorkflowDefinitionError, match="'nope'"):
        wf.validate()


@pytest.mark.parametrize(
    ("decision", "status", "output"),
    [
        ({"action": "skip"}, StepStatus.SKIPPED, None),
        ({"action": "fallback", "output": "default"}, StepStatus.COMPLETED, "default"),
        (
            {"action": "fallback", "step": ToolStep("alt", lambda: "alt")},
            StepStatus.COMPLETED,
            "alt",
        ),
        ({"action": "fail", "escalate": True}, StepStatus.FAILED, None),
    ],
)
def test_workflow_error_handler_actions(execute, decision, status, output):
    calls = []

    def handler(error, step, state):
        calls.append((type(error).__name__, step.step_id, state["x"]))
        return decision

    wf = wf_of(ToolStep("seed", lambda: {"x": 1}), ToolStep("bad", boom))
    wf._workflow_handler = handler
    result = execute(wf)
    bad = result.step("bad")
    assert calls == [("ValueError", "bad", 1)]
    assert bad.status == status
    assert bad.output == output


def test_workflow_error_handler_retry_reruns_the_step(execute):
    tries = []

    def network():
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("Network unreachable")
        return "paid"

    def handler(error, step, state):
        return {"action": "retry" if "network" in str(error).lower() else "fail", "max_retries": 5}

    wf = wf_of(ToolStep("pay", network))
    wf._workflow_handler = handler
    pay = execute(wf).step("pay")
    assert pay.status == StepStatus.COMPLETED
    assert pay.output == "paid"
    assert pay.attempts == 3
    assert len(tries) == 3


def test_workflow_error_handler_bad_return_fails_the_step(execute):
    wf = wf_of(ToolStep("bad", boom))
    wf._workflow_handler = lambda e, s, st: {"action": "explode"}
    bad = execute(wf).step("bad")
    assert bad.status == StepStatus.FAILED
    assert bad.error_type == "TypeError"
    assert "'bad'" in bad.error and "retry, fail, skip, fallback" in bad.error


@pytest.mark.parametrize(
    "max_retries", [-1, 2**31, 10**20, pytest.param(10**5000, id="10**5000"), 1.5, "3", True]
)
def test_workflow_error_handler_max_retries_out_of_range_fails_the_step(execute, max_retries):
    # A handler's retry budget is range-checked as with_retry(max_retries=...) is: a huge one
    # would retry (nearly) forever; each is a typed error naming the step.
    tries = []

    def flaky():
        tries.append(1)
        raise ConnectionError("Network unreachable")

    wf = wf_of(ToolStep("pay", flaky))
    wf._workflow_handler = lambda e, s, st: {"action": "retry", "max_retries": max_retries}
    pay = execute(wf).step("pay")
    assert pay.status == StepStatus.FAILED
    assert pay.error_type == "WorkflowDefinitionError"
    assert "step 'pay'" in pay.error and "max_retries" in pay.error
    assert len(tries) == 1


def test_compensations_run_in_reverse_completion_order(execute):
    log = []
    wf = Workflow("saga", "saga")
    wf.add_step(
        ToolStep(
            "reserve", lambda: log.append("reserve") or {"reservation": "R1"}
        ).with_compensation(
            ToolStep("release", lambda context: log.append(f"release {context['reservation']}"))
        )
    )
    wf.add_step(
        ToolStep("charge", lambda: log.append("charge") or {"charge": "C1"}).with_compensation(
            ToolStep("refund", lambda context: log.append(f"refund {context['charge']}"))
        )
    )
    wf.add_step(
        ToolStep("ship", boom).with_compensation(ToolStep("unship", lambda: log.append("unship")))
    )
    result = execute(wf)
    assert log == ["reserve", "charge", "refund C1", "release R1"]  # ship never completed
    assert result.status == WorkflowStatus.COMPENSATED
    assert [s.step_id for s in result.steps][-2:] == ["refund", "release"]
    assert result.step("refund").status == StepStatus.COMPLETED
    assert result.error.startswith("ship: ValueError: boom")


def test_failed_compensation_leaves_the_run_failed_but_runs_the_rest(execute):
    log = []
    wf = Workflow("saga", "saga")
    wf.add_step(
        ToolStep("a", lambda: 1).with_compensation(ToolStep("undo_a", lambda: log.append("undo_a")))
    )
    wf.add_step(ToolStep("b", lambda: 2).with_compensation(ToolStep("undo_b", boom)))
    wf.add_step(ToolStep("c", boom))
    result = execute(wf)
    assert result.status == WorkflowStatus.FAILED
    assert log == ["undo_a"]
    assert "compensation failed" in result.error


def test_successful_run_runs_no_compensation(execute):
    log = []
    wf = wf_of(ToolStep("a", lambda: 1).with_compensation(ToolStep("u", lambda: log.append(1))))
    assert execute(wf).status == WorkflowStatus.COMPLETED
    assert log == []


def test_continue_on_error_runs_dependents_and_completes(execute):
    wf = Workflow("w", "w", continue_on_error=True)
    wf.add_step(ToolStep("a", boom))
    wf.add_step(ToolStep("b", lambda context: sorted(context.results)))
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("a").status == StepStatus.FAILED
    assert result.step("b").output == []  # ran without a's output
    assert result.errors == ["a: ValueError: boom"]


def test_max_total_retries_budget_is_shared_across_steps(execute):
    tries = {"a": 0, "b": 0}

    def failing(name):
        tries[name] += 1
        raise ConnectionError(name)

    policy = RetryPolicy(max_attempts=10, initial_interval=0)
    wf = Workflow("w", "w", max_total_retries=4)
    wf.add_step(ToolStep("a", failing, {"name": "a"}).with_retry(policy=policy), depends_on=[])
    wf.add_step(ToolStep("b", failing, {"name": "b"}).with_retry(policy=policy), depends_on=[])
    result = execute(wf)
    assert result.status == WorkflowStatus.FAILED
    assert tries["a"] + tries["b"] == 2 + 4  # first attempts plus the shared budget


def test_max_total_retries_validation():
    with pytest.raises(WorkflowDefinitionError, match="max_total_retries"):
        Workflow("w", "w", max_total_retries=-1)


# -- a workflow-level fallback (seed 002's error_handling.fallback_workflow) -------------------


def _failing(name: str = "main") -> Workflow:
    def boom() -> None:
        raise ValueError("primary broke")

    wf = Workflow(name)
    wf.add_step(ToolStep("ok", lambda: "fine"))
    wf.add_step(ToolStep("boom", boom), depends_on=["ok"])
    return wf


def test_fallback_workflow_runs_from_the_inputs_and_its_outcome_is_the_runs() -> None:
    seen = []

    def backup(context) -> str:
        seen.append(dict(context.variables))
        return "backup answer"

    fallback = Workflow("backup")
    fallback.add_step(ToolStep("answer", backup))
    wf = _failing().with_fallback_workflow(fallback)
    events = []

    async def go():
        from batten.events import stream

        async for event in stream(wf, WorkflowContext("main", variables={"q": 1})):
            events.append((event.kind, event.step_id))
        return event.result

    result = asyncio.run(go())
    assert result.status == WorkflowStatus.COMPLETED
    assert result.final_output == "backup answer" and result.error is None
    assert seen == [{"q": 1}]  # the initial inputs, not the failed run's state
    assert result.step("boom").status == StepStatus.FAILED
    record = result.step("fallback_workflow")
    assert record.metadata == {"workflow_id": "backup", "cause": "boom: ValueError: primary broke"}
    assert [c.step_id for c in record.children] == ["answer"]
    assert ("completed", "fallback_workflow/answer") in events


def test_a_failing_fallback_workflow_fails_the_run_with_both_errors() -> None:
    wf = _failing().with_fallback_workflow(_failing("backup"))
    result = wf.run()
    assert result.status == WorkflowStatus.FAILED
    assert result.error.startswith("boom: ValueError: primary broke; fallback workflow 'backup'")
    assert result.step("fallback_workflow").status == StepStatus.FAILED


def test_fallback_workflow_after_compensation_and_in_a_durable_run(tmp_path) -> None:
    undone = []
    wf = _failing()
    wf.steps[0].with_compensation(ToolStep("undo", lambda: undone.append(1)))
    fallback = Workflow("backup").add_step(ToolStep("answer", lambda: {"from": "backup"}))
    wf.with_fallback_workflow(fallback)
    store = f"sqlite:///{tmp_path}/runs.db"
    result = asyncio.run(wf.execute(store=store))
    assert undone == [1]  # the saga ran first
    assert result.status == WorkflowStatus.COMPLETED
    info = batten.get_workflow_status(result.run_id, store=store)
    assert info.status == WorkflowStatus.COMPLETED and info.result == {"from": "backup"}


def test_fallback_workflow_must_be_another_workflow() -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowDefinitionError, match=r"must be a batten\.Workflow"):
        wf.with_fallback_workflow("backup")  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="its own fallback"):
        wf.with_fallback_workflow(wf)
    assert wf.with_fallback_workflow(None).fallback_workflow is None


def test_retry_failed_refuses_a_run_whose_compensations_ran(tmp_path) -> None:
    def undo_fails() -> None:
        raise RuntimeError("cannot undo")

    wf = _failing()
    wf.steps[0].with_compensation(ToolStep("undo", undo_fails))
    store = f"sqlite:///{tmp_path}/runs.db"
    result = asyncio.run(wf.execute(store=store))
    assert result.status == WorkflowStatus.FAILED and "compensation failed" in result.error
    with pytest.raises(WorkflowDefinitionError, match="its compensations ran"):
        asyncio.run(wf.resume(result.run_id, store=store, retry_failed=True))
    # without retry_failed the stored result comes back, as before
    again = asyncio.run(wf.resume(result.run_id, store=store))
    assert again.status == WorkflowStatus.FAILED
