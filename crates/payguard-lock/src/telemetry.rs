//! `tracing` events and `metrics` counters; each compiles to nothing
//! without its feature (`tracing` is on by default, `metrics` is not).
//!
//! | metric (counter) | labels |
//! |---|---|
//! | `payguard_lock_acquired_total` | `lock`, `strategy` |
//! | `payguard_lock_busy_total` | `lock`, `strategy` |
//! | `payguard_lock_lost_total` | `lock`, `strategy` |
//! | `payguard_lock_job_runs_total` | `job`, `outcome` = `ok` \| `failed` \| `lost` |
//! | `payguard_lock_job_skipped_total` | `job` |
#![allow(unused_variables)] // every argument is used by one feature or the other

use crate::FencingToken;
use std::fmt::Display;

pub(crate) fn acquired(lock: &str, token: FencingToken, strategy: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_lock_acquired_total", "lock" => lock.to_owned(), "strategy" => strategy)
        .increment(1);
    #[cfg(feature = "tracing")]
    tracing::debug!(lock, token = token.get(), strategy, "lock acquired");
}

pub(crate) fn busy(lock: &str, strategy: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_lock_busy_total", "lock" => lock.to_owned(), "strategy" => strategy)
        .increment(1);
}

pub(crate) fn lost(lock: &str, token: FencingToken, strategy: &'static str, reason: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(lock, token = token.get(), strategy, reason, "lock lost");
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_lock_lost_total", "lock" => lock.to_owned(), "strategy" => strategy)
        .increment(1);
}

pub(crate) fn renewal_failed(lock: &str, error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::warn!(lock, error = %error, "lock renewal failed; retrying until the deadline");
}

pub(crate) fn release_failed(lock: &str, error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::debug!(lock, error = %error, "releasing a lock failed; its lease ends on its own");
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // release notices are PostgreSQL's
pub(crate) fn not_listening(error: &dyn Display) {
    #[cfg(feature = "tracing")]
    tracing::debug!(error = %error, "not listening for lock releases; waiters poll");
}

pub(crate) fn job_skipped(job: &str, why: &dyn Display, busy: bool) {
    #[cfg(feature = "tracing")]
    if busy {
        tracing::info!(job, holder = %why, "job skipped: another instance holds its lock");
    } else {
        tracing::warn!(job, error = %why, "job skipped: could not take its lock");
    }
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_lock_job_skipped_total", "job" => job.to_owned()).increment(1);
}

pub(crate) fn job_ran(
    job: &str,
    token: FencingToken,
    outcome: &'static str,
    error: Option<&dyn Display>,
) {
    #[cfg(feature = "tracing")]
    match (outcome, error) {
        ("lost", _) => tracing::warn!(job, token = token.get(), "job stopped: its lock was lost"),
        (_, Some(error)) => tracing::warn!(job, token = token.get(), error = %error, "job failed"),
        _ => {}
    }
    #[cfg(feature = "metrics")]
    metrics::counter!("payguard_lock_job_runs_total", "job" => job.to_owned(), "outcome" => outcome)
        .increment(1);
}
