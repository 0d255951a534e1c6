//! Escrow release: confirmed bookings whose escrow hold has passed are
//! paid out to their hosts, each payout started once (fenced by the job's
//! lock) under a deterministic reference.

use crate::domain::Booking;
use crate::payments;
use crate::startup::App;
use crate::store::StoreError;
use payguard_lock::Fence;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Starts and settles due payouts; answers how many it started.
///
/// # Errors
///
/// Storage failed, or the job lost its lock.
pub async fn release_escrow(
    app: &App,
    fence: Option<&Fence>,
    stop: &CancellationToken,
) -> Result<usize, StoreError> {
    let due = app.store.due_payouts(app.settings.escrow_hold, 50).await?;
    let mut started = 0;
    for booking in due {
        if stop.is_cancelled() {
            break;
        }
        let request_id = format!("job_escrow_{}", booking.id);
        let span = tracing::info_span!("job", job = "escrow-release", request_id = %request_id, instance = %app.settings.instance);
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
    fence: Option<&Fence>,
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
        Ok(state) => payments::settle_payout(app, &reference, state).await?,
        Err(error) => payments::payout_failed(app, booking, &reference, &error).await?,
    }
    Ok(true)
}
