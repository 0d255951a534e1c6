//! Our own cases for every rule, false-positive rates on generated
//! negatives, and property tests.

#![allow(clippy::unwrap_used)] // test code

use http::HeaderMap;
use payguard_redact::{CardMask, Detector, Redactor, Strategy};
use proptest::prelude::*;
use serde_json::json;

fn redact(text: &str) -> String {
    Redactor::new().redact(text).into_owned()
}

#[test]
fn cards_phones_emails_ibans_secrets() {
    let cases = [
        ("pan 5061 4604 1012 0223 210 ok", "pan ****3210 ok"),
        ("amex 3782-822463-10005", "amex ****0005"),
        ("call +30 694 123 4567", "call [REDACTED:phone]"),
        ("to 00254712345678", "to [REDACTED:phone]"),
        ("mail Ada%40Example.com", "mail [REDACTED:email]"),
        ("iban DE89 3704 0044 0532 0130 00", "iban [REDACTED:iban]"),
        (
            "key=sk_test_abcdefghijklmnop",
            "key=[REDACTED:provider_key]",
        ),
        (
            "hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "hook [REDACTED:provider_key]",
        ),
        (
            "dsn https://user:p4ss@db.internal/x",
            "dsn https://user:[REDACTED:url_password]@db.internal/x",
        ),
        ("Cookie: sid=abc", "Cookie: [REDACTED:credential_header]"),
        (
            "bvn=12345678901 account_number=1234567890",
            "bvn=[REDACTED:personal] account_number=[REDACTED:personal]",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(redact(input), expected, "{input}");
    }
}

#[test]
fn strategies_per_detector() {
    let redactor = Redactor::builder()
        .strategy(Detector::Card, Strategy::Mask(CardMask::Bin6Last4))
        .strategy(Detector::Email, Strategy::Drop)
        .strategy(Detector::Phone, Strategy::Pseudonym)
        .pseudonym_key("k1", &[7u8; 32])
        .build()
        .unwrap();
    let out = redactor.redact("card 4111111111111111 mail a@b.io");
    assert_eq!(out, "card 411111******1111 mail ");
    // Different spellings of one phone get one pseudonym.
    let a = redactor.redact("+234 803 123 4567");
    let b = redactor.redact("08031234567");
    let c = redactor.redact("2348031234567");
    assert!(
        a.starts_with("[phone:k1:") && a.len() == "[phone:k1:]".len() + 16,
        "{a}"
    );
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_ne!(a, redactor.redact("08031234568"));
    // And are stable when redacted again.
    assert_eq!(redactor.redact(&a), a);
}

#[test]
fn invalid_builders() {
    assert!(
        Redactor::builder()
            .strategy(Detector::Email, Strategy::Pseudonym)
            .build()
            .is_err()
    );
    assert!(
        Redactor::builder()
            .pseudonym_key("k1", &[1; 16])
            .build()
            .is_err()
    );
    assert!(
        Redactor::builder()
            .pseudonym_key("bad id", &[1; 32])
            .build()
            .is_err()
    );
}

#[test]
fn only_chosen_detectors_run() {
    let emails_only = Redactor::builder()
        .detectors(&[Detector::Email])
        .build()
        .unwrap();
    assert_eq!(
        emails_only.redact("a@b.io 4111111111111111"),
        "[REDACTED:email] 4111111111111111"
    );
}

#[test]
fn json_keys() {
    let mut document = json!({
        "client_secret": "cs_123", "refresh_token": "rt", "api_token": "t", "max_tokens": 1024,
        "token_count": 37, "author": "ops", "request_id": "req_1", "account_number": "0123456789",
        "card": {"number": 4111111111111111u64, "cvc": "123", "pin": 1234, "track2": ";4111=2512?"},
        "items": [{"email": "a@b.io"}, "call 08031234567"]
    });
    let report = Redactor::new().redact_json(&mut document);
    assert_eq!(document["client_secret"], "[REDACTED:secret]");
    assert_eq!(document["refresh_token"], "[REDACTED:secret]");
    assert_eq!(document["api_token"], "[REDACTED:secret]");
    assert_eq!(document["max_tokens"], 1024);
    assert_eq!(document["token_count"], 37);
    assert_eq!(document["author"], "ops");
    assert_eq!(document["request_id"], "req_1");
    // Under a personal key the value goes whatever the content detectors say.
    assert!(
        document["account_number"]
            .as_str()
            .unwrap()
            .starts_with("[REDACTED:")
    );
    assert_eq!(document["card"], json!({"number": "****1111"}));
    assert_eq!(
        document["items"],
        json!([{"email": "[REDACTED:email]"}, "call [REDACTED:phone]"])
    );
    assert_eq!(report.keys_removed(), 3);
    assert!(report.to_string().contains("email=1"), "{report}");
}

#[test]
fn headers_and_custom_keys() {
    let redactor = Redactor::builder()
        .secret_key("x-internal-ticket")
        .allow_key("customer_ref")
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-internal-ticket", "T-9".parse().unwrap());
    headers.insert("cookie", "sid=abc".parse().unwrap());
    headers.insert("verif-hash", "my-secret-hash".parse().unwrap());
    headers.insert("proxy-authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    redactor.redact_headers(&mut headers);
    assert_eq!(headers["x-internal-ticket"], "[REDACTED]");
    assert_eq!(headers["cookie"], "[REDACTED]");
    assert_eq!(headers["verif-hash"], "[REDACTED]");
    assert_eq!(headers["proxy-authorization"], "Basic [REDACTED]");
    assert!(headers["cookie"].is_sensitive());
    assert_eq!(
        redactor.redact("customer_ref=CUST-77 password=x"),
        "customer_ref=CUST-77 password=[REDACTED:credential]"
    );
    assert_eq!(
        redactor.redact("customer_ref=CUST-77 ticket=T-9"),
        "customer_ref=CUST-77 ticket=T-9"
    );
}

#[test]
fn reports_count_and_never_hold_values() {
    let (out, report) = Redactor::new().redact_with_report("a@b.io c@d.io 4111111111111111");
    assert_eq!(out, "[REDACTED:email] [REDACTED:email] ****1111");
    assert_eq!(report.count(Detector::Email), 2);
    assert_eq!(report.count(Detector::Card), 1);
    assert_eq!(report.to_string(), "email=2 card=1");
}

#[test]
fn oversized_input_is_cut_not_passed_through() {
    let redactor = Redactor::builder().max_input_bytes(32).build().unwrap();
    let input = format!("{}ada@example.com", "x".repeat(30));
    let (out, report) = redactor.redact_with_report(&input);
    assert!(!out.contains("example.com"), "{out}");
    assert!(out.ends_with("[TRUNCATED:13 bytes]"), "{out}");
    assert!(report.truncated());
}

/// A small deterministic generator for the negatives.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, len: usize) -> String {
        let mut text = (1 + self.below(9)).to_string();
        while text.len() < len {
            text.push(char::from(b'0' + self.below(10) as u8));
        }
        text
    }
}

const NEGATIVES: usize = 1_000_000;

/// Counts card and phone findings over `NEGATIVES` generated lines.
fn false_positives(mut line: impl FnMut(&mut Rng) -> String) -> (usize, usize) {
    let redactor = Redactor::new();
    let mut rng = Rng(0xD1CE);
    let (mut cards, mut phones) = (0, 0);
    for _ in 0..NEGATIVES {
        let text = line(&mut rng);
        let (_, report) = redactor.redact_with_report(&text);
        cards += report.count(Detector::Card);
        phones += report.count(Detector::Phone);
    }
    (cards, phones)
}

fn assert_rates(kind: &str, (cards, phones): (usize, usize)) {
    // Card FP rate below 1e-5, phone FP rate below 1e-4.
    assert!(
        cards * 100_000 < NEGATIVES,
        "{kind}: {cards} card false positives in {NEGATIVES}"
    );
    assert!(
        phones * 10_000 < NEGATIVES,
        "{kind}: {phones} phone false positives in {NEGATIVES}"
    );
}

#[test]
fn generated_uuids_are_not_pii() {
    assert_rates(
        "uuid",
        false_positives(|rng| {
            let hex = |rng: &mut Rng, n: usize| {
                (0..n)
                    .map(|_| format!("{:x}", rng.below(16)))
                    .collect::<String>()
            };
            format!(
                "request {}-{}-4{}-a{}-{} done",
                hex(rng, 8),
                hex(rng, 4),
                hex(rng, 3),
                hex(rng, 3),
                hex(rng, 12)
            )
        }),
    );
}

#[test]
fn generated_epochs_are_not_pii() {
    // 2001-2040, in seconds and milliseconds.
    assert_rates(
        "epoch",
        false_positives(|rng| {
            let seconds = 978_307_200 + rng.below(1_262_304_000);
            if rng.below(2) == 0 {
                format!("at {seconds} retry")
            } else {
                format!("ts {}{:03} ok", seconds, rng.below(1000))
            }
        }),
    );
}

#[test]
fn generated_amounts_are_not_pii() {
    assert_rates(
        "amount",
        false_positives(|rng| {
            let kobo = rng.below(10_000_000_000_000);
            match rng.below(3) {
                0 => format!("amount={kobo} currency=NGN"),
                1 => format!("{{\"amount\":{kobo},\"fee\":{}}}", kobo / 100),
                _ => format!(
                    "NGN {},{:03}.{:02}",
                    kobo / 100_000,
                    (kobo / 100) % 1000,
                    kobo % 100
                ),
            }
        }),
    );
}

#[test]
fn generated_ids_are_not_pii() {
    assert_rates(
        "id",
        false_positives(|rng| {
            let len = 10 + rng.below(10) as usize;
            let id = rng.digits(len);
            match rng.below(3) {
                0 => format!("order_id={id} status=paid"),
                1 => format!("{{\"transaction_id\":{id},\"status\":\"ok\"}}"),
                _ => format!("ref: {id}"),
            }
        }),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics_and_redaction_is_idempotent(text in "\\PC{0,200}") {
        let redactor = Redactor::new();
        let once = redactor.redact(&text).into_owned();
        prop_assert_eq!(redactor.redact(&once).into_owned(), once);
    }

    #[test]
    fn digit_and_separator_soup_is_idempotent(text in "[0-9 +()\\-.@a-z=:]{0,120}") {
        let redactor = Redactor::new();
        let once = redactor.redact(&text).into_owned();
        prop_assert_eq!(redactor.redact(&once).into_owned(), once);
    }

    #[test]
    fn arbitrary_json_never_panics(text in "\\PC{0,100}", key in "[a-z_]{1,12}", number in any::<i64>()) {
        let mut document = json!({ key.clone(): text, "n": number, "nested": [{ key: number }] });
        Redactor::new().redact_json(&mut document);
    }
}
