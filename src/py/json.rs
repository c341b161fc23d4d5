//! Python values as the JSON a checkpoint store keeps, and back.
//!
//! One rule for every value that reaches a store: it is stored as JSON only when it reads back
//! equal to what was written. So `None`, `bool`, `int` (64-bit), finite `float`, `str`, `list` and
//! `dict` with `str` keys (subclasses of these stored as the base type, which compares equal), at
//! most [`MAX_JSON_DEPTH`] levels deep. Anything else is refused with the reason and where it is:
//! NaN and infinities (JSON has no such numbers), tuples, sets and frozensets (they would read back
//! as lists, which compare unequal), non-`str` keys, ints beyond 64 bits, strs with lone
//! surrogates, other types. The caller decides what a refusal means (the workflow's serializer, or
//! a `TypeError` naming the step).
//!
//! The walk recurses at most `MAX_JSON_DEPTH` frames, so no value, however deep, can overflow the
//! native stack (a worker thread's is 2 MiB; the recursive converter this replaces crashed the
//! interpreter at ~3,000 levels there), and no `serde_json::Value` deeper than the limit is ever
//! built (dropping one recurses too).
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};
use serde_json::{Map, Number, Value};

pub use crate::store::MAX_JSON_DEPTH;

/// Why a value cannot be stored as JSON, and where in it (outermost key first).
#[derive(Debug)]
pub struct NotJson {
    reason: String,
    /// Keys and indexes from the value's root to the offending part, innermost first (pushed
    /// while the error unwinds, so the success path builds nothing).
    path: Vec<String>,
    /// The value nests deeper than `MAX_JSON_DEPTH`.
    pub too_deep: bool,
}

impl NotJson {
    fn new(reason: String) -> Self {
        NotJson {
            reason,
            path: Vec::new(),
            too_deep: false,
        }
    }

    fn within(mut self, step: String) -> Self {
        self.path.push(step);
        self
    }

    /// Where the offending part is, as Python subscripts (`['items'][3]`); `""` at the root.
    /// A long path keeps its first levels only.
    pub fn location(&self) -> String {
        const SHOWN: usize = 6;
        let mut out: String = self
            .path
            .iter()
            .rev()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        if self.path.len() > SHOWN {
            out.push_str("...");
        }
        out
    }
}

/// "it is float('nan'), ..." at the root, "['a'][0] is float('nan'), ..." inside; a value too
/// deep says so for the whole of it, with where the walk stopped.
impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.too_deep, self.location().as_str()) {
            (_, "") => write!(f, "it is {}", self.reason),
            (true, at) => write!(f, "it is {}, at {at}", self.reason),
            (false, at) => write!(f, "{at} is {}", self.reason),
        }
    }
}

/// `obj` as JSON, if it reads back equal (see the module docs).
pub fn to_json(obj: &Bound<'_, PyAny>) -> Result<Value, NotJson> {
    convert(obj, 0)
}

/// A value `depth` containers deep: only a container entered below the limit recurses.
fn convert(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, NotJson> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return match s.to_str() {
            Ok(s) => Ok(Value::String(s.to_owned())),
            Err(_) => Err(NotJson::new(
                "a str with a lone surrogate (not valid UTF-8)".into(),
            )),
        };
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Value::from(v));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Value::from(v));
        }
        return Err(NotJson::new(
            "an int outside the 64-bit range JSON numbers are stored in".into(),
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            let name = match v {
                v if v.is_nan() => "nan",
                v if v > 0.0 => "inf",
                _ => "-inf",
            };
            NotJson::new(format!(
                "float('{name}') (JSON has no such number: it would read back as None)"
            ))
        });
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let depth = enter(depth)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(convert(&item, depth).map_err(|e| e.within(format!("[{i}]")))?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let depth = enter(depth)?;
        let mut out = Map::new();
        for (k, v) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(NotJson::new(format!(
                    "a dict with a key of type {} (JSON keys are str)",
                    type_name(&k)
                )));
            };
            let Ok(key) = key.to_str() else {
                return Err(NotJson::new(
                    "a dict with a key holding a lone surrogate (not valid UTF-8)".into(),
                ));
            };
            let value = convert(&v, depth).map_err(|e| {
                let key = k
                    .repr()
                    .map_or_else(|_| format!("{key:?}"), |r| r.to_string());
                e.within(format!("[{key}]"))
            })?;
            out.insert(key.to_owned(), value);
        }
        return Ok(Value::Object(out));
    }
    let why = if obj.is_instance_of::<PyTuple>() {
        "a tuple (JSON has none: it would read back as a list)".to_string()
    } else if obj.is_instance_of::<PySet>() || obj.is_instance_of::<PyFrozenSet>() {
        format!(
            "a {} (JSON has none: it would read back as a list)",
            type_name(obj)
        )
    } else {
        format!("an object of type {}", type_name(obj))
    };
    Err(NotJson::new(why))
}

/// The depth inside a container entered at `depth`, or the too-deep refusal.
fn enter(depth: usize) -> Result<usize, NotJson> {
    if depth >= MAX_JSON_DEPTH {
        let mut e = NotJson::new(format!(
            "nested deeper than {MAX_JSON_DEPTH} levels (batten.store.MAX_JSON_DEPTH)"
        ));
        e.too_deep = true;
        return Err(e);
    }
    Ok(depth + 1)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// JSON as a Python object (objects become dicts, arrays lists). Recursion is bounded by the
/// stores' reader, which refuses 128 levels or more.
pub fn from_json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, v)
        .map_err(|e| PyErr::new::<pyo3::exceptions::PyValueError, _>(e.to_string()))
}
