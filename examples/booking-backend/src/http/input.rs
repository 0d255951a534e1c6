//! What a request must be before a handler acts on it: JSON of the right
//! media type, printable text, real email addresses, the currencies the
//! gateways take and amounts they accept. Every refusal is a problem+json
//! answer naming the field, never the parser's text.

use super::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

/// The body as `T` (see [`json_request`]).
pub(super) fn json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    json_request(headers, body, false)
}

/// The body as `T`, an empty body as `{}` (see [`json_request`]).
pub(super) fn json_or_empty<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    json_request(headers, body, true)
}

/// The body as `T`: `415 unsupported_media_type` unless it says
/// `application/json` (a cross-site form post cannot), `400 invalid_json`
/// naming the field that is missing or wrong. An empty body is `{}` when
/// `empty_is_object`.
fn json_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    empty_is_object: bool,
) -> Result<T, ApiError> {
    let body = if body.is_empty() && empty_is_object {
        &b"{}"[..]
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::Invalid {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                detail: "send the body as application/json".to_owned(),
            });
        }
        body
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let detail = if path == "." || path.is_empty() {
            "the body is not a JSON object this route takes".to_owned()
        } else {
            format!("field `{path}` is missing, unknown or of the wrong type")
        };
        ApiError::Invalid {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_json",
            detail,
        }
    })
}

fn invalid(field: &str, rule: &str) -> ApiError {
    ApiError::invalid_field(field, rule)
}

/// Characters no name or address needs and that change how text reads:
/// bidirectional overrides and isolates, zero-width characters, other
/// invisible formatting, and Unicode noncharacters.
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{061C}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{FDD0}'..='\u{FDEF}')
        || (u32::from(c) & 0xFFFE) == 0xFFFE
}

/// 1 to 200 printable characters, with something visible in them.
pub(super) fn text(field: &str, value: &str) -> Result<(), ApiError> {
    let length = value.chars().count();
    if value.trim().is_empty()
        || length > 200
        || value.chars().any(|c| c.is_control() || is_deceptive(c))
    {
        return Err(invalid(field, "must be 1 to 200 printable characters"));
    }
    Ok(())
}

/// `local@domain.tld`: one `@`, a local part of 1 to 64 printable ASCII
/// characters without spaces or quotes, a domain of labels (letters,
/// digits, hyphens, or punycode) with a dot, at most 254 characters.
pub(super) fn email(field: &str, value: &str) -> Result<(), ApiError> {
    let valid = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            let local_ok = (1..=64).contains(&local.len())
                && local.bytes().all(|b| {
                    b.is_ascii_graphic()
                        && !matches!(
                            b,
                            b'"' | b'('
                                | b')'
                                | b','
                                | b':'
                                | b';'
                                | b'<'
                                | b'>'
                                | b'@'
                                | b'['
                                | b'\\'
                                | b']'
                        )
                })
                && !local.starts_with('.')
                && !local.ends_with('.')
                && !local.contains("..");
            let labels: Vec<&str> = domain.split('.').collect();
            let domain_ok = labels.len() >= 2
                && labels.iter().all(|label| {
                    (1..=63).contains(&label.len())
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
                && labels
                    .last()
                    .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()));
            local_ok && domain_ok
        });
    if valid {
        Ok(())
    } else {
        Err(invalid(field, "is not an email address"))
    }
}

/// A phone number as people write one: an optional `+`, 7 to 15 digits,
/// and spaces, dashes, dots or parentheses between them.
pub(super) fn phone(field: &str, value: &str) -> Result<(), ApiError> {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let body = value.strip_prefix('+').unwrap_or(value);
    let valid = (7..=15).contains(&digits)
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            field,
            "is not a phone number (digits, +, spaces, dashes)",
        ))
    }
}

/// ISO 4217 codes Paystack or Flutterwave settle, with the largest amount
/// one booking may charge in each, in major units (about 100,000 USD).
const CURRENCIES: &[(&str, i64)] = &[
    ("NGN", 150_000_000),
    ("GHS", 1_500_000),
    ("KES", 13_000_000),
    ("ZAR", 1_800_000),
    ("UGX", 370_000_000),
    ("TZS", 250_000_000),
    ("RWF", 130_000_000),
    ("ZMW", 2_500_000),
    ("MWK", 170_000_000),
    ("EGP", 4_800_000),
    ("XAF", 60_000_000),
    ("XOF", 60_000_000),
    ("USD", 100_000),
    ("GBP", 80_000),
    ("EUR", 95_000),
];

/// The largest charge in `currency`, in minor units (hundredths, as the
/// gateways count them), if the gateways take it.
pub(crate) fn max_charge(currency: &str) -> Option<i64> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, max)| max * 100)
}

/// `currency` is one the gateways take.
pub(super) fn currency(field: &str, value: &str) -> Result<i64, ApiError> {
    max_charge(value).ok_or_else(|| {
        invalid(
            field,
            "must be a currency the gateways settle (NGN, GHS, KES, ZAR, UGX, TZS, RWF, ZMW, MWK, EGP, XAF, XOF, USD, GBP, EUR)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_what_hides_or_reorders() {
        assert!(text("name", "Ada Obi").is_ok());
        assert!(text("name", "Zoë Ọlá").is_ok());
        for bad in [
            "",
            "   ",
            "\u{200B}\u{200B}",
            "evil\u{202E}gnp.exe",
            "a\u{FFFF}",
            "tab\there",
            &"x".repeat(201),
        ] {
            assert!(text("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_and_phones() {
        for good in [
            "ada@example.com",
            "a.b+tag@mail.example.ng",
            "x@xn--bcher-kva.com",
        ] {
            assert!(email("email", good).is_ok(), "{good}");
        }
        for bad in [
            "@",
            "ada@",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@b.com",
            "a@-b.com",
            "a@b.123",
            "a..b@c.com",
        ] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
        for good in ["+2348031234567", "0803 123 4567", "(555) 222-2222"] {
            assert!(phone("phone", good).is_ok(), "{good}");
        }
        for bad in [
            "12345",
            "+234803123456789012",
            "call me",
            "+234\u{202E}8031234567",
        ] {
            assert!(phone("phone", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_the_gateways() {
        assert_eq!(max_charge("NGN"), Some(15_000_000_000));
        assert!(currency("currency", "ABC").is_err());
        assert!(currency("currency", "ngn").is_err());
    }
}
