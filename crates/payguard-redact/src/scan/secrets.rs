//! Credentials: found from literal triggers (one Aho-Corasick pass, case
//! insensitive), then measured by hand from each trigger.

use super::{at, before};
use crate::detector::{Detector, Finding};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Bearer,
    Basic,
    Jwt,
    ProviderKey,
    PemBegin,
    UrlScheme,
    /// `name=` or `name:` with a credential name.
    Param,
    CookieHeader,
    AuthorizationHeader,
    /// `<object>_<id>_secret_<secret>`: a client secret with its id.
    ClientSecret,
}

const TRIGGERS: &[(&str, Trigger)] = &[
    ("bearer ", Trigger::Bearer),
    ("basic ", Trigger::Basic),
    ("eyj", Trigger::Jwt),
    ("sk_live_", Trigger::ProviderKey),
    ("sk_test_", Trigger::ProviderKey),
    ("rk_live_", Trigger::ProviderKey),
    ("rk_test_", Trigger::ProviderKey),
    ("whsec_", Trigger::ProviderKey),
    ("whsk_", Trigger::ProviderKey),
    ("flwseck-", Trigger::ProviderKey),
    ("flwseck_test-", Trigger::ProviderKey),
    ("-----begin ", Trigger::PemBegin),
    ("://", Trigger::UrlScheme),
    ("token=", Trigger::Param),
    ("access_token=", Trigger::Param),
    ("refresh_token=", Trigger::Param),
    ("id_token=", Trigger::Param),
    ("auth_token=", Trigger::Param),
    ("api_key=", Trigger::Param),
    ("apikey=", Trigger::Param),
    ("api-key=", Trigger::Param),
    ("secret=", Trigger::Param),
    ("client_secret=", Trigger::Param),
    ("password=", Trigger::Param),
    ("passwd=", Trigger::Param),
    ("pwd=", Trigger::Param),
    ("signature=", Trigger::Param),
    ("sig=", Trigger::Param),
    ("otp=", Trigger::Param),
    ("authorization_code=", Trigger::Param),
    ("password:", Trigger::Param),
    ("passwd:", Trigger::Param),
    ("secret:", Trigger::Param),
    ("client_secret:", Trigger::Param),
    ("api_key:", Trigger::Param),
    ("set-cookie:", Trigger::CookieHeader),
    ("cookie:", Trigger::CookieHeader),
    ("authorization:", Trigger::AuthorizationHeader),
    ("_secret_", Trigger::ClientSecret),
];

/// The compiled triggers.
#[derive(Debug, Clone)]
pub(crate) struct SecretScanner {
    automaton: AhoCorasick,
}

impl SecretScanner {
    pub(crate) fn new() -> Self {
        // A fixed, valid set of short literals: failing to build it is a bug
        // that every test would catch, not a runtime condition.
        #[allow(clippy::expect_used)]
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(TRIGGERS.iter().map(|(pattern, _)| pattern))
            .expect("the fixed trigger patterns compile");
        Self { automaton }
    }

    /// Finds credentials, reporting only the detectors `enabled` allows.
    pub(crate) fn find(
        &self,
        text: &[u8],
        enabled: impl Fn(Detector) -> bool,
        out: &mut Vec<Finding>,
    ) {
        for found in self.automaton.find_iter(text) {
            let Some(&(_, trigger)) = TRIGGERS.get(found.pattern().as_usize()) else {
                continue;
            };
            let (start, end) = (found.start(), found.end());
            let finding = match trigger {
                Trigger::Bearer | Trigger::Basic => credential(text, start, end, trigger),
                Trigger::Jwt => jwt(text, start),
                Trigger::ProviderKey => provider_key(text, start, end),
                Trigger::PemBegin => private_key(text, end),
                Trigger::UrlScheme => url_password(text, end),
                Trigger::Param => param(text, start, end),
                Trigger::CookieHeader => header_value(text, start, end, false),
                Trigger::AuthorizationHeader => header_value(text, start, end, true),
                Trigger::ClientSecret => client_secret(text, start, end),
            };
            if let Some(finding) = finding.filter(|f| enabled(f.detector) && f.end > f.start) {
                out.push(finding);
            }
        }
    }
}

fn left_boundary(text: &[u8], start: usize) -> bool {
    !before(text, start).is_ascii_alphanumeric()
}

/// Our own markers (`[REDACTED:…]`, `[email:k1:…]`) are never redacted again.
fn is_marker(text: &[u8], start: usize) -> bool {
    at(text, start) == b'['
}

fn token_end(text: &[u8], start: usize, allowed: impl Fn(u8) -> bool) -> usize {
    let mut end = start;
    while end < text.len() && allowed(at(text, end)) {
        end += 1;
    }
    end
}

fn credential(text: &[u8], start: usize, end: usize, trigger: Trigger) -> Option<Finding> {
    if !left_boundary(text, start) {
        return None;
    }
    let mut value = end;
    while at(text, value) == b' ' {
        value += 1;
    }
    if is_marker(text, value) {
        return None;
    }
    let token = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    };
    let value_end = token_end(text, value, token);
    let candidate = text.get(value..value_end)?;
    if candidate.len() < 8 {
        return None;
    }
    if trigger == Trigger::Basic {
        // "basic checks" is prose: base64 credentials have a digit or a
        // padding/base64 symbol, or follow an Authorization header.
        let encoded = candidate
            .iter()
            .any(|b| b.is_ascii_digit() || matches!(b, b'=' | b'+' | b'/'));
        let window = text
            .get(start.saturating_sub(24)..start)
            .unwrap_or_default();
        let after_header = window
            .windows(13)
            .any(|w| w.eq_ignore_ascii_case(b"authorization"));
        if !encoded && !after_header {
            return None;
        }
    }
    Some(Finding::new(value, value_end, Detector::BearerToken))
}

fn jwt(text: &[u8], start: usize) -> Option<Finding> {
    if text.get(start..start + 3) != Some(b"eyJ")
        || super::is_word(before(text, start))
        || before(text, start) == b'-'
    {
        return None;
    }
    let segment = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    let header_end = token_end(text, start, segment);
    if header_end - start < 10 || at(text, header_end) != b'.' {
        return None;
    }
    let payload_end = token_end(text, header_end + 1, segment);
    if payload_end - header_end < 3 || at(text, payload_end) != b'.' {
        return None;
    }
    let end = token_end(text, payload_end + 1, segment);
    Some(Finding::new(start, end, Detector::Jwt))
}

fn provider_key(text: &[u8], start: usize, end: usize) -> Option<Finding> {
    if !left_boundary(text, start) {
        return None;
    }
    let key_end = token_end(text, end, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'=')
    });
    (key_end - end >= 8).then(|| Finding::new(start, key_end, Detector::ProviderKey))
}

fn private_key(text: &[u8], end: usize) -> Option<Finding> {
    // The header line: "-----BEGIN … PRIVATE KEY-----".
    let header = text.get(end..text.len().min(end + 64))?;
    let close = memchr::memmem::find(header, b"-----")?;
    let label = header.get(..close)?;
    if !label
        .windows(11)
        .any(|w| w.eq_ignore_ascii_case(b"PRIVATE KEY"))
    {
        return None;
    }
    let body_start = end + close + 5;
    let rest = text.get(body_start..).unwrap_or_default();
    // No END line: redact to the end rather than leak a truncated key.
    let body_end =
        memchr::memmem::find(rest, b"-----END").map_or(text.len(), |offset| body_start + offset);
    Some(Finding::new(body_start, body_end, Detector::PrivateKey))
}

fn url_password(text: &[u8], end: usize) -> Option<Finding> {
    let authority_end = token_end(text, end, |b| {
        !matches!(
            b,
            b'/' | b'?' | b'#' | b' ' | b'\n' | b'\r' | b'\t' | b'"' | b'\''
        )
    });
    let authority = text.get(end..authority_end)?;
    let at_sign = memchr::memrchr(b'@', authority)?;
    let colon = memchr::memchr(b':', authority.get(..at_sign)?)?;
    let (password_start, password_end) = (end + colon + 1, end + at_sign);
    (password_end > password_start && !is_marker(text, password_start))
        .then(|| Finding::new(password_start, password_end, Detector::UrlPassword))
}

fn param(text: &[u8], start: usize, end: usize) -> Option<Finding> {
    // "csrf_token=" is a credential parameter; "atoken=" is something else.
    if before(text, start).is_ascii_alphanumeric() {
        return None;
    }
    let mut value = end;
    while matches!(at(text, value), b' ' | b'"' | b'\'') && value - end < 3 {
        value += 1;
    }
    if is_marker(text, value) {
        return None;
    }
    let value_end = token_end(text, value, |b| {
        !matches!(
            b,
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b'&'
                | b'"'
                | b'\''
                | b','
                | b';'
                | b')'
                | b']'
                | b'}'
                | b'<'
                | b'>'
        )
    });
    Some(Finding::new(value, value_end, Detector::CredentialParam))
}

/// A client secret that embeds its object's id, as Stripe
/// (`pi_3Mtw…_secret_YrKJ…`, `seti_…_secret_…`) and Hyperswitch
/// (`pay_…_secret_…`) shape them: the id stays readable for correlation,
/// the part after `_secret_` goes.
fn client_secret(text: &[u8], start: usize, end: usize) -> Option<Finding> {
    // Before: "<letters>_<at least 8 letters or digits>".
    let mut id_start = start;
    while id_start > 0 && at(text, id_start - 1).is_ascii_alphanumeric() {
        id_start -= 1;
    }
    let object_end = id_start.checked_sub(1).filter(|i| at(text, *i) == b'_')?;
    let mut object_start = object_end;
    while object_start > 0 && at(text, object_start - 1).is_ascii_alphabetic() {
        object_start -= 1;
    }
    if start - id_start < 8
        || object_start == object_end
        || super::is_word(before(text, object_start))
    {
        return None;
    }
    let secret_end = token_end(text, end, |b| b.is_ascii_alphanumeric());
    if secret_end - end < 10 || super::is_word(at(text, secret_end)) {
        return None;
    }
    Some(Finding {
        label: Some("client_secret"),
        ..Finding::new(end, secret_end, Detector::ProviderKey)
    })
}

fn header_value(text: &[u8], start: usize, end: usize, authorization: bool) -> Option<Finding> {
    if !left_boundary(text, start) {
        return None;
    }
    let mut value = end;
    while at(text, value) == b' ' {
        value += 1;
    }
    if is_marker(text, value) {
        return None;
    }
    if authorization {
        // Keep the scheme word ("Bearer", "Basic", "Digest"); the Bearer
        // detector or the rest of the value covers the credential.
        let scheme_end = token_end(text, value, |b| b.is_ascii_alphabetic());
        if at(text, scheme_end) == b' ' && scheme_end > value {
            let scheme = text.get(value..scheme_end).unwrap_or_default();
            if scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"basic") {
                return None;
            }
            value = scheme_end + 1;
        }
    }
    let value_end = token_end(text, value, |b| !matches!(b, b'\n' | b'\r' | b'"'));
    Some(Finding::new(value, value_end, Detector::CredentialHeader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(text: &str) -> Vec<(&str, Detector)> {
        let mut out = Vec::new();
        SecretScanner::new().find(text.as_bytes(), |_| true, &mut out);
        out.iter()
            .map(|f| (&text[f.start..f.end], f.detector))
            .collect()
    }

    #[test]
    fn credentials() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXNfMTIzIn0.dGVzdHNpZ25hdHVyZQ";
        // Both see the token; the redactor keeps the higher-priority JWT.
        assert_eq!(
            secrets(&format!("Authorization: Bearer {jwt}")),
            [(jwt, Detector::BearerToken), (jwt, Detector::Jwt)]
        );
        assert_eq!(
            secrets("authorization: bearer abcdefgh12345"),
            [("abcdefgh12345", Detector::BearerToken)]
        );
        assert_eq!(
            secrets("Authorization: basic dXNlcjpwYXNz"),
            [("dXNlcjpwYXNz", Detector::BearerToken)]
        );
        assert_eq!(
            secrets("key sk_live_4eC39HqLyjWDarjtT1zdp7dc!"),
            [("sk_live_4eC39HqLyjWDarjtT1zdp7dc", Detector::ProviderKey)]
        );
        assert_eq!(
            secrets("FLWSECK_TEST-abcdef1234567890-X"),
            [("FLWSECK_TEST-abcdef1234567890-X", Detector::ProviderKey)]
        );
        assert_eq!(
            secrets("db postgres://app:hunter2@db:5432/x"),
            [("hunter2", Detector::UrlPassword)]
        );
        assert_eq!(
            secrets("GET /v?token=abc.def&lang=en"),
            [("abc.def", Detector::CredentialParam)]
        );
        assert_eq!(
            secrets("csrf_token=xyz"),
            [("xyz", Detector::CredentialParam)]
        );
        assert_eq!(
            secrets("Cookie: session=abc; theme=dark\nnext"),
            [("session=abc; theme=dark", Detector::CredentialHeader)]
        );
        assert_eq!(
            secrets("Authorization: Digest u=1"),
            [("u=1", Detector::CredentialHeader)]
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(secrets(pem), [("\nMIIEow\n", Detector::PrivateKey)]);
    }

    #[test]
    fn prose_and_markers_are_left_alone() {
        for text in [
            "basic checks passed",
            "the bearer of bad news",
            "max_tokens=1024 token_count=37",
            "see https://example.com/a?b=c",
            "password=[REDACTED:credential]",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "notoken=5",
        ] {
            assert!(secrets(text).is_empty(), "{text}: {:?}", secrets(text));
        }
    }
}
