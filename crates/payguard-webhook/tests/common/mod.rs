//! Shared by the test files: the project's webhook vectors.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use payguard_webhook::{Provider, Verifier};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `tests/vectors/webhooks.json`: copied from the project's research data;
/// each vector keeps its `source`.
pub(crate) const VECTORS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/webhooks.json");

pub(crate) struct Vector {
    pub(crate) id: String,
    pub(crate) provider: Provider,
    pub(crate) secrets: Vec<String>,
    pub(crate) url: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) header_lines: Vec<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) now: Option<u64>,
    pub(crate) tolerance: Option<u64>,
    pub(crate) valid: bool,
    pub(crate) expected_error: Option<String>,
}

impl Vector {
    pub(crate) fn verifier(&self) -> Verifier {
        let mut builder = Verifier::builder(self.provider);
        for secret in &self.secrets {
            builder = builder.secret(secret.clone());
        }
        if let Some(url) = &self.url {
            builder = builder.url(url.clone());
        }
        if let Some(tolerance) = self.tolerance {
            builder = builder.tolerance(Duration::from_secs(tolerance));
        }
        builder
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", self.id))
    }

    pub(crate) fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.now.unwrap_or(1_700_000_000))
    }
}

pub(crate) fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read {VECTORS} (the crate's test vectors): {e}"));
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    list.iter().map(parse).collect()
}

fn parse(v: &Value) -> Vector {
    let string = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let id = string("id").unwrap();
    let provider: Provider = string("provider").unwrap().parse().unwrap();
    let secrets: Vec<String> = [string("secret"), string("public_key")]
        .into_iter()
        .flatten()
        .take(1)
        .collect();
    let body = match (string("body"), string("body_b64")) {
        (Some(body), _) => body.into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
        _ => Vec::new(),
    };
    let mut headers = HeaderMap::new();
    let mut header_lines = Vec::new();
    if let Some(map) = v.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            let value = value.as_str().unwrap();
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
            header_lines.push(format!("{name}: {value}"));
        }
    }
    Vector {
        id,
        provider,
        secrets,
        url: string("url"),
        headers,
        header_lines,
        body,
        now: v.get("now_unix").and_then(Value::as_u64),
        tolerance: v.get("tolerance_s").and_then(Value::as_u64),
        valid: string("expected").as_deref() == Some("valid"),
        expected_error: string("expected_error"),
    }
}
