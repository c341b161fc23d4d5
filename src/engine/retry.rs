//! Retry policies (how many attempts, how long between them) and the classification of errors into
//! retryable or not.
//!
//! The binding layer does the Python side (isinstance checks, reading `status_code` and
//! `Retry-After`) and hands over plain [`ErrorFacts`]; every decision is made here, in pure Rust, so
//! it is the same for sync and async steps and testable without an interpreter.

use std::time::Duration;

/// When and how often a failed step is attempted again. Intervals are in seconds.
/// Deserialized (serde) from the Python `batten.RetryPolicy`'s numeric fields.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Delay after the first failed attempt, before jitter.
    pub initial_interval: f64,
    /// Each further delay is the previous one times this.
    pub backoff_coefficient: f64,
    /// Upper bound of every delay, jitter included (a Retry-After may still ask for longer).
    pub max_interval: f64,
    /// Relative spread of the delay: the base delay is multiplied by a uniform factor in
    /// `[1 - jitter, 1 + jitter]`, so that many steps failing together do not retry in lockstep.
    pub jitter: f64,
}

impl RetryPolicy {
    /// A single attempt: the policy of a step without `with_retry`. The other fields hold Python's
    /// `RetryPolicy()` defaults, so `RetryPolicy { max_attempts: 4, ..RetryPolicy::NONE }` is what
    /// `with_retry(3)` means.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_interval: 1.0,
        backoff_coefficient: 2.0,
        max_interval: 100.0,
        jitter: 0.1,
    };

    /// Checks every field's range; the error names the field, the expected range and the value.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts < 1 {
            return Err(format!(
                "max_attempts must be at least 1, got {}",
                self.max_attempts
            ));
        }
        // Written as `!(x >= lo)` so NaN fails too.
        for (name, value) in [
            ("initial_interval", self.initial_interval),
            ("max_interval", self.max_interval),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{name} must be a finite number of seconds >= 0, got {value}"
                ));
            }
        }
        if !(self.backoff_coefficient.is_finite() && self.backoff_coefficient >= 1.0) {
            return Err(format!(
                "backoff_coefficient must be a finite number >= 1, got {}",
                self.backoff_coefficient
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        Ok(())
    }

    /// The delay before the next attempt after attempt `failed_attempt` (1-based) failed, before
    /// jitter: `min(initial_interval * backoff_coefficient^(n-1), max_interval)`.
    ///
    /// Stays finite for any `n`: the exponential overflows to infinity and is then capped, and a zero
    /// initial interval stays zero instead of becoming `0 * inf = NaN`. Attempt 0 is treated as 1.
    pub fn base_delay(&self, failed_attempt: u32) -> f64 {
        if self.initial_interval == 0.0 {
            return 0.0;
        }
        let exponent = f64::from(failed_attempt.saturating_sub(1));
        let grown = self.initial_interval * self.backoff_coefficient.powf(exponent);
        // `<` is false for infinity and NaN, which then take the cap.
        let capped = if grown < self.max_interval {
            grown
        } else {
            self.max_interval
        };
        // Only an unvalidated policy gets here with NaN or a negative value; never hand those out.
        capped.max(0.0)
    }

    /// The range the jittered delay is drawn from:
    /// `(base * (1 - jitter), min(base * (1 + jitter), max_interval))`.
    pub fn delay_bounds(&self, failed_attempt: u32) -> (f64, f64) {
        let base = self.base_delay(failed_attempt);
        let low = base * (1.0 - self.jitter);
        let high = (base * (1.0 + self.jitter)).min(self.max_interval);
        // max() keeps low <= high even for an unvalidated policy (jitter > 1, max_interval < 0).
        (low.max(0.0), high.max(low.max(0.0)))
    }

    /// The delay to wait before the next attempt: uniform within [`RetryPolicy::delay_bounds`], but
    /// never shorter than `min_delay` (a server's Retry-After, in seconds) when one is given. A
    /// Retry-After may exceed `max_interval`: the server asked for it. Negative or NaN Retry-After
    /// values are ignored; one too large for a `Duration` saturates to `Duration::MAX`.
    pub fn delay(
        &self,
        failed_attempt: u32,
        rng: &mut fastrand::Rng,
        min_delay: Option<f64>,
    ) -> Duration {
        let (low, high) = self.delay_bounds(failed_attempt);
        let jittered = low + (high - low) * rng.f64();
        let seconds = match min_delay {
            Some(floor) if floor > jittered => floor,
            _ => jittered,
        };
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

/// What the binding layer learned about an exception (it does the isinstance checks).
#[derive(Debug, Clone, Default)]
pub struct ErrorFacts {
    /// A `TimeoutError` (step timeouts included).
    pub is_timeout: bool,
    /// A `ConnectionError`.
    pub is_connection: bool,
    /// An HTTP status found on the exception (`status_code`, `status` or `response.status_code`).
    pub http_status: Option<u16>,
    /// Seconds from a `retry_after` attribute or a `Retry-After` header.
    pub retry_after: Option<f64>,
    /// Whether the exception is one of the policy's `retry_on` classes; `None` when the policy has
    /// no `retry_on` list (then the default rules apply).
    pub matches_retry_on: Option<bool>,
    /// Whether the exception is one of the policy's `non_retryable` classes.
    pub matches_non_retryable: bool,
    /// A bug rather than a transient failure: TypeError, ValueError, AttributeError, NameError,
    /// KeyError, NotImplementedError or a BattenError.
    pub is_programming_error: bool,
    /// The step was cancelled (`asyncio.CancelledError`).
    pub is_cancellation: bool,
}

/// Whether an error may be retried.
#[derive(Debug, Clone, PartialEq)]
pub enum Retryability {
    /// Worth another attempt (if the policy has attempts left).
    Retry {
        /// A lower bound for the delay, in seconds (the server's Retry-After).
        min_delay: Option<f64>,
    },
    /// Never retried, whatever the policy's attempts.
    Never {
        /// Why, for logs and events.
        reason: &'static str,
    },
}

/// Decides whether an error is retryable. The first matching rule wins:
///
/// 1. cancellation: never ("cancelled");
/// 2. one of the policy's `non_retryable`: never ("in non_retryable");
/// 3. with a `retry_on` list, membership decides (never: "not in retry_on");
/// 4. timeouts and connection errors retry;
/// 5. HTTP 429 and 5xx retry; other HTTP 4xx never do ("HTTP 4xx");
/// 6. programming errors (TypeError, ValueError, ...) never retry ("programming error");
/// 7. anything else retries.
///
/// Every `Retry` carries the error's Retry-After as its minimum delay: a server that says when to
/// come back is obeyed whatever rule let the retry through.
pub fn classify(f: &ErrorFacts) -> Retryability {
    let retry = Retryability::Retry {
        min_delay: f.retry_after,
    };
    let never = |reason| Retryability::Never { reason };
    if f.is_cancellation {
        return never("cancelled");
    }
    if f.matches_non_retryable {
        return never("in non_retryable");
    }
    match f.matches_retry_on {
        Some(true) => return retry,
        Some(false) => return never("not in retry_on"),
        None => {}
    }
    if f.is_timeout || f.is_connection {
        return retry;
    }
    match f.http_status {
        Some(429) | Some(500..) => return retry,
        Some(400..=499) => return never("HTTP 4xx"),
        _ => {}
    }
    if f.is_programming_error {
        return never("programming error");
    }
    retry
}

/// True when attempt `failed_attempt` (1-based) failed with a retryable error and the policy has
/// attempts left.
pub fn should_retry(policy: &RetryPolicy, failed_attempt: u32, verdict: &Retryability) -> bool {
    matches!(verdict, Retryability::Retry { .. }) && failed_attempt < policy.max_attempts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: 1.0,
            backoff_coefficient: 2.0,
            max_interval: 10.0,
            jitter: 0.25,
        }
    }

    fn reason_of(r: Retryability) -> &'static str {
        match r {
            Retryability::Never { reason } => reason,
            Retryability::Retry { .. } => panic!("expected Never, got {r:?}"),
        }
    }

    #[test]
    fn none_policy_makes_a_single_attempt() {
        assert_eq!(RetryPolicy::NONE.max_attempts, 1);
        assert!(RetryPolicy::NONE.validate().is_ok());
        let retry = Retryability::Retry { min_delay: None };
        assert!(!should_retry(&RetryPolicy::NONE, 1, &retry));
    }

    #[test]
    fn valid_policy_passes_validation() {
        assert_eq!(policy().validate(), Ok(()));
    }

    #[test]
    fn max_interval_below_initial_interval_is_valid() {
        let p = RetryPolicy {
            initial_interval: 5.0,
            max_interval: 1.0,
            ..policy()
        };
        assert!(p.validate().is_ok());
        assert_eq!(p.base_delay(1), 1.0);
    }

    #[test]
    fn zero_max_attempts_is_invalid() {
        let p = RetryPolicy {
            max_attempts: 0,
            ..policy()
        };
        assert_eq!(
            p.validate().unwrap_err(),
            "max_attempts must be at least 1, got 0"
        );
    }

    #[test]
    fn negative_initial_interval_is_invalid() {
        let p = RetryPolicy {
            initial_interval: -1.0,
            ..policy()
        };
        assert_eq!(
            p.validate().unwrap_err(),
            "initial_interval must be a finite number of seconds >= 0, got -1"
        );
    }

    #[test]
    fn infinite_max_interval_is_invalid() {
        let p = RetryPolicy {
            max_interval: f64::INFINITY,
            ..policy()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .starts_with("max_interval must be"));
    }

    #[test]
    fn nan_interval_is_invalid() {
        let p = RetryPolicy {
            initial_interval: f64::NAN,
            ..policy()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .starts_with("initial_interval must be"));
    }

    #[test]
    fn backoff_coefficient_below_one_is_invalid() {
        let p = RetryPolicy {
            backoff_coefficient: 0.5,
            ..policy()
        };
        assert_eq!(
            p.validate().unwrap_err(),
            "backoff_coefficient must be a finite number >= 1, got 0.5"
        );
    }

    #[test]
    fn jitter_outside_unit_interval_is_invalid() {
        for jitter in [-0.1, 1.5, f64::NAN] {
            let p = RetryPolicy { jitter, ..policy() };
            assert!(
                p.validate()
                    .unwrap_err()
                    .starts_with("jitter must be between 0 and 1"),
                "{jitter}"
            );
        }
    }

    #[test]
    fn base_delay_grows_exponentially_then_caps() {
        let p = policy();
        let delays: Vec<f64> = (1..=6).map(|n| p.base_delay(n)).collect();
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
    }

    #[test]
    fn base_delay_treats_attempt_zero_as_the_first() {
        assert_eq!(policy().base_delay(0), policy().base_delay(1));
    }

    #[test]
    fn huge_attempt_numbers_stay_finite_and_capped() {
        let p = policy();
        for n in [1_000, 100_000, u32::MAX] {
            assert_eq!(p.base_delay(n), 10.0);
            let (low, high) = p.delay_bounds(n);
            assert!(low.is_finite() && high <= 10.0 && low <= high);
        }
    }

    #[test]
    fn zero_initial_interval_never_becomes_nan() {
        let p = RetryPolicy {
            initial_interval: 0.0,
            ..policy()
        };
        assert_eq!(p.base_delay(u32::MAX), 0.0);
        assert_eq!(
            p.delay(u32::MAX, &mut fastrand::Rng::with_seed(1), None),
            Duration::ZERO
        );
    }

    #[test]
    fn delay_bounds_spread_by_jitter_and_cap_at_max_interval() {
        let p = policy();
        assert_eq!(p.delay_bounds(2), (1.5, 2.5));
        // base 8: 8 * 1.25 = 10 exactly; base 10 (capped): the upper bound stays at the cap.
        assert_eq!(p.delay_bounds(4), (6.0, 10.0));
        assert_eq!(p.delay_bounds(5), (7.5, 10.0));
    }

    #[test]
    fn sampled_delays_stay_within_bounds() {
        let p = policy();
        let mut rng = fastrand::Rng::with_seed(42);
        for k in 0..10_000u32 {
            let attempt = k % 8 + 1;
            let (low, high) = p.delay_bounds(attempt);
            let d = p.delay(attempt, &mut rng, None).as_secs_f64();
            // Duration keeps nanoseconds: allow for that rounding.
            assert!(
                d >= low - 1e-9 && d <= high + 1e-9,
                "{d} not in [{low}, {high}]"
            );
        }
    }

    #[test]
    fn sampled_delays_use_the_whole_jitter_range() {
        let p = policy();
        let mut rng = fastrand::Rng::with_seed(7);
        let samples: Vec<f64> = (0..10_000)
            .map(|_| p.delay(1, &mut rng, None).as_secs_f64())
            .collect();
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(0.0, f64::max);
        assert!(min < 0.76 && max > 1.24, "[{min}, {max}]");
    }

    #[test]
    fn zero_jitter_gives_the_base_delay_exactly() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..policy()
        };
        let d = p.delay(3, &mut fastrand::Rng::with_seed(3), None);
        assert_eq!(d, Duration::from_secs(4));
    }

    #[test]
    fn retry_after_raises_the_delay_to_its_minimum() {
        let d = policy().delay(1, &mut fastrand::Rng::with_seed(1), Some(30.0));
        assert_eq!(d, Duration::from_secs(30));
    }

    #[test]
    fn retry_after_shorter_than_the_backoff_does_not_shorten_it() {
        let d = policy().delay(4, &mut fastrand::Rng::with_seed(1), Some(0.5));
        assert!(d.as_secs_f64() >= 6.0);
    }

    #[test]
    fn nonsense_retry_after_is_ignored() {
        for bad in [-5.0, f64::NAN] {
            let d = policy().delay(1, &mut fastrand::Rng::with_seed(1), Some(bad));
            assert!(d.as_secs_f64() >= 0.75 && d.as_secs_f64() <= 1.25);
        }
    }

    #[test]
    fn enormous_retry_after_saturates() {
        let d = policy().delay(1, &mut fastrand::Rng::with_seed(1), Some(1e300));
        assert_eq!(d, Duration::MAX);
    }

    #[test]
    fn should_retry_stops_when_attempts_are_exhausted() {
        let p = policy();
        let retry = Retryability::Retry { min_delay: None };
        assert!(should_retry(&p, 4, &retry));
        assert!(!should_retry(&p, 5, &retry));
    }

    #[test]
    fn should_retry_never_retries_a_never() {
        let never = Retryability::Never { reason: "x" };
        assert!(!should_retry(&policy(), 1, &never));
    }

    #[test]
    fn cancellation_is_never_retried_even_if_listed_in_retry_on() {
        let f = ErrorFacts {
            is_cancellation: true,
            matches_retry_on: Some(true),
            ..Default::default()
        };
        assert_eq!(reason_of(classify(&f)), "cancelled");
    }

    #[test]
    fn non_retryable_beats_retry_on() {
        let f = ErrorFacts {
            matches_non_retryable: true,
            matches_retry_on: Some(true),
            is_timeout: true,
            ..Default::default()
        };
        assert_eq!(reason_of(classify(&f)), "in non_retryable");
    }

    #[test]
    fn retry_on_match_retries_even_a_programming_error() {
        let f = ErrorFacts {
            matches_retry_on: Some(true),
            is_programming_error: true,
            ..Default::default()
        };
        assert_eq!(classify(&f), Retryability::Retry { min_delay: None });
    }

    #[test]
    fn retry_on_miss_is_never_retried_even_for_a_timeout() {
        let f = ErrorFacts {
            matches_retry_on: Some(false),
            is_timeout: true,
            ..Default::default()
        };
        assert_eq!(reason_of(classify(&f)), "not in retry_on");
    }

    #[test]
    fn timeout_is_retried() {
        let f = ErrorFacts {
            is_timeout: true,
            is_programming_error: true,
            ..Default::default()
        };
        assert_eq!(classify(&f), Retryability::Retry { min_delay: None });
    }

    #[test]
    fn connection_error_is_retried_despite_a_4xx_status() {
        let f = ErrorFacts {
            is_connection: true,
            http_status: Some(404),
            ..Default::default()
        };
        assert_eq!(classify(&f), Retryability::Retry { min_delay: None });
    }

    #[test]
    fn http_429_is_retried_after_retry_after() {
        let f = ErrorFacts {
            http_status: Some(429),
            retry_after: Some(12.0),
            is_programming_error: true,
            ..Default::default()
        };
        assert_eq!(
            classify(&f),
            Retryability::Retry {
                min_delay: Some(12.0)
            }
        );
    }

    #[test]
    fn http_5xx_is_retried() {
        for status in [500, 503, 599] {
            let f = ErrorFacts {
                http_status: Some(status),
                ..Default::default()
            };
            assert_eq!(classify(&f), Retryability::Retry { min_delay: None });
        }
    }

    #[test]
    fn other_http_4xx_is_never_retried() {
        for status in [400, 401, 404, 422, 499] {
            let f = ErrorFacts {
                http_status: Some(status),
                ..Default::default()
            };
            assert_eq!(reason_of(classify(&f)), "HTTP 4xx");
        }
    }

    #[test]
    fn non_error_http_status_falls_through_to_the_default() {
        let f = ErrorFacts {
            http_status: Some(302),
            ..Default::default()
        };
        assert_eq!(classify(&f), Retryability::Retry { min_delay: None });
    }

    #[test]
    fn programming_error_is_never_retried() {
        let f = ErrorFacts {
            is_programming_error: true,
            ..Default::default()
        };
        assert_eq!(reason_of(classify(&f)), "programming error");
    }

    #[test]
    fn generic_error_is_retried_honouring_retry_after() {
        let f = ErrorFacts {
            retry_after: Some(3.0),
            ..Default::default()
        };
        assert_eq!(
            classify(&f),
            Retryability::Retry {
                min_delay: Some(3.0)
            }
        );
    }
}
