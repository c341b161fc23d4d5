//! Engine events: recorded under the run's lock, handed to the subscriber in order.
use super::*;

/// One engine event for the run's `on_event` subscriber: `(kind, step, attempt, payload)`.
/// `payload` is the step's context for "started", `(delay_seconds, exception)` for
/// "retrying", `(key, from, to)` for "circuit", `(seconds, kind, name)` for "waited" (just
/// before the "started" of an attempt that was held back; see `traffic::waited_events`), and
/// the `StepResult` for the terminal kinds.
pub(super) struct Event {
    pub(super) kind: &'static str,
    pub(super) step: usize,
    pub(super) attempt: u32,
    pub(super) payload: Py<PyAny>,
}

impl RunInner {
    /// The terminal event of step `s` with its `StepResult`.
    pub(super) fn terminal_event(&self, py: Python<'_>, st: &RunState, s: usize) -> Option<Event> {
        let state = st.sched.state(s);
        Some(Event {
            kind: state.as_str(),
            step: s,
            attempt: st.sched.attempts(s),
            payload: Py::new(py, self.step_result(py, st, s).ok()?)
                .ok()?
                .into_any(),
        })
    }

    /// Hands the recorded events to the run's `on_event` subscriber, outside the run's lock
    /// and in the order they were recorded, whichever thread recorded them.
    pub(super) fn flush(&self, py: Python<'_>) {
        let Some(cb) = &self.on_event else { return };
        let me = std::thread::current().id();
        if *self.flushing.lock() == Some(me) {
            return; // re-entered from the subscriber: the running flush drains these too
        }
        let _emitting = match self.emit_lock.try_lock() {
            Some(g) => g,
            None => py.detach(|| self.emit_lock.lock()),
        };
        *self.flushing.lock() = Some(me);
        loop {
            let events = std::mem::take(&mut self.lock(py).events);
            if events.is_empty() {
                break;
            }
            for e in events {
                let id = &self.plan.steps[e.step].id;
                if let Err(err) = cb.call1(py, (e.kind, &**id, e.attempt, e.payload)) {
                    tracing::error!(
                        "workflow '{}' run {}: the event subscriber raised: {err}",
                        self.workflow_id,
                        self.run_id
                    );
                }
            }
        }
        *self.flushing.lock() = None;
    }
}
