//! The memory limiter against a reference model: for any schedule of
//! requests (times and costs), it admits exactly what a plain,
//! single-threaded GCRA written from the definition admits, on a manual
//! clock; and no window admits more than the burst plus its length's
//! worth of intervals.

#![allow(clippy::unwrap_used)]

use payguard_core::ManualClock;
use payguard_ratelimit::{MemoryLimiter, Quota};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// GCRA from its definition, in nanoseconds since the start.
struct Model {
    interval: u128,
    tolerance: u128,
    tat: u128,
}

impl Model {
    fn admit(&mut self, now: u128, cost: u128) -> bool {
        let start = self.tat.max(now);
        let new_tat = start + cost * self.interval;
        if now + self.tolerance + self.interval < new_tat {
            return false;
        }
        self.tat = new_tat;
        true
    }
}

proptest! {
    #[test]
    fn the_limiter_admits_exactly_what_the_model_admits(
        count in 1u32..=1000,
        period_ms in 1u64..=60_000,
        burst in 1u32..=50,
        steps in prop::collection::vec((0u64..=2_000_000_000, 1u32..=4), 1..200),
    ) {
        let quota = Quota::new(count, Duration::from_millis(period_ms)).unwrap().with_burst(burst).unwrap();
        let clock = ManualClock::new();
        let limiter: MemoryLimiter<String> =
            MemoryLimiter::builder(quota).clock(Arc::new(clock.clone())).build().unwrap();
        let interval = quota.interval().as_nanos();
        let mut model = Model { interval, tolerance: interval * u128::from(burst - 1), tat: 0 };
        let mut now: u128 = 0;
        let mut admitted: Vec<(u128, u128)> = Vec::new();
        for (gap, cost) in steps {
            clock.advance(Duration::from_nanos(gap));
            now += u128::from(gap);
            let decided = limiter.check_n("key", cost);
            if cost > burst {
                prop_assert!(decided.is_err());
                continue;
            }
            let decision = decided.unwrap();
            prop_assert_eq!(decision.is_allowed(), model.admit(now, u128::from(cost)), "at {} ns, cost {}", now, cost);
            if decision.is_allowed() {
                admitted.push((now, u128::from(cost)));
            } else {
                prop_assert!(decision.retry_after() > Duration::ZERO);
            }
        }
        // No window holds more than burst + window / interval cells.
        for (index, (start, _)) in admitted.iter().enumerate() {
            let mut cells = 0;
            for (at, cost) in &admitted[index..] {
                cells += cost;
                let window = at - start;
                prop_assert!(cells <= u128::from(burst) + window / interval, "{} cells in {} ns", cells, window);
            }
        }
    }
}

#[test]
fn a_denied_request_waits_exactly_its_retry_after() {
    let clock = ManualClock::new();
    let quota: Quota = "10/s burst 2".parse().unwrap();
    let limiter: MemoryLimiter<String> = MemoryLimiter::builder(quota)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert!(limiter.check("k").is_allowed());
    assert!(limiter.check("k").is_allowed());
    let denied = limiter.check("k");
    assert!(!denied.is_allowed());
    clock.advance(denied.retry_after() - Duration::from_nanos(1));
    assert!(!limiter.check("k").is_allowed(), "a nanosecond early");
    clock.advance(Duration::from_nanos(1));
    assert!(limiter.check("k").is_allowed(), "on time");
}
