//! [`ConcurrencyLimiter`]: at most N requests in flight per key, and
//! [`LoadShedder`]: the least important requests turned away first when
//! the process is busy (Stripe's "concurrent requests limiter" and "worker
//! utilization load shedder").

use crate::telemetry;
use payguard_core::ConfigError;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// At most `max` requests in flight per key. A key takes memory only
/// while it has a request in flight, so hostile keys cannot grow it beyond
/// the requests the process is serving.
///
/// ```
/// use payguard_ratelimit::ConcurrencyLimiter;
/// use std::sync::Arc;
///
/// let limiter = Arc::new(ConcurrencyLimiter::new(2)?);
/// let first = limiter.try_acquire("acme".to_owned()).expect("room");
/// let _second = limiter.try_acquire("acme".to_owned()).expect("room");
/// assert!(limiter.try_acquire("acme".to_owned()).is_none(), "two in flight");
/// drop(first);
/// assert!(limiter.try_acquire("acme".to_owned()).is_some(), "one finished");
/// # Ok::<(), payguard_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct ConcurrencyLimiter<K = String> {
    max: u32,
    in_flight: Mutex<HashMap<K, u32>>,
    name: String,
}

impl<K: Hash + Eq + Clone> ConcurrencyLimiter<K> {
    /// A limiter allowing `max` requests in flight per key.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is zero.
    pub fn new(max: u32) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new("max", "at least 1"));
        }
        Ok(Self {
            max,
            in_flight: Mutex::default(),
            name: "default".to_owned(),
        })
    }

    /// This limiter named `name` in metrics and logs.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<K, u32>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit for one more request of `key`, held until dropped; `None`
    /// when `key` already has `max` in flight.
    pub fn try_acquire(self: &Arc<Self>, key: K) -> Option<ConcurrencyPermit<K>> {
        let mut counts = self.counts();
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            drop(counts);
            telemetry::concurrency_rejected(&self.name);
            return None;
        }
        *count += 1;
        Some(ConcurrencyPermit {
            limiter: Arc::clone(self),
            key,
        })
    }

    /// Requests of `key` in flight.
    pub fn in_flight(&self, key: &K) -> u32 {
        self.counts().get(key).copied().unwrap_or(0)
    }

    /// Keys with a request in flight.
    pub fn keys(&self) -> usize {
        self.counts().len()
    }
}

/// One request in flight under a [`ConcurrencyLimiter`]; dropping it (the
/// request ended, however it ended) gives the slot back.
#[derive(Debug)]
pub struct ConcurrencyPermit<K: Hash + Eq + Clone = String> {
    limiter: Arc<ConcurrencyLimiter<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for ConcurrencyPermit<K> {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// How much a request matters when the process is busy. Ordered: `Low`
/// is shed first, `Critical` last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Shed first: reports, exports, anything a client can do later.
    Low,
    /// Most reads.
    Normal,
    /// Writes customers wait on (a booking, a payment).
    High,
    /// Never shed before the process is full: webhooks that move money,
    /// health checks.
    Critical,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Self::Low => 0,
            Self::Normal => 1,
            Self::High => 2,
            Self::Critical => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Turns requests away by priority when too many are in flight in this
/// process: each priority may fill the process up to its share of
/// `capacity` (by default `Low` 50%, `Normal` 75%, `High` 90%, `Critical`
/// 100%), so as load grows the least important requests are refused
/// first and the most important still find room.
///
/// ```
/// use payguard_ratelimit::{LoadShedder, Priority};
/// use std::sync::Arc;
///
/// let shedder = Arc::new(LoadShedder::new(4)?);
/// let _reports: Vec<_> = (0..2).filter_map(|_| shedder.try_enter(Priority::Low)).collect();
/// assert!(shedder.try_enter(Priority::Low).is_none(), "low fills half");
/// assert!(shedder.try_enter(Priority::Critical).is_some(), "critical still gets in");
/// # Ok::<(), payguard_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct LoadShedder {
    in_flight: AtomicU32,
    /// Per priority, how many may be in flight when it is admitted.
    limits: [u32; 4],
}

impl LoadShedder {
    /// A shedder for a process that serves `capacity` requests at once,
    /// with the default shares.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `capacity` is zero.
    pub fn new(capacity: u32) -> Result<Self, ConfigError> {
        Self::with_shares(capacity, [0.5, 0.75, 0.9, 1.0])
    }

    /// A shedder with `shares` of `capacity` for `Low`, `Normal`, `High`
    /// and `Critical`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `capacity` is zero, or the shares are not
    /// between 0 and 1 and non-decreasing.
    pub fn with_shares(capacity: u32, shares: [f64; 4]) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new("capacity", "at least 1"));
        }
        let ordered = shares.is_sorted();
        if !ordered || shares.iter().any(|share| !(0.0..=1.0).contains(share)) {
            return Err(ConfigError::new(
                "shares",
                "between 0 and 1, non-decreasing from Low to Critical",
            ));
        }
        let limit = |share: f64| {
            let slots = (f64::from(capacity) * share).floor();
            // `share` is at most 1, so `slots` fits in a u32.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let slots = slots as u32;
            slots
        };
        Ok(Self {
            in_flight: AtomicU32::new(0),
            limits: shares.map(limit),
        })
    }

    /// A permit for one request of `priority`, held until dropped; `None`
    /// when that priority's share of the process is in use.
    pub fn try_enter(self: &Arc<Self>, priority: Priority) -> Option<ShedPermit> {
        let limit = self.limits.get(priority.index()).copied().unwrap_or(0);
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current < limit).then_some(current + 1)
            })
            .is_ok();
        if !admitted {
            telemetry::shed(priority.label());
            return None;
        }
        Some(ShedPermit {
            shedder: Arc::clone(self),
        })
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// One request in flight under a [`LoadShedder`].
#[derive(Debug)]
pub struct ShedPermit {
    shedder: Arc<LoadShedder>,
}

impl Drop for ShedPermit {
    fn drop(&mut self) {
        self.shedder.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_counted_apart_and_forgotten_when_idle() {
        let limiter = Arc::new(ConcurrencyLimiter::<String>::new(1).unwrap());
        let a = limiter.try_acquire("a".to_owned()).unwrap();
        assert!(limiter.try_acquire("a".to_owned()).is_none());
        let b = limiter.try_acquire("b".to_owned()).unwrap();
        assert_eq!((limiter.in_flight(&"a".to_owned()), limiter.keys()), (1, 2));
        drop(a);
        drop(b);
        assert_eq!(limiter.keys(), 0, "no memory for idle keys");
        assert!(ConcurrencyLimiter::<String>::new(0).is_err());
    }

    #[test]
    fn the_least_important_are_shed_first() {
        let shedder = Arc::new(LoadShedder::new(10).unwrap());
        let mut held = Vec::new();
        let mut admit = |priority, times: usize| {
            let mut admitted = 0;
            for _ in 0..times {
                if let Some(permit) = shedder.try_enter(priority) {
                    held.push(permit);
                    admitted += 1;
                }
            }
            admitted
        };
        assert_eq!(admit(Priority::Low, 10), 5);
        assert_eq!(admit(Priority::Normal, 10), 2);
        assert_eq!(admit(Priority::High, 10), 2);
        assert_eq!(admit(Priority::Critical, 10), 1);
        assert_eq!(admit(Priority::Low, 1), 0);
        drop(held);
        assert_eq!(shedder.in_flight(), 0);
        assert!(LoadShedder::with_shares(10, [0.9, 0.5, 1.0, 1.0]).is_err());
    }
}
