//! What the backend's tests share: settings pointing at a gateway-sim.

#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)] // each test file uses part of it

use booking_backend::{App, DatabaseSettings, Settings};
use gateway_sim::{SimConfig, SimHandle, TlsIdentity};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A backend serving on a free port, and the simulator it pays through
/// (which delivers its webhooks to it).
pub(crate) struct Backend {
    pub(crate) url: String,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) sim: SimHandle,
    pub(crate) app: Arc<App>,
    pub(crate) shutdown: CancellationToken,
}

/// Starts a simulator (serving HTTPS with `sim_tls` if given) and a
/// backend with [`settings`] changed by `configure`.
pub(crate) async fn start(
    sim_tls: Option<TlsIdentity>,
    configure: impl FnOnce(&mut Settings),
) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let sim = SimConfig {
        paystack_webhook_url: Some(format!("{url}/v1/webhooks/paystack")),
        flutterwave_webhook_url: Some(format!("{url}/v1/webhooks/flutterwave")),
        tls: sim_tls,
        ..SimConfig::default()
    }
    .start()
    .await
    .unwrap();
    let mut settings = settings(&sim, addr, None);
    configure(&mut settings);
    let app = App::start(settings).await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(booking_backend::serve(
        Arc::clone(&app),
        listener,
        shutdown.clone(),
    ));
    Backend {
        url,
        addr,
        sim,
        app,
        shutdown,
    }
}

/// Settings for a backend on `bind` paying through `sim`, on PostgreSQL at
/// `database_url` or in memory; holds of 10 minutes, escrow after an hour,
/// jobs every minute (tests run them by hand).
pub(crate) fn settings(
    sim: &SimHandle,
    bind: std::net::SocketAddr,
    database_url: Option<String>,
) -> Settings {
    let mut settings = Settings::for_simulator(sim);
    settings.bind = bind;
    if let Some(url) = database_url {
        settings.database = DatabaseSettings::postgres(url);
    }
    settings.hold_for = Duration::from_secs(600);
    settings.escrow_hold = Duration::from_secs(3600);
    settings.job_every = Duration::from_secs(60);
    settings.reconcile_every = Duration::from_secs(120);
    settings.instance = "test".to_owned();
    settings
}

pub(crate) async fn post(url: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

pub(crate) async fn listing(backend: &Backend) -> String {
    let (status, body) = post(
        &format!("{}/v1/listings", backend.url),
        &json!({"title": "Ikoyi flat", "nightly_rate_minor": 3_000_000, "currency": "NGN",
                "host": {"name": "Ada Host", "email": "ada@example.com", "phone": "+2348031234567",
                         "bank_code": "058", "account_number": "0123456789"}}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

pub(crate) fn booking(listing: &str, guest: usize) -> Value {
    json!({"listing_id": listing,
           "guest": {"name": format!("Guest {guest}"), "email": format!("guest{guest}@example.com"), "phone": "+2348059876543"},
           "check_in": day(30), "check_out": day(33)})
}

/// `YYYY-MM-DD`, `offset` days from today (UTC).
pub(crate) fn day(offset: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(offset)).to_string()
}

/// The `x-paystack-signature` of `body` under `secret`.
pub(crate) fn paystack_signature(body: &str, secret: &str) -> String {
    payguard_webhook::Verifier::builder(payguard_webhook::Provider::Paystack)
        .secret(secret)
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

/// Delivers `body` to the Paystack webhook route, signed with `secret`.
pub(crate) async fn deliver_paystack(backend: &Backend, body: &str, secret: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/paystack", backend.url))
        .header("content-type", "application/json")
        .header("x-paystack-signature", paystack_signature(body, secret))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
