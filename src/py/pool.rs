//! The worker threads that run sync steps, and the timer runtime.
//!
//! Workers are plain Rust threads that attach to Python once and keep their thread state for life:
//! NOTE: attaching per call costs ~8 µs (a fresh thread state each time), keeping it ~0.03 µs
//! (DESIGN §3), and W1's budget is 2 µs a step. A worker waits for work detached from Python, so
//! idle workers never hold the GIL. The pool grows on demand (a sync step that blocks in
//! `time.sleep` must not delay its siblings) up to `MAX_WORKERS`.
//!
//! Timers (sync-step timeouts and retry backoff off the loop thread) live on a one-thread tokio
//! runtime: arming one is a channel send with no GIL and no hop to the event loop.
//!
//! At interpreter exit `shutdown` (registered with `atexit` by `weft/__init__.py`) stops the
//! timers and joins every worker, waiting for abandoned sync steps to return, as
//! `concurrent.futures.ThreadPoolExecutor` does. A thread still inside CPython during finalization
//! is killed with `pthread_exit`, which cannot unwind through Rust frames and aborts the process
//! (DESIGN §3 pitfall 3).
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;

use crate::engine::scheduler::Dispatch;
use crate::py::run::RunInner;

/// Upper bound on worker threads; beyond it sync steps queue.
const MAX_WORKERS: usize = 256;

/// One sync step attempt to run.
pub struct Job {
    pub run: Arc<RunInner>,
    pub dispatch: Dispatch,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    shutdown: bool,
    handles: Vec<JoinHandle<()>>,
}

struct Pool {
    q: Mutex<Queue>,
    cv: Condvar,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static TIMERS: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool {
        q: Mutex::new(Queue::default()),
        cv: Condvar::new(),
    })
}

/// Queues a sync step attempt for a worker thread.
pub fn submit(job: Job) {
    let p = pool();
    let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
    q.jobs.push_back(job);
    if q.jobs.len() > q.idle && q.threads < MAX_WORKERS {
        q.threads += 1;
        let n = q.threads;
        let handle = std::thread::Builder::new()
            .name(format!("weft-worker-{n}"))
            .spawn(worker)
            .expect("weft: cannot spawn a worker thread");
        q.handles.push(handle);
    } else {
        p.cv.notify_one();
    }
}

fn next_job(p: &Pool) -> Option<Job> {
    let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = q.jobs.pop_front() {
            return Some(job);
        }
        if q.shutdown {
            return None;
        }
        q.idle += 1;
        q = p.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        q.idle -= 1;
    }
}

fn worker() {
    let p = pool();
    Python::attach(|py| {
        while let Some(job) = py.detach(|| next_job(p)) {
            job.run.run_sync_job(py, job.dispatch);
        }
    });
}

/// Runs `f` on the timer runtime after `delay`; the handle aborts it.
pub fn after(
    delay: Duration,
    f: impl FnOnce() + Send + 'static,
) -> Option<tokio::task::AbortHandle> {
    let mut guard = TIMERS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weft-timer")
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

/// Stops the timers and joins the workers (see the module docs). Safe to call more than once.
pub fn shutdown(py: Python<'_>) {
    let rt = TIMERS.lock().unwrap_or_else(|e| e.into_inner()).take();
    let handles = POOL.get().map(|p| {
        let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
        q.shutdown = true;
        p.cv.notify_all();
        std::mem::take(&mut q.handles)
    });
    py.detach(move || {
        if let Some(rt) = rt {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        for h in handles.into_iter().flatten() {
            let _ = h.join();
        }
    });
}
