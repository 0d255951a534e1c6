//! [`Stay`]: the nights a booking holds, parsed once at the edge.

use super::parse_date;
use time::Date;

/// A stay of at least one night, starting today or later, checked against
/// how far ahead and how long a booking may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stay {
    check_in: Date,
    check_out: Date,
}

/// Why dates are not a stay we take; the text is for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StayError {
    /// Not `YYYY-MM-DD`.
    #[error("dates are YYYY-MM-DD")]
    Format,
    /// Check-in in the past or more than two years ahead.
    #[error("check_in must be between today (UTC) and two years ahead")]
    OutOfRange,
    /// Zero nights, or more than allowed.
    #[error("check_out must be 1 to {0} days after check_in")]
    Length(u32),
}

impl Stay {
    /// The stay from `check_in` to `check_out` (`YYYY-MM-DD`), seen on
    /// `today`, of at most `max_nights`.
    ///
    /// # Errors
    ///
    /// [`StayError`] saying which rule the dates break.
    pub fn parse(
        check_in: &str,
        check_out: &str,
        today: Date,
        max_nights: u32,
    ) -> Result<Self, StayError> {
        let (Some(check_in), Some(check_out)) = (parse_date(check_in), parse_date(check_out))
        else {
            return Err(StayError::Format);
        };
        if check_in < today || (check_in - today).whole_days() > 730 {
            return Err(StayError::OutOfRange);
        }
        let nights = (check_out - check_in).whole_days();
        if nights < 1 || nights > i64::from(max_nights) {
            return Err(StayError::Length(max_nights));
        }
        Ok(Self {
            check_in,
            check_out,
        })
    }

    /// The first night.
    pub fn check_in(&self) -> Date {
        self.check_in
    }

    /// The departure day.
    pub fn check_out(&self) -> Date {
        self.check_out
    }

    /// How many nights (at least one).
    pub fn nights(&self) -> i64 {
        (self.check_out - self.check_in).whole_days()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_stay_is_one_to_max_nights_from_today() {
        let today = date!(2027 - 01 - 10);
        let stay = Stay::parse("2027-01-10", "2027-01-12", today, 30).unwrap();
        assert_eq!(stay.nights(), 2);
        assert_eq!(
            Stay::parse("2027-01-09", "2027-01-12", today, 30),
            Err(StayError::OutOfRange)
        );
        assert_eq!(
            Stay::parse("2027-01-10", "2027-01-10", today, 30),
            Err(StayError::Length(30))
        );
        assert_eq!(
            Stay::parse("2027-01-10", "2027-02-10", today, 30),
            Err(StayError::Length(30))
        );
        assert_eq!(
            Stay::parse("2029-02-10", "2029-02-11", today, 30),
            Err(StayError::OutOfRange)
        );
        assert_eq!(
            Stay::parse("27-01-10", "2027-01-11", today, 30),
            Err(StayError::Format)
        );
    }
}
