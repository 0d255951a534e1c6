//! Every signature or secret header of every provider payguard-webhook
//! knows is redacted by payguard-redact: in a one-line header dump, as a
//! JSON key and in a header map.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::{HeaderMap, HeaderName, HeaderValue};
use payguard_redact::Redactor;
use payguard_webhook::Provider;
use serde_json::json;

#[test]
fn every_provider_secret_header_is_redacted_everywhere() {
    let redactor = Redactor::new();
    let secret = "Zm9vYmFyLXNpZ25hdHVyZQ==";
    for provider in Provider::ALL {
        for name in provider.secret_headers() {
            let line = format!(
                "webhook {provider} headers: host: api.example.com {name}: {secret} accept: */*"
            );
            let redacted = redactor.redact(&line);
            assert!(
                !redacted.contains(secret) && redacted.contains("api.example.com"),
                "{provider} {name}: {redacted}"
            );

            let mut document = json!({ "headers": { *name: secret } });
            redactor.redact_json(&mut document);
            assert_ne!(
                document["headers"][*name], secret,
                "{provider} {name} in JSON"
            );

            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(secret),
            );
            redactor.redact_headers(&mut headers);
            assert_eq!(
                headers[*name], "[REDACTED]",
                "{provider} {name} in a header map"
            );
        }
    }
}
