//! `Journal`: how a durable run writes its checkpoints and what a resumed run restores.
//!
//! A run started with a journal appends one event per step status change to the store
//! (append-only: a completed step's output and state delta, never the whole state again). A
//! nested run (a composite's steps) writes through a child journal whose `scope` prefixes its
//! step ids (`"parallel/branch"`), so every step of the run has one path. Resuming reads the
//! events back and restores each step whose last event is `completed`.
use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::engine::scheduler::StepState;
use crate::py::errors::store_error;
use crate::py::json::{from_json, to_json, MAX_JSON_DEPTH};
use crate::py::store::{now, PyStore};
use crate::py::threads::timer::{tick_after, Tick};
use crate::store::{StepEvent, Store, StoreError};

/// Events buffered in `batch` mode before they are written together.
const BATCH: usize = 256;
/// How long a lazy event (a start, a retry, a failure) may wait for a checkpoint to carry it
/// before it is written on its own.
const LAZY_DELAY: std::time::Duration = std::time::Duration::from_millis(20);
/// The key of an output stored through the workflow's serializer instead of as JSON.
const CODEC_KEY: &str = "__batten_serialized__";

/// The serializer's text, when `v` is an output stored through it (`{CODEC_KEY: text}`).
fn serialized(v: &serde_json::Value) -> Option<&str> {
    v.as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get(CODEC_KEY))
        .and_then(|t| t.as_str())
}

fn is_serialized(v: &serde_json::Value) -> bool {
    serialized(v).is_some()
}

/// A step restored from the store: its output and, when it differed from the output's own
/// items, its state delta.
pub struct Restored {
    pub output: serde_json::Value,
    pub delta: Option<serde_json::Value>,
}

/// A restored step as Python objects: its output and its explicit state delta, if any.
pub type RestoredPy<'py> = (Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub run_id: Arc<str>,
    serializer: Option<Py<PyAny>>,
    batch: bool,
    /// Events not written yet (lazy ones; everything in `batch` mode). Held while writing, so
    /// events reach the store in the order they were recorded.
    buffer: Mutex<Vec<StepEvent>>,
    /// A timer will write the lazy events (see `LAZY_DELAY`).
    flush_armed: std::sync::atomic::AtomicBool,
    /// That timer, cancelled when the run's end writes the events itself.
    flush_tick: Mutex<Option<Tick>>,
    restored: HashMap<String, Restored>,
    error: Mutex<Option<String>>,
    /// The fencing token of the lease this process holds on the run (0: none; tokens start at
    /// 1): every write carries it, and the store refuses it once another process took over.
    token: AtomicU64,
    /// The heartbeat of the held lease, if any.
    lease: Mutex<Option<Heartbeat>>,
    /// Why the lease was lost (a refused write or heartbeat), once it was.
    lost: Mutex<Option<String>>,
}

/// A held lease's renewal on the ticker thread (`threads::timer::tick_after`) (see `Journal.hold`).
struct Heartbeat {
    /// Lease duration, seconds.
    ttl: f64,
    /// Seconds between renewals.
    every: f64,
    /// Until when (unix seconds) the last renewal holds the lease, as this process measured
    /// it from before the renewal was sent: past it, no new step starts before a renewal.
    valid_until: f64,
    /// The armed timer of the next renewal.
    timer: Option<Tick>,
}

impl Shared {
    /// Appends `events`, fenced with the held lease's token when there is one; a `LeaseLost`
    /// refusal marks the lease lost.
    fn append(&self, events: &[StepEvent]) -> Result<(), StoreError> {
        let token = self.token.load(Ordering::Acquire);
        let res = if token == 0 {
            self.store.append(&self.run_id, events)
        } else {
            self.store.append_fenced(&self.run_id, events, token)
        };
        self.note_lost(&res);
        res.map(drop)
    }

    fn note_lost<T>(&self, res: &Result<T, StoreError>) {
        if let Err(e @ StoreError::LeaseLost { .. }) = res {
            self.lost.lock().get_or_insert_with(|| e.to_string());
        }
    }

    /// One heartbeat: renews the lease and arms the next, unless it was released or lost.
    fn beat(self: &Arc<Self>) {
        let token = self.token.load(Ordering::Acquire);
        let Some(ttl) = self.lease.lock().as_ref().map(|h| h.ttl) else {
            return;
        };
        if token == 0 || self.lost.lock().is_some() {
            return;
        }
        let sent = now();
        let res = self.store.renew(&self.run_id, token, sent, ttl);
        self.note_lost(&res);
        let mut guard = self.lease.lock();
        let Some(hb) = guard.as_mut() else {
            return; // released meanwhile
        };
        match &res {
            Ok(_) => hb.valid_until = sent + ttl,
            Err(StoreError::LeaseLost { .. }) => return,
            // An unreachable store: the next beat tries again; the lease may lapse meanwhile.
            Err(e) => tracing::warn!(run_id = %self.run_id, "batten: lease heartbeat failed: {e}"),
        }
        let shared = Arc::clone(self);
        hb.timer = tick_after(std::time::Duration::from_secs_f64(hb.every), move || {
            shared.beat()
        });
    }

    /// Stops the heartbeat (no renewal may land after the lease's release) and the lazy
    /// events' timer (the caller writes them): the execution here is ending.
    fn stop_timers(&self) {
        if let Some(h) = self.lease.lock().take() {
            if let Some(t) = h.timer {
                t.cancel();
            }
        }
        if let Some(t) = self.flush_tick.lock().take() {
            if t.cancel() {
                self.flush_armed.store(false, Ordering::Release);
            }
        }
    }

    /// Whether this process may start more steps of the run: no lease held (not fenced), or
    /// the held lease is neither lost nor past its last renewal's expiry; past it, renews now
    /// (a process that was stopped for longer than its lease learns here that it lost it).
    pub fn lease_ok(&self, py: Python<'_>) -> bool {
        let token = self.token.load(Ordering::Acquire);
        if token == 0 {
            return true;
        }
        if self.lost.lock().is_some() {
            return false;
        }
        let (ttl, valid_until) = match self.lease.lock().as_ref() {
            Some(h) => (h.ttl, h.valid_until),
            None => return true,
        };
        let sent = now();
        if sent < valid_until {
            return true;
        }
        let res = py.detach(|| self.store.renew(&self.run_id, token, sent, ttl));
        self.note_lost(&res);
        match res {
            Ok(_) => {
                if let Some(h) = self.lease.lock().as_mut() {
                    h.valid_until = sent + ttl;
                }
                true
            }
            Err(e) => {
                // Past the lease's expiry and unable to renew it (an unreachable store): another
                // process may own the run by now, so this one must not act as its owner. The run
                // stops as if the lease were lost; its record stays running (interrupted).
                self.lost.lock().get_or_insert_with(|| {
                    format!(
                        "run '{}': the lease with fencing token {token} expired and could not be \
                         renewed ({e})",
                        self.run_id
                    )
                });
                false
            }
        }
    }
}

/// The checkpoint writer of one durable run (private: `batten.durable` makes them).
#[pyclass(frozen, skip_from_py_object, module = "batten._core")]
pub struct Journal {
    pub shared: Arc<Shared>,
    /// Prefix of this (nested) run's step paths: `""` at the top, `"parent/"` inside.
    pub scope: Arc<str>,
}

impl Clone for Journal {
    fn clone(&self) -> Self {
        Journal {
            shared: Arc::clone(&self.shared),
            scope: Arc::clone(&self.scope),
        }
    }
}

impl Journal {
    /// The store path of `step_id` in this run.
    pub fn path(&self, step_id: &str) -> String {
        format!("{}{}", self.scope, step_id)
    }

    /// The restored output of `step_id`, decoded, with its delta (or `None` if not restored).
    pub fn restored<'py>(
        &self,
        py: Python<'py>,
        step_id: &str,
    ) -> PyResult<Option<RestoredPy<'py>>> {
        let Some(r) = self.shared.restored.get(&self.path(step_id)) else {
            return Ok(None);
        };
        let output = self.decode(py, &r.output)?;
        let delta = r.delta.as_ref().map(|d| self.decode(py, d)).transpose()?;
        Ok(Some((output, delta)))
    }

    /// `obj` as stored JSON: as itself when it reads back equal (see `json`), through the
    /// serializer otherwise; a `TypeError` naming the step, the type and why when neither works.
    pub fn encode(
        &self,
        py: Python<'_>,
        step_id: &str,
        obj: &Bound<'_, PyAny>,
    ) -> PyResult<serde_json::Value> {
        self.encode_as(
            py,
            || format!("step '{}': its output", self.path(step_id)),
            obj,
        )
    }

    /// `encode`, with `what` naming the value in a refusal ("step 'a': its output").
    fn encode_as(
        &self,
        py: Python<'_>,
        what: impl FnOnce() -> String,
        obj: &Bound<'_, PyAny>,
    ) -> PyResult<serde_json::Value> {
        let why = match to_json(obj) {
            Ok(v) if !is_serialized(&v) => return Ok(v),
            // It would be decoded as the serializer's form on resume.
            Ok(_) => format!("it is a dict whose only key is '{CODEC_KEY}', which batten reserves"),
            Err(why) => why.to_string(),
        };
        match &self.shared.serializer {
            Some(ser) => {
                let bytes = ser.bind(py).call_method1(intern!(py, "dumps"), (obj,))?;
                let b64 = py
                    .import(intern!(py, "binascii"))?
                    .call_method1(intern!(py, "b2a_base64"), (bytes,))?;
                let text: String = b64
                    .call_method1(intern!(py, "decode"), ("ascii",))?
                    .extract()?;
                Ok(serde_json::json!({ CODEC_KEY: text.trim_end() }))
            }
            None => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{} of type {} cannot be checkpointed as JSON: {why}; return JSON data (dict \
                 with str keys, list, str, int, finite float, bool, None; at most \
                 {MAX_JSON_DEPTH} levels deep) or give the workflow a serializer (e.g. \
                 `serializer=pickle`)",
                what(),
                obj.get_type()
                    .qualname()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into()),
            ))),
        }
    }

    /// The inverse of `encode`.
    pub fn decode<'py>(
        &self,
        py: Python<'py>,
        v: &serde_json::Value,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(text) = serialized(v) {
            let Some(ser) = &self.shared.serializer else {
                return Err(crate::py::errors::StoreError::new_err(format!(
                    "run '{}': a checkpointed output was written with a serializer; resume \
                     with the same `serializer=`",
                    self.shared.run_id
                )));
            };
            let bytes = py
                .import(intern!(py, "binascii"))?
                .call_method1(intern!(py, "a2b_base64"), (text,))?;
            let bytes = bytes.cast_into::<PyBytes>()?;
            return ser.bind(py).call_method1(intern!(py, "loads"), (bytes,));
        }
        from_json(py, v)
    }

    /// Writes `events` (detached from Python), with the lazy events waiting before them, in one
    /// append: a checkpoint (a completed step's output) must be stored before dependents start.
    /// In `batch` mode they are buffered instead. The first error is also kept in `error`.
    pub fn write(&self, py: Python<'_>, events: Vec<StepEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let sh = &*self.shared;
        let res = py.detach(|| {
            let mut buf = sh.buffer.lock();
            buf.extend(events);
            if sh.batch && buf.len() < BATCH {
                return Ok(());
            }
            let all = std::mem::take(&mut *buf);
            sh.append(&all)
        });
        self.note(res)
    }

    /// Queues events that need not be stored before the run goes on (a step's start, a retry,
    /// a failure): the next checkpoint carries them, or a timer writes them within
    /// `LAZY_DELAY`, so a chain of steps pays one store write per step, not two.
    /// NOTE: writing starts at once cost W1 with a SQLite store ~2x (two commits per step).
    pub fn write_lazy(&self, events: Vec<StepEvent>) {
        if events.is_empty() {
            return;
        }
        let sh = &self.shared;
        sh.buffer.lock().extend(events);
        if sh.batch
            || sh
                .flush_armed
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let shared = Arc::clone(sh);
        let armed = tick_after(LAZY_DELAY, move || {
            shared
                .flush_armed
                .store(false, std::sync::atomic::Ordering::Release);
            let mut buf = shared.buffer.lock();
            let all = std::mem::take(&mut *buf);
            if !all.is_empty() {
                if let Err(e) = shared.append(&all) {
                    shared.error.lock().get_or_insert_with(|| e.to_string());
                }
            }
        });
        match armed {
            Some(tick) => *sh.flush_tick.lock() = Some(tick),
            // No timer (interpreter exit): the run's end writes them.
            None => sh
                .flush_armed
                .store(false, std::sync::atomic::Ordering::Release),
        }
    }

    fn note(&self, res: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(e) = &res {
            self.shared
                .error
                .lock()
                .get_or_insert_with(|| e.to_string());
        }
        res
    }

    /// One event for `step_id` of this run, stamped now.
    pub fn event(&self, step_id: &str, status: &str, attempt: u32) -> StepEvent {
        StepEvent::new(self.path(step_id), status, attempt, now())
    }

    /// Sets the run's status (`Store.finish_status`), fenced with the held lease's token when
    /// there is one; a `LeaseLost` refusal marks the lease lost.
    fn set_status(
        &self,
        py: Python<'_>,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> PyResult<()> {
        let sh = &*self.shared;
        let token = sh.token.load(Ordering::Acquire);
        let res = py.detach(|| {
            if token == 0 {
                sh.store
                    .finish_status(&sh.run_id, status, at, error, result)
            } else {
                sh.store
                    .finish_status_fenced(&sh.run_id, status, at, error, result, token)
            }
        });
        sh.note_lost(&res);
        res.map_err(store_error)
    }

    /// Writes every buffered event now.
    pub fn flush_pending(&self, py: Python<'_>) -> Result<(), StoreError> {
        let sh = &*self.shared;
        let res = py.detach(|| {
            let mut buf = sh.buffer.lock();
            let all = std::mem::take(&mut *buf);
            if all.is_empty() {
                return Ok(());
            }
            sh.append(&all)
        });
        self.note(res)
    }
}

#[pymethods]
impl Journal {
    /// A journal writing run `run_id`'s checkpoints to `store`.
    ///
    /// `serializer` (e.g. the `pickle` module: `dumps(obj) -> bytes`, `loads(bytes)`) stores
    /// outputs that are not JSON; `batch=True` buffers events (written every 256 and at the
    /// run's end) instead of writing each before the next step starts. `resume=True` reads the
    /// run's events and restores every step whose last event is `completed`.
    #[new]
    #[pyo3(signature = (store, run_id, *, serializer=None, batch=false, resume=false))]
    fn new(
        py: Python<'_>,
        store: &Bound<'_, PyStore>,
        run_id: String,
        serializer: Option<Py<PyAny>>,
        batch: bool,
        resume: bool,
    ) -> PyResult<Self> {
        let store = Arc::clone(&store.get().inner);
        let mut restored = HashMap::new();
        if resume {
            let events = py
                .detach(|| store.events(&run_id, 0))
                .map_err(store_error)?;
            // The last verdict per path wins: a step completed in an earlier process is
            // restored; a failure, cancellation or approval wait after it means it runs again.
            for e in events {
                // A status this batten never writes: guessing what it meant could re-run a
                // finished side effect or skip an unfinished one.
                let Some(state) = StepState::parse(&e.status) else {
                    return Err(store_error(StoreError::Corrupt {
                        what: format!("run '{run_id}' event {} (step '{}')", e.seq, e.step_id),
                        detail: format!(
                            "status '{}' is not a step status (expected one of {})",
                            e.status,
                            StepState::ALL.map(StepState::as_str).join(", ")
                        ),
                    }));
                };
                match state {
                    StepState::Running | StepState::Retrying => {}
                    StepState::Completed => {
                        if let Some(output) = e.output {
                            let delta = e.delta;
                            restored.insert(e.step_id, Restored { output, delta });
                        }
                    }
                    _ => {
                        restored.remove(&e.step_id);
                    }
                }
            }
        }
        Ok(Journal {
            shared: Arc::new(Shared {
                store,
                run_id: Arc::from(run_id),
                serializer: serializer.filter(|s| !s.is_none(py)),
                batch,
                buffer: Mutex::new(Vec::new()),
                flush_armed: std::sync::atomic::AtomicBool::new(false),
                flush_tick: Mutex::new(None),
                restored,
                error: Mutex::new(None),
                token: AtomicU64::new(0),
                lease: Mutex::new(None),
                lost: Mutex::new(None),
            }),
            scope: Arc::from(""),
        })
    }

    /// The journal of a nested run inside step `prefix` of this one (paths `"prefix/..."`).
    fn child(&self, prefix: &str) -> Journal {
        Journal {
            shared: Arc::clone(&self.shared),
            scope: Arc::from(format!("{}{}/", self.scope, prefix)),
        }
    }

    /// The journal of the top-level run (scope `""`), to write events by full path.
    fn root(&self) -> Journal {
        Journal {
            shared: Arc::clone(&self.shared),
            scope: Arc::from(""),
        }
    }

    /// The durable run's id.
    #[getter]
    fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// The store this journal writes to (a `batten._core.Store`).
    #[getter]
    fn store(&self) -> PyStore {
        PyStore {
            inner: Arc::clone(&self.shared.store),
        }
    }

    /// This journal's path prefix (`""` for the top-level run).
    #[getter]
    fn scope(&self) -> &str {
        &self.scope
    }

    /// The first store error a write hit, or `None`.
    #[getter]
    fn error(&self) -> Option<String> {
        self.shared.error.lock().clone()
    }

    /// Paths of the steps restored from the store, sorted.
    fn restored_paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.restored.keys().cloned().collect();
        v.sort();
        v
    }

    /// Holds the lease with fencing token `token` (from `Store.claim`): from now on every
    /// write of this run carries it, and a heartbeat on the ticker thread (one per process)
    /// renews the lease to `now + lease_seconds` every `heartbeat_seconds` (both seconds, > 0),
    /// as DBOS's and Temporal's workers heartbeat per worker. No new step starts
    /// once the lease is lost (a write or renewal refused with `LeaseLostError`) or past its
    /// last renewal's expiry without a successful renewal.
    fn hold(&self, token: u64, lease_seconds: f64, heartbeat_seconds: f64) -> PyResult<()> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if token == 0 || !positive(lease_seconds) || !positive(heartbeat_seconds) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "hold(token={token}, lease_seconds={lease_seconds}, \
                 heartbeat_seconds={heartbeat_seconds}): token must be >= 1 and both \
                 durations > 0"
            )));
        }
        let sh = &self.shared;
        sh.token.store(token, Ordering::Release);
        *sh.lease.lock() = Some(Heartbeat {
            ttl: lease_seconds,
            every: heartbeat_seconds,
            // The claim set the expiry from the claimant's clock just before.
            valid_until: now() + lease_seconds - heartbeat_seconds.min(lease_seconds / 2.0),
            timer: None,
        });
        let shared = Arc::clone(sh);
        let timer = tick_after(
            std::time::Duration::from_secs_f64(heartbeat_seconds),
            move || shared.beat(),
        );
        if let Some(h) = sh.lease.lock().as_mut() {
            h.timer = timer;
        }
        Ok(())
    }

    /// Records this journal's run as new and claimed by this process, and holds its lease: one
    /// store transaction where the store can (`Store.create_run_claimed`), then `hold`. `context`
    /// is stored as the run's input, encoded as outputs are (JSON, or through the serializer; a
    /// `TypeError` naming `what` when neither works); `created_at` (unix seconds) is also the
    /// claim's time; `lease_seconds` and `heartbeat_seconds` as `hold` takes them. Returns
    /// `None` once the run is recorded and held, or the lease dict of the live owner that holds
    /// a run of this id already (nothing written then). Raises `StoreError` (e.g. the id exists),
    /// `ValueError` for a bad lease duration (nothing written).
    /// NOTE: one call instead of `encode_output`, `Store.create_run_claimed` and `hold`: the
    /// context no longer goes back to a Python object in between (issue 18's D4).
    #[pyo3(signature = (workflow_id, name, version, status, context, created_at, host, pid, owner_id, started, lease_seconds, heartbeat_seconds, *, what))]
    #[allow(clippy::too_many_arguments)]
    fn begin_run<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
        name: String,
        version: String,
        status: String,
        context: &Bound<'py, PyAny>,
        created_at: f64,
        host: String,
        pid: u32,
        owner_id: String,
        started: Option<u64>,
        lease_seconds: f64,
        heartbeat_seconds: f64,
        what: String,
    ) -> PyResult<Option<Bound<'py, pyo3::types::PyDict>>> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(lease_seconds) || !positive(heartbeat_seconds) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "begin_run(lease_seconds={lease_seconds}, heartbeat_seconds={heartbeat_seconds}): \
                 both durations must be > 0"
            )));
        }
        let input = self.encode_as(py, || what, context)?;
        let sh = &*self.shared;
        let rec = crate::store::RunRecord {
            run_id: sh.run_id.to_string(),
            workflow_id,
            name,
            version,
            status,
            created_at,
            updated_at: created_at,
            input,
            error: None,
            result: None,
            lease: None,
        };
        let owner = crate::store::LeaseOwner {
            host,
            pid,
            id: owner_id,
            started,
        };
        let claim = py
            .detach(|| {
                sh.store
                    .create_run_claimed(&rec, &owner, created_at, lease_seconds)
            })
            .map_err(store_error)?;
        match claim {
            crate::store::Claim::Won(lease) => {
                self.hold(lease.token, lease_seconds, heartbeat_seconds)?;
                Ok(None)
            }
            crate::store::Claim::Held(lease) => Ok(Some(crate::py::store::lease_dict(py, &lease)?)),
        }
    }

    /// Stops the heartbeat and gives the lease up in the store (unless it was lost). Returns
    /// whether the store released it. Safe to call more than once. Raises `StoreError` when
    /// the store cannot be reached (the lease then lapses on its own).
    fn release(&self, py: Python<'_>) -> PyResult<bool> {
        let sh = &self.shared;
        if let Some(h) = sh.lease.lock().take() {
            if let Some(t) = h.timer {
                t.cancel();
            }
        }
        let token = sh.token.swap(0, Ordering::AcqRel);
        if token == 0 || sh.lost.lock().is_some() {
            return Ok(false);
        }
        py.detach(|| sh.store.release(&sh.run_id, token))
            .map_err(store_error)
    }

    /// The fencing token of the lease this journal holds (0: none).
    #[getter]
    fn token(&self) -> u64 {
        self.shared.token.load(Ordering::Acquire)
    }

    /// Why the lease was lost (the store's refusal), or `None` while it is held.
    #[getter]
    fn lease_lost(&self) -> Option<String> {
        self.shared.lost.lock().clone()
    }

    /// Sets the run's status as `Store.finish_status` does, fenced with the held lease's token
    /// (unfenced when none is held). Raises `LeaseLostError` when another process took over.
    #[pyo3(signature = (status, at, error=None, result=None))]
    fn finish_status(
        &self,
        py: Python<'_>,
        status: String,
        at: f64,
        error: Option<String>,
        result: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let result = match result {
            Some(r) if !r.is_none() => Some(to_json(r).map_err(|e| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "the run's result cannot be stored as JSON: {e}"
                ))
            })?),
            _ => None,
        };
        self.set_status(py, &status, at, error.as_deref(), result.as_ref())
    }

    /// The end of this process's execution of the run, in one store transaction where the
    /// store can (`Store.finish_run_fenced`): the buffered events, the run's status (as
    /// `finish_status`: `error` and `result` when not `None`), its control request cleared when
    /// `clear_control`, and the held lease released (its heartbeat stopped first). Returns
    /// whether the lease was released. Without a held lease it writes the same, unfenced, in
    /// separate calls. Raises `LeaseLostError` when another process took over (nothing written;
    /// the lease is then not this process's to release), `StoreError` otherwise (the lease is
    /// still held: `release` gives it up).
    ///
    /// `encode_result=True`: `result` is encoded as outputs are (JSON, or through the
    /// serializer) and stored as `None` when it cannot be (a `TypeError`), instead of raising.
    #[pyo3(signature = (status, at, error=None, result=None, clear_control=true, *, encode_result=false))]
    #[allow(clippy::too_many_arguments)]
    fn finish_run(
        &self,
        py: Python<'_>,
        status: String,
        at: f64,
        error: Option<String>,
        result: Option<&Bound<'_, PyAny>>,
        clear_control: bool,
        encode_result: bool,
    ) -> PyResult<bool> {
        let result = match result {
            Some(r) if !r.is_none() && encode_result => {
                match self.encode_as(py, || "the run's result".to_string(), r) {
                    Ok(v) => Some(v),
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => None,
                    Err(e) => return Err(e),
                }
            }
            Some(r) if !r.is_none() => Some(to_json(r).map_err(|e| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "the run's result cannot be stored as JSON: {e}"
                ))
            })?),
            _ => None,
        };
        let sh = &*self.shared;
        let token = sh.token.load(Ordering::Acquire);
        if token == 0 || sh.lost.lock().is_some() {
            self.flush_pending(py).map_err(store_error)?;
            self.set_status(py, &status, at, error.as_deref(), result.as_ref())?;
            if clear_control {
                let run_id = Arc::clone(&sh.run_id);
                py.detach(|| sh.store.set_control(&run_id, None))
                    .map_err(store_error)?;
            }
            return Ok(false);
        }
        // No renewal may land after the release; the lazy events are written here.
        sh.stop_timers();
        let res = py.detach(|| {
            let mut buf = sh.buffer.lock();
            let events = std::mem::take(&mut *buf);
            sh.store.finish_run_fenced(
                &sh.run_id,
                &events,
                &status,
                at,
                error.as_deref(),
                result.as_ref(),
                clear_control,
                token,
            )
        });
        sh.note_lost(&res);
        let released = res.map_err(store_error)?;
        // Released with the status: nothing is fenced with the token any more.
        let _ = sh
            .token
            .compare_exchange(token, 0, Ordering::AcqRel, Ordering::Acquire);
        Ok(released)
    }

    /// Writes buffered events now (batch mode). Raises `StoreError` (and subclasses).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.flush_pending(py).map_err(store_error)
    }

    /// Appends one event for `step_id` (a path under this journal's scope) from Python:
    /// approval waits and decisions. Buffered events are written first, so order holds.
    #[pyo3(signature = (step_id, status, attempt=1, *, detail=None, error_type=None, error=None, output=None))]
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        py: Python<'_>,
        step_id: &str,
        status: &str,
        attempt: u32,
        detail: Option<&Bound<'_, PyAny>>,
        error_type: Option<String>,
        error: Option<String>,
        output: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut e = self.event(step_id, status, attempt);
        e.detail = detail
            .filter(|d| !d.is_none())
            .map(|d| self.encode(py, step_id, d))
            .transpose()?;
        e.output = output
            .filter(|d| !d.is_none())
            .map(|d| self.encode(py, step_id, d))
            .transpose()?;
        e.error_type = error_type;
        e.error = error;
        let sh = &*self.shared;
        py.detach(|| {
            let mut buf = sh.buffer.lock();
            buf.push(e);
            let all = std::mem::take(&mut *buf);
            sh.append(&all)
        })
        .map_err(store_error)
    }

    /// Encodes `obj` as this journal stores outputs (JSON, or the serializer's form); a
    /// `TypeError` naming `step_id` (or `what`, e.g. "the run's input context", when given) and
    /// why when it cannot be stored.
    #[pyo3(signature = (step_id, obj, *, what=None))]
    fn encode_output<'py>(
        &self,
        py: Python<'py>,
        step_id: &str,
        obj: &Bound<'py, PyAny>,
        what: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let v = match what {
            Some(what) => self.encode_as(py, || what, obj)?,
            None => self.encode(py, step_id, obj)?,
        };
        from_json(py, &v)
    }

    /// Decodes a stored output (the inverse of `encode_output`).
    fn decode_output<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let v = to_json(value).map_err(|e| {
            pyo3::exceptions::PyTypeError::new_err(format!("a stored output must be JSON: {e}"))
        })?;
        self.decode(py, &v)
    }

    fn __repr__(&self) -> String {
        format!(
            "<batten._core.Journal run={} scope={:?} store={}>",
            self.shared.run_id,
            self.scope,
            self.shared.store.url()
        )
    }
}
