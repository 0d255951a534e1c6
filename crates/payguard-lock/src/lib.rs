#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "postgres")]
mod advisory;
#[cfg(feature = "test-util")]
pub mod conformance;
mod job;
mod locker;
mod memory;
mod owner;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod strategy;
mod telemetry;
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
// the stores' clock
mod time;

#[cfg(feature = "postgres")]
pub use advisory::{PgSessionLock, advisory_key};
pub use job::{JobRun, ScheduledJob, ScheduledJobBuilder};
pub use locker::{
    Acquisition, LockGuard, LockOptions, LockOptionsBuilder, Locker, describe_holder,
};
pub use memory::MemoryLock;
pub use owner::{Owner, ProcessId};
pub use payguard_core::{ConfigError, FencingToken};
#[cfg(feature = "postgres")]
pub use postgres::{Fence, PgLeaseLock, intent_reference};
#[cfg(feature = "redis")]
pub use redis::{RedisLock, Redlock, RedlockBuilder};
pub use strategy::{
    AcquireAnswer, BoxFuture, Grant, LeaseTerms, LockError, LockInfo, LockStrategy, ReleaseNotices,
};
