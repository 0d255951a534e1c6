//! `POST /v1/bookings`, `GET /v1/bookings/{id}` and
//! `POST /v1/bookings/{id}/cancel`.

use super::auth::Admin;
use super::{ApiError, RequestId, input, plausible_id};
use crate::domain::{Booking, BookingStatus, Guest, Listing, Payment, Stay, new_id};
use crate::payments;
use crate::startup::App;
use crate::store::{Answer, Cancellation, NewHold};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use payguard_idempotency::IdempotencyClaim;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBooking {
    listing_id: String,
    guest: Guest,
    check_in: String,
    check_out: String,
}

/// Holds the nights, starts the charge, and answers `201` with the
/// booking and where to pay; the answer is stored with the booking's
/// payment in one transaction.
pub(super) async fn create(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    claim: Option<Extension<IdempotencyClaim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CreateBooking = input::json(&headers, &body)?;
    input::text("guest.name", &request.guest.name)?;
    input::email("guest.email", &request.guest.email)?;
    input::phone("guest.phone", &request.guest.phone)?;
    let today = time::OffsetDateTime::now_utc().date();
    let stay = Stay::parse(
        &request.check_in,
        &request.check_out,
        today,
        app.settings.guests.max_nights,
    )
    .map_err(|error| ApiError::unprocessable("invalid_dates", error.to_string()))?;
    let listing = find_listing(&app, &request.listing_id).await?;
    let booking = app
        .store
        .place_hold(NewHold {
            id: new_id("bk"),
            listing_id: listing.id.clone(),
            guest: request.guest,
            check_in: stay.check_in(),
            check_out: stay.check_out(),
            amount_minor: price(&listing, &stay)?,
            currency: listing.currency.clone(),
            hold_for: app.settings.hold_for,
            open_holds: app.settings.guests.open_holds,
        })
        .await?;
    let payment = start_charge(&app, &booking, &request_id).await?;
    let claim = claim.as_ref().map(|Extension(claim)| claim);
    attach(&app, &booking, &payment, claim).await
}

async fn find_listing(app: &App, id: &str) -> Result<Listing, ApiError> {
    if !plausible_id(id) {
        return Err(ApiError::ListingNotFound);
    }
    app.store
        .listing(id)
        .await?
        .ok_or(ApiError::ListingNotFound)
}

/// What the stay costs, if one charge may carry it.
fn price(listing: &Listing, stay: &Stay) -> Result<i64, ApiError> {
    let max_charge = super::max_charge(&listing.currency).unwrap_or(0);
    listing
        .nightly_rate_minor
        .checked_mul(stay.nights())
        .filter(|amount| *amount <= max_charge)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "amount_out_of_range",
                "the stay costs more than one charge may carry",
            )
        })
}

/// Starts the charge; when no gateway takes it, the hold is given up so
/// the nights are free again.
async fn start_charge(app: &App, booking: &Booking, request_id: &str) -> Result<Payment, ApiError> {
    let checkout = app
        .gateways
        .initialize_charge(
            &booking.id,
            &booking.guest.email,
            booking.amount_minor,
            &booking.currency,
            request_id,
        )
        .await;
    match checkout {
        Ok(checkout) => Ok(Payment {
            gateway: checkout.gateway,
            reference: checkout.reference,
            authorization_url: checkout.authorization_url,
        }),
        Err(error) => {
            tracing::error!(booking = %booking.id, %error, "no gateway could take the charge");
            release(app, booking).await;
            Err(ApiError::GatewayUnavailable)
        }
    }
}

fn created(booking: &Booking) -> Response {
    (StatusCode::CREATED, Json(booking)).into_response()
}

/// Records the payment, with the request's answer where the store keeps
/// both in one transaction. If that fails the hold is given up: a retry
/// with the same key books afresh.
async fn attach(
    app: &App,
    booking: &Booking,
    payment: &Payment,
    claim: Option<&IdempotencyClaim>,
) -> Result<Response, ApiError> {
    let answer = claim.map(|claim| Answer {
        claim,
        respond: created,
    });
    match app.store.attach_payment(&booking.id, payment, answer).await {
        Ok(Some(attached)) => Ok(attached
            .answer
            .unwrap_or_else(|| created(&attached.booking))),
        Ok(None) => Err(ApiError::BookingNotFound),
        Err(error) => {
            tracing::error!(booking = %booking.id, %error, "the booking could not be completed");
            release(app, booking).await;
            Err(ApiError::NotSaved)
        }
    }
}

async fn release(app: &App, booking: &Booking) {
    if let Err(error) = app.store.release_hold(&booking.id).await {
        tracing::error!(booking = %booking.id, %error, "could not release the hold; it expires on its own");
    }
}

pub(super) async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Booking>, ApiError> {
    if !plausible_id(&id) {
        return Err(ApiError::BookingNotFound);
    }
    let booking = app.store.booking(&id).await?;
    booking.map(Json).ok_or(ApiError::BookingNotFound)
}

/// `POST /v1/bookings/{id}/cancel`: an empty body, or an object with an
/// optional reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBooking {
    reason: Option<String>,
}

/// Cancels, refunding once what was paid.
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Booking>, ApiError> {
    let request: CancelBooking = input::json_or_empty(&headers, &body)?;
    if let Some(reason) = &request.reason {
        input::text("reason", reason)?;
    }
    if !plausible_id(&id) {
        return Err(ApiError::BookingNotFound);
    }
    match app
        .store
        .cancel(&id)
        .await?
        .ok_or(ApiError::BookingNotFound)?
    {
        Cancellation::Cancelled(booking) => Ok(Json(booking)),
        Cancellation::Refund(booking) => {
            payments::refund(&app, &booking, &request_id).await?;
            let refunded = app.store.booking(&id).await?;
            Ok(Json(refunded.unwrap_or(booking)))
        }
        Cancellation::NotCancellable(booking) => Err(ApiError::NotCancellable(Box::new(booking))),
    }
}

/// `GET /v1/bookings?status=&limit=&after=`: the admin's list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<BookingStatus>,
    limit: Option<u32>,
    after: Option<String>,
}

/// A page of bookings, by id; `next` is the cursor of the next page, or
/// null on the last.
#[derive(Debug, serde::Serialize)]
pub(super) struct Page {
    bookings: Vec<Booking>,
    next: Option<String>,
}

/// Every booking, a page at a time (keyset pagination: stable under
/// inserts, and each page one index range scan). Admin keys only.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    Admin(tenant): Admin,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::Invalid {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_query",
        detail: "status is a booking status, limit 1 to 200, after a cursor from `next`".to_owned(),
    })?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 200"));
    }
    let after = match query.after.as_deref() {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    tracing::info!(admin = %tenant, status = ?query.status, limit, "admin list");
    let bookings = app
        .store
        .list(query.status, after.as_deref(), limit)
        .await?;
    let next = (bookings.len() == limit as usize)
        .then(|| bookings.last().map(|last| hex::encode(last.id.as_bytes())))
        .flatten();
    Ok(Json(Page { bookings, next }))
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| plausible_id(id))
        .ok_or_else(|| ApiError::invalid_field("after", "is not a cursor this API gave"))
}
