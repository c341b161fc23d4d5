"""weft: workflows of Python agent and tool steps, run by a native (Rust) engine.

Describe the work with :class:`Workflow`, :class:`AgentStep` and :class:`ToolStep`; the engine
schedules the DAG eagerly, retries with backoff and jitter, enforces per-attempt and per-run
timeouts, and records every step's result. The public API is exactly ``__all__``; ``weft._core``
and underscored names are private.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from weft import _core
from weft._core import StateMap, StepResult, WorkflowContext
from weft._status import StepStatus, WorkflowStatus
from weft.builder import DagWorkflow, WorkflowBuilder
from weft.composite import (
    ConditionalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouterStep,
    SubWorkflowStep,
)
from weft.engine import WorkflowEngine
from weft.errors import (
    ApprovalError,
    ApprovalRejectedError,
    CircuitOpenError,
    CorruptRecordError,
    HandoffError,
    LoopLimitError,
    PartialFailureError,
    RouteError,
    RunNotFoundError,
    SchemaVersionError,
    StepTimeoutError,
    StoreError,
    StoreUnavailableError,
    StoreURLError,
    WeftError,
    WorkflowCancelledError,
    WorkflowConfigError,
    WorkflowDefinitionError,
    WorkflowTimeoutError,
)
from weft.patterns import Agent, DeterministicWorkflow, Handoff, HandoffWorkflow
from weft.registry import Registry, agent, tool
from weft.retry import RetryPolicy
from weft.steps import AgentStep, Step, ToolStep
from weft.workflow import Workflow, WorkflowResult, _close_runners

if TYPE_CHECKING:
    from weft.approval import HumanApprovalStep, approve, reject
    from weft.config import load_workflow
    from weft.durable import cancel, get_workflow_status, list_runs, pause, run_history
    from weft.events import (
        CircuitStateChanged,
        RunFinished,
        StepBlocked,
        StepCancelled,
        StepCompleted,
        StepFailed,
        StepFinished,
        StepRetrying,
        StepSkipped,
        StepStarted,
        StepTimedOut,
        WorkflowEvent,
        WorkflowLogger,
        execute_workflow_stream,
    )
    from weft.factory import create_workflow, list_workflow_factories, register_workflow_factory
    from weft.store import MemoryStore, RedisStore, RunInfo, SqliteStore, StepRecord, Store
    from weft.traffic import CircuitBreaker, RateLimit

__version__: str = _core.__version__

#: Exported names whose module is imported on first access (PEP 562): ``weft.events`` defines
#: a dozen dataclasses, ~15 ms of ``import weft`` that a run without subscribers never needs.
_LAZY = {
    name: "weft.events"
    for name in (
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
        "CircuitStateChanged",
        "WorkflowEvent",
        "WorkflowLogger",
        "execute_workflow_stream",
    )
}
# NOTE: durable runs' names load on first use too, keeping `import weft` lean.
_LAZY.update(dict.fromkeys(("HumanApprovalStep", "approve", "reject"), "weft.approval"))
_LAZY.update(dict.fromkeys(("CircuitBreaker", "RateLimit"), "weft.traffic"))
_LAZY["load_workflow"] = "weft.config"
_LAZY.update(
    dict.fromkeys(
        ("create_workflow", "list_workflow_factories", "register_workflow_factory"),
        "weft.factory",
    )
)
_LAZY.update(
    dict.fromkeys(
        ("cancel", "get_workflow_status", "list_runs", "pause", "run_history"), "weft.durable"
    )
)
_LAZY.update(
    dict.fromkeys(
        ("MemoryStore", "RedisStore", "RunInfo", "SqliteStore", "StepRecord", "Store"),
        "weft.store",
    )
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weft' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "AgentStep",
    "ApprovalError",
    "ApprovalRejectedError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitStateChanged",
    "ConditionalStep",
    "CorruptRecordError",
    "DagWorkflow",
    "DeterministicWorkflow",
    "Handoff",
    "HandoffError",
    "HandoffWorkflow",
    "HumanApprovalStep",
    "LoopLimitError",
    "LoopStep",
    "MapStep",
    "MemoryStore",
    "ParallelStep",
    "PartialFailureError",
    "RateLimit",
    "RedisStore",
    "Registry",
    "RetryPolicy",
    "RouteError",
    "RouterStep",
    "RunFinished",
    "RunInfo",
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
    "Store",
    "StoreError",
    "StoreURLError",
    "StoreUnavailableError",
    "SubWorkflowStep",
    "ToolStep",
    "WeftError",
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

Mapping.register(WorkflowContext)
Mapping.register(StateMap)

# Join weft's worker threads before the interpreter finalizes (DESIGN §3 pitfall 3).
atexit.register(_core._shutdown)
atexit.register(_close_runners)  # atexit runs it first: loops close before threads are joined


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
