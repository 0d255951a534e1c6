//! Delay shapes ([`Backoff`]), how they are randomised ([`Jitter`]) and
//! where the randomness comes from ([`RandomSource`]).

use payguard_core::RandomSource;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The shape of the delays between attempts, before jitter and the policy's
/// `max_delay` cap.
///
/// ```
/// use payguard_retry::Backoff;
/// use std::time::Duration;
///
/// // 100 ms, 200 ms, 400 ms, ... (capped by the policy's `max_delay`)
/// let exponential = Backoff::exponential(Duration::from_millis(100), 2.0);
/// // 250 ms every time
/// let constant = Backoff::constant(Duration::from_millis(250));
/// // exactly these, then the last one again
/// let scripted = Backoff::schedule([Duration::from_millis(10), Duration::from_secs(1)]);
/// # let _ = (exponential, constant, scripted);
/// ```
#[derive(Clone)]
pub struct Backoff {
    kind: BackoffKind,
}

#[derive(Clone)]
enum BackoffKind {
    Exponential { base: Duration, factor: f64 },
    Constant(Duration),
    Schedule(Arc<[Duration]>),
}

impl Backoff {
    /// `base · factor^n` before retry `n + 1` (`n` from 0). `factor` must be
    /// finite and at least 1, checked when the policy is built.
    pub const fn exponential(base: Duration, factor: f64) -> Self {
        Self {
            kind: BackoffKind::Exponential { base, factor },
        }
    }

    /// The same delay before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Self {
            kind: BackoffKind::Constant(delay),
        }
    }

    /// The given delays in order; once they run out, the last one repeats.
    /// An empty schedule is rejected when the policy is built.
    pub fn schedule(delays: impl IntoIterator<Item = Duration>) -> Self {
        Self {
            kind: BackoffKind::Schedule(delays.into_iter().collect()),
        }
    }

    /// The delay before retry `retry` (0 for the first retry), uncapped.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        match &self.kind {
            BackoffKind::Exponential { base, factor } => {
                let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
                let secs = base.as_secs_f64() * factor.powi(exponent);
                // Infinite once the exponent overflows; the cap applies later.
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
            BackoffKind::Constant(delay) => *delay,
            BackoffKind::Schedule(delays) => {
                let index = usize::try_from(retry).unwrap_or(usize::MAX);
                delays
                    .get(index)
                    .or_else(|| delays.last())
                    .copied()
                    .unwrap_or(Duration::ZERO)
            }
        }
    }

    /// The smallest delay, the floor of decorrelated jitter.
    #[inline]
    pub(crate) fn base(&self) -> Duration {
        match &self.kind {
            BackoffKind::Exponential { base, .. } => *base,
            BackoffKind::Constant(delay) => *delay,
            BackoffKind::Schedule(delays) => delays.iter().min().copied().unwrap_or(Duration::ZERO),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), payguard_core::ConfigError> {
        match &self.kind {
            BackoffKind::Exponential { factor, .. } if !(factor.is_finite() && *factor >= 1.0) => {
                Err(payguard_core::ConfigError::new(
                    "backoff",
                    "an exponential factor that is a finite number of at least 1",
                ))
            }
            BackoffKind::Schedule(delays) if delays.is_empty() => Err(
                payguard_core::ConfigError::new("backoff", "a schedule of at least one delay"),
            ),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BackoffKind::Exponential { base, factor } => f
                .debug_struct("Exponential")
                .field("base", base)
                .field("factor", factor)
                .finish(),
            BackoffKind::Constant(delay) => f.debug_tuple("Constant").field(delay).finish(),
            BackoffKind::Schedule(delays) => f.debug_tuple("Schedule").field(delays).finish(),
        }
    }
}

/// How a computed delay `d` (already capped at `max_delay`) is randomised so
/// that clients that failed together do not retry together. No kind ever
/// exceeds the cap.
///
/// | kind | delay |
/// |---|---|
/// | `None` | `d` |
/// | `Full` (default) | uniform in `[0, d]` |
/// | `Equal` | `d/2` + uniform in `[0, d/2]` |
/// | `Decorrelated` | `min(cap, uniform in [base, 3 · previous])`, AWS's formula |
///
/// The formulas are those of the AWS Architecture Blog's "Exponential Backoff
/// And Jitter"; `benches/retry_contention.rs` re-runs its simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomisation.
    None,
    /// Uniform between zero and the delay.
    #[default]
    Full,
    /// Half the delay, plus uniform up to the other half.
    Equal,
    /// Uniform between the base delay and three times the previous delay.
    Decorrelated,
}

impl Jitter {
    /// Applies this jitter. `previous` is the last delay actually slept
    /// (the base before the first retry).
    pub(crate) fn apply(
        self,
        delay: Duration,
        previous: Duration,
        base: Duration,
        cap: Duration,
        random: &dyn RandomSource,
    ) -> Duration {
        match self {
            Jitter::None => delay,
            Jitter::Full => uniform(Duration::ZERO, delay, random),
            Jitter::Equal => {
                let half = delay / 2;
                half + uniform(Duration::ZERO, delay - half, random)
            }
            Jitter::Decorrelated => {
                let high = previous.saturating_mul(3).max(base);
                uniform(base, high, random).min(cap)
            }
        }
    }
}

/// A uniform draw in `[low, high]` at nanosecond resolution.
fn uniform(low: Duration, high: Duration, random: &dyn RandomSource) -> Duration {
    if high <= low {
        return low;
    }
    let span = u64::try_from((high - low).as_nanos()).unwrap_or(u64::MAX);
    // Lemire's multiply-shift: maps 64 random bits onto [0, span].
    let offset = (u128::from(random.next_u64()) * (u128::from(span) + 1)) >> 64;
    low + Duration::from_nanos(u64::try_from(offset).unwrap_or(span))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_is_base_times_factor_to_the_n() {
        let b = Backoff::exponential(100 * MS, 2.0);
        assert_eq!(b.delay(0), 100 * MS);
        assert_eq!(b.delay(1), 200 * MS);
        assert_eq!(b.delay(4), 1600 * MS);
        // Far past overflow: saturates, never panics.
        assert_eq!(b.delay(u32::MAX), Duration::MAX);
    }

    #[test]
    fn schedule_repeats_its_last_delay() {
        let b = Backoff::schedule([MS, 5 * MS]);
        assert_eq!(b.delay(0), MS);
        assert_eq!(b.delay(1), 5 * MS);
        assert_eq!(b.delay(1000), 5 * MS);
        assert_eq!(b.base(), MS);
    }

    #[test]
    fn uniform_hits_both_ends_and_stays_inside() {
        struct Fixed(u64);
        impl fmt::Debug for Fixed {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Fixed")
            }
        }
        impl RandomSource for Fixed {
            fn next_u64(&self) -> u64 {
                self.0
            }
        }
        assert_eq!(uniform(MS, 3 * MS, &Fixed(0)), MS);
        assert_eq!(uniform(MS, 3 * MS, &Fixed(u64::MAX)), 3 * MS);
        assert_eq!(uniform(3 * MS, MS, &Fixed(u64::MAX)), 3 * MS);
        assert_eq!(
            uniform(Duration::ZERO, Duration::MAX, &Fixed(u64::MAX)),
            Duration::from_nanos(u64::MAX)
        );
    }
}
