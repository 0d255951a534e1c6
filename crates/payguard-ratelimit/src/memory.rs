//! [`MemoryLimiter`]: one process's limits, keyed, bounded.

use crate::gcra::{Decision, InsufficientCapacity, decide};
use crate::{Quota, telemetry};
use hashbrown::HashTable;
use payguard_core::{Clock, ConfigError, SystemClock};
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// Keys and their states (theoretical arrival times).
type Table<K> = HashTable<(K, AtomicU64)>;
/// A part of the keys, with its own lock.
type Shard<K> = RwLock<Table<K>>;

/// A GCRA limit per key, in this process.
///
/// - A decision on a known key takes a shard's read lock (shared with
///   every other reader) and one compare-and-swap on the key's state: no
///   request waits for another's decision.
/// - Memory is bounded: at most [`max_keys`](MemoryLimiterBuilder::max_keys)
///   keys. When a shard is full, its idle keys (back at their full burst,
///   so indistinguishable from new ones) are dropped; a key that is being
///   limited is never dropped early. If every key of the shard is still
///   being limited, a new key is refused (its `retry_after` is when the
///   first of them goes idle) rather than let hostile keys grow memory.
/// - Time comes from the [`Clock`] (monotonic: a clock read never goes
///   backwards, so it cannot grant a burst).
///
/// ```
/// use payguard_ratelimit::{MemoryLimiter, Quota};
///
/// let limiter = MemoryLimiter::new(Quota::per_second(2)?);
/// assert!(limiter.check("tenant-a").is_allowed());
/// assert!(limiter.check("tenant-a").is_allowed());
/// assert!(!limiter.check("tenant-a").is_allowed());
/// assert!(limiter.check("tenant-b").is_allowed(), "each key has its own limit");
/// # Ok::<(), payguard_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct MemoryLimiter<K = String> {
    quota: Quota,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    shards: Box<[Shard<K>]>,
    max_keys_per_shard: usize,
    hasher: RandomState,
    name: String,
}

/// Builds a [`MemoryLimiter`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct MemoryLimiterBuilder {
    quota: Quota,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    name: String,
}

impl MemoryLimiterBuilder {
    /// The most keys kept at once (default 1,000,000; rounded up to a
    /// multiple of 64).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// The clock (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The name in metrics and logs (default `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max_keys` is zero.
    pub fn build<K>(self) -> Result<MemoryLimiter<K>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "at least 1"));
        }
        let mut limiter = MemoryLimiter::new(self.quota);
        limiter.epoch = self.clock.now();
        limiter.clock = self.clock;
        limiter.max_keys_per_shard = self.max_keys.div_ceil(SHARDS);
        limiter.name = self.name;
        Ok(limiter)
    }
}

impl MemoryLimiter {
    /// A limiter of `quota` per key with settings of your choosing; its key
    /// type is chosen by [`build`](MemoryLimiterBuilder::build).
    pub fn builder(quota: Quota) -> MemoryLimiterBuilder {
        MemoryLimiterBuilder {
            quota,
            clock: Arc::new(SystemClock),
            max_keys: 1_000_000,
            name: "default".to_owned(),
        }
    }
}

impl<K> MemoryLimiter<K> {
    /// A limiter of `quota` per key, up to a million keys, on the system
    /// clock.
    pub fn new(quota: Quota) -> Self {
        let builder = MemoryLimiter::builder(quota);
        let epoch = builder.clock.now();
        Self {
            quota,
            clock: builder.clock,
            epoch,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            max_keys_per_shard: builder.max_keys.div_ceil(SHARDS),
            hasher: RandomState::default(),
            name: builder.name,
        }
    }

    /// The quota each key gets.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Nanoseconds since the limiter was made, by its clock.
    #[inline]
    fn now(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Keys kept right now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).len()).sum()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K: Hash + Eq> MemoryLimiter<K> {
    /// Decides one request for `key`.
    pub fn check<Q>(&self, key: &Q) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // A burst is at least 1, so a request costing 1 always can pass.
        self.check_n(key, 1).unwrap_or_else(|impossible| {
            Decision::new(false, impossible.burst, 0, Duration::MAX, Duration::MAX)
        })
    }

    /// Decides a request costing `cost` for `key`; nothing is taken when
    /// it is refused.
    ///
    /// # Errors
    ///
    /// [`InsufficientCapacity`] when `cost` exceeds the burst: it could
    /// never pass.
    pub fn check_n<Q>(&self, key: &Q, cost: u32) -> Result<Decision, InsufficientCapacity>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let (hash, shard) = self.shard(key);
        // The read guard ends with this statement, before any write lock.
        let known = self.decide_known(&read(shard), hash, key, cost);
        let decision = match known {
            Some(decided) => decided?,
            None => self.decide_new(&mut write(shard), hash, key, cost)?,
        };
        telemetry::decided(&self.name, decision.is_allowed());
        Ok(decision)
    }

    /// The key's hash (computed once per decision) and its shard: chosen by
    /// bits 32 to 37, which the table itself does not use to place or tag
    /// entries (its low bits, and its top seven).
    #[inline]
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, &Shard<K>) {
        let hash = self.hasher.hash_one(key);
        let index = usize::try_from((hash >> 32) % SHARDS as u64).unwrap_or(0);
        #[allow(clippy::indexing_slicing)] // there are `SHARDS` shards and the index is below it
        (hash, &self.shards[index])
    }

    /// A decision on a key already kept: a compare-and-swap loop, since
    /// concurrent requests for the key may move its state meanwhile.
    #[inline]
    fn decide_known<Q>(
        &self,
        shard: &Table<K>,
        hash: u64,
        key: &Q,
        cost: u32,
    ) -> Option<Result<Decision, InsufficientCapacity>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (_, state) = shard.find(hash, |(kept, _)| kept.borrow() == key)?;
        let mut tat = state.load(Ordering::Acquire);
        Some(loop {
            let now = self.now();
            let (decision, next) = match decide(&self.quota, tat, now, cost) {
                Ok(decided) => decided,
                Err(error) => break Err(error),
            };
            let Some(next) = next else { break Ok(decision) };
            match state.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break Ok(decision),
                Err(moved) => tat = moved,
            }
        })
    }

    /// A decision on a key not kept yet, under the shard's write lock.
    fn decide_new<Q>(
        &self,
        shard: &mut Table<K>,
        hash: u64,
        key: &Q,
        cost: u32,
    ) -> Result<Decision, InsufficientCapacity>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Another request may have added it since the read lock was let go.
        if let Some(decided) = self.decide_known(shard, hash, key, cost) {
            return decided;
        }
        let now = self.now();
        let (decision, next) = decide(&self.quota, 0, now, cost)?;
        let Some(next) = next else {
            return Ok(decision);
        };
        if shard.len() >= self.max_keys_per_shard {
            let mut first_idle = u64::MAX;
            shard.retain(|(_, state)| {
                let tat = *state.get_mut();
                first_idle = first_idle.min(tat);
                tat > now
            });
            if shard.len() >= self.max_keys_per_shard {
                telemetry::full(&self.name);
                let wait = Duration::from_nanos(first_idle.saturating_sub(now));
                return Ok(Decision::new(false, self.quota.burst(), 0, wait, wait));
            }
        }
        let hasher = &self.hasher;
        shard.insert_unique(hash, (key.to_owned(), AtomicU64::new(next)), |(kept, _)| {
            hasher.hash_one(kept)
        });
        Ok(decision)
    }

    /// Drops the keys back at their full burst (they are the same as new
    /// ones); answers how many are left. Not needed for correctness or to
    /// bound memory (a full shard does it itself), only to give memory
    /// back early.
    pub fn retain_busy(&self) -> usize {
        let now = self.now();
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = write(shard);
                shard.retain(|(_, state)| *state.get_mut() > now);
                shard.len()
            })
            .sum()
    }
}
