//! The callables handed to asyncio: done-callbacks, `call_later` and `call_soon_threadsafe`.
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
