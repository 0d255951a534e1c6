//! Redacting `serde_json::Value`s in place, by key and by value.

use crate::keys::KeyClass;
use crate::redactor::{Redactor, Report};
use serde_json::{Map, Value};
use std::borrow::Cow;

impl Redactor {
    /// Redacts a JSON document in place: fields under removable keys (CVV,
    /// PIN, track data) are removed; scalars under secret or personal keys
    /// are replaced; every other string (and every long integer) is scanned
    /// with its key as context. Objects under a secret key are walked, not
    /// wiped, so `{"authorization": {"bin": "408408", ...}}` keeps its safe
    /// fields.
    ///
    /// ```
    /// use payguard_redact::Redactor;
    /// use serde_json::json;
    ///
    /// let mut event = json!({
    ///     "customer": {"email": "ada@example.com", "phone": "+2348031234567"},
    ///     "authorization": {"authorization_code": "AUTH_72btv547", "bin": "408408", "last4": "4081"},
    ///     "card": {"number": "4111111111111111", "cvv": "123"},
    ///     "max_tokens": 1024,
    ///     "reference": "T685312322670591"
    /// });
    /// let report = Redactor::new().redact_json(&mut event);
    /// assert_eq!(event["customer"]["email"], "[REDACTED:email]");
    /// assert_eq!(event["authorization"]["authorization_code"], "[REDACTED:secret]");
    /// assert_eq!(event["authorization"]["bin"], "408408");
    /// assert_eq!(event["card"]["number"], "****1111");
    /// assert!(event["card"].get("cvv").is_none());
    /// assert_eq!(event["max_tokens"], 1024);
    /// assert_eq!(event["reference"], "T685312322670591");
    /// assert_eq!(report.keys_removed(), 1);
    /// ```
    pub fn redact_json(&self, value: &mut Value) -> Report {
        let mut report = Report::default();
        self.redact_value(value, None, false, &mut report);
        report
    }

    fn redact_value(
        &self,
        value: &mut Value,
        key: Option<&str>,
        under_secret: bool,
        report: &mut Report,
    ) {
        match value {
            Value::Object(map) => self.redact_object(map, report),
            Value::Array(items) => {
                for item in items {
                    self.redact_value(item, key, under_secret, report);
                }
            }
            Value::String(text) if under_secret && !text.is_empty() => {
                *text = "[REDACTED:secret]".to_owned();
                report.key_redacted();
            }
            Value::String(text) => {
                let redacted = match key {
                    Some(key) => self.redact_field_with_report(key, text, report),
                    None => self.redact_in_context(text, None, report),
                };
                if let Cow::Owned(redacted) = redacted {
                    *text = redacted;
                }
            }
            Value::Number(_) if under_secret => {
                *value = Value::String("[REDACTED:secret]".to_owned());
                report.key_redacted();
            }
            Value::Number(number) => {
                // Numbers are scanned too: a card number sent as a JSON number.
                let Some(integer) = number
                    .as_u64()
                    .or_else(|| number.as_i64().map(i64::unsigned_abs))
                else {
                    return;
                };
                let rendered = integer.to_string();
                let classified = key.map(|k| self.classify_key(k));
                if matches!(classified, Some(KeyClass::Secret | KeyClass::Personal)) {
                    let replaced =
                        self.redact_field_with_report(key.unwrap_or_default(), &rendered, report);
                    *value = Value::String(replaced.into_owned());
                    return;
                }
                if rendered.len() >= 7
                    && let Cow::Owned(redacted) = self.redact_in_context(&rendered, key, report)
                {
                    *value = Value::String(redacted);
                }
            }
            _ => {}
        }
    }

    fn redact_object(&self, map: &mut Map<String, Value>, report: &mut Report) {
        map.retain(|key, _| {
            let keep = self.classify_key(key) != KeyClass::Remove;
            if !keep {
                report.key_removed();
            }
            keep
        });
        for (key, value) in map.iter_mut() {
            let secret = self.classify_key(key) == KeyClass::Secret;
            // A secret key's object value is walked; its scalars are secrets.
            self.redact_value(value, Some(key), secret && !value.is_object(), report);
        }
    }
}
