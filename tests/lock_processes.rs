//! payguard-lock across real processes (`lock-worker`) on a real
//! PostgreSQL: mutual exclusion under contention, recovery after SIGKILL,
//! and fencing of a holder paused with SIGSTOP past its lease.

// Deadlines for reading the workers' output, and the recovery bound.
#![allow(clippy::disallowed_methods)]

use payguard_lock::{LockOptions, Locker, PgLeaseLock};
use payguard_test_support::TestDb;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

async fn setup(db: &TestDb) {
    PgLeaseLock::new(db.pool().clone()).migrate().await.unwrap();
    for statement in [
        "CREATE TABLE cs_log (id bigserial PRIMARY KEY, pid integer NOT NULL, token bigint NOT NULL,
                              started timestamptz NOT NULL, ended timestamptz)",
        "CREATE TABLE counter (value bigint NOT NULL)",
        "INSERT INTO counter VALUES (0)",
        "CREATE TABLE resource (value bigint NOT NULL, last_token bigint NOT NULL)",
        "INSERT INTO resource VALUES (0, 0)",
    ] {
        sqlx::query(statement).execute(db.pool()).await.unwrap();
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Starts `lock-worker hold` and returns it with its output lines.
fn holder(db: &TestDb, name: &str, ttl_ms: u64) -> (Child, Receiver<String>) {
    let mut child = Command::new(WORKER)
        .args(["hold", db.url(), name, &ttl_ms.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

fn wait_for(lines: &Receiver<String>, wanted: impl Fn(&str) -> bool, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if wanted(&line) => return line,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                panic!("worker never said what we waited for")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_by_a_thousand_rounds_never_overlap() {
    let db = TestDb::new().await;
    setup(&db).await;
    let workers: Vec<Child> = (0..8)
        .map(|_| {
            Command::new(WORKER)
                .args(["rounds", db.url(), "contended", "1000"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut worker in workers {
        let status = tokio::task::spawn_blocking(move || worker.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "worker failed: {status}");
    }
    let sections: i64 = sqlx::query_scalar("SELECT count(*) FROM cs_log WHERE ended IS NOT NULL")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(sections, 8000);
    let overlaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT started, max(ended) OVER (ORDER BY started ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
                                 FROM cs_log) t
          WHERE started < before",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(overlaps, 0, "critical sections overlapped");
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT token, lag(token) OVER (ORDER BY started) AS previous FROM cs_log) t WHERE token <= previous",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        out_of_order, 0,
        "tokens strictly increase in critical-section order"
    );
    let counter: i64 = sqlx::query_scalar("SELECT value FROM counter")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(counter, 8000, "no lost update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_replaced_within_ttl_plus_heartbeat_plus_poll() {
    let db = TestDb::new().await;
    setup(&db).await;
    let ttl = Duration::from_secs(2);
    let (mut child, lines) = holder(&db, "killed", 2000);
    wait_for(
        &lines,
        |line| line.starts_with("acquired"),
        Duration::from_secs(10),
    );
    // Let a renewal or two happen, then kill it without warning.
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "KILL");
    let killed = Instant::now();
    child.wait().unwrap();
    let locker = Locker::new(Arc::new(PgLeaseLock::new(db.pool().clone())));
    let options = LockOptions::builder(ttl)
        .poll_every(Duration::from_millis(20))
        .build()
        .unwrap();
    let guard = locker
        .lock("killed", &options, Duration::from_secs(10))
        .await
        .unwrap();
    let recovery = killed.elapsed();
    let heartbeat = options.heartbeat_every();
    assert!(
        recovery >= ttl - heartbeat - Duration::from_millis(100),
        "no early steal: {recovery:?}"
    );
    assert!(
        recovery <= ttl + heartbeat + Duration::from_millis(500),
        "bounded recovery: {recovery:?}"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_is_fenced_and_told_when_it_resumes() {
    let db = TestDb::new().await;
    setup(&db).await;
    let (mut child, lines) = holder(&db, "paused", 1000);
    let acquired = wait_for(
        &lines,
        |line| line.starts_with("acquired"),
        Duration::from_secs(10),
    );
    let old_token: i64 = acquired.trim_start_matches("acquired ").parse().unwrap();
    wait_for(&lines, |line| line == "write ok", Duration::from_secs(5));
    signal(&child, "STOP");
    std::thread::sleep(Duration::from_millis(1500));
    // Another process's lock: it takes over and writes with its token.
    let locker = Locker::new(Arc::new(PgLeaseLock::new(db.pool().clone())));
    let options = LockOptions::builder(Duration::from_secs(10))
        .build()
        .unwrap();
    let guard = locker
        .lock("paused", &options, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(guard.token().as_i64() > old_token);
    let mut tx = db.pool().begin().await.unwrap();
    guard.fence().check(&mut tx).await.unwrap();
    sqlx::query("UPDATE resource SET value = value + 1, last_token = $1")
        .bind(guard.token().as_i64())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Drop anything it said before the pause.
    while lines.try_recv().is_ok() {}
    signal(&child, "CONT");
    let mut said = Vec::new();
    let until = Instant::now() + Duration::from_secs(1);
    while let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
        said.push(line);
    }
    signal(&child, "KILL");
    child.wait().unwrap();
    assert!(
        said.iter().any(|line| line == "lost"),
        "its cancellation fired: {said:?}"
    );
    assert!(
        said.iter().any(|line| line == "write rejected"),
        "it kept trying: {said:?}"
    );
    assert!(
        !said.iter().any(|line| line == "write ok"),
        "no stale write was accepted: {said:?}"
    );
    let last_token: i64 = sqlx::query_scalar("SELECT last_token FROM resource")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        last_token,
        guard.token().as_i64(),
        "the resource's last writer is the new holder"
    );
    guard.release().await.unwrap();
}
