//! The generic cell rate algorithm on one key's state: the theoretical
//! arrival time (TAT), in nanoseconds on the limiter's own time line.

use crate::Quota;
use std::time::Duration;

/// What a limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    retry_after: Duration,
    reset_after: Duration,
}

impl Decision {
    pub(crate) fn new(
        allowed: bool,
        limit: u32,
        remaining: u32,
        retry_after: Duration,
        reset_after: Duration,
    ) -> Self {
        Self {
            allowed,
            limit,
            remaining,
            retry_after,
            reset_after,
        }
    }

    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The burst: requests allowed at once from idle.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests that would be allowed right now, after this one.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// How long until this request would be allowed; zero when it was.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How long until the key is back to its full burst.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }
}

/// A request that can never pass: it costs more than the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a request costing {cost} can never pass a quota whose burst is {burst}")]
pub struct InsufficientCapacity {
    /// What the request costs.
    pub cost: u32,
    /// The quota's burst.
    pub burst: u32,
}

/// Decides a request costing `cost` at `now` for a key whose TAT is `tat`
/// (0 or any time at or before `now` means idle). Answers the decision and,
/// when allowed, the key's new TAT; a denial leaves the state as it was.
#[inline]
pub(crate) fn decide(
    quota: &Quota,
    tat: u64,
    now: u64,
    cost: u32,
) -> Result<(Decision, Option<u64>), InsufficientCapacity> {
    if cost > quota.burst() {
        return Err(InsufficientCapacity {
            cost,
            burst: quota.burst(),
        });
    }
    let interval = quota.interval_ns();
    let tolerance = quota.tolerance_ns();
    let start = tat.max(now);
    let new_tat = start.saturating_add(interval.saturating_mul(u64::from(cost)));
    let allow_at = new_tat.saturating_sub(tolerance.saturating_add(interval));
    if now < allow_at {
        let decision = Decision::new(
            false,
            quota.burst(),
            0,
            Duration::from_nanos(allow_at - now),
            Duration::from_nanos(start - now),
        );
        return Ok((decision, None));
    }
    let room = now
        .saturating_add(tolerance)
        .saturating_add(interval)
        .saturating_sub(new_tat);
    let remaining = u32::try_from(room / interval).unwrap_or(u32::MAX);
    let decision = Decision::new(
        true,
        quota.burst(),
        remaining,
        Duration::ZERO,
        Duration::from_nanos(new_tat - now),
    );
    Ok((decision, Some(new_tat)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// The worked example: 10/s with a burst of 5.
    #[test]
    fn ten_per_second_with_a_burst_of_five() {
        let quota = Quota::per_second(10).unwrap().with_burst(5).unwrap();
        let mut tat = 0;
        for remaining in (0..5).rev() {
            let (decision, next) = decide(&quota, tat, 0, 1).unwrap();
            assert!(decision.is_allowed());
            assert_eq!(decision.remaining(), remaining);
            tat = next.unwrap();
        }
        assert_eq!(tat, 500 * MS);
        let (denied, next) = decide(&quota, tat, 0, 1).unwrap();
        assert!(!denied.is_allowed() && next.is_none());
        assert_eq!(denied.retry_after(), Duration::from_millis(100));
        let (allowed, next) = decide(&quota, tat, 100 * MS, 1).unwrap();
        assert!(allowed.is_allowed());
        assert_eq!(next, Some(600 * MS));
        let (denied, _) = decide(&quota, 600 * MS, 150 * MS, 1).unwrap();
        assert_eq!(denied.retry_after(), Duration::from_millis(50));
        let (idle, next) = decide(&quota, 600 * MS, 1000 * MS, 1).unwrap();
        assert_eq!((idle.remaining(), next), (4, Some(1100 * MS)));
        assert_eq!(idle.reset_after(), Duration::from_millis(100));
    }

    #[test]
    fn a_request_larger_than_the_burst_never_passes() {
        let quota = Quota::per_second(10).unwrap().with_burst(3).unwrap();
        assert_eq!(
            decide(&quota, 0, 0, 4),
            Err(InsufficientCapacity { cost: 4, burst: 3 })
        );
        assert!(decide(&quota, 0, 0, 3).unwrap().0.is_allowed());
    }

    #[test]
    fn extreme_times_and_rates_saturate_instead_of_overflowing() {
        let quota = Quota::new(u32::MAX, Duration::from_secs(366 * 86_400)).unwrap();
        let (decision, next) = decide(&quota, u64::MAX - 1, u64::MAX, u32::MAX).unwrap();
        assert!(decision.is_allowed());
        assert_eq!(next, Some(u64::MAX));
        let slow = Quota::new(1, Duration::from_secs(366 * 86_400)).unwrap();
        let (denied, _) = decide(&slow, u64::MAX, 0, 1).unwrap();
        assert!(!denied.is_allowed());
    }
}
