//! `tracing` events and `metrics` counters; each compiles to nothing
//! without its feature (`tracing` is on by default, `metrics` is not).
//!
//! | metric (counter) | labels |
//! |---|---|
//! | `payguard_idempotency_requests_total` | `outcome` = `executed` \| `replayed` \| `passed_through` \| `key_in_use` \| `key_mismatch` \| `invalid_key` \| `request_too_large` \| `store_unavailable` \| `lease_lost` \| `handler_panicked` |
//! | `payguard_idempotency_reaped_total` | |
#![allow(unused_variables)] // every argument is used by one feature or the other

use std::fmt::Display;

/// What the layer did with a request (one of the documented outcomes).
pub(crate) fn request(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_idempotency_requests_total", "outcome" => outcome).increment(1);
}

pub(crate) fn store_unavailable(error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::error!(error = %error, "idempotency store unavailable; refusing the request");
}

pub(crate) fn handler_stopped(attempt: u32, reason: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        attempt,
        reason,
        "idempotency lease lost; the handler was stopped"
    );
}

pub(crate) fn renewal_failed(error: &dyn Display, attempt: u32) {
    #[cfg(feature = "tracing")]
    tracing::warn!(error = %error, attempt, "could not renew an idempotency lease; retrying until it runs out");
}

pub(crate) fn lost_before_completion(attempt: u32) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        attempt,
        "idempotency lease lost before completion; the response was not stored"
    );
}

pub(crate) fn completion_retried(error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::warn!(error = %error, "could not store an idempotent response yet; retrying while the lease holds");
}

pub(crate) fn completion_failed(error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::error!(error = %error, "could not store an idempotent response; the key stays claimed until its lease ends");
}

pub(crate) fn release_failed(error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::warn!(error = %error, "could not release an idempotency claim; it frees when its lease ends");
}

pub(crate) fn reaped(removed: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_idempotency_reaped_total").increment(removed);
}

pub(crate) fn reap_failed(error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::warn!(error = %error, "idempotency reaper could not reap");
}
