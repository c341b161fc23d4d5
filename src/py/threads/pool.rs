//! A pool of Python worker threads for blocking callables. It runs `SyncJob`s and knows nothing
//! about what they are.
//!
//! Workers are plain Rust threads that attach to Python once and keep their thread state for life:
//! NOTE: attaching per call costs ~8 µs (a fresh thread state each time), keeping it ~0.03 µs
//! (DESIGN §3), and W1's budget is 2 µs a step. A worker waits for work detached from Python, so
//! idle workers never hold the GIL. A busy worker takes the next queued job itself; the pool
//! grows (up to `MAX_WORKERS`) when a queued job has waited `STALE_AFTER` while every worker was
//! busy, so a job that blocks in `time.sleep` never holds up the jobs queued behind it for long.
//!
//! A call that runs past its deadline cannot be interrupted inside the process; its caller
//! `abandon`s it. An abandoned call keeps its thread until it returns, but no longer counts
//! against `MAX_WORKERS` (so 256 stuck calls cannot starve every later job: before, a trivial job
//! with a 1 s timeout waited 11.8-21.8 s behind them), and that thread exits when the call
//! returns. `abandoned_calls` counts them process-wide.
//!
//! At interpreter exit `stop` (via `threads::shutdown`) wakes every worker to return; the caller
//! joins them detached from Python, except workers whose call was abandoned: the interpreter does
//! not wait for those (as for daemon threads), beyond letting calls that are returning at that
//! moment get out of CPython (`settle_abandoned`).
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Upper bound on worker threads, not counting those whose call was abandoned; beyond it jobs
/// queue.
const MAX_WORKERS: usize = 256;

/// How long a queued job may wait while every worker is busy before the monitor gives it
/// another worker.
/// NOTE: waking a worker per submitted step made independent no-op sync steps cost ~16 µs each
/// (W3): the extra workers mostly passed the GIL back and forth. Only one thread runs Python at a
/// time, so more workers help only when a job blocks (I/O, `time.sleep`); the monitor finds those
/// within ~0.2 ms, which is noise next to a blocking call.
const STALE_AFTER: Duration = Duration::from_micros(200);

/// Work for a pool thread: called once, on a worker attached to Python. Each `Pool<J>` is
/// monomorphised over its job type (see the NOTE on `run::job`'s pool for why not boxed).
/// `worker` brackets each blocking call (`Pool::begin_call`/`end_call`) so it can be abandoned.
pub trait SyncJob: Send + 'static {
    fn run(self, py: Python<'_>, worker: &Worker);
}

/// Calls abandoned since the process started, over every pool.
static ABANDONED_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Abandoned calls still running (their threads have not returned), over every pool.
static ABANDONED_RUNNING: AtomicU64 = AtomicU64::new(0);

/// Set by `stop` (interpreter exit): an abandoned call that returns from now on parks its
/// thread for good instead of running on (see `Pool::end_call`).
static EXITING: AtomicBool = AtomicBool::new(false);

/// At interpreter exit, before finalization: waits while abandoned calls are still returning
/// (each return within `QUIET` of the last, at most `CAP` in all), so that calls released just
/// before exit (an Event set at the end of a script) are out of CPython before it finalizes; it
/// does not wait for calls that are still blocked.
/// NOTE: a thread that wakes in CPython while it finalizes is ended with `pthread_exit`, whose
/// unwinding through Rust frames aborts the process (DESIGN §3 pitfall 3). 300 abandoned calls
/// released just before exit aborted or crashed the process 3 runs in 3 without this wait. A
/// call still blocked when the wait ends and waking in the few milliseconds of finalization
/// keeps that risk.
pub(super) fn settle_abandoned() {
    const QUIET: Duration = Duration::from_millis(50);
    const CAP: Duration = Duration::from_secs(2);
    let start = Instant::now();
    let mut last = ABANDONED_RUNNING.load(Ordering::Relaxed);
    let mut changed = Instant::now();
    while last > 0 && changed.elapsed() < QUIET && start.elapsed() < CAP {
        std::thread::sleep(Duration::from_millis(2));
        let now = ABANDONED_RUNNING.load(Ordering::Relaxed);
        if now != last {
            last = now;
            changed = Instant::now();
        }
    }
}

/// `(running, total)`: abandoned calls still running, and abandoned since the process started.
pub fn abandoned_calls() -> (u64, u64) {
    (
        ABANDONED_RUNNING.load(Ordering::Relaxed),
        ABANDONED_TOTAL.load(Ordering::Relaxed),
    )
}

/// One worker thread's call state, shared with whoever may abandon its call. Changed only under
/// its pool's lock (atomics only to share it between threads).
#[derive(Default)]
struct Cell {
    /// Counts the worker's calls; tells a `CallId` of the running call from a stale one.
    gen: AtomicU64,
    calling: AtomicBool,
    abandoned: AtomicBool,
}

/// The worker thread a job runs on (see `SyncJob::run`).
pub struct Worker {
    cell: Arc<Cell>,
}

/// One call on one worker, for another thread to `Pool::abandon`.
#[derive(Clone)]
pub struct CallId {
    cell: Arc<Cell>,
    gen: u64,
}

impl CallId {
    /// Whether `self` and `other` name the same call.
    pub fn is(&self, other: &CallId) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell) && self.gen == other.gen
    }
}

#[derive(Default)]
struct Queue<J> {
    jobs: VecDeque<(Instant, J)>,
    idle: usize,
    /// Live worker threads, abandoned ones included.
    threads: usize,
    /// Workers whose call was abandoned and has not returned: they do not count against
    /// `MAX_WORKERS` and exit when their call returns.
    abandoned: usize,
    /// A waiting worker was notified and has not woken yet.
    wake_pending: bool,
    /// Jobs taken by workers so far: the monitor's sign that the busy workers are not blocked.
    taken: u64,
    shutdown: bool,
    /// In `STARTED` (since its first thread).
    registered: bool,
    handles: Vec<(Arc<Cell>, JoinHandle<()>)>,
    monitor: Option<JoinHandle<()>>,
}

/// A pool of worker threads running jobs of type `J`.
pub struct Pool<J> {
    q: Mutex<Queue<J>>,
    /// Workers wait here for jobs.
    cv: Condvar,
    /// The monitor waits here for a queue to watch.
    monitor_cv: Condvar,
}

/// The pools that have started threads, for `stop` to end at interpreter exit.
static STARTED: Mutex<Vec<&'static (dyn Stop + Sync)>> = Mutex::new(Vec::new());

trait Stop {
    fn stop(&self) -> Vec<JoinHandle<()>>;
}

impl<J: SyncJob> Stop for Pool<J> {
    fn stop(&self) -> Vec<JoinHandle<()>> {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        q.shutdown = true;
        self.cv.notify_all();
        self.monitor_cv.notify_all();
        // NOTE: an abandoned call may run for hours; joining it would hold the interpreter's exit
        // hostage, so its thread is left to the process's end, as a daemon thread is.
        let mut handles: Vec<_> = std::mem::take(&mut q.handles)
            .into_iter()
            .filter(|(cell, h)| !cell.abandoned.load(Ordering::Relaxed) || h.is_finished())
            .map(|(_, h)| h)
            .collect();
        handles.extend(q.monitor.take());
        handles
    }
}

/// Tells every pool's threads to return once the queue is empty; returns them to be joined.
pub(super) fn stop() -> Vec<JoinHandle<()>> {
    EXITING.store(true, Ordering::Relaxed);
    let pools = STARTED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    pools.into_iter().flat_map(|p| p.stop()).collect()
}

impl<J: SyncJob> Pool<J> {
    pub const fn new() -> Self {
        Pool {
            q: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                threads: 0,
                abandoned: 0,
                wake_pending: false,
                taken: 0,
                shutdown: false,
                registered: false,
                handles: Vec::new(),
                monitor: None,
            }),
            cv: Condvar::new(),
            monitor_cv: Condvar::new(),
        }
    }

    /// Queues `job`. A worker is woken only if none is busy: a busy worker takes the next job
    /// itself when its current one returns, and the monitor covers jobs that block.
    /// NOTE: the monitor thread starts with the first job that may wait (queued behind a busy
    /// worker, or behind another queued job), the only kind it acts on: a process whose jobs
    /// never wait (a recovery's one chain of steps, issue 18's D3) does not start it.
    pub fn submit(&'static self, job: J) {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        q.jobs.push_back((Instant::now(), job));
        if q.shutdown {
            // Interpreter exit has begun (a run started from an atexit handler): run it on a
            // fresh thread rather than leave it queued forever.
            self.spawn_worker(&mut q);
            return;
        }
        let may_wait = q.threads != q.idle || q.jobs.len() > 1;
        if q.threads == q.idle {
            self.add_worker(&mut q);
        }
        if may_wait && q.monitor.is_none() {
            let handle = std::thread::Builder::new()
                .name("batten-pool-monitor".into())
                .spawn(move || self.monitor())
                .expect("batten: cannot spawn the pool monitor thread");
            q.monitor = Some(handle);
        }
        if q.monitor.is_some() {
            self.monitor_cv.notify_one();
        }
    }

    fn spawn_worker(&'static self, q: &mut Queue<J>) {
        if !q.registered {
            // Its threads are stopped at interpreter exit (`stop`).
            STARTED.lock().unwrap_or_else(|e| e.into_inner()).push(self);
            q.registered = true;
        }
        q.threads += 1;
        let n = q.threads;
        let cell = Arc::new(Cell::default());
        let mine = Arc::clone(&cell);
        let handle = std::thread::Builder::new()
            .name(format!("batten-worker-{n}"))
            .spawn(move || self.worker(Worker { cell: mine }))
            .expect("batten: cannot spawn a worker thread");
        // Threads whose abandoned call returned have exited: drop their handles.
        q.handles.retain(|(_, h)| !h.is_finished());
        q.handles.push((cell, handle));
    }

    /// Gets the front job a worker: an idle one if any, else a new thread.
    fn add_worker(&'static self, q: &mut Queue<J>) {
        if q.idle > 0 {
            if !q.wake_pending {
                q.wake_pending = true;
                self.cv.notify_one();
            }
        } else if q.threads - q.abandoned < MAX_WORKERS {
            self.spawn_worker(q);
        }
    }

    /// Marks the start of a blocking call on `worker`; returns its id for `abandon`.
    pub fn begin_call(&self, worker: &Worker) -> CallId {
        let _q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let gen = worker.cell.gen.fetch_add(1, Ordering::Relaxed) + 1;
        worker.cell.calling.store(true, Ordering::Relaxed);
        CallId {
            cell: Arc::clone(&worker.cell),
            gen,
        }
    }

    /// Marks the end of `worker`'s call; true if it was abandoned meanwhile, in which case the
    /// job should hand any further work back to the pool and return: the thread then exits.
    ///
    /// An abandoned call that returns once interpreter exit has begun never comes back: its
    /// thread is counted out, detaches from Python and parks until the process ends, so it
    /// cannot be caught re-attaching while the interpreter finalizes (see `settle_abandoned`).
    /// `_py`: the GIL is held (the parking path releases it).
    pub fn end_call(&self, _py: Python<'_>, worker: &Worker) -> bool {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        worker.cell.calling.store(false, Ordering::Relaxed);
        let abandoned = worker.cell.abandoned.load(Ordering::Relaxed);
        if abandoned && EXITING.load(Ordering::Relaxed) {
            q.abandoned -= 1;
            q.threads -= 1;
            ABANDONED_RUNNING.fetch_sub(1, Ordering::Relaxed);
            drop(q);
            // SAFETY: this thread holds the GIL (`_py`); after releasing it, it never touches
            // Python again (its thread state is left to the interpreter's finalization).
            unsafe {
                pyo3::ffi::PyEval_SaveThread();
            }
            loop {
                std::thread::park();
            }
        }
        abandoned
    }

    /// Abandons call `id` if it is still running: its thread stops counting against
    /// `MAX_WORKERS`, and a queued job gets a worker at once. Returns `Some((running, total))`
    /// (see `abandoned_calls`) if it was abandoned now, `None` if it had already returned.
    pub fn abandon(&'static self, id: &CallId) -> Option<(u64, u64)> {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let cell = &id.cell;
        if !cell.calling.load(Ordering::Relaxed)
            || cell.gen.load(Ordering::Relaxed) != id.gen
            || cell.abandoned.load(Ordering::Relaxed)
        {
            return None;
        }
        cell.abandoned.store(true, Ordering::Relaxed);
        q.abandoned += 1;
        let running = ABANDONED_RUNNING.fetch_add(1, Ordering::Relaxed) + 1;
        let total = ABANDONED_TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
        if !q.jobs.is_empty() && !q.shutdown {
            self.add_worker(&mut q);
        }
        Some((running, total))
    }

    fn next_job(&self) -> Option<J> {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((_, job)) = q.jobs.pop_front() {
                q.taken += 1;
                return Some(job);
            }
            if q.shutdown {
                return None;
            }
            q.idle += 1;
            q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            q.idle -= 1;
            q.wake_pending = false;
        }
    }

    fn worker(&'static self, worker: Worker) {
        // NOTE: the first job is waited for before attaching to Python: a new thread that
        // attached first took the GIL (waiting for the thread that submitted the job to let it
        // go), only to release it at once to wait for the job, then took it again to run it.
        let first = self.next_job();
        if let Some(first) = first {
            Python::attach(|py| {
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    job.run(py, &worker);
                    if worker.cell.abandoned.load(Ordering::Relaxed) {
                        break;
                    }
                    next = py.detach(|| self.next_job());
                }
            });
        }
        if worker.cell.abandoned.load(Ordering::Relaxed) {
            let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
            q.abandoned -= 1;
            q.threads -= 1;
            ABANDONED_RUNNING.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Watches the queue (never touching Python): a job that has waited `STALE_AFTER` while the
    /// workers took no job for a whole tick (so they are blocked, not just busy) gets another
    /// worker, one per tick.
    /// NOTE: without the progress check the monitor added workers beside one busy with fast
    /// steps, and they fought over the GIL (W4: ~15% of the time in kernel context switches).
    fn monitor(&'static self) {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken_before = q.taken;
        loop {
            while q.jobs.is_empty() && !q.shutdown {
                q = self.monitor_cv.wait(q).unwrap_or_else(|e| e.into_inner());
                taken_before = q.taken;
            }
            if q.shutdown {
                return;
            }
            drop(q);
            std::thread::sleep(STALE_AFTER);
            q = self.q.lock().unwrap_or_else(|e| e.into_inner());
            let progressed = q.taken != taken_before;
            taken_before = q.taken;
            if !progressed
                && q.jobs
                    .front()
                    .is_some_and(|(t, _)| t.elapsed() >= STALE_AFTER)
            {
                self.add_worker(&mut q);
            }
        }
    }
}
