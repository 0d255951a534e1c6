//! The per-key registry: bounded, and open breakers survive eviction.

#![allow(clippy::unwrap_used)] // test helpers

use payguard_breaker::{BreakerRegistry, CircuitBreaker, FailureModel, State};
use payguard_core::{ManualClock, Outcome};
use std::sync::Arc;
use std::time::Duration;

fn registry(clock: &ManualClock, max: usize) -> BreakerRegistry<String> {
    BreakerRegistry::builder(
        CircuitBreaker::builder()
            .name("merchant")
            .clock(Arc::new(clock.clone()))
            .failure_model(FailureModel::consecutive_failures(1)),
    )
    .max_breakers(max)
    .idle_after(Duration::from_secs(60))
    .build()
    .unwrap()
}

#[test]
fn same_key_same_breaker() {
    let clock = ManualClock::new();
    let registry = registry(&clock, 10);
    let a = registry.get(&"m1".to_string()).unwrap();
    a.try_acquire().unwrap().record(Outcome::Transient);
    assert_eq!(
        registry.get(&"m1".to_string()).unwrap().state(),
        State::Open
    );
    assert_eq!(
        registry.get(&"m2".to_string()).unwrap().state(),
        State::Closed
    );
    assert_eq!(a.name(), "merchant:m1");
}

#[test]
fn the_bound_is_respected_and_open_breakers_are_never_evicted() {
    let clock = ManualClock::new();
    let registry = registry(&clock, 3);
    let open = registry.get(&"open".to_string()).unwrap();
    open.try_acquire().unwrap().record(Outcome::Transient);
    for n in 0..100 {
        clock.advance(Duration::from_secs(1));
        registry.get(&format!("closed-{n}")).unwrap();
        assert!(registry.len() <= 3);
    }
    let keys: Vec<String> = registry.snapshots().into_iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&"open".to_string()), "{keys:?}");
    // The open breaker is the same one, still open.
    assert_eq!(
        registry.get(&"open".to_string()).unwrap().state(),
        State::Open
    );
}

#[test]
fn full_of_open_breakers_refuses_new_keys() {
    let clock = ManualClock::new();
    let registry = registry(&clock, 2);
    for key in ["a", "b"] {
        registry
            .get(&key.to_string())
            .unwrap()
            .try_acquire()
            .unwrap()
            .record(Outcome::Transient);
    }
    let error = registry.get(&"c".to_string()).unwrap_err();
    assert!(error.to_string().contains("raise max_breakers"));
}

#[test]
fn idle_closed_breakers_are_evicted() {
    let clock = ManualClock::new();
    let registry = registry(&clock, 100);
    registry.get(&"idle".to_string()).unwrap();
    let open = registry.get(&"open-idle".to_string()).unwrap();
    open.try_acquire().unwrap().record(Outcome::Transient);
    clock.advance(Duration::from_secs(30));
    registry.get(&"busy".to_string()).unwrap();
    clock.advance(Duration::from_secs(31));
    assert_eq!(registry.evict_idle(), 1);
    let mut keys: Vec<String> = registry.snapshots().into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(keys, ["busy", "open-idle"]);
}
