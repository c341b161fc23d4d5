//! Reads what the engine's retry classification needs from a Python exception. The decision
//! itself is `engine::retry::classify`; here we only do the isinstance checks and attribute reads.
use pyo3::exceptions::{
    PyAttributeError, PyConnectionError, PyKeyError, PyNameError, PyNotImplementedError,
    PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use crate::engine::retry::ErrorFacts;

static CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static WEFT_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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

fn http_status(exc: &Bound<'_, PyAny>) -> Option<u16> {
    let py = exc.py();
    let read = |o: &Bound<'_, PyAny>, name: &str| -> Option<u16> {
        let v = o.getattr_opt(name).ok()??;
        let n: i64 = v.extract().ok()?;
        (100..600).contains(&n).then_some(n as u16)
    };
    read(exc, "status_code")
        .or_else(|| read(exc, "status"))
        .or_else(|| {
            let resp = exc.getattr_opt(pyo3::intern!(py, "response")).ok()??;
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
    if let Some(s) = exc
        .getattr_opt("retry_after")
        .ok()
        .flatten()
        .and_then(number)
    {
        return Some(s);
    }
    let from_headers = |o: &Bound<'_, PyAny>| -> Option<f64> {
        let headers = o.getattr_opt("headers").ok()??;
        ["Retry-After", "retry-after"]
            .iter()
            .find_map(|k| headers.call_method1("get", (*k,)).ok().and_then(number))
    };
    from_headers(exc).or_else(|| from_headers(&exc.getattr_opt("response").ok()??))
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
            || cached(py, &WEFT_ERROR, "weft.errors", "WeftError").is_ok_and(|c| is(&c)),
        is_cancellation: cancelled_error(py).is_ok_and(|c| is(&c)),
    }
}
