//! Reconciliation: asks the gateways about what we have not heard (a
//! missed webhook, a crash between two steps) and settles it.

use crate::domain::{Booking, BookingStatus};
use crate::payments::{self, Evidence};
use crate::startup::App;
use crate::store::StoreError;
use tracing::Instrument;

/// How many bookings one run looks at, at most.
const BATCH: u32 = 200;

/// Settles what the gateways know; answers how many bookings it settled.
///
/// # Errors
///
/// Storage failed.
pub async fn reconcile(app: &App) -> Result<usize, StoreError> {
    let mut settled = 0;
    for booking in app.store.reconcilable(BATCH).await? {
        let request_id = format!("job_reconcile_{}", booking.id);
        let span = tracing::info_span!("job", job = "reconcile", request_id = %request_id, instance = %app.settings.instance);
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
    if booking.payout_status == crate::domain::PayoutStatus::Pending
        && let Some(reference) = &booking.payout_reference
    {
        return payout(app, booking, reference, request_id).await;
    }
    if booking.refund_status.as_deref() == Some("requested") {
        return Ok(payments::refund(app, booking, request_id).await.is_ok());
    }
    charge(app, booking, request_id).await
}

/// A payout whose outcome we never heard: ask by reference; if the gateway
/// never got it (the breaker was open, the recipient call failed), send it
/// again under the same reference.
async fn payout(
    app: &App,
    booking: &Booking,
    reference: &str,
    request_id: &str,
) -> Result<bool, StoreError> {
    let Some(payment) = &booking.payment else {
        return Ok(false);
    };
    let state = match app
        .gateways
        .verify_payout(payment.gateway, reference, request_id)
        .await
    {
        Ok(Some(state)) => state,
        Ok(None) => {
            let Some(listing) = app.store.listing(&booking.listing_id).await? else {
                return Ok(false);
            };
            let sent = app
                .gateways
                .payout(
                    payment.gateway,
                    &listing.host,
                    booking.amount_minor,
                    &booking.currency,
                    reference,
                    request_id,
                )
                .await;
            match sent {
                Ok(state) => state,
                Err(error) => {
                    payments::payout_failed(app, booking, reference, &error).await?;
                    return Ok(false);
                }
            }
        }
        Err(error) => {
            tracing::warn!(booking = %booking.id, %error, "could not ask about a payout; next run asks again");
            return Ok(false);
        }
    };
    payments::settle_payout(app, reference, state).await?;
    Ok(true)
}

/// A charge that may have been paid without our hearing: ask (backing
/// off per booking) and confirm what the gateway's books say.
async fn charge(app: &App, booking: &Booking, request_id: &str) -> Result<bool, StoreError> {
    let Some(payment) = &booking.payment else {
        return Ok(false);
    };
    let unpaid = matches!(
        booking.status,
        BookingStatus::PendingPayment | BookingStatus::Expired | BookingStatus::Cancelled
    );
    if !unpaid {
        return Ok(false);
    }
    let charge = app
        .gateways
        .verify_charge(payment.gateway, &payment.reference, request_id)
        .await;
    app.store.charge_checked(&booking.id).await?;
    metrics::counter!("booking_reconcile_checks_total").increment(1);
    let Ok(Some(charge)) = charge else {
        return Ok(false);
    };
    if !charge.paid {
        return Ok(false);
    }
    let confirmed = payments::confirm(
        app,
        &payment.reference,
        charge.amount_minor,
        &charge.currency,
        Evidence::GatewayBooks,
        request_id,
    )
    .await;
    if let Err(error) = confirmed {
        tracing::warn!(booking = %booking.id, %error, "a payment found by reconciliation is not settled yet");
    }
    Ok(true)
}
