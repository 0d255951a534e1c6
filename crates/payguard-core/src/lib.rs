#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod config;
mod key;
mod outcome;
mod random;
mod retry_after;
mod sql;
mod tenant;

#[cfg(feature = "test-util")]
pub use clock::ManualClock;
#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{Clock, SystemClock};
pub use config::ConfigError;
pub use key::{FencingToken, IdempotencyKey, InvalidIdempotencyKey};
pub use outcome::{Classify, FromError, HttpClassifier, Outcome, from_error};
pub use random::{RandomSource, SplitMix64, entropy};
pub use retry_after::RetryAfter;
pub use sql::SqlTimeouts;
pub use tenant::Tenant;
