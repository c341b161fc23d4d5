//! What a store holds: runs, their step events, controls and approval decisions.
//!
//! Statuses are plain strings: the store records them and filters on them, the engine gives them
//! meaning. Times are unix seconds as `f64`.

use serde_json::Value;

/// A run's record: created once when the run starts, its status updated as it pauses or finishes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run's unique id (the store's key).
    pub run_id: String,
    /// The id of the workflow the run executes (see [`Store::put_workflow`](super::Store::put_workflow)).
    pub workflow_id: String,
    /// The workflow's human-readable name.
    pub name: String,
    /// The workflow's version string.
    pub version: String,
    /// "RUNNING", "COMPLETED", "WAITING_APPROVAL", ...: opaque to the store.
    pub status: String,
    /// When the run was created, unix seconds; [`Store::list_runs`](super::Store::list_runs) orders
    /// by it.
    pub created_at: f64,
    /// When the status last changed, unix seconds.
    pub updated_at: f64,
    /// The input context, as JSON.
    pub input: Value,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// The final output summary, set when the run finishes.
    pub result: Option<Value>,
    /// Who executes the run now: the live or expired lease last claimed, `None` when no one
    /// holds it (never claimed, or released). Ignored by
    /// [`Store::create_run`](super::Store::create_run): a lease is only taken by
    /// [`Store::claim`](super::Store::claim).
    pub lease: Option<Lease>,
}

/// The process executing a run (see [`Lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOwner {
    /// The host name of the executing process.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// A random id, unique per executor (process and run), so two owners never look the same.
    pub id: String,
    /// The process's start time as the OS counts it (Linux: `/proc/<pid>/stat` field 22, clock
    /// ticks since boot), to tell the owner from a later process that reuses its pid; `None`
    /// where unknown.
    pub started: Option<u64>,
}

impl LeaseOwner {
    /// The owner as the SQLite and Redis stores keep it: a JSON object.
    pub(crate) fn encode(&self) -> String {
        serde_json::json!({
            "host": self.host,
            "pid": self.pid,
            "id": self.id,
            "started": self.started,
        })
        .to_string()
    }

    /// The inverse of [`encode`](Self::encode); `Corrupt` naming `what` otherwise.
    pub(crate) fn decode(text: &str, what: impl Fn() -> String) -> Result<Self, super::StoreError> {
        let v = super::error::parse_json(text, &what)?;
        let bad = |field: &str| {
            super::StoreError::corrupt(what(), format_args!("lease owner field '{field}'"))
        };
        Ok(LeaseOwner {
            host: v["host"].as_str().ok_or_else(|| bad("host"))?.to_string(),
            pid: v["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| bad("pid"))?,
            id: v["id"].as_str().ok_or_else(|| bad("id"))?.to_string(),
            started: match &v["started"] {
                Value::Null => None,
                n => Some(n.as_u64().ok_or_else(|| bad("started"))?),
            },
        })
    }
}

/// A claim on the execution of one run, as Temporal's activity heartbeats and Prefect's zombie
/// detection keep one: an owner, a fencing token and an expiry renewed by heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Who holds it.
    pub owner: LeaseOwner,
    /// The fencing token: it grows by one with every successful
    /// [`claim`](super::Store::claim) of the run, so a write carrying an older one is refused.
    pub token: u64,
    /// When it was claimed or last renewed, unix seconds.
    pub heartbeat_at: f64,
    /// When it lapses unless renewed, unix seconds.
    pub expires_at: f64,
}

impl Lease {
    /// Whether the lease is still held at `now` (unix seconds).
    pub fn is_live(&self, now: f64) -> bool {
        self.expires_at > now
    }
}

/// The answer to a [`claim`](super::Store::claim).
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The claimant holds the run now, with a new token.
    Won(Lease),
    /// Another owner holds a live lease (shown as it is); nothing was changed.
    Held(Lease),
}

/// One append-only step event: a status change of one attempt of one step.
///
/// A step's output and state delta are recorded in its COMPLETED event, never the whole state again,
/// so a store grows linearly with the work done.
#[derive(Debug, Clone, PartialEq)]
pub struct StepEvent {
    /// The event's position in its run, 1-based and increasing. Assigned by
    /// [`Store::append`](super::Store::append); the value passed in is ignored.
    pub seq: u64,
    /// The step's path: "step", or "parent/child" for a step inside a composite.
    pub step_id: String,
    /// RUNNING, RETRYING, COMPLETED, FAILED, TIMEOUT, SKIPPED, BLOCKED, CANCELLED,
    /// WAITING_APPROVAL, ...: opaque to the store.
    pub status: String,
    /// The attempt number (1 for the first).
    pub attempt: u32,
    /// When the status changed, unix seconds.
    pub at: f64,
    /// How long the attempt ran, in milliseconds.
    pub duration_ms: Option<f64>,
    /// The exception's type name, for a failure.
    pub error_type: Option<String>,
    /// The exception's message, for a failure.
    pub error: Option<String>,
    /// The step's output, as JSON. `Some(Value::Null)` (the step returned nothing) is kept distinct
    /// from `None` (no output recorded).
    pub output: Option<Value>,
    /// The step's change to the run's variables, as JSON.
    pub delta: Option<Value>,
    /// Free-form detail: an approval prompt, metadata, ...
    pub detail: Option<Value>,
}

impl StepEvent {
    /// An event with the given step, status, attempt and time (unix seconds), and nothing else.
    pub fn new(
        step_id: impl Into<String>,
        status: impl Into<String>,
        attempt: u32,
        at: f64,
    ) -> Self {
        Self {
            seq: 0,
            step_id: step_id.into(),
            status: status.into(),
            attempt,
            at,
            duration_ms: None,
            error_type: None,
            error: None,
            output: None,
            delta: None,
            detail: None,
        }
    }
}

/// A request, from outside the run, to stop it at the next step boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// Stop starting steps; the run can be resumed later.
    Pause,
    /// Stop the run for good.
    Cancel,
}

impl Control {
    /// "pause" or "cancel": the text a store writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        }
    }

    /// The control named `text` ("pause" or "cancel", exactly), or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pause" => Some(Control::Pause),
            "cancel" => Some(Control::Cancel),
            _ => None,
        }
    }
}

impl std::fmt::Display for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human decision on an approval step. A step gets at most one.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The approval step's path.
    pub step_id: String,
    /// Approved (the run goes on) or rejected.
    pub approved: bool,
    /// Who decided, if known.
    pub by: Option<String>,
    /// Why, if given.
    pub comment: Option<String>,
    /// When, unix seconds.
    pub at: f64,
}
