//! The `reqwest` helper against a real local HTTP server (wiremock).

#![allow(clippy::unwrap_used)] // test helpers

use payguard_core::{Clock, SystemClock};
use payguard_retry::{
    Backoff, HttpError, IdempotencyKey, Jitter, RetryPolicy, RetryRequest, StopReason,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const MS: Duration = Duration::from_millis(1);

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(Backoff::constant(MS))
        .jitter(Jitter::None)
        .max_delay(Duration::from_secs(5))
        .max_attempts(3)
        .attempt_timeout(300 * MS)
        .build()
        .unwrap()
}

/// Requests received so far, waiting up to 2 s for at least `at_least`.
async fn received(server: &MockServer, at_least: usize) -> Vec<Request> {
    for _ in 0..200 {
        let requests = server.received_requests().await.unwrap();
        if requests.len() >= at_least {
            return requests;
        }
        tokio::time::sleep(10 * MS).await;
    }
    server.received_requests().await.unwrap()
}

#[tokio::test]
async fn post_without_key_is_sent_exactly_once_on_an_ambiguous_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/transfer"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let error = reqwest::Client::new()
        .post(format!("{}/transfer", server.uri()))
        .body(r#"{"amount":5000}"#)
        .with_retry(&policy())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::NotIdempotent);
    // One attempt, or two when the first could not even connect in time on
    // a loaded machine (not sent, so safe to repeat): either way the server
    // sees the request once. Give a wrongly repeated one every chance to
    // arrive.
    assert!(error.attempts() <= 2, "{}", error.attempts());
    assert_eq!(received(&server, 1).await.len(), 1);
    tokio::time::sleep(300 * MS).await;
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn post_with_key_is_retried_with_the_same_key_every_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("TRF_1"))
        .with_priority(2)
        .mount(&server)
        .await;
    let response = reqwest::Client::new()
        .post(format!("{}/transfer", server.uri()))
        .body(r#"{"amount":5000}"#)
        .with_retry(&policy())
        .idempotency_key(IdempotencyKey::new("escrow_77").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "TRF_1");
    // Three attempts; under load the HTTP client may also resend one on a
    // fresh connection when its pooled one closed before the request was
    // written (hyper does, safely). Every copy must carry the same key.
    let requests = received(&server, 3).await;
    assert!((3..=4).contains(&requests.len()), "{}", requests.len());
    for request in &requests {
        assert_eq!(request.headers.get("idempotency-key").unwrap(), "escrow_77");
        assert_eq!(request.body, br#"{"amount":5000}"#);
    }
}

#[tokio::test]
async fn a_key_already_on_the_request_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let error = reqwest::Client::new()
        .post(server.uri())
        .header("Idempotency-Key", "user-supplied-1")
        .with_retry(&policy())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::AttemptsExhausted);
    let requests = received(&server, 3).await;
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("idempotency-key").unwrap() == "user-supplied-1")
    );
    match error.last_error() {
        Some(HttpError::Status(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected the last 503, got {other:?}"),
    }
}

#[tokio::test]
async fn unkeyed_post_is_not_repeated_after_a_500_but_is_after_a_503() {
    let server = MockServer::start().await;
    Mock::given(path("/500"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(path("/503"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let client = reqwest::Client::new();

    let error = client
        .post(format!("{}/500", server.uri()))
        .with_retry(&policy())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::NotIdempotent);
    let error = client
        .post(format!("{}/503", server.uri()))
        .with_retry(&policy())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::AttemptsExhausted);

    let requests = received(&server, 4).await;
    let count = |p: &str| requests.iter().filter(|r| r.url.path() == p).count();
    assert_eq!((count("/500"), count("/503")), (1, 3));
}

#[tokio::test]
async fn get_is_retried_after_a_500_and_declines_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/verify"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/verify"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path("/decline"))
        .respond_with(ResponseTemplate::new(402))
        .mount(&server)
        .await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{}/verify", server.uri()))
        .with_retry(&policy())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let error = client
        .get(format!("{}/decline", server.uri()))
        .with_retry(&policy())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (error.reason(), error.attempts()),
        (StopReason::Permanent, 1)
    );
}

/// The delays chosen before each retry of a GET to `path`.
async fn delays_for(server: &MockServer, path: &str, policy: &RetryPolicy) -> Vec<Duration> {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&delays);
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.uri()))
        .with_retry(policy)
        .provider_hint(|headers| {
            let ms: u64 = headers
                .get("x-ratelimit-reset-ms")?
                .to_str()
                .ok()?
                .parse()
                .ok()?;
            Some(Duration::from_millis(ms))
        })
        .notify(move |event| seen.lock().unwrap().push(event.delay()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    delays.lock().unwrap().clone()
}

// Paused time: the sleeps cost nothing and the delays are read, not timed.
#[tokio::test(start_paused = true)]
async fn retry_after_and_provider_hints_set_the_delay() {
    let server = MockServer::start().await;
    let throttle = |path_: &'static str, header: &'static str, value: &'static str| {
        Mock::given(path(path_))
            .respond_with(ResponseTemplate::new(429).insert_header(header, value))
            .up_to_n_times(1)
            .with_priority(1)
    };
    throttle("/seconds", "Retry-After", "3")
        .mount(&server)
        .await;
    throttle("/huge", "Retry-After", "86400")
        .mount(&server)
        .await;
    throttle("/garbage", "Retry-After", "soon-ish")
        .mount(&server)
        .await;
    throttle("/provider", "X-RateLimit-Reset-Ms", "700")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(MS))
        .jitter(Jitter::None)
        .max_delay(Duration::from_secs(5))
        .build()
        .unwrap();

    assert_eq!(
        delays_for(&server, "/seconds", &policy).await,
        [Duration::from_secs(3)]
    );
    assert_eq!(
        delays_for(&server, "/huge", &policy).await,
        [Duration::from_secs(5)]
    );
    assert_eq!(delays_for(&server, "/garbage", &policy).await, [MS]);
    assert_eq!(delays_for(&server, "/provider", &policy).await, [700 * MS]);
}

#[tokio::test(start_paused = true)]
async fn http_date_retry_after_beyond_the_deadline_stops_without_waiting() {
    let server = MockServer::start().await;
    let in_an_hour = httpdate::fmt_http_date(SystemClock.wall() + Duration::from_secs(3600));
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", in_an_hour.as_str()))
        .mount(&server)
        .await;
    let policy = RetryPolicy::builder()
        .max_delay(Duration::from_secs(7200))
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let error = reqwest::Client::new()
        .get(server.uri())
        .with_retry(&policy)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::DeadlineExceeded);
    assert_eq!(error.attempts(), 1);
}

#[tokio::test]
async fn streaming_bodies_are_refused_before_sending() {
    let server = MockServer::start().await;
    let stream = futures_stream();
    let error = reqwest::Client::new()
        .post(server.uri())
        .body(reqwest::Body::wrap_stream(stream))
        .with_retry(&policy())
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        error.last_error(),
        Some(HttpError::BodyNotReplayable)
    ));
    assert_eq!(error.attempts(), 0);
    assert!(server.received_requests().await.unwrap().is_empty());
}

fn futures_stream()
-> impl futures_core::Stream<Item = Result<&'static [u8], std::io::Error>> + Send + Sync + 'static {
    struct Once(bool);
    impl futures_core::Stream for Once {
        type Item = Result<&'static [u8], std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let first = std::mem::replace(&mut self.0, false);
            std::task::Poll::Ready(first.then_some(Ok(&b"chunk"[..])))
        }
    }
    Once(true)
}
