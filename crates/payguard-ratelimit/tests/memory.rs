//! The memory limiter under threads and hostile keys: exact counts when
//! many threads race one key, and memory that stays bounded when every
//! request brings a new key, without ever dropping a key that is being
//! limited.

#![allow(clippy::unwrap_used)]

use payguard_core::ManualClock;
use payguard_ratelimit::{MemoryLimiter, Quota};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[test]
fn racing_threads_get_exactly_the_burst() {
    let clock = ManualClock::new();
    let quota = Quota::per_hour(1).unwrap().with_burst(1000).unwrap();
    let limiter: Arc<MemoryLimiter<String>> = Arc::new(
        MemoryLimiter::builder(quota)
            .clock(Arc::new(clock))
            .build()
            .unwrap(),
    );
    let admitted = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            std::thread::spawn(move || {
                for _ in 0..500 {
                    if limiter.check("hot").is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(
        admitted.load(Ordering::Relaxed),
        1000,
        "4,000 tries, a burst of 1,000"
    );
}

#[test]
fn hostile_keys_cannot_grow_memory_nor_evict_a_limited_key() {
    let clock = ManualClock::new();
    let quota = Quota::per_minute(1).unwrap();
    let limiter: MemoryLimiter<String> = MemoryLimiter::builder(quota)
        .clock(Arc::new(clock.clone()))
        .max_keys(64 * 4)
        .build()
        .unwrap();
    assert!(limiter.check("victim-is-limited").is_allowed());
    assert!(!limiter.check("victim-is-limited").is_allowed());
    let mut refused = 0;
    for n in 0..10_000 {
        if !limiter.check(&format!("attacker-{n}")).is_allowed() {
            refused += 1;
        }
    }
    assert!(limiter.len() <= 64 * 4, "{} keys kept", limiter.len());
    assert!(refused > 0, "a full table refuses new keys");
    assert!(
        !limiter.check("victim-is-limited").is_allowed(),
        "the limited key was not evicted to make room"
    );
    // A minute later every key is idle again: new keys get room.
    clock.advance(Duration::from_secs(61));
    assert!(limiter.check("newcomer").is_allowed());
    assert_eq!(
        limiter.retain_busy(),
        1,
        "only the newcomer is still being limited"
    );
}
