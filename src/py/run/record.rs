//! Recording an attempt's outcome (success, skip, retry or failure) and settling a run
//! early under its failure policy.
use super::*;
use crate::py::errors::store_error;

/// An attempt's outcome, prepared before the run's lock is taken.
pub(super) enum Prep {
    Value(Val, Vec<(Arc<str>, Val)>),
    Skip,
    Error(StepError, Retryability, bool),
}

impl RunInner {
    /// The failure `exc` of `spec`'s attempt, classified for retry.
    fn error_prep(
        &self,
        spec: &crate::py::plan::StepSpec,
        exc: &Bound<'_, pyo3::exceptions::PyBaseException>,
        is_timeout: bool,
    ) -> Prep {
        let verdict = classify(&facts(
            exc.as_any(),
            spec.retry_on.as_ref(),
            spec.non_retryable.as_ref(),
        ));
        // A step that raises StepTimeoutError (a nested run's step timed out) timed out.
        let is_timeout = is_timeout || exc.is_instance_of::<StepTimeoutError>();
        Prep::Error(StepError::from_exc(exc.as_any()), verdict, is_timeout)
    }

    /// Records an attempt's outcome: success, skip, retry (now or after a backoff) or failure.
    pub(super) fn record(
        self: &Arc<Self>,
        py: Python<'_>,
        d: Dispatch,
        outcome: Outcome,
        here: Where,
    ) {
        self.release_held(py, d);
        let spec = &self.plan.steps[d.step];
        let mut nested = None;
        // A durable run stores the output as JSON before anything else sees it; an output
        // that cannot be stored fails the step (never retried: it would fail the same way).
        let mut stored = None;
        let mut prep = match outcome {
            Outcome::Value(v) => match v.bind(py).cast::<Nested>() {
                Ok(n) => {
                    let n = n.get();
                    nested = Some(nested_parts(py, n));
                    if n.skipped {
                        Prep::Skip
                    } else {
                        let delta = match &n.delta {
                            Some(delta) => dict_delta(delta.bind(py).as_any()),
                            None => dict_delta(n.output.bind(py)),
                        };
                        let output = n.output.clone_ref(py);
                        match self.encode(py, d.step, output.bind(py), n.delta.as_ref()) {
                            Ok(enc) => {
                                stored = enc;
                                Prep::Value(Arc::new(output), delta)
                            }
                            Err(e) => self.error_prep(spec, e.into_value(py).bind(py), false),
                        }
                    }
                }
                Err(_) => match self.encode(py, d.step, v.bind(py), None) {
                    Ok(enc) => {
                        stored = enc;
                        let delta = dict_delta(v.bind(py));
                        Prep::Value(Arc::new(v), delta)
                    }
                    Err(e) => self.error_prep(spec, e.into_value(py).bind(py), false),
                },
            },
            Outcome::Skipped => Prep::Skip,
            Outcome::Error(err, is_timeout) => {
                let exc = err.value(py);
                if let Ok(n) = exc.getattr(intern!(py, "_batten_nested")) {
                    if let Ok(n) = n.cast::<Nested>() {
                        nested = Some(nested_parts(py, n.get()));
                        // Consumed: the same exception object raised again later by another
                        // step (a shared failed future) must not inherit these results.
                        let _ = exc.delattr(intern!(py, "_batten_nested"));
                    }
                }
                self.error_prep(spec, exc, is_timeout)
            }
        };
        let mut retry_after = None;
        let mut settled = false;
        let old_timer = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            if !st.sched.is_live(d) {
                return;
            }
            let now = Instant::now();
            let mut journal_events = Vec::new();
            if let (Some(j), Prep::Value(..), Some((output, delta))) =
                (&self.journal, &prep, stored.take())
            {
                // Checkpointed before the step counts as done, so no dependent starts first.
                let mut e = j.event(&spec.id, "completed", d.attempt);
                e.output = Some(output);
                e.delta = delta;
                e.duration_ms = st.recs[d.step]
                    .first_start
                    .map(|t| now.duration_since(t).as_secs_f64() * 1000.0);
                if let Err(err) = j.write(py, vec![e]) {
                    prep = self.error_prep(spec, store_error(err).value(py), false);
                }
            }
            let awaiting_approval =
                matches!(&prep, Prep::Error(e, ..) if e.type_name == "ApprovalPending");
            let failed = match &prep {
                Prep::Value(..) => Some(false),
                Prep::Skip => None,
                // A breaker's own refusal and a cancellation say nothing about the callee.
                Prep::Error(e, ..) => {
                    Some(e.type_name != "CircuitOpenError" && e.type_name != "CancelledError")
                }
            };
            let usage = match (&prep, &nested) {
                (Prep::Value(..), Some(n)) => traffic::reported_tokens(py, n.metadata.as_ref()),
                _ => None,
            };
            self.report_traffic(py, st, d, failed, usage);
            let rec = &mut st.recs[d.step];
            let timer = rec.timer.take();
            if let Some(n) = nested {
                rec.children = n.children;
                rec.extra = n.metadata;
                rec.attempts = n.attempts;
            }
            let mut finished = Vec::new();
            match prep {
                Prep::Value(v, delta) => {
                    rec.output = Some(Arc::clone(&v));
                    rec.error = None;
                    rec.end = Some(now);
                    st.views.record(d.step, Arc::clone(&spec.id), delta, v);
                    st.sched.succeed(d.step);
                    finished.push(d.step);
                }
                Prep::Skip => {
                    rec.end = Some(now);
                    st.sched.skip(d.step);
                    finished.push(d.step);
                }
                Prep::Error(e, verdict, is_timeout) => {
                    let budget_left = self
                        .plan
                        .max_total_retries
                        .is_none_or(|max| st.retries_used < max);
                    if st.stop.is_none()
                        && budget_left
                        && should_retry(&spec.policy, d.attempt, &verdict)
                    {
                        let min_delay = match verdict {
                            Retryability::Retry { min_delay } => min_delay,
                            Retryability::Never { .. } => None,
                        };
                        let delay = spec.policy.delay(d.attempt, &mut st.rng, min_delay);
                        st.retries_used += 1;
                        if self.on_event.is_some() {
                            st.events.push(Event {
                                kind: "retrying",
                                step: d.step,
                                attempt: d.attempt,
                                payload: (delay.as_secs_f64(), e.exception.clone_ref(py))
                                    .into_pyobject(py)
                                    .map_or_else(|_| py.None(), |t| t.into_any().unbind()),
                            });
                        }
                        if let Some(j) = &self.journal {
                            let mut ev = j.event(&spec.id, "retrying", d.attempt);
                            ev.error_type = Some(e.type_name.clone());
                            ev.error = Some(e.message.clone());
                            ev.detail = Some(serde_json::json!({ "delay_s": delay.as_secs_f64() }));
                            journal_events.push(ev);
                        }
                        rec.error = Some(e);
                        st.sched.retrying(d.step);
                        if delay.is_zero() {
                            if let Some(next) = st.sched.start_retry(d.step) {
                                st.immediate.push(next);
                            }
                        } else {
                            retry_after = Some(delay);
                        }
                    } else {
                        rec.error = Some(e);
                        rec.end = Some(now);
                        let state = if is_timeout {
                            StepState::Timeout
                        } else {
                            StepState::Failed
                        };
                        finished.push(d.step);
                        finished.extend(st.sched.fail(d.step, state));
                    }
                }
            }
            if let Some(&s) = finished.first() {
                // A human approval still waiting (batten.approval) is not a failure that ends
                // its siblings: parallel branches must all reach their approvals.
                if st.sched.settles(st.sched.state(s)) && !awaiting_approval {
                    // The run's policy is met (fail_fast's first failure, wait_for_all=False's
                    // first success): end every other step now; `settle_tasks` stops their work.
                    settled = true;
                    let why = format!(
                        "step '{}' {} and the run's failure policy ends the others",
                        spec.id,
                        st.sched.state(s).as_str()
                    );
                    let err = cancelled_error(py)
                        .and_then(|c| c.call1((why,)))
                        .unwrap_or_else(|e| e.into_value(py).into_bound(py).into_any());
                    let before = st.sched.completion_order().len();
                    st.sched.settle();
                    for i in before..st.sched.completion_order().len() {
                        let other = st.sched.completion_order()[i];
                        let rec = &mut st.recs[other];
                        rec.end = Some(now);
                        rec.error = Some(StepError::from_exc(&err));
                        finished.push(other);
                    }
                }
            }
            if self.journal.is_some() {
                let done = (st.sched.state(d.step) == StepState::Completed).then_some(d.step);
                let ended: Vec<usize> = finished
                    .iter()
                    .copied()
                    .filter(|&s| Some(s) != done)
                    .collect();
                journal_events.extend(self.journal_terminal(st, &ended));
                if let Some(j) = &self.journal {
                    j.write_lazy(journal_events);
                }
            }
            if self.on_event.is_some() {
                for s in finished {
                    if let Some(e) = self.terminal_event(py, st, s) {
                        st.events.push(e);
                    }
                }
            }
            timer
        };
        if let Some(t) = old_timer {
            t.cancel(py);
        }
        self.flush(py);
        if settled {
            if here == Where::Loop {
                self.settle_tasks(py);
            } else {
                self.call_soon_threadsafe(py, CbKind::Settle);
            }
        }
        if let Some(delay) = retry_after {
            self.schedule_retry(py, d.step, delay, here);
        }
    }

    /// The loop thread, after the run settled early: cancel the work of the steps it ended.
    pub(super) fn settle_tasks(self: &Arc<Self>, py: Python<'_>) {
        let (tasks, timers) = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            let tasks: Vec<_> = st
                .tasks
                .iter()
                .filter(|(&(step, attempt), _)| !st.sched.is_live(Dispatch { step, attempt }))
                .map(|(&(step, attempt), t)| (Dispatch { step, attempt }, t.clone_ref(py)))
                .collect();
            let timers: Vec<_> = (0..st.recs.len())
                .filter(|&s| st.sched.state(s).is_terminal())
                .filter_map(|s| st.recs[s].timer.take())
                .collect();
            (tasks, timers)
        };
        for t in timers {
            t.cancel(py);
        }
        for (d, t) in tasks {
            cancel_and_watch(self, py, t.bind(py), d);
        }
        self.pump(py, Where::Loop);
    }
}
