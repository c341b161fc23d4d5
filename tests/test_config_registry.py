"""A workflow file or config dict resolves its agent and tool names in the registry it is given
(issue 16): ``Workflow.from_config(config, registry=...)``, ``load_workflow(path,
registry=...)`` and ``create_workflow(path, registry=...)``, in batten's format and in seed
002's phases format; the process-wide registry is neither consulted nor changed.

And the declared inputs' defaults apply on every Python path (``run``, ``execute``, a durable
``resume``), not only in ``batten run``; a required input without a default is a typed error
naming it before anything runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import batten
import pytest
from batten import Registry, Workflow, WorkflowContext, WorkflowStatus
from batten.errors import WorkflowConfigError
from batten.factory import create_workflow
from batten.registry import global_registry

PLANNER = "tenant_planner_16"
CHECKER = "tenant_checker_16"


def tenant_planner(message: str) -> str:
    return f"plan for [{message}]"


def tenant_checker(plan: str, level: int) -> dict[str, Any]:
    return {"checked": plan, "level": level}


def private() -> Registry:
    return Registry(tools={CHECKER: tenant_checker}, agents={PLANNER: tenant_planner})


NATIVE = {
    "name": "tenant",
    "inputs": {"topic": {"type": "string", "default": "cats"}},
    "steps": [
        {"id": "plan", "kind": "agent", "agent": PLANNER, "message": "about {inputs.topic}"},
        {
            "id": "check",
            "kind": "tool",
            "tool": CHECKER,
            "args": {"plan": "{plan.result}", "level": 2},
        },
    ],
}

PHASES = {
    "name": "tenant_phases",
    "version": "1.0",
    "agents": [PLANNER],
    "phases": [{"name": "design", "agent": PLANNER, "timeout": 30, "retries": 1}],
}


@pytest.fixture(autouse=True)
def global_untouched() -> Iterator[None]:
    """Neither name is in the process-wide registry, before or after the test."""
    reg = global_registry()
    before = (reg.names("agent"), reg.names("tool"))
    assert PLANNER not in before[0] and CHECKER not in before[1]
    yield
    assert (reg.names("agent"), reg.names("tool")) == before


def test_from_config_resolves_names_in_the_given_registry_native_format() -> None:
    wf = Workflow.from_config(NATIVE, registry=private())
    result = wf.run()
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == {"checked": "plan for [about cats]", "level": 2}


def test_from_config_without_the_registry_still_fails_on_the_name() -> None:
    with pytest.raises(WorkflowConfigError, match=f"no agent named '{PLANNER}'"):
        Workflow.from_config(NATIVE)


def test_from_config_resolves_names_in_the_given_registry_phases_format() -> None:
    wf = Workflow.from_config(PHASES, registry=private())
    result = wf.run(WorkflowContext("x", variables={"requirements": "a shop"}))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == "plan for [a shop]"


@pytest.mark.parametrize("doc", [NATIVE, PHASES], ids=["native", "phases"])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_load_and_create_workflow_resolve_in_the_given_registry(
    tmp_path: Path, doc: dict[str, Any], suffix: str
) -> None:
    path = tmp_path / f"wf{suffix}"
    path.write_text(json.dumps(doc))  # JSON is YAML too
    for wf in (
        batten.load_workflow(path, registry=private()),
        create_workflow(str(path), registry=private()),
    ):
        result = wf.run()
        assert result.status == WorkflowStatus.COMPLETED, result.error
    with pytest.raises(WorkflowConfigError, match="is registered"):
        batten.load_workflow(path)


def test_a_registry_with_the_global_parent_resolves_its_own_names_first() -> None:
    reg = Registry(agents={PLANNER: tenant_planner}, parent=global_registry())
    wf = Workflow.from_config(PHASES, registry=reg)
    assert wf.run().status == WorkflowStatus.COMPLETED


def test_create_workflow_from_agent_names_in_a_given_registry() -> None:
    wf = create_workflow([PLANNER], registry=private())
    result = wf.run(WorkflowContext("p", variables={"input": "x"}))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == "plan for [x]"


# -- declared input defaults on every path ----------------------------------------------------


def test_phases_workflow_run_from_python_uses_the_declared_requirements_default() -> None:
    wf = Workflow.from_config(PHASES, registry=private())
    result = wf.run()
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.final_output == "plan for []"
    result = asyncio.run(wf.execute())
    assert result.final_output == "plan for []"


def test_given_inputs_win_over_defaults_and_other_variables_are_kept() -> None:
    wf = Workflow.from_config(NATIVE, registry=private())
    ctx = WorkflowContext("w", {"user": 1}, {"topic": "dogs", "extra": 5}, {"m": 2})
    result = wf.run(ctx)
    assert result.final_output["checked"] == "plan for [about dogs]"
    assert dict(ctx.variables) == {"topic": "dogs", "extra": 5}  # the caller's is unchanged
    ctx = WorkflowContext("w", {"user": 1}, {"extra": 5}, {"m": 2})
    result = wf.run(ctx)
    assert result.final_output["checked"] == "plan for [about cats]"
    assert result.context.variables["extra"] == 5
    assert result.context.user_context == {"user": 1}
    assert result.context.metadata == {"m": 2}


REQUIRED = {
    "name": "needs",
    "inputs": {"topic": {"type": "string", "required": True, "description": "the subject"}},
    "steps": [{"id": "plan", "kind": "agent", "agent": PLANNER, "message": "{inputs.topic}"}],
}


def test_a_missing_required_input_is_a_typed_error_before_anything_runs(tmp_path: Path) -> None:
    calls: list[str] = []

    def planner(message: str) -> str:
        calls.append(message)
        return message

    wf = Workflow.from_config(REQUIRED, registry=Registry(agents={PLANNER: planner}))
    with pytest.raises(WorkflowConfigError, match="input 'topic' is required") as info:
        wf.run()
    assert info.value.field == "inputs.topic"
    with pytest.raises(WorkflowConfigError, match="input 'topic'"):
        asyncio.run(wf.execute(WorkflowContext("x", variables={"other": 1})))
    db = tmp_path / "runs.db"
    with pytest.raises(WorkflowConfigError, match="input 'topic'"):
        asyncio.run(wf.execute(store=f"sqlite:///{db}"))
    assert calls == []
    assert batten.list_runs(store=f"sqlite:///{db}") == []  # nothing was recorded
    assert wf.run(WorkflowContext("x", variables={"topic": "t"})).final_output == "t"


def test_a_durable_run_records_the_defaults_and_resume_keeps_them(tmp_path: Path) -> None:
    gate = {"fail": True}

    def planner(message: str) -> str:
        if gate["fail"]:
            raise RuntimeError("not yet")
        return f"plan for [{message}]"

    wf = Workflow.from_config(PHASES, registry=Registry(agents={PLANNER: planner}))
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = asyncio.run(wf.execute(store=url))
    assert first.status == WorkflowStatus.FAILED
    assert first.context.variables["requirements"] == ""
    gate["fail"] = False
    again = asyncio.run(wf.resume(first.run_id, store=url, retry_failed=True))
    assert again.status == WorkflowStatus.COMPLETED, again.error
    assert again.final_output == "plan for []"
