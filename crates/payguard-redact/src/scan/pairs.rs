//! `key=value`, `key: value` and `"key":"value"` pairs in text, whose key
//! names a secret or personal data: JSON dumped into a log line, logfmt,
//! query strings.

use super::{at, before};
use crate::detector::{Detector, Finding};
use crate::keys::KeyPolicy;

/// Finds values of sensitive keys.
pub(crate) fn find(text: &[u8], keys: &KeyPolicy, out: &mut Vec<Finding>) {
    let mut from = 0;
    while let Some(found) = memchr::memchr2(b':', b'=', text.get(from..).unwrap_or_default()) {
        let separator = from + found;
        from = separator + 1;
        let Some(key) = key_before(text, separator) else {
            continue;
        };
        let Some(label) = keys.value_label(key) else {
            continue;
        };
        // A secret in a header dump ("stripe-signature: t=1,v1=ab…") runs
        // to the next blank; other values stop at list punctuation too.
        let whole =
            label == "secret" && at(text, separator) == b':' && before(text, separator) != b'"';
        if let Some((start, end)) = value_after(text, separator, whole)
            && end > start
            && !already_masked(text.get(start..end).unwrap_or_default())
        {
            out.push(Finding {
                label: Some(label),
                ..Finding::new(start, end, Detector::SensitiveKey)
            });
            from = end;
        }
    }
}

/// Our own markers and masked values (`****1111`) are left as they are, so
/// redacting twice changes nothing.
fn already_masked(value: &[u8]) -> bool {
    value.first() == Some(&b'[') || value.windows(3).any(|w| w == b"***")
}

/// The key ending just before `separator`: `"key"` (JSON) or a bare word.
fn key_before(text: &[u8], separator: usize) -> Option<&[u8]> {
    let mut end = separator;
    while end > 0 && at(text, end - 1) == b' ' && separator - end < 2 {
        end -= 1;
    }
    let quoted = before(text, end) == b'"';
    let key_end = if quoted { end - 1 } else { end };
    let mut start = key_end;
    while start > 0 && key_end - start < 64 {
        let byte = at(text, start - 1);
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'[' | b']') {
            start -= 1;
        } else {
            break;
        }
    }
    if start == key_end {
        return None;
    }
    if quoted && before(text, start) != b'"' {
        return None;
    }
    // "card[number]" is a key; "…:email]" is the tail of one of our markers.
    // "[phone:k1:…]" and "[REDACTED:email]" are ours.
    let key = text.get(start..key_end)?;
    if key.first() == Some(&b'[') || (key.contains(&b']') && !key.contains(&b'[')) {
        return None;
    }
    // "…_secret_[REDACTED:client_secret]": the colon is inside our marker.
    if memchr::memmem::find(key, b"[REDACTED").is_some() {
        return None;
    }
    if !quoted && (before(text, start).is_ascii_alphanumeric() || before(text, start) == b'/') {
        return None;
    }
    Some(key)
}

/// The value after `separator`: a JSON string (inside its quotes), or a bare
/// token (`whole`: up to the next blank, and past an authorization scheme
/// word to the credential after it). Objects and arrays are skipped: their
/// own keys are judged.
fn value_after(text: &[u8], separator: usize, whole: bool) -> Option<(usize, usize)> {
    let mut start = separator + 1;
    while at(text, start) == b' ' && start - separator < 3 {
        start += 1;
    }
    match at(text, start) {
        b'{' | b'[' | 0 => None,
        b'"' => {
            let open = start + 1;
            let mut end = open;
            while end < text.len() {
                match at(text, end) {
                    b'\\' => end += 2,
                    b'"' => break,
                    _ => end += 1,
                }
            }
            Some((open, end.min(text.len())))
        }
        _ if whole => {
            let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'"' | 0);
            let mut end = start;
            while end < text.len() && !blank(at(text, end)) {
                end += 1;
            }
            let word = text.get(start..end).unwrap_or_default();
            let scheme = [&b"bearer"[..], b"basic", b"digest", b"token"]
                .iter()
                .any(|scheme| word.eq_ignore_ascii_case(scheme));
            if scheme && at(text, end) == b' ' {
                end += 1;
                while end < text.len() && !blank(at(text, end)) {
                    end += 1;
                }
            }
            Some((start, end))
        }
        _ => {
            let mut end = start;
            while end < text.len()
                && !matches!(
                    at(text, end),
                    b' ' | b'\t' | b'\n' | b'\r' | b',' | b';' | b'&' | b'}' | b']' | b')' | b'"'
                )
            {
                end += 1;
            }
            Some((start, end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        find(text.as_bytes(), &KeyPolicy::default(), &mut out);
        out.iter()
            .map(|f| (&text[f.start..f.end], f.label.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn json_logfmt_and_yaml_pairs() {
        assert_eq!(
            values(r#"{"authorization_code":"AUTH_72btv547","bin":"408408"}"#),
            [("AUTH_72btv547", "secret")]
        );
        assert_eq!(
            values("login user=ada password=hunter2 bvn=12345678901"),
            [("hunter2", "secret"), ("12345678901", "personal")]
        );
        assert_eq!(values(r#"{"card":{"cvv":123}}"#), [("123", "removed")]);
        assert_eq!(
            values("client_secret: s3cr3t\nnext"),
            [("s3cr3t", "secret")]
        );
        assert_eq!(
            values(r#"{"note":"a \"quoted\" word","password":"p\"w"}"#),
            [(r#"p\"w"#, "secret")]
        );
    }

    #[test]
    fn json_values_end_where_json_says() {
        assert_eq!(
            values(r#"{"secret":123456789,"next":1}"#),
            [("123456789", "secret")]
        );
    }

    #[test]
    fn secret_headers_dumped_on_one_line() {
        assert_eq!(
            values("content-type: application/json verif-hash: sh4r3d-s3cr3t x-request-id: r1"),
            [("sh4r3d-s3cr3t", "secret")]
        );
        assert_eq!(
            values("stripe-signature: t=1492774577,v1=5257a869e7ec,v0=6ffbb59b2300 host: api"),
            [("t=1492774577,v1=5257a869e7ec,v0=6ffbb59b2300", "secret")]
        );
        assert_eq!(
            values("x-shopify-hmac-sha256: XWmrwMey6OsLMeiZKwP4FppHH3cmAiiJJAweH5Jo4bM="),
            [("XWmrwMey6OsLMeiZKwP4FppHH3cmAiiJJAweH5Jo4bM=", "secret")]
        );
        assert_eq!(
            values("proxy-authorization: Basic dXNlcjpwYXNzd29yZA== accept: */*"),
            [("Basic dXNlcjpwYXNzd29yZA==", "secret")]
        );
    }

    #[test]
    fn neutral_keys_and_urls_are_ignored() {
        for text in [
            r#"{"max_tokens":1024,"token_count":37,"author":"ops-bot","oauth_provider":"google"}"#,
            "see https://example.com/x at 12:30",
            "password=[REDACTED:secret]",
            r#"{"authorization":{"bin":"408408"}}"#,
        ] {
            assert!(values(text).is_empty(), "{text}: {:?}", values(text));
        }
    }
}
