//! [`Quota`]: how many requests per period, and how many at once.

use payguard_core::ConfigError;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A limit: `count` requests per `period` on average, with a burst of
/// `burst` requests at once from idle (by default `count`).
///
/// The generic cell rate algorithm spaces requests `period / count` apart
/// (the *emission interval*) and tolerates `burst - 1` of them early, so
/// any window of length `W` admits at most `burst + W / interval`
/// requests. A burst of 1 spaces every request evenly.
///
/// ```
/// use payguard_ratelimit::Quota;
/// use std::time::Duration;
///
/// let quota: Quota = "50/s".parse()?;
/// assert_eq!(quota.interval(), Duration::from_millis(20));
/// assert_eq!(quota.burst(), 50);
///
/// let tight = Quota::new(100, Duration::from_secs(60))?.with_burst(10)?;
/// assert_eq!((tight.count(), tight.burst()), (100, 10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
    /// The emission interval, in nanoseconds (at least 1).
    interval_ns: u64,
}

impl Quota {
    /// `count` requests per `period`, all of them allowed at once from
    /// idle.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `count` is zero, `period` is zero or longer
    /// than a year, or `period / count` is under a nanosecond.
    pub fn new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        if count == 0 {
            return Err(ConfigError::new("count", "at least 1"));
        }
        if period.is_zero() || period > Duration::from_secs(366 * 86_400) {
            return Err(ConfigError::new("period", "above zero and at most a year"));
        }
        let interval_ns = u64::try_from(period.as_nanos() / u128::from(count)).unwrap_or(u64::MAX);
        if interval_ns == 0 {
            return Err(ConfigError::new(
                "count",
                "at most one request per nanosecond of the period",
            ));
        }
        Ok(Self {
            count,
            period,
            burst: count,
            interval_ns,
        })
    }

    /// `count` requests per second.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn per_second(count: u32) -> Result<Self, ConfigError> {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn per_minute(count: u32) -> Result<Self, ConfigError> {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn per_hour(count: u32) -> Result<Self, ConfigError> {
        Self::new(count, Duration::from_secs(3600))
    }

    /// This quota with `burst` requests allowed at once from idle.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `burst` is zero.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(ConfigError::new("burst", "at least 1"));
        }
        self.burst = burst;
        Ok(self)
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Requests allowed at once from idle.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How far apart requests are spaced on average: `period / count`.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    pub(crate) fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// How early a request may come: `(burst - 1)` intervals, in
    /// nanoseconds.
    pub(crate) fn tolerance_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst - 1))
    }

    /// This quota's share when `parts` instances each enforce it alone:
    /// `count / parts` per period (at least 1) and `burst / parts` (at
    /// least 1).
    pub fn share(&self, parts: u32) -> Self {
        let parts = parts.max(1);
        let count = (self.count / parts).max(1);
        let burst = (self.burst / parts).max(1);
        Self::new(count, self.period)
            .and_then(|quota| quota.with_burst(burst))
            .unwrap_or(*self)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 if self.period.subsec_nanos() == 0 => "s".to_owned(),
            60 if self.period.subsec_nanos() == 0 => "min".to_owned(),
            3600 if self.period.subsec_nanos() == 0 => "h".to_owned(),
            _ => format!("{}ms", self.period.as_millis()),
        };
        write!(formatter, "{}/{unit}", self.count)?;
        if self.burst != self.count {
            write!(formatter, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

/// A quota that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a quota is `N/s`, `N/min` or `N/h`, optionally followed by `burst B` (for example `50/s` or `600/min burst 20`): {0}"
)]
pub struct ParseQuotaError(String);

impl FromStr for Quota {
    type Err = ParseQuotaError;

    /// `N/s`, `N/min`, `N/h` (also `second`, `minute`, `hour`), then an
    /// optional ` burst B`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| ParseQuotaError(why.to_owned());
        let mut words = text.split_whitespace();
        let rate = words.next().ok_or_else(|| fail("empty"))?;
        let (count, unit) = rate.split_once('/').ok_or_else(|| fail("no `/`"))?;
        let count: u32 = count
            .parse()
            .map_err(|_| fail("the count is not a whole number"))?;
        let period = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(fail("the unit is not s, min or h")),
        };
        let quota = Self::new(count, period).map_err(|error| fail(&error.to_string()))?;
        match (words.next(), words.next(), words.next()) {
            (None, _, _) => Ok(quota),
            (Some("burst"), Some(burst), None) => {
                let burst: u32 = burst
                    .parse()
                    .map_err(|_| fail("the burst is not a whole number"))?;
                quota
                    .with_burst(burst)
                    .map_err(|error| fail(&error.to_string()))
            }
            _ => Err(fail("trailing words")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_read_and_print_back() {
        for text in ["50/s", "100/min", "1000/h", "600/min burst 20"] {
            let quota: Quota = text.parse().unwrap();
            assert_eq!(quota.to_string(), text);
        }
        let quota: Quota = "3/s".parse().unwrap();
        assert_eq!(quota.interval_ns(), 333_333_333);
        assert_eq!(quota.tolerance_ns(), 666_666_666);
        for bad in [
            "",
            "50",
            "0/s",
            "5/day",
            "x/s",
            "5/s burst",
            "5/s burst 0",
            "5/s burst 2 x",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad:?}");
        }
        assert!(Quota::new(u32::MAX, Duration::from_nanos(1)).is_err());
    }

    #[test]
    fn a_share_is_never_zero() {
        let quota = Quota::per_second(10).unwrap().with_burst(4).unwrap();
        let share = quota.share(3);
        assert_eq!((share.count(), share.burst()), (3, 1));
        assert_eq!(Quota::per_second(1).unwrap().share(5).count(), 1);
    }
}
