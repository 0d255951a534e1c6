//! `payguard redact [--json]` through the real binary, over payguard-redact's
//! labelled corpus.

#![allow(clippy::unwrap_used, clippy::panic)] // test code

use std::io::Write;
use std::process::{Command, Stdio};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../payguard-redact/tests/corpus/redaction.json"
);

fn redact(args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payguard"))
        .arg("redact")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn every_corpus_case_through_the_cli() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(CORPUS).unwrap()).unwrap();
    for mode in [&[][..], &["--json"][..]] {
        // One process for the whole corpus, one case per line (newlines
        // inside a case are escaped by the JSON mode, so only single-line
        // inputs go through it).
        let inputs: Vec<&str> = cases
            .iter()
            .map(|c| c["input"].as_str().unwrap())
            .filter(|input| !input.contains('\n'))
            .collect();
        let (status, output) = redact(mode, &(inputs.join("\n") + "\n"));
        assert_eq!(status, 0);
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), inputs.len());
        for (case, line) in cases
            .iter()
            .filter(|c| !c["input"].as_str().unwrap().contains('\n'))
            .zip(&lines)
        {
            for secret in case["must_redact"].as_array().unwrap() {
                assert!(
                    !line.contains(secret.as_str().unwrap()),
                    "{mode:?} {}: {secret} in {line}",
                    case["kind"]
                );
            }
            for kept in case["must_keep"].as_array().unwrap() {
                assert!(
                    line.contains(kept.as_str().unwrap()),
                    "{mode:?} {}: lost {kept} in {line}",
                    case["kind"]
                );
            }
        }
    }
}

#[test]
fn private_keys_spanning_lines_are_redacted_whole() {
    let pem = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c2d3e4f5g6h7i8j9k0\nAAAB\n-----END RSA PRIVATE KEY-----\nafter ada@example.com\n";
    let (status, output) = redact(&[], pem);
    assert_eq!(status, 0);
    assert!(
        !output.contains("MIIEow") && !output.contains("AAAB"),
        "{output}"
    );
    assert!(
        output.starts_with("before\n-----BEGIN RSA PRIVATE KEY-----"),
        "{output}"
    );
    assert!(output.ends_with("after [REDACTED:email]\n"), "{output}");
    let (_, unterminated) = redact(&[], "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n");
    assert!(!unterminated.contains("MIIEsecret"), "{unterminated}");
}

#[test]
fn json_mode_rewrites_documents_compactly_and_passes_text() {
    let input = "{\"email\": \"ada@example.com\",  \"amount\": 5000}\nplain ada@example.com\n";
    let (status, output) = redact(&["--json"], input);
    assert_eq!(status, 0);
    assert_eq!(
        output,
        "{\"amount\":5000,\"email\":\"[REDACTED:email]\"}\nplain [REDACTED:email]\n"
    );
}
