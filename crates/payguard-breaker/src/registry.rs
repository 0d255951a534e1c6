//! One breaker per key (gateway, merchant, endpoint), bounded.

use crate::breaker::CircuitBreaker;
use crate::config::BreakerBuilder;
use crate::events::Snapshot;
use crate::state::State;
use payguard_core::Clock;
use payguard_core::ConfigError;
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
/// let registry = BreakerRegistry::builder(CircuitBreaker::builder().name("gateway"))
///     .max_breakers(10_000)
///     .idle_after(Duration::from_secs(600))
///     .build()?;
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "breaker registry is full: all {max_breakers} breakers are open, half-open or set by hand; raise max_breakers"
)]
pub struct RegistryFull {
    max_breakers: usize,
}

impl RegistryFull {
    /// The stable code `registry_full`.
    pub fn code(&self) -> &'static str {
        "registry_full"
    }
}

/// Builds a [`BreakerRegistry`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `max_breakers` | 10 000 |
/// | `idle_after` | 10 min |
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct RegistryBuilder {
    template: BreakerBuilder,
    max_breakers: usize,
    idle_after: Duration,
}

impl RegistryBuilder {
    /// At most this many breakers (at least 1).
    pub const fn max_breakers(mut self, max_breakers: usize) -> Self {
        self.max_breakers = max_breakers;
        self
    }

    /// A closed breaker unused for this long may be evicted.
    pub const fn idle_after(mut self, idle_after: Duration) -> Self {
        self.idle_after = idle_after;
        self
    }

    /// Checks the settings (the template's too) and builds the registry.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the template is invalid or `max_breakers` is 0.
    pub fn build<K>(self) -> Result<BreakerRegistry<K>, ConfigError> {
        self.template.validate()?;
        if self.max_breakers == 0 {
            return Err(ConfigError::new("max_breakers", "at least 1"));
        }
        let clock = Arc::clone(&self.template.clock);
        Ok(BreakerRegistry {
            origin: clock.now(),
            clock,
            template: self.template,
            max_breakers: self.max_breakers,
            idle_after: self.idle_after,
            breakers: RwLock::new(HashMap::new()),
        })
    }
}

impl BreakerRegistry<()> {
    /// A registry of breakers built from `template`, each named
    /// `"{template name}:{key}"`.
    pub fn builder(template: BreakerBuilder) -> RegistryBuilder {
        RegistryBuilder {
            template,
            max_breakers: 10_000,
            idle_after: Duration::from_secs(600),
        }
    }
}

impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Display,
{
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
    /// [`RegistryFull`] when the registry is full of breakers that must not
    /// be evicted.
    pub fn get(&self, key: &K) -> Result<CircuitBreaker, RegistryFull> {
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
            return Err(RegistryFull {
                max_breakers: self.max_breakers,
            });
        }
        let breaker = self
            .template
            .clone()
            .name(format!("{}:{key}", self.template.name))
            .build_checked();
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
