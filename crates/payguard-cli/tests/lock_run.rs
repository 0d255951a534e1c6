//! `payguard lock run` through the real binary, with real processes and a
//! real PostgreSQL (`DATABASE_URL`, default the local server). Commands
//! talk to the database with `psql`, as a cron script would.

#![allow(clippy::disallowed_methods)] // measures elapsed time on tokio's clock directly
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use payguard_lock::{Acquisition, LockOptions, Locker, PgLeaseLock};
use payguard_test_support::TestDb;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The fenced write of the payguard-lock README, verbatim.
const FENCED_WRITE: &str = r#"#!/bin/sh
set -e
psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 \
     -v lock="$PAYGUARD_LOCK_NAME" -v token="$PAYGUARD_FENCING_TOKEN" <<'SQL'
BEGIN;
SELECT payguard_lock_fence(:'lock', :token);  -- raises unless this run still holds the lock
UPDATE escrows SET state = 'released', released_by = :token WHERE state = 'held';
COMMIT;
SQL
"#;

fn payguard(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payguard"));
    command.env("DATABASE_URL", url).args(["lock", "run"]);
    command
}

fn finish(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn require_psql() {
    let found = Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "these tests run psql as the locked command: install the PostgreSQL client (apt-get install postgresql-client)"
    );
}

/// Starts `payguard lock run ... -- sh -c script` and waits for the
/// script's first line (which it prints once it runs).
fn start(url: &str, args: &[&str], script: &str) -> (Child, String) {
    let mut child = payguard(url)
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut first).unwrap();
    (child, first.trim().to_owned())
}

fn rest(mut child: Child) -> (i32, String, String) {
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stdout, stderr)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

async fn locker(db: &TestDb) -> Locker {
    let lease = PgLeaseLock::new(db.pool().clone());
    lease.migrate().await.unwrap();
    Locker::new(Arc::new(lease))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_runs_by_fifty_rounds_never_overlap() {
    require_psql();
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE runs (token bigint PRIMARY KEY, started timestamptz NOT NULL, ended timestamptz)")
        .execute(db.pool())
        .await
        .unwrap();
    let script = r#"psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 \
        -c "INSERT INTO runs VALUES ($PAYGUARD_FENCING_TOKEN, clock_timestamp(), NULL)" \
        -c "SELECT pg_sleep(0.005)" \
        -c "UPDATE runs SET ended = clock_timestamp() WHERE token = $PAYGUARD_FENCING_TOKEN""#;
    let hosts: Vec<_> = (0..8)
        .map(|_| {
            let url = db.url().to_owned();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let (code, _, stderr) = finish(payguard(&url).args([
                        "--name",
                        "race",
                        "--ttl",
                        "10s",
                        "--wait",
                        "--timeout",
                        "120s",
                        "--poll",
                        "20ms",
                        "--",
                        "sh",
                        "-c",
                        script,
                    ]));
                    assert_eq!(code, 0, "{stderr}");
                }
            })
        })
        .collect();
    blocking(move || {
        for host in hosts {
            host.join().unwrap();
        }
    })
    .await;

    let runs: Vec<(i64, f64, f64)> = sqlx::query_as(
        "SELECT token, EXTRACT(EPOCH FROM started)::float8, EXTRACT(EPOCH FROM ended)::float8
           FROM runs ORDER BY started",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(runs.len(), 400);
    for pair in runs.windows(2) {
        let ((token, _, ended), (next_token, next_started, _)) = (pair[0], pair[1]);
        assert!(
            ended <= next_started,
            "run {token} ended at {ended} after run {next_token} started at {next_started}"
        );
        assert!(token < next_token, "tokens go {token} then {next_token}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_runs_through_pgbouncer_in_transaction_mode_never_overlap() {
    require_psql();
    let db = TestDb::new().await;
    // Migrations take a session advisory lock: run them directly, and
    // tell the runs behind the pooler not to.
    locker(&db).await;
    sqlx::query("CREATE TABLE runs (token bigint PRIMARY KEY, started timestamptz NOT NULL, ended timestamptz)")
        .execute(db.pool())
        .await
        .unwrap();
    let bouncer = payguard_test_support::PgBouncer::start(db.url());
    let pooled = bouncer.url_for(db.url());
    let script = r#"psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 \
        -c "BEGIN; SELECT payguard_lock_fence('$PAYGUARD_LOCK_NAME', $PAYGUARD_FENCING_TOKEN); INSERT INTO runs VALUES ($PAYGUARD_FENCING_TOKEN, clock_timestamp(), NULL); COMMIT" \
        -c "SELECT pg_sleep(0.005)" \
        -c "UPDATE runs SET ended = clock_timestamp() WHERE token = $PAYGUARD_FENCING_TOKEN""#;
    let hosts: Vec<_> = (0..8)
        .map(|_| {
            let url = pooled.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let (code, _, stderr) = finish(payguard(&url).args([
                        "--name",
                        "race",
                        "--no-migrate",
                        "--ttl",
                        "10s",
                        "--wait",
                        "--timeout",
                        "120s",
                        // LISTEN does not cross a transaction pooler:
                        // without it, waiters ask again every 20 ms.
                        "--no-release-notices",
                        "--poll",
                        "20ms",
                        "--",
                        "sh",
                        "-c",
                        script,
                    ]));
                    assert_eq!(code, 0, "{stderr}");
                }
            })
        })
        .collect();
    blocking(move || {
        for host in hosts {
            host.join().unwrap();
        }
    })
    .await;
    let runs: Vec<(i64, f64, f64)> = sqlx::query_as(
        "SELECT token, EXTRACT(EPOCH FROM started)::float8, EXTRACT(EPOCH FROM ended)::float8
           FROM runs ORDER BY started",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(runs.len(), 200);
    for pair in runs.windows(2) {
        let ((token, _, ended), (next_token, next_started, _)) = (pair[0], pair[1]);
        assert!(
            ended <= next_started,
            "run {token} overlapped run {next_token}"
        );
        assert!(token < next_token, "tokens go {token} then {next_token}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_row_held_by_an_idle_transaction_exits_75_within_seconds() {
    use sqlx::Connection;
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    // A run that came and went: the row exists and the lock is free.
    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || finish(payguard(&url).args(["--name", "nightly", "--", "true"]))
    })
    .await;
    assert_eq!(code, 0, "{stderr}");
    for statement in [
        "SELECT 1 FROM payguard_locks WHERE name = 'nightly' FOR UPDATE",
        "LOCK TABLE payguard_locks IN ACCESS EXCLUSIVE MODE",
    ] {
        // A psql session someone left idle in its transaction.
        let mut idle = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN").execute(&mut idle).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut idle)
            .await
            .unwrap();

        let started = tokio::time::Instant::now();
        let (code, _, stderr) = blocking({
            let url = url.clone();
            move || {
                let mut child = payguard(&url)
                    .args(["--name", "nightly", "--", "true"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                for _ in 0..200 {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                rest(child)
            }
        })
        .await;
        assert_eq!(code, 75, "{statement}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{statement}: exited after {:?}",
            started.elapsed()
        );
        idle.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_exits_75_unless_waiting_and_the_lock_is_released_on_exit() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let locker = locker(&db).await;
    let Acquisition::Acquired(guard) = locker
        .try_lock(
            "job",
            &LockOptions::builder(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
    else {
        panic!("busy");
    };

    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || finish(payguard(&url).args(["--name", "job", "--", "true"]))
    })
    .await;
    assert_eq!(code, 75, "{stderr}");
    assert!(stderr.contains(guard.owner().as_str()), "{stderr}");
    assert!(stderr.contains("expires in"), "{stderr}");

    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || {
            finish(payguard(&url).args([
                "--name",
                "job",
                "--wait",
                "--timeout",
                "1s",
                "--",
                "true",
            ]))
        }
    })
    .await;
    assert_eq!(code, 75, "{stderr}");
    assert!(
        stderr.contains("gave up waiting") && stderr.contains(guard.owner().as_str()),
        "{stderr}"
    );

    let waiter = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            finish(payguard(&url).args([
                "--name",
                "job",
                "--wait",
                "--timeout",
                "30s",
                "--poll",
                "50ms",
                "--",
                "sh",
                "-c",
                r#"echo "$PAYGUARD_LOCK_NAME $PAYGUARD_FENCING_TOKEN $PAYGUARD_LOCK_OWNER"; exit 3"#,
            ]))
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = guard.token().get();
    guard.release().await.unwrap();
    let (code, stdout, stderr) = waiter.await.unwrap();
    assert_eq!(code, 3, "the command's own status: {stderr}");
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields[..2], ["job", &(first + 1).to_string()], "{stdout}");
    assert!(fields[2].contains(':'), "an owner id: {stdout}");

    // Released on exit: taken at once, by the next token.
    let Acquisition::Acquired(next) = locker
        .try_lock(
            "job",
            &LockOptions::builder(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
    else {
        panic!("payguard lock run kept the lock after its command exited");
    };
    assert_eq!(next.token().get(), first + 2);
    next.release().await.unwrap();

    // --at-least keeps it past a quick command.
    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || finish(payguard(&url).args(["--name", "job", "--at-least", "5s", "--", "true"]))
    })
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(matches!(
        locker
            .try_lock(
                "job",
                &LockOptions::builder(Duration::from_secs(30))
                    .build()
                    .unwrap()
            )
            .await
            .unwrap(),
        Acquisition::Busy(_)
    ));

    // A command that cannot run: 127, and the lock is not kept.
    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || finish(payguard(&url).args(["--name", "other", "--", "/nonexistent/payguard-job"]))
    })
    .await;
    assert_eq!(code, 127, "{stderr}");
    assert!(matches!(
        locker
            .try_lock(
                "other",
                &LockOptions::builder(Duration::from_secs(30))
                    .build()
                    .unwrap()
            )
            .await
            .unwrap(),
        Acquisition::Acquired(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_table_or_a_database_the_command_does_not_run() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let (code, stdout, stderr) = blocking(move || {
        finish(payguard(&url).args(["--name", "job", "--no-migrate", "--", "echo", "ran"]))
    })
    .await;
    assert_eq!(code, 69, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("--no-migrate"), "{stderr}");

    let (code, stdout, stderr) = blocking(|| {
        finish(
            payguard("postgres://postgres@127.0.0.1:1/postgres")
                .args(["--name", "job", "--", "echo", "ran"]),
        )
    })
    .await;
    assert_eq!(code, 69, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("cannot connect"),
        "{stderr}"
    );

    let (code, _, stderr) = blocking(|| {
        finish(payguard("postgres://unused").args(["--name", "job", "--ttl", "soon", "--", "true"]))
    })
    .await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_command_and_the_lock_is_released_after_it() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let locker = locker(&db).await;

    let (child, ready) = blocking({
        let url = url.clone();
        move || {
            start(
                &url,
                &["--name", "sig"],
                r#"trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done"#,
            )
        }
    })
    .await;
    assert_eq!(ready, "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let (code, stdout, stderr) = blocking(move || rest(child)).await;
    assert_eq!(code, 7, "the command's status after its trap: {stderr}");
    assert!(stdout.contains("got TERM"), "{stdout}");
    assert!(matches!(
        locker
            .try_lock("sig", &LockOptions::default())
            .await
            .unwrap(),
        Acquisition::Acquired(_)
    ));

    let (child, ready) = blocking({
        let url = url.clone();
        move || start(&url, &["--name", "sig2"], "echo ready; exec sleep 30")
    })
    .await;
    assert_eq!(ready, "ready");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let (code, _, stderr) = blocking(move || rest(child)).await;
    assert_eq!(code, 130, "killed by the forwarded SIGINT: {stderr}");
    assert!(matches!(
        locker
            .try_lock("sig2", &LockOptions::default())
            .await
            .unwrap(),
        Acquisition::Acquired(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_payguard_is_replaced_after_its_ttl() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let (mut child, group) = blocking({
        let url = url.clone();
        move || {
            start(
                &url,
                &["--name", "k", "--ttl", "2s"],
                "echo $$; exec sleep 30",
            )
        }
    })
    .await;
    let group = Pid::from_raw(group.parse().unwrap());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || finish(payguard(&url).args(["--name", "k", "--", "true"]))
    })
    .await;
    assert_eq!(
        code, 75,
        "the lease outlives its killed holder until the TTL: {stderr}"
    );
    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || {
            finish(payguard(&url).args([
                "--name",
                "k",
                "--wait",
                "--timeout",
                "10s",
                "--poll",
                "100ms",
                "--",
                "true",
            ]))
        }
    })
    .await;
    assert_eq!(code, 0, "{stderr}");
    // The orphaned command kept running: nothing could tell it.
    let _ = killpg(group, Signal::SIGKILL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_payguard_is_taken_over_and_its_command_is_stopped_and_fenced() {
    require_psql();
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    sqlx::query(
        "CREATE TABLE escrows (id int PRIMARY KEY, state text NOT NULL, released_by bigint)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO escrows VALUES (1, 'held', NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let directory = std::env::temp_dir().join(format!("payguard-lock-run-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let fenced_write = directory.join("fenced-write.sh");
    std::fs::write(&fenced_write, FENCED_WRITE).unwrap();
    let fenced_write = fenced_write.display().to_string();

    // The stale run's command writes, fenced, once it is told to stop.
    let script = format!(
        r#"trap 'sh {fenced_write}; echo fenced-write-status=$?; exit 0' TERM; echo ready; while :; do sleep 0.1; done"#
    );
    let (stale, ready) = blocking({
        let url = url.clone();
        move || {
            start(
                &url,
                &["--name", "escrow", "--ttl", "2s", "--grace", "10s"],
                &script,
            )
        }
    })
    .await;
    assert_eq!(ready, "ready");
    let stale_pid = Pid::from_raw(stale.id() as i32);
    kill(stale_pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (code, _, stderr) = blocking({
        let url = url.clone();
        move || finish(payguard(&url).args(["--name", "escrow", "--", "true"]))
    })
    .await;
    assert_eq!(code, 0, "another run takes over after the TTL: {stderr}");

    kill(stale_pid, Signal::SIGCONT).unwrap();
    let (code, stdout, stderr) = blocking(move || rest(stale)).await;
    assert_eq!(code, 124, "{stderr}");
    assert!(stderr.contains("lost lock \"escrow\""), "{stderr}");
    assert!(
        stdout.contains("fenced-write-status=3"),
        "psql refused the stale write: {stdout}"
    );
    let state: String = sqlx::query_scalar("SELECT state FROM escrows WHERE id = 1")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(state, "held");

    // The same write from a live holder goes through.
    let (code, _, stderr) = blocking({
        let url = url.clone();
        let fenced_write = fenced_write.clone();
        move || finish(payguard(&url).args(["--name", "escrow", "--", "sh", &fenced_write]))
    })
    .await;
    assert_eq!(code, 0, "{stderr}");
    let (state, by): (String, Option<i64>) =
        sqlx::query_as("SELECT state, released_by FROM escrows WHERE id = 1")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((state.as_str(), by), ("released", Some(3)));
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn the_readme_shows_the_fenced_write_these_tests_run() {
    let readme = include_str!("../../payguard-lock/README.md");
    assert!(
        readme.contains(FENCED_WRITE),
        "update FENCED_WRITE and the README together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_the_command_leaves_behind_are_stopped_before_the_release() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let locker = locker(&db).await;
    let (code, stdout, stderr) = blocking(move || {
        finish(payguard(&url).args([
            "--name",
            "bg",
            "--grace",
            "1s",
            "--",
            "sh",
            "-c",
            "sleep 30 & echo $!",
        ]))
    })
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("left processes behind"), "{stderr}");
    let straggler = Pid::from_raw(stdout.trim().parse().unwrap());
    // Dead, or a zombie waiting for whoever inherited it to reap it.
    let state = std::fs::read_to_string(format!("/proc/{straggler}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    assert!(
        kill(straggler, None).is_err() || zombie,
        "the background sleep was stopped: {state}"
    );
    assert!(matches!(
        locker
            .try_lock("bg", &LockOptions::default())
            .await
            .unwrap(),
        Acquisition::Acquired(_)
    ));
}
