//! The Redis store: shared across machines, through the `redis` crate's multiplexed connection.
//!
//! The trait is synchronous and may be called from any thread, including one inside another tokio
//! runtime (where `Runtime::block_on` would panic), so the store owns a one-worker runtime: each call
//! is spawned onto it and the caller waits on a std channel. Every wait is bounded: connecting by
//! [`CONNECT_TIMEOUT`], each round trip by [`RESPONSE_TIMEOUT`].
//!
//! Keys, all under `batten:`:
//! - `batten:schema`: the [`SCHEMA_VERSION`] the data was written with;
//! - `batten:run:{id}` (`%` and `:` in the id percent-encoded): a hash of the run's fields (strings as-is, times as decimal seconds, `input`
//!   and `result` as JSON text); `batten:runs` and `batten:workflow_runs:{workflow_id}`: sorted sets of
//!   run ids scored by `created_at`;
//! - `batten:run:{id}:events`: a list of events as JSON objects; an event's seq is its 1-based
//!   position, so it is not stored;
//! - `batten:run:{id}:control`: "pause" or "cancel"; `batten:run:{id}:decisions`: a hash from step id to
//!   the decision as JSON;
//! - `batten:cache:{key}`: `{"expires_at": seconds or null, "value": ...}`, expiring in Redis too;
//! - `batten:workflow:{id}`: the definition as JSON.
//!
//! Writes that must check the run exists first are Lua scripts, so check and write are one atomic
//! round trip.

mod codec;
mod scripts;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, RedisError};
use serde_json::Value;

use self::codec::{
    decode_cache, decode_decision, decode_event, decode_run, encode_cache, encode_decision,
    encode_event, encode_run, seconds,
};
use self::scripts::{
    APPEND, CLAIM, CREATE_RUN, DECIDE, FINISH_STATUS, RELEASE, RENEW, SET_CONTROL,
};
use super::error::parse_json;
use super::memory::sort_decisions;
use super::{
    redact, Claim, Control, Decision, Lease, LeaseOwner, ListedRun, RunRecord, StepEvent, Store,
    StoreError, SCHEMA_VERSION, UPGRADABLE_VERSIONS,
};

/// How long connecting (TCP, AUTH, SELECT) may take before the store is [`StoreError::Unreachable`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one round trip may take before the store is [`StoreError::Unreachable`].
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// 9999-12-31 in unix milliseconds: a later cache expiry is left to the stored `expires_at` alone.
const MAX_PXAT_MS: f64 = 253_402_214_400_000.0;

const SCHEMA_KEY: &str = "batten:schema";
const RUNS_KEY: &str = "batten:runs";

/// `batten:run:{id}`, with `%` and `:` in the id percent-encoded, so that no run's key is another
/// run's `...:events` key.
fn run_key(run_id: &str) -> String {
    let mut key = String::with_capacity(9 + run_id.len());
    key.push_str("batten:run:");
    for c in run_id.chars() {
        match c {
            '%' => key.push_str("%25"),
            ':' => key.push_str("%3A"),
            c => key.push(c),
        }
    }
    key
}

/// One of the run's other keys: `batten:run:{id}:{part}`.
fn run_part_key(run_id: &str, part: &str) -> String {
    format!("{}:{part}", run_key(run_id))
}

/// A sorted set of the workflow's run ids, scored by `created_at`.
fn workflow_runs_key(workflow_id: &str) -> String {
    format!("batten:workflow_runs:{workflow_id}")
}

/// A [`Store`] on a Redis server (`redis://host:port/db`).
///
/// Listing runs by workflow reads that workflow's index; listing by status alone reads runs newest
/// first until it has found `limit` of them.
pub struct RedisStore {
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    client: Client,
    config: AsyncConnectionConfig,
    /// The connection (with a generation number), `None` after it broke: the next call reconnects.
    connection: tokio::sync::Mutex<(u64, Option<MultiplexedConnection>)>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which panics inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Why a call failed: a Redis error (classified in [`Shared::fail`]) or a store-level answer.
enum Failure {
    Redis(RedisError),
    Store(StoreError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

type Outcome<T> = Result<T, Failure>;

impl Shared {
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = &slot.1 {
            return Ok((slot.0, connection.clone()));
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| StoreError::Unreachable(format!("{}: {e}", self.url)))?;
        slot.0 += 1;
        slot.1 = Some(connection.clone());
        Ok((slot.0, connection))
    }

    /// Maps a failure to a `StoreError`, dropping the connection if it broke (unless it was already
    /// replaced) so that the next call reconnects. The failed command is not retried: it may have
    /// been applied.
    async fn fail(&self, generation: u64, failure: Failure) -> StoreError {
        let e = match failure {
            Failure::Store(e) => return e,
            Failure::Redis(e) => e,
        };
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
        {
            let mut slot = self.connection.lock().await;
            if slot.0 == generation {
                slot.1 = None;
            }
            return StoreError::Unreachable(format!("{}: {e}", self.url));
        }
        StoreError::Backend(format!("{}: {e}", self.url))
    }
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://[user:password@]host[:port][/db]` or
    /// `redis+unix:///socket[?db=N]`) and checks the schema version, writing it into an empty
    /// database.
    ///
    /// [`StoreError::Url`] for a malformed URL, [`StoreError::Unreachable`] (within
    /// 2 s to connect + 5 s per round trip) if the server does not answer,
    /// [`StoreError::SchemaVersion`] if the database was written with another version.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let client = Client::open(url).map_err(|e| StoreError::Url(format!("'{shown}': {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("batten-redis")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(format!("{shown}: cannot start the Redis runtime: {e}"))
            })?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let store = Self {
            url: shown.clone(),
            runtime: Some(runtime),
            shared: Arc::new(Shared {
                url: shown,
                client,
                config,
                connection: tokio::sync::Mutex::new((0, None)),
            }),
        };
        let found: Option<String> = store.call(|mut conn| async move {
            let (found,): (Option<String>,) = ::redis::pipe()
                .cmd("SET")
                .arg(SCHEMA_KEY)
                .arg(SCHEMA_VERSION)
                .arg("NX")
                .ignore()
                .cmd("GET")
                .arg(SCHEMA_KEY)
                .query_async(&mut conn)
                .await?;
            Ok(found)
        })?;
        let upgradable = found
            .as_deref()
            .and_then(|f| f.trim().parse::<u32>().ok())
            .filter(|v| UPGRADABLE_VERSIONS.contains(v));
        if let Some(old) = upgradable {
            // Version 1 -> 2 adds lease fields to run hashes, absent meaning "no lease": only the
            // version key changes (compare-and-set, so a newer writer is never downgraded).
            store.call(move |mut conn| async move {
                let _: i64 = Cmd::new()
                    .arg("EVAL")
                    .arg("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0")
                    .arg(1)
                    .arg(SCHEMA_KEY)
                    .arg(old.to_string())
                    .arg(SCHEMA_VERSION.to_string())
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            })?;
            return Ok(store);
        }
        match found {
            Some(found) if found.trim().parse::<u32>() == Ok(SCHEMA_VERSION) => Ok(store),
            found => Err(StoreError::SchemaVersion {
                found: found.unwrap_or_else(|| "(none)".to_string()),
                expected: SCHEMA_VERSION,
            }),
        }
    }

    /// Runs `f` with a connection on the store's runtime and waits for its answer on this thread.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(MultiplexedConnection) -> Fut + Send + 'static,
        Fut: Future<Output = Outcome<T>> + Send,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let shared = Arc::clone(&self.shared);
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let answer = match shared.connection().await {
                Err(e) => Err(e),
                Ok((generation, conn)) => match f(conn).await {
                    Ok(value) => Ok(value),
                    Err(failure) => Err(shared.fail(generation, failure).await),
                },
            };
            let _ = tx.send(answer);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Backend(format!(
                "{}: the Redis call ended without an answer",
                self.url
            )))
        })
    }

    /// `EVAL script` with these keys and arguments, returning its integer answer.
    fn eval(
        &self,
        script: &'static str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<i64, StoreError> {
        self.call(move |mut conn| async move {
            let mut cmd = Cmd::new();
            cmd.arg("EVAL")
                .arg(script)
                .arg(keys.len())
                .arg(keys)
                .arg(args);
            Ok(cmd.query_async(&mut conn).await?)
        })
    }
}

impl RedisStore {
    /// `EVAL script` returning an array of strings, or `None` for a nil answer.
    fn eval_strings(
        &self,
        script: &'static str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.call(move |mut conn| async move {
            let mut cmd = Cmd::new();
            cmd.arg("EVAL")
                .arg(script)
                .arg(keys.len())
                .arg(keys)
                .arg(args);
            Ok(cmd.query_async(&mut conn).await?)
        })
    }

    fn finish(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
        fence: Option<u64>,
    ) -> Result<(), StoreError> {
        let flag = |present: bool| if present { "1" } else { "0" }.to_string();
        let args = vec![
            status.to_string(),
            seconds(at),
            flag(error.is_some()),
            error.unwrap_or_default().to_string(),
            flag(result.is_some()),
            result.map(Value::to_string).unwrap_or_default(),
            fence.map(|t| t.to_string()).unwrap_or_default(),
        ];
        match self.eval(FINISH_STATUS, vec![run_key(run_id)], args)? {
            1 => Ok(()),
            lost if lost <= -2 => Err(lease_lost(run_id, fence.unwrap_or(0), lost)),
            _ => Err(StoreError::RunNotFound(run_id.to_string())),
        }
    }

    fn push(
        &self,
        run_id: &str,
        events: &[StepEvent],
        fence: Option<u64>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut args = Vec::with_capacity(events.len() + 1);
        args.push(fence.map(|t| t.to_string()).unwrap_or_default());
        args.extend(events.iter().map(encode_event));
        let count = events.len() as u64;
        let keys = vec![run_key(run_id), run_part_key(run_id, "events")];
        match self.eval(APPEND, keys, args)? {
            -1 => Err(StoreError::RunNotFound(run_id.to_string())),
            lost if lost <= -2 => Err(lease_lost(run_id, fence.unwrap_or(0), lost)),
            // An empty batch returns 0, not the length; it was given no seqs anyway.
            _ if count == 0 => Ok(Vec::new()),
            length => {
                let last = length as u64;
                Ok((last - count + 1..=last).collect())
            }
        }
    }
}

/// `LeaseLost` from a script's `-2 - current token` answer.
fn lease_lost(run_id: &str, token: u64, answer: i64) -> StoreError {
    StoreError::LeaseLost {
        run_id: run_id.to_string(),
        token,
        current: (-2 - answer) as u64,
    }
}

fn parse_number<T: std::str::FromStr>(run_id: &str, text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| {
        StoreError::corrupt(
            format!("run '{run_id}' lease"),
            format_args!("'{text}' is not a number"),
        )
    })
}

impl Store for RedisStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut args = vec![run.run_id.clone(), seconds(run.created_at)];
        args.extend(encode_run(run));
        match self.eval(
            CREATE_RUN,
            vec![
                run_key(&run.run_id),
                RUNS_KEY.to_string(),
                workflow_runs_key(&run.workflow_id),
            ],
            args,
        )? {
            1 => Ok(()),
            _ => Err(StoreError::RunExists(run.run_id.clone())),
        }
    }

    fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |mut conn| async move {
            let fields: HashMap<String, String> = ::redis::cmd("HGETALL")
                .arg(run_key(&run_id))
                .query_async(&mut conn)
                .await?;
            if fields.is_empty() {
                return Err(StoreError::RunNotFound(run_id).into());
            }
            Ok(decode_run(&run_id, fields)?)
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
        let args = vec![
            seconds(now),
            seconds(now + ttl),
            take_over.map(|t| t.to_string()).unwrap_or_default(),
            owner.encode(),
        ];
        let Some(answer) = self.eval_strings(CLAIM, vec![run_key(run_id)], args)? else {
            return Err(StoreError::RunNotFound(run_id.to_string()));
        };
        let [won, token, owner, heartbeat_at, expires_at] = answer.as_slice() else {
            return Err(StoreError::Backend(format!(
                "{}: unexpected claim answer {answer:?}",
                self.url
            )));
        };
        let lease = Lease {
            owner: LeaseOwner::decode(owner, || format!("run '{run_id}' lease"))?,
            token: parse_number(run_id, token)?,
            heartbeat_at: parse_number(run_id, heartbeat_at)?,
            expires_at: parse_number(run_id, expires_at)?,
        };
        Ok(if won == "1" {
            Claim::Won(lease)
        } else {
            Claim::Held(lease)
        })
    }

    fn renew(&self, run_id: &str, token: u64, now: f64, ttl: f64) -> Result<Lease, StoreError> {
        let expires_at = now + ttl;
        let args = vec![token.to_string(), seconds(now), seconds(expires_at)];
        let Some(answer) = self.eval_strings(RENEW, vec![run_key(run_id)], args)? else {
            return Err(StoreError::RunNotFound(run_id.to_string()));
        };
        match answer.as_slice() {
            [ok, owner] if ok == "1" => Ok(Lease {
                owner: LeaseOwner::decode(owner, || format!("run '{run_id}' lease"))?,
                token,
                heartbeat_at: now,
                expires_at,
            }),
            [_, current] => Err(StoreError::LeaseLost {
                run_id: run_id.to_string(),
                token,
                current: parse_number(run_id, current)?,
            }),
            _ => Err(StoreError::Backend(format!(
                "{}: unexpected renew answer {answer:?}",
                self.url
            ))),
        }
    }

    fn release(&self, run_id: &str, token: u64) -> Result<bool, StoreError> {
        match self.eval(RELEASE, vec![run_key(run_id)], vec![token.to_string()])? {
            -1 => Err(StoreError::RunNotFound(run_id.to_string())),
            answer => Ok(answer == 1),
        }
    }

    fn list_runs(
        &self,
        status: Option<&str>,
        workflow_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedRun>, StoreError> {
        let status = status.map(str::to_string);
        // A workflow's runs have their own index; a status filter reads runs until it has `limit`.
        let index = workflow_id.map_or_else(|| RUNS_KEY.to_string(), workflow_runs_key);
        self.call(move |mut conn| async move {
            let mut runs = Vec::new();
            let mut start = 0usize;
            while runs.len() < limit {
                let page = match status {
                    Some(_) => 256,
                    None => (limit - runs.len()).min(256),
                };
                let ids: Vec<String> = ::redis::cmd("ZREVRANGE")
                    .arg(&index)
                    .arg(start)
                    .arg(start + page - 1)
                    .query_async(&mut conn)
                    .await?;
                if ids.is_empty() {
                    break;
                }
                start += page;
                let mut pipe = ::redis::pipe();
                for id in &ids {
                    pipe.cmd("HGETALL").arg(run_key(id));
                }
                let records: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
                for (id, fields) in ids.iter().zip(records) {
                    // A record that cannot be decoded is filtered on its raw status field.
                    let raw_status = fields.get("status").cloned();
                    let run = decode_run(id, fields);
                    let run_status = match &run {
                        Ok(run) => Some(&run.status),
                        Err(_) => raw_status.as_ref(),
                    };
                    let wanted = status.as_ref().is_none_or(|s| run_status == Some(s));
                    if wanted && runs.len() < limit {
                        runs.push(run);
                    }
                }
                if ids.len() < page {
                    break;
                }
            }
            Ok(runs)
        })
    }

    fn append(&self, run_id: &str, events: &[StepEvent]) -> Result<Vec<u64>, StoreError> {
        self.push(run_id, events, None)
    }

    fn append_fenced(
        &self,
        run_id: &str,
        events: &[StepEvent],
        token: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.push(run_id, events, Some(token))
    }

    fn events(&self, run_id: &str, after: u64) -> Result<Vec<StepEvent>, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |mut conn| async move {
            let Ok(start) = isize::try_from(after) else {
                return Ok(Vec::new());
            };
            let (exists, texts): (bool, Vec<String>) = ::redis::pipe()
                .cmd("EXISTS")
                .arg(run_key(&run_id))
                .cmd("LRANGE")
                .arg(run_part_key(&run_id, "events"))
                .arg(start)
                .arg(-1)
                .query_async(&mut conn)
                .await?;
            if !exists {
                return Err(StoreError::RunNotFound(run_id).into());
            }
            let events = texts
                .iter()
                .zip(after + 1..)
                .map(|(text, seq)| decode_event(&run_id, seq, text))
                .collect::<Result<_, _>>()?;
            Ok(events)
        })
    }

    fn set_control(&self, run_id: &str, control: Option<Control>) -> Result<(), StoreError> {
        let keys = vec![run_key(run_id), run_part_key(run_id, "control")];
        let args = vec![control.map(Control::as_str).unwrap_or_default().to_string()];
        match self.eval(SET_CONTROL, keys, args)? {
            1 => Ok(()),
            _ => Err(StoreError::RunNotFound(run_id.to_string())),
        }
    }

    fn control(&self, run_id: &str) -> Result<Option<Control>, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |mut conn| async move {
            let (exists, text): (bool, Option<String>) = ::redis::pipe()
                .cmd("EXISTS")
                .arg(run_key(&run_id))
                .cmd("GET")
                .arg(run_part_key(&run_id, "control"))
                .query_async(&mut conn)
                .await?;
            if !exists {
                return Err(StoreError::RunNotFound(run_id).into());
            }
            let Some(text) = text else { return Ok(None) };
            match Control::parse(&text) {
                Some(control) => Ok(Some(control)),
                None => Err(StoreError::corrupt(
                    format!("run '{run_id}' control"),
                    format_args!("'{text}' is neither 'pause' nor 'cancel'"),
                )
                .into()),
            }
        })
    }

    fn decide(&self, run_id: &str, decision: &Decision) -> Result<(), StoreError> {
        let json = encode_decision(decision);
        let keys = vec![run_key(run_id), run_part_key(run_id, "decisions")];
        match self.eval(DECIDE, keys, vec![decision.step_id.clone(), json])? {
            1 => Ok(()),
            0 => Err(StoreError::AlreadyDecided {
                run_id: run_id.to_string(),
                step_id: decision.step_id.clone(),
            }),
            _ => Err(StoreError::RunNotFound(run_id.to_string())),
        }
    }

    fn decisions(&self, run_id: &str) -> Result<Vec<Decision>, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |mut conn| async move {
            let (exists, fields): (bool, HashMap<String, String>) = ::redis::pipe()
                .cmd("EXISTS")
                .arg(run_key(&run_id))
                .cmd("HGETALL")
                .arg(run_part_key(&run_id, "decisions"))
                .query_async(&mut conn)
                .await?;
            if !exists {
                return Err(StoreError::RunNotFound(run_id).into());
            }
            let mut decisions = fields
                .into_iter()
                .map(|(step_id, text)| decode_decision(&run_id, step_id, &text))
                .collect::<Result<Vec<_>, _>>()?;
            sort_decisions(&mut decisions);
            Ok(decisions)
        })
    }

    fn cache_get(&self, key: &str, now: f64) -> Result<Option<Value>, StoreError> {
        let key = key.to_string();
        self.call(move |mut conn| async move {
            let text: Option<String> = ::redis::cmd("GET")
                .arg(format!("batten:cache:{key}"))
                .query_async(&mut conn)
                .await?;
            Ok(match text {
                Some(text) => decode_cache(&key, &text, now)?,
                None => None,
            })
        })
    }

    fn cache_put(&self, key: &str, value: &Value, expires_at: f64) -> Result<(), StoreError> {
        let redis_key = format!("batten:cache:{key}");
        let text = encode_cache(value, expires_at);
        // PXAT: the absolute expiry in unix milliseconds, rounded up so Redis never drops an entry
        // before `expires_at`. Past the year 9999 (or infinite), Redis keeps it for good.
        let expires_at_ms = (expires_at * 1000.0).ceil();
        self.call(move |mut conn| async move {
            if expires_at_ms.is_nan() || expires_at_ms < 1.0 {
                // Already expired (or NaN): nothing to keep.
                ::redis::cmd("DEL")
                    .arg(&redis_key)
                    .exec_async(&mut conn)
                    .await?;
                return Ok(());
            }
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(&redis_key).arg(text);
            if expires_at_ms < MAX_PXAT_MS {
                cmd.arg("PXAT").arg(expires_at_ms as i64);
            }
            cmd.exec_async(&mut conn).await?;
            Ok(())
        })
    }

    fn put_workflow(&self, workflow_id: &str, definition: &Value) -> Result<(), StoreError> {
        let key = format!("batten:workflow:{workflow_id}");
        let text = definition.to_string();
        self.call(move |mut conn| async move {
            ::redis::cmd("SET")
                .arg(key)
                .arg(text)
                .exec_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn get_workflow(&self, workflow_id: &str) -> Result<Option<Value>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.call(move |mut conn| async move {
            let text: Option<String> = ::redis::cmd("GET")
                .arg(format!("batten:workflow:{workflow_id}"))
                .query_async(&mut conn)
                .await?;
            Ok(text
                .map(|text| parse_json(&text, || format!("workflow '{workflow_id}'")))
                .transpose()?)
        })
    }
}
