"""Composite steps: conditional, parallel, map, loop, sub-workflow and router."""

from __future__ import annotations

import asyncio
import time

import pytest
from batten import (
    AgentStep,
    ConditionalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    PartialFailureError,
    RetryPolicy,
    RouteError,
    RouterStep,
    StepStatus,
    SubWorkflowStep,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowStatus,
)
from batten.errors import LoopLimitError


def wf_of(*steps, **kwargs):
    wf = Workflow("wf", "wf", **kwargs)
    for s in steps:
        wf.add_step(s)
    return wf


def boom():
    raise ValueError("boom")


async def nap(seconds=0.2):
    await asyncio.sleep(seconds)
    return seconds


# --- ConditionalStep -------------------------------------------------------------------------


def test_conditional_runs_only_the_chosen_branch_and_merges_its_dict(execute):
    ran = []
    cond = ConditionalStep(
        "check",
        lambda ctx: ctx["amount"] > 1000,
        ToolStep("review", lambda: ran.append("review") or {"route": "review"}),
        ToolStep("auto", lambda: ran.append("auto") or {"route": "auto"}),
    )
    after = ToolStep("after", lambda context: context["route"])
    for amount, want in ((5000, "review"), (10, "auto")):
        ran.clear()
        result = execute(wf_of(cond, after), WorkflowContext("w", variables={"amount": amount}))
        assert result.status == WorkflowStatus.COMPLETED
        assert ran == [want]
        step = result.step("check")
        assert step.output == {"route": want}
        assert step.metadata["branch"] == want
        assert [c.step_id for c in step.children] == [want]
        assert result.step("after").output == want


def test_conditional_fluent_form_without_a_false_branch_is_skipped(execute):
    cond = (
        ConditionalStep("gate")
        .condition(lambda s: s.get("ok", False))
        .if_true(ToolStep("work", lambda: "done"))
    )
    after = ToolStep("after", lambda: "ran anyway")
    result = execute(wf_of(cond, after))
    assert result.step("gate").status == StepStatus.SKIPPED
    assert result.step("gate").metadata == {"condition": False, "branch": None}
    assert result.step("after").output == "ran anyway"
    assert result.status == WorkflowStatus.COMPLETED


def test_conditional_branch_failure_fails_the_step_with_the_branch_error(execute):
    result = execute(wf_of(ConditionalStep("c", lambda ctx: True, ToolStep("bad", boom))))
    step = result.step("c")
    assert step.status == StepStatus.FAILED
    assert (step.error_type, step.error) == ("ValueError", "boom")
    assert [c.step_id for c in step.children] == ["bad"]


def test_conditional_async_condition(execute):
    async def cond(ctx):
        await asyncio.sleep(0)
        return True

    result = execute(wf_of(ConditionalStep("c", cond, ToolStep("yes", lambda: 1))))
    assert result.step("c").output == 1


def test_conditional_bad_input_is_typed_and_names_the_step():
    with pytest.raises(WorkflowDefinitionError, match=r"'c'.*callable"):
        ConditionalStep("c", "not callable", ToolStep("x", lambda: 1))
    with pytest.raises(WorkflowDefinitionError, match=r"'c'.*callable"):
        ConditionalStep("c").condition(42)
    with pytest.raises(WorkflowDefinitionError, match=r"'c'.*condition"):
        wf_of(ConditionalStep("c").if_true(ToolStep("x", lambda: 1))).validate()
    with pytest.raises(WorkflowDefinitionError, match=r"'c'.*if_true"):
        wf_of(ConditionalStep("c", lambda ctx: True)).validate()


# --- ParallelStep ----------------------------------------------------------------------------


def test_parallel_branches_overlap_and_output_is_in_declaration_order(execute, rendezvous):
    # All three branches (two async, one sync) must be running at once to pass the meeting
    # point; run in turn, the first would time out alone. After it they finish b, c, a.
    meet = rendezvous(3)

    async def slow(tag, seconds):
        await meet.arrive()
        await asyncio.sleep(seconds)
        return {tag: seconds}

    def sync_branch():
        meet.arrive_sync()
        time.sleep(0.2)
        return {"c": 0.2}

    par = ParallelStep(
        "p",
        [
            ToolStep("a", slow, {"tag": "a", "seconds": 0.3}),
            ToolStep("b", slow, {"tag": "b", "seconds": 0.1}),
        ],
    ).add_branch(ToolStep("c", sync_branch))
    result = execute(wf_of(par))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert meet.arrived == 3
    step = result.step("p")
    assert step.output == [{"a": 0.3}, {"b": 0.1}, {"c": 0.2}]
    assert step.metadata["succeeded"] == 3
    # dict outputs merge into the variables
    assert dict(result.context.variables) == {"a": 0.3, "b": 0.1, "c": 0.2}


def test_parallel_fail_fast_cancels_siblings_and_their_finally_runs(execute):
    events = []

    async def long_branch():
        try:
            await asyncio.sleep(30)
        finally:
            events.append("finally")

    async def failing():
        await asyncio.sleep(0.05)
        raise ValueError("first failure")

    par = ParallelStep("p", [ToolStep("long", long_branch), ToolStep("bad", failing)])
    start = time.perf_counter()
    result = execute(wf_of(par))
    assert time.perf_counter() - start < 10  # not cancelled, "long" would sleep 30 s
    assert events == ["finally"]  # unwound before the run finished
    step = result.step("p")
    assert step.status == StepStatus.FAILED
    assert step.error == "first failure"
    kids = {c.step_id: c.status for c in step.children}
    assert kids == {"bad": StepStatus.FAILED, "long": StepStatus.CANCELLED}


def test_parallel_continue_on_partial_failure_with_a_minimum(execute):
    def par(k):
        return (
            ParallelStep("p")
            .add_branch(ToolStep("crm", lambda: "crm"))
            .add_branch(ToolStep("billing", boom))
            .add_branch(ToolStep("analytics", lambda: "analytics"))
            .with_failure_policy("continue_on_partial_failure")
            .with_minimum_success_count(k)
        )

    ok = execute(wf_of(par(2))).step("p")
    assert ok.status == StepStatus.COMPLETED
    assert ok.output == ["crm", None, "analytics"]
    assert (ok.metadata["succeeded"], ok.metadata["failed"]) == (2, 1)

    bad = execute(wf_of(par(3))).step("p")
    assert bad.status == StepStatus.FAILED
    assert bad.error_type == "PartialFailureError"
    assert "2 of 3 branches completed, at least 3 required" in bad.error
    assert isinstance(bad.exception, PartialFailureError)
    assert len(bad.exception.results) == 3


def test_parallel_wait_for_all_false_finishes_at_first_success(execute):
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    par = ParallelStep(
        "p", [ToolStep("slow", slow), ToolStep("fast", nap, {"seconds": 0.05})], wait_for_all=False
    )
    start = time.perf_counter()
    step = execute(wf_of(par)).step("p")
    assert time.perf_counter() - start < 10  # not cancelled, "slow" would sleep 30 s
    assert step.status == StepStatus.COMPLETED
    assert step.output == [None, 0.05]
    assert cancelled == ["slow"]


def test_parallel_wait_for_all_false_fails_only_if_every_branch_fails(execute):
    par = ParallelStep("p", [ToolStep("a", boom), ToolStep("b", boom)], wait_for_all=False)
    step = execute(wf_of(par)).step("p")
    assert step.status == StepStatus.FAILED
    assert step.error_type == "PartialFailureError"


def test_parallel_max_concurrency(execute, in_flight):
    def work():
        with in_flight:
            time.sleep(0.02)

    par = ParallelStep("p", [ToolStep(f"s{i}", work) for i in range(8)]).with_max_concurrency(2)
    assert execute(wf_of(par)).status == WorkflowStatus.COMPLETED
    assert in_flight.maximum <= 2


def test_parallel_bad_input_is_typed_and_names_the_step():
    with pytest.raises(WorkflowDefinitionError, match=r"'p'.*needs branches"):
        wf_of(ParallelStep("p")).validate()
    two = ParallelStep("p", [ToolStep("a", lambda: 1), ToolStep("b", lambda: 2)])
    with pytest.raises(WorkflowDefinitionError, match=r"'p'.*minimum_success_count 3.*\(2\)"):
        wf_of(two.with_minimum_success_count(3)).validate()
    with pytest.raises(WorkflowDefinitionError, match=r"'p'.*failure policy"):
        ParallelStep("p").with_failure_policy("whatever")
    with pytest.raises(WorkflowDefinitionError, match=r"'p'.*minimum_success_count"):
        ParallelStep("p").with_minimum_success_count(0)
    with pytest.raises(WorkflowDefinitionError, match=r"'p'.*batten step"):
        ParallelStep("p").add_branch(lambda: 1)


def test_parallel_timeout_cancels_the_nested_run(execute):
    finished = []

    async def slow():
        try:
            await asyncio.sleep(30)
        finally:
            finished.append(True)

    par = ParallelStep("p", [ToolStep("a", slow), ToolStep("b", slow)]).with_timeout(0.2)
    start = time.perf_counter()
    step = execute(wf_of(par)).step("p")
    assert time.perf_counter() - start < 10  # not cancelled, the branches would sleep 30 s
    assert step.status == StepStatus.TIMEOUT
    assert finished == [True, True]


# --- MapStep ---------------------------------------------------------------------------------


def test_map_over_state_computed_items_keeps_item_order(execute):
    async def square(item):
        await asyncio.sleep(0.01 * (5 - item))  # later items finish first
        return item * item

    plan = ToolStep("plan", lambda: {"tasks": [1, 2, 3, 4]})
    fan = MapStep("work", lambda ctx: ctx["tasks"], square)
    result = execute(wf_of(plan, fan))
    step = result.step("work")
    assert step.output == [1, 4, 9, 16]
    assert step.metadata["items"] == 4
    assert len(step.children) == 4


def test_map_items_by_variable_name_and_tool_step(execute):
    def lookup(item, prefix):
        return f"{prefix}{item}"

    fan = MapStep("m", "names", ToolStep("lookup", lookup, {"prefix": "id-"}))
    result = execute(wf_of(fan), WorkflowContext("w", variables={"names": ["a", "b"]}))
    assert result.step("m").output == ["id-a", "id-b"]
    assert {c.step_id for c in result.step("m").children} == {"lookup[0]", "lookup[1]"}


def test_map_agent_step_gets_the_item_in_its_message(execute):
    fan = MapStep("m", [1, 2], AgentStep("ask", lambda msg: msg.upper(), "review file {item}"))
    assert execute(wf_of(fan)).step("m").output == ["REVIEW FILE 1", "REVIEW FILE 2"]


def test_map_over_1000_items_never_exceeds_max_concurrency(execute, in_flight):
    async def work(item):
        with in_flight:
            await asyncio.sleep(0.001)
        return item

    fan = MapStep("m", list(range(1000)), work, max_concurrency=50)
    step = execute(wf_of(fan)).step("m")
    assert step.output == list(range(1000))
    assert 1 < in_flight.maximum <= 50


def test_map_items_not_iterable_fail_the_step_clearly(execute):
    fan = MapStep("m", lambda ctx: 42, lambda item: item)
    step = execute(wf_of(fan)).step("m")
    assert step.status == StepStatus.FAILED
    assert step.error_type == "TypeError"
    assert "step 'm'" in step.error and "iterable" in step.error and "int" in step.error


def test_map_with_no_items_completes_with_an_empty_list(execute):
    assert execute(wf_of(MapStep("m", [], lambda item: item))).step("m").output == []


def test_map_failure_policies(execute):
    def maybe(item):
        if item == 2:
            raise ValueError(f"item {item}")
        return item

    fail_fast = execute(wf_of(MapStep("m", [1, 2, 3], maybe))).step("m")
    assert fail_fast.status == StepStatus.FAILED
    assert fail_fast.error == "item 2"
    partial = MapStep("m", [1, 2, 3], maybe).with_minimum_success_count(2)
    step = execute(wf_of(partial)).step("m")
    assert step.status == StepStatus.COMPLETED
    assert step.output == [1, None, 3]


def test_map_item_steps_retry_with_the_inner_policy(execute):
    tries: dict[int, int] = {}

    def flaky(item):
        tries[item] = tries.get(item, 0) + 1
        if tries[item] < 2:
            raise ConnectionError("flaky")
        return item

    inner = ToolStep("t", flaky).with_retry(policy=RetryPolicy(max_attempts=3, initial_interval=0))
    step = execute(wf_of(MapStep("m", [1, 2], inner))).step("m")
    assert step.output == [1, 2]
    assert tries == {1: 2, 2: 2}
    assert all(c.attempts == 2 for c in step.children)


# --- LoopStep --------------------------------------------------------------------------------


def test_loop_each_iteration_sees_the_previous_output(execute):
    seen = []

    def body(context):
        seen.append(context.get("count", 0))
        return {"count": context.get("count", 0) + 1}

    loop = LoopStep("loop", ToolStep("inc", body), lambda ctx, i: ctx.get("count", 0) < 3)
    result = execute(wf_of(loop))
    step = result.step("loop")
    assert seen == [0, 1, 2]
    assert step.output == {"count": 3}
    assert step.metadata == {"iterations": 3, "max_iterations_reached": False}
    assert result.context["count"] == 3


def test_loop_stops_at_max_iterations_and_says_so(execute):
    calls = []
    loop = LoopStep("loop", ToolStep("t", lambda: calls.append(1)), lambda c, i: True, 4)
    step = execute(wf_of(loop)).step("loop")
    assert len(calls) == 4
    assert step.status == StepStatus.COMPLETED
    assert step.metadata == {"iterations": 4, "max_iterations_reached": True}


def test_loop_can_fail_at_max_iterations(execute):
    loop = LoopStep(
        "loop", ToolStep("t", lambda: 1), lambda c, i: True, 2, on_max_iterations="fail"
    )
    step = execute(wf_of(loop)).step("loop")
    assert step.status == StepStatus.FAILED
    assert isinstance(step.exception, LoopLimitError)
    assert len(step.children) == 2


def test_loop_iteration_failure_fails_the_loop(execute):
    loop = LoopStep("loop", ToolStep("t", boom), lambda c, i: True)
    step = execute(wf_of(loop)).step("loop")
    assert (step.status, step.error) == (StepStatus.FAILED, "boom")
    assert step.metadata["iterations"] == 1


def test_loop_bad_input():
    body = ToolStep("t", lambda: 1)
    with pytest.raises(WorkflowDefinitionError, match=r"'loop'.*max_iterations"):
        LoopStep("loop", body, lambda c, i: True, max_iterations=0)
    with pytest.raises(WorkflowDefinitionError, match=r"'loop'.*callable"):
        LoopStep("loop", body, None)  # type: ignore[arg-type]


# --- SubWorkflowStep -------------------------------------------------------------------------


def test_sub_workflow_results_are_nested_and_its_state_flows_on(execute):
    inner = Workflow("inner", "inner")
    inner.add_step(ToolStep("double", lambda context: {"x": context["x"] * 2}))
    inner.add_step(ToolStep("report", lambda context: f"x={context['x']}"))
    outer = wf_of(
        ToolStep("seed", lambda: {"x": 21}),
        SubWorkflowStep("sub", inner),
        ToolStep("after", lambda context: context["x"]),
    )
    result = execute(outer)
    sub = result.step("sub")
    assert sub.output == "x=42"
    assert [c.step_id for c in sub.children] == ["double", "report"]
    assert result.step("after").output == 42


def test_sub_workflow_failure_fails_the_step(execute):
    inner = Workflow("inner", "inner")
    inner.add_step(ToolStep("bad", boom))
    step = execute(wf_of(SubWorkflowStep("sub", inner))).step("sub")
    assert (step.status, step.error) == (StepStatus.FAILED, "boom")


# --- RouterStep ------------------------------------------------------------------------------


def test_router_runs_the_branch_the_route_names(execute):
    ran = []
    router = RouterStep(
        "route",
        lambda ctx: ctx["topic"],
        {
            "billing": ToolStep("billing", lambda: ran.append("billing") or "refund issued"),
            "tech": ToolStep("tech", lambda: ran.append("tech") or "rebooted"),
        },
    )
    result = execute(wf_of(router), WorkflowContext("w", variables={"topic": "tech"}))
    assert ran == ["tech"]
    assert result.step("route").output == "rebooted"
    assert result.step("route").metadata == {"branch": "tech"}


def test_router_with_an_agent_classifier(execute):
    classifier = AgentStep(
        "classify", lambda msg: " billing\n" if "refund" in msg else "tech", "I want a refund"
    )
    router = RouterStep(
        "route", classifier, [ToolStep("billing", lambda: "B"), ToolStep("tech", lambda: "T")]
    )
    step = execute(wf_of(router)).step("route")
    assert step.output == "B"
    assert [c.step_id for c in step.children] == ["classify", "billing"]


def test_router_unknown_branch_fails_naming_what_it_got_and_what_is_allowed(execute):
    router = RouterStep(
        "route", lambda ctx: "sales", [ToolStep("billing", lambda: 1), ToolStep("tech", lambda: 2)]
    )
    step = execute(wf_of(router)).step("route")
    assert step.status == StepStatus.FAILED
    assert isinstance(step.exception, RouteError)
    assert "'sales'" in step.error and "billing, tech" in step.error
    assert step.exception.got == "sales" and step.exception.allowed == ["billing", "tech"]


def test_router_bad_input():
    with pytest.raises(WorkflowDefinitionError, match=r"'r'.*branches"):
        RouterStep("r", lambda c: "x", [])
    with pytest.raises(WorkflowDefinitionError, match=r"'r'.*route"):
        RouterStep("r", 3, [ToolStep("x", lambda: 1)])  # type: ignore[arg-type]


# --- references into composites --------------------------------------------------------------


def test_inner_steps_can_reference_the_composites_ancestors(execute):
    first = ToolStep("first", lambda: {"name": "ada"})
    par = ParallelStep("p", [AgentStep("greet", lambda m: m, "hi {first.result.name}")])
    assert execute(wf_of(first, par)).step("p").output == ["hi ada"]


def test_inner_reference_to_a_non_ancestor_is_a_definition_error():
    par = ParallelStep("p", [AgentStep("greet", lambda m: m, "hi {later.result}")])
    wf = wf_of(par, ToolStep("later", lambda: 1))
    with pytest.raises(WorkflowDefinitionError, match="later"):
        wf.validate()


def test_an_exception_reraised_elsewhere_does_not_carry_a_composites_results(execute):
    # One exception object fails a branch inside a composite, then a plain step raises it
    # again (two steps awaiting one failed shared future): the plain step's result must not
    # inherit the composite's children and metadata.
    err = ValueError("bad config")

    async def inner():
        raise err

    async def plain():
        await asyncio.sleep(0.05)
        raise err

    wf = Workflow("w", continue_on_error=True)
    wf.add_step(ConditionalStep("c", lambda c: True, ToolStep("t", inner)), depends_on=[])
    wf.add_step(ToolStep("p", plain), depends_on=[])
    result = execute(wf)
    assert [c.step_id for c in result.step("c").children] == ["t"]
    p = result.step("p")
    assert p.error == "bad config"
    # Only its own failure's traceback text, nothing of the composite's.
    assert set(p.metadata) == {"traceback"}
    assert p.metadata["traceback"].rstrip().endswith("ValueError: bad config")
    assert p.children == []


def test_changes_after_a_run_are_compiled_into_the_next_run(execute):
    # Plans are cached; any change to a step, a nested step or a sub-workflow after a run
    # must still reach the next run.
    inner = Workflow("inner", "inner")
    inner.add_step(ToolStep("one", lambda: 1))
    branch = ToolStep("b", lambda: "b")
    outer = wf_of(SubWorkflowStep("sub", inner), ParallelStep("p", [branch]))
    first = execute(outer)
    assert first.step("sub").output == 1
    inner.add_step(ToolStep("two", lambda: 2))
    branch.add_condition(lambda ctx: False)
    second = execute(outer)
    assert second.step("sub").output == 2
    assert [c.status for c in second.step("p").children] == [StepStatus.SKIPPED]
