"""weft: workflows of Python agent and tool steps, run by a native (Rust) engine.

Describe the work with :class:`Workflow`, :class:`AgentStep` and :class:`ToolStep`; the engine
schedules the DAG eagerly, retries with backoff and jitter, enforces per-attempt and per-run
timeouts, and records every step's result. The public API is exactly ``__all__``; ``weft._core``
and underscored names are private.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping

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
    HandoffError,
    LoopLimitError,
    PartialFailureError,
    RouteError,
    StepTimeoutError,
    WeftError,
    WorkflowCancelledError,
    WorkflowDefinitionError,
    WorkflowTimeoutError,
)
from weft.events import (
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
from weft.patterns import Agent, DeterministicWorkflow, Handoff, HandoffWorkflow
from weft.registry import Registry, agent, tool
from weft.retry import RetryPolicy
from weft.steps import AgentStep, Step, ToolStep
from weft.workflow import Workflow, WorkflowResult, _close_runners

__version__: str = _core.__version__

__all__ = [
    "Agent",
    "AgentStep",
    "ConditionalStep",
    "DagWorkflow",
    "DeterministicWorkflow",
    "Handoff",
    "HandoffError",
    "HandoffWorkflow",
    "LoopLimitError",
    "LoopStep",
    "MapStep",
    "ParallelStep",
    "PartialFailureError",
    "Registry",
    "RetryPolicy",
    "RouteError",
    "RouterStep",
    "RunFinished",
    "StateMap",
    "Step",
    "StepBlocked",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepFinished",
    "StepResult",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepStatus",
    "StepTimedOut",
    "StepTimeoutError",
    "SubWorkflowStep",
    "ToolStep",
    "WeftError",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowCancelledError",
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
    "execute_workflow_stream",
    "tool",
]

Mapping.register(WorkflowContext)
Mapping.register(StateMap)

# Join weft's worker threads before the interpreter finalizes (DESIGN §3 pitfall 3).
atexit.register(_core._shutdown)
atexit.register(_close_runners)  # atexit runs it first: loops close before threads are joined
