#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attempt;
mod backoff;
mod budget;
mod call;
mod controller;
mod error;
#[cfg(feature = "reqwest")]
mod http;
mod policy;
mod telemetry;
#[cfg(feature = "tower")]
mod tower;

pub use attempt::{Attempt, Idempotency, RetryEvent};
pub use backoff::{Backoff, Jitter};
pub use budget::{RetryBudget, RetryBudgetBuilder, RetryBudgets};
pub use call::{Retry, RetryFuture};
pub use error::{RetryError, StopReason};
#[cfg(feature = "reqwest")]
pub use http::{HttpError, HttpRetry, RetryRequest};
pub use payguard_core::{
    Classify, ConfigError, FromError, IdempotencyKey, InvalidIdempotencyKey, Outcome, RandomSource,
    SplitMix64, from_error,
};
pub use policy::{RetryPolicy, RetryPolicyBuilder};
#[cfg(feature = "tower")]
pub use tower::{RetryLayer, RetryService};
