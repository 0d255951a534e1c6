#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use payguard_core::{Classify, Clock, HttpClassifier, Outcome, RetryAfter, SystemClock};

/// Retries with jittered backoff, `Retry-After`, budgets, deadlines and an
/// idempotency gate (`payguard-retry`).
#[cfg(feature = "retry")]
pub use payguard_retry as retry;

/// Circuit breakers that understand payment failures (`payguard-breaker`).
#[cfg(feature = "breaker")]
pub use payguard_breaker as breaker;

/// Webhook signature verification for payment providers (`payguard-webhook`).
#[cfg(feature = "webhook")]
pub use payguard_webhook as webhook;

/// PII and secret redaction for text, JSON, headers and `tracing`
/// (`payguard-redact`).
#[cfg(feature = "redact")]
pub use payguard_redact as redact;

/// Exactly-once effects for HTTP requests and webhook events: a fenced
/// idempotency store and `Idempotency-Key` middleware
/// (`payguard-idempotency`).
#[cfg(feature = "idempotency")]
pub use payguard_idempotency as idempotency;

/// A job lock for a fleet: PostgreSQL leases with fencing tokens,
/// heartbeats and a scheduled job runner (`payguard-lock`).
#[cfg(feature = "lock")]
pub use payguard_lock as lock;

/// Rate limits per key that hold across a fleet: GCRA in memory or Redis,
/// and a `tower` layer with the `RateLimit` headers (`payguard-ratelimit`).
#[cfg(feature = "ratelimit")]
pub use payguard_ratelimit as ratelimit;
