//! `payguard lock status` through the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use payguard_lock::{Acquisition, LockOptions, Locker, PgLeaseLock};
use payguard_test_support::TestDb;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn payguard(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_payguard"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_holder_token_and_expiry() {
    let db = TestDb::new().await;
    let strategy = PgLeaseLock::new(db.pool().clone());
    strategy.migrate().await.unwrap();
    let locker = Locker::new(Arc::new(strategy));
    let Acquisition::Acquired(guard) = locker
        .try_lock(
            "escrow-release",
            &LockOptions::builder(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
    else {
        panic!("lock busy");
    };
    let Acquisition::Acquired(freed) = locker
        .try_lock("reconcile", &LockOptions::default())
        .await
        .unwrap()
    else {
        panic!("lock busy");
    };
    freed.release().await.unwrap();

    let (code, table, _) = tokio::task::spawn_blocking({
        let url = db.url().to_owned();
        move || payguard(&["lock", "status", "--database-url", &url])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let row = table
        .lines()
        .find(|line| line.starts_with("escrow-release"))
        .expect("listed");
    assert!(
        row.contains("held") && row.contains(guard.owner().as_str()),
        "{table}"
    );
    assert!(row.contains(&format!(" {} ", guard.token())), "{table}");
    let free = table
        .lines()
        .find(|line| line.starts_with("reconcile"))
        .expect("listed");
    assert!(free.contains("free"), "{table}");

    let (code, json, _) = tokio::task::spawn_blocking({
        let url = db.url().to_owned();
        move || {
            payguard(&[
                "lock",
                "status",
                "--database-url",
                &url,
                "--name",
                "escrow-release",
                "--json",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let lock: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(lock["held"], true);
    assert_eq!(lock["token"], guard.token().get());
    assert!(lock["expires_in_ms"].as_u64().unwrap() > 20_000);

    let (code, text, _) = tokio::task::spawn_blocking({
        let url = db.url().to_owned();
        move || {
            payguard(&[
                "lock",
                "status",
                "--database-url",
                &url,
                "--name",
                "nothing",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(
        (code, text.trim()),
        (0, "no lock named \"nothing\" has been taken")
    );
    guard.release().await.unwrap();
}

#[test]
fn status_needs_a_database_and_says_when_it_cannot_read_it() {
    let (code, _, stderr) = payguard(&["lock", "status"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    let (code, _, stderr) = payguard(&[
        "lock",
        "status",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/postgres",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// `DATABASE_URL` with `sslmode=verify-full`: the server's own certificate
/// (its `ssl_cert_file`, issued for localhost) is the root to trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_locks_over_verified_tls() {
    let db = TestDb::new().await;
    PgLeaseLock::new(db.pool().clone()).migrate().await.unwrap();
    let certificate: String = sqlx::query_scalar("SELECT current_setting('ssl_cert_file')")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let mut url = url::Url::parse(db.url()).unwrap();
    url.set_host(Some("localhost")).unwrap();
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={certificate}");
    let unverifiable = format!("{url}?sslmode=verify-full");
    let (verified, unverifiable) = tokio::task::spawn_blocking(move || {
        (
            payguard(&["lock", "status", "--database-url", &verified]),
            payguard(&["lock", "status", "--database-url", &unverifiable]),
        )
    })
    .await
    .unwrap();
    assert_eq!(verified.0, 0, "{}", verified.2);
    assert_eq!(
        unverifiable.0, 1,
        "a certificate no trusted root issued is refused: {}",
        unverifiable.2
    );
}
