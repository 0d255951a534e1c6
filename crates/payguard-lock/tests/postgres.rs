//! The lock held through `Locker` on PostgreSQL: heartbeats, loss,
//! fencing inside transactions, gateway references, at_least/at_most,
//! advisory session loss and the scheduled job runner.

#![allow(clippy::disallowed_methods)] // measures elapsed time on tokio's clock directly
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payguard_lock::{
    Acquisition, LockError, LockGuard, LockOptions, Locker, PgLeaseLock, PgSessionLock,
    ScheduledJob,
};
use payguard_test_support::TestDb;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

async fn lease_locker(db: &TestDb) -> Locker {
    let strategy = PgLeaseLock::new(db.pool().clone());
    strategy.migrate().await.unwrap();
    Locker::new(Arc::new(strategy))
}

async fn acquired(locker: &Locker, name: &str, options: &LockOptions) -> LockGuard {
    match locker.try_lock(name, options).await.unwrap() {
        Acquisition::Acquired(guard) => guard,
        Acquisition::Busy(info) => panic!("{name} busy: {info:?}"),
    }
}

async fn is_busy(locker: &Locker, name: &str, options: &LockOptions) -> bool {
    matches!(
        locker.try_lock(name, options).await.unwrap(),
        Acquisition::Busy(_)
    )
}

/// Ends the holder's lease in the database, as a pause past the lease would.
async fn expire(db: &TestDb, name: &str) {
    sqlx::query("UPDATE payguard_locks SET expires_at = clock_timestamp() - interval '1 second' WHERE name = $1")
        .bind(name)
        .execute(db.pool())
        .await
        .unwrap();
}

fn short() -> LockOptions {
    short_builder().build().unwrap()
}

fn short_builder() -> payguard_lock::LockOptionsBuilder {
    // Lease 600 ms, renewed every 200 ms, trusted until 150 ms before its end.
    LockOptions::builder(Duration::from_millis(600)).poll_every(Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_the_lease_and_a_takeover_stops_the_job() {
    let db = TestDb::new().await;
    let locker = lease_locker(&db).await;
    let other = lease_locker(&db).await;
    let guard = acquired(&locker, "escrow", &short()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(guard.is_held(), "renewed past its first lease");
    assert!(is_busy(&other, "escrow", &short()).await);

    expire(&db, "escrow").await;
    let heir = acquired(&other, "escrow", &short()).await;
    assert!(heir.token() > guard.token());
    let started = Instant::now();
    let job = guard.run(tokio::time::sleep(Duration::from_secs(30))).await;
    assert!(matches!(job, Err(LockError::Lost { .. })), "{job:?}");
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "stopped at the next heartbeat"
    );
    assert!(!guard.is_held());
    assert!(guard.cancellation().is_cancelled());

    let mut tx = db.pool().begin().await.unwrap();
    assert!(matches!(
        guard.fence().check(&mut tx).await,
        Err(LockError::Lost { .. })
    ));
    tx.rollback().await.unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    heir.fence().check(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        matches!(guard.release().await, Err(LockError::Lost { .. })),
        "the old holder cannot release"
    );
    assert!(
        is_busy(&locker, "escrow", &short()).await,
        "the heir still holds"
    );
    heir.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_references_survive_a_takeover_and_slots_run_once() {
    let db = TestDb::new().await;
    let locker = lease_locker(&db).await;
    let other = lease_locker(&db).await;
    let first = acquired(&locker, "escrow", &short()).await;
    let mut tx = db.pool().begin().await.unwrap();
    let reference = first
        .fence()
        .reference(&mut tx, "booking-42")
        .await
        .unwrap();
    let slot = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert!(first.fence().claim_slot(&mut tx, slot).await.unwrap());
    tx.commit().await.unwrap();
    assert!(reference.starts_with("pgl_"));

    expire(&db, "escrow").await;
    let second = acquired(&other, "escrow", &short()).await;
    let mut tx = db.pool().begin().await.unwrap();
    assert_eq!(
        second
            .fence()
            .reference(&mut tx, "booking-42")
            .await
            .unwrap(),
        reference,
        "the same payout keeps its reference"
    );
    assert_ne!(
        second
            .fence()
            .reference(&mut tx, "booking-43")
            .await
            .unwrap(),
        reference
    );
    assert!(
        !second.fence().claim_slot(&mut tx, slot).await.unwrap(),
        "the slot already ran"
    );
    tx.commit().await.unwrap();

    let mut tx = db.pool().begin().await.unwrap();
    assert!(
        matches!(
            first.fence().reference(&mut tx, "booking-44").await,
            Err(LockError::Lost { .. })
        ),
        "a stale holder gets no reference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_stops_a_stuck_job_and_at_least_outlives_a_quick_one() {
    let db = TestDb::new().await;
    let locker = lease_locker(&db).await;
    let other = lease_locker(&db).await;
    let capped = short_builder()
        .at_most(Duration::from_millis(1200))
        .build()
        .unwrap();
    let guard = acquired(&locker, "stuck", &capped).await;
    let started = Instant::now();
    let job = guard.run(tokio::time::sleep(Duration::from_secs(30))).await;
    assert!(matches!(job, Err(LockError::Lost { .. })));
    let stopped = started.elapsed();
    assert!(
        stopped <= Duration::from_millis(1300),
        "stopped by at_most: {stopped:?}"
    );
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(started.elapsed())).await;
    let next = acquired(&other, "stuck", &short()).await;
    next.release().await.unwrap();

    let quick = short_builder()
        .at_least(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = acquired(&locker, "quick", &quick).await;
    guard.release().await.unwrap();
    assert!(
        is_busy(&other, "quick", &short()).await,
        "held for at_least after release"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    acquired(&other, "quick", &short())
        .await
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_lock_times_out_naming_the_holder_or_gets_it_when_freed() {
    let db = TestDb::new().await;
    let locker = lease_locker(&db).await;
    let other = lease_locker(&db).await;
    let guard = acquired(&locker, "report", &short()).await;
    let timeout = other
        .lock("report", &short(), Duration::from_millis(300))
        .await;
    match timeout {
        Err(LockError::Timeout { holder, .. }) => {
            assert!(holder.contains(guard.owner().as_str()), "{holder}")
        }
        other => panic!("{other:?}"),
    }
    let waiter =
        tokio::spawn(async move { other.lock("report", &short(), Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let token = guard.token();
    guard.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    assert!(next.token() > token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_guard_releases_the_lock() {
    let db = TestDb::new().await;
    let locker = lease_locker(&db).await;
    drop(acquired(&locker, "dropped", &short()).await);
    let next = locker
        .lock("dropped", &short(), Duration::from_millis(400))
        .await
        .unwrap();
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advisory_holder_is_told_when_its_session_is_terminated() {
    let db = TestDb::new().await;
    let options = sqlx::postgres::PgConnectOptions::from_str(db.url()).unwrap();
    let locker = Locker::new(Arc::new(PgSessionLock::new(options.clone())));
    let other = Locker::new(Arc::new(PgSessionLock::new(options)));
    let guard = acquired(&locker, "advisory", &short()).await;
    assert!(is_busy(&other, "advisory", &short()).await);
    let terminated: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(guard.owner().as_str())
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(terminated);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the holder is told");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "within a heartbeat"
    );
    // Meanwhile the lock was free for anyone: the gap advisory locks cannot fence.
    acquired(&other, "advisory", &short())
        .await
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_on_three_instances_runs_each_slot_once() {
    let db = TestDb::new().await;
    lease_locker(&db).await;
    sqlx::query("CREATE TABLE runs (slot double precision NOT NULL, token bigint NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut instances = Vec::new();
    for _ in 0..3 {
        let locker = lease_locker(&db).await;
        let pool = db.pool().clone();
        let job = ScheduledJob::builder("tick", Duration::from_millis(500))
            .build()
            .unwrap();
        instances.push(tokio::spawn(job.run(
            locker,
            shutdown.clone(),
            move |run| {
                let pool = pool.clone();
                async move {
                    let mut tx = pool.begin().await?;
                    if run.fence().claim_slot(&mut tx, run.slot).await? {
                        let slot = run
                            .slot
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs_f64();
                        sqlx::query("INSERT INTO runs VALUES ($1, $2)")
                            .bind(slot)
                            .bind(run.token.as_i64())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            },
        )));
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    shutdown.cancel();
    for instance in instances {
        instance.await.unwrap();
    }
    let (runs, slots): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT slot) FROM runs")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(slots >= 4, "a run per slot: {slots}");
    assert_eq!(runs, slots, "no slot ran twice");
}
