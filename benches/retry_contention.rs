//! The AWS "Exponential Backoff And Jitter" simulation, on virtual time.
//!
//! `cargo bench -p payguard-benches --bench retry_contention`
//!
//! N clients each make one optimistic-concurrency write to the same record:
//! read its version, then write if the version is unchanged, each step one
//! network hop of 10 ms ± 4 ms. A conflict is retried under a payguard
//! policy (exponential from 10 ms, factor 2, cap 1 s) with each jitter kind.
//! Reported: attempts in total (the work) and when the last client finished
//! (the completion time), averaged over 20 seeds. Time is tokio's paused
//! clock, so the run is deterministic and takes seconds.

use payguard_core::Outcome;
use payguard_retry::{Backoff, Jitter, RandomSource, RetryPolicy, SplitMix64};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

const SEEDS: u64 = 20;

/// One hop of 6 to 14 ms.
fn hop(random: &SplitMix64) -> Duration {
    Duration::from_micros(6_000 + random.next_u64() % 8_001)
}

/// Runs `clients` against one record; returns (attempts, completion ms).
fn simulate(clients: usize, jitter: Jitter, seed: u64) -> (u64, f64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let policy = RetryPolicy::builder()
            .backoff(Backoff::exponential(Duration::from_millis(10), 2.0))
            .max_delay(Duration::from_secs(1))
            .jitter(jitter)
            .max_attempts(u32::MAX)
            .seed(seed)
            .build()
            .unwrap();
        let network = SplitMix64::new(seed ^ 0xA5A5_A5A5);
        let version = Cell::new(0u64);
        let attempts = Cell::new(0u64);
        let start = tokio::time::Instant::now();
        let local = tokio::task::LocalSet::new();
        let shared = Rc::new((policy, network, version, attempts));
        for _ in 0..clients {
            let shared = Rc::clone(&shared);
            local.spawn_local(async move {
                let (policy, network, version, attempts) = &*shared;
                policy
                    .retry(|_| async {
                        attempts.set(attempts.get() + 1);
                        tokio::time::sleep(hop(network)).await;
                        let seen = version.get();
                        tokio::time::sleep(hop(network)).await;
                        if version.get() == seen {
                            version.set(seen + 1);
                            Ok(())
                        } else {
                            Err(())
                        }
                    })
                    .classify(Outcome::Transient)
                    .idempotent()
                    .await
                    .unwrap();
            });
        }
        local.await;
        assert_eq!(shared.2.get(), clients as u64);
        (shared.3.get(), start.elapsed().as_secs_f64() * 1000.0)
    })
}

#[allow(clippy::print_stdout)] // a bench prints its table
fn main() {
    let kinds = [
        ("none", Jitter::None),
        ("full", Jitter::Full),
        ("equal", Jitter::Equal),
        ("decorrelated", Jitter::Decorrelated),
    ];
    println!("| clients | jitter | attempts (mean) | attempts per client | completion ms (mean) |");
    println!("|---:|---|---:|---:|---:|");
    for clients in [10usize, 25, 50, 100] {
        for (name, jitter) in kinds {
            let (mut attempts, mut completion) = (0u64, 0.0);
            for seed in 0..SEEDS {
                let (a, c) = simulate(clients, jitter, seed);
                attempts += a;
                completion += c;
            }
            let attempts = attempts as f64 / SEEDS as f64;
            println!(
                "| {clients} | {name} | {attempts:.0} | {:.2} | {:.0} |",
                attempts / clients as f64,
                completion / SEEDS as f64
            );
        }
    }
}
