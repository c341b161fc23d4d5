"""Soak tests: repeated runs do not grow memory or threads, and reference cycles are collected."""

from __future__ import annotations

import asyncio
import gc
import os
import weakref

import pytest
from batten import AgentStep, RetryPolicy, ToolStep, Workflow, WorkflowContext, WorkflowStatus

pytestmark = pytest.mark.slow

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def os_thread_count():
    return len(os.listdir("/proc/self/task"))


def small_workflow(fail_sometimes=False):
    async def fetch(context):
        return {"items": [context["n"], context["n"] + 1], "blob": "x" * 512}

    def total(context):
        if fail_sometimes and context["n"] % 2:
            raise ConnectionError(f"odd run {context['n']}")
        return sum(context["items"])

    wf = Workflow("soak", "soak")
    wf.add_step(ToolStep("fetch", fetch))
    wf.add_step(
        ToolStep("total", total).with_retry(
            policy=RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=0.0)
        )
    )
    wf.add_step(AgentStep("report", lambda message: message, "total={total.result}"))
    return wf


async def run_many(wf, start, stop):
    for n in range(start, stop):
        result = await wf.execute(WorkflowContext("soak", variables={"n": n}))
        assert result.status in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED)


@pytest.mark.parametrize("fail_sometimes", [False, True], ids=["success", "with-failures"])
def test_ten_thousand_runs_do_not_grow_memory(fail_sometimes):
    wf = small_workflow(fail_sometimes)

    async def main():
        await run_many(wf, 0, 1_000)
        gc.collect()
        warm = rss_bytes()
        await run_many(wf, 1_000, 10_000)
        gc.collect()
        return rss_bytes() - warm

    growth = asyncio.run(main())
    assert growth < 10 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"


def test_repeated_runs_on_fresh_event_loops_do_not_accumulate_threads():
    wf = small_workflow()
    for n in range(50):
        asyncio.run(wf.execute(WorkflowContext("soak", variables={"n": n})))
        wf.run(WorkflowContext("soak", variables={"n": n}))
    baseline = os_thread_count()
    for n in range(500):
        asyncio.run(wf.execute(WorkflowContext("soak", variables={"n": n})))
        wf.run(WorkflowContext("soak", variables={"n": n}))
    assert os_thread_count() <= baseline + 2


class Sentinel:
    """Something to hold a weak reference to, placed inside the reference cycle."""


def collected(make_cycle):
    """Build a cycle with ``make_cycle(sentinel)``, drop it, and report whether gc freed it."""
    sentinel = Sentinel()
    ref = weakref.ref(sentinel)
    make_cycle(sentinel)
    del sentinel
    for _ in range(3):
        gc.collect()
    return ref() is None


@pytest.mark.parametrize("has_run", [False, True], ids=["never-run", "has-run"])
def test_workflow_referenced_by_its_own_step_callable_is_collected(has_run):
    def make_cycle(sentinel):
        wf = Workflow("cycle", "cycle")

        def tool():
            # The closure holds the workflow: workflow -> step -> tool -> closure -> workflow.
            return (wf.steps, sentinel)

        wf.add_step(ToolStep("loop", tool))
        if has_run:
            result = wf.run()
            assert result.status == WorkflowStatus.COMPLETED

    assert collected(make_cycle)


@pytest.mark.parametrize("has_run", [False, True], ids=["never-run", "has-run"])
def test_step_referenced_by_its_own_condition_and_agent_is_collected(has_run):
    def make_cycle(sentinel):
        holder = {}

        async def agent(message):
            return (holder["step"], sentinel, message)

        step = AgentStep("self", agent, "hi").add_condition(lambda ctx: holder["step"] is not None)
        holder["step"] = step
        wf = Workflow("cycle", "cycle").add_step(step)
        if has_run:
            assert asyncio.run(wf.execute()).status == WorkflowStatus.COMPLETED

    assert collected(make_cycle)


def test_result_holding_the_workflow_in_its_output_is_collected():
    def make_cycle(sentinel):
        wf = Workflow("cycle", "cycle")
        wf.add_step(ToolStep("leak", lambda: {"wf": wf, "sentinel": sentinel}))
        result = wf.run()
        wf.add_step(ToolStep("keep", lambda: result), depends_on=[])

    assert collected(make_cycle)


def test_workflow_that_failed_with_an_exception_referencing_it_is_collected():
    class HoldsWorkflow(Exception):
        pass

    def make_cycle(sentinel):
        wf = Workflow("cycle", "cycle")

        def boom():
            raise HoldsWorkflow(wf, sentinel)

        wf.add_step(ToolStep("boom", boom))
        result = wf.run()
        assert result.status == WorkflowStatus.FAILED

    assert collected(make_cycle)


def test_plan_reads_one_step_spec_at_a_time(monkeypatch):
    # Issue 13's M regression: the compiler built every StepSpec into a list before the native
    # Plan read them, so at 10,000 steps their blocks were freed only after the plan's own
    # objects had been allocated among them (+1.4 MB peak RSS in the 10k fan-out). The specs
    # now stream: when the compiler makes step i's spec, no earlier spec is alive.
    import gc

    from batten._internal.spec import StepSpec
    from batten._runtime import compile as compiler

    alive_before_each = []

    def counting(step, opts, spec):
        gc.collect()
        alive_before_each.append(sum(isinstance(o, StepSpec) for o in gc.get_objects()))
        return spec

    monkeypatch.setattr(compiler, "_CALL_WRAPPERS", [*compiler._CALL_WRAPPERS, counting])
    workflow = Workflow("specs", "specs")
    for i in range(30):
        workflow.add_step(ToolStep(f"s{i}", lambda: 1), depends_on=[])
    workflow.validate()
    assert len(alive_before_each) == 30
    assert max(alive_before_each) == 0, alive_before_each


def test_plan_shares_each_step_id_str_rather_than_copying_it():
    # Issue 18's M: the native plan made a new Python str per step id (~54 bytes a step, 0.5 MB
    # of the 10,000-step fan-out) although the step already holds one; it keeps the step's own.
    # A str subclass id is still copied (to a plain str), so results never carry a subclass.
    class Sub(str):
        pass

    plain, sub = ToolStep("plain", lambda: 1), ToolStep(Sub("sub"), lambda: 2)
    workflow = Workflow("ids", "ids")
    workflow.add_step(plain)
    workflow.add_step(sub)
    result = workflow.run()
    assert result.step("plain").step_id is plain.step_id
    assert type(result.step("sub").step_id) is str
    assert result.step("sub").step_id == "sub"


def test_a_plain_run_imports_no_store_traffic_or_event_modules():
    # Issue 13's M benchmark: every module loaded at `import batten` is resident in every
    # process. The layering had made the stores, durable runs and traffic controls eager
    # (+0.6 MB); a program that never names a store, a rate limit or a subscriber loads none.
    import subprocess
    import sys

    code = (
        "import sys, batten\n"
        "wf = batten.Workflow('w'); wf.add_step(batten.ToolStep('t', lambda: 1)); wf.run()\n"
        "lazy = ('batten.store', 'batten.durable', 'batten._runtime.durable', 'batten.traffic',"
        " 'batten.events', 'batten.approval', 'batten.pool')\n"
        "bad = [m for m in lazy if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
