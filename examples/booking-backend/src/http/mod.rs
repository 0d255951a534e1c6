//! The HTTP API: routes, and what every request goes through (a request
//! id, a span, a time limit, metrics, and errors as problem+json).

mod auth;
mod bookings;
mod error;
mod health;
mod input;
mod listings;
mod webhooks;

pub use auth::{ApiKey, ApiKeysError, Role, parse_api_keys};
pub use error::{ApiError, problem};
pub(crate) use input::max_charge;

use crate::domain::new_id;
use crate::startup::App;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode};
use std::sync::Arc;
use tracing::Instrument;

/// The request id of the request being served (`x-request-id`, or a new
/// one), also on the answer.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Every route of the service.
pub fn router(app: &Arc<App>) -> Router {
    let keyed = Router::new()
        .route("/v1/bookings", post(bookings::create))
        .route("/v1/bookings/{id}/cancel", post(bookings::cancel))
        .route_layer(app.keyed.clone());
    Router::new()
        .route("/v1/listings", post(listings::create))
        .route("/v1/listings/{id}", get(listings::get))
        .route("/v1/bookings", get(bookings::list))
        .route("/v1/bookings/{id}", get(bookings::get))
        .route(
            "/v1/webhooks/paystack",
            webhooks::route(app, crate::domain::Gateway::Paystack),
        )
        .route(
            "/v1/webhooks/flutterwave",
            webhooks::route(app, crate::domain::Gateway::Flutterwave),
        )
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(keyed)
        .layer(axum::extract::DefaultBodyLimit::max(
            app.settings.limits.max_body_bytes,
        ))
        .layer(from_fn_with_state(Arc::clone(app), observe))
        .with_state(Arc::clone(app))
}

/// Whether `id` could be one of ours (anything else is simply not found,
/// without asking the store).
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// The method as a metric label or log field: one of a closed set, so that
/// a client inventing methods cannot grow either.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Request id, a span per request, the request's time limit, request
/// metrics (labels from closed sets only), and every error answered as
/// `application/problem+json`.
async fn observe(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 64)
        .map_or_else(|| new_id("req_"), str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method,
        %route,
        instance = %app.settings.instance,
        version = env!("CARGO_PKG_VERSION"),
    );
    let running = next.run(request).instrument(span.clone());
    let mut response =
        match tokio::time::timeout(app.settings.limits.request_timeout, running).await {
            Ok(response) => as_problem(response),
            Err(_) => problem(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request took too long",
            ),
        };
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, "answered"));
    let class = status_class(response.status());
    metrics::counter!("booking_http_requests_total", "method" => method, "route" => route.clone(), "status" => class)
        .increment(1);
    metrics::histogram!("booking_http_request_duration_seconds", "route" => route, "status" => class)
        .record(started.elapsed().as_secs_f64());
    if response
        .headers()
        .contains_key(payguard_idempotency::IDEMPOTENT_REPLAYED)
    {
        metrics::counter!("booking_idempotent_replays_total").increment(1);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// An error answered by something other than our handlers (axum's body
/// limit, a malformed chunked body, an unknown route or method) becomes
/// problem+json with a stable code and a generic detail.
fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_ours = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| {
            // Ours: problems, and the health routes' JSON.
            let value = value.as_bytes();
            value.starts_with(b"application/problem+json") || value.starts_with(b"application/json")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("request_too_large", "the request body is too large"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send application/json"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        status if status.is_server_error() => ("internal_error", "the request failed"),
        _ => ("bad_request", "the request could not be read"),
    };
    let mut replaced = problem(status, code, detail);
    for name in [http::header::RETRY_AFTER, http::header::ALLOW] {
        if let Some(value) = response.headers().get(&name) {
            replaced.headers_mut().insert(name, value.clone());
        }
    }
    replaced
}
