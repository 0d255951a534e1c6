//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

/// A parsed `Retry-After` header value.
///
/// ```
/// use payguard_core::RetryAfter;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// assert_eq!(RetryAfter::parse(b"120"), Some(RetryAfter::Delay(Duration::from_secs(120))));
///
/// let at = RetryAfter::parse(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // 7 s earlier
/// assert_eq!(at.delay_from(now), Duration::from_secs(7));
///
/// // Garbage is treated as absent.
/// assert_eq!(RetryAfter::parse(b"soon"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <delta-seconds>`.
    Delay(Duration),
    /// `Retry-After: <HTTP-date>`.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a header value. Surrounding whitespace is allowed; anything
    /// else that is not a non-negative integer or a valid HTTP-date (IMF-fixdate,
    /// RFC 850 or asctime form) gives `None`. Integers too large for `u64`
    /// saturate, so the caller's clamp decides.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = value.trim_ascii();
        if value.is_empty() {
            return None;
        }
        if value.iter().all(u8::is_ascii_digit) {
            let seconds = value.iter().fold(0u64, |acc, digit| {
                acc.saturating_mul(10)
                    .saturating_add(u64::from(digit - b'0'))
            });
            return Some(RetryAfter::Delay(Duration::from_secs(seconds)));
        }
        let text = std::str::from_utf8(value).ok()?;
        httpdate::parse_http_date(text).ok().map(RetryAfter::At)
    }

    /// How long to wait from `now`. A date in the past means no wait.
    pub fn delay_from(self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(delay) => delay,
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(
            RetryAfter::parse(b"0"),
            Some(RetryAfter::Delay(Duration::ZERO))
        );
        assert_eq!(
            RetryAfter::parse(b"  30 \t"),
            Some(RetryAfter::Delay(Duration::from_secs(30)))
        );
        assert_eq!(
            RetryAfter::parse(b"007"),
            Some(RetryAfter::Delay(Duration::from_secs(7)))
        );
    }

    #[test]
    fn huge_delta_saturates() {
        assert_eq!(
            RetryAfter::parse(b"18446744073709551615"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        assert_eq!(
            RetryAfter::parse(b"99999999999999999999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
    }

    #[test]
    fn garbage_is_absent() {
        for value in [
            &b""[..],
            b"   ",
            b"-1",
            b"-0",
            b"+5",
            b"1.5",
            b"1e3",
            b"30s",
            b"0x10",
            b"soon",
            b"Sun, 06 Nov 1994 08:49:37",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"\xff\xfe",
            b"3 0",
        ] {
            assert_eq!(
                RetryAfter::parse(value),
                None,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn http_date_forms() {
        let expected = Some(RetryAfter::At(at(784_111_777)));
        assert_eq!(
            RetryAfter::parse(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            expected
        );
        assert_eq!(
            RetryAfter::parse(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            expected
        );
        assert_eq!(RetryAfter::parse(b"Sun Nov  6 08:49:37 1994"), expected);
    }

    #[test]
    fn date_in_the_past_means_now() {
        let value = RetryAfter::parse(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(value.delay_from(at(1_700_000_000)), Duration::ZERO);
    }

    #[test]
    fn date_in_the_future_is_the_difference() {
        let value = RetryAfter::parse(b"Tue, 14 Nov 2023 22:15:20 GMT").unwrap();
        assert_eq!(
            value.delay_from(at(1_700_000_000)),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn far_future_date() {
        let value = RetryAfter::parse(b"Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert_eq!(
            value.delay_from(at(1_700_000_000)),
            Duration::from_secs(253_402_300_799 - 1_700_000_000)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..64), now in any::<u32>()) {
            if let Some(parsed) = RetryAfter::parse(&value) {
                let _ = parsed.delay_from(at(u64::from(now)));
            }
        }

        #[test]
        fn any_u64_round_trips(secs in any::<u64>()) {
            prop_assert_eq!(
                RetryAfter::parse(secs.to_string().as_bytes()),
                Some(RetryAfter::Delay(Duration::from_secs(secs)))
            );
        }

        #[test]
        fn any_formatted_date_round_trips(secs in 0u64..253_402_300_799) {
            let text = httpdate::fmt_http_date(at(secs));
            prop_assert_eq!(RetryAfter::parse(text.as_bytes()), Some(RetryAfter::At(at(secs))));
        }
    }
}
