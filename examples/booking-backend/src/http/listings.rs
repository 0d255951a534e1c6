//! `POST /v1/listings` and `GET /v1/listings/{id}`.

use super::{ApiError, input, plausible_id};
use crate::domain::{Host, Listing, new_id};
use crate::startup::App;
use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateListing {
    title: String,
    nightly_rate_minor: i64,
    currency: String,
    host: Host,
}

impl CreateListing {
    /// The listing, if every field is what it must be.
    fn into_listing(self) -> Result<Listing, ApiError> {
        input::text("title", &self.title)?;
        input::text("host.name", &self.host.name)?;
        input::email("host.email", &self.host.email)?;
        input::phone("host.phone", &self.host.phone)?;
        input::text("host.bank_code", &self.host.bank_code)?;
        let max_charge = input::currency("currency", &self.currency)?;
        if !(1..=max_charge).contains(&self.nightly_rate_minor) {
            return Err(ApiError::unprocessable(
                "amount_out_of_range",
                format!(
                    "nightly_rate_minor must be 1 to {max_charge} (minor units of {})",
                    self.currency
                ),
            ));
        }
        let account = &self.host.account_number;
        if account.len() != 10 || !account.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ApiError::invalid_field(
                "host.account_number",
                "must be 10 digits",
            ));
        }
        Ok(Listing {
            id: new_id("ls"),
            title: self.title,
            nightly_rate_minor: self.nightly_rate_minor,
            currency: self.currency,
            host: self.host,
        })
    }
}

pub(super) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Listing>), ApiError> {
    let listing = input::json::<CreateListing>(&headers, &body)?.into_listing()?;
    app.store.create_listing(&listing).await?;
    Ok((StatusCode::CREATED, Json(listing)))
}

/// What anyone may read of a listing: never its host's contact or bank
/// details.
#[derive(Debug, serde::Serialize)]
pub(super) struct PublicListing {
    id: String,
    title: String,
    nightly_rate_minor: i64,
    currency: String,
}

pub(super) async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<PublicListing>, ApiError> {
    if !plausible_id(&id) {
        return Err(ApiError::ListingNotFound);
    }
    let listing = app
        .store
        .listing(&id)
        .await?
        .ok_or(ApiError::ListingNotFound)?;
    Ok(Json(PublicListing {
        id: listing.id,
        title: listing.title,
        nightly_rate_minor: listing.nightly_rate_minor,
        currency: listing.currency,
    }))
}
