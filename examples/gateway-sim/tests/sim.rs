//! gateway-sim seen from a real HTTP client: provider behaviour, every
//! fault kind, webhook deliveries (verified with payguard-webhook), and
//! determinism.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods // latency is measured with the real clock
)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use gateway_sim::{
    DEFAULT_FLUTTERWAVE_SECRET_HASH, DEFAULT_FLUTTERWAVE_SECRET_KEY, DEFAULT_PAYSTACK_SECRET_KEY,
    SimConfig, SimHandle,
};
use http::{HeaderMap, StatusCode};
use payguard_webhook::{Provider as WebhookProvider, Verifier};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAYSTACK_AUTH: &str = "Bearer sk_test_payguard_sim";
const FLUTTERWAVE_AUTH: &str = "Bearer FLWSECK_TEST-payguard-sim-X";

/// A webhook receiver: records what it gets, answers statuses from a script
/// (then 200).
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<(HeaderMap, Bytes)> {
        for _ in 0..500 {
            if self.received.lock().unwrap().len() >= count {
                return self.received();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {count} webhooks, got {}",
            self.received.lock().unwrap().len()
        );
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.received.lock().unwrap().push((headers, body));
    let status = receiver.answers.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

async fn sim_with(receiver: &Receiver) -> SimHandle {
    let url = receiver.start().await;
    SimConfig {
        seed: 7,
        paystack_webhook_url: Some(url.clone()),
        flutterwave_webhook_url: Some(url),
        ..SimConfig::default()
    }
    .start()
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn call(
    method: reqwest::Method,
    url: String,
    auth: &str,
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut request = client().request(method, url).header("authorization", auth);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn paystack(sim: &SimHandle, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, _, body) = call(
        method.parse().unwrap(),
        format!("{}{path}", sim.paystack_url()),
        PAYSTACK_AUTH,
        body,
    )
    .await;
    (status, body)
}

async fn control(sim: &SimHandle, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, _, body) = call(
        method.parse().unwrap(),
        format!("{}/_sim{path}", sim.base_url()),
        "",
        Some(body),
    )
    .await;
    (status, body)
}

async fn recipient(sim: &SimHandle) -> String {
    let (status, body) = paystack(
        sim,
        "POST",
        "/transferrecipient",
        Some(json!({"type":"nuban","name":"Ada Host","account_number":"0123456789","bank_code":"058","currency":"NGN"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["recipient_code"].as_str().unwrap().to_owned()
}

fn transfer_body(recipient: &str, reference: &str, amount: i64) -> Value {
    json!({"source":"balance","amount":amount,"recipient":recipient,"reference":reference,"reason":"payout"})
}

fn verify(provider: WebhookProvider, secret: &str, headers: &HeaderMap, body: &Bytes) -> bool {
    Verifier::builder(provider)
        .secret(secret)
        .build()
        .unwrap()
        .verify(headers, body.as_ref())
        .is_ok()
}

#[tokio::test]
async fn paystack_charges_need_the_key_and_completion_sends_a_signed_webhook() {
    let receiver = Receiver::default();
    let sim = sim_with(&receiver).await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{}/transaction/initialize", sim.paystack_url()),
        "Bearer sk_test_wrong",
        Some(json!({"email":"guest@example.com","amount":500000})),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Invalid key"))
    );

    let charge =
        json!({"email":"guest@example.com","amount":500000,"reference":"bk-1","currency":"NGN"});
    let (status, body) = paystack(
        &sim,
        "POST",
        "/transaction/initialize",
        Some(charge.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], true);
    assert!(
        body["data"]["authorization_url"]
            .as_str()
            .unwrap()
            .contains("/_sim/checkout/paystack/bk-1")
    );
    let (status, body) = paystack(&sim, "POST", "/transaction/initialize", Some(charge)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Duplicate Transaction Reference"))
    );
    // Unpaid reads `abandoned`, and is not final: an abandoned checkout
    // can still be paid.
    let (status, body) = paystack(&sim, "GET", "/transaction/verify/bk-1", None).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (200, Some("abandoned"))
    );
    assert_eq!(body["data"]["authorization"], json!({}));
    let (status, _) = control(
        &sim,
        "POST",
        "/charges/bk-1/complete",
        json!({"outcome":"abandoned"}),
    )
    .await;
    assert_eq!(status, 200);

    let (status, _) = control(
        &sim,
        "POST",
        "/charges/bk-1/complete",
        json!({"outcome":"success"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = paystack(&sim, "GET", "/transaction/verify/bk-1", None).await;
    assert_eq!(body["data"]["status"], "success");
    let (status, _) = control(
        &sim,
        "POST",
        "/charges/bk-1/complete",
        json!({"outcome":"success"}),
    )
    .await;
    assert_eq!(status, 409, "a charge completes once");

    let received = receiver.wait_for(1).await;
    let (headers, body) = &received[0];
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["event"], "charge.success");
    assert_eq!(event["data"]["reference"], "bk-1");
    assert!(verify(
        WebhookProvider::Paystack,
        DEFAULT_PAYSTACK_SECRET_KEY,
        headers,
        body
    ));
    let balance = sim.snapshot().balances["paystack"]["NGN"];
    assert_eq!(balance, SimConfig::default().initial_balance + 500_000);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_transfer_requests_create_one_transfer() {
    let sim = SimConfig::default().start().await.unwrap();
    let code = recipient(&sim).await;
    let reference = "escrow_bk_0000000042";
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{}/transfer", sim.paystack_url());
            let body = transfer_body(&code, reference, 250_000);
            tokio::spawn(async move {
                call(reqwest::Method::POST, url, PAYSTACK_AUTH, Some(body)).await
            })
        })
        .collect();
    // One is made; the other seven are refused as Paystack refuses a
    // reused reference, and none moves money.
    let mut answers = Vec::new();
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        answers.push((status, body["code"].as_str().map(str::to_owned)));
    }
    answers.sort();
    assert_eq!(answers[0], (200, None));
    assert!(
        answers[1..]
            .iter()
            .all(|answer| *answer == (400, Some("duplicate_reference".to_owned()))),
        "{answers:?}"
    );
    let snapshot = sim.snapshot();
    assert_eq!(snapshot.transfers.len(), 1);
    assert_eq!(snapshot.transfers[0].create_requests, 8);
    assert_eq!(
        snapshot.balances["paystack"]["NGN"],
        SimConfig::default().initial_balance - 250_000,
        "debited once"
    );

    for bad in ["Escrow_Upper_Case_1", "short", "has space in it!!"] {
        let (status, _) = paystack(
            &sim,
            "POST",
            "/transfer",
            Some(transfer_body(&code, bad, 1000)),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
    }
    // Without a reference, Paystack makes one up.
    let (status, body) = paystack(
        &sim,
        "POST",
        "/transfer",
        Some(json!({"source":"balance","amount":1000,"recipient":code})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let made_up = body["data"]["reference"].as_str().unwrap();
    assert!(
        made_up.len() == 10
            && made_up
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{made_up}"
    );
    assert!(
        body["data"]["recipient"].is_u64(),
        "an integer id on create: {body}"
    );
    let (status, _) = paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body("RCP_nobody", "escrow_bk_0000000043", 1000)),
    )
    .await;
    assert_eq!(status, 400, "unknown recipient");
    assert_eq!(sim.snapshot().transfers.len(), 2);

    // Flutterwave: X-Idempotency-Key replays the first answer; a reused
    // reference without it is refused.
    let body = json!({"account_bank":"044","account_number":"0690000040","amount":2500.5,"currency":"NGN","narration":"payout","reference":"escrow_bk_43"});
    let send = |key: Option<&'static str>| {
        let mut request = client()
            .post(format!("{}/transfers", sim.flutterwave_url()))
            .header("authorization", FLUTTERWAVE_AUTH)
            .json(&body);
        if let Some(key) = key {
            request = request.header("x-idempotency-key", key);
        }
        request.send()
    };
    let first = send(Some("key-1")).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("x-idempotency-cache-hit").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["data"]["status"], "NEW");
    assert_eq!(first["data"]["amount"], 2500.5);
    let replay = send(Some("key-1")).await.unwrap();
    assert_eq!(replay.headers()["x-idempotency-cache-hit"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    let again = send(None).await.unwrap();
    assert_eq!(again.status(), 400);
    let flutterwave: Vec<_> = sim
        .snapshot()
        .transfers
        .into_iter()
        .filter(|transfer| transfer.provider == gateway_sim::Provider::Flutterwave)
        .collect();
    assert_eq!(flutterwave.len(), 1);
    assert_eq!(
        (flutterwave[0].amount, flutterwave[0].create_requests),
        (250_050, 2)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn apply_then_drop_moves_money_while_the_client_sees_a_dropped_connection() {
    let sim = SimConfig::default().start().await.unwrap();
    let code = recipient(&sim).await;
    let (status, _) = control(
        &sim,
        "PUT",
        "/faults",
        json!({"rules":[{"name":"lost","match":{"provider":"paystack","method":"POST","path":"/transfer"},"times":1,"timeout":{"mode":"apply_then_drop"}}]}),
    )
    .await;
    assert_eq!(status, 200);
    let reference = "escrow_bk_0000000044";
    let sent = client()
        .post(format!("{}/transfer", sim.paystack_url()))
        .header("authorization", PAYSTACK_AUTH)
        .json(&transfer_body(&code, reference, 10_000))
        .send()
        .await;
    let error = sent.expect_err("the connection is dropped without an answer");
    assert!(!error.is_timeout() && !error.is_status(), "{error:?}");
    assert_eq!(sim.snapshot().transfers.len(), 1, "the transfer was made");

    // The right recovery: verify by reference. A retry with the same one
    // is refused (it names a transfer already made) and moves nothing.
    let (status, body) =
        paystack(&sim, "GET", &format!("/transfer/verify/{reference}"), None).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (200, Some("pending"))
    );
    let (status, body) = paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body(&code, reference, 10_000)),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("duplicate_reference"))
    );
    let snapshot = sim.snapshot();
    assert_eq!(
        (
            snapshot.transfers.len(),
            snapshot.transfers[0].create_requests
        ),
        (1, 2)
    );
    assert_eq!(
        snapshot.balances["paystack"]["NGN"],
        SimConfig::default().initial_balance - 10_000
    );

    // `close` drops before handling: nothing changes.
    control(
        &sim,
        "PUT",
        "/faults",
        json!({"rules":[{"match":{"path":"/transfer"},"times":1,"timeout":{"mode":"close"}}]}),
    )
    .await;
    let sent = client()
        .post(format!("{}/transfer", sim.paystack_url()))
        .header("authorization", PAYSTACK_AUTH)
        .json(&transfer_body(&code, "escrow_bk_0000000045", 10_000))
        .send()
        .await;
    assert!(sent.is_err());
    assert_eq!(sim.snapshot().transfers.len(), 1, "nothing was made");

    // `hang` holds the request past the client's timeout.
    control(
        &sim,
        "PUT",
        "/faults",
        json!({"rules":[{"match":{"path":"/transfer"},"times":1,"timeout":{"mode":"hang","hang_ms":2000}}]}),
    )
    .await;
    let sent = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/transfer", sim.paystack_url()))
        .header("authorization", PAYSTACK_AUTH)
        .json(&transfer_body(&code, "escrow_bk_0000000046", 10_000))
        .send()
        .await;
    assert!(sent.expect_err("hung").is_timeout());
    assert_eq!(sim.snapshot().transfers.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_rate_limits_latency_malformed_bodies_sequences_and_scenarios() {
    let sim = SimConfig::default().start().await.unwrap();
    let plan = json!({"rules":[
        {"name":"boom","scenario_only":true,"error":{"status":[500]}},
        {"name":"5xx","match":{"provider":"paystack","path":"/transaction/initialize"},"times":2,"error":{"status":[503],"probability":1.0}},
        {"name":"throttle","match":{"path":"/transaction/verify/slow-1"},"rate_limit":{"rps":0.5,"burst":1}},
        {"name":"throttle-date","match":{"path":"/transaction/verify/slow-2"},"rate_limit":{"rps":0.5,"burst":1,"retry_after":"http-date"}},
        {"name":"slow","match":{"path":"/transaction/verify/latent"},"latency":{"fixed_ms":250,"jitter_ms":50}},
        {"name":"cut","match":{"path":"/transaction/verify/bk-9"},"times":1,"malformed":{"mode":"truncate"}},
        {"name":"html","match":{"path":"/transaction/verify/bk-9"},"times":1,"malformed":{"mode":"wrong_content_type"}},
        {"name":"script","match":{"provider":"flutterwave","path":"/transfers"},"sequence":[{"status":503},{"status":429,"retry_after":1},{"pass":true}]}
    ]});
    let (status, body) = control(&sim, "PUT", "/faults", plan).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = control(
        &sim,
        "PUT",
        "/faults",
        json!({"rules":[{"error":{"status":[99]}}]}),
    )
    .await;
    assert_eq!(status, 400, "a bad plan is refused");

    let charge = json!({"email":"guest@example.com","amount":1000,"reference":"bk-9"});
    for expected in [503, 503, 200] {
        let (status, body) = paystack(
            &sim,
            "POST",
            "/transaction/initialize",
            Some(charge.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body}");
        if expected == 503 {
            assert_eq!(body["status"], false, "Paystack's envelope");
        }
    }
    assert_eq!(sim.snapshot().charges.len(), 1, "errors changed nothing");

    for (path, http_date) in [("slow-1", false), ("slow-2", true)] {
        let (first, _, _) = call(
            reqwest::Method::GET,
            format!("{}/transaction/verify/{path}", sim.paystack_url()),
            PAYSTACK_AUTH,
            None,
        )
        .await;
        assert_eq!(first, 404, "within the burst, handled");
        let (second, headers, body) = call(
            reqwest::Method::GET,
            format!("{}/transaction/verify/{path}", sim.paystack_url()),
            PAYSTACK_AUTH,
            None,
        )
        .await;
        assert_eq!(second, 429, "{body}");
        let retry_after = headers["retry-after"].to_str().unwrap();
        if http_date {
            assert!(
                httpdate::parse_http_date(retry_after).is_ok(),
                "{retry_after}"
            );
        } else {
            assert_eq!(retry_after, "2");
        }
    }

    let started = Instant::now();
    paystack(&sim, "GET", "/transaction/verify/latent", None).await;
    assert!(started.elapsed() >= Duration::from_millis(250));

    let cut = client()
        .get(format!("{}/transaction/verify/bk-9", sim.paystack_url()))
        .header("authorization", PAYSTACK_AUTH)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(serde_json::from_slice::<Value>(&cut).is_err(), "truncated");
    let html = client()
        .get(format!("{}/transaction/verify/bk-9", sim.paystack_url()))
        .header("authorization", PAYSTACK_AUTH)
        .send()
        .await
        .unwrap();
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    let mut seen = Vec::new();
    for n in 0..4 {
        let transfer = json!({"account_bank":"044","account_number":"0690000040","amount":10,"reference":format!("fw_seq_{n}")});
        let (status, headers, _) = call(
            reqwest::Method::POST,
            format!("{}/transfers", sim.flutterwave_url()),
            FLUTTERWAVE_AUTH,
            Some(transfer),
        )
        .await;
        seen.push((
            status,
            headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        ));
    }
    assert_eq!(
        seen,
        [
            (503, None),
            (429, Some("1".to_owned())),
            (200, None),
            (200, None)
        ]
    );

    let scenario = client()
        .get(format!("{}/transaction/verify/bk-9", sim.paystack_url()))
        .header("authorization", PAYSTACK_AUTH)
        .header("x-sim-scenario", "boom")
        .send()
        .await
        .unwrap();
    assert_eq!(scenario.status(), 500);
    let (status, _) = paystack(&sim, "GET", "/transaction/verify/bk-9", None).await;
    assert_eq!(status, 200, "scenario-only rules need the header");

    let journal = client()
        .get(format!("{}/_sim/journal", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !journal.contains(DEFAULT_PAYSTACK_SECRET_KEY),
        "secrets are masked"
    );
    assert!(!journal.contains(DEFAULT_FLUTTERWAVE_SECRET_KEY));
    let journal: Vec<Value> = serde_json::from_str(&journal).unwrap();
    let faults: Vec<&str> = journal
        .iter()
        .filter_map(|entry| entry["fault"].as_str())
        .collect();
    assert!(faults.contains(&"5xx: error 503"), "{faults:?}");
    assert!(faults.contains(&"boom: error 500"), "{faults:?}");
    assert!(
        faults
            .iter()
            .any(|fault| fault.starts_with("slow: latency")),
        "{faults:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_webhooks_are_byte_identical_and_signed_and_forged_ones_are_not() {
    let receiver = Receiver::default();
    let sim = sim_with(&receiver).await;
    let code = recipient(&sim).await;
    let (status, _) = control(&sim, "PUT", "/webhooks", json!({"duplicates":2})).await;
    assert_eq!(status, 200);
    paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body(&code, "escrow_bk_0000000050", 7_000)),
    )
    .await;
    control(
        &sim,
        "POST",
        "/transfers/escrow_bk_0000000050/settle",
        json!({"outcome":"success"}),
    )
    .await;
    let received = receiver.wait_for(3).await;
    for (headers, body) in &received {
        assert_eq!(body, &received[0].1, "byte-identical");
        assert_eq!(
            headers["x-paystack-signature"],
            received[0].0["x-paystack-signature"]
        );
        assert!(verify(
            WebhookProvider::Paystack,
            DEFAULT_PAYSTACK_SECRET_KEY,
            headers,
            body
        ));
    }
    let event: Value = serde_json::from_slice(&received[0].1).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["data"]["status"].as_str()),
        (Some("transfer.success"), Some("success"))
    );

    // Flutterwave, signed both ways.
    let transfer = json!({"account_bank":"044","account_number":"0690000040","amount":70,"reference":"fw_payout_1"});
    call(
        reqwest::Method::POST,
        format!("{}/transfers", sim.flutterwave_url()),
        FLUTTERWAVE_AUTH,
        Some(transfer),
    )
    .await;
    control(
        &sim,
        "POST",
        "/transfers/fw_payout_1/settle",
        json!({"outcome":"success"}),
    )
    .await;
    let received = receiver.wait_for(6).await;
    let (headers, body) = &received[5];
    assert_eq!(headers["verif-hash"], DEFAULT_FLUTTERWAVE_SECRET_HASH);
    assert!(verify(
        WebhookProvider::Flutterwave,
        DEFAULT_FLUTTERWAVE_SECRET_HASH,
        headers,
        body
    ));
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["data"]["status"].as_str()),
        (Some("transfer.completed"), Some("SUCCESSFUL"))
    );

    // Forged: each mode fails verification.
    let mut count = 6;
    for (index, mode) in ["invalid", "missing", "wrong_secret"]
        .into_iter()
        .enumerate()
    {
        control(&sim, "PUT", "/webhooks", json!({"signature": mode})).await;
        let reference = format!("escrow_bk_00000000{}", 60 + index);
        paystack(
            &sim,
            "POST",
            "/transfer",
            Some(transfer_body(&code, &reference, 1_000)),
        )
        .await;
        control(
            &sim,
            "POST",
            &format!("/transfers/{reference}/settle"),
            json!({"outcome":"failed"}),
        )
        .await;
        count += 1;
        let received = receiver.wait_for(count).await;
        let (headers, body) = received.last().unwrap();
        assert!(
            !verify(
                WebhookProvider::Paystack,
                DEFAULT_PAYSTACK_SECRET_KEY,
                headers,
                body
            ),
            "{mode}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_follow_the_scaled_schedule_and_out_of_order_release_reverses() {
    let receiver = Receiver::default();
    receiver.answers.lock().unwrap().extend([500, 503]);
    let sim = sim_with(&receiver).await;
    let code = recipient(&sim).await;
    control(&sim, "PUT", "/webhooks", json!({"time_scale":0.001})).await;
    paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body(&code, "escrow_bk_0000000070", 1_000)),
    )
    .await;
    control(
        &sim,
        "POST",
        "/transfers/escrow_bk_0000000070/settle",
        json!({}),
    )
    .await;
    receiver.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let delivery = &sim.deliveries()[0];
    let outcomes: Vec<&str> = delivery
        .attempts
        .iter()
        .map(|attempt| attempt.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["500", "503", "200"]);
    assert!(delivery.delivered);

    // Every attempt lost: the schedule runs out and the delivery gives up.
    control(
        &sim,
        "PUT",
        "/webhooks",
        json!({"drop_probability":1.0,"retry_schedule_ms":[10,10]}),
    )
    .await;
    paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body(&code, "escrow_bk_0000000071", 1_000)),
    )
    .await;
    control(
        &sim,
        "POST",
        "/transfers/escrow_bk_0000000071/settle",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivery = sim
        .deliveries()
        .into_iter()
        .find(|d| d.reference == "escrow_bk_0000000071")
        .unwrap();
    let outcomes: Vec<&str> = delivery
        .attempts
        .iter()
        .map(|attempt| attempt.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["dropped", "dropped", "dropped", "gave up"]);
    assert_eq!(receiver.received().len(), 3, "nothing reached the receiver");

    // Out of order: success then reversal, released newest first.
    control(
        &sim,
        "PUT",
        "/webhooks",
        json!({"out_of_order_window_ms":300}),
    )
    .await;
    paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body(&code, "escrow_bk_0000000072", 1_000)),
    )
    .await;
    control(
        &sim,
        "POST",
        "/transfers/escrow_bk_0000000072/settle",
        json!({"outcome":"success"}),
    )
    .await;
    control(
        &sim,
        "POST",
        "/transfers/escrow_bk_0000000072/settle",
        json!({"outcome":"reversed"}),
    )
    .await;
    let received = receiver.wait_for(5).await;
    let events: Vec<String> = received[3..]
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(events, ["transfer.reversed", "transfer.success"]);
    let balance = sim.snapshot().balances["paystack"]["NGN"];
    assert_eq!(
        balance,
        SimConfig::default().initial_balance - 2_000,
        "the reversal credited back"
    );

    // Replay an old delivery, byte for byte.
    let (status, _) = control(&sim, "POST", "/webhooks/deliveries/1/replay", json!({})).await;
    assert_eq!(status, 200);
    let received = receiver.wait_for(6).await;
    assert_eq!(received[5].1, received[2].1);
    assert_eq!(
        received[5].0["x-paystack-signature"],
        received[2].0["x-paystack-signature"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn refunds_and_retries_behave_like_the_providers() {
    let sim = SimConfig::default().start().await.unwrap();
    paystack(
        &sim,
        "POST",
        "/transaction/initialize",
        Some(json!({"email":"g@example.com","amount":10_000,"reference":"bk-r"})),
    )
    .await;
    let (status, _) = paystack(&sim, "POST", "/refund", Some(json!({"transaction":"bk-r"}))).await;
    assert_eq!(status, 400, "not paid yet");
    control(
        &sim,
        "POST",
        "/charges/bk-r/complete",
        json!({"outcome":"success"}),
    )
    .await;
    // Paystack refunds have no idempotency: two POSTs are two refunds.
    for _ in 0..2 {
        let (status, body) = paystack(
            &sim,
            "POST",
            "/refund",
            Some(json!({"transaction":"bk-r","amount":4_000})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = paystack(
        &sim,
        "POST",
        "/refund",
        Some(json!({"transaction":"bk-r","amount":4_000})),
    )
    .await;
    assert_eq!(status, 400, "only 2000 left");
    let (_, list) = paystack(&sim, "GET", "/refund?transaction=bk-r", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let id = list["data"][0]["id"].as_u64().unwrap();
    let (status, body) = control(
        &sim,
        "POST",
        &format!("/refunds/{id}/settle"),
        json!({"outcome":"processed"}),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("processed")));

    // Flutterwave: a failed transfer is retried unless the failure is final.
    let transfer = |reference: &str| json!({"account_bank":"044","account_number":"0690000040","amount":10,"reference":reference});
    let (_, _, created) = call(
        reqwest::Method::POST,
        format!("{}/transfers", sim.flutterwave_url()),
        FLUTTERWAVE_AUTH,
        Some(transfer("fw_r_1")),
    )
    .await;
    let id = created["data"]["id"].as_u64().unwrap();
    let retry = format!("{}/transfers/{id}/retries", sim.flutterwave_url());
    let (status, _, _) = call(reqwest::Method::POST, retry.clone(), FLUTTERWAVE_AUTH, None).await;
    assert_eq!(status, 400, "not failed");
    control(
        &sim,
        "POST",
        "/transfers/fw_r_1/settle",
        json!({"outcome":"failed","reason":"Bank timed out"}),
    )
    .await;
    let (status, _, body) = call(reqwest::Method::POST, retry, FLUTTERWAVE_AUTH, None).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (200, Some("NEW"))
    );
    let (_, _, created) = call(
        reqwest::Method::POST,
        format!("{}/transfers", sim.flutterwave_url()),
        FLUTTERWAVE_AUTH,
        Some(transfer("fw_r_2")),
    )
    .await;
    let id = created["data"]["id"].as_u64().unwrap();
    control(
        &sim,
        "POST",
        "/transfers/fw_r_2/settle",
        json!({"outcome":"failed","reason":"Insufficient balance"}),
    )
    .await;
    let (status, _, _) = call(
        reqwest::Method::POST,
        format!("{}/transfers/{id}/retries", sim.flutterwave_url()),
        FLUTTERWAVE_AUTH,
        None,
    )
    .await;
    assert_eq!(status, 400, "a final failure cannot be retried");
    let retried = sim
        .snapshot()
        .transfers
        .into_iter()
        .find(|t| t.reference == "fw_r_1")
        .unwrap();
    assert_eq!((retried.attempts, retried.create_requests), (2, 1));
    let (status, _) = control(&sim, "POST", "/reset", json!({})).await;
    assert_eq!(status, 200);
    assert!(sim.snapshot().transfers.is_empty());
    sim.shutdown().await;
}

/// Runs a fixed script of requests against a fresh simulator.
async fn scripted_run(seed: u64) -> (String, Vec<u16>) {
    let clock = payguard_core::ManualClock::new();
    let sim = SimConfig {
        seed,
        clock: Arc::new(clock),
        ..SimConfig::default()
    }
    .start()
    .await
    .unwrap();
    control(&sim, "PUT", "/faults", json!({"rules":[{"match":{"path":"/transfer"},"error":{"status":[500,502,503,504],"probability":0.5}}]})).await;
    let code = recipient(&sim).await;
    let mut statuses = Vec::new();
    for n in 0..24 {
        let (status, _) = paystack(
            &sim,
            "POST",
            "/transfer",
            Some(transfer_body(
                &code,
                &format!("escrow_bk_00000001{n:02}"),
                100 + n,
            )),
        )
        .await;
        statuses.push(status);
    }
    let state = serde_json::to_string(&sim.snapshot()).unwrap();
    sim.shutdown().await;
    (state, statuses)
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_run() {
    let (first_state, first) = scripted_run(42).await;
    let (second_state, second) = scripted_run(42).await;
    assert_eq!(first, second);
    assert_eq!(first_state, second_state, "ids, codes and timestamps too");
    assert!(first.contains(&200) && first.iter().any(|status| *status >= 500));
    let (_, other) = scripted_run(43).await;
    assert_ne!(first, other, "another seed, another run");
}

#[test]
fn the_binary_prints_its_base_url_first() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway-sim"))
        .args(["--seed", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /_sim/health HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_makes_one_transfer_even_when_racing() {
    let sim = SimConfig::default().start().await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let url = format!("{}/transfers", sim.flutterwave_url());
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("authorization", FLUTTERWAVE_AUTH)
                    .header("x-idempotency-key", "same-key")
                    .json(&json!({"account_bank":"044","account_number":"0690000040","amount":10,"reference":format!("fw_race_{n}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for racer in racers {
        assert_eq!(racer.await.unwrap(), 200);
    }
    assert_eq!(sim.snapshot().transfers.len(), 1);
    let (status, _) = control(
        &sim,
        "PUT",
        "/faults",
        json!({"rules":[{"rate_limit":{"rps":1e-300}}]}),
    )
    .await;
    assert_eq!(status, 400, "absurd settings are refused, not a panic");
    let (status, _) = control(&sim, "PUT", "/webhooks", json!({"time_scale":1e300})).await;
    assert_eq!(status, 400);
    let (status, body) = paystack(
        &sim,
        "POST",
        "/transaction/initialize",
        Some(json!({"email":"a@b.co","amount":i64::MAX})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    sim.shutdown().await;
}

async fn flutterwave(
    sim: &SimHandle,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, body) = call(
        method.parse().unwrap(),
        format!("{}{path}", sim.flutterwave_url()),
        FLUTTERWAVE_AUTH,
        body,
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn a_flutterwave_payment_is_no_transaction_until_the_customer_attempts_it() {
    let sim = SimConfig::default().start().await.unwrap();
    let (status, body) = flutterwave(
        &sim,
        "POST",
        "/payments",
        Some(json!({"tx_ref":"bk-fw-1","amount":5000,"currency":"NGN",
                    "customer":{"email":"guest@example.com","name":"Ada Obi","phonenumber":"08031234567"},
                    "meta":{"booking":"bk-fw-1"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let by_reference = "/transactions/verify_by_reference?tx_ref=bk-fw-1";
    let (status, body) = flutterwave(&sim, "GET", by_reference, None).await;
    assert_eq!(
        (status, body["status"].as_str(), body["message"].as_str()),
        (
            400,
            Some("error"),
            Some("No transaction was found for this id")
        ),
        "{body}"
    );
    assert!(body["data"].is_null());

    let (status, _) = control(
        &sim,
        "POST",
        "/charges/bk-fw-1/complete",
        json!({"outcome":"attempted"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = flutterwave(&sim, "GET", by_reference, None).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (200, Some("pending"))
    );
    control(
        &sim,
        "POST",
        "/charges/bk-fw-1/complete",
        json!({"outcome":"success"}),
    )
    .await;
    let (_, body) = flutterwave(&sim, "GET", by_reference, None).await;
    let data = &body["data"];
    assert_eq!(data["status"], "successful");
    // Whole amounts are integers, as Flutterwave prints them.
    assert_eq!(data["amount"].to_string(), "5000");
    assert_eq!(data["app_fee"].to_string(), "70");
    assert_eq!(data["amount_settled"].to_string(), "4930");
    assert_eq!(
        (
            data["customer"]["name"].as_str(),
            data["meta"]["booking"].as_str()
        ),
        (Some("Ada Obi"), Some("bk-fw-1"))
    );
    assert!(data["customer"]["id"].is_u64() && data["card"]["last_4digits"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn paystack_transfers_follow_the_documented_lifecycle() {
    let receiver = Receiver::default();
    let sim = sim_with(&receiver).await;
    let code = recipient(&sim).await;
    let initial = SimConfig::default().initial_balance;
    for (n, steps, conclusive, webhooks) in [
        (
            1,
            vec!["otp", "received", "success"],
            "success",
            vec!["transfer.success"],
        ),
        (2, vec!["otp", "abandoned"], "abandoned", vec![]),
        (3, vec!["received", "blocked"], "blocked", vec![]),
        (4, vec!["rejected"], "rejected", vec![]),
        (5, vec!["failed"], "failed", vec!["transfer.failed"]),
        (
            6,
            vec!["success", "reversed"],
            "reversed",
            vec!["transfer.success", "transfer.reversed"],
        ),
    ] {
        let reference = format!("escrow_lifecycle_000{n}");
        let before = receiver.received().len();
        let (status, body) = paystack(
            &sim,
            "POST",
            "/transfer",
            Some(transfer_body(&code, &reference, 1_000)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for step in &steps {
            let (status, body) = control(
                &sim,
                "POST",
                &format!("/transfers/{reference}/settle"),
                json!({"outcome": step}),
            )
            .await;
            assert_eq!(status, 200, "{step}: {body}");
        }
        let (_, body) = paystack(&sim, "GET", &format!("/transfer/verify/{reference}"), None).await;
        assert_eq!(body["data"]["status"], conclusive);
        // A conclusive state is final (a success may still be reversed).
        let (status, _) = control(
            &sim,
            "POST",
            &format!("/transfers/{reference}/settle"),
            json!({"outcome": "success"}),
        )
        .await;
        assert_eq!(status, 409, "{reference} after {conclusive}");
        let events: Vec<String> = receiver.wait_for(before + webhooks.len()).await[before..]
            .iter()
            .map(|(_, body)| {
                serde_json::from_slice::<Value>(body).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .filter(|event| event.starts_with("transfer."))
            .collect();
        assert_eq!(events, webhooks, "{reference}");
    }
    // Money moved only for the one that succeeded.
    assert_eq!(sim.snapshot().balances["paystack"]["NGN"], initial - 1_000);
    sim.shutdown().await;
}

#[tokio::test]
async fn paystack_recipients_of_every_type() {
    let sim = SimConfig::default().start().await.unwrap();
    for (body, expected) in [
        (
            json!({"type":"mobile_money","name":"Kofi","account_number":"0551234987","bank_code":"MTN","currency":"GHS"}),
            201,
        ),
        (
            json!({"type":"mobile_money_business","name":"Till","account_number":"247247","bank_code":"MPTILL","currency":"KES"}),
            201,
        ),
        (
            json!({"type":"authorization","name":"Card","authorization_code":"AUTH_ncx8hews93","email":"a@b.co"}),
            201,
        ),
        (
            json!({"type":"nuban","name":"Test","account_number":"01000000010","bank_code":"058"}),
            201,
        ),
        (json!({"type":"authorization","name":"Card"}), 400),
        (
            json!({"type":"cheque","name":"X","account_number":"0123456789","bank_code":"058"}),
            400,
        ),
        (
            json!({"name":"X","account_number":"0123456789","bank_code":"058"}),
            400,
        ),
    ] {
        let (status, answer) =
            paystack(&sim, "POST", "/transferrecipient", Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {answer}");
        if status == 201 {
            let data = &answer["data"];
            assert_eq!(data["type"], body["type"]);
            for field in [
                "id",
                "integration",
                "active",
                "is_deleted",
                "createdAt",
                "updatedAt",
            ] {
                assert!(!data[field].is_null(), "{field}: {answer}");
            }
            assert!(data["details"]["bank_name"].is_string(), "{answer}");
        } else {
            assert!(
                answer["code"].is_string() && answer["meta"]["nextStep"].is_string(),
                "{answer}"
            );
        }
    }
    sim.shutdown().await;
}

/// The fields typed clients (pypaystack2's models, the Flutterwave Node
/// SDK) read; `conformance/` runs the clients themselves.
#[tokio::test]
async fn answers_have_the_shapes_typed_clients_read() {
    let sim = SimConfig::default().start().await.unwrap();
    let code = recipient(&sim).await;
    let charge = json!({"email":"guest@example.com","amount":500000,"reference":"bk-shape-1",
                        "metadata":{"booking":"bk-shape-1"},"callback_url":"https://example.com/back"});
    paystack(&sim, "POST", "/transaction/initialize", Some(charge)).await;
    control(
        &sim,
        "POST",
        "/charges/bk-shape-1/complete",
        json!({"outcome":"success"}),
    )
    .await;
    let (_, verify) = paystack(&sim, "GET", "/transaction/verify/bk-shape-1", None).await;
    let data = &verify["data"];
    assert_eq!(data["metadata"]["booking"], "bk-shape-1");
    assert!(data["customer"]["id"].is_u64());
    assert!(
        data["customer"]["customer_code"]
            .as_str()
            .unwrap()
            .starts_with("CUS_")
    );
    assert!(
        data["authorization"]["authorization_code"]
            .as_str()
            .unwrap()
            .starts_with("AUTH_")
    );
    assert_eq!(data["requested_amount"], 500_000);
    assert!(data["paidAt"].is_string() && data["fees"].is_i64());
    let id = data["id"].as_u64().unwrap();
    // By id, with the trailing slash pypaystack2 sends; a non-numeric id.
    let (status, by_id) = paystack(&sim, "GET", &format!("/transaction/{id}/"), None).await;
    assert_eq!(
        (status, by_id["data"]["reference"].as_str()),
        (200, Some("bk-shape-1"))
    );
    let (status, body) = paystack(&sim, "GET", "/transaction/verify/", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Transaction ID should be numeric."))
    );

    paystack(
        &sim,
        "POST",
        "/transfer",
        Some(transfer_body(&code, "escrow_shape_00001", 1000)),
    )
    .await;
    let (_, transfer) = paystack(&sim, "GET", "/transfer/verify/escrow_shape_00001", None).await;
    assert_eq!(
        transfer["data"]["recipient"]["recipient_code"],
        code.as_str()
    );
    assert!(transfer["data"]["session"].is_object());
    let (_, list) = paystack(&sim, "GET", "/transfer?perPage=1&page=1", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(list["meta"]["perPage"], 1);

    let (_, refund) = paystack(
        &sim,
        "POST",
        "/refund",
        Some(json!({"transaction":"bk-shape-1","amount":1000})),
    )
    .await;
    assert_eq!(
        refund["data"]["transaction"]["reference"], "bk-shape-1",
        "an object on create"
    );
    let (_, refunds) = paystack(&sim, "GET", "/refund?transaction=bk-shape-1", None).await;
    assert_eq!(refunds["data"][0]["transaction"], id, "an id on list");
    for field in [
        "integration",
        "refunded_by",
        "customer_note",
        "merchant_note",
        "deducted_amount",
        "fully_deducted",
    ] {
        assert!(!refunds["data"][0][field].is_null(), "{field}");
    }
    let (_, banks) = paystack(&sim, "GET", "/bank?country=nigeria", None).await;
    assert!(
        banks["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|bank| bank["code"] == "058")
    );
    let (status, resolved) = paystack(
        &sim,
        "GET",
        "/bank/resolve?account_number=0123456789&bank_code=058",
        None,
    )
    .await;
    assert_eq!(
        (status, resolved["data"]["account_number"].as_str()),
        (200, Some("0123456789"))
    );
    let (_, balance) = paystack(&sim, "GET", "/balance", None).await;
    assert_eq!(balance["data"][0]["currency"], "NGN");

    // Wrong methods, unknown paths and doubled slashes answer JSON.
    let (status, body) = paystack(&sim, "DELETE", "/refund", None).await;
    assert_eq!((status, body["status"].as_bool()), (405, Some(false)));
    let (status, body) = paystack(&sim, "GET", "/nothing/here", None).await;
    assert_eq!((status, body["status"].as_bool()), (404, Some(false)));
    let (status, _, body) = call(
        reqwest::Method::GET,
        format!("{}/flutterwave//v3/transfers?&page=1", sim.base_url()),
        FLUTTERWAVE_AUTH,
        None,
    )
    .await;
    assert_eq!(
        (status, body["meta"]["page_info"]["current_page"].as_u64()),
        (200, Some(1))
    );
    let (status, body) = flutterwave(&sim, "GET", "/payments", None).await;
    assert_eq!((status, body["status"].as_str()), (405, Some("error")));
    let (status, body) =
        flutterwave(&sim, "GET", "/transfers/fee?amount=5000&currency=NGN", None).await;
    assert_eq!(
        (status, body["data"][0]["fee"].as_f64()),
        (200, Some(10.75))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_flutterwave_retry_is_a_transfer_of_its_own() {
    let sim = SimConfig::default().start().await.unwrap();
    let (_, made) = flutterwave(
        &sim,
        "POST",
        "/transfers",
        Some(json!({"account_bank":"044","account_number":"0690000040","amount":500,"currency":"NGN"})),
    )
    .await;
    let reference = made["data"]["reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("TRF-"), "made up: {reference}");
    let id = made["data"]["id"].as_u64().unwrap();
    control(
        &sim,
        "POST",
        &format!("/transfers/{reference}/settle"),
        json!({"outcome":"failed","reason":"DISBURSE FAILED: Bank timeout"}),
    )
    .await;
    let (status, retry) =
        flutterwave(&sim, "POST", &format!("/transfers/{id}/retries"), None).await;
    assert_eq!(status, 200, "{retry}");
    assert_ne!(retry["data"]["id"].as_u64(), Some(id));
    assert_eq!(retry["data"]["reference"], format!("{reference}_RETRY_1"));
    assert_eq!(retry["data"]["status"], "NEW");
    let (_, original) = flutterwave(&sim, "GET", &format!("/transfers/{id}"), None).await;
    assert_eq!(
        original["data"]["status"], "FAILED",
        "the original stays failed"
    );
    let (status, retries) =
        flutterwave(&sim, "GET", &format!("/transfers/{id}/retries"), None).await;
    assert_eq!(
        (status, retries["data"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (status, _) = flutterwave(&sim, "POST", &format!("/transfers/{id}/retries"), None).await;
    assert_eq!(status, 400, "the retry is not failed: nothing to retry");
    sim.shutdown().await;
}
