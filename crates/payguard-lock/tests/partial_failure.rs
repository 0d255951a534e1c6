//! The lease lock on PostgreSQL under partial failure: a row or table left
//! locked by an idle transaction, a fenced transaction that outlasts the
//! lease, a deleted lock row, waiters, and one instance partitioned from
//! the database while another carries on.

#![allow(clippy::disallowed_methods)] // measures elapsed time on tokio's clock directly
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payguard_core::SqlTimeouts;
use payguard_lock::{
    AcquireAnswer, Acquisition, BoxFuture, Grant, LeaseTerms, LockError, LockGuard, LockInfo,
    LockOptions, LockStrategy, Locker, Owner, PgLeaseLock, ProcessId, ReleaseNotices,
};
use payguard_test_support::{TcpProxy, TestDb};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// Anything that should answer within its bounds but might hang on a
/// regression gets this long before the test fails instead of hanging.
const HANG: Duration = Duration::from_secs(10);

async fn lease(db: &TestDb) -> PgLeaseLock {
    let strategy = PgLeaseLock::new(db.pool().clone());
    strategy.migrate().await.unwrap();
    strategy
}

fn fast_bounds() -> SqlTimeouts {
    SqlTimeouts::default()
        .lock_timeout(Duration::from_millis(300))
        .statement_timeout(Duration::from_millis(800))
}

fn terms() -> LeaseTerms {
    LockOptions::builder(Duration::from_secs(30))
        .build()
        .unwrap()
        .terms()
}

fn owner() -> Owner {
    Owner::new(ProcessId::current())
}

async fn grant(strategy: &PgLeaseLock, name: &str) -> Grant {
    match strategy
        .try_acquire(name, &owner(), &terms())
        .await
        .unwrap()
    {
        AcquireAnswer::Acquired(grant) => grant,
        other => panic!("{name} not acquired: {other:?}"),
    }
}

async fn acquired(locker: &Locker, name: &str, options: &LockOptions) -> LockGuard {
    match locker.try_lock(name, options).await.unwrap() {
        Acquisition::Acquired(guard) => guard,
        Acquisition::Busy(info) => panic!("{name} busy: {info:?}"),
    }
}

/// A session left idle in a transaction, as a forgotten psql would be.
async fn idle_session(db: &TestDb, statements: &[&str]) -> PgConnection {
    let mut session = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut session).await.unwrap();
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
            .execute(&mut session)
            .await
            .unwrap();
    }
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_row_locked_by_an_idle_transaction_is_busy_at_once() {
    let db = TestDb::new().await;
    let strategy = lease(&db).await;
    let first = grant(&strategy, "nightly").await;
    strategy.release(&first, &terms()).await.unwrap();
    let _idle = idle_session(
        &db,
        &["SELECT 1 FROM payguard_locks WHERE name = 'nightly' FOR UPDATE"],
    )
    .await;

    let started = Instant::now();
    let answer = timeout(HANG, strategy.try_acquire("nightly", &owner(), &terms()))
        .await
        .expect("try_acquire waited for the idle transaction's row lock");
    assert!(matches!(answer, Ok(AcquireAnswer::Busy(_))), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a locked row is skipped, not waited for: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_locked_by_an_idle_transaction_gets_answers_within_the_bounds() {
    let db = TestDb::new().await;
    let strategy = lease(&db).await.timeouts(fast_bounds());
    let held = grant(&strategy, "payouts").await;
    let _idle = idle_session(&db, &["LOCK TABLE payguard_locks IN ACCESS EXCLUSIVE MODE"]).await;

    let started = Instant::now();
    let attempt = timeout(HANG, strategy.try_acquire("payouts", &owner(), &terms()))
        .await
        .expect("try_acquire hung on a locked table");
    assert!(matches!(attempt, Ok(AcquireAnswer::Busy(_))), "{attempt:?}");
    let renewal = timeout(HANG, strategy.renew(&held, &terms()))
        .await
        .expect("renew hung on a locked table");
    assert!(
        matches!(renewal, Err(LockError::Unavailable(_))),
        "{renewal:?}"
    );
    let status = timeout(HANG, strategy.locks(None))
        .await
        .expect("status hung on a locked table");
    assert!(
        matches!(status, Err(LockError::Unavailable(_))),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "three answers within the 300 ms lock bound each: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_goes_on_during_a_fenced_transaction_longer_than_the_lease() {
    let db = TestDb::new().await;
    let locker = Locker::new(Arc::new(lease(&db).await));
    // Lease 1 s, renewed every 333 ms, trusted until 250 ms before its end.
    let options = LockOptions::builder(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = acquired(&locker, "escrow", &options).await;
    let fence = guard.fence();

    let mut tx = db.pool().begin().await.unwrap();
    fence.check(&mut tx).await.unwrap();
    sqlx::query("SELECT pg_sleep(2.5)")
        .execute(&mut *tx)
        .await
        .unwrap();
    fence.check(&mut tx).await.unwrap();
    sqlx::query("CREATE TABLE released (token bigint)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert!(
        guard.is_held() && !guard.cancellation().is_cancelled(),
        "the heartbeat renewed while the fenced transaction was open"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_while_a_fenced_transaction_is_open() {
    let db = TestDb::new().await;
    let strategy = lease(&db).await;
    let held = grant(&strategy, "payouts").await;
    let fence_owner = held.owner.clone();
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("SELECT payguard_lock_fence($1, $2)")
        .bind("payouts")
        .bind(held.token.as_i64())
        .execute(&mut *tx)
        .await
        .unwrap();
    // The holder is paused past its lease: the lease ends in the database.
    sqlx::query("UPDATE payguard_locks SET expires_at = clock_timestamp() - interval '1 second' WHERE name = 'payouts'")
        .execute(db.pool())
        .await
        .unwrap();

    for _ in 0..3 {
        let attempt = strategy
            .try_acquire("payouts", &owner(), &terms())
            .await
            .unwrap();
        assert!(
            matches!(attempt, AcquireAnswer::Busy(_)),
            "taken over under an open fenced transaction: {attempt:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("CREATE TABLE paid (token bigint)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let heir = grant(&strategy, "payouts").await;
    assert!(heir.token > held.token);
    assert_ne!(heir.owner, fence_owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_growing_after_the_row_is_deleted_and_across_the_upgrade() {
    let db = TestDb::new().await;
    // A table from the first release of the crate, with tokens handed out.
    sqlx::raw_sql(include_str!(
        "../migrations/20261125000002_payguard_locks.sql"
    ))
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO payguard_locks (name, owner, token, acquired_at, renewed_at, expires_at) VALUES ('old', NULL, 41, now(), now(), now())")
        .execute(db.pool())
        .await
        .unwrap();
    let strategy = lease(&db).await;

    let first = grant(&strategy, "old").await;
    assert!(first.token.get() > 41, "{first:?}");
    let fresh = grant(&strategy, "fresh").await;
    assert!(fresh.token > first.token);
    strategy.release(&fresh, &terms()).await.unwrap();
    sqlx::query("DELETE FROM payguard_locks WHERE name = 'fresh'")
        .execute(db.pool())
        .await
        .unwrap();
    let again = grant(&strategy, "fresh").await;
    assert!(
        again.token > fresh.token,
        "{again:?} after {fresh:?}: a deleted row must not restart the tokens"
    );
}

/// `PgLeaseLock`, counting acquisition attempts; optionally without its
/// release notices.
#[derive(Debug)]
struct Counting {
    inner: PgLeaseLock,
    attempts: AtomicUsize,
    notices: bool,
}

impl LockStrategy for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }
    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.inner.try_acquire(name, owner, terms)
    }
    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>> {
        self.inner.renew(grant, terms)
    }
    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        self.inner.release(grant, terms)
    }
    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>> {
        self.inner.locks(name)
    }
    fn release_notices(&self) -> Option<ReleaseNotices> {
        self.notices.then(|| self.inner.release_notices()).flatten()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_sleeps_until_the_release_instead_of_polling() {
    let db = TestDb::new().await;
    let holder = Locker::new(Arc::new(lease(&db).await));
    let counting = Arc::new(Counting {
        inner: lease(&db).await,
        attempts: AtomicUsize::new(0),
        notices: true,
    });
    let waiter = Locker::new(Arc::clone(&counting) as Arc<dyn LockStrategy>);
    let options = LockOptions::builder(Duration::from_secs(6))
        .build()
        .unwrap();
    let guard = acquired(&holder, "report", &options).await;

    let waiting = tokio::spawn(async move {
        let guard = waiter
            .lock("report", &options, Duration::from_secs(20))
            .await
            .unwrap();
        (Instant::now(), guard)
    });
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let (taken, heir) = waiting.await.unwrap();

    assert!(
        taken.duration_since(released) < Duration::from_secs(1),
        "woken by the release, not by the lease's end: {:?}",
        taken.duration_since(released)
    );
    // The first try, one when the listener connected, one after the release.
    let attempts = counting.attempts.load(Ordering::SeqCst);
    assert!(
        attempts <= 3,
        "{attempts} attempts in 2 s: a waiter must not poll"
    );
    heir.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_release_notices_a_waiter_sleeps_until_the_lease_ends() {
    let db = TestDb::new().await;
    let strategy = lease(&db).await;
    let counting = Arc::new(Counting {
        inner: lease(&db).await,
        attempts: AtomicUsize::new(0),
        notices: false,
    });
    let waiter = Locker::new(Arc::clone(&counting) as Arc<dyn LockStrategy>);
    // A holder that died: its lease of 1.2 s runs out by itself.
    let short = LockOptions::builder(Duration::from_millis(1200))
        .build()
        .unwrap()
        .terms();
    match strategy
        .try_acquire("report", &owner(), &short)
        .await
        .unwrap()
    {
        AcquireAnswer::Acquired(_) => {}
        other => panic!("{other:?}"),
    }
    let guard = waiter
        .lock(
            "report",
            &LockOptions::builder(Duration::from_secs(5))
                .build()
                .unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // Polling every 500 ms (the cap without notices), not spinning.
    let attempts = counting.attempts.load(Ordering::SeqCst);
    assert!(
        (2..=5).contains(&attempts),
        "{attempts} attempts over a 1.2 s lease"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_the_database_stops_its_job_before_another_takes_over() {
    let db = TestDb::new().await;
    let proxy = TcpProxy::start(TcpProxy::upstream_of(db.url())).await;
    let cut_off_pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&proxy.url_for(db.url()))
        .await
        .unwrap();
    let cut_off = PgLeaseLock::new(cut_off_pool).timeouts(fast_bounds());
    cut_off.migrate().await.unwrap();
    let cut_off = Locker::new(Arc::new(cut_off));
    let healthy = Locker::new(Arc::new(lease(&db).await));
    let options = LockOptions::builder(Duration::from_secs(2))
        .build()
        .unwrap();
    let guard = acquired(&cut_off, "escrow", &options).await;
    let fence = guard.fence();

    proxy.blackhole();
    let stopped = async {
        let job = guard.run(std::future::pending::<()>()).await;
        assert!(matches!(job, Err(LockError::Lost { .. })), "{job:?}");
        Instant::now()
    };
    let taken_over = async {
        let heir = healthy
            .lock("escrow", &options, Duration::from_secs(10))
            .await
            .unwrap();
        (Instant::now(), heir)
    };
    let (stopped, (taken, heir)) = timeout(HANG, async { tokio::join!(stopped, taken_over) })
        .await
        .expect("the cut-off holder never gave up, or nobody took over");
    assert!(
        stopped < taken,
        "the cut-off holder's job stopped before the takeover"
    );
    assert!(heir.token() > guard.token());

    // A new acquisition by the cut-off instance answers within its bounds.
    let started = Instant::now();
    let attempt = timeout(HANG, cut_off.try_lock("other", &options))
        .await
        .expect("an acquisition into a black hole hung");
    assert!(
        matches!(attempt, Err(LockError::Unavailable(_))),
        "{attempt:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Healed, its old token is refused.
    proxy.restore();
    let mut tx = db.pool().begin().await.unwrap();
    assert!(matches!(
        fence.check(&mut tx).await,
        Err(LockError::Lost { .. })
    ));
    heir.release().await.unwrap();
}
