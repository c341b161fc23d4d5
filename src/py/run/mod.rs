//! One workflow run: drives the engine's scheduler from whichever thread just finished a step.
//!
//! Async steps become `asyncio.Task`s created on the loop thread, each running a `Driver` that
//! reports the attempt's outcome from inside the Task's last step on that same thread, so no step
//! pays a thread hop; a chain of async steps may share one Task (see `callback::Driver`). Sync
//! steps run on the worker pool; a worker that finishes a sync step runs the next ready sync step
//! itself (NOTE: W1 measures that chain at ~1–2 µs a step; a hop per step would cost 30–70 µs,
//! DESIGN §3), and only hands async steps and the run's end to the loop.
//!
//! Locking: `RunState` sits behind one mutex that is only taken for bookkeeping, never while a
//! user callable runs. A thread that finds it contended waits detached from Python, so a thread
//! holding the lock can always get the GIL back (no GIL/lock inversion).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::engine::retry::{classify, should_retry, Retryability};
use crate::engine::scheduler::{Dispatch, Scheduler, StepState};
use crate::engine::state::StateViews;
use crate::py::classify::{cancelled_error, error_kind, facts, ErrorKind};
use crate::py::context::{owned_copy, Val, WorkflowContext};
use crate::py::errors::StepTimeoutError;
use crate::py::journal::Journal;
use crate::py::plan::PlanInner;
use crate::py::results::{status_member, Nested, StepResult};
use crate::py::threads::timer;

mod callback;
mod dispatch;
mod durable;
mod events;
pub mod job;
mod outcome;
mod record;
mod start;
mod timers;
mod traffic;

use callback::{Callback, CbKind, Driver};
use events::Event;
pub use start::Run;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Where {
    /// The event loop's thread.
    Loop,
    /// A pool worker (may run the next sync step inline).
    Worker,
    /// The timer thread.
    Timer,
}

enum Timer {
    Loop(Py<PyAny>),
    Native(tokio::task::AbortHandle),
}

impl Timer {
    fn cancel(self, py: Python<'_>) {
        match self {
            Timer::Loop(h) => {
                let _ = h.call_method0(py, intern!(py, "cancel"));
            }
            Timer::Native(h) => h.abort(),
        }
    }
}

/// The exception that ended an attempt, as the step's result reports it.
struct StepError {
    type_name: String,
    message: String,
    exception: Py<PyAny>,
    kind: ErrorKind,
    /// Python's `traceback.format_exception` text of a failure (the tail, at most
    /// `TRACEBACK_MAX_BYTES`); computed before the run's lock, only for `ErrorKind::Failure`.
    traceback: Option<String>,
}

/// The most traceback text kept for a failed attempt, in bytes (the tail is kept: the frame
/// that raised and the exception line are at the end).
const TRACEBACK_MAX_BYTES: usize = 8 * 1024;

static FORMAT_EXCEPTION: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// `traceback.format_exception(exc)` joined, its last `TRACEBACK_MAX_BYTES` bytes (cut at a
/// char boundary, prefixed with `"...\n"` when cut); `None` if formatting fails.
fn traceback_text(exc: &Bound<'_, PyAny>) -> Option<String> {
    let py = exc.py();
    let format = FORMAT_EXCEPTION
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py
                .import("traceback")?
                .getattr("format_exception")?
                .unbind())
        })
        .ok()?;
    let lines = format.bind(py).call1((exc,)).ok()?;
    let text = pyo3::types::PyString::new(py, "")
        .call_method1(intern!(py, "join"), (lines,))
        .ok()?
        .extract::<String>()
        .ok()?;
    Some(tail(text, TRACEBACK_MAX_BYTES))
}

/// The last `max` bytes of `text` (at a char boundary), prefixed with `"...\n"` when cut.
fn tail(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...\n{}", &text[start..])
}

impl StepError {
    fn from_exc(exc: &Bound<'_, PyAny>) -> Self {
        let type_name = exc
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".into());
        let message = exc.str().map(|s| s.to_string()).unwrap_or_default();
        StepError {
            type_name,
            message,
            exception: exc.clone().unbind(),
            kind: error_kind(exc),
            traceback: None,
        }
    }

    /// As `from_exc`, with the traceback text of a failure (not of a timeout, cancellation,
    /// open circuit or pending approval). Calls Python: never under the run's lock.
    fn from_failure(exc: &Bound<'_, PyAny>) -> Self {
        let mut err = Self::from_exc(exc);
        if err.kind == ErrorKind::Failure {
            err.traceback = traceback_text(exc);
        }
        err
    }
}

#[derive(Default)]
struct StepRec {
    first_start: Option<Instant>,
    end: Option<Instant>,
    output: Option<Val>,
    /// Boxed: most steps never fail, and inline it made every step's record ~80 bytes larger
    /// (0.8 MB of a 10,000-step run, benchmark M).
    error: Option<Box<StepError>>,
    timer: Option<Timer>,
    /// The live async attempt passed its deadline and its task was cancelled.
    timing_out: bool,
    /// The live sync attempt's call while a worker runs it, for its deadline to abandon.
    call: Option<crate::py::threads::pool::CallId>,
    abandoned: bool,
    /// An attempt's worker process was killed at its timeout (a process-isolated step).
    killed: bool,
    cancel_ignored: bool,
    /// A composite step's nested results and metadata (see `results::Nested`).
    children: Option<Py<PyList>>,
    extra: Option<Py<PyDict>>,
    attempts: Option<u32>,
}

enum Outcome {
    Value(Py<PyAny>),
    Skipped,
    /// The error, and whether it is the step's own timeout.
    Error(PyErr, bool),
}

#[derive(Clone, Copy)]
enum Stop {
    Cancelled,
    TimedOut(f64),
}

/// The nested parts of a composite step's outcome (see `results::Nested`).
struct NestedParts {
    children: Option<Py<PyList>>,
    metadata: Option<Py<PyDict>>,
    attempts: Option<u32>,
}

fn nested_parts(py: Python<'_>, n: &Nested) -> NestedParts {
    NestedParts {
        children: n.children.as_ref().map(|c| c.clone_ref(py)),
        metadata: n.metadata.as_ref().map(|m| m.clone_ref(py)),
        attempts: n.attempts,
    }
}

/// An attempt, as the maps of in-flight work key it.
type AttemptKey = (usize, u32);

/// The asyncio tasks of a run's async attempts.
#[derive(Default)]
struct Tasks {
    /// Tasks whose outcome has not been reported yet, including cancelled ones still unwinding
    /// and abandoned attempts that ignored their cancellation.
    live: HashMap<AttemptKey, Py<PyAny>>,
    /// While an attempt's `Driver` reports: its Task, offered to the next async attempt.
    offer: Option<callback::Offer>,
    /// The loop's queue of callbacks ready to run (asyncio's `_ready`), once looked up;
    /// `Some(None)`: the loop has none (see `RunInner::nothing_queued`).
    ready: Option<Option<Py<PyAny>>>,
}

/// Attempts held back by rate limits and circuit breakers (see `traffic`).
#[derive(Default)]
struct Traffic {
    /// Dispatched attempts waiting for a rate limit or an open circuit.
    parked: Vec<Dispatch>,
    /// The rate limiters each started attempt holds a slot of, until it ends.
    held: HashMap<AttemptKey, Vec<Arc<crate::engine::limits::RateLimiter>>>,
    /// When the run's wake-up timer for parked attempts fires.
    wake_at: Option<Instant>,
    /// With an event subscriber: when each parked attempt was first held back, and by what
    /// (`(kind, key)`), until it starts (its "waited" event).
    parked_since: HashMap<AttemptKey, (Instant, &'static str, String)>,
}

/// Retries: those due now, the jitter's randomness and the run's budget.
struct Retries {
    /// Retries due now (zero backoff), dispatched by the next pump before new steps.
    immediate: Vec<Dispatch>,
    rng: fastrand::Rng,
    /// Retries started in this run, against the plan's `max_total_retries` budget.
    used: u32,
}

/// The run's deadline timer and when it ended.
#[derive(Default)]
struct Timing {
    /// The loop's `call_later` handle of the run's `timeout`.
    run_timer: Option<Py<PyAny>>,
    ended: Option<Instant>,
}

/// How the run ends: stopped early, or finished, and who waits for its tasks to unwind.
#[derive(Default)]
struct Ending {
    /// Every step is terminal and no task is left; the done-future is (being) resolved.
    finished: bool,
    stop: Option<Stop>,
    /// Futures from `Run.cancel`, resolved when the cancelled tasks have unwound.
    cancel_waiters: Vec<Py<PyAny>>,
}

struct RunState {
    sched: Scheduler,
    views: StateViews<Val>,
    recs: Vec<StepRec>,
    tasks: Tasks,
    traffic: Traffic,
    retry: Retries,
    timing: Timing,
    end: Ending,
    /// Events recorded under this lock, in the order they happened, waiting for `flush`.
    events: Vec<Event>,
}

impl RunState {
    fn take_finish(&mut self) -> bool {
        if !self.end.finished && self.sched.is_done() && self.tasks.live.is_empty() {
            self.end.finished = true;
            self.timing.ended = Some(Instant::now());
            true
        } else {
            false
        }
    }
}

pub struct RunInner {
    plan: Arc<PlanInner>,
    run_id: Arc<str>,
    workflow_id: Arc<str>,
    user_context: Py<PyAny>,
    metadata: Py<PyAny>,
    event_loop: Py<PyAny>,
    pycontext: Py<PyAny>,
    done: Py<PyAny>,
    started: Instant,
    run_timeout: Option<f64>,
    /// Called with each engine event (see `Event`); `None`: nobody listens, nothing is built.
    on_event: Option<Py<PyAny>>,
    /// Held while events are handed to `on_event`, so they leave in recorded order whichever
    /// thread flushes; `flushing` names the holder, so a flush from inside the subscriber
    /// (re-entrant) leaves its events to the flush already running.
    emit_lock: Mutex<()>,
    flushing: Mutex<Option<std::thread::ThreadId>>,
    /// A durable run's checkpoint writer (see `journal`); `None`: nothing is stored.
    journal: Option<Journal>,
    /// Set once this run was stopped because its journal's lease was lost (see `pump`).
    lease_halted: std::sync::atomic::AtomicBool,
    /// The loop thread's running loop is hidden for the sync steps it calls (see
    /// `RunInner::hide_loop`); only read and written on the loop thread.
    loop_hidden: std::sync::atomic::AtomicBool,
    /// How async attempts become tasks, decided at the first one (see `RunInner::task_class`):
    /// `Some(asyncio.Task)` to construct them directly, `None` through `loop.create_task`.
    task_class: PyOnceLock<Option<Py<PyAny>>>,
    /// The dict outputs' keys already made into `Arc<str>` (see `KeyCache`).
    keys: KeyCache,
    st: Mutex<RunState>,
}

/// A random (version 4) UUID's 32 lowercase hex digits.
/// NOTE: written digit by digit: `format!("{hi:016x}{lo:016x}")` cost ~1,700 instructions a run.
fn uuid4_hex(rng: &mut fastrand::Rng) -> Arc<str> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hi = (rng.u64(..) & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (rng.u64(..) & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let word = if i < 16 { hi } else { lo };
        let shift = 60 - 4 * (i % 16);
        *byte = DIGITS[((word >> shift) & 0xf) as usize];
    }
    Arc::from(std::str::from_utf8(&out).unwrap_or_default())
}

/// The str keys of the dict outputs seen in a run, each with the `Arc<str>` made for it, so a key
/// object seen before (a step's dict literal hands the same constant every call) is not copied
/// again. Matched by object identity (the `Py` held keeps the object, and so its address, alive).
/// At most `KeyCache::MAX` keys; taken with `try_lock`, so a contended call just copies.
/// NOTE: on W1 (1,000 chained steps returning `{"counter": n}`) the copy was a malloc, a memcpy
/// and a free per step.
#[derive(Default)]
pub(super) struct KeyCache(Mutex<Vec<(Py<PyString>, Arc<str>)>>);

impl KeyCache {
    const MAX: usize = 16;

    fn key(&self, k: &Bound<'_, PyString>) -> Option<Arc<str>> {
        let mut cache = self.0.try_lock();
        if let Some(cache) = &cache {
            if let Some((_, key)) = cache.iter().find(|(o, _)| o.as_ptr() == k.as_ptr()) {
                return Some(Arc::clone(key));
            }
        }
        let key: Arc<str> = Arc::from(k.to_str().ok()?);
        if let Some(cache) = &mut cache {
            if cache.len() < Self::MAX {
                cache.push((k.clone().unbind(), Arc::clone(&key)));
            }
        }
        Some(key)
    }
}

/// The `(key, value)` items of a dict output with str keys, to merge into the variables.
fn dict_delta(v: &Bound<'_, PyAny>, keys: &KeyCache) -> crate::engine::state::Delta<Val> {
    let Ok(d) = v.cast::<PyDict>() else {
        return crate::engine::state::Delta::new();
    };
    d.iter()
        .filter_map(|(k, v)| {
            let k = keys.key(k.cast::<PyString>().ok()?)?;
            Some((k, Arc::new(v.unbind())))
        })
        .collect()
}

/// Cancels a step's task and watches for its end (see `RunInner::task_unwound`).
fn cancel_and_watch(run: &Arc<RunInner>, py: Python<'_>, task: &Bound<'_, PyAny>, d: Dispatch) {
    let _ = task.call_method0(intern!(py, "cancel"));
    let watch = Callback::new(run, CbKind::Unwound(d));
    let _ = task.call_method1(intern!(py, "add_done_callback"), (watch,));
}

fn is_coroutine(v: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check on a valid, attached object pointer.
    unsafe { pyo3::ffi::PyCoro_CheckExact(v.as_ptr()) != 0 }
}

impl RunInner {
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, RunState> {
        match self.st.try_lock() {
            Some(g) => g,
            None => py.detach(|| self.st.lock()),
        }
    }

    fn context_for(&self, py: Python<'_>, step: usize) -> WorkflowContext {
        let view = self.lock(py).views.view_for(&self.plan.graph, step);
        self.step_context(py, view, step)
    }

    fn step_context(
        &self,
        py: Python<'_>,
        view: crate::engine::state::View<Val>,
        step: usize,
    ) -> WorkflowContext {
        WorkflowContext {
            workflow_id: Arc::clone(&self.workflow_id),
            user_context: self.user_context.clone_ref(py),
            metadata: self.metadata.clone_ref(py),
            vars: view.vars,
            results: view.results,
            run_id: Some(Arc::clone(&self.run_id)),
            step_id: Some(Arc::clone(&self.plan.steps[step].id)),
            scope: self.journal.as_ref().map(|j| Arc::clone(&j.scope)),
            owns_values: false,
        }
    }
}
