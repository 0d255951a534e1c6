//! Every strategy passes the exported conformance suite: memory on a
//! manual clock, the PostgreSQL strategies and Redis on real servers
//! (`DATABASE_URL`, `REDIS_URL`, defaulting to the local ones).

#![allow(clippy::expect_used, clippy::panic)]

use payguard_core::ManualClock;
use payguard_lock::conformance::{self, ManualTime, RealTime};
use payguard_lock::{MemoryLock, PgLeaseLock, PgSessionLock, RedisLock, Redlock};
use payguard_test_support::TestDb;
use std::str::FromStr;
use std::sync::Arc;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn redis(prefix: &str) -> RedisLock {
    let url = redis_url();
    RedisLock::connect(&url)
        .await
        .unwrap_or_else(|error| {
            panic!("cannot reach Redis at {url} ({error}); start one (redis-server --port 6379) or set REDIS_URL")
        })
        .prefix(prefix)
}

#[tokio::test]
async fn memory_lock_conforms() {
    let clock = ManualClock::new();
    let strategy = MemoryLock::with_clock(Arc::new(clock.clone()));
    conformance::run(&strategy, Some(&ManualTime(clock))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_conforms() {
    let db = TestDb::with_max_connections(25).await;
    let strategy = PgLeaseLock::new(db.pool().clone());
    strategy.migrate().await.expect("migrate");
    strategy
        .migrate()
        .await
        .expect("migrating twice is harmless");
    conformance::run(&strategy, Some(&RealTime)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_conforms_with_unprepared_statements_and_inherited_bounds() {
    let db = TestDb::with_max_connections(25).await;
    let strategy = PgLeaseLock::new(db.pool().clone())
        .prepared_statements(false)
        .timeouts(payguard_core::SqlTimeouts::default().inherited());
    strategy.migrate().await.expect("migrate");
    conformance::run(&strategy, Some(&RealTime)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_advisory_conforms() {
    let db = TestDb::new().await;
    let options = sqlx::postgres::PgConnectOptions::from_str(db.url()).expect("url");
    conformance::run(&PgSessionLock::new(options), None).await;
}

/// Deletes this test's keys (token counters never expire by design).
async fn forget(prefix: &str) {
    let client = redis::Client::open(redis_url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .expect("del");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_conforms() {
    let prefix = format!("payguard-test:{}:single:", std::process::id());
    conformance::run(&redis(&prefix).await, Some(&RealTime)).await;
    forget(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_conforms() {
    let pid = std::process::id();
    let servers = vec![
        redis(&format!("payguard-test:{pid}:a:")).await,
        redis(&format!("payguard-test:{pid}:b:")).await,
        redis(&format!("payguard-test:{pid}:c:")).await,
    ];
    conformance::run(
        &Redlock::builder(servers).build().expect("servers"),
        Some(&RealTime),
    )
    .await;
    forget(&format!("payguard-test:{pid}:")).await;
}
