//! `tracing` events and `metrics` counters; each compiles to nothing
//! without its feature (`tracing` is on by default, `metrics` is not).
//!
//! | metric (counter) | labels |
//! |---|---|
//! | `payguard_ratelimit_decisions_total` | `limiter`, `outcome` = `allowed` \| `limited` |
//! | `payguard_ratelimit_full_total` | `limiter` (a new key refused: every kept key is being limited) |
//! | `payguard_ratelimit_fallbacks_total` | `limiter`, `mode` = `open` \| `closed` \| `local` (the store failed) |
//! | `payguard_ratelimit_concurrency_rejected_total` | `limiter` |
//! | `payguard_ratelimit_shed_total` | `priority` = `low` \| `normal` \| `high` \| `critical` |
#![allow(unused_variables)] // every argument is used by one feature or the other

pub(crate) fn decided(limiter: &str, allowed: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "payguard_ratelimit_decisions_total",
        "limiter" => limiter.to_owned(),
        "outcome" => if allowed { "allowed" } else { "limited" }
    )
    .increment(1);
}

pub(crate) fn full(limiter: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_ratelimit_full_total", "limiter" => limiter.to_owned())
        .increment(1);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        limiter,
        "rate limiter full of limited keys; a new key was refused"
    );
}

#[cfg(feature = "redis")]
pub(crate) fn fallback(limiter: &str, mode: &'static str, error: &dyn std::fmt::Display) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "payguard_ratelimit_fallbacks_total",
        "limiter" => limiter.to_owned(),
        "mode" => mode
    )
    .increment(1);
    #[cfg(feature = "tracing")]
    tracing::warn!(limiter, mode, %error, "the rate limit store failed; the fallback decides");
}

pub(crate) fn concurrency_rejected(limiter: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_ratelimit_concurrency_rejected_total", "limiter" => limiter.to_owned())
        .increment(1);
}

pub(crate) fn shed(priority: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_ratelimit_shed_total", "priority" => priority).increment(1);
}
