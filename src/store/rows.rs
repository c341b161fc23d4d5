//! Reading records back, shared by the stores: a run's fields into a [`RunRecord`] (its JSON
//! parsed, its lease assembled), and the SQL stores' rows (SQLite's and PostgreSQL's tables have
//! the same columns in the same order) into runs, events and decisions. Each backend only says how
//! to get one typed column ([`Columns`]) or one hash field; what a record is made of, and which
//! part is `Corrupt` when it cannot be read, is said once, here.

use serde_json::Value;

use super::error::parse_json;
use super::{Decision, Lease, LeaseOwner, RunRecord, StepEvent, StoreError};

/// A run as a store keeps it: plain fields, JSON still as text, the lease in parts.
pub(crate) struct RunFields {
    pub workflow_id: String,
    pub name: String,
    pub version: String,
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub input: String,
    pub error: Option<String>,
    pub result: Option<String>,
    /// The fencing token counter (read only when `lease_owner` is set).
    pub lease_token: u64,
    /// The owner's JSON ([`LeaseOwner::encode`]), `None` when no one holds the lease.
    pub lease_owner: Option<String>,
    pub lease_heartbeat: Option<f64>,
    pub lease_expires: Option<f64>,
}

impl RunFields {
    /// The run's record: input and result parsed, the lease decoded; `Corrupt` naming the run
    /// and the part otherwise.
    pub(crate) fn decode(self, run_id: String) -> Result<RunRecord, StoreError> {
        let lease = lease(
            &run_id,
            self.lease_token,
            self.lease_owner.as_deref(),
            self.lease_heartbeat,
            self.lease_expires,
        )?;
        Ok(RunRecord {
            lease,
            workflow_id: self.workflow_id,
            name: self.name,
            version: self.version,
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            input: parse_json(&self.input, || format!("run '{run_id}' input"))?,
            error: self.error,
            result: self
                .result
                .map(|text| parse_json(&text, || format!("run '{run_id}' result")))
                .transpose()?,
            run_id,
        })
    }
}

/// The run's lease from its stored parts: `None` when no owner holds it; a missing heartbeat or
/// expiry reads as 0 (long expired).
pub(crate) fn lease(
    run_id: &str,
    token: u64,
    owner: Option<&str>,
    heartbeat_at: Option<f64>,
    expires_at: Option<f64>,
) -> Result<Option<Lease>, StoreError> {
    let Some(owner) = owner else { return Ok(None) };
    Ok(Some(Lease {
        owner: LeaseOwner::decode(owner, || format!("run '{run_id}' lease"))?,
        token,
        heartbeat_at: heartbeat_at.unwrap_or(0.0),
        expires_at: expires_at.unwrap_or(0.0),
    }))
}

/// One row of a SQL store, column by column: a value of the wrong type is a `Corrupt` record
/// named by `what` (and the column).
pub(crate) trait Columns {
    fn text(&self, index: usize, what: &dyn Fn() -> String) -> Result<String, StoreError>;
    fn opt_text(
        &self,
        index: usize,
        what: &dyn Fn() -> String,
    ) -> Result<Option<String>, StoreError>;
    fn real(&self, index: usize, what: &dyn Fn() -> String) -> Result<f64, StoreError>;
    fn opt_real(&self, index: usize, what: &dyn Fn() -> String) -> Result<Option<f64>, StoreError>;
    fn int(&self, index: usize, what: &dyn Fn() -> String) -> Result<i64, StoreError>;
    fn boolean(&self, index: usize, what: &dyn Fn() -> String) -> Result<bool, StoreError>;
}

/// `impl Columns` for a backend's row type by its `column(row, index, what)` function, generic
/// over the column's type.
macro_rules! columns_by {
    ($row:ty, $column:path) => {
        impl $crate::store::rows::Columns for $row {
            fn text(&self, i: usize, what: &dyn Fn() -> String) -> Result<String, StoreError> {
                $column(self, i, what)
            }
            fn opt_text(
                &self,
                i: usize,
                what: &dyn Fn() -> String,
            ) -> Result<Option<String>, StoreError> {
                $column(self, i, what)
            }
            fn real(&self, i: usize, what: &dyn Fn() -> String) -> Result<f64, StoreError> {
                $column(self, i, what)
            }
            fn opt_real(
                &self,
                i: usize,
                what: &dyn Fn() -> String,
            ) -> Result<Option<f64>, StoreError> {
                $column(self, i, what)
            }
            fn int(&self, i: usize, what: &dyn Fn() -> String) -> Result<i64, StoreError> {
                $column(self, i, what)
            }
            fn boolean(&self, i: usize, what: &dyn Fn() -> String) -> Result<bool, StoreError> {
                $column(self, i, what)
            }
        }
    };
}
pub(crate) use columns_by;

/// The columns of a run, in the order [`run`] reads them.
pub(crate) const RUN_COLUMNS: &str = "run_id, workflow_id, name, version, status, created_at, \
     updated_at, input, error, result, lease_token, lease_owner, lease_heartbeat, lease_expires";

/// A run from a row of [`RUN_COLUMNS`].
pub(crate) fn run(row: &impl Columns) -> Result<RunRecord, StoreError> {
    let run_id = row.text(0, &|| "a run".to_string())?;
    let what = || format!("run '{run_id}'");
    let fields = RunFields {
        workflow_id: row.text(1, &what)?,
        name: row.text(2, &what)?,
        version: row.text(3, &what)?,
        status: row.text(4, &what)?,
        created_at: row.real(5, &what)?,
        updated_at: row.real(6, &what)?,
        input: row.text(7, &what)?,
        error: row.opt_text(8, &what)?,
        result: row.opt_text(9, &what)?,
        lease_token: row.int(10, &what)? as u64,
        lease_owner: row.opt_text(11, &what)?,
        lease_heartbeat: row.opt_real(12, &what)?,
        lease_expires: row.opt_real(13, &what)?,
    };
    fields.decode(run_id.clone())
}

/// The columns of an event after its position, in the order [`event`] reads them from index 1.
pub(crate) const EVENT_COLUMNS: &str =
    "step_id, status, attempt, at, duration_ms, error_type, error, output, delta, detail";

/// Event `seq` of run `run_id` from a row whose columns 1 to 10 are [`EVENT_COLUMNS`] (column 0
/// is the backend's position).
pub(crate) fn event(row: &impl Columns, run_id: &str, seq: u64) -> Result<StepEvent, StoreError> {
    let what = || format!("run '{run_id}' event {seq}");
    let json = |index: usize| -> Result<Option<Value>, StoreError> {
        let text = row.opt_text(index, &what)?;
        text.map(|text| parse_json(&text, what)).transpose()
    };
    let attempt = row.int(3, &what)?;
    Ok(StepEvent {
        seq,
        step_id: row.text(1, &what)?,
        status: row.text(2, &what)?,
        attempt: u32::try_from(attempt)
            .map_err(|_| StoreError::corrupt(what(), format_args!("attempt {attempt}")))?,
        at: row.real(4, &what)?,
        duration_ms: row.opt_real(5, &what)?,
        error_type: row.opt_text(6, &what)?,
        error: row.opt_text(7, &what)?,
        output: json(8)?,
        delta: json(9)?,
        detail: json(10)?,
    })
}

/// The columns of a decision, in the order [`decision`] reads them.
pub(crate) const DECISION_COLUMNS: &str = "step_id, approved, decided_by, comment, at";

/// A decision of run `run_id` from a row of [`DECISION_COLUMNS`].
pub(crate) fn decision(row: &impl Columns, run_id: &str) -> Result<Decision, StoreError> {
    let step_id = row.text(0, &|| format!("run '{run_id}' decision"))?;
    let what = || format!("run '{run_id}' decision on step '{step_id}'");
    Ok(Decision {
        approved: row.boolean(1, &what)?,
        by: row.opt_text(2, &what)?,
        comment: row.opt_text(3, &what)?,
        at: row.real(4, &what)?,
        step_id: step_id.clone(),
    })
}
