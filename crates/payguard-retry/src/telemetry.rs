//! `tracing` events and `metrics` counters; each compiles to nothing
//! without its feature.
//!
//! | metric (counter) | labels |
//! |---|---|
//! | `payguard_retry_calls_total` | `policy`, `result` = `first_attempt` \| `after_retry` \| `failed` |
//! | `payguard_retry_retries_total` | `policy`, `outcome` |
//! | `payguard_retry_gave_up_total` | `policy`, `reason` |
//!
//! Counters are registered when the policy is built, so the hot path only
//! increments an existing handle (no allocation); build policies after
//! installing the metrics recorder.

use crate::error::StopReason;
use crate::policy::RetryPolicy;
use payguard_core::Outcome;
use std::time::Duration;

/// The policy's counter handles (empty without the `metrics` feature).
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    counters: Option<std::sync::Arc<Counters>>,
}

#[cfg(feature = "metrics")]
struct Counters {
    first_attempt: metrics::Counter,
    after_retry: metrics::Counter,
    failed: metrics::Counter,
    /// Indexed by [`outcome_index`].
    retries: [metrics::Counter; 6],
    /// Indexed by [`reason_index`].
    gave_up: [metrics::Counter; 5],
}

#[cfg(feature = "metrics")]
const OUTCOMES: [&str; 6] = [
    "success",
    "transient",
    "throttled",
    "timed_out",
    "ambiguous",
    "permanent",
];

#[cfg(feature = "metrics")]
const REASONS: [StopReason; 5] = [
    StopReason::Permanent,
    StopReason::AttemptsExhausted,
    StopReason::DeadlineExceeded,
    StopReason::BudgetExhausted,
    StopReason::NotIdempotent,
];

#[cfg(feature = "metrics")]
fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Success => 0,
        Outcome::Transient => 1,
        Outcome::Throttled { .. } => 2,
        Outcome::TimedOut => 3,
        Outcome::Ambiguous => 4,
        _ => 5,
    }
}

#[cfg(feature = "metrics")]
fn reason_index(reason: StopReason) -> usize {
    REASONS.iter().position(|r| *r == reason).unwrap_or(0)
}

impl Metrics {
    /// Registers the counters of a policy named `name`.
    #[allow(unused_variables)]
    pub(crate) fn register(name: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let calls = |result: &'static str| metrics::counter!("payguard_retry_calls_total", "policy" => name.to_owned(), "result" => result);
            let counters = Counters {
                first_attempt: calls("first_attempt"),
                after_retry: calls("after_retry"),
                failed: calls("failed"),
                retries: OUTCOMES.map(|outcome| {
                    metrics::counter!("payguard_retry_retries_total", "policy" => name.to_owned(), "outcome" => outcome)
                }),
                gave_up: REASONS.map(|reason| {
                    metrics::counter!("payguard_retry_gave_up_total", "policy" => name.to_owned(), "reason" => reason.as_str())
                }),
            };
            Self {
                counters: Some(std::sync::Arc::new(counters)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }
}

#[allow(unused_variables)]
pub(crate) fn retrying(policy: &RetryPolicy, attempt: u32, delay: Duration, outcome: Outcome) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        policy = %policy.name,
        attempt,
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        outcome = ?outcome,
        "retrying"
    );
    #[cfg(feature = "metrics")]
    if let Some(counters) = &policy.metrics.counters
        && let Some(counter) = counters.retries.get(outcome_index(outcome))
    {
        counter.increment(1);
    }
}

#[allow(unused_variables)]
pub(crate) fn gave_up(policy: &RetryPolicy, attempts: u32, reason: StopReason, outcome: Outcome) {
    #[cfg(feature = "tracing")]
    if reason == StopReason::Permanent {
        tracing::debug!(policy = %policy.name, attempts, reason = reason.as_str(), outcome = ?outcome, "not retrying a permanent failure");
    } else {
        tracing::warn!(policy = %policy.name, attempts, reason = reason.as_str(), outcome = ?outcome, "gave up retrying");
    }
    #[cfg(feature = "metrics")]
    if let Some(counters) = &policy.metrics.counters {
        counters.failed.increment(1);
        if let Some(counter) = counters.gave_up.get(reason_index(reason)) {
            counter.increment(1);
        }
    }
}

#[allow(unused_variables)]
#[inline]
pub(crate) fn succeeded(policy: &RetryPolicy, attempts: u32) {
    #[cfg(feature = "tracing")]
    if attempts > 1 {
        tracing::debug!(policy = %policy.name, attempts, "succeeded after retrying");
    }
    #[cfg(feature = "metrics")]
    if let Some(counters) = &policy.metrics.counters {
        if attempts > 1 {
            counters.after_retry.increment(1);
        } else {
            counters.first_attempt.increment(1);
        }
    }
}
