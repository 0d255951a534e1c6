//! The Idempotency-Key middleware, end to end through axum, on the memory
//! store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::routing::post;
use payguard_idempotency::{
    IdempotencyLayer, IdempotencyLayerBuilder, IdempotencyStore, MemoryStore, OutcomePolicy, Tenant,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A booking handler: counts executions, answers 201 with a Location, a
/// header that must not be replayed, and a body naming the execution.
async fn create(State(calls): State<Calls>, body: String) -> Response<Body> {
    let n = calls.0.fetch_add(1, Ordering::SeqCst) + 1;
    let mut response = Response::new(Body::from(format!(r#"{{"booking":{n},"echo":{body:?}}}"#)));
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/bookings/{n}")).unwrap(),
    );
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("session=secret"),
    );
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&format!("req-{n}")).unwrap(),
    );
    response
}

/// Answers with the status given in the body, so tests choose the outcome.
async fn status_from_body(State(calls): State<Calls>, body: String) -> Response<Body> {
    calls.0.fetch_add(1, Ordering::SeqCst);
    let mut response = Response::new(Body::from("outcome"));
    *response.status_mut() = StatusCode::from_u16(body.trim().parse().unwrap()).unwrap();
    response
}

async fn slow(State(calls): State<Calls>) -> (StatusCode, &'static str) {
    calls.0.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    (StatusCode::OK, "slow done")
}

async fn panics(State(calls): State<Calls>) -> StatusCode {
    if calls.0.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("handler bug on the first call");
    }
    StatusCode::OK
}

fn app(layer: IdempotencyLayer) -> (Router, Calls) {
    let calls = Calls::default();
    let router = Router::new()
        .route("/v1/bookings", post(create).put(create).get(create))
        .route("/v1/outcome", post(status_from_body))
        .route("/v1/slow", post(slow))
        .route("/v1/panics", post(panics))
        .route("/v1/items/{id}", post(create))
        .layer(layer)
        .with_state(calls.clone());
    (router, calls)
}

fn memory_layer() -> IdempotencyLayerBuilder {
    IdempotencyLayer::builder(Arc::new(MemoryStore::new()))
}

fn request(method: &str, uri: &str, key: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn problem_code(answer: &Answer) -> String {
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(problem["status"], answer.status.as_u16());
    problem["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn replays_are_byte_identical_with_only_allow_listed_headers() {
    let (router, calls) = app(memory_layer().build().unwrap());
    let first = send(&router, request("POST", "/v1/bookings", Some("k1"), "a")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    for _ in 0..100 {
        let again = send(&router, request("POST", "/v1/bookings", Some("k1"), "a")).await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.body, first.body);
        assert_eq!(again.headers[header::LOCATION], "/v1/bookings/1");
        assert_eq!(again.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert!(
            again.headers.get(header::SET_COOKIE).is_none(),
            "cookies are never replayed"
        );
        assert!(
            again.headers.get("x-request-id").is_none(),
            "request ids are never replayed"
        );
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn quoted_and_bare_keys_are_the_same_key_and_case_matters() {
    let (router, calls) = app(memory_layer().build().unwrap());
    send(&router, request("POST", "/v1/bookings", Some("abc"), "a")).await;
    let quoted = send(
        &router,
        request("POST", "/v1/bookings", Some("\"abc\""), "a"),
    )
    .await;
    assert_eq!(quoted.headers["idempotent-replayed"], "true");
    let upper = send(&router, request("POST", "/v1/bookings", Some("ABC"), "a")).await;
    assert!(upper.headers.get("idempotent-replayed").is_none());
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn missing_and_invalid_keys() {
    let (router, calls) = app(memory_layer().required(true).build().unwrap());
    let missing = send(&router, request("POST", "/v1/bookings", None, "a")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(&missing), "idempotency_key_missing");
    let long = "k".repeat(256);
    for bad in ["", "\"\"", "a b", long.as_str(), "\"unterminated"] {
        let answer = send(&router, request("POST", "/v1/bookings", Some(bad), "a")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(problem_code(&answer), "idempotency_key_invalid", "{bad:?}");
    }
    let twice = Request::builder()
        .method("POST")
        .uri("/v1/bookings")
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .body(Body::from("a"))
        .unwrap();
    let answer = send(&router, twice).await;
    assert_eq!(
        (answer.status, problem_code(&answer).as_str()),
        (StatusCode::BAD_REQUEST, "idempotency_key_invalid")
    );
    assert_eq!(calls.get(), 0, "refused requests never reach the handler");
}

#[tokio::test]
async fn optional_keys_pass_through_and_safe_methods_are_untouched() {
    let (router, calls) = app(memory_layer().build().unwrap());
    send(&router, request("POST", "/v1/bookings", None, "a")).await;
    send(&router, request("POST", "/v1/bookings", None, "a")).await;
    send(&router, request("GET", "/v1/bookings", Some("k"), "")).await;
    let get = send(&router, request("GET", "/v1/bookings", Some("k"), "")).await;
    assert!(get.headers.get("idempotent-replayed").is_none());
    assert_eq!(calls.get(), 4);
}

#[tokio::test]
async fn a_different_request_under_the_same_key_is_a_422_and_changes_nothing() {
    let (router, calls) = app(memory_layer().build().unwrap());
    send(&router, request("POST", "/v1/bookings", Some("k"), "a")).await;
    let other_body = send(&router, request("POST", "/v1/bookings", Some("k"), "b")).await;
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_code(&other_body), "idempotency_key_mismatch");
    let other_query = send(
        &router,
        request("POST", "/v1/bookings?express=1", Some("k"), "a"),
    )
    .await;
    assert_eq!(other_query.status, StatusCode::UNPROCESSABLE_ENTITY);
    let original = send(&router, request("POST", "/v1/bookings", Some("k"), "a")).await;
    assert_eq!(original.headers["idempotent-replayed"], "true");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn keys_are_scoped_by_method_route_and_tenant() {
    let (router, calls) = app(memory_layer()
        .tenant_header("x-tenant".parse().unwrap())
        .build()
        .unwrap());
    send(&router, request("POST", "/v1/bookings", Some("k"), "a")).await;
    // Same key, another method on the same path: another scope.
    send(&router, request("PUT", "/v1/bookings", Some("k"), "a")).await;
    // The route template scopes, not the concrete path.
    send(&router, request("POST", "/v1/items/1", Some("k2"), "a")).await;
    let other_item = send(&router, request("POST", "/v1/items/2", Some("k2"), "a")).await;
    assert_eq!(
        other_item.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "same route template and key, different resource"
    );
    assert_eq!(calls.get(), 3);
    // Tenants from a header and from an extension are separate scopes.
    let mut tenant_a = request("POST", "/v1/bookings", Some("k"), "a");
    tenant_a
        .headers_mut()
        .insert("x-tenant", HeaderValue::from_static("a"));
    assert!(
        send(&router, tenant_a)
            .await
            .headers
            .get("idempotent-replayed")
            .is_none()
    );
    let mut tenant_b = request("POST", "/v1/bookings", Some("k"), "a");
    tenant_b.extensions_mut().insert(Tenant::new("b"));
    assert!(
        send(&router, tenant_b)
            .await
            .headers
            .get("idempotent-replayed")
            .is_none()
    );
    let mut tenant_a_again = request("POST", "/v1/bookings", Some("k"), "a");
    tenant_a_again
        .headers_mut()
        .insert("x-tenant", HeaderValue::from_static("a"));
    assert_eq!(
        send(&router, tenant_a_again).await.headers["idempotent-replayed"],
        "true"
    );
    assert_eq!(calls.get(), 5);
}

#[tokio::test]
async fn the_default_policy_stores_4xx_and_releases_5xx_408_429() {
    let (router, calls) = app(memory_layer().build().unwrap());
    for (key, status, stored) in [
        ("a", 402, true),
        ("b", 404, true),
        ("c", 500, false),
        ("d", 503, false),
        ("e", 408, false),
        ("f", 429, false),
    ] {
        let first = send(
            &router,
            request("POST", "/v1/outcome", Some(key), &status.to_string()),
        )
        .await;
        assert_eq!(first.status.as_u16(), status);
        let before = calls.get();
        let again = send(
            &router,
            request("POST", "/v1/outcome", Some(key), &status.to_string()),
        )
        .await;
        assert_eq!(again.status.as_u16(), status);
        assert_eq!(
            again.headers.get("idempotent-replayed").is_some(),
            stored,
            "{status}"
        );
        assert_eq!(
            calls.get(),
            if stored { before } else { before + 1 },
            "{status}"
        );
    }
}

#[tokio::test]
async fn stripe_policy_stores_server_errors() {
    let (router, calls) = app(memory_layer()
        .outcome_policy(OutcomePolicy::stripe())
        .build()
        .unwrap());
    send(&router, request("POST", "/v1/outcome", Some("k"), "500")).await;
    let again = send(&router, request("POST", "/v1/outcome", Some("k"), "500")).await;
    assert_eq!(
        (again.status.as_u16(), &again.headers["idempotent-replayed"]),
        (500, &HeaderValue::from_static("true"))
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_frees_the_key() {
    let (router, calls) = app(memory_layer().build().unwrap());
    let first = send(&router, request("POST", "/v1/panics", Some("k"), "")).await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    let retry = send(&router, request("POST", "/v1/panics", Some("k"), "")).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert!(
        retry.headers.get("idempotent-replayed").is_none(),
        "the retry executed"
    );
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn an_in_flight_duplicate_gets_409_with_retry_after() {
    let (router, calls) = app(memory_layer().build().unwrap());
    let first = tokio::spawn({
        let router = router.clone();
        async move { send(&router, request("POST", "/v1/slow", Some("k"), "")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let duplicate = send(&router, request("POST", "/v1/slow", Some("k"), "")).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(problem_code(&duplicate), "idempotency_key_in_use");
    let retry_after: u64 = duplicate.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    // A different body while in flight is still a mismatch, not a 409.
    let different = send(&router, request("POST", "/v1/slow", Some("k"), "other")).await;
    assert_eq!(different.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn waiting_for_in_flight_replays_the_first_answer() {
    let (router, calls) = app(memory_layer()
        .wait_for_in_flight(Duration::from_secs(2))
        .build()
        .unwrap());
    let first = tokio::spawn({
        let router = router.clone();
        async move { send(&router, request("POST", "/v1/slow", Some("k"), "")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let duplicate = send(&router, request("POST", "/v1/slow", Some("k"), "")).await;
    assert_eq!(duplicate.status, StatusCode::OK);
    assert_eq!(duplicate.body, "slow done");
    assert_eq!(duplicate.headers["idempotent-replayed"], "true");
    first.await.unwrap();
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_long_handler_keeps_its_claim_by_renewing_the_lease() {
    // Lease 90 ms, handler 300 ms: without renewal a duplicate at 200 ms
    // would take the key over and run the handler a second time.
    let (router, calls) = app(memory_layer()
        .lease(Duration::from_millis(90))
        .build()
        .unwrap());
    let first = tokio::spawn({
        let router = router.clone();
        async move { send(&router, request("POST", "/v1/slow", Some("k"), "")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let duplicate = send(&router, request("POST", "/v1/slow", Some("k"), "")).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    first.await.unwrap();
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn oversized_responses_are_kept_once_without_their_body() {
    let store = Arc::new(
        MemoryStore::builder()
            .max_response_bytes(8)
            .build()
            .unwrap(),
    );
    let (router, calls) = app(IdempotencyLayer::new(store));
    let first = send(
        &router,
        request(
            "POST",
            "/v1/bookings",
            Some("k"),
            "a body longer than eight bytes",
        ),
    )
    .await;
    assert!(first.body.len() > 8);
    let again = send(
        &router,
        request(
            "POST",
            "/v1/bookings",
            Some("k"),
            "a body longer than eight bytes",
        ),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotency-body-omitted"], "true");
    assert_eq!(again.body, "");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused_unprocessed() {
    let (router, calls) = app(memory_layer().build().unwrap());
    let answer = send(
        &router,
        request(
            "POST",
            "/v1/bookings",
            Some("k"),
            &"x".repeat((1 << 20) + 1),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.get(), 0);
}

/// A store that is always down.
struct DownStore;

impl IdempotencyStore for DownStore {
    fn claim(
        &self,
        _: payguard_idempotency::ClaimRequest,
    ) -> payguard_idempotency::BoxFuture<
        '_,
        Result<payguard_idempotency::Claim, payguard_idempotency::StoreError>,
    > {
        Box::pin(async {
            Err(payguard_idempotency::StoreError::Unavailable(
                "connection refused".into(),
            ))
        })
    }
    fn complete<'a>(
        &'a self,
        _: &'a payguard_idempotency::Lease,
        _: &'a payguard_idempotency::StoredResponse,
    ) -> payguard_idempotency::BoxFuture<'a, Result<(), payguard_idempotency::StoreError>> {
        unreachable!("never claimed")
    }
    fn release<'a>(
        &'a self,
        _: &'a payguard_idempotency::Lease,
    ) -> payguard_idempotency::BoxFuture<'a, Result<(), payguard_idempotency::StoreError>> {
        unreachable!("never claimed")
    }
    fn extend<'a>(
        &'a self,
        _: &'a payguard_idempotency::Lease,
        _: Duration,
    ) -> payguard_idempotency::BoxFuture<'a, Result<Duration, payguard_idempotency::StoreError>>
    {
        unreachable!("never claimed")
    }
    fn reap(
        &self,
        _: usize,
    ) -> payguard_idempotency::BoxFuture<'_, Result<u64, payguard_idempotency::StoreError>> {
        unreachable!("not reaped")
    }
}

#[tokio::test]
async fn a_store_outage_fails_closed_with_503() {
    let (router, calls) = app(IdempotencyLayer::new(Arc::new(DownStore)));
    let answer = send(&router, request("POST", "/v1/bookings", Some("k"), "a")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_code(&answer), "idempotency_unavailable");
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(calls.get(), 0, "the handler never runs without protection");
}
