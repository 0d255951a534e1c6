//! Randomness, injected: jitter, nonces and spreads come from a
//! [`RandomSource`], so a test can replay a run from a seed.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where random bits come from. Shared by reference across threads (every
/// method takes `&self`), so implementations must be cheap and lock-free.
///
/// The default everywhere is [`SplitMix64`] seeded from [`entropy`]; give a
/// builder a seed (or your own source) to replay a run.
///
/// ```
/// use payguard_core::{RandomSource, SplitMix64};
///
/// let a = SplitMix64::new(7);
/// let b = SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!((0.0..1.0).contains(&a.next_f64()));
/// ```
pub trait RandomSource: fmt::Debug + Send + Sync {
    /// 64 uniformly distributed bits.
    fn next_u64(&self) -> u64;

    /// A uniform draw from `[0, 1)`.
    fn next_f64(&self) -> f64 {
        // The top 53 bits, exactly representable.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sebastiano Vigna's SplitMix64 over an atomic counter: lock-free, one
/// `fetch_add` per draw, reproducible from a seed for a given order of draws.
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from [`entropy`].
    pub fn from_entropy() -> Self {
        Self::new(entropy())
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// 64 unpredictable bits from the operating system, through the standard
/// library's randomly keyed `RandomState` (no extra dependency): for seeds
/// and nonces, never for keys.
#[allow(clippy::disallowed_methods)] // the one place allowed to draw from the OS
pub fn entropy() -> u64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(DRAWS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sources_repeat_and_entropy_differs() {
        let (a, b) = (SplitMix64::new(42), SplitMix64::new(42));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let unit = a.next_f64();
            assert!((0.0..1.0).contains(&unit));
            b.next_u64();
        }
        assert_ne!(entropy(), entropy());
    }
}
