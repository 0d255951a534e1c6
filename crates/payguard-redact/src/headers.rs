//! Redacting `http::HeaderMap`s.

use crate::keys::KeyClass;
use crate::redactor::{Redactor, Report};
use http::{HeaderMap, HeaderValue};
use std::borrow::Cow;

/// Headers whose values are credentials or signatures, always replaced.
const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-paystack-signature",
    "verif-hash",
    "flutterwave-signature",
    "stripe-signature",
    "webhook-signature",
    "svix-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-square-hmacsha256-signature",
    "x-twilio-signature",
    "x-razorpay-signature",
    "hmacsignature",
];

impl Redactor {
    /// Redacts a header map in place: credential and signature headers (and
    /// any value marked sensitive) are replaced, keeping the scheme of an
    /// `Authorization` value (`Bearer [REDACTED]`); other values are scanned.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use payguard_redact::Redactor;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("authorization", "Bearer sk_live_abcdefghijkl".parse()?);
    /// headers.insert("x-paystack-signature", "9b1f...".parse()?);
    /// headers.insert("x-customer", "ada@example.com".parse()?);
    /// headers.insert("x-request-id", "req_42".parse()?);
    /// Redactor::new().redact_headers(&mut headers);
    /// assert_eq!(headers["authorization"], "Bearer [REDACTED]");
    /// assert_eq!(headers["x-paystack-signature"], "[REDACTED]");
    /// assert_eq!(headers["x-customer"], "[REDACTED:email]");
    /// assert_eq!(headers["x-request-id"], "req_42");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn redact_headers(&self, headers: &mut HeaderMap) -> Report {
        let mut report = Report::default();
        for (name, value) in headers.iter_mut() {
            let name = name.as_str();
            let class = self.classify_key(name);
            if SENSITIVE.contains(&name)
                || value.is_sensitive()
                || matches!(class, KeyClass::Secret | KeyClass::Remove)
            {
                let scheme = value
                    .to_str()
                    .ok()
                    .filter(|_| name.ends_with("authorization"))
                    .and_then(|text| text.split_once(' '))
                    .map(|(scheme, _)| scheme)
                    .filter(|scheme| {
                        !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic())
                    });
                let replacement = match scheme {
                    Some(scheme) => format!("{scheme} [REDACTED]"),
                    None => "[REDACTED]".to_owned(),
                };
                if let Ok(mut replaced) = HeaderValue::from_str(&replacement) {
                    replaced.set_sensitive(true);
                    *value = replaced;
                }
                report.key_redacted();
                continue;
            }
            let Ok(text) = value.to_str() else {
                // Not text: nothing a log line could show either; drop it.
                *value = HeaderValue::from_static("[REDACTED:binary]");
                report.key_redacted();
                continue;
            };
            if let Cow::Owned(redacted) = self.redact_field_with_report(name, text, &mut report)
                && let Ok(replaced) = HeaderValue::from_str(&redacted)
            {
                *value = replaced;
            }
        }
        report
    }
}
