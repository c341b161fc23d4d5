//! What a Python exception is, decided once: its `ErrorKind` (what the run does with it besides
//! retrying) and the facts the engine's retry classification needs (the decision itself is
//! `engine::retry::classify`). Here are only isinstance checks against the classes Python
//! defines (`batten.errors`, `batten.steps.approval`, `asyncio`) and attribute reads; nothing compares
//! type names.
use pyo3::exceptions::{
    PyAttributeError, PyConnectionError, PyKeyError, PyNameError, PyNotImplementedError,
    PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use crate::engine::retry::ErrorFacts;
use crate::py::errors::{CircuitOpenError, StepTimeoutError};

static CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static BATTEN_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static APPROVAL_PENDING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import(module)?.getattr(name)?.unbind())
    })
    .map(|c| c.bind(py).clone())
}

/// `asyncio.CancelledError`.
pub fn cancelled_error(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    cached(py, &CANCELLED, "asyncio", "CancelledError")
}

/// What an attempt's exception means to the run, beyond whether to retry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The step failed (any exception not listed below).
    Failure,
    /// `batten.errors.StepTimeoutError`: the step timed out (a nested run's step did).
    Timeout,
    /// `asyncio.CancelledError`: the step was cancelled; it says nothing about the callee.
    Cancelled,
    /// `batten.errors.CircuitOpenError`: a breaker refused the attempt; the callee never ran.
    CircuitOpen,
    /// `batten.steps.approval.ApprovalPending`: a human approval is still waiting. Not a failure that
    /// ends the step's siblings: parallel branches must all reach their approvals.
    ApprovalPending,
}

impl ErrorKind {
    /// Whether a breaker guarding the step counts this as the callee's failure.
    pub fn counts_against_breaker(self) -> bool {
        !matches!(self, ErrorKind::Cancelled | ErrorKind::CircuitOpen)
    }
}

/// The kind of `exc`, an attempt's exception (never a `CompositeFailure`: `record` unwraps it).
pub fn error_kind(exc: &Bound<'_, PyAny>) -> ErrorKind {
    let py = exc.py();
    let is = |c: PyResult<Bound<'_, PyAny>>| c.is_ok_and(|c| exc.is_instance(&c).unwrap_or(false));
    if exc.is_instance_of::<StepTimeoutError>() {
        ErrorKind::Timeout
    } else if exc.is_instance_of::<CircuitOpenError>() {
        ErrorKind::CircuitOpen
    } else if is(cancelled_error(py)) {
        ErrorKind::Cancelled
    } else if is(cached(
        py,
        &APPROVAL_PENDING,
        "batten.steps.approval",
        "ApprovalPending",
    )) {
        ErrorKind::ApprovalPending
    } else {
        ErrorKind::Failure
    }
}

unsafe extern "C" {
    // Private but exported by every CPython 3.x: the MRO lookup behind attribute access, which
    // returns NULL (setting no exception) when no class defines the name. pyo3-ffi omits it.
    fn _PyType_Lookup(
        tp: *mut pyo3::ffi::PyTypeObject,
        name: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
}

/// `getattr(obj, name, None)` without raising internally when the attribute is missing.
/// NOTE: on 3.11 a missing attribute on an exception formats an AttributeError message even for
/// `getattr_opt`; probing six names that way was ~5 µs of every failed attempt (W4).
fn attr<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Option<Bound<'py, PyAny>> {
    let py = obj.py();
    let key = pyo3::types::PyString::new(py, name);
    if let Ok(Some(dict)) = obj.getattr_opt(pyo3::intern!(py, "__dict__")) {
        if let Ok(dict) = dict.cast::<pyo3::types::PyDict>() {
            if let Ok(Some(v)) = dict.get_item(&key) {
                return Some(v);
            }
        }
        // SAFETY: both pointers are valid while attached; the borrowed result is only compared
        // with NULL.
        let on_type =
            unsafe { !_PyType_Lookup(obj.get_type().as_type_ptr(), key.as_ptr()).is_null() };
        if !on_type {
            return None;
        }
    }
    obj.getattr_opt(&key).ok().flatten()
}

fn http_status(exc: &Bound<'_, PyAny>) -> Option<u16> {
    let read = |o: &Bound<'_, PyAny>, name: &str| -> Option<u16> {
        let n: i64 = attr(o, name)?.extract().ok()?;
        (100..600).contains(&n).then_some(n as u16)
    };
    read(exc, "status_code")
        .or_else(|| read(exc, "status"))
        .or_else(|| {
            let resp = attr(exc, "response")?;
            read(&resp, "status_code").or_else(|| read(&resp, "status"))
        })
}

fn retry_after(exc: &Bound<'_, PyAny>) -> Option<f64> {
    let number = |v: Bound<'_, PyAny>| -> Option<f64> {
        v.extract::<f64>()
            .ok()
            .or_else(|| v.extract::<String>().ok()?.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    if let Some(s) = attr(exc, "retry_after").and_then(number) {
        return Some(s);
    }
    let from_headers = |o: &Bound<'_, PyAny>| -> Option<f64> {
        let headers = attr(o, "headers")?;
        ["Retry-After", "retry-after"]
            .iter()
            .find_map(|k| headers.call_method1("get", (*k,)).ok().and_then(number))
    };
    from_headers(exc).or_else(|| from_headers(&attr(exc, "response")?))
}

/// The facts about `exc` for the step's policy (`retry_on` / `non_retryable` tuples, if any).
pub fn facts(
    exc: &Bound<'_, PyAny>,
    retry_on: Option<&Py<PyTuple>>,
    non_retryable: Option<&Py<PyTuple>>,
) -> ErrorFacts {
    let py = exc.py();
    let is = |cls: &Bound<'_, PyAny>| exc.is_instance(cls).unwrap_or(false);
    let is_type = |t: Bound<'_, pyo3::types::PyType>| is(t.as_any());
    let status = http_status(exc);
    ErrorFacts {
        is_timeout: is_type(py.get_type::<PyTimeoutError>()),
        is_connection: is_type(py.get_type::<PyConnectionError>()),
        http_status: status,
        retry_after: retry_after(exc),
        matches_retry_on: retry_on.map(|t| is(t.bind(py).as_any())),
        matches_non_retryable: non_retryable.is_some_and(|t| is(t.bind(py).as_any())),
        is_programming_error: is_type(py.get_type::<PyTypeError>())
            || is_type(py.get_type::<PyValueError>())
            || is_type(py.get_type::<PyAttributeError>())
            || is_type(py.get_type::<PyNameError>())
            || is_type(py.get_type::<PyKeyError>())
            || is_type(py.get_type::<PyNotImplementedError>())
            || cached(py, &BATTEN_ERROR, "batten.errors", "BattenError").is_ok_and(|c| is(&c)),
        is_cancellation: cancelled_error(py).is_ok_and(|c| is(&c)),
    }
}
