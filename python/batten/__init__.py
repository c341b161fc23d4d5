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

from batten import _core
from batten._core import StateMap, StepResult, WorkflowContext

# `typing` is not imported at run time (~2.5 ms of a bare `import batten`); type checkers treat
# any `TYPE_CHECKING` as true, as they do `typing.TYPE_CHECKING`.
TYPE_CHECKING = False

# Join batten's worker threads before the interpreter finalizes (DESIGN §3 pitfall 3). Registered
# before any other module of batten's can load: `batten._runtime.loops` registers its
# `close_runners` when it is first imported, and atexit runs that first (loops close before
# threads are joined).
atexit.register(_core._shutdown)

if TYPE_CHECKING:
    from typing import Any

    from batten._internal.placement import RayExecutor
    from batten._internal.status import StepStatus, WorkflowStatus
    from batten.approval import HumanApprovalStep, approve, reject
    from batten.builder import DagWorkflow, WorkflowBuilder
    from batten.composite import (
        ConditionalStep,
        LoopStep,
        MapStep,
        ParallelStep,
        RouterStep,
        SubWorkflowStep,
    )
    from batten.config import load_workflow
    from batten.durable import cancel, get_workflow_status, list_runs, pause, run_history
    from batten.engine import WorkflowEngine
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
    from batten.registry import Registry, agent, tool
    from batten.retry import RetryPolicy
    from batten.steps import AgentStep, Step, ToolStep
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
    from batten.workflow import Workflow, WorkflowResult

__version__: str = _core.__version__

#: Each exported name's module, imported on first access to the name (PEP 562, as SciPy and
#: scikit-image load their submodules, SPEC 1): ``import batten`` loads only the native
#: extension and this table (workload I of ``make bench``: <= 1.5x ``import asyncio``, never over
#: 50 ms). ``from batten import Workflow`` imports ``batten.workflow`` and what it needs;
#: ``batten.events`` (a dozen dataclasses), ``batten.store``, the JAF-style facades and the
#: durable-run functions load only when a program names them. The objects are the modules' own:
#: ``isinstance``, pickling (by ``__module__``) and ``from batten import *`` are unchanged.
_LAZY: dict[str, str] = {
    name: module
    for module, names in {
        "batten._internal.placement": ("RayExecutor",),
        "batten._internal.status": ("StepStatus", "WorkflowStatus"),
        "batten.approval": ("HumanApprovalStep", "approve", "reject"),
        "batten.builder": ("DagWorkflow", "WorkflowBuilder"),
        "batten.composite": (
            "ConditionalStep",
            "LoopStep",
            "MapStep",
            "ParallelStep",
            "RouterStep",
            "SubWorkflowStep",
        ),
        "batten.config": ("load_workflow",),
        "batten.durable": ("cancel", "get_workflow_status", "list_runs", "pause", "run_history"),
        "batten.engine": ("WorkflowEngine",),
        "batten.errors": (
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
            "StoreUnavailableError",
            "StoreURLError",
            "UnknownStepError",
            "WorkflowCancelledError",
            "WorkflowConfigError",
            "WorkflowDefinitionError",
            "WorkflowTimeoutError",
        ),
        "batten.events": (
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
        ),
        "batten.factory": (
            "create_workflow",
            "list_workflow_factories",
            "register_workflow_factory",
        ),
        "batten.patterns": ("Agent", "DeterministicWorkflow", "Handoff", "HandoffWorkflow"),
        "batten.pool": ("AgentPool",),
        "batten.registry": ("Registry", "agent", "tool"),
        "batten.retry": ("RetryPolicy",),
        "batten.steps": ("AgentStep", "Step", "ToolStep"),
        "batten.store": (
            "MemoryStore",
            "PostgresStore",
            "RedisStore",
            "RunInfo",
            "SqliteStore",
            "StepRecord",
            "Store",
        ),
        "batten.traffic": ("CircuitBreaker", "RateLimit"),
        "batten.workflow": ("Workflow", "WorkflowResult"),
    }.items()
    for name in names
}


#: The submodules ``import batten`` used to import, hence reachable as attributes
#: (``batten.errors.BattenError`` after a bare ``import batten``): imported on first access now,
#: and listed by ``dir(batten)`` as before.
_SUBMODULES = frozenset(
    (
        "_internal",
        "_runtime",
        "adapters",
        "composite",
        "errors",
        "registry",
        "result",
        "retry",
        "steps",
        "workflow",
    )
)


def __getattr__(name: str) -> Any:
    """Imports the module of exported ``name`` (or the submodule ``name``) on first access and
    caches it here.

    Raises:
        AttributeError: ``name`` is neither one of batten's exported names nor a submodule
            ``import batten`` used to load.
    """
    import importlib

    module = _LAZY.get(name)
    if module is None:
        if name in _SUBMODULES:  # importing it binds it here (the import system does)
            return importlib.import_module(f"batten.{name}")
        raise AttributeError(f"module 'batten' has no attribute {name!r}")
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


def __dir__() -> list[str]:
    """The module's names, the exported names not yet imported and the lazy submodules."""
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
