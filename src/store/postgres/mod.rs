//! The PostgreSQL store: shared across machines, in the database a team already operates.
//!
//! tokio-postgres connections pooled by deadpool-postgres, on the store's own one-worker tokio
//! runtime (as the Redis store does: the trait is synchronous and may be called from inside another
//! runtime, so each call is spawned onto this one and the caller waits on a std channel).
//!
//! Every wait is bounded, so an unreachable or stalled server is [`StoreError::Unreachable`], never
//! a hang: getting a connection (connecting included) by `connect_timeout` (default 2 s), each call
//! by `statement_timeout` (default 5 s) on the server (the session's `statement_timeout` and
//! `lock_timeout`) and that plus 0.25 s on the client, so that the server cancels a stuck
//! statement before the client gives up on it (one the client dropped first could still commit
//! once its lock came free: a write reported failed but done). Both are URL
//! query parameters in seconds: `postgresql://u:p@host:5432/db?connect_timeout=2&statement_timeout=5`.
//! The other query parameters are libpq's, as tokio-postgres reads them.
//!
//! Tables, in the schema `batten` (created with the tables on first open, under an advisory lock so
//! that of several processes opening a fresh database one creates them):
//! - `meta (key, value)`: `schema_version` = [`SCHEMA_VERSION`];
//! - `runs`: one row per run, with its lease (token, owner as JSON, heartbeat, expiry) and the
//!   seq of its last event (`last_seq`);
//! - `events (run_id, seq, ...)`: append-only; an append bumps the run's `last_seq` and inserts its
//!   events in one statement, so the run's row lock orders concurrent appends and seqs are
//!   consecutive;
//! - `controls`, `decisions` (primary key `(run_id, step_id)`: of two decisions one is recorded),
//!   `cache (key, value, expires_at)`, `workflows`.
//!
//! JSON values are kept as `text` (as written by serde_json), not `jsonb`, which would reorder keys
//! and reformat numbers. Times are `double precision` unix seconds.
//!
//! Pushed controls ([`Store::watch`]): a control or decision write sends
//! `NOTIFY batten_control, '<run id>'` in its own transaction (delivered when it commits), and
//! the store's first watch opens one more connection, outside the pool, that `LISTEN`s on that
//! channel for the store's life and wakes the watchers of the run named. When that connection
//! drops it is opened again (after 0.1 s, doubling to 5 s between failed attempts), and every
//! watcher is woken once it listens again, for what was written meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::error::parse_json;
use super::memory::sort_decisions;
use super::rows::{self, DECISION_COLUMNS, EVENT_COLUMNS, RUN_COLUMNS};
use super::{
    redact, Claim, Control, Decision, Lease, LeaseOwner, ListedRun, RunRecord, StepEvent, Store,
    StoreError, Wake, Watch, SCHEMA_VERSION,
};

/// The default bound on getting a connection (TCP, authentication, startup).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default bound on one call (client side) and one statement (server side).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the statement timeout a call waits for the server's answer.
const CLIENT_MARGIN: Duration = Duration::from_millis(250);
/// Connections one store keeps at most.
const POOL_SIZE: usize = 8;
/// The channel control and decision writes NOTIFY, with the run's id as the payload.
const CHANNEL: &str = "batten_control";
/// The first and the longest wait before the listening connection is opened again.
const RELISTEN_FIRST: Duration = Duration::from_millis(100);
const RELISTEN_MAX: Duration = Duration::from_secs(5);
/// The advisory lock key under which the schema is created or checked.
const SCHEMA_LOCK: i64 = 0x6261_7474_656e; // "batten"

const SCHEMA: &str = "
CREATE TABLE batten.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE batten.runs (
    key bigint GENERATED ALWAYS AS IDENTITY,
    run_id text PRIMARY KEY,
    workflow_id text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    status text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    input text NOT NULL,
    error text,
    result text,
    last_seq bigint NOT NULL DEFAULT 0,
    lease_token bigint NOT NULL DEFAULT 0,
    lease_owner text,
    lease_heartbeat double precision,
    lease_expires double precision
);
CREATE INDEX runs_by_created ON batten.runs (created_at, key);
CREATE INDEX runs_by_workflow ON batten.runs (workflow_id, created_at, key);
CREATE TABLE batten.events (
    run_id text NOT NULL,
    seq bigint NOT NULL,
    step_id text NOT NULL,
    status text NOT NULL,
    attempt bigint NOT NULL,
    at double precision NOT NULL,
    duration_ms double precision,
    error_type text,
    error text,
    output text,
    delta text,
    detail text,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE batten.controls (
    run_id text PRIMARY KEY REFERENCES batten.runs (run_id),
    control text NOT NULL
);
CREATE TABLE batten.decisions (
    run_id text NOT NULL REFERENCES batten.runs (run_id),
    step_id text NOT NULL,
    approved boolean NOT NULL,
    decided_by text,
    comment text,
    at double precision NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE batten.cache (key text PRIMARY KEY, value text NOT NULL, expires_at double precision NOT NULL);
CREATE TABLE batten.workflows (workflow_id text PRIMARY KEY, definition text NOT NULL);
";

/// `(last_seq += n)` and the events inserted after the old value, in one statement: the UPDATE
/// takes the run's row lock, so concurrent appends to one run queue on it and read each other's
/// `last_seq`. Nothing happens when the run is absent or (`$3` not null) its lease is not `$3`.
const APPEND: &str = "
WITH bumped AS (
    UPDATE batten.runs SET last_seq = last_seq + $2::bigint
    WHERE run_id = $1 AND ($3::bigint IS NULL OR (lease_token = $3 AND lease_owner IS NOT NULL))
    RETURNING last_seq - $2::bigint AS base
)
INSERT INTO batten.events (run_id, seq, step_id, status, attempt, at, duration_ms, error_type,
                           error, output, delta, detail)
SELECT $1, bumped.base + e.ord, e.step_id, e.status, e.attempt, e.at, e.duration_ms, e.error_type,
       e.error, e.output, e.delta, e.detail
FROM bumped, UNNEST($4::text[], $5::text[], $6::bigint[], $7::float8[], $8::float8[], $9::text[],
                    $10::text[], $11::text[], $12::text[], $13::text[])
     WITH ORDINALITY AS e(step_id, status, attempt, at, duration_ms, error_type, error, output,
                          delta, detail, ord)
RETURNING seq";

const FINISH: &str = "
UPDATE batten.runs SET status = $2, updated_at = $3, error = COALESCE($4::text, error),
       result = COALESCE($5::text, result)
WHERE run_id = $1 AND ($6::bigint IS NULL OR (lease_token = $6 AND lease_owner IS NOT NULL))";

/// The store's settings, read from its URL.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    connect_timeout: Duration,
    statement_timeout: Duration,
}

/// Splits batten's own query parameters (`connect_timeout`, `statement_timeout`, in seconds) off
/// `url`, returning the URL tokio-postgres is given and the settings.
fn parse_url(url: &str) -> Result<(String, Settings), StoreError> {
    let shown = redact(url);
    let bad = |detail: String| StoreError::Url(format!("'{shown}': {detail}"));
    let mut settings = Settings {
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "connect_timeout" => &mut settings.connect_timeout,
            "statement_timeout" => &mut settings.statement_timeout,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let seconds: f64 = value
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
            .ok_or_else(|| {
                bad(format!(
                    "{key} must be a positive number of seconds, got '{value}'"
                ))
            })?;
        *slot = Duration::from_secs_f64(seconds);
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, settings))
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a call failed: a database error (classified in [`classify`]) or a store-level answer.
enum Failure {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

type Outcome<T> = Result<T, Failure>;

/// A [`Store`] in a PostgreSQL database (`postgresql://user:password@host:port/db`).
pub struct PostgresStore {
    url: String,
    settings: Settings,
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The connection settings, for the listening connection (outside the pool).
    config: tokio_postgres::Config,
    listener: Arc<Listener>,
}

/// The watchers of [`Store::watch`], by run id, and the state of the listening connection.
#[derive(Default)]
struct Listener {
    watchers: Mutex<HashMap<String, Vec<(u64, Wake)>>>,
    next_id: AtomicU64,
    /// Whether the listening task was started (by the first watch).
    started: AtomicBool,
}

impl Listener {
    /// Wakes the watchers of `run_id` (all of them for `None`) on a blocking thread of the
    /// runtime: a wake may block (the binding's takes the GIL), which a worker must not do.
    fn wake(&self, run_id: Option<&str>) {
        let wakes: Vec<Wake> = {
            let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            match run_id {
                Some(run_id) => watchers
                    .get(run_id)
                    .map(|list| list.iter().map(|(_, w)| w.clone()).collect())
                    .unwrap_or_default(),
                None => watchers
                    .values()
                    .flatten()
                    .map(|(_, w)| w.clone())
                    .collect(),
            }
        };
        if !wakes.is_empty() {
            tokio::task::spawn_blocking(move || {
                for wake in wakes {
                    wake();
                }
            });
        }
    }

    fn remove(&self, run_id: &str, id: u64) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = watchers.get_mut(run_id) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                watchers.remove(run_id);
            }
        }
    }
}

/// The listening connection, for the store's life (`listener` dangles once it is dropped):
/// LISTEN, wake the run named by each notification, and open it again when it drops.
async fn listen(config: tokio_postgres::Config, settings: Settings, listener: Weak<Listener>) {
    let mut pause = RELISTEN_FIRST;
    loop {
        let connected = tokio::time::timeout(settings.connect_timeout, config.connect(NoTls)).await;
        if let Ok(Ok((client, mut connection))) = connected {
            let notified = listener.clone();
            let driver = tokio::spawn(async move {
                // The connection, driven here: its notifications, and the client's requests.
                while let Some(Ok(message)) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let AsyncMessage::Notification(n) = message {
                        match notified.upgrade() {
                            Some(listener) => listener.wake(Some(n.payload())),
                            None => return,
                        }
                    }
                }
            });
            let listening = tokio::time::timeout(
                settings.statement_timeout,
                client.batch_execute(&format!("LISTEN {CHANNEL}")),
            )
            .await;
            if let Ok(Ok(())) = listening {
                pause = RELISTEN_FIRST;
                match listener.upgrade() {
                    // What was written before LISTEN took effect was not pushed: look now.
                    Some(listener) => listener.wake(None),
                    None => return,
                }
                let _ = driver.await;
            } else {
                driver.abort();
            }
            drop(client);
        }
        if listener.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RELISTEN_MAX);
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.pool.close();
        // Dropping a runtime blocks until its tasks end, which panics inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A database error as a `StoreError`: connection failures, timeouts, a server shutting down or
/// cancelling a statement are `Unreachable`; the rest `Backend`.
fn classify(url: &str, e: &tokio_postgres::Error) -> StoreError {
    let unreachable = match e.code() {
        // No SQLSTATE: the connection closed, an I/O error, a timeout.
        None => true,
        Some(code) => {
            let code = code.code();
            // 08: connection exception; 57: operator intervention (shutdown, cancel, timeout);
            // 53: insufficient resources (too many connections); 55P03: lock_timeout.
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "55P03"
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => format!("{url}: {}: {}", db.code().code(), db.message()),
        None => format!("{url}: {e}"),
    };
    if unreachable {
        StoreError::Unreachable(detail)
    } else {
        StoreError::Backend(detail)
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgresql://` or `postgres://`, libpq's URL form, plus
    /// `connect_timeout` and `statement_timeout` in seconds, defaults 2 and 5) and checks the
    /// schema version, creating the schema in a database that has none.
    ///
    /// [`StoreError::Url`] for a malformed URL, [`StoreError::Unreachable`] (within the connect
    /// timeout plus the statement timeout) if the server does not answer,
    /// [`StoreError::SchemaVersion`] if the database was written with another version.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let (pg_url, settings) = parse_url(url)?;
        let mut config = tokio_postgres::Config::from_str(&pg_url)
            .map_err(|e| StoreError::Url(format!("'{shown}': {e}")))?;
        config.connect_timeout(settings.connect_timeout);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("batten");
        }
        let millis = settings.statement_timeout.as_millis().max(1);
        config.options(format!(
            "-c statement_timeout={millis} -c lock_timeout={millis}"
        ));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("batten-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(format!("{shown}: cannot start the PostgreSQL runtime: {e}"))
            })?;
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("{shown}: {e}")))?;
        let store = Self {
            url: shown,
            settings,
            runtime: Some(runtime),
            pool,
            config,
            listener: Arc::default(),
        };
        store.prepare_schema()?;
        Ok(store)
    }

    /// Creates the schema in an empty database, or checks its version.
    fn prepare_schema(&self) -> Result<(), StoreError> {
        let found: Option<String> = self.call(|client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                    .await?;
                let has_meta: bool = tx
                    .query_one("SELECT to_regclass('batten.meta') IS NOT NULL", &[])
                    .await?
                    .get(0);
                if !has_meta {
                    let has_tables: bool = tx
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'batten')",
                            &[],
                        )
                        .await?
                        .get(0);
                    if has_tables {
                        // Someone else's tables in our schema: refused like a newer version.
                        return Ok(None);
                    }
                    tx.batch_execute("CREATE SCHEMA IF NOT EXISTS batten")
                        .await?;
                    tx.batch_execute(SCHEMA).await?;
                    tx.execute(
                        "INSERT INTO batten.meta (key, value) VALUES ('schema_version', $1)",
                        &[&SCHEMA_VERSION.to_string()],
                    )
                    .await?;
                    tx.commit().await?;
                    return Ok(Some(SCHEMA_VERSION.to_string()));
                }
                let found: Option<String> = tx
                    .query_opt(
                        "SELECT value FROM batten.meta WHERE key = 'schema_version'",
                        &[],
                    )
                    .await?
                    .map(|row| row.get(0));
                tx.commit().await?;
                Ok(found)
            })
        })?;
        // The PostgreSQL store was born at version 2: there is no older layout to upgrade.
        match found {
            Some(found) if found.trim().parse::<u32>() == Ok(SCHEMA_VERSION) => Ok(()),
            found => Err(StoreError::SchemaVersion {
                found: found.unwrap_or_else(|| "(none)".to_string()),
                expected: SCHEMA_VERSION,
            }),
        }
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits for its answer here.
    /// Getting the connection is bounded by the connect timeout, `f` by the statement timeout; a
    /// connection whose call timed out is closed rather than returned to the pool.
    fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Object) -> BoxFuture<'c, Outcome<T>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let pool = self.pool.clone();
        let url = self.url.clone();
        let Settings {
            connect_timeout,
            statement_timeout,
        } = self.settings.clone();
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let answer = async {
                let mut client = match tokio::time::timeout(connect_timeout, pool.get()).await {
                    Err(_) => {
                        return Err(StoreError::Unreachable(format!(
                            "{url}: no connection within {connect_timeout:?}"
                        )))
                    }
                    Ok(Err(e)) => return Err(StoreError::Unreachable(format!("{url}: {e}"))),
                    Ok(Ok(client)) => client,
                };
                // The server's own timeouts (the same length) fire first, so a statement stuck
                // on a lock is cancelled there rather than left to commit after this call gave up.
                let outcome =
                    tokio::time::timeout(statement_timeout + CLIENT_MARGIN, f(&mut client)).await;
                match outcome {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(Failure::Store(e))) => Err(e),
                    Ok(Err(Failure::Pg(e))) => {
                        let e = classify(&url, &e);
                        if matches!(e, StoreError::Unreachable(_)) {
                            drop(Object::take(client));
                        }
                        Err(e)
                    }
                    Err(_) => {
                        drop(Object::take(client));
                        Err(StoreError::Unreachable(format!(
                            "{url}: no answer within {statement_timeout:?}"
                        )))
                    }
                }
            }
            .await;
            let _ = tx.send(answer);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Backend(format!(
                "{}: the PostgreSQL call ended without an answer",
                self.url
            )))
        })
    }

    /// The run's lease token and whether its lease is held, or `None` when the run is absent.
    async fn lease_state(client: &Object, run_id: &str) -> Outcome<Option<(u64, bool)>> {
        let stmt = client
            .prepare_cached(
                "SELECT lease_token, lease_owner IS NOT NULL FROM batten.runs WHERE run_id = $1",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&run_id])
            .await?
            .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, bool>(1))))
    }

    /// Why a fenced (or unfenced) write on `run_id` changed nothing: `RunNotFound` or `LeaseLost`.
    async fn refused(client: &Object, run_id: &str, fence: Option<u64>) -> Failure {
        match Self::lease_state(client, run_id).await {
            Err(e) => e,
            Ok(None) => StoreError::RunNotFound(run_id.to_string()).into(),
            Ok(Some((current, _))) => StoreError::LeaseLost {
                run_id: run_id.to_string(),
                token: fence.unwrap_or(0),
                current,
            }
            .into(),
        }
    }

    fn push(
        &self,
        run_id: &str,
        events: &[StepEvent],
        fence: Option<u64>,
    ) -> Result<Vec<u64>, StoreError> {
        let run_id = run_id.to_string();
        let fence_param = fence.map(|t| t as i64);
        let count = events.len() as i64;
        let mut columns = EventColumns::default();
        for e in events {
            columns.step_id.push(e.step_id.clone());
            columns.status.push(e.status.clone());
            columns.attempt.push(i64::from(e.attempt));
            columns.at.push(e.at);
            columns.duration_ms.push(e.duration_ms);
            columns.error_type.push(e.error_type.clone());
            columns.error.push(e.error.clone());
            columns.output.push(e.output.as_ref().map(Value::to_string));
            columns.delta.push(e.delta.as_ref().map(Value::to_string));
            columns.detail.push(e.detail.as_ref().map(Value::to_string));
        }
        self.call(move |client| {
            Box::pin(async move {
                if count == 0 {
                    return match Self::lease_state(client, &run_id).await? {
                        None => Err(StoreError::RunNotFound(run_id).into()),
                        Some((current, held)) if fence.is_some_and(|f| !held || f != current) => {
                            Err(Self::refused(client, &run_id, fence).await)
                        }
                        Some(_) => Ok(Vec::new()),
                    };
                }
                let stmt = client.prepare_cached(APPEND).await?;
                let c = &columns;
                let rows = client
                    .query(
                        &stmt,
                        &[
                            &run_id,
                            &count,
                            &fence_param,
                            &c.step_id,
                            &c.status,
                            &c.attempt,
                            &c.at,
                            &c.duration_ms,
                            &c.error_type,
                            &c.error,
                            &c.output,
                            &c.delta,
                            &c.detail,
                        ],
                    )
                    .await?;
                if rows.is_empty() {
                    return Err(Self::refused(client, &run_id, fence).await);
                }
                let mut seqs: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
                seqs.sort_unstable();
                Ok(seqs)
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
        fence: Option<u64>,
    ) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        let status = status.to_string();
        let error = error.map(str::to_string);
        let result = result.map(Value::to_string);
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client.prepare_cached(FINISH).await?;
                let fence_param = fence.map(|t| t as i64);
                let updated = client
                    .execute(
                        &stmt,
                        &[&run_id, &status, &at, &error, &result, &fence_param],
                    )
                    .await?;
                if updated == 0 {
                    return Err(Self::refused(client, &run_id, fence).await);
                }
                Ok(())
            })
        })
    }

    /// A statement that changes nothing but must find the run: `RunNotFound` otherwise.
    fn run_must_exist(client: &Object, run_id: String) -> BoxFuture<'_, Outcome<()>> {
        Box::pin(async move {
            match Self::lease_state(client, &run_id).await? {
                None => Err(StoreError::RunNotFound(run_id).into()),
                Some(_) => Ok(()),
            }
        })
    }
}

#[derive(Default)]
struct EventColumns {
    step_id: Vec<String>,
    status: Vec<String>,
    attempt: Vec<i64>,
    at: Vec<f64>,
    duration_ms: Vec<Option<f64>>,
    error_type: Vec<Option<String>>,
    error: Vec<Option<String>>,
    output: Vec<Option<String>>,
    delta: Vec<Option<String>>,
    detail: Vec<Option<String>>,
}

/// Column `index` of `row`; a value of the wrong type is a `Corrupt` record named by `what`.
fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| {
        let name = row
            .columns()
            .get(index)
            .map_or("?", |c| c.name())
            .to_string();
        StoreError::corrupt(what(), format_args!("column '{name}': {e}"))
    })
}

rows::columns_by!(Row, column);

fn is_foreign_key_violation(e: &Failure) -> bool {
    matches!(e, Failure::Pg(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION))
}

impl Store for PostgresStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let run = run.clone();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO batten.runs (run_id, workflow_id, name, version, status,
                             created_at, updated_at, input, error, result)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (run_id) DO NOTHING",
                    )
                    .await?;
                let input = run.input.to_string();
                let result = run.result.as_ref().map(Value::to_string);
                let inserted = client
                    .execute(
                        &stmt,
                        &[
                            &run.run_id,
                            &run.workflow_id,
                            &run.name,
                            &run.version,
                            &run.status,
                            &run.created_at,
                            &run.updated_at,
                            &input,
                            &run.error,
                            &result,
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    return Err(StoreError::RunExists(run.run_id).into());
                }
                Ok(())
            })
        })
    }

    fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {RUN_COLUMNS} FROM batten.runs WHERE run_id = $1"
                    ))
                    .await?;
                match client.query_opt(&stmt, &[&run_id]).await? {
                    Some(row) => Ok(rows::run(&row)?),
                    None => Err(StoreError::RunNotFound(run_id).into()),
                }
            })
        })
    }

    fn finish_status(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
    ) -> Result<(), StoreError> {
        self.finish(run_id, status, at, error, result, None)
    }

    fn list_runs(
        &self,
        status: Option<&str>,
        workflow_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedRun>, StoreError> {
        let status = status.map(str::to_string);
        let workflow_id = workflow_id.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {RUN_COLUMNS} FROM batten.runs
                         WHERE ($1::text IS NULL OR status = $1)
                           AND ($2::text IS NULL OR workflow_id = $2)
                         ORDER BY created_at DESC, key DESC LIMIT $3"
                    ))
                    .await?;
                let rows = client
                    .query(&stmt, &[&status, &workflow_id, &limit])
                    .await?;
                Ok(rows.iter().map(rows::run).collect())
            })
        })
    }

    fn append(&self, run_id: &str, events: &[StepEvent]) -> Result<Vec<u64>, StoreError> {
        self.push(run_id, events, None)
    }

    fn events(&self, run_id: &str, after: u64) -> Result<Vec<StepEvent>, StoreError> {
        let run_id = run_id.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT seq, {EVENT_COLUMNS}
                         FROM batten.events WHERE run_id = $1 AND seq > $2 ORDER BY seq"
                    ))
                    .await?;
                let rows = client.query(&stmt, &[&run_id, &after]).await?;
                if rows.is_empty() {
                    Self::run_must_exist(client, run_id.clone()).await?;
                }
                let mut events = Vec::with_capacity(rows.len());
                for row in &rows {
                    let seq: i64 = column(row, 0, || format!("run '{run_id}' event"))?;
                    events.push(rows::event(row, &run_id, seq as u64)?);
                }
                Ok(events)
            })
        })
    }

    fn set_control(&self, run_id: &str, control: Option<Control>) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                match control {
                    Some(control) => {
                        // The NOTIFY is sent when the statement's transaction commits.
                        let stmt = client
                            .prepare_cached(
                                "WITH written AS (
                                     INSERT INTO batten.controls (run_id, control) VALUES ($1, $2)
                                     ON CONFLICT (run_id) DO UPDATE SET control = excluded.control
                                     RETURNING run_id)
                                 SELECT pg_notify('batten_control', run_id) FROM written",
                            )
                            .await?;
                        let done = client
                            .execute(&stmt, &[&run_id, &control.as_str()])
                            .await
                            .map_err(Failure::from);
                        match done {
                            Err(e) if is_foreign_key_violation(&e) => {
                                Err(StoreError::RunNotFound(run_id).into())
                            }
                            Err(e) => Err(e),
                            Ok(_) => Ok(()),
                        }
                    }
                    None => {
                        let stmt = client
                            .prepare_cached("DELETE FROM batten.controls WHERE run_id = $1")
                            .await?;
                        if client.execute(&stmt, &[&run_id]).await? == 0 {
                            Self::run_must_exist(client, run_id).await?;
                        }
                        Ok(())
                    }
                }
            })
        })
    }

    fn control(&self, run_id: &str) -> Result<Option<Control>, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                // One statement answers "does the run exist" and "what is its control": the
                // engine polls this between steps.
                let stmt = client
                    .prepare_cached(
                        "SELECT (SELECT control FROM batten.controls WHERE run_id = $1)
                         FROM batten.runs WHERE run_id = $1",
                    )
                    .await?;
                let row = client.query_opt(&stmt, &[&run_id]).await?;
                let Some(row) = row else {
                    return Err(StoreError::RunNotFound(run_id).into());
                };
                let text: Option<String> = column(&row, 0, || format!("run '{run_id}' control"))?;
                match text {
                    None => Ok(None),
                    Some(text) => Control::parse(&text).map(Some).ok_or_else(|| {
                        StoreError::corrupt(
                            format!("run '{run_id}' control"),
                            format_args!("'{text}' is neither 'pause' nor 'cancel'"),
                        )
                        .into()
                    }),
                }
            })
        })
    }

    fn decide(&self, run_id: &str, decision: &Decision) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        let decision = decision.clone();
        self.call(move |client| {
            Box::pin(async move {
                // One row (and a NOTIFY at commit) when recorded, none when already decided.
                let stmt = client
                    .prepare_cached(
                        "WITH written AS (
                             INSERT INTO batten.decisions (run_id, step_id, approved, decided_by,
                                 comment, at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (run_id, step_id) DO NOTHING RETURNING run_id)
                         SELECT pg_notify('batten_control', run_id) FROM written",
                    )
                    .await?;
                let inserted = client
                    .execute(
                        &stmt,
                        &[
                            &run_id,
                            &decision.step_id,
                            &decision.approved,
                            &decision.by,
                            &decision.comment,
                            &decision.at,
                        ],
                    )
                    .await
                    .map_err(Failure::from);
                match inserted {
                    Err(e) if is_foreign_key_violation(&e) => {
                        Err(StoreError::RunNotFound(run_id).into())
                    }
                    Err(e) => Err(e),
                    Ok(0) => Err(StoreError::AlreadyDecided {
                        run_id,
                        step_id: decision.step_id,
                    }
                    .into()),
                    Ok(_) => Ok(()),
                }
            })
        })
    }

    fn decisions(&self, run_id: &str) -> Result<Vec<Decision>, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {DECISION_COLUMNS} FROM batten.decisions WHERE run_id = $1"
                    ))
                    .await?;
                let rows = client.query(&stmt, &[&run_id]).await?;
                if rows.is_empty() {
                    Self::run_must_exist(client, run_id.clone()).await?;
                }
                let mut decisions = rows
                    .iter()
                    .map(|row| rows::decision(row, &run_id))
                    .collect::<Result<Vec<_>, _>>()?;
                sort_decisions(&mut decisions);
                Ok(decisions)
            })
        })
    }

    fn cache_get(&self, key: &str, now: f64) -> Result<Option<Value>, StoreError> {
        let key = key.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "SELECT value FROM batten.cache WHERE key = $1 AND expires_at > $2",
                    )
                    .await?;
                let row = client.query_opt(&stmt, &[&key, &now]).await?;
                let Some(row) = row else { return Ok(None) };
                let text: String = column(&row, 0, || format!("cache entry '{key}'"))?;
                Ok(Some(parse_json(&text, || format!("cache entry '{key}'"))?))
            })
        })
    }

    fn cache_put(&self, key: &str, value: &Value, expires_at: f64) -> Result<(), StoreError> {
        let key = key.to_string();
        let value = value.to_string();
        self.call(move |client| {
            Box::pin(async move {
                if expires_at.is_nan() {
                    // PostgreSQL orders NaN above every number: it would never expire.
                    let stmt = client
                        .prepare_cached("DELETE FROM batten.cache WHERE key = $1")
                        .await?;
                    client.execute(&stmt, &[&key]).await?;
                    return Ok(());
                }
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO batten.cache (key, value, expires_at) VALUES ($1, $2, $3)
                         ON CONFLICT (key) DO UPDATE
                         SET value = excluded.value, expires_at = excluded.expires_at",
                    )
                    .await?;
                client.execute(&stmt, &[&key, &value, &expires_at]).await?;
                Ok(())
            })
        })
    }

    fn append_fenced(
        &self,
        run_id: &str,
        events: &[StepEvent],
        token: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.push(run_id, events, Some(token))
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
        self.finish(run_id, status, at, error, result, Some(token))
    }

    fn claim(
        &self,
        run_id: &str,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
        take_over: Option<u64>,
    ) -> Result<Claim, StoreError> {
        let run_id = run_id.to_string();
        let owner = owner.clone();
        self.call(move |client| {
            Box::pin(async move {
                // One transaction holding the run's row lock from the read to the write.
                let tx = client.transaction().await?;
                let row = tx
                    .query_opt(
                        "SELECT lease_token, lease_owner, lease_heartbeat, lease_expires
                         FROM batten.runs WHERE run_id = $1 FOR UPDATE",
                        &[&run_id],
                    )
                    .await?;
                let Some(row) = row else {
                    return Err(StoreError::RunNotFound(run_id).into());
                };
                let what = || format!("run '{run_id}' lease");
                let token = column::<i64>(&row, 0, what)? as u64;
                let held = rows::lease(
                    &run_id,
                    token,
                    column::<Option<String>>(&row, 1, what)?.as_deref(),
                    column(&row, 2, what)?,
                    column(&row, 3, what)?,
                )?;
                if let Some(lease) = held {
                    if lease.is_live(now) && take_over != Some(lease.token) {
                        return Ok(Claim::Held(lease));
                    }
                }
                let lease = Lease {
                    owner: owner.clone(),
                    token: token + 1,
                    heartbeat_at: now,
                    expires_at: now + ttl,
                };
                tx.execute(
                    "UPDATE batten.runs SET lease_token = $2, lease_owner = $3,
                         lease_heartbeat = $4, lease_expires = $5
                     WHERE run_id = $1",
                    &[
                        &run_id,
                        &(lease.token as i64),
                        &owner.encode(),
                        &lease.heartbeat_at,
                        &lease.expires_at,
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(Claim::Won(lease))
            })
        })
    }

    fn renew(&self, run_id: &str, token: u64, now: f64, ttl: f64) -> Result<Lease, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "UPDATE batten.runs SET lease_heartbeat = $3, lease_expires = $4
                         WHERE run_id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL
                         RETURNING lease_owner",
                    )
                    .await?;
                let expires_at = now + ttl;
                let row = client
                    .query_opt(&stmt, &[&run_id, &(token as i64), &now, &expires_at])
                    .await?;
                let Some(row) = row else {
                    return Err(Self::refused(client, &run_id, Some(token)).await);
                };
                let what = || format!("run '{run_id}' lease");
                let owner: String = column(&row, 0, what)?;
                Ok(Lease {
                    owner: LeaseOwner::decode(&owner, what)?,
                    token,
                    heartbeat_at: now,
                    expires_at,
                })
            })
        })
    }

    fn release(&self, run_id: &str, token: u64) -> Result<bool, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "UPDATE batten.runs SET lease_owner = NULL, lease_heartbeat = NULL,
                             lease_expires = NULL
                         WHERE run_id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL",
                    )
                    .await?;
                let updated = client.execute(&stmt, &[&run_id, &(token as i64)]).await?;
                if updated == 0 {
                    Self::run_must_exist(client, run_id).await?;
                }
                Ok(updated > 0)
            })
        })
    }

    fn put_workflow(&self, workflow_id: &str, definition: &Value) -> Result<(), StoreError> {
        let workflow_id = workflow_id.to_string();
        let definition = definition.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO batten.workflows (workflow_id, definition) VALUES ($1, $2)
                         ON CONFLICT (workflow_id) DO UPDATE SET definition = excluded.definition",
                    )
                    .await?;
                client.execute(&stmt, &[&workflow_id, &definition]).await?;
                Ok(())
            })
        })
    }

    fn watch(&self, run_id: &str, wake: Wake) -> Option<Watch> {
        let id = self.listener.next_id.fetch_add(1, Ordering::Relaxed);
        self.listener
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(run_id.to_string())
            .or_default()
            .push((id, wake));
        if !self.listener.started.swap(true, Ordering::AcqRel) {
            let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
            runtime.spawn(listen(
                self.config.clone(),
                self.settings.clone(),
                Arc::downgrade(&self.listener),
            ));
        }
        let listener = Arc::downgrade(&self.listener);
        let run_id = run_id.to_string();
        Some(Watch::new(move || {
            if let Some(listener) = listener.upgrade() {
                listener.remove(&run_id, id);
            }
        }))
    }

    fn get_workflow(&self, workflow_id: &str) -> Result<Option<Value>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.call(move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_cached(
                        "SELECT definition FROM batten.workflows WHERE workflow_id = $1",
                    )
                    .await?;
                let row = client.query_opt(&stmt, &[&workflow_id]).await?;
                let Some(row) = row else { return Ok(None) };
                let text: String = column(&row, 0, || format!("workflow '{workflow_id}'"))?;
                Ok(Some(parse_json(&text, || {
                    format!("workflow '{workflow_id}'")
                })?))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batten_parameters_are_taken_off_the_url_in_seconds() {
        let (url, settings) = parse_url(
            "postgresql://u:p@h:5/db?connect_timeout=0.5&sslmode=disable&statement_timeout=7",
        )
        .unwrap();
        assert_eq!(url, "postgresql://u:p@h:5/db?sslmode=disable");
        assert_eq!(settings.connect_timeout, Duration::from_millis(500));
        assert_eq!(settings.statement_timeout, Duration::from_secs(7));
        let (url, settings) = parse_url("postgres://h/db").unwrap();
        assert_eq!(url, "postgres://h/db");
        assert_eq!(settings.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(settings.statement_timeout, DEFAULT_STATEMENT_TIMEOUT);
    }

    #[test]
    fn a_bad_timeout_is_a_url_error_without_the_password() {
        for bad in ["x", "0", "-1", "inf", ""] {
            let err =
                parse_url(&format!("postgresql://u:pw@h/db?statement_timeout={bad}")).unwrap_err();
            assert!(
                matches!(&err, StoreError::Url(m) if m.contains("statement_timeout") && !m.contains("pw")),
                "{err:?}"
            );
        }
    }
}
