//! Timers off the event loop: sync-step timeouts, retry backoff from a worker and rate-limit
//! wake-ups on a one-thread tokio runtime ([`after`]: arming one is a channel send with no GIL
//! and no hop to the event loop); durable runs' lease heartbeats and lazy journal writes on one
//! ticker thread ([`tick_after`]: armed and cancelled once per run, waking no thread).
use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

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

/// A deadline on the ticker thread (see [`tick_after`]); [`Tick::cancel`] removes it.
#[derive(Debug)]
pub struct Tick {
    key: (Instant, u64),
}

impl Tick {
    /// Removes the deadline unless it already fired (or is firing). Returns whether it was
    /// removed, i.e. its closure will never run.
    pub fn cancel(&self) -> bool {
        let removed = TICKS.state.lock().queue.remove(&self.key);
        // Dropped outside the lock: a closure may own anything (a journal's shared state).
        removed.is_some()
    }
}

/// How long the ticker thread keeps waking on schedule after its queue emptied, so that a run
/// starting within it arms its deadlines without waking the thread (see [`tick_after`]).
const LINGER: Duration = Duration::from_millis(20);
/// Deadlines this close after the one the thread woke for run in the same wake.
const SLACK: Duration = Duration::from_millis(1);

pub(super) type Job = Box<dyn FnOnce() + Send>;

struct TickState {
    /// Live deadlines, earliest first (a cancelled one is removed at once).
    queue: BTreeMap<(Instant, u64), Job>,
    next_id: u64,
    /// When the thread will look at the queue next on its own (`None`: it waits for a notify,
    /// or there is no thread).
    wake_at: Option<Instant>,
    /// Whether a thread serves the queue.
    running: bool,
    /// Bumped to stop the serving thread: a thread serves while this is the one it started with.
    generation: u64,
}

struct Ticks {
    state: parking_lot::Mutex<TickState>,
    woken: parking_lot::Condvar,
}

static TICKS: LazyLock<Ticks> = LazyLock::new(|| Ticks {
    state: parking_lot::Mutex::new(TickState {
        queue: BTreeMap::new(),
        next_id: 0,
        wake_at: None,
        running: false,
        generation: 0,
    }),
    woken: parking_lot::Condvar::new(),
});

/// Runs `f` on the ticker thread after `delay`, unless the returned [`Tick`] is cancelled first.
/// `None` when the thread cannot start (late in interpreter exit): the caller then acts without
/// it, as with [`after`].
///
/// For deadlines that every durable run arms and almost always cancels (its lease's heartbeat, its
/// journal's lazy flush): arming and cancelling one is a map insert and removal under a lock, and
/// wakes the thread only when the new deadline is earlier than the one it already sleeps until.
/// One thread renews every lease of the process, as DBOS's and Temporal's workers heartbeat per
/// worker rather than per workflow; each lease keeps its own period. The thread keeps waking on
/// schedule for [`LINGER`] after its queue empties, so back-to-back runs cost it about one wake per
/// [`LINGER`], not one (or, as with a tokio timer armed and aborted per run, two) per run.
/// Closures run one after another on that thread and must not block for long (a store call
/// bounded by its timeouts is the longest one does); a panic in one is caught and dropped.
pub fn tick_after(delay: Duration, f: impl FnOnce() + Send + 'static) -> Option<Tick> {
    let at = Instant::now() + delay;
    let ticks = &*TICKS;
    let mut st = ticks.state.lock();
    if !st.running {
        let generation = st.generation;
        std::thread::Builder::new()
            .name("batten-ticker".to_string())
            .spawn(move || tick_loop(&TICKS, generation))
            .ok()?;
        st.running = true;
        st.wake_at = None;
    }
    let key = (at, st.next_id);
    st.next_id += 1;
    st.queue.insert(key, Box::new(f));
    if st.wake_at.is_none_or(|w| at < w) {
        st.wake_at = Some(at);
        ticks.woken.notify_one();
    }
    Some(Tick { key })
}

fn tick_loop(ticks: &Ticks, generation: u64) {
    let mut st = ticks.state.lock();
    let mut idle_since: Option<Instant> = None;
    loop {
        if st.generation != generation {
            return;
        }
        let now = Instant::now();
        let horizon = now + SLACK;
        let mut due = Vec::new();
        while let Some(entry) = st.queue.first_entry() {
            if entry.key().0 > horizon {
                break;
            }
            due.push(entry.remove());
        }
        if !due.is_empty() {
            idle_since = None;
            // Deadlines armed meanwhile need not wake the thread: it looks again after these.
            st.wake_at = Some(now);
            parking_lot::MutexGuard::unlocked(&mut st, || {
                for f in due {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                }
            });
            continue;
        }
        let next = match st.queue.first_key_value() {
            Some((&(at, _), _)) => {
                idle_since = None;
                Some(at)
            }
            // Empty: wake once more after LINGER (a run arming a deadline meanwhile finds the
            // thread already scheduled), then wait for a notify.
            None => match idle_since {
                None => {
                    idle_since = Some(now);
                    Some(now + LINGER)
                }
                Some(_) => None,
            },
        };
        st.wake_at = next;
        match next {
            Some(at) => {
                ticks.woken.wait_until(&mut st, at);
            }
            None => ticks.woken.wait(&mut st),
        }
    }
}

/// Stops the ticker thread (for `threads::shutdown`) and returns its pending deadlines' closures
/// for the caller to drop, as the timer runtime's shutdown drops its tasks. The thread exits when
/// it next looks (after the closure it may be running: it never enters Python, so it is not
/// joined); a deadline armed afterwards starts a new thread.
pub(super) fn stop_ticker() -> Vec<Job> {
    let ticks = &*TICKS;
    let mut st = ticks.state.lock();
    st.generation += 1;
    st.running = false;
    st.wake_at = None;
    ticks.woken.notify_all();
    std::mem::take(&mut st.queue).into_values().collect()
}
