//! Operating the backend: settings checked at start (exit 2, one line),
//! secrets that never print and rotate, bounded waits on a row another
//! session holds, failed charges that free their nights, payout failures
//! and unknown events that are seen, and readiness that drains after
//! SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use booking_backend::DatabaseSettings;
use common::{Backend, booking, deliver_paystack, listing, post};
use payguard_redact::Secret;
use payguard_test_support::TestDb;
use serde_json::{Value, json};
use sqlx::Connection;
use std::process::{Command, Stdio};
use std::time::Duration;

const OLD_KEY: &str = gateway_sim::DEFAULT_PAYSTACK_SECRET_KEY;
const NEW_KEY: &str = "sk_test_rotated_in";

async fn backend(database: Option<DatabaseSettings>) -> Backend {
    common::start(None, |settings| {
        settings.database = database.unwrap_or_default();
        // The new key is current; the old one still verifies deliveries
        // signed before the rotation.
        settings.webhook_secrets.paystack = vec![
            Secret::new(NEW_KEY.to_owned()),
            Secret::new(OLD_KEY.to_owned()),
        ];
    })
    .await
}

async fn book(backend: &Backend, listing: &str, guest: usize) -> (u16, Value) {
    post(
        &format!("{}/v1/bookings", backend.url),
        &booking(listing, guest),
        Some(&format!("key-{guest}")),
    )
    .await
}

async fn status_of(backend: &Backend, id: &str) -> Value {
    reqwest::get(format!("{}/v1/bookings/{id}", backend.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn metrics_text(backend: &Backend) -> String {
    reqwest::get(format!("{}/metrics", backend.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_rotate_and_never_print() {
    let backend = backend(None).await;
    let body = json!({"event": "subscription.create", "data": {"id": 1}}).to_string();
    for secret in [OLD_KEY, NEW_KEY] {
        let (status, answer) = deliver_paystack(&backend, &body, secret).await;
        assert_eq!(status, 200, "signed with {secret}: {answer}");
        let body = json!({"event": "subscription.create", "data": {"id": 2, "secret": secret}})
            .to_string();
        deliver_paystack(&backend, &body, secret).await;
    }
    let (status, answer) = deliver_paystack(&backend, &body, "sk_test_never_configured").await;
    assert_eq!(status, 401);
    let problem: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(problem["code"], "invalid_signature");
    assert_eq!(
        problem["detail"], "the webhook could not be verified",
        "never the verifier's reason"
    );
    let printed = format!("{:?}", backend.app.settings);
    for secret in [
        OLD_KEY,
        NEW_KEY,
        gateway_sim::DEFAULT_FLUTTERWAVE_SECRET_KEY,
        gateway_sim::DEFAULT_FLUTTERWAVE_SECRET_HASH,
    ] {
        assert!(!printed.contains(secret), "settings print {secret}");
    }
    backend.shutdown.cancel();
}

async fn failed_charge_frees_the_nights(database: Option<DatabaseSettings>) {
    let backend = backend(database).await;
    let listing = listing(&backend).await;
    let (status, first) = book(&backend, &listing, 1).await;
    assert_eq!(status, 201, "{first}");
    let (status, _) = book(&backend, &listing, 2).await;
    assert_eq!(status, 409, "the nights are held");
    let reference = first["payment"]["reference"].as_str().unwrap();
    let failed = json!({"event": "charge.failed", "data": {"id": 7001, "status": "failed",
                        "reference": reference, "amount": first["amount_minor"], "currency": "NGN"}});
    let (status, answer) = deliver_paystack(&backend, &failed.to_string(), OLD_KEY).await;
    assert_eq!(status, 200, "{answer}");
    let id = first["id"].as_str().unwrap();
    assert_eq!(status_of(&backend, id).await["status"], "expired");
    let (status, second) = book(&backend, &listing, 2).await;
    assert_eq!(status, 201, "the nights are free at once: {second}");
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_charge_frees_the_nights_at_once_in_memory() {
    failed_charge_frees_the_nights(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_charge_frees_the_nights_at_once_on_postgres() {
    let db = TestDb::new().await;
    failed_charge_frees_the_nights(Some(DatabaseSettings::postgres(db.url()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_reversals_and_unknown_events_are_counted() {
    booking_backend::telemetry::install_metrics();
    let backend = backend(None).await;
    let listing = listing(&backend).await;
    let (_, created) = book(&backend, &listing, 1).await;
    let id = created["id"].as_str().unwrap();
    let paid = json!({"event": "charge.success", "data": {"id": 7101, "status": "success",
                      "reference": created["payment"]["reference"],
                      "amount": created["amount_minor"], "currency": "NGN"}});
    let (status, answer) = deliver_paystack(&backend, &paid.to_string(), OLD_KEY).await;
    assert_eq!(status, 200, "{answer}");
    assert!(backend.app.store.begin_payout(id, None).await.unwrap());
    let reversed = json!({"event": "transfer.reversed", "data": {"id": 7102, "status": "reversed",
                          "reference": format!("escrow_{id}")}});
    let (status, answer) = deliver_paystack(&backend, &reversed.to_string(), OLD_KEY).await;
    assert_eq!(status, 200, "{answer}");
    let unknown = json!({"event": "subscription.disable", "data": {"id": 7103}});
    let (status, answer) = deliver_paystack(&backend, &unknown.to_string(), OLD_KEY).await;
    assert_eq!(status, 200, "acknowledged: {answer}");
    let booking = status_of(&backend, id).await;
    assert_eq!(
        (&booking["payout_status"], &booking["escrow"]),
        (&json!("reversed"), &json!("held"))
    );
    let metrics = metrics_text(&backend).await;
    for line in [
        r#"booking_payouts_failed_total{outcome="reversed"} 1"#,
        r#"booking_webhook_events_ignored_total{reason="unknown_type"} 1"#,
        "booking_database_up 1",
        "booking_webhook_inbox_failed 0",
    ] {
        assert!(
            metrics.lines().any(|seen| seen == line),
            "no {line:?} in\n{metrics}"
        );
    }
    backend.shutdown.cancel();
}

/// A session that locked the listing's row and went idle in its
/// transaction (a stuck migration, a person in psql).
async fn lock_listing_elsewhere(url: &str, listing: &str) -> sqlx::PgConnection {
    let mut session = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut session).await.unwrap();
    sqlx::query("SELECT 1 FROM listings WHERE id = $1 FOR UPDATE")
        .bind(listing)
        .execute(&mut session)
        .await
        .unwrap();
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_locked_elsewhere_answers_at_once_instead_of_holding_the_request() {
    let db = TestDb::new().await;
    let mut waiting = DatabaseSettings::postgres(db.url());
    waiting.timeouts = waiting.timeouts.lock_timeout(Duration::from_millis(200));
    let waits = backend(Some(waiting)).await;
    let listing = listing(&waits).await;
    let session = lock_listing_elsewhere(db.url(), &listing).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/bookings", waits.url))
        .header("idempotency-key", "busy-1")
        .json(&booking(&listing, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        409,
        "not held until the request times out"
    );
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "busy");
    waits.shutdown.cancel();

    let mut nowait = DatabaseSettings::postgres(db.url());
    nowait.nowait = true;
    let refuses = backend(Some(nowait)).await;
    let (status, problem) = book(&refuses, &listing, 2).await;
    assert_eq!(
        (status, &problem["code"]),
        (409, &json!("dates_unavailable"))
    );
    session.close().await.unwrap(); // rolls back: the row is free
    let (status, created) = book(&refuses, &listing, 3).await;
    assert_eq!(status, 201, "{created}");
    refuses.shutdown.cancel();
}

/// `booking-backend serve` with the keys it needs and `args`.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_booking-backend"));
    command
        .arg("serve")
        .args(args)
        .env_remove("DATABASE_URL")
        .env("PAYSTACK_SECRET_KEY", "sk_test_a,sk_test_b")
        .env("FLUTTERWAVE_SECRET_KEY", "FLWSECK_TEST-x")
        .env("FLUTTERWAVE_SECRET_HASH", "hash")
        .env("LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn settings_that_cannot_work_exit_2_with_one_line() {
    for (args, env, says) in [
        (
            &["--database-max-connections", "0"][..],
            &[][..],
            "--database-max-connections",
        ),
        (
            &["--database-lock-timeout", "0s"][..],
            &[][..],
            "--database-lock-timeout",
        ),
        (&["--breaker-failure-rate", "2"][..], &[][..], "failure"),
        (
            &[][..],
            &[("PAYSTACK_SECRET_KEY", "sk_a,,sk_b")][..],
            "empty secret",
        ),
        (&["--log-level", "loud"][..], &[][..], "loud"),
    ] {
        let output = serve(args, env).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("sk_a") && !stderr.contains("sk_test_a"),
            "a secret printed: {stderr}"
        );
    }
}

#[test]
fn readiness_drains_after_sigterm_before_the_listener_closes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = serve(&["--bind", &bind], &[("DRAIN_TIMEOUT", "2s")])
        .spawn()
        .unwrap();
    let ready = || {
        let answer = std::net::TcpStream::connect(&bind)
            .ok()
            .and_then(|mut stream| {
                use std::io::{Read, Write};
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                stream
                    .write_all(
                        b"GET /health/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                    )
                    .ok()?;
                let mut text = String::new();
                stream.read_to_string(&mut text).ok()?;
                Some(text)
            });
        answer.unwrap_or_default()
    };
    let mut up = String::new();
    for _ in 0..100 {
        up = ready();
        if up.starts_with("HTTP/1.1 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up.starts_with("HTTP/1.1 200"), "{up}");
    assert!(
        up.contains(r#""version""#) && up.contains(r#""uptime_seconds""#),
        "{up}"
    );
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    std::thread::sleep(Duration::from_millis(300));
    let draining = ready();
    assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
    assert!(draining.contains(r#""status":"draining""#), "{draining}");
    let mut exited = None;
    for _ in 0..100 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(exited) = exited else {
        let _ = child.kill();
        panic!("still running 10 s after SIGTERM");
    };
    assert!(exited.success(), "{exited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_list_needs_an_admin_key_and_pages_by_cursor() {
    let admin_key = "admin-key-0123456789";
    let client_key = "client-key-0123456789";
    let backend = common::start(None, |settings| {
        settings.api_keys = booking_backend::http::parse_api_keys(&format!(
            "acme:{client_key},ops:{admin_key}:admin"
        ))
        .unwrap();
    })
    .await;
    let listing = listing(&backend).await;
    for guest in 0..5 {
        let mut body = booking(&listing, guest);
        let from = common::day(40 + 2 * i64::try_from(guest).unwrap());
        let to = common::day(41 + 2 * i64::try_from(guest).unwrap());
        body["check_in"] = json!(from);
        body["check_out"] = json!(to);
        let (status, created) = post(
            &format!("{}/v1/bookings", backend.url),
            &body,
            Some(&format!("list-{guest}")),
        )
        .await;
        assert_eq!(status, 201, "{created}");
    }
    let get = |query: &str, key: Option<&str>| {
        let mut request = reqwest::Client::new().get(format!("{}/v1/bookings{query}", backend.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, problem) = get("", None).await;
    assert_eq!((status, &problem["code"]), (401, &json!("unauthorized")));
    let (status, problem) = get("", Some("admin-key-012345678X")).await;
    assert_eq!(
        (status, &problem["code"]),
        (401, &json!("unauthorized")),
        "same answer for a wrong key"
    );
    let (status, problem) = get("", Some(client_key)).await;
    assert_eq!((status, &problem["code"]), (403, &json!("forbidden")));

    let mut seen = Vec::new();
    let mut query = "?limit=2&status=pending_payment".to_owned();
    loop {
        let (status, page) = get(&query, Some(admin_key)).await;
        assert_eq!(status, 200, "{page}");
        for booking in page["bookings"].as_array().unwrap() {
            seen.push(booking["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=2&status=pending_payment&after={next}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), &sorted), (5, &seen), "each once, by id");
    for bad in [
        "?limit=0",
        "?limit=201",
        "?after=zz",
        "?status=lost",
        "?after=00",
    ] {
        let (status, problem) = get(bad, Some(admin_key)).await;
        assert!(matches!(status, 400 | 422), "{bad}: {status} {problem}");
    }
    backend.shutdown.cancel();
}
