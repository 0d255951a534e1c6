//! What a field name says about its value: segment-aware key rules.
//!
//! A key is split into lowercase segments at `_`, `-`, `.`, `[`, `]`,
//! spaces and camelCase humps (`apiToken` → `api`, `token`), and judged on
//! whole segments, so `api_token` and `client_secret` are secrets while
//! `max_tokens`, `token_count` and `author` are not.

use std::collections::HashSet;

/// How a key's value is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyClass {
    /// Removed entirely: card verification values, PINs, track data. Never
    /// logged, not even masked (PCI DSS sensitive authentication data).
    Remove,
    /// A credential: replaced whole.
    Secret,
    /// Personal or account data: replaced whole.
    Personal,
    /// A correlation id that must stay readable (content scanning still
    /// applies to it).
    Allowed,
    /// Nothing special: the value is scanned like free text.
    Neutral,
}

// Every word the rules know, with what it means, in one sorted table so a
// segment is judged by one binary search.
const REMOVE: u64 = 1 << 0;
const SECRET: u64 = 1 << 1;
const TOKEN: u64 = 1 << 2;
const CREDENTIAL_QUALIFIER: u64 = 1 << 3;
const NOT_A_CREDENTIAL: u64 = 1 << 4;
const PERSONAL: u64 = 1 << 5;
const NUMERIC_NOT_PII: u64 = 1 << 6;
const PERSONAL_CONTEXT: u64 = 1 << 7;
// Halves of two-word rules.
const API: u64 = 1 << 8;
const KEY: u64 = 1 << 9;
const PRIVATE: u64 = 1 << 10;
const ACCESS: u64 = 1 << 11;
const SIGNING: u64 = 1 << 12;
const ENCRYPTION: u64 = 1 << 13;
const CLIENT: u64 = 1 << 14;
const SECRET_WORD: u64 = 1 << 15;
const AUTHORIZATION: u64 = 1 << 16;
const AUTH: u64 = 1 << 17;
const CODE: u64 = 1 << 18;
const PIN: u64 = 1 << 19;
const BLOCK: u64 = 1 << 20;
const TRACK: u64 = 1 << 21;
const DATA: u64 = 1 << 22;
const SECURITY: u64 = 1 << 23;
const CARD: u64 = 1 << 24;
const VERIFICATION: u64 = 1 << 25;
const ACCOUNT: u64 = 1 << 26;
const NUMBER: u64 = 1 << 27;
const PHONE: u64 = 1 << 28;
const DATE: u64 = 1 << 29;
const BIRTH: u64 = 1 << 30;
const BANK: u64 = 1 << 31;
const VERIF: u64 = 1 << 32;
const HASH: u64 = 1 << 33;
/// Names an IP address (`client_ip`, `x-forwarded-for`, `remote_addr`).
const IP: u64 = 1 << 34;
const ADDR: u64 = 1 << 35;
const IP_PARTY: u64 = 1 << 36;

/// Every flag some rule needs to answer secret, personal or remove: a key
/// with none of them is allowed or neutral (checked against every word and
/// pair of words in the tests).
const DECISIVE: u64 = REMOVE
    | PIN
    | TRACK
    | SECURITY
    | CARD
    | TOKEN
    | KEY
    | SECRET_WORD
    | AUTHORIZATION
    | AUTH
    | VERIF
    | SECRET
    | NUMBER
    | BIRTH
    | ACCOUNT
    | PERSONAL;

/// What a segment means to the rules (a `match` on bytes: compiled to a
/// length switch and comparisons, no library calls).
fn word_flags(segment: &[u8]) -> u64 {
    match segment {
        b"access" => ACCESS | CREDENTIAL_QUALIFIER,
        b"account" => ACCOUNT | PERSONAL_CONTEXT,
        b"addr" => ADDR,
        b"address" => ADDR,
        b"accountnumber" => PERSONAL,
        b"amount" => NUMERIC_NOT_PII,
        b"amounts" => NUMERIC_NOT_PII,
        b"api" => API | CREDENTIAL_QUALIFIER,
        b"apikey" => SECRET,
        b"at" => NUMERIC_NOT_PII,
        b"auth" => SECRET | AUTH | CREDENTIAL_QUALIFIER,
        b"authorization" => SECRET | AUTHORIZATION,
        b"balance" => NUMERIC_NOT_PII,
        b"bank" => BANK,
        b"bearer" => SECRET | CREDENTIAL_QUALIFIER,
        b"birth" => BIRTH,
        b"block" => BLOCK,
        b"budget" => NOT_A_CREDENTIAL,
        b"build" => NUMERIC_NOT_PII,
        b"bvn" => PERSONAL,
        b"bytes" => NUMERIC_NOT_PII,
        b"cancellation" => NOT_A_CREDENTIAL,
        b"card" => CARD | PERSONAL_CONTEXT,
        b"cardnumber" => PERSONAL,
        b"cents" => NUMERIC_NOT_PII,
        b"client" => CLIENT | CREDENTIAL_QUALIFIER | IP_PARTY,
        b"code" => CODE,
        b"completion" => NOT_A_CREDENTIAL,
        b"continuation" => NOT_A_CREDENTIAL,
        b"cookie" => SECRET,
        b"count" => NOT_A_CREDENTIAL | NUMERIC_NOT_PII,
        b"credential" => SECRET,
        b"credentials" => SECRET,
        b"csrf" => CREDENTIAL_QUALIFIER,
        b"cvc" => REMOVE,
        b"cvc2" => REMOVE,
        b"cvn" => REMOVE,
        b"cvv" => REMOVE,
        b"cvv2" => REMOVE,
        b"data" => DATA,
        b"date" => DATE | NUMERIC_NOT_PII,
        b"dob" => PERSONAL,
        b"duration" => NUMERIC_NOT_PII,
        b"email" => PERSONAL,
        b"encryption" => ENCRYPTION,
        b"epoch" => NUMERIC_NOT_PII,
        b"estimate" => NOT_A_CREDENTIAL,
        b"estimated" => NOT_A_CREDENTIAL,
        b"fee" => NUMERIC_NOT_PII,
        b"fees" => NUMERIC_NOT_PII,
        b"forwarded" => IP,
        b"hash" => HASH,
        b"hmac" => SECRET,
        b"hmacsignature" => SECRET,
        b"iban" => PERSONAL | PERSONAL_CONTEXT,
        b"id" => CREDENTIAL_QUALIFIER | NUMERIC_NOT_PII,
        b"ids" => NUMERIC_NOT_PII,
        b"input" => NOT_A_CREDENTIAL,
        b"ip" => IP,
        b"ips" => IP,
        b"ipv4" => IP,
        b"ipv6" => IP,
        b"invoice" => NUMERIC_NOT_PII,
        b"jwt" => SECRET | CREDENTIAL_QUALIFIER,
        b"key" => KEY,
        b"kind" => NOT_A_CREDENTIAL,
        b"kobo" => NUMERIC_NOT_PII,
        b"len" => NOT_A_CREDENTIAL,
        b"length" => NOT_A_CREDENTIAL | NUMERIC_NOT_PII,
        b"limit" => NOT_A_CREDENTIAL | NUMERIC_NOT_PII,
        b"login" => CREDENTIAL_QUALIFIER,
        b"magic" => CREDENTIAL_QUALIFIER,
        b"max" => NOT_A_CREDENTIAL,
        b"min" => NOT_A_CREDENTIAL,
        b"mobile" => PERSONAL | PERSONAL_CONTEXT,
        b"ms" => NUMERIC_NOT_PII,
        b"msisdn" => PERSONAL | PERSONAL_CONTEXT,
        b"next" => NOT_A_CREDENTIAL,
        b"nin" => PERSONAL,
        b"no" => NUMERIC_NOT_PII,
        b"nonce" => NUMERIC_NOT_PII,
        b"num" => NOT_A_CREDENTIAL,
        b"number" => NUMBER,
        b"oauth" => CREDENTIAL_QUALIFIER,
        b"offset" => NUMERIC_NOT_PII,
        b"order" => NUMERIC_NOT_PII,
        b"otp" => SECRET,
        b"output" => NOT_A_CREDENTIAL,
        b"page" => NOT_A_CREDENTIAL | NUMERIC_NOT_PII,
        b"pagination" => NOT_A_CREDENTIAL,
        b"pan" => PERSONAL,
        b"passphrase" => SECRET,
        b"passwd" => SECRET,
        b"password" => SECRET,
        b"peer" => IP_PARTY,
        b"personal" => CREDENTIAL_QUALIFIER,
        b"phone" => PERSONAL | PHONE | PERSONAL_CONTEXT,
        b"pin" => REMOVE | PIN,
        b"pinblock" => REMOVE,
        b"port" => NUMERIC_NOT_PII,
        b"prev" => NOT_A_CREDENTIAL,
        b"previous" => NOT_A_CREDENTIAL,
        b"price" => NUMERIC_NOT_PII,
        b"private" => PRIVATE | CREDENTIAL_QUALIFIER,
        b"privatekey" => SECRET,
        b"prompt" => NOT_A_CREDENTIAL,
        b"pwd" => SECRET,
        b"qty" => NUMERIC_NOT_PII,
        b"quantity" => NUMERIC_NOT_PII,
        b"ref" => NUMERIC_NOT_PII,
        b"reference" => NUMERIC_NOT_PII,
        b"refresh" => CREDENTIAL_QUALIFIER,
        b"remote" => IP_PARTY,
        b"remaining" => NOT_A_CREDENTIAL,
        b"reset" => CREDENTIAL_QUALIFIER,
        b"secret" => SECRET | SECRET_WORD | CREDENTIAL_QUALIFIER,
        b"secrets" => SECRET,
        b"security" => SECURITY | CREDENTIAL_QUALIFIER,
        b"seq" => NUMERIC_NOT_PII,
        b"sequence" => NUMERIC_NOT_PII,
        b"service" => CREDENTIAL_QUALIFIER,
        b"session" => CREDENTIAL_QUALIFIER,
        b"signature" => SECRET,
        b"signing" => SIGNING,
        b"size" => NOT_A_CREDENTIAL | NUMERIC_NOT_PII,
        b"source" => IP_PARTY,
        b"src" => IP_PARTY,
        b"ssn" => PERSONAL,
        b"tel" => PERSONAL | PERSONAL_CONTEXT,
        b"telephone" => PERSONAL | PERSONAL_CONTEXT,
        b"time" => NUMERIC_NOT_PII,
        b"timestamp" => NUMERIC_NOT_PII,
        b"token" => TOKEN,
        b"tokens" => TOKEN,
        b"total" => NOT_A_CREDENTIAL | NUMERIC_NOT_PII,
        b"track" => TRACK,
        b"track1" => REMOVE,
        b"track2" => REMOVE,
        b"trackdata" => REMOVE,
        b"ts" => NUMERIC_NOT_PII,
        b"tx" => NUMERIC_NOT_PII,
        b"txn" => NUMERIC_NOT_PII,
        b"type" => NOT_A_CREDENTIAL,
        b"usage" => NOT_A_CREDENTIAL,
        b"used" => NOT_A_CREDENTIAL,
        b"user" => CREDENTIAL_QUALIFIER,
        b"uuid" => NUMERIC_NOT_PII,
        b"value" => NUMERIC_NOT_PII,
        b"verif" => VERIF,
        b"verification" => VERIFICATION | CREDENTIAL_QUALIFIER,
        b"version" => NUMERIC_NOT_PII,
        b"xsrf" => CREDENTIAL_QUALIFIER,
        _ => 0,
    }
}

const fn both(flags: u64, a: u64, b: u64) -> bool {
    flags & a != 0 && flags & b != 0
}

/// Correlation ids that stay readable, by their joined segments.
fn allowed(joined: &[u8]) -> bool {
    matches!(
        joined,
        b"booking_id"
            | b"correlation_id"
            | b"customer_id"
            | b"event_id"
            | b"flw_ref"
            | b"idempotency_key"
            | b"listing_id"
            | b"merchant_id"
            | b"order_id"
            | b"payment_id"
            | b"recipient_code"
            | b"reference"
            | b"refund_id"
            | b"request_id"
            | b"session_id"
            | b"span_id"
            | b"trace_id"
            | b"transaction_id"
            | b"transfer_code"
            | b"transfer_id"
            | b"tx_ref"
            | b"x_request_id"
    )
}

/// A key split into lowercase segments, on the stack: classifying a key
/// allocates nothing. Keys beyond 64 bytes or 8 segments are cut (their
/// head decides).
pub(crate) struct Segments {
    bytes: [u8; 64],
    spans: [(u8, u8); 8],
    count: usize,
}

impl Segments {
    pub(crate) fn new(key: &str) -> Self {
        Self::of(key.as_bytes())
    }

    pub(crate) fn of(key: &[u8]) -> Self {
        let mut segments = Segments {
            bytes: [0; 64],
            spans: [(0, 0); 8],
            count: 0,
        };
        let mut spans = [(0, 0); 8];
        let mut count = 0;
        split_key(key, &mut segments.bytes, |start, segment| {
            if let Some(slot) = spans.get_mut(count) {
                *slot = (start as u8, (start + segment.len()) as u8);
                count += 1;
            }
        });
        segments.spans = spans;
        segments.count = count;
        segments
    }

    /// The segments: lowercase ASCII letters and digits.
    fn bytes(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .take(self.count)
            .filter_map(|&(a, b)| self.bytes.get(usize::from(a)..usize::from(b)))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.bytes()
            .filter_map(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The union of the segments' word flags ([`key_flags`] computes the
    /// same without building the segments).
    fn flags(&self) -> u64 {
        self.bytes()
            .fold(0, |flags, segment| flags | word_flags(segment))
    }

    /// The segments joined by `_` (`apiToken` → `api_token`).
    pub(crate) fn joined(&self) -> String {
        self.iter().collect::<Vec<_>>().join("_")
    }

    /// The segments joined by `_`, into a stack buffer.
    fn joined_into<'b>(&self, buffer: &'b mut [u8; 72]) -> &'b [u8] {
        let mut len = 0;
        for (index, segment) in self.bytes().enumerate() {
            if index > 0 {
                if let Some(slot) = buffer.get_mut(len) {
                    *slot = b'_';
                }
                len += 1;
            }
            for byte in segment {
                if let Some(slot) = buffer.get_mut(len) {
                    *slot = *byte;
                }
                len += 1;
            }
        }
        buffer.get(..len).unwrap_or_default()
    }
}

/// Splits a key into lowercase segments (for tests and configuration).
#[cfg(test)]
pub(crate) fn segments(key: &str) -> Vec<String> {
    Segments::new(key).iter().map(str::to_owned).collect()
}

/// Splits `key` into segments (at non-alphanumerics and at lower-to-upper
/// case changes), lowercased into `buffer`, and calls `each` with every
/// segment and where it starts there. At most 64 alphanumerics are read.
fn split_key(key: &[u8], buffer: &mut [u8; 64], mut each: impl FnMut(usize, &[u8])) {
    let mut len = 0usize;
    let mut start = 0usize;
    let mut previous_lower = false;
    for &byte in key {
        let boundary =
            !byte.is_ascii_alphanumeric() || (byte.is_ascii_uppercase() && previous_lower);
        if boundary && len > start {
            each(start, buffer.get(start..len).unwrap_or_default());
            start = len;
        }
        if !byte.is_ascii_alphanumeric() {
            previous_lower = false;
            continue;
        }
        previous_lower = byte.is_ascii_lowercase() || byte.is_ascii_digit();
        match buffer.get_mut(len) {
            Some(slot) => *slot = byte.to_ascii_lowercase(),
            None => break,
        }
        len += 1;
    }
    if len > start {
        each(start, buffer.get(start..len).unwrap_or_default());
    }
}

/// `Segments::of(key).flags()`, without keeping the segments: the hot path
/// of every `key=value` in text.
pub(crate) fn key_flags(key: &[u8]) -> u64 {
    let (mut flags, mut count) = (0, 0);
    split_key(key, &mut [0; 64], |_, segment| {
        // Like `Segments`, only the first eight segments count.
        if count < 8 {
            flags |= word_flags(segment);
            count += 1;
        }
    });
    flags
}

/// Key rules, with the caller's own additions.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyPolicy {
    pub(crate) allowed: HashSet<String>,
    pub(crate) secret: HashSet<String>,
}

impl KeyPolicy {
    /// Classifies `key`. Removal wins over everything (a CVV is never
    /// logged), then the allow-list, then secrets, then personal data.
    pub(crate) fn classify(&self, key: &str) -> KeyClass {
        let segments = Segments::new(key);
        self.classify_segments(&segments, segments.flags())
    }

    /// How a `key=value` pair in text is redacted: `None` leaves the value
    /// to the content detectors. Most keys name nothing sensitive; they are
    /// answered from their words' flags alone.
    pub(crate) fn value_label(&self, key: &[u8]) -> Option<&'static str> {
        let flags = key_flags(key);
        if flags & DECISIVE == 0 && self.secret.is_empty() {
            return None;
        }
        match self.classify_segments(&Segments::of(key), flags) {
            KeyClass::Secret => Some("secret"),
            KeyClass::Personal => Some("personal"),
            KeyClass::Remove => Some("removed"),
            KeyClass::Allowed | KeyClass::Neutral => None,
        }
    }

    fn classify_segments(&self, segments: &Segments, flags: u64) -> KeyClass {
        let remove = flags & REMOVE != 0
            || both(flags, PIN, BLOCK)
            || both(flags, TRACK, DATA)
            || both(flags, SECURITY, CODE)
            || both(flags, CARD, VERIFICATION);
        if remove {
            return KeyClass::Remove;
        }
        let mut buffer = [0u8; 72];
        let joined = segments.joined_into(&mut buffer);
        let listed = |set: &HashSet<String>| {
            !set.is_empty() && std::str::from_utf8(joined).is_ok_and(|joined| set.contains(joined))
        };
        if allowed(joined) || listed(&self.allowed) {
            return KeyClass::Allowed;
        }
        if listed(&self.secret) {
            return KeyClass::Secret;
        }
        // A token is a credential when it stands alone or is qualified as
        // one (access, refresh, api, ...) and is not a count or a cursor;
        // other tokens in payments (card_token) are references.
        let token_credential = flags & TOKEN != 0
            && (segments.count == 1 || flags & CREDENTIAL_QUALIFIER != 0)
            && flags & NOT_A_CREDENTIAL == 0;
        let secret_pair = both(flags, API, KEY)
            || both(flags, PRIVATE, KEY)
            || both(flags, ACCESS, KEY)
            || both(flags, SECRET_WORD, KEY)
            || both(flags, SIGNING, KEY)
            || both(flags, ENCRYPTION, KEY)
            || both(flags, CLIENT, SECRET_WORD)
            || both(flags, AUTHORIZATION, CODE)
            || both(flags, AUTH, CODE)
            || both(flags, VERIF, HASH);
        if flags & SECRET != 0 || secret_pair || token_credential {
            return KeyClass::Secret;
        }
        let personal_pair = both(flags, ACCOUNT, NUMBER)
            || both(flags, CARD, NUMBER)
            || both(flags, PHONE, NUMBER)
            || both(flags, DATE, BIRTH)
            || both(flags, BANK, ACCOUNT);
        if flags & PERSONAL != 0 || personal_pair {
            return KeyClass::Personal;
        }
        KeyClass::Neutral
    }
}

/// Whether `key` names an IP address: `ip`, `client_ip`, `x-real-ip`,
/// `x-forwarded-for`, `forwarded`, `remote_addr`, `peer_address`, ...
pub(crate) fn names_an_ip(key: &str) -> bool {
    let flags = key_flags(key.as_bytes());
    flags & IP != 0 || both(flags, IP_PARTY, ADDR)
}

/// Whether digits under `key` are an id, amount or time rather than a card
/// or phone number.
pub(crate) fn numeric_not_pii(key: &str) -> bool {
    let flags = key_flags(key.as_bytes());
    flags & NUMERIC_NOT_PII != 0
        && flags & (PERSONAL | PERSONAL_CONTEXT) == 0
        && !both(flags, ACCOUNT, NUMBER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every word the key rules know, read from this file.
    fn known_words() -> Vec<String> {
        let source = include_str!("keys.rs");
        let table = &source[source.find("fn word_flags").unwrap()..];
        let table = &table[..table.find("\n}\n").unwrap()];
        table
            .lines()
            .filter_map(|line| line.trim().strip_prefix("b\""))
            .filter_map(|line| line.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn key_flags_are_the_segments_flags() {
        let words = known_words();
        let mut keys: Vec<String> = Vec::new();
        for (n, word) in words.iter().enumerate() {
            let other = &words[(n * 7 + 3) % words.len()];
            let upper = word.to_ascii_uppercase();
            keys.extend([
                word.clone(),
                format!("{word}_{other}"),
                format!("x-{word}.{other}"),
                format!("{word}{}", other.to_ascii_uppercase()),
                format!("my{}{}", upper, other),
                format!("{}_{}", word.repeat(5), other),
                format!("a_b_c_d_e_f_g_{word}_{other}"),
                format!("{}{word}", "z".repeat(60)),
                format!("{word}9{other}__{word}"),
            ]);
        }
        for key in &keys {
            assert_eq!(
                key_flags(key.as_bytes()),
                Segments::new(key).flags(),
                "{key}"
            );
        }
    }

    #[test]
    fn keys_without_a_decisive_flag_are_never_secret_personal_or_removed() {
        let words = known_words();
        assert!(words.len() > 100, "{}", words.len());
        let policy = KeyPolicy::default();
        let check = |key: &str| {
            let class = policy.classify(key);
            let flags = Segments::new(key).flags();
            if flags & DECISIVE == 0 {
                assert!(
                    matches!(class, KeyClass::Allowed | KeyClass::Neutral),
                    "{key}: {class:?} without a decisive flag"
                );
            }
            let label = policy.value_label(key.as_bytes());
            let expected = match class {
                KeyClass::Secret => Some("secret"),
                KeyClass::Personal => Some("personal"),
                KeyClass::Remove => Some("removed"),
                KeyClass::Allowed | KeyClass::Neutral => None,
            };
            assert_eq!(label, expected, "{key}");
        };
        for first in &words {
            check(first);
            for second in &words {
                check(&format!("{first}_{second}"));
            }
        }
    }

    fn class(key: &str) -> KeyClass {
        KeyPolicy::default().classify(key)
    }

    #[test]
    fn segments_split_all_the_ways_keys_are_written() {
        assert_eq!(segments("apiToken"), ["api", "token"]);
        assert_eq!(segments("card[number]"), ["card", "number"]);
        assert_eq!(segments("X-Api-Key"), ["x", "api", "key"]);
        assert_eq!(
            segments("customer.email_address"),
            ["customer", "email", "address"]
        );
        assert_eq!(segments("CVV2"), ["cvv2"]);
    }

    #[test]
    fn secrets_by_segment_not_substring() {
        for key in [
            "password",
            "api_token",
            "client_secret",
            "refresh_token",
            "accessToken",
            "x-api-key",
            "authorization_code",
            "Authorization",
            "webhook_signature",
            "auth",
            "token",
            "csrf_token",
        ] {
            assert_eq!(class(key), KeyClass::Secret, "{key}");
        }
        for key in [
            "max_tokens",
            "token_count",
            "author",
            "oauth_provider",
            "cancellation_token",
            "next_page_token",
            "authored_at",
            "passenger",
            "card_token",
            "account_token",
        ] {
            assert_ne!(class(key), KeyClass::Secret, "{key}");
        }
    }

    #[test]
    fn sensitive_authentication_data_is_removed() {
        for key in [
            "cvv",
            "cvc2",
            "card.cvv",
            "pin",
            "pin_block",
            "track_data",
            "track2",
            "securityCode",
        ] {
            assert_eq!(class(key), KeyClass::Remove, "{key}");
        }
        assert_ne!(class("spin_count"), KeyClass::Remove);
        assert_ne!(class("pincode"), KeyClass::Remove);
    }

    #[test]
    fn personal_and_allowed() {
        for key in [
            "account_number",
            "bvn",
            "email",
            "customer_phone",
            "msisdn",
            "card_number",
            "iban",
        ] {
            assert_eq!(class(key), KeyClass::Personal, "{key}");
        }
        for key in [
            "request_id",
            "reference",
            "tx_ref",
            "idempotency_key",
            "trace_id",
        ] {
            assert_eq!(class(key), KeyClass::Allowed, "{key}");
        }
    }

    #[test]
    fn numeric_context() {
        assert!(numeric_not_pii("order_id"));
        assert!(numeric_not_pii("amount"));
        assert!(numeric_not_pii("created_at"));
        assert!(!numeric_not_pii("card_number"));
        assert!(!numeric_not_pii("phone"));
        assert!(!numeric_not_pii("card"));
    }
}
