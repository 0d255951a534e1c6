//! `RetryLayer` around a scripted service.

#![allow(clippy::unwrap_used)] // test helpers

use payguard_core::Outcome;
use payguard_retry::{Backoff, Idempotency, Jitter, RetryLayer, RetryPolicy, StopReason};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::from_millis(5)))
        .jitter(Jitter::None)
        .max_attempts(3)
        .build()
        .unwrap()
}

fn classify(result: &Result<u16, &'static str>) -> Outcome {
    match result {
        Ok(200) => Outcome::Success,
        Ok(503) => Outcome::Transient,
        Ok(_) => Outcome::Permanent,
        Err("timeout") => Outcome::Ambiguous,
        Err(_) => Outcome::Transient,
    }
}

/// A service answering from `script`, one entry per call (the last repeats).
fn scripted(
    script: Vec<Result<u16, &'static str>>,
    calls: Arc<AtomicU32>,
) -> impl Service<&'static str, Response = u16, Error = &'static str, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |_request: &'static str| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        let answer = script.get(n).or(script.last()).copied().unwrap();
        async move { answer }
    })
}

#[tokio::test(start_paused = true)]
async fn retries_responses_until_success() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(), classify))
        .service(scripted(vec![Ok(503), Ok(503), Ok(200)], calls.clone()));
    let status = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_last_response_is_returned_when_attempts_run_out() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(), classify))
        .service(scripted(vec![Ok(503)], calls.clone()));
    let status = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_errors_respect_per_request_idempotency() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = RetryLayer::new(policy(), classify).idempotency(|request: &&'static str| {
        if request.starts_with("GET") {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        }
    });
    let mut service = ServiceBuilder::new()
        .layer(layer)
        .service(scripted(vec![Err("timeout")], calls.clone()));

    let error = service
        .ready()
        .await
        .unwrap()
        .call("POST /transfer")
        .await
        .unwrap_err();
    assert_eq!(
        (error.reason(), error.attempts()),
        (StopReason::NotIdempotent, 1)
    );
    assert_eq!(error.last_error(), Some(&"timeout"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let error = service
        .ready()
        .await
        .unwrap()
        .call("GET /transfer")
        .await
        .unwrap_err();
    assert_eq!(
        (error.reason(), error.attempts()),
        (StopReason::AttemptsExhausted, 3)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
