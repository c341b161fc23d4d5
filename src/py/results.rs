//! `StepResult`: the record of one step of one run.
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString};
use pyo3::{PyTraverseError, PyVisit};

use crate::engine::scheduler::StepState;

static STEP_STATUS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

/// The `batten.StepStatus` member for an engine state. The enum is defined in Python so users get
/// a real `StrEnum`; its members are looked up once per process.
/// NOTE: calling `StepStatus(value)` per result cost ~1.8 µs a step in W1, over twice the
/// engine's own cost.
pub fn status_member(py: Python<'_>, state: StepState) -> PyResult<Py<PyAny>> {
    let members = STEP_STATUS.get_or_try_init(py, || -> PyResult<_> {
        let cls = py
            .import("batten._internal.status")?
            .getattr("StepStatus")?;
        StepState::ALL
            .iter()
            .map(|s| Ok(cls.call1((s.as_str(),))?.unbind()))
            .collect()
    })?;
    let i = StepState::ALL.iter().position(|s| *s == state).unwrap_or(0);
    Ok(members[i].clone_ref(py))
}

static WORKFLOW_STATUS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The `batten.WorkflowStatus` member whose value is `value` (e.g. `"completed"`): the enum's
/// `_value2member_map_` lookup, not `WorkflowStatus(value)` (a Python-level `EnumType.__call__`,
/// ~4,000 instructions a run).
pub fn workflow_status_member(py: Python<'_>, value: &str) -> PyResult<Py<PyAny>> {
    let members = WORKFLOW_STATUS.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("batten._internal.status")?
            .getattr("WorkflowStatus")?
            .getattr("_value2member_map_")?
            .unbind())
    })?;
    Ok(members.bind(py).get_item(value)?.unbind())
}

/// The engine state of a `StepStatus` or its string value.
fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<StepState> {
    let s: String = status.str()?.extract()?;
    StepState::parse(&s).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("StepResult.status: unknown status {s:?}"))
    })
}

/// `StepResult.attempts` given by hand: an int from 0 to `u32::MAX` (`None` is 0); anything
/// else is a `WorkflowDefinitionError` naming the field (pyo3's own extraction would raise a
/// bare `OverflowError` for `10**20`).
fn checked_attempts(obj: Option<&Bound<'_, PyAny>>) -> PyResult<u32> {
    Ok(crate::py::args::count32(obj, 0, || "StepResult.attempts".to_string())?.unwrap_or(0))
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
    /// The plan's own str object for the id (see `plan::StepSpec::pyid`): no string is built
    /// per result.
    #[pyo3(get)]
    pub step_id: Py<PyString>,
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
    /// Made on first read when the engine had nothing to put in it (see `StepResult::metadata`).
    pub metadata: std::sync::OnceLock<Py<PyDict>>,
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
    ///     WorkflowDefinitionError: ``attempts`` is not an int (a bool is not) from 0 to
    ///         ``2**32 - 1``.
    #[new]
    #[pyo3(
        signature = (step_id, status, output=None, error=None, error_type=None, exception=None, attempts=None, execution_time_ms=0.0, metadata=None, children=None),
        text_signature = "(step_id, status, output=None, error=None, error_type=None, exception=None, attempts=0, execution_time_ms=0.0, metadata=None, children=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        step_id: String,
        status: &Bound<'_, PyAny>,
        output: Option<Py<PyAny>>,
        error: Option<String>,
        error_type: Option<String>,
        exception: Option<Py<PyAny>>,
        attempts: Option<&Bound<'_, PyAny>>,
        execution_time_ms: f64,
        metadata: Option<Bound<'_, PyDict>>,
        children: Option<Bound<'_, PyList>>,
    ) -> PyResult<Self> {
        let state = parse_status(status)?;
        let attempts = checked_attempts(attempts)?;
        Ok(StepResult {
            step_id: PyString::new(py, &step_id).unbind(),
            status: status_member(py, state)?,
            output: output.unwrap_or_else(|| py.None()),
            error,
            error_type,
            exception,
            attempts,
            execution_time_ms,
            metadata: match metadata {
                Some(m) => std::sync::OnceLock::from(m.unbind()),
                None => std::sync::OnceLock::new(),
            },
            children: children.map(Bound::unbind),
            state,
        })
    }

    /// A copy with the fields named in ``changes`` replaced (as ``dataclasses.replace``; the
    /// others are shared, not copied).
    ///
    /// Args:
    ///     **changes: new values for any of ``step_id``, ``status``, ``output``, ``error``,
    ///         ``error_type``, ``exception``, ``attempts``, ``execution_time_ms``, ``metadata``
    ///         and ``children``, typed as for the constructor.
    ///
    /// Raises:
    ///     TypeError: a name that is not a field, or a value of the wrong type.
    ///     ValueError: ``status`` is not a ``StepStatus`` value.
    ///     WorkflowDefinitionError: ``attempts`` out of range (as for the constructor).
    #[pyo3(signature = (**changes))]
    fn replace(&self, py: Python<'_>, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut new = StepResult {
            step_id: self.step_id.clone_ref(py),
            status: self.status.clone_ref(py),
            output: self.output.clone_ref(py),
            error: self.error.clone(),
            error_type: self.error_type.clone(),
            exception: self.exception.as_ref().map(|e| e.clone_ref(py)),
            attempts: self.attempts,
            execution_time_ms: self.execution_time_ms,
            // Shared, as the other fields are: a dict not made yet is made now.
            metadata: std::sync::OnceLock::from(self.metadata(py)),
            children: self.children.as_ref().map(|c| c.clone_ref(py)),
            state: self.state,
        };
        for (name, value) in changes.into_iter().flatten() {
            let name: String = name.extract()?;
            match name.as_str() {
                "step_id" => {
                    let id: String = value.extract()?;
                    new.step_id = PyString::new(py, &id).unbind();
                }
                "status" => {
                    new.state = parse_status(&value)?;
                    new.status = status_member(py, new.state)?;
                }
                "output" => new.output = value.unbind(),
                "error" => new.error = value.extract()?,
                "error_type" => new.error_type = value.extract()?,
                "exception" => new.exception = (!value.is_none()).then(|| value.unbind()),
                "attempts" => new.attempts = checked_attempts(Some(&value))?,
                "execution_time_ms" => new.execution_time_ms = value.extract()?,
                "metadata" => {
                    new.metadata = match value.is_none() {
                        true => std::sync::OnceLock::new(),
                        false => std::sync::OnceLock::from(value.cast_into::<PyDict>()?.unbind()),
                    }
                }
                "children" => {
                    new.children = match value.is_none() {
                        true => None,
                        false => Some(value.cast_into::<PyList>()?.unbind()),
                    }
                }
                other => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "StepResult.replace() got an unexpected field {other:?}"
                    )))
                }
            }
        }
        Ok(new)
    }

    /// Extra facts about the step (see the class docs): a dict, the same object on every read,
    /// so changes to it stay. Copy-on-first-read: a result with nothing to report makes its
    /// (empty) dict only when it is read.
    #[getter]
    fn metadata(&self, py: Python<'_>) -> Py<PyDict> {
        self.metadata
            .get_or_init(|| PyDict::new(py).unbind())
            .clone_ref(py)
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
            self.step_id.bind(py).to_cow()?,
            self.state.as_str(),
            self.attempts,
            self.execution_time_ms
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.output)?;
        visit.call(&self.exception)?;
        visit.call(self.metadata.get())?;
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
/// A composite that fails raises ``CompositeFailure(error, nested)``, so its children are kept.
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

/// What a composite step raises when it fails: the exception of the child that failed it
/// (`error`) and the composite's own results so far (`nested`). Private: raised by batten's
/// composite steps, unwrapped by the engine, which records `error` as the step's exception (its
/// type, message and object) with `nested`'s children and metadata. Never reaches user code.
#[pyclass(module = "batten._core", name = "CompositeFailure", extends = pyo3::exceptions::PyException, frozen)]
pub struct CompositeFailure {
    /// The child's exception (a `BaseException`).
    #[pyo3(get)]
    pub error: Py<PyAny>,
    #[pyo3(get)]
    pub nested: Py<Nested>,
}

#[pymethods]
impl CompositeFailure {
    /// Args:
    ///     error (BaseException): the exception the composite fails with.
    ///     nested (Nested): the composite's children and metadata to keep.
    ///
    /// Raises:
    ///     TypeError: ``error`` is not an exception.
    #[new]
    fn new(error: Bound<'_, pyo3::exceptions::PyBaseException>, nested: Py<Nested>) -> Self {
        CompositeFailure {
            error: error.into_any().unbind(),
            nested,
        }
    }

    fn __str__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.error.bind(py).str()?.to_string())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.error)?;
        visit.call(&self.nested)
    }
}

/// A finished run, as `Run.outcome()` returns it. Private: ``batten.Workflow`` and the
/// composite steps read it.
///
/// Attributes:
///     run_id (str): the run's id.
///     status (WorkflowStatus): ``COMPLETED``, ``FAILED``, ``CANCELLED`` or ``PAUSED`` (a str
///         enum, equal to its value ``"completed"`` ...).
///     steps (list[StepResult]): every step's result; steps that ran first, each group in
///         completion order.
///     final_output: the output of the last-declared sink step that has one, else ``None``.
///     error (str | None): why the run did not complete (``"step: Type: message"`` of the first
///         failure, or the run's timeout or cancellation).
///     elapsed_ms (float): milliseconds from the start to the end of the run.
///     context (WorkflowContext): the final context (every completed step merged in).
#[pyclass(module = "batten._core", name = "RunOutcome", frozen)]
pub struct RunOutcome {
    #[pyo3(get)]
    pub run_id: Py<PyString>,
    #[pyo3(get)]
    pub status: Py<PyAny>,
    #[pyo3(get)]
    pub steps: Py<PyList>,
    #[pyo3(get)]
    pub final_output: Py<PyAny>,
    #[pyo3(get)]
    pub error: Option<String>,
    #[pyo3(get)]
    pub elapsed_ms: f64,
    #[pyo3(get)]
    pub context: Py<crate::py::context::WorkflowContext>,
}

#[pymethods]
impl RunOutcome {
    /// The result of the step with id ``step_id`` (str), or ``None``.
    fn by_id(&self, py: Python<'_>, step_id: &str) -> Option<Py<StepResult>> {
        self.steps.bind(py).iter().find_map(|s| {
            let s = s.cast_into::<StepResult>().ok()?;
            let id = s.get().step_id.bind(py).to_cow().ok()?;
            (id == step_id).then(|| s.unbind())
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "RunOutcome(run_id={:?}, status={:?}, steps={}, error={:?}, elapsed_ms={:.3})",
            self.run_id.bind(py).to_string(),
            self.status
                .bind(py)
                .str()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            self.steps.bind(py).len(),
            self.error,
            self.elapsed_ms
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.status)?;
        visit.call(&self.steps)?;
        visit.call(&self.final_output)?;
        visit.call(&self.context)
    }
}
