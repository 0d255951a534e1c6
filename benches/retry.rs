//! Retry overhead on the success path, and retry budgets, against peers in
//! the same run.
//!
//! `cargo bench -p payguard-benches --bench retry`
//!
//! Futures are polled once with a no-op waker: the operation is always
//! ready, so what is measured is the wrapper, not a runtime.

use backon::{BlockingRetryable, ExponentialBuilder, Retryable};
use criterion::{Criterion, criterion_group, criterion_main};
use payguard_core::Outcome;
use payguard_retry::{RetryBudget, RetryPolicy};
use std::future::{Future, IntoFuture, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Service, ServiceExt};

fn poll_once<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("always ready"),
    }
}

async fn operation(x: u64) -> Result<u64, std::io::Error> {
    Ok(black_box(x) + 1)
}

/// The canonical tower policy: retry errors up to `n` times.
#[derive(Clone)]
struct Attempts(usize);

impl<E> tower::retry::Policy<u64, u64, E> for Attempts {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }
    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

fn success_path(c: &mut Criterion) {
    let policy = RetryPolicy::builder().build().unwrap();
    let backoff = ExponentialBuilder::default();
    let mut group = c.benchmark_group("retry/success_path/async");
    group.bench_function("direct", |b| b.iter(|| poll_once(operation(black_box(1)))));
    group.bench_function("payguard", |b| {
        b.iter(|| {
            poll_once(
                policy
                    .retry(|_| operation(black_box(1)))
                    .classify(Outcome::Transient)
                    .into_future(),
            )
        })
    });
    group.bench_function("backon", |b| {
        b.iter(|| poll_once((|| operation(black_box(1))).retry(backoff).into_future()))
    });
    group.bench_function("tower", |b| {
        let service = tower::service_fn(operation);
        let mut retry = tower::retry::Retry::new(Attempts(2), service);
        b.iter(|| {
            let ready = poll_once(retry.ready()).map(|_| ()).is_ok();
            assert!(ready);
            poll_once(retry.call(black_box(1)))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("retry/success_path/blocking");
    let blocking = |x: u64| -> Result<u64, std::io::Error> { Ok(black_box(x) + 1) };
    group.bench_function("direct", |b| b.iter(|| blocking(black_box(1))));
    group.bench_function("payguard", |b| {
        b.iter(|| {
            policy
                .retry_blocking(|_| blocking(black_box(1)))
                .classify(Outcome::Transient)
                .call()
        })
    });
    group.bench_function("backon", |b| {
        b.iter(|| (|| blocking(black_box(1))).retry(backoff).call())
    });
    group.finish();
}

fn budgets(c: &mut Criterion) {
    let ours = Arc::new(
        RetryBudget::builder()
            .ratio(0.2)
            .min_per_second(10.0)
            .build()
            .unwrap(),
    );
    let tower_budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("retry/budget/{threads}_threads"));
        group.bench_function("payguard", |b| {
            b.iter_custom(|iterations| {
                run_threads(threads, iterations, || {
                    ours.deposit();
                    black_box(ours.try_withdraw());
                })
            })
        });
        group.bench_function("tower_tps_budget", |b| {
            b.iter_custom(|iterations| {
                run_threads(threads, iterations, || {
                    tower_budget.deposit();
                    black_box(tower_budget.withdraw());
                })
            })
        });
        group.finish();
    }
}

/// Runs `op` `iterations` times on each of `threads` threads; the time per
/// iteration is the wall time divided by the iterations of one thread.
#[allow(clippy::disallowed_methods)] // benches time themselves
fn run_threads(threads: usize, iterations: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..iterations {
                    op();
                }
            });
        }
    });
    start.elapsed()
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = success_path, budgets
}
criterion_main!(benches);
