//! The native handles of `batten.RateLimit` and `batten.CircuitBreaker` (`crate::engine::limits`),
//! and a step's traffic controls as a plan holds them.
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::engine::limits::{CircuitBreaker, RateLimiter};

/// A rate limiter shared by every step that holds it. Private: `batten.RateLimit` wraps it.
#[pyclass(frozen, module = "batten._core", name = "RateLimiter")]
pub struct PyRateLimiter {
    pub inner: Arc<RateLimiter>,
}

#[pymethods]
impl PyRateLimiter {
    /// `None` leaves a dimension unlimited; values are checked by `batten.RateLimit`.
    #[new]
    #[pyo3(signature = (key, requests_per_second=None, tokens_per_minute=None, max_concurrency=None))]
    fn new(
        key: String,
        requests_per_second: Option<f64>,
        tokens_per_minute: Option<f64>,
        max_concurrency: Option<usize>,
    ) -> Self {
        PyRateLimiter {
            inner: Arc::new(RateLimiter::new(
                key,
                requests_per_second,
                tokens_per_minute,
                max_concurrency,
            )),
        }
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
    /// `recovery_timeout` in seconds; values are checked by `batten.CircuitBreaker`.
    #[new]
    #[pyo3(signature = (key, failure_threshold, recovery_timeout, half_open_max_calls, wait=false))]
    fn new(
        key: String,
        failure_threshold: u32,
        recovery_timeout: f64,
        half_open_max_calls: u32,
        wait: bool,
    ) -> Self {
        PyBreaker {
            inner: Arc::new(CircuitBreaker::new(
                key,
                failure_threshold,
                Duration::from_secs_f64(recovery_timeout.max(0.0)),
                half_open_max_calls,
                wait,
            )),
        }
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
