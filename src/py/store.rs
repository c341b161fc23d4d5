//! `Store`: the Python handle on a checkpoint store (`crate::store`), and JSON conversion.
//!
//! Every call detaches from Python while the store does its I/O, so a slow Redis round trip
//! never holds the GIL. Store errors become `batten.errors.StoreError` and its subclasses.
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::py::errors::store_error;
use crate::py::json::{from_json, to_json};
use crate::store::{
    self, Claim, Control, Decision, Lease, LeaseOwner, RunRecord, StepEvent, Store, Watch,
};

/// `obj` as JSON for the store (see `json`): a `TypeError` naming `what` and why otherwise.
fn json_arg(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    to_json(obj).map_err(|e| {
        pyo3::exceptions::PyTypeError::new_err(format!("{what} cannot be stored as JSON: {e}"))
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A checkpoint store opened from a URL. Private: `batten.store` wraps it.
#[pyclass(frozen, module = "batten._core", name = "Store")]
pub struct PyStore {
    pub inner: Arc<dyn Store>,
}

/// A subscription to a run's pushed control changes (`Store.watch`). Private.
#[pyclass(frozen, module = "batten._core", name = "StoreWatch")]
pub struct PyWatch {
    inner: std::sync::Mutex<Option<Watch>>,
}

#[pymethods]
impl PyWatch {
    /// Ends the subscription (idempotent): later changes no longer call the callback;
    /// one already dispatched may still call it once.
    fn close(&self, py: Python<'_>) {
        // Taken out under the lock, dropped after it: dropping ends the store's subscription.
        let watch = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| drop(watch));
    }
}

/// A run's first record (no result, no lease), its input context converted to JSON.
fn new_run(
    run_id: String,
    workflow_id: String,
    name: String,
    version: String,
    status: String,
    input: &Bound<'_, PyAny>,
    created_at: f64,
) -> PyResult<RunRecord> {
    Ok(RunRecord {
        run_id,
        workflow_id,
        name,
        version,
        status,
        created_at,
        updated_at: created_at,
        input: json_arg("the run's input context", input)?,
        error: None,
        result: None,
        lease: None,
    })
}

fn run_dict<'py>(py: Python<'py>, r: &RunRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("run_id", &r.run_id)?;
    d.set_item("workflow_id", &r.workflow_id)?;
    d.set_item("name", &r.name)?;
    d.set_item("version", &r.version)?;
    d.set_item("status", &r.status)?;
    d.set_item("created_at", r.created_at)?;
    d.set_item("updated_at", r.updated_at)?;
    d.set_item("input", from_json(py, &r.input)?)?;
    d.set_item("error", &r.error)?;
    let result = match &r.result {
        Some(v) => from_json(py, v)?,
        None => py.None().into_bound(py),
    };
    d.set_item("result", result)?;
    let lease = match &r.lease {
        Some(l) => lease_dict(py, l)?.into_any(),
        None => py.None().into_bound(py),
    };
    d.set_item("lease", lease)?;
    Ok(d)
}

/// A lease as a dict: `host`, `pid`, `owner_id`, `started`, `token`, `heartbeat_at`,
/// `expires_at` (unix seconds).
pub(crate) fn lease_dict<'py>(py: Python<'py>, l: &Lease) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("host", &l.owner.host)?;
    d.set_item("pid", l.owner.pid)?;
    d.set_item("owner_id", &l.owner.id)?;
    d.set_item("started", l.owner.started)?;
    d.set_item("token", l.token)?;
    d.set_item("heartbeat_at", l.heartbeat_at)?;
    d.set_item("expires_at", l.expires_at)?;
    Ok(d)
}

fn opt_json<'py>(py: Python<'py>, v: &Option<serde_json::Value>) -> PyResult<Bound<'py, PyAny>> {
    match v {
        Some(v) => from_json(py, v),
        None => Ok(py.None().into_bound(py)),
    }
}

pub fn event_dict<'py>(py: Python<'py>, e: &StepEvent) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("seq", e.seq)?;
    d.set_item("step_id", &e.step_id)?;
    d.set_item("status", &e.status)?;
    d.set_item("attempt", e.attempt)?;
    d.set_item("at", e.at)?;
    d.set_item("duration_ms", e.duration_ms)?;
    d.set_item("error_type", &e.error_type)?;
    d.set_item("error", &e.error)?;
    d.set_item("output", opt_json(py, &e.output)?)?;
    d.set_item("delta", opt_json(py, &e.delta)?)?;
    d.set_item("detail", opt_json(py, &e.detail)?)?;
    Ok(d)
}

fn event_from_dict(d: &Bound<'_, PyDict>) -> PyResult<StepEvent> {
    let item = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(d.get_item(k)?.filter(|v| !v.is_none()))
    };
    let string = |k: &str| -> PyResult<Option<String>> {
        item(k)?.map(|v| v.extract::<String>()).transpose()
    };
    let json = |k: &str| -> PyResult<Option<serde_json::Value>> {
        item(k)?.map(|v| json_arg(k, &v)).transpose()
    };
    Ok(StepEvent {
        seq: 0,
        step_id: string("step_id")?.ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("a store event needs a 'step_id'")
        })?,
        status: string("status")?.ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("a store event needs a 'status'")
        })?,
        attempt: item("attempt")?
            .map(|v| v.extract::<u32>())
            .transpose()?
            .unwrap_or(0),
        at: item("at")?
            .map(|v| v.extract::<f64>())
            .transpose()?
            .unwrap_or_else(now),
        duration_ms: item("duration_ms")?
            .map(|v| v.extract::<f64>())
            .transpose()?,
        error_type: string("error_type")?,
        error: string("error")?,
        output: json("output")?,
        delta: json("delta")?,
        detail: json("detail")?,
    })
}

fn decision_dict<'py>(py: Python<'py>, x: &Decision) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("step_id", &x.step_id)?;
    d.set_item("approved", x.approved)?;
    d.set_item("by", &x.by)?;
    d.set_item("comment", &x.comment)?;
    d.set_item("at", x.at)?;
    Ok(d)
}

impl PyStore {
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn Store) -> Result<T, store::StoreError> + Send,
    ) -> PyResult<T> {
        let s = &*self.inner;
        py.detach(|| f(s)).map_err(store_error)
    }
}

#[pymethods]
impl PyStore {
    /// Opens the store at `url` (`memory://`, `sqlite:///rel.db`, `sqlite:////abs.db`,
    /// `redis://host:port/db`). Raises `StoreURLError`, `StoreUnavailableError`,
    /// `SchemaVersionError`.
    #[new]
    fn new(py: Python<'_>, url: &str) -> PyResult<Self> {
        let url = url.to_string();
        let inner = py.detach(|| store::open(&url)).map_err(store_error)?;
        Ok(PyStore { inner })
    }

    /// The URL it was opened from.
    #[getter]
    fn url(&self) -> String {
        self.inner.url().to_string()
    }

    /// Records a new run (`StoreError` if the id exists).
    #[pyo3(signature = (run_id, workflow_id, name, version, status, input, created_at))]
    #[allow(clippy::too_many_arguments)]
    fn create_run(
        &self,
        py: Python<'_>,
        run_id: String,
        workflow_id: String,
        name: String,
        version: String,
        status: String,
        input: &Bound<'_, PyAny>,
        created_at: f64,
    ) -> PyResult<()> {
        let rec = new_run(
            run_id,
            workflow_id,
            name,
            version,
            status,
            input,
            created_at,
        )?;
        self.call(py, |s| s.create_run(&rec))
    }

    /// Records a new run (as `create_run`) and claims its lease (as `claim` without a
    /// take-over) for the owner (`host`, `pid`, `owner_id`, `started`) until
    /// `now + lease_seconds` (unix seconds; seconds), in one store transaction where the store
    /// can. Returns `(won, lease)` as `claim` does. `StoreError` if the id exists.
    #[pyo3(signature = (run_id, workflow_id, name, version, status, input, created_at, host, pid, owner_id, started, now, lease_seconds))]
    #[allow(clippy::too_many_arguments)]
    fn create_run_claimed<'py>(
        &self,
        py: Python<'py>,
        run_id: String,
        workflow_id: String,
        name: String,
        version: String,
        status: String,
        input: &Bound<'_, PyAny>,
        created_at: f64,
        host: String,
        pid: u32,
        owner_id: String,
        started: Option<u64>,
        now: f64,
        lease_seconds: f64,
    ) -> PyResult<(bool, Bound<'py, PyDict>)> {
        let rec = new_run(
            run_id,
            workflow_id,
            name,
            version,
            status,
            input,
            created_at,
        )?;
        let owner = LeaseOwner {
            host,
            pid,
            id: owner_id,
            started,
        };
        let claim = self.call(py, |s| {
            s.create_run_claimed(&rec, &owner, now, lease_seconds)
        })?;
        Ok(match claim {
            Claim::Won(l) => (true, lease_dict(py, &l)?),
            Claim::Held(l) => (false, lease_dict(py, &l)?),
        })
    }

    /// The run's record as a dict (`RunNotFoundError` if absent).
    fn get_run<'py>(&self, py: Python<'py>, run_id: String) -> PyResult<Bound<'py, PyDict>> {
        let r = self.call(py, |s| s.get_run(&run_id))?;
        run_dict(py, &r)
    }

    /// Sets the run's status (and its error / result summary when given).
    #[pyo3(signature = (run_id, status, at, error=None, result=None))]
    fn finish_status(
        &self,
        py: Python<'_>,
        run_id: String,
        status: String,
        at: f64,
        error: Option<String>,
        result: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let result = match result {
            Some(r) if !r.is_none() => Some(json_arg("the run's result", r)?),
            _ => None,
        };
        self.call(py, |s| {
            s.finish_status(&run_id, &status, at, error.as_deref(), result.as_ref())
        })
    }

    /// Claims the execution of run `run_id` for the owner (`host`, `pid`, `owner_id`,
    /// `started`: the process start time, clock ticks since boot, or `None`) until
    /// `now + lease_seconds` (unix seconds; seconds). Atomic in the store. Returns
    /// `(won, lease)`: `won` with the new lease (its fencing token one higher), else the live
    /// lease that holds the run. `take_over`: the token of a lease whose owner the caller found
    /// dead; it is taken over even though it has not expired. `RunNotFoundError` if absent.
    #[pyo3(signature = (run_id, host, pid, owner_id, started, now, lease_seconds, take_over=None))]
    #[allow(clippy::too_many_arguments)]
    fn claim<'py>(
        &self,
        py: Python<'py>,
        run_id: String,
        host: String,
        pid: u32,
        owner_id: String,
        started: Option<u64>,
        now: f64,
        lease_seconds: f64,
        take_over: Option<u64>,
    ) -> PyResult<(bool, Bound<'py, PyDict>)> {
        let owner = LeaseOwner {
            host,
            pid,
            id: owner_id,
            started,
        };
        let claim = self.call(py, |s| {
            s.claim(&run_id, &owner, now, lease_seconds, take_over)
        })?;
        Ok(match claim {
            Claim::Won(l) => (true, lease_dict(py, &l)?),
            Claim::Held(l) => (false, lease_dict(py, &l)?),
        })
    }

    /// Renews the lease with fencing token `token` to `now + lease_seconds`; returns it as a
    /// dict. `LeaseLostError` if another process took the run over or it was released.
    fn renew<'py>(
        &self,
        py: Python<'py>,
        run_id: String,
        token: u64,
        now: f64,
        lease_seconds: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let l = self.call(py, |s| s.renew(&run_id, token, now, lease_seconds))?;
        lease_dict(py, &l)
    }

    /// Releases the lease with fencing token `token`; `False` when it is not the run's lease
    /// any more.
    fn release(&self, py: Python<'_>, run_id: String, token: u64) -> PyResult<bool> {
        self.call(py, |s| s.release(&run_id, token))
    }

    /// Run records, newest first, filtered by status and workflow id. A record that cannot be
    /// read is listed in its place as the `CorruptRecordError` naming it (an instance, not
    /// raised), so one bad record never hides the others.
    #[pyo3(signature = (status=None, workflow_id=None, limit=1000))]
    fn list_runs<'py>(
        &self,
        py: Python<'py>,
        status: Option<String>,
        workflow_id: Option<String>,
        limit: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let runs = self.call(py, |s| {
            s.list_runs(status.as_deref(), workflow_id.as_deref(), limit)
        })?;
        let out = PyList::empty(py);
        for r in runs {
            match r {
                Ok(r) => out.append(run_dict(py, &r)?)?,
                Err(e) => out.append(store_error(e).into_value(py))?,
            }
        }
        Ok(out)
    }

    /// Appends step events (dicts with `step_id`, `status`, `attempt`, `at`, `duration_ms`,
    /// `error_type`, `error`, `output`, `delta`, `detail`); returns their sequence numbers.
    fn append(
        &self,
        py: Python<'_>,
        run_id: String,
        events: Vec<Bound<'_, PyDict>>,
    ) -> PyResult<Vec<u64>> {
        let events = events
            .iter()
            .map(event_from_dict)
            .collect::<PyResult<Vec<_>>>()?;
        self.call(py, |s| s.append(&run_id, &events))
    }

    /// The run's step events after sequence number `after`, oldest first, as dicts.
    #[pyo3(signature = (run_id, after=0))]
    fn events<'py>(
        &self,
        py: Python<'py>,
        run_id: String,
        after: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let events = self.call(py, |s| s.events(&run_id, after))?;
        let out = PyList::empty(py);
        for e in &events {
            out.append(event_dict(py, e)?)?;
        }
        Ok(out)
    }

    /// Requests `"pause"` or `"cancel"` for a run (`None` clears the request).
    #[pyo3(signature = (run_id, control=None))]
    fn set_control(&self, py: Python<'_>, run_id: String, control: Option<&str>) -> PyResult<()> {
        let control = match control {
            None => None,
            Some("pause") => Some(Control::Pause),
            Some("cancel") => Some(Control::Cancel),
            Some(other) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "control must be 'pause', 'cancel' or None, got {other:?}"
                )))
            }
        };
        self.call(py, |s| s.set_control(&run_id, control))
    }

    /// The pending control request of a run: `"pause"`, `"cancel"` or `None`.
    fn control(&self, py: Python<'_>, run_id: String) -> PyResult<Option<&'static str>> {
        let c = self.call(py, |s| s.control(&run_id))?;
        Ok(c.map(|c| match c {
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        }))
    }

    /// Records a decision on an approval step (`ApprovalError` if it already has one).
    #[pyo3(signature = (run_id, step_id, approved, by=None, comment=None, at=None))]
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        py: Python<'_>,
        run_id: String,
        step_id: String,
        approved: bool,
        by: Option<String>,
        comment: Option<String>,
        at: Option<f64>,
    ) -> PyResult<()> {
        let d = Decision {
            step_id,
            approved,
            by,
            comment,
            at: at.unwrap_or_else(now),
        };
        self.call(py, |s| s.decide(&run_id, &d))
    }

    /// Calls `callback()` (no arguments) soon after run `run_id`'s control or approval decisions
    /// change, written by any process, until the returned watch is closed; also when the
    /// store's push channel (re)connects. It runs on a thread of the store's, holding the GIL;
    /// what it raises is reported with `sys.unraisablehook`. A call means only "look now"
    /// (`control`). `None` when the store pushes nothing (memory, SQLite, Redis): poll instead.
    /// PostgreSQL pushes with LISTEN/NOTIFY.
    fn watch(&self, py: Python<'_>, run_id: String, callback: Py<PyAny>) -> Option<PyWatch> {
        let wake: store::Wake = Arc::new(move || {
            Python::attach(|py| {
                if let Err(e) = callback.call0(py) {
                    e.write_unraisable(py, None);
                }
            });
        });
        let watch = py.detach(|| self.inner.watch(&run_id, wake))?;
        Some(PyWatch {
            inner: std::sync::Mutex::new(Some(watch)),
        })
    }

    /// The run's approval decisions, as dicts.
    fn decisions<'py>(&self, py: Python<'py>, run_id: String) -> PyResult<Bound<'py, PyList>> {
        let ds = self.call(py, |s| s.decisions(&run_id))?;
        let out = PyList::empty(py);
        for d in &ds {
            out.append(decision_dict(py, d)?)?;
        }
        Ok(out)
    }

    /// `(True, value)` for a live cache entry, `(False, None)` otherwise.
    fn cache_get<'py>(
        &self,
        py: Python<'py>,
        key: String,
        now: f64,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        match self.call(py, |s| s.cache_get(&key, now))? {
            Some(v) => Ok((true, from_json(py, &v)?)),
            None => Ok((false, py.None().into_bound(py))),
        }
    }

    /// Stores a JSON value under `key` until `expires_at` (unix seconds).
    fn cache_put(
        &self,
        py: Python<'_>,
        key: String,
        value: &Bound<'_, PyAny>,
        expires_at: f64,
    ) -> PyResult<()> {
        let v = json_arg("a cached output", value)?;
        self.call(py, |s| s.cache_put(&key, &v, expires_at))
    }

    /// Records (replaces) a workflow's definition.
    fn put_workflow(
        &self,
        py: Python<'_>,
        workflow_id: String,
        definition: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let v = json_arg("a workflow definition", definition)?;
        self.call(py, |s| s.put_workflow(&workflow_id, &v))
    }

    /// A workflow's recorded definition, or `None`.
    fn get_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let v = self.call(py, |s| s.get_workflow(&workflow_id))?;
        opt_json(py, &v)
    }

    fn __repr__(&self) -> String {
        format!("<batten._core.Store {}>", self.inner.url())
    }
}
