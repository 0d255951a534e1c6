//! Linear-time scanners, one per family of detectors. Each walks the input
//! once (or from bounded look-arounds) and reports spans; no regular
//! expressions, so no backtracking.

pub(crate) mod cards;
pub(crate) mod emails;
pub(crate) mod iban;
pub(crate) mod ips;
pub(crate) mod pairs;
pub(crate) mod phones;
pub(crate) mod secrets;

use crate::keys;

/// The byte at `index`, or 0 past either end.
pub(crate) fn at(text: &[u8], index: usize) -> u8 {
    text.get(index).copied().unwrap_or(0)
}

/// The byte before `index`, or 0 at the start.
pub(crate) fn before(text: &[u8], index: usize) -> u8 {
    index.checked_sub(1).map_or(0, |i| at(text, i))
}

pub(crate) fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The key a value at `start` is assigned to, if the text reads like
/// `key=value`, `key: value` or `"key":"value"` right before it.
pub(crate) fn key_before(text: &[u8], start: usize) -> Option<&str> {
    let mut i = start;
    // Skip an opening quote and blanks.
    while i > 0 && matches!(at(text, i - 1), b'"' | b'\'' | b' ') && start - i < 4 {
        i -= 1;
    }
    if i == 0 || !matches!(at(text, i - 1), b'=' | b':') {
        return None;
    }
    i -= 1;
    while i > 0 && matches!(at(text, i - 1), b'"' | b'\'' | b' ') && start - i < 8 {
        i -= 1;
    }
    let end = i;
    while i > 0
        && (is_word(at(text, i - 1)) || matches!(at(text, i - 1), b'-' | b'.'))
        && end - i < 64
    {
        i -= 1;
    }
    if i == end {
        return None;
    }
    std::str::from_utf8(text.get(i..end)?).ok()
}

/// Whether digits at `start` sit under a key naming an id, amount or time
/// (`context_excludes` is that answer for the whole value's own key).
pub(crate) fn numeric_context_excludes(text: &[u8], start: usize, context_excludes: bool) -> bool {
    context_excludes || key_before(text, start).is_some_and(keys::numeric_not_pii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_before_values() {
        let text = br#"order_id=123 "card_number":"4111" amount: 5 plain 7"#;
        let find = |needle: &[u8]| {
            text.windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        assert_eq!(key_before(text, find(b"123")), Some("order_id"));
        assert_eq!(key_before(text, find(b"4111")), Some("card_number"));
        assert_eq!(key_before(text, find(b"5 plain")), Some("amount"));
        assert_eq!(key_before(text, find(b"7")), None);
    }
}
