//! The SQLite tables, and opening a connection: pragmas, schema creation and the version check.

use rusqlite::{Connection, OptionalExtension};

use super::BUSY_TIMEOUT;
use crate::store::{StoreError, SQLITE_SCHEMA_VERSION as SCHEMA_VERSION};

/// Bits of an event's `id` that hold its seq; the run's `key` is shifted above them.
pub(super) const SEQ_BITS: u32 = 32;
/// The largest seq a run's events can reach.
pub(super) const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;

// Events are keyed by one integer, `id = (runs.key << 32) | seq`, so the events table is a single
// B-tree: an append dirties one page, not a table page and an index page; a run's events are one
// contiguous rowid range; and no event repeats its run's id. batten never deletes a run; should
// anyone delete one, the `runs_forget_events` trigger deletes its events with it, so a later run
// that is given the same key (SQLite reuses the largest rowid once its row is gone) starts with
// no history: no run can inherit another's events.
// NOTE: against a (run_id TEXT, seq) primary key, measured on the dev VM: 81 vs 173 bytes per small
// event, and ~10 us less per single-event append (half the WAL frames per commit).
// NOTE (schema 3): versions 1-2 kept keys unique with AUTOINCREMENT and also indexed runs by
// (workflow_id, created_at), which no query used (`list_runs` filters with `?2 IS NULL OR ...`,
// which the planner serves from `runs_by_created`): recording a run wrote five pages, the row, the
// run_id index, two created_at indexes and `sqlite_sequence`; it now writes three (issue 18's D4).
const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE runs (
    key INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    workflow_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    input TEXT NOT NULL,
    error TEXT,
    result TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_heartbeat REAL,
    lease_expires REAL
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    duration_ms REAL,
    error_type TEXT,
    error TEXT,
    output TEXT,
    delta TEXT,
    detail TEXT
);
CREATE VIEW run_events AS
    SELECT runs.run_id AS run_id, events.id & 0xFFFFFFFF AS seq, events.*
    FROM events JOIN runs ON runs.key = events.id >> 32;
CREATE TRIGGER runs_forget_events AFTER DELETE ON runs BEGIN
    DELETE FROM events WHERE id > old.key << 32 AND id <= (old.key << 32) | 0xFFFFFFFF;
END;
CREATE TABLE controls (run_id TEXT PRIMARY KEY NOT NULL, control TEXT NOT NULL);
CREATE TABLE decisions (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    approved INTEGER NOT NULL,
    decided_by TEXT,
    comment TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE cache (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE workflows (workflow_id TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL);
";

/// Version 1 -> 2: the run lease. The token counter starts at 0 (never claimed) and no run has
/// an owner, so a run an older batten left RUNNING shows as interrupted.
const UPGRADE_1_TO_2: &str = "
ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_heartbeat REAL;
ALTER TABLE runs ADD COLUMN lease_expires REAL;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
";

/// Version 2 -> 3: the runs table without AUTOINCREMENT and without the unused
/// `runs_by_workflow` index, rebuilt in place as SQLite's ALTER TABLE documentation prescribes
/// (new table, copy, drop, rename; the view over it dropped and made again). Every run keeps its
/// key, so every event stays its run's. The trigger keeps keys from being inherited instead.
const UPGRADE_2_TO_3: &str = "
DROP VIEW run_events;
CREATE TABLE runs_v3 (
    key INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    workflow_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    input TEXT NOT NULL,
    error TEXT,
    result TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_heartbeat REAL,
    lease_expires REAL
);
INSERT INTO runs_v3 (key, run_id, workflow_id, name, version, status, created_at, updated_at,
                     input, error, result, lease_token, lease_owner, lease_heartbeat,
                     lease_expires)
    SELECT key, run_id, workflow_id, name, version, status, created_at, updated_at, input, error,
           result, lease_token, lease_owner, lease_heartbeat, lease_expires
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
CREATE INDEX runs_by_created ON runs (created_at);
CREATE VIEW run_events AS
    SELECT runs.run_id AS run_id, events.id & 0xFFFFFFFF AS seq, events.*
    FROM events JOIN runs ON runs.key = events.id >> 32;
CREATE TRIGGER runs_forget_events AFTER DELETE ON runs BEGIN
    DELETE FROM events WHERE id > old.key << 32 AND id <= (old.key << 32) | 0xFFFFFFFF;
END;
UPDATE meta SET value = '3' WHERE key = 'schema_version';
";

/// Sets up a freshly opened connection and checks (or, in an empty database, creates) the schema.
/// `is_file`: whether the database is a file, i.e. has a WAL.
pub(super) fn prepare(conn: &Connection, url: &str, is_file: bool) -> Result<(), StoreError> {
    let unreachable = |e: rusqlite::Error| StoreError::Unreachable(format!("{url}: {e}"));
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unreachable)?;
    // The first statement that reads the file: a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(unreachable)?;
    if is_file && !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unreachable(format!(
            "{url}: cannot use a write-ahead log (journal_mode is '{mode}')"
        )));
    }
    // NORMAL in WAL mode: a commit is durable against the process being killed (the crash model),
    // not against a power cut, and costs no fsync.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(unreachable)?;
    conn.set_prepared_statement_cache_capacity(32);

    // An existing store of this version, the usual case, needs no write lock: one read (in its
    // own read transaction) of a row only an upgrade under the write lock changes.
    // NOTE: the write transaction below on every open was a lock and a commit per opening (issue
    // 18's D3 opens the store again to resume); anything else (no table, an empty file, another
    // version, an error) takes that path and is checked again under the lock.
    if current_version(conn) {
        return Ok(());
    }
    // BEGIN IMMEDIATE: of several processes opening a new file at once, one creates the schema.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(unreachable)?;
    let checked = check_or_create(conn).map_err(|e| match e {
        Checked::Sqlite(e) => StoreError::Backend(format!("{url}: {e}")),
        Checked::Store(e) => e,
    });
    let end = if checked.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = conn.execute_batch(end).map_err(unreachable);
    checked.and(ended)
}

/// Whether the database holds a batten schema of this version (`false` on any error).
fn current_version(conn: &Connection) -> bool {
    conn.query_row(
        "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'schema_version'",
        [],
        |row| row.get::<_, String>(0),
    )
    .is_ok_and(|found| found.trim().parse::<u32>() == Ok(SCHEMA_VERSION))
}

enum Checked {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Checked {
    fn from(e: rusqlite::Error) -> Self {
        Checked::Sqlite(e)
    }
}

fn check_or_create(conn: &Connection) -> Result<(), Checked> {
    let is_empty = !conn.prepare("SELECT 1 FROM sqlite_master")?.exists([])?;
    if is_empty {
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )?;
        return Ok(());
    }
    // A database with tables but no version (someone else's file) is refused like a newer one.
    let has_meta = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")?
        .exists([])?;
    let found: Option<String> = match has_meta {
        true => conn
            .query_row(
                "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()?,
        false => None,
    };
    match found {
        Some(found) if found.trim().parse::<u32>() == Ok(SCHEMA_VERSION) => Ok(()),
        // Inside prepare's BEGIN IMMEDIATE: of several processes opening it at once, one upgrades,
        // and a failed upgrade rolls back whole (the file stays as it was).
        Some(found) if found.trim().parse::<u32>() == Ok(1) => {
            conn.execute_batch(UPGRADE_1_TO_2)?;
            conn.execute_batch(UPGRADE_2_TO_3)?;
            Ok(())
        }
        Some(found) if found.trim().parse::<u32>() == Ok(2) => {
            conn.execute_batch(UPGRADE_2_TO_3)?;
            Ok(())
        }
        found => Err(Checked::Store(StoreError::SchemaVersion {
            found: found.unwrap_or_else(|| "(none)".to_string()),
            expected: SCHEMA_VERSION,
        })),
    }
}
