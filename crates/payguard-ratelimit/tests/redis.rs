//! The Redis limiter against a real Redis (`REDIS_URL`, default the local
//! server): two limiters sharing one limit stay within it under racing
//! tasks; idle keys expire by themselves; a Redis that stops answering is
//! decided by the configured fallback, and never means "no limit".

#![allow(clippy::unwrap_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // a real-time test: it measures a rate on the wall clock

use payguard_ratelimit::{Fallback, Quota, RateLimitError, RedisLimiter};
use payguard_test_support::TcpProxy;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn connection(url: &str) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(url).unwrap();
    client.get_connection_manager().await.unwrap_or_else(|error| {
        panic!(
            "cannot reach Redis at {url} ({error}); start one (redis-server --port 6379) or set REDIS_URL"
        )
    })
}

fn unique(name: &str) -> String {
    format!(
        "test:{name}:{}:{}",
        std::process::id(),
        payguard_core::entropy()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit() {
    let quota: Quota = "50/s burst 10".parse().unwrap();
    let prefix = unique("shared");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let limiter = RedisLimiter::builder(connection(&redis_url()).await, quota)
            .prefix(prefix.clone())
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        instances.push(Arc::new(limiter));
    }
    let admitted = Arc::new(AtomicU32::new(0));
    let started = tokio::time::Instant::now();
    let run_for = Duration::from_secs(2);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let limiter = Arc::clone(&instances[task % 2]);
            let admitted = Arc::clone(&admitted);
            tokio::spawn(async move {
                while started.elapsed() < run_for {
                    if limiter.check("tenant", 1).await.unwrap().is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = f64::from(admitted.load(Ordering::Relaxed));
    // At most the burst plus the rate over the time (one more for the
    // last interval begun); at least most of what the rate allows.
    let most = 10.0 + 50.0 * elapsed + 1.0;
    assert!(
        admitted <= most,
        "{admitted} admitted in {elapsed:.2} s, at most {most:.0}"
    );
    assert!(
        admitted >= 50.0 * 2.0 * 0.8,
        "{admitted} admitted: the limiters starved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keys_expire_by_themselves() {
    let url = redis_url();
    let prefix = unique("expiry");
    let limiter = RedisLimiter::builder(connection(&url).await, "10/s burst 3".parse().unwrap())
        .prefix(prefix.clone())
        .build()
        .unwrap();
    let decision = limiter.check("k", 2).await.unwrap();
    assert!(decision.is_allowed());
    assert_eq!(decision.remaining(), 1);
    let mut plain = connection(&url).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}k"))
        .query_async(&mut plain)
        .await
        .unwrap();
    assert!(
        (1..=200).contains(&ttl),
        "the key lives until it is idle again: {ttl} ms"
    );
    assert!(matches!(
        limiter.check("k", 4).await,
        Err(RateLimitError::InsufficientCapacity(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_decided_by_the_fallback() {
    let proxy = TcpProxy::start(TcpProxy::upstream_of(&redis_url())).await;
    let url = proxy.url_for(&redis_url());
    // Slow enough that the seconds the timeouts take refill nothing.
    let quota: Quota = "1/min burst 10".parse().unwrap();
    let build = |fallback| {
        let url = url.clone();
        async move {
            RedisLimiter::builder(connection(&url).await, quota)
                .prefix(unique("outage"))
                .fallback(fallback)
                .timeout(Duration::from_millis(200))
                .build()
                .unwrap()
        }
    };
    let closed = build(Fallback::Closed).await;
    let open = build(Fallback::Open).await;
    let local = build(Fallback::Local { instances: 2 }).await;
    for limiter in [&closed, &open, &local] {
        assert!(
            limiter.check("k", 1).await.unwrap().is_allowed(),
            "Redis is up"
        );
    }
    proxy.blackhole();
    assert!(matches!(
        closed.check("k", 1).await,
        Err(RateLimitError::Unavailable(_))
    ));
    for _ in 0..20 {
        assert!(open.check("k", 1).await.unwrap().is_allowed(), "fails open");
    }
    let mut admitted = 0;
    for _ in 0..20 {
        if local.check("k", 1).await.unwrap().is_allowed() {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 5,
        "this instance's half of the burst, not no limit"
    );
}
