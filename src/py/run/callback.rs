//! The callables handed to asyncio, and `Run`, the handle `batten.Workflow` holds.
use super::*;

pub(super) enum CbKind {
    Done(Dispatch),
    Unwound(Dispatch),
    Deadline(Dispatch),
    Start(Dispatch),
    Retry(usize),
    RunDeadline,
    Settle,
    Finish,
    /// A parked attempt may start (its wait passed, or a limiter freed a slot).
    Unpark,
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
            CbKind::Unpark => {
                {
                    let mut st = run.lock(py);
                    if st.wake_at.is_some_and(|w| w <= Instant::now()) {
                        st.wake_at = None;
                    }
                }
                run.pump(py, Where::Loop);
            }
        }
        Ok(())
    }
}

/// A started run. Private: `batten.Workflow.execute` awaits it and builds the `WorkflowResult`.
#[pyclass(module = "batten._core", name = "Run", frozen)]
pub struct Run {
    pub(super) inner: Arc<RunInner>,
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

    /// Pauses the run (call on the loop thread): running steps finish, nothing new starts, and
    /// the run ends with status `paused` once nothing is in flight.
    fn pause(&self, py: Python<'_>) {
        self.inner.pause(py);
    }

    /// `(status, steps, final_output, error, total_execution_time_ms, context)`.
    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.inner.outcome(py)
    }
}
