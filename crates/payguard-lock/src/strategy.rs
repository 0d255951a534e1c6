//! The strategy contract: how a lock is taken, kept, given back and shown.

use crate::owner::Owner;
use payguard_core::FencingToken;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// A boxed future, so that [`LockStrategy`] is object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an acquisition asks for: made by
/// [`LockOptions::terms`](crate::LockOptions::terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseTerms {
    /// How long the lease lasts unless renewed.
    pub ttl: Duration,
    /// The lock stays taken at least this long after acquisition, even if
    /// released sooner (ShedLock's `lockAtLeastFor`): a job that finishes in
    /// a second does not run again on another instance whose clock or
    /// schedule is a little behind.
    pub at_least: Duration,
    /// Renewals never extend the lease past this long after acquisition
    /// (ShedLock's `lockAtMostFor`): a stuck job cannot hold the lock
    /// forever.
    pub at_most: Option<Duration>,
}

/// A lease held: what renew and release need.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The lock name.
    pub name: String,
    /// This acquisition's owner.
    pub owner: Owner,
    /// This acquisition's fencing token.
    pub token: FencingToken,
    /// How long the lease has left, as the store judged it when granting.
    pub remaining: Duration,
}

impl Grant {
    /// `name` granted to `owner` with fencing `token`, `remaining` left as
    /// the store judged it: for implementations of [`LockStrategy`].
    pub fn new(
        name: impl Into<String>,
        owner: Owner,
        token: FencingToken,
        remaining: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            owner,
            token,
            remaining,
        }
    }
}

/// The answer to an acquisition attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireAnswer {
    /// Yours.
    Acquired(Grant),
    /// Someone holds it; here is what the store knows of them.
    Busy(LockInfo),
}

/// A lock as a status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock name.
    pub name: String,
    /// The holder, if the lock is held (`<process id>:<nonce>`).
    pub owner: Option<String>,
    /// The latest fencing token issued for this name, if known.
    pub token: Option<FencingToken>,
    /// When the lease ends (or ended), by the store's clock, if it has one.
    pub expires_at: Option<SystemTime>,
    /// How long until it ends, by the store's clock (zero if it has).
    pub expires_in: Option<Duration>,
    /// The holder's host name, for people (never used to decide).
    pub host: Option<String>,
    /// The holder's process id on its host, for people.
    pub pid: Option<u32>,
}

impl LockInfo {
    /// What is known of `name`: nothing yet. For implementations of
    /// [`LockStrategy`], which fill in the rest with the setters.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Held by `owner` (`<process id>:<nonce>`).
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// The latest fencing token issued for the name.
    #[must_use]
    pub const fn token(mut self, token: FencingToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The lease ends at `at`, `left` from now, by the store's clock.
    #[must_use]
    pub const fn expires(mut self, at: SystemTime, left: Duration) -> Self {
        self.expires_at = Some(at);
        self.expires_in = Some(left);
        self
    }

    /// The holder runs as `pid` on `host`.
    #[must_use]
    pub fn holder_process(mut self, host: impl Into<String>, pid: u32) -> Self {
        self.host = Some(host.into());
        self.pid = Some(pid);
        self
    }
}

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lease is no longer this owner's: it expired, was taken over, or
    /// was released. Nothing was changed.
    #[error("the lock {name:?} is no longer held by this owner")]
    Lost {
        /// The lock name.
        name: String,
    },
    /// Waiting for the lock took longer than allowed.
    #[error("timed out waiting for the lock {name:?} (held by {holder})")]
    Timeout {
        /// The lock name.
        name: String,
        /// The holder when we gave up, as `owner (host pid)` or `unknown`.
        holder: String,
    },
    /// The strategy cannot run safely here (say, a session advisory lock
    /// behind a transaction-pooling proxy).
    #[error("this lock strategy cannot run here: {0}")]
    Unsupported(String),
    /// The store cannot be reached or failed. The caller must assume it
    /// does not hold the lock.
    #[error("the lock store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl LockError {
    /// A stable code: `lost`, `timeout`, `unsupported` or `unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            LockError::Lost { .. } => "lost",
            LockError::Timeout { .. } => "timeout",
            LockError::Unsupported(_) => "unsupported",
            LockError::Unavailable(_) => "unavailable",
        }
    }

    pub(crate) fn lost(name: &str) -> Self {
        Self::Lost {
            name: name.to_owned(),
        }
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))] // used by the stores
    pub(crate) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

/// Where locks live. Every strategy in this crate passes the conformance
/// suite (`conformance`, feature `test-util`).
///
/// The contract:
/// - `try_acquire` succeeds only if the lock is free or its lease ended, by
///   the store's clock, and then issues a token larger than every earlier
///   one for the name.
/// - `renew` and `release` act only for the current owner and token of a
///   live lease (`release` also for an expired one nobody took), else
///   [`LockError::Lost`] and nothing changes: renewal never resurrects an
///   expired lease, and release never frees someone else's.
/// - `renew` answers how long the lease now has left, never past
///   `at_most` after acquisition; `release` keeps the lock taken until
///   `at_least` after acquisition.
pub trait LockStrategy: Send + Sync + std::fmt::Debug {
    /// A short name for logs and metrics (`pg-lease`, `redis`, ...).
    fn kind(&self) -> &'static str;

    /// Tries once to take `name` for `owner`.
    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>>;

    /// Renews the lease for `terms.ttl` from now (capped by `at_most`);
    /// answers how long it has left.
    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>>;

    /// Gives the lock up (keeping it taken until `at_least` after
    /// acquisition).
    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>>;

    /// Every lock the store knows, or just `name`.
    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>>;

    /// Releases as the store announces them, for waiters to wake on
    /// instead of polling; `None` (the default) where the store cannot
    /// announce them.
    fn release_notices(&self) -> Option<ReleaseNotices> {
        None
    }
}

/// Releases announced by a store ([`LockStrategy::release_notices`]).
#[derive(Debug)]
pub struct ReleaseNotices {
    receiver: broadcast::Receiver<Arc<str>>,
}

impl ReleaseNotices {
    /// Notices sent on the other end of `receiver`: lock names, or `""`
    /// when any lock may have been released (notices were missed).
    pub fn new(receiver: broadcast::Receiver<Arc<str>>) -> Self {
        Self { receiver }
    }

    /// Completes when `name` may have been released: a notice for it, or
    /// for any lock when notices were missed. Never completes once the
    /// store stopped announcing.
    pub async fn released(&mut self, name: &str) {
        loop {
            match self.receiver.recv().await {
                Ok(released) if released.is_empty() || *released == *name => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

// `Arc<dyn LockStrategy>` must work.
const _: fn(&dyn LockStrategy) = |_| {};

/// Milliseconds as a PostgreSQL/Redis integer, saturating.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))] // used by the stores
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The host name, for status displays only.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))] // used by the stores
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}
