//! IBANs: a country code, two check digits and the country's length of
//! alphanumerics, compact or in groups of four, with the mod-97 checksum.

use super::{DigitRunStarts, at, before};
use crate::detector::{Detector, Finding};

/// IBAN lengths by country (the SWIFT registry).
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// Finds IBANs in `text`.
pub(crate) fn find(text: &[u8], out: &mut Vec<Finding>) {
    // An IBAN's check digits start a digit run two letters in.
    let mut next_free = 0;
    for digits in DigitRunStarts::new(text, 2) {
        let i = digits - 2;
        if i < next_free || i + 4 > text.len() {
            continue;
        }
        let (a, b) = (at(text, i), at(text, i + 1));
        let starts = a.is_ascii_uppercase()
            && b.is_ascii_uppercase()
            && at(text, i + 3).is_ascii_digit()
            && !super::is_word(before(text, i));
        let length = if starts {
            LENGTHS
                .iter()
                .find(|(code, _)| **code == [a, b])
                .map(|(_, l)| *l)
        } else {
            None
        };
        let Some(length) = length else {
            continue;
        };
        if let Some(end) = read(text, i, length) {
            out.push(Finding::new(i, end, Detector::Iban));
            next_free = end;
        }
    }
}

/// Reads `length` alphanumerics from `start`, compact or in groups of four
/// separated by single spaces; the end if it is a valid IBAN.
fn read(text: &[u8], start: usize, length: usize) -> Option<usize> {
    let mut characters = Vec::with_capacity(length);
    let mut j = start;
    let mut in_group = 0;
    let mut grouped = None;
    while characters.len() < length {
        let byte = at(text, j);
        if byte.is_ascii_uppercase() || byte.is_ascii_digit() {
            characters.push(byte);
            in_group += 1;
            j += 1;
            continue;
        }
        // A space ends a group of exactly four (the first decides the style).
        if byte == b' ' && in_group == 4 && grouped != Some(false) {
            grouped = Some(true);
            in_group = 0;
            j += 1;
            continue;
        }
        return None;
    }
    if grouped.is_none() {
        grouped = Some(false);
    }
    if super::is_word(at(text, j)) || (grouped == Some(false) && j - start != length) {
        return None;
    }
    mod97(&characters).then_some(j)
}

fn mod97(characters: &[u8]) -> bool {
    // Move the first four characters to the end; letters count as 10..35.
    let rotated = characters.iter().skip(4).chain(characters.iter().take(4));
    let mut remainder: u32 = 0;
    for &c in rotated {
        let value = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ibans(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text.as_bytes(), &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn grouped_and_compact() {
        assert_eq!(
            ibans("refund to IBAN GR16 0110 1250 0000 0001 2300 695 requested"),
            ["GR16 0110 1250 0000 0001 2300 695"]
        );
        assert_eq!(
            ibans("iban=DE89370400440532013000;"),
            ["DE89370400440532013000"]
        );
        assert_eq!(
            ibans("GB82 WEST 1234 5698 7654 32"),
            ["GB82 WEST 1234 5698 7654 32"]
        );
    }

    #[test]
    fn invalid_checksums_and_look_alikes() {
        assert!(ibans("DE89370400440532013001").is_empty());
        assert!(ibans("GR16 0110 1250").is_empty());
        assert!(ibans("XDE89370400440532013000").is_empty());
        assert!(ibans("model NL12 engine").is_empty());
    }
}
