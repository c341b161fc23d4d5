//! Dispatching ready steps: async steps become tasks on the loop thread, sync steps go to the
//! worker pool (or run inline on the worker that readied them); the callbacks that report an
//! attempt's end; stopping a run (cancel, run deadline); announcing the run's end.
use super::*;

/// What `take_ready` found under the lock, for `pump` to act on after releasing it.
struct Ready {
    batch: Vec<Dispatch>,
    /// Attempts an open circuit refuses, with the refusal's message.
    refused: Vec<(Dispatch, String)>,
    /// The run just finished: announce its end.
    finish: bool,
}

impl RunInner {
    /// Dispatches every ready step (admitted by its rate limits and circuit breakers, if
    /// any); returns one sync step for a worker to run inline.
    pub(super) fn pump(self: &Arc<Self>, py: Python<'_>, here: Where) -> Option<Dispatch> {
        let inline = self.pump_passes(py, here);
        if here == Where::Loop {
            self.show_loop(py);
        }
        inline
    }

    /// The loop thread hides its running loop before calling a sync step itself (see
    /// `call_on_loop`); `show_loop` puts it back. Between two such calls of one `pump` the
    /// loop stays hidden when nothing else can run Python code that looks for it (no event
    /// subscriber, no journal): the engine's own bookkeeping in between never does.
    /// NOTE: a hide and a show per call cost ~1,000 instructions a step (two calls of
    /// asyncio's `_set_running_loop`); a chain of fast steps on the loop pays one pair a pass.
    fn hide_loop(&self, py: Python<'_>) {
        if !self.loop_hidden.load(std::sync::atomic::Ordering::Relaxed)
            && set_running_loop(py, py.None().bind(py)).is_ok()
        {
            self.loop_hidden
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Puts back the running loop `hide_loop` hid (this run's: `pump(.., Where::Loop)` only
    /// runs on it, so it is not asked for first).
    fn show_loop(&self, py: Python<'_>) {
        if self.loop_hidden.load(std::sync::atomic::Ordering::Relaxed) {
            self.loop_hidden
                .store(false, std::sync::atomic::Ordering::Relaxed);
            let _ = set_running_loop(py, self.event_loop.bind(py));
        }
    }

    fn pump_passes(self: &Arc<Self>, py: Python<'_>, here: Where) -> Option<Dispatch> {
        let keep_hidden = here == Where::Loop && self.on_event.is_none() && self.journal.is_none();
        // A durable run whose lease is lost (another process took it over) starts nothing
        // more: it stops as if cancelled, and its late writes are refused by the store.
        if let Some(j) = &self.journal {
            if !self.lease_halted.load(std::sync::atomic::Ordering::Acquire)
                && !j.shared.lease_ok(py)
                && !self
                    .lease_halted
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                if here == Where::Loop {
                    self.show_loop(py);
                    self.stop(py, Stop::Cancelled);
                } else {
                    self.call_soon_threadsafe(py, CbKind::LeaseLost);
                }
                return None;
            }
        }
        let mut inline = None;
        let mut on_loop = Vec::new();
        // One pass of the loop thread calls adaptive-inline steps for at most `INLINE_BOUND`
        // (their checkpoints included); what becomes ready after that goes to the workers, so
        // a long chain of fast steps (or their store writes) never holds the loop for long.
        let began = Instant::now();
        loop {
            let Ready {
                batch,
                refused,
                finish,
            } = self.take_ready(py, &mut self.lock(py));
            self.flush(py);
            let any_refused = !refused.is_empty();
            if any_refused || finish {
                self.show_loop(py);
            }
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
                        self.show_loop(py);
                        if let Some(outcome) = self.start_async(py, d) {
                            self.record(py, d, outcome, here);
                        }
                    } else {
                        self.call_soon_threadsafe(py, CbKind::Start(d));
                    }
                } else if here == Where::Worker && inline.is_none() {
                    inline = Some(d);
                } else if here == Where::Loop
                    && self.plan.steps[d.step].inline.on_loop()
                    && (self.plan.steps[d.step].inline.forced()
                        || began.elapsed() < crate::py::plan::INLINE_BOUND)
                {
                    on_loop.push(d);
                } else {
                    self.show_loop(py);
                    self.submit(py, d);
                }
            }
            // Sync steps the inline rule (`plan::Inline`) gives the loop thread: called here,
            // after every other ready step has been dispatched, then the loop looks again.
            for d in on_loop.drain(..) {
                if self.plan.steps[d.step].inline.forced()
                    || began.elapsed() < crate::py::plan::INLINE_BOUND
                {
                    self.call_on_loop(py, d, keep_hidden);
                } else {
                    self.show_loop(py);
                    self.submit(py, d);
                }
            }
        }
    }

    /// The loop thread calls sync attempt `d` itself (see `plan::Inline`), in the run's
    /// contextvars copy as a worker would, with the running loop hidden for the call (as on a
    /// worker thread, `asyncio.get_running_loop()` raises and `asyncio.run` works). Its
    /// outcome is recorded as a worker's is. `keep_hidden`: the loop stays hidden after the
    /// call, for the next one (see `hide_loop`); `pump` shows it before it returns.
    fn call_on_loop(self: &Arc<Self>, py: Python<'_>, d: Dispatch, keep_hidden: bool) {
        if !self.lock(py).sched.is_live(d) {
            return;
        }
        self.hide_loop(py);
        let started = Instant::now();
        let result = self.invoke(py, d.step);
        self.plan.steps[d.step].inline.measured(started.elapsed());
        if !keep_hidden {
            self.show_loop(py);
        }
        // A traceback of a call made here links, through its frames' `f_back`, to the asyncio
        // handle that called us and so to this run, which keeps the exception: a cycle through
        // the run (not tracked by Python's GC) that leaked ~4 KB per failed attempt (tests/
        // test_leaks.py, 10,000 runs with failures). Once recorded (its text is in the step's
        // metadata["traceback"]), the exception drops its traceback.
        let raised = result.as_ref().err().map(|e| e.value(py).clone());
        let outcome = self.sync_outcome(py, d, result);
        self.record(py, d, outcome, Where::Loop);
        if let Some(exc) = raised {
            let _ = exc.setattr(intern!(py, "__traceback__"), py.None());
        }
    }

    /// A sync call's result as an attempt's outcome: a coroutine returned by a sync callable is
    /// an error (the step should be declared `async def`).
    pub(super) fn sync_outcome(
        &self,
        py: Python<'_>,
        d: Dispatch,
        result: PyResult<Option<Bound<'_, PyAny>>>,
    ) -> Outcome {
        match result {
            Ok(Some(v)) if is_coroutine(&v) => {
                let _ = v.call_method0(intern!(py, "close"));
                Outcome::Error(
                    pyo3::exceptions::PyTypeError::new_err(format!(
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
        }
    }

    /// Under the lock: the attempts to start now (due retries, parked attempts, newly ready
    /// steps) that their rate limits and breakers admit, marked started and announced; the
    /// attempts an open circuit refuses; and whether the run just finished.
    fn take_ready(self: &Arc<Self>, py: Python<'_>, st: &mut RunState) -> Ready {
        let mut batch = std::mem::take(&mut st.retry.immediate);
        if !st.traffic.parked.is_empty() {
            batch.append(&mut st.traffic.parked);
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
                    traffic::Admit::Park(until, kind, key) => {
                        self.park(st, d, until, (kind, key), now)
                    }
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
                self.waited_events(py, st, *d, now);
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
        Ready {
            batch,
            refused,
            finish,
        }
    }

    pub(super) fn call_soon_threadsafe(self: &Arc<Self>, py: Python<'_>, kind: CbKind) {
        let cb = Callback::new(self, kind);
        if let Err(e) = self
            .event_loop
            .call_method1(py, intern!(py, "call_soon_threadsafe"), (cb,))
        {
            tracing::error!(run_id = %self.run_id, "batten: cannot reach the event loop: {e}");
        }
    }

    pub(super) fn signal_finish(self: &Arc<Self>, py: Python<'_>, here: Where) {
        if here == Where::Loop {
            self.complete(py);
        } else {
            self.call_soon_threadsafe(py, CbKind::Finish);
        }
    }

    /// On the loop thread, once every step is terminal and no task is left: resolve the futures.
    pub(super) fn complete(&self, py: Python<'_>) {
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
                st.timing.run_timer.take(),
                std::mem::take(&mut st.end.cancel_waiters),
                outcome,
            )
        };
        if run_debug_enabled(py) {
            tracing::debug!(
                "workflow '{}' run {} finished: {:?} in {:.3} ms",
                self.workflow_id,
                self.run_id,
                outcome,
                self.started.elapsed().as_secs_f64() * 1000.0
            );
        }
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

    /// Checks the step's conditions and calls it. `Ok(None)`: a condition was false.
    pub(super) fn invoke<'py>(
        &self,
        py: Python<'py>,
        step: usize,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
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
        if !spec.is_async {
            let pyctx = self.context_copy(py)?;
            let ctx = if spec.wants_ctx { ctx.as_ref() } else { None };
            return call_in_context(py, &pyctx, f, spec.arg.as_ref().map(|a| a.bind(py)), ctx)
                .map(Some);
        }
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
        let out = match &spec.arg {
            Some(a) => f.call((a,), kw)?,
            None => f.call((), kw)?,
        };
        Ok(Some(out))
    }

    /// `asyncio.Task` when the loop has no task factory and is not in debug mode: then
    /// `loop.create_task(coro, name=, context=)` is exactly `Task(coro, loop=loop, name=,
    /// context=)` behind a Python frame, which cost ~4,300 of W1a's ~47,700 instructions a
    /// step. `None` (use `create_task`) otherwise. Read once per run, at its first async
    /// attempt: a factory set while a run is going applies from the next run.
    pub(super) fn task_class<'a>(&'a self, py: Python<'_>) -> Option<&'a Py<PyAny>> {
        self.task_class
            .get_or_init(py, || {
                let lp = self.event_loop.bind(py);
                let plain = lp
                    .call_method0(intern!(py, "get_task_factory"))
                    .is_ok_and(|f| f.is_none())
                    && lp
                        .call_method0(intern!(py, "get_debug"))
                        .and_then(|d| d.is_truthy())
                        .is_ok_and(|debug| !debug);
                if !plain {
                    return None;
                }
                TASK.get_or_try_init(py, || -> PyResult<_> {
                    Ok(py.import("asyncio")?.getattr("Task")?.unbind())
                })
                .ok()
                .map(|c| c.clone_ref(py))
            })
            .as_ref()
    }

    /// A copy of the run's `contextvars.Context` (its `copy()`, without the method lookup),
    /// for one attempt to run in.
    pub(super) fn context_copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: `pycontext` is a `contextvars.Context` (`Run.start` takes it from
        // `contextvars.copy_context()`); the result is a new reference or NULL with an error set.
        unsafe {
            Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyContext_Copy(self.pycontext.as_ptr()))
        }
    }

    /// Starts an async step's task on the loop thread; `Some` if it settled without a task.
    pub(super) fn start_async(self: &Arc<Self>, py: Python<'_>, d: Dispatch) -> Option<Outcome> {
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

    /// Runs `awaitable` as a task (stepped by a `callback::Driver`) with its deadline.
    /// `Ok(false)`: it is not awaitable (a sync callable mistaken for async), so it is the output.
    pub(super) fn launch(
        self: &Arc<Self>,
        py: Python<'_>,
        d: Dispatch,
        awaitable: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if !is_coroutine(awaitable) && !awaitable.hasattr(intern!(py, "__await__"))? {
            return Ok(false);
        }
        let lp = self.event_loop.bind(py);
        // A chain of async steps runs on one Task (see `callback::Driver`).
        let task = match self.chain(py, d, awaitable)? {
            Some(task) => task,
            None => self.new_task(py, d, awaitable)?,
        };
        let timer = match self.plan.steps[d.step].timeout {
            Some(t) => Some(lp.call_method1(
                intern!(py, "call_later"),
                (t.as_secs_f64(), Callback::new(self, CbKind::Deadline(d))),
            )?),
            None => None,
        };
        let mut st = self.lock(py);
        st.tasks.live.insert((d.step, d.attempt), task.unbind());
        let rec = &mut st.recs[d.step];
        rec.timer = timer.map(|t| Timer::Loop(t.unbind()));
        rec.timing_out = false;
        Ok(true)
    }

    /// A Task (named after the step) running `awaitable` through a `Driver`.
    fn new_task<'py>(
        self: &Arc<Self>,
        py: Python<'py>,
        d: Dispatch,
        awaitable: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lp = self.event_loop.bind(py);
        let coro = Bound::new(py, Driver::new(self, d, awaitable.clone().unbind()))?;
        let kw = PyDict::new(py);
        kw.set_item(intern!(py, "context"), self.context_copy(py)?)?;
        // NOTE: the task is named after its step: with no name, CPython 3.11's Task formats
        // "Task-<n>" with PyUnicode_FromFormat, ~1,500 instructions of W1a's ~49,600 a step.
        let name = pyo3::types::PyString::new(py, &self.plan.steps[d.step].id);
        kw.set_item(intern!(py, "name"), name)?;
        match self.task_class(py) {
            Some(cls) => {
                kw.set_item(intern!(py, "loop"), lp)?;
                cls.bind(py).call((coro,), Some(&kw))
            }
            None => lp.call_method(intern!(py, "create_task"), (coro,), Some(&kw)),
        }
    }

    /// The loop thread: an async attempt's `Driver` reports its outcome: `ok` and the value,
    /// or the exception (`cancelled`: a `CancelledError`).
    pub(super) fn task_done(
        self: &Arc<Self>,
        py: Python<'_>,
        d: Dispatch,
        ok: bool,
        value: Bound<'_, PyAny>,
        cancelled: bool,
    ) {
        let (live, timing_out) = {
            let mut st = self.lock(py);
            st.tasks.live.remove(&(d.step, d.attempt));
            (st.sched.is_live(d), st.recs[d.step].timing_out)
        };
        if live {
            let outcome = if timing_out {
                if ok {
                    self.lock(py).recs[d.step].cancel_ignored = true;
                }
                // A process-isolated call (`batten._runtime.isolation`) says its worker
                // process was killed by raising a CancelledError with `batten_killed`.
                let killed = !ok
                    && value
                        .getattr(intern!(py, "batten_killed"))
                        .and_then(|k| k.is_truthy())
                        .unwrap_or(false);
                if killed {
                    self.lock(py).recs[d.step].killed = true;
                }
                let tail = if ok {
                    "the step ignored cancellation and finished late"
                } else if killed {
                    "its worker process was killed"
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
    /// cancelled before it started, its `Driver` closed the awaitable without reporting, and
    /// this is the only report.
    pub(super) fn task_unwound(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        let (unreported, live, timing_out) = {
            let mut st = self.lock(py);
            let unreported = st.tasks.live.remove(&(d.step, d.attempt)).is_some();
            (unreported, st.sched.is_live(d), st.recs[d.step].timing_out)
        };
        if unreported && live && timing_out {
            let err = self.timeout_error(d, "its task was cancelled before it started");
            self.record(py, d, Outcome::Error(err, true), Where::Loop);
        }
        self.pump(py, Where::Loop);
    }

    /// The loop thread: cancel the run, or end it at its deadline.
    pub(super) fn stop(self: &Arc<Self>, py: Python<'_>, why: Stop) {
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
        let mut calls = Vec::new();
        {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            if st.end.finished || st.end.stop.is_some() {
                return;
            }
            st.end.stop = Some(why);
            st.retry.immediate.clear();
            let now = Instant::now();
            tasks.extend(
                st.tasks
                    .live
                    .iter()
                    .map(|(&(step, attempt), t)| (Dispatch { step, attempt }, t.clone_ref(py))),
            );
            let before = st.sched.completion_order().len();
            for step in st.sched.stop(to, matches!(why, Stop::TimedOut(_))) {
                let rec = &mut st.recs[step];
                rec.end = Some(now);
                timers.extend(rec.timer.take());
                rec.error = Some(Box::new(StepError::from_exc(err.bind(py))));
                // A running sync call's result is discarded from now on: abandon it.
                calls.extend(rec.call.take());
                if !self.plan.steps[step].is_async && matches!(why, Stop::TimedOut(_)) {
                    rec.abandoned = true;
                }
            }
            let ended = st.sched.completion_order()[before..].to_vec();
            self.announce(py, st, Vec::new(), &ended, None);
        }
        self.flush(py);
        for t in timers {
            t.cancel(py);
        }
        for call in calls {
            job::abandon(&call);
        }
        for (d, t) in tasks {
            cancel_and_watch(self, py, t.bind(py), d);
        }
        self.release_all(py);
        self.pump(py, Where::Loop);
    }
}

static TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CONTEXT_KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
static RUN_LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Sets this thread's running event loop to `to` (`None`: no running loop, as on a worker
/// thread) through asyncio's own `_set_running_loop`.
fn set_running_loop(py: Python<'_>, to: &Bound<'_, PyAny>) -> PyResult<()> {
    let set = SET_RUNNING_LOOP.import(py, "asyncio.events", "_set_running_loop")?;
    set.call1((to,))?;
    Ok(())
}

/// Whether Python's `logging` takes DEBUG records from this module (logger
/// `batten.py.run.dispatch`, the name `pyo3_log` gives this module's `tracing` events), asked
/// with `Logger.isEnabledFor` (levels set after `import batten` count).
/// NOTE: the run's end is logged at DEBUG; built and handed to `pyo3_log` unconditionally, that
/// record cost ~12,000 instructions a run (W5: ~8% of a 3-step run), this check ~400.
fn run_debug_enabled(py: Python<'_>) -> bool {
    let logger = RUN_LOGGER.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("logging")?
            .call_method1("getLogger", ("batten.py.run.dispatch",))?
            .unbind())
    });
    logger.is_ok_and(|l| {
        l.bind(py)
            .call_method1(intern!(py, "isEnabledFor"), (10,))
            .and_then(|e| e.is_truthy())
            .unwrap_or(true)
    })
}

/// `pyctx.run(f, *arg, context=ctx)` without `Context.run`'s method lookup, argument tuple and
/// keyword dict: enters `pyctx`, vectorcalls `f` (its positional `arg`, then `ctx` as the
/// keyword `context`), and exits `pyctx` whatever the call did, as `Context.run` does.
fn call_in_context<'py>(
    py: Python<'py>,
    pyctx: &Bound<'py, PyAny>,
    f: &Bound<'py, PyAny>,
    arg: Option<&Bound<'py, PyAny>>,
    ctx: Option<&Bound<'py, WorkflowContext>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kwnames = match ctx {
        Some(_) => Some(CONTEXT_KWNAMES.get_or_try_init(py, || {
            PyTuple::new(py, [intern!(py, "context")]).map(Bound::unbind)
        })?),
        None => None,
    };
    // Slot 0 is scratch space the callee may use (PY_VECTORCALL_ARGUMENTS_OFFSET).
    let mut args: [*mut pyo3::ffi::PyObject; 3] = [std::ptr::null_mut(); 3];
    let mut n = 0;
    for a in [arg.map(|a| a.as_ptr()), ctx.map(|c| c.as_ptr())]
        .into_iter()
        .flatten()
    {
        n += 1;
        args[n] = a;
    }
    let positional = n - usize::from(ctx.is_some());
    // SAFETY: `pyctx` is a fresh `contextvars.Context` copy (see `context_copy`), entered once
    // and exited below on every path; `args[1..=n]` are borrowed, attached object pointers that
    // outlive the call, `kwnames` a tuple naming the last `n - positional` of them.
    unsafe {
        if pyo3::ffi::PyContext_Enter(pyctx.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        let out = pyo3::ffi::PyObject_Vectorcall(
            f.as_ptr(),
            args.as_ptr().add(1),
            positional | pyo3::ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            kwnames.map_or(std::ptr::null_mut(), |k| k.as_ptr()),
        );
        let out = Bound::from_owned_ptr_or_err(py, out);
        if pyo3::ffi::PyContext_Exit(pyctx.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        out
    }
}
