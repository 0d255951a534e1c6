//! The lease lock behind PgBouncer in transaction pooling mode, started for
//! the test (`payguard_test_support::PgBouncer`; needs `pgbouncer`
//! installed): eight tasks by two hundred rounds with fenced writes, and
//! the advisory strategy refusing to run there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use payguard_lock::{LockError, LockOptions, Locker, PgLeaseLock, PgSessionLock};
use payguard_test_support::{PgBouncer, TestDb};
use sqlx::postgres::PgPoolOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_by_two_hundred_rounds_through_pgbouncer_never_overlap() {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(db.url());
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&bouncer.url_for(db.url()))
        .await
        .unwrap();
    // Migrations take a session advisory lock: run them directly.
    PgLeaseLock::new(db.pool().clone()).migrate().await.unwrap();
    let lease = PgLeaseLock::new(pool.clone())
        .prepared_statements(false)
        .listen_for_releases(false);
    for statement in [
        "CREATE TABLE counter (value bigint NOT NULL)",
        "INSERT INTO counter VALUES (0)",
        "CREATE TABLE fenced (id bigserial PRIMARY KEY, token bigint NOT NULL)",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let locker = Locker::new(Arc::new(lease));
    let inside = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (locker, pool, inside) = (locker.clone(), pool.clone(), Arc::clone(&inside));
            tokio::spawn(async move {
                // No release notices behind the pooler: waiters ask again
                // every 20 ms at most.
                let options = LockOptions::builder(Duration::from_secs(10))
                    .poll_every(Duration::from_millis(20))
                    .build()
                    .unwrap();
                for _ in 0..200 {
                    let guard = locker
                        .lock("race", &options, Duration::from_secs(60))
                        .await
                        .unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    let mut tx = pool.begin().await.unwrap();
                    guard.fence().check(&mut tx).await.unwrap();
                    sqlx::query("UPDATE counter SET value = value + 1")
                        .persistent(false)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    sqlx::query("INSERT INTO fenced (token) VALUES ($1)")
                        .persistent(false)
                        .bind(guard.token().as_i64())
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    inside.store(false, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counter: i64 = sqlx::query_scalar("SELECT value FROM counter")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(counter, 1600);
    let tokens: Vec<i64> = sqlx::query_scalar("SELECT token FROM fenced ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1600);
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens strictly increase in commit order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advisory_strategy_refuses_to_run_behind_transaction_pooling() {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(db.url());
    let options = sqlx::postgres::PgConnectOptions::from_str(&bouncer.url_for(db.url())).unwrap();
    let locker = Locker::new(Arc::new(PgSessionLock::new(options)));
    let error = locker
        .try_lock(
            "pooled",
            &LockOptions::builder(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .await
        .map(|_| ())
        .expect_err("a transaction-pooling proxy must be refused");
    assert!(
        matches!(error, LockError::Unsupported(ref reason) if reason.contains("transaction-pooling")),
        "{error}"
    );
}
