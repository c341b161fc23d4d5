//! The only code that touches pyo3: pyclasses, the asyncio bridge, the worker pool and the
//! mapping of engine errors to `batten.errors`.
use pyo3::prelude::*;

mod args;
mod classify;
pub mod context;
pub mod errors;
pub mod journal;
pub mod json;
pub mod plan;
pub mod pool;
pub mod results;
pub mod run;
pub mod store;
pub mod traffic;

/// Stops batten's timer thread and joins its worker threads; `batten` registers it with `atexit`.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    pool::shutdown(py);
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Engine events (the `tracing` crate, emitted as `log` records) reach Python's `logging` as
    // `batten.py.run` etc., children of the `batten` logger. Levels are not cached: a user who calls
    // `logging.basicConfig(level=DEBUG)` after `import batten` still gets them, for ~1 µs per event
    // (about one per run).
    if let Ok(logger) = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers) {
        let _ = logger.install();
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_JSON_DEPTH", crate::store::MAX_JSON_DEPTH)?;
    m.add_class::<context::WorkflowContext>()?;
    m.add_class::<context::StateMap>()?;
    m.add_class::<results::StepResult>()?;
    m.add_class::<results::Nested>()?;
    m.add_class::<plan::Plan>()?;
    m.add_class::<run::Run>()?;
    m.add_class::<store::PyStore>()?;
    m.add_class::<journal::Journal>()?;
    m.add_class::<traffic::PyRateLimiter>()?;
    m.add_class::<traffic::PyBreaker>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    Ok(())
}
