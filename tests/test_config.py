"""Workflows from YAML/JSON files and config dicts (batten.load_workflow, Workflow.from_config),
seed 002's WORKFLOW_CONFIG, and the JSON Schema shipped with the package."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import batten
import jsonschema
import pytest
import yaml
from batten import StepStatus, Workflow, WorkflowConfigError, WorkflowContext, WorkflowStatus
from batten.config import initial_variables, schema
from batten.registry import global_registry

ROOT = Path(__file__).resolve().parents[1]

TOOLS = """
import asyncio

CALLS = []

def add(a, b):
    CALLS.append(("add", a, b))
    return a + b

def double(item, k=2):
    return item * k

def is_big(context):
    return context.results["add"] > 5

async def shout(message):
    await asyncio.sleep(0)
    return str(message).upper()

FLAKY = {"left": 1}

def flaky(x):
    if FLAKY["left"]:
        FLAKY["left"] -= 1
        raise ConnectionError("transient")
    return x

def never(context):
    return False

def again(context, iteration):
    return iteration < 3

def count(context):
    return context.get("n", 0) + 1
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A directory with a tools module beside the workflow files (a fresh module name per
    test, so imports never leak between tests)."""
    name = f"cfgtools_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TOOLS)
    monkeypatch.chdir(tmp_path)

    def write(text: str, file: str = "wf.yaml") -> Path:
        path = tmp_path / file
        path.write_text(textwrap.dedent(text).replace("TOOLS", name))
        return path

    write.module = name  # type: ignore[attr-defined]
    return write


def run(wf: Workflow, **inputs):
    ctx = WorkflowContext(wf.workflow_id, variables=initial_variables(wf, inputs))
    return asyncio.run(wf.execute(ctx))


DEMO = """\
    name: demo
    version: "2.1"
    inputs:
      a: {type: integer, default: 2}
      b: {default: 5}
      label: {type: string, required: true}
    defaults:
      timeout: 10
      retry: {max_attempts: 2, initial_interval: 0.01}
    steps:
      - id: add
        kind: tool
        tool: TOOLS:add
        args: {a: "{inputs.a}", b: "{inputs.b}"}
      - id: dbl
        kind: map
        items: [1, 2, 3]
        max_concurrency: 2
        step: {id: d, kind: tool, tool: TOOLS:double, args: {k: "{add.result}"}}
      - id: pick
        kind: condition
        condition: TOOLS:is_big
        if_true:
          {id: big, kind: agent, agent: TOOLS:shout, message: "big {add.result} {inputs.label}"}
        if_false: {id: small, kind: agent, agent: TOOLS:shout, message: small}
"""


def test_a_yaml_workflow_runs_with_inputs_references_maps_and_conditions(folder):
    wf = batten.load_workflow(folder(DEMO))
    assert (wf.workflow_id, wf.name, wf.version) == ("demo", "demo", "2.1")
    assert wf.source == str(Path("wf.yaml").resolve())
    assert wf.inputs["a"] == {"type": "integer", "default": 2, "required": False, "description": ""}
    result = run(wf, a="3", label="x")  # command-line text is converted to the input's type
    assert result.status == WorkflowStatus.COMPLETED
    out = {s.step_id: s.output for s in result.steps}
    assert out == {"add": 8, "dbl": [8, 16, 24], "pick": "BIG 8 X"}
    # "pick" references {add.result}: it depends on "add" without a depends_on
    assert [s.step_id for s in result.steps].index("add") < [s.step_id for s in result.steps].index(
        "pick"
    )
    small = run(wf, a=1, b=1, label="y")
    assert {s.step_id: s.output for s in small.steps}["pick"] == "SMALL"


def test_defaults_and_retry_policies_apply_to_steps(folder):
    wf = batten.load_workflow(
        folder("""\
        name: r
        defaults: {timeout: 7, retry: {max_attempts: 4, initial_interval: 0.01, jitter: 0}}
        steps:
          - {id: a, kind: tool, tool: TOOLS:flaky, args: {x: 1}}
          - {id: b, kind: tool, tool: TOOLS:flaky, args: {x: 2}, timeout: 3, retry: 1}
          - id: c
            kind: tool
            tool: TOOLS:flaky
            args: {x: 3}
            retry: {max_attempts: 2, non_retryable: [ConnectionError]}
        """)
    )
    a, b, c = wf.steps
    assert (a.timeout, a.retry_policy.max_attempts, a.retry_policy.jitter) == (7, 4, 0)
    assert (b.timeout, b.retry_policy.max_attempts) == (3, 1)
    assert c.retry_policy.non_retryable == (ConnectionError,)
    result = run(wf)
    # one transient failure is shared by the three steps; whichever hit it retried (if allowed)
    assert result.step("a").status == StepStatus.COMPLETED or result.step("a").attempts == 1


def test_parallel_approval_loop_and_skip_conditions_build_their_step_types(folder):
    wf = batten.load_workflow(
        folder("""\
        name: kinds
        steps:
          - id: fan
            kind: parallel
            max_concurrency: 2
            failure_policy: continue_on_partial_failure
            branches:
              - {id: one, kind: tool, tool: TOOLS:double, args: {item: 1}}
              - {id: two, kind: tool, tool: TOOLS:double, args: {item: 2}}
          - id: maybe
            kind: tool
            tool: TOOLS:double
            args: {item: 5}
            condition: TOOLS:never
          - id: loop
            kind: loop
            while: TOOLS:again
            max_iterations: 5
            step: {id: body, kind: tool, tool: TOOLS:count}
          - {id: gate, kind: approval, prompt: "ok {fan.result}?", approvers: [ann], timeout: 60}
        """)
    )
    kinds = {s.step_id: type(s).__name__ for s in wf.steps}
    assert kinds == {
        "fan": "ParallelStep",
        "maybe": "ToolStep",
        "loop": "LoopStep",
        "gate": "HumanApprovalStep",
    }
    gate = wf.steps[3]
    assert (gate.approvers, gate.approval_timeout) == (["ann"], 60.0)
    result = asyncio.run(wf.execute(store="memory://"))
    assert result.status == WorkflowStatus.WAITING_APPROVAL
    assert result.step("fan").output == [2, 4]
    assert result.step("maybe").status == StepStatus.SKIPPED
    assert result.step("loop").metadata["iterations"] == 3


def test_json_files_load_the_same(folder):
    doc = {
        "name": "j",
        "steps": [{"id": "add", "kind": "tool", "tool": "TOOLS:add", "args": {"a": 1, "b": 2}}],
    }
    wf = batten.load_workflow(folder(json.dumps(doc, indent=2), "wf.json"))
    assert run(wf).final_output == 3


def test_registered_tools_and_agents_are_found_by_name_and_imports_run_first(folder):
    (Path.cwd() / "regmod.py").write_text(
        "import batten\n@batten.tool(name='cfg_triple')\ndef triple(x):\n    return 3 * x\n"
    )
    reg = global_registry()
    saved = dict(reg._entries["tool"])
    try:
        wf = batten.load_workflow(
            folder("""\
            name: named
            imports: [regmod]
            steps:
              - {id: t, kind: tool, tool: cfg_triple, args: {x: 4}}
            """)
        )
        assert run(wf).final_output == 12
    finally:
        reg._entries["tool"] = saved


BAD = [
    (
        "steps:\n  - {id: a, kind: tool, tool: TOOLS:add, retry: {max_attempts: 0}}",
        3,
        "steps[0].retry.max_attempts",
        "less than the minimum of 1",
    ),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: TOOLS:nope",
        5,
        "steps[0].tool",
        "has no attribute 'nope'",
    ),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: missing_module_xyz:f",
        5,
        "steps[0].tool",
        "no module named 'missing_module_xyz'",
    ),
    ("steps:\n  - id: a\n    kind: wat", 4, "steps[0].kind", "'wat' is not one of"),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: TOOLS:add\n    depends_on: [zz]",
        6,
        "steps[0].depends_on[0]",
        "depends on 'zz'",
    ),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: TOOLS:add\n    args: {x: '{inputs.q}'}",
        6,
        "steps[0].args",
        "'{inputs.q}' names an input the workflow does not declare",
    ),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: TOOLS:add\n    args: {x: '{zz.result}'}",
        6,
        "steps[0].args",
        "'{zz.result}' names no step",
    ),
    (
        "steps:\n  - {id: a, kind: tool, tool: TOOLS:add}\n"
        "  - {id: a, kind: tool, tool: TOOLS:add}",
        4,
        "steps[1].id",
        "used twice",
    ),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: TOOLS:add\n    tiemout: 3",
        6,
        "steps[0].tiemout",
        "did you mean 'timeout'",
    ),
    (
        "steps:\n  - id: a\n    kind: tool\n    tool: unregistered_tool_xyz",
        5,
        "steps[0].tool",
        "no tool named 'unregistered_tool_xyz' is registered",
    ),
    ("steps:\n  - id: a\n   kind: tool", 4, None, "invalid YAML"),
    (
        "steps:\n  - id: m\n    kind: map\n    items: '{x}'\n    step: {id: i, kind: tool, "
        "tool: TOOLS:add}",
        5,
        "steps[0].items",
        "exactly one reference",
    ),
    (
        "steps:\n  - id: m\n    kind: map\n    items: [1]\n    step: {id: i, kind: approval, "
        "prompt: p}",
        6,
        "steps[0].step.kind",
        "a map runs a tool or agent step",
    ),
    (
        "steps:\n  - id: c\n    kind: condition\n    condition: TOOLS:is_big",
        3,
        "steps[0]",
        "if_true",
    ),
    (
        "steps:\n  - {id: a, kind: tool, tool: TOOLS:add, timeout: -1}",
        3,
        "steps[0].timeout",
        "less than or equal to the minimum of 0",
    ),
    (
        "steps:\n  - {id: a, kind: tool, tool: TOOLS:add}\n  - {id: b, kind: tool, "
        "tool: TOOLS:add, condition: TOOLS:CALLS}",
        4,
        "steps[1].condition",
        "is not callable",
    ),
    ("steps: []", 2, "steps", "should be non-empty"),
    (
        "name: x\ndescriptoin: y\nsteps:\n  - {id: a, kind: tool, tool: TOOLS:add}",
        2,
        "descriptoin",
        "unknown field 'descriptoin' for the workflow; did you mean 'description'",
    ),
]


@pytest.mark.parametrize(("body", "line", "field", "text"), BAD)
def test_errors_name_the_file_the_line_and_the_field(folder, body, line, field, text):
    if not body.startswith("name"):
        body = "name: bad\n" + body
    path = folder(body, "bad.yaml")
    with pytest.raises(WorkflowConfigError) as info:
        batten.load_workflow(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line, str(err)
    if field is not None:
        assert err.field == field, str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    if text is not None:
        assert text in str(err)
    assert isinstance(err, batten.WorkflowDefinitionError)  # one except catches every definition


def test_a_cycle_is_reported_before_anything_runs(folder):
    path = folder("""\
        name: cyc
        steps:
          - {id: a, kind: tool, tool: TOOLS:add, args: {a: 1, b: 1}, depends_on: [b]}
          - {id: b, kind: tool, tool: TOOLS:add, args: {a: 1, b: 1}, depends_on: [a]}
        """)
    with pytest.raises(WorkflowConfigError, match="cycle: a -> b -> a"):
        batten.load_workflow(path)


def test_missing_and_unreadable_files_and_non_mapping_documents(tmp_path):
    with pytest.raises(WorkflowConfigError, match="no such workflow file"):
        batten.load_workflow(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(WorkflowConfigError, match="holds a mapping"):
        batten.load_workflow(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(WorkflowConfigError, match="empty"):
        batten.load_workflow(tmp_path / "empty.yaml")
    (tmp_path / "dup.yaml").write_text("name: a\nname: b\nsteps: []\n")
    with pytest.raises(WorkflowConfigError, match=r"dup.yaml:2: name: duplicate key 'name'"):
        batten.load_workflow(tmp_path / "dup.yaml")
    (tmp_path / "bad.json").write_text('{"name": "x",\n "steps": [}')
    with pytest.raises(WorkflowConfigError, match=r"bad.json:2: invalid"):
        batten.load_workflow(tmp_path / "bad.json")


def test_inputs_are_checked_against_their_declarations(folder):
    wf = batten.load_workflow(folder(DEMO))
    with pytest.raises(WorkflowConfigError, match="input 'label' is required"):
        initial_variables(wf, {})
    with pytest.raises(WorkflowConfigError, match="input 'a' must be of type integer"):
        initial_variables(wf, {"a": "three", "label": "x"})
    with pytest.raises(WorkflowConfigError, match="has no input 'zz'"):
        initial_variables(wf, {"zz": 1, "label": "x"})
    assert initial_variables(wf, {"label": "x"}) == {"a": 2, "b": 5, "label": "x"}


def test_from_config_takes_a_dict_and_names_the_field(folder):
    module = folder.module
    wf = Workflow.from_config(
        base_dir=".",
        config={
            "name": "d",
            "steps": [
                {"id": "a", "kind": "tool", "tool": f"{module}:add", "args": {"a": 2, "b": 2}}
            ],
        },
    )
    assert run(wf).final_output == 4
    with pytest.raises(WorkflowConfigError) as info:
        Workflow.from_config({"name": "d", "steps": [{"id": "a", "kind": "tool", "timeout": 0}]})
    assert info.value.field == "steps[0].timeout" and info.value.line is None
    with pytest.raises(TypeError):
        Workflow.from_config([])  # type: ignore[arg-type]


def test_the_shipped_schema_is_valid_and_accepts_the_code_review_example():
    doc = schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    example = yaml.safe_load((ROOT / "examples" / "code_review" / "workflow.yaml").read_text())
    jsonschema.Draft202012Validator(doc).validate(example)
    shipped = Path(batten.__file__).parent / "config" / "workflow.schema.json"
    assert json.loads(shipped.read_text()) == doc


# -- seed 002: WORKFLOW_CONFIG ---------------------------------------------------------------

# Verbatim from seed 002 ("Step 3: Implement Workflow Configuration").
# fmt: off
WORKFLOW_CONFIG = {
    "name": "your_workflow",
    "description": "Description of what your workflow does",
    "version": "1.0.0",
    "agents": [
        "planner_agent",
        "designer_agent",
        "coder_agent",
        "reviewer_agent"
    ],
    "phases": [
        {
            "name": "planning",
            "agent": "planner_agent",
            "timeout": 120,
            "retries": 2
        },
        {
            "name": "design",
            "agent": "designer_agent",
            "timeout": 180,
            "retries": 3,
            "depends_on": ["planning"]
        },
        {
            "name": "implementation",
            "agent": "coder_agent",
            "timeout": 300,
            "retries": 3,
            "depends_on": ["design"]
        },
        {
            "name": "review",
            "agent": "reviewer_agent",
            "timeout": 120,
            "retries": 1,
            "depends_on": ["implementation"]
        }
    ],
    "error_handling": {
        "continue_on_error": False,
        "fallback_workflow": None,
        "max_total_retries": 10
    },
    "output": {
        "format": "structured",
        "include_agent_outputs": True,
        "save_to_file": True
    }
}
# fmt: on


@pytest.fixture
def phase_agents():
    """The seed's four agents, registered by name; the designer fails once (retried)."""
    reg = global_registry()
    saved = dict(reg._entries["agent"])
    seen: list[tuple[str, str]] = []
    state = {"designer_failures": 1}

    def make(name):
        async def agent(message):
            seen.append((name, message))
            if name == "designer_agent" and state["designer_failures"]:
                state["designer_failures"] -= 1
                raise ConnectionError("model overloaded")
            return f"{name}: done"

        return agent

    for name in WORKFLOW_CONFIG["agents"]:
        batten.agent(make(name), name=name)
    yield seen
    reg._entries["agent"] = saved


def test_seed_002_workflow_config_loads_unchanged_and_runs(phase_agents):
    wf = Workflow.from_config(WORKFLOW_CONFIG)
    assert (wf.workflow_id, wf.version, wf.description) == (
        "your_workflow",
        "1.0.0",
        "Description of what your workflow does",
    )
    by_id = {s.step_id: s for s in wf.steps}
    # `retries` counts attempts, as the seed's `for attempt in range(phase.get("retries", 1))`
    assert {k: (s.timeout, s.retry_policy.max_attempts) for k, s in by_id.items()} == {
        "planning": (120, 2),
        "design": (180, 3),
        "implementation": (300, 3),
        "review": (120, 1),
    }
    assert wf.max_total_retries == 10 and wf.continue_on_error is False
    assert wf.output_options == WORKFLOW_CONFIG["output"]

    ctx = WorkflowContext(wf.workflow_id, variables={"requirements": "a calculator API"})
    result = asyncio.run(wf.execute(ctx))
    assert result.status == WorkflowStatus.COMPLETED
    assert [name for name, _ in phase_agents] == [
        "planner_agent",
        "designer_agent",
        "designer_agent",
        "coder_agent",
        "reviewer_agent",
    ]
    assert result.step("design").attempts == 2
    # each agent gets the requirements and the results of the phases it depends on
    assert phase_agents[0][1] == "a calculator API"
    assert phase_agents[3][1] == ('a calculator API\n\nContext: {"design": "designer_agent: done"}')


def test_seed_002_errors_point_at_the_phase(phase_agents):
    bad = json.loads(json.dumps(WORKFLOW_CONFIG))
    bad["phases"][2]["agent"] = "tester_agent"
    with pytest.raises(WorkflowConfigError) as info:
        Workflow.from_config(bad)
    assert info.value.field == "phases[2].agent"
    assert "not in agents (planner_agent, designer_agent" in str(info.value)
    bad = json.loads(json.dumps(WORKFLOW_CONFIG))
    bad["phases"][1]["retries"] = 0
    with pytest.raises(WorkflowConfigError, match=r"phases\[1\].retries: retries must be"):
        Workflow.from_config(bad)
    bad = json.loads(json.dumps(WORKFLOW_CONFIG))
    bad["error_handling"]["fallback_workflow"] = "no_such_workflow"
    with pytest.raises(WorkflowConfigError) as info:
        Workflow.from_config(bad)
    assert info.value.field == "error_handling.fallback_workflow"
    assert "no workflow factory named 'no_such_workflow'" in str(info.value)


def test_seed_002_fallback_workflow_runs_when_the_phases_fail(phase_agents):
    calls = []

    def apologise(message):
        calls.append(message)
        return "sorry: " + message

    def apology() -> Workflow:
        say = batten.AgentStep("say", apologise).with_input_function(lambda c: c["requirements"])
        return Workflow("apology").add_step(say)

    batten.register_workflow_factory("apology", apology)
    config = json.loads(json.dumps(WORKFLOW_CONFIG))
    config["phases"][1]["retries"] = 1  # the designer's one failure fails the run
    config["error_handling"]["fallback_workflow"] = "apology"
    wf = Workflow.from_config(config)
    assert wf.fallback_workflow is not None and wf.fallback_workflow.workflow_id == "apology"
    ctx = WorkflowContext(wf.workflow_id, variables={"requirements": "r"})
    result = asyncio.run(wf.execute(ctx))
    assert result.status == WorkflowStatus.COMPLETED
    assert result.step("design").status == StepStatus.FAILED
    fallback = result.step("fallback_workflow")
    assert fallback.metadata["workflow_id"] == "apology"
    assert "model overloaded" in fallback.metadata["cause"]
    assert [s.step_id for s in fallback.children] == ["say"]
    assert calls == ["r"]  # the fallback started from the run's inputs
    assert result.final_output == "sorry: r" and result.error is None


def test_seed_002_result_contains_condition_and_continue_on_error(phase_agents):
    config = json.loads(json.dumps(WORKFLOW_CONFIG))
    config["error_handling"]["continue_on_error"] = True
    config["phases"][3]["condition"] = {
        "type": "result_contains",
        "phase": "planning",
        "value": "never there",
    }
    config["phases"][1]["retries"] = 1  # the designer's one failure now fails its phase
    wf = Workflow.from_config(config)
    result = asyncio.run(wf.execute())
    assert result.status == WorkflowStatus.COMPLETED  # continue_on_error
    assert result.step("design").status == StepStatus.FAILED
    assert result.step("review").status == StepStatus.SKIPPED  # the seed's phase_skipped


def test_seed_002_phases_from_a_yaml_file(phase_agents, tmp_path):
    path = tmp_path / "phases.yaml"
    path.write_text(yaml.safe_dump(WORKFLOW_CONFIG, sort_keys=False))
    wf = batten.load_workflow(path)
    assert [s.step_id for s in wf.steps] == ["planning", "design", "implementation", "review"]
    text = path.read_text().replace("retries: 3", "retries: three", 1)
    path.write_text(text)
    with pytest.raises(WorkflowConfigError) as info:
        batten.load_workflow(path)
    line = text.splitlines().index("  retries: three") + 1
    assert (info.value.line, info.value.field) == (line, "phases[1].retries")


def test_the_readme_yaml_examples_follow_the_schema():
    import re

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        jsonschema.Draft202012Validator(schema()).validate(yaml.safe_load(block))


def test_import_batten_loads_no_file_format_or_cli_machinery():
    import subprocess
    import sys

    code = (
        "import sys, batten\n"
        "wf = batten.Workflow('w'); wf.add_step(batten.ToolStep('t', lambda: 1)); wf.run()\n"
        "bad = [m for m in ('yaml', 'jsonschema', 'tqdm', 'batten.config', 'batten.cli',"
        " 'batten.display') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
