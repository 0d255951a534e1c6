//! The async and tower front ends.

#![allow(clippy::unwrap_used)] // test helpers

use payguard_breaker::{BreakerError, CircuitBreaker, CircuitBreakerLayer, FailureModel, State};
use payguard_core::{ManualClock, Outcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

fn classify(result: &Result<u16, &'static str>) -> Outcome {
    match result {
        Ok(status) if *status < 500 => Outcome::Success,
        Ok(_) => Outcome::Transient,
        Err(_) => Outcome::Ambiguous,
    }
}

#[tokio::test]
async fn tower_layer_opens_and_rejects_without_calling_the_service() {
    let breaker = CircuitBreaker::builder()
        .failure_model(FailureModel::consecutive_failures(2))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone(), classify))
        .service_fn(move |_: ()| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<u16, &'static str>(503) }
        });
    for _ in 0..2 {
        assert_eq!(service.ready().await.unwrap().call(()).await.unwrap(), 503);
    }
    assert_eq!(breaker.state(), State::Open);
    let error = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(error.rejected().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_frees_its_place() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder()
        .clock(Arc::new(clock.clone()))
        .failure_model(FailureModel::consecutive_failures(1))
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Transient);
    clock.advance(Duration::from_secs(1));
    // The probe hangs and its caller gives up.
    let hung = tokio::time::timeout(
        Duration::from_secs(5),
        breaker.call(classify, || {
            std::future::pending::<Result<u16, &'static str>>()
        }),
    )
    .await;
    assert!(hung.is_err());
    // Its place is free at once, not after the probe timeout.
    let status = breaker.call(classify, || async { Ok(200) }).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test]
async fn call_wrappers_record_and_reject() {
    let breaker = CircuitBreaker::builder()
        .failure_model(FailureModel::consecutive_failures(1))
        .build()
        .unwrap();
    let error = breaker
        .call(classify, || async { Err::<u16, _>("reset") })
        .await
        .unwrap_err();
    assert!(matches!(error, BreakerError::Inner("reset")));
    let rejected = breaker.call_blocking(classify, || Ok(200)).unwrap_err();
    assert_eq!(rejected.rejected().unwrap().state(), State::Open);
}

/// `BreakerError` is transparent: its message is the inner one, and the
/// chain continues from the inner error's own source, so nothing prints
/// twice.
#[test]
fn a_breaker_error_prints_its_cause_once() {
    use std::error::Error;
    let breaker = CircuitBreaker::builder().build().unwrap();
    let error = breaker
        .call_blocking(Outcome::Transient, || {
            Err::<(), _>(std::io::Error::other("gateway unavailable"))
        })
        .unwrap_err();
    assert_eq!(error.to_string(), "gateway unavailable");
    assert!(error.source().is_none());
    assert_eq!(error.code(), "failed");
}
