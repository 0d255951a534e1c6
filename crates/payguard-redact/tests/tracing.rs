//! PII logged through `tracing` never reaches the output: in the message,
//! in fields, in span fields, in a JSON layer, and behind the writer backstop.

#![allow(clippy::unwrap_used)] // test code

use payguard_redact::{LogFormat, RedactingLayer, RedactingMakeWriter, Redactor};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

const PII: &[&str] = &[
    "ada.obi@example.com",
    "2348031234567",
    "4111111111111111",
    "hunter2",
    "sk_live_51Habcdefghijklmnop",
    "dGVzdHNpZ25hdHVyZQ",
    "12345678901",
    "999",
];

fn log_everything() {
    let span = tracing::info_span!(
        "checkout",
        customer_email = "ada.obi@example.com",
        booking_id = 42
    );
    let _guard = span.enter();
    tracing::info!(
        phone = "+2348031234567",
        card = 4111111111111111u64,
        password = "hunter2",
        authorization = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXNfMTIzIn0.dGVzdHNpZ25hdHVyZQ",
        bvn = "12345678901",
        cvv = 999,
        paystack_key = "sk_live_51Habcdefghijklmnop",
        amount = 500000,
        "charge failed for ada.obi@example.com card 4111111111111111"
    );
    let headers = [
        ("authorization", "Bearer sk_live_51Habcdefghijklmnop"),
        ("x-request-id", "req_7"),
    ];
    tracing::warn!(?headers, "gateway call");
}

fn assert_clean(output: &str) {
    assert!(!output.is_empty());
    for pii in PII {
        assert!(!output.contains(pii), "{pii:?} leaked into {output}");
    }
    // What is safe stays readable.
    assert!(output.contains("500000"), "{output}");
    assert!(output.contains("req_7"), "{output}");
    assert!(output.contains("42"), "{output}");
}

#[test]
fn json_layer_redacts_message_fields_and_spans() {
    let capture = Capture::default();
    let layer = RedactingLayer::new(Redactor::new(), capture.clone()).format(LogFormat::Json);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log_everything);
    let output = capture.text();
    assert_clean(&output);
    let first: serde_json::Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["fields"]["message"],
        "charge failed for [REDACTED:email] card ****1111"
    );
    assert_eq!(first["fields"]["card"], "****1111");
    assert_eq!(first["fields"]["authorization"], "[REDACTED:secret]");
    assert!(first["fields"].get("cvv").is_none());
    assert_eq!(first["fields"]["amount"], 500000);
    assert_eq!(first["spans"][0]["customer_email"], "[REDACTED:email]");
    assert_eq!(first["spans"][0]["name"], "checkout");
}

#[test]
fn text_layer_redacts_too() {
    let capture = Capture::default();
    let layer = RedactingLayer::new(Redactor::new(), capture.clone()).format(LogFormat::Text);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log_everything);
    assert_clean(&capture.text());
}

#[test]
fn writer_backstop_catches_the_stock_json_formatter() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(RedactingMakeWriter::new(Redactor::new(), capture.clone()))
        .finish();
    tracing::subscriber::with_default(subscriber, log_everything);
    let output = capture.text();
    for pii in PII.iter().filter(|p| **p != "999") {
        assert!(!output.contains(pii), "{pii:?} leaked into {output}");
    }
}
