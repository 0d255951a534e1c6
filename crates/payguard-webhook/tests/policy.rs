//! Our own vectors for every policy point, and sign-then-verify for every
//! provider (the runnable example of each).

#![allow(clippy::unwrap_used)] // test code

use http::{HeaderMap, HeaderName, HeaderValue};
use payguard_webhook::{
    Algorithm, Encoding, EventIdSource, GenericHmac, Provider, SignedContent, Verifier, VerifyError,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NOW: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn signed(verifier: &Verifier, body: &[u8], now: u64) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in verifier.sign_at(body, at(now), None).unwrap() {
        map.insert(name, value);
    }
    map
}

fn secret_for(provider: Provider) -> &'static str {
    match provider {
        Provider::StandardWebhooks | Provider::Svix => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        Provider::Adyen => "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        Provider::Stripe => "whsec_test_secret",
        Provider::Paystack => "sk_test_0123456789abcdef",
        _ => "a-webhook-secret",
    }
}

fn verifier_for(provider: Provider) -> Verifier {
    Verifier::builder(provider)
        .secret(secret_for(provider))
        .url("https://api.example.com/v1/webhooks?site=3")
        .build()
        .unwrap()
}

#[test]
fn every_provider_signs_what_it_verifies_and_rejects_a_tampered_body() {
    let body = br#"{"event":"charge.success","data":{"id":42,"reference":"bk_1"},"id":"evt_9","event_id":"E1"}"#;
    for provider in Provider::ALL {
        let verifier = verifier_for(provider);
        let headers = signed(&verifier, body, NOW);
        let verified = verifier
            .verify_at(&headers, &body[..], at(NOW))
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(verified.body(), body);
        assert_eq!(verified.key_id(), "key-1");
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        let error = verifier
            .verify_at(&headers, &tampered[..], at(NOW))
            .unwrap_err();
        assert_eq!(error, VerifyError::SignatureMismatch, "{provider}");
    }
}

#[test]
fn flutterwave_outcomes_of_one_transfer_are_distinct_events() {
    let verifier = verifier_for(Provider::Flutterwave);
    let id = |body: &'static [u8]| {
        verifier
            .verify_at(&signed(&verifier, body, NOW), body, at(NOW))
            .unwrap()
            .event_id()
            .into_string()
    };
    let paid = id(br#"{"event":"transfer.completed","data":{"id":42,"status":"SUCCESSFUL"}}"#);
    let reversed = id(br#"{"event":"transfer.completed","data":{"id":42,"status":"REVERSED"}}"#);
    assert_eq!(paid, "flutterwave:transfer.completed:42:SUCCESSFUL");
    assert_ne!(paid, reversed);
}

#[test]
fn event_ids_per_provider() {
    let body = br#"{"event":"transfer.success","data":{"id":42,"reference":"escrow_7"},"id":"evt_9","event_id":"E1"}"#;
    let cases = [
        (Provider::Stripe, "evt_9", EventIdSource::Body),
        (
            Provider::Paystack,
            "paystack:transfer.success:42",
            EventIdSource::Derived,
        ),
        (
            Provider::Flutterwave,
            "flutterwave:transfer.success:42",
            EventIdSource::Derived,
        ),
        (Provider::Slack, "E1", EventIdSource::Body),
        (Provider::Square, "E1", EventIdSource::Body),
    ];
    for (provider, expected, source) in cases {
        let verifier = verifier_for(provider);
        let verified = verifier
            .verify_at(&signed(&verifier, body, NOW), &body[..], at(NOW))
            .unwrap();
        let id = verified.event_id();
        assert_eq!((id.as_str(), id.source()), (expected, source), "{provider}");
    }
    // Header ids.
    let verifier = verifier_for(Provider::Github);
    let mut headers = signed(&verifier, body, NOW);
    headers.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    let id = verifier
        .verify_at(&headers, &body[..], at(NOW))
        .unwrap()
        .event_id();
    assert_eq!(
        (id.as_str(), id.source()),
        (
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            EventIdSource::Header
        )
    );
    let verifier = verifier_for(Provider::StandardWebhooks);
    let headers: HeaderMap = verifier
        .sign_at(body, at(NOW), Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"))
        .unwrap()
        .into_iter()
        .collect();
    let id = verifier
        .verify_at(&headers, &body[..], at(NOW))
        .unwrap()
        .event_id();
    assert_eq!(id.as_str(), "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
}

#[test]
fn stripe_any_valid_v1_passes_v0_and_malformed_entries_are_ignored() {
    let verifier = verifier_for(Provider::Stripe);
    let body = b"{}";
    let good = signed(&verifier, body, NOW);
    let good_v1 = good["stripe-signature"]
        .to_str()
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    let bogus = "v1=0000000000000000000000000000000000000000000000000000000000000000";
    let rotated = format!("t={NOW},{bogus},garbage,v1=,=,v0=deadbeef,{good_v1}");
    let h = headers(&[("stripe-signature", &rotated)]);
    assert!(verifier.verify_at(&h, &body[..], at(NOW)).is_ok());
    // The valid MAC as v0 only: no downgrade.
    let v0_only = format!("t={NOW},{}", good_v1.replace("v1=", "v0="));
    let h = headers(&[("stripe-signature", &v0_only)]);
    assert_eq!(
        verifier.verify_at(&h, &body[..], at(NOW)).unwrap_err(),
        VerifyError::SignatureMismatch
    );
    // Uppercase hex is the same signature.
    let upper = format!("t={NOW},{}", good_v1.to_uppercase().replace("V1=", "v1="));
    let h = headers(&[("stripe-signature", &upper)]);
    assert!(verifier.verify_at(&h, &body[..], at(NOW)).is_ok());
    // An empty or truncated signature never passes.
    for sig in ["v1=", &good_v1[..good_v1.len() - 2]] {
        let h = headers(&[("stripe-signature", &format!("t={NOW},{sig}"))]);
        assert_eq!(
            verifier.verify_at(&h, &body[..], at(NOW)).unwrap_err(),
            VerifyError::SignatureMismatch
        );
    }
    // The whole whsec_ string is the key: keying with the decoded part fails.
    let other = Verifier::builder(Provider::Stripe)
        .secret("test_secret")
        .build()
        .unwrap();
    assert!(other.verify_at(&good, &body[..], at(NOW)).is_err());
}

#[test]
fn timestamps_are_checked_inclusively_separately_and_safely() {
    let verifier = Verifier::builder(Provider::Stripe)
        .secret("whsec_x")
        .max_age(Duration::from_secs(300))
        .max_future(Duration::from_secs(30))
        .build()
        .unwrap();
    let body = b"{}";
    let h = signed(&verifier, body, NOW);
    assert!(verifier.verify_at(&h, &body[..], at(NOW + 300)).is_ok());
    assert_eq!(
        verifier
            .verify_at(&h, &body[..], at(NOW + 301))
            .unwrap_err()
            .code(),
        "timestamp_too_old"
    );
    assert!(verifier.verify_at(&h, &body[..], at(NOW - 30)).is_ok());
    assert_eq!(
        verifier
            .verify_at(&h, &body[..], at(NOW - 31))
            .unwrap_err()
            .code(),
        "timestamp_too_new"
    );
    // A back-fill may skip the window explicitly.
    assert!(verifier.verify_ignoring_timestamp(&h, &body[..]).is_ok());
    // Hostile timestamps: malformed, never a panic.
    let sig = h["stripe-signature"]
        .to_str()
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    for t in [
        "-1",
        "-9223372036854775808",
        "9223372036854775808",
        "99999999999999999999",
        "1.5",
        "",
        " ",
    ] {
        let h = headers(&[("stripe-signature", &format!("t={t},{sig}"))]);
        assert_eq!(
            verifier
                .verify_at(&h, &body[..], at(NOW))
                .unwrap_err()
                .code(),
            "malformed_header",
            "t={t}"
        );
    }
    // Milliseconds are a time far in the future (and the MAC is checked first).
    let ms = Verifier::builder(Provider::Stripe)
        .secret("whsec_x")
        .build()
        .unwrap();
    let h = signed(&ms, body, NOW * 1000);
    assert_eq!(
        ms.verify_at(&h, &body[..], at(NOW)).unwrap_err().code(),
        "timestamp_too_new"
    );
    // A timestamp changed after signing fails on the MAC, not the window.
    let forged = h["stripe-signature"]
        .to_str()
        .unwrap()
        .replace(&(NOW * 1000).to_string(), &NOW.to_string());
    let h = headers(&[("stripe-signature", &forged)]);
    assert_eq!(
        ms.verify_at(&h, &body[..], at(NOW)).unwrap_err(),
        VerifyError::SignatureMismatch
    );
}

#[test]
fn key_ring_reports_which_key_matched() {
    let old = Verifier::builder(Provider::Razorpay)
        .secret("old-secret")
        .build()
        .unwrap();
    let ring = Verifier::builder(Provider::Razorpay)
        .secret_with_id("2025-rotation", "new-secret")
        .secret_with_id("2024", "old-secret")
        .build()
        .unwrap();
    let body = b"payload";
    let verified = ring
        .verify_at(&signed(&old, body, NOW), &body[..], at(NOW))
        .unwrap();
    assert_eq!(verified.key_id(), "2024");
    let error = Verifier::builder(Provider::Razorpay)
        .secret_with_id("a", "x")
        .secret_with_id("a", "y")
        .build()
        .unwrap_err();
    assert_eq!(error.setting(), "secret_with_id");
}

#[test]
fn standard_webhooks_secrets_rotation_and_v1a() {
    let body = br#"{"type":"contact.created"}"#;
    let seed = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    let public = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let signer = Verifier::builder(Provider::StandardWebhooks)
        .secret(seed)
        .build()
        .unwrap();
    let h = signed(&signer, body, NOW);
    assert!(h["webhook-signature"].to_str().unwrap().starts_with("v1a,"));
    let verifier = Verifier::builder(Provider::StandardWebhooks)
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .secret(public)
        .build()
        .unwrap();
    let verified = verifier.verify_at(&h, &body[..], at(NOW)).unwrap();
    assert_eq!(verified.key_id(), "key-2");
    // A 64-byte key pair works like the seed.
    let pair = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==";
    let pair_signer = Verifier::builder(Provider::StandardWebhooks)
        .secret(pair)
        .build()
        .unwrap();
    assert_eq!(
        pair_signer.sign_at(body, at(NOW), Some("m1")).unwrap(),
        signer.sign_at(body, at(NOW), Some("m1")).unwrap()
    );
    // Several signatures, space-separated: a bad one first does not matter.
    let hmac = Verifier::builder(Provider::StandardWebhooks)
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .build()
        .unwrap();
    let good = signed(&hmac, body, NOW);
    let both = format!(
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,xyz v1, {}",
        good["webhook-signature"].to_str().unwrap()
    );
    let mut h = good.clone();
    h.insert("webhook-signature", HeaderValue::from_str(&both).unwrap());
    assert!(hmac.verify_at(&h, &body[..], at(NOW)).is_ok());
    // Svix: svix-* names (webhook-* also accepted).
    let svix = Verifier::builder(Provider::Svix)
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .build()
        .unwrap();
    assert!(svix.verify_at(&good, &body[..], at(NOW)).is_ok());
    let svix_headers = signed(&svix, body, NOW);
    assert!(svix_headers.contains_key("svix-signature"));
    assert!(svix.verify_at(&svix_headers, &body[..], at(NOW)).is_ok());
    // Bad secrets are configuration errors that never echo the secret.
    for bad in [
        "whsec_!!!",
        "whpk_AAAA",
        "whsk_AAAA",
        "",
        " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        let error = Verifier::builder(Provider::StandardWebhooks)
            .secret(bad)
            .build()
            .unwrap_err();
        assert!(error.setting() == "secret", "{bad:?}");
        assert!(bad.len() < 6 || !error.to_string().contains(&bad[5..]));
    }
}

#[test]
fn non_canonical_base64_is_rejected() {
    let verifier = verifier_for(Provider::Shopify);
    let body = b"{}";
    let good = signed(&verifier, body, NOW);
    let signature = good["x-shopify-hmac-sha256"].to_str().unwrap().to_owned();
    // Flip the unused low bits of the last character before '='.
    let mut tweaked: Vec<u8> = signature.clone().into_bytes();
    let last = tweaked.len() - 2;
    tweaked[last] = if tweaked[last] == b'A' { b'B' } else { b'A' };
    let tweaked = String::from_utf8(tweaked).unwrap();
    let h = headers(&[("x-shopify-hmac-sha256", &tweaked)]);
    assert_eq!(
        verifier.verify_at(&h, &body[..], at(NOW)).unwrap_err(),
        VerifyError::SignatureMismatch
    );
}

#[test]
fn github_requires_sha256_and_ignores_sha1() {
    let verifier = verifier_for(Provider::Github);
    let body = b"Hello, World!";
    let good = signed(&verifier, body, NOW);
    let hex = good["x-hub-signature-256"]
        .to_str()
        .unwrap()
        .trim_start_matches("sha256=")
        .to_owned();
    let h = headers(&[("x-hub-signature-256", &hex)]);
    assert_eq!(
        verifier
            .verify_at(&h, &body[..], at(NOW))
            .unwrap_err()
            .code(),
        "malformed_header"
    );
    let sha1_only = headers(&[("x-hub-signature", "sha1=0123")]);
    assert_eq!(
        verifier
            .verify_at(&sha1_only, &body[..], at(NOW))
            .unwrap_err()
            .code(),
        "missing_header"
    );
}

#[test]
fn flutterwave_accepts_whichever_is_present() {
    let verifier = verifier_for(Provider::Flutterwave);
    let body = br#"{"event":"charge.completed","data":{"id":1}}"#;
    let both = signed(&verifier, body, NOW);
    assert!(
        verifier
            .verify_at(&both, &body[..], at(NOW))
            .unwrap()
            .body_authenticated()
    );
    let legacy = headers(&[("verif-hash", "a-webhook-secret")]);
    let verified = verifier
        .verify_at(&legacy, &b"anything at all"[..], at(NOW))
        .unwrap();
    assert!(!verified.body_authenticated());
    let wrong = headers(&[("verif-hash", "a-webhook-secreT")]);
    assert_eq!(
        verifier.verify_at(&wrong, &body[..], at(NOW)).unwrap_err(),
        VerifyError::SignatureMismatch
    );
    // A forged signature is not rescued by a correct verif-hash.
    let mut mixed = both.clone();
    mixed.insert(
        "flutterwave-signature",
        HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    );
    assert!(verifier.verify_at(&mixed, &body[..], at(NOW)).is_err());
    assert_eq!(
        verifier
            .verify_at(&HeaderMap::new(), &body[..], at(NOW))
            .unwrap_err()
            .code(),
        "missing_header"
    );
}

#[test]
fn bodies_need_not_be_utf8() {
    let verifier = verifier_for(Provider::Paystack);
    let body = [0xff, 0xfe, 0x00, 0x80, b'{'];
    assert!(
        verifier
            .verify_at(&signed(&verifier, &body, NOW), &body[..], at(NOW))
            .is_ok()
    );
}

#[test]
fn twilio_json_bodies_use_body_sha256() {
    let body = br#"{"CallSid":"CA1"}"#;
    let digest = {
        use sha2::{Digest, Sha256};
        Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let url = format!("https://example.com/voice?bodySHA256={digest}");
    let verifier = Verifier::builder(Provider::Twilio)
        .secret("12345")
        .url(url.clone())
        .build()
        .unwrap();
    let h = signed(&verifier, body, NOW);
    assert!(verifier.verify_at(&h, &body[..], at(NOW)).is_ok());
    assert!(
        verifier
            .verify_at(&h, &br#"{"CallSid":"CA2"}"#[..], at(NOW))
            .is_err()
    );
    // Twilio sometimes signs with the default port spelled out.
    let with_port = Verifier::builder(Provider::Twilio)
        .secret("12345")
        .url(url.replace("example.com", "example.com:443"))
        .build()
        .unwrap();
    assert!(with_port.verify_at(&h, &body[..], at(NOW)).is_ok());
}

#[test]
fn url_signing_schemes_need_a_url() {
    for provider in [Provider::Square, Provider::Twilio] {
        assert_eq!(
            Verifier::builder(provider)
                .secret("k")
                .build()
                .unwrap_err()
                .setting(),
            "url"
        );
    }
}

#[test]
fn adyen_items_all_need_valid_signatures() {
    let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    let item = |psp: &str, value: i64| {
        let mut item = serde_json::json!({
            "pspReference": psp, "merchantAccountCode": "M", "merchantReference": "bk_1",
            "amount": {"value": value, "currency": "NGN"}, "eventCode": "AUTHORISATION", "success": "true"
        });
        let signature = payguard_webhook::adyen_item_signature(key, &item).unwrap();
        item["additionalData"] = serde_json::json!({ "hmacSignature": signature });
        item
    };
    let document = |items: Vec<serde_json::Value>| {
        let wrapped: Vec<_> = items
            .into_iter()
            .map(|i| serde_json::json!({ "NotificationRequestItem": i }))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "live": "false", "notificationItems": wrapped }))
            .unwrap()
    };
    let verifier = Verifier::builder(Provider::Adyen)
        .secret(key)
        .build()
        .unwrap();
    let good = document(vec![item("P1", 100), item("P2", 200)]);
    let verified = verifier
        .verify_at(&HeaderMap::new(), &good[..], at(NOW))
        .unwrap();
    assert_eq!(verified.event_id().as_str(), "P1:AUTHORISATION:true");
    let mut forged = item("P3", 300);
    forged["amount"]["value"] = serde_json::json!(1);
    let bad = document(vec![item("P1", 100), forged]);
    assert_eq!(
        verifier
            .verify_at(&HeaderMap::new(), &bad[..], at(NOW))
            .unwrap_err(),
        VerifyError::SignatureMismatch
    );
    assert_eq!(
        verifier
            .verify_at(&HeaderMap::new(), &b"[]"[..], at(NOW))
            .unwrap_err()
            .code(),
        "malformed_body"
    );
    assert!(
        Verifier::builder(Provider::Adyen)
            .secret("not-hex")
            .build()
            .is_err()
    );
}

#[test]
fn generic_scheme_with_timestamp_and_prefix() {
    let scheme = GenericHmac::new(
        HeaderName::from_static("x-acme-signature"),
        Algorithm::HmacSha512,
        Encoding::Hex,
    )
    .prefix("sha512=")
    .signed(SignedContent::TimestampAndBody {
        header: HeaderName::from_static("x-acme-timestamp"),
        separator: ".".into(),
    });
    let verifier = Verifier::generic(scheme).secret("acme").build().unwrap();
    let body = b"{\"ok\":true}";
    let h = signed(&verifier, body, NOW);
    assert!(
        h["x-acme-signature"]
            .to_str()
            .unwrap()
            .starts_with("sha512=")
    );
    assert!(verifier.verify_at(&h, &body[..], at(NOW)).is_ok());
    assert_eq!(
        verifier
            .verify_at(&h, &body[..], at(NOW + 301))
            .unwrap_err()
            .code(),
        "timestamp_too_old"
    );
}

#[test]
fn errors_never_show_secrets_or_expected_signatures() {
    let secret = "sk_live_do_not_print_me";
    let verifier = Verifier::builder(Provider::Paystack)
        .secret(secret)
        .build()
        .unwrap();
    let body = b"{}";
    let expected = signed(&verifier, body, NOW)["x-paystack-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let errors = [
        verifier
            .verify_at(&HeaderMap::new(), &body[..], at(NOW))
            .unwrap_err(),
        verifier
            .verify_at(
                &headers(&[("x-paystack-signature", "00")]),
                &body[..],
                at(NOW),
            )
            .unwrap_err(),
    ];
    for error in errors {
        let text = format!("{error} {error:?}");
        assert!(
            !text.contains(secret) && !text.contains(&expected[..16]),
            "{text}"
        );
    }
    assert!(!format!("{verifier:?}").contains(secret));
}
