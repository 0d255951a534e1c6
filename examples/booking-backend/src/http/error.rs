//! [`ApiError`]: every way a request can fail, each answered as
//! `application/problem+json` with a stable `code`. Causes go to the log;
//! the client gets the code and a detail written for it, never an
//! internal error's text.

use crate::domain::Booking;
use crate::payments::PaymentError;
use crate::store::StoreError;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// Why a request was not done.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is not what the route takes: 400 `invalid_json`, 415
    /// `unsupported_media_type`, or 422 `invalid_field`, `invalid_dates`,
    /// `amount_out_of_range`; the detail names the field.
    #[error("{code}: {detail}")]
    Invalid {
        /// 400, 415 or 422.
        status: StatusCode,
        /// The problem code.
        code: &'static str,
        /// Which field, and what it must be.
        detail: String,
    },
    /// 404 `listing_not_found`.
    #[error("no such listing")]
    ListingNotFound,
    /// 404 `booking_not_found`.
    #[error("no such booking")]
    BookingNotFound,
    /// 409 `dates_unavailable`.
    #[error("the dates are taken")]
    DatesUnavailable,
    /// 429 `too_many_holds`.
    #[error("the guest holds too many unpaid bookings")]
    TooManyHolds,
    /// 409 `not_cancellable`.
    #[error("booking {} cannot be cancelled", .0.id)]
    NotCancellable(Box<Booking>),
    /// 409 `busy` with `Retry-After`: another request holds what this one
    /// needs for longer than the lock timeout.
    #[error("contended")]
    Busy,
    /// 503 `payment_gateway_unavailable`: no gateway took the charge.
    #[error("no payment gateway is available")]
    GatewayUnavailable,
    /// 503 `refund_unavailable`: the refund could not be sent.
    #[error("the refund could not be started")]
    RefundUnavailable,
    /// 503 `storage_unavailable`: the booking was not saved; a retry with
    /// the same `Idempotency-Key` books afresh.
    #[error("the booking could not be saved")]
    NotSaved,
    /// 503 `storage_unavailable`.
    #[error("storage: {0}")]
    Storage(StoreError),
    /// 401 `unauthorized`: no API key, or not one of ours.
    #[error("no valid API key")]
    Unauthorized,
    /// 403 `forbidden`: the key may not use this route.
    #[error("the key may not use this route")]
    Forbidden,
    /// 401 `invalid_signature`.
    #[error("the webhook could not be verified")]
    Unverified,
    /// 409 `event_in_progress`.
    #[error("the event is being processed")]
    EventInProgress,
    /// 503 `idempotency_unavailable`.
    #[error("the idempotency store is unavailable")]
    IdempotencyUnavailable,
    /// 503 `webhook_not_applied`: the provider should deliver it again.
    #[error("the event could not be applied yet")]
    WebhookNotApplied,
}

impl ApiError {
    /// 422 `invalid_field`: `field` breaks `rule`.
    pub fn invalid_field(field: &str, rule: &str) -> Self {
        Self::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            detail: format!("{field} {rule}"),
        }
    }

    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            detail: detail.into(),
        }
    }

    /// The status, the code, the detail and the `Retry-After` seconds.
    fn parts(&self) -> (StatusCode, &'static str, String, Option<u32>) {
        let fixed = |status, code, detail: &str| (status, code, detail.to_owned(), None);
        let later = |code, detail: &str, after| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                detail.to_owned(),
                Some(after),
            )
        };
        match self {
            Self::Invalid {
                status,
                code,
                detail,
            } => (*status, code, detail.clone(), None),
            Self::ListingNotFound => fixed(
                StatusCode::NOT_FOUND,
                "listing_not_found",
                "no such listing",
            ),
            Self::BookingNotFound => fixed(
                StatusCode::NOT_FOUND,
                "booking_not_found",
                "no such booking",
            ),
            Self::DatesUnavailable => fixed(
                StatusCode::CONFLICT,
                "dates_unavailable",
                "another booking has some of these nights",
            ),
            Self::TooManyHolds => fixed(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_holds",
                "this guest already holds as many unpaid bookings as allowed; pay for or cancel one first",
            ),
            Self::NotCancellable(booking) => (
                StatusCode::CONFLICT,
                "not_cancellable",
                format!(
                    "a booking that is {:?} with payout {:?} cannot be cancelled",
                    booking.status, booking.payout_status
                ),
                None,
            ),
            Self::Busy => (
                StatusCode::CONFLICT,
                "busy",
                "another request is changing this right now; retry shortly".to_owned(),
                Some(1),
            ),
            Self::GatewayUnavailable => later(
                "payment_gateway_unavailable",
                "no payment gateway is available; retry shortly",
                5,
            ),
            Self::RefundUnavailable => later(
                "refund_unavailable",
                "the refund could not be started; retry the cancellation",
                5,
            ),
            Self::NotSaved => later(
                "storage_unavailable",
                "the booking could not be saved; retry with the same Idempotency-Key",
                1,
            ),
            Self::Storage(_) => later(
                "storage_unavailable",
                "the booking store is unavailable; retry shortly",
                2,
            ),
            Self::Unauthorized => fixed(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send a valid API key as Authorization: Bearer <key>",
            ),
            Self::Forbidden => fixed(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this key may not use this route",
            ),
            Self::Unverified => fixed(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "the webhook could not be verified",
            ),
            Self::EventInProgress => fixed(
                StatusCode::CONFLICT,
                "event_in_progress",
                "this event is being processed",
            ),
            Self::IdempotencyUnavailable => later("idempotency_unavailable", "retry later", 2),
            Self::WebhookNotApplied => later(
                "webhook_not_applied",
                "the event could not be applied yet; deliver it again",
                5,
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::DatesUnavailable => Self::DatesUnavailable,
            StoreError::TooManyHolds => Self::TooManyHolds,
            StoreError::Contended => Self::Busy,
            other => Self::Storage(other),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Store(error) => error.into(),
            PaymentError::Gateway(_) => Self::RefundUnavailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Storage(error) = &self {
            tracing::error!(%error, "storage failed");
        }
        let (status, code, detail, retry_after) = self.parts();
        let mut response = problem(status, code, detail);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
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
