//! Model checks of the half-open permit logic under every interleaving loom
//! explores. Run with:
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p payguard-breaker --test loom --release`

#![cfg(loom)]
#![allow(clippy::unwrap_used)] // test helpers

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use payguard_breaker::{CircuitBreaker, FailureModel, State};
use payguard_core::{ManualClock, Outcome};
use std::time::Duration;

fn half_open(probes: u32) -> CircuitBreaker {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .failure_model(FailureModel::consecutive_failures(1))
        .open_for(Duration::from_millis(1))
        .half_open_probes(probes)
        .successes_to_close(100)
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Transient);
    clock.advance(Duration::from_millis(1));
    breaker
}

/// Three callers race to leave the open state and take probes. The
/// preemption bound keeps a run to seconds; bugs of this kind show up with
/// one or two preemptions.
fn probes_never_exceed(probes: u32, outcome: Option<Outcome>) {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(move || {
        let breaker = half_open(probes);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let breaker = breaker.clone();
                let in_flight = Arc::clone(&in_flight);
                loom::thread::spawn(move || {
                    if let Ok(permit) = breaker.try_acquire() {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(
                            now <= probes as usize,
                            "{now} probes at once, {probes} allowed"
                        );
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        match outcome {
                            Some(outcome) => permit.record(outcome),
                            None => drop(permit),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_ne!(breaker.state(), State::Closed);
    });
}

#[test]
fn one_probe_successes() {
    probes_never_exceed(1, Some(Outcome::Success));
}

#[test]
fn one_probe_cancelled() {
    probes_never_exceed(1, None);
}

#[test]
fn two_probes_failing() {
    probes_never_exceed(2, Some(Outcome::Transient));
}
