"""Definition errors are raised before any step runs, and name the steps involved."""

from __future__ import annotations

import re

import pytest
from batten import AgentStep, BattenError, RetryPolicy, ToolStep, Workflow, WorkflowDefinitionError


@pytest.fixture
def ran():
    """Ids of steps whose callable was invoked; every test here expects it to stay empty."""
    return []


@pytest.fixture
def step(ran):
    """``step(id)`` builds a ToolStep that records its id in ``ran`` when it runs."""

    def make(step_id, tool_args=None):
        return ToolStep(step_id, lambda **_: ran.append(step_id), tool_args)

    return make


def test_definition_error_is_a_batten_error_and_a_value_error():
    assert issubclass(WorkflowDefinitionError, BattenError)
    assert issubclass(WorkflowDefinitionError, ValueError)


def test_duplicate_step_ids_are_rejected_before_anything_runs(execute, step, ran):
    with pytest.raises(WorkflowDefinitionError, match="fetch"):
        wf = Workflow("dup", "duplicate ids")
        wf.add_step(step("fetch"), depends_on=[])
        wf.add_step(step("other"), depends_on=[])
        wf.add_step(step("fetch"), depends_on=[])
        execute(wf)
    assert ran == []


def test_unknown_dependency_is_rejected_naming_the_step_and_the_missing_dependency(
    execute, step, ran
):
    wf = Workflow("unknown", "unknown dependency")
    wf.add_step(step("fetch"), depends_on=[])
    wf.add_step(step("summarize"), depends_on=["fetch", "translate"])
    with pytest.raises(WorkflowDefinitionError) as info:
        execute(wf)
    assert "summarize" in str(info.value)
    assert "translate" in str(info.value)
    assert ran == []


def test_unknown_dependency_is_rejected_by_run_too(step, ran):
    wf = Workflow("unknown", "unknown dependency")
    wf.add_step(step("summarize"), depends_on=["translate"])
    with pytest.raises(WorkflowDefinitionError, match="translate"):
        wf.run()
    assert ran == []


def cycle_pattern(*ids):
    """A regex matching the cycle written in any rotation, in either direction."""
    options = []
    for order in (list(ids), list(reversed(ids))):
        for i in range(len(order)):
            rotated = order[i:] + order[:i]
            options.append(r"\s*->\s*".join(map(re.escape, [*rotated, rotated[0]])))
    return "|".join(options)


def test_cycle_pattern_helper_matches_rotations_and_reversals():
    pattern = cycle_pattern("a", "b", "c")
    for text in ["a -> b -> c -> a", "b -> c -> a -> b", "c -> b -> a -> c"]:
        assert re.search(pattern, text)
    assert not re.search(pattern, "a -> b -> a")


def test_two_step_cycle_is_rejected_listing_the_cycle(execute, step, ran):
    wf = Workflow("cycle", "two-step cycle")
    wf.add_step(step("a"), depends_on=["b"])
    wf.add_step(step("b"), depends_on=["a"])
    with pytest.raises(WorkflowDefinitionError) as info:
        execute(wf)
    assert re.search(cycle_pattern("a", "b"), str(info.value)), str(info.value)
    assert ran == []


def test_three_step_cycle_behind_a_valid_root_is_rejected_listing_the_cycle(execute, step, ran):
    wf = Workflow("cycle", "three-step cycle")
    wf.add_step(step("root"), depends_on=[])
    wf.add_step(step("plan"), depends_on=["root", "review"])
    wf.add_step(step("write"), depends_on=["plan"])
    wf.add_step(step("review"), depends_on=["write"])
    with pytest.raises(WorkflowDefinitionError) as info:
        execute(wf)
    assert re.search(cycle_pattern("plan", "write", "review"), str(info.value)), str(info.value)
    assert ran == []


def test_self_dependency_is_rejected_as_a_cycle(execute, step, ran):
    wf = Workflow("cycle", "self loop")
    wf.add_step(step("loop"), depends_on=["loop"])
    with pytest.raises(WorkflowDefinitionError, match="loop"):
        execute(wf)
    assert ran == []


@pytest.mark.parametrize("not_callable", [42, object()], ids=repr)
def test_non_callable_agent_is_rejected_by_the_step_constructor(not_callable):
    with pytest.raises(WorkflowDefinitionError, match="writer"):
        AgentStep("writer", not_callable, "hello")


@pytest.mark.parametrize("name", ["no_such_agent", None], ids=repr)
def test_unregistered_agent_name_is_rejected_before_the_run(name, execute):
    # A str or None names a registered agent (None: the step id); unknown names fail at
    # compile time, naming the step, before anything runs.
    ran = []
    wf = Workflow("wf", "wf")
    wf.add_step(ToolStep("first", lambda: ran.append(1)))
    wf.add_step(AgentStep("writer_x", name, "hello"))
    with pytest.raises(WorkflowDefinitionError, match=r"writer_x.*no agent named"):
        wf.validate()
    with pytest.raises(WorkflowDefinitionError, match="writer_x"):
        execute(wf)
    assert ran == []


@pytest.mark.parametrize("not_callable", [42, {"run": 1}, object()], ids=repr)
def test_non_callable_tool_is_rejected_by_the_step_constructor(not_callable):
    with pytest.raises(WorkflowDefinitionError, match="lookup"):
        ToolStep("lookup", not_callable)


def test_object_whose_run_attribute_is_not_callable_is_rejected():
    class NotAnAgent:
        run = "not a method"

    with pytest.raises(WorkflowDefinitionError, match="writer"):
        AgentStep("writer", NotAnAgent(), "hello")


def test_message_template_referencing_a_non_ancestor_is_rejected(execute, ran):
    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("research", lambda: ran.append("research")), depends_on=[])
    wf.add_step(
        AgentStep("write", lambda m: ran.append("write"), "Use {research.result}"), depends_on=[]
    )
    with pytest.raises(WorkflowDefinitionError) as info:
        execute(wf)
    assert "write" in str(info.value)
    assert "research" in str(info.value)
    assert ran == []


def test_message_template_referencing_a_descendant_is_rejected(execute, ran):
    wf = Workflow("tmpl", "template")
    wf.add_step(AgentStep("draft", lambda m: ran.append("draft"), "{polish.result}"))
    wf.add_step(ToolStep("polish", lambda: ran.append("polish")))
    with pytest.raises(WorkflowDefinitionError, match="polish"):
        execute(wf)
    assert ran == []


def test_message_template_referencing_an_unknown_step_is_rejected(execute, ran):
    wf = Workflow("tmpl", "template")
    wf.add_step(AgentStep("write", lambda m: ran.append("write"), "Use {ghost.result.text}"))
    with pytest.raises(WorkflowDefinitionError, match="ghost"):
        execute(wf)
    assert ran == []


def test_tool_arg_template_referencing_a_non_ancestor_is_rejected(execute, step, ran):
    wf = Workflow("tmpl", "template")
    wf.add_step(step("search"), depends_on=[])
    wf.add_step(step("store", {"text": "saved {search.result.id}"}), depends_on=[])
    with pytest.raises(WorkflowDefinitionError) as info:
        execute(wf)
    assert "store" in str(info.value)
    assert "search" in str(info.value)
    assert ran == []


def test_template_referencing_a_transitive_ancestor_is_accepted(execute):
    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("a", lambda: "A"))
    wf.add_step(ToolStep("b", lambda: "B"))
    wf.add_step(AgentStep("c", lambda message: message, "{a.result}{b.result}"))
    assert execute(wf).final_output == "AB"


@pytest.mark.parametrize("seconds", [-1.0, 0.0], ids=["negative", "zero"])
def test_non_positive_timeout_is_rejected_at_once_naming_the_step(seconds):
    step = ToolStep("fetch", lambda: 1)
    with pytest.raises(WorkflowDefinitionError, match="fetch"):
        step.with_timeout(seconds)


def test_zero_max_attempts_is_rejected_at_once_naming_the_step():
    step = ToolStep("fetch", lambda: 1)
    with pytest.raises(WorkflowDefinitionError, match="fetch"):
        step.with_retry(max_attempts=0)


def test_negative_max_retries_is_rejected_at_once_naming_the_step():
    step = AgentStep("think", str, "m")
    with pytest.raises(WorkflowDefinitionError, match="think"):
        step.with_retry(-1)


def test_retry_policy_with_zero_attempts_is_rejected_when_constructed():
    with pytest.raises(WorkflowDefinitionError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_first_definition_error_does_not_leave_the_workflow_half_run(execute, step, ran):
    """A valid prefix of steps must not run when a later step is invalid."""
    wf = Workflow("partial", "valid prefix")
    for step_id in ["one", "two", "three"]:
        wf.add_step(step(step_id))
    wf.add_step(step("four"), depends_on=["three", "missing"])
    with pytest.raises(WorkflowDefinitionError):
        execute(wf)
    assert ran == []


@pytest.mark.parametrize("attempts", [10**20, -1, 2**32, 1.5, "2", True])
def test_step_result_attempts_out_of_range_is_a_typed_error(attempts):
    # pyo3's own conversion raised a bare OverflowError for 10**20.
    from batten import StepResult

    with pytest.raises(WorkflowDefinitionError, match=r"StepResult\.attempts must be an int"):
        StepResult("a", "completed", attempts=attempts)
    with pytest.raises(WorkflowDefinitionError, match=r"StepResult\.attempts"):
        StepResult("a", "completed").replace(attempts=attempts)


def test_step_result_attempts_in_range_is_kept():
    from batten import StepResult

    assert StepResult("a", "completed").attempts == 0
    assert StepResult("a", "completed", attempts=2**32 - 1).attempts == 2**32 - 1
    assert StepResult("a", "completed").replace(attempts=3).attempts == 3
