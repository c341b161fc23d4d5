//! A durable run's side of the run driver: restoring checkpointed steps, encoding outputs for
//! the store, the store events of steps that end without an output, and pausing.
use super::*;
use crate::store::StepEvent;

impl RunInner {
    /// Before the first dispatch: every step the journal restores is completed with its stored
    /// output and state delta, and is not run again.
    pub(super) fn restore(&self, py: Python<'_>) -> PyResult<()> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        let mut done = Vec::new();
        let mut guard = self.lock(py);
        let st = &mut *guard;
        for (i, spec) in self.plan.steps.iter().enumerate() {
            let Some((output, delta)) = j.restored(py, &spec.id)? else {
                continue;
            };
            let delta = dict_delta(delta.as_ref().unwrap_or(&output), &self.keys);
            let v: Val = Arc::new(output.unbind());
            st.views
                .record(i, Arc::clone(&spec.id), delta, Arc::clone(&v));
            let meta = PyDict::new(py);
            meta.set_item(intern!(py, "restored"), true)?;
            let rec = &mut st.recs[i];
            rec.output = Some(v);
            rec.extra = Some(meta.unbind());
            done.push(i);
        }
        st.sched.restore(&done);
        Ok(())
    }

    /// The stored form of step `step`'s output (and of a composite's explicit state delta);
    /// `Ok(None)` when the run has no journal.
    pub(super) fn encode(
        &self,
        py: Python<'_>,
        step: usize,
        output: &Bound<'_, PyAny>,
        delta: Option<&Py<PyDict>>,
    ) -> PyResult<Option<(serde_json::Value, Option<serde_json::Value>)>> {
        let Some(j) = &self.journal else {
            return Ok(None);
        };
        let id = &self.plan.steps[step].id;
        let out = j.encode(py, id, output)?;
        let delta = delta
            .map(|d| j.encode(py, id, d.bind(py).as_any()))
            .transpose()?;
        Ok(Some((out, delta)))
    }

    /// Store events for `steps`, which just ended without an output (failed, timed out,
    /// skipped, blocked, cancelled).
    pub(super) fn journal_terminal(&self, st: &RunState, steps: &[usize]) -> Vec<StepEvent> {
        let Some(j) = &self.journal else {
            return Vec::new();
        };
        steps
            .iter()
            .map(|&s| {
                let rec = &st.recs[s];
                let mut e = j.event(
                    &self.plan.steps[s].id,
                    st.sched.state(s).as_str(),
                    st.sched.attempts(s),
                );
                if let Some(err) = &rec.error {
                    e.error_type = Some(err.type_name.clone());
                    e.error = Some(err.message.clone());
                    if let Some(tb) = &err.traceback {
                        e.detail = Some(serde_json::json!({ "traceback": tb }));
                    }
                }
                e.duration_ms = match (rec.first_start, rec.end) {
                    (Some(a), Some(b)) => Some(b.duration_since(a).as_secs_f64() * 1000.0),
                    _ => None,
                };
                e
            })
            .collect()
    }

    /// Pauses the run (seed 001's `pause`): running steps finish, nothing new starts, and the
    /// run ends `paused` once nothing is in flight. Steps waiting to retry end now.
    pub(super) fn pause(self: &Arc<Self>, py: Python<'_>) {
        let timers = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            if st.end.finished || st.end.stop.is_some() {
                return;
            }
            st.retry.immediate.clear();
            let ended = st.sched.pause();
            let now = Instant::now();
            let mut timers = Vec::new();
            for &s in &ended {
                let rec = &mut st.recs[s];
                rec.end = Some(now);
                timers.extend(rec.timer.take());
            }
            self.announce(py, st, Vec::new(), &ended, None);
            timers
        };
        for t in timers {
            t.cancel(py);
        }
        self.flush(py);
        self.pump(py, Where::Loop);
    }
}
