"""The public surface is pinned: ``batten.__all__``, every name in it, and the public module paths
that README, examples and tests import, with the names each exposes.

The package's internals moved into layers (``batten._internal``, ``batten.steps``,
``batten._runtime``); these tests fail if a move drops or renames anything a user imports.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import batten
import pytest

#: ``batten.__all__`` as released (sorted as the module writes it).
ALL = [
    "Agent",
    "AgentPool",
    "AgentStep",
    "ApprovalError",
    "ApprovalRejectedError",
    "BattenError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitStateChanged",
    "ConditionalStep",
    "CorruptRecordError",
    "DagWorkflow",
    "DeterministicWorkflow",
    "EventLoopMismatchError",
    "Handoff",
    "HandoffError",
    "HandoffWorkflow",
    "HumanApprovalStep",
    "LeaseLostError",
    "LoopLimitError",
    "LoopStep",
    "MapStep",
    "MemoryStore",
    "ParallelStep",
    "PartialFailureError",
    "PostgresStore",
    "RateLimit",
    "RayExecutor",
    "RedisStore",
    "Registry",
    "RetryPolicy",
    "RouteError",
    "RouterStep",
    "RunEndedError",
    "RunFinished",
    "RunInfo",
    "RunLeasedError",
    "RunNotFoundError",
    "SchemaVersionError",
    "SqliteStore",
    "StateMap",
    "Step",
    "StepBlocked",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepFinished",
    "StepRecord",
    "StepResult",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepStatus",
    "StepTimedOut",
    "StepTimeoutError",
    "StepWorkerLostError",
    "Store",
    "StoreError",
    "StoreURLError",
    "StoreUnavailableError",
    "SubWorkflowStep",
    "ToolStep",
    "UnknownStepError",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowCancelledError",
    "WorkflowConfigError",
    "WorkflowContext",
    "WorkflowDefinitionError",
    "WorkflowEngine",
    "WorkflowEvent",
    "WorkflowLogger",
    "WorkflowResult",
    "WorkflowStatus",
    "WorkflowTimeoutError",
    "__version__",
    "agent",
    "approve",
    "cancel",
    "create_workflow",
    "execute_workflow_stream",
    "get_workflow_status",
    "list_runs",
    "list_workflow_factories",
    "load_workflow",
    "pause",
    "register_workflow_factory",
    "reject",
    "run_history",
    "tool",
]

#: Each public module path and its ``__all__`` as released (a module may export more, not less).
RELEASED_ALL: dict[str, list[str]] = {
    "batten.workflow": ["Workflow", "WorkflowResult"],
    "batten.steps": ["AgentStep", "Step", "ToolStep"],
    "batten.composite": [
        "ConditionalStep",
        "LoopStep",
        "MapStep",
        "ParallelStep",
        "RouterStep",
        "SubWorkflowStep",
    ],
    "batten.approval": ["HumanApprovalStep", "approve", "reject"],
    "batten.durable": [
        "Durability",
        "cancel",
        "get_workflow_status",
        "list_runs",
        "pause",
        "run_history",
    ],
    "batten.events": [
        "CircuitStateChanged",
        "RunFinished",
        "StepBlocked",
        "StepCancelled",
        "StepCompleted",
        "StepFailed",
        "StepFinished",
        "StepRetrying",
        "StepSkipped",
        "StepStarted",
        "StepTimedOut",
        "WorkflowEvent",
        "WorkflowLogger",
        "execute_workflow_stream",
        "stream",
    ],
    "batten.engine": ["WorkflowEngine"],
    "batten.store": [
        "MAX_JSON_DEPTH",
        "MemoryStore",
        "PostgresStore",
        "RedisStore",
        "RunInfo",
        "SqliteStore",
        "StepRecord",
        "Store",
        "open_store",
    ],
    "batten.retry": ["RetryPolicy"],
    "batten.registry": ["Registry", "agent", "global_registry", "tool"],
    "batten.pool": ["AgentPool", "PoolStats"],
    "batten.traffic": ["CircuitBreaker", "RateLimit", "controls_for"],
    "batten.result": ["WorkflowResult"],
    "batten.config": [
        "LoadedWorkflow",
        "UnresolvedReference",
        "coerce_input",
        "initial_variables",
        "load_workflow",
        "read_workflow",
        "schema",
        "workflow_from_config",
    ],
    "batten.display": [
        "result_html",
        "result_text",
        "to_mermaid",
        "to_svg",
        "workflow_html",
        "workflow_mimebundle",
    ],
    "batten.adapters": ["ACCEPTS", "adapt", "cannot_run", "jsonable"],
    "batten.adapters.langchain": ["adapt"],
    "batten.adapters.openai_agents": ["FRAMEWORK", "adapt"],
    "batten.adapters.jaf": [
        "JafAgent",
        "JafNonRetryableError",
        "JafRunError",
        "adapt",
        "set_default_run_config",
        "with_config",
    ],
    "batten.adapters.pydantic_ai": ["adapt"],
    "batten.builder": ["DagWorkflow", "WorkflowBuilder"],
    "batten.patterns": [
        "Agent",
        "DeterministicWorkflow",
        "Handoff",
        "HandoffError",
        "HandoffWorkflow",
    ],
    "batten.factory": ["create_workflow", "list_workflow_factories", "register_workflow_factory"],
    "batten.cli": ["main", "run"],
    "batten.errors": [
        "ApprovalError",
        "ApprovalRejectedError",
        "BattenError",
        "CircuitOpenError",
        "CorruptRecordError",
        "EventLoopMismatchError",
        "HandoffError",
        "LeaseLostError",
        "LoopLimitError",
        "PartialFailureError",
        "RouteError",
        "RunEndedError",
        "RunLeasedError",
        "RunNotFoundError",
        "SchemaVersionError",
        "StepTimeoutError",
        "StepWorkerLostError",
        "StoreError",
        "StoreURLError",
        "StoreUnavailableError",
        "UnknownStepError",
        "WorkflowCancelledError",
        "WorkflowConfigError",
        "WorkflowDefinitionError",
        "WorkflowTimeoutError",
    ],
}

#: Names outside ``__all__`` that README, examples and tests import from a module path.
ALSO_IMPORTED: dict[str, list[str]] = {
    "batten.config.source": ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_VALUES"],
    "batten.display": ["MERMAID_CDN", "_format_ms"],
    "batten.adapters.pydantic_ai": ["_prompt"],
    "batten.cli.main": ["main", "run"],
    "batten.cli.progress": ["Progress"],
}


def test_batten_all_is_exactly_the_released_list() -> None:
    assert batten.__all__ == ALL


def test_every_name_in_batten_all_imports_in_a_fresh_interpreter() -> None:
    # A fresh interpreter: lazily loaded names (PEP 562) must load on their own, not because
    # another test imported their module first.
    code = (
        "import batten\n"
        "missing = [n for n in batten.__all__ if not hasattr(batten, n)]\n"
        "assert not missing, missing\n"
        "ns = {}\n"
        "exec('from batten import *', ns)\n"
        "assert set(batten.__all__) <= set(ns), set(batten.__all__) - set(ns)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("name", ALL)
def test_each_exported_name_is_the_object_its_module_defines(name: str) -> None:
    value = getattr(batten, name)
    assert value is not None
    if isinstance(value, type) and value.__module__.startswith("batten."):
        home = importlib.import_module(value.__module__)
        assert getattr(home, value.__qualname__) is value


@pytest.mark.parametrize("path", sorted(RELEASED_ALL.keys() | ALSO_IMPORTED.keys()))
def test_public_module_paths_import_and_expose_their_names(path: str) -> None:
    module = importlib.import_module(path)
    released = RELEASED_ALL.get(path, [])
    lost = sorted(set(released) - set(getattr(module, "__all__", ())))
    assert not lost, f"{path}.__all__ lost {lost}"
    missing = [n for n in [*released, *ALSO_IMPORTED.get(path, [])] if not hasattr(module, n)]
    assert not missing, f"{path} lost {missing}"


def test_public_modules_reexport_the_same_objects_as_batten() -> None:
    from batten import approval, composite, durable, events, steps, workflow

    assert composite.MapStep is batten.MapStep
    assert approval.HumanApprovalStep is batten.HumanApprovalStep
    assert approval.approve is batten.approve
    assert durable.pause is batten.pause
    assert events.StepCompleted is batten.StepCompleted
    assert events.WorkflowLogger is batten.WorkflowLogger
    assert steps.ToolStep is batten.ToolStep
    assert workflow.WorkflowResult is batten.WorkflowResult
