//! The backend under hostile input, each category bounded in count and
//! time: odd methods, slow and silent connections (a real process under a
//! low open-files limit), signed but unfitting or poisonous webhooks,
//! altered copies, malformed and oversized bodies, and the edges. After
//! each: no 5xx but documented 503s, no internal text in any body, bounded
//! metrics, and the database consistent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use booking_backend::server::Limits;
use common::Backend;
use payguard_test_support::TestDb;
use payguard_webhook::{Provider, Verifier};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

async fn backend(database_url: Option<String>, limits: Limits) -> Backend {
    common::start(None, |settings| {
        settings.database = database_url
            .map(booking_backend::DatabaseSettings::postgres)
            .unwrap_or_default();
        settings.limits = limits;
        settings.instance = "hostile".to_owned();
    })
    .await
}

/// Everything the server sends until it closes the connection; `None` if
/// it is still open after `patience` without a byte.
fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> Option<String> {
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&answer).into_owned());
            }
            Err(_) => return None,
        }
    }
}

/// Sends raw bytes on a fresh connection and reads the answer.
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

async fn send(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &str,
    key: Option<&str>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Every error body: problem+json with a code, no parser or driver text.
fn assert_safe(status: u16, body: &str) {
    if status >= 400 {
        let problem: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{status} is not problem+json: {body}"));
        assert!(problem["code"].is_string(), "{body}");
        for internal in [
            "line 1",
            "column",
            "expected",
            "error returned from database",
            "invalid type",
            "unknown field",
            "sqlx",
            "serde",
            "header",
        ] {
            assert!(
                !body.contains(internal),
                "{status} leaks {internal:?}: {body}"
            );
        }
    }
    assert!(
        status < 500 || status == 503,
        "undocumented {status}: {body}"
    );
}

fn listing_body() -> Value {
    json!({"title": "Ikoyi flat", "nightly_rate_minor": 3_000_000, "currency": "NGN",
           "host": {"name": "Ada Host", "email": "ada@example.com", "phone": "+2348031234567",
                    "bank_code": "058", "account_number": "0123456789"}})
}

async fn listing(backend: &Backend) -> String {
    let (status, body) = send(
        "POST",
        &format!("{}/v1/listings", backend.url),
        Some("application/json"),
        &listing_body().to_string(),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn day(offset: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(offset)).to_string()
}

fn booking_body(listing: &str, name: &str, email: &str, nights: i64) -> Value {
    json!({"listing_id": listing,
           "guest": {"name": name, "email": email, "phone": "+2348059876543"},
           "check_in": day(30), "check_out": day(30 + nights)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_methods_share_one_closed_label() {
    let backend = backend(None, Limits::default()).await;
    booking_backend::telemetry::install_metrics();
    let metrics = |backend: &Backend| {
        let url = format!("{}/metrics", backend.url);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let odd = |from: usize, to: usize| {
        let addr = backend.addr;
        tokio::task::spawn_blocking(move || {
            for n in from..to {
                let method = format!("X{n}{}", "Y".repeat(4000));
                let answer = raw(
                    addr,
                    format!("{method} /v1/listings HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                        .as_bytes(),
                );
                assert!(
                    answer.starts_with("HTTP/1.1 4"),
                    "{}",
                    &answer[..answer.len().min(200)]
                );
            }
        })
    };
    odd(0, 60).await.unwrap();
    // Other tests share the recorder, so the size is not compared; the
    // labels are: each comes from a closed set.
    let text = metrics(&backend).await;
    assert!(!text.contains("YYYY"), "an invented method became a label");
    assert!(text.contains(r#"method="other""#), "{text}");
    for line in text
        .lines()
        .filter(|line| line.starts_with("booking_http_"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        if let Some(method) = label("method") {
            assert!(
                [
                    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"
                ]
                .contains(&method.as_str()),
                "{line}"
            );
        }
        if let Some(route) = label("route") {
            // A template or `unmatched`, never a raw path with an id in it.
            assert!(
                route == "unmatched"
                    || route
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || "/{}_-1".contains(c)),
                "{line}"
            );
        }
    }
    assert!(text.len() < 256 << 10, "/metrics is {} bytes", text.len());
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let backend = backend(None, limits).await;
    let addr = backend.addr;
    tokio::task::spawn_blocking(move || {
        // Headers that never finish: closed once the header timeout passes
        // (the read would fail after 3 s if the server kept waiting).
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"POST /v1/listings HTTP/1.1\r\nhost: x\r\ncontent-le")
            .unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(3))
            .expect("a half-sent header held the connection");
        assert!(!answer.contains("201"), "{answer}");

        // A keep-alive connection that goes quiet after an answer is
        // closed too.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(3))
            .expect("the idle keep-alive connection stayed open");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await
    .unwrap();
    backend.shutdown.cancel();
}

/// The real binary under `prlimit --nofile=256`, with 300 silent
/// connections opened against it: the connection cap keeps descriptors
/// free, silent connections are closed, and a real client still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_silent_connections_under_a_low_open_files_limit_do_not_take_the_service_down()
 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new("prlimit")
        .args(["--nofile=256:256", "--"])
        .arg(env!("CARGO_BIN_EXE_booking-backend"))
        .arg("serve")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("PAYSTACK_SECRET_KEY", "sk_test_x")
        .env("FLUTTERWAVE_SECRET_KEY", "FLWSECK_TEST-x")
        .env("FLUTTERWAVE_SECRET_HASH", "hash")
        .env("MAX_CONNECTIONS", "150")
        .env("HEADER_READ_TIMEOUT", "1s")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) and the booking-backend binary");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let live = |addr| {
        raw(
            addr,
            b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
    };
    let mut up = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "the backend did not start");
    let silent: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(silent.len() > 200, "{} connections opened", silent.len());
    let answer = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        live(addr)
    })
    .await
    .unwrap();
    drop(silent);
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(rss_kib < 200 * 1024, "RSS {rss_kib} KiB");
}

/// The `x-paystack-signature` of `body` under the simulator's key.
fn signed(body: &str) -> String {
    Verifier::builder(Provider::Paystack)
        .secret(gateway_sim::DEFAULT_PAYSTACK_SECRET_KEY)
        .build()
        .unwrap()
        .sign_at(body.as_bytes(), std::time::UNIX_EPOCH, None)
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .1
        .to_str()
        .unwrap()
        .to_owned()
}

async fn deliver(backend: &Backend, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/paystack", backend.url))
        .header("content-type", "application/json")
        .header("x-paystack-signature", signed(body))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn booking_state(backend: &Backend, id: &str) -> Value {
    reqwest::get(format!("{}/v1/bookings/{id}", backend.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn webhooks_that_do_not_fit(database_url: Option<String>) -> Backend {
    let backend = backend(database_url, Limits::default()).await;
    let listing = listing(&backend).await;
    let (status, created) = send(
        "POST",
        &format!("{}/v1/bookings", backend.url),
        Some("application/json"),
        &booking_body(&listing, "Guest One", "guest1@example.com", 2).to_string(),
        Some("b1"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["id"].as_str().unwrap();
    let reference = created["payment"]["reference"].as_str().unwrap();

    // A refund nobody asked for, for a booking not yet paid: no money moves.
    let failed = json!({"event": "refund.failed", "data": {"id": 99001, "status": "failed",
                        "transaction_reference": reference}})
    .to_string();
    let (status, body) = deliver(&backend, &failed).await;
    assert_safe(status, &body);
    assert_eq!(booking_state(&backend, id).await["escrow"], "none");

    // Paid; then a refund.processed for a refund never started.
    reqwest::Client::new()
        .post(format!(
            "{}/_sim/charges/{reference}/complete",
            backend.sim.base_url()
        ))
        .body(r#"{"outcome":"success"}"#)
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        if booking_state(&backend, id).await["status"] == "confirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let processed =
        json!({"event": "refund.processed", "data": {"id": 99002, "status": "processed",
                           "transaction_reference": reference}})
        .to_string();
    let (status, body) = deliver(&backend, &processed).await;
    assert_safe(status, &body);
    let state = booking_state(&backend, id).await;
    assert_eq!(
        (state["escrow"].as_str(), state["refund_status"].as_str()),
        (Some("held"), None),
        "a refund event moved escrow with no refund behind it: {state}"
    );

    // Poison: authentic, never processable. Acknowledged once, dead, and
    // its redelivery is a duplicate, not another 503.
    for poison in [
        json!({"event": "charge.success", "data": {"id": 7, "reference": "bk\u{0}x", "amount": 1, "currency": "NGN", "status": "success"}}),
        json!({"event": "charge.success", "data": {"id": "9".repeat(5000), "reference": reference, "amount": 1, "currency": "NGN", "status": "success"}}),
        json!({"event": "charge\u{0}success", "data": {"id": 8}}),
    ] {
        let body = poison.to_string();
        let (status, answer) = deliver(&backend, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("dead"), "{answer}");
        let (status, answer) = deliver(&backend, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("duplicate"), "{answer}");
    }

    // An altered copy under a real event's id, first: the genuine event is
    // still applied.
    let (status, other) = send(
        "POST",
        &format!("{}/v1/bookings", backend.url),
        Some("application/json"),
        &json!({"listing_id": listing,
                "guest": {"name": "Guest Two", "email": "guest2@example.com", "phone": "+2348059876543"},
                "check_in": day(60), "check_out": day(62)})
        .to_string(),
        Some("b2"),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let other: Value = serde_json::from_str(&other).unwrap();
    let (other_id, other_reference) = (
        other["id"].as_str().unwrap(),
        other["payment"]["reference"].as_str().unwrap(),
    );
    let amount = other["amount_minor"].as_i64().unwrap();
    // The guest pays; the simulator's own webhook is held back, and the
    // same event arrives twice, first with an altered amount.
    backend.sim.set_webhooks(gateway_sim::WebhookSettings {
        enabled: false,
        ..gateway_sim::WebhookSettings::default()
    });
    reqwest::Client::new()
        .post(format!(
            "{}/_sim/charges/{other_reference}/complete",
            backend.sim.base_url()
        ))
        .body(r#"{"outcome":"success"}"#)
        .send()
        .await
        .unwrap();
    let genuine = json!({"event": "charge.success", "data": {"id": 424242, "reference": other_reference,
                         "amount": amount, "currency": "NGN", "status": "success"}});
    let mut altered = genuine.clone();
    altered["data"]["amount"] = json!(1);
    let (status, body) = deliver(&backend, &altered.to_string()).await;
    assert_safe(status, &body);
    let (status, body) = deliver(&backend, &genuine.to_string()).await;
    assert_eq!(status, 200, "the genuine event was refused: {body}");
    let state = booking_state(&backend, other_id).await;
    assert_eq!(
        (state["status"].as_str(), state["refund_status"].as_str()),
        (Some("confirmed"), None),
        "the altered copy bent the booking: {state}"
    );

    // Forged: a generic 401.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/paystack", backend.url))
        .body(genuine.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 401);
    assert_safe(status, &body);
    backend
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_do_not_fit_change_nothing_in_memory() {
    webhooks_that_do_not_fit(None).await.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_do_not_fit_change_nothing_on_postgres() {
    let db = TestDb::new().await;
    let backend = webhooks_that_do_not_fit(Some(db.url().to_owned())).await;
    assert_consistent(&backend, db.pool()).await;
    backend.shutdown.cancel();
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_inbox WHERE status = 'dead'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(dead, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edges_refuse_what_they_should_with_safe_problems() {
    let db = TestDb::new().await;
    let backend = backend(Some(db.url().to_owned()), Limits::default()).await;
    let listing = listing(&backend).await;
    let listings = format!("{}/v1/listings", backend.url);
    let bookings = format!("{}/v1/bookings", backend.url);
    let json_type = Some("application/json");

    // (method, url, content type, body, idempotency key, expected status)
    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        String,
        Option<String>,
        u16,
    );
    let mut cases: Vec<Case<'_>> = vec![
        // A cross-site simple form post.
        (
            "POST",
            listings.clone(),
            Some("text/plain"),
            listing_body().to_string(),
            None,
            415,
        ),
        (
            "POST",
            listings.clone(),
            json_type,
            "{".to_owned(),
            None,
            400,
        ),
        (
            "POST",
            listings.clone(),
            json_type,
            r#"{"title":1}"#.to_owned(),
            None,
            400,
        ),
        (
            "POST",
            listings.clone(),
            json_type,
            r#"{"a":1}"#.to_owned(),
            None,
            400,
        ),
        (
            "POST",
            listings.clone(),
            json_type,
            "x".repeat(70 * 1024),
            None,
            413,
        ),
    ];
    let mut body = listing_body();
    body["nightly_rate_minor"] = json!(i64::MAX);
    cases.push((
        "POST",
        listings.clone(),
        json_type,
        body.to_string(),
        None,
        422,
    ));
    let mut body = listing_body();
    body["currency"] = json!("ABC");
    cases.push((
        "POST",
        listings.clone(),
        json_type,
        body.to_string(),
        None,
        422,
    ));
    for (n, (name, email)) in [
        ("evil\u{202E}gnp.exe", "guest@example.com"),
        ("\u{200B}\u{200B}", "guest@example.com"),
        ("Guest\u{FFFF}", "guest@example.com"),
        ("Guest", "a@b"),
        ("Guest", "not an email"),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push((
            "POST",
            bookings.clone(),
            json_type,
            booking_body(&listing, name, email, 2).to_string(),
            Some(format!("edge-{n}")),
            422,
        ));
    }
    let mut body = booking_body(&listing, "Guest", "guest@example.com", 2);
    body["check_in"] = json!("+2027-01-01");
    cases.push((
        "POST",
        bookings.clone(),
        json_type,
        body.to_string(),
        Some("edge-date".to_owned()),
        422,
    ));
    cases.push((
        "POST",
        bookings.clone(),
        json_type,
        booking_body(&listing, "Guest", "guest@example.com", 200).to_string(),
        Some("edge-nights".to_owned()),
        422,
    ));
    cases.push((
        "POST",
        format!("{}/v1/bookings/bk0000000000000000/cancel", backend.url),
        json_type,
        "{not json".to_owned(),
        Some("edge-cancel".to_owned()),
        400,
    ));
    for (method, url, content_type, body, key, expected) in cases {
        let (status, answer) = send(method, &url, content_type, &body, key.as_deref()).await;
        assert_eq!(
            status,
            expected,
            "{url} {}: {answer}",
            &body[..body.len().min(80)]
        );
        assert_safe(status, &answer);
    }

    // A malformed chunked body.
    let answer = tokio::task::spawn_blocking({
        let addr = backend.addr;
        move || {
            raw(
                addr,
                b"POST /v1/listings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n",
            )
        }
    })
    .await
    .unwrap();
    if let Some((head, body)) = answer.split_once("\r\n\r\n") {
        let status: u16 = head[9..12].parse().unwrap();
        assert!((400..500).contains(&status), "{head}");
        if !body.is_empty() {
            assert!(
                head.to_lowercase().contains("application/problem+json"),
                "{answer}"
            );
        }
    }

    // 1000 invalid requests with fresh keys leave no idempotency records.
    for n in 0..1000 {
        let (status, _) = send(
            "POST",
            &bookings,
            json_type,
            r#"{"listing_id":"ls0","guest":{"name":"","email":"x","phone":"1"},"check_in":"x","check_out":"y"}"#,
            Some(&format!("junk-{n}")),
        )
        .await;
        assert_eq!(status, 422);
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM payguard_idempotency")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(kept, 0, "invalid requests left idempotency records");

    assert_consistent(&backend, db.pool()).await;
    backend.shutdown.cancel();
}

/// Item 8: what one guest can hold, and what one lapsed booking costs in
/// gateway calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_guest_holds_a_bounded_stay_and_a_bounded_number_of_holds() {
    let db = TestDb::new().await;
    let backend = backend(Some(db.url().to_owned()), Limits::default()).await;
    let listing = listing(&backend).await;
    let bookings = format!("{}/v1/bookings", backend.url);

    let (status, answer) = send(
        "POST",
        &bookings,
        Some("application/json"),
        &booking_body(&listing, "Long Stay", "long@example.com", 31).to_string(),
        Some("long"),
    )
    .await;
    assert_eq!(status, 422, "a 31-night hold: {answer}");

    // Ten racing holds under one email (its case varied), on free nights:
    // exactly three are taken.
    let racers = (0..10).map(|n| {
        let mut body = booking_body(&listing, "Many Holds", "Many@Example.com", 2);
        if n % 2 == 0 {
            body["guest"]["email"] = json!("many@example.com");
        }
        body["check_in"] = json!(day(40 + 3 * n));
        body["check_out"] = json!(day(42 + 3 * n));
        let bookings = bookings.clone();
        tokio::spawn(async move {
            send(
                "POST",
                &bookings,
                Some("application/json"),
                &body.to_string(),
                Some(&format!("many-{n}")),
            )
            .await
        })
    });
    let mut statuses = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        let (status, answer) = racer.await.unwrap();
        assert_safe(status, &answer);
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 201, 201, 429, 429, 429, 429, 429, 429, 429]);

    // Reconciliation asks about an unpaid charge, then backs off: five
    // runs in a row cost one gateway call.
    let (status, created) = send(
        "POST",
        &bookings,
        Some("application/json"),
        &booking_body(&listing, "Never Pays", "never@example.com", 2).to_string(),
        Some("never"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        booking_backend::jobs::reconcile(&backend.app)
            .await
            .unwrap();
    }
    assert_eq!(booking_state(&backend, &id).await["gateway_checks"], 1);
    backend.shutdown.cancel();
}

/// Readiness behind a cut database connection: `down`, and not why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_down_without_the_cause() {
    let db = TestDb::new().await;
    let proxy = payguard_test_support::TcpProxy::start(
        payguard_test_support::TcpProxy::upstream_of(db.url()),
    )
    .await;
    let backend = backend(Some(proxy.url_for(db.url())), Limits::default()).await;
    let ready = format!("{}/health/ready", backend.url);
    let response = reqwest::get(&ready).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    proxy.cut();
    let response = reqwest::get(&ready).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await.unwrap();
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["database"], "down", "{body}");
    for internal in ["error", "database \"", "connection", "token", "refused"] {
        assert!(
            !body.contains(internal),
            "readiness leaks {internal:?}: {body}"
        );
    }
    proxy.restore();
    backend.shutdown.cancel();
}

/// The database agrees with itself and with the gateway's books: no two
/// live bookings share a night, and escrow holds money only for a charge
/// the gateway has as paid, of the booking's amount.
async fn assert_consistent(backend: &Backend, pool: &sqlx::PgPool) {
    let overlapping: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings a JOIN bookings b ON a.listing_id = b.listing_id AND a.id < b.id
          WHERE a.status IN ('pending_payment','confirmed','completed')
            AND b.status IN ('pending_payment','confirmed','completed')
            AND daterange(a.check_in, a.check_out) && daterange(b.check_in, b.check_out)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(overlapping, 0, "overlapping live bookings");
    let books = backend.sim.snapshot();
    let held: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT coalesce(payment_reference, id), amount_minor, escrow FROM bookings
          WHERE escrow IN ('held', 'released')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (reference, amount, escrow) in held {
        let paid = books.charges.iter().any(|charge| {
            charge.reference == reference
                && matches!(charge.status.as_str(), "success" | "successful")
                && charge.amount == amount
        });
        assert!(
            paid,
            "escrow {escrow} for {reference} without a paid charge of {amount}"
        );
    }
}

/// A seeded fuzzer over the categories that found the defects: malformed
/// and deeply nested JSON, huge numbers, odd UTF-8, odd content types,
/// methods and routes, signed webhooks with odd fields. Bounded: 600
/// requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_hostile_requests_get_safe_answers_and_leave_the_books_consistent() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    let db = TestDb::new().await;
    let backend = backend(Some(db.url().to_owned()), Limits::default()).await;
    let listing = listing(&backend).await;
    let mut rng = StdRng::seed_from_u64(24);
    let odd_strings = [
        String::new(),
        "\u{0}".to_owned(),
        "\u{202E}abc".to_owned(),
        "\u{FEFF}".to_owned(),
        "\u{FFFF}".to_owned(),
        "é".repeat(3000),
        "9".repeat(400),
        "-1".to_owned(),
        "ls\u{0}1".to_owned(),
        listing.clone(),
    ];
    let odd_values = [
        json!(null),
        json!(-1),
        json!(0),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e308),
        json!(-0.5),
        json!(true),
        json!([]),
        json!({}),
    ];
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for n in 0..600 {
        let pick_string =
            |rng: &mut StdRng| odd_strings[rng.random_range(0..odd_strings.len())].clone();
        let pick_value = |rng: &mut StdRng| {
            if rng.random_bool(0.5) {
                odd_values[rng.random_range(0..odd_values.len())].clone()
            } else {
                json!(odd_strings[rng.random_range(0..odd_strings.len())])
            }
        };
        let (method, path, body) = match rng.random_range(0..8) {
            0 => {
                let mut body = listing_body();
                let field = ["title", "nightly_rate_minor", "currency"][rng.random_range(0..3)];
                body[field] = pick_value(&mut rng);
                ("POST", "/v1/listings".to_owned(), body.to_string())
            }
            1 => {
                let mut body =
                    booking_body(&listing, "Fuzz Guest", &format!("fuzz{n}@example.com"), 2);
                match rng.random_range(0..4) {
                    0 => body["listing_id"] = pick_value(&mut rng),
                    1 => body["guest"]["name"] = pick_value(&mut rng),
                    2 => body["check_in"] = pick_value(&mut rng),
                    _ => body["guest"]["email"] = pick_value(&mut rng),
                }
                ("POST", "/v1/bookings".to_owned(), body.to_string())
            }
            2 => ("POST", "/v1/bookings".to_owned(), deep.clone()),
            3 => {
                let body = booking_body(&listing, "Fuzz Guest", "fuzz@example.com", 2).to_string();
                let cut = rng.random_range(0..body.len());
                ("POST", "/v1/listings".to_owned(), body[..cut].to_owned())
            }
            4 => (
                ["GET", "POST", "DELETE", "PATCH"][rng.random_range(0..4)],
                format!("/v1/bookings/{}", url_segment(&pick_string(&mut rng))),
                String::new(),
            ),
            5 => (
                "POST",
                format!(
                    "/v1/bookings/{}/cancel",
                    url_segment(&pick_string(&mut rng))
                ),
                json!({"reason": pick_value(&mut rng)}).to_string(),
            ),
            6 => {
                let event = [
                    "charge.success",
                    "transfer.success",
                    "refund.processed",
                    "odd",
                ][rng.random_range(0..4)];
                let body = json!({"event": event, "data": {"id": pick_value(&mut rng),
                                  "reference": pick_value(&mut rng), "amount": pick_value(&mut rng),
                                  "currency": pick_value(&mut rng), "status": pick_value(&mut rng)}})
                .to_string();
                let (status, answer) = deliver(&backend, &body).await;
                assert_safe(status, &answer);
                continue;
            }
            _ => (
                "GET",
                format!("/{}", url_segment(&pick_string(&mut rng))),
                String::new(),
            ),
        };
        let content_type = if rng.random_bool(0.9) {
            Some("application/json")
        } else {
            Some("text/plain")
        };
        let key = format!("fuzz-{n}");
        let (status, answer) = send(
            method,
            &format!("{}{path}", backend.url),
            content_type,
            &body,
            (method == "POST").then_some(key.as_str()),
        )
        .await;
        assert_safe(status, &answer);
    }
    assert_consistent(&backend, db.pool()).await;
    backend.shutdown.cancel();
}

/// `text` as one percent-encoded path segment.
fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || byte == b'_' {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
