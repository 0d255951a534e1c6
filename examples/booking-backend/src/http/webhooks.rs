//! `POST /v1/webhooks/{paystack,flutterwave}`: verified by payguard-webhook's
//! extractor before the handler runs, de-duplicated by event id through the
//! idempotency store, recorded in the inbox, then applied.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use super::{ApiError, RequestId};
use crate::domain::Gateway;
use crate::events::{self, Event};
use crate::startup::App;
use crate::store::InboxOutcome;
use axum::extract::{FromRef, State};
use axum::routing::{MethodRouter, post};
use axum::{Extension, Json};
use http::StatusCode;
use payguard_idempotency::{Claim, ClaimRequest, Fingerprint, Lease, ScopeKey, StoredResponse};
use payguard_webhook::{Verified, VerifiedWebhook, Verifier, WebhookRejection};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A webhook route's state: the app, and the provider's verifier for the
/// extractor.
#[derive(Clone)]
pub(super) struct WebhookRoute {
    app: Arc<App>,
    gateway: Gateway,
    verifier: Arc<Verifier>,
}

impl FromRef<WebhookRoute> for Arc<Verifier> {
    fn from_ref(route: &WebhookRoute) -> Self {
        Arc::clone(&route.verifier)
    }
}

/// The route of one provider's webhooks.
pub(super) fn route<S: Clone + Send + Sync + 'static>(
    app: &Arc<App>,
    gateway: Gateway,
) -> MethodRouter<S> {
    let verifier = match gateway {
        Gateway::Paystack => Arc::clone(&app.paystack),
        Gateway::Flutterwave => Arc::clone(&app.flutterwave),
    };
    post(receive).with_state(WebhookRoute {
        app: Arc::clone(app),
        gateway,
        verifier,
    })
}

fn rejected(gateway: Gateway, rejection: &WebhookRejection) -> ApiError {
    metrics::counter!("booking_webhooks_total", "provider" => gateway.as_str(), "outcome" => "rejected").increment(1);
    // What was wrong (a missing header, a stale timestamp) goes to the log,
    // never to the sender.
    tracing::warn!(provider = gateway.as_str(), error = ?rejection.verify_error(), "webhook rejected: {rejection}");
    match rejection.status() {
        StatusCode::UNAUTHORIZED => ApiError::Unverified,
        status => ApiError::Invalid {
            status,
            code: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request_too_large"
            } else {
                "bad_request"
            },
            detail: "the webhook body could not be read".to_owned(),
        },
    }
}

/// Records, de-duplicates (by event id) and applies a verified webhook.
async fn receive(
    State(route): State<WebhookRoute>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    delivery: Result<VerifiedWebhook, WebhookRejection>,
) -> Result<Json<Value>, ApiError> {
    let VerifiedWebhook(delivery) =
        delivery.map_err(|rejection| rejected(route.gateway, &rejection))?;
    let provider = route.gateway.as_str();
    let payload: Value = delivery.json().map_err(|_| ApiError::Invalid {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_json",
        detail: "the webhook body is not JSON".to_owned(),
    })?;
    let poison = poisonous(&payload);
    let name = match payload["event"].as_str() {
        Some(event) if !poison => event.to_owned(),
        _ => "unprocessable".to_owned(),
    };
    let (event_id, lease) = match claim(&route.app, provider, &delivery).await? {
        Claimed::Yours(event_id, lease) => (event_id, lease),
        Claimed::Duplicate => {
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "duplicate").increment(1);
            return Ok(Json(json!({"duplicate": true})));
        }
    };
    let app = &route.app;
    if let Err(error) = app
        .store
        .inbox_receive(provider, &event_id, &name, delivery.body())
        .await
    {
        give_up(app, &lease).await;
        return Err(error.into());
    }
    let applied = if poison {
        Err(Applying::Poison)
    } else {
        let event = Event {
            gateway: route.gateway,
            name: &name,
            data: &payload["data"],
            authenticated: delivery.body_authenticated(),
        };
        events::apply(app, event, &request_id)
            .await
            .map_err(|error| Applying::Failed(error.to_string()))
    };
    let outcome = match &applied {
        Ok(_) => InboxOutcome::Processed,
        Err(Applying::Poison) => InboxOutcome::Dead("authentic but unprocessable".to_owned()),
        Err(Applying::Failed(error)) => InboxOutcome::Failed(error.clone()),
    };
    if let Err(error) = app.store.inbox_finish(provider, &event_id, outcome).await {
        tracing::error!(%error, "could not record the webhook outcome");
    }
    match applied {
        Ok(effect) => {
            finish(app, &lease, &effect).await;
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "applied").increment(1);
            Ok(Json(json!({"applied": effect})))
        }
        Err(Applying::Poison) => {
            // Acknowledged, so the provider stops retrying; kept dead in the
            // inbox for a person.
            finish(app, &lease, "dead").await;
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "dead").increment(1);
            tracing::error!(
                provider,
                "an authentic webhook cannot be processed; acknowledged and kept as dead"
            );
            Ok(Json(json!({"dead": true})))
        }
        Err(Applying::Failed(error)) => {
            give_up(app, &lease).await;
            metrics::counter!("booking_webhooks_total", "provider" => provider, "outcome" => "failed").increment(1);
            tracing::error!(provider, event = %name, %error, "webhook not applied; the provider will retry");
            Err(ApiError::WebhookNotApplied)
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

enum Claimed {
    /// Ours to apply, under this (storable) event id.
    Yours(String, Lease),
    /// Applied before.
    Duplicate,
}

/// Claims the event id. The provider promises one body per event id; a
/// second, different body under the same id (an altered copy signed with
/// our secret, or a provider bug) must not shut out the genuine one: each
/// body is recorded and applied once under its own key, states only move
/// forward, and someone is told.
async fn claim(
    app: &App,
    provider: &'static str,
    delivery: &Verified<bytes::Bytes>,
) -> Result<Claimed, ApiError> {
    let body = delivery.body();
    let fingerprint = Fingerprint::of(&[body]);
    let request = |event_id: &str| {
        ClaimRequest::new(
            ScopeKey::new(&format!("webhook:{provider}"), event_id),
            fingerprint,
        )
        .lease(Duration::from_secs(30))
        .retention(Duration::from_secs(7 * 24 * 3600))
    };
    let mut event_id = storable_id(&delivery.event_id().into_string());
    let mut answer = app.idempotency.claim(request(&event_id)).await;
    if let Ok(Claim::Mismatch) = answer {
        metrics::counter!("booking_webhook_body_mismatch_total", "provider" => provider)
            .increment(1);
        tracing::error!(
            provider,
            event_id,
            "an event id arrived again with a different body; both are recorded and applied once each"
        );
        event_id = format!("{event_id}#{}", hex(&fingerprint.digest()[..8]));
        answer = app.idempotency.claim(request(&event_id)).await;
    }
    match answer {
        Ok(Claim::Claimed(lease)) => Ok(Claimed::Yours(event_id, lease)),
        Ok(Claim::Replay(_)) => Ok(Claimed::Duplicate),
        Ok(Claim::InFlight { .. }) => Err(ApiError::EventInProgress),
        Ok(other) => {
            tracing::error!(provider, ?other, "an unexpected answer to a webhook claim");
            Err(ApiError::IdempotencyUnavailable)
        }
        Err(error) => {
            tracing::error!(provider, %error, "the idempotency store failed");
            Err(ApiError::IdempotencyUnavailable)
        }
    }
}

/// Completes the event's claim. An applied event whose completion fails
/// is still applied (its effects only move states forward, so a
/// redelivery finds them in place), but a lost lease means another
/// delivery took the claim over while this one ran: said loudly, counted.
async fn finish(app: &App, lease: &Lease, answer: &str) {
    let stored = StoredResponse::new(200, answer.as_bytes().to_vec());
    if let Err(error) = app.idempotency.complete(lease, &stored).await {
        let reason = match error {
            payguard_idempotency::StoreError::LeaseLost => "lease_lost",
            _ => "store_failed",
        };
        metrics::counter!("booking_webhook_completions_failed_total", "reason" => reason)
            .increment(1);
        tracing::error!(%error, reason, "an applied event's claim could not be completed; a redelivery is applied again, forward only");
    }
}

/// Gives the claim up so a redelivery is applied afresh.
async fn give_up(app: &App, lease: &Lease) {
    if let Err(error) = app.idempotency.release(lease).await {
        tracing::warn!(%error, "could not release the event's claim; it frees when its lease ends");
    }
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
