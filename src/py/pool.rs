//! The worker threads that run sync steps, and the timer runtime.
//!
//! Workers are plain Rust threads that attach to Python once and keep their thread state for life:
//! NOTE: attaching per call costs ~8 µs (a fresh thread state each time), keeping it ~0.03 µs
//! (DESIGN §3), and W1's budget is 2 µs a step. A worker waits for work detached from Python, so
//! idle workers never hold the GIL. A busy worker takes the next queued step itself; the pool
//! grows (up to `MAX_WORKERS`) when a queued step has waited `STALE_AFTER` while every worker was
//! busy, so a sync step that blocks in `time.sleep` never holds up its siblings for long.
//!
//! Timers (sync-step timeouts and retry backoff off the loop thread) live on a one-thread tokio
//! runtime: arming one is a channel send with no GIL and no hop to the event loop.
//!
//! At interpreter exit `shutdown` (registered with `atexit` by `batten/__init__.py`) stops the
//! timers and joins every worker, waiting for abandoned sync steps to return, as
//! `concurrent.futures.ThreadPoolExecutor` does. A thread still inside CPython during finalization
//! is killed with `pthread_exit`, which cannot unwind through Rust frames and aborts the process
//! (DESIGN §3 pitfall 3).
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::engine::scheduler::Dispatch;
use crate::py::run::RunInner;

/// Upper bound on worker threads; beyond it sync steps queue.
const MAX_WORKERS: usize = 256;

/// How long a queued sync step may wait while every worker is busy before the monitor gives it
/// another worker.
/// NOTE: waking a worker per submitted step made independent no-op sync steps cost ~16 µs each
/// (W3): the extra workers mostly passed the GIL back and forth. Only one thread runs Python at a
/// time, so more workers help only when a step blocks (I/O, `time.sleep`); the monitor finds those
/// within ~0.2 ms, which is noise next to a blocking call.
const STALE_AFTER: Duration = Duration::from_micros(200);

/// One sync step attempt to run.
pub struct Job {
    pub run: Arc<RunInner>,
    pub dispatch: Dispatch,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<(Instant, Job)>,
    idle: usize,
    threads: usize,
    /// A waiting worker was notified and has not woken yet.
    wake_pending: bool,
    /// Jobs taken by workers so far: the monitor's sign that the busy workers are not blocked.
    taken: u64,
    shutdown: bool,
    handles: Vec<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
}

impl Queue {
    fn spawn_worker(&mut self) {
        self.threads += 1;
        let n = self.threads;
        let handle = std::thread::Builder::new()
            .name(format!("batten-worker-{n}"))
            .spawn(worker)
            .expect("batten: cannot spawn a worker thread");
        self.handles.push(handle);
    }

    /// Gets the front job a worker: an idle one if any, else a new thread.
    fn add_worker(&mut self, cv: &Condvar) {
        if self.idle > 0 {
            if !self.wake_pending {
                self.wake_pending = true;
                cv.notify_one();
            }
        } else if self.threads < MAX_WORKERS {
            self.spawn_worker();
        }
    }
}

struct Pool {
    q: Mutex<Queue>,
    /// Workers wait here for jobs.
    cv: Condvar,
    /// The monitor waits here for a queue to watch.
    monitor_cv: Condvar,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static TIMERS: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool {
        q: Mutex::new(Queue::default()),
        cv: Condvar::new(),
        monitor_cv: Condvar::new(),
    })
}

/// Queues a sync step attempt. A worker is woken only if none is busy: a busy worker takes the
/// next job itself when its step returns, and the monitor covers steps that block.
pub fn submit(job: Job) {
    let p = pool();
    let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
    q.jobs.push_back((Instant::now(), job));
    if q.shutdown {
        // Interpreter exit has begun (a run started from an atexit handler): run it on a fresh
        // thread rather than leave it queued forever.
        q.spawn_worker();
    } else if q.threads == q.idle {
        q.add_worker(&p.cv);
    }
    if q.monitor.is_none() && !q.shutdown {
        let handle = std::thread::Builder::new()
            .name("batten-pool-monitor".into())
            .spawn(monitor)
            .expect("batten: cannot spawn the pool monitor thread");
        q.monitor = Some(handle);
    }
    p.monitor_cv.notify_one();
}

fn next_job(p: &Pool) -> Option<Job> {
    let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some((_, job)) = q.jobs.pop_front() {
            q.taken += 1;
            return Some(job);
        }
        if q.shutdown {
            return None;
        }
        q.idle += 1;
        q = p.cv.wait(q).unwrap_or_else(|e| e.into_inner());
        q.idle -= 1;
        q.wake_pending = false;
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

/// Watches the queue (never touching Python): a job that has waited `STALE_AFTER` while the
/// workers took no job for a whole tick (so they are blocked, not just busy) gets another worker,
/// one per tick.
/// NOTE: without the progress check the monitor added workers beside one busy with fast steps,
/// and they fought over the GIL (W4: ~15% of the time in kernel context switches).
fn monitor() {
    let p = pool();
    let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
    let mut taken_before = q.taken;
    loop {
        while q.jobs.is_empty() && !q.shutdown {
            q = p.monitor_cv.wait(q).unwrap_or_else(|e| e.into_inner());
            taken_before = q.taken;
        }
        if q.shutdown {
            return;
        }
        drop(q);
        std::thread::sleep(STALE_AFTER);
        q = p.q.lock().unwrap_or_else(|e| e.into_inner());
        let progressed = q.taken != taken_before;
        taken_before = q.taken;
        if !progressed
            && q.jobs
                .front()
                .is_some_and(|(t, _)| t.elapsed() >= STALE_AFTER)
        {
            q.add_worker(&p.cv);
        }
    }
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

/// Stops the timers and joins the workers (see the module docs). Safe to call more than once.
pub fn shutdown(py: Python<'_>) {
    let rt = TIMERS.lock().unwrap_or_else(|e| e.into_inner()).take();
    let handles = POOL.get().map(|p| {
        let mut q = p.q.lock().unwrap_or_else(|e| e.into_inner());
        q.shutdown = true;
        p.cv.notify_all();
        p.monitor_cv.notify_all();
        let mut handles = std::mem::take(&mut q.handles);
        handles.extend(q.monitor.take());
        handles
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
