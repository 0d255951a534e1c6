//! What each attempt is told, and whether it may be repeated.

use payguard_core::{IdempotencyKey, Outcome};
use std::time::Duration;

/// Whether an operation may be repeated after an outcome that may have taken
/// effect ([`Outcome::TimedOut`], [`Outcome::Ambiguous`]).
///
/// # Default
///
/// [`Idempotency::NotIdempotent`]: a call that may have moved money is not
/// repeated unless you say it is safe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Idempotency {
    /// Repeating may apply the operation twice. Only outcomes that certainly
    /// did not take effect ([`Outcome::Transient`], [`Outcome::Throttled`])
    /// are retried.
    #[default]
    NotIdempotent,
    /// Repeating is harmless (a read, a `PUT` of a whole resource).
    Idempotent,
    /// The operation carries this key, which the server uses to apply it at
    /// most once; every attempt is given the same key.
    Key(IdempotencyKey),
}

impl Idempotency {
    /// Whether `outcome` may be retried under this idempotency.
    pub(crate) fn allows_retry_after(&self, outcome: Outcome) -> bool {
        matches!(self, Idempotency::Idempotent | Idempotency::Key(_))
            || !outcome.may_have_taken_effect()
    }

    pub(crate) fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            Idempotency::Key(key) => Some(key),
            _ => None,
        }
    }
}

/// What the operation is told about the attempt it is making.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub(crate) number: u32,
    pub(crate) idempotency_key: Option<IdempotencyKey>,
    pub(crate) timeout: Option<Duration>,
}

impl Attempt {
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The call's idempotency key, the same on every attempt. Send it.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// How long this attempt has before it is cut off (the per-attempt
    /// timeout or what is left of the deadline), to propagate downstream.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Passed to the `notify` hook before each retry's sleep.
#[derive(Debug)]
pub struct RetryEvent<'a, E> {
    pub(crate) attempt: u32,
    pub(crate) delay: Duration,
    pub(crate) outcome: Outcome,
    pub(crate) error: Option<&'a E>,
}

impl<'a, E> RetryEvent<'a, E> {
    /// The attempt that failed (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How long the call sleeps before the next attempt.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How the failed attempt was classified.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The failed attempt's error; `None` when it was cut off by the
    /// attempt timeout.
    pub fn error(&self) -> Option<&'a E> {
        self.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255_bytes() {
        assert!(IdempotencyKey::new("a").is_ok());
        assert!(IdempotencyKey::new("a".repeat(255)).is_ok());
        assert!(IdempotencyKey::new("a".repeat(256)).is_err());
        assert!(IdempotencyKey::new("has space").is_err());
        assert!(IdempotencyKey::new("naïve").is_err());
        assert!(IdempotencyKey::new("line\nbreak").is_err());
    }

    #[test]
    fn gate() {
        let key = Idempotency::Key(IdempotencyKey::new("k").unwrap());
        for outcome in [Outcome::TimedOut, Outcome::Ambiguous] {
            assert!(!Idempotency::NotIdempotent.allows_retry_after(outcome));
            assert!(Idempotency::Idempotent.allows_retry_after(outcome));
            assert!(key.allows_retry_after(outcome));
        }
        for outcome in [Outcome::Transient, Outcome::Throttled { retry_after: None }] {
            assert!(Idempotency::NotIdempotent.allows_retry_after(outcome));
        }
    }
}
