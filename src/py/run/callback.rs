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

static FOREIGN_LOOP_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The coroutine an async attempt's `asyncio.Task` runs: it steps the step's own awaitable
/// (forwarding `send`, `throw` and `close`, as `await` does) and reports the attempt's outcome to
/// the run from inside the Task's last step, so the run records it (and starts what it readies)
/// without waiting for a done-callback's loop iteration, as `asyncio.gather`'s children report
/// through `_done_callback` but one iteration earlier.
///
/// It replaces a Python `drive` coroutine and the callable it reported to: ~330 bytes and a
/// Python frame per task (~3.3 MB of a 10,000-step fan-out, benchmark M).
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
#[pyclass(module = "batten._core", frozen)]
pub(super) struct Driver {
    run: Arc<RunInner>,
    d: Dispatch,
    /// The step's awaitable: a coroutine, or an object with `__await__`.
    awaitable: Py<PyAny>,
    /// What is stepped, from the first step on: the awaitable itself if it is a coroutine, else
    /// its `__await__()` iterator.
    iter: Mutex<Option<Py<PyAny>>>,
    reported: std::sync::atomic::AtomicBool,
}

impl Driver {
    pub(super) fn new(run: &Arc<RunInner>, d: Dispatch, awaitable: Py<PyAny>) -> Self {
        Driver {
            run: Arc::clone(run),
            d,
            awaitable,
            iter: Mutex::new(None),
            reported: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The iterator to step, taken from the awaitable at the first step.
    fn iter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut slot = self.iter.lock();
        if let Some(it) = slot.as_ref() {
            return Ok(it.bind(py).clone());
        }
        let aw = self.awaitable.bind(py);
        let it = if is_coroutine(aw) {
            aw.clone()
        } else {
            aw.call_method0(intern!(py, "__await__"))?
        };
        *slot = Some(it.clone().unbind());
        Ok(it)
    }

    fn started(&self) -> bool {
        self.iter.lock().is_some()
    }

    /// Sends `None` into the awaitable (`PyIter_Send`, the C call `await` makes).
    fn send_none<'py>(&self, py: Python<'py>) -> Stepped<'py> {
        let it = match self.iter(py) {
            Ok(it) => it,
            Err(e) => return Stepped::Raised(e),
        };
        let mut out: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
        // SAFETY: `it` is a valid, attached object; `out` receives a new reference (or NULL
        // with an exception set, for `PYGEN_ERROR`).
        let status = unsafe { pyo3::ffi::PyIter_Send(it.as_ptr(), pyo3::ffi::Py_None(), &mut out) };
        match status {
            pyo3::ffi::PySendResult::PYGEN_NEXT => {
                // SAFETY: a new reference, per `PyIter_Send`.
                Stepped::Yielded(unsafe { Bound::from_owned_ptr(py, out) })
            }
            pyo3::ffi::PySendResult::PYGEN_RETURN => {
                // SAFETY: a new reference, per `PyIter_Send`.
                Stepped::Returned(unsafe { Bound::from_owned_ptr(py, out) })
            }
            pyo3::ffi::PySendResult::PYGEN_ERROR => Stepped::Raised(PyErr::fetch(py)),
        }
    }

    /// A call of the iterator's `send`/`throw` method, as a step.
    fn stepped<'py>(py: Python<'py>, r: PyResult<Bound<'py, PyAny>>) -> Stepped<'py> {
        match r {
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

    /// Reports a finished step to the run and says what the Task sees: the yielded value,
    /// `None` (the coroutine returned), or the exception to raise into it.
    fn settle<'py>(&self, py: Python<'py>, s: Stepped<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
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
        if !self
            .reported
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            self.run.task_done(py, self.d, ok, value, cancelled);
        }
        match reraise {
            Some(e) => Err(e),
            None => Ok(None),
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
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let s = self.send_none(py);
        self.settle(py, s)
    }

    /// `send(value)`: `None` steps the awaitable; anything else goes to its iterator's `send`.
    fn send<'py>(
        &self,
        py: Python<'py>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let s = if value.is_none() {
            self.send_none(py)
        } else {
            match self.iter(py) {
                Ok(it) => Self::stepped(py, it.call_method1(intern!(py, "send"), (value,))),
                Err(e) => Stepped::Raised(e),
            }
        };
        self.settle(py, s)
    }

    /// `throw(exc)`: raises `exc` inside the awaitable where it waits (a Task cancelled, its
    /// `CancelledError`). Before the first step the awaitable is closed instead and `exc` is
    /// raised here, unreported (see the type's docs).
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let exc = match val.filter(|v| !v.is_none()) {
            Some(v) if v.is_instance(&typ).unwrap_or(false) => v,
            Some(v) => typ.call1((v,))?,
            None if typ.is_instance_of::<pyo3::types::PyType>() => typ.call0()?,
            None => typ,
        };
        if let Some(tb) = tb.filter(|t| !t.is_none()) {
            exc.setattr(intern!(py, "__traceback__"), tb)?;
        }
        if !self.started() {
            let aw = self.awaitable.bind(py);
            if is_coroutine(aw) {
                let _ = aw.call_method0(intern!(py, "close"));
            }
            return Err(PyErr::from_value(exc));
        }
        let it = self.iter(py)?;
        let s = match it.getattr(intern!(py, "throw")) {
            Ok(throw) => Self::stepped(py, throw.call1((exc,))),
            Err(_) => Stepped::Raised(PyErr::from_value(exc)),
        };
        self.settle(py, s)
    }

    /// `close()`: closes the awaitable; one that was running is reported as ended by
    /// `GeneratorExit` (as `await` inside a closed coroutine would).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let started = self.started();
        let aw = self.awaitable.bind(py);
        let target = if started { self.iter(py)? } else { aw.clone() };
        if started || is_coroutine(aw) {
            if let Ok(close) = target.getattr(intern!(py, "close")) {
                close.call0()?;
            }
        }
        if started
            && !self
                .reported
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let exit = pyo3::exceptions::PyGeneratorExit::new_err(())
                .into_value(py)
                .into_bound(py)
                .into_any();
            self.run.task_done(py, self.d, false, exit, false);
        }
        Ok(())
    }
}
