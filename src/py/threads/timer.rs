//! Timers off the event loop (sync-step timeouts, retry backoff from a worker, rate-limit
//! wake-ups, the journal's lazy writes) on a one-thread tokio runtime: arming one is a channel
//! send with no GIL and no hop to the event loop.
use std::sync::Mutex;
use std::time::Duration;

static TIMERS: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);

/// Runs `f` on the timer thread after `delay`; the handle aborts it. `None` when the runtime
/// cannot be built (no thread can start, late in interpreter exit): the caller then acts at once
/// rather than wait for a timer that never fires.
pub fn after(
    delay: Duration,
    f: impl FnOnce() + Send + 'static,
) -> Option<tokio::task::AbortHandle> {
    let mut guard = TIMERS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("batten-timer")
            .enable_time()
            .build()
            .ok()?;
        *guard = Some(rt);
    }
    let rt = guard.as_ref()?;
    let task = rt.spawn(async move {
        tokio::time::sleep(delay).await;
        f();
    });
    Some(task.abort_handle())
}

/// Takes the runtime out for `threads::shutdown` to stop. A timer armed afterwards starts a new
/// runtime (a run started from an atexit handler still gets its timeouts).
pub(super) fn take_runtime() -> Option<tokio::runtime::Runtime> {
    TIMERS.lock().unwrap_or_else(|e| e.into_inner()).take()
}
