//! Reading user-supplied values at the boundary without ever panicking or leaking a conversion
//! error: a str that is not valid UTF-8, an int out of range or a number of seconds no `Duration`
//! holds becomes a `WorkflowDefinitionError` naming what it is for.
//!
//! The Python layer checks arguments where users pass them, with their own names; these are the
//! backstop for whatever gets through (pyo3's own extraction would raise `TypeError` "failed to
//! extract field", `OverflowError` or `UnicodeEncodeError`, and `Duration::from_secs_f64` panics).
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

use crate::py::errors::WorkflowDefinitionError;

/// `repr(obj)`, or its type when even that fails (an int too long to print, a broken `__repr__`).
pub fn shown(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| {
        let ty = obj
            .get_type()
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        format!("a {ty} too large to show")
    })
}

fn invalid(message: String) -> PyErr {
    WorkflowDefinitionError::new_err(message)
}

/// `obj` as a Rust `String`: `what` ("step id") names it when it is not a str or holds a lone
/// surrogate (a str Python allows that UTF-8, and so the engine, cannot hold).
pub fn text(obj: &Bound<'_, PyAny>, what: impl FnOnce() -> String) -> PyResult<String> {
    let Ok(s) = obj.cast::<PyString>() else {
        return Err(invalid(format!(
            "{} must be a str, got {}",
            what(),
            shown(obj)
        )));
    };
    match s.to_str() {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(invalid(format!(
            "{} {} is not valid UTF-8: it holds a lone surrogate",
            what(),
            shown(obj)
        ))),
    }
}

/// A list of strs (`text` for each item; `what(i)` names item `i`).
pub fn texts(obj: &Bound<'_, PyAny>, what: impl Fn() -> String) -> PyResult<Vec<String>> {
    let items = obj.try_iter().map_err(|_| {
        invalid(format!(
            "{} must be a list of str, got {}",
            what(),
            shown(obj)
        ))
    })?;
    items
        .map(|item| text(&item?, &what))
        .collect::<PyResult<Vec<_>>>()
}

/// An int argument within `min..=max`, or `None` for `None`; anything else (a bool, a float,
/// an int out of range, however large) is a `WorkflowDefinitionError` naming `what`.
pub fn int_in(
    obj: Option<&Bound<'_, PyAny>>,
    min: u64,
    max: u64,
    what: impl FnOnce() -> String,
) -> PyResult<Option<u64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let value = match obj.cast::<PyInt>() {
        Ok(i) if !obj.is_instance_of::<PyBool>() => i.extract::<u64>().ok(),
        _ => None,
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => Err(invalid(format!(
            "{} must be an int from {min} to {max}, got {}",
            what(),
            shown(obj)
        ))),
    }
}

/// `int_in` as a `usize` (from `min` to `usize::MAX`).
pub fn count(
    obj: Option<&Bound<'_, PyAny>>,
    min: u64,
    what: impl FnOnce() -> String,
) -> PyResult<Option<usize>> {
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    // `max` fits a usize by construction, so the conversion cannot fail.
    Ok(int_in(obj, min, max, what)?.map(|v| usize::try_from(v).unwrap_or(usize::MAX)))
}

/// `int_in` as a `u32` (from `min` to `u32::MAX`).
pub fn count32(
    obj: Option<&Bound<'_, PyAny>>,
    min: u64,
    what: impl FnOnce() -> String,
) -> PyResult<Option<u32>> {
    Ok(int_in(obj, min, u64::from(u32::MAX), what)?.map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
}

/// A number (int or float) of seconds, or `None` for `None`.
pub fn number(
    obj: Option<&Bound<'_, PyAny>>,
    what: impl FnOnce() -> String,
) -> PyResult<Option<f64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(invalid(format!(
            "{} must be a number of seconds, got {}",
            what(),
            shown(obj)
        )));
    }
    obj.extract::<f64>().map(Some).map_err(|_| {
        invalid(format!(
            "{} must be a number of seconds, got {}",
            what(),
            shown(obj)
        ))
    })
}

/// `seconds` as a `Duration` when it is finite, at least `min` and within a `Duration`'s range
/// (~5.8e11 years); `None` otherwise, for the caller to refuse.
pub fn duration(seconds: f64, min: f64) -> Option<Duration> {
    if !(seconds.is_finite() && seconds >= min) {
        return None;
    }
    Duration::try_from_secs_f64(seconds).ok()
}
