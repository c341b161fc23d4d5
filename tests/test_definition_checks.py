"""The Python API refuses a bad definition up front: a typed ``WorkflowDefinitionError`` naming
the step and the argument, raised before anything runs; never a Rust panic, an OverflowError or
a RecursionError later."""

from __future__ import annotations

import asyncio
import math

import batten
import pytest
from batten import (
    AgentStep,
    CircuitBreaker,
    ConditionalStep,
    HandoffWorkflow,
    HumanApprovalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RateLimit,
    RetryPolicy,
    RouterStep,
    SubWorkflowStep,
    ToolStep,
    Workflow,
    WorkflowBuilder,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowEngine,
    WorkflowStatus,
)
from batten._internal.checks import MAX_COUNT, MAX_SECONDS


@pytest.fixture
def ran():
    """What ran; every refusal test expects it to stay empty."""
    return []


def noop():
    return "ok"


def echo(message):
    return message


def workflow_of(*steps, workflow_id="w", **kwargs):
    wf = Workflow(workflow_id, **kwargs)
    for s in steps:
        wf.add_step(s)
    return wf


# --- step ids ----------------------------------------------------------------------------------

STEP_KINDS = {
    "AgentStep": lambda sid: AgentStep(sid, echo, "hi"),
    "ToolStep": lambda sid: ToolStep(sid, noop),
    "ParallelStep": lambda sid: ParallelStep(sid, [ToolStep("b", noop)]),
    "ConditionalStep": lambda sid: ConditionalStep(sid, bool, ToolStep("b", noop)),
    "MapStep": lambda sid: MapStep(sid, [1, 2], echo),
    "LoopStep": lambda sid: LoopStep(sid, ToolStep("b", noop), lambda ctx, i: False),
    "SubWorkflowStep": lambda sid: SubWorkflowStep(sid, workflow_of(ToolStep("b", noop))),
    "RouterStep": lambda sid: RouterStep(sid, lambda ctx: "b", [ToolStep("b", noop)]),
    "HumanApprovalStep": lambda sid: HumanApprovalStep(sid, "ok?"),
    "WorkflowBuilder.step": lambda sid: WorkflowBuilder().step(sid, echo, "hi"),
    "WorkflowBuilder.add_tool_step": lambda sid: WorkflowBuilder("w").add_tool_step(sid, noop),
    "WorkflowBuilder.add_parallel_step": lambda sid: WorkflowBuilder("w").add_parallel_step(
        sid, [ToolStep("b", noop)]
    ),
}


@pytest.mark.parametrize("make", STEP_KINDS.values(), ids=STEP_KINDS.keys())
def test_a_slash_in_a_step_id_is_refused_when_the_step_is_made(make):
    with pytest.raises(WorkflowDefinitionError, match=r"step 'a/b': .*'/'"):
        make("a/b")


@pytest.mark.parametrize("make", STEP_KINDS.values(), ids=STEP_KINDS.keys())
@pytest.mark.parametrize("bad", ["", None, 3, b"a"], ids=["empty", "None", "int", "bytes"])
def test_an_empty_or_non_str_step_id_is_refused_when_the_step_is_made(make, bad):
    with pytest.raises(WorkflowDefinitionError, match="step_id must be a non-empty str"):
        make(bad)


def test_a_slash_id_beside_a_composite_of_the_same_path_cannot_be_defined(ran):
    """``a/b`` would be the path of the parallel step ``a``'s branch ``b``: checkpoints and
    ``batten status`` could not tell them apart."""
    branch = ToolStep("b", lambda: ran.append("branch"))
    parallel = ParallelStep("a", [branch])
    with pytest.raises(WorkflowDefinitionError, match=r"step 'a/b'"):
        workflow_of(parallel, ToolStep("a/b", lambda: ran.append("top")))
    assert ran == []


def test_a_slash_in_an_inner_step_id_is_refused_before_it_joins_a_composite():
    with pytest.raises(WorkflowDefinitionError, match=r"step 'x/y'"):
        ParallelStep("p", [ToolStep("x/y", noop)])


@pytest.mark.parametrize("make", STEP_KINDS.values(), ids=STEP_KINDS.keys())
def test_an_id_ending_in_an_index_is_refused_when_the_step_is_made(make):
    with pytest.raises(WorkflowDefinitionError, match=r"step 'l\[0\]': .*'\[<index>\]'"):
        make("l[0]")


def test_an_indexed_id_beside_a_loop_cannot_share_its_iteration_paths(ran):
    """``l[0]/b`` is the path of loop ``l``'s first iteration of ``b``: a parallel step named
    ``l[0]`` holding a ``b`` would share its checkpoints."""
    body = ToolStep("b", lambda: ran.append("loop"))
    loop = LoopStep("l", body, lambda ctx, i: False)
    with pytest.raises(WorkflowDefinitionError, match=r"step 'l\[0\]'"):
        workflow_of(loop, ParallelStep("l[0]", [ToolStep("b", lambda: ran.append("top"))]))
    assert ran == []


def test_ids_with_spaces_and_dots_stay_accepted():
    """Only ``/`` has a meaning in paths; agent names such as ``Research Assistant`` are ids
    of ``DeterministicWorkflow`` steps."""
    wf = workflow_of(
        ToolStep("fetch data", noop), ToolStep("v1.2", noop), ToolStep("tool [beta]", noop)
    )
    assert wf.run().status == WorkflowStatus.COMPLETED


# --- workflows containing themselves -----------------------------------------------------------


def test_a_workflow_containing_itself_is_refused_naming_the_cycle():
    wf = workflow_of(ToolStep("s", noop), workflow_id="a")
    wf.add_step(SubWorkflowStep("again", wf))
    with pytest.raises(WorkflowDefinitionError, match=r"workflow 'a' contains itself: a -> a"):
        wf.validate()


def test_two_workflows_containing_each_other_are_refused_before_anything_runs(ran):
    a = workflow_of(ToolStep("first", lambda: ran.append("first")), workflow_id="a")
    b = workflow_of(ToolStep("second", lambda: ran.append("second")), workflow_id="b")
    a.add_step(SubWorkflowStep("run_b", b))
    b.add_step(SubWorkflowStep("run_a", a))
    with pytest.raises(WorkflowDefinitionError, match=r"workflow 'a' contains itself: a -> b -> a"):
        a.run()
    assert ran == []


def test_a_cycle_of_workflows_deep_inside_composites_is_refused(ran):
    a = workflow_of(ToolStep("first", lambda: ran.append("first")), workflow_id="a")
    b = workflow_of(ParallelStep("p", [SubWorkflowStep("back", a)]), workflow_id="b")
    a.add_step(LoopStep("loop", SubWorkflowStep("run_b", b), lambda ctx, i: i < 1))
    with pytest.raises(WorkflowDefinitionError, match=r"contains itself: a -> b -> a"):
        asyncio.run(a.execute())
    assert ran == []


def test_a_workflow_reached_twice_without_a_cycle_is_accepted():
    shared = workflow_of(ToolStep("s", lambda: {"n": 1}), workflow_id="shared")
    wf = workflow_of(SubWorkflowStep("one", shared), SubWorkflowStep("two", shared))
    assert wf.run().status == WorkflowStatus.COMPLETED


def test_a_composite_holding_itself_is_refused_naming_the_step():
    parallel = ParallelStep("p", [ToolStep("b", noop)])
    parallel.add_branch(parallel)
    with pytest.raises(WorkflowDefinitionError, match=r"step 'p' contains itself"):
        workflow_of(parallel).validate()


# --- references ----------------------------------------------------------------------------------


def test_a_reference_to_no_step_of_the_workflow_says_so(ran):
    wf = workflow_of(AgentStep("x", lambda m: ran.append(m), "Use {nope.result}"))
    with pytest.raises(WorkflowDefinitionError) as info:
        wf.validate()
    assert str(info.value) == (
        "step 'x' references '{nope.result}', but 'nope' names no step of this workflow"
    )
    assert ran == []


def test_a_reference_to_a_step_that_is_not_an_ancestor_still_says_so():
    wf = Workflow("w")
    wf.add_step(ToolStep("late", noop), depends_on=[])
    wf.add_step(AgentStep("x", echo, "Use {late.result}"), depends_on=[])
    with pytest.raises(WorkflowDefinitionError, match=r"'late' is not one of its dependencies"):
        wf.validate()


def test_a_reference_from_inside_a_composite_to_no_step_names_the_inner_step():
    inner = ToolStep("fetch", echo, {"message": "{ghost.result.id}"})
    wf = workflow_of(ParallelStep("p", [inner]))
    with pytest.raises(WorkflowDefinitionError, match=r"step 'p/fetch' references '\{ghost"):
        wf.validate()


def test_a_reference_to_a_step_nested_in_a_composite_is_not_called_unknown():
    """``b`` exists (inside ``p``); it is just not a dependency a top-level step can use."""
    wf = workflow_of(ParallelStep("p", [ToolStep("b", noop)]), AgentStep("x", echo, "{b.result}"))
    with pytest.raises(WorkflowDefinitionError, match=r"'b' is not one of its dependencies"):
        wf.validate()


# --- seconds -------------------------------------------------------------------------------------

TOO_MANY_SECONDS = [2e19, MAX_SECONDS + 1, 10**400, math.inf, math.nan, -1.0, "30", True]


def _run_timeout(value):
    workflow_of(ToolStep("a", noop)).run(timeout=value)


SECONDS_ARGUMENTS = {
    "with_timeout": (lambda v: ToolStep("fetch", noop).with_timeout(v), "step 'fetch'"),
    "with_cache": (lambda v: ToolStep("fetch", noop).with_cache(v), "step 'fetch'"),
    "approval timeout": (lambda v: HumanApprovalStep("ok", "ok?", timeout=v), "step 'ok'"),
    "approval with_timeout": (lambda v: HumanApprovalStep("ok", "ok?").with_timeout(v), "'ok'"),
    "execute timeout": (_run_timeout, r"execute\(timeout=\.\.\.\)"),
    "RetryPolicy.initial_interval": (
        lambda v: RetryPolicy(initial_interval=v),
        r"RetryPolicy\.initial_interval",
    ),
    "RetryPolicy.max_interval": (lambda v: RetryPolicy(max_interval=v), r"RetryPolicy\.max_"),
    "CircuitBreaker.recovery_timeout": (
        lambda v: CircuitBreaker(recovery_timeout=v, key="cb-checks"),
        "recovery_timeout",
    ),
    "WorkflowEngine.retry_delay": (
        lambda v: WorkflowEngine(max_retries=1, retry_delay=v),
        "retry_delay",
    ),
    "DagWorkflow timeout_per_step": (
        lambda v: asyncio.run(
            WorkflowBuilder().step("s", echo, "hi").build().execute(timeout_per_step=v)
        ),
        "timeout_per_step",
    ),
}


@pytest.mark.parametrize("value", TOO_MANY_SECONDS, ids=repr)
@pytest.mark.parametrize(
    ("set_it", "named"), SECONDS_ARGUMENTS.values(), ids=SECONDS_ARGUMENTS.keys()
)
def test_a_seconds_argument_out_of_range_is_refused_naming_its_owner(set_it, named, value):
    with pytest.raises(WorkflowDefinitionError, match=named):
        set_it(value)


def test_a_timeout_beyond_max_seconds_says_what_the_maximum_is():
    with pytest.raises(WorkflowDefinitionError) as info:
        ToolStep("fetch", noop).with_timeout(2e19)
    assert str(info.value) == (
        "step 'fetch': timeout must be at most 31536000 seconds (365 days), got 2e+19"
    )


def test_a_refused_timeout_leaves_the_step_as_it_was():
    """``with_timeout(2e19)`` used to be kept and then panic in the engine at run time."""
    step = ToolStep("a", noop).with_timeout(5)
    with pytest.raises(WorkflowDefinitionError):
        step.with_timeout(2e19)
    assert step.timeout == 5.0
    assert workflow_of(step).run().status == WorkflowStatus.COMPLETED


@pytest.mark.parametrize(
    "options", [{"timeout": 2e19}, {"max_concurrency": 10**20}], ids=["timeout", "concurrency"]
)
def test_a_bad_run_option_is_refused_before_a_durable_run_is_recorded(tmp_path, options):
    url = "sqlite:///" + str(tmp_path / "runs.db")
    wf = workflow_of(ToolStep("a", noop)).with_store(url)
    with pytest.raises(WorkflowDefinitionError, match=r"execute\("):
        asyncio.run(wf.execute(**options))
    assert batten.list_runs(store=url) == []


@pytest.mark.parametrize(
    "options", [{"timeout": 2e19}, {"max_concurrency": 10**20}], ids=["timeout", "concurrency"]
)
def test_a_bad_run_option_is_refused_by_stream_before_a_durable_run_is_recorded(tmp_path, options):
    url = "sqlite:///" + str(tmp_path / "runs.db")
    wf = workflow_of(ToolStep("a", noop)).with_store(url)

    async def first_event():
        return await wf.stream(**options).__anext__()

    with pytest.raises(WorkflowDefinitionError, match=r"execute\("):
        asyncio.run(first_event())
    assert batten.list_runs(store=url) == []


def test_max_seconds_itself_is_accepted_everywhere():
    step = ToolStep("a", noop).with_timeout(MAX_SECONDS).with_cache(MAX_SECONDS)
    step.with_retry(policy=RetryPolicy(initial_interval=MAX_SECONDS, max_interval=MAX_SECONDS))
    HumanApprovalStep("ok", "ok?", timeout=MAX_SECONDS)
    CircuitBreaker(recovery_timeout=MAX_SECONDS, key="cb-checks-max")
    result = workflow_of(step).run(timeout=MAX_SECONDS)
    assert result.status == WorkflowStatus.COMPLETED


def test_zero_stays_a_valid_retry_interval():
    policy = RetryPolicy(initial_interval=0, max_interval=0)
    assert (policy.initial_interval, policy.max_interval) == (0, 0)
    assert WorkflowEngine(max_retries=1, retry_delay=0).retry_delay == 0


def test_a_rate_limit_so_slow_that_one_start_waits_beyond_max_seconds_is_refused():
    with pytest.raises(
        WorkflowDefinitionError, match=r"RateLimit\('slow-checks'\): requests_per_second"
    ):
        RateLimit("slow-checks", requests_per_second=1e-30)


HUGE = 10**400  # past what a float holds: math.isfinite and the engine's f64 overflow on it


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: RetryPolicy(backoff_coefficient=HUGE), r"RetryPolicy\.backoff_coefficient"),
        (lambda: RateLimit("huge-rps", requests_per_second=HUGE), "requests_per_second"),
        (lambda: RateLimit("huge-tpm", tokens_per_minute=HUGE), "tokens_per_minute"),
        (lambda: ToolStep("t", noop).with_cache(HUGE), "cache ttl"),
    ],
    ids=["backoff_coefficient", "requests_per_second", "tokens_per_minute", "cache ttl"],
)
def test_an_int_too_large_for_a_float_is_refused_not_overflowed(make, named):
    with pytest.raises(WorkflowDefinitionError, match=named):
        make()


# --- counts --------------------------------------------------------------------------------------

TOO_MANY = [10**20, MAX_COUNT + 1, True, 2.0, "3"]


def _run_concurrency(value):
    workflow_of(ToolStep("a", noop)).run(max_concurrency=value)


def _builder(method, value):
    getattr(WorkflowBuilder("w"), method)(value)


COUNT_ARGUMENTS = {
    "execute max_concurrency": (_run_concurrency, r"max_concurrency"),
    "Workflow max_parallel_steps": (
        lambda v: Workflow("w", max_parallel_steps=v),
        r"workflow 'w': max_parallel_steps",
    ),
    "Workflow max_total_retries": (
        lambda v: Workflow("w", max_total_retries=v),
        r"workflow 'w': max_total_retries",
    ),
    "MapStep max_concurrency": (
        lambda v: MapStep("m", [1], echo, max_concurrency=v),
        r"step 'm': max_concurrency",
    ),
    "ParallelStep max_concurrency": (
        lambda v: ParallelStep("p", max_concurrency=v),
        r"step 'p': max_concurrency",
    ),
    "with_max_concurrency": (
        lambda v: ParallelStep("p").with_max_concurrency(v),
        r"step 'p': max_concurrency",
    ),
    "with_minimum_success_count": (
        lambda v: ParallelStep("p").with_minimum_success_count(v),
        r"step 'p': minimum_success_count",
    ),
    "with_retry": (lambda v: ToolStep("t", noop).with_retry(v), r"step 't': max_retries"),
    "with_retry max_attempts": (
        lambda v: ToolStep("t", noop).with_retry(max_attempts=v),
        r"step 't': max_attempts",
    ),
    "RetryPolicy.max_attempts": (
        lambda v: RetryPolicy(max_attempts=v),
        r"RetryPolicy\.max_attempts",
    ),
    "LoopStep max_iterations": (
        lambda v: LoopStep("l", ToolStep("b", noop), lambda c, i: False, max_iterations=v),
        r"step 'l': max_iterations",
    ),
    "HandoffWorkflow max_handoffs": (
        lambda v: HandoffWorkflow([echo], max_handoffs=v),
        r"max_handoffs",
    ),
    "WorkflowEngine max_retries": (lambda v: WorkflowEngine(max_retries=v), r"max_retries"),
    "WorkflowEngine max_parallel_steps": (
        lambda v: WorkflowEngine(max_parallel_steps=v),
        r"max_parallel_steps",
    ),
    "RateLimit max_concurrency": (
        lambda v: RateLimit("rl-checks", max_concurrency=v),
        r"RateLimit\('rl-checks'\): max_concurrency",
    ),
    "CircuitBreaker failure_threshold": (
        lambda v: CircuitBreaker(failure_threshold=v, key="cb-count"),
        r"failure_threshold",
    ),
    "CircuitBreaker half_open_max_calls": (
        lambda v: CircuitBreaker(half_open_max_calls=v, key="cb-count"),
        r"half_open_max_calls",
    ),
    "WorkflowBuilder.with_max_parallel_steps": (
        lambda v: _builder("with_max_parallel_steps", v),
        r"max_parallel_steps",
    ),
    "WorkflowBuilder.with_max_total_retries": (
        lambda v: _builder("with_max_total_retries", v),
        r"max_total_retries",
    ),
}


@pytest.mark.parametrize("value", TOO_MANY, ids=repr)
@pytest.mark.parametrize(("set_it", "named"), COUNT_ARGUMENTS.values(), ids=COUNT_ARGUMENTS.keys())
def test_a_count_argument_out_of_range_or_not_an_int_is_refused_naming_it(set_it, named, value):
    with pytest.raises(WorkflowDefinitionError, match=named):
        set_it(value)


def test_a_count_beyond_max_count_says_what_the_maximum_is():
    with pytest.raises(WorkflowDefinitionError) as info:
        MapStep("m", [1], echo, max_concurrency=10**20)
    assert str(info.value) == (
        f"step 'm': max_concurrency must be at most 2147483647, got {10**20}"
    )


def test_max_count_itself_is_accepted_and_runs():
    inner = ToolStep("b", noop).with_retry(max_attempts=MAX_COUNT)
    fan_out = MapStep("m", [1, 2], echo, max_concurrency=MAX_COUNT)
    loop = LoopStep("l", inner, lambda ctx, i: i < 1, max_iterations=MAX_COUNT)
    wf = workflow_of(fan_out, loop, max_parallel_steps=MAX_COUNT, max_total_retries=MAX_COUNT)
    result = asyncio.run(wf.execute(WorkflowContext("w"), max_concurrency=MAX_COUNT))
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("m").output == [1, 2]


def test_the_most_retries_with_retry_takes_still_fits_a_policy():
    step = ToolStep("t", noop).with_retry(MAX_COUNT - 1)
    assert step.retry_policy.max_attempts == MAX_COUNT
    with pytest.raises(WorkflowDefinitionError, match=r"step 't': max_retries"):
        ToolStep("t", noop).with_retry(MAX_COUNT)


# --- callables -----------------------------------------------------------------------------------


CALLABLE_ARGUMENTS = {
    "add_condition": (lambda: ToolStep("t", noop).add_condition(3), "step 't': a condition"),
    "with_input_function": (
        lambda: AgentStep("t", echo).with_input_function(3),
        "step 't': the input function",
    ),
    "with_cache key": (lambda: ToolStep("t", noop).with_cache(5, key=3), "step 't': cache key"),
    "ConditionalStep": (lambda: ConditionalStep("c", 3), "step 'c': the condition"),
    "LoopStep": (lambda: LoopStep("l", ToolStep("b", noop), 3), "step 'l': the loop condition"),
    "on_step_completed": (
        lambda: Workflow("w").on_step_completed(3),
        "workflow 'w': on_step_completed's callback",
    ),
    "add_error_handler": (
        lambda: Workflow("w").add_error_handler("a", 3),
        "step 'a': an error handler",
    ),
}


@pytest.mark.parametrize(
    ("call", "named"), CALLABLE_ARGUMENTS.values(), ids=CALLABLE_ARGUMENTS.keys()
)
def test_a_non_callable_where_a_callable_is_expected_is_refused_naming_it(call, named):
    with pytest.raises(WorkflowDefinitionError, match=named + " must be callable, got 3"):
        call()


# --- approvers -----------------------------------------------------------------------------------


def test_an_empty_approvers_list_is_refused_since_nobody_could_approve():
    with pytest.raises(WorkflowDefinitionError, match=r"step 'ok': approvers is empty"):
        HumanApprovalStep("ok", "Ship it?", approvers=[])


def test_approvers_none_still_means_anyone():
    assert HumanApprovalStep("ok", "Ship it?", approvers=None).approvers is None
