//! The threads batten runs besides the caller's: a timer runtime and a ticker thread (`timer`),
//! neither of which enters Python, and a pool of Python
//! worker threads for blocking callables (`pool`). Neither knows what a run is: the timer runs
//! closures, the pool runs anything that implements `SyncJob` (as granian's `blocking.rs` takes
//! closures). `run` implements `SyncJob` for a sync step attempt; `journal` arms timers.
//!
//! At interpreter exit `shutdown` (`_core._shutdown`, registered with `atexit` by
//! `batten/__init__.py`) stops the timers and joins every worker except those running an
//! abandoned sync call, which the interpreter does not wait for (as for daemon threads) beyond
//! letting those returning at that moment leave CPython (`pool::settle_abandoned`). A thread
//! still inside CPython during finalization is killed with `pthread_exit`, which cannot unwind
//! through Rust frames and aborts the process (DESIGN §3 pitfall 3).
use std::time::Duration;

use pyo3::prelude::*;

pub mod pool;
pub mod timer;

/// Stops the timers and joins the pool's workers (see the module docs). Safe to call more than
/// once.
pub fn shutdown(py: Python<'_>) {
    let rt = timer::take_runtime();
    let pending = timer::stop_ticker();
    let handles = pool::stop();
    py.detach(move || {
        if let Some(rt) = rt {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        drop(pending);
        for h in handles {
            let _ = h.join();
        }
        pool::settle_abandoned();
    });
}
