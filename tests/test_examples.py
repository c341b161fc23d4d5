"""The runnable examples run and do what their docstrings say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from batten import StepStatus, WorkflowContext

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def react() -> ModuleType:
    return load("react_agent")


@pytest.mark.parametrize(
    ("question", "answer", "actions"),
    [
        ("please calculate 17 * 23 + 4", "395", ["calculator", "finish"]),
        ("please look up speed of light", "299792 km/s", ["lookup", "finish"]),
    ],
)
def test_react_reasons_acts_and_stops_on_a_final_answer(react, question, answer, actions):
    result = react.react_workflow().run(WorkflowContext("r", variables={"question": question}))
    loop = result.step("react")
    assert loop.status == StepStatus.COMPLETED
    assert result.context["answer"] == answer
    assert loop.metadata == {"iterations": 2, "max_iterations_reached": False}
    routed = [it.children[1].metadata["branch"] for it in loop.children]
    assert routed == actions


def test_react_stops_at_the_iteration_limit(react):
    ctx = WorkflowContext("r", variables={"question": "what is the meaning of life?"})
    result = react.react_workflow(max_iterations=3).run(ctx)
    loop = result.step("react")
    assert loop.metadata == {"iterations": 3, "max_iterations_reached": True}
    assert "answer" not in result.context
    assert len(result.context["scratchpad"]) == 3
