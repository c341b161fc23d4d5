//! WAL checkpoints on a background thread, so an append never waits for one.
//!
//! SQLite's default runs a checkpoint inside the commit that takes the WAL past 1,000 pages: it
//! copies the pages into the database and fsyncs twice.
// NOTE: measured on the 2-core dev VM (fsync ~1.4 ms): inline checkpoints added ~20-40 us to the
// *average* single-event append (27 us -> 50-75 us), so the store's connection gets a WAL hook
// instead, which wakes this thread; it checkpoints (PASSIVE: it never blocks a writer) on its own
// connection.
//
// A background checkpoint alone never lets the WAL start over under a steady stream of writes:
// SQLite rewinds the WAL only when a write transaction begins with every frame already copied
// into the database (`walRestartLog`), and the store's next write begins within microseconds of
// the commit that woke this thread, long before its checkpoint (two fsyncs) ends. The WAL then
// grew without bound (53 MB after 1,700 three-step durable runs), and each commit past 1,000
// pages woke another checkpoint with its two fsyncs. So the thread is woken once per
// `CHECKPOINT_PAGES` of growth, and at `RESTART_PAGES` the writer itself runs a PASSIVE
// checkpoint right after a commit (copying only what this thread has not yet copied), so its
// next write finds the WAL fully copied and rewinds it: the WAL stays under ~`RESTART_PAGES`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::BUSY_TIMEOUT;
use crate::store::StoreError;

/// The WAL growth (pages) that wakes the checkpointer: SQLite's own default for autocheckpoints.
pub(super) const CHECKPOINT_PAGES: i32 = 1000;

/// The WAL size (pages, ~16 MB of 4 KiB pages) at which the writer checkpoints after its commit
/// so that the WAL can start over (see the module's note).
pub(super) const RESTART_PAGES: i32 = 4 * CHECKPOINT_PAGES;

/// A thread that checkpoints the WAL of one database file whenever it is woken. Dropping it stops
/// the thread (after any checkpoint in progress).
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread.
    pub(super) fn start(path: &Path, url: &str) -> Result<Self, StoreError> {
        let unreachable = |e: rusqlite::Error| StoreError::Unreachable(format!("{url}: {e}"));
        let conn = Connection::open(path).map_err(unreachable)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(unreachable)?;
        // Only this thread checkpoints: its own commits (none) must not trigger inline ones either.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unreachable)?;
        // One pending wake-up is enough: a checkpoint copies everything committed before it starts.
        let (wake, woken) = sync_channel(1);
        let url = url.to_string();
        let thread = std::thread::Builder::new()
            .name("batten-sqlite-checkpoint".to_string())
            .spawn(move || run(&conn, &woken, &url))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Requests a checkpoint without ever blocking.
    fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

/// A [`Checkpointer`] started the first time the WAL reaches [`CHECKPOINT_PAGES`], from the
/// store connection's WAL hook. Dropping it stops the thread, if it was started.
/// NOTE: started lazily: its connection and thread were ~1/4 of opening a store (a process that
/// resumes one run and exits, issue 18's D3, never writes 1,000 pages). Opening the connection
/// inside the hook is safe: the hook runs after the commit, and opening reads nothing yet.
pub(super) struct LazyCheckpointer {
    path: PathBuf,
    url: String,
    started: OnceLock<Option<Checkpointer>>,
    /// The WAL's size (pages) after the last commit, as the WAL hook reported it.
    pages: AtomicI32,
    /// The WAL's size when the thread was last woken (0 after the WAL started over).
    woken_at: AtomicI32,
}

impl LazyCheckpointer {
    pub(super) fn new(path: &Path, url: &str) -> Self {
        LazyCheckpointer {
            path: path.to_path_buf(),
            url: url.to_string(),
            started: OnceLock::new(),
            pages: AtomicI32::new(0),
            woken_at: AtomicI32::new(0),
        }
    }

    /// Called by the store connection's WAL hook after each commit with the WAL's size in pages:
    /// wakes the thread once per `CHECKPOINT_PAGES` of growth (not on every commit past it).
    pub(super) fn committed(&self, pages: i32) {
        self.pages.store(pages, Ordering::Relaxed);
        let mut last = self.woken_at.load(Ordering::Relaxed);
        if pages < last {
            last = 0; // the WAL started over
            self.woken_at.store(0, Ordering::Relaxed);
        }
        if pages >= last + CHECKPOINT_PAGES {
            self.woken_at.store(pages, Ordering::Relaxed);
            self.wake();
        }
    }

    /// Whether the writer should checkpoint after its commit so the WAL can start over.
    pub(super) fn wants_restart(&self) -> bool {
        self.pages.load(Ordering::Relaxed) >= RESTART_PAGES
    }

    /// Requests a checkpoint, starting the thread on the first request. A thread that cannot be
    /// started is logged once and never retried: the WAL then only grows, as when a checkpoint
    /// fails.
    pub(super) fn wake(&self) {
        let started =
            self.started
                .get_or_init(|| match Checkpointer::start(&self.path, &self.url) {
                    Ok(checkpointer) => Some(checkpointer),
                    Err(e) => {
                        tracing::warn!("{}: no WAL checkpoints: {e}", self.url);
                        None
                    }
                });
        if let Some(checkpointer) = started {
            checkpointer.wake();
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, url: &str) {
    while woken.recv().is_ok() {
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = outcome {
            // The next wake-up tries again; meanwhile the WAL only grows.
            tracing::warn!("{url}: WAL checkpoint failed: {e}");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Its only sender: the thread stops after any checkpoint in progress.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
