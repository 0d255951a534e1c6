//! Phone numbers of the markets Paystack and Flutterwave settle in: NG,
//! GH, KE, ZA, UG, TZ, RW, ZM, MW, EG, CM, CI and SN, plus GR, US and GB.
//! A digit run is a phone only with evidence: a `+` or `00` country code,
//! an MSISDN with a mobile prefix, a national trunk `0` with a mobile
//! prefix, or (for numbers that could be anything bare) a phone-like
//! grouping. Mobile prefixes and lengths follow libphonenumber's metadata,
//! which the tests use as their oracle.

use super::{DigitRunStarts, at, before, numeric_context_excludes};
use crate::detector::{Detector, Finding};

/// A region's numbering rules, as far as telling phones from other digits
/// needs.
struct Region {
    code: &'static str,
    /// National significant number lengths after `+code`.
    nsn: &'static [usize],
    /// Whether national numbers start with a trunk `0`.
    trunk_zero: bool,
    /// Mobile NSN prefixes (after the trunk digit): bare MSISDN and national
    /// numbers need one of these.
    mobile: &'static [&'static str],
    /// Mobile NSN lengths.
    mobile_len: &'static [usize],
}

const REGIONS: &[Region] = &[
    Region {
        code: "234",
        nsn: &[8, 9, 10],
        trunk_zero: true,
        mobile: &["70", "71", "80", "81", "90", "91"],
        mobile_len: &[10],
    },
    Region {
        code: "233",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["2", "5"],
        mobile_len: &[9],
    },
    Region {
        code: "254",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["7", "1"],
        mobile_len: &[9],
    },
    Region {
        code: "30",
        nsn: &[10],
        trunk_zero: false,
        mobile: &["69"],
        mobile_len: &[10],
    },
    Region {
        code: "27",
        nsn: &[8, 9],
        trunk_zero: true,
        mobile: &["6", "7", "8"],
        mobile_len: &[8, 9],
    },
    Region {
        code: "256",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["7"],
        mobile_len: &[9],
    },
    Region {
        code: "255",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["6", "7"],
        mobile_len: &[9],
    },
    Region {
        code: "250",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["72", "73", "77", "78", "79"],
        mobile_len: &[9],
    },
    Region {
        code: "260",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["5", "7", "9"],
        mobile_len: &[9],
    },
    Region {
        code: "265",
        nsn: &[9],
        trunk_zero: true,
        mobile: &["111", "21", "22", "31", "77", "88", "89", "98", "99"],
        mobile_len: &[9],
    },
    Region {
        code: "20",
        nsn: &[8, 9, 10],
        trunk_zero: true,
        mobile: &["10", "11", "12", "15"],
        mobile_len: &[10],
    },
    // Closed plans without a trunk prefix: a national number is the whole
    // national significant number (in Côte d'Ivoire it starts with 0).
    Region {
        code: "237",
        nsn: &[9],
        trunk_zero: false,
        mobile: &["6", "24"],
        mobile_len: &[9],
    },
    Region {
        code: "221",
        nsn: &[9],
        trunk_zero: false,
        mobile: &["7"],
        mobile_len: &[9],
    },
    Region {
        code: "225",
        nsn: &[10],
        trunk_zero: false,
        mobile: &["01", "05", "07"],
        mobile_len: &[10],
    },
    Region {
        code: "44",
        nsn: &[9, 10],
        trunk_zero: true,
        mobile: &["7"],
        mobile_len: &[10],
    },
    Region {
        code: "1",
        nsn: &[10],
        trunk_zero: false,
        mobile: &[],
        mobile_len: &[],
    },
];

/// Finds phone numbers in `text`.
pub(crate) fn find(text: &[u8], context_excludes: bool, out: &mut Vec<Finding>) {
    let mut next_free = 0;
    for digits in DigitRunStarts::new(text, 0) {
        // A number starts at its first digit, or at a `+` or `(` before it.
        let lead = digits
            .checked_sub(1)
            .filter(|&i| matches!(at(text, i), b'+' | b'('));
        for i in lead.into_iter().chain([digits]) {
            if i < next_free {
                continue;
            }
            if let Some(end) = phone_at(text, i, context_excludes, out) {
                next_free = end;
            }
        }
    }
}

/// Judges a number starting at `i` (a digit, or `+`/`(` before one): where
/// the run it read ends, if it read one.
fn phone_at(
    text: &[u8],
    i: usize,
    context_excludes: bool,
    out: &mut Vec<Finding>,
) -> Option<usize> {
    let identifier =
        before(text, i) == b'-' && before(text, i.saturating_sub(1)).is_ascii_alphanumeric();
    if super::is_word(before(text, i)) || before(text, i) == b'.' || identifier {
        return None;
    }
    let run = read_run(text, i);
    let consumed = run.end.max(i + 1);
    let next = at(text, run.end);
    let continues = super::is_word(next)
        || next == b'@'
        || next == b'*'
        || (next == b'.' && at(text, run.end + 1).is_ascii_digit());
    if run.digits.len() < 7
        || continues
        || numeric_context_excludes(text, run.start, context_excludes)
    {
        return Some(consumed);
    }
    if let Some(country) = judge(text, &run) {
        out.push(Finding {
            start: run.start,
            end: run.end,
            detector: Detector::Phone,
            country: Some(country),
            label: None,
        });
    }
    Some(consumed)
}

/// A phone-shaped run: digits with single separators (space, `-`, `.`,
/// parentheses), optionally led by `+`.
struct Run {
    start: usize,
    end: usize,
    plus: bool,
    digits: Stack<u8, 17>,
    /// Sizes of the digit groups between separators.
    groups: Stack<usize, 8>,
    /// `(0)` after the country code.
    bracketed_zero: bool,
}

/// A small vector on the stack that ignores pushes beyond its capacity
/// (a run that long is not a phone number anyway).
struct Stack<T, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Stack<T, N> {
    fn new() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }

    fn push(&mut self, item: T) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = item;
        }
        self.len += 1;
    }

    /// How many were pushed, kept or not.
    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[T] {
        self.items.get(..self.len.min(N)).unwrap_or_default()
    }
}

fn read_run(text: &[u8], start: usize) -> Run {
    let mut run = Run {
        start,
        end: start,
        plus: at(text, start) == b'+',
        digits: Stack::new(),
        groups: Stack::new(),
        bracketed_zero: false,
    };
    let mut j = if run.plus { start + 1 } else { start };
    let mut group = 0;
    let mut last_digit_end = j;
    while j < text.len() && run.digits.len() <= 16 {
        let byte = at(text, j);
        if byte.is_ascii_digit() {
            run.digits.push(byte - b'0');
            group += 1;
            j += 1;
            last_digit_end = j;
            continue;
        }
        if text.get(j..j + 3) == Some(b"(0)") {
            run.bracketed_zero = true;
            j += 3;
            continue;
        }
        // "0.803…" is a decimal, not a dotted phone number.
        let decimal_point = byte == b'.' && run.digits.len() == 1;
        let separator = matches!(byte, b' ' | b'-' | b'.' | b'(' | b')') && !decimal_point;
        let resumes = at(text, j + 1).is_ascii_digit()
            || (matches!(at(text, j + 1), b' ' | b'(') && at(text, j + 2).is_ascii_digit());
        if separator && resumes {
            if group > 0 {
                run.groups.push(group);
                group = 0;
            }
            j += 1;
            continue;
        }
        break;
    }
    if group > 0 {
        run.groups.push(group);
    }
    run.end = last_digit_end;
    run
}

fn starts_with(digits: &[u8], prefix: &str) -> bool {
    prefix.len() <= digits.len() && prefix.bytes().zip(digits).all(|(p, d)| p - b'0' == *d)
}

fn looks_like_a_date(text: &[u8], run: &Run) -> bool {
    let shape = |i: usize, pattern: &[u8]| {
        pattern.iter().enumerate().all(|(k, p)| {
            let byte = at(text, i + k);
            if *p == b'9' {
                byte.is_ascii_digit()
            } else {
                byte == *p
            }
        })
    };
    // 2024-01-15, 15.01.2024, 2024.01.15, and a time of day after a date:
    // "2024-01-15 12:30" is a run whose last group (the hour) is one or two
    // digits followed by ":" and minutes. A colon alone says nothing: "+234…:
    // insufficient funds" is a phone number before a colon.
    let hour = run
        .groups
        .as_slice()
        .last()
        .is_some_and(|group| *group <= 2);
    let minutes = at(text, run.end) == b':'
        && at(text, run.end + 1).is_ascii_digit()
        && at(text, run.end + 2).is_ascii_digit();
    shape(run.start, b"9999-99-99")
        || shape(run.start, b"99.99.9999")
        || shape(run.start, b"9999.99.99")
        || (hour && minutes)
}

/// The country calling code when the run is a phone number.
fn judge(text: &[u8], run: &Run) -> Option<&'static str> {
    if run.digits.len() < 7 || run.digits.len() > 15 || looks_like_a_date(text, run) {
        return None;
    }
    let digits = run.digits.as_slice();
    if digits.len() != run.digits.len() {
        return None;
    }
    // + or 00 with a country code: strong evidence.
    let international = if run.plus {
        Some(digits)
    } else if starts_with(digits, "00") {
        digits.get(2..)
    } else {
        None
    };
    if let Some(number) = international {
        for region in REGIONS {
            if starts_with(number, region.code) {
                let mut nsn = number.get(region.code.len()..).unwrap_or_default();
                if (run.bracketed_zero || region.trunk_zero) && nsn.first() == Some(&0) {
                    nsn = nsn.get(1..).unwrap_or_default();
                }
                let leading_zero_is_part = region.mobile.iter().any(|m| starts_with(nsn, m));
                if region.nsn.contains(&nsn.len())
                    && nsn.first().is_some_and(|d| *d != 0 || leading_zero_is_part)
                {
                    return Some(region.code);
                }
            }
        }
        return None;
    }
    // MSISDN: country code and a mobile number, no plus.
    for region in REGIONS.iter().filter(|r| !r.mobile.is_empty()) {
        if starts_with(digits, region.code)
            && region
                .mobile_len
                .contains(&(digits.len() - region.code.len()))
        {
            let nsn = digits.get(region.code.len()..).unwrap_or_default();
            if region.mobile.iter().any(|m| starts_with(nsn, m)) {
                return Some(region.code);
            }
        }
    }
    // National forms of the closed plans, known by their grouping:
    // Cameroon "6 71 94 92 34", Senegal "70 838 59 08", Côte d'Ivoire
    // "07 07 12 3456" or "07 07 12 34 56".
    match (run.groups.as_slice(), digits.first(), digits.get(1)) {
        ([1, 2, 2, 2, 2], Some(6), _) | ([1, 2, 2, 2, 2], Some(2), Some(4)) => {
            return Some("237");
        }
        ([2, 3, 2, 2], Some(7), _) => return Some("221"),
        ([2, 2, 2, 4] | [2, 2, 2, 2, 2], Some(0), Some(1 | 5 | 7)) => return Some("225"),
        _ => {}
    }
    // National with trunk 0 and a mobile prefix.
    if digits.first() == Some(&0) {
        let nsn = digits.get(1..).unwrap_or_default();
        for region in REGIONS.iter().filter(|r| r.trunk_zero) {
            if region.mobile_len.contains(&nsn.len())
                && region.mobile.iter().any(|m| starts_with(nsn, m))
            {
                return Some(region.code);
            }
        }
        return None;
    }
    // Bare Greek mobiles: 69x xxx xxxx.
    if digits.len() == 10 && starts_with(digits, "69") {
        return Some("30");
    }
    // Numbers that could be anything bare need a phone grouping: US
    // 3-3-4 ("(555) 222-2222"), Greek landlines 3-3-4 or 2-4-4.
    if run.groups.len() > 8 {
        return None;
    }
    match (run.groups.as_slice(), digits.first()) {
        ([2, 4, 4], Some(2)) => Some("30"),
        ([3, 3, 4], Some(2..=9)) => Some("1"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phones(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text.as_bytes(), false, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn forms_that_are_phones() {
        for (text, phone) in [
            ("customer phone 08031234567 verified", "08031234567"),
            ("{\"msisdn\":\"2348031234567\"}", "2348031234567"),
            ("call +234 803 123 4567 now", "+234 803 123 4567"),
            ("call +234 (0) 803 123 4567", "+234 (0) 803 123 4567"),
            ("office tel +30 210 123 4567", "+30 210 123 4567"),
            ("sms to 00306941234567", "00306941234567"),
            ("sms to 6941234567 at 1694123456", "6941234567"),
            ("mpesa +254712345678", "+254712345678"),
            ("ghana 0244123456", "0244123456"),
            ("us (555) 222-2222", "(555) 222-2222"),
            ("uk 07700 900123", "07700 900123"),
            ("za 0821234567", "0821234567"),
            (
                "payment failed for +2348031234567: insufficient funds",
                "+2348031234567",
            ),
            ("sms 08031234567: delivered", "08031234567"),
            ("to=+30 694 123 4567:ok", "+30 694 123 4567"),
        ] {
            assert_eq!(phones(text), [phone], "{text}");
        }
    }

    #[test]
    fn digits_that_are_not_phones() {
        for text in [
            "settlement window 2024-01-15 12 to 2024-01-15 18",
            "epoch 1694123456",
            "amount=2500000 kobo",
            "build 20240115",
            "Bump to version 1.2.3.4",
            "order_id=08031234567",
            "at 12:30:45",
            "window 2024-01-15 12:30 to 2024-01-15 18:45",
            "20240115 12:30:01 settled",
            "id 1700000000123",
            "ratio 0.8031234567",
            "T08031234567",
        ] {
            assert!(phones(text).is_empty(), "{text}: {:?}", phones(text));
        }
    }
}
