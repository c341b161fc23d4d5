//! A run's side of rate limits and circuit breakers (`engine::limits`): admitting an attempt
//! before it starts, parking it until it may, releasing what it held when it ends, and
//! reporting circuit transitions as events.
use super::*;
use crate::engine::limits::{Admission, BreakerAdmission, Transition, Waker};
use crate::py::traffic::Controls;

/// What to do with an attempt that wants to start.
pub(super) enum Admit {
    Go,
    /// Wait: until this instant, or (`None`) until a limiter frees a slot; held back by the
    /// control of this kind (`"circuit"` or `"rate_limit"`) and key.
    Park(Option<Instant>, &'static str, String),
    /// An open circuit refuses it: fail the attempt with this message.
    Refuse(String),
}

impl RunInner {
    /// A waker that pumps this run again (a limiter freed a slot, a parked step's time came).
    fn waker(self: &Arc<Self>) -> Waker {
        let weak = Arc::downgrade(self);
        Arc::new(move || {
            if let Some(run) = weak.upgrade() {
                Python::attach(|py| run.call_soon_threadsafe(py, CbKind::Unpark));
            }
        })
    }

    /// Under the run's lock: may attempt `d` start now? Breakers first (an open circuit
    /// refuses or parks without using up rate), then every rate limiter; slots taken are
    /// recorded in `held` until the attempt ends.
    pub(super) fn admit(
        self: &Arc<Self>,
        py: Python<'_>,
        st: &mut RunState,
        d: Dispatch,
        now: Instant,
    ) -> Admit {
        let c: &Controls = &self.plan.steps[d.step].controls;
        for b in &c.breakers {
            let (answer, moved) = b.admit(now);
            if let Some(t) = moved {
                self.circuit_event(py, st, d, &b.key, t);
            }
            if let BreakerAdmission::Open(until) = answer {
                if b.wait {
                    return Admit::Park(Some(until), "circuit", b.key.clone());
                }
                return Admit::Refuse(format!(
                    "step '{}': circuit '{}' is open after {} consecutive failures; calls are \
                     tried again in {:.1}s",
                    self.plan.steps[d.step].id,
                    b.key,
                    b.failure_threshold,
                    until.saturating_duration_since(now).as_secs_f64()
                ));
            }
        }
        if c.limiters.is_empty() {
            return Admit::Go;
        }
        let waker = self.waker();
        let mut got = Vec::with_capacity(c.limiters.len());
        for l in &c.limiters {
            match l.try_acquire(now, &waker) {
                Admission::Go => got.push(Arc::clone(l)),
                wait => {
                    for g in got {
                        for w in g.release() {
                            w();
                        }
                    }
                    let until = match wait {
                        Admission::At(t) => Some(t),
                        _ => None,
                    };
                    return Admit::Park(until, "rate_limit", l.key.clone());
                }
            }
        }
        st.traffic.held.insert((d.step, d.attempt), got);
        Admit::Go
    }

    /// Parks `d` (under the run's lock) and, for a timed wait, arms one wake-up timer per run
    /// for the earliest instant any parked step may start. With an event subscriber, notes
    /// when (and by what) `d` was first held back, for its "waited" event.
    pub(super) fn park(
        self: &Arc<Self>,
        st: &mut RunState,
        d: Dispatch,
        until: Option<Instant>,
        by: (&'static str, String),
        now: Instant,
    ) {
        st.traffic.parked.push(d);
        if self.on_event.is_some() {
            st.traffic
                .parked_since
                .entry((d.step, d.attempt))
                .or_insert((now, by.0, by.1));
        }
        let Some(t) = until else { return };
        if st
            .traffic
            .wake_at
            .is_some_and(|w| w <= t && w > Instant::now())
        {
            return;
        }
        st.traffic.wake_at = Some(t);
        let wake = self.waker();
        if crate::py::threads::timer::after(
            t.saturating_duration_since(Instant::now()),
            move || wake(),
        )
        .is_none()
        {
            st.traffic.wake_at = None;
        }
    }

    /// Attempt `d` ended: release its rate limiters' slots and wake whoever waits for them.
    pub(super) fn release_held(&self, py: Python<'_>, d: Dispatch) {
        if self.plan.steps[d.step].controls.limiters.is_empty() {
            return; // the common case: no lock taken
        }
        let held = self.lock(py).traffic.held.remove(&(d.step, d.attempt));
        for l in held.into_iter().flatten() {
            for w in l.release() {
                w();
            }
        }
    }

    /// The run ended or stopped: release every slot still held.
    pub(super) fn release_all(&self, py: Python<'_>) {
        let held: Vec<_> = {
            let mut st = self.lock(py);
            st.traffic.parked.clear();
            st.traffic.parked_since.clear();
            st.traffic.held.drain().flat_map(|(_, v)| v).collect()
        };
        for l in held {
            for w in l.release() {
                w();
            }
        }
    }

    /// Under the run's lock, after attempt `d` ended: tell its breakers (a failure that is not
    /// the breaker's own refusal counts) and its limiters the tokens it reports using.
    pub(super) fn report_traffic(
        &self,
        py: Python<'_>,
        st: &mut RunState,
        d: Dispatch,
        failed: Option<bool>,
        usage: Option<u64>,
    ) {
        let c = &self.plan.steps[d.step].controls;
        if c.is_empty() {
            return;
        }
        let now = Instant::now();
        for b in &c.breakers {
            let moved = match failed {
                Some(true) => b.record_failure(now),
                Some(false) => b.record_success(),
                None => None,
            };
            if let Some(t) = moved {
                self.circuit_event(py, st, d, &b.key, t);
            }
        }
        if let Some(tokens) = usage {
            for l in &c.limiters {
                l.consume_tokens(tokens, now);
            }
        }
    }

    /// Under the lock, for attempt `d` about to start: the event `("waited", step, attempt,
    /// (seconds, kind, name))` for each wait that held it back: a rate limit or an open circuit
    /// it was parked on (`kind` `"rate_limit"` / `"circuit"`, `name` the control's key), and a
    /// first attempt that waited for a slot of the run's `max_concurrency` (`"concurrency"`,
    /// name `""`). Only with an event subscriber.
    pub(super) fn waited_events(
        &self,
        py: Python<'_>,
        st: &mut RunState,
        d: Dispatch,
        now: Instant,
    ) {
        let mut waits: [Option<(f64, &'static str, String)>; 2] = [None, None];
        if d.attempt == 1 {
            if let Some(w) = st.sched.slot_wait(d.step, now) {
                waits[0] = Some((w.as_secs_f64(), "concurrency", String::new()));
            }
        }
        if !st.traffic.parked_since.is_empty() {
            if let Some((since, kind, key)) = st.traffic.parked_since.remove(&(d.step, d.attempt)) {
                let secs = now.saturating_duration_since(since).as_secs_f64();
                waits[1] = Some((secs, kind, key));
            }
        }
        for w in waits.into_iter().flatten() {
            let payload = w
                .into_pyobject(py)
                .map_or_else(|_| py.None(), |p| p.into_any().unbind());
            st.events.push(Event {
                kind: "waited",
                step: d.step,
                attempt: d.attempt,
                payload,
            });
        }
    }

    /// A circuit transition as the event `("circuit", step, attempt, (key, from, to))`.
    fn circuit_event(
        &self,
        py: Python<'_>,
        st: &mut RunState,
        d: Dispatch,
        key: &str,
        t: Transition,
    ) {
        tracing::info!(
            "circuit '{key}': {} -> {} (step '{}')",
            t.from.as_str(),
            t.to.as_str(),
            self.plan.steps[d.step].id
        );
        if self.on_event.is_none() {
            return;
        }
        let payload = (key, t.from.as_str(), t.to.as_str())
            .into_pyobject(py)
            .map_or_else(|_| py.None(), |p| p.into_any().unbind());
        st.events.push(Event {
            kind: "circuit",
            step: d.step,
            attempt: d.attempt,
            payload,
        });
    }
}

/// `metadata["usage"]["total_tokens"]` of a step's result, if it reports one.
pub(super) fn reported_tokens(py: Python<'_>, metadata: Option<&Py<PyDict>>) -> Option<u64> {
    let usage = metadata?.bind(py).get_item("usage").ok()??;
    let total = usage.get_item("total_tokens").ok()?;
    total.extract::<u64>().ok()
}
