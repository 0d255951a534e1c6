//! The tower layer: headers on every answer, 429 with a rounded-up
//! `Retry-After` and problem+json, keys from the tenant and from the
//! client address behind trusted proxies, and 503 when the limiter cannot
//! decide.

#![allow(clippy::unwrap_used)]

use http::{Request, Response, StatusCode};
use payguard_core::{ManualClock, Tenant};
use payguard_ratelimit::{
    BoxFuture, Decision, KeySource, MemoryLimiter, Quota, RateLimitError, RateLimitLayer,
    RateLimiter, TrustedProxies,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, ServiceExt, service_fn};

fn limiter(quota: &str, clock: &ManualClock) -> Arc<dyn RateLimiter> {
    let limiter: MemoryLimiter<String> = MemoryLimiter::builder(quota.parse::<Quota>().unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    Arc::new(limiter)
}

async fn send(layer: &RateLimitLayer, request: Request<String>) -> Response<String> {
    let service = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new("ok".to_owned()))
    }));
    service.oneshot(request).await.unwrap()
}

fn from(tenant: &str) -> Request<String> {
    let mut request = Request::new(String::new());
    request.extensions_mut().insert(Tenant::new(tenant));
    request
}

#[tokio::test]
async fn answers_carry_the_headers_and_a_limited_request_gets_429() {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::builder(limiter("2/s", &clock))
        .policy("tenant")
        .build()
        .unwrap();
    let first = send(&layer, from("acme")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-policy"], r#""tenant";q=2;w=1"#);
    assert_eq!(first.headers()["ratelimit"], r#""tenant";r=1;t=1"#);
    assert_eq!(send(&layer, from("acme")).await.status(), StatusCode::OK);
    clock.advance(Duration::from_millis(200));
    let limited = send(&layer, from("acme")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.headers()["retry-after"],
        "1",
        "300 ms rounds up, never to 0"
    );
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(limited.headers()["ratelimit"], r#""tenant";r=0;t=1"#);
    let problem: serde_json::Value = serde_json::from_str(limited.body()).unwrap();
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(problem["status"], 429);
    assert_eq!(
        send(&layer, from("globex")).await.status(),
        StatusCode::OK,
        "another tenant"
    );
    // Requests without a tenant share one key: limited, never unlimited.
    let anonymous = || Request::new(String::new());
    assert_eq!(send(&layer, anonymous()).await.status(), StatusCode::OK);
    assert_eq!(send(&layer, anonymous()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&layer, anonymous()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_client_behind_a_trusted_proxy_is_limited_not_the_proxy() {
    let clock = ManualClock::new();
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let layer = RateLimitLayer::builder(limiter("1/min", &clock))
        .policy("ip")
        .key(KeySource::PeerIp(proxies))
        .build()
        .unwrap();
    let through_proxy = |client: &str, claimed: Option<&str>| {
        let mut request = Request::new(String::new());
        request
            .extensions_mut()
            .insert("10.0.0.1:40000".parse::<SocketAddr>().unwrap());
        let forwarded = match claimed {
            Some(claimed) => format!("{claimed}, {client}"),
            None => client.to_owned(),
        };
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
        request
    };
    assert_eq!(
        send(&layer, through_proxy("203.0.113.5", None))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&layer, through_proxy("203.0.113.5", Some("198.51.100.77")))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a client-written leftmost entry does not buy a new limit"
    );
    assert_eq!(
        send(&layer, through_proxy("203.0.113.6", None))
            .await
            .status(),
        StatusCode::OK
    );
}

/// A limiter whose store is down and whose fallback refuses.
struct Down;

impl RateLimiter for Down {
    fn quota(&self) -> Quota {
        Quota::per_second(1).unwrap()
    }

    fn check<'a>(&'a self, _: &'a str, _: u32) -> BoxFuture<'a, Result<Decision, RateLimitError>> {
        Box::pin(async { Err(RateLimitError::Unavailable("redis is down".to_owned())) })
    }
}

#[tokio::test]
async fn a_limiter_that_cannot_decide_answers_503_without_calling_the_service() {
    let layer = RateLimitLayer::builder(Arc::new(Down)).build().unwrap();
    let service = layer.layer(service_fn(|_: Request<String>| async {
        panic!("the service must not be called");
        #[allow(unreachable_code)]
        Ok::<Response<String>, Infallible>(Response::new(String::new()))
    }));
    let answer = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "1");
    assert!(answer.body().contains("rate_limit_unavailable"));
    assert!(
        !answer.body().contains("redis"),
        "the cause is not the client's"
    );
}
