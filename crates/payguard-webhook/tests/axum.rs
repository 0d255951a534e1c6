//! The axum extractor: 200 for a verified delivery, 401 for a forged one,
//! 413 for an oversized one.

#![allow(clippy::unwrap_used)] // test code

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use payguard_webhook::{Provider, VerifiedWebhook, Verifier};
use std::sync::Arc;
use tower::ServiceExt;

async fn handler(VerifiedWebhook(delivery): VerifiedWebhook) -> String {
    delivery.event_id().into_string()
}

fn app(max_body: usize) -> (Router, Verifier) {
    let verifier = Verifier::builder(Provider::Paystack)
        .secret("sk_test_axum")
        .max_body_bytes(max_body)
        .build()
        .unwrap();
    let router = Router::new().route(
        "/webhooks/paystack",
        post(handler).with_state(Arc::new(verifier.clone())),
    );
    (router, verifier)
}

fn request(body: &'static [u8], signature: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/webhooks/paystack");
    if let Some(signature) = signature {
        request = request.header("x-paystack-signature", signature);
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn verified_delivery_reaches_the_handler() {
    let (app, verifier) = app(1024);
    let body: &'static [u8] = br#"{"event":"charge.success","data":{"id":5}}"#;
    let headers = verifier
        .sign_at(body, std::time::SystemTime::UNIX_EPOCH, None)
        .unwrap();
    let signature = headers[0].1.to_str().unwrap().to_owned();
    let response = app.oneshot(request(body, Some(&signature))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&text[..], b"paystack:charge.success:5");
}

#[tokio::test]
async fn forged_or_unsigned_delivery_is_401_without_detail() {
    let (app, _) = app(1024);
    for signature in [None, Some("00"), Some("not hex at all")] {
        let response = app
            .clone()
            .oneshot(request(b"{}", signature))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let text = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let text = String::from_utf8(text.to_vec()).unwrap();
        assert!(text.contains("\"code\":\"webhook_unverified\""), "{text}");
        assert!(!text.contains("sk_test"), "{text}");
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (app, _) = app(16);
    let response = app.oneshot(request(&[b'x'; 64], Some("00"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
