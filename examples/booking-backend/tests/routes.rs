//! The routes' contract without a socket: each request goes through the
//! router with `oneshot` against an in-memory backend whose gateways are
//! never called (problems, listings, the admin list's keys, readiness,
//! unverified webhooks).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use axum::body::Body;
use booking_backend::gateway::GatewayConfig;
use booking_backend::{App, Settings, WebhookSecrets};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use payguard_redact::Secret;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

async fn app() -> Arc<App> {
    // Nothing here reaches a gateway: an address nobody listens on.
    let mut gateways = GatewayConfig::new("sk_test_routes", "FLWSECK_TEST-routes");
    gateways.paystack_base_url = "http://127.0.0.1:9".to_owned();
    gateways.flutterwave_base_url = "http://127.0.0.1:9".to_owned();
    let secrets = WebhookSecrets {
        paystack: vec![Secret::new("sk_test_routes".to_owned())],
        flutterwave: vec![Secret::new("routes-hash".to_owned())],
    };
    let mut settings = Settings::new(gateways, secrets);
    settings.api_keys = booking_backend::http::parse_api_keys(
        "acme:client-key-0123456789,ops:admin-key-0123456789:admin",
    )
    .unwrap();
    App::start(settings).await.unwrap()
}

async fn send(app: &Arc<App>, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = booking_backend::app(app).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, value)
}

fn json_post(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn listing_body() -> Value {
    json!({"title": "Lekki flat", "nightly_rate_minor": 2_000_000, "currency": "NGN",
           "host": {"name": "Ada Host", "email": "ada@example.com", "phone": "+2348031234567",
                    "bank_code": "058", "account_number": "0123456789"}})
}

#[tokio::test]
async fn every_error_is_a_problem_with_a_stable_code() {
    let app = app().await;
    let cases = [
        (
            Request::get("/nowhere").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Request::post("/v1/listings")
                .header("content-type", "text/plain")
                .body(Body::from("x"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            json_post("/v1/listings", &json!({"title": 1})),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json_post("/v1/listings", &{
                let mut body = listing_body();
                body["currency"] = json!("ABC");
                body
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            Request::get("/v1/bookings/bk%20x")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "booking_not_found",
        ),
        (
            Request::get("/v1/listings/ls_missing")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "listing_not_found",
        ),
        (
            json_post("/v1/bookings", &json!({})),
            StatusCode::BAD_REQUEST,
            "idempotency_key_missing",
        ),
    ];
    for (request, status, code) in cases {
        let uri = request.uri().clone();
        let (seen, headers, body) = send(&app, request).await;
        assert_eq!(seen, status, "{uri}: {body}");
        assert_eq!(body["code"], code, "{uri}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{uri}");
    }
}

#[tokio::test]
async fn a_listing_reads_back_without_its_host() {
    let app = app().await;
    let (status, _, created) = send(&app, json_post("/v1/listings", &listing_body())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, _, public) = send(
        &app,
        Request::get(format!("/v1/listings/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        public,
        json!({"id": id, "title": "Lekki flat", "nightly_rate_minor": 2_000_000, "currency": "NGN"})
    );
}

#[tokio::test]
async fn the_admin_list_answers_admin_keys_only() {
    let app = app().await;
    let list = |key: Option<&str>| {
        let mut request = Request::get("/v1/bookings?limit=10");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let (status, _, body) = send(&app, list(None)).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (status, _, body) = send(&app, list(Some("client-key-0123456789"))).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, _, body) = send(&app, list(Some("admin-key-0123456789"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"bookings": [], "next": null}));
}

#[tokio::test]
async fn readiness_reports_version_and_an_unverified_webhook_is_refused_without_why() {
    let app = app().await;
    let (status, _, ready) = send(
        &app,
        Request::get("/health/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"));
    let forged = Request::post("/v1/webhooks/paystack")
        .header("content-type", "application/json")
        .header("x-paystack-signature", "00".repeat(64))
        .body(Body::from(r#"{"event":"charge.success","data":{}}"#))
        .unwrap();
    let (status, _, body) = send(&app, forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_signature");
    assert_eq!(body["detail"], "the webhook could not be verified");
}
