"""Checkpoint stores: where durable runs live (issue "durable runs"; DESIGN §4 "Durability").

A store holds, append-only, each run's record (run id, workflow id, name and version, status,
timestamps, the input context) and each step's status changes, attempts, errors, outputs and
state deltas, plus approval decisions, pause/cancel requests and cached step outputs. The
stores themselves are native (``src/store``): SQLite (embedded, the default), Redis and
PostgreSQL (several processes or hosts sharing runs), and an in-process memory store.

Give a store to ``Workflow.execute(store=...)`` / ``Workflow.with_store`` as an object or a URL:

- ``"sqlite:///runs.db"`` (relative path) or ``"sqlite:////var/lib/app/runs.db"`` (absolute, as
  SQLAlchemy), or ``SqliteStore(path)``;
- ``"redis://host:6379/0"`` or ``RedisStore(url)``;
- ``"postgresql://user:password@host:5432/db"`` (or ``postgres://``) or ``PostgresStore(url)``;
- ``"memory://"`` or ``MemoryStore()`` (lives as long as the object).

Values are stored as JSON only when they read back equal to what was written: ``None``, bool,
int (64-bit), finite float, str, list and dict with str keys, nested at most
:data:`MAX_JSON_DEPTH` levels. Anything else (NaN, infinities, tuples, sets, non-str keys, other
types, deeper nesting) fails the step with a ``TypeError`` unless the workflow has a serializer.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from batten._core import MAX_JSON_DEPTH as _NATIVE_MAX_JSON_DEPTH
from batten._core import Store as NativeStore
from batten._internal.owner import lease_is_live
from batten._internal.status import StepStatus, WorkflowStatus
from batten.errors import CorruptRecordError, StoreURLError

__all__ = [
    "MAX_JSON_DEPTH",
    "MemoryStore",
    "PostgresStore",
    "RedisStore",
    "RunInfo",
    "RunLease",
    "SqliteStore",
    "StepRecord",
    "Store",
    "open_store",
]

#: The deepest a checkpointed value (a step's output or state delta, the run's input context as
#: a whole, its result) may nest: ``[[1]]`` is 2 levels, a scalar 0. A deeper one fails the step
#: with a ``TypeError`` naming it before anything is written (or goes through the workflow's
#: serializer), because the stores' JSON reader refuses 128 levels and a record written deeper
#: could never be read back.
MAX_JSON_DEPTH: int = _NATIVE_MAX_JSON_DEPTH

_log = logging.getLogger("batten.store")


def _status_of(enum: Any, value: Any, record: str) -> Any:
    """``enum(value)``; a value that is not one of its members is a corrupt ``record``."""
    try:
        return enum(value)
    except ValueError:
        expected = ", ".join(m.value for m in enum)
        raise CorruptRecordError(
            f"corrupt record in the store: {record}: status {value!r} is not a "
            f"{'step' if enum is StepStatus else 'run'} status (expected one of {expected})"
        ) from None


#: Stored statuses of a run that some process is executing (or was, until it died).
_EXECUTING = frozenset(
    {WorkflowStatus.RUNNING, WorkflowStatus.PENDING, WorkflowStatus.INITIALIZING}
)


@dataclass(frozen=True)
class RunLease:
    """Who executes a durable run: the lease its executor claimed in the store and renews by
    heartbeats (as Temporal's activity heartbeats; DESIGN §4 "Ownership").

    Attributes:
        host: the owner's host name.
        pid: its process id there.
        owner_id: its random id (one per execution).
        token: the fencing token (grows with every claim of the run).
        heartbeat_at: the last heartbeat (or the claim), unix seconds.
        expires_at: when it lapses unless renewed, unix seconds.
        started: the owner's process start time (Linux clock ticks since boot), or ``None``.
    """

    host: str
    pid: int
    owner_id: str
    token: int
    heartbeat_at: float
    expires_at: float
    started: int | None = None

    @property
    def heartbeat_age(self) -> float:
        """Seconds since the last heartbeat, by this machine's clock."""
        return max(0.0, time.time() - self.heartbeat_at)

    @classmethod
    def _from(cls, d: dict[str, Any]) -> RunLease:
        return cls(
            host=d["host"],
            pid=int(d["pid"]),
            owner_id=d["owner_id"],
            token=int(d["token"]),
            heartbeat_at=float(d["heartbeat_at"]),
            expires_at=float(d["expires_at"]),
            started=d.get("started"),
        )


@dataclass(frozen=True)
class RunInfo:
    """A durable run's record, as ``get_workflow_status`` and ``list_runs`` return it.

    Attributes:
        run_id: the run's id.
        workflow_id, name, version: the workflow's, when the run started.
        status: the run's ``WorkflowStatus`` (``RUNNING`` while a live process executes it;
            ``INTERRUPTED`` when that process died or stopped heartbeating: ``resume``
            finishes it).
        created_at, updated_at: unix seconds.
        input: the input context (``workflow_id``, ``user_context``, ``variables``,
            ``metadata``) as JSON.
        error: the first failure's ``"step: ErrorType: message"``, if any.
        result: the final output as stored (JSON), once finished.
        lease: who executes the run now (:class:`RunLease`: host, pid, heartbeat), or ``None``
            when no live process holds it.
        stored_status: the status as the store holds it; ``status`` differs only when it is
            ``INTERRUPTED``: the store says ``RUNNING`` but the executing process is gone (its
            lease expired, or its pid on this host no longer exists).
    """

    run_id: str
    workflow_id: str
    name: str
    version: str
    status: WorkflowStatus
    created_at: float
    updated_at: float
    input: dict[str, Any]
    error: str | None
    result: Any
    lease: RunLease | None = None
    stored_status: WorkflowStatus | None = None

    @classmethod
    def _from(cls, d: dict[str, Any]) -> RunInfo:
        """Raises ``CorruptRecordError`` (naming the run) for a status no batten writes."""
        d = dict(d)
        raw_lease = d.pop("lease", None)
        stored = _status_of(WorkflowStatus, d["status"], f"run {d['run_id']!r}")
        live = lease_is_live(raw_lease)
        status = stored
        if stored in _EXECUTING and not live:
            status = WorkflowStatus.INTERRUPTED
        lease = RunLease._from(raw_lease) if live and raw_lease is not None else None
        return cls(**{**d, "status": status, "stored_status": stored, "lease": lease})


@dataclass(frozen=True)
class StepRecord:
    """One entry of a run's step history (the audit trail of seed 001).

    Attributes:
        seq: the entry's sequence number in the run (1-based, increasing).
        step_id: the step's path (``"parent/child"`` inside composites).
        status: the ``StepStatus`` it entered (``RUNNING`` per attempt, then its outcome;
            ``WAITING_APPROVAL`` for an approval step waiting).
        attempt: the attempt number (0 for steps that never ran).
        at: unix seconds.
        duration_ms: milliseconds from the step's first start to this outcome, if it ended.
        error_type, error: the exception's class name and message, for failures and retries.
        output: the stored output of a completed step.
        detail: extra facts: ``{"delay_s": ...}`` for a retry; the prompt and approvers of an
            approval wait; ``{"approved": ..., "by": ..., "comment": ...}`` of a decision;
            ``"traceback"`` of a failed attempt (a retry's or a failure's; see ``traceback``).
    """

    seq: int
    step_id: str
    status: StepStatus
    attempt: int
    at: float
    duration_ms: float | None
    error_type: str | None
    error: str | None
    output: Any
    detail: Any

    @property
    def traceback(self) -> str | None:
        """The Python traceback text (``traceback.format_exception``) of the exception that
        failed this attempt, for ``failed`` entries; ``None`` otherwise (``retrying`` entries:
        formatting one costs more than a retried attempt; timeouts, cancellations and open
        circuits, whose traceback is the engine's own; entries written before batten kept
        tracebacks). At most 8 KiB: a longer one keeps
        its tail (where the raising frame and the exception line are), after a ``"...\\n"``
        line. As Temporal's failure ``stack_trace``."""
        detail = self.detail
        if isinstance(detail, dict):
            text = detail.get("traceback")
            if isinstance(text, str):
                return text
        return None

    @classmethod
    def _from(cls, d: dict[str, Any], run_id: str) -> StepRecord:
        """Raises ``CorruptRecordError`` (naming the run, the event and its step) for a status
        no batten writes."""
        d = dict(d)
        d.pop("delta", None)
        record = f"run {run_id!r} event {d['seq']} (step {d['step_id']!r})"
        return cls(**{**d, "status": _status_of(StepStatus, d["status"], record)})


class Store:
    """A checkpoint store opened from a URL (see the module docs for the URL forms).

    Args:
        url: ``"memory://"``, ``"sqlite:///relative.db"``, ``"sqlite:////absolute.db"``,
            ``"redis://host:port/db"`` or ``"postgresql://user:password@host:port/db"``.

    Raises:
        StoreURLError: an unknown scheme or a malformed URL.
        StoreUnavailableError: the store cannot be opened (a Redis server that does not answer
            or PostgreSQL server that does not answer fails within about 2 seconds, never
            hangs).
        SchemaVersionError: the store was written by an incompatible batten.
    """

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"a store URL must be a str, got {type(url).__name__}")
        self._native = NativeStore(url)

    @property
    def url(self) -> str:
        """The URL the store was opened from."""
        return str(self._native.url)

    def get_run(self, run_id: str) -> RunInfo:
        """The record of run ``run_id``.

        Raises:
            RunNotFoundError: no such run.
            CorruptRecordError: its record cannot be decoded (invalid JSON, a status no batten
                writes); the message names the run and the field.
        """
        return RunInfo._from(self._native.get_run(run_id))

    def list_runs(
        self,
        *,
        status: WorkflowStatus | str | None = None,
        workflow_id: str | None = None,
        limit: int = 1000,
    ) -> list[RunInfo]:
        """Runs newest first, optionally only those with ``status`` and/or ``workflow_id``;
        at most ``limit`` (an int >= 0, default 1000).

        A run whose record cannot be decoded is left out with a warning logged on the
        ``batten.store`` logger naming it and why (the ``CorruptRecordError`` message), so one
        bad record never hides the others; ``get_run`` of that run raises the error.

        Raises:
            ValueError: ``status`` is not a ``WorkflowStatus`` value, or ``limit`` is not an int
                >= 0.
        """
        wanted = None if status is None else WorkflowStatus(status)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        # A run recorded RUNNING whose owner is gone reads INTERRUPTED (derived from its lease);
        # a run stopped by a signal is stored INTERRUPTED. So RUNNING is asked for RUNNING, and
        # INTERRUPTED for both, each record kept only when its status reads as the wanted one.
        if wanted in (WorkflowStatus.RUNNING, WorkflowStatus.INTERRUPTED):
            asked_for = [WorkflowStatus.RUNNING.value]
            if wanted == WorkflowStatus.INTERRUPTED:
                asked_for.append(WorkflowStatus.INTERRUPTED.value)
            found = [
                d for st in asked_for for d in self._native.list_runs(st, workflow_id, sys.maxsize)
            ]
            if len(asked_for) > 1:
                found.sort(key=_created_at, reverse=True)
        else:
            st = None if wanted is None else wanted.value
            found = self._native.list_runs(st, workflow_id, min(limit, sys.maxsize))
        runs: list[RunInfo] = []
        for d in found:
            if len(runs) >= limit:
                break
            try:
                if isinstance(d, CorruptRecordError):
                    raise d
                info = RunInfo._from(d)
            except CorruptRecordError as exc:
                _log.warning("%s: run left out of the listing: %s", self.url, exc)
                continue
            if wanted is None or info.status == wanted:
                runs.append(info)
        return runs

    def history(self, run_id: str) -> list[StepRecord]:
        """Every step event of run ``run_id`` in order: starts, retries (with their errors and
        delays), outcomes (with durations, outputs and errors), approval waits and decisions.

        Raises:
            RunNotFoundError: no such run.
            CorruptRecordError: a stored event cannot be decoded (invalid JSON, a status no
                batten writes); the message names the run and the event.
        """
        self._native.get_run(run_id)
        return [StepRecord._from(d, run_id) for d in self._native.events(run_id, 0)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class MemoryStore(Store):
    """An in-process store: approvals, pause and cancel within one process, and tests. Its
    runs live as long as the object."""

    def __init__(self) -> None:
        super().__init__("memory://")


class SqliteStore(Store):
    """The embedded store: one SQLite file (WAL mode; durable against a killed process),
    shareable by several processes on one host.

    Args:
        path: the database file (``str`` or ``os.PathLike``); created with its parent
            directories if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__("sqlite:///" + os.path.abspath(os.fspath(path)))


class RedisStore(Store):
    """The shared store: a Redis server reached by several processes or hosts.

    Args:
        url: ``"redis://host:port/db"`` (default ``"redis://127.0.0.1:6379/0"``).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        if not url.startswith("redis://"):
            raise StoreURLError(f"RedisStore needs a redis:// URL, got {url!r}")
        super().__init__(url)


class PostgresStore(Store):
    """The shared store in a PostgreSQL database (as DBOS and Prefect keep their state), reached
    by several processes or hosts: any of them can resume, approve or inspect a run.

    Args:
        url: ``"postgresql://user:password@host:port/db"`` (or ``postgres://``), libpq's URL
            form; batten's own query parameters ``connect_timeout`` (seconds, default 2: getting
            a connection) and ``statement_timeout`` (seconds, default 5: one call, on the client
            and as the session's ``statement_timeout`` on the server), e.g.
            ``"postgresql://app@db:5432/runs?connect_timeout=2&statement_timeout=5"``.

    The tables live in the schema ``batten`` (created on first use). Pause, cancel and
    approvals reach a running executor through the same poll as the other stores
    (``batten.durable.POLL_INTERVAL``, 0.1 s).

    Raises:
        StoreURLError: ``url`` is not a ``postgresql://`` / ``postgres://`` URL or is malformed
            (a bad port, a timeout that is not a positive number, an unknown parameter).
        StoreUnavailableError: the server does not answer within the connect timeout, or
            refuses the connection.
        SchemaVersionError: the database holds a ``batten`` schema of another version.
    """

    def __init__(self, url: str) -> None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise StoreURLError(f"PostgresStore needs a postgresql:// URL, got {url!r}")
        super().__init__(url)


def open_store(store: Store | str | None) -> Store | None:
    """``store`` as a :class:`Store`: a store object as is, a URL opened, ``None`` as is.

    Raises:
        TypeError: neither a ``Store`` nor a ``str``.
        StoreURLError, StoreUnavailableError, SchemaVersionError: as :class:`Store`.
    """
    if store is None or isinstance(store, Store):
        return store
    if isinstance(store, str):
        return Store(store)
    raise TypeError(f"store must be a batten.Store or a URL str, got {type(store).__name__}")


def _created_at(record: Any) -> float:
    """A listed record's start time for ordering (a corrupt record's error sorts last)."""
    return float(record["created_at"]) if isinstance(record, dict) else float("-inf")
