"""How batten recognises framework objects: lazily, by type, with a clear error otherwise; and
the example that mixes three frameworks in one workflow."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import batten
import pytest
from batten import AgentStep, StepStatus, ToolStep, WorkflowStatus

ROOT = Path(__file__).resolve().parents[2]


def test_import_batten_imports_no_framework() -> None:
    code = (
        "import sys, batten, batten.adapters\n"
        "wf = batten.Workflow('w'); wf.add_step(batten.ToolStep('t', lambda: 1)); wf.run()\n"
        "bad = [m for m in ('langchain_core', 'langgraph', 'agents', 'jaf', 'pydantic_ai', "
        "'openai', 'litellm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_object_batten_cannot_run_is_refused_with_what_it_accepts() -> None:
    class Opaque:
        pass

    with pytest.raises(batten.WorkflowDefinitionError) as err:
        AgentStep("a", Opaque())
    message = str(err.value)
    assert "step 'a'" in message
    for accepted in ("LangChain", "OpenAI Agents SDK", "JAF", "pydantic-ai", "callable"):
        assert accepted in message
    with pytest.raises(batten.WorkflowDefinitionError, match="step 't'"):
        ToolStep("t", 42)


def test_a_user_module_named_like_a_framework_takes_the_generic_path() -> None:
    ns: dict[str, object] = {"__name__": "agents.mine"}
    exec("class Bot:\n    def run(self, message):\n        return message.upper()\n", ns)
    bot = ns["Bot"]()  # type: ignore[operator]
    wf = batten.Workflow("w")
    wf.add_step(AgentStep("a", bot, "hi"))
    assert wf.run().final_output == "HI"


def test_the_three_framework_example_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    path = ROOT / "examples" / "agents" / "workflow.py"
    spec = importlib.util.spec_from_file_location("example_agents_workflow", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = asyncio.run(module.build_workflow().execute())
    assert result.status == WorkflowStatus.COMPLETED, result.errors
    frameworks = {s.step_id: s.metadata.get("framework") for s in result.steps}
    assert frameworks == {
        "review": "langgraph",
        "count_openai": "openai-agents",
        "count_jaf": "jaf",
        "summary": None,
    }
    for step in ("review", "count_openai", "count_jaf"):
        assert result.step(step).status == StepStatus.COMPLETED
        assert result.step(step).metadata["usage"]["total_tokens"] > 0
    out = result.final_output
    assert "Verdict" in out["review"]
    assert all("words" in c for c in out["word_counts"])
