"""The exceptions batten raises. Every one subclasses :class:`BattenError`.

The native engine imports these classes (it never defines its own), so ``except batten.BattenError``
catches everything batten itself raises; exceptions raised *by steps* are recorded on their
:class:`~batten.StepResult` with their original type and message, never wrapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
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
]


class BattenError(Exception):
    """Base class of every exception raised by batten itself."""


class WorkflowDefinitionError(BattenError, ValueError):
    """The workflow or one of its steps is malformed.

    Raised before any step runs: by a step's constructor or fluent method (a non-callable agent, a
    negative timeout, fewer than one attempt) or by ``Workflow.execute``/``run`` (duplicate step
    ids, an unknown ``depends_on``, a dependency cycle, a ``{step_id.result}`` reference to a step
    that is not an ancestor). The message names the offending step and what was expected. Also a
    ``ValueError``, so code written against JAF's plain ``ValueError`` still catches it.
    """


class WorkflowConfigError(WorkflowDefinitionError):
    """A workflow file or config dict is malformed (``batten.load_workflow``,
    ``Workflow.from_config``, ``batten validate``).

    The message reads ``file:line: field: what was expected`` (``workflow.yaml:12:
    steps[2].retry.max_attempts: 0 is less than the minimum of 1``); the parts are also
    attributes.

    Attributes:
        reason: what is wrong (str), without the location.
        file: the file's path as given (str), or ``None`` for a dict.
        line: the 1-based line in ``file`` (int), or ``None`` when unknown.
        field: the offending field's path (``"steps[2].retry"``), or ``None``.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._text())

    def _text(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        if self.file is None and self.line is not None:
            where = f"line {self.line}"
        parts = [p for p in (where, self.field, self.reason) if p]
        return ": ".join(parts)

    def refresh(self) -> WorkflowConfigError:
        """Rebuilds the message after ``file``/``line``/``field`` changed. Returns the error."""
        self.args = (self._text(),)
        return self


class StepTimeoutError(BattenError, TimeoutError):
    """A step attempt ran past its ``with_timeout`` (seconds).

    Recorded on the step's result (``error_type == "StepTimeoutError"``, status ``TIMEOUT``); it is
    a ``TimeoutError``, so the default retry policy retries it.
    """


class StepWorkerLostError(BattenError, ConnectionError):
    """The process or node running a step's attempt elsewhere died under it (a Ray worker
    crashed or was killed, its node died, the object holding its result was lost).

    Also a ``ConnectionError``, so the default retry classification retries it, as Temporal
    retries an activity whose worker was lost: the step's retry policy decides, and the next
    attempt is placed afresh (on another node when the first is gone). The message names the
    step and Ray's own error.
    """


class WorkflowTimeoutError(BattenError, TimeoutError):
    """The whole run exceeded ``execute(timeout=...)`` (seconds)."""


class EventLoopMismatchError(BattenError, RuntimeError):
    """An async step used an asyncio object (a lock, an event, a queue, an ``httpx`` or
    ``aiohttp`` client) bound to the event loop that called ``Workflow.run`` (a Jupyter cell's),
    while ``run`` executed the workflow on its helper thread's own loop.

    Recorded on the step's result in place of the ``RuntimeError`` asyncio raised ("... is bound
    to a different event loop", "... attached to a different loop"), which is its
    ``__cause__``; the message says to ``await workflow.execute(...)`` in the notebook instead,
    which runs the steps on the notebook's own loop. Not retried by the default retry policy
    (a retry would meet the same loop). It is a ``RuntimeError``, so code catching asyncio's
    error still catches it.
    """


class WorkflowCancelledError(BattenError):
    """The run was cancelled before it finished."""


class PartialFailureError(BattenError):
    """A ``ParallelStep`` or ``MapStep`` had fewer completed branches than it needs
    (``minimum_success_count``, or one for ``wait_for_all=False``).

    Attributes:
        results (list[StepResult]): every branch's result.
    """

    def __init__(self, message: str, results: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class LoopLimitError(BattenError):
    """A ``LoopStep(on_max_iterations="fail")`` reached ``max_iterations`` with its condition
    still true."""


class RouteError(BattenError, LookupError):
    """A ``RouterStep``'s route returned an id that is not one of its branches.

    Attributes:
        got: the value the route returned.
        allowed (list[str]): the branch ids.
    """

    def __init__(self, message: str, got: Any = None, allowed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.got = got
        self.allowed = list(allowed)


class HandoffError(BattenError):
    """An agent in a :class:`HandoffWorkflow` handed off where it may not: to an agent it did
    not declare with ``add_handoff``, to an agent not in the workflow, or past the workflow's
    ``max_handoffs``. Recorded on the step's result (``error_type == "HandoffError"``); never
    retried.

    Attributes:
        agent_id: the agent that handed off.
        target: the agent it handed off to.
        path: the ids of the agents that ran, in order, ``agent_id`` last.
    """

    def __init__(self, message: str, *, agent_id: str, target: str, path: Sequence[str]) -> None:
        super().__init__(message)
        self.agent_id = agent_id
        self.target = target
        self.path = list(path)


class StoreError(BattenError):
    """A checkpoint store failed: the base of the store errors below, and itself raised for a
    backend error (a disk error, a Redis error reply). A store error while a run is executing
    fails the step whose checkpoint could not be written, with this type; nothing already
    recorded is lost."""


class StoreURLError(StoreError, ValueError):
    """A store URL with an unknown scheme or a malformed path. Accepted: ``memory://``,
    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and
    ``redis://host:port/db``."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be opened or reached (an unreachable Redis server fails within a few
    seconds; a SQLite file that cannot be created). The message names the URL and the cause."""


class RunNotFoundError(StoreError, KeyError):
    """No run with this id is in the store (``resume``, ``approve``, ``get_workflow_status``...).

    Attributes:
        run_id: the id asked for.
    """

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SchemaVersionError(StoreError):
    """The store was written by a batten with an incompatible schema version; batten refuses to read
    or write it rather than misread it."""


class CorruptRecordError(StoreError):
    """A record in the store cannot be decoded (invalid JSON, a missing field); the message
    names the run and the record."""


class LeaseLostError(StoreError):
    """This process no longer holds the lease on the durable run it was executing: while it was
    stopped (SIGSTOP, a long GC pause, a partitioned network) the lease expired and another
    process took the run over, claiming a higher fencing token. The store refused this
    process's late writes (checkpoints, status), so the successor's history stands; this
    process stops the run and raises this (as a Temporal worker whose activity heartbeat
    times out, or a fenced lock holder in Kleppmann's sense).

    Attributes:
        run_id: the run.
    """

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunLeasedError(BattenError):
    """``resume`` (or approval's continuation) was refused: another live process holds the
    run's lease and is executing it. ``resume(..., wait=True)`` (``batten resume --wait``)
    waits for it instead. A lease whose owner stopped heartbeating takes at most its lease
    duration (default 30 s) to expire; on the owner's own host a dead owner's lease is taken
    over at once.

    Attributes:
        run_id: the run.
        host: the owner's host name.
        pid: the owner's process id on that host.
        owner_id: the owner's random id.
        heartbeat_age: seconds since the owner's last heartbeat.
        expires_at: when the lease lapses unless renewed (unix seconds).
        token: the lease's fencing token.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        host: str,
        pid: int,
        owner_id: str,
        heartbeat_age: float,
        expires_at: float,
        token: int,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.host = host
        self.pid = pid
        self.owner_id = owner_id
        self.heartbeat_age = heartbeat_age
        self.expires_at = expires_at
        self.token = token


class ApprovalError(BattenError):
    """``approve``/``reject`` was refused: the run has ended (completed, failed, cancelled or
    compensated), the step is not waiting for approval (it never was, it was already decided,
    or its approval timed out), or ``by`` is not one of the step's ``approvers``."""


class RunEndedError(BattenError):
    """``pause``/``cancel`` was refused: the run has already ended (completed, failed, cancelled
    or compensated), so there is nothing left to pause or cancel. Nothing is recorded: a
    request left on an ended run would have stopped a later ``resume(retry_failed=True)``
    (as Temporal refuses to cancel a closed workflow execution).

    Attributes:
        run_id: the run.
        status: its final status (a ``WorkflowStatus`` value, e.g. ``"failed"``).
    """

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class ApprovalRejectedError(BattenError):
    """A :class:`~batten.HumanApprovalStep` was rejected; it fails the step, so error handlers,
    fallbacks and compensation apply. Never retried.

    Attributes:
        step_id: the approval step's id (its path inside composites).
        by: who rejected it, if given.
        comment: the reviewer's comment, if given.
    """

    def __init__(
        self, message: str, *, step_id: str, by: str | None = None, comment: str | None = None
    ) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.by = by
        self.comment = comment


class CircuitOpenError(BattenError):
    """A step was refused because its :class:`~batten.CircuitBreaker` is open (seed 001's fault
    tolerance): the agent or tool failed ``failure_threshold`` times in a row and its
    ``recovery_timeout`` has not passed. The step fails fast instead of calling it; never
    retried (give the breaker ``wait=True`` to have steps wait for the circuit instead)."""


class UnknownStepError(WorkflowDefinitionError, LookupError):
    """A step id that is not one of the workflow's top-level steps was named, e.g. as
    ``Workflow.fork(run_id, from_step)``'s ``from_step`` or ``batten rerun --from``.

    Attributes:
        step_id: the id asked for.
        known: the workflow's top-level step ids, in declaration order.
    """

    def __init__(self, message: str, *, step_id: str, known: list[str]) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.known = known
