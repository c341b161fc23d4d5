//! Checkpoint stores: where runs, their step events, controls, approval decisions, the step cache
//! and workflow definitions are kept, behind one [`Store`] trait. Pure Rust, no pyo3.
//!
//! Four backends, opened from a URL by [`open`]:
//! - [`MemoryStore`] (`memory://`): in-process, for approvals and pause within one process, and tests;
//! - [`SqliteStore`] (`sqlite:///runs.db`): the default; one file shared by any number of processes;
//! - [`RedisStore`] (`redis://host:port/db`): shared across machines;
//! - [`PostgresStore`] (`postgresql://user:password@host:port/db`): shared across machines, in a
//!   PostgreSQL database.
//!
//! The step history is append-only: each step event is inserted once and never rewritten, so a
//! store grows linearly with the work done, and a run killed at any instant is resumed from the
//! events that made it to the store.
//!
//! All times are unix seconds (`f64`); the store never reads the clock itself.

mod error;
mod memory;
mod postgres;
mod record;
mod redis;
mod rows;
mod sqlite;

use std::sync::Arc;

use serde_json::Value;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use record::{Claim, Control, Decision, Lease, LeaseOwner, RunRecord, StepEvent};
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

/// What [`Store::watch`] calls when the watched run's control or decisions change: "look now".
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// A subscription made by [`Store::watch`]; dropping it ends the subscription.
pub struct Watch(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Watch {
    /// A subscription that runs `end` when dropped.
    pub(crate) fn new(end: impl FnOnce() + Send + Sync + 'static) -> Self {
        Watch(Some(Box::new(end)))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            end();
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// The layout of the data this batten writes. A store written with another version is refused with
/// [`StoreError::SchemaVersion`] rather than misread.
///
/// Version 2 added run leases (owner, fencing token, heartbeat, expiry). A version 1 store is
/// still opened and upgraded in place: SQLite gains the lease columns (`ALTER TABLE ... ADD
/// COLUMN`), Redis only its version key (a run hash without lease fields has no lease).
pub const SCHEMA_VERSION: u32 = 2;

/// The layout of a SQLite store's file, numbered apart from [`SCHEMA_VERSION`] since version 3
/// (the other stores' layouts did not change): a file of another version is refused with
/// [`StoreError::SchemaVersion`].
///
/// Version 3 rebuilt the runs table without `AUTOINCREMENT` and dropped an index no query used,
/// so recording a run writes three pages instead of five (issue 18's D4); a trigger deletes a
/// deleted run's events, so a reused key never inherits them. A version 1 or 2 file is upgraded
/// in place when opened (one transaction; every run keeps its key and its events).
pub const SQLITE_SCHEMA_VERSION: u32 = 3;

/// The older schema versions a store is upgraded from when opened.
pub const UPGRADABLE_VERSIONS: &[u32] = &[1];

/// The deepest nesting of a JSON value given to a store to keep (an output, a delta, a detail, a
/// run's input or result, a cache entry, a workflow definition): `[[1]]` nests 2 levels, a
/// scalar 0. The binding refuses a deeper value before anything is written (a step's output
/// fails the step with a `TypeError`), because the stores' reader, serde_json, refuses to parse
/// 128 levels or more, and a record written deeper could never be read back. The margin covers
/// the envelope a backend wraps a value in (a Redis event or cache entry is one more object).
pub const MAX_JSON_DEPTH: usize = 100;

/// One run of a [`Store::list_runs`] listing: its record, or the [`StoreError::Corrupt`] error
/// saying why that record cannot be read (naming the run), so one bad record never hides the
/// others.
pub type ListedRun = Result<RunRecord, StoreError>;

/// A checkpoint store. Every method is synchronous and may be called from any thread (including one
/// that is running a tokio runtime); a backend that talks to a server does so on its own runtime.
///
/// Per-run methods ([`append`](Store::append), [`events`](Store::events), the controls and the
/// decisions) fail with [`StoreError::RunNotFound`] when the run was never created.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The URL the store was opened from, for messages, e.g. "sqlite:///runs.db" (a password in it is
    /// replaced by "***").
    fn url(&self) -> &str;

    /// Records a new run. [`StoreError::RunExists`] if its id is taken.
    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// The run with this id, or [`StoreError::RunNotFound`].
    fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError>;

    /// Sets the run's status and `updated_at` (= `at`, unix seconds), and its error and result when
    /// they are `Some` (`None` leaves them unchanged). [`StoreError::RunNotFound`] if absent.
    fn finish_status(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
    ) -> Result<(), StoreError>;

    /// At most `limit` runs, newest first (by `created_at`; runs created in the same instant come in
    /// an order the backend chooses), with this status and workflow id when they are `Some`.
    ///
    /// A run whose record cannot be decoded is listed in its place as the `Corrupt` error naming
    /// it ([`ListedRun`]); the whole call fails only when the store itself does.
    fn list_runs(
        &self,
        status: Option<&str>,
        workflow_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedRun>, StoreError>;

    /// Appends `events` to the run's history, all or none (one transaction), and returns the `seq`
    /// each was given: consecutive, following the run's last event, even when several processes
    /// append to the same run.
    fn append(&self, run_id: &str, events: &[StepEvent]) -> Result<Vec<u64>, StoreError>;

    /// The run's events with `seq > after`, in `seq` order (`after = 0` for all of them).
    fn events(&self, run_id: &str, after: u64) -> Result<Vec<StepEvent>, StoreError>;

    /// Requests a pause or cancel of the run, or clears the request (`None`).
    fn set_control(&self, run_id: &str, control: Option<Control>) -> Result<(), StoreError>;

    /// The run's pending control request, if any.
    fn control(&self, run_id: &str) -> Result<Option<Control>, StoreError>;

    /// Records a decision on an approval step; [`StoreError::AlreadyDecided`] if that step already
    /// has one. Atomic: of two concurrent decisions on one step, exactly one is recorded.
    fn decide(&self, run_id: &str, decision: &Decision) -> Result<(), StoreError>;

    /// The run's decisions, ordered by `at` (then by step id).
    fn decisions(&self, run_id: &str) -> Result<Vec<Decision>, StoreError>;

    /// The cached value under `key`, or `None` when absent or expired (`expires_at <= now`, unix
    /// seconds).
    fn cache_get(&self, key: &str, now: f64) -> Result<Option<Value>, StoreError>;

    /// Caches `value` under `key` until `expires_at` (unix seconds; `f64::INFINITY` for never),
    /// replacing any previous value.
    fn cache_put(&self, key: &str, value: &Value, expires_at: f64) -> Result<(), StoreError>;

    /// [`append`](Store::append) by the holder of the run's lease with fencing token `token`:
    /// refused with [`StoreError::LeaseLost`] (nothing written) unless the run's current token is
    /// `token` and its lease is held (not released). Checked and written in one atomic operation.
    fn append_fenced(
        &self,
        run_id: &str,
        events: &[StepEvent],
        token: u64,
    ) -> Result<Vec<u64>, StoreError>;

    /// [`finish_status`](Store::finish_status) fenced as [`append_fenced`](Store::append_fenced).
    #[allow(clippy::too_many_arguments)]
    fn finish_status_fenced(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
        token: u64,
    ) -> Result<(), StoreError>;

    /// Claims the execution of the run for `owner` until `now + ttl` (unix seconds; `ttl` in
    /// seconds), atomically: won when no one holds the lease, when it expired
    /// (`expires_at <= now`), or when `take_over` names the current token (the claimant found
    /// that owner dead, e.g. its pid gone on this host). Winning increments the fencing token.
    /// Otherwise [`Claim::Held`] with the current lease, nothing changed.
    /// [`StoreError::RunNotFound`] if the run is absent.
    fn claim(
        &self,
        run_id: &str,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
        take_over: Option<u64>,
    ) -> Result<Claim, StoreError>;

    /// A heartbeat: extends the lease with fencing token `token` to `now + ttl` and returns it.
    /// [`StoreError::LeaseLost`] if the run's token is another or its lease was released.
    fn renew(&self, run_id: &str, token: u64, now: f64, ttl: f64) -> Result<Lease, StoreError>;

    /// Gives up the lease with fencing token `token` (the run keeps its token counter). `false`
    /// (nothing changed) when the run's lease is not that one any more.
    fn release(&self, run_id: &str, token: u64) -> Result<bool, StoreError>;

    /// Records a new run and claims its lease for `owner` until `now + ttl` (unix seconds; `ttl`
    /// in seconds), as [`create_run`](Store::create_run) then [`claim`](Store::claim) with no
    /// take-over do, returning the claim (won with token 1 unless another process claimed the id
    /// in between). The default calls those two; a backend that can do both in one transaction
    /// overrides it (one commit instead of two per durable run; issue 18's D4).
    /// [`StoreError::RunExists`] if the id is taken (nothing claimed).
    fn create_run_claimed(
        &self,
        run: &RunRecord,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
    ) -> Result<Claim, StoreError> {
        self.create_run(run)?;
        self.claim(&run.run_id, owner, now, ttl, None)
    }

    /// The end of an execution that holds the run's lease with fencing token `token`: appends
    /// `events` (none: nothing appended), sets the run's status as
    /// [`finish_status`](Store::finish_status) does, clears its control request when
    /// `clear_control`, and releases the lease. Refused with [`StoreError::LeaseLost`] as
    /// [`append_fenced`](Store::append_fenced) is. Returns whether the lease was released (as
    /// [`release`](Store::release)).
    ///
    /// The default calls [`append_fenced`](Store::append_fenced),
    /// [`finish_status_fenced`](Store::finish_status_fenced), [`set_control`](Store::set_control)
    /// and [`release`](Store::release) in that order (a failure stops it there, as the separate
    /// calls would); a backend that can overrides it with one transaction, all or nothing.
    #[allow(clippy::too_many_arguments)]
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
        if !events.is_empty() {
            self.append_fenced(run_id, events, token)?;
        }
        self.finish_status_fenced(run_id, status, at, error, result, token)?;
        if clear_control {
            self.set_control(run_id, None)?;
        }
        self.release(run_id, token)
    }

    /// Saves a workflow definition (JSON), replacing any previous one with this id.
    fn put_workflow(&self, workflow_id: &str, definition: &Value) -> Result<(), StoreError>;

    /// The workflow definition saved under this id, if any.
    fn get_workflow(&self, workflow_id: &str) -> Result<Option<Value>, StoreError>;

    /// Pushes changes of the run's control ([`set_control`](Store::set_control)) and decisions
    /// ([`decide`](Store::decide)) made by any process: `wake` is called soon after each is
    /// committed, on a thread of the store's (never the caller's, never holding a lock of the
    /// store, so it may block), until the returned [`Watch`] is dropped. It is also called when
    /// the push channel (re)connects, since what changed while it was down was not pushed. A wake
    /// says only "look now" ([`control`](Store::control)): it may come for nothing, and several
    /// changes may give one.
    ///
    /// `None` (the default) when the backend has no push channel (memory, SQLite, Redis): the
    /// caller polls. The PostgreSQL store pushes with LISTEN/NOTIFY.
    fn watch(&self, run_id: &str, wake: Wake) -> Option<Watch> {
        let _ = (run_id, wake);
        None
    }
}

const ACCEPTED_URLS: &str = "accepted: memory://, sqlite:///relative/path.db, \
    sqlite:////absolute/path.db, sqlite://:memory:, redis://host:port/db, redis+unix:///path/to/socket, \
    postgresql://user:password@host:port/db";

/// Opens the store a URL names:
/// - `memory://`: a fresh, empty in-process [`MemoryStore`];
/// - `sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (SQLAlchemy's convention: the
///   path is what follows the third slash), creating the file and its directories if needed;
///   `sqlite://:memory:` (or `sqlite://`) for a private in-memory database;
/// - `redis://[user:password@]host[:port][/db]` or `redis+unix:///path/to/socket[?db=N]`;
/// - `postgresql://[user[:password]@]host[:port]/db[?param=value...]` (or `postgres://`), with
///   `connect_timeout` and `statement_timeout` in seconds (defaults 2 and 5) among the parameters.
///
/// `rediss://` (TLS) is refused: this build has no TLS library. Anything else is a
/// [`StoreError::Url`] naming the scheme and the accepted forms.
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::Url(format!(
            "'{}' has no scheme; {ACCEPTED_URLS}",
            redact(url)
        )));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if rest.is_empty() => Ok(Arc::new(MemoryStore::new())),
        "memory" => Err(StoreError::Url(format!(
            "'{url}': a memory:// URL takes nothing after the scheme; {ACCEPTED_URLS}"
        ))),
        "sqlite" => open_sqlite(url, rest),
        "redis" | "redis+unix" | "unix" => Ok(Arc::new(RedisStore::open(url)?)),
        "postgresql" | "postgres" => Ok(Arc::new(PostgresStore::open(url)?)),
        "rediss" => Err(StoreError::Url(format!(
            "'{}': rediss:// (Redis over TLS) is not supported by this build of batten; {ACCEPTED_URLS}",
            redact(url)
        ))),
        _ => Err(StoreError::Url(format!(
            "unknown store URL scheme '{scheme}' in '{}'; {ACCEPTED_URLS}",
            redact(url)
        ))),
    }
}

fn open_sqlite(url: &str, rest: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match sqlite_path(url, rest)? {
        None => Arc::new(SqliteStore::open_in_memory()?),
        Some(path) => Arc::new(SqliteStore::open_with_url(path.as_ref(), url.to_string())?),
    })
}

/// The file a `sqlite://{rest}` URL names (relative to the working directory unless it starts with
/// a fourth slash), or `None` for an in-memory database.
fn sqlite_path<'a>(url: &str, rest: &'a str) -> Result<Option<&'a str>, StoreError> {
    if matches!(rest, "" | ":memory:" | "/:memory:") {
        return Ok(None);
    }
    let Some(path) = rest.strip_prefix('/') else {
        return Err(StoreError::Url(format!(
            "'{url}': a SQLite URL has three slashes before a relative path and four before an \
             absolute one; {ACCEPTED_URLS}"
        )));
    };
    if path.is_empty() || path.ends_with('/') {
        return Err(StoreError::Url(format!(
            "'{url}' names a directory, not a database file"
        )));
    }
    Ok(Some(path))
}

/// `url` with the password (if any) replaced by "***", for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact("redis://me:secret@host/1"), "redis://me:***@host/1");
        assert_eq!(redact("redis://me@host/1"), "redis://me@host/1");
        assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact("sqlite:////a@b:c/x.db"), "sqlite:////a@b:c/x.db");
    }

    #[test]
    fn unknown_scheme_is_a_url_error_listing_the_accepted_ones() {
        let err = open("mysql://localhost/db").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Url(_)), "{err:?}");
        assert!(message.contains("'mysql'"), "{message}");
        assert!(message.contains("postgresql://"), "{message}");
        assert!(
            message.contains("sqlite:///") && message.contains("redis://"),
            "{message}"
        );
    }

    #[test]
    fn a_url_without_a_scheme_is_a_url_error() {
        assert!(matches!(open("runs.db"), Err(StoreError::Url(_))));
    }

    #[test]
    fn rediss_is_refused_as_unsupported() {
        let err = open("rediss://:pw@host:6380/0").unwrap_err();
        assert!(
            matches!(err, StoreError::Url(ref m) if m.contains("TLS") && !m.contains("pw")),
            "{err}"
        );
    }

    #[test]
    fn sqlite_urls_follow_sqlalchemy_three_slashes_relative_four_absolute() {
        fn path(url: &str) -> Result<Option<&str>, StoreError> {
            sqlite_path(url, url.strip_prefix("sqlite://").unwrap())
        }
        assert_eq!(path("sqlite:///runs/x.db").unwrap(), Some("runs/x.db"));
        assert_eq!(
            path("sqlite:////var/lib/x.db").unwrap(),
            Some("/var/lib/x.db")
        );
        assert_eq!(path("sqlite://:memory:").unwrap(), None);
        assert_eq!(path("sqlite:///:memory:").unwrap(), None);
        assert_eq!(path("sqlite://").unwrap(), None);
        assert!(matches!(path("sqlite://runs.db"), Err(StoreError::Url(_))));
        assert!(matches!(path("sqlite:///runs/"), Err(StoreError::Url(_))));
    }

    #[test]
    fn the_reader_takes_max_json_depth_in_an_envelope_and_refuses_128_levels() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        // The deepest a store writes: a value at the limit inside one envelope object.
        assert!(error::parse_json(&nested(MAX_JSON_DEPTH + 1), String::new).is_ok());
        let err = error::parse_json(&nested(128), || "run 'r' result".to_string()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { what, detail } if what == "run 'r' result" && detail.contains("recursion limit")),
            "{err:?}"
        );
    }

    #[test]
    fn memory_and_sqlite_memory_urls_open() {
        assert_eq!(open("memory://").unwrap().url(), "memory://");
        assert_eq!(
            open("sqlite://:memory:").unwrap().url(),
            "sqlite://:memory:"
        );
    }
}
