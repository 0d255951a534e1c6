//! The leak classes found by trying the redactor from outside: a phone
//! number before a colon, secret headers dumped on one line, IP addresses,
//! and client secrets that embed an id. Each through text, JSON and header
//! maps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::{HeaderMap, HeaderName, HeaderValue};
use payguard_redact::{Detector, Redactor, Strategy};
use serde_json::json;

fn redact(text: &str) -> String {
    Redactor::new().redact(text).into_owned()
}

#[test]
fn a_phone_number_before_a_colon_is_redacted_whatever_follows_it() {
    for line in [
        "payment failed for +2348031234567: insufficient funds",
        "payment failed for 2348031234567: insufficient funds",
        "payment failed for 08031234567: insufficient funds",
        "payment failed for +234 803 123 4567: insufficient funds",
        "payment failed for +30 694 123 4567: insufficient funds",
        "payment failed for +254712345678:insufficient funds",
        "payment failed for (555) 222-2222: insufficient funds",
    ] {
        let redacted = redact(line);
        assert!(
            redacted.contains("[REDACTED:phone]") && redacted.ends_with("insufficient funds"),
            "{line} -> {redacted}"
        );
    }
    // Times still are not phones.
    for line in [
        "settled 2024-01-15 12:30 ok",
        "batch 20240115 12:30:01 done",
    ] {
        assert_eq!(redact(line), line);
    }
}

/// The signature or secret header of every provider payguard-webhook knows
/// (`Provider::secret_headers`; the workspace test `webhook_headers_redacted`
/// checks this list against that crate).
const SECRET_HEADERS: &[&str] = &[
    "stripe-signature",
    "webhook-signature",
    "svix-signature",
    "x-paystack-signature",
    "flutterwave-signature",
    "verif-hash",
    "x-shopify-hmac-sha256",
    "shopify-hmac-sha256",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-slack-signature",
    "x-square-hmacsha256-signature",
    "x-square-signature",
    "x-twilio-signature",
    "x-razorpay-signature",
    "hmacsignature",
];

#[test]
fn every_secret_header_is_redacted_in_text_json_and_header_maps() {
    let secret = "s3cr3t-V4lue_0f+the/header=";
    for name in SECRET_HEADERS {
        let line = format!("content-type: application/json {name}: {secret} x-request-id: req_42");
        let redacted = redact(&line);
        assert!(
            !redacted.contains("s3cr3t") && redacted.contains("req_42"),
            "{name} in text: {redacted}"
        );
        let capitalised = line.replace(name, &name.to_uppercase());
        assert!(
            !redact(&capitalised).contains("s3cr3t"),
            "{name} upper case"
        );

        let mut document = json!({ *name: secret, "path": "/hooks" });
        Redactor::new().redact_json(&mut document);
        assert_ne!(document[*name], secret, "{name} in JSON");
        assert_eq!(document["path"], "/hooks");

        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(secret),
        );
        Redactor::new().redact_headers(&mut headers);
        assert_eq!(headers[*name], "[REDACTED]", "{name} in a header map");
    }
}

#[test]
fn ip_addresses_under_ip_keys_are_redacted_and_bare_ones_only_when_asked() {
    let redactor = Redactor::new();
    assert_eq!(
        redactor.redact("login ok client_ip=203.0.113.7 user=u_1"),
        "login ok client_ip=[REDACTED:ip] user=u_1"
    );
    assert_eq!(
        redactor.redact("x-forwarded-for: 203.0.113.7, 2001:db8::8a2e:370:7334 method: POST"),
        "x-forwarded-for: [REDACTED:ip], [REDACTED:ip] method: POST"
    );
    let mut document = json!({
        "remote_addr": "198.51.100.23:51234",
        "peer": {"ip": "fe80::1ff:fe23:4567:890a"},
        "version": "10.2.3.4",
    });
    redactor.redact_json(&mut document);
    assert_eq!(
        document,
        json!({"remote_addr": "[REDACTED:ip]:51234", "peer": {"ip": "[REDACTED:ip]"}, "version": "10.2.3.4"})
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
    headers.insert("x-real-ip", "203.0.113.7".parse().unwrap());
    redactor.redact_headers(&mut headers);
    assert_eq!(headers["x-forwarded-for"], "[REDACTED:ip], [REDACTED:ip]");
    assert_eq!(headers["x-real-ip"], "[REDACTED:ip]");

    // Bare addresses in free text: off by default, a keyed pseudonym when on.
    let line = "login from 203.0.113.7 and 2001:DB8::1";
    assert_eq!(redactor.redact(line), line);
    let pseudonymous = Redactor::builder()
        .bare_ip_addresses(true)
        .strategy(Detector::IpAddress, Strategy::Pseudonym)
        .pseudonym_key("k1", &[7; 32])
        .build()
        .unwrap();
    let redacted = pseudonymous.redact(line);
    assert!(
        !redacted.contains("203.0.113.7") && !redacted.contains("DB8"),
        "{redacted}"
    );
    assert!(redacted.contains("[ip:k1:"), "{redacted}");
    // One address, one pseudonym, however it is written.
    assert_eq!(
        pseudonymous.redact("2001:db8::1"),
        pseudonymous.redact("2001:0db8:0:0:0:0:0:1")
    );
}

#[test]
fn client_secrets_keep_their_id_and_lose_their_secret() {
    assert_eq!(
        redact("confirm with pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH now"),
        "confirm with pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_[REDACTED:client_secret] now"
    );
    assert_eq!(
        redact(r#"{"setup":"seti_1NGwW2LkdIwHu7ixD5QkE3lv_secret_Nz5Yx0kqGbXzW1QvS9aTq8rU2"}"#),
        r#"{"setup":"seti_1NGwW2LkdIwHu7ixD5QkE3lv_secret_[REDACTED:client_secret]"}"#
    );
    // Not client secrets: too short, or no id before.
    for line in [
        "my_secret_value",
        "client_secret_rotation_job ran",
        "top_secret_documents",
    ] {
        assert_eq!(redact(line), line);
    }
}
