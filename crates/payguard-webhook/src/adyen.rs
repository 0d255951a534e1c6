//! Adyen notification items: each one signs eight of its fields, joined by
//! `:`, in `additionalData.hmacSignature`.

use crate::encoding::{self, Mac64};
use crate::error::VerifyError;
use serde_json::Value;

/// The string an item signs: `pspReference:originalReference:
/// merchantAccountCode:merchantReference:amount.value:amount.currency:
/// eventCode:success`, absent fields empty.
pub(crate) fn signed_fields(item: &Value) -> String {
    let field = |value: Option<&Value>| match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Bool(flag)) => flag.to_string(),
        _ => String::new(),
    };
    let amount = item.get("amount");
    [
        field(item.get("pspReference")),
        field(item.get("originalReference")),
        field(item.get("merchantAccountCode")),
        field(item.get("merchantReference")),
        field(amount.and_then(|a| a.get("value"))),
        field(amount.and_then(|a| a.get("currency"))),
        field(item.get("eventCode")),
        field(item.get("success")),
    ]
    .join(":")
}

/// The `NotificationRequestItem`s of a notification body.
pub(crate) fn items(body: &[u8]) -> Result<Vec<Value>, VerifyError> {
    let malformed = |reason| VerifyError::MalformedBody { reason };
    let document: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON"))?;
    let items: Vec<Value> = document
        .get("notificationItems")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no notificationItems"))?
        .iter()
        .filter_map(|wrapper| wrapper.get("NotificationRequestItem").cloned())
        .collect();
    if items.is_empty() {
        return Err(malformed("no NotificationRequestItem"));
    }
    Ok(items)
}

/// Every item must carry a valid signature; returns the key that signed the
/// first.
pub(crate) fn verify_items(
    body: &[u8],
    matches: impl Fn(&[u8], Mac64) -> Option<usize>,
) -> Result<usize, VerifyError> {
    let mut first_key = None;
    for item in items(body)? {
        let signature = item
            .get("additionalData")
            .and_then(|data| data.get("hmacSignature"))
            .and_then(Value::as_str)
            .and_then(|text| encoding::base64_mac(text.as_bytes()))
            .filter(|bytes| bytes.as_slice().len() == 32)
            .ok_or(VerifyError::SignatureMismatch)?;
        let key = matches(signed_fields(&item).as_bytes(), signature)
            .ok_or(VerifyError::SignatureMismatch)?;
        first_key.get_or_insert(key);
    }
    first_key.ok_or(VerifyError::SignatureMismatch)
}
