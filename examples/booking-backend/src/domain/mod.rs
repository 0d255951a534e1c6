//! Listings, bookings and the states money moves through.

mod stay;

pub use stay::{Stay, StayError};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

/// The host who gets paid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Host {
    /// Name on the bank account.
    pub name: String,
    /// Email.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Bank code.
    pub bank_code: String,
    /// Account number (10 digits).
    pub account_number: String,
}

/// Something to book.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listing {
    /// `ls_...`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Price per night, minor units.
    pub nightly_rate_minor: i64,
    /// ISO currency.
    pub currency: String,
    /// Who gets paid.
    pub host: Host,
}

/// The person staying.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Guest {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Phone.
    pub phone: String,
}

/// Where a booking is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Dates held until the hold expires.
    PendingPayment,
    /// Paid; money in escrow.
    Confirmed,
    /// Cancelled by the guest.
    Cancelled,
    /// Not paid in time.
    Expired,
    /// The host was paid.
    Completed,
}

/// Where the guest's money is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Escrow {
    /// No money yet.
    None,
    /// Paid and held.
    Held,
    /// Paid out to the host.
    Released,
    /// Given back to the guest.
    Refunded,
}

/// Where the host's payout is. Moves forward only: `pending` to `paid`
/// or `failed`, `paid` to `reversed`; a late `paid` never undoes `reversed`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Not started.
    None,
    /// Sent to the gateway; its outcome is awaited.
    Pending,
    /// The gateway paid the host.
    Paid,
    /// The gateway could not pay.
    Failed,
    /// Paid, then reversed by the bank.
    Reversed,
}

impl PayoutStatus {
    /// Whether an event saying `next` may move a payout from `self`.
    pub fn may_become(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Pending, Self::Paid | Self::Failed | Self::Reversed)
                | (Self::Paid, Self::Reversed)
        )
    }
}

/// The payment gateways.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Gateway {
    /// Primary.
    Paystack,
    /// Fail-over.
    Flutterwave,
}

impl Gateway {
    /// `paystack` or `flutterwave`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paystack => "paystack",
            Self::Flutterwave => "flutterwave",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "paystack" => Some(Self::Paystack),
            "flutterwave" => Some(Self::Flutterwave),
            _ => None,
        }
    }
}

/// How the guest pays.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Payment {
    /// Which gateway.
    pub gateway: Gateway,
    /// The charge reference.
    pub reference: String,
    /// Where the guest pays.
    pub authorization_url: String,
}

/// A booking.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Booking {
    /// `bk...`.
    pub id: String,
    /// What is booked.
    pub listing_id: String,
    /// Who stays.
    pub guest: Guest,
    /// First night.
    #[serde(with = "iso_date")]
    pub check_in: Date,
    /// Day of departure.
    #[serde(with = "iso_date")]
    pub check_out: Date,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO currency.
    pub currency: String,
    /// Where the booking is.
    pub status: BookingStatus,
    /// When an unpaid hold lapses.
    #[serde(with = "time::serde::rfc3339")]
    pub hold_expires_at: OffsetDateTime,
    /// How the guest pays, once a gateway took the charge.
    pub payment: Option<Payment>,
    /// Where the money is.
    pub escrow: Escrow,
    /// The host's payout.
    pub payout_status: PayoutStatus,
    /// `escrow_<booking id>`, once the payout started.
    pub payout_reference: Option<String>,
    /// `pending`, `processed`, `failed`, once a refund started.
    pub refund_status: Option<String>,
    /// How many times reconciliation asked the gateway about the charge.
    pub gateway_checks: u32,
    /// When reconciliation may ask again (it backs off, see
    /// [`check_backoff`]).
    #[serde(skip)]
    pub next_check_at: Option<OffsetDateTime>,
}

/// What one guest may hold.
///
/// # Default
///
/// Stays of up to 30 nights; three unpaid holds per guest email at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// The longest stay one booking may hold (`422 invalid_dates` beyond).
    pub max_nights: u32,
    /// Unpaid holds one guest email may have at once (`429 too_many_holds`
    /// beyond).
    pub open_holds: u32,
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            max_nights: 30,
            open_holds: 3,
        }
    }
}

/// How long reconciliation waits before asking the gateway about an unpaid
/// charge again, after `checks` earlier questions: a minute, doubling, at
/// most six hours. A booking whose guest never reached the payment page
/// costs about 16 questions over the 48 hours it is watched, not 2,900.
pub fn check_backoff(checks: u32) -> std::time::Duration {
    let secs = 2u64.saturating_pow(checks).saturating_mul(60);
    std::time::Duration::from_secs(secs.min(6 * 3600))
}

impl Booking {
    /// The payout reference: deterministic, so a retried payout is the same
    /// transfer.
    pub fn payout_reference_for(id: &str) -> String {
        format!("escrow_{id}")
    }
}

mod iso_date {
    use serde::Serializer;
    use time::Date;
    use time::macros::format_description;

    pub(super) fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        let text = date
            .format(format_description!("[year]-[month]-[day]"))
            .map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

/// Parses `YYYY-MM-DD`: exactly four digits of year (no sign, no
/// expanded years), two of month, two of day.
pub fn parse_date(text: &str) -> Option<Date> {
    let shape = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// A random id with a prefix: `bk` + 16 lowercase hex digits. Paystack
/// charge references and transfer references both accept it.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_asks_about_a_lapsed_charge_a_bounded_number_of_times() {
        let watched = 48 * 3600 + 15 * 60;
        let (mut elapsed, mut checks) = (0, 0);
        while elapsed <= watched {
            elapsed += check_backoff(checks).as_secs();
            checks += 1;
        }
        assert_eq!(checks, 16);
        assert_eq!(check_backoff(0).as_secs(), 60);
        assert_eq!(check_backoff(u32::MAX).as_secs(), 6 * 3600);
    }

    #[test]
    fn dates_are_exactly_yyyy_mm_dd() {
        assert!(parse_date("2027-01-01").is_some());
        for odd in [
            "+2027-01-01",
            "2027-1-01",
            "2027-01-01 ",
            "20270-01-01",
            "2027-02-30",
            "",
        ] {
            assert!(parse_date(odd).is_none(), "{odd}");
        }
    }
}
