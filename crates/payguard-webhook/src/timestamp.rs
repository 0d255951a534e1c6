//! Signed timestamps and the replay window, in overflow-free arithmetic.

use crate::error::VerifyError;
use http::HeaderName;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far a signed timestamp may be from now, each way, as a verifier was
/// built with ([`VerifierBuilder::max_age`](crate::VerifierBuilder::max_age),
/// [`max_future`](crate::VerifierBuilder::max_future)). Bounds are
/// inclusive: with a 300 s `max_age`, a delivery exactly 300 s old passes
/// and one 301 s old does not.
///
/// # Default
///
/// 300 s past, 300 s future (Standard Webhooks' reference window; Stripe's
/// and Slack's 5 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    pub(crate) max_age: Duration,
    pub(crate) max_future: Duration,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_future: Duration::from_secs(300),
        }
    }
}

impl ReplayWindow {
    /// How old a signed timestamp may be.
    pub const fn max_age(&self) -> Duration {
        self.max_age
    }

    /// How far ahead a signed timestamp may be.
    pub const fn max_future(&self) -> Duration {
        self.max_future
    }

    /// The longest a signed delivery stays acceptable; a de-duplication
    /// store must remember event ids at least this long.
    pub fn span(&self) -> Duration {
        self.max_age.saturating_add(self.max_future)
    }

    pub(crate) fn check(&self, signed_at: u64, now: SystemTime) -> Result<(), VerifyError> {
        let now = unix_seconds(now);
        let signed_at = i128::from(signed_at);
        let age = now - signed_at;
        if age > i128::from(self.max_age.as_secs()) {
            return Err(VerifyError::TimestampTooOld {
                age_secs: u64::try_from(age).unwrap_or(u64::MAX),
                max_age_secs: self.max_age.as_secs(),
            });
        }
        if -age > i128::from(self.max_future.as_secs()) {
            return Err(VerifyError::TimestampTooNew {
                ahead_secs: u64::try_from(-age).unwrap_or(u64::MAX),
                max_future_secs: self.max_future.as_secs(),
            });
        }
        Ok(())
    }
}

/// Seconds since the epoch, negative before it.
pub(crate) fn unix_seconds(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::from(after.as_secs()),
        Err(before) => -i128::from(before.duration().as_secs()),
    }
}

/// A timestamp header: 1 to 19 ASCII digits that fit an `i64`. Signs,
/// spaces, fractions and anything longer are malformed (never a panic).
pub(crate) fn parse(header: &HeaderName, value: &[u8]) -> Result<u64, VerifyError> {
    let malformed = || VerifyError::MalformedHeader {
        header: header.clone(),
        reason: "the timestamp is not a non-negative integer number of seconds",
    };
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    let seconds = value
        .iter()
        .try_fold(0u64, |acc, digit| {
            acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .filter(|seconds| i64::try_from(*seconds).is_ok());
    seconds.ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn bounds_are_inclusive() {
        let window = ReplayWindow::default();
        assert!(window.check(1000, at(1300)).is_ok());
        assert_eq!(
            window.check(1000, at(1301)).unwrap_err().code(),
            "timestamp_too_old"
        );
        assert!(window.check(1300, at(1000)).is_ok());
        assert_eq!(
            window.check(1301, at(1000)).unwrap_err().code(),
            "timestamp_too_new"
        );
    }

    #[test]
    fn separate_limits() {
        let window = ReplayWindow {
            max_age: Duration::from_secs(600),
            max_future: Duration::from_secs(5),
        };
        assert!(window.check(1000, at(1600)).is_ok());
        assert!(window.check(1006, at(1000)).is_err());
        assert_eq!(window.span(), Duration::from_secs(605));
    }

    #[test]
    fn extreme_values_never_overflow() {
        let window = ReplayWindow::default();
        assert!(window.check(i64::MAX as u64, at(0)).is_err());
        assert!(window.check(0, at(u64::MAX / 2)).is_err());
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1_000_000);
        assert!(window.check(0, before_epoch).is_err());
    }

    #[test]
    fn parsing_is_strict() {
        let t = HeaderName::from_static("t");
        assert_eq!(parse(&t, b"1614265330"), Ok(1_614_265_330));
        assert_eq!(parse(&t, b"9223372036854775807"), Ok(i64::MAX as u64));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1.5",
            b"9223372036854775808",
            b"99999999999999999999",
            b"-9223372036854775808",
            b"1e9",
        ] {
            assert_eq!(
                parse(&t, bad).unwrap_err().code(),
                "malformed_header",
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
