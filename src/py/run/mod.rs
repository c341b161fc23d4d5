//! One workflow run: drives the engine's scheduler from whichever thread just finished a step.
//!
//! Async steps become `asyncio.Task`s created on the loop thread, and their completion arrives by
//! `add_done_callback` on that same thread, so no step pays a thread hop. Sync steps run on the
//! worker pool; a worker that finishes a sync step runs the next ready sync step itself
//! (NOTE: W1 measures that chain at ~1–2 µs a step; a hop per step would cost 30–70 µs,
//! DESIGN §3), and only hands async steps and the run's end to the loop.
//!
//! Locking: `RunState` sits behind one mutex that is only taken for bookkeeping, never while a
//! user callable runs. A thread that finds it contended waits detached from Python, so a thread
//! holding the lock can always get the GIL back (no GIL/lock inversion).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::engine::retry::{classify, should_retry, Retryability};
use crate::engine::scheduler::{Dispatch, RunOutcome, Scheduler, StepState};
use crate::engine::state::StateViews;
use crate::py::classify::{cancelled_error, facts};
use crate::py::context::{owned_copy, Val, WorkflowContext};
use crate::py::errors::StepTimeoutError;
use crate::py::journal::Journal;
use crate::py::plan::PlanInner;
use crate::py::pool::{self, Job};
use crate::py::results::{status_member, Nested, StepResult};

mod callback;
mod durable;
mod events;
mod outcome;
mod record;
mod timers;
mod traffic;

pub use callback::Run;
use callback::{Callback, CbKind};
use events::Event;

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

struct StepError {
    type_name: String,
    message: String,
    exception: Py<PyAny>,
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
        }
    }
}

#[derive(Default)]
struct StepRec {
    first_start: Option<Instant>,
    end: Option<Instant>,
    output: Option<Val>,
    error: Option<StepError>,
    timer: Option<Timer>,
    /// The live async attempt passed its deadline and its task was cancelled.
    timing_out: bool,
    abandoned: bool,
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

struct RunState {
    sched: Scheduler,
    views: StateViews<Val>,
    recs: Vec<StepRec>,
    /// Retries due now (zero backoff), dispatched by the next pump before new steps.
    immediate: Vec<Dispatch>,
    /// Tasks whose outcome has not been reported yet, by `(step, attempt)`, including cancelled
    /// ones still unwinding and abandoned attempts that ignored their cancellation.
    tasks: HashMap<(usize, u32), Py<PyAny>>,
    /// The step's own awaitable per task, until `drive` reports: a task cancelled before it
    /// started never awaits it, so the engine closes it ("coroutine was never awaited").
    awaitables: HashMap<(usize, u32), Py<PyAny>>,
    finished: bool,
    stop: Option<Stop>,
    cancel_waiters: Vec<Py<PyAny>>,
    run_timer: Option<Py<PyAny>>,
    rng: fastrand::Rng,
    ended: Option<Instant>,
    /// Retries started in this run, against the plan's `max_total_retries` budget.
    retries_used: u32,
    /// Events recorded under this lock, in the order they happened, waiting for `flush`.
    events: Vec<Event>,
    /// Dispatched attempts waiting for a rate limit or an open circuit (see `traffic`).
    parked: Vec<Dispatch>,
    /// The rate limiters each started attempt holds a slot of, until it ends.
    held: HashMap<(usize, u32), Vec<Arc<crate::engine::limits::RateLimiter>>>,
    /// When the run's wake-up timer for parked attempts fires.
    wake_at: Option<Instant>,
}

impl RunState {
    fn take_finish(&mut self) -> bool {
        if !self.finished && self.sched.is_done() && self.tasks.is_empty() {
            self.finished = true;
            self.ended = Some(Instant::now());
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
    st: Mutex<RunState>,
}

fn uuid4_hex(rng: &mut fastrand::Rng) -> String {
    let hi = (rng.u64(..) & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (rng.u64(..) & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!("{hi:016x}{lo:016x}")
}

/// The `(key, value)` items of a dict output with str keys, to merge into the variables.
fn dict_delta(v: &Bound<'_, PyAny>) -> Vec<(Arc<str>, Val)> {
    let Ok(d) = v.cast::<PyDict>() else {
        return Vec::new();
    };
    d.iter()
        .filter_map(|(k, v)| {
            let k = k
                .cast::<pyo3::types::PyString>()
                .ok()?
                .to_str()
                .ok()
                .map(Arc::from)?;
            Some((k, Arc::new(v.unbind())))
        })
        .collect()
}

static DRIVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        py: Python<'_>,
        plan: Arc<PlanInner>,
        ctx: &WorkflowContext,
        event_loop: Bound<'_, PyAny>,
        pycontext: Bound<'_, PyAny>,
        done: Bound<'_, PyAny>,
        timeout: Option<f64>,
        max_concurrency: Option<usize>,
        on_event: Option<Py<PyAny>>,
        journal: Option<Journal>,
    ) -> PyResult<Run> {
        let limit = match (plan.max_parallel, max_concurrency) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let n = plan.steps.len();
        let mut rng = fastrand::Rng::new();
        // A durable run, nested runs included, has its store id: its steps' idempotency keys
        // are `{run_id}:{path}`, the same after a resume.
        let run_id = match &journal {
            Some(j) => Arc::clone(&j.shared.run_id),
            None => Arc::from(uuid4_hex(&mut rng)),
        };
        let inner = Arc::new(RunInner {
            run_id,
            workflow_id: Arc::clone(&ctx.workflow_id),
            user_context: ctx.user_context.clone_ref(py),
            metadata: ctx.metadata.clone_ref(py),
            event_loop: event_loop.unbind(),
            pycontext: pycontext.unbind(),
            done: done.unbind(),
            started: Instant::now(),
            run_timeout: timeout,
            on_event,
            emit_lock: Mutex::new(()),
            flushing: Mutex::new(None),
            journal,
            st: Mutex::new(RunState {
                sched: Scheduler::with_policy(Arc::clone(&plan.graph), limit, plan.policy),
                // The caller's context owns its values (it reports them to the GC); the run
                // takes references of its own. A nested run (inside a composite step) starts
                // from that step's context, results included.
                views: StateViews::with_results(
                    n,
                    owned_copy(py, &ctx.vars),
                    owned_copy(py, &ctx.results),
                ),
                recs: (0..n).map(|_| StepRec::default()).collect(),
                immediate: Vec::new(),
                tasks: HashMap::new(),
                awaitables: HashMap::new(),
                finished: false,
                stop: None,
                cancel_waiters: Vec::new(),
                run_timer: None,
                rng,
                ended: None,
                retries_used: 0,
                events: Vec::new(),
                parked: Vec::new(),
                held: HashMap::new(),
                wake_at: None,
            }),
            plan,
        });
        if let Some(t) = timeout {
            let cb = Callback::new(&inner, CbKind::RunDeadline);
            let h = inner
                .event_loop
                .call_method1(py, intern!(py, "call_later"), (t, cb))?;
            inner.lock(py).run_timer = Some(h);
        }
        inner.restore(py)?;
        inner.pump(py, Where::Loop);
        Ok(Run { inner })
    }

    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, RunState> {
        match self.st.try_lock() {
            Some(g) => g,
            None => py.detach(|| self.st.lock()),
        }
    }

    /// Dispatches every ready step (admitted by its rate limits and circuit breakers, if
    /// any); returns one sync step for a worker to run inline.
    fn pump(self: &Arc<Self>, py: Python<'_>, here: Where) -> Option<Dispatch> {
        let mut inline = None;
        loop {
            let (batch, refused, finish) = {
                let mut st = self.lock(py);
                let st = &mut *st;
                let mut batch = std::mem::take(&mut st.immediate);
                if !st.parked.is_empty() {
                    batch.append(&mut st.parked);
                }
                while let Some(d) = st.sched.next_ready() {
                    batch.push(d);
                }
                let now = Instant::now();
                let mut refused = Vec::new();
                if batch
                    .iter()
                    .any(|d| !self.plan.steps[d.step].controls.is_empty())
                {
                    let mut admitted = Vec::with_capacity(batch.len());
                    for d in batch {
                        if !st.sched.is_live(d) {
                            continue;
                        }
                        match self.admit(py, st, d, now) {
                            traffic::Admit::Go => admitted.push(d),
                            traffic::Admit::Park(until) => self.park(st, d, until),
                            traffic::Admit::Refuse(msg) => refused.push((d, msg)),
                        }
                    }
                    batch = admitted;
                }
                for d in &batch {
                    st.recs[d.step].first_start.get_or_insert(now);
                }
                if self.on_event.is_some() {
                    for d in &batch {
                        let view = st.views.view_for(&self.plan.graph, d.step);
                        let ctx = self.step_context(py, view, d.step);
                        st.events.push(Event {
                            kind: "started",
                            step: d.step,
                            attempt: d.attempt,
                            payload: Bound::new(py, ctx)
                                .map_or_else(|_| py.None(), |c| c.into_any().unbind()),
                        });
                    }
                }
                if let Some(j) = &self.journal {
                    let events = batch
                        .iter()
                        .map(|d| j.event(&self.plan.steps[d.step].id, "running", d.attempt))
                        .collect();
                    j.write_lazy(events);
                }
                let finish = batch.is_empty() && refused.is_empty() && st.take_finish();
                (batch, refused, finish)
            };
            self.flush(py);
            let any_refused = !refused.is_empty();
            for (d, msg) in refused {
                let err = crate::py::errors::CircuitOpenError::new_err(msg);
                self.record(py, d, Outcome::Error(err, false), here);
            }
            if batch.is_empty() {
                if finish {
                    self.signal_finish(py, here);
                    return inline;
                }
                if any_refused {
                    continue; // the refusals may have readied, blocked or ended steps
                }
                return inline;
            }
            for d in batch {
                if self.plan.steps[d.step].is_async {
                    if here == Where::Loop {
                        if let Some(outcome) = self.start_async(py, d) {
                            self.record(py, d, outcome, here);
                        }
                    } else {
                        self.call_soon_threadsafe(py, CbKind::Start(d));
                    }
                } else if here == Where::Worker && inline.is_none() {
                    inline = Some(d);
                } else {
                    pool::submit(Job {
                        run: Arc::clone(self),
                        dispatch: d,
                    });
                }
            }
        }
    }

    fn call_soon_threadsafe(self: &Arc<Self>, py: Python<'_>, kind: CbKind) {
        let cb = Callback::new(self, kind);
        if let Err(e) = self
            .event_loop
            .call_method1(py, intern!(py, "call_soon_threadsafe"), (cb,))
        {
            tracing::error!(run_id = %self.run_id, "batten: cannot reach the event loop: {e}");
        }
    }

    fn signal_finish(self: &Arc<Self>, py: Python<'_>, here: Where) {
        if here == Where::Loop {
            self.complete(py);
        } else {
            self.call_soon_threadsafe(py, CbKind::Finish);
        }
    }

    /// On the loop thread, once every step is terminal and no task is left: resolve the futures.
    fn complete(&self, py: Python<'_>) {
        // Every event is out (and every checkpoint written) before the run's end is announced.
        self.flush(py);
        if let Some(j) = &self.journal {
            let _ = j.flush_pending(py);
        }
        self.release_all(py);
        let (timer, waiters, outcome) = {
            let mut st = self.lock(py);
            let outcome = st.sched.outcome();
            (
                st.run_timer.take(),
                std::mem::take(&mut st.cancel_waiters),
                outcome,
            )
        };
        tracing::debug!(
            "workflow '{}' run {} finished: {:?} in {:.3} ms",
            self.workflow_id,
            self.run_id,
            outcome,
            self.started.elapsed().as_secs_f64() * 1000.0
        );
        if let Some(t) = timer {
            Timer::Loop(t).cancel(py);
        }
        for fut in std::iter::once(self.done.clone_ref(py)).chain(waiters) {
            let fut = fut.bind(py);
            if !fut
                .call_method0(intern!(py, "done"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
            {
                let _ = fut.call_method1(intern!(py, "set_result"), (py.None(),));
            }
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

    /// Checks the step's conditions and calls it. `Ok(None)`: a condition was false.
    fn invoke<'py>(&self, py: Python<'py>, step: usize) -> PyResult<Option<Bound<'py, PyAny>>> {
        let spec = &self.plan.steps[step];
        let ctx = if spec.needs_context() {
            Some(Bound::new(py, self.context_for(py, step))?)
        } else {
            None
        };
        for cond in &spec.conditions {
            if !cond.bind(py).call1((ctx.as_ref(),))?.is_truthy()? {
                return Ok(None);
            }
        }
        let f = spec.invoke.bind(py);
        let kwargs = match (&ctx, spec.wants_ctx) {
            (Some(c), true) => {
                let kw = PyDict::new(py);
                kw.set_item(intern!(py, "context"), c)?;
                Some(kw)
            }
            _ => None,
        };
        // Calling an `async def` only builds the coroutine; its task runs it in a copy of the
        // caller's contextvars (see `start_async`). A fan-out item is the one positional arg.
        let kw = kwargs.as_ref();
        let out = match (&spec.arg, spec.is_async) {
            (Some(a), true) => f.call((a,), kw)?,
            (None, true) => f.call((), kw)?,
            (arg, false) => {
                let pyctx = self.pycontext.bind(py).call_method0(intern!(py, "copy"))?;
                match arg {
                    Some(a) => pyctx.call_method(intern!(py, "run"), (f, a), kw)?,
                    None => pyctx.call_method(intern!(py, "run"), (f,), kw)?,
                }
            }
        };
        Ok(Some(out))
    }

    /// Starts an async step's task on the loop thread; `Some` if it settled without a task.
    fn start_async(self: &Arc<Self>, py: Python<'_>, d: Dispatch) -> Option<Outcome> {
        if !self.lock(py).sched.is_live(d) {
            return None;
        }
        let awaitable = match self.invoke(py, d.step) {
            Ok(Some(a)) => a,
            Ok(None) => return Some(Outcome::Skipped),
            Err(e) => return Some(Outcome::Error(e, false)),
        };
        match self.launch(py, d, &awaitable) {
            Ok(true) => None,
            Ok(false) => Some(Outcome::Value(awaitable.unbind())),
            Err(e) => Some(Outcome::Error(e, false)),
        }
    }

    /// Runs `awaitable` as a task (inside `batten._drive.drive`) with its deadline.
    /// `Ok(false)`: it is not awaitable (a sync callable mistaken for async), so it is the output.
    fn launch(
        self: &Arc<Self>,
        py: Python<'_>,
        d: Dispatch,
        awaitable: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if !is_coroutine(awaitable) && !awaitable.hasattr(intern!(py, "__await__"))? {
            return Ok(false);
        }
        let lp = self.event_loop.bind(py);
        let drive = DRIVE.get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("batten._drive")?.getattr("drive")?.unbind())
        })?;
        let coro = drive
            .bind(py)
            .call1((awaitable, Callback::new(self, CbKind::Done(d))))?;
        let kw = PyDict::new(py);
        kw.set_item(
            intern!(py, "context"),
            self.pycontext.bind(py).call_method0(intern!(py, "copy"))?,
        )?;
        let task = lp.call_method(intern!(py, "create_task"), (coro,), Some(&kw))?;
        let timer = match self.plan.steps[d.step].timeout {
            Some(t) => Some(lp.call_method1(
                intern!(py, "call_later"),
                (t.as_secs_f64(), Callback::new(self, CbKind::Deadline(d))),
            )?),
            None => None,
        };
        let mut st = self.lock(py);
        st.tasks.insert((d.step, d.attempt), task.unbind());
        st.awaitables
            .insert((d.step, d.attempt), awaitable.clone().unbind());
        let rec = &mut st.recs[d.step];
        rec.timer = timer.map(|t| Timer::Loop(t.unbind()));
        rec.timing_out = false;
        Ok(true)
    }

    /// A pool worker runs `d` and then, inline, each sync step it makes ready.
    pub fn run_sync_job(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        let mut next = Some(d);
        while let Some(d) = next.take() {
            if !self.lock(py).sched.is_live(d) {
                break;
            }
            if let Some(t) = self.plan.steps[d.step].timeout {
                let run = Arc::clone(self);
                let armed = pool::after(t, move || Python::attach(|py| run.sync_deadline(py, d)));
                if let Some(h) = armed {
                    self.lock(py).recs[d.step].timer = Some(Timer::Native(h));
                }
            }
            let outcome = match self.invoke(py, d.step) {
                Ok(Some(v)) if is_coroutine(&v) => {
                    let _ = v.call_method0(intern!(py, "close"));
                    Outcome::Error(
                        PyTypeError::new_err(format!(
                            "step '{}': a sync callable returned a coroutine; declare it `async def` \
                             so batten runs it as an async step",
                            self.plan.steps[d.step].id
                        )),
                        false,
                    )
                }
                Ok(Some(v)) => Outcome::Value(v.unbind()),
                Ok(None) => Outcome::Skipped,
                Err(e) => Outcome::Error(e, false),
            };
            self.record(py, d, outcome, Where::Worker);
            next = self.pump(py, Where::Worker);
        }
    }

    /// The loop thread: `drive` reported an async attempt's outcome
    /// (`args` = `(ok, value_or_exception, cancelled)`).
    fn task_done(self: &Arc<Self>, py: Python<'_>, d: Dispatch, args: &Bound<'_, PyTuple>) {
        let (live, timing_out) = {
            let mut st = self.lock(py);
            st.tasks.remove(&(d.step, d.attempt));
            st.awaitables.remove(&(d.step, d.attempt));
            (st.sched.is_live(d), st.recs[d.step].timing_out)
        };
        if live {
            let (ok, value, cancelled) = match args.extract::<(bool, Bound<'_, PyAny>, bool)>() {
                Ok(t) => t,
                Err(e) => (false, e.into_value(py).into_bound(py).into_any(), false),
            };
            let outcome = if timing_out {
                if ok {
                    self.lock(py).recs[d.step].cancel_ignored = true;
                }
                let tail = if ok {
                    "the step ignored cancellation and finished late"
                } else {
                    "its task was cancelled"
                };
                Outcome::Error(self.timeout_error(d, tail), true)
            } else if ok {
                Outcome::Value(value.unbind())
            } else if cancelled {
                let msg = format!("step '{}' was cancelled", self.plan.steps[d.step].id);
                let exc = cancelled_error(py)
                    .and_then(|c| c.call1((msg,)))
                    .unwrap_or_else(|e| e.into_value(py).into_bound(py).into_any());
                Outcome::Error(PyErr::from_value(exc), false)
            } else {
                Outcome::Error(PyErr::from_value(value), false)
            };
            self.record(py, d, outcome, Where::Loop);
        }
        self.pump(py, Where::Loop);
    }

    /// The loop thread: a task cancelled by a deadline or by stopping the run is done. If it was
    /// cancelled before it started, `drive` never ran and this is the only report.
    fn task_unwound(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        let (unreported, live, timing_out) = {
            let mut st = self.lock(py);
            let unreported = st.tasks.remove(&(d.step, d.attempt)).is_some();
            if let Some(a) = st.awaitables.remove(&(d.step, d.attempt)) {
                if unreported && is_coroutine(a.bind(py)) {
                    let _ = a.call_method0(py, intern!(py, "close"));
                }
            }
            (unreported, st.sched.is_live(d), st.recs[d.step].timing_out)
        };
        if unreported && live && timing_out {
            let err = self.timeout_error(d, "its task was cancelled before it started");
            self.record(py, d, Outcome::Error(err, true), Where::Loop);
        }
        self.pump(py, Where::Loop);
    }

    /// The loop thread: cancel the run, or end it at its deadline.
    fn stop(self: &Arc<Self>, py: Python<'_>, why: Stop) {
        let (to, err) = match why {
            Stop::Cancelled => (
                StepState::Cancelled,
                cancelled_error(py)
                    .and_then(|c| c.call1(("the workflow run was cancelled",)))
                    .map(|e| e.unbind()),
            ),
            Stop::TimedOut(t) => (
                StepState::Timeout,
                Ok(StepTimeoutError::new_err(format!(
                    "the workflow timed out after {t}s while this step was running"
                ))
                .into_value(py)
                .into_any()),
            ),
        };
        let err = match err {
            Ok(e) => e,
            Err(e) => e.into_value(py).into_any(),
        };
        let mut tasks = Vec::new();
        let mut timers = Vec::new();
        let mut events = Vec::new();
        {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            if st.finished || st.stop.is_some() {
                return;
            }
            st.stop = Some(why);
            st.immediate.clear();
            let now = Instant::now();
            tasks.extend(
                st.tasks
                    .iter()
                    .map(|(&(step, attempt), t)| (Dispatch { step, attempt }, t.clone_ref(py))),
            );
            let before = st.sched.completion_order().len();
            for step in st.sched.stop(to, matches!(why, Stop::TimedOut(_))) {
                let rec = &mut st.recs[step];
                rec.end = Some(now);
                timers.extend(rec.timer.take());
                rec.error = Some(StepError::from_exc(err.bind(py)));
                if !self.plan.steps[step].is_async && matches!(why, Stop::TimedOut(_)) {
                    rec.abandoned = true;
                }
            }
            let ended = st.sched.completion_order()[before..].to_vec();
            if let Some(j) = &self.journal {
                j.write_lazy(self.journal_terminal(st, &ended));
            }
            if self.on_event.is_some() {
                events.extend(
                    ended
                        .into_iter()
                        .filter_map(|s| self.terminal_event(py, st, s)),
                );
            }
            st.events.append(&mut events);
        }
        self.flush(py);
        for t in timers {
            t.cancel(py);
        }
        for (d, t) in tasks {
            cancel_and_watch(self, py, t.bind(py), d);
        }
        self.release_all(py);
        self.pump(py, Where::Loop);
    }
}
