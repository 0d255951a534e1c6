//! Half-open permits under real threads: never more probes than allowed.

#![allow(clippy::unwrap_used)] // test helpers

use payguard_breaker::{CircuitBreaker, FailureModel, State};
use payguard_core::{ManualClock, Outcome};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn sixty_four_threads_never_hold_more_probes_than_allowed() {
    const THREADS: usize = 64;
    const ROUNDS: usize = 200;
    for probes in [1u32, 3] {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder()
            .clock(Arc::new(clock.clone()))
            .failure_model(FailureModel::consecutive_failures(1))
            .open_for(Duration::from_millis(10))
            .half_open_probes(probes)
            .successes_to_close(1_000_000)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Transient);
        clock.advance(Duration::from_millis(10));

        let in_flight = AtomicU32::new(0);
        let most = AtomicU32::new(0);
        let admitted = AtomicU64::new(0);
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    barrier.wait();
                    for round in 0..ROUNDS {
                        if let Ok(permit) = breaker.try_acquire() {
                            assert!(permit.is_probe());
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            admitted.fetch_add(1, Ordering::Relaxed);
                            std::hint::spin_loop();
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            if round % 2 == 0 {
                                permit.record(Outcome::Success);
                            } else {
                                drop(permit); // cancelled
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(
            most.load(Ordering::SeqCst) <= probes,
            "{} > {probes}",
            most.load(Ordering::SeqCst)
        );
        assert!(admitted.load(Ordering::Relaxed) > 0);
    }
}

#[test]
fn racing_failures_trip_once() {
    let opened = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&opened);
    let breaker = CircuitBreaker::builder()
        .failure_model(
            FailureModel::count_window(100)
                .failure_rate(0.5)
                .minimum_calls(10),
        )
        .on_state_change(move |change| {
            if change.to() == State::Open {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.record(Outcome::Transient);
                    }
                }
            });
        }
    });
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}
