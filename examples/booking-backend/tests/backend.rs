//! The booking backend against gateway-sim and a real PostgreSQL
//! (`DATABASE_URL`, default the local server): double booking under a
//! race, webhooks, payout ordering, and the demo itself (in memory, and
//! three processes sharing a database with one killed mid-run).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use booking_backend::DatabaseSettings;
use common::{Backend, booking, day, listing, post};
use payguard_redact::Secret;
use payguard_test_support::PgBouncer;
use payguard_test_support::TestDb;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

async fn backend(database_url: Option<String>) -> Backend {
    backend_on(database_url.map(DatabaseSettings::postgres), None, None).await
}

/// A backend whose simulator serves `sim_tls` (HTTPS) and which trusts the
/// roots in `ca_file`.
async fn backend_with(
    database_url: Option<String>,
    sim_tls: Option<gateway_sim::TlsIdentity>,
    ca_file: Option<std::path::PathBuf>,
) -> Backend {
    backend_on(
        database_url.map(DatabaseSettings::postgres),
        sim_tls,
        ca_file,
    )
    .await
}

/// A backend on `database` (in memory when `None`).
async fn backend_on(
    database: Option<DatabaseSettings>,
    sim_tls: Option<gateway_sim::TlsIdentity>,
    ca_file: Option<std::path::PathBuf>,
) -> Backend {
    common::start(sim_tls, |settings| {
        settings.database = database.unwrap_or_default();
        settings.gateways.ca_file = ca_file;
    })
    .await
}

async fn fifty_racers(database: Option<DatabaseSettings>) {
    let backend = backend_on(database, None, None).await;
    let listing = listing(&backend).await;
    let racers: Vec<_> = (0..50)
        .map(|guest| {
            let url = format!("{}/v1/bookings", backend.url);
            let body = booking(&listing, guest);
            tokio::spawn(async move { post(&url, &body, Some(&format!("key-{guest}"))).await })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for racer in racers {
        match racer.await.unwrap() {
            (201, _) => created += 1,
            (409, body) if body["code"] == "dates_unavailable" => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((created, refused), (1, 49));
    let live = backend
        .app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .filter(|booking| booking.listing_id == listing)
        .count();
    assert_eq!(live, 1);
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_bookings_for_the_same_nights_give_one_booking_on_postgres() {
    let db = TestDb::new().await;
    fifty_racers(Some(DatabaseSettings::postgres(db.url()))).await;
}

/// Through PgBouncer in transaction pooling mode (statements unprepared,
/// each in its transaction; migrations over a direct connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_bookings_for_the_same_nights_give_one_booking_through_pgbouncer() {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(db.url());
    let mut database = DatabaseSettings::postgres(bouncer.url_for(db.url()));
    database.migration_url = Some(Secret::new(db.url().to_owned()));
    database.transaction_pooler = true;
    fifty_racers(Some(database)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_bookings_for_the_same_nights_give_one_booking_in_memory() {
    fifty_racers(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_overlapping_live_bookings_by_itself() {
    let db = TestDb::new().await;
    let backend = backend(Some(db.url().to_owned())).await;
    let listing = listing(&backend).await;
    let insert = |id: &str, check_in: &str, check_out: &str| {
        sqlx::query(
            "INSERT INTO bookings (id, listing_id, guest, check_in, check_out, amount_minor, currency, status, hold_expires_at)
             VALUES ($1, $2, '{}', $3::date, $4::date, 100, 'NGN', 'confirmed', now())",
        )
        .bind(id.to_owned())
        .bind(listing.clone())
        .bind(check_in.to_owned())
        .bind(check_out.to_owned())
        .execute(db.pool())
    };
    insert("bk_a", "2031-05-01", "2031-05-04").await.unwrap();
    let error = insert("bk_b", "2031-05-03", "2031-05-05")
        .await
        .unwrap_err();
    assert_eq!(error.as_database_error().unwrap().code().unwrap(), "23P01");
    insert("bk_c", "2031-05-04", "2031-05-06").await.unwrap();
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_confirm_once_forgeries_change_nothing_and_legacy_events_are_verified() {
    let backend = backend(None).await;
    let listing = listing(&backend).await;
    let (status, created) = post(
        &format!("{}/v1/bookings", backend.url),
        &booking(&listing, 1),
        Some("k1"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = created["payment"]["reference"].as_str().unwrap().to_owned();

    // Forged: a charge.success signed with the wrong key.
    let forged = json!({"event": "charge.success", "data": {"reference": reference, "amount": created["amount_minor"], "currency": "NGN", "status": "success"}}).to_string();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/paystack", backend.url))
        .header("x-paystack-signature", "00".repeat(64))
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let get = |id: String| {
        let url = format!("{}/v1/bookings/{id}", backend.url);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(id.clone()).await["status"], "pending_payment");

    // The real one, delivered three times.
    backend.sim.set_webhooks(gateway_sim::WebhookSettings {
        duplicates: 2,
        ..gateway_sim::WebhookSettings::default()
    });
    reqwest::Client::new()
        .post(format!(
            "{}/_sim/charges/{reference}/complete",
            backend.sim.base_url()
        ))
        .body(r#"{"outcome":"success"}"#)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        let delivered = backend
            .sim
            .deliveries()
            .iter()
            .map(|delivery| delivery.attempts.len())
            .sum::<usize>();
        if delivered >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let booking = get(id.clone()).await;
    assert_eq!(
        (booking["status"].as_str(), booking["escrow"].as_str()),
        (Some("confirmed"), Some("held"))
    );
    let attempts: Vec<String> = backend.sim.deliveries()[0]
        .attempts
        .iter()
        .map(|attempt| attempt.outcome.clone())
        .collect();
    assert_eq!(
        attempts,
        ["200", "200", "200"],
        "duplicates are acknowledged"
    );

    // Flutterwave legacy (verif-hash only): the body's claims are checked
    // with the gateway, which knows no such charge.
    let legacy = json!({"event": "charge.completed", "data": {"id": 1, "tx_ref": "bk_unknown", "amount": 1, "currency": "NGN", "status": "successful"}}).to_string();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/flutterwave", backend.url))
        .header("verif-hash", gateway_sim::DEFAULT_FLUTTERWAVE_SECRET_HASH)
        .body(legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let applied: Value = response.json().await.unwrap();
    assert_eq!(
        applied["applied"], "charge not successful",
        "verified with the gateway, not believed"
    );
    backend.shutdown.cancel();
}

fn demo(extra: &[&str], database_url: Option<&str>) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_booking-backend"));
    command.arg("demo").args(extra).env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}\n{stderr}"),
    )
}

#[test]
fn the_demo_holds_every_invariant_in_memory() {
    let (code, output) = demo(&[], None);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("double bookings") && !output.contains(" NO\n"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sharing_a_database_pay_once_even_when_one_is_killed() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let (code, output) =
        tokio::task::spawn_blocking(move || demo(&["--instances", "3", "--kill-one"], Some(&url)))
            .await
            .unwrap();
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("instances killed with SIGKILL 1"),
        "{output}"
    );
}

/// A TCP proxy to PostgreSQL that can be cut and restored, like a database
/// restart seen from the service.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (flag, tasks) = (Arc::clone(&up), Arc::clone(&links));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection refused, as good as
                }
                let upstream = upstream.clone();
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { addr, up, links }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_loses_nothing() {
    let db = TestDb::new().await;
    let mut url = url::Url::parse(db.url()).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let backend = backend(Some(url.to_string())).await;
    let listing = listing(&backend).await;
    let bookings = format!("{}/v1/bookings", backend.url);
    let (status, first) = post(&bookings, &booking(&listing, 1), Some("first")).await;
    assert_eq!(status, 201, "{first}");

    proxy.cut();
    let later = json!({"listing_id": listing,
        "guest": {"name": "Guest 2", "email": "guest2@example.com", "phone": "+2348059876543"},
        "check_in": day(60), "check_out": day(62)});
    let (status, body) = post(&bookings, &later, Some("second")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        matches!(
            body["code"].as_str(),
            Some("storage_unavailable" | "idempotency_unavailable")
        ),
        "{body}"
    );
    let ready = reqwest::get(format!("{}/health/ready", backend.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    proxy.restore();
    let mut answer = (0, Value::Null);
    for _ in 0..50 {
        answer = post(&bookings, &later, Some("second")).await;
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer.0, 201, "{}", answer.1);
    let (status, replay) = post(&bookings, &later, Some("second")).await;
    assert_eq!(
        (status, &replay["id"]),
        (201, &answer.1["id"]),
        "the retry replays, not rebooks"
    );
    let kept = reqwest::get(format!("{bookings}/{}", first["id"].as_str().unwrap()))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        kept["status"], "pending_payment",
        "the booking made before the outage is intact"
    );
    let ours: Vec<_> = backend
        .app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .filter(|booking| booking.listing_id == listing)
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "one booking per request that succeeded, none half-made"
    );
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_typed_error() {
    let backend = backend(None).await;
    let listing = listing(&backend).await;
    let bookings = format!("{}/v1/bookings", backend.url);
    let mut past = booking(&listing, 1);
    past["check_in"] = json!(day(-3));
    past["check_out"] = json!(day(-1));
    let mut control = booking(&listing, 2);
    control["guest"]["name"] = json!("Ada\u{0}Obi");
    let mut inverted = booking(&listing, 3);
    inverted["check_out"] = json!(day(10));
    for (index, (body, code)) in [
        (past, "invalid_dates"),
        (control, "invalid_field"),
        (inverted, "invalid_dates"),
        (json!({"listing_id": listing}), "invalid_json"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, answer) = post(&bookings, &body, Some(&format!("bad-{index}"))).await;
        assert!(matches!(status, 400 | 422), "{status} {answer}");
        assert_eq!(answer["code"], code, "{answer}");
    }
    let missing = reqwest::get(format!("{bookings}/..%2F..%00"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (status, _) = post(&bookings, &booking(&listing, 4), None).await;
    assert_eq!(status, 400, "Idempotency-Key is required");
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_whose_refund_failed_can_be_retried_and_refunds_once() {
    let backend = backend(None).await;
    let listing = listing(&backend).await;
    let (status, created) = post(
        &format!("{}/v1/bookings", backend.url),
        &booking(&listing, 1),
        Some("b1"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = created["payment"]["reference"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    client
        .post(format!(
            "{}/_sim/charges/{reference}/complete",
            backend.sim.base_url()
        ))
        .body(r#"{"outcome":"success"}"#)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        let booking: Value = reqwest::get(format!("{}/v1/bookings/{id}", backend.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if booking["status"] == "confirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.sim.set_faults(
        serde_json::from_value(json!({"rules": [{"match": {"method": "POST", "path": "/refund"}, "error": {"status": [503]}}]}))
            .unwrap(),
    );
    let cancel = format!("{}/v1/bookings/{id}/cancel", backend.url);
    let (status, answer) = post(&cancel, &json!({}), Some("c1")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("refund_unavailable")),
        "{answer}"
    );
    backend.sim.set_faults(gateway_sim::FaultPlan::default());
    let (status, answer) = post(&cancel, &json!({}), Some("c1")).await;
    assert_eq!(status, 200, "the retried cancellation refunds: {answer}");
    assert_eq!(
        (answer["status"].as_str(), answer["escrow"].as_str()),
        (Some("cancelled"), Some("refunded"))
    );
    let (status, _) = post(&cancel, &json!({}), Some("c2")).await;
    assert_eq!(status, 409, "a refunded booking is not cancelled again");
    let refunds = backend.sim.snapshot().refunds;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    backend.shutdown.cancel();
}

/// What a booking looks like to its guest now.
async fn booking_state(backend: &Backend, id: &str) -> Value {
    reqwest::get(format!("{}/v1/bookings/{id}", backend.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Twenty cancellations of a paid booking, with different keys, race each
/// other and the reconciliation job (which retries refunds left
/// `requested`): the gateway is asked for one refund.
async fn racing_refunds(database_url: Option<String>) {
    let backend = backend(database_url).await;
    let listing = listing(&backend).await;
    let (status, created) = post(
        &format!("{}/v1/bookings", backend.url),
        &booking(&listing, 1),
        Some("b1"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = created["payment"]["reference"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    client
        .post(format!(
            "{}/_sim/charges/{reference}/complete",
            backend.sim.base_url()
        ))
        .body(r#"{"outcome":"success"}"#)
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        if booking_state(&backend, &id).await["status"] == "confirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Refunds take a while at the gateway: the race has time to happen.
    backend.sim.set_faults(
        serde_json::from_value(
            json!({"rules": [{"match": {"method": "POST", "path": "/refund"},
                                                  "latency": {"fixed_ms": 500}}]}),
        )
        .unwrap(),
    );
    let cancel = format!("{}/v1/bookings/{id}/cancel", backend.url);
    let racers: Vec<_> = (0..20)
        .map(|n| {
            let cancel = cancel.clone();
            tokio::spawn(async move { post(&cancel, &json!({}), Some(&format!("race-{n}"))).await })
        })
        .collect();
    let reconcilers: Vec<_> = (0..3)
        .map(|_| {
            let app = Arc::clone(&backend.app);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                booking_backend::jobs::reconcile(&app).await.unwrap()
            })
        })
        .collect();
    for racer in racers {
        let (status, answer) = racer.await.unwrap();
        assert!(
            matches!(status, 200 | 409),
            "a racing cancellation answers the booking or not_cancellable: {status} {answer}"
        );
    }
    for reconciler in reconcilers {
        reconciler.await.unwrap();
    }
    let state = booking_state(&backend, &id).await;
    assert_eq!(
        (state["status"].as_str(), state["escrow"].as_str()),
        (Some("cancelled"), Some("refunded")),
        "{state}"
    );
    let journal: Vec<Value> = client
        .get(format!("{}/_sim/journal", backend.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = journal
        .iter()
        .filter(|entry| entry["method"] == "POST" && entry["path"] == "/refund")
        .count();
    assert_eq!(sent, 1, "refund requests sent to the gateway");
    assert_eq!(backend.sim.snapshot().refunds.len(), 1);
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cancellations_and_reconciliation_refund_once_in_memory() {
    racing_refunds(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cancellations_and_reconciliation_refund_once_on_postgres() {
    let db = TestDb::new().await;
    racing_refunds(Some(db.url().to_owned())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_and_its_stored_answer_commit_in_one_transaction() {
    let db = TestDb::new().await;
    let backend = backend(Some(db.url().to_owned())).await;
    let listing = listing(&backend).await;
    let bookings = format!("{}/v1/bookings", backend.url);
    let (status, created) = post(&bookings, &booking(&listing, 1), Some("atomic")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    // Rows written by one transaction carry its id in xmin.
    let same: bool = sqlx::query_scalar(
        "SELECT b.xmin::text = i.xmin::text
           FROM bookings b, payguard_idempotency i
          WHERE b.id = $1 AND i.state = 1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(
        same,
        "the payment attachment and the stored answer committed apart"
    );
    let response = reqwest::Client::new()
        .post(&bookings)
        .header("idempotency-key", "atomic")
        .json(&booking(&listing, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("idempotent-replayed"));
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(replayed, created);
    backend.shutdown.cancel();
}

/// A private CA and a certificate for 127.0.0.1 and localhost it signed,
/// made for this run: the simulator's identity, and the CA's PEM to trust.
fn private_ca() -> (gateway_sim::TlsIdentity, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "payguard test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut server = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    let cert = server.signed_by(&key, &issuer).unwrap();
    (
        gateway_sim::TlsIdentity {
            certificate_chain: cert.pem().into_bytes(),
            private_key: key.serialize_pem().into_bytes(),
        },
        ca_cert.pem(),
    )
}

async fn book_and_pay(backend: &Backend) -> Value {
    let listing = listing(backend).await;
    let (status, created) = post(
        &format!("{}/v1/bookings", backend.url),
        &booking(&listing, 1),
        Some("tls-1"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = created["payment"]["reference"].as_str().unwrap().to_owned();
    let completed = gateway_client()
        .post(format!(
            "{}/_sim/charges/{reference}/complete",
            backend.sim.base_url()
        ))
        .body(r#"{"outcome":"success"}"#)
        .send()
        .await
        .unwrap();
    assert!(completed.status().is_success());
    for _ in 0..200 {
        let state = booking_state(backend, &id).await;
        if state["status"] == "confirmed" {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("booking {id} never confirmed");
}

/// A client for the test's own calls to a simulator that may serve a
/// certificate from the test's private CA.
fn gateway_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_gateway_books_and_pays_over_https() {
    let (identity, ca_pem) = private_ca();
    let dir = std::env::temp_dir().join(format!("payguard-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let backend = backend_with(None, Some(identity), Some(ca_file)).await;
    assert!(backend.sim.base_url().starts_with("https://"));
    let state = book_and_pay(&backend).await;
    assert!(
        state["payment"]["authorization_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1"),
        "{state}"
    );
    backend.shutdown.cancel();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_gateway_whose_certificate_does_not_verify_is_refused_and_nothing_is_half_written() {
    let (identity, _) = private_ca();
    let backend = backend_with(None, Some(identity), None).await;
    let listing = listing(&backend).await;
    let (status, answer) = post(
        &format!("{}/v1/bookings", backend.url),
        &booking(&listing, 1),
        Some("untrusted"),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("payment_gateway_unavailable")),
        "{answer}"
    );
    assert!(
        backend.sim.snapshot().charges.is_empty(),
        "no charge reached the untrusted gateway"
    );
    let live = backend
        .app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .filter(|booking| booking.status == booking_backend::domain::BookingStatus::PendingPayment)
        .count();
    assert_eq!(live, 0, "the hold was released");
    backend.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_encrypts_every_connection() {
    let db = TestDb::new().await;
    let url = format!(
        "{}?sslmode=require&application_name=payguard-tls-test",
        db.url()
    );
    let backend = backend(Some(url)).await;
    book_and_pay(&backend).await;
    let (connections, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl)
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.application_name = 'payguard-tls-test'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(connections > 0, "the backend is connected");
    assert_eq!(encrypted, connections, "every backend connection uses TLS");
    backend.shutdown.cancel();
}
