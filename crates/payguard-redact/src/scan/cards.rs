//! Card numbers: digit groups with one consistent separator, issuer range,
//! per-brand length and Luhn, with boundaries that keep decimals, floats,
//! UUIDs, references and already-masked numbers out.

use super::{DigitRunStarts, at, before, numeric_context_excludes};
use crate::detector::{Detector, Finding};

/// The most groups of a candidate looked at (a 4-4-4-4-3 card has 5).
const MAX_GROUPS: usize = 8;

/// Finds card numbers in `text`.
pub(crate) fn find(text: &[u8], context_excludes: bool, out: &mut Vec<Finding>) {
    let mut i = 0;
    for start in DigitRunStarts::new(text, 0) {
        if start < i {
            continue;
        }
        let mut groups = [(0usize, 0usize); MAX_GROUPS];
        let mut group_count = 0;
        let mut separator = None;
        let mut j = start;
        loop {
            let group_start = j;
            while at(text, j).is_ascii_digit() {
                j += 1;
            }
            if let Some(slot) = groups.get_mut(group_count) {
                *slot = (group_start, j);
                group_count += 1;
            }
            let next = at(text, j);
            if matches!(next, b' ' | b'-')
                && at(text, j + 1).is_ascii_digit()
                && separator.is_none_or(|s| s == next)
            {
                separator = Some(next);
                j += 1;
                continue;
            }
            break;
        }
        i = j;
        let digits: usize = groups.iter().take(group_count).map(|(a, b)| b - a).sum();
        if digits < 12 || !left_boundary_ok(text, start) || !right_boundary_ok(text, j) {
            continue;
        }
        if numeric_context_excludes(text, start, context_excludes) {
            continue;
        }
        find_in_groups(text, groups.get(..group_count).unwrap_or_default(), out);
    }
}

/// A card may not continue a word, a decimal, a masked number or an
/// identifier.
fn left_boundary_ok(text: &[u8], start: usize) -> bool {
    let previous = before(text, start);
    if previous.is_ascii_alphanumeric()
        || matches!(previous, b'_' | b'.' | b'*' | b'#' | b'/' | b'\\')
    {
        return false;
    }
    // "abc-4111…" is part of an identifier.
    !(previous == b'-' && before(text, start - 1).is_ascii_alphanumeric())
}

fn right_boundary_ok(text: &[u8], end: usize) -> bool {
    let next = at(text, end);
    if next.is_ascii_alphanumeric() || matches!(next, b'_' | b'*' | b'/') {
        return false;
    }
    let after = at(text, end + 1);
    // Decimals and floats: "1234.5", "1,234", "8.4e-47"; UUID-like "-b66c".
    let decimal = matches!(next, b'.' | b',') && after.is_ascii_digit();
    let identifier = next == b'-' && after.is_ascii_alphanumeric();
    !decimal && !identifier
}

/// Tries runs of whole groups, longest first from each starting group, and
/// reports the valid cards without overlapping them.
fn find_in_groups(text: &[u8], groups: &[(usize, usize)], out: &mut Vec<Finding>) {
    let mut first = 0;
    'start: while first < groups.len() {
        for last in (first..groups.len()).rev() {
            let Some(window) = groups.get(first..=last) else {
                continue;
            };
            let mut digits = [0u8; 19];
            let mut count = 0;
            let mut too_long = false;
            for &(a, b) in window {
                for &digit in text.get(a..b).unwrap_or_default() {
                    match digits.get_mut(count) {
                        Some(slot) => *slot = digit - b'0',
                        None => too_long = true,
                    }
                    count += 1;
                }
            }
            if too_long || count < 12 {
                continue;
            }
            let mut sizes = [0usize; MAX_GROUPS];
            for (size, (a, b)) in sizes.iter_mut().zip(window) {
                *size = b - a;
            }
            let digits = digits.get(..count).unwrap_or_default();
            let shape = card_shape(sizes.get(..window.len()).unwrap_or_default());
            if shape && issuer_accepts(digits) && luhn(digits) {
                if let (Some(&(a, _)), Some(&(_, b))) = (window.first(), window.last()) {
                    out.push(Finding::new(a, b, Detector::Card));
                }
                first = last + 1;
                continue 'start;
            }
        }
        first += 1;
    }
}

/// Compact, all groups of four but the last (4-4-4-4, 4-4-4-4-3, ...), or
/// Amex/Diners 4-6-5 and 4-6-4.
fn card_shape(sizes: &[usize]) -> bool {
    match sizes {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [rest @ .., last] => rest.iter().all(|size| *size == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Whether an issuer uses this prefix with this length.
pub(crate) fn issuer_accepts(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, digit| acc * 10 + u32::from(*digit))
    };
    let len = digits.len();
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = matches!(p2, 34 | 37) && len == 15;
    let discover =
        (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
            && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let diners =
        ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let verve = (matches!(p4, 5060 | 5061 | 5078 | 6500)
        || (506_099..=506_198).contains(&p6)
        || (650_002..=650_027).contains(&p6))
        && matches!(len, 16 | 18 | 19);
    let mir = (2200..=2204).contains(&p4) && (16..=19).contains(&len);
    let maestro = matches!(p2, 50 | 56 | 57 | 58 | 63 | 67) && (12..=19).contains(&len);
    visa || mastercard || amex || discover || jcb || diners || unionpay || verve || mir || maestro
}

/// The Luhn checksum.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            let digit = u32::from(*digit);
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text.as_bytes(), false, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn brands_and_groupings() {
        assert_eq!(cards("card=4111111111111111 ok"), ["4111111111111111"]);
        assert_eq!(cards("4111 1111 1111 1111"), ["4111 1111 1111 1111"]);
        assert_eq!(cards("4111-1111-1111-1111."), ["4111-1111-1111-1111"]);
        assert_eq!(cards("amex 3782 822463 10005"), ["3782 822463 10005"]);
        assert_eq!(cards("mc 2221000000000009"), ["2221000000000009"]);
        assert_eq!(cards("verve 5061460410120223210"), ["5061460410120223210"]);
        assert_eq!(cards("{\"pan\":4000056655665556}"), ["4000056655665556"]);
    }

    #[test]
    fn never_bridges_or_mixes_separators() {
        assert_eq!(
            cards("cards: 4111111111111111 123 items"),
            ["4111111111111111"]
        );
        assert_eq!(cards("order 123 4111111111111111"), ["4111111111111111"]);
        assert!(cards("4111 1111-1111 1111").is_empty());
    }

    #[test]
    fn look_alikes_are_kept() {
        for text in [
            "411111******1111",
            "47223179-9330-4259-b66c-f2db26efb20c",
            "ratio=8.46786664623715e-47",
            "T685312322670591",
            "at 1700000000000 ms",
            "x=0.4111111111111111",
            "4111111111111112",
            "order_id=4111111111111111",
            "amount: 4111111111111111",
        ] {
            assert!(cards(text).is_empty(), "{text}");
        }
    }
}
