"""Nothing is lost: every failure ends as a recorded status with the original type and message."""

from __future__ import annotations

import asyncio

import pytest
from batten import AgentStep, StepStatus, ToolStep, Workflow, WorkflowStatus


class InventoryError(Exception):
    """A user-defined exception raised by a step."""


def raising(exc, kind):
    def sync_tool():
        raise exc

    async def async_tool():
        await asyncio.sleep(0)
        raise exc

    return sync_tool if kind == "sync" else async_tool


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_exception_in_a_step_is_recorded_with_its_type_and_message(execute, kind):
    exc = InventoryError("out of stock: sku-9")
    wf = Workflow("err", "error").add_step(ToolStep("reserve", raising(exc, kind)))
    result = execute(wf)

    step = result.step("reserve")
    assert step.status == StepStatus.FAILED
    assert step.error_type == "InventoryError"
    assert step.error == "out of stock: sku-9"
    assert step.exception is exc
    assert step.is_failure
    assert not step.is_success
    assert step.output is None


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_run_error_names_the_step_the_type_and_the_message(execute, kind):
    exc = InventoryError("out of stock")
    wf = Workflow("err", "error").add_step(ToolStep("reserve", raising(exc, kind)))
    result = execute(wf)
    assert result.status == WorkflowStatus.FAILED
    assert result.error == "reserve: InventoryError: out of stock"


def test_run_error_reports_the_first_failure(execute):
    async def late_failure():
        await asyncio.sleep(0.1)
        raise RuntimeError("second")

    wf = Workflow("err", "first failure")
    wf.add_step(ToolStep("late", late_failure), depends_on=[])
    wf.add_step(ToolStep("early", raising(KeyError("first"), "sync")), depends_on=[])
    result = execute(wf)
    assert result.error.startswith("early: KeyError")
    assert sorted(result.failed_steps) == ["early", "late"]


def test_exception_with_an_empty_message_is_recorded(execute):
    wf = Workflow("err", "empty").add_step(ToolStep("s", raising(RuntimeError(), "sync")))
    step = execute(wf).step("s")
    assert step.status == StepStatus.FAILED
    assert step.error_type == "RuntimeError"
    assert step.error == ""


def test_exception_whose_str_raises_is_still_recorded(execute):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("cannot print me")

    wf = Workflow("err", "unprintable").add_step(ToolStep("s", raising(Unprintable(), "sync")))
    result = execute(wf)
    assert result.step("s").status == StepStatus.FAILED
    assert result.step("s").error_type == "Unprintable"
    assert result.status == WorkflowStatus.FAILED


def test_exception_chained_from_another_keeps_the_outer_type(execute):
    def tool():
        try:
            {}["missing"]
        except KeyError as exc:
            raise LookupError("lookup failed") from exc

    wf = Workflow("err", "chained").add_step(ToolStep("s", tool))
    step = execute(wf).step("s")
    assert step.error_type == "LookupError"
    assert step.error == "lookup failed"
    assert isinstance(step.exception.__cause__, KeyError)


def test_agent_exception_is_recorded_like_a_tool_exception(execute):
    def agent(message):
        raise PermissionError(f"refused: {message}")

    wf = Workflow("err", "agent").add_step(AgentStep("think", agent, "plan"))
    step = execute(wf).step("think")
    assert step.status == StepStatus.FAILED
    assert step.error_type == "PermissionError"
    assert step.error == "refused: plan"


class Opaque:
    """An arbitrary object with no special protocol."""


@pytest.mark.parametrize(
    "value",
    [None, 0, "", [], (1, 2), {1, 2}, Opaque(), print, b"\x00bytes", 3.5],
    ids=[
        "None",
        "zero",
        "empty-str",
        "list",
        "tuple",
        "set",
        "object",
        "builtin",
        "bytes",
        "float",
    ],
)
def test_step_may_return_any_value_and_it_is_passed_through_unchanged(execute, value):
    wf = Workflow("ret", "return value").add_step(ToolStep("s", lambda: value))
    result = execute(wf)
    assert result.step("s").status == StepStatus.COMPLETED
    assert result.step("s").output is value
    assert result.final_output is value


def test_dict_output_with_non_string_keys_does_not_crash_the_run(execute):
    wf = Workflow("ret", "odd dict")
    wf.add_step(ToolStep("odd", lambda: {1: "one", (2, 3): "pair", "name": "x"}))
    wf.add_step(ToolStep("after", lambda context: context.get("name")))
    result = execute(wf)
    assert result.step("odd").status in {StepStatus.COMPLETED, StepStatus.FAILED}
    assert result.status in {WorkflowStatus.COMPLETED, WorkflowStatus.FAILED}


def test_agent_returning_a_dict_output_merges_it_into_the_variables(execute):
    wf = Workflow("ret", "dict agent")
    wf.add_step(AgentStep("plan", lambda message: {"plan": message}, "steps"))
    wf.add_step(ToolStep("read", lambda context: context["plan"]))
    assert execute(wf).final_output == "steps"


@pytest.mark.parametrize(
    ("condition", "error_type"),
    [
        (lambda ctx: 1 / 0, "ZeroDivisionError"),
        (lambda ctx: ctx["missing"], "KeyError"),
        (lambda: True, "TypeError"),
    ],
    ids=["ZeroDivisionError", "KeyError", "wrong-signature"],
)
def test_condition_that_raises_fails_the_step_with_that_exception(execute, condition, error_type):
    ran = []
    wf = Workflow("cond", "raising condition")
    wf.add_step(ToolStep("guarded", lambda: ran.append("guarded")).add_condition(condition))
    wf.add_step(ToolStep("after", lambda: ran.append("after")))
    wf.add_step(ToolStep("independent", lambda: "ok"), depends_on=[])
    result = execute(wf)

    assert result.step("guarded").status == StepStatus.FAILED
    assert result.step("guarded").error_type == error_type
    assert result.step("after").status == StepStatus.BLOCKED
    assert result.step("independent").status == StepStatus.COMPLETED
    assert result.status == WorkflowStatus.FAILED
    assert ran == []


def test_condition_returning_a_truthy_non_bool_runs_the_step(execute):
    wf = Workflow("cond", "truthy")
    wf.add_step(ToolStep("truthy", lambda: 1).add_condition(lambda ctx: "yes"), depends_on=[])
    wf.add_step(ToolStep("falsy", lambda: 1).add_condition(lambda ctx: []), depends_on=[])
    result = execute(wf)
    assert result.step("truthy").status == StepStatus.COMPLETED
    assert result.step("falsy").status == StepStatus.SKIPPED


def test_tool_called_with_wrong_arguments_fails_with_type_error(execute):
    wf = Workflow("args", "bad args").add_step(ToolStep("add", lambda x, y: x + y, {"x": 1}))
    step = execute(wf).step("add")
    assert step.status == StepStatus.FAILED
    assert step.error_type == "TypeError"


def test_base_exception_subclass_other_than_interrupts_is_recorded(execute):
    class Unusual(BaseException):
        pass

    wf = Workflow("err", "base exception")
    wf.add_step(ToolStep("weird", raising(Unusual("odd"), "sync")), depends_on=[])
    wf.add_step(ToolStep("fine", lambda: "fine"), depends_on=[])
    result = execute(wf)
    assert result.step("weird").status == StepStatus.FAILED
    assert result.step("weird").error_type == "Unusual"
    assert result.step("fine").status == StepStatus.COMPLETED


def test_template_key_missing_from_upstream_output_fails_the_step(execute):
    received = []
    wf = Workflow("tmpl", "missing key")
    wf.add_step(ToolStep("fetch", lambda: {"title": "x"}))
    wf.add_step(AgentStep("use", received.append, "{fetch.result.author}"))
    result = execute(wf)
    assert result.step("use").status == StepStatus.FAILED
    assert result.step("use").error_type == "KeyError"
    assert received == []
