//! What a Python exception is, decided once: its `ErrorKind` (what the run does with it besides
//! retrying) and the facts the engine's retry classification needs (the decision itself is
//! `engine::retry::classify`). Here are only isinstance checks against the classes Python
//! defines (`batten.errors`, `batten.steps.approval`, `asyncio`) and attribute reads; nothing compares
//! type names.
use pyo3::exceptions::{
    PyAttributeError, PyConnectionError, PyKeyError, PyNameError, PyNotImplementedError,
    PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

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

/// Whether `exc`'s class is `cls` or one of its subclasses: `isinstance(exc, cls)` for a class
/// whose metaclass is `type` (every class this module checks), without the generic
/// `PyObject_IsInstance`, which on a miss also reads the instance's `__class__` attribute.
/// NOTE: W4 (2 failures per step) made ~10 such misses per failure, ~2,900 instructions.
fn is_a(exc: &Bound<'_, PyAny>, cls: &Bound<'_, PyAny>) -> bool {
    match cls.cast::<PyType>() {
        // SAFETY: both are valid type objects while attached.
        Ok(t) => unsafe {
            pyo3::ffi::PyType_IsSubtype(exc.get_type().as_type_ptr(), t.as_type_ptr()) != 0
        },
        Err(_) => exc.is_instance(cls).unwrap_or(false),
    }
}

fn is_a_type<T: pyo3::type_object::PyTypeInfo>(exc: &Bound<'_, PyAny>) -> bool {
    is_a(exc, exc.py().get_type::<T>().as_any())
}

/// The kind of `exc`, an attempt's exception (never a `CompositeFailure`: `record` unwraps it).
pub fn error_kind(exc: &Bound<'_, PyAny>) -> ErrorKind {
    let py = exc.py();
    let is = |c: PyResult<Bound<'_, PyAny>>| c.is_ok_and(|c| is_a(exc, &c));
    if is_a_type::<StepTimeoutError>(exc) {
        ErrorKind::Timeout
    } else if is_a_type::<CircuitOpenError>(exc) {
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

/// An object's attributes read as `getattr(obj, name, None)` does, without raising internally
/// when one is missing: the instance `__dict__` (read once), then the class's MRO.
/// NOTE: on 3.11 a missing attribute on an exception formats an AttributeError message even for
/// `getattr_opt`; probing six names that way was ~5 µs of every failed attempt (W4). Reading
/// `__dict__` once per object and the names interned (not decoded per probe) took the probes
/// from ~9,000 to ~1,000 instructions a failure.
struct Attrs<'py> {
    obj: Bound<'py, PyAny>,
    dict: Option<Bound<'py, PyDict>>,
}

impl<'py> Attrs<'py> {
    fn of(obj: &Bound<'py, PyAny>) -> Self {
        let py = obj.py();
        let dict = obj
            .getattr_opt(intern!(py, "__dict__"))
            .ok()
            .flatten()
            .and_then(|d| d.cast_into::<PyDict>().ok());
        Attrs {
            obj: obj.clone(),
            dict,
        }
    }

    fn get(&self, name: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
        if let Some(dict) = &self.dict {
            if let Ok(Some(v)) = dict.get_item(name) {
                return Some(v);
            }
            // SAFETY: both pointers are valid while attached; the borrowed result is only
            // compared with NULL.
            let on_type = unsafe {
                !_PyType_Lookup(self.obj.get_type().as_type_ptr(), name.as_ptr()).is_null()
            };
            if !on_type {
                return None;
            }
        }
        self.obj.getattr_opt(name).ok().flatten()
    }
}

fn http_status(exc: &Attrs<'_>) -> Option<u16> {
    let py = exc.obj.py();
    let read = |o: &Attrs<'_>, name: &Bound<'_, PyString>| -> Option<u16> {
        let n: i64 = o.get(name)?.extract().ok()?;
        (100..600).contains(&n).then_some(n as u16)
    };
    let (status_code, status) = (intern!(py, "status_code"), intern!(py, "status"));
    read(exc, status_code)
        .or_else(|| read(exc, status))
        .or_else(|| {
            let resp = Attrs::of(&exc.get(intern!(py, "response"))?);
            read(&resp, status_code).or_else(|| read(&resp, status))
        })
}

fn retry_after(exc: &Attrs<'_>) -> Option<f64> {
    let py = exc.obj.py();
    let number = |v: Bound<'_, PyAny>| -> Option<f64> {
        v.extract::<f64>()
            .ok()
            .or_else(|| v.extract::<String>().ok()?.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    if let Some(s) = exc.get(intern!(py, "retry_after")).and_then(number) {
        return Some(s);
    }
    let from_headers = |o: &Attrs<'_>| -> Option<f64> {
        let headers = o.get(intern!(py, "headers"))?;
        ["Retry-After", "retry-after"]
            .iter()
            .find_map(|k| headers.call_method1("get", (*k,)).ok().and_then(number))
    };
    from_headers(exc).or_else(|| from_headers(&Attrs::of(&exc.get(intern!(py, "response"))?)))
}

/// The facts about `exc` for the step's policy (`retry_on` / `non_retryable` tuples, if any).
pub fn facts(
    exc: &Bound<'_, PyAny>,
    retry_on: Option<&Py<PyTuple>>,
    non_retryable: Option<&Py<PyTuple>>,
) -> ErrorFacts {
    let py = exc.py();
    let is = |cls: &Bound<'_, PyAny>| exc.is_instance(cls).unwrap_or(false);
    let attrs = Attrs::of(exc);
    ErrorFacts {
        is_timeout: is_a_type::<PyTimeoutError>(exc),
        is_connection: is_a_type::<PyConnectionError>(exc),
        http_status: http_status(&attrs),
        retry_after: retry_after(&attrs),
        matches_retry_on: retry_on.map(|t| is(t.bind(py).as_any())),
        matches_non_retryable: non_retryable.is_some_and(|t| is(t.bind(py).as_any())),
        is_programming_error: is_a_type::<PyTypeError>(exc)
            || is_a_type::<PyValueError>(exc)
            || is_a_type::<PyAttributeError>(exc)
            || is_a_type::<PyNameError>(exc)
            || is_a_type::<PyKeyError>(exc)
            || is_a_type::<PyNotImplementedError>(exc)
            || cached(py, &BATTEN_ERROR, "batten.errors", "BattenError")
                .is_ok_and(|c| is_a(exc, &c)),
        is_cancellation: cancelled_error(py).is_ok_and(|c| is_a(exc, &c)),
    }
}
