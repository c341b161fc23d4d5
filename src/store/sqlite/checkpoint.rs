//! WAL checkpoints on a background thread, so an append never waits for one.
//!
//! SQLite's default runs a checkpoint inside the commit that takes the WAL past 1,000 pages: it
//! copies the pages into the database and fsyncs twice.
// NOTE: measured on the 2-core dev VM (fsync ~1.4 ms): inline checkpoints added ~20-40 us to the
// *average* single-event append (27 us -> 50-75 us), so the store's connection gets a WAL hook
// instead, which wakes this thread; it checkpoints (PASSIVE: it never blocks a writer) on its own
// connection.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::BUSY_TIMEOUT;
use crate::store::StoreError;

/// The WAL size (pages) that wakes the checkpointer: SQLite's own default for autocheckpoints.
pub(super) const CHECKPOINT_PAGES: i32 = 1000;

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

    /// A handle for the WAL hook: `try_send(())` requests a checkpoint without ever blocking.
    pub(super) fn waker(&self) -> SyncSender<()> {
        self.wake.clone().expect("the sender lives until drop")
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
        // The hook holds a clone of the sender, so the thread stops once the store's connection is
        // closed too: `SqliteStore` drops its connection first.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
