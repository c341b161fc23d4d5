//! How runs, events, decisions and cache entries are written as Redis values, and read back.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::store::rows::RunFields;
use crate::store::{Decision, RunRecord, StepEvent, StoreError};

/// An f64 as Redis and Lua read it back exactly (Rust's shortest round-trip form).
pub(super) fn seconds(value: f64) -> String {
    value.to_string()
}

/// The run from its hash's fields; a missing or malformed field is `Corrupt`.
pub(super) fn decode_run(
    run_id: &str,
    mut fields: HashMap<String, String>,
) -> Result<RunRecord, StoreError> {
    let what = || format!("run '{run_id}'");
    let mut take = |name: &str| {
        fields
            .remove(name)
            .ok_or_else(|| StoreError::corrupt(what(), format_args!("missing field '{name}'")))
    };
    let time = |name: &str, text: String| {
        text.parse::<f64>().map_err(|_| {
            StoreError::corrupt(
                what(),
                format_args!("field '{name}' is not a number: '{text}'"),
            )
        })
    };
    let workflow_id = take("workflow_id")?;
    let name = take("name")?;
    let version = take("version")?;
    let status = take("status")?;
    let created_at = time("created_at", take("created_at")?)?;
    let updated_at = time("updated_at", take("updated_at")?)?;
    let input = take("input")?;
    let owner = fields.remove("lease_owner");
    let mut number = |name: &str| time(name, fields.remove(name).unwrap_or_default());
    // The lease's numbers are read only when an owner holds it.
    let (lease_token, lease_heartbeat, lease_expires) = match owner {
        None => (0, None, None),
        Some(_) => (
            number("lease_token")? as u64,
            Some(number("lease_heartbeat")?),
            Some(number("lease_expires")?),
        ),
    };
    RunFields {
        workflow_id,
        name,
        version,
        status,
        created_at,
        updated_at,
        input,
        error: fields.remove("error"),
        result: fields.remove("result"),
        lease_token,
        lease_owner: owner,
        lease_heartbeat,
        lease_expires,
    }
    .decode(run_id.to_string())
}

/// An event as stored: its seq is its position in the list. A present `null` (a step that returned
/// nothing) stays `Some(Value::Null)`; an absent field is `None`.
#[derive(Deserialize)]
struct EventJson {
    step_id: String,
    status: String,
    attempt: u32,
    at: f64,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, deserialize_with = "present")]
    output: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    delta: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    detail: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// [`EventJson`]'s layout, borrowed, to write without copying outputs.
#[derive(Serialize)]
struct EventJsonRef<'a> {
    step_id: &'a str,
    status: &'a str,
    attempt: u32,
    at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a Value>,
}

pub(super) fn encode_event(event: &StepEvent) -> String {
    let json = EventJsonRef {
        step_id: &event.step_id,
        status: &event.status,
        attempt: event.attempt,
        at: event.at,
        duration_ms: event.duration_ms,
        error_type: event.error_type.as_deref(),
        error: event.error.as_deref(),
        output: event.output.as_ref(),
        delta: event.delta.as_ref(),
        detail: event.detail.as_ref(),
    };
    // Cannot fail: string keys, and serde_json writes a non-finite f64 as null.
    serde_json::to_string(&json).expect("an event serializes")
}

pub(super) fn decode_event(run_id: &str, seq: u64, text: &str) -> Result<StepEvent, StoreError> {
    let json: EventJson = serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format!("run '{run_id}' event {seq}"), e))?;
    Ok(StepEvent {
        seq,
        step_id: json.step_id,
        status: json.status,
        attempt: json.attempt,
        at: json.at,
        duration_ms: json.duration_ms,
        error_type: json.error_type,
        error: json.error,
        output: json.output,
        delta: json.delta,
        detail: json.detail,
    })
}

/// A decision as stored, under its step id in the run's decision hash.
#[derive(Serialize, Deserialize)]
struct DecisionJson {
    approved: bool,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    at: f64,
}

pub(super) fn encode_decision(decision: &Decision) -> String {
    let json = DecisionJson {
        approved: decision.approved,
        by: decision.by.clone(),
        comment: decision.comment.clone(),
        at: decision.at,
    };
    serde_json::to_string(&json).expect("a decision serializes")
}

pub(super) fn decode_decision(
    run_id: &str,
    step_id: String,
    text: &str,
) -> Result<Decision, StoreError> {
    let json: DecisionJson = serde_json::from_str(text).map_err(|e| {
        StoreError::corrupt(format!("run '{run_id}' decision on step '{step_id}'"), e)
    })?;
    Ok(Decision {
        step_id,
        approved: json.approved,
        by: json.by,
        comment: json.comment,
        at: json.at,
    })
}

/// A cache entry as stored. The caller's clock decides when it has expired, not Redis's: the key's
/// own expiry only frees the memory.
#[derive(Serialize, Deserialize)]
struct CacheJson {
    /// `None` for never (JSON has no infinity).
    expires_at: Option<f64>,
    value: Value,
}

/// The stored entry for `value`, expiring at `expires_at` (`f64::INFINITY`: never).
pub(super) fn encode_cache(value: &Value, expires_at: f64) -> String {
    let never = expires_at == f64::INFINITY;
    let json = CacheJson {
        expires_at: (!never).then_some(expires_at),
        value: value.clone(),
    };
    serde_json::to_string(&json).expect("a cache entry serializes")
}

/// The entry's value, or `None` once it has expired (`expires_at <= now`).
pub(super) fn decode_cache(key: &str, text: &str, now: f64) -> Result<Option<Value>, StoreError> {
    let json: CacheJson = serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format!("cache entry '{key}'"), e))?;
    Ok(match json.expires_at {
        Some(expires_at) if expires_at <= now => None,
        _ => Some(json.value),
    })
}

/// The run's hash, as field/value pairs.
pub(super) fn encode_run(run: &RunRecord) -> Vec<String> {
    let mut fields = Vec::with_capacity(20);
    let mut field = |name: &str, value: String| fields.extend([name.to_string(), value]);
    field("run_id", run.run_id.clone());
    field("workflow_id", run.workflow_id.clone());
    field("name", run.name.clone());
    field("version", run.version.clone());
    field("status", run.status.clone());
    field("created_at", seconds(run.created_at));
    field("updated_at", seconds(run.updated_at));
    field("input", run.input.to_string());
    if let Some(error) = &run.error {
        field("error", error.clone());
    }
    if let Some(result) = &run.result {
        field("result", result.to_string());
    }
    fields
}
