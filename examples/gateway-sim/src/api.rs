//! Request checks shared by the providers.

use serde_json::Value;

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

/// Minor units as Flutterwave's major-unit number.
pub(crate) fn major(minor: i64) -> Value {
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
        assert!(!valid_charge_reference("bk 42"));
    }
}
