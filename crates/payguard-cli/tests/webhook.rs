//! `payguard webhook verify|sign` through the real binary.

#![allow(clippy::unwrap_used, clippy::panic)] // test code

use std::io::Write;
use std::process::{Command, Output, Stdio};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../payguard-webhook/tests/vectors/webhooks.json"
);

fn payguard(args: &[String], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payguard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit (usage error) before reading its input.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_vector_through_the_cli() {
    let vectors: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    for vector in &vectors {
        let get = |key: &str| vector.get(key).and_then(|v| v.as_str());
        let mut args = strings(&["webhook", "verify", "--provider", get("provider").unwrap()]);
        let secret = get("secret").or(get("public_key")).unwrap();
        args.extend(["--secret".into(), secret.into()]);
        if let Some(url) = get("url") {
            args.extend(["--url".into(), url.into()]);
        }
        if let Some(now) = vector.get("now_unix").and_then(|v| v.as_u64()) {
            args.extend(["--now".into(), now.to_string()]);
        }
        if let Some(tolerance) = vector.get("tolerance_s").and_then(|v| v.as_u64()) {
            args.extend(["--tolerance".into(), tolerance.to_string()]);
        }
        for (name, value) in vector["headers"].as_object().unwrap() {
            args.extend([
                "--header".into(),
                format!("{name}: {}", value.as_str().unwrap()),
            ]);
        }
        let output = payguard(&args, get("body").unwrap_or_default().as_bytes());
        let expected = if get("expected") == Some("valid") {
            0
        } else {
            1
        };
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{}: {}",
            get("id").unwrap(),
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(error) = get("expected_error") {
            assert!(
                String::from_utf8_lossy(&output.stderr).contains(error),
                "{}",
                get("id").unwrap()
            );
        }
    }
}

#[test]
fn sign_then_verify_for_every_provider() {
    for provider in [
        "stripe",
        "standard-webhooks",
        "svix",
        "paystack",
        "flutterwave",
        "shopify",
        "github",
        "slack",
        "square",
        "twilio",
        "razorpay",
        "adyen",
    ] {
        let secret = match provider {
            "standard-webhooks" | "svix" => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "adyen" => "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
            _ => "cli-secret",
        };
        let body = br#"{"event":"charge.success","data":{"id":7}}"#;
        let common = strings(&[
            "--provider",
            provider,
            "--secret",
            secret,
            "--url",
            "https://x.test/h",
            "--now",
            "1700000000",
        ]);
        let mut sign = strings(&["webhook", "sign"]);
        sign.extend(common.clone());
        let signed = payguard(&sign, body);
        assert_eq!(
            signed.status.code(),
            Some(0),
            "{provider}: {}",
            String::from_utf8_lossy(&signed.stderr)
        );
        let mut verify = strings(&["webhook", "verify"]);
        verify.extend(common);
        for line in String::from_utf8(signed.stdout).unwrap().lines() {
            verify.extend(["--header".into(), line.to_owned()]);
        }
        let verified = payguard(&verify, body);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "{provider}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
        let tampered = payguard(&verify, br#"{"event":"charge.success","data":{"id":8}}"#);
        assert_eq!(tampered.status.code(), Some(1), "{provider}");
    }
}

#[test]
fn body_file_and_key_ring() {
    let dir = std::env::temp_dir().join(format!("payguard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.json");
    std::fs::write(&file, b"Hello, World!").unwrap();
    let args = strings(&[
        "webhook",
        "verify",
        "--provider",
        "github",
        "--secret",
        "old",
        "--secret",
        "It's a Secret to Everybody",
        "--header",
        "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "--body-file",
        file.to_str().unwrap(),
    ]);
    let output = payguard(&args, b"ignored");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("key=key-2"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let cases = [
        strings(&["webhook", "verify", "--provider", "mitto", "--secret", "s"]),
        strings(&["webhook", "verify", "--provider", "github"]),
        strings(&[
            "webhook",
            "verify",
            "--provider",
            "github",
            "--secret",
            "s",
            "--header",
            "no colon",
        ]),
        strings(&["webhook", "verify", "--provider", "square", "--secret", "s"]),
        strings(&[
            "webhook",
            "verify",
            "--provider",
            "adyen",
            "--secret",
            "not-hex",
        ]),
        strings(&["webhook", "frobnicate"]),
    ];
    for args in cases {
        let output = payguard(&args, b"{}");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
