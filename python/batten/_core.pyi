"""Type stubs for batten's native module (private; the public API is re-exported by ``batten``)."""

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextvars import Context
from typing import Any, Self, final

from batten._internal.spec import StepSpec
from batten.errors import CorruptRecordError

__all__ = [
    "MAX_JSON_DEPTH",
    "Breaker",
    "CompositeFailure",
    "Journal",
    "Nested",
    "Plan",
    "RateLimiter",
    "Run",
    "RunOutcome",
    "StateMap",
    "StepResult",
    "Store",
    "StoreWatch",
    "WorkflowContext",
    "__version__",
    "_abandoned_calls",
    "_shutdown",
]

__version__: str
#: The deepest nesting a checkpointed JSON value may have (``batten.store.MAX_JSON_DEPTH``).
MAX_JSON_DEPTH: int

class _MapView:
    """The read-only mapping methods ``StateMap`` and ``WorkflowContext`` (over its variables)
    share. Stub-only (stubtest does not require private names at runtime): at runtime each
    class defines them, delegating to one Rust ``MapView``, because pyo3 exposes only the
    methods of a class's own ``#[pymethods]`` block."""

    def __getitem__(self, key: str, /) -> Any: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def get(self, key: str, default: Any = None) -> Any:
        """``get(key, default=None)``: the value for ``key`` or ``default``."""
    def keys(self) -> list[str]:
        """The keys, as a list (sorted)."""
    def values(self) -> list[Any]:
        """The values, as a list, in key order."""
    def items(self) -> list[tuple[str, Any]]:
        """``(key, value)`` pairs, as a list, in key order."""

@final
class StateMap(_MapView):
    """A read-only mapping (``collections.abc.Mapping``) of str keys to step-visible values: a
    context's ``variables`` or ``results``. Keys iterate in sorted order, so what a step sees never
    depends on which sibling finished first."""

    def to_dict(self) -> dict[str, Any]:
        """A new ``dict`` copy of the mapping."""

@final
class WorkflowContext(_MapView):
    """The state of a workflow run as one step sees it (JAF's ``WorkflowContext``).

    Create one to start a run: ``WorkflowContext(workflow_id="workflow", user_context=None,
    variables=None, metadata=None)`` (``initial_data=`` is accepted as an alias of
    ``variables``, as in JAF's e-commerce example). A step that declares a ``context``
    parameter, and every condition, gets a context whose ``variables`` are the initial variables
    plus the dict outputs of the steps it depends on (directly or transitively), merged in
    declaration order, and whose ``results`` map those steps' ids to their outputs. The context
    is itself a read-only mapping over its variables, so ``lambda state: state["order_id"]`` and
    ``lambda ctx: ctx.variables.get("priority")`` both work.

    Raises:
        TypeError: ``variables`` is not a mapping with str keys, ``workflow_id`` is not a str,
            or both ``variables`` and ``initial_data`` are given.
        WorkflowDefinitionError: ``workflow_id`` holds a lone surrogate (not valid UTF-8).
    """

    def __new__(
        cls,
        workflow_id: str | None = None,
        user_context: dict[str, Any] | None = None,
        variables: Any = None,
        metadata: dict[str, Any] | None = None,
        *,
        initial_data: Any = None,
    ) -> Self: ...
    @property
    def workflow_id(self) -> str:
        """The workflow id given when the context was created (str)."""
    @property
    def user_context(self) -> dict[str, Any]:
        """Caller-supplied data about the user or request (a dict, shared by every step)."""
    @property
    def metadata(self) -> dict[str, Any]:
        """Caller-supplied metadata (a dict, shared by every step)."""
    @property
    def variables(self) -> StateMap:
        """The variables this step sees, as a read-only mapping (see the class docs)."""
    @property
    def initial_data(self) -> StateMap:
        """Alias of ``variables`` (JAF's ``initial_data``)."""
    @property
    def data(self) -> StateMap:
        """Alias of ``variables`` (the ``state.data`` JAF's ``WorkflowLogger`` example reads)."""
    @property
    def results(self) -> StateMap:
        """Outputs of the steps this step depends on (all completed steps in a final context),
        as a read-only mapping of step id to output."""
    @property
    def run_id(self) -> str | None:
        """The run's id (a uuid4 hex string) inside a run; ``None`` on a context built by the
        caller."""
    @property
    def step_id(self) -> str | None:
        """The id of the step this context was made for; ``None`` for a caller's or final
        context."""
    @property
    def idempotency_key(self) -> str | None:
        """``"{run_id}:{step_path}"``: stable for a run and step across attempts and, in a durable
        run, across ``resume`` (a step interrupted mid-flight runs again with the same key), so
        side-effecting tools can de-duplicate. Inside a composite of a durable run the path is
        ``"parent/step"``. ``None`` outside a step."""
    def to_dict(self) -> dict[str, Any]:
        """A plain-dict snapshot: ``{"workflow_id", "user_context", "variables", "metadata",
        "results"}``."""

@final
class StepResult:
    """What happened to one step in one run (JAF's ``StepResult``).

    Attributes:
        step_id (str): the step's id.
        status (StepStatus): its final status.
        output: the step's return value (``None`` unless ``COMPLETED``).
        error (str | None): the message of the exception that ended the last attempt.
        error_type (str | None): that exception's class name, e.g. ``"ValueError"``, or
            ``"StepTimeoutError"`` for a timeout.
        exception (BaseException | None): the exception object itself.
        attempts (int): attempts started (0 for a step that never ran).
        execution_time_ms (float): milliseconds from the first attempt's start to the end of the
            last, backoff waits included.
        metadata (dict): extra facts, e.g. ``{"abandoned": True}`` for a sync step left running
            after its timeout, ``{"cancel_ignored": True}`` for an async step that swallowed
            cancellation, ``{"iterations": 3}`` for a ``LoopStep``, ``{"branch": "b"}`` for a
            ``ConditionalStep`` or ``RouterStep``.
        children (list[StepResult]): the results of the steps a composite step ran (the
            branches of a ``ParallelStep``, the items of a ``MapStep``, a sub-workflow's steps,
            the iterations of a ``LoopStep``, a step and its fallback), in completion order;
            empty for a plain step.
    """

    def __new__(
        cls,
        step_id: str,
        status: str,
        output: Any = None,
        error: str | None = None,
        error_type: str | None = None,
        exception: BaseException | None = None,
        attempts: int = 0,
        execution_time_ms: float = 0.0,
        metadata: dict[str, Any] | None = None,
        children: list[StepResult] | None = None,
    ) -> Self:
        """Builds a result by hand (adapters and tests); the engine makes its own.

        Raises:
            ValueError: ``status`` is not a ``StepStatus`` value.
            WorkflowDefinitionError: ``attempts`` is not an int (a bool is not) from 0 to
                ``2**32 - 1``.
        """
    @property
    def step_id(self) -> str: ...
    @property
    def status(self) -> Any: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def exception(self) -> BaseException | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def execution_time_ms(self) -> float: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def children(self) -> list[StepResult]: ...
    def replace(self, **changes: Any) -> StepResult:
        """A copy with the fields named in ``changes`` replaced (as ``dataclasses.replace``; the
        others are shared, not copied): any of ``step_id``, ``status``, ``output``, ``error``,
        ``error_type``, ``exception``, ``attempts``, ``execution_time_ms``, ``metadata`` and
        ``children``, typed as for the constructor.

        Raises:
            TypeError: a name that is not a field, or a value of the wrong type.
            ValueError: ``status`` is not a ``StepStatus`` value.
            WorkflowDefinitionError: ``attempts`` out of range (as for the constructor).
        """
    @property
    def is_success(self) -> bool:
        """True when the step completed."""
    @property
    def success(self) -> bool:
        """Alias of ``is_success`` (the name JAF's ``WorkflowLogger`` example reads)."""
    @property
    def is_failure(self) -> bool:
        """True when the step failed or timed out (blocked, skipped and cancelled steps are
        neither)."""

@final
class RunOutcome:
    """A finished run, as ``Run.outcome()`` returns it. Private: ``batten.Workflow`` and the
    composite steps read it.

    Attributes:
        run_id (str): the run's id.
        status (str): ``"completed"``, ``"failed"``, ``"cancelled"`` or ``"paused"`` (a
            ``batten.WorkflowStatus`` value).
        steps (list[StepResult]): every step's result; steps that ran first, each group in
            completion order.
        final_output: the output of the last-declared sink step that has one, else ``None``.
        error (str | None): why the run did not complete (``"step: Type: message"`` of the
            first failure, or the run's timeout or cancellation).
        elapsed_ms (float): milliseconds from the start to the end of the run.
        context (WorkflowContext): the final context (every completed step merged in).
    """

    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def steps(self) -> list[StepResult]: ...
    @property
    def final_output(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def elapsed_ms(self) -> float: ...
    @property
    def context(self) -> WorkflowContext: ...
    def by_id(self, step_id: str) -> StepResult | None:
        """The result of the step with id ``step_id`` (str), or ``None``."""

@final
class Run:
    """A started run. Private: ``batten._runtime.run.run_plan`` starts one, awaits ``done`` and
    reads its ``outcome()``."""

    @staticmethod
    def start(
        plan: Plan,
        context: WorkflowContext,
        *,
        pycontext: Context | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        on_event: Callable[[str, str, int, Any], None] | None = None,
        journal: Journal | None = None,
    ) -> Run:
        """Starts a run of ``plan`` from ``context`` on the running event loop (call from a
        coroutine on the loop's thread).

        ``pycontext``: every step runs in a copy of it (default: a copy of the caller's);
        ``timeout``: seconds the whole run may take; ``max_concurrency``: at most this many steps
        in flight (the smaller of it and the plan's ``max_parallel`` wins);
        ``on_event(kind, step_id, attempt, payload)``: called with each engine event, on the
        thread where it happens (kinds: ``"started"``, ``"retrying"``, ``"circuit"``,
        ``"waited"`` with ``(seconds, "rate_limit" | "circuit" | "concurrency", name)`` before
        the ``"started"`` of an attempt that was held back, and the terminal statuses);
        ``journal`` makes the run durable: each step is checkpointed
        to the journal's store and the steps the journal restores complete without running.

        Raises:
            RuntimeError: no event loop is running in this thread.
            WorkflowDefinitionError: ``timeout`` not a positive number, ``max_concurrency``
                not an int from 1 to the largest ``usize``.
            CorruptRecordError: a restored checkpoint cannot be decoded.
        """
    @property
    def run_id(self) -> str:
        """The run's id (uuid4 hex, or the durable run's store id)."""
    @property
    def done(self) -> Awaitable[None]:
        """An ``asyncio.Future`` of the run's loop, resolved (with ``None``) when the run has
        ended."""
    def cancel(self) -> Any:
        """Cancels the run (call on the loop thread); returns a future that resolves once every
        cancelled task has finished unwinding, or ``None`` when none is left."""
    def pause(self) -> None:
        """Pauses the run (call on the loop thread): running steps finish, nothing new starts,
        and the run ends with status ``paused`` once nothing is in flight."""
    def outcome(self) -> RunOutcome:
        """The finished run's ``RunOutcome`` (call once ``done`` has resolved)."""

@final
class Plan:
    """A compiled workflow. Private: built by ``batten.Workflow``.

    Raises:
        WorkflowDefinitionError: duplicate ids, unknown dependencies, a cycle, a template
            reference to a non-ancestor, a bad timeout or retry policy, an id that is not valid
            UTF-8 (a lone surrogate), an int out of range (``max_parallel``, ``min_success``,
            ``max_total_retries``), a malformed step spec.
    """

    def __new__(
        cls,
        workflow_id: str,
        specs: Iterable[StepSpec],
        max_parallel: int | None = None,
        *,
        fail_fast: bool = False,
        first_success: bool = False,
        min_success: int | None = None,
        continue_on_error: bool = False,
        max_total_retries: int | None = None,
        controls: dict[str, tuple[list[RateLimiter], list[Breaker]]] | None = None,
    ) -> Self: ...
    @staticmethod
    def fan_out(
        plan_id: str,
        step_id: str,
        invoke: Any,
        items: Sequence[Any],
        is_async: bool,
        wants_context: bool,
        timeout: float | None,
        retry_policy: Any,
        conditions: Sequence[Any],
        max_parallel: int | None = None,
        *,
        fail_fast: bool = False,
        first_success: bool = False,
        min_success: int | None = None,
        limiters: Sequence[RateLimiter] | None = None,
        breakers: Sequence[Breaker] | None = None,
    ) -> Plan:
        """A fan-out plan (``MapStep``): one independent step per item, ``"{step_id}[{i}]"``,
        each calling ``invoke(item)`` (plus ``context=`` when ``wants_context``).

        Raises:
            WorkflowDefinitionError: a bad timeout (seconds) or retry policy, an int out of
                range (``max_parallel``, ``min_success``).
        """
    @property
    def workflow_id(self) -> str:
        """The id of the workflow this plan was compiled from."""
    def __len__(self) -> int:
        """Number of steps."""

@final
class Nested:
    """What a composite step returns to the engine instead of a bare output (private).

    ``output`` is the step's output; ``delta`` the variables it adds (``None``: the output
    itself, if a dict); ``children`` the nested step results; ``metadata`` facts merged into
    the step's metadata; ``skipped`` ends the step ``SKIPPED``; ``attempts`` replaces its
    attempt count. A composite that fails raises ``CompositeFailure(error, nested)``."""

    def __new__(
        cls,
        output: Any = None,
        *,
        delta: dict[str, Any] | None = None,
        children: list[StepResult] | None = None,
        metadata: dict[str, Any] | None = None,
        skipped: bool = False,
        attempts: int | None = None,
    ) -> Self: ...
    @property
    def output(self) -> Any:
        """The step's output."""

@final
class CompositeFailure(Exception):
    """What a composite step raises when it fails: the exception of the child that failed it
    (``error``) and the composite's own results so far (``nested``). Private: raised by batten's
    composite steps, unwrapped by the engine, which records ``error`` as the step's exception
    (its type, message and object) with ``nested``'s children and metadata."""

    def __new__(cls, error: BaseException, nested: Nested) -> Self: ...
    @property
    def error(self) -> BaseException: ...
    @property
    def nested(self) -> Nested: ...

@final
class Store:
    """A checkpoint store opened from a URL. Private: ``batten.Store`` wraps it.

    Raises:
        StoreURLError, StoreUnavailableError, SchemaVersionError: on opening.
    """

    def __new__(cls, url: str) -> Self: ...
    @property
    def url(self) -> str:
        """The URL it was opened from."""
    def create_run(
        self,
        run_id: str,
        workflow_id: str,
        name: str,
        version: str,
        status: str,
        input: Any,
        created_at: float,
    ) -> None:
        """Records a new run (``StoreError`` if the id exists)."""
    def create_run_claimed(
        self,
        run_id: str,
        workflow_id: str,
        name: str,
        version: str,
        status: str,
        input: Any,
        created_at: float,
        host: str,
        pid: int,
        owner_id: str,
        started: int | None,
        now: float,
        lease_seconds: float,
    ) -> tuple[bool, dict[str, Any]]:
        """``create_run`` then ``claim`` (no take-over), in one store transaction where the
        store can: ``(won, lease)``."""
    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's record as a dict (``RunNotFoundError`` if absent)."""
    def finish_status(
        self,
        run_id: str,
        status: str,
        at: float,
        error: str | None = None,
        result: Any = None,
    ) -> None:
        """Sets the run's status (and its error / result summary when given)."""
    def claim(
        self,
        run_id: str,
        host: str,
        pid: int,
        owner_id: str,
        started: int | None,
        now: float,
        lease_seconds: float,
        take_over: int | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Claims run ``run_id`` until ``now + lease_seconds`` (atomic in the store):
        ``(won, lease)``; ``take_over`` names the token of a lease whose owner is dead."""
    def renew(self, run_id: str, token: int, now: float, lease_seconds: float) -> dict[str, Any]:
        """Renews the lease with fencing ``token`` (``LeaseLostError`` if it is not held)."""
    def release(self, run_id: str, token: int) -> bool:
        """Releases the lease with fencing ``token``; ``False`` if it is not the run's lease."""
    def list_runs(
        self, status: str | None = None, workflow_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any] | CorruptRecordError]:
        """Run records, newest first, filtered by status and workflow id. A record that cannot
        be read is listed in its place as the ``CorruptRecordError`` naming it (an instance,
        not raised)."""
    def append(self, run_id: str, events: list[dict[str, Any]]) -> list[int]:
        """Appends step events (dicts with ``step_id``, ``status``, ``attempt``, ``at``,
        ``duration_ms``, ``error_type``, ``error``, ``output``, ``delta``, ``detail``); returns
        their sequence numbers."""
    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The run's step events after sequence number ``after``, oldest first, as dicts."""
    def set_control(self, run_id: str, control: str | None = None) -> None:
        """Requests ``"pause"`` or ``"cancel"`` for a run (``None`` clears the request)."""
    def control(self, run_id: str) -> str | None:
        """The pending control request of a run: ``"pause"``, ``"cancel"`` or ``None``."""
    def decide(
        self,
        run_id: str,
        step_id: str,
        approved: bool,
        by: str | None = None,
        comment: str | None = None,
        at: float | None = None,
    ) -> None:
        """Records a decision on an approval step (``ApprovalError`` if it already has one)."""
    def watch(self, run_id: str, callback: Callable[[], object]) -> StoreWatch | None:
        """Calls ``callback()`` (no arguments) soon after run ``run_id``'s control or approval
        decisions change, written by any process, until the returned watch is closed; also when
        the store's push channel (re)connects. It runs on a thread of the store's, holding the
        GIL; what it raises goes to ``sys.unraisablehook``. A call means only "look now"
        (``control``). ``None`` when the store pushes nothing (memory, SQLite, Redis): poll
        instead. PostgreSQL pushes with LISTEN/NOTIFY."""
    def decisions(self, run_id: str) -> list[dict[str, Any]]:
        """The run's approval decisions, as dicts."""
    def cache_get(self, key: str, now: float) -> tuple[bool, Any]:
        """``(True, value)`` for a live cache entry, ``(False, None)`` otherwise."""
    def cache_put(self, key: str, value: Any, expires_at: float) -> None:
        """Stores a JSON value under ``key`` until ``expires_at`` (unix seconds)."""
    def put_workflow(self, workflow_id: str, definition: Any) -> None:
        """Records (replaces) a workflow's definition."""
    def get_workflow(self, workflow_id: str) -> Any:
        """A workflow's recorded definition, or ``None``."""

@final
class StoreWatch:
    """A subscription to a run's pushed control changes (``Store.watch``). Private."""

    def close(self) -> None:
        """Ends the subscription (idempotent): later changes no longer call the callback;
        one already dispatched may still call it once."""

@final
class Journal:
    """The checkpoint writer of one durable run. Private: ``batten.durable`` makes them.

    ``serializer`` (e.g. the ``pickle`` module) stores outputs that are not JSON; ``batch``
    buffers events (written every 256 and at the run's end); ``resume`` reads the run's events
    and restores every step whose last event is ``completed`` (``CorruptRecordError`` naming
    the run and the event for a status no batten writes).
    """

    def __new__(
        cls,
        store: Store,
        run_id: str,
        *,
        serializer: Any = None,
        batch: bool = False,
        resume: bool = False,
    ) -> Self: ...
    def child(self, prefix: str) -> Journal:
        """The journal of a nested run inside step ``prefix`` (paths ``"prefix/..."``)."""
    def root(self) -> Journal:
        """The journal of the top-level run (scope ``""``)."""
    @property
    def run_id(self) -> str:
        """The durable run's id."""
    @property
    def store(self) -> Store:
        """The store this journal writes to."""
    @property
    def scope(self) -> str:
        """This journal's path prefix (``""`` for the top-level run)."""
    @property
    def error(self) -> str | None:
        """The first store error a write hit, or ``None``."""
    def restored_paths(self) -> list[str]:
        """Paths of the steps restored from the store, sorted."""
    def hold(self, token: int, lease_seconds: float, heartbeat_seconds: float) -> None:
        """Holds the lease with fencing ``token``: writes carry it; a heartbeat on the ticker
        thread (one per process) renews it every ``heartbeat_seconds`` to
        ``now + lease_seconds``."""
    def begin_run(
        self,
        workflow_id: str,
        name: str,
        version: str,
        status: str,
        context: Any,
        created_at: float,
        host: str,
        pid: int,
        owner_id: str,
        started: int | None,
        lease_seconds: float,
        heartbeat_seconds: float,
        *,
        what: str,
    ) -> dict[str, Any] | None:
        """Records the run, claimed by this process (``Store.create_run_claimed``, ``context``
        encoded as outputs are, ``TypeError`` naming ``what``), and holds its lease; ``None``,
        or the live owner's lease dict when the id is held already (nothing written)."""
    def release(self) -> bool:
        """Stops the heartbeat and releases the lease (unless lost); whether it was released."""
    @property
    def token(self) -> int:
        """The fencing token of the lease held (0: none)."""
    @property
    def lease_lost(self) -> str | None:
        """Why the lease was lost, or ``None`` while it is held."""
    def finish_status(
        self, status: str, at: float, error: str | None = None, result: Any = None
    ) -> None:
        """Sets the run's status, fenced with the held lease's token (``LeaseLostError``)."""
    def finish_run(
        self,
        status: str,
        at: float,
        error: str | None = None,
        result: Any = None,
        clear_control: bool = True,
        *,
        encode_result: bool = False,
    ) -> bool:
        """The execution's end in one store transaction where the store can: buffered events,
        status, control cleared, lease released (``LeaseLostError`` if taken over); whether
        the lease was released. ``encode_result``: ``result`` encoded as outputs are, ``None``
        when it cannot be."""
    def flush(self) -> None:
        """Writes buffered events now (batch mode). Raises ``StoreError``."""
    def record(
        self,
        step_id: str,
        status: str,
        attempt: int = 1,
        *,
        detail: Any = None,
        error_type: str | None = None,
        error: str | None = None,
        output: Any = None,
    ) -> None:
        """Appends one event for ``step_id`` (a path under this journal's scope)."""
    def encode_output(self, step_id: str, obj: Any, *, what: str | None = None) -> Any:
        """``obj`` as this journal stores outputs (JSON that reads back equal, at most
        ``MAX_JSON_DEPTH`` levels, else the serializer's form); ``TypeError`` naming
        ``step_id`` (or ``what``, e.g. ``"the run's input context"``) and why if it cannot be
        stored."""
    def decode_output(self, value: Any) -> Any:
        """Decodes a stored output (the inverse of ``encode_output``)."""

@final
class RateLimiter:
    """A rate limiter shared by every step that holds it. Private: ``batten.RateLimit`` wraps
    it. ``None`` leaves a dimension unlimited; a rate that is not a positive finite number or
    a ``max_concurrency`` out of range raises ``WorkflowDefinitionError``."""

    def __new__(
        cls,
        key: str,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        max_concurrency: int | None = None,
    ) -> Self: ...
    @property
    def in_flight(self) -> int:
        """Attempts holding a concurrency slot now."""

@final
class Breaker:
    """A circuit breaker shared by every step that holds it. Private: ``batten.CircuitBreaker``
    wraps it. ``recovery_timeout`` in seconds; a value out of range (a count beyond 32 bits, a
    timeout that is negative, not finite or beyond 1.8e19) raises ``WorkflowDefinitionError``."""

    def __new__(
        cls,
        key: str,
        failure_threshold: int,
        recovery_timeout: float,
        half_open_max_calls: int,
        wait: bool = False,
    ) -> Self: ...
    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""

def _shutdown() -> None:
    """Stops batten's timer thread and joins its worker threads, except those still running an
    abandoned call; ``batten`` registers it with ``atexit``."""

def _abandoned_calls() -> tuple[int, int]:
    """``(running, total)``: sync calls abandoned at a timeout (or by a stopped run) that are
    still running in this process, and those abandoned since it started."""
