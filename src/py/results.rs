//! `StepResult`: the record of one step of one run.
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};
use pyo3::{PyTraverseError, PyVisit};

use crate::engine::scheduler::StepState;

static STEP_STATUS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

/// The `batten.StepStatus` member for an engine state. The enum is defined in Python so users get
/// a real `StrEnum`; its members are looked up once per process.
/// NOTE: calling `StepStatus(value)` per result cost ~1.8 µs a step in W1, over twice the
/// engine's own cost.
pub fn status_member(py: Python<'_>, state: StepState) -> PyResult<Py<PyAny>> {
    let members = STEP_STATUS.get_or_try_init(py, || -> PyResult<_> {
        let cls = py.import("batten._status")?.getattr("StepStatus")?;
        StepState::ALL
            .iter()
            .map(|s| Ok(cls.call1((s.as_str(),))?.unbind()))
            .collect()
    })?;
    let i = StepState::ALL.iter().position(|s| *s == state).unwrap_or(0);
    Ok(members[i].clone_ref(py))
}

/// What happened to one step in one run (JAF's ``StepResult``).
///
/// Attributes:
///     step_id (str): the step's id.
///     status (StepStatus): its final status.
///     output: the step's return value (``None`` unless ``COMPLETED``).
///     error (str | None): the message of the exception that ended the last attempt.
///     error_type (str | None): that exception's class name, e.g. ``"ValueError"``, or
///         ``"StepTimeoutError"`` for a timeout.
///     exception (BaseException | None): the exception object itself.
///     attempts (int): attempts started (0 for a step that never ran).
///     execution_time_ms (float): milliseconds from the first attempt's start to the end of the
///         last, backoff waits included.
///     metadata (dict): extra facts, e.g. ``{"abandoned": True}`` for a sync step left running
///         after its timeout, ``{"cancel_ignored": True}`` for an async step that swallowed
///         cancellation, ``{"iterations": 3}`` for a ``LoopStep``, ``{"branch": "b"}`` for a
///         ``ConditionalStep`` or ``RouterStep``.
///     children (list[StepResult]): the results of the steps a composite step ran (the branches
///         of a ``ParallelStep``, the items of a ``MapStep``, a sub-workflow's steps, the
///         iterations of a ``LoopStep``, a step and its fallback), in completion order; empty for
///         a plain step.
#[pyclass(module = "batten", name = "StepResult", frozen)]
pub struct StepResult {
    #[pyo3(get)]
    pub step_id: String,
    #[pyo3(get)]
    pub status: Py<PyAny>,
    #[pyo3(get)]
    pub output: Py<PyAny>,
    #[pyo3(get)]
    pub error: Option<String>,
    #[pyo3(get)]
    pub error_type: Option<String>,
    #[pyo3(get)]
    pub exception: Option<Py<PyAny>>,
    #[pyo3(get)]
    pub attempts: u32,
    #[pyo3(get)]
    pub execution_time_ms: f64,
    #[pyo3(get)]
    pub metadata: Py<PyDict>,
    /// `None` for a plain step (NOTE: an empty list per result cost W1 ~0.04 µs a step).
    pub children: Option<Py<PyList>>,
    pub state: StepState,
}

#[pymethods]
impl StepResult {
    /// Builds a result by hand (adapters and tests); the engine makes its own.
    ///
    /// Args:
    ///     step_id: the step's id.
    ///     status: a ``StepStatus`` or its string value.
    ///     output, error, error_type, exception, attempts, execution_time_ms, metadata,
    ///         children: as the attributes of the same names.
    ///
    /// Raises:
    ///     ValueError: ``status`` is not a ``StepStatus`` value.
    #[new]
    #[pyo3(signature = (step_id, status, output=None, error=None, error_type=None, exception=None, attempts=0, execution_time_ms=0.0, metadata=None, children=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        step_id: String,
        status: &Bound<'_, PyAny>,
        output: Option<Py<PyAny>>,
        error: Option<String>,
        error_type: Option<String>,
        exception: Option<Py<PyAny>>,
        attempts: u32,
        execution_time_ms: f64,
        metadata: Option<Bound<'_, PyDict>>,
        children: Option<Bound<'_, PyList>>,
    ) -> PyResult<Self> {
        let s: String = status.str()?.extract()?;
        let state = StepState::parse(&s).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "StepResult.status: unknown status {s:?}"
            ))
        })?;
        Ok(StepResult {
            step_id,
            status: status_member(py, state)?,
            output: output.unwrap_or_else(|| py.None()),
            error,
            error_type,
            exception,
            attempts,
            execution_time_ms,
            metadata: metadata
                .map(Bound::unbind)
                .unwrap_or_else(|| PyDict::new(py).unbind()),
            children: children.map(Bound::unbind),
            state,
        })
    }

    /// True when the step completed.
    #[getter]
    fn is_success(&self) -> bool {
        self.state == StepState::Completed
    }

    /// The nested results of a composite step (see the class docs); a new empty list for a
    /// plain step.
    #[getter]
    fn children(&self, py: Python<'_>) -> Py<PyList> {
        match &self.children {
            Some(c) => c.clone_ref(py),
            None => PyList::empty(py).unbind(),
        }
    }

    /// Alias of ``is_success`` (the name JAF's ``WorkflowLogger`` example reads).
    #[getter]
    fn success(&self) -> bool {
        self.is_success()
    }

    /// True when the step failed or timed out (blocked, skipped and cancelled steps are neither).
    #[getter]
    fn is_failure(&self) -> bool {
        self.state.is_failure()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let tail = match (&self.error_type, &self.error) {
            (Some(t), Some(e)) => format!(", error={t}: {e:?}"),
            _ => format!(", output={}", self.output.bind(py).repr()?),
        };
        Ok(format!(
            "StepResult(step_id={:?}, status={}, attempts={}, execution_time_ms={:.3}{tail})",
            self.step_id,
            self.state.as_str(),
            self.attempts,
            self.execution_time_ms
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.output)?;
        visit.call(&self.exception)?;
        visit.call(&self.metadata)?;
        visit.call(&self.children)
    }
}

/// What a composite step (``ParallelStep``, ``MapStep``, ...) returns to the engine instead of a
/// bare output. Private: built by ``batten``'s composite steps.
///
/// ``output`` is the step's output; ``delta`` (dict or ``None``) the variables it adds to the
/// state, merged as a dict output would be (``None``: the output itself, if a dict);
/// ``children`` the nested step results; ``metadata`` facts merged into the step's metadata;
/// ``skipped`` ends the step ``SKIPPED`` (a ``ConditionalStep`` with no branch to take);
/// ``attempts`` replaces the step's attempt count (a step run inside a recovery wrapper).
/// A composite that fails raises with a ``Nested`` in the exception's ``_batten_nested``
/// attribute, so its children are kept.
#[pyclass(module = "batten._core", name = "Nested", frozen)]
pub struct Nested {
    pub output: Py<PyAny>,
    pub delta: Option<Py<PyDict>>,
    pub children: Option<Py<PyList>>,
    pub metadata: Option<Py<PyDict>>,
    pub skipped: bool,
    pub attempts: Option<u32>,
}

#[pymethods]
impl Nested {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (output=None, *, delta=None, children=None, metadata=None, skipped=false, attempts=None))]
    fn new(
        py: Python<'_>,
        output: Option<Py<PyAny>>,
        delta: Option<Py<PyDict>>,
        children: Option<Py<PyList>>,
        metadata: Option<Py<PyDict>>,
        skipped: bool,
        attempts: Option<u32>,
    ) -> Self {
        Nested {
            output: output.unwrap_or_else(|| py.None()),
            delta,
            children,
            metadata,
            skipped,
            attempts,
        }
    }

    /// The step's output.
    #[getter]
    fn output(&self, py: Python<'_>) -> Py<PyAny> {
        self.output.clone_ref(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.output)?;
        visit.call(&self.delta)?;
        visit.call(&self.children)?;
        visit.call(&self.metadata)
    }
}
