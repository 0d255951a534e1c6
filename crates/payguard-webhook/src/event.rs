//! Event identity: what to de-duplicate deliveries on.

use crate::provider::Provider;
use crate::{adyen, encoding};
use http::{HeaderMap, HeaderName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// Where the event id was read from the request, or what it is derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventHint {
    /// A delivery or event id header's value.
    Header(String),
    /// To be read from (or derived from) the body on demand.
    FromBody,
}

impl EventHint {
    pub(crate) fn header(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.trim().is_empty())
            .map(|value| EventHint::Header(value.trim().to_owned()))
    }
}

/// Where an [`EventId`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventIdSource {
    /// A header the provider sends for this purpose (`webhook-id`,
    /// `X-GitHub-Delivery`, `X-Shopify-Event-Id`, ...).
    Header,
    /// An id field of the body (Stripe's `id`, Slack's and Square's
    /// `event_id`).
    Body,
    /// Built from fields that identify the event where the provider gives no
    /// id (Paystack: `paystack:<event>:<data.id>`; Flutterwave:
    /// `flutterwave:<event>:<data.id>:<data.status>`; Adyen items:
    /// `<pspReference>:<eventCode>:<success>`), or, failing those,
    /// `sha256:<hex digest of the body>`.
    Derived,
}

/// The id to de-duplicate a delivery on: use it as the idempotency key of
/// the work the webhook triggers, so a re-delivery is processed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId {
    value: String,
    source: EventIdSource,
}

impl EventId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Where it came from.
    pub fn source(&self) -> EventIdSource {
        self.source
    }

    /// The id, owned.
    pub fn into_string(self) -> String {
        self.value
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

pub(crate) fn event_id(provider: Option<Provider>, hint: &EventHint, body: &[u8]) -> EventId {
    if let EventHint::Header(value) = hint {
        return EventId {
            value: value.clone(),
            source: EventIdSource::Header,
        };
    }
    from_body(provider, body).unwrap_or_else(|| EventId {
        value: format!("sha256:{}", encoding::to_hex(&Sha256::digest(body))),
        source: EventIdSource::Derived,
    })
}

fn from_body(provider: Option<Provider>, body: &[u8]) -> Option<EventId> {
    let text = |value: Option<&Value>| match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let body_field = |value: Option<String>| {
        value.map(|value| EventId {
            value,
            source: EventIdSource::Body,
        })
    };
    let derived = |value: String| EventId {
        value,
        source: EventIdSource::Derived,
    };
    match provider? {
        Provider::Adyen => {
            let item = adyen::items(body).ok()?.into_iter().next()?;
            let psp = text(item.get("pspReference"))?;
            let code = text(item.get("eventCode"))?;
            let success = match item.get("success") {
                Some(Value::Bool(flag)) => flag.to_string(),
                other => text(other).unwrap_or_default(),
            };
            Some(derived(format!("{psp}:{code}:{success}")))
        }
        provider => {
            let document: Value = serde_json::from_slice(body).ok()?;
            match provider {
                Provider::Stripe => body_field(text(document.get("id"))),
                Provider::Slack | Provider::Square => body_field(text(document.get("event_id"))),
                Provider::Paystack | Provider::Flutterwave => {
                    let event = text(document.get("event"))?;
                    let data = document.get("data")?;
                    let id = text(data.get("id")).or_else(|| text(data.get("reference")))?;
                    // Flutterwave reuses one event name for every outcome
                    // (`transfer.completed`: SUCCESSFUL, FAILED, REVERSED),
                    // so the outcome is part of the identity.
                    match text(data.get("status")).filter(|_| provider == Provider::Flutterwave) {
                        Some(status) => Some(derived(format!("{provider}:{event}:{id}:{status}"))),
                        None => Some(derived(format!("{provider}:{event}:{id}"))),
                    }
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_ids_and_derivations() {
        let id =
            |provider, body: &str| event_id(Some(provider), &EventHint::FromBody, body.as_bytes());
        assert_eq!(
            id(Provider::Stripe, r#"{"id":"evt_1","object":"event"}"#).as_str(),
            "evt_1"
        );
        let paystack = id(
            Provider::Paystack,
            r#"{"event":"transfer.success","data":{"id":77,"reference":"escrow_9"}}"#,
        );
        assert_eq!(paystack.as_str(), "paystack:transfer.success:77");
        assert_eq!(paystack.source(), EventIdSource::Derived);
        let by_reference = id(
            Provider::Paystack,
            r#"{"event":"refund.processed","data":{"reference":"rf_1"}}"#,
        );
        assert_eq!(by_reference.as_str(), "paystack:refund.processed:rf_1");
        let fallback = id(Provider::Paystack, "not json");
        assert!(fallback.as_str().starts_with("sha256:"));
        assert_eq!(fallback, id(Provider::Paystack, "not json"), "stable");
    }
}
