//! The callables handed to asyncio: done-callbacks, `call_later` and `call_soon_threadsafe`.
use super::*;

pub(super) enum CbKind {
    Unwound(Dispatch),
    Deadline(Dispatch),
    Start(Dispatch),
    Retry(usize),
    RunDeadline,
    Settle,
    Finish,
    /// A parked attempt may start (its wait passed, or a limiter freed a slot).
    Unpark,
    /// The durable run's lease was lost: stop the run (see `RunInner::pump`).
    LeaseLost,
}

/// A callable handed to asyncio (done-callbacks, `call_later`, `call_soon_threadsafe`).
#[pyclass(module = "batten._core", frozen)]
pub(super) struct Callback {
    run: Arc<RunInner>,
    kind: CbKind,
}

impl Callback {
    pub(super) fn new(run: &Arc<RunInner>, kind: CbKind) -> Self {
        Callback {
            run: Arc::clone(run),
            kind,
        }
    }
}

#[pymethods]
impl Callback {
    #[pyo3(signature = (*_args))]
    fn __call__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        let run = &self.run;
        match self.kind {
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
                run.lock(py).timing.run_timer = None;
                run.stop(py, Stop::TimedOut(run.run_timeout.unwrap_or_default()));
            }
            CbKind::Settle => run.settle_tasks(py),
            CbKind::LeaseLost => run.stop(py, Stop::Cancelled),
            CbKind::Finish => run.complete(py),
            CbKind::Unpark => {
                {
                    let mut st = run.lock(py);
                    if st.traffic.wake_at.is_some_and(|w| w <= Instant::now()) {
                        st.traffic.wake_at = None;
                    }
                }
                run.pump(py, Where::Loop);
            }
        }
        Ok(())
    }
}

/// What one step of an async attempt's awaitable came to.
enum Stepped<'py> {
    /// It suspended, yielding this to the Task (a future to wait on, or `None`).
    Yielded(Bound<'py, PyAny>),
    /// It returned this value.
    Returned(Bound<'py, PyAny>),
    Raised(PyErr),
}

/// How the Task stepped its `Driver`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `__next__` or `send`: the Task resumed it.
    Send,
    /// `throw` or `close`: the Task was cancelled (or closed); its next step never chains.
    Throw,
}

static FOREIGN_LOOP_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The attempt a `Driver` steps now.
struct Current {
    d: Dispatch,
    /// The step's awaitable: a coroutine, or an object with `__await__`.
    awaitable: Py<PyAny>,
    /// What is stepped, from the first step on: the awaitable itself if it is a coroutine, else
    /// its `__await__()` iterator.
    iter: Option<Py<PyAny>>,
    /// The `contextvars.Context` copy a chained attempt runs in (the Task's own for the first).
    ctx: Option<Py<PyAny>>,
    reported: bool,
}

/// An async attempt handed to a running Task by `RunInner::chain` (see `Driver`).
pub(super) struct Chained {
    d: Dispatch,
    awaitable: Py<PyAny>,
    ctx: Py<PyAny>,
    task: Py<PyAny>,
}

/// A finishing attempt's Task, offered to the attempt its report readies (see `Driver`).
pub(super) struct Offer {
    task: Py<PyAny>,
    taken: Option<Chained>,
}

/// `task.cancelling()`: cancellations requested of a Task and not yet withdrawn (asyncio).
fn cancelling(py: Python<'_>, task: &Py<PyAny>) -> bool {
    task.call_method0(py, intern!(py, "cancelling"))
        .and_then(|n| n.extract::<u64>(py))
        .map_or(true, |n| n > 0)
}

impl RunInner {
    /// Offers the Task of attempt `d` (which just ended on it) to the attempt its report
    /// readies; `false` when the Task cannot take one (see `Driver`).
    fn offer_task(&self, py: Python<'_>, d: Dispatch) -> bool {
        if self.task_class(py).is_none() {
            return false;
        }
        let task = self
            .lock(py)
            .tasks
            .live
            .get(&(d.step, d.attempt))
            .map(|t| t.clone_ref(py));
        let Some(task) = task.filter(|t| !cancelling(py, t)) else {
            return false;
        };
        self.lock(py).tasks.offer = Some(Offer { task, taken: None });
        true
    }

    /// The offered Task, renamed after attempt `d`'s step, if one is on offer: `awaitable` runs
    /// on it (in a fresh copy of the run's contextvars) once the attempt that offered it has
    /// reported. `None`: make a Task.
    pub(super) fn chain<'py>(
        &self,
        py: Python<'py>,
        d: Dispatch,
        awaitable: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let task = match self.lock(py).tasks.offer.as_ref() {
            Some(o) if o.taken.is_none() => o.task.clone_ref(py).into_bound(py),
            _ => return Ok(None),
        };
        if !self.nothing_queued(py) {
            return Ok(None);
        }
        let ctx = self.context_copy(py)?;
        let name = pyo3::types::PyString::new(py, &self.plan.steps[d.step].id);
        task.call_method1(intern!(py, "set_name"), (name,))?;
        if let Some(o) = self.lock(py).tasks.offer.as_mut() {
            o.taken = Some(Chained {
                d,
                awaitable: awaitable.clone().unbind(),
                ctx: ctx.unbind(),
                task: task.clone().unbind(),
            });
        }
        Ok(Some(task))
    }

    /// Whether the loop has no callback waiting to run (its `_ready` queue is empty), so the
    /// attempt chained now runs exactly where its own Task's first step would have: after
    /// what the current callback still does, before anything queued later. `false` on a loop
    /// without asyncio's `_ready` deque (uvloop): there every attempt gets a Task.
    fn nothing_queued(&self, py: Python<'_>) -> bool {
        let known = self
            .lock(py)
            .tasks
            .ready
            .as_ref()
            .map(|q| q.as_ref().map(|q| q.clone_ref(py)));
        let queue = match known {
            Some(q) => q,
            None => {
                let q = self
                    .event_loop
                    .bind(py)
                    .getattr(intern!(py, "_ready"))
                    .ok()
                    .filter(|q| q.get_type().name().is_ok_and(|n| n == "deque"))
                    .map(|q| q.unbind());
                self.lock(py).tasks.ready = Some(q.as_ref().map(|q| q.clone_ref(py)));
                q
            }
        };
        queue.is_some_and(|q| q.bind(py).len().is_ok_and(|n| n == 0))
    }

    /// The attempt chained to the offered Task, if any; withdraws the offer.
    fn take_chained(&self, py: Python<'_>) -> Option<Chained> {
        self.lock(py).tasks.offer.take().and_then(|o| o.taken)
    }
}

/// The coroutine an async attempt's `asyncio.Task` runs: it steps the step's own awaitable
/// (forwarding `send`, `throw` and `close`, as `await` does) and reports the attempt's outcome to
/// the run from inside the Task's last step, so the run records it (and starts what it readies)
/// without waiting for a done-callback's loop iteration.
///
/// NOTE: it replaces a Python `drive` coroutine and the callable it reported to: a frame and two
/// objects per task (~330 bytes, ~3.3 MB of a 10,000-step fan-out, benchmark M), and ~2,900 of
/// W1a's ~43,400 instructions a step.
///
/// The outcome, as `drive` reported it: a return value is the output; an `Exception` is the
/// attempt's error (the Task itself then ends normally, so asyncio logs nothing); a
/// `CancelledError` or another `BaseException` is reported and then re-raised into the Task. A
/// `RuntimeError` of an asyncio object bound to another loop, raised while `Workflow.run` runs
/// the workflow on a helper thread, is reported as `batten._runtime.loops`'s
/// `EventLoopMismatchError`. A Task cancelled before it ever ran is thrown its `CancelledError`
/// at its first step: the awaitable, never started, is closed (no "coroutine was never awaited"
/// warning) and nothing is reported; the run's done-callback on the cancelled Task
/// (`RunInner::task_unwound`) records it.
///
/// Chaining: when an attempt ends and its report readies an async step, the run may hand that
/// step to this Task (`RunInner::chain`) instead of creating a Task for it: the Driver renames
/// the Task after the step and steps the new awaitable at once, in a fresh copy of the run's
/// contextvars (entered around each of its steps, as a Task of its own would run it), so a chain
/// of async steps costs no Task and no event-loop iteration per step. Only when the loop has
/// nothing else queued to run (see `RunInner::nothing_queued`: what asyncio would run before the
/// new Task's first step runs before it here too), only while one Task step
/// (`__next__`) has run for less than `plan::INLINE_BOUND` (so other callbacks wait no longer than
/// behind an inline sync step), never after a `throw` (a cancellation), nor while the Task is
/// being cancelled, nor when the loop has a task factory or debug mode (see
/// `RunInner::task_class`): then every attempt gets its own Task, made as before.
///
/// NOTE: not tracked by Python's GC (no `__traverse__`): a pending attempt's Task is held by the
/// run (`Tasks::live`) and the driver holds the run (an `Arc`, which the GC cannot see either),
/// so no cycle through a driver is ever collectable by visiting it, and a finished one holds only
/// finished coroutines. Tracking it cost ~3,000 instructions a step in W2 (10,000 more objects
/// in every collection, ~25% more gen-0 collections), for nothing.
#[pyclass(module = "batten._core", frozen)]
pub(super) struct Driver {
    run: Arc<RunInner>,
    cur: Mutex<Current>,
}

/// Runs `f` inside `ctx` (`Context.run` without the call), or as it is when `ctx` is `None`.
fn in_context<'py, T>(
    py: Python<'py>,
    ctx: Option<&Py<PyAny>>,
    f: impl FnOnce() -> T,
) -> PyResult<T> {
    let Some(ctx) = ctx else {
        return Ok(f());
    };
    // SAFETY: `ctx` is a `contextvars.Context` (`RunInner::context_copy`), entered and exited on
    // this thread around `f`, with the GIL held throughout.
    unsafe {
        if pyo3::ffi::PyContext_Enter(ctx.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    let out = f();
    // SAFETY: as above; `ctx` is the context entered above.
    unsafe {
        if pyo3::ffi::PyContext_Exit(ctx.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(out)
}

impl Driver {
    pub(super) fn new(run: &Arc<RunInner>, d: Dispatch, awaitable: Py<PyAny>) -> Self {
        Driver {
            run: Arc::clone(run),
            cur: Mutex::new(Current {
                d,
                awaitable,
                iter: None,
                ctx: None,
                reported: false,
            }),
        }
    }

    /// The iterator to step, taken from the awaitable at its first step.
    fn iter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let aw = {
            let cur = self.cur.lock();
            if let Some(it) = cur.iter.as_ref() {
                return Ok(it.bind(py).clone());
            }
            cur.awaitable.clone_ref(py)
        };
        let aw = aw.into_bound(py);
        let it = if is_coroutine(&aw) {
            aw
        } else {
            aw.call_method0(intern!(py, "__await__"))?
        };
        self.cur.lock().iter = Some(it.clone().unbind());
        Ok(it)
    }

    fn ctx(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cur.lock().ctx.as_ref().map(|c| c.clone_ref(py))
    }

    /// Sends `None` into the awaitable (`PyIter_Send`, the C call `await` makes).
    fn send_none<'py>(&self, py: Python<'py>) -> Stepped<'py> {
        let ctx = self.ctx(py);
        let stepped = in_context(py, ctx.as_ref(), || {
            let it = match self.iter(py) {
                Ok(it) => it,
                Err(e) => return Stepped::Raised(e),
            };
            let mut out: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
            // SAFETY: `it` is a valid, attached object; `out` receives a new reference (or
            // NULL with an exception set, for `PYGEN_ERROR`).
            let status =
                unsafe { pyo3::ffi::PyIter_Send(it.as_ptr(), pyo3::ffi::Py_None(), &mut out) };
            match status {
                // SAFETY: a new reference, per `PyIter_Send`.
                pyo3::ffi::PySendResult::PYGEN_NEXT => {
                    Stepped::Yielded(unsafe { Bound::from_owned_ptr(py, out) })
                }
                // SAFETY: a new reference, per `PyIter_Send`.
                pyo3::ffi::PySendResult::PYGEN_RETURN => {
                    Stepped::Returned(unsafe { Bound::from_owned_ptr(py, out) })
                }
                pyo3::ffi::PySendResult::PYGEN_ERROR => Stepped::Raised(PyErr::fetch(py)),
            }
        });
        stepped.unwrap_or_else(Stepped::Raised)
    }

    /// Calls the iterator's `name` method (`send`/`throw`) with `arg`, as a step; `Err(arg)`
    /// raised when it has no such method (as `yield from` does).
    fn call_iter<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, pyo3::types::PyString>,
        arg: Bound<'py, PyAny>,
    ) -> Stepped<'py> {
        let ctx = self.ctx(py);
        let r = in_context(py, ctx.as_ref(), || {
            let it = self.iter(py)?;
            match it.getattr(name) {
                Ok(m) => m.call1((arg,)),
                Err(_) => Err(PyErr::from_value(arg)),
            }
        });
        match r.and_then(|r| r) {
            Ok(v) => Stepped::Yielded(v),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                let value = e
                    .value(py)
                    .getattr(intern!(py, "value"))
                    .unwrap_or_else(|_| py.None().into_bound(py));
                Stepped::Returned(value)
            }
            Err(e) => Stepped::Raised(e),
        }
    }

    /// Settles a step: the Task gets the yielded value, `None` (the attempts it ran are over),
    /// or the exception to raise into it. A finished attempt is reported to the run, and the
    /// attempt the run chains to this Task (if any) is stepped at once.
    fn settle<'py>(
        slf: &Bound<'py, Self>,
        mut s: Stepped<'py>,
        via: Via,
        began: Instant,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let me = slf.get();
        loop {
            let (ok, value, cancelled, reraise) = match s {
                Stepped::Yielded(v) => return Ok(Some(v)),
                Stepped::Returned(v) => (true, v, false, None),
                Stepped::Raised(e) => {
                    let exc = e.value(py).clone().into_any();
                    if e.is_instance(py, &cancelled_error(py)?) {
                        (false, exc, true, Some(e))
                    } else if e.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py) {
                        match foreign_loop_error(py, &exc) {
                            Some(mismatch) => (false, mismatch, false, None),
                            None => (false, exc, false, None),
                        }
                    } else if e.is_instance_of::<pyo3::exceptions::PyException>(py) {
                        (false, exc, false, None)
                    } else {
                        (false, exc, false, Some(e))
                    }
                }
            };
            let d = {
                let mut cur = me.cur.lock();
                if cur.reported {
                    return reraise.map_or(Ok(None), Err);
                }
                cur.reported = true;
                cur.d
            };
            let chain = reraise.is_none()
                && via == Via::Send
                && began.elapsed() < crate::py::plan::INLINE_BOUND
                && me.run.offer_task(py, d);
            me.run.task_done(py, d, ok, value, cancelled);
            let next = if chain { me.run.take_chained(py) } else { None };
            let Some(next) = next else {
                return reraise.map_or(Ok(None), Err);
            };
            // Cancelled while the report ran (the run was stopped): the Task delivers it at its
            // next step, as to a Task that never started (the awaitable is closed unstarted).
            let stopping = cancelling(py, &next.task);
            let done = std::mem::replace(
                &mut *me.cur.lock(),
                Current {
                    d: next.d,
                    awaitable: next.awaitable,
                    iter: None,
                    ctx: Some(next.ctx),
                    reported: false,
                },
            );
            drop(done); // outside the lock: dropping the finished coroutine may run Python
            if stopping {
                return Ok(Some(py.None().into_bound(py)));
            }
            s = me.send_none(py);
        }
    }
}

/// `batten._runtime.loops.foreign_loop_error(exc)`: the `EventLoopMismatchError` to record for
/// a `RuntimeError` raised by a step on `Workflow.run`'s helper thread, or `None`.
fn foreign_loop_error<'py>(py: Python<'py>, exc: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let f = FOREIGN_LOOP_ERROR
        .import(py, "batten._runtime.loops", "foreign_loop_error")
        .ok()?;
    f.call1((exc,)).ok().filter(|e| !e.is_none())
}

#[pymethods]
impl Driver {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// One step of the Task (`PyIter_Send(coro, None)`): steps the awaitable.
    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let began = Instant::now();
        let s = slf.get().send_none(slf.py());
        Self::settle(slf, s, Via::Send, began)
    }

    /// `send(value)`: `None` steps the awaitable; anything else goes to its iterator's `send`.
    fn send<'py>(
        slf: &Bound<'py, Self>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let began = Instant::now();
        let py = slf.py();
        let s = if value.is_none() {
            slf.get().send_none(py)
        } else {
            slf.get().call_iter(py, intern!(py, "send"), value)
        };
        Self::settle(slf, s, Via::Send, began)
    }

    /// `throw(exc)`: raises `exc` inside the awaitable where it waits (a Task cancelled, its
    /// `CancelledError`). Before the first step the awaitable is closed instead and `exc` is
    /// raised here, unreported (see the type's docs).
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        slf: &Bound<'py, Self>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let began = Instant::now();
        let py = slf.py();
        let me = slf.get();
        let exc = match val.filter(|v| !v.is_none()) {
            Some(v) if v.is_instance(&typ).unwrap_or(false) => v,
            Some(v) => typ.call1((v,))?,
            None if typ.is_instance_of::<pyo3::types::PyType>() => typ.call0()?,
            None => typ,
        };
        if let Some(tb) = tb.filter(|t| !t.is_none()) {
            exc.setattr(intern!(py, "__traceback__"), tb)?;
        }
        let unstarted = {
            let cur = me.cur.lock();
            cur.iter.is_none().then(|| cur.awaitable.clone_ref(py))
        };
        if let Some(aw) = unstarted {
            if is_coroutine(aw.bind(py)) {
                let _ = aw.call_method0(py, intern!(py, "close"));
            }
            return Err(PyErr::from_value(exc));
        }
        let s = me.call_iter(py, intern!(py, "throw"), exc);
        Self::settle(slf, s, Via::Throw, began)
    }

    /// `close()`: closes the awaitable; one that was running is reported as ended by
    /// `GeneratorExit` (as `await` inside a closed coroutine would).
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let (aw, started, ctx) = {
            let cur = me.cur.lock();
            (
                cur.iter.as_ref().unwrap_or(&cur.awaitable).clone_ref(py),
                cur.iter.is_some(),
                cur.ctx.as_ref().map(|c| c.clone_ref(py)),
            )
        };
        let aw = aw.into_bound(py);
        if started || is_coroutine(&aw) {
            in_context(py, ctx.as_ref(), || {
                match aw.getattr(intern!(py, "close")) {
                    Ok(close) => close.call0().map(drop),
                    Err(_) => Ok(()),
                }
            })??;
        }
        if started {
            let exit = pyo3::exceptions::PyGeneratorExit::new_err(())
                .into_value(py)
                .into_bound(py)
                .into_any();
            let s = Stepped::Raised(PyErr::from_value(exit));
            // Reported; the GeneratorExit itself is what closing means, not an error of close.
            let _ = Self::settle(slf, s, Via::Throw, Instant::now());
        }
        Ok(())
    }
}
