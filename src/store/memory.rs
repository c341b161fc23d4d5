//! The in-process store: the same semantics as the others, in a mutex'd map. It lives as long as the
//! process, so it serves approvals and pause within one process, and tests.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::Value;

use super::{
    Claim, Control, Decision, Lease, LeaseOwner, ListedRun, RunRecord, StepEvent, Store, StoreError,
};

/// A [`Store`] in memory (`memory://`): nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, RunState>,
    /// Creation order, so runs created in the same instant list newest first, as in SQLite.
    created: u64,
    cache: HashMap<String, (Value, f64)>,
    workflows: HashMap<String, Value>,
}

#[derive(Debug)]
struct RunState {
    record: RunRecord,
    order: u64,
    events: Vec<StepEvent>,
    control: Option<Control>,
    decisions: Vec<Decision>,
    /// The last fencing token given out (0: never claimed); `record.lease` is the held lease.
    token: u64,
}

impl RunState {
    /// `Ok` when `token` is the run's current, held lease.
    fn check_fence(&self, token: u64) -> Result<(), StoreError> {
        match &self.record.lease {
            Some(lease) if lease.token == token => Ok(()),
            _ => Err(StoreError::LeaseLost {
                run_id: self.record.run_id.clone(),
                token,
                current: self.token,
            }),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    fn run(&self, run_id: &str) -> Result<&RunState, StoreError> {
        self.runs
            .get(run_id)
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_string()))
    }

    fn run_mut(&mut self, run_id: &str) -> Result<&mut RunState, StoreError> {
        self.runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::RunNotFound(run_id.to_string()))
    }
}

impl Store for MemoryStore {
    fn url(&self) -> &str {
        "memory://"
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if inner.runs.contains_key(&run.run_id) {
            return Err(StoreError::RunExists(run.run_id.clone()));
        }
        inner.created += 1;
        let state = RunState {
            record: RunRecord {
                lease: None,
                ..run.clone()
            },
            order: inner.created,
            events: Vec::new(),
            control: None,
            decisions: Vec::new(),
            token: 0,
        };
        inner.runs.insert(run.run_id.clone(), state);
        Ok(())
    }

    fn get_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        Ok(self.inner.lock().run(run_id)?.record.clone())
    }

    fn finish_status(
        &self,
        run_id: &str,
        status: &str,
        at: f64,
        error: Option<&str>,
        result: Option<&Value>,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        set_status(inner.run_mut(run_id)?, status, at, error, result);
        Ok(())
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
        let mut inner = self.inner.lock();
        let run = inner.run_mut(run_id)?;
        run.check_fence(token)?;
        set_status(run, status, at, error, result);
        Ok(())
    }

    fn claim(
        &self,
        run_id: &str,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
        take_over: Option<u64>,
    ) -> Result<Claim, StoreError> {
        let mut inner = self.inner.lock();
        let run = inner.run_mut(run_id)?;
        if let Some(lease) = &run.record.lease {
            if lease.is_live(now) && take_over != Some(lease.token) {
                return Ok(Claim::Held(lease.clone()));
            }
        }
        run.token += 1;
        let lease = Lease {
            owner: owner.clone(),
            token: run.token,
            heartbeat_at: now,
            expires_at: now + ttl,
        };
        run.record.lease = Some(lease.clone());
        Ok(Claim::Won(lease))
    }

    fn renew(&self, run_id: &str, token: u64, now: f64, ttl: f64) -> Result<Lease, StoreError> {
        let mut inner = self.inner.lock();
        let run = inner.run_mut(run_id)?;
        run.check_fence(token)?;
        let lease = run
            .record
            .lease
            .as_mut()
            .expect("checked: the lease is held");
        lease.heartbeat_at = now;
        lease.expires_at = now + ttl;
        Ok(lease.clone())
    }

    fn release(&self, run_id: &str, token: u64) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let run = inner.run_mut(run_id)?;
        if run.check_fence(token).is_err() {
            return Ok(false);
        }
        run.record.lease = None;
        Ok(true)
    }

    fn list_runs(
        &self,
        status: Option<&str>,
        workflow_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedRun>, StoreError> {
        let inner = self.inner.lock();
        let mut runs: Vec<&RunState> = inner
            .runs
            .values()
            .filter(|run| status.is_none_or(|s| run.record.status == s))
            .filter(|run| workflow_id.is_none_or(|w| run.record.workflow_id == w))
            .collect();
        runs.sort_by(|a, b| {
            b.record
                .created_at
                .total_cmp(&a.record.created_at)
                .then(b.order.cmp(&a.order))
        });
        Ok(runs
            .into_iter()
            .take(limit)
            .map(|run| Ok(run.record.clone()))
            .collect())
    }

    fn append(&self, run_id: &str, events: &[StepEvent]) -> Result<Vec<u64>, StoreError> {
        let mut inner = self.inner.lock();
        Ok(push_events(inner.run_mut(run_id)?, events))
    }

    fn append_fenced(
        &self,
        run_id: &str,
        events: &[StepEvent],
        token: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut inner = self.inner.lock();
        let run = inner.run_mut(run_id)?;
        run.check_fence(token)?;
        Ok(push_events(run, events))
    }

    fn events(&self, run_id: &str, after: u64) -> Result<Vec<StepEvent>, StoreError> {
        let inner = self.inner.lock();
        let history = &inner.run(run_id)?.events;
        // seq n is at index n - 1, so the events after `after` start at index `after`.
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(history.len());
        Ok(history[start..].to_vec())
    }

    fn set_control(&self, run_id: &str, control: Option<Control>) -> Result<(), StoreError> {
        self.inner.lock().run_mut(run_id)?.control = control;
        Ok(())
    }

    fn control(&self, run_id: &str) -> Result<Option<Control>, StoreError> {
        Ok(self.inner.lock().run(run_id)?.control)
    }

    fn decide(&self, run_id: &str, decision: &Decision) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let decisions = &mut inner.run_mut(run_id)?.decisions;
        if decisions.iter().any(|d| d.step_id == decision.step_id) {
            return Err(StoreError::AlreadyDecided {
                run_id: run_id.to_string(),
                step_id: decision.step_id.clone(),
            });
        }
        decisions.push(decision.clone());
        Ok(())
    }

    fn decisions(&self, run_id: &str) -> Result<Vec<Decision>, StoreError> {
        let mut decisions = self.inner.lock().run(run_id)?.decisions.clone();
        sort_decisions(&mut decisions);
        Ok(decisions)
    }

    fn cache_get(&self, key: &str, now: f64) -> Result<Option<Value>, StoreError> {
        let inner = self.inner.lock();
        Ok(match inner.cache.get(key) {
            Some((value, expires_at)) if *expires_at > now => Some(value.clone()),
            _ => None,
        })
    }

    fn cache_put(&self, key: &str, value: &Value, expires_at: f64) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        inner
            .cache
            .insert(key.to_string(), (value.clone(), expires_at));
        Ok(())
    }

    fn create_run_claimed(
        &self,
        run: &RunRecord,
        owner: &LeaseOwner,
        now: f64,
        ttl: f64,
    ) -> Result<Claim, StoreError> {
        // Under one lock: no other claim can come between the two.
        let mut inner = self.inner.lock();
        if inner.runs.contains_key(&run.run_id) {
            return Err(StoreError::RunExists(run.run_id.clone()));
        }
        inner.created += 1;
        let lease = Lease {
            owner: owner.clone(),
            token: 1,
            heartbeat_at: now,
            expires_at: now + ttl,
        };
        let state = RunState {
            record: RunRecord {
                lease: Some(lease.clone()),
                ..run.clone()
            },
            order: inner.created,
            events: Vec::new(),
            control: None,
            decisions: Vec::new(),
            token: 1,
        };
        inner.runs.insert(run.run_id.clone(), state);
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
        let mut inner = self.inner.lock();
        let run = inner.run_mut(run_id)?;
        run.check_fence(token)?;
        push_events(run, events);
        set_status(run, status, at, error, result);
        if clear_control {
            run.control = None;
        }
        run.record.lease = None;
        Ok(true)
    }

    fn put_workflow(&self, workflow_id: &str, definition: &Value) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        inner
            .workflows
            .insert(workflow_id.to_string(), definition.clone());
        Ok(())
    }

    fn get_workflow(&self, workflow_id: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.inner.lock().workflows.get(workflow_id).cloned())
    }
}

fn set_status(
    run: &mut RunState,
    status: &str,
    at: f64,
    error: Option<&str>,
    result: Option<&Value>,
) {
    let record = &mut run.record;
    record.status = status.to_string();
    record.updated_at = at;
    if let Some(error) = error {
        record.error = Some(error.to_string());
    }
    if let Some(result) = result {
        record.result = Some(result.clone());
    }
}

fn push_events(run: &mut RunState, events: &[StepEvent]) -> Vec<u64> {
    let history = &mut run.events;
    let first = history.len() as u64 + 1;
    history.extend(events.iter().zip(first..).map(|(event, seq)| StepEvent {
        seq,
        ..event.clone()
    }));
    (first..first + events.len() as u64).collect()
}

/// The order every backend returns decisions in: by time, then by step id.
pub(super) fn sort_decisions(decisions: &mut [Decision]) {
    decisions.sort_by(|a, b| {
        a.at.total_cmp(&b.at)
            .then_with(|| a.step_id.cmp(&b.step_id))
    });
}
