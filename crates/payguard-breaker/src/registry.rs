//! One breaker per key (gateway, merchant, endpoint), bounded.

use crate::breaker::CircuitBreaker;
use crate::config::{BreakerBuilder, InvalidConfig};
use crate::events::Snapshot;
use crate::state::State;
use payguard_core::Clock;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Breakers by key, created on first use from one template, at most
/// `max_breakers` of them. When full, breakers idle for longer than
/// `idle_after` are evicted, then the least recently used, but only closed
/// ones: an open or half-open breaker (or one set by hand) is never evicted,
/// or its key would get a fresh, closed breaker and hammer a downstream that
/// is still failing.
///
/// ```
/// use payguard_breaker::{BreakerRegistry, CircuitBreaker};
/// use std::time::Duration;
///
/// let registry = BreakerRegistry::new(CircuitBreaker::builder().name("gateway"), 10_000, Duration::from_secs(600))?;
/// let paystack = registry.get(&"paystack".to_string())?;
/// assert_eq!(paystack.name(), "gateway:paystack");
/// assert_eq!(registry.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BreakerRegistry<K> {
    template: BreakerBuilder,
    max_breakers: usize,
    idle_after: Duration,
    origin: Instant,
    clock: Arc<dyn Clock>,
    breakers: RwLock<HashMap<K, Entry>>,
}

struct Entry {
    breaker: CircuitBreaker,
    /// ms since the registry's origin.
    last_used: AtomicU64,
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("template", &self.template)
            .field("max_breakers", &self.max_breakers)
            .field("idle_after", &self.idle_after)
            .finish_non_exhaustive()
    }
}

/// The registry holds `max_breakers` breakers that may not be evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFull {
    max_breakers: usize,
}

impl fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "breaker registry is full: all {} breakers are open, half-open or set by hand; raise max_breakers",
            self.max_breakers
        )
    }
}

impl std::error::Error for RegistryFull {}

/// Why [`BreakerRegistry::get`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// No breaker could be evicted to make room.
    Full(RegistryFull),
    /// The template's settings are invalid.
    Config(InvalidConfig),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Full(full) => full.fmt(f),
            RegistryError::Config(config) => config.fmt(f),
        }
    }
}

impl std::error::Error for RegistryError {}

impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// A registry of breakers built from `template` (each named
    /// `"{template name}:{key}"`).
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when the template is invalid or `max_breakers` is 0.
    pub fn new(
        template: BreakerBuilder,
        max_breakers: usize,
        idle_after: Duration,
    ) -> Result<Self, InvalidConfig> {
        template.build()?;
        if max_breakers == 0 {
            return Err(InvalidConfig::new("max_breakers", "at least 1"));
        }
        let clock = Arc::clone(&template.clock);
        Ok(Self {
            origin: clock.now(),
            clock,
            template,
            max_breakers,
            idle_after,
            breakers: RwLock::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(
            self.clock
                .now()
                .saturating_duration_since(self.origin)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    /// The breaker for `key`, created (and room made) if needed.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Full`] when the registry is full of breakers that
    /// must not be evicted.
    pub fn get(&self, key: &K) -> Result<CircuitBreaker, RegistryError> {
        let now = self.now_ms();
        if let Some(entry) = self.read().get(key) {
            entry.last_used.store(now, Ordering::Relaxed);
            return Ok(entry.breaker.clone());
        }
        let mut breakers = self
            .breakers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = breakers.get(key) {
            entry.last_used.store(now, Ordering::Relaxed);
            return Ok(entry.breaker.clone());
        }
        if breakers.len() >= self.max_breakers {
            self.evict(&mut breakers, now);
        }
        if breakers.len() >= self.max_breakers {
            return Err(RegistryError::Full(RegistryFull {
                max_breakers: self.max_breakers,
            }));
        }
        let breaker = self
            .template
            .clone()
            .name(format!("{}:{key}", self.template.name))
            .build()
            .map_err(RegistryError::Config)?;
        breakers.insert(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                last_used: AtomicU64::new(now),
            },
        );
        Ok(breaker)
    }

    /// Evicts closed breakers idle for longer than `idle_after`; returns how
    /// many went. Run it now and then to give memory back.
    pub fn evict_idle(&self) -> usize {
        let now = self.now_ms();
        let idle_ms = u64::try_from(self.idle_after.as_millis()).unwrap_or(u64::MAX);
        let mut breakers = self
            .breakers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = breakers.len();
        breakers.retain(|_, entry| {
            !(evictable(entry)
                && now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) > idle_ms)
        });
        before - breakers.len()
    }

    /// Makes room for one: idle closed breakers first, then the least
    /// recently used closed one.
    fn evict(&self, breakers: &mut HashMap<K, Entry>, now: u64) {
        let idle_ms = u64::try_from(self.idle_after.as_millis()).unwrap_or(u64::MAX);
        breakers.retain(|_, entry| {
            !(evictable(entry)
                && now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) > idle_ms)
        });
        if breakers.len() < self.max_breakers {
            return;
        }
        let oldest = breakers
            .iter()
            .filter(|(_, entry)| evictable(entry))
            .min_by_key(|(_, entry)| entry.last_used.load(Ordering::Relaxed))
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            breakers.remove(&key);
        }
    }

    /// How many breakers the registry holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every key with its breaker's snapshot, for health endpoints.
    pub fn snapshots(&self) -> Vec<(K, Snapshot)> {
        self.read()
            .iter()
            .map(|(key, entry)| (key.clone(), entry.breaker.snapshot()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, Entry>> {
        self.breakers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn evictable(entry: &Entry) -> bool {
    entry.breaker.state() == State::Closed
}
