"""The public API surface: names, enums, docstrings, WorkflowContext, steps and RetryPolicy."""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import inspect
import re

import batten
import pytest
from batten import (
    AgentStep,
    BattenError,
    RetryPolicy,
    StepResult,
    StepStatus,
    StepTimeoutError,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowResult,
    WorkflowStatus,
    WorkflowTimeoutError,
)

PUBLIC_NAMES = [
    "Workflow",
    "WorkflowContext",
    "AgentStep",
    "ToolStep",
    "RetryPolicy",
    "WorkflowResult",
    "StepResult",
    "WorkflowStatus",
    "StepStatus",
    "BattenError",
    "WorkflowDefinitionError",
    "StepTimeoutError",
    "WorkflowTimeoutError",
]

WORKFLOW_STATUSES = [
    "PENDING",
    "RUNNING",
    "PAUSED",
    "WAITING_APPROVAL",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "COMPENSATED",
]

STEP_STATUSES = [
    "PENDING",
    "RUNNING",
    "RETRYING",
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "SKIPPED",
    "BLOCKED",
    "CANCELLED",
]

# -- exports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_is_exported_and_listed_in_all(name):
    assert hasattr(batten, name)
    assert name in batten.__all__


def test_every_name_in_all_exists():
    missing = [name for name in batten.__all__ if not hasattr(batten, name)]
    assert missing == []


# -- enums -------------------------------------------------------------------------------------


def test_workflow_status_members_are_the_designed_ones_with_lowercase_str_values():
    for name in WORKFLOW_STATUSES:
        member = WorkflowStatus[name]
        assert isinstance(member, str)
        assert member == name.lower()
        assert member.value == name.lower()
    assert WorkflowStatus.COMPLETED == "completed"


def test_step_status_members_are_the_designed_ones_with_lowercase_str_values():
    for name in STEP_STATUSES:
        member = StepStatus[name]
        assert isinstance(member, str)
        assert member == name.lower()
        assert member.value == name.lower()
    assert StepStatus.TIMEOUT == "timeout"


def test_statuses_round_trip_from_their_string_values():
    assert WorkflowStatus("failed") is WorkflowStatus.FAILED
    assert StepStatus("blocked") is StepStatus.BLOCKED


# -- docstrings --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_object_has_a_docstring(name):
    doc = inspect.getdoc(getattr(batten, name))
    assert doc and doc.strip()


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        (Workflow, "add_step"),
        (Workflow, "execute"),
        (Workflow, "run"),
        (AgentStep, "with_timeout"),
        (AgentStep, "with_retry"),
        (AgentStep, "add_condition"),
        (ToolStep, "with_timeout"),
        (ToolStep, "with_retry"),
        (ToolStep, "add_condition"),
        (WorkflowResult, "step"),
    ],
)
def test_public_method_has_a_docstring(cls, method):
    doc = inspect.getdoc(getattr(cls, method))
    assert doc and doc.strip()


def test_module_has_a_docstring():
    assert batten.__doc__ and batten.__doc__.strip()


# -- exceptions --------------------------------------------------------------------------------


def test_exception_hierarchy():
    assert issubclass(BattenError, Exception)
    assert issubclass(WorkflowDefinitionError, BattenError)
    assert issubclass(WorkflowDefinitionError, ValueError)
    assert issubclass(StepTimeoutError, BattenError)
    assert issubclass(WorkflowTimeoutError, BattenError)


# -- WorkflowContext ---------------------------------------------------------------------------


def make_context() -> WorkflowContext:
    return WorkflowContext(
        "orders",
        user_context={"user": "ada"},
        variables={"order_id": 7, "priority": "high"},
        metadata={"source": "test"},
    )


def test_context_exposes_its_constructor_arguments_as_attributes():
    ctx = make_context()
    assert ctx.workflow_id == "orders"
    assert ctx.user_context == {"user": "ada"}
    assert dict(ctx.variables) == {"order_id": 7, "priority": "high"}
    assert ctx.metadata == {"source": "test"}
    assert dict(ctx.results) == {}


def test_context_is_a_mapping_over_its_variables():
    ctx = make_context()
    assert isinstance(ctx, collections.abc.Mapping)
    assert ctx["order_id"] == 7
    assert ctx.get("priority") == "high"
    assert ctx.get("missing", "fallback") == "fallback"
    assert ctx.get("missing") is None
    assert "order_id" in ctx
    assert "missing" not in ctx
    assert len(ctx) == 2
    assert sorted(ctx) == ["order_id", "priority"]
    assert sorted(ctx.keys()) == ["order_id", "priority"]
    assert sorted(ctx.items()) == [("order_id", 7), ("priority", "high")]
    assert sorted(ctx.values(), key=str) == [7, "high"]


def test_context_missing_key_raises_key_error():
    with pytest.raises(KeyError):
        make_context()["missing"]


def test_context_is_read_only():
    ctx = make_context()
    with pytest.raises(TypeError):
        ctx["order_id"] = 8
    with pytest.raises(TypeError):
        ctx.variables["order_id"] = 8
    with pytest.raises(TypeError):
        ctx.results["a"] = 1
    assert ctx["order_id"] == 7


def test_context_copies_its_input_variables():
    variables = {"order_id": 7}
    ctx = WorkflowContext("orders", variables=variables)
    variables["order_id"] = 8
    assert ctx["order_id"] == 7


def test_context_accepts_initial_data_as_an_alias_of_variables():
    ctx = WorkflowContext("orders", initial_data={"order_id": 7})
    assert ctx["order_id"] == 7
    assert dict(ctx.variables) == {"order_id": 7}


def test_context_defaults_are_empty():
    ctx = WorkflowContext("orders")
    assert len(ctx) == 0
    assert ctx.user_context == {}
    assert ctx.metadata == {}
    assert dict(ctx.results) == {}


@pytest.mark.parametrize(("priority", "expected"), [("high", "completed"), ("low", "skipped")])
def test_condition_written_against_context_variables_decides_whether_a_step_runs(
    execute, priority, expected
):
    wf = Workflow("cond", "condition")
    step = ToolStep("escalate", lambda: "escalated").add_condition(
        lambda ctx: ctx.variables.get("priority") == "high"
    )
    wf.add_step(step)
    result = execute(wf, WorkflowContext("cond", variables={"priority": priority}))
    assert result.step("escalate").status == expected


def test_step_declaring_context_receives_the_workflow_context(execute):
    seen = {}

    def tool(context):
        seen["ctx"] = context
        return context["order_id"]

    wf = Workflow("ctx", "context").add_step(ToolStep("read", tool))
    result = execute(
        wf, WorkflowContext("ctx", user_context={"user": "ada"}, variables={"order_id": 7})
    )
    assert result.final_output == 7
    assert isinstance(seen["ctx"], WorkflowContext)
    assert seen["ctx"].user_context == {"user": "ada"}


def test_agent_declaring_context_receives_message_and_context(execute):
    async def agent(message, context):
        return f"{message} for {context['user_name']}"

    wf = Workflow("ctx", "context").add_step(AgentStep("greet", agent, "hello"))
    result = execute(wf, WorkflowContext("ctx", variables={"user_name": "ada"}))
    assert result.final_output == "hello for ada"


# -- steps and agent/tool shapes ---------------------------------------------------------------


def test_agent_is_called_with_the_message(execute):
    wf = Workflow("a", "agent").add_step(AgentStep("echo", lambda message: message * 2, "ab"))
    assert execute(wf).final_output == "abab"


def test_tool_is_called_with_its_args_as_keywords(execute):
    wf = Workflow("t", "tool").add_step(ToolStep("add", lambda x, y: x + y, {"x": 2, "y": 3}))
    assert execute(wf).final_output == 5


def test_tool_without_args_is_called_with_no_arguments(execute):
    wf = Workflow("t", "tool").add_step(ToolStep("const", lambda: "ok"))
    assert execute(wf).final_output == "ok"


class AsyncRunAgent:
    async def arun(self, message):
        return f"arun:{message}"


class AsyncInvokeAgent:
    async def ainvoke(self, message):
        return f"ainvoke:{message}"


class RunAgent:
    def run(self, message):
        return f"run:{message}"


class InvokeAgent:
    def invoke(self, message):
        return f"invoke:{message}"


class ExecuteAgent:
    def execute(self, message):
        return f"execute:{message}"


class ManyMethodsAgent:
    """Has every supported method: ``arun`` wins (it is checked first)."""

    async def arun(self, message):
        return f"arun:{message}"

    def run(self, message):  # pragma: no cover - must not be called
        raise AssertionError("run() must not be used when arun() exists")

    def invoke(self, message):  # pragma: no cover - must not be called
        raise AssertionError("invoke() must not be used when arun() exists")


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (AsyncRunAgent(), "arun:hi"),
        (AsyncInvokeAgent(), "ainvoke:hi"),
        (RunAgent(), "run:hi"),
        (InvokeAgent(), "invoke:hi"),
        (ExecuteAgent(), "execute:hi"),
        (ManyMethodsAgent(), "arun:hi"),
    ],
    ids=["arun", "ainvoke", "run", "invoke", "execute", "arun-first"],
)
def test_agent_object_is_called_through_its_method(execute, agent, expected):
    wf = Workflow("obj", "object agent").add_step(AgentStep("a", agent, "hi"))
    assert execute(wf).final_output == expected


class InvokeTool:
    def invoke(self, args):
        return ("invoke", dict(args))


class RunTool:
    def run(self, **kwargs):
        return ("run", kwargs)


class AsyncRunTool:
    async def arun(self, **kwargs):
        return ("arun", kwargs)


class AsyncInvokeTool:
    async def ainvoke(self, args):
        return ("ainvoke", dict(args))


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (InvokeTool(), ("invoke", {"q": "x"})),
        (AsyncInvokeTool(), ("ainvoke", {"q": "x"})),
        (RunTool(), ("run", {"q": "x"})),
        (AsyncRunTool(), ("arun", {"q": "x"})),
    ],
    ids=["invoke", "ainvoke", "run", "arun"],
)
def test_tool_object_invoke_gets_the_args_dict_and_run_gets_keywords(execute, tool, expected):
    wf = Workflow("obj", "object tool").add_step(ToolStep("t", tool, {"q": "x"}))
    assert execute(wf).final_output == expected


# -- add_step ----------------------------------------------------------------------------------


def test_add_step_returns_the_workflow():
    wf = Workflow("wf", "fluent")
    assert wf.add_step(ToolStep("a", lambda: 1)) is wf


def test_steps_lists_steps_in_declaration_order():
    wf = Workflow("wf", "order")
    wf.add_step(ToolStep("b", lambda: 1), depends_on=[])
    wf.add_step(ToolStep("a", lambda: 1), depends_on=[])
    wf.add_step(ToolStep("c", lambda: 1))
    assert [step.step_id for step in wf.steps] == ["b", "a", "c"]


def test_workflow_keeps_its_id_name_and_description():
    wf = Workflow("wf-1", "Order flow", "handles orders")
    assert wf.workflow_id == "wf-1"
    assert wf.name == "Order flow"
    assert wf.description == "handles orders"


def test_add_step_without_depends_on_runs_after_the_previous_step(execute):
    events = []

    def stage(name):
        async def run():
            events.append(f"{name} start")
            await asyncio.sleep(0.05)
            events.append(f"{name} end")
            return name

        return run

    wf = Workflow("seq", "sequential")
    for name in ["a", "b", "c"]:
        wf.add_step(ToolStep(name, stage(name)))
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert events == ["a start", "a end", "b start", "b end", "c start", "c end"]


def test_add_step_with_empty_depends_on_makes_a_root(execute, rendezvous):
    meet = rendezvous(2)

    async def nap():
        # Both roots must be running at once to get past this; were "b" to wait for "a",
        # "a" would meet no one and time out.
        await meet.arrive()

    wf = Workflow("roots", "roots")
    wf.add_step(ToolStep("a", nap))
    wf.add_step(ToolStep("b", nap), depends_on=[])
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert meet.arrived == 2


def test_add_step_with_explicit_depends_on_waits_for_exactly_those(execute):
    done = set()

    def stage(name, delay):
        async def run():
            await asyncio.sleep(delay)
            done.add(name)
            return sorted(done)

        return run

    wf = Workflow("explicit", "explicit deps")
    wf.add_step(ToolStep("slow", stage("slow", 0.1)), depends_on=[])
    wf.add_step(ToolStep("fast", stage("fast", 0.0)), depends_on=[])
    wf.add_step(ToolStep("after_fast", stage("after_fast", 0.0)), depends_on=["fast"])
    wf.add_step(ToolStep("after_both", stage("after_both", 0.0)), depends_on=["slow", "fast"])
    result = execute(wf)
    assert "slow" not in result.step("after_fast").output
    assert {"slow", "fast"} <= set(result.step("after_both").output)


def test_forward_references_in_depends_on_are_allowed(execute):
    order = []
    wf = Workflow("fwd", "forward reference")
    wf.add_step(ToolStep("second", lambda: order.append("second")), depends_on=["first"])
    wf.add_step(ToolStep("first", lambda: order.append("first")), depends_on=[])
    result = execute(wf)
    assert result.status == WorkflowStatus.COMPLETED
    assert order == ["first", "second"]


# -- fluent step methods -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_step", [lambda: ToolStep("t", lambda: 1), lambda: AgentStep("a", str, "m")]
)
def test_fluent_step_methods_return_the_step(make_step):
    step = make_step()
    assert step.with_timeout(1.0) is step
    assert step.with_retry(2) is step
    assert step.with_retry(max_attempts=2) is step
    assert step.with_retry(policy=RetryPolicy(max_attempts=2)) is step
    assert step.add_condition(lambda ctx: True) is step


def test_step_keeps_its_id():
    assert ToolStep("fetch", lambda: 1).step_id == "fetch"
    assert AgentStep("think", str, "m").step_id == "think"


# -- RetryPolicy -------------------------------------------------------------------------------


def test_retry_policy_defaults():
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.initial_interval == 1.0
    assert policy.backoff_coefficient == 2.0
    assert policy.max_interval == 100.0
    assert policy.jitter == 0.1
    assert tuple(policy.retry_on) == ()
    assert tuple(policy.non_retryable) == ()


def test_retry_policy_is_frozen():
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"initial_interval": -0.1},
        {"max_interval": -1.0},
        {"backoff_coefficient": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
    ids=lambda kw: next(iter(kw)) + "=" + str(next(iter(kw.values()))),
)
def test_invalid_retry_policy_raises_definition_error(kwargs):
    with pytest.raises(WorkflowDefinitionError) as info:
        RetryPolicy(**kwargs)
    assert isinstance(info.value, ValueError)
    assert next(iter(kwargs)) in str(info.value)


def test_retry_policy_accepts_zero_intervals_and_full_jitter():
    RetryPolicy(initial_interval=0.0, max_interval=0.0, jitter=0.0)
    RetryPolicy(jitter=1.0, backoff_coefficient=1.0, max_attempts=1)


def always_failing(calls):
    def tool():
        calls.append(1)
        raise ConnectionError("down")

    return tool


FAST = RetryPolicy(initial_interval=0.0, jitter=0.0)


def test_with_retry_count_means_retries_after_the_first_attempt(execute):
    calls = []
    step = ToolStep("flaky", always_failing(calls)).with_retry(3, policy=FAST)
    result = execute(Workflow("r", "retry").add_step(step))
    assert result.step("flaky").attempts == 4
    assert len(calls) == 4


def test_with_retry_max_attempts_counts_every_attempt(execute):
    calls = []
    step = ToolStep("flaky", always_failing(calls)).with_retry(max_attempts=3, policy=FAST)
    result = execute(Workflow("r", "retry").add_step(step))
    assert result.step("flaky").attempts == 3
    assert len(calls) == 3


def test_with_retry_policy_uses_the_policy_attempts(execute):
    calls = []
    policy = RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=0.0)
    step = ToolStep("flaky", always_failing(calls)).with_retry(policy=policy)
    result = execute(Workflow("r", "retry").add_step(step))
    assert result.step("flaky").attempts == 2
    assert len(calls) == 2


def test_step_without_with_retry_makes_a_single_attempt(execute):
    calls = []
    result = execute(Workflow("r", "retry").add_step(ToolStep("flaky", always_failing(calls))))
    assert result.step("flaky").status == StepStatus.FAILED
    assert result.step("flaky").attempts == 1
    assert len(calls) == 1


# -- results -----------------------------------------------------------------------------------


def test_workflow_result_describes_the_run(execute):
    wf = Workflow("shape", "result shape")
    wf.add_step(ToolStep("a", lambda: {"x": 1}))
    wf.add_step(AgentStep("b", lambda message: message.upper(), "done"))
    result = execute(wf)
    assert isinstance(result, WorkflowResult)
    assert result.workflow_id == "shape"
    assert re.fullmatch(r"[0-9a-f]{32}", result.run_id)
    assert result.status == WorkflowStatus.COMPLETED
    assert result.error is None
    assert result.final_output == "DONE"
    assert isinstance(result.total_execution_time_ms, float)
    assert result.total_execution_time_ms >= 0
    assert isinstance(result.context, WorkflowContext)
    assert result.success_rate == 100.0
    assert result.failed_steps == []
    assert result.steps_completed == 2
    assert result.total_steps == 2


def test_step_result_describes_the_step(execute):
    wf = Workflow("shape", "result shape").add_step(ToolStep("a", lambda: {"x": 1}))
    step = execute(wf).step("a")
    assert isinstance(step, StepResult)
    assert step.step_id == "a"
    assert step.status == StepStatus.COMPLETED
    assert step.output == {"x": 1}
    assert step.error is None
    assert step.error_type is None
    assert step.exception is None
    assert step.attempts == 1
    assert isinstance(step.execution_time_ms, float)
    assert step.execution_time_ms >= 0
    assert step.is_success is True
    assert step.is_failure is False


def test_each_run_gets_a_fresh_run_id(execute):
    wf = Workflow("ids", "run ids").add_step(ToolStep("a", lambda: 1))
    assert execute(wf).run_id != execute(wf).run_id


def test_a_workflow_can_be_executed_repeatedly_with_fresh_state(execute):
    wf = Workflow("again", "again")
    wf.add_step(ToolStep("count", lambda context: {"n": context.get("n", 0) + 1}))
    first = execute(wf, WorkflowContext("again", variables={"n": 10}))
    second = execute(wf, WorkflowContext("again", variables={"n": 20}))
    assert first.context["n"] == 11
    assert second.context["n"] == 21


def test_step_lookup_of_unknown_id_raises_key_error(execute):
    result = execute(Workflow("k", "k").add_step(ToolStep("a", lambda: 1)))
    with pytest.raises(KeyError):
        result.step("nope")


def test_private_compile_options_and_ray_placement_keep_their_dataclass_behaviour():
    # Both were frozen dataclasses; they are plain slotted classes now (issue 18: no
    # `dataclasses` at import). What the runtime relies on stays: immutability, copies and
    # pickles rebuilt by the constructor, RayPlacement's field-wise equality and hash, replace().
    import copy
    import pickle

    from batten._internal.options import CompileOptions
    from batten._internal.placement import RayPlacement

    options = CompileOptions(workflow_id="w", error_handlers={"a": [print]})
    with pytest.raises(AttributeError):
        options.workflow_id = "other"
    changed = options.replace(error_handlers={}, workflow_handler=None)
    assert (changed.workflow_id, changed.error_handlers) == ("w", {})
    assert changed.key() != options.key()
    assert pickle.loads(pickle.dumps(changed)).workflow_id == "w"
    with pytest.raises(TypeError, match="unknown fields"):
        options.replace(worklfow_id="typo")

    placement = RayPlacement(num_cpus=2.0, output="ref")
    with pytest.raises(AttributeError):
        placement.num_cpus = 1.0
    assert copy.deepcopy(placement) == placement == pickle.loads(pickle.dumps(placement))
    assert hash(placement) == hash(RayPlacement(2.0, output="ref"))
    assert placement != RayPlacement(num_cpus=2.0)
    assert "num_cpus=2.0" in repr(placement)


@pytest.mark.parametrize(
    ("module_name", "name"),
    [("batten._internal.spec", "StepSpec"), ("batten.steps.base", "RemoteCall")],
)
def test_runtime_namedtuples_match_the_classes_type_checkers_read(module_name, name):
    # At run time these are plain `collections.namedtuple`s (issue 18: a `NamedTuple` class
    # compiles each string annotation); the `NamedTuple` class under TYPE_CHECKING is what mypy
    # checks against. Same fields, same order, same defaults.
    import ast
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    runtime = getattr(module, name)
    tree = ast.parse(inspect.getsource(module))
    (declared,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.name == name
        and any(ast.unparse(base) == "NamedTuple" for base in node.bases)
    ]
    fields = [s for s in declared.body if isinstance(s, ast.AnnAssign)]
    assert runtime._fields == tuple(s.target.id for s in fields)
    defaults = {s.target.id: ast.literal_eval(s.value) for s in fields if s.value is not None}
    assert runtime._field_defaults == defaults
