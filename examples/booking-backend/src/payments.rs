//! Money moves: confirming a payment (or refunding one that cannot be
//! honoured), refunding exactly once, and settling payouts. Shared by the
//! HTTP handlers, the webhook events and the jobs.

use crate::domain::{Booking, PayoutStatus, new_id};
use crate::gateway::{GatewayError, TransferState};
use crate::startup::App;
use crate::store::{Confirmation, StoreError};
use std::time::Duration;

/// A money move that did not happen (nothing half-done: each step is
/// recorded before the next starts).
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway failed or could not be reached.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// Where a payment's amount came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// A webhook's signed body.
    SignedEvent,
    /// The gateway's verify endpoint.
    GatewayBooks,
}

/// How long a refund claim lets its holder alone call the gateway: longer
/// than any refund call with its retries.
const REFUND_CLAIM: Duration = Duration::from_secs(120);

/// Confirms the booking `reference` pays for, or refunds a payment it
/// cannot honour; answers what it did. A signed event whose amount does
/// not match is checked against the gateway's books before any refund: a
/// signed copy with altered fields (a provider bug, a leaked key) cannot
/// refund a booking whose genuine payment matches.
///
/// # Errors
///
/// Storage or the gateway failed; what was done stays done.
pub async fn confirm(
    app: &App,
    reference: &str,
    amount: i64,
    currency: &str,
    evidence: Evidence,
    request_id: &str,
) -> Result<String, PaymentError> {
    match app
        .store
        .confirm_payment(reference, amount, currency)
        .await?
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
            refund(app, &booking, request_id).await?;
            Ok(format!("booking {} refunded", booking.id))
        }
        Confirmation::Mismatch(booking) if evidence == Evidence::SignedEvent => {
            let charge = match booking.payment.as_ref() {
                Some(payment) => {
                    app.gateways
                        .verify_charge(payment.gateway, reference, request_id)
                        .await?
                }
                None => None,
            };
            let Some(charge) = charge.filter(|charge| charge.paid) else {
                metrics::counter!("booking_webhook_amount_disputed_total").increment(1);
                tracing::error!(booking = %booking.id, "a signed event reports a payment the gateway does not have; ignored");
                return Ok("the gateway has no such payment; ignored".to_owned());
            };
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
        Confirmation::Mismatch(booking) => {
            tracing::error!(booking = %booking.id, amount, currency, "payment does not match the booking; refunding");
            refund(app, &booking, request_id).await?;
            Ok(format!("booking {} payment mismatch refunded", booking.id))
        }
        Confirmation::Refunded(booking) => {
            Ok(format!("booking {} was already refunded", booking.id))
        }
        Confirmation::Unknown => {
            metrics::counter!("booking_payments_unmatched_total").increment(1);
            tracing::error!(
                reference,
                "a gateway reports a payment no booking has; see docs/runbooks/money-without-booking.md"
            );
            Ok(format!("no booking pays with {reference}"))
        }
    }
}

/// Refunds a booking's charge through the gateway that took it, once:
/// claimed first, so only the winner of the claim calls the gateway (two
/// cancellations, or a cancellation and an orphaned payment, never send
/// two refunds), and a crash or a failure leaves a `requested` refund that
/// a retry or the reconciliation job sends once the claim lapses.
///
/// # Errors
///
/// Storage failed, or the gateway did not take the refund (the claim is
/// given up so a retry can send it).
pub async fn refund(app: &App, booking: &Booking, request_id: &str) -> Result<(), PaymentError> {
    let Some(payment) = &booking.payment else {
        return Ok(());
    };
    let claim = new_id("rc");
    if !app
        .store
        .claim_refund(&booking.id, &claim, REFUND_CLAIM)
        .await?
    {
        return Ok(()); // being sent by someone else, or already with the gateway
    }
    match app
        .gateways
        .refund(payment.gateway, &payment.reference, request_id)
        .await
    {
        Ok(()) => {
            metrics::counter!("booking_refunds_total").increment(1);
            app.store.refund_sent(&booking.id, &claim).await?;
            Ok(())
        }
        Err(error) => {
            if let Err(store) = app.store.release_refund_claim(&booking.id, &claim).await {
                tracing::warn!(booking = %booking.id, error = %store, "could not free the refund claim; it lapses by itself");
            }
            metrics::counter!("booking_refunds_failed_total").increment(1);
            tracing::error!(booking = %booking.id, %error, "refund failed; the cancellation can be retried");
            Err(error.into())
        }
    }
}

/// Records what the gateway says of a payout.
///
/// # Errors
///
/// Storage failed.
pub async fn settle_payout(
    app: &App,
    reference: &str,
    state: TransferState,
) -> Result<(), StoreError> {
    let next = match state {
        TransferState::Pending => return Ok(()),
        TransferState::Paid => PayoutStatus::Paid,
        TransferState::Failed => PayoutStatus::Failed,
        TransferState::Reversed => PayoutStatus::Reversed,
    };
    payout_moved(app, reference, next).await.map(|_| ())
}

/// Applies a payout outcome; a failure or a reversal (the host did not get
/// the money) is logged at error level and counted, for a person to act
/// on. Answers whether it changed the booking.
///
/// # Errors
///
/// Storage failed.
pub async fn payout_moved(
    app: &App,
    reference: &str,
    next: PayoutStatus,
) -> Result<bool, StoreError> {
    let changed = app.store.payout_event(reference, next).await?;
    if let Some(booking) = &changed {
        let outcome = match next {
            PayoutStatus::Failed => Some("failed"),
            PayoutStatus::Reversed => Some("reversed"),
            _ => None,
        };
        if let Some(outcome) = outcome {
            metrics::counter!("booking_payouts_failed_total", "outcome" => outcome).increment(1);
            tracing::error!(booking = %booking.id, payout = reference, outcome, "a payout did not reach the host; see docs/runbooks/payout-failed.md");
        }
    }
    Ok(changed.is_some())
}

/// A payout the gateway refused (a bad account, too little balance) is
/// marked failed for people to act on; any other failure leaves it pending
/// for the reconciliation job, which asks the gateway by reference.
///
/// # Errors
///
/// Storage failed.
pub async fn payout_failed(
    app: &App,
    booking: &Booking,
    reference: &str,
    error: &GatewayError,
) -> Result<(), StoreError> {
    if error.is_refusal() {
        tracing::error!(booking = %booking.id, %error, "the gateway refused the payout");
        payout_moved(app, reference, PayoutStatus::Failed).await?;
    } else {
        tracing::warn!(booking = %booking.id, %error, "payout outcome unknown; reconciliation will ask");
    }
    Ok(())
}
