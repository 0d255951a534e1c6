//! `tracing` events and `metrics` counters; each compiles to nothing
//! without its feature (`tracing` is on by default, `metrics` is not).
//! Events and labels carry the provider and the rejection's
//! [`code`](crate::VerifyError::code), never a header, a body or a secret.
//!
//! | metric (counter) | labels |
//! |---|---|
//! | `payguard_webhook_verifications_total` | `provider` ([`Provider::name`], or `generic`), `result` = `valid` or the rejection's code |
#![allow(unused_variables)] // every argument is used by one feature or the other

use crate::provider::Provider;

/// One verification: `rejected` is the error code, `None` when valid.
pub(crate) fn verified(provider: Option<Provider>, rejected: Option<&'static str>) {
    let provider = provider.map_or("generic", Provider::name);
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "payguard_webhook_verifications_total",
        "provider" => provider,
        "result" => rejected.unwrap_or("valid")
    )
    .increment(1);
    #[cfg(feature = "tracing")]
    if let Some(code) = rejected {
        tracing::debug!(provider, code, "webhook delivery rejected");
    }
}
