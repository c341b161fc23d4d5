//! The SQLite store: one file that any number of processes share.
//!
//! WAL journal with `synchronous=NORMAL`: a commit survives the process being killed at any instant
//! (the crash model), though not a power cut, and costs no fsync. Writers queue on SQLite's lock for
//! up to [`BUSY_TIMEOUT`]. Each store holds one connection behind a mutex, with every statement
//! prepared once and cached, and a background thread that checkpoints the WAL
//! ([`checkpoint`]). Tables and key layout: [`schema`].

// NOTE: the bundled SQLite is built with STAT4, which recompiles a statement on every new binding
// of a parameter that the planner could compare with a non-unique index (measured on the dev VM:
// 10-15 us per call instead of 1-3 us). So the frequent statements look rows up by unique key or
// rowid, and the others keep the parameter from the planner (`CAST(?1 AS TEXT)`, a subquery).

mod checkpoint;
mod schema;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use self::checkpoint::LazyCheckpointer;
use self::schema::{MAX_SEQ, SEQ_BITS};
use super::error::parse_json;
use super::memory::sort_decisions;
use super::rows::{self, RUN_COLUMNS as READ_COLUMNS};
use super::{
    Claim, Control, Decision, Lease, LeaseOwner, ListedRun, RunRecord, StepEvent, Store, StoreError,
};

/// How long a write waits for another process's write to finish before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const RUN_COLUMNS: &str =
    "run_id, workflow_id, name, version, status, created_at, updated_at, input, error, result";

/// A [`Store`] in a SQLite file (`sqlite:///path.db`), shared by any number of processes.
pub struct SqliteStore {
    url: String,
    // Dropped before `checkpointer`: its WAL hook holds the checkpointer too, whose thread (if
    // started) is joined when the last holder drops it.
    conn: Mutex<Connection>,
    checkpointer: Option<Arc<LazyCheckpointer>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database file at `path`.
    ///
    /// [`StoreError::Unreachable`] if the file cannot be created or is not a SQLite database;
    /// [`StoreError::SchemaVersion`] if it was written with another
    /// [`SCHEMA_VERSION`](super::SCHEMA_VERSION) (or is not a batten store).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // An absolute path brings its own slash: sqlite:////abs/runs.db, as SQLAlchemy spells it.
        Self::open_with_url(path, format!("sqlite:///{}", path.display()))
    }

    /// A private database in memory (`sqlite://:memory:`), gone when the store is dropped.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let url = "sqlite://:memory:".to_string();
        let conn = Connection::open_in_memory()
            .map_err(|e| StoreError::Unreachable(format!("{url}: {e}")))?;
        schema::prepare(&conn, &url, false)?;
        Ok(Self {
            url,
            conn: Mutex::new(conn),
            checkpointer: None,
        })
    }

    pub(super) fn open_with_url(path: &Path, url: String) -> Result<Self, StoreError> {
        let unreachable =
            |cause: &dyn std::fmt::Display| StoreError::Unreachable(format!("{url}: {cause}"));
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unreachable(&format_args!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(|e| unreachable(&e))?;
        schema::prepare(&conn, &url, true)?;
        let checkpointer = Arc::new(LazyCheckpointer::new(path, &url));
        let wake = Arc::clone(&checkpointer);
        // Replaces SQLite's inline autocheckpoint.
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            wake.committed(pages);
            Ok(())
        }))
        .map_err(|e| unreachable(&e))?;
        Ok(Self {
            url,
            conn: Mutex::new(conn),
            checkpointer: Some(checkpointer),
        })
    }

    fn backend(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Backend(format!("{}: {e}", self.url))
    }

    /// Runs `f` in a write transaction (BEGIN IMMEDIATE: the write lock is taken first, so reads
    /// inside it see the latest data and the commit cannot fail on a conflict), committing if it
    /// returns `Ok`, rolling back otherwise. `f` returns a nested result so it can fail for a domain
    /// reason (e.g. `RunNotFound`) without a backend error.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock();
        if !conn.is_autocommit() {
            // A transaction left open by an earlier failure (e.g. a failed ROLLBACK).
            let _ = conn.execute_batch("ROLLBACK");
        }
        conn.prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut stmt| stmt.execute([]))
            .map_err(|e| self.backend(e))?;
        let outcome = f(&conn);
        let end = if matches!(outcome, Ok(Ok(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = conn
            .prepare_cached(end)
            .and_then(|mut stmt| stmt.execute([]));
        match (outcome, ended) {
            (Ok(Ok(value)), Ok(_)) => {
                if self
                    .checkpointer
                    .as_ref()
                    .is_some_and(|c| c.wants_restart())
                {
                    // Outside any transaction: copies what the checkpoint thread has not, so the
                    // next write rewinds the WAL (see `checkpoint`). PASSIVE never waits: busy (the
                    // thread is checkpointing, another process reads) means the next commit tries.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("{}: WAL checkpoint failed: {e}", self.url);
                    }
                }
                Ok(value)
            }
            (Ok(Err(e)), _) => Err(e),
            (Err(e), _) | (Ok(Ok(_)), Err(e)) => Err(self.backend(e)),
        }
    }

    /// The run's integer key (the high bits of its events' ids), or `RunNotFound`.
    fn run_key(&self, conn: &Connection, run_id: &str) -> Result<i64, StoreError> {
        run_key(conn, run_id)
            .map_err(|e| self.backend(e))?
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_string()))
    }

    /// `append`, refused with `LeaseLost` when `fence` is a token other than the run's held one.
    fn append_checked(
        &self,
        run_id: &str,
        events: &[StepEvent],
        fence: Option<u64>,
    ) -> Result<Vec<u64>, StoreError> {
        // Serialized before taking the lock.
        let encoded = encode_events(events);
        self.write(|conn| append_in(conn, run_id, events, &encoded, fence))
    }
}

/// The JSON columns of `events` (output, delta, detail), serialized before the store's lock is
/// taken.
fn encode_events(events: &[StepEvent]) -> Vec<[Option<String>; 3]> {
    events
        .iter()
        .map(|e| {
            [
                e.output.as_ref().map(to_json),
                e.delta.as_ref().map(to_json),
                e.detail.as_ref().map(to_json),
            ]
        })
        .collect()
}

/// Inside a write transaction: appends `events` (their JSON columns `encoded`) to the run's
/// history, refused with `LeaseLost` when `fence` is a token other than the run's held one.
fn append_in(
    conn: &Connection,
    run_id: &str,
    events: &[StepEvent],
    encoded: &[[Option<String>; 3]],
    fence: Option<u64>,
) -> rusqlite::Result<Result<Vec<u64>, StoreError>> {
    // The run's last event, read under the write lock: another process appending to the
    // same run waits for our commit, then reads the id we wrote.
    // The lease is read in the same statement: a fenced append costs no extra query.
    let Some((key, last_id, token, held)) = conn
        .prepare_cached(
            "SELECT key, (SELECT id FROM events
                          WHERE id > runs.key << 32 AND id <= (runs.key << 32) | 0xFFFFFFFF
                          ORDER BY id DESC LIMIT 1),
                    lease_token, lease_owner IS NOT NULL
             FROM runs WHERE run_id = ?1",
        )?
        .query_row([run_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, i64>(2)? as u64,
                row.get::<_, bool>(3)?,
            ))
        })
        .optional()?
    else {
        return Ok(Err(StoreError::RunNotFound(run_id.to_string())));
    };
    if let Some(fence) = fence.filter(|fence| !held || *fence != token) {
        return Ok(Err(StoreError::LeaseLost {
            run_id: run_id.to_string(),
            token: fence,
            current: token,
        }));
    }
    if events.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let last_seq = last_id.map_or(0, |id| id - first_id(key));
    if last_seq + events.len() as i64 > MAX_SEQ {
        return Ok(Err(StoreError::Backend(format!(
            "run '{run_id}' cannot hold more than {MAX_SEQ} events"
        ))));
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (id, step_id, status, attempt, at, duration_ms, error_type, error,
                             output, delta, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut seqs = Vec::with_capacity(events.len());
    for ((event, [output, delta, detail]), seq) in events.iter().zip(encoded).zip(last_seq + 1..) {
        insert.execute(params![
            first_id(key) + seq,
            event.step_id,
            event.status,
            event.attempt,
            event.at,
            event.duration_ms,
            event.error_type,
            event.error,
            output,
            delta,
            detail,
        ])?;
        seqs.push(seq as u64);
    }
    Ok(Ok(seqs))
}

rows::columns_by!(Row<'_>, column);

/// The run's token counter and its held lease (`None`: run absent; inner `Err`: a corrupt owner).
#[allow(clippy::type_complexity)]
fn read_lease(
    conn: &Connection,
    run_id: &str,
) -> rusqlite::Result<Option<Result<(u64, Option<Lease>), StoreError>>> {
    let row: Option<(i64, Option<String>, Option<f64>, Option<f64>)> = conn
        .prepare_cached(
            "SELECT lease_token, lease_owner, lease_heartbeat, lease_expires FROM runs
             WHERE run_id = ?1",
        )?
        .query_row([run_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    Ok(row.map(|(token, owner, heartbeat_at, expires_at)| {
        let token = token as u64;
        let lease = rows::lease(run_id, token, owner.as_deref(), heartbeat_at, expires_at)?;
        Ok((token, lease))
    }))
}

/// `Ok(Err(LeaseLost))` unless `token` is the run's held lease; `Ok(Err(RunNotFound))` if absent.
fn check_fence(
    conn: &Connection,
    run_id: &str,
    token: u64,
) -> rusqlite::Result<Result<(), StoreError>> {
    let row: Option<(i64, bool)> = conn
        .prepare_cached("SELECT lease_token, lease_owner IS NOT NULL FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match row {
        None => Err(StoreError::RunNotFound(run_id.to_string())),
        Some((current, held)) if !held || current as u64 != token => Err(StoreError::LeaseLost {
            run_id: run_id.to_string(),
            token,
            current: current as u64,
        }),
        Some(_) => Ok(()),
    })
}

fn run_key(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT key FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| row.get(0))
        .optional()
}

/// The first event id of the run with this key (seq 0, which no event has).
fn first_id(key: i64) -> i64 {
    key << SEQ_BITS
}

/// Column `index` of `row`; a value of the wrong type is a `Corrupt` record named by `what`.
fn column<T: FromSql>(
    row: &Row<'_>,
    index: usize,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    row.get(index).map_err(|e| {
        let name = row.as_ref().column_name(index).unwrap_or("?").to_string();
        StoreError::corrupt(what(), format_args!("column '{name}': {e}"))
    })
}

fn to_json(value: &Value) -> String {
    // A `Value` always serializes (its map keys are strings and it holds no NaN).
    value.to_string()
}

impl Store for SqliteStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let input = to_json(&run.input);
        let result = run.result.as_ref().map(to_json);
        let conn = self.conn.lock();
        let inserted = conn
            .prepare_cached(&format!(
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (run_id) DO NOTHING"
            ))
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run.run_id,
                    run.workflow_id,
                    run.name,
                    run.version,
                    run.status,
                    run.created_at,
                    run.updated_at,
                    input,
                    run.error,
                    result,
                ])
            })
            .map_err(|e| self.backend(e))?;
        if inserted == 0 {
            return Err(StoreError::RunExists(run.run_id.clone()));
        }
        Ok(())
    }

    fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {READ_COLUMNS} FROM runs WHERE run_id = ?1"
            ))
            .map_err(|e| self.backend(e))?;
        let mut rows = stmt.query([run_id]).map_err(|e| self.backend(e))?;
        match rows.next().map_err(|e| self.backend(e))? {
            Some(row) => rows::run(row),
            None => Err(StoreError::RunNotFound(run_id.to_string())),
        }
    }

    fn finish_status(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
    ) -> Result<(), StoreError> {
        let result = result.map(to_json);
        let conn = self.conn.lock();
        let updated = conn
            .prepare_cached(
                "UPDATE runs SET status = ?2, updated_at = ?3, error = COALESCE(?4, error),
                 result = COALESCE(?5, result) WHERE run_id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, status, at, error, result]))
            .map_err(|e| self.backend(e))?;
        if updated == 0 {
            return Err(StoreError::RunNotFound(run_id.to_string()));
        }
        Ok(())
    }

    fn list_runs(
        &self,
        status: Option<&str>,
        workflow_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedRun>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {READ_COLUMNS} FROM runs
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR workflow_id = ?2)
                 ORDER BY created_at DESC, rowid DESC LIMIT ?3"
            ))
            .map_err(|e| self.backend(e))?;
        let mut rows = stmt
            .query(params![status, workflow_id, limit])
            .map_err(|e| self.backend(e))?;
        let mut runs = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.backend(e))? {
            runs.push(rows::run(row));
        }
        Ok(runs)
    }

    fn append(&self, run_id: &str, events: &[StepEvent]) -> Result<Vec<u64>, StoreError> {
        self.append_checked(run_id, events, None)
    }

    fn append_fenced(
        &self,
        run_id: &str,
        events: &[StepEvent],
        token: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.append_checked(run_id, events, Some(token))
    }

    fn finish_status_fenced(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
        token: u64,
    ) -> Result<(), StoreError> {
        let result = result.map(to_json);
        self.write(|conn| {
            if let Err(e) = check_fence(conn, run_id, token)? {
                return Ok(Err(e));
            }
            conn.prepare_cached(
                "UPDATE runs SET status = ?2, updated_at = ?3, error = COALESCE(?4, error),
                 result = COALESCE(?5, result) WHERE run_id = ?1",
            )?
            .execute(params![run_id, status, at, error, result])?;
            Ok(Ok(()))
        })
    }

    fn claim(
        &self,
        run_id: &str,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
        take_over: Option<u64>,
    ) -> Result<Claim, StoreError> {
        self.write(|conn| {
            let Some(current) = read_lease(conn, run_id)? else {
                return Ok(Err(StoreError::RunNotFound(run_id.to_string())));
            };
            let (token, held) = match current {
                Ok(current) => current,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(lease) = held {
                if lease.is_live(now) && take_over != Some(lease.token) {
                    return Ok(Ok(Claim::Held(lease)));
                }
            }
            let lease = Lease {
                owner: owner.clone(),
                token: token + 1,
                heartbeat_at: now,
                expires_at: now + ttl,
            };
            conn.prepare_cached(
                "UPDATE runs SET lease_token = ?2, lease_owner = ?3, lease_heartbeat = ?4,
                 lease_expires = ?5 WHERE run_id = ?1",
            )?
            .execute(params![
                run_id,
                lease.token as i64,
                owner.encode(),
                lease.heartbeat_at,
                lease.expires_at
            ])?;
            Ok(Ok(Claim::Won(lease)))
        })
    }

    fn renew(&self, run_id: &str, token: u64, now: f64, ttl: f64) -> Result<Lease, StoreError> {
        self.write(|conn| {
            let Some(current) = read_lease(conn, run_id)? else {
                return Ok(Err(StoreError::RunNotFound(run_id.to_string())));
            };
            let (current, held) = match current {
                Ok(current) => current,
                Err(e) => return Ok(Err(e)),
            };
            let Some(mut lease) = held.filter(|lease| lease.token == token) else {
                return Ok(Err(StoreError::LeaseLost {
                    run_id: run_id.to_string(),
                    token,
                    current,
                }));
            };
            lease.heartbeat_at = now;
            lease.expires_at = now + ttl;
            conn.prepare_cached(
                "UPDATE runs SET lease_heartbeat = ?2, lease_expires = ?3 WHERE run_id = ?1",
            )?
            .execute(params![run_id, lease.heartbeat_at, lease.expires_at])?;
            Ok(Ok(lease))
        })
    }

    fn release(&self, run_id: &str, token: u64) -> Result<bool, StoreError> {
        let conn = self.conn.lock();
        let updated = conn
            .prepare_cached(
                "UPDATE runs SET lease_owner = NULL, lease_heartbeat = NULL, lease_expires = NULL
                 WHERE run_id = ?1 AND lease_token = ?2 AND lease_owner IS NOT NULL",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, token as i64]))
            .map_err(|e| self.backend(e))?;
        if updated == 0 {
            self.run_key(&conn, run_id)?;
        }
        Ok(updated > 0)
    }

    fn events(&self, run_id: &str, after: u64) -> Result<Vec<StepEvent>, StoreError> {
        let conn = self.conn.lock();
        let key = self.run_key(&conn, run_id)?;
        let Some(after) = i64::try_from(after).ok().filter(|after| *after < MAX_SEQ) else {
            return Ok(Vec::new());
        };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT id, {} FROM events WHERE id > ?1 AND id <= ?2 ORDER BY id",
                rows::EVENT_COLUMNS
            ))
            .map_err(|e| self.backend(e))?;
        let mut rows = stmt
            .query([first_id(key) + after, first_id(key) + MAX_SEQ])
            .map_err(|e| self.backend(e))?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.backend(e))? {
            let id: i64 = column(row, 0, || format!("run '{run_id}' event"))?;
            let seq = (id - first_id(key)) as u64;
            events.push(rows::event(row, run_id, seq)?);
        }
        Ok(events)
    }

    fn set_control(&self, run_id: &str, control: Option<Control>) -> Result<(), StoreError> {
        self.write(|conn| {
            if run_key(conn, run_id)?.is_none() {
                return Ok(Err(StoreError::RunNotFound(run_id.to_string())));
            }
            match control {
                Some(control) => conn
                    .prepare_cached(
                        "INSERT INTO controls (run_id, control) VALUES (?1, ?2)
                         ON CONFLICT (run_id) DO UPDATE SET control = excluded.control",
                    )?
                    .execute([run_id, control.as_str()])?,
                None => conn
                    .prepare_cached("DELETE FROM controls WHERE run_id = ?1")?
                    .execute([run_id])?,
            };
            Ok(Ok(()))
        })
    }

    fn control(&self, run_id: &str) -> Result<Option<Control>, StoreError> {
        // One statement answers both "does the run exist" and "what is its control": the engine
        // polls this between steps.
        // A subquery, not `runs LEFT JOIN controls`, which STAT4 recompiles (17 us vs 2.7 us).
        let conn = self.conn.lock();
        let row: Option<Option<String>> = conn
            .prepare_cached(
                "SELECT (SELECT control FROM controls WHERE run_id = ?1) FROM runs WHERE run_id = ?1",
            )
            .and_then(|mut stmt| stmt.query_row([run_id], |row| row.get(0)).optional())
            .map_err(|e| self.backend(e))?;
        match row {
            None => Err(StoreError::RunNotFound(run_id.to_string())),
            Some(None) => Ok(None),
            Some(Some(text)) => Control::parse(&text).map(Some).ok_or_else(|| {
                StoreError::corrupt(
                    format!("run '{run_id}' control"),
                    format_args!("'{text}' is neither 'pause' nor 'cancel'"),
                )
            }),
        }
    }

    fn decide(&self, run_id: &str, decision: &Decision) -> Result<(), StoreError> {
        self.write(|conn| {
            if run_key(conn, run_id)?.is_none() {
                return Ok(Err(StoreError::RunNotFound(run_id.to_string())));
            }
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO decisions (run_id, step_id, approved, decided_by, comment, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_id, step_id) DO NOTHING",
                )?
                .execute(params![
                    run_id,
                    decision.step_id,
                    decision.approved,
                    decision.by,
                    decision.comment,
                    decision.at,
                ])?;
            Ok(match inserted {
                0 => Err(StoreError::AlreadyDecided {
                    run_id: run_id.to_string(),
                    step_id: decision.step_id.clone(),
                }),
                _ => Ok(()),
            })
        })
    }

    fn decisions(&self, run_id: &str) -> Result<Vec<Decision>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                // `CAST(?1 AS TEXT)`, not `?1`, which STAT4 would recompile on every call (see top).
                "SELECT step_id, approved, decided_by, comment, at FROM decisions
                 WHERE run_id = CAST(?1 AS TEXT)",
            )
            .map_err(|e| self.backend(e))?;
        let mut rows = stmt.query([run_id]).map_err(|e| self.backend(e))?;
        let mut decisions = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.backend(e))? {
            decisions.push(rows::decision(row, run_id)?);
        }
        if decisions.is_empty() {
            self.run_key(&conn, run_id)?;
        }
        sort_decisions(&mut decisions);
        Ok(decisions)
    }

    fn cache_get(&self, key: &str, now: f64) -> Result<Option<Value>, StoreError> {
        let conn = self.conn.lock();
        let text: Option<String> = conn
            .prepare_cached("SELECT value FROM cache WHERE key = ?1 AND expires_at > ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![key, now], |row| row.get(0))
                    .optional()
            })
            .map_err(|e| self.backend(e))?;
        text.map(|text| parse_json(&text, || format!("cache entry '{key}'")))
            .transpose()
    }

    fn cache_put(&self, key: &str, value: &Value, expires_at: f64) -> Result<(), StoreError> {
        let value = to_json(value);
        let conn = self.conn.lock();
        conn.prepare_cached(
            "INSERT INTO cache (key, value, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .and_then(|mut stmt| stmt.execute(params![key, value, expires_at]))
        .map_err(|e| self.backend(e))?;
        Ok(())
    }

    fn create_run_claimed(
        &self,
        run: &RunRecord,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
    ) -> Result<Claim, StoreError> {
        // One INSERT (one commit) writes the run with its first lease: nobody can have claimed
        // a run that did not exist.
        let input = to_json(&run.input);
        let result = run.result.as_ref().map(to_json);
        let lease = Lease {
            owner: owner.clone(),
            token: 1,
            heartbeat_at: now,
            expires_at: now + ttl,
        };
        let conn = self.conn.lock();
        let inserted = conn
            .prepare_cached(&format!(
                "INSERT INTO runs ({RUN_COLUMNS}, lease_token, lease_owner, lease_heartbeat,
                                   lease_expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11, ?12, ?13)
                 ON CONFLICT (run_id) DO NOTHING"
            ))
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run.run_id,
                    run.workflow_id,
                    run.name,
                    run.version,
                    run.status,
                    run.created_at,
                    run.updated_at,
                    input,
                    run.error,
                    result,
                    owner.encode(),
                    lease.heartbeat_at,
                    lease.expires_at,
                ])
            })
            .map_err(|e| self.backend(e))?;
        if inserted == 0 {
            return Err(StoreError::RunExists(run.run_id.clone()));
        }
        Ok(Claim::Won(lease))
    }

    fn finish_run_fenced(
        &self,
        run_id: &str,
        events: &[StepEvent],
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
        clear_control: bool,
        token: u64,
    ) -> Result<bool, StoreError> {
        let encoded = encode_events(events);
        let result = result.map(to_json);
        // One transaction (one commit): the fence is checked once, the run's status and the
        // lease's release are one UPDATE of its row.
        self.write(|conn| {
            if let Err(e) = append_in(conn, run_id, events, &encoded, Some(token))? {
                return Ok(Err(e));
            }
            conn.prepare_cached(
                "UPDATE runs SET status = ?2, updated_at = ?3, error = COALESCE(?4, error),
                 result = COALESCE(?5, result), lease_owner = NULL, lease_heartbeat = NULL,
                 lease_expires = NULL WHERE run_id = ?1",
            )?
            .execute(params![run_id, status, at, error, result])?;
            if clear_control {
                conn.prepare_cached("DELETE FROM controls WHERE run_id = ?1")?
                    .execute([run_id])?;
            }
            Ok(Ok(true))
        })
    }

    fn put_workflow(&self, workflow_id: &str, definition: &Value) -> Result<(), StoreError> {
        let definition = to_json(definition);
        let conn = self.conn.lock();
        conn.prepare_cached(
            "INSERT INTO workflows (workflow_id, definition) VALUES (?1, ?2)
             ON CONFLICT (workflow_id) DO UPDATE SET definition = excluded.definition",
        )
        .and_then(|mut stmt| stmt.execute([workflow_id, &definition]))
        .map_err(|e| self.backend(e))?;
        Ok(())
    }

    fn get_workflow(&self, workflow_id: &str) -> Result<Option<Value>, StoreError> {
        let conn = self.conn.lock();
        let text: Option<String> = conn
            .prepare_cached("SELECT definition FROM workflows WHERE workflow_id = ?1")
            .and_then(|mut stmt| stmt.query_row([workflow_id], |row| row.get(0)).optional())
            .map_err(|e| self.backend(e))?;
        text.map(|text| parse_json(&text, || format!("workflow '{workflow_id}'")))
            .transpose()
    }
}
