"""Eager scheduling, concurrency, threads, templating, state views and result bookkeeping."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from batten import (
    AgentStep,
    RetryPolicy,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
)


def async_sleeper(seconds, output=None, clock=None, name=None):
    """An async tool that sleeps, optionally records its finish time, and returns ``output``."""

    async def tool():
        await asyncio.sleep(seconds)
        if clock is not None:
            clock.mark(name)
        return output

    return tool


def fail(message="boom"):
    def tool():
        raise RuntimeError(message)

    return tool


# -- eager scheduling --------------------------------------------------------------------------


def wait_for(condition, what, timeout=30.0):
    """Block (a sync step) until ``condition()`` holds; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.005)


async def await_for(condition, what, timeout=30.0):
    """Wait (an async step) until ``condition()`` holds; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.005)


def test_independent_async_steps_overlap(execute, rendezvous):
    meet = rendezvous(2)  # both must be running at once, or the first times out alone
    wf = Workflow("par", "parallel")
    wf.add_step(ToolStep("a", meet.arrive), depends_on=[])
    wf.add_step(ToolStep("b", meet.arrive), depends_on=[])
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert meet.arrived == 2


def test_slow_branch_does_not_delay_an_unrelated_fast_chain(execute, clock):
    async def slow():
        # "Slow" until the whole fast chain has finished: were the chain held back by this
        # branch, it would never finish and this step would time out after 30 s.
        await await_for(lambda: "f3" in clock.marks, "the fast chain")
        clock.mark("slow")

    wf = Workflow("eager", "eager")
    wf.add_step(ToolStep("slow", slow), depends_on=[])
    wf.add_step(ToolStep("f1", async_sleeper(0.05, clock=clock, name="f1")), depends_on=[])
    wf.add_step(ToolStep("f2", async_sleeper(0.05, clock=clock, name="f2")), depends_on=["f1"])
    wf.add_step(ToolStep("f3", async_sleeper(0.05, clock=clock, name="f3")), depends_on=["f2"])
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert clock.marks["f1"] < clock.marks["f2"] < clock.marks["f3"] < clock.marks["slow"]


def test_dependent_of_a_fast_step_starts_without_waiting_for_a_slow_sibling(execute, clock):
    """No wave barrier: level 2 of one branch does not wait for level 1 of another."""
    wf = Workflow("eager", "eager sync")
    # "slow" blocks until "next" has run: with a wave barrier "next" would wait for "slow",
    # and "slow" would time out after 30 s.
    slow = ToolStep("slow", lambda: wait_for(lambda: "next" in clock.marks, "next"))
    wf.add_step(slow, depends_on=[])
    wf.add_step(ToolStep("fast", lambda: None), depends_on=[])
    wf.add_step(ToolStep("next", lambda: clock.mark("next")), depends_on=["fast"])
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert "next" in clock.marks


def test_a_step_starts_only_after_all_its_dependencies_finished(execute, clock):
    wf = Workflow("join", "join")
    wf.add_step(ToolStep("a", async_sleeper(0.1, clock=clock, name="a")), depends_on=[])
    wf.add_step(ToolStep("b", async_sleeper(0.2, clock=clock, name="b")), depends_on=[])
    wf.add_step(ToolStep("join", lambda: clock.mark("join")), depends_on=["a", "b"])
    execute(wf)
    assert clock.marks["join"] >= clock.marks["b"] >= clock.marks["a"]


# -- failures and skips ------------------------------------------------------------------------


def test_failed_step_blocks_only_its_dependents(execute):
    ran = []

    def record(name):
        return lambda: ran.append(name) or name

    wf = Workflow("fail", "failure isolation")
    wf.add_step(ToolStep("bad", fail("boom")), depends_on=[])
    wf.add_step(ToolStep("bad_child", record("bad_child")), depends_on=["bad"])
    wf.add_step(ToolStep("bad_grandchild", record("bad_grandchild")), depends_on=["bad_child"])
    wf.add_step(ToolStep("good", async_sleeper(0.1, "good")), depends_on=[])
    wf.add_step(ToolStep("good_child", record("good_child")), depends_on=["good"])
    result = execute(wf)

    assert result.status == WorkflowStatus.FAILED
    assert result.step("bad").status == StepStatus.FAILED
    assert result.step("bad_child").status == StepStatus.BLOCKED
    assert result.step("bad_grandchild").status == StepStatus.BLOCKED
    assert result.step("good").status == StepStatus.COMPLETED
    assert result.step("good_child").status == StepStatus.COMPLETED
    assert ran == ["good_child"]
    assert "bad" in result.error
    assert "boom" in result.error


def test_step_depending_on_a_failed_and_a_successful_step_is_blocked(execute):
    wf = Workflow("fail", "join with a failure")
    wf.add_step(ToolStep("ok", lambda: 1), depends_on=[])
    wf.add_step(ToolStep("bad", fail()), depends_on=[])
    wf.add_step(ToolStep("join", lambda: 2), depends_on=["ok", "bad"])
    result = execute(wf)
    assert result.step("join").status == StepStatus.BLOCKED
    assert result.step("ok").status == StepStatus.COMPLETED


def test_skipped_step_does_not_block_its_dependents(execute):
    ran = []
    wf = Workflow("skip", "skip")
    wf.add_step(ToolStep("gate", lambda: ran.append("gate")).add_condition(lambda ctx: False))
    wf.add_step(ToolStep("after", lambda: ran.append("after") or "after"))
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("gate").status == StepStatus.SKIPPED
    assert result.step("after").status == StepStatus.COMPLETED
    assert ran == ["after"]


def test_step_runs_only_if_all_its_conditions_hold(execute):
    wf = Workflow("conds", "conditions")
    wf.add_step(
        ToolStep("both_true", lambda: 1)
        .add_condition(lambda c: True)
        .add_condition(lambda c: True),
        depends_on=[],
    )
    wf.add_step(
        ToolStep("one_false", lambda: 1)
        .add_condition(lambda c: True)
        .add_condition(lambda c: False),
        depends_on=[],
    )
    result = execute(wf)
    assert result.step("both_true").status == StepStatus.COMPLETED
    assert result.step("one_false").status == StepStatus.SKIPPED


@pytest.mark.parametrize(("approved", "expected"), [(True, "completed"), (False, "skipped")])
def test_condition_sees_the_outputs_of_upstream_steps(execute, approved, expected):
    wf = Workflow("conds", "upstream condition")
    wf.add_step(ToolStep("review", lambda: {"approved": approved}))
    wf.add_step(ToolStep("publish", lambda: "published").add_condition(lambda c: c["approved"]))
    assert execute(wf).step("publish").status == expected


# -- concurrency bounds ------------------------------------------------------------------------


def bounded_workflow(in_flight, kind, **workflow_kwargs):
    def sync_step():
        with in_flight:
            time.sleep(0.05)

    async def async_step():
        with in_flight:
            await asyncio.sleep(0.05)

    wf = Workflow("bounded", "bounded", **workflow_kwargs)
    for i in range(6):
        wf.add_step(ToolStep(f"s{i}", sync_step if kind == "sync" else async_step), depends_on=[])
    return wf


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_max_parallel_steps_bounds_steps_in_flight(execute, in_flight, kind):
    result = execute(bounded_workflow(in_flight, kind, max_parallel_steps=2))
    assert result.status == WorkflowStatus.COMPLETED
    assert in_flight.maximum == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_max_concurrency_bounds_steps_in_flight(execute, in_flight, kind):
    result = execute(bounded_workflow(in_flight, kind), max_concurrency=3)
    assert result.status == WorkflowStatus.COMPLETED
    assert in_flight.maximum == 3


def test_without_a_bound_independent_async_steps_all_run_at_once(execute, in_flight):
    execute(bounded_workflow(in_flight, "async"))
    assert in_flight.maximum == 6


def test_max_concurrency_of_one_runs_steps_one_at_a_time(execute, in_flight):
    start = time.perf_counter()
    execute(bounded_workflow(in_flight, "async"), max_concurrency=1)
    assert in_flight.maximum == 1
    assert time.perf_counter() - start >= 0.25


# -- threads and the event loop ----------------------------------------------------------------


def test_blocking_sync_steps_run_in_parallel_without_blocking_the_event_loop(execute, rendezvous):
    gaps = []
    meet = rendezvous(8)  # all eight blocking steps at once, or the first times out alone
    ticked = threading.Event()

    def blocking_io():
        meet.arrive_sync()
        # Still blocking this thread until the async ticker has ticked: were the sync steps
        # run on the loop's thread, the ticker could not tick and this would time out.
        if not ticked.wait(30):
            raise TimeoutError("the event loop did not tick while sync steps blocked")
        return "io"

    async def ticker():
        loop = asyncio.get_running_loop()
        last = loop.time()
        for _ in range(15):
            await asyncio.sleep(0.02)
            now = loop.time()
            gaps.append(now - last)
            last = now
        ticked.set()

    wf = Workflow("io", "blocking io")
    for i in range(8):
        wf.add_step(ToolStep(f"io{i}", blocking_io), depends_on=[])
    wf.add_step(ToolStep("ticker", ticker), depends_on=[])
    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert meet.arrived == 8
    assert len(gaps) == 15


def test_sync_steps_run_off_the_event_loop_thread():
    threads = {}

    def sync_step(name):
        return lambda: threads.setdefault(name, threading.get_ident())

    async def async_step():
        threads["async"] = threading.get_ident()

    wf = Workflow("threads", "threads")
    wf.add_step(ToolStep("sync1", sync_step("sync1")))
    wf.add_step(ToolStep("async1", async_step))
    wf.add_step(ToolStep("sync2", sync_step("sync2")))
    wf.add_step(ToolStep("sync3", sync_step("sync3")))

    async def main():
        threads["loop"] = threading.get_ident()
        return await wf.execute()

    result = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED
    assert threads["sync1"] != threads["loop"]
    assert threads["sync2"] != threads["loop"]
    assert threads["sync3"] != threads["loop"]


def test_async_steps_run_as_tasks_on_the_callers_loop():
    seen = {}

    async def async_step():
        seen["loop"] = asyncio.get_running_loop()
        seen["task"] = asyncio.current_task()
        seen["thread"] = threading.get_ident()

    wf = Workflow("loop", "loop").add_step(ToolStep("a", async_step))

    async def main():
        result = await wf.execute()
        return result, asyncio.get_running_loop(), threading.get_ident()

    result, loop, thread = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED
    assert seen["loop"] is loop
    assert seen["task"] is not None
    assert seen["thread"] == thread


def test_mixed_sync_and_async_chain_passes_outputs_along(execute):
    async def double(context):
        await asyncio.sleep(0.01)
        return context.results["start"] * 2

    def add_three(context):
        return context.results["double"] + 3

    async def square(context):
        return context.results["add_three"] ** 2

    wf = Workflow("chain", "mixed chain")
    wf.add_step(ToolStep("start", lambda: 2))
    wf.add_step(ToolStep("double", double))
    wf.add_step(ToolStep("add_three", add_three))
    wf.add_step(ToolStep("square", square))
    wf.add_step(AgentStep("report", lambda message: message, "result={square.result}"))
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert [result.step(s).output for s in ["start", "double", "add_three", "square"]] == [
        2,
        4,
        7,
        49,
    ]
    assert result.final_output == "result=49"


# -- templating --------------------------------------------------------------------------------


def test_message_template_inserts_the_upstream_output(execute):
    received = []
    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("fetch", lambda: "the article"))
    wf.add_step(AgentStep("summarize", received.append, "Summarize: {fetch.result}"))
    execute(wf)
    assert received == ["Summarize: the article"]


def test_message_template_inserts_a_key_of_a_dict_output(execute):
    received = []
    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("fetch", lambda: {"title": "Batten", "words": 1200}))
    wf.add_step(
        AgentStep("summarize", received.append, "{fetch.result.title} ({fetch.result.words})")
    )
    execute(wf)
    assert received == ["Batten (1200)"]


def test_message_template_uses_str_of_non_string_outputs(execute):
    received = []
    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("count", lambda: 42))
    wf.add_step(AgentStep("say", received.append, "n={count.result}"))
    execute(wf)
    assert received == ["n=42"]


def test_tool_string_args_are_templated_and_other_args_are_passed_unchanged(execute):
    received = []
    payload = {"nested": [1, 2]}

    def store(key, text, limit, payload):
        received.append((key, text, limit, payload))

    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("fetch", lambda: {"id": 7, "body": "hello"}))
    wf.add_step(
        ToolStep(
            "store",
            store,
            {
                "key": "doc-{fetch.result.id}",
                "text": "{fetch.result.body}",
                "limit": 5,
                "payload": payload,
            },
        )
    )
    execute(wf)
    assert received == [("doc-7", "hello", 5, {"nested": [1, 2]})]


def test_json_and_other_braces_are_left_untouched(execute):
    received = []
    message = 'Reply as {"answer": 1, "items": [{"x": 2}]} for {user} about {fetch.result}'
    wf = Workflow("tmpl", "template")
    wf.add_step(ToolStep("fetch", lambda: "cats"))
    wf.add_step(AgentStep("answer", received.append, message))
    wf.add_step(
        ToolStep(
            "tool",
            lambda message: received.append(message),
            {"message": '{"k": {fetch.result}} {}'},
        )
    )
    execute(wf)
    assert received == [
        'Reply as {"answer": 1, "items": [{"x": 2}]} for {user} about cats',
        '{"k": cats} {}',
    ]


# -- state view determinism --------------------------------------------------------------------


def test_step_sees_only_its_ancestors_outputs_not_a_finished_siblings(execute):
    seen = {}

    def observe(context):
        seen["variables"] = dict(context.variables)
        seen["results"] = set(context.results)
        return "observed"

    wf = Workflow("view", "state view")
    wf.add_step(ToolStep("root", lambda: {"seed": 1}))
    wf.add_step(ToolStep("sibling", lambda: {"sibling": True}), depends_on=["root"])
    wf.add_step(ToolStep("slow", async_sleeper(0.1, {"slow": "done"})), depends_on=["root"])
    wf.add_step(ToolStep("observer", observe), depends_on=["slow"])
    result = execute(wf, WorkflowContext("view", variables={"initial": 0}))

    assert result.status == WorkflowStatus.COMPLETED
    assert seen["variables"] == {"initial": 0, "seed": 1, "slow": "done"}
    assert seen["results"] == {"root", "slow"}


def test_diamond_merge_follows_declaration_order_not_completion_order(execute):
    seen = {}

    def merge(context):
        seen["k"] = context["k"]
        seen["both"] = (context["b_only"], context["c_only"])

    wf = Workflow("diamond", "diamond")
    wf.add_step(ToolStep("a", lambda: {"k": "a"}))
    # b is declared before c but finishes after it: c's value must still win.
    wf.add_step(ToolStep("b", async_sleeper(0.1, {"k": "b", "b_only": 1})), depends_on=["a"])
    wf.add_step(ToolStep("c", lambda: {"k": "c", "c_only": 2}), depends_on=["a"])
    wf.add_step(ToolStep("d", merge), depends_on=["c", "b"])
    result = execute(wf, WorkflowContext("diamond", variables={"k": "initial"}))

    assert result.status == WorkflowStatus.COMPLETED
    assert seen == {"k": "c", "both": (1, 2)}


def test_final_context_merges_every_completed_step_in_declaration_order(execute):
    wf = Workflow("final", "final context")
    wf.add_step(ToolStep("x", async_sleeper(0.1, {"k": "x", "x": 1})), depends_on=[])
    wf.add_step(ToolStep("y", lambda: {"k": "y", "y": 2}), depends_on=[])
    wf.add_step(ToolStep("z", lambda: "not a dict"), depends_on=[])
    result = execute(wf, WorkflowContext("final", variables={"k": "initial", "initial": 0}))

    assert dict(result.context.variables) == {"k": "y", "x": 1, "y": 2, "initial": 0}
    assert dict(result.context.results) == {
        "x": {"k": "x", "x": 1},
        "y": {"k": "y", "y": 2},
        "z": "not a dict",
    }


def test_final_context_keeps_the_callers_workflow_id_user_context_and_metadata(execute):
    wf = Workflow("meta", "meta").add_step(ToolStep("a", lambda: {"a": 1}))
    ctx = WorkflowContext("meta", user_context={"user": "ada"}, metadata={"trace": "t1"})
    result = execute(wf, ctx)
    assert result.context.workflow_id == "meta"
    assert result.context.user_context == {"user": "ada"}
    assert result.context.metadata == {"trace": "t1"}


def test_caller_context_is_not_mutated_by_a_run(execute):
    ctx = WorkflowContext("pure", variables={"n": 1})
    wf = Workflow("pure", "pure").add_step(ToolStep("a", lambda: {"n": 2, "m": 3}))
    result = execute(wf, ctx)
    assert result.context["n"] == 2
    assert dict(ctx.variables) == {"n": 1}
    assert dict(ctx.results) == {}


def test_failed_steps_outputs_are_not_merged_into_the_final_context(execute):
    wf = Workflow("final", "final context")
    wf.add_step(ToolStep("ok", lambda: {"ok": True}), depends_on=[])
    wf.add_step(ToolStep("bad", fail()), depends_on=[])
    result = execute(wf)
    assert dict(result.context.variables) == {"ok": True}
    assert set(result.context.results) == {"ok"}


# -- results bookkeeping -----------------------------------------------------------------------


def test_step_results_are_listed_in_completion_order(execute):
    wf = Workflow("order", "completion order")
    wf.add_step(ToolStep("slow", async_sleeper(0.2)), depends_on=[])
    wf.add_step(ToolStep("medium", async_sleeper(0.1)), depends_on=[])
    wf.add_step(ToolStep("fast", async_sleeper(0.0)), depends_on=[])
    result = execute(wf)
    assert [s.step_id for s in result.steps] == ["fast", "medium", "slow"]


def test_steps_that_did_not_run_are_listed_after_those_that_ran(execute):
    wf = Workflow("order", "not run last")
    wf.add_step(ToolStep("skipped", lambda: 1).add_condition(lambda c: False), depends_on=[])
    wf.add_step(ToolStep("bad", fail()), depends_on=[])
    wf.add_step(ToolStep("blocked", lambda: 1), depends_on=["bad"])
    wf.add_step(ToolStep("ok", async_sleeper(0.1)), depends_on=[])
    result = execute(wf)
    ids = [s.step_id for s in result.steps]
    assert sorted(ids) == ["bad", "blocked", "ok", "skipped"]
    assert set(ids[:2]) == {"bad", "ok"}
    assert set(ids[2:]) == {"blocked", "skipped"}


def test_final_output_is_the_output_of_the_last_declared_completed_leaf(execute):
    wf = Workflow("final", "final output")
    wf.add_step(ToolStep("a", lambda: "A"), depends_on=[])
    wf.add_step(ToolStep("b", lambda: "B"), depends_on=["a"])
    wf.add_step(ToolStep("c", async_sleeper(0.05, "C")), depends_on=[])
    wf.add_step(ToolStep("d", lambda: "D"), depends_on=[])
    wf.add_step(ToolStep("e", lambda: "E"), depends_on=["d"])
    # The leaves are b, c and e: c finishes last, but e is the last declared.
    assert execute(wf).final_output == "E"


def test_final_output_skips_a_last_declared_leaf_that_failed(execute):
    wf = Workflow("final", "final output")
    wf.add_step(ToolStep("a", lambda: "A"), depends_on=[])
    wf.add_step(ToolStep("b", async_sleeper(0.05, "B")), depends_on=[])
    wf.add_step(ToolStep("c", fail()), depends_on=[])
    assert execute(wf).final_output == "B"


def test_final_output_ignores_completed_steps_that_have_dependents(execute):
    wf = Workflow("final", "final output")
    wf.add_step(ToolStep("leaf", lambda: "leaf"), depends_on=[])
    wf.add_step(ToolStep("parent", lambda: "parent"), depends_on=[])
    wf.add_step(ToolStep("child", fail()), depends_on=["parent"])
    assert execute(wf).final_output == "leaf"


def test_run_counters_describe_a_partly_failed_run(execute):
    wf = Workflow("counts", "counters")
    wf.add_step(ToolStep("a", lambda: 1), depends_on=[])
    wf.add_step(ToolStep("e", lambda: 1), depends_on=[])
    wf.add_step(ToolStep("b", fail()), depends_on=[])
    wf.add_step(ToolStep("c", lambda: 1), depends_on=["b"])
    result = execute(wf)
    assert result.total_steps == 4
    assert result.steps_completed == 2
    assert result.success_rate == pytest.approx(50.0)
    assert result.failed_steps == ["b"]


def test_skipped_steps_count_as_successful_in_success_rate(execute):
    wf = Workflow("counts", "counters")
    wf.add_step(ToolStep("a", lambda: 1), depends_on=[])
    wf.add_step(ToolStep("s", lambda: 1).add_condition(lambda c: False), depends_on=[])
    wf.add_step(ToolStep("b", fail()), depends_on=[])
    wf.add_step(ToolStep("c", fail()), depends_on=[])
    result = execute(wf)
    assert result.success_rate == pytest.approx(50.0)
    assert sorted(result.failed_steps) == ["b", "c"]
    assert result.total_steps == 4


def test_empty_workflow_completes(execute):
    result = execute(Workflow("empty", "empty"))
    assert result.status == WorkflowStatus.COMPLETED
    assert result.steps == []
    assert result.total_steps == 0
    assert result.final_output is None


def test_wide_fan_out_and_fan_in_completes(execute, rendezvous):
    meet = rendezvous(200)  # all 200 items in flight at once, or the first times out

    async def item(i):
        await meet.arrive()
        return i

    def total(context):
        return sum(context.results[f"i{i}"] for i in range(200))

    wf = Workflow("fan", "fan out")
    for i in range(200):
        wf.add_step(ToolStep(f"i{i}", item, {"i": i}), depends_on=[])
    wf.add_step(ToolStep("sum", total), depends_on=[f"i{i}" for i in range(200)])
    result = execute(wf)
    assert result.final_output == sum(range(200)), result.error


def test_long_sync_chain_completes_in_order(execute):
    wf = Workflow("chain", "long chain")
    wf.add_step(ToolStep("s0", lambda: {"n": 0}))
    for i in range(1, 300):
        wf.add_step(ToolStep(f"s{i}", lambda context: {"n": context["n"] + 1}))
    result = execute(wf)
    assert result.context["n"] == 299


def test_an_async_steps_task_is_named_after_its_step():
    # Each attempt's asyncio Task carries its step id as its name (what asyncio's debug output
    # and `asyncio.all_tasks()` show), on the first attempt and on a retry alike.
    names = []
    calls = {"n": 0}

    async def fetch():
        names.append(asyncio.current_task().get_name())
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("once")
        return "ok"

    async def after():
        names.append(asyncio.current_task().get_name())

    workflow = Workflow("names", "names")
    workflow.add_step(
        ToolStep("fetch", fetch).with_retry(policy=RetryPolicy(max_attempts=2, initial_interval=0))
    )
    workflow.add_step(ToolStep("after", after))
    result = asyncio.run(workflow.execute())
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert names == ["fetch", "fetch", "after"]


def test_a_loops_task_factory_still_makes_the_steps_tasks():
    # Without a task factory the engine builds asyncio.Task itself (loop.create_task would
    # only add a Python frame); with one, every async attempt goes through it.
    made = []

    def factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    async def step():
        return 1

    async def main():
        asyncio.get_running_loop().set_task_factory(factory)
        workflow = Workflow("factory", "factory")
        workflow.add_step(ToolStep("a", step))
        workflow.add_step(ToolStep("b", step))
        return await workflow.execute()

    result = asyncio.run(main())
    assert result.status == WorkflowStatus.COMPLETED, result.error
    # (the run's own helper tasks go through the factory too, with asyncio's default names;
    # loop.create_task names a factory's task after the factory returns it)
    names = [task.get_name() for task in made]
    assert [name for name in names if not name.startswith("Task-")] == ["a", "b"]
