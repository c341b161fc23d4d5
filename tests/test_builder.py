"""WorkflowBuilder: JAF's chained builder (seed 000) and JarvisCore's DAG builder (seed 003)."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from batten import (
    AgentStep,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowStatus,
)
from batten.builder import DagWorkflow, WorkflowBuilder
from batten.engine import WorkflowEngine

# -- JAF form ----------------------------------------------------------------------------------


def test_jaf_builder_builds_a_workflow_whose_steps_run_one_after_another(execute):
    order = []

    def welcome(message):
        order.append("welcome")
        return f"hello: {message}"

    def create_account(type):
        order.append("create_account")
        return {"account_type": type}

    wf = (
        WorkflowBuilder("customer_onboarding", "Customer Onboarding")
        .description("Onboard a customer")
        .add_agent_step("welcome", welcome, "Welcome new customer")
        .add_tool_step("create_account", create_account, {"type": "standard"})
        .add_agent_step("summary", lambda m: m.upper(), "done: {welcome.result}")
        .build()
    )

    assert isinstance(wf, Workflow)
    assert (wf.workflow_id, wf.name, wf.description) == (
        "customer_onboarding",
        "Customer Onboarding",
        "Onboard a customer",
    )
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert order == ["welcome", "create_account"]
    assert result.final_output == "DONE: HELLO: WELCOME NEW CUSTOMER"
    assert result.context["account_type"] == "standard"


def test_add_step_chains_each_step_after_the_previous_one(execute, clock):
    async def slow(name):
        clock.mark(f"{name}-start")
        await asyncio.sleep(0.05)
        clock.mark(f"{name}-end")

    wf = (
        WorkflowBuilder("chain")
        .add_step(ToolStep("a", slow, {"name": "a"}))
        .add_step(ToolStep("b", slow, {"name": "b"}))
        .build()
    )
    execute(wf)

    assert clock.marks["b-start"] >= clock.marks["a-end"]


def test_add_step_with_empty_depends_on_starts_at_once(execute, clock):
    async def slow(name):
        clock.mark(f"{name}-start")
        await asyncio.sleep(0.1)
        clock.mark(f"{name}-end")

    wf = (
        WorkflowBuilder("roots")
        .add_step(ToolStep("a", slow, {"name": "a"}))
        .add_step(ToolStep("b", slow, {"name": "b"}), depends_on=[])
        .build()
    )
    execute(wf)

    assert clock.marks["b-start"] < clock.marks["a-end"]


def test_builder_settings_and_callbacks_reach_the_workflow(execute):
    finished_steps, finished_runs, logged = [], [], []

    class Logger:
        def log_step_complete(self, step_name, result, duration_ms):
            logged.append(step_name)

    wf = (
        WorkflowBuilder("settings")
        .add_tool_step("fail", lambda: 1 / 0)
        .add_tool_step("after", lambda: "ran", depends_on=["fail"])
        .with_max_parallel_steps(2)
        .with_continue_on_error(True)
        .with_max_total_retries(5)
        .with_step_callback(lambda r: finished_steps.append(r.step_id))
        .with_completion_callback(lambda r: finished_runs.append(r.status))
        .with_logger(Logger())
        .build()
    )
    assert (wf.max_parallel_steps, wf.continue_on_error, wf.max_total_retries) == (2, True, 5)

    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED  # continue_on_error
    assert result.step("after").output == "ran"
    assert sorted(finished_steps) == ["after", "fail"]
    assert sorted(logged) == ["after", "fail"]
    assert finished_runs == [WorkflowStatus.COMPLETED]


def test_with_error_handler_decides_per_failure(execute):
    seen = []

    def handler(error, step, state):
        seen.append((type(error).__name__, step.step_id, state.get("order_id")))
        return {"action": "skip", "escalate": True}

    wf = (
        WorkflowBuilder("handled")
        .add_tool_step("pay", lambda: 1 / 0)
        .add_tool_step("ship", lambda: "shipped")
        .with_error_handler(handler)
        .build()
    )
    result = execute(wf, WorkflowContext("handled", variables={"order_id": "ORD-1"}))

    assert seen == [("ZeroDivisionError", "pay", "ORD-1")]
    assert result.step("pay").status == StepStatus.SKIPPED
    assert result.step("ship").output == "shipped"
    assert result.status == WorkflowStatus.COMPLETED


def test_error_handler_retry_action_runs_the_step_again(execute):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("network blip")
        return "paid"

    wf = (
        WorkflowBuilder("retrying")
        .add_tool_step("pay", flaky)
        .with_error_handler(
            lambda error, step, state: {
                "action": "retry" if "network" in str(error).lower() else "fail"
            }
        )
        .build()
    )
    result = execute(wf)

    assert result.step("pay").output == "paid"
    assert len(calls) == 2


def test_conditional_step_runs_the_branch_its_condition_picks(execute):
    wf = (
        WorkflowBuilder("payments")
        .add_conditional_step(
            "payment_check",
            lambda ctx: ctx.get("amount", 0) > 1000,
            ToolStep("approval", lambda: "manual review"),
            ToolStep("auto_approve", lambda: "auto approved"),
        )
        .build()
    )

    big = execute(wf, WorkflowContext("p", variables={"amount": 5000}))
    small = execute(wf, WorkflowContext("p", variables={"amount": 10}))

    assert big.final_output == "manual review"
    assert small.final_output == "auto approved"


def test_parallel_step_runs_its_branches_concurrently(execute, rendezvous):
    meet = rendezvous(3)

    async def branch(name):
        await meet.arrive()  # all three branches at once, or the first times out
        return name

    wf = (
        WorkflowBuilder("setup")
        .add_parallel_step(
            "customer_setup",
            [ToolStep(n, branch, {"name": n}) for n in ("record", "email", "manager")],
        )
        .build()
    )
    result = execute(wf)

    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert meet.arrived == 3
    assert result.final_output == ["record", "email", "manager"]


def test_loop_step_repeats_while_its_condition_holds(execute):
    processed = []

    def process():
        processed.append(len(processed))
        return len(processed)

    wf = (
        WorkflowBuilder("orders")
        .add_loop_step(
            "process_orders",
            ToolStep("process_item", process),
            lambda ctx, iteration: iteration < len(ctx.get("orders", [])),
            max_iterations=10,
        )
        .build()
    )
    result = execute(wf, WorkflowContext("o", variables={"orders": ["a", "b", "c"]}))

    assert processed == [0, 1, 2]
    assert result.final_output == 3


def test_duplicate_step_id_raises_at_the_call_that_adds_it():
    builder = WorkflowBuilder("dup").add_tool_step("a", lambda: 1)
    with pytest.raises(WorkflowDefinitionError, match="duplicate step id 'a'"):
        builder.add_tool_step("a", lambda: 2)


def test_build_reports_a_depends_on_naming_no_step():
    builder = WorkflowBuilder("ghost").add_tool_step("a", lambda: 1, depends_on=["ghost"])
    with pytest.raises(WorkflowDefinitionError, match=r"'a' depends on unknown step.*'ghost'"):
        builder.build()


def test_builder_rejects_bad_settings_at_the_call():
    builder = WorkflowBuilder("bad")
    with pytest.raises(WorkflowDefinitionError, match="max_parallel_steps"):
        builder.with_max_parallel_steps(0)
    with pytest.raises(WorkflowDefinitionError, match="max_total_retries"):
        builder.with_max_total_retries(-1)
    with pytest.raises(WorkflowDefinitionError, match="callable"):
        builder.with_error_handler("retry")
    with pytest.raises(WorkflowDefinitionError, match="log_step_start"):
        builder.with_logger(object())


def test_team_is_only_for_a_jarviscore_style_builder():
    with pytest.raises(WorkflowDefinitionError, match="team"):
        WorkflowBuilder("jaf").add_tool_step("a", lambda: 1).build(team="ops")


# -- JarvisCore form -------------------------------------------------------------------------


def agents(**extra):
    async def researcher(task):
        await asyncio.sleep(0.2)
        return f"DATA<{task}>"

    def analyst(task):
        return f"INSIGHTS<{task}>"

    def scraper(task):
        raise ConnectionError(f"unreachable: {task}")

    return WorkflowEngine(
        agents={"researcher": researcher, "analyst": analyst, "scraper": scraper, **extra}
    )


def test_no_argument_builder_generates_a_workflow_id():
    a = WorkflowBuilder().step("x", "analyst", "t").build()
    b = WorkflowBuilder().step("x", "analyst", "t").build()

    assert re.fullmatch(r"workflow-[0-9a-f]{8}", a.workflow_id)
    assert a.workflow_id != b.workflow_id


def test_step_returns_a_dag_workflow_with_title_team_and_steps():
    wf = (
        WorkflowBuilder()
        .step("research", "researcher", "Gather data.")
        .step("analyse", "analyst", "Analyse: {research.result}", depends_on=["research"])
        .build(title="Report", team="intel")
    )

    assert isinstance(wf, DagWorkflow)
    assert isinstance(wf.workflow, Workflow)
    assert (wf.title, wf.team, wf.workflow.name) == ("Report", "intel", "Report")
    assert [s.step_id for s in wf.steps] == ["research", "analyse"]


def test_steps_without_depends_on_are_roots_that_start_at_once(rendezvous):
    meet = rendezvous(2)

    async def meeting_researcher(task):
        await meet.arrive()  # both roots at once, or the first times out alone
        return f"DATA<{task}>"

    wf = (
        WorkflowBuilder()
        .step("market", "researcher", "EMEA market size")
        .step("competitors", "researcher", "Top competitors")
        .build()
    )
    results = asyncio.run(wf.execute(agents(researcher=meeting_researcher)))

    assert [r["status"] for r in results] == ["success", "success"], results
    assert meet.arrived == 2


def test_result_references_are_substituted_into_the_task():
    wf = (
        WorkflowBuilder()
        .step("research", "researcher", "EV adoption")
        .step("analyse", "analyst", "Analyse: {research.result}", depends_on=["research"])
        .build()
    )
    results = asyncio.run(wf.execute(agents()))

    assert results[1]["output"] == "INSIGHTS<Analyse: DATA<EV adoption>>"


def test_depends_on_an_undeclared_step_raises_value_error_at_step():
    builder = WorkflowBuilder().step("a", "analyst", "first")
    with pytest.raises(ValueError, match=r"undeclared step.*'later'"):
        builder.step("b", "analyst", "second", depends_on=["later"])
    with pytest.raises(WorkflowDefinitionError):
        builder.step("b", "analyst", "second", depends_on=["later"])


def test_a_task_referencing_a_step_outside_its_dependencies_raises_at_step():
    builder = WorkflowBuilder().step("a", "analyst", "first").step("b", "analyst", "second")
    with pytest.raises(WorkflowDefinitionError, match=r"\{a.result\}.*depends_on"):
        builder.step("c", "analyst", "use {a.result}", depends_on=["b"])


def test_a_transitive_ancestor_may_be_referenced():
    wf = (
        WorkflowBuilder()
        .step("a", "analyst", "first")
        .step("b", "analyst", "second", depends_on=["a"])
        .step("c", "analyst", "third {a.result}", depends_on=["b"])
        .build()
    )
    results = asyncio.run(wf.execute(agents()))

    assert results[-1]["output"] == "INSIGHTS<third INSIGHTS<first>>"


def test_build_without_steps_raises_for_a_builder_made_without_an_id():
    with pytest.raises(ValueError, match="no steps"):
        WorkflowBuilder().build(title="Empty")


def test_a_named_builder_may_build_an_empty_workflow_to_fill_later(execute):
    wf = WorkflowBuilder("logged_workflow").build()
    wf.add_step(ToolStep("extract", lambda: {"rows": 3}))

    assert execute(wf).context["rows"] == 3


def test_execute_returns_jarviscore_dicts_and_omits_blocked_steps():
    wf = (
        WorkflowBuilder()
        .step("market", "researcher", "EMEA")
        .step("scan", "scraper", "competitors")
        .step(
            "synthesis", "analyst", "{market.result} + {scan.result}", depends_on=["market", "scan"]
        )
        .step("memo", "analyst", "memo {market.result}", depends_on=["market"])
        .build()
    )
    results = asyncio.run(wf.execute(agents()))

    assert [r["step_id"] for r in results] == ["market", "scan", "memo"]  # synthesis blocked
    market, scan, memo = results
    assert set(market) == {"step_id", "agent", "status", "output", "error", "elapsed_ms"}
    assert market["agent"] == "researcher"
    assert (market["status"], market["output"], market["error"]) == ("success", "DATA<EMEA>", None)
    assert market["elapsed_ms"] >= 150
    assert (scan["status"], scan["output"], scan["error"]) == (
        "failure",
        None,
        "unreachable: competitors",
    )
    assert memo["output"] == "INSIGHTS<memo DATA<EMEA>>"


def test_timeout_per_step_marks_slow_steps_timeout_without_changing_the_steps():
    async def hang(task):
        await asyncio.sleep(30)

    wf = (
        WorkflowBuilder().step("stuck", "slowpoke", "wait").step("quick", "analyst", "look").build()
    )
    started = time.perf_counter()
    results = asyncio.run(wf.execute(agents(slowpoke=hang), timeout_per_step=0.2))

    assert time.perf_counter() - started < 10  # not timed out, "stuck" would hang 30 s
    assert {r["step_id"]: r["status"] for r in results} == {"stuck": "timeout", "quick": "success"}
    assert [s.timeout for s in wf.steps] == [None, None]


def test_timeout_per_step_leaves_a_step_own_timeout_alone():
    async def slowish(task):
        await asyncio.sleep(0.3)
        return "late but fine"

    wf = WorkflowBuilder().step("s", "slowish", "go").build()
    wf.steps[0].with_timeout(5)
    results = asyncio.run(wf.execute(agents(slowish=slowish), timeout_per_step=0.1))

    assert results[0]["status"] == "success"


def test_execute_without_mesh_uses_agent_objects_and_names_them():
    class Researcher:
        name = "researcher-bot"

        async def arun(self, task):
            return f"found {task}"

    wf = WorkflowBuilder().step("r", Researcher(), "it").build()
    results = asyncio.run(wf.execute(None, timeout_per_step=None))

    assert results == [
        {
            "step_id": "r",
            "agent": "researcher-bot",
            "status": "success",
            "output": "found it",
            "error": None,
            "elapsed_ms": results[0]["elapsed_ms"],
        }
    ]


def test_execute_with_an_engine_is_tracked_by_it():
    engine = agents()
    wf = WorkflowBuilder().step("a", "analyst", "x").build()
    asyncio.run(wf.execute(engine))

    assert engine.get_workflow_status(wf.workflow_id)["status"] == WorkflowStatus.COMPLETED


def test_execute_context_variables_reach_the_agents():
    def greeter(task, context):
        return f"{task} {context['customer']}"

    wf = WorkflowBuilder().step("g", greeter, "hello").build()
    results = asyncio.run(wf.execute(context={"customer": "Ada"}))

    assert results[0]["output"] == "hello Ada"


def test_register_returns_the_workflow_id_and_rejects_what_is_not_a_store():
    wf = WorkflowBuilder().step("a", "analyst", "x").build()

    assert asyncio.run(wf.register()) == wf.workflow_id
    assert asyncio.run(wf.register(None)) == wf.workflow_id
    with pytest.raises(TypeError, match=r"batten\.Store or a URL"):
        asyncio.run(wf.register(object()))
    with pytest.raises(TypeError, match=r"batten\.Store or a URL"):
        asyncio.run(wf.execute(redis_store=object()))


def test_execute_rejects_a_mesh_that_is_not_an_engine():
    wf = WorkflowBuilder().step("a", "analyst", "x").build()
    with pytest.raises(TypeError, match="WorkflowEngine"):
        asyncio.run(wf.execute(object()))


def test_an_unregistered_role_fails_before_any_step_runs():
    ran = threading.Event()

    def analyst(task):
        ran.set()
        return task

    wf = WorkflowBuilder().step("a", "analyst", "x").step("b", "nobody", "y").build()
    with pytest.raises(WorkflowDefinitionError, match="no agent named 'nobody'"):
        asyncio.run(wf.execute(WorkflowEngine(agents={"analyst": analyst})))
    assert not ran.is_set()


def test_step_mixes_with_add_step_and_each_keeps_its_default(clock):
    async def agent(task):
        clock.mark(f"{task}-start")
        await asyncio.sleep(0.1)
        clock.mark(f"{task}-end")
        return task

    wf = (
        WorkflowBuilder()
        .step("root", agent, "root")
        .add_step(AgentStep("chained", agent, "chained"))  # after "root"
        .step("other_root", agent, "other_root")  # at once
        .build()
    )
    asyncio.run(wf.execute())

    assert clock.marks["chained-start"] >= clock.marks["root-end"]
    assert clock.marks["other_root-start"] < clock.marks["root-end"]


def _takes_context_param(context): ...
def _takes_context_default(x, context=None): ...
def _takes_context_kw_only(*, context): ...
def _takes_context_positional_only(context, /): ...
def _takes_star_context(*context): ...
def _takes_star_star_context(**context): ...
def _takes_context_after_star_args(x, *args, context, **kw): ...
def _has_context_local(x):
    context = x
    return context


def test_context_detection_on_plain_functions_matches_inspect_signature():
    # The compiler reads a plain function's parameters off its code object (issue 18, D3);
    # its answer must be inspect.signature's for every shape, wrapped functions included.
    import functools
    import inspect

    from batten.steps.base import _accepts_context

    @functools.wraps(_takes_context_param)
    def wrapped(*args, **kwargs): ...

    def overridden(x): ...

    overridden.__signature__ = inspect.signature(_takes_context_param)  # type: ignore[attr-defined]
    shapes = [
        _takes_context_param,
        _takes_context_default,
        _takes_context_kw_only,
        _takes_context_positional_only,
        _takes_star_context,
        _takes_star_star_context,
        _takes_context_after_star_args,
        _has_context_local,
        wrapped,
        overridden,
        lambda context: context,
        lambda x: x,
    ]
    for fn in shapes:
        p = inspect.signature(fn).parameters.get("context")
        expected = p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        assert _accepts_context(fn) == expected, fn
    assert [_accepts_context(fn) for fn in shapes[:4]] == [True, True, True, False]
    # The compiler's one-call answer for a plain function is the same as the two checks'.
    from batten.steps.base import _is_async, _plain_traits

    for fn in shapes:
        traits = _plain_traits(fn)
        if fn is wrapped or fn is overridden:
            assert traits is None, fn  # their signatures are not their code's: asked inspect
        else:
            assert traits == (_is_async(fn), _accepts_context(fn)), fn


def test_async_detection_on_plain_functions_matches_inspect():
    # The compiler reads a plain function's coroutine flag off its code object (issue 18, D3);
    # its answer must be the two `inspect` checks' for every shape of callable.
    import functools
    import inspect

    from batten.steps.base import _is_async

    async def coro(x): ...

    async def agen(x):
        yield x

    def plain(x): ...

    class AsyncCall:
        async def __call__(self, x): ...

    class Methods:
        async def a(self, x): ...

        def s(self, x): ...

    shapes = [
        coro,
        agen,
        plain,
        lambda x: x,
        functools.partial(coro, 1),
        functools.partial(plain, 1),
        AsyncCall(),
        Methods().a,
        Methods().s,
        len,
    ]
    for fn in shapes:
        call = type(fn).__dict__.get("__call__")
        expected = inspect.iscoroutinefunction(fn) or (
            call is not None and inspect.iscoroutinefunction(call)
        )
        assert _is_async(fn) == expected, fn
    assert [_is_async(fn) for fn in shapes[:4]] == [True, False, False, False]


def test_a_plain_function_carrying_a_tool_protocol_still_goes_to_its_adapter():
    # A plain `def` function is called as it is (the compiler's fast path, issue 18), unless
    # it carries JAF's tool protocol (a `schema` with name and parameters, and `execute`),
    # as a decorator may set on it: then the JAF adapter runs `execute`, as before.
    from types import SimpleNamespace

    from batten.steps.base import _resolve

    def tool(x): ...

    fn, single = _resolve(tool, "tool", "t")
    assert fn is tool and single is False

    def decorated(x): ...

    async def execute(args, context=None):
        return "ran"

    decorated.schema = SimpleNamespace(name="d", parameters=None, description="")  # type: ignore[attr-defined]
    decorated.execute = execute  # type: ignore[attr-defined]
    fn, single = _resolve(decorated, "tool", "t")
    assert fn is not decorated and fn.__module__ == "batten.adapters.jaf", fn
    assert single is True  # JAF's tools take their arguments as one dict
