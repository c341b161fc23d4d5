//! The only code that touches pyo3: the bridge between the engine and Python.
//!
//! Bottom to top (a module uses only those above it in this list):
//! - `errors` (engine and store errors as `batten.errors` classes), `args` (reading user values),
//!   `classify` (what a Python exception is: its `ErrorKind`, its retry facts), `json`;
//! - value pyclasses: `context` (`WorkflowContext`, `StateMap`), `results` (`StepResult`,
//!   `Nested`, `CompositeFailure`, `RunOutcome`), `traffic`, `store`;
//! - `threads`: a timer runtime and a worker pool that know nothing about runs;
//! - `journal` (a durable run's checkpoint writer), `plan` (a compiled workflow; knows no run);
//! - `run`: one workflow run, entered by `Run.start(plan, context, ...)`.
use pyo3::prelude::*;

mod args;
mod classify;
pub mod context;
pub mod errors;
pub mod journal;
pub mod json;
pub mod plan;
pub mod results;
pub mod run;
pub mod store;
mod threads;
pub mod traffic;

/// Stops batten's timer thread and joins its worker threads, except those still running an
/// abandoned call; `batten` registers it with `atexit`.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    threads::shutdown(py);
}

/// `(running, total)`: sync calls abandoned at a timeout (or by a stopped run) that are still
/// running in this process, and those abandoned since it started.
#[pyfunction]
fn _abandoned_calls() -> (u64, u64) {
    run::job::abandoned_calls()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Engine events (the `tracing` crate, emitted as `log` records) reach Python's `logging` as
    // `batten.py.run` etc., children of the `batten` logger. Levels are not cached: a user who calls
    // `logging.basicConfig(level=DEBUG)` after `import batten` still gets them, for ~1 µs per event
    // (about one per run).
    //
    // The PostgreSQL store's crates log every statement (`log` debug records) from the store's
    // runtime thread; forwarding one needs the GIL, which a Python thread may hold while it waits
    // for that very store call (a run's cancel waiting for the journal, whose timer-thread append
    // waits for the store): a deadlock, seen in a cancel under load. They are filtered out here,
    // before the logger takes the GIL.
    if let Ok(logger) = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers) {
        let logger = [
            "tokio_postgres",
            "postgres_protocol",
            "deadpool",
            "deadpool_postgres",
        ]
        .into_iter()
        .fold(logger, |logger, target| {
            logger.filter_target(target.to_string(), tracing::log::LevelFilter::Off)
        });
        let _ = logger.install();
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_JSON_DEPTH", crate::store::MAX_JSON_DEPTH)?;
    m.add_class::<context::WorkflowContext>()?;
    m.add_class::<context::StateMap>()?;
    m.add_class::<results::StepResult>()?;
    m.add_class::<results::Nested>()?;
    m.add_class::<results::CompositeFailure>()?;
    m.add_class::<results::RunOutcome>()?;
    m.add_class::<plan::Plan>()?;
    m.add_class::<run::Run>()?;
    m.add_class::<store::PyStore>()?;
    m.add_class::<store::PyWatch>()?;
    m.add_class::<journal::Journal>()?;
    m.add_class::<traffic::PyRateLimiter>()?;
    m.add_class::<traffic::PyBreaker>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(_abandoned_calls, m)?)?;
    Ok(())
}
