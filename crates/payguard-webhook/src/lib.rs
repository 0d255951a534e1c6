#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adyen;
#[cfg(feature = "axum")]
mod axum;
mod encoding;
mod error;
mod event;
mod generic;
mod keys;
mod provider;
mod telemetry;
mod timestamp;
mod twilio;
mod verified;
mod verifier;

#[cfg(feature = "axum")]
pub use crate::axum::{VerifiedWebhook, WebhookRejection};
pub use error::{SignError, VerifyError};
pub use event::{EventId, EventIdSource};
pub use generic::{Encoding, GenericHmac, SecretEncoding, SignedContent};
pub use keys::Algorithm;
pub use payguard_core::ConfigError;
pub use provider::{Provider, UnknownProvider};
pub use timestamp::ReplayWindow;
pub use verified::Verified;
pub use verifier::{Verifier, VerifierBuilder};

/// The `hmacSignature` an Adyen notification item must carry: base64
/// HMAC-SHA256, under the hex `key`, of the item's
/// `pspReference:originalReference:merchantAccountCode:merchantReference:amount.value:amount.currency:eventCode:success`.
///
/// ```
/// let item = serde_json::json!({
///     "pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
///     "merchantReference": "bk_42", "amount": {"value": 1130, "currency": "EUR"},
///     "eventCode": "AUTHORISATION", "success": "true"
/// });
/// let signature = payguard_webhook::adyen_item_signature("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056", &item)?;
/// assert_eq!(signature.len(), 44);
/// # Ok::<(), payguard_webhook::ConfigError>(())
/// ```
///
/// # Errors
///
/// [`ConfigError`] when `key` is not hex.
pub fn adyen_item_signature(key: &str, item: &serde_json::Value) -> Result<String, ConfigError> {
    let key = keys::Key::parse(
        "adyen".into(),
        key,
        keys::SecretFormat::Hex,
        Algorithm::HmacSha256,
    )
    .map_err(|reason| ConfigError::new("key", format!("hex ({reason})")))?;
    let mac = key
        .mac
        .as_ref()
        .map(|mac| mac.compute(&[adyen::signed_fields(item).as_bytes()]));
    Ok(mac
        .map(|mac| encoding::to_base64(mac.as_slice()))
        .unwrap_or_default())
}
