#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod concurrency;
mod gcra;
mod memory;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod telemetry;
#[cfg(feature = "tower")]
mod tower;

pub use concurrency::{ConcurrencyLimiter, ConcurrencyPermit, LoadShedder, Priority, ShedPermit};
pub use gcra::{Decision, InsufficientCapacity};
pub use memory::{MemoryLimiter, MemoryLimiterBuilder};
pub use quota::{ParseQuotaError, Quota};
#[cfg(feature = "redis")]
pub use redis::{Fallback, RedisLimiter, RedisLimiterBuilder};
#[cfg(feature = "tower")]
pub use tower::{
    KeyFn, KeySource, RATELIMIT, RATELIMIT_POLICY, RateLimitLayer, RateLimitLayerBuilder,
    RateLimitService, TrustedProxies,
};

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as [`RateLimiter`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a limiter could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The request costs more than the burst: it can never pass.
    #[error(transparent)]
    InsufficientCapacity(#[from] InsufficientCapacity),
    /// The shared store failed and the fallback is to refuse.
    #[error("the rate limit store is unavailable: {0}")]
    Unavailable(String),
}

/// Anything that decides requests by key: [`MemoryLimiter`],
/// [`RedisLimiter`], or your own.
pub trait RateLimiter: Send + Sync {
    /// The quota each key gets, for the `RateLimit-Policy` header.
    fn quota(&self) -> Quota;

    /// Decides a request costing `cost` for `key`.
    fn check<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, RateLimitError>>;
}

impl RateLimiter for MemoryLimiter<String> {
    fn quota(&self) -> Quota {
        MemoryLimiter::quota(self)
    }

    fn check<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
    ) -> BoxFuture<'a, Result<Decision, RateLimitError>> {
        let decided = self.check_n(key, cost).map_err(RateLimitError::from);
        Box::pin(std::future::ready(decided))
    }
}

// `Arc<dyn RateLimiter>` must work.
const _: fn(&dyn RateLimiter) = |_| {};
