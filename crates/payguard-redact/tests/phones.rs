//! Phone coverage with libphonenumber (the `phonenumber` crate, a port of
//! Google's library) as the oracle: for every supported country, numbers it
//! calls valid mobiles, written in E.164, international and national form,
//! in ten sentence templates, are all redacted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payguard_redact::Redactor;
use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, PhoneNumber, Type};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const COUNTRIES: [(Id, &str); 16] = [
    (Id::NG, "234"),
    (Id::GH, "233"),
    (Id::KE, "254"),
    (Id::ZA, "27"),
    (Id::UG, "256"),
    (Id::TZ, "255"),
    (Id::RW, "250"),
    (Id::ZM, "260"),
    (Id::MW, "265"),
    (Id::EG, "20"),
    (Id::CM, "237"),
    (Id::CI, "225"),
    (Id::SN, "221"),
    (Id::GR, "30"),
    (Id::GB, "44"),
    (Id::US, "1"),
];

/// Ordinary log-line shapes; `{}` is the number.
const TEMPLATES: [&str; 10] = [
    "payment failed for {}: insufficient funds",
    "customer phone {} verified",
    "sms to {} delivered",
    r#"{"msisdn":"{}","status":"sent"}"#,
    "call {} now",
    "contact: {}",
    "phone={} status=ok",
    "guest ({}) asked for a refund",
    "otp sent to {}, expires in 5m",
    "momo payout to {}; ref tx_123",
];

/// Valid mobiles of a country, as the oracle judges them (in the US, where
/// the plan does not tell them apart, fixed-line-or-mobile numbers). The
/// oracle types Côte d'Ivoire's ten-digit numbers `Unknown`; there, valid
/// numbers with the mobile operators' prefixes (01, 05, 07) count.
fn mobiles(id: Id, code: &str, rng: &mut StdRng, wanted: usize) -> Vec<PhoneNumber> {
    let mut found = Vec::new();
    for _ in 0..100_000 {
        if found.len() == wanted {
            break;
        }
        let len = rng.random_range(8..=10);
        let nsn: String = (0..len)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        let Ok(number) = phonenumber::parse(None, format!("+{code}{nsn}")) else {
            continue;
        };
        let mobile = match number.number_type(&DATABASE) {
            // The US plan does not tell mobiles from landlines.
            Type::Mobile | Type::FixedLineOrMobile => true,
            Type::Unknown if id == Id::CI => ["01", "05", "07"].iter().any(|p| nsn.starts_with(p)),
            _ => false,
        };
        if number.is_valid() && mobile && number.country().id() == Some(id) {
            found.push(number);
        }
    }
    assert!(
        found.len() >= wanted / 2,
        "{id:?}: only {} mobiles",
        found.len()
    );
    found
}

#[test]
fn every_valid_mobile_of_every_country_in_every_form_and_template_is_redacted() {
    let redactor = Redactor::new();
    let mut rng = StdRng::seed_from_u64(22);
    let mut checked = 0;
    let mut leaks = Vec::new();
    for (id, code) in COUNTRIES {
        for number in mobiles(id, code, &mut rng, 60) {
            for mode in [Mode::E164, Mode::International, Mode::National] {
                let written = number.format().mode(mode).to_string();
                let significant = number.national().to_string();
                for template in TEMPLATES {
                    let line = template.replace("{}", &written);
                    let redacted = redactor.redact(&line);
                    checked += 1;
                    let tail = significant
                        .get(significant.len().saturating_sub(6)..)
                        .unwrap();
                    let digits: String = redacted.chars().filter(char::is_ascii_digit).collect();
                    if digits.contains(tail) {
                        leaks.push(format!("{id:?} {mode:?}: {line} -> {redacted}"));
                    }
                }
            }
        }
    }
    assert!(checked > 25_000, "{checked} lines checked");
    assert!(
        leaks.is_empty(),
        "{} of {checked} lines leaked, e.g.:\n{}",
        leaks.len(),
        leaks
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
