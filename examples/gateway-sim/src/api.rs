//! What the two providers share: envelopes, authentication, request checks.

use crate::Sim;
use crate::faults::envelope;
use crate::model::Provider;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

/// `data` in the provider's success envelope, with 200.
pub(crate) fn ok(provider: Provider, message: &str, data: Value) -> Response {
    let status = match provider {
        Provider::Paystack => json!(true),
        Provider::Flutterwave => json!("success"),
    };
    let body = json!({ "status": status, "message": message, "data": data });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The provider's error envelope with `status`.
pub(crate) fn fail(provider: Provider, status: StatusCode, message: &str) -> Response {
    (status, axum::Json(envelope(provider, message))).into_response()
}

/// Lets through requests that carry the provider's secret key as a bearer
/// token; answers the provider's 401 otherwise.
pub(crate) async fn authorize(
    State((sim, provider)): State<(Sim, Provider)>,
    request: Request,
    next: Next,
) -> Response {
    let (key, refusal) = match provider {
        Provider::Paystack => (&sim.config.paystack_secret_key, "Invalid key"),
        Provider::Flutterwave => (
            &sim.config.flutterwave_secret_key,
            "Invalid authorization key",
        ),
    };
    let expected = format!("Bearer {key}");
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if presented != Some(expected.as_str()) {
        return fail(provider, StatusCode::UNAUTHORIZED, refusal);
    }
    next.run(request).await
}

/// A JSON object body.
pub(crate) fn json_object(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
}

/// A positive amount in minor units, as a JSON integer or a string of digits.
pub(crate) fn minor_units(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|amount| (1..9_000_000_000_000_000).contains(amount))
}

/// A positive amount in major units (Flutterwave: `5000` or `5000.50`),
/// converted to minor units; at most two decimals.
pub(crate) fn major_to_minor(value: &Value) -> Option<i64> {
    let major = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    let minor = (major * 100.0).round();
    let exact = ((major * 100.0) - minor).abs() < 1e-6;
    (major.is_finite() && exact && (1.0..9.0e15).contains(&minor)).then_some(minor as i64)
}

/// Minor units as Flutterwave's major-unit number: an integer when whole
/// (`5500`, as Flutterwave's samples print it; `5500.0` breaks clients
/// that read integers), else a decimal (`26.88`).
pub(crate) fn major(minor: i64) -> Value {
    if minor % 100 == 0 {
        return Value::from(minor / 100);
    }
    serde_json::Number::from_f64(minor as f64 / 100.0).map_or(Value::Null, Value::Number)
}

/// Paystack transaction references: `-`, `.`, `=` and alphanumerics.
pub(crate) fn valid_charge_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= 100
        && reference
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'='))
}

/// Paystack transfer references: 16 to 100 lowercase letters, digits, `-` or `_`.
pub(crate) fn valid_transfer_reference(reference: &str) -> bool {
    (16..=100).contains(&reference.len())
        && reference.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'-' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_and_references_are_checked() {
        assert_eq!(minor_units(&json!(5000)), Some(5000));
        assert_eq!(minor_units(&json!("5000")), Some(5000));
        assert_eq!(minor_units(&json!(0)), None);
        assert_eq!(minor_units(&json!(-5)), None);
        assert_eq!(minor_units(&json!(1.5)), None);
        assert_eq!(major_to_minor(&json!(50.25)), Some(5025));
        assert_eq!(major_to_minor(&json!("100")), Some(10000));
        assert_eq!(major_to_minor(&json!(0.001)), None);
        assert_eq!(major_to_minor(&json!(1e300)), None);
        assert!(valid_transfer_reference("escrow_bk_0000000042"));
        assert!(!valid_transfer_reference("Escrow_bk_0000000042"));
        assert!(!valid_transfer_reference("short"));
        assert!(valid_charge_reference("bk.42=a-b"));
        assert_eq!(major(550_000).to_string(), "5500");
        assert_eq!(major(2_688).to_string(), "26.88");
        assert!(!valid_charge_reference("bk 42"));
    }
}
