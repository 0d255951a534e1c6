//! Rate limit decisions against governor (in memory) and against a plain
//! Redis fixed window (one round trip), same run.
//!
//! `cargo bench -p payguard-benches --bench ratelimit`
//!
//! Memory rows, every contender on the standard monotonic clock
//! (`Instant`; governor's `MonotonicClock`, not its default TSC clock),
//! every decision an admission (a quota of 10^9/s that never runs out):
//! one key (payguard keyed with one key, governor direct and keyed), 10,000
//! keys visited in turn, and both again from 2 threads sharing the limiter
//! (threads started outside the timed region). Redis rows: one
//! `RedisLimiter` decision (one `EVALSHA`), a fixed window
//! (`INCR` + `EXPIRE` pipelined, one round trip) and a bare `SET`, on the
//! same connection to `REDIS_URL` (default the local server).

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::MonotonicClock;
use payguard_ratelimit::{MemoryLimiter, Quota, RedisLimiter};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEYS: usize = 10_000;

fn quota() -> Quota {
    Quota::per_second(1_000_000_000).unwrap()
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|n| format!("tenant-{n}")).collect()
}

/// Runs `work(thread, i)` `iters` times split over `threads` threads,
/// timing from a barrier after they started until the last one ends.
fn threaded<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let per_thread = iters / threads as u64;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let (work, barrier) = (Arc::clone(&work), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    work(thread, i);
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    started.elapsed()
}

fn memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/memory");
    let keys = Arc::new(keys());

    let ours: Arc<MemoryLimiter<String>> = Arc::new(MemoryLimiter::new(quota()));
    let direct = Arc::new(governor::RateLimiter::direct_with_clock(
        governor_quota(),
        MonotonicClock,
    ));
    let keyed = Arc::new(governor::RateLimiter::dashmap_with_clock(
        governor_quota(),
        MonotonicClock,
    ));

    group.bench_function("one key/payguard", |b| {
        b.iter(|| black_box(ours.check("k")))
    });
    group.bench_function("one key/governor direct", |b| {
        b.iter(|| black_box(direct.check().is_ok()))
    });
    let one = "k".to_owned();
    group.bench_function("one key/governor keyed", |b| {
        b.iter(|| black_box(keyed.check_key(&one).is_ok()))
    });

    let mut n = 0;
    group.bench_function("10k keys/payguard", |b| {
        b.iter(|| {
            n = (n + 1) % KEYS;
            black_box(ours.check(keys[n].as_str()))
        })
    });
    group.bench_function("10k keys/governor keyed", |b| {
        b.iter(|| {
            n = (n + 1) % KEYS;
            black_box(keyed.check_key(&keys[n]).is_ok())
        })
    });

    let threads = 2;
    let limiter = Arc::clone(&ours);
    group.bench_function(format!("one key, {threads} threads/payguard"), |b| {
        b.iter_custom(|iters| {
            let limiter = Arc::clone(&limiter);
            threaded(threads, iters, move |_, _| {
                black_box(limiter.check("k"));
            })
        })
    });
    let limiter = Arc::clone(&direct);
    group.bench_function(format!("one key, {threads} threads/governor direct"), |b| {
        b.iter_custom(|iters| {
            let limiter = Arc::clone(&limiter);
            threaded(threads, iters, move |_, _| {
                black_box(limiter.check().is_ok());
            })
        })
    });
    let (limiter, all) = (Arc::clone(&ours), Arc::clone(&keys));
    group.bench_function(format!("10k keys, {threads} threads/payguard"), |b| {
        b.iter_custom(|iters| {
            let (limiter, all) = (Arc::clone(&limiter), Arc::clone(&all));
            threaded(threads, iters, move |thread, i| {
                let key = &all[(i as usize * 2 + thread) % KEYS];
                black_box(limiter.check(key.as_str()));
            })
        })
    });
    let (limiter, all) = (Arc::clone(&keyed), Arc::clone(&keys));
    group.bench_function(format!("10k keys, {threads} threads/governor keyed"), |b| {
        b.iter_custom(|iters| {
            let (limiter, all) = (Arc::clone(&limiter), Arc::clone(&all));
            threaded(threads, iters, move |thread, i| {
                let key = &all[(i as usize * 2 + thread) % KEYS];
                black_box(limiter.check_key(key).is_ok());
            })
        })
    });
    group.finish();
}

fn redis(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let connection = runtime.block_on(async {
        redis::Client::open(url.as_str())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap_or_else(|error| panic!("cannot reach Redis at {url} ({error}); set REDIS_URL"))
    });
    let limiter = RedisLimiter::builder(connection.clone(), quota_for_redis())
        .prefix("bench:ratelimit:")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut group = c.benchmark_group("ratelimit/redis");
    // Each row: `iters` round trips one after another on one connection.
    group.bench_function("payguard (EVALSHA, GCRA)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(limiter.check("tenant", 1).await.unwrap());
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("fixed window (INCR + EXPIRE)", |b| {
        b.iter_custom(|iters| {
            let mut connection = connection.clone();
            runtime.block_on(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let (count,): (i64,) = redis::pipe()
                        .incr("bench:window:tenant", 1)
                        .expire("bench:window:tenant", 1)
                        .ignore()
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                    black_box(count);
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("SET (one round trip)", |b| {
        b.iter_custom(|iters| {
            let mut connection = connection.clone();
            runtime.block_on(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let () = redis::cmd("SET")
                        .arg("bench:set")
                        .arg(1)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

/// Redis decides in microseconds: a quota that never runs out there.
fn quota_for_redis() -> Quota {
    Quota::per_second(1_000_000).unwrap()
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
