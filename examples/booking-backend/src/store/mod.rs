//! Where bookings live: the [`BookingStore`] trait, and two backends that
//! pass one conformance suite (`tests/store.rs`). PostgreSQL is the system
//! of record, where the database itself refuses a double booking; memory
//! keeps the same rules for one process.

mod memory;
mod postgres;

pub use memory::MemoryStore;
pub use postgres::{MIGRATOR, PgStore, PgStoreOptions};

use crate::domain::{Booking, BookingStatus, Escrow, Guest, Listing, Payment, PayoutStatus};
use axum::response::Response;
use payguard_idempotency::IdempotencyClaim;
use payguard_lock::Fence;
use std::time::Duration;
use time::Date;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another live booking has one of these nights.
    #[error("the dates overlap another booking")]
    DatesUnavailable,
    /// The guest already has as many unpaid holds as allowed.
    #[error("the guest holds too many unpaid bookings")]
    TooManyHolds,
    /// A row this request needs is locked by another transaction for
    /// longer than the lock timeout: nothing was written; try again.
    #[error("the data is busy (a lock wait ran out)")]
    Contended,
    /// A statement ran past the statement timeout: nothing was written.
    #[error("the database is too slow (a statement ran out of time)")]
    TimedOut,
    /// The payout's lock was taken over; nothing was written.
    #[error("the job lost its lock: {0}")]
    Fenced(#[from] payguard_lock::LockError),
    /// The database failed.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The request's answer could not be stored with its write (its
    /// idempotency claim was lost, or the store failed); nothing was
    /// written.
    #[error("the answer could not be stored: {0}")]
    Answer(#[from] payguard_idempotency::StoreError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error.as_database_error().and_then(|error| error.code()) {
            Some(code) if code == "55P03" => Self::Contended,
            Some(code) if code == "57014" => Self::TimedOut,
            _ => Self::Database(error),
        }
    }
}

/// What became of a received webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Applied.
    Processed,
    /// Not applied yet; the provider delivers it again.
    Failed(String),
    /// Authentic but unprocessable: acknowledged, kept for a person.
    Dead(String),
}

impl InboxOutcome {
    /// The inbox row's status: `processed`, `failed` or `dead`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Failed(_) => "failed",
            Self::Dead(_) => "dead",
        }
    }

    /// Why it was not applied.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Processed => None,
            Self::Failed(why) | Self::Dead(why) => Some(why),
        }
    }
}

/// A hold to place.
#[derive(Debug, Clone)]
pub struct NewHold {
    /// The booking id.
    pub id: String,
    /// What is booked.
    pub listing_id: String,
    /// Who stays.
    pub guest: Guest,
    /// First night.
    pub check_in: Date,
    /// Departure.
    pub check_out: Date,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO currency.
    pub currency: String,
    /// How long the unpaid hold lasts.
    pub hold_for: Duration,
    /// Unpaid holds the guest's email may have at once, this one included.
    pub open_holds: u32,
}

/// The request's answer, stored with the write that produced it where the
/// backend can (PostgreSQL: one transaction), so that a crash or a failed
/// completion can never leave a write whose retry writes again.
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    /// The request's idempotency claim.
    pub claim: &'a IdempotencyClaim,
    /// The response the write answers with.
    pub respond: fn(&Booking) -> Response,
}

impl std::fmt::Debug for Answer<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Answer").finish_non_exhaustive()
    }
}

/// A payment attached to its booking.
#[derive(Debug)]
pub struct Attached {
    /// The booking with its payment.
    pub booking: Booking,
    /// The answer, when it was stored in the same transaction; `None` when
    /// the idempotency layer stores it after the handler.
    pub answer: Option<Response>,
}

/// What a payment confirmation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The booking is now confirmed and its money held.
    Confirmed(Booking),
    /// It already was (a duplicate or late event).
    AlreadyConfirmed(Booking),
    /// Money arrived for a booking that can no longer be honoured
    /// (cancelled, or expired and re-let): refund it.
    Orphaned(Booking),
    /// The amount or currency is not what the booking costs: refund it.
    Mismatch(Booking),
    /// The booking was cancelled or lapsed and its refund already started.
    Refunded(Booking),
    /// No booking has this payment reference.
    Unknown,
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// Cancelled; no money had been taken.
    Cancelled(Booking),
    /// Cancelled; the guest's money must be refunded.
    Refund(Booking),
    /// Too late (paid out, or already over).
    NotCancellable(Booking),
}

/// What an operator watches (exported as gauges when metrics are
/// scraped; each alert has a runbook in `docs/runbooks/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Confirmed bookings whose payout was due (check-in plus the escrow
    /// hold) longer ago than the patience given, and has not reached the
    /// host: not started, or started without an outcome.
    pub stuck_payouts: u64,
    /// Refunds claimed whose claim lapsed without the gateway taking them.
    pub unsent_refunds: u64,
    /// Webhooks received but not applied yet (the provider redelivers).
    pub failed_webhooks: u64,
    /// Authentic webhooks that can never be applied, kept for a person.
    pub dead_webhooks: u64,
}

/// Storage for listings, bookings and the webhook inbox. Every method is
/// one transaction; every state change moves forward only.
#[async_trait::async_trait]
pub trait BookingStore: Send + Sync + std::fmt::Debug {
    /// Whether several instances share this store (and a job's writes must
    /// be fenced).
    fn is_shared(&self) -> bool;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Saves a listing.
    async fn create_listing(&self, listing: &Listing) -> Result<(), StoreError>;

    /// A listing.
    async fn listing(&self, id: &str) -> Result<Option<Listing>, StoreError>;

    /// Holds the dates, unless a live booking has one of the nights
    /// (lapsed holds on them are expired first) or the guest holds
    /// `open_holds` unpaid bookings already.
    async fn place_hold(&self, hold: NewHold) -> Result<Booking, StoreError>;

    /// Records the charge a gateway took for a held booking, and with
    /// `answer` stores the request's answer with it.
    async fn attach_payment(
        &self,
        id: &str,
        payment: &Payment,
        answer: Option<Answer<'_>>,
    ) -> Result<Option<Attached>, StoreError>;

    /// Gives up an unpaid hold (no gateway would take the payment).
    async fn release_hold(&self, id: &str) -> Result<(), StoreError>;

    /// A booking.
    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError>;

    /// Every booking (for the demo's checks and the audit).
    async fn bookings(&self) -> Result<Vec<Booking>, StoreError>;

    /// Bookings by id after `after` (all when `None`), with `status` if
    /// given; at most `limit`.
    async fn list(
        &self,
        status: Option<BookingStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Booking>, StoreError>;

    /// Bookings the reconciliation job should ask the gateway about (see
    /// [`needs_reconciliation`]), at most `limit`, by id.
    async fn reconcilable(&self, limit: u32) -> Result<Vec<Booking>, StoreError>;

    /// Records that reconciliation asked the gateway about `id`'s charge,
    /// and when it may ask again ([`crate::domain::check_backoff`]).
    async fn charge_checked(&self, id: &str) -> Result<(), StoreError>;

    /// Applies a successful charge: the booking it pays is confirmed and
    /// its money held. A booking whose hold lapsed is confirmed if its
    /// dates are still free; otherwise the money is orphaned (refund it).
    async fn confirm_payment(
        &self,
        reference: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Confirmation, StoreError>;

    /// A charge failed: the unpaid hold it was for lapses now (its dates
    /// are free; a later successful charge still confirms it if they stay
    /// free). Answers the booking if it changed.
    async fn charge_failed(&self, reference: &str) -> Result<Option<Booking>, StoreError>;

    /// Expires unpaid holds whose time ran out.
    async fn expire_holds(&self) -> Result<u64, StoreError>;

    /// Cancels a booking on the guest's request.
    async fn cancel(&self, id: &str) -> Result<Option<Cancellation>, StoreError>;

    /// Takes the right to send `id`'s refund for `lease`: its refund
    /// becomes `requested` (from none), or stays `requested` when nobody
    /// else holds a live claim. Only the winner calls the gateway; `false`
    /// means someone else is sending it, or it is already with the gateway.
    async fn claim_refund(
        &self,
        id: &str,
        claim: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// The gateway took the refund sent under `claim`: it is `pending`.
    async fn refund_sent(&self, id: &str, claim: &str) -> Result<bool, StoreError>;

    /// The refund under `claim` could not be sent: the claim lapses now, so
    /// a retry of the cancellation, or the reconciliation job, can send it.
    async fn release_refund_claim(&self, id: &str, claim: &str) -> Result<(), StoreError>;

    /// Records a refund's progress by the charge it refunds (see
    /// [`refund_may_become`]); answers whether it moved the refund forward.
    async fn refund_event(&self, payment_reference: &str, status: &str)
    -> Result<bool, StoreError>;

    /// Confirmed bookings whose escrow is due: check-in plus `hold` has
    /// passed; at most `limit`, by id.
    async fn due_payouts(&self, hold: Duration, limit: u32) -> Result<Vec<Booking>, StoreError>;

    /// Marks a payout as started with its reference, fenced by the escrow
    /// job's lock when given: `false` if it already started.
    async fn begin_payout(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError>;

    /// Applies a payout outcome, forward only ([`PayoutStatus::may_become`]):
    /// `paid` releases the escrow and completes the booking, `reversed`
    /// puts the money back in escrow. Answers the booking if it changed.
    async fn payout_event(
        &self,
        reference: &str,
        next: PayoutStatus,
    ) -> Result<Option<Booking>, StoreError>;

    /// What waits longer than it should: payouts due for longer than
    /// `escrow_hold + patience`, unsent refunds, unapplied webhooks.
    async fn backlog(
        &self,
        escrow_hold: Duration,
        patience: Duration,
    ) -> Result<Backlog, StoreError>;

    /// Records a webhook in the inbox (raw payload, attempts).
    async fn inbox_receive(
        &self,
        provider: &str,
        event_id: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<(), StoreError>;

    /// Records what became of a webhook.
    async fn inbox_finish(
        &self,
        provider: &str,
        event_id: &str,
        outcome: InboxOutcome,
    ) -> Result<(), StoreError>;
}

/// Whether a booking's status holds its nights.
pub(crate) fn holds_nights(status: BookingStatus) -> bool {
    matches!(
        status,
        BookingStatus::PendingPayment | BookingStatus::Confirmed | BookingStatus::Completed
    )
}

/// How long after its hold lapsed reconciliation still asks the gateway
/// whether an unpaid booking was paid after all.
pub const LAPSED_CHARGE_WATCH: Duration = Duration::from_secs(48 * 3600);

/// Whether reconciliation should look at `booking` at `now`: a payout
/// whose outcome is unknown, a refund requested but maybe not sent, or a
/// charge that may have been paid without our hearing (unpaid, or lapsed
/// within [`LAPSED_CHARGE_WATCH`]), once its backoff allows.
pub fn needs_reconciliation(booking: &Booking, now: time::OffsetDateTime) -> bool {
    if booking.payout_status == PayoutStatus::Pending
        || booking.refund_status.as_deref() == Some("requested")
    {
        return true;
    }
    booking.payment.is_some()
        && booking.escrow == Escrow::None
        && booking.refund_status.is_none()
        && matches!(
            booking.status,
            BookingStatus::PendingPayment | BookingStatus::Expired | BookingStatus::Cancelled
        )
        && booking.hold_expires_at + LAPSED_CHARGE_WATCH > now
        && booking.next_check_at.is_none_or(|at| at <= now)
}

/// Whether `booking`'s payout was due before `due_before` and has not
/// reached the host.
pub(crate) fn payout_overdue(booking: &Booking, due_before: time::OffsetDateTime) -> bool {
    booking.status == BookingStatus::Confirmed
        && booking.escrow == Escrow::Held
        && matches!(
            booking.payout_status,
            PayoutStatus::None | PayoutStatus::Pending
        )
        && booking.check_in.midnight().assume_utc() <= due_before
}

/// What a payment means for the booking it pays, when that needs no write:
/// `None` when it should confirm the booking (a lapsed hold only if its
/// nights are still free).
pub(crate) fn judge_payment(
    current: &Booking,
    amount_minor: i64,
    currency: &str,
) -> Option<Confirmation> {
    let outcome: fn(Booking) -> Confirmation = if current.refund_status.is_some() {
        Confirmation::Refunded
    } else {
        match current.status {
            BookingStatus::Confirmed | BookingStatus::Completed => Confirmation::AlreadyConfirmed,
            _ if current.amount_minor != amount_minor || current.currency != currency => {
                Confirmation::Mismatch
            }
            BookingStatus::Cancelled => Confirmation::Orphaned,
            BookingStatus::PendingPayment | BookingStatus::Expired => return None,
        }
    };
    Some(outcome(current.clone()))
}

/// Whether a guest's cancellation may cancel `booking` (again: a
/// cancelled booking whose refund never started may be retried).
pub(crate) fn may_cancel(booking: &Booking) -> bool {
    match (booking.status, booking.escrow) {
        (BookingStatus::PendingPayment, _) => true,
        (BookingStatus::Confirmed, Escrow::Held) => booking.payout_status == PayoutStatus::None,
        (BookingStatus::Cancelled, Escrow::Held) => booking
            .refund_status
            .as_deref()
            .is_none_or(|status| status == "requested"),
        _ => false,
    }
}

/// The refund state a gateway's word means: `processing` is `pending`,
/// `completed` is `processed`.
pub(crate) fn refund_state(status: &str) -> &str {
    match status {
        "processing" => "pending",
        "completed" => "processed",
        other => other,
    }
}

/// Refund states move forward only, and only from a refund this backend
/// started (claimed as `requested`): a gateway's event about a refund we
/// never asked for moves no money.
pub fn refund_may_become(current: Option<&str>, next: &str) -> bool {
    match next {
        "requested" => current.is_none(),
        "pending" => current == Some("requested"),
        "processed" | "failed" => matches!(current, Some("requested" | "pending")),
        _ => false,
    }
}
