//! The HTTP service: listings, bookings, cancellations, webhooks, health
//! and metrics.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]
// Validation helpers hand back the error response the handler returns as is.
#![allow(clippy::result_large_err)]

use crate::domain::{
    Booking, BookingStatus, Gateway, Guest, Host, Listing, Payment, PayoutStatus, new_id,
    parse_date,
};
use crate::edge;
use crate::gateway::{GatewayConfig, Gateways, TransferState};
use crate::store::{Cancellation, Confirmation, InboxOutcome, NewHold, Store, StoreError};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use payguard_idempotency::{
    Claim, ClaimRequest, Fingerprint, IdempotencyClaim, IdempotencyLayer, IdempotencyStore,
    MemoryStore, OutcomePolicy, PgIdempotencyStore, ScopeKey, StoredResponse,
};
use payguard_lock::{Locker, MemoryLock, PgLeaseLock};
use payguard_webhook::{Provider, Verifier};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How an instance runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// PostgreSQL; `None` keeps everything in memory (one instance).
    pub database_url: Option<String>,
    /// Gateway endpoints and keys.
    pub gateways: GatewayConfig,
    /// Flutterwave's webhook secret hash.
    pub flutterwave_secret_hash: String,
    /// How long an unpaid hold keeps its dates.
    pub hold_for: Duration,
    /// How long after check-in the host is paid.
    pub escrow_hold: Duration,
    /// How often the escrow and reconciliation jobs run.
    pub job_every: Duration,
    /// This instance's name, in logs.
    pub instance: String,
    /// Connection, time and size limits of the HTTP server.
    pub limits: crate::server::Limits,
    /// What one guest may hold.
    pub guests: crate::domain::GuestLimits,
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be used.
    #[error("database: {0}")]
    Database(String),
}

/// Everything a request needs.
pub struct App {
    /// Bookings and listings.
    pub store: Store,
    /// Payment gateways.
    pub gateways: Gateways,
    /// Settings.
    pub settings: Settings,
    /// Job locks.
    pub locker: Locker,
    idempotency: Arc<dyn IdempotencyStore>,
    /// The `Idempotency-Key` layer of the routes that move money.
    keyed: IdempotencyLayer,
    /// The same store when it is PostgreSQL, for answers stored in the
    /// handler's own transaction.
    pg_idempotency: Option<PgIdempotencyStore>,
    paystack: Verifier,
    flutterwave: Verifier,
}

impl std::fmt::Debug for App {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("App")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The request id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl App {
    /// Connects (and migrates) storage and builds the clients.
    ///
    /// # Errors
    ///
    /// Bad settings or an unusable database.
    pub async fn start(settings: Settings) -> Result<Arc<Self>, StartError> {
        let config = |error: payguard_webhook::ConfigError| StartError::Config(error.to_string());
        let paystack = Verifier::builder(Provider::Paystack)
            .secret(settings.gateways.paystack_secret_key.clone())
            .build()
            .map_err(config)?;
        let flutterwave = Verifier::builder(Provider::Flutterwave)
            .secret(settings.flutterwave_secret_hash.clone())
            .build()
            .map_err(config)?;
        let gateways = Gateways::new(settings.gateways.clone()).map_err(StartError::Config)?;
        let database = |error: &dyn std::fmt::Display| StartError::Database(error.to_string());
        let (store, idempotency, pg_idempotency, locker): (
            Store,
            Arc<dyn IdempotencyStore>,
            Option<PgIdempotencyStore>,
            Locker,
        ) = match &settings.database_url {
            None => (
                Store::memory(),
                Arc::new(MemoryStore::new()),
                None,
                Locker::new(Arc::new(MemoryLock::new())),
            ),
            Some(url) => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect(url)
                    .await
                    .map_err(|error| database(&error))?;
                let idempotency = PgIdempotencyStore::new(pool.clone());
                idempotency
                    .migrate()
                    .await
                    .map_err(|error| database(&error))?;
                let lease = PgLeaseLock::new(pool.clone());
                lease.migrate().await.map_err(|error| database(&error))?;
                let store = Store::postgres(pool)
                    .await
                    .map_err(|error| database(&error))?;
                (
                    store,
                    Arc::new(idempotency.clone()),
                    Some(idempotency),
                    Locker::new(Arc::new(lease)),
                )
            }
        };
        // Only successes are kept (24 h): an invalid request is judged again
        // on a retry, and a flood of them with fresh keys leaves nothing.
        let keyed = IdempotencyLayer::builder(Arc::clone(&idempotency))
            .required(true)
            .outcome_policy(OutcomePolicy::successes_only())
            .build()
            .map_err(|error| StartError::Config(error.to_string()))?;
        Ok(Arc::new(Self {
            store,
            gateways,
            settings,
            locker,
            idempotency,
            keyed,
            pg_idempotency,
            paystack,
            flutterwave,
        }))
    }

    /// The idempotency store (for the reaper).
    pub fn idempotency(&self) -> Arc<dyn IdempotencyStore> {
        Arc::clone(&self.idempotency)
    }

    /// Whether several instances share the store (and the job's writes
    /// must be fenced).
    pub fn store_is_shared(&self) -> bool {
        matches!(self.store, Store::Postgres(_))
    }

    /// The routes.
    pub fn router(self: &Arc<Self>) -> Router {
        let keyed = Router::new()
            .route("/v1/bookings", post(create_booking))
            .route("/v1/bookings/{id}/cancel", post(cancel_booking))
            .route_layer(self.keyed.clone());
        Router::new()
            .route("/v1/listings", post(create_listing))
            .route("/v1/bookings/{id}", get(get_booking))
            .route("/v1/webhooks/paystack", post(paystack_webhook))
            .route("/v1/webhooks/flutterwave", post(flutterwave_webhook))
            .route(
                "/health/live",
                get(|| async { axum::Json(json!({"status": "ok"})) }),
            )
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics))
            .merge(keyed)
            .layer(axum::extract::DefaultBodyLimit::max(
                self.settings.limits.max_body_bytes,
            ))
            .layer(from_fn_with_state(Arc::clone(self), observe))
            .with_state(Arc::clone(self))
    }
}

/// `application/problem+json` with a stable `code`.
pub fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": format!("https://payguard.dev/problems/{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail.into(),
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn internal(error: &StoreError) -> Response {
    tracing::error!(%error, "storage failed");
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the booking store is unavailable; retry shortly",
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
    response
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
    let span = tracing::info_span!("request", request_id = %id, method, %route);
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

/// Whether `id` could be one of ours (anything else is simply not found).
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateListing {
    title: String,
    nightly_rate_minor: i64,
    currency: String,
    host: Host,
}

async fn create_listing(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: CreateListing = match edge::json_request(&headers, &body, false) {
        Ok(request) => request,
        Err(invalid) => return invalid.into_response(),
    };
    let checks = [
        edge::text("title", &request.title),
        edge::text("host.name", &request.host.name),
        edge::email("host.email", &request.host.email),
        edge::phone("host.phone", &request.host.phone),
        edge::text("host.bank_code", &request.host.bank_code),
    ];
    if let Some(Err(invalid)) = checks.into_iter().find(Result::is_err) {
        return invalid.into_response();
    }
    let max_charge = match edge::currency("currency", &request.currency) {
        Ok(max) => max,
        Err(invalid) => return invalid.into_response(),
    };
    if !(1..=max_charge).contains(&request.nightly_rate_minor) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_out_of_range",
            format!(
                "nightly_rate_minor must be 1 to {max_charge} (minor units of {})",
                request.currency
            ),
        );
    }
    let account = &request.host.account_number;
    if account.len() != 10 || !account.bytes().all(|byte| byte.is_ascii_digit()) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "host.account_number must be 10 digits",
        );
    }
    let listing = Listing {
        id: new_id("ls"),
        title: request.title,
        nightly_rate_minor: request.nightly_rate_minor,
        currency: request.currency,
        host: request.host,
    };
    match app.store.create_listing(&listing).await {
        Ok(()) => (StatusCode::CREATED, axum::Json(listing)).into_response(),
        Err(error) => internal(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBooking {
    listing_id: String,
    guest: Guest,
    check_in: String,
    check_out: String,
}

async fn create_booking(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    claim: Option<Extension<IdempotencyClaim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: CreateBooking = match edge::json_request(&headers, &body, false) {
        Ok(request) => request,
        Err(invalid) => return invalid.into_response(),
    };
    let checks = [
        edge::text("guest.name", &request.guest.name),
        edge::email("guest.email", &request.guest.email),
        edge::phone("guest.phone", &request.guest.phone),
    ];
    if let Some(Err(invalid)) = checks.into_iter().find(Result::is_err) {
        return invalid.into_response();
    }
    let (Some(check_in), Some(check_out)) = (
        parse_date(&request.check_in),
        parse_date(&request.check_out),
    ) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_dates",
            "dates are YYYY-MM-DD",
        );
    };
    let today = time::OffsetDateTime::now_utc().date();
    if check_in < today || (check_in - today).whole_days() > 730 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_dates",
            "check_in must be between today (UTC) and two years ahead",
        );
    }
    let nights = (check_out - check_in).whole_days();
    let max_nights = app.settings.guests.max_nights;
    if nights < 1 || nights > i64::from(max_nights) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_dates",
            format!("check_out must be 1 to {max_nights} days after check_in"),
        );
    }
    if !plausible_id(&request.listing_id) {
        return problem(
            StatusCode::NOT_FOUND,
            "listing_not_found",
            "no such listing",
        );
    }
    let listing = match app.store.listing(&request.listing_id).await {
        Ok(Some(listing)) => listing,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "listing_not_found",
                "no such listing",
            );
        }
        Err(error) => return internal(&error),
    };
    let max_charge = edge::max_charge(&listing.currency).unwrap_or(0);
    let Some(amount_minor) = listing
        .nightly_rate_minor
        .checked_mul(nights)
        .filter(|amount| *amount <= max_charge)
    else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_out_of_range",
            "the stay costs more than one charge may carry",
        );
    };
    let hold = NewHold {
        id: new_id("bk"),
        listing_id: listing.id.clone(),
        guest: request.guest,
        check_in,
        check_out,
        amount_minor,
        currency: listing.currency.clone(),
        hold_for: app.settings.hold_for,
        open_holds: app.settings.guests.open_holds,
    };
    let booking = match app.store.place_hold(hold).await {
        Ok(booking) => booking,
        Err(StoreError::DatesUnavailable) => {
            return problem(
                StatusCode::CONFLICT,
                "dates_unavailable",
                "another booking has some of these nights",
            );
        }
        Err(StoreError::TooManyHolds) => {
            return problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_holds",
                "this guest already holds as many unpaid bookings as allowed; pay for or cancel one first",
            );
        }
        Err(error) => return internal(&error),
    };
    let checkout = app
        .gateways
        .initialize_charge(
            &booking.id,
            &booking.guest.email,
            amount_minor,
            &booking.currency,
            &request_id,
        )
        .await;
    let checkout = match checkout {
        Ok(checkout) => checkout,
        Err(error) => {
            tracing::error!(booking = %booking.id, %error, "no gateway could take the charge");
            if let Err(error) = app.store.release_hold(&booking.id).await {
                tracing::error!(%error, "could not release the hold; it expires on its own");
            }
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_gateway_unavailable",
                "no payment gateway is available; retry shortly",
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
    };
    let payment = Payment {
        gateway: checkout.gateway,
        reference: checkout.reference,
        authorization_url: checkout.authorization_url,
    };
    let attached = match (app.store.pool(), &app.pg_idempotency, claim) {
        (Some(pool), Some(idempotency), Some(Extension(claim))) => {
            attach_and_answer(pool, idempotency, &claim, &booking.id, &payment).await
        }
        _ => match app.store.attach_payment(&booking.id, &payment).await {
            Ok(Some(booking)) => Ok(Some(
                (StatusCode::CREATED, axum::Json(booking)).into_response(),
            )),
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        },
    };
    match attached {
        Ok(Some(response)) => response,
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "booking_not_found",
            "the booking vanished",
        ),
        Err(error) => {
            // Free the dates: the retry places a new hold.
            if let Err(release) = app.store.release_hold(&booking.id).await {
                tracing::error!(booking = %booking.id, error = %release, "could not release the hold; it expires on its own");
            }
            tracing::error!(booking = %booking.id, %error, "the booking could not be completed");
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the booking could not be saved; retry with the same Idempotency-Key",
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Attaches the payment and stores the request's answer in one
/// transaction: a crash or a failed completion can never leave a booking
/// whose retry books again. A claim that was taken over meanwhile rolls
/// the attachment back.
async fn attach_and_answer(
    pool: &sqlx::PgPool,
    idempotency: &PgIdempotencyStore,
    claim: &IdempotencyClaim,
    id: &str,
    payment: &Payment,
) -> Result<Option<Response>, StoreError> {
    crate::store::retry_conflicts(|| async {
        let mut tx = pool.begin().await?;
        let Some(booking) = Store::attach_payment_in(&mut tx, id, payment).await? else {
            return Ok(None);
        };
        let response = (StatusCode::CREATED, axum::Json(booking)).into_response();
        let response = claim.complete_in(idempotency, &mut tx, response).await?;
        tx.commit().await?;
        Ok(Some(response))
    })
    .await
}

async fn get_booking(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if !plausible_id(&id) {
        return problem(
            StatusCode::NOT_FOUND,
            "booking_not_found",
            "no such booking",
        );
    }
    match app.store.booking(&id).await {
        Ok(Some(booking)) => axum::Json(booking).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "booking_not_found",
            "no such booking",
        ),
        Err(error) => internal(&error),
    }
}

/// `POST /v1/bookings/{id}/cancel`: an empty body, or an object with an
/// optional reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBooking {
    reason: Option<String>,
}

async fn cancel_booking(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: CancelBooking = match edge::json_request(&headers, &body, true) {
        Ok(request) => request,
        Err(invalid) => return invalid.into_response(),
    };
    if let Some(reason) = &request.reason
        && let Err(invalid) = edge::text("reason", reason)
    {
        return invalid.into_response();
    }
    if !plausible_id(&id) {
        return problem(
            StatusCode::NOT_FOUND,
            "booking_not_found",
            "no such booking",
        );
    }
    let booking = match app.store.cancel(&id).await {
        Ok(Some(Cancellation::Cancelled(booking))) => booking,
        Ok(Some(Cancellation::Refund(booking))) => {
            match refund(&app, &booking, &request_id).await {
                Ok(()) => match app.store.booking(&id).await {
                    Ok(Some(booking)) => booking,
                    Ok(None) => booking,
                    Err(error) => return internal(&error),
                },
                Err(response) => return response,
            }
        }
        Ok(Some(Cancellation::NotCancellable(booking))) => {
            return problem(
                StatusCode::CONFLICT,
                "not_cancellable",
                format!(
                    "a booking that is {:?} with payout {:?} cannot be cancelled",
                    booking.status, booking.payout_status
                ),
            );
        }
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "booking_not_found",
                "no such booking",
            );
        }
        Err(error) => return internal(&error),
    };
    axum::Json(booking).into_response()
}

/// How long a refund claim lets its holder alone call the gateway: longer
/// than any refund call with its retries.
const REFUND_CLAIM: Duration = Duration::from_secs(120);

/// Refunds a booking's charge through the gateway that took it.
async fn refund(app: &App, booking: &Booking, request_id: &str) -> Result<(), Response> {
    let Some(payment) = &booking.payment else {
        return Ok(());
    };
    // Claimed first: only the winner of the claim calls the gateway (two
    // cancellations, or a cancellation and an orphaned payment, never send
    // two refunds), and a crash or a failure leaves a `requested` refund
    // that a retry or the reconciliation job sends once the claim lapses,
    // checking the gateway first.
    let claim = crate::domain::new_id("rc");
    let won = app
        .store
        .claim_refund(&booking.id, &claim, REFUND_CLAIM)
        .await
        .map_err(|error| internal(&error))?;
    if !won {
        return Ok(()); // being sent by someone else, or already with the gateway
    }
    match app
        .gateways
        .refund(payment.gateway, &payment.reference, request_id)
        .await
    {
        Ok(()) => {
            metrics::counter!("booking_refunds_total").increment(1);
            app.store
                .refund_sent(&booking.id, &claim)
                .await
                .map(|_| ())
                .map_err(|error| internal(&error))
        }
        Err(error) => {
            if let Err(store) = app.store.release_refund_claim(&booking.id, &claim).await {
                tracing::warn!(booking = %booking.id, error = %store, "could not free the refund claim; it lapses by itself");
            }
            tracing::error!(booking = %booking.id, %error, "refund failed; the cancellation can be retried");
            let mut response = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "refund_unavailable",
                "the refund could not be started; retry the cancellation",
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            Err(response)
        }
    }
}

/// Readiness for a load balancer: up or down, and which part is down,
/// never why (the cause goes to the log) and nothing an outsider could use
/// (lock holders and tokens are for `payguard lock status`).
async fn ready(State(app): State<Arc<App>>) -> Response {
    let database = app.store.ping().await;
    if let Err(error) = &database {
        tracing::error!(%error, "readiness: the database is down");
    }
    let breakers: serde_json::Map<String, Value> = app
        .gateways
        .states()
        .into_iter()
        .map(|(gateway, state)| {
            (
                gateway.as_str().to_owned(),
                json!(format!("{state:?}").to_lowercase()),
            )
        })
        .collect();
    let up = database.is_ok();
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "status": if up { "ready" } else { "unavailable" },
            "instance": app.settings.instance,
            "database": if up { "up" } else { "down" },
            "breakers": breakers,
        })),
    )
        .into_response()
}

async fn metrics() -> Response {
    // Rendering takes time proportional to the series: off the request
    // workers.
    let text = tokio::task::spawn_blocking(crate::telemetry::render_metrics)
        .await
        .unwrap_or_default();
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

async fn paystack_webhook(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = match app.paystack.verify(&headers, body.clone()) {
        Ok(verified) => verified,
        Err(error) => return rejected(Gateway::Paystack, &error),
    };
    let event_id = verified.event_id().into_string();
    receive(&app, Gateway::Paystack, &event_id, &body, true, &request_id).await
}

async fn flutterwave_webhook(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = match app.flutterwave.verify(&headers, body.clone()) {
        Ok(verified) => verified,
        Err(error) => return rejected(Gateway::Flutterwave, &error),
    };
    let authenticated = verified.body_authenticated();
    let event_id = verified.event_id().into_string();
    receive(
        &app,
        Gateway::Flutterwave,
        &event_id,
        &body,
        authenticated,
        &request_id,
    )
    .await
}

fn rejected(gateway: Gateway, error: &payguard_webhook::VerifyError) -> Response {
    metrics::counter!("booking_webhooks_total", "provider" => gateway.as_str(), "outcome" => "rejected").increment(1);
    tracing::warn!(provider = gateway.as_str(), %error, "webhook rejected");
    // What was wrong (a missing header, a stale timestamp) goes to the log,
    // never to the sender.
    problem(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "the webhook could not be verified",
    )
}

/// What the inbox and the idempotency store can hold of an event id: the
/// id itself, or, when it is too long or holds a NUL (which PostgreSQL text
/// cannot), `sha256:` and its digest.
fn storable_id(event_id: &str) -> String {
    if event_id.len() <= 200 && !event_id.contains('\0') {
        event_id.to_owned()
    } else {
        format!(
            "sha256:{}",
            hex(&Fingerprint::of(&[event_id.as_bytes()]).digest()[..])
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether an authentic event cannot be processed whatever happens: a
/// string with a NUL (PostgreSQL text cannot hold one) or an identifier
/// longer than any gateway issues. Retrying it would fail forever.
fn poisonous(payload: &Value) -> bool {
    fn walk(value: &Value, depth: usize) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => depth > 32 || items.iter().any(|item| walk(item, depth + 1)),
            Value::Object(fields) => {
                depth > 32 || fields.values().any(|field| walk(field, depth + 1))
            }
            _ => false,
        }
    }
    let too_long = |value: &Value| value.as_str().is_some_and(|text| text.len() > 200);
    walk(payload, 0)
        || payload["event"]
            .as_str()
            .is_some_and(|event| event.len() > 100)
        || [
            "id",
            "reference",
            "tx_ref",
            "transaction_reference",
            "transfer_code",
        ]
        .iter()
        .any(|field| too_long(&payload["data"][*field]))
}

/// Records, de-duplicates (through the idempotency store, by event id) and
/// applies a verified webhook.
async fn receive(
    app: &App,
    gateway: Gateway,
    event_id: &str,
    body: &Bytes,
    authenticated: bool,
    request_id: &str,
) -> Response {
    let provider = gateway.as_str();
    let Ok(payload) = serde_json::from_slice::<Value>(body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the webhook body is not JSON",
        );
    };
    let poison = poisonous(&payload);
    let event = match payload["event"].as_str() {
        Some(event) if !poison => event.to_owned(),
        _ => "unprocessable".to_owned(),
    };
    let mut event_id = storable_id(event_id);
    let claim_for = |event_id: &str| {
        ClaimRequest::new(
            ScopeKey::new(&format!("webhook:{provider}"), event_id),
            Fingerprint::of(&[body.as_ref()]),
        )
        .lease(Duration::from_secs(30))
        .retention(Duration::from_secs(7 * 24 * 3600))
    };
    let mut claim = app.idempotency.claim(claim_for(&event_id)).await;
    if let Ok(Claim::Mismatch) = claim {
        // The provider promises one body per event id. A second, different
        // body under the same id (an altered copy signed with our secret,
        // or a provider bug) must not shut out the genuine one: each body
        // is recorded and applied once under its own key, states only move
        // forward, and someone is told.
        metrics::counter!("booking_webhook_body_mismatch_total", "provider" => provider)
            .increment(1);
        tracing::error!(
            provider,
            event_id,
            "an event id arrived again with a different body; both are recorded and applied once each"
        );
        let digest = hex(&Fingerprint::of(&[body.as_ref()]).digest()[..8]);
        event_id = format!("{event_id}#{digest}");
        claim = app.idempotency.claim(claim_for(&event_id)).await;
    }
    let lease = match claim {
        Ok(Claim::Claimed(lease)) => lease,
        Ok(Claim::Replay(_)) => {
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "duplicate").increment(1);
            return axum::Json(json!({"duplicate": true})).into_response();
        }
        Ok(Claim::InFlight { .. }) => {
            return problem(
                StatusCode::CONFLICT,
                "event_in_progress",
                "this event is being processed",
            );
        }
        Ok(_) | Err(_) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_unavailable",
                "retry later",
            );
        }
    };
    if let Err(error) = app
        .store
        .inbox_receive(provider, &event_id, &event, body)
        .await
    {
        let _ = app.idempotency.release(&lease).await;
        return internal(&error);
    }
    let applied = if poison {
        Err(Applying::Poison)
    } else {
        apply_event(
            app,
            gateway,
            &event,
            &payload["data"],
            authenticated,
            request_id,
        )
        .await
        .map_err(Applying::Failed)
    };
    let outcome = match &applied {
        Ok(_) => InboxOutcome::Processed,
        Err(Applying::Poison) => InboxOutcome::Dead("authentic but unprocessable".to_owned()),
        Err(Applying::Failed(error)) => InboxOutcome::Failed(error.clone()),
    };
    if let Err(error) = app.store.inbox_finish(provider, &event_id, outcome).await {
        tracing::warn!(%error, "could not record the webhook outcome");
    }
    let stored = |answer: &str| StoredResponse::new(200, answer.as_bytes().to_vec());
    match applied {
        Ok(effect) => {
            if let Err(error) = app.idempotency.complete(&lease, &stored(&effect)).await {
                tracing::warn!(%error, "the applied event's record could not be completed; a redelivery finds its effect already in place");
            }
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "applied").increment(1);
            axum::Json(json!({"applied": effect})).into_response()
        }
        Err(Applying::Poison) => {
            // Acknowledged, so the provider stops retrying; kept dead in the
            // inbox for a person.
            if let Err(error) = app.idempotency.complete(&lease, &stored("dead")).await {
                tracing::warn!(%error, "could not complete a dead event's record");
            }
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "dead").increment(1);
            tracing::error!(
                provider,
                "an authentic webhook cannot be processed; acknowledged and kept as dead"
            );
            axum::Json(json!({"dead": true})).into_response()
        }
        Err(Applying::Failed(error)) => {
            if let Err(release) = app.idempotency.release(&lease).await {
                tracing::warn!(error = %release, "could not release the event's claim; it frees when its lease ends");
            }
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "failed").increment(1);
            tracing::error!(provider, event = %event, %error, "webhook not applied; the provider will retry");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook_not_applied",
                "the event could not be applied yet; deliver it again",
            )
        }
    }
}

/// Why an event was not applied.
enum Applying {
    /// It never can be.
    Poison,
    /// Not now; a redelivery may succeed.
    Failed(String),
}

/// Applies one event; answers what it did.
async fn apply_event(
    app: &App,
    gateway: Gateway,
    event: &str,
    data: &Value,
    authenticated: bool,
    request_id: &str,
) -> Result<String, String> {
    let store_error = |error: StoreError| error.to_string();
    match (gateway, event) {
        (Gateway::Paystack, "charge.success") => {
            let reference = data["reference"].as_str().unwrap_or_default();
            let amount = data["amount"].as_i64().unwrap_or(-1);
            let currency = data["currency"].as_str().unwrap_or_default();
            confirm(
                app,
                reference,
                amount,
                currency,
                Evidence::SignedEvent,
                request_id,
            )
            .await
        }
        (Gateway::Flutterwave, "charge.completed") => {
            let reference = data["tx_ref"].as_str().unwrap_or_default();
            // A legacy verif-hash proves the sender, not the body: ask the gateway.
            let state = if authenticated {
                (data["status"] == "successful").then(|| {
                    (
                        data["amount"]
                            .as_f64()
                            .map_or(-1, |major| (major * 100.0).round() as i64),
                        data["currency"].as_str().unwrap_or_default().to_owned(),
                    )
                })
            } else {
                app.gateways
                    .verify_charge(gateway, reference, request_id)
                    .await
                    .map_err(|error| error.to_string())?
                    .filter(|charge| charge.paid)
                    .map(|charge| (charge.amount_minor, charge.currency))
            };
            let evidence = if authenticated {
                Evidence::SignedEvent
            } else {
                Evidence::GatewayBooks
            };
            match state {
                Some((amount, currency)) => {
                    confirm(app, reference, amount, &currency, evidence, request_id).await
                }
                None => Ok("charge not successful".to_owned()),
            }
        }
        (Gateway::Paystack, "transfer.success" | "transfer.failed" | "transfer.reversed")
        | (Gateway::Flutterwave, "transfer.completed") => {
            let reference = data["reference"].as_str().unwrap_or_default();
            let next = if authenticated {
                match data["status"].as_str().unwrap_or_default() {
                    "success" | "SUCCESSFUL" => PayoutStatus::Paid,
                    "failed" | "FAILED" => PayoutStatus::Failed,
                    "reversed" | "REVERSED" => PayoutStatus::Reversed,
                    other => return Ok(format!("transfer status {other} ignored")),
                }
            } else {
                // A legacy verif-hash proves the sender, not the body: ask.
                match app
                    .gateways
                    .verify_payout(gateway, reference, request_id)
                    .await
                    .map_err(|error| error.to_string())?
                {
                    Some(TransferState::Paid) => PayoutStatus::Paid,
                    Some(TransferState::Failed) => PayoutStatus::Failed,
                    Some(TransferState::Reversed) => PayoutStatus::Reversed,
                    Some(TransferState::Pending) | None => {
                        return Ok("transfer not settled".to_owned());
                    }
                }
            };
            let changed = app
                .store
                .payout_event(reference, next)
                .await
                .map_err(store_error)?;
            Ok(match changed {
                Some(_) => format!("payout {reference} is {next:?}"),
                None => format!("payout {reference}: {next:?} is stale or unknown; ignored"),
            })
        }
        (Gateway::Paystack, "refund.pending" | "refund.processed" | "refund.failed")
        | (Gateway::Flutterwave, "refund.completed" | "refund.failed") => {
            let reference = data["transaction_reference"]
                .as_str()
                .or_else(|| data["tx_ref"].as_str())
                .unwrap_or_default();
            if !authenticated {
                return Ok("an unauthenticated refund event is not acted on".to_owned());
            }
            let status = data["status"].as_str().unwrap_or("pending");
            let moved = app
                .store
                .refund_event(reference, status)
                .await
                .map_err(store_error)?;
            if !moved {
                metrics::counter!("booking_webhook_events_ignored_total", "reason" => "refund_not_ours")
                    .increment(1);
                tracing::warn!(
                    event,
                    "a refund event for a refund this backend did not start, or already further on; recorded and ignored"
                );
                return Ok(format!("refund event {status} ignored"));
            }
            Ok(format!("refund for {reference} is {status}"))
        }
        _ => Ok(format!("{event} ignored")),
    }
}

/// Where a payment's amount came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// A webhook's signed body.
    SignedEvent,
    /// The gateway's verify endpoint.
    GatewayBooks,
}

/// Confirms the booking `reference` pays for, or refunds a payment it
/// cannot honour. A signed event whose amount does not match is checked
/// against the gateway's books before any refund: a signed copy with
/// altered fields (a provider bug, a leaked key) cannot refund a booking
/// whose genuine payment matches.
async fn confirm(
    app: &App,
    reference: &str,
    amount: i64,
    currency: &str,
    evidence: Evidence,
    request_id: &str,
) -> Result<String, String> {
    match app
        .store
        .confirm_payment(reference, amount, currency)
        .await
        .map_err(|error| error.to_string())?
    {
        Confirmation::Confirmed(booking) => {
            metrics::counter!("booking_confirmed_total").increment(1);
            Ok(format!("booking {} confirmed", booking.id))
        }
        Confirmation::AlreadyConfirmed(booking) => {
            Ok(format!("booking {} was already confirmed", booking.id))
        }
        Confirmation::Orphaned(booking) => {
            tracing::warn!(booking = %booking.id, "money arrived for a booking that cannot be honoured; refunding");
            refund(app, &booking, request_id)
                .await
                .map_err(|_| "the refund could not be started".to_owned())?;
            Ok(format!("booking {} refunded", booking.id))
        }
        Confirmation::Mismatch(booking) if evidence == Evidence::SignedEvent => {
            let gateway = booking.payment.as_ref().map(|payment| payment.gateway);
            let charge = match gateway {
                Some(gateway) => app
                    .gateways
                    .verify_charge(gateway, reference, request_id)
                    .await
                    .map_err(|error| error.to_string())?,
                None => None,
            };
            match charge.filter(|charge| charge.paid) {
                Some(charge) => {
                    if (charge.amount_minor, charge.currency.as_str()) != (amount, currency) {
                        metrics::counter!("booking_webhook_amount_disputed_total").increment(1);
                        tracing::error!(booking = %booking.id, "a signed event's amount differs from the gateway's; the gateway's applies");
                    }
                    Box::pin(confirm(
                        app,
                        reference,
                        charge.amount_minor,
                        &charge.currency,
                        Evidence::GatewayBooks,
                        request_id,
                    ))
                    .await
                }
                None => {
                    metrics::counter!("booking_webhook_amount_disputed_total").increment(1);
                    tracing::error!(booking = %booking.id, "a signed event reports a payment the gateway does not have; ignored");
                    Ok("the gateway has no such payment; ignored".to_owned())
                }
            }
        }
        Confirmation::Mismatch(booking) => {
            tracing::error!(booking = %booking.id, amount, currency, "payment does not match the booking; refunding");
            refund(app, &booking, request_id)
                .await
                .map_err(|_| "the refund could not be started".to_owned())?;
            Ok(format!("booking {} payment mismatch refunded", booking.id))
        }
        Confirmation::Refunded(booking) => {
            Ok(format!("booking {} was already refunded", booking.id))
        }
        Confirmation::Unknown => Ok(format!("no booking pays with {reference}")),
    }
}

/// Starts and settles due payouts (the escrow-release job's body).
///
/// # Errors
///
/// Storage failed, or the job lost its lock.
pub async fn release_escrow(
    app: &App,
    fence: Option<&payguard_lock::Fence>,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<usize, StoreError> {
    let due = app.store.due_payouts(app.settings.escrow_hold, 50).await?;
    let mut started = 0;
    for booking in due {
        if stop.is_cancelled() {
            break;
        }
        let request_id = format!("job_escrow_{}", booking.id);
        let span = tracing::info_span!("job", job = "escrow-release", request_id = %request_id);
        if pay_out(app, &booking, fence, &request_id)
            .instrument(span)
            .await?
        {
            started += 1;
        }
    }
    Ok(started)
}

/// Starts one booking's payout (fenced) and sends it; `false` if another
/// run started it first.
async fn pay_out(
    app: &App,
    booking: &Booking,
    fence: Option<&payguard_lock::Fence>,
    request_id: &str,
) -> Result<bool, StoreError> {
    let Some(payment) = &booking.payment else {
        return Ok(false);
    };
    let Some(listing) = app.store.listing(&booking.listing_id).await? else {
        return Ok(false);
    };
    if !app.store.begin_payout(&booking.id, fence).await? {
        return Ok(false);
    }
    let reference = Booking::payout_reference_for(&booking.id);
    match app
        .gateways
        .payout(
            payment.gateway,
            &listing.host,
            booking.amount_minor,
            &booking.currency,
            &reference,
            request_id,
        )
        .await
    {
        Ok(state) => settle_payout(app, &reference, state).await?,
        Err(error) => payout_failed(app, booking, &reference, &error).await?,
    }
    Ok(true)
}

/// A payout the gateway refused (a bad account, too little balance) is
/// marked failed for people to act on; any other failure leaves it pending
/// for the reconciliation job, which asks the gateway by reference.
async fn payout_failed(
    app: &App,
    booking: &Booking,
    reference: &str,
    error: &crate::gateway::GatewayError,
) -> Result<(), StoreError> {
    if error.is_refusal() {
        tracing::error!(booking = %booking.id, %error, "the gateway refused the payout; marked failed");
        metrics::counter!("booking_payouts_failed_total").increment(1);
        app.store
            .payout_event(reference, PayoutStatus::Failed)
            .await?;
    } else {
        tracing::warn!(booking = %booking.id, %error, "payout outcome unknown; reconciliation will ask");
    }
    Ok(())
}

async fn settle_payout(app: &App, reference: &str, state: TransferState) -> Result<(), StoreError> {
    let next = match state {
        TransferState::Pending => return Ok(()),
        TransferState::Paid => PayoutStatus::Paid,
        TransferState::Failed => PayoutStatus::Failed,
        TransferState::Reversed => PayoutStatus::Reversed,
    };
    app.store.payout_event(reference, next).await.map(|_| ())
}

/// Asks the gateways about payouts and payments whose outcome we have not
/// heard (missed webhooks).
///
/// # Errors
///
/// Storage failed.
pub async fn reconcile(app: &App) -> Result<usize, StoreError> {
    let mut settled = 0;
    for booking in app.store.bookings().await? {
        let request_id = format!("job_reconcile_{}", booking.id);
        let span = tracing::info_span!("job", job = "reconcile", request_id = %request_id);
        if reconcile_one(app, &booking, &request_id)
            .instrument(span)
            .await?
        {
            settled += 1;
        }
    }
    Ok(settled)
}

/// Settles what the gateway knows about one booking; `true` if it did.
async fn reconcile_one(app: &App, booking: &Booking, request_id: &str) -> Result<bool, StoreError> {
    let Some(payment) = &booking.payment else {
        return Ok(false);
    };
    if booking.payout_status == PayoutStatus::Pending
        && let Some(reference) = &booking.payout_reference
    {
        return match app
            .gateways
            .verify_payout(payment.gateway, reference, request_id)
            .await
        {
            Ok(Some(state)) => {
                settle_payout(app, reference, state).await?;
                Ok(true)
            }
            // The gateway never got it (the breaker was open, the recipient
            // call failed): send it again, same reference.
            Ok(None) => {
                let Some(listing) = app.store.listing(&booking.listing_id).await? else {
                    return Ok(false);
                };
                match app
                    .gateways
                    .payout(
                        payment.gateway,
                        &listing.host,
                        booking.amount_minor,
                        &booking.currency,
                        reference,
                        request_id,
                    )
                    .await
                {
                    Ok(state) => {
                        settle_payout(app, reference, state).await?;
                        Ok(true)
                    }
                    Err(error) => {
                        payout_failed(app, booking, reference, &error).await?;
                        Ok(false)
                    }
                }
            }
            Err(_) => Ok(false),
        };
    }
    if booking.refund_status.as_deref() == Some("requested") {
        return Ok(refund(app, booking, request_id).await.is_ok());
    }
    let recently_lapsed = matches!(
        booking.status,
        BookingStatus::Expired | BookingStatus::Cancelled
    ) && booking.escrow == crate::domain::Escrow::None
        && booking.refund_status.is_none()
        && booking.hold_expires_at + Duration::from_secs(48 * 3600)
            > time::OffsetDateTime::now_utc();
    if !(booking.status == BookingStatus::PendingPayment || recently_lapsed)
        || booking
            .next_check_at
            .is_some_and(|at| at > time::OffsetDateTime::now_utc())
    {
        return Ok(false);
    }
    let charge = app
        .gateways
        .verify_charge(payment.gateway, &payment.reference, request_id)
        .await;
    app.store.charge_checked(&booking.id).await?;
    metrics::counter!("booking_reconcile_checks_total").increment(1);
    if let Ok(Some(charge)) = charge
        && charge.paid
    {
        if let Err(error) = confirm(
            app,
            &payment.reference,
            charge.amount_minor,
            &charge.currency,
            Evidence::GatewayBooks,
            request_id,
        )
        .await
        {
            tracing::warn!(booking = %booking.id, %error, "a payment found by reconciliation is not settled yet");
        }
        return Ok(true);
    }
    Ok(false)
}
