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
use crate::py::plan::PlanInner;
use crate::py::pool::{self, Job};
use crate::py::results::{status_member, Nested, StepResult};

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

/// One engine event for the run's `on_event` subscriber: `(kind, step, attempt, payload)`.
/// `payload` is the step's context for "started", `(delay_seconds, exception)` for
/// "retrying", and the `StepResult` for the terminal kinds.
struct Event {
    kind: &'static str,
    step: usize,
    attempt: u32,
    payload: Py<PyAny>,
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
    ) -> PyResult<Run> {
        let limit = match (plan.max_parallel, max_concurrency) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let n = plan.steps.len();
        let mut rng = fastrand::Rng::new();
        let inner = Arc::new(RunInner {
            run_id: Arc::from(uuid4_hex(&mut rng)),
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
        inner.pump(py, Where::Loop);
        Ok(Run { inner })
    }

    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, RunState> {
        match self.st.try_lock() {
            Some(g) => g,
            None => py.detach(|| self.st.lock()),
        }
    }

    /// Dispatches every ready step; returns one sync step for a worker to run inline.
    fn pump(self: &Arc<Self>, py: Python<'_>, here: Where) -> Option<Dispatch> {
        let mut inline = None;
        loop {
            let (batch, finish) = {
                let mut st = self.lock(py);
                let st = &mut *st;
                let mut batch = std::mem::take(&mut st.immediate);
                while let Some(d) = st.sched.next_ready() {
                    batch.push(d);
                }
                let now = Instant::now();
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
                let finish = batch.is_empty() && st.take_finish();
                (batch, finish)
            };
            self.flush(py);
            if batch.is_empty() {
                if finish {
                    self.signal_finish(py, here);
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
            tracing::error!(run_id = %self.run_id, "weft: cannot reach the event loop: {e}");
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
        // Every event is out before the run's end is announced.
        self.flush(py);
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

    /// Runs `awaitable` as a task (inside `weft._drive.drive`) with its deadline.
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
            Ok(py.import("weft._drive")?.getattr("drive")?.unbind())
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
                             so weft runs it as an async step",
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

    /// Records an attempt's outcome: success, skip, retry (now or after a backoff) or failure.
    fn record(self: &Arc<Self>, py: Python<'_>, d: Dispatch, outcome: Outcome, here: Where) {
        enum Prep {
            Value(Val, Vec<(Arc<str>, Val)>),
            Skip,
            Error(StepError, Retryability, bool),
        }
        let spec = &self.plan.steps[d.step];
        let mut nested = None;
        let prep = match outcome {
            Outcome::Value(v) => match v.bind(py).cast::<Nested>() {
                Ok(n) => {
                    let n = n.get();
                    nested = Some(nested_parts(py, n));
                    if n.skipped {
                        Prep::Skip
                    } else {
                        let delta = match &n.delta {
                            Some(delta) => dict_delta(delta.bind(py).as_any()),
                            None => dict_delta(n.output.bind(py)),
                        };
                        Prep::Value(Arc::new(n.output.clone_ref(py)), delta)
                    }
                }
                Err(_) => {
                    let delta = dict_delta(v.bind(py));
                    Prep::Value(Arc::new(v), delta)
                }
            },
            Outcome::Skipped => Prep::Skip,
            Outcome::Error(err, is_timeout) => {
                let exc = err.value(py);
                if let Ok(n) = exc.getattr(intern!(py, "_weft_nested")) {
                    if let Ok(n) = n.cast::<Nested>() {
                        nested = Some(nested_parts(py, n.get()));
                        // Consumed: the same exception object raised again later by another
                        // step (a shared failed future) must not inherit these results.
                        let _ = exc.delattr(intern!(py, "_weft_nested"));
                    }
                }
                let verdict = classify(&facts(
                    exc.as_any(),
                    spec.retry_on.as_ref(),
                    spec.non_retryable.as_ref(),
                ));
                // A step that raises StepTimeoutError (a nested run's step timed out) timed out.
                let is_timeout = is_timeout || exc.is_instance_of::<StepTimeoutError>();
                Prep::Error(StepError::from_exc(exc.as_any()), verdict, is_timeout)
            }
        };
        let mut retry_after = None;
        let mut settled = false;
        let old_timer = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            if !st.sched.is_live(d) {
                return;
            }
            let now = Instant::now();
            let rec = &mut st.recs[d.step];
            let timer = rec.timer.take();
            if let Some(n) = nested {
                rec.children = n.children;
                rec.extra = n.metadata;
                rec.attempts = n.attempts;
            }
            let mut finished = Vec::new();
            match prep {
                Prep::Value(v, delta) => {
                    rec.output = Some(Arc::clone(&v));
                    rec.error = None;
                    rec.end = Some(now);
                    st.views.record(d.step, Arc::clone(&spec.id), delta, v);
                    st.sched.succeed(d.step);
                    finished.push(d.step);
                }
                Prep::Skip => {
                    rec.end = Some(now);
                    st.sched.skip(d.step);
                    finished.push(d.step);
                }
                Prep::Error(e, verdict, is_timeout) => {
                    let budget_left = self
                        .plan
                        .max_total_retries
                        .is_none_or(|max| st.retries_used < max);
                    if st.stop.is_none()
                        && budget_left
                        && should_retry(&spec.policy, d.attempt, &verdict)
                    {
                        let min_delay = match verdict {
                            Retryability::Retry { min_delay } => min_delay,
                            Retryability::Never { .. } => None,
                        };
                        let delay = spec.policy.delay(d.attempt, &mut st.rng, min_delay);
                        st.retries_used += 1;
                        if self.on_event.is_some() {
                            st.events.push(Event {
                                kind: "retrying",
                                step: d.step,
                                attempt: d.attempt,
                                payload: (delay.as_secs_f64(), e.exception.clone_ref(py))
                                    .into_pyobject(py)
                                    .map_or_else(|_| py.None(), |t| t.into_any().unbind()),
                            });
                        }
                        rec.error = Some(e);
                        st.sched.retrying(d.step);
                        if delay.is_zero() {
                            if let Some(next) = st.sched.start_retry(d.step) {
                                st.immediate.push(next);
                            }
                        } else {
                            retry_after = Some(delay);
                        }
                    } else {
                        rec.error = Some(e);
                        rec.end = Some(now);
                        let state = if is_timeout {
                            StepState::Timeout
                        } else {
                            StepState::Failed
                        };
                        finished.push(d.step);
                        finished.extend(st.sched.fail(d.step, state));
                    }
                }
            }
            if let Some(&s) = finished.first() {
                if st.sched.settles(st.sched.state(s)) {
                    // The run's policy is met (fail_fast's first failure, wait_for_all=False's
                    // first success): end every other step now; `settle_tasks` stops their work.
                    settled = true;
                    let why = format!(
                        "step '{}' {} and the run's failure policy ends the others",
                        spec.id,
                        st.sched.state(s).as_str()
                    );
                    let err = cancelled_error(py)
                        .and_then(|c| c.call1((why,)))
                        .unwrap_or_else(|e| e.into_value(py).into_bound(py).into_any());
                    let before = st.sched.completion_order().len();
                    st.sched.settle();
                    for i in before..st.sched.completion_order().len() {
                        let other = st.sched.completion_order()[i];
                        let rec = &mut st.recs[other];
                        rec.end = Some(now);
                        rec.error = Some(StepError::from_exc(&err));
                        finished.push(other);
                    }
                }
            }
            if self.on_event.is_some() {
                for s in finished {
                    if let Some(e) = self.terminal_event(py, st, s) {
                        st.events.push(e);
                    }
                }
            }
            timer
        };
        if let Some(t) = old_timer {
            t.cancel(py);
        }
        self.flush(py);
        if settled {
            if here == Where::Loop {
                self.settle_tasks(py);
            } else {
                self.call_soon_threadsafe(py, CbKind::Settle);
            }
        }
        if let Some(delay) = retry_after {
            self.schedule_retry(py, d.step, delay, here);
        }
    }

    /// The terminal event of step `s` with its `StepResult`.
    fn terminal_event(&self, py: Python<'_>, st: &RunState, s: usize) -> Option<Event> {
        let state = st.sched.state(s);
        Some(Event {
            kind: state.as_str(),
            step: s,
            attempt: st.sched.attempts(s),
            payload: Py::new(py, self.step_result(py, st, s).ok()?)
                .ok()?
                .into_any(),
        })
    }

    /// Hands the recorded events to the run's `on_event` subscriber, outside the run's lock
    /// and in the order they were recorded, whichever thread recorded them.
    fn flush(&self, py: Python<'_>) {
        let Some(cb) = &self.on_event else { return };
        let me = std::thread::current().id();
        if *self.flushing.lock() == Some(me) {
            return; // re-entered from the subscriber: the running flush drains these too
        }
        let _emitting = match self.emit_lock.try_lock() {
            Some(g) => g,
            None => py.detach(|| self.emit_lock.lock()),
        };
        *self.flushing.lock() = Some(me);
        loop {
            let events = std::mem::take(&mut self.lock(py).events);
            if events.is_empty() {
                break;
            }
            for e in events {
                let id = &self.plan.steps[e.step].id;
                if let Err(err) = cb.call1(py, (e.kind, &**id, e.attempt, e.payload)) {
                    tracing::error!(
                        "workflow '{}' run {}: the event subscriber raised: {err}",
                        self.workflow_id,
                        self.run_id
                    );
                }
            }
        }
        *self.flushing.lock() = None;
    }

    /// The loop thread, after the run settled early: cancel the work of the steps it ended.
    fn settle_tasks(self: &Arc<Self>, py: Python<'_>) {
        let (tasks, timers) = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            let tasks: Vec<_> = st
                .tasks
                .iter()
                .filter(|(&(step, attempt), _)| !st.sched.is_live(Dispatch { step, attempt }))
                .map(|(&(step, attempt), t)| (Dispatch { step, attempt }, t.clone_ref(py)))
                .collect();
            let timers: Vec<_> = (0..st.recs.len())
                .filter(|&s| st.sched.state(s).is_terminal())
                .filter_map(|s| st.recs[s].timer.take())
                .collect();
            (tasks, timers)
        };
        for t in timers {
            t.cancel(py);
        }
        for (d, t) in tasks {
            cancel_and_watch(self, py, t.bind(py), d);
        }
        self.pump(py, Where::Loop);
    }

    fn schedule_retry(self: &Arc<Self>, py: Python<'_>, step: usize, delay: Duration, here: Where) {
        if here == Where::Loop {
            let cb = Callback::new(self, CbKind::Retry(step));
            let r = self.event_loop.call_method1(
                py,
                intern!(py, "call_later"),
                (delay.as_secs_f64(), cb),
            );
            if r.is_ok() {
                return;
            }
        }
        let run = Arc::clone(self);
        let armed = pool::after(delay, move || {
            Python::attach(|py| {
                run.retry_due(py, step, Where::Timer);
            })
        });
        if armed.is_none() {
            // The timer runtime is gone (interpreter exit): retry at once rather than hang.
            self.retry_due(py, step, here);
        }
    }

    fn retry_due(self: &Arc<Self>, py: Python<'_>, step: usize, here: Where) {
        {
            let mut st = self.lock(py);
            if let Some(d) = st.sched.start_retry(step) {
                st.immediate.push(d);
            }
        }
        if let Some(d) = self.pump(py, here) {
            pool::submit(Job {
                run: Arc::clone(self),
                dispatch: d,
            });
        }
    }

    /// The timer thread: a sync attempt ran past its timeout. It cannot be interrupted inside the
    /// process, so it is abandoned: its result, whenever it comes, is discarded.
    fn sync_deadline(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        {
            let mut st = self.lock(py);
            if !st.sched.is_live(d) {
                return;
            }
            let rec = &mut st.recs[d.step];
            rec.timer = None;
            rec.abandoned = true;
        }
        tracing::warn!(
            "workflow '{}' run {}: sync step '{}' timed out (attempt {}); its call was abandoned \
             and keeps a worker thread until it returns",
            self.workflow_id,
            self.run_id,
            self.plan.steps[d.step].id,
            d.attempt
        );
        let err = self.timeout_error(d, "the sync call was abandoned and may still be running");
        self.record(py, d, Outcome::Error(err, true), Where::Timer);
        self.pump(py, Where::Timer);
    }

    fn timeout_error(&self, d: Dispatch, tail: &str) -> PyErr {
        let spec = &self.plan.steps[d.step];
        let secs = spec.timeout.map_or(0.0, |t| t.as_secs_f64());
        StepTimeoutError::new_err(format!(
            "step '{}' timed out after {secs}s (attempt {}); {tail}",
            spec.id, d.attempt
        ))
    }

    /// The loop thread: an async attempt ran past its timeout; cancel its task.
    fn async_deadline(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        let task = {
            let mut st = self.lock(py);
            if !st.sched.is_live(d) {
                return;
            }
            let rec = &mut st.recs[d.step];
            rec.timing_out = true;
            rec.timer = None;
            st.tasks.get(&(d.step, d.attempt)).map(|t| t.clone_ref(py))
        };
        if let Some(t) = task {
            cancel_and_watch(self, py, t.bind(py), d);
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
            if self.on_event.is_some() {
                let ended = st.sched.completion_order()[before..].to_vec();
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
        self.pump(py, Where::Loop);
    }

    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let st = self.lock(py);
        let sched = &st.sched;
        let order = sched.completion_order();
        let ran = |s: &usize| sched.attempts(*s) > 0 && sched.state(*s) != StepState::Skipped;
        let steps = PyList::empty(py);
        for &s in order
            .iter()
            .filter(|s| ran(s))
            .chain(order.iter().filter(|s| !ran(s)))
        {
            steps.append(self.step_result(py, &st, s)?)?;
        }
        let status = match sched.outcome() {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
        };
        let graph = &self.plan.graph;
        let final_output = graph
            .sinks()
            .iter()
            .rev()
            .find_map(|&s| st.recs[s].output.as_ref())
            .map_or_else(|| py.None(), |v| v.clone_ref(py));
        let error = match st.stop {
            Some(Stop::TimedOut(t)) => Some(format!("the workflow timed out after {t}s")),
            Some(Stop::Cancelled) => Some("the workflow run was cancelled".to_string()),
            None => order
                .iter()
                .find(|&&s| sched.state(s).is_failure())
                .and_then(|&s| {
                    let e = st.recs[s].error.as_ref()?;
                    Some(format!("{}: {}: {}", graph.id(s), e.type_name, e.message))
                }),
        };
        let end = st.ended.unwrap_or_else(Instant::now);
        let elapsed_ms = end.duration_since(self.started).as_secs_f64() * 1000.0;
        let fin = st.views.final_view();
        let context = WorkflowContext {
            workflow_id: Arc::clone(&self.workflow_id),
            user_context: self.user_context.clone_ref(py),
            metadata: self.metadata.clone_ref(py),
            vars: owned_copy(py, &fin.vars),
            results: owned_copy(py, &fin.results),
            run_id: Some(Arc::clone(&self.run_id)),
            step_id: None,
            owns_values: true,
        };
        PyTuple::new(
            py,
            [
                status.into_pyobject(py)?.into_any(),
                steps.into_any(),
                final_output.into_bound(py),
                error.into_pyobject(py)?.into_any(),
                elapsed_ms.into_pyobject(py)?.into_any(),
                Bound::new(py, context)?.into_any(),
            ],
        )
    }

    fn step_result(&self, py: Python<'_>, st: &RunState, s: usize) -> PyResult<StepResult> {
        let rec = &st.recs[s];
        let state = st.sched.state(s);
        let metadata = match &rec.extra {
            Some(extra) => extra.bind(py).copy()?,
            None => PyDict::new(py),
        };
        if rec.abandoned {
            metadata.set_item("abandoned", true)?;
        }
        if rec.cancel_ignored {
            metadata.set_item("cancel_ignored", true)?;
        }
        let ms = match (rec.first_start, rec.end) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64() * 1000.0,
            _ => 0.0,
        };
        let err = if state == StepState::Completed {
            None
        } else {
            rec.error.as_ref()
        };
        Ok(StepResult {
            step_id: self.plan.graph.id(s).to_string(),
            status: status_member(py, state)?,
            output: rec
                .output
                .as_ref()
                .map_or_else(|| py.None(), |v| v.clone_ref(py)),
            error: err.map(|e| e.message.clone()),
            error_type: err.map(|e| e.type_name.clone()),
            exception: err.map(|e| e.exception.clone_ref(py)),
            attempts: match rec.attempts {
                Some(n) => n,
                None if state == StepState::Skipped => 0,
                None => st.sched.attempts(s),
            },
            execution_time_ms: ms,
            metadata: metadata.unbind(),
            children: rec.children.as_ref().map(|c| c.clone_ref(py)),
            state,
        })
    }
}

enum CbKind {
    Done(Dispatch),
    Unwound(Dispatch),
    Deadline(Dispatch),
    Start(Dispatch),
    Retry(usize),
    RunDeadline,
    Settle,
    Finish,
}

/// A callable handed to asyncio (done-callbacks, `call_later`, `call_soon_threadsafe`).
#[pyclass(module = "weft._core", frozen)]
struct Callback {
    run: Arc<RunInner>,
    kind: CbKind,
}

impl Callback {
    fn new(run: &Arc<RunInner>, kind: CbKind) -> Self {
        Callback {
            run: Arc::clone(run),
            kind,
        }
    }
}

#[pymethods]
impl Callback {
    #[pyo3(signature = (*args))]
    fn __call__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        let run = &self.run;
        match self.kind {
            CbKind::Done(d) => run.task_done(py, d, args),
            CbKind::Unwound(d) => run.task_unwound(py, d),
            CbKind::Deadline(d) => run.async_deadline(py, d),
            CbKind::Start(d) => {
                if let Some(outcome) = run.start_async(py, d) {
                    run.record(py, d, outcome, Where::Loop);
                }
                run.pump(py, Where::Loop);
            }
            CbKind::Retry(step) => run.retry_due(py, step, Where::Loop),
            CbKind::RunDeadline => {
                run.lock(py).run_timer = None;
                run.stop(py, Stop::TimedOut(run.run_timeout.unwrap_or_default()));
            }
            CbKind::Settle => run.settle_tasks(py),
            CbKind::Finish => run.complete(py),
        }
        Ok(())
    }
}

/// A started run. Private: `weft.Workflow.execute` awaits it and builds the `WorkflowResult`.
#[pyclass(module = "weft._core", name = "Run", frozen)]
pub struct Run {
    inner: Arc<RunInner>,
}

#[pymethods]
impl Run {
    /// The run's id (uuid4 hex).
    #[getter]
    fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Cancels the run (call on the loop thread): running tasks are cancelled, sync steps
    /// abandoned, pending steps CANCELLED. Returns a future that resolves once every cancelled
    /// task has finished unwinding, or `None` when none is left.
    fn cancel(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner.stop(py, Stop::Cancelled);
        let mut st = self.inner.lock(py);
        if st.tasks.is_empty() {
            return Ok(None);
        }
        let fut = self
            .inner
            .event_loop
            .call_method0(py, intern!(py, "create_future"))?;
        st.cancel_waiters.push(fut.clone_ref(py));
        Ok(Some(fut))
    }

    /// `(status, steps, final_output, error, total_execution_time_ms, context)`.
    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.inner.outcome(py)
    }
}
