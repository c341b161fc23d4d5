"""batten: workflows of Python agent and tool steps, run by a native (Rust) engine.

Describe the work with :class:`Workflow`, :class:`AgentStep` and :class:`ToolStep`; the engine
schedules the DAG eagerly, retries with backoff and jitter, enforces per-attempt and per-run
timeouts, and records every step's result. The public API is exactly ``__all__``; ``batten._core``
and underscored names are private.

The package is built in one-way layers (``[tool.importlinter]`` in ``pyproject.toml`` lists
them; README's Development section says what each holds): this module sits on top and
re-exports; below it the command line, builders and patterns, the public facades
(``workflow``, ``durable``, ``events``), the runtime (``_runtime``), the step model (``steps``),
the leaf modules, and ``_internal`` and ``errors`` at the bottom.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from batten import _core
from batten._core import StateMap, StepResult, WorkflowContext
from batten._internal.placement import RayExecutor
from batten._internal.status import StepStatus, WorkflowStatus
from batten._runtime.loops import close_runners
from batten.composite import (
    ConditionalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouterStep,
    SubWorkflowStep,
)
from batten.errors import (
    ApprovalError,
    ApprovalRejectedError,
    BattenError,
    CircuitOpenError,
    CorruptRecordError,
    EventLoopMismatchError,
    HandoffError,
    LeaseLostError,
    LoopLimitError,
    PartialFailureError,
    RouteError,
    RunEndedError,
    RunLeasedError,
    RunNotFoundError,
    SchemaVersionError,
    StepTimeoutError,
    StepWorkerLostError,
    StoreError,
    StoreUnavailableError,
    StoreURLError,
    UnknownStepError,
    WorkflowCancelledError,
    WorkflowConfigError,
    WorkflowDefinitionError,
    WorkflowTimeoutError,
)
from batten.registry import Registry, agent, tool
from batten.retry import RetryPolicy
from batten.steps import AgentStep, Step, ToolStep
from batten.workflow import Workflow, WorkflowResult

if TYPE_CHECKING:
    from batten.approval import HumanApprovalStep, approve, reject
    from batten.builder import DagWorkflow, WorkflowBuilder
    from batten.config import load_workflow
    from batten.durable import cancel, get_workflow_status, list_runs, pause, run_history
    from batten.engine import WorkflowEngine
    from batten.events import (
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
    from batten.factory import create_workflow, list_workflow_factories, register_workflow_factory
    from batten.patterns import Agent, DeterministicWorkflow, Handoff, HandoffWorkflow
    from batten.pool import AgentPool
    from batten.store import (
        MemoryStore,
        PostgresStore,
        RedisStore,
        RunInfo,
        SqliteStore,
        StepRecord,
        Store,
    )
    from batten.traffic import CircuitBreaker, RateLimit

__version__: str = _core.__version__

#: Exported names whose module is imported on first access (PEP 562): ``batten.events`` defines
#: a dozen dataclasses, ~15 ms of ``import batten`` that a run without subscribers never needs.
_LAZY = {
    name: "batten.events"
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
# NOTE: durable runs' names load on first use too, keeping `import batten` lean.
_LAZY.update(dict.fromkeys(("HumanApprovalStep", "approve", "reject"), "batten.approval"))
_LAZY.update(dict.fromkeys(("CircuitBreaker", "RateLimit"), "batten.traffic"))
_LAZY["load_workflow"] = "batten.config"
# The JAF-style facades (builder, engine, patterns: ~3 ms with their dataclasses) load on first
# use as well; `Workflow` and the steps are what most programs touch.
_LAZY.update(dict.fromkeys(("DagWorkflow", "WorkflowBuilder"), "batten.builder"))
_LAZY["WorkflowEngine"] = "batten.engine"
_LAZY.update(
    dict.fromkeys(
        ("Agent", "DeterministicWorkflow", "Handoff", "HandoffWorkflow"), "batten.patterns"
    )
)
_LAZY["AgentPool"] = "batten.pool"
_LAZY.update(
    dict.fromkeys(
        ("create_workflow", "list_workflow_factories", "register_workflow_factory"),
        "batten.factory",
    )
)
_LAZY.update(
    dict.fromkeys(
        ("cancel", "get_workflow_status", "list_runs", "pause", "run_history"), "batten.durable"
    )
)
_LAZY.update(
    dict.fromkeys(
        (
            "MemoryStore",
            "PostgresStore",
            "RedisStore",
            "RunInfo",
            "SqliteStore",
            "StepRecord",
            "Store",
        ),
        "batten.store",
    )
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batten' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
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

Mapping.register(WorkflowContext)
Mapping.register(StateMap)

# Join batten's worker threads before the interpreter finalizes (DESIGN §3 pitfall 3).
atexit.register(_core._shutdown)
atexit.register(close_runners)  # atexit runs it first: loops close before threads are joined


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
