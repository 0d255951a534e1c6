//! What a verified gateway event means for the books. An event whose body
//! only its sender is proven for (Flutterwave's legacy `verif-hash`) is
//! never taken at its word: the gateway is asked.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use crate::domain::{Gateway, PayoutStatus};
use crate::gateway::TransferState;
use crate::payments::{self, Evidence, PaymentError};
use crate::startup::App;
use serde_json::Value;

/// A verified event to apply.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Who sent it.
    pub gateway: Gateway,
    /// Its type (`charge.success`, ...).
    pub name: &'a str,
    /// Its `data`.
    pub data: &'a Value,
    /// Whether the body itself is signed (not only its sender proven).
    pub authenticated: bool,
}

/// Applies one event; answers what it did.
///
/// # Errors
///
/// Storage or the gateway failed: the provider should deliver it again.
pub async fn apply(app: &App, event: Event<'_>, request_id: &str) -> Result<String, PaymentError> {
    match (event.gateway, event.name) {
        (Gateway::Paystack, "charge.success") => {
            let data = event.data;
            payments::confirm(
                app,
                data["reference"].as_str().unwrap_or_default(),
                data["amount"].as_i64().unwrap_or(-1),
                data["currency"].as_str().unwrap_or_default(),
                Evidence::SignedEvent,
                request_id,
            )
            .await
        }
        (Gateway::Paystack, "charge.failed") => {
            charge_failed(app, event, event.data["reference"].as_str(), request_id).await
        }
        (Gateway::Flutterwave, "charge.completed") => {
            flutterwave_charge(app, event, request_id).await
        }
        (Gateway::Paystack, "transfer.success" | "transfer.failed" | "transfer.reversed")
        | (Gateway::Flutterwave, "transfer.completed") => transfer(app, event, request_id).await,
        (Gateway::Paystack, "refund.pending" | "refund.processed" | "refund.failed")
        | (Gateway::Flutterwave, "refund.completed" | "refund.failed") => refund(app, event).await,
        _ => {
            metrics::counter!("booking_webhook_events_ignored_total", "reason" => "unknown_type")
                .increment(1);
            // The type only: an unknown event's body is not ours to log.
            tracing::info!(
                provider = event.gateway.as_str(),
                event = event.name,
                "an event type this backend does not act on; acknowledged"
            );
            Ok(format!("{} ignored", event.name))
        }
    }
}

async fn flutterwave_charge(
    app: &App,
    event: Event<'_>,
    request_id: &str,
) -> Result<String, PaymentError> {
    let data = event.data;
    let reference = data["tx_ref"].as_str().unwrap_or_default();
    if data["status"] == "failed" {
        return charge_failed(app, event, Some(reference), request_id).await;
    }
    let paid = if event.authenticated {
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
            .verify_charge(event.gateway, reference, request_id)
            .await?
            .filter(|charge| charge.paid)
            .map(|charge| (charge.amount_minor, charge.currency))
    };
    let evidence = if event.authenticated {
        Evidence::SignedEvent
    } else {
        Evidence::GatewayBooks
    };
    match paid {
        Some((amount, currency)) => {
            payments::confirm(app, reference, amount, &currency, evidence, request_id).await
        }
        None => Ok("charge not successful".to_owned()),
    }
}

/// A failed charge frees its hold's dates at once (a later successful
/// attempt still confirms the booking if they stay free).
async fn charge_failed(
    app: &App,
    event: Event<'_>,
    reference: Option<&str>,
    request_id: &str,
) -> Result<String, PaymentError> {
    let reference = reference.unwrap_or_default();
    if !event.authenticated {
        let charge = app
            .gateways
            .verify_charge(event.gateway, reference, request_id)
            .await?;
        if !charge.is_some_and(|charge| charge.failed) {
            return Ok("the gateway does not report the charge failed; ignored".to_owned());
        }
    }
    Ok(match app.store.charge_failed(reference).await? {
        Some(booking) => {
            metrics::counter!("booking_charges_failed_total").increment(1);
            tracing::info!(booking = %booking.id, "the charge failed; the hold is released");
            format!("booking {} released: the charge failed", booking.id)
        }
        None => format!("charge {reference} failed; no hold to release"),
    })
}

async fn transfer(app: &App, event: Event<'_>, request_id: &str) -> Result<String, PaymentError> {
    let reference = event.data["reference"].as_str().unwrap_or_default();
    let next = if event.authenticated {
        match event.data["status"].as_str().unwrap_or_default() {
            "success" | "SUCCESSFUL" => PayoutStatus::Paid,
            "failed" | "FAILED" => PayoutStatus::Failed,
            "reversed" | "REVERSED" => PayoutStatus::Reversed,
            other => return Ok(format!("transfer status {other} ignored")),
        }
    } else {
        match app
            .gateways
            .verify_payout(event.gateway, reference, request_id)
            .await?
        {
            Some(TransferState::Paid) => PayoutStatus::Paid,
            Some(TransferState::Failed) => PayoutStatus::Failed,
            Some(TransferState::Reversed) => PayoutStatus::Reversed,
            Some(TransferState::Pending) | None => return Ok("transfer not settled".to_owned()),
        }
    };
    Ok(if payments::payout_moved(app, reference, next).await? {
        format!("payout {reference} is {next:?}")
    } else {
        format!("payout {reference}: {next:?} is stale or unknown; ignored")
    })
}

async fn refund(app: &App, event: Event<'_>) -> Result<String, PaymentError> {
    let data = event.data;
    let reference = data["transaction_reference"]
        .as_str()
        .or_else(|| data["tx_ref"].as_str())
        .unwrap_or_default();
    if !event.authenticated {
        return Ok("an unauthenticated refund event is not acted on".to_owned());
    }
    let status = data["status"].as_str().unwrap_or("pending");
    if !app.store.refund_event(reference, status).await? {
        metrics::counter!("booking_webhook_events_ignored_total", "reason" => "refund_not_ours")
            .increment(1);
        tracing::warn!(
            event = event.name,
            "a refund event for a refund this backend did not start, or already further on; recorded and ignored"
        );
        return Ok(format!("refund event {status} ignored"));
    }
    Ok(format!("refund for {reference} is {status}"))
}
