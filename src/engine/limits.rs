//! Traffic controls for LLM and tool calls: rate limits and circuit breakers, shared by every
//! step (and every run in the process) that names the same key.
//!
//! Pure bookkeeping on `Instant`s: the scheduler's driver asks before it starts a step
//! (`RateLimiter::try_acquire`, `CircuitBreaker::admit`) and reports the attempt's end; a step
//! that may not start yet is parked and woken at the time given, or by a waker when a slot
//! frees up.
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// `now + delay`, or, when that overflows the clock (a delay of centuries from a huge or
/// unvalidated setting), the latest instant ~30 years on: later than any run lasts, and never a
/// panic.
fn later(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(delay.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// `seconds` as a `Duration`: NaN and negatives are zero, values too large for one saturate.
fn seconds(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

/// Called when a limiter frees a concurrency slot, so parked steps try again.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The answer to "may this step start now?".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Start it (a rate limiter's concurrency slot, if any, is now held: release it later).
    Go,
    /// Try again at this instant.
    At(Instant),
    /// Try again when a slot is released (the waker is called then).
    OnRelease,
}

/// Limits how often and how many steps with one key start (as the `aiolimiter` /
/// `limits` packages and LLM providers' quotas do).
///
/// - `requests_per_second`: starts are spaced at least `1/rps` seconds apart (GCRA without
///   burst), so no one-second window holds more than `rps` starts;
/// - `tokens_per_minute`: a budget refilled continuously; a step starts only while the budget
///   is positive, and the tokens a finished step reports (`consume_tokens`) are taken from it;
/// - `max_concurrency`: at most this many attempts hold the limiter at once.
pub struct RateLimiter {
    pub key: String,
    pub requests_per_second: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub max_concurrency: Option<usize>,
    state: Mutex<RateState>,
}

struct RateState {
    /// GCRA's theoretical arrival time of the next start.
    next_start: Option<Instant>,
    /// Token budget left, as of `refilled_at`.
    budget: f64,
    refilled_at: Option<Instant>,
    in_flight: usize,
    wakers: Vec<Waker>,
}

impl RateLimiter {
    /// A limiter; `None` leaves that dimension unlimited. Values must be positive (checked by
    /// the caller).
    pub fn new(
        key: impl Into<String>,
        requests_per_second: Option<f64>,
        tokens_per_minute: Option<f64>,
        max_concurrency: Option<usize>,
    ) -> Self {
        RateLimiter {
            key: key.into(),
            requests_per_second,
            tokens_per_minute,
            max_concurrency,
            state: Mutex::new(RateState {
                next_start: None,
                budget: tokens_per_minute.unwrap_or(0.0),
                refilled_at: None,
                in_flight: 0,
                wakers: Vec::new(),
            }),
        }
    }

    fn refill(&self, st: &mut RateState, now: Instant) {
        if let Some(tpm) = self.tokens_per_minute {
            if let Some(at) = st.refilled_at {
                let gained = now.saturating_duration_since(at).as_secs_f64() * tpm / 60.0;
                st.budget = (st.budget + gained).min(tpm);
            }
            st.refilled_at = Some(now);
        }
    }

    /// May a step start now? On `Go` the start is counted (and a concurrency slot held). On
    /// `OnRelease`, `waker` is kept and called once when a slot frees up.
    pub fn try_acquire(&self, now: Instant, waker: &Waker) -> Admission {
        let mut st = self.state.lock();
        self.refill(&mut st, now);
        if let Some(max) = self.max_concurrency {
            if st.in_flight >= max {
                st.wakers.push(Arc::clone(waker));
                return Admission::OnRelease;
            }
        }
        if let Some(tpm) = self.tokens_per_minute {
            if st.budget <= 0.0 {
                // Back above zero after this long at tpm/60 tokens a second.
                let secs = (-st.budget + 1.0) * 60.0 / tpm;
                return Admission::At(later(now, seconds(secs.min(3600.0))));
            }
        }
        if let Some(rps) = self.requests_per_second {
            let interval = seconds(1.0 / rps);
            match st.next_start {
                Some(t) if t > now => return Admission::At(t),
                _ => st.next_start = Some(later(now, interval)),
            }
        }
        if self.max_concurrency.is_some() {
            st.in_flight += 1;
        }
        Admission::Go
    }

    /// An attempt that got `Go` ended: its concurrency slot is free. Returns the wakers of the
    /// steps waiting for one, for the caller to call outside any lock.
    pub fn release(&self) -> Vec<Waker> {
        let mut st = self.state.lock();
        if self.max_concurrency.is_some() && st.in_flight > 0 {
            st.in_flight -= 1;
        }
        std::mem::take(&mut st.wakers)
    }

    /// Takes `tokens` (a finished step's reported usage) from the per-minute budget.
    pub fn consume_tokens(&self, tokens: u64, now: Instant) {
        if self.tokens_per_minute.is_some() {
            let mut st = self.state.lock();
            self.refill(&mut st, now);
            st.budget -= tokens as f64;
        }
    }

    /// Attempts holding a concurrency slot now.
    pub fn in_flight(&self) -> usize {
        self.state.lock().in_flight
    }
}

/// A circuit breaker's state (seed 001's fault tolerance; the classic three states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls fail fast (or wait) until `recovery_timeout` has passed.
    Open,
    /// A few trial calls go through: a success closes the circuit, a failure opens it again.
    HalfOpen,
}

impl CircuitState {
    /// The lower-case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// What the breaker says about a call that wants to start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakerAdmission {
    /// Go ahead (in half-open state: as one of the trial calls).
    Go,
    /// Open (or half-open with every trial slot taken): the call may not run before this
    /// instant.
    Open(Instant),
}

/// A state change, reported so the run can emit it as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
}

/// Opens after `failure_threshold` consecutive failures, stays open for `recovery_timeout`,
/// then lets `half_open_max_calls` trial calls through (as Hystrix, resilience4j and pybreaker
/// do).
pub struct CircuitBreaker {
    pub key: String,
    pub failure_threshold: u32,
    pub recovery_timeout: Duration,
    pub half_open_max_calls: u32,
    /// Steps wait for the circuit instead of failing fast.
    pub wait: bool,
    state: Mutex<BreakerState>,
}

struct BreakerState {
    state: CircuitState,
    failures: u32,
    opened_at: Option<Instant>,
    trials: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(
        key: impl Into<String>,
        failure_threshold: u32,
        recovery_timeout: Duration,
        half_open_max_calls: u32,
        wait: bool,
    ) -> Self {
        CircuitBreaker {
            key: key.into(),
            failure_threshold: failure_threshold.max(1),
            recovery_timeout,
            half_open_max_calls: half_open_max_calls.max(1),
            wait,
            state: Mutex::new(BreakerState {
                state: CircuitState::Closed,
                failures: 0,
                opened_at: None,
                trials: 0,
            }),
        }
    }

    /// The current state (an open circuit past its recovery timeout reads as half-open; the
    /// transition itself happens, and is reported, when a call next asks to start).
    pub fn state(&self, now: Instant) -> CircuitState {
        let st = self.state.lock();
        match (st.state, st.opened_at) {
            (CircuitState::Open, Some(at))
                if now.saturating_duration_since(at) >= self.recovery_timeout =>
            {
                CircuitState::HalfOpen
            }
            (state, _) => state,
        }
    }

    fn age(&self, st: &mut BreakerState, now: Instant) -> Option<Transition> {
        if st.state == CircuitState::Open {
            let opened = st.opened_at.unwrap_or(now);
            if now.saturating_duration_since(opened) >= self.recovery_timeout {
                st.state = CircuitState::HalfOpen;
                st.trials = 0;
                return Some(Transition {
                    from: CircuitState::Open,
                    to: CircuitState::HalfOpen,
                });
            }
        }
        None
    }

    /// May a call start now? Also returns the transition that asking caused (open →
    /// half-open once the recovery timeout has passed).
    pub fn admit(&self, now: Instant) -> (BreakerAdmission, Option<Transition>) {
        let mut st = self.state.lock();
        let moved = self.age(&mut st, now);
        let answer = match st.state {
            CircuitState::Closed => BreakerAdmission::Go,
            CircuitState::Open => {
                BreakerAdmission::Open(later(st.opened_at.unwrap_or(now), self.recovery_timeout))
            }
            CircuitState::HalfOpen if st.trials < self.half_open_max_calls => {
                st.trials += 1;
                BreakerAdmission::Go
            }
            // Every trial slot is taken: ask again a little later.
            CircuitState::HalfOpen => BreakerAdmission::Open(later(
                now,
                self.recovery_timeout.min(Duration::from_millis(100)),
            )),
        };
        (answer, moved)
    }

    /// A call succeeded: the failure count resets and a half-open circuit closes.
    pub fn record_success(&self) -> Option<Transition> {
        let mut st = self.state.lock();
        st.failures = 0;
        if st.state == CircuitState::HalfOpen {
            st.state = CircuitState::Closed;
            st.trials = 0;
            return Some(Transition {
                from: CircuitState::HalfOpen,
                to: CircuitState::Closed,
            });
        }
        None
    }

    /// A call failed: a half-open circuit opens again; a closed one opens at the threshold.
    pub fn record_failure(&self, now: Instant) -> Option<Transition> {
        let mut st = self.state.lock();
        st.failures = st.failures.saturating_add(1);
        let from = st.state;
        let open = match st.state {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => st.failures >= self.failure_threshold,
            CircuitState::Open => false,
        };
        if open {
            st.state = CircuitState::Open;
            st.opened_at = Some(now);
            st.trials = 0;
            return Some(Transition {
                from,
                to: CircuitState::Open,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Waker {
        Arc::new(|| {})
    }

    const YEAR: Duration = Duration::from_secs(86_400 * 365);

    #[test]
    fn a_rate_too_small_for_a_duration_parks_the_next_start_years_away_without_panicking() {
        let t0 = Instant::now();
        for rps in [1e-320, 0.0] {
            let l = RateLimiter::new("k", Some(rps), None, None);
            assert_eq!(l.try_acquire(t0, &noop()), Admission::Go);
            match l.try_acquire(t0, &noop()) {
                Admission::At(t) => assert!(t - t0 >= YEAR, "{rps}: {:?}", t - t0),
                other => panic!("{rps}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unvalidated_negative_or_nan_rate_never_panics() {
        let t0 = Instant::now();
        for rps in [-1.0, f64::NAN, f64::NEG_INFINITY] {
            let l = RateLimiter::new("k", Some(rps), Some(-5.0), None);
            for _ in 0..3 {
                let _ = l.try_acquire(t0, &noop());
            }
        }
    }

    #[test]
    fn a_breaker_open_for_longer_than_the_clock_reaches_never_panics() {
        let b = CircuitBreaker::new("k", 1, Duration::MAX, 1, false);
        let t0 = Instant::now();
        b.record_failure(t0);
        match b.admit(t0).0 {
            BreakerAdmission::Open(t) => assert!(t - t0 >= YEAR, "{:?}", t - t0),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.state(t0), CircuitState::Open);
    }

    #[test]
    fn requests_per_second_spaces_starts_evenly() {
        let lim = RateLimiter::new("k", Some(10.0), None, None);
        let t0 = Instant::now();
        assert_eq!(lim.try_acquire(t0, &noop()), Admission::Go);
        let Admission::At(next) = lim.try_acquire(t0, &noop()) else {
            panic!("a second start at once must wait")
        };
        assert_eq!(next - t0, Duration::from_millis(100));
        assert_eq!(lim.try_acquire(next, &noop()), Admission::Go);
    }

    #[test]
    fn at_most_rps_starts_in_any_one_second_window() {
        let lim = RateLimiter::new("k", Some(10.0), None, None);
        let t0 = Instant::now();
        let mut now = t0;
        let mut starts = Vec::new();
        while starts.len() < 50 {
            match lim.try_acquire(now, &noop()) {
                Admission::Go => starts.push(now),
                Admission::At(t) => now = t,
                Admission::OnRelease => unreachable!(),
            }
        }
        for (i, &s) in starts.iter().enumerate() {
            let window = starts[i..]
                .iter()
                .take_while(|&&x| x < s + Duration::from_secs(1))
                .count();
            assert!(window <= 10, "{window} starts within one second");
        }
        assert!(*starts.last().unwrap() - t0 >= Duration::from_millis(4900));
    }

    #[test]
    fn max_concurrency_waits_for_a_release_and_wakes_waiters() {
        let lim = RateLimiter::new("k", None, None, Some(1));
        let now = Instant::now();
        let woke = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = Arc::clone(&woke);
        let waker: Waker = Arc::new(move || {
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(lim.try_acquire(now, &waker), Admission::Go);
        assert_eq!(lim.try_acquire(now, &waker), Admission::OnRelease);
        for wake in lim.release() {
            wake();
        }
        assert_eq!(woke.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(lim.try_acquire(now, &waker), Admission::Go);
        assert_eq!(lim.in_flight(), 1);
    }

    #[test]
    fn tokens_per_minute_blocks_once_the_budget_is_spent() {
        let lim = RateLimiter::new("k", None, Some(600.0), None);
        let t0 = Instant::now();
        assert_eq!(lim.try_acquire(t0, &noop()), Admission::Go);
        lim.consume_tokens(700, t0);
        let Admission::At(t) = lim.try_acquire(t0, &noop()) else {
            panic!("over budget must wait")
        };
        // 101 tokens at 10 a second.
        assert!((t - t0).as_secs_f64() > 10.0 && (t - t0).as_secs_f64() < 10.2);
        assert_eq!(lim.try_acquire(t, &noop()), Admission::Go);
    }

    #[test]
    fn breaker_opens_at_the_threshold_then_half_opens_and_closes() {
        let b = CircuitBreaker::new("k", 2, Duration::from_secs(5), 1, false);
        let t0 = Instant::now();
        assert_eq!(b.record_failure(t0), None);
        assert_eq!(
            b.record_failure(t0),
            Some(Transition {
                from: CircuitState::Closed,
                to: CircuitState::Open
            })
        );
        assert_eq!(
            b.admit(t0 + Duration::from_secs(1)).0,
            BreakerAdmission::Open(t0 + Duration::from_secs(5))
        );
        let later = t0 + Duration::from_secs(5);
        let (go, moved) = b.admit(later);
        assert_eq!(go, BreakerAdmission::Go);
        assert_eq!(moved.map(|t| t.to), Some(CircuitState::HalfOpen));
        assert!(
            matches!(b.admit(later).0, BreakerAdmission::Open(_)),
            "one trial only"
        );
        assert_eq!(b.record_success().map(|t| t.to), Some(CircuitState::Closed));
        assert_eq!(b.state(later), CircuitState::Closed);
    }

    #[test]
    fn a_failed_trial_opens_the_circuit_again() {
        let b = CircuitBreaker::new("k", 1, Duration::from_millis(10), 1, false);
        let t0 = Instant::now();
        b.record_failure(t0);
        let later = t0 + Duration::from_millis(10);
        assert_eq!(b.admit(later).0, BreakerAdmission::Go);
        assert_eq!(
            b.record_failure(later).map(|t| (t.from, t.to)),
            Some((CircuitState::HalfOpen, CircuitState::Open))
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = CircuitBreaker::new("k", 2, Duration::from_secs(1), 1, false);
        let t0 = Instant::now();
        b.record_failure(t0);
        b.record_success();
        assert_eq!(b.record_failure(t0), None);
        assert_eq!(b.state(t0), CircuitState::Closed);
    }
}
