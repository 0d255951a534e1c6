//! Every case of `tests/corpus/redaction.json`: no `must_redact`
//! substring survives and every `must_keep` substring does, byte for byte.

#![allow(clippy::unwrap_used, clippy::panic)] // test code

use payguard_redact::Redactor;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/redaction.json");

struct Case {
    input: String,
    must_redact: Vec<String>,
    must_keep: Vec<String>,
    kind: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(CORPUS)
        .unwrap_or_else(|e| panic!("cannot read {CORPUS} (the crate's labelled corpus): {e}"));
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    list.iter()
        .map(|v| Case {
            input: v["input"].as_str().unwrap().to_owned(),
            must_redact: strings(v, "must_redact"),
            must_keep: strings(v, "must_keep"),
            kind: v["kind"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn check(case: &Case, output: &str, surface: &str) {
    for secret in &case.must_redact {
        assert!(
            !output.contains(secret.as_str()),
            "{} ({surface}): {secret:?} survived in {output:?}",
            case.kind
        );
    }
    for kept in &case.must_keep {
        assert!(
            output.contains(kept.as_str()),
            "{} ({surface}): {kept:?} lost in {output:?}",
            case.kind
        );
    }
}

#[test]
fn every_case_as_text() {
    let redactor = Redactor::new();
    let cases = cases();
    assert!(cases.len() >= 23);
    for case in &cases {
        let output = redactor.redact(&case.input);
        check(case, &output, "text");
        // Redacting again changes nothing.
        assert_eq!(
            redactor.redact(&output),
            output,
            "{}: not idempotent",
            case.kind
        );
    }
}

#[test]
fn json_cases_as_documents() {
    let redactor = Redactor::new();
    for case in cases() {
        let Ok(mut document) = serde_json::from_str::<Value>(&case.input) else {
            continue;
        };
        if !document.is_object() {
            continue;
        }
        redactor.redact_json(&mut document);
        check(&case, &serde_json::to_string(&document).unwrap(), "json");
    }
}
