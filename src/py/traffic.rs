//! The native handles of `batten.RateLimit` and `batten.CircuitBreaker` (`crate::engine::limits`),
//! and a step's traffic controls as a plan holds them.
use std::sync::Arc;

use pyo3::prelude::*;

use crate::engine::limits::{CircuitBreaker, RateLimiter};
use crate::py::args;
use crate::py::errors::WorkflowDefinitionError;

/// A rate limiter shared by every step that holds it. Private: `batten.RateLimit` wraps it.
#[pyclass(frozen, module = "batten._core", name = "RateLimiter")]
pub struct PyRateLimiter {
    pub inner: Arc<RateLimiter>,
}

/// A positive, finite rate (`what` names it), or `None`.
fn rate(obj: Option<&Bound<'_, PyAny>>, what: impl Fn() -> String) -> PyResult<Option<f64>> {
    let Some(v) = args::number(obj, &what)? else {
        return Ok(None);
    };
    if v.is_finite() && v > 0.0 {
        return Ok(Some(v));
    }
    Err(WorkflowDefinitionError::new_err(format!(
        "{} must be a positive, finite number, got {v}",
        what()
    )))
}

#[pymethods]
impl PyRateLimiter {
    /// `None` leaves a dimension unlimited. `batten.RateLimit` checks the values with its own
    /// names; what gets through out of range is a `WorkflowDefinitionError` here.
    #[new]
    #[pyo3(signature = (key, requests_per_second=None, tokens_per_minute=None, max_concurrency=None))]
    fn new(
        key: &Bound<'_, PyAny>,
        requests_per_second: Option<Bound<'_, PyAny>>,
        tokens_per_minute: Option<Bound<'_, PyAny>>,
        max_concurrency: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let key = args::text(key, || "RateLimit key".to_string())?;
        let owner = || format!("RateLimit('{key}')");
        Ok(PyRateLimiter {
            inner: Arc::new(RateLimiter::new(
                key.clone(),
                rate(requests_per_second.as_ref(), || {
                    format!("{}: requests_per_second", owner())
                })?,
                rate(tokens_per_minute.as_ref(), || {
                    format!("{}: tokens_per_minute", owner())
                })?,
                args::count(max_concurrency.as_ref(), 1, || {
                    format!("{}: max_concurrency", owner())
                })?,
            )),
        })
    }

    /// Attempts holding a concurrency slot now.
    #[getter]
    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

/// A circuit breaker shared by every step that holds it. Private: `batten.CircuitBreaker`
/// wraps it.
#[pyclass(frozen, module = "batten._core", name = "Breaker")]
pub struct PyBreaker {
    pub inner: Arc<CircuitBreaker>,
}

#[pymethods]
impl PyBreaker {
    /// `recovery_timeout` in seconds. `batten.CircuitBreaker` checks the values with its own
    /// names; what gets through out of range (an int beyond 32 bits, a timeout no `Duration`
    /// holds) is a `WorkflowDefinitionError` here.
    #[new]
    #[pyo3(signature = (key, failure_threshold, recovery_timeout, half_open_max_calls, wait=false))]
    fn new(
        key: &Bound<'_, PyAny>,
        failure_threshold: &Bound<'_, PyAny>,
        recovery_timeout: &Bound<'_, PyAny>,
        half_open_max_calls: &Bound<'_, PyAny>,
        wait: bool,
    ) -> PyResult<Self> {
        let key = args::text(key, || "CircuitBreaker key".to_string())?;
        let owner = |name: &str| format!("CircuitBreaker('{key}'): {name}");
        let threshold = args::count32(Some(failure_threshold), 1, || owner("failure_threshold"))?;
        let trials = args::count32(Some(half_open_max_calls), 1, || {
            owner("half_open_max_calls")
        })?;
        let seconds = args::number(Some(recovery_timeout), || owner("recovery_timeout"))?;
        let Some(recovery) = seconds.and_then(|s| args::duration(s, 0.0)) else {
            return Err(WorkflowDefinitionError::new_err(format!(
                "{} must be a finite number of seconds >= 0 (below 1.8e19), got {}",
                owner("recovery_timeout"),
                args::shown(recovery_timeout)
            )));
        };
        Ok(PyBreaker {
            inner: Arc::new(CircuitBreaker::new(
                key.clone(),
                threshold.unwrap_or(1),
                recovery,
                trials.unwrap_or(1),
                wait,
            )),
        })
    }

    /// `"closed"`, `"open"` or `"half_open"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state(std::time::Instant::now()).as_str()
    }
}

/// A step's traffic controls.
#[derive(Default, Clone)]
pub struct Controls {
    pub limiters: Vec<Arc<RateLimiter>>,
    pub breakers: Vec<Arc<CircuitBreaker>>,
}

impl Controls {
    /// True when the step has none (the common case: nothing to check).
    pub fn is_empty(&self) -> bool {
        self.limiters.is_empty() && self.breakers.is_empty()
    }

    /// From `(limiters, breakers)` lists of the native handles.
    pub fn from_py(
        limiters: Vec<Bound<'_, PyRateLimiter>>,
        breakers: Vec<Bound<'_, PyBreaker>>,
    ) -> Self {
        Controls {
            limiters: limiters
                .iter()
                .map(|l| Arc::clone(&l.get().inner))
                .collect(),
            breakers: breakers
                .iter()
                .map(|b| Arc::clone(&b.get().inner))
                .collect(),
        }
    }
}
