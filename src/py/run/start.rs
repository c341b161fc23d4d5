//! Starting a run (`Run.start`, the bridge's entry point), and `Run`, the handle Python holds.
use super::*;
use crate::py::args;
use crate::py::errors::WorkflowDefinitionError;
use crate::py::plan::Plan;
use crate::py::results::RunOutcome;

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn call_cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let f = cell.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import(module)?.getattr(name)?.unbind())
    })?;
    f.bind(py).call0()
}

/// A started run. Private: `batten._runtime.run.run_plan` starts one, awaits `done` and reads its
/// `outcome()`.
#[pyclass(module = "batten._core", name = "Run", frozen)]
pub struct Run {
    pub(super) inner: Arc<RunInner>,
}

#[pymethods]
impl Run {
    /// Starts a run of `plan` from `context` on the running event loop (call from a coroutine
    /// on the loop's thread).
    ///
    /// Args:
    ///     plan (Plan): the compiled workflow.
    ///     context (WorkflowContext): the state the run starts from.
    ///     pycontext (contextvars.Context | None): every step runs in a copy of it; default a
    ///         copy of the caller's.
    ///     timeout (float | None): seconds the whole run may take; default no limit.
    ///     max_concurrency (int | None): at most this many steps in flight (the smaller of it
    ///         and the plan's `max_parallel` wins); default no limit.
    ///     on_event (callable | None): `on_event(kind, step_id, attempt, payload)`, called with
    ///         each engine event as it happens, on the thread where it happens (see
    ///         `run::Event`).
    ///     journal (Journal | None): makes the run durable: it checkpoints each step to the
    ///         journal's store and restores the steps the journal holds as completed.
    ///
    /// Returns the `Run`; await its `done` future, then read `outcome()`.
    ///
    /// Raises:
    ///     RuntimeError: no event loop is running in this thread; the plan was cleared.
    ///     WorkflowDefinitionError: `timeout` not a positive number, `max_concurrency` not an
    ///         int from 1 to the largest `usize`.
    ///     CorruptRecordError: a restored checkpoint cannot be decoded.
    #[staticmethod]
    #[pyo3(signature = (plan, context, *, pycontext=None, timeout=None, max_concurrency=None, on_event=None, journal=None))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        plan: &Bound<'_, Plan>,
        context: &Bound<'_, WorkflowContext>,
        pycontext: Option<Bound<'_, PyAny>>,
        timeout: Option<Bound<'_, PyAny>>,
        max_concurrency: Option<Bound<'_, PyAny>>,
        on_event: Option<Py<PyAny>>,
        journal: Option<Bound<'_, Journal>>,
    ) -> PyResult<Run> {
        let event_loop = call_cached(py, &GET_RUNNING_LOOP, "asyncio", "get_running_loop")?;
        let plan = plan.borrow().inner()?;
        let timeout = args::number(timeout.as_ref(), || "execute(timeout=...)".to_string())?;
        if let Some(t) = timeout {
            if !(t.is_finite() && t > 0.0) {
                return Err(WorkflowDefinitionError::new_err(format!(
                    "execute(timeout=...) must be a positive number of seconds, got {t}"
                )));
            }
        }
        let max_concurrency = args::count(max_concurrency.as_ref(), 1, || {
            "execute(max_concurrency=...) (the most steps in flight at once)".to_string()
        })?;
        let pycontext = match pycontext.filter(|c| !c.is_none()) {
            Some(c) => c,
            None => call_cached(py, &COPY_CONTEXT, "contextvars", "copy_context")?,
        };
        // SAFETY: a type check on a valid, attached object pointer.
        if unsafe { pyo3::ffi::PyContext_CheckExact(pycontext.as_ptr()) } == 0 {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "Run.start(pycontext=...) must be a contextvars.Context, got {}",
                args::shown(&pycontext)
            )));
        }
        let done = event_loop.call_method0(intern!(py, "create_future"))?;
        let inner = RunInner::start(
            py,
            plan,
            context.get(),
            RunArgs {
                event_loop,
                pycontext,
                done,
                timeout,
                max_concurrency,
                on_event: on_event.filter(|cb| !cb.is_none(py)),
                journal: journal.map(|j| j.get().clone()),
            },
        )?;
        Ok(Run { inner })
    }

    /// The run's id (uuid4 hex, or the durable run's store id).
    #[getter]
    fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// An `asyncio.Future` of the run's loop, resolved (with `None`) when the run has ended.
    #[getter]
    fn done(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner.done.clone_ref(py)
    }

    /// Cancels the run (call on the loop thread): running tasks are cancelled, sync steps
    /// abandoned, pending steps CANCELLED. Returns a future that resolves once every cancelled
    /// task has finished unwinding, or `None` when none is left.
    fn cancel(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner.stop(py, Stop::Cancelled);
        let mut st = self.inner.lock(py);
        if st.tasks.live.is_empty() {
            return Ok(None);
        }
        let fut = self
            .inner
            .event_loop
            .call_method0(py, intern!(py, "create_future"))?;
        st.end.cancel_waiters.push(fut.clone_ref(py));
        Ok(Some(fut))
    }

    /// Pauses the run (call on the loop thread): running steps finish, nothing new starts, and
    /// the run ends with status `paused` once nothing is in flight.
    fn pause(&self, py: Python<'_>) {
        self.inner.pause(py);
    }

    /// The finished run's `RunOutcome` (call once `done` has resolved).
    fn outcome(&self, py: Python<'_>) -> PyResult<RunOutcome> {
        self.inner.outcome(py)
    }
}

/// What `Run.start` hands `RunInner::start` besides the plan and the context.
struct RunArgs<'py> {
    event_loop: Bound<'py, PyAny>,
    pycontext: Bound<'py, PyAny>,
    done: Bound<'py, PyAny>,
    timeout: Option<f64>,
    max_concurrency: Option<usize>,
    on_event: Option<Py<PyAny>>,
    journal: Option<Journal>,
}

impl RunInner {
    fn start(
        py: Python<'_>,
        plan: Arc<PlanInner>,
        ctx: &WorkflowContext,
        args: RunArgs<'_>,
    ) -> PyResult<Arc<Self>> {
        let RunArgs {
            event_loop,
            pycontext,
            done,
            timeout,
            max_concurrency,
            on_event,
            journal,
        } = args;
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
            None => uuid4_hex(&mut rng),
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
            lease_halted: std::sync::atomic::AtomicBool::new(false),
            loop_hidden: std::sync::atomic::AtomicBool::new(false),
            task_class: PyOnceLock::new(),
            keys: KeyCache::default(),
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
                tasks: Tasks::default(),
                traffic: Traffic::default(),
                retry: Retries {
                    immediate: Vec::new(),
                    rng,
                    used: 0,
                },
                timing: Timing::default(),
                end: Ending::default(),
                events: Vec::new(),
            }),
            plan,
        });
        if let Some(t) = timeout {
            let cb = Callback::new(&inner, CbKind::RunDeadline);
            let h = inner
                .event_loop
                .call_method1(py, intern!(py, "call_later"), (t, cb))?;
            inner.lock(py).timing.run_timer = Some(h);
        }
        inner.restore(py)?;
        inner.pump(py, Where::Loop);
        Ok(inner)
    }
}
