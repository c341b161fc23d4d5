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
            self.submit(py, d);
        }
    }

    /// The timer thread: a sync attempt ran past its timeout. A call still queued for a worker
    /// never starts. A running call cannot be interrupted inside the process, so it is
    /// abandoned: its result, whenever it comes, is discarded, and its thread stops counting
    /// against the pool's cap (see `threads::pool`).
    pub(super) fn sync_deadline(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        let call = {
            let mut st = self.lock(py);
            if !st.sched.is_live(d) {
                return;
            }
            let rec = &mut st.recs[d.step];
            rec.timer = None;
            let call = rec.call.take();
            rec.abandoned = call.is_some();
            call
        };
        let err = match call {
            None => {
                tracing::warn!(
                    "workflow '{}' run {}: sync step '{}' timed out (attempt {}) waiting for a \
                     worker thread; it never started",
                    self.workflow_id,
                    self.run_id,
                    self.plan.steps[d.step].id,
                    d.attempt
                );
                self.timeout_error(
                    d,
                    "it was still waiting for a worker thread and never started",
                )
            }
            Some(call) => {
                let (running, total) = job::abandon(&call).unwrap_or_else(job::abandoned_calls);
                tracing::warn!(
                    "workflow '{}' run {}: sync step '{}' timed out (attempt {}); its call was \
                     abandoned and keeps a worker thread until it returns ({running} abandoned \
                     calls still running in this process, {total} since it started)",
                    self.workflow_id,
                    self.run_id,
                    self.plan.steps[d.step].id,
                    d.attempt
                );
                self.timeout_error(d, "the sync call was abandoned and may still be running")
            }
        };
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
