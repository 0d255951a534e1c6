//! The success path allocates nothing, even with `tracing` and `metrics`
//! compiled in.
//!
//! `harness = false`: the test harness's own threads would allocate while
//! the region counts (the counter is global), so this binary runs alone on
//! its main thread.

#![allow(clippy::panic, clippy::unwrap_used)] // test code

use payguard_core::Outcome;
use payguard_retry::RetryPolicy;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn poll_ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the operation is always ready"),
    }
}

fn main() {
    first_attempt_success_allocates_nothing();
}

fn first_attempt_success_allocates_nothing() {
    let policy = RetryPolicy::builder().name("allocations").build().unwrap();
    // Warm up lazily initialised statics (tracing's callsite registry).
    let _ = poll_ready(policy.retry(|_| async { Ok::<u32, ()>(1) }).into_future());
    let _ = policy.retry_blocking(|_| Ok::<u32, ()>(1)).call();

    let region = Region::new(GLOBAL);
    let mut total = 0;
    for _ in 0..10_000 {
        let future = policy
            .retry(|attempt| async move { Ok::<u32, ()>(attempt.number()) })
            .classify(Outcome::Transient)
            .into_future();
        total += poll_ready(future).unwrap();
        total += policy.retry_blocking(|_| Ok::<u32, ()>(1)).call().unwrap();
    }
    let stats = region.change();
    assert_eq!(total, 20_000);
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}
