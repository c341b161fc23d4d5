//! Recording an attempt's outcome, in five steps: `prepare` it before the lock (decode a
//! composite's `Nested` or `CompositeFailure`, encode the output for the store, classify an
//! error); then under the run's lock `checkpoint` a completed step, apply the `transition`
//! (success, skip, retry now or after a backoff, failure), `settle` the run early under its
//! failure policy, and `announce` the steps that ended (store events and `on_event` events,
//! shared with `stop` and `pause`). Timers are cancelled, events flushed and retries armed after
//! the lock is released.
use super::*;
use crate::py::errors::store_error;
use crate::py::results::CompositeFailure;
use crate::store::StepEvent;

/// An attempt's outcome, prepared before the run's lock is taken.
pub(super) enum Prep {
    Value(Val, crate::engine::state::Delta<Val>),
    Skip,
    /// The error, its retry verdict, and whether the step timed out.
    Error(StepError, Retryability, bool),
}

/// A prepared outcome with what a composite step reported and the output's stored form.
struct Prepared {
    prep: Prep,
    nested: Option<NestedParts>,
    /// The output (and explicit state delta) as the store keeps them; `None` without a journal.
    stored: Option<(serde_json::Value, Option<serde_json::Value>)>,
}

/// What applying an outcome changed, for `settle`, `announce` and the work after the lock.
struct Transition {
    /// Steps that ended: the attempt's step first (if it ended), then the steps it blocked.
    /// Inline for the usual one or two (`smallvec`): no allocation on a chain's step.
    finished: smallvec::SmallVec<[usize; 2]>,
    /// Retry the step after this backoff.
    retry_after: Option<Duration>,
    /// The attempt's deadline timer, to cancel once the lock is released.
    timer: Option<Timer>,
    /// Store events recorded before the terminal ones (a retry).
    store_events: Vec<StepEvent>,
    /// The step waits for a human approval (see `ErrorKind::ApprovalPending`).
    awaiting_approval: bool,
}

impl RunInner {
    /// The failure `exc` of `spec`'s attempt, classified for retry.
    fn error_prep(
        &self,
        spec: &crate::py::plan::StepSpec,
        attempt: u32,
        exc: &Bound<'_, PyAny>,
        is_timeout: bool,
    ) -> Prep {
        let verdict = classify(&facts(
            exc,
            spec.retry_on.as_ref(),
            spec.non_retryable.as_ref(),
        ));
        // The traceback text is for the failure that ends the step: formatting it costs
        // ~30 µs (traceback.format_exception reads source lines), 5x a retried attempt's whole
        // cost on W4 (2 failures per step), so an attempt its policy will retry gets none. (A
        // retry the run-wide budget or a stopping run then refuses ends without it.)
        let err = if should_retry(&spec.policy, attempt, &verdict) {
            StepError::from_exc(exc)
        } else {
            StepError::from_failure(exc)
        };
        // A step that raises StepTimeoutError (a nested run's step timed out) timed out.
        let is_timeout = is_timeout || err.kind == ErrorKind::Timeout;
        Prep::Error(err, verdict, is_timeout)
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
        let Prepared {
            mut prep,
            nested,
            stored,
        } = self.prepare(py, d, outcome);
        let (t, settled) = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            if !st.sched.is_live(d) {
                return;
            }
            let now = Instant::now();
            if let Some(stored) = stored {
                self.checkpoint(py, st, d, &mut prep, stored, now);
            }
            let mut t = self.transition(py, st, d, prep, nested, now);
            let settled = !t.awaiting_approval && self.settle(py, st, d, &mut t.finished, now);
            let checkpointed = (st.sched.state(d.step) == StepState::Completed).then_some(d.step);
            let store_events = std::mem::take(&mut t.store_events);
            self.announce(py, st, store_events, &t.finished, checkpointed);
            (t, settled)
        };
        if let Some(timer) = t.timer {
            timer.cancel(py);
        }
        self.flush(py);
        if settled {
            if here == Where::Loop {
                self.settle_tasks(py);
            } else {
                self.call_soon_threadsafe(py, CbKind::Settle);
            }
        }
        if let Some(delay) = t.retry_after {
            self.schedule_retry(py, d.step, delay, here);
        }
    }

    /// Before the lock: a composite's `Nested` (or the `CompositeFailure` it raised) is split
    /// into the step's own outcome and its nested results; a durable run encodes the output for
    /// the store before anything else sees it, and an output that cannot be stored fails the
    /// step (never retried: it would fail the same way).
    fn prepare(&self, py: Python<'_>, d: Dispatch, outcome: Outcome) -> Prepared {
        let spec = &self.plan.steps[d.step];
        let mut nested = None;
        let mut stored = None;
        let mut value = |output: Py<PyAny>, delta: Option<&Py<PyDict>>| {
            let delta_items = match delta {
                Some(delta) => dict_delta(delta.bind(py).as_any(), &self.keys),
                None => dict_delta(output.bind(py), &self.keys),
            };
            match self.encode(py, d.step, output.bind(py), delta) {
                Ok(enc) => {
                    stored = enc;
                    Prep::Value(Arc::new(output), delta_items)
                }
                Err(e) => {
                    self.error_prep(spec, d.attempt, e.into_value(py).bind(py).as_any(), false)
                }
            }
        };
        let prep = match outcome {
            Outcome::Value(v) => match v.bind(py).cast::<Nested>() {
                Ok(n) => {
                    let n = n.get();
                    nested = Some(nested_parts(py, n));
                    if n.skipped {
                        Prep::Skip
                    } else {
                        value(n.output.clone_ref(py), n.delta.as_ref())
                    }
                }
                Err(_) => value(v, None),
            },
            Outcome::Skipped => Prep::Skip,
            Outcome::Error(err, is_timeout) => {
                // `into_value` sets the exception's `__traceback__` (on 3.11 a raised PyErr keeps
                // it apart), which the failure's traceback text is formatted from.
                let exc = err.into_value(py).into_bound(py).into_any();
                let exc = &exc;
                match exc.cast::<CompositeFailure>() {
                    Ok(f) => {
                        let f = f.get();
                        nested = Some(nested_parts(py, f.nested.get()));
                        self.error_prep(spec, d.attempt, f.error.bind(py), is_timeout)
                    }
                    Err(_) => self.error_prep(spec, d.attempt, exc, is_timeout),
                }
            }
        };
        Prepared {
            prep,
            nested,
            stored,
        }
    }

    /// Under the lock: a completed step's output is checkpointed before the step counts as
    /// done, so no dependent starts first. A failed write fails the step.
    fn checkpoint(
        &self,
        py: Python<'_>,
        st: &RunState,
        d: Dispatch,
        prep: &mut Prep,
        (output, delta): (serde_json::Value, Option<serde_json::Value>),
        now: Instant,
    ) {
        let (Some(j), Prep::Value(..)) = (&self.journal, &*prep) else {
            return;
        };
        let spec = &self.plan.steps[d.step];
        let mut e = j.event(&spec.id, "completed", d.attempt);
        e.output = Some(output);
        e.delta = delta;
        e.duration_ms = st.recs[d.step]
            .first_start
            .map(|t| now.duration_since(t).as_secs_f64() * 1000.0);
        if let Err(err) = j.write(py, vec![e]) {
            *prep = self.error_prep(spec, d.attempt, store_error(err).value(py).as_any(), false);
        }
    }

    /// Under the lock: the outcome's effect on the step, its breakers and the scheduler.
    fn transition(
        &self,
        py: Python<'_>,
        st: &mut RunState,
        d: Dispatch,
        prep: Prep,
        nested: Option<NestedParts>,
        now: Instant,
    ) -> Transition {
        let spec = &self.plan.steps[d.step];
        let mut t = Transition {
            finished: smallvec::SmallVec::new(),
            retry_after: None,
            timer: None,
            store_events: Vec::new(),
            awaiting_approval: matches!(
                &prep,
                Prep::Error(e, ..) if e.kind == ErrorKind::ApprovalPending
            ),
        };
        let failed = match &prep {
            Prep::Value(..) => Some(false),
            Prep::Skip => None,
            // A breaker's own refusal and a cancellation say nothing about the callee.
            Prep::Error(e, ..) => Some(e.kind.counts_against_breaker()),
        };
        let usage = match (&prep, &nested) {
            (Prep::Value(..), Some(n)) => traffic::reported_tokens(py, n.metadata.as_ref()),
            _ => None,
        };
        self.report_traffic(py, st, d, failed, usage);
        let rec = &mut st.recs[d.step];
        t.timer = rec.timer.take();
        if let Some(n) = nested {
            rec.children = n.children;
            rec.extra = n.metadata;
            rec.attempts = n.attempts;
        }
        match prep {
            Prep::Value(v, delta) => {
                rec.output = Some(Arc::clone(&v));
                rec.error = None;
                rec.end = Some(now);
                st.views.record(d.step, Arc::clone(&spec.id), delta, v);
                st.sched.succeed(d.step);
                t.finished.push(d.step);
            }
            Prep::Skip => {
                rec.end = Some(now);
                st.sched.skip(d.step);
                t.finished.push(d.step);
            }
            Prep::Error(e, verdict, is_timeout) => {
                let budget_left = self
                    .plan
                    .max_total_retries
                    .is_none_or(|max| st.retry.used < max);
                if st.end.stop.is_none()
                    && budget_left
                    && should_retry(&spec.policy, d.attempt, &verdict)
                {
                    let min_delay = match verdict {
                        Retryability::Retry { min_delay } => min_delay,
                        Retryability::Never { .. } => None,
                    };
                    let delay = spec.policy.delay(d.attempt, &mut st.retry.rng, min_delay);
                    st.retry.used += 1;
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
                        let mut detail = serde_json::json!({ "delay_s": delay.as_secs_f64() });
                        if let Some(tb) = &e.traceback {
                            detail["traceback"] = serde_json::Value::String(tb.clone());
                        }
                        ev.detail = Some(detail);
                        t.store_events.push(ev);
                    }
                    st.recs[d.step].error = Some(Box::new(e));
                    st.sched.retrying(d.step);
                    if delay.is_zero() {
                        if let Some(next) = st.sched.start_retry(d.step) {
                            st.retry.immediate.push(next);
                        }
                    } else {
                        t.retry_after = Some(delay);
                    }
                } else {
                    rec.error = Some(Box::new(e));
                    rec.end = Some(now);
                    let state = if is_timeout {
                        StepState::Timeout
                    } else {
                        StepState::Failed
                    };
                    t.finished.push(d.step);
                    t.finished.extend(st.sched.fail(d.step, state));
                }
            }
        }
        t
    }

    /// Under the lock: when the step that just ended meets the run's policy (fail_fast's first
    /// failure, wait_for_all=False's first success), every other step ends now, CANCELLED, and
    /// joins `finished`; `settle_tasks` stops their work. Returns whether it did.
    fn settle(
        &self,
        py: Python<'_>,
        st: &mut RunState,
        d: Dispatch,
        finished: &mut smallvec::SmallVec<[usize; 2]>,
        now: Instant,
    ) -> bool {
        let Some(&s) = finished.first() else {
            return false;
        };
        if !st.sched.settles(st.sched.state(s)) {
            return false;
        }
        let why = format!(
            "step '{}' {} and the run's failure policy ends the others",
            self.plan.steps[d.step].id,
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
            rec.error = Some(Box::new(StepError::from_exc(&err)));
            finished.push(other);
        }
        true
    }

    /// Under the lock: announces the steps that just `ended`: their store events, after
    /// `store_events` (recorded first), and their terminal events for `on_event`.
    /// `checkpointed` is a step whose `completed` event `checkpoint` already wrote.
    pub(super) fn announce(
        &self,
        py: Python<'_>,
        st: &mut RunState,
        mut store_events: Vec<StepEvent>,
        ended: &[usize],
        checkpointed: Option<usize>,
    ) {
        if let Some(j) = &self.journal {
            let unstored: Vec<usize> = ended
                .iter()
                .copied()
                .filter(|&s| Some(s) != checkpointed)
                .collect();
            store_events.extend(self.journal_terminal(st, &unstored));
            j.write_lazy(store_events);
        }
        if self.on_event.is_some() {
            for &s in ended {
                if let Some(e) = self.terminal_event(py, st, s) {
                    st.events.push(e);
                }
            }
        }
    }

    /// The loop thread, after the run settled early: cancel the work of the steps it ended.
    pub(super) fn settle_tasks(self: &Arc<Self>, py: Python<'_>) {
        let (tasks, timers) = {
            let mut guard = self.lock(py);
            let st = &mut *guard;
            let tasks: Vec<_> = st
                .tasks
                .live
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
