//! Losers of a contended acquisition neither lock the row nor queue on it:
//! they cost the server no transaction id, so the holder's release is not
//! stuck behind them. Alone in its test binary, because it counts the
//! server's transaction ids.

#![allow(clippy::disallowed_methods)] // measures elapsed time on tokio's clock directly
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payguard_lock::{AcquireAnswer, LockOptions, LockStrategy, Owner, PgLeaseLock, ProcessId};
use payguard_test_support::TestDb;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

async fn current_xid(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_contenders_cost_about_two_transaction_ids_per_acquisition() {
    let db = TestDb::with_max_connections(20).await;
    let strategy = Arc::new(PgLeaseLock::new(db.pool().clone()));
    strategy.migrate().await.unwrap();
    let terms = LockOptions::builder(Duration::from_secs(30))
        .build()
        .unwrap()
        .terms();

    let before = current_xid(&db).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let contenders: Vec<_> = (0..16)
        .map(|_| {
            let strategy = Arc::clone(&strategy);
            tokio::spawn(async move {
                let (mut wins, mut busy) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let owner = Owner::new(ProcessId::current());
                    match strategy.try_acquire("hot", &owner, &terms).await.unwrap() {
                        AcquireAnswer::Acquired(grant) => {
                            strategy.release(&grant, &terms).await.unwrap();
                            wins += 1;
                        }
                        _ => {
                            busy += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                (wins, busy)
            })
        })
        .collect();
    let (mut wins, mut busy) = (0, 0);
    for contender in contenders {
        let (won, lost) = contender.await.unwrap();
        wins += won;
        busy += lost;
    }
    let spent = current_xid(&db).await - before - 1;

    eprintln!("{wins} acquisitions, {busy} busy answers, {spent} transaction ids");
    assert!(wins > 50, "{wins} acquisitions in 3 s");
    assert!(busy > wins, "contended: {busy} busy answers, {wins} wins");
    // One id for the acquisition, one for the release; a loser whose
    // snapshot raced a commit may lock the row for an instant.
    let per_acquisition = spent as f64 / wins as f64;
    assert!(
        per_acquisition < 2.5,
        "{spent} transaction ids for {wins} acquisitions ({per_acquisition:.2} each) and {busy} busy answers: losers lock the row"
    );
}
