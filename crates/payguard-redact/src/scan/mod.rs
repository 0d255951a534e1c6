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

/// Where digit runs start (a digit whose previous byte is not one), from
/// `from` on, in order. Eight bytes at a time (SWAR): the scanners visit
/// these candidates instead of walking the text byte by byte.
pub(crate) struct DigitRunStarts<'t> {
    text: &'t [u8],
    /// The next chunk's offset.
    chunk: usize,
    /// Run starts left in the current chunk (one high bit per byte lane).
    pending: u64,
    pending_base: usize,
    /// Whether the byte before `chunk` is a digit.
    previous_digit: bool,
}

impl<'t> DigitRunStarts<'t> {
    pub(crate) fn new(text: &'t [u8], from: usize) -> Self {
        let from = from.min(text.len());
        Self {
            text,
            chunk: from,
            pending: 0,
            pending_base: from,
            previous_digit: from > 0 && before(text, from).is_ascii_digit(),
        }
    }
}

/// One high bit per byte lane of `word` (little endian) that holds an
/// ASCII digit.
fn digit_lanes(word: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let seven = word & LOW7;
    // No lane can carry into the next: a lane is at most 0x7F + 0x50.
    let at_least_0 = seven + ONES * (0x80 - 0x30);
    let above_9 = seven + ONES * (0x80 - 0x3A);
    at_least_0 & !above_9 & !word & HIGH
}

impl Iterator for DigitRunStarts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            if self.pending != 0 {
                let lane = (self.pending.trailing_zeros() / 8) as usize;
                self.pending &= self.pending - 1;
                return Some(self.pending_base + lane);
            }
            let rest = self.text.get(self.chunk..)?;
            if rest.is_empty() {
                return None;
            }
            let mut bytes = [0u8; 8];
            let take = rest.len().min(8);
            bytes
                .get_mut(..take)
                .unwrap_or_default()
                .copy_from_slice(rest.get(..take).unwrap_or_default());
            let digits = digit_lanes(u64::from_le_bytes(bytes));
            let carried = if self.previous_digit { 0x80 } else { 0 };
            let previous = (digits << 8) | carried;
            self.pending = digits & !previous;
            self.pending_base = self.chunk;
            self.previous_digit = take == 8 && digits >> 63 != 0;
            self.chunk += take;
        }
    }
}

/// How many ASCII digits `text` holds, eight bytes at a time.
pub(crate) fn digit_count(text: &[u8]) -> usize {
    let mut chunks = text.chunks_exact(8);
    let mut count = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        count += digit_lanes(u64::from_le_bytes(bytes)).count_ones() as usize;
    }
    count
        + chunks
            .remainder()
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count()
}

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
    fn digit_run_starts_match_a_byte_by_byte_walk() {
        let texts: [&[u8]; 6] = [
            b"",
            b"7",
            b"a1b22c333 4444-55555 x",
            b"12345678901234567890abcdefgh9",
            b"\xff9\x809 0x39 /:9",
            "caf\u{e9} 9\u{2019}99 \u{0660}1".as_bytes(),
        ];
        for text in texts {
            for from in 0..=text.len() {
                let walked: Vec<usize> = (from..text.len())
                    .filter(|&i| text[i].is_ascii_digit() && !before(text, i).is_ascii_digit())
                    .collect();
                let found: Vec<usize> = DigitRunStarts::new(text, from).collect();
                assert_eq!(
                    found,
                    walked,
                    "{:?} from {from}",
                    String::from_utf8_lossy(text)
                );
            }
            let digits = text.iter().filter(|b| b.is_ascii_digit()).count();
            assert_eq!(digit_count(text), digits);
        }
        for byte in 0..=255u8 {
            let lanes = digit_lanes(u64::from_le_bytes([byte; 8]));
            assert_eq!(lanes != 0, byte.is_ascii_digit(), "{byte:#x}");
        }
    }

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
