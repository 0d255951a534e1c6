//! Circuit breaker overhead against recloser and failsafe, same run.
//!
//! `cargo bench -p payguard-benches --bench breaker`
//!
//! Rows: a call that succeeds through a closed breaker (1 and 2 threads on
//! one shared breaker), and a call rejected by an open breaker. The wrapped
//! call is a trivial `Ok`, so the figures are the breakers' own cost.

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use payguard_breaker::{BreakerRegistry, CircuitBreaker, FailureModel};
use payguard_core::Outcome;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn operation(x: u64) -> Result<u64, u64> {
    black_box(Ok(x))
}

fn classify(result: &Result<u64, u64>) -> Outcome {
    if result.is_ok() {
        Outcome::Success
    } else {
        Outcome::Transient
    }
}

/// A count window like recloser's ring, or a streak like failsafe's policy.
fn payguard_with(model: FailureModel, open: bool) -> CircuitBreaker {
    let breaker = CircuitBreaker::builder()
        .failure_model(model)
        .open_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    if open {
        breaker.force_open();
    }
    breaker
}

fn payguard(open: bool) -> CircuitBreaker {
    payguard_with(
        FailureModel::count_window(100)
            .failure_rate(0.5)
            .minimum_calls(100),
        open,
    )
}

fn payguard_streak() -> CircuitBreaker {
    payguard_with(FailureModel::consecutive_failures(100), false)
}

fn recloser(open: bool) -> recloser::Recloser {
    let breaker = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .open_wait(Duration::from_secs(3600))
        .build();
    if open {
        for _ in 0..200 {
            let _ = breaker.call(|| Err::<(), ()>(()));
        }
        assert!(matches!(
            breaker.call(|| Ok::<(), ()>(())),
            Err(recloser::Error::Rejected)
        ));
    }
    breaker
}

fn failsafe(open: bool) -> impl failsafe::CircuitBreaker + Clone + Send + Sync {
    let policy = failsafe::failure_policy::consecutive_failures(
        100,
        failsafe::backoff::constant(Duration::from_secs(3600)),
    );
    let breaker = failsafe::Config::new().failure_policy(policy).build();
    if open {
        for _ in 0..200 {
            let _ = breaker.call(|| Err::<(), ()>(()));
        }
        assert!(!breaker.is_call_permitted());
    }
    breaker
}

fn closed_one_thread(c: &mut Criterion) {
    let ours = payguard(false);
    let theirs = recloser(false);
    let other = failsafe(false);
    let streak = payguard_streak();
    let mut group = c.benchmark_group("breaker/closed/1_thread");
    group.bench_function("direct", |b| b.iter(|| operation(black_box(1))));
    group.bench_function("payguard_count_window", |b| {
        b.iter(|| ours.call_blocking(classify, || operation(black_box(1))))
    });
    group.bench_function("payguard_consecutive", |b| {
        b.iter(|| streak.call_blocking(classify, || operation(black_box(1))))
    });
    group.bench_function("recloser", |b| {
        b.iter(|| theirs.call(|| operation(black_box(1))))
    });
    group.bench_function("failsafe", |b| {
        b.iter(|| other.call(|| operation(black_box(1))))
    });
    group.finish();
}

/// Time per call with `threads` threads calling one shared breaker.
#[allow(clippy::disallowed_methods)] // benches time themselves
fn threaded(threads: usize, iterations: u64, call: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..iterations {
                    call();
                }
            });
        }
    });
    start.elapsed()
}

fn closed_two_threads(c: &mut Criterion) {
    let ours = payguard(false);
    let theirs = recloser(false);
    let other = failsafe(false);
    let streak = payguard_streak();
    let mut group = c.benchmark_group("breaker/closed/2_threads");
    group.bench_function("payguard_count_window", |b| {
        b.iter_custom(|n| {
            threaded(2, n, || {
                let _ = black_box(ours.call_blocking(classify, || operation(black_box(1))));
            })
        })
    });
    group.bench_function("payguard_consecutive", |b| {
        b.iter_custom(|n| {
            threaded(2, n, || {
                let _ = black_box(streak.call_blocking(classify, || operation(black_box(1))));
            })
        })
    });
    group.bench_function("recloser", |b| {
        b.iter_custom(|n| {
            threaded(2, n, || {
                let _ = black_box(theirs.call(|| operation(black_box(1))));
            })
        })
    });
    group.bench_function("failsafe", |b| {
        b.iter_custom(|n| {
            threaded(2, n, || {
                let _ = black_box(other.call(|| operation(black_box(1))));
            })
        })
    });
    group.finish();
}

fn open_rejection(c: &mut Criterion) {
    let ours = payguard(true);
    let theirs = recloser(true);
    let other = failsafe(true);
    let mut group = c.benchmark_group("breaker/open/rejection");
    group.bench_function("payguard", |b| {
        b.iter(|| ours.call_blocking(classify, || operation(black_box(1))))
    });
    group.bench_function("recloser", |b| {
        b.iter(|| theirs.call(|| operation(black_box(1))))
    });
    group.bench_function("failsafe", |b| {
        b.iter(|| other.call(|| operation(black_box(1))))
    });
    group.finish();
}

fn registry(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker/registry/get_and_call");
    for size in [1_000usize, 100_000] {
        let registry = BreakerRegistry::builder(CircuitBreaker::builder())
            .max_breakers(200_000)
            .idle_after(Duration::from_secs(3600))
            .build()
            .unwrap();
        let keys: Vec<String> = (0..size).map(|n| format!("merchant_{n}")).collect();
        for key in &keys {
            registry.get(key).unwrap();
        }
        let mut next = 0usize;
        group.bench_function(format!("{size}_keys"), |b| {
            b.iter(|| {
                // A stride through the keys, so most lookups miss the cache
                // when there are many.
                next = (next + 7919) % keys.len();
                let breaker = registry.get(&keys[next]).unwrap();
                breaker.call_blocking(classify, || operation(black_box(1)))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = closed_one_thread, closed_two_threads, open_rejection, registry
}
criterion_main!(benches);
