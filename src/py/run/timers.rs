//! Backoff timers and deadlines: retries coming due, sync steps abandoned at their timeout,
//! async steps cancelled at theirs.
use super::*;

impl RunInner {
    pub(super) fn schedule_retry(
        self: &Arc<Self>,
        py: Python<'_>,
        step: usize,
        delay: Duration,
        here: Where,
    ) {
        if here == Where::Loop {
            let cb = Callback::new(self, CbKind::Retry(step));
            let r = self.event_loop.call_method1(
                py,
                intern!(py, "call_later"),
                (delay.as_secs_f64(), cb),
            );
            if r.is_ok() {
                return;
            }
        }
        let run = Arc::clone(self);
        let armed = timer::after(delay, move || {
            Python::attach(|py| {
                run.retry_due(py, step, Where::Timer);
            })
        });
        if armed.is_none() {
            // The timer runtime is gone (interpreter exit): retry at once rather than hang.
            self.retry_due(py, step, here);
        }
    }

    pub(super) fn retry_due(self: &Arc<Self>, py: Python<'_>, step: usize, here: Where) {
        {
            let mut st = self.lock(py);
            if let Some(d) = st.sched.start_retry(step) {
                st.retry.immediate.push(d);
            }
        }
        if let Some(d) = self.pump(py, here) {
            self.submit(d);
        }
    }

    /// The timer thread: a sync attempt ran past its timeout. It cannot be interrupted inside the
    /// process, so it is abandoned: its result, whenever it comes, is discarded.
    pub(super) fn sync_deadline(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        {
            let mut st = self.lock(py);
            if !st.sched.is_live(d) {
                return;
            }
            let rec = &mut st.recs[d.step];
            rec.timer = None;
            rec.abandoned = true;
        }
        tracing::warn!(
            "workflow '{}' run {}: sync step '{}' timed out (attempt {}); its call was abandoned \
             and keeps a worker thread until it returns",
            self.workflow_id,
            self.run_id,
            self.plan.steps[d.step].id,
            d.attempt
        );
        let err = self.timeout_error(d, "the sync call was abandoned and may still be running");
        self.record(py, d, Outcome::Error(err, true), Where::Timer);
        self.pump(py, Where::Timer);
    }

    pub(super) fn timeout_error(&self, d: Dispatch, tail: &str) -> PyErr {
        let spec = &self.plan.steps[d.step];
        let secs = spec.timeout.map_or(0.0, |t| t.as_secs_f64());
        StepTimeoutError::new_err(format!(
            "step '{}' timed out after {secs}s (attempt {}); {tail}",
            spec.id, d.attempt
        ))
    }

    /// The loop thread: an async attempt ran past its timeout; cancel its task.
    pub(super) fn async_deadline(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        let task = {
            let mut st = self.lock(py);
            if !st.sched.is_live(d) {
                return;
            }
            let rec = &mut st.recs[d.step];
            rec.timing_out = true;
            rec.timer = None;
            st.tasks
                .live
                .get(&(d.step, d.attempt))
                .map(|t| t.clone_ref(py))
        };
        if let Some(t) = task {
            cancel_and_watch(self, py, t.bind(py), d);
        }
    }
}
