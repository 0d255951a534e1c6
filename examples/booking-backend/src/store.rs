//! Storage: PostgreSQL (the system of record, where the database itself
//! refuses a double booking) or memory (one instance, same rules).

use crate::domain::{
    Booking, BookingStatus, Escrow, Gateway, Guest, Host, Listing, Payment, PayoutStatus,
};
use payguard_lock::Fence;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::{Date, OffsetDateTime};

/// The backend's own migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another live booking has one of these nights.
    #[error("the dates overlap another booking")]
    DatesUnavailable,
    /// The guest already has as many unpaid holds as allowed.
    #[error("the guest holds too many unpaid bookings")]
    TooManyHolds,
    /// The payout's lock was taken over; nothing was written.
    #[error("the job lost its lock: {0}")]
    Fenced(#[from] payguard_lock::LockError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The request's answer could not be stored with its write (its
    /// idempotency claim was lost, or the store failed); nothing was
    /// written.
    #[error("the answer could not be stored: {0}")]
    Answer(#[from] payguard_idempotency::StoreError),
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

/// Where bookings live.
#[derive(Debug, Clone)]
pub enum Store {
    /// One process.
    Memory(Arc<Mutex<Memory>>),
    /// Shared by every instance.
    Postgres(PgPool),
}

/// The memory store's state.
#[derive(Debug, Default)]
pub struct Memory {
    listings: HashMap<String, Listing>,
    bookings: HashMap<String, Booking>,
    inbox: HashMap<(String, String), (String, u32)>,
    /// Booking id to the live refund claim and when it lapses.
    refund_claims: HashMap<String, (String, OffsetDateTime)>,
}

fn live(status: BookingStatus) -> bool {
    matches!(
        status,
        BookingStatus::PendingPayment | BookingStatus::Confirmed | BookingStatus::Completed
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn status_text(status: BookingStatus) -> &'static str {
    match status {
        BookingStatus::PendingPayment => "pending_payment",
        BookingStatus::Confirmed => "confirmed",
        BookingStatus::Cancelled => "cancelled",
        BookingStatus::Expired => "expired",
        BookingStatus::Completed => "completed",
    }
}

fn payout_text(status: PayoutStatus) -> &'static str {
    match status {
        PayoutStatus::None => "none",
        PayoutStatus::Pending => "pending",
        PayoutStatus::Paid => "paid",
        PayoutStatus::Failed => "failed",
        PayoutStatus::Reversed => "reversed",
    }
}

macro_rules! booking_columns {
    () => {
        "id, listing_id, guest, check_in, check_out, amount_minor, currency, status, hold_expires_at, \
         gateway, payment_reference, authorization_url, escrow, payout_status, payout_reference, refund_status, \
         gateway_checks, next_check_at"
    };
}

fn booking(row: &PgRow) -> Result<Booking, sqlx::Error> {
    let decode = |error: serde_json::Error| sqlx::Error::Decode(Box::new(error));
    let text = |name: &str| -> Result<String, sqlx::Error> { row.try_get(name) };
    let status: BookingStatus =
        serde_json::from_value(serde_json::Value::String(text("status")?)).map_err(decode)?;
    let escrow: Escrow =
        serde_json::from_value(serde_json::Value::String(text("escrow")?)).map_err(decode)?;
    let payout_status: PayoutStatus =
        serde_json::from_value(serde_json::Value::String(text("payout_status")?))
            .map_err(decode)?;
    let gateway: Option<String> = row.try_get("gateway")?;
    let reference: Option<String> = row.try_get("payment_reference")?;
    let url: Option<String> = row.try_get("authorization_url")?;
    let payment = match (gateway.as_deref().and_then(Gateway::parse), reference, url) {
        (Some(gateway), Some(reference), Some(authorization_url)) => Some(Payment {
            gateway,
            reference,
            authorization_url,
        }),
        _ => None,
    };
    Ok(Booking {
        id: text("id")?,
        listing_id: text("listing_id")?,
        guest: serde_json::from_value(row.try_get("guest")?).map_err(decode)?,
        check_in: row.try_get("check_in")?,
        check_out: row.try_get("check_out")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: text("currency")?,
        status,
        hold_expires_at: row.try_get("hold_expires_at")?,
        payment,
        escrow,
        payout_status,
        payout_reference: row.try_get("payout_reference")?,
        refund_status: row.try_get("refund_status")?,
        gateway_checks: u32::try_from(row.try_get::<i32, _>("gateway_checks")?).unwrap_or(0),
        next_check_at: row.try_get("next_check_at")?,
    })
}

/// What a payment means for the booking it pays, when that needs no write:
/// `None` when it should confirm the booking (a lapsed hold only if its
/// nights are still free).
fn judge_payment(current: &Booking, amount_minor: i64, currency: &str) -> Option<Confirmation> {
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

fn is_exclusion_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "23P01")
}

impl Memory {
    fn overlaps(&self, listing_id: &str, check_in: Date, check_out: Date, except: &str) -> bool {
        self.bookings.values().any(|other| {
            other.id != except
                && other.listing_id == listing_id
                && live(other.status)
                && other.check_in < check_out
                && check_in < other.check_out
        })
    }

    fn expire_lapsed(&mut self) -> u64 {
        let now = now();
        let mut expired = 0;
        for booking in self.bookings.values_mut() {
            if booking.status == BookingStatus::PendingPayment && booking.hold_expires_at <= now {
                booking.status = BookingStatus::Expired;
                expired += 1;
            }
        }
        expired
    }
}

impl Store {
    /// Holds the dates, unless a live booking has one of the nights
    /// (lapsed holds on them are expired first).
    ///
    /// # Errors
    ///
    /// [`StoreError::DatesUnavailable`], or the database failed.
    pub async fn place_hold(&self, hold: NewHold) -> Result<Booking, StoreError> {
        retry_conflicts(|| self.place_hold_once(hold.clone())).await
    }

    /// Records the charge a gateway took for a held booking.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn attach_payment(
        &self,
        id: &str,
        payment: &Payment,
    ) -> Result<Option<Booking>, StoreError> {
        retry_conflicts(|| self.attach_payment_once(id, payment)).await
    }

    /// Applies a successful charge: the booking it pays is confirmed and
    /// its money held. A booking whose hold lapsed is confirmed if its
    /// dates are still free; otherwise the money is orphaned (refund it).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn confirm_payment(
        &self,
        reference: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Confirmation, StoreError> {
        retry_conflicts(|| self.confirm_payment_once(reference, amount_minor, currency)).await
    }

    /// Applies a payout outcome, forward only: `paid` releases the escrow
    /// and completes the booking; a late `paid` after `reversed` changes
    /// nothing. Answers the booking if the event changed it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn payout_event(
        &self,
        reference: &str,
        next: PayoutStatus,
    ) -> Result<Option<Booking>, StoreError> {
        retry_conflicts(|| self.payout_event_once(reference, next)).await
    }
    /// A memory store.
    pub fn memory() -> Self {
        Self::Memory(Arc::new(Mutex::new(Memory::default())))
    }

    /// A PostgreSQL store, migrated.
    ///
    /// # Errors
    ///
    /// The migration failed.
    pub async fn postgres(pool: PgPool) -> Result<Self, sqlx::migrate::MigrateError> {
        MIGRATOR.run(&pool).await?;
        Ok(Self::Postgres(pool))
    }

    fn memory_state(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
        memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the store answers.
    ///
    /// # Errors
    ///
    /// The database does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(())
            }
        }
    }

    /// Saves a listing.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn create_listing(&self, listing: &Listing) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                Self::memory_state(memory)
                    .listings
                    .insert(listing.id.clone(), listing.clone());
            }
            Self::Postgres(pool) => {
                let host = serde_json::to_value(&listing.host).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO listings (id, title, nightly_rate_minor, currency, host) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&listing.id)
                .bind(&listing.title)
                .bind(listing.nightly_rate_minor)
                .bind(&listing.currency)
                .bind(host)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// A listing.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn listing(&self, id: &str) -> Result<Option<Listing>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::memory_state(memory).listings.get(id).cloned()),
            Self::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT id, title, nightly_rate_minor, currency, host FROM listings WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let host: Host = serde_json::from_value(row.try_get("host")?)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
                Ok(Some(Listing {
                    id: row.try_get("id")?,
                    title: row.try_get("title")?,
                    nightly_rate_minor: row.try_get("nightly_rate_minor")?,
                    currency: row.try_get("currency")?,
                    host,
                }))
            }
        }
    }

    /// One attempt of [`Self::place_hold`].
    async fn place_hold_once(&self, hold: NewHold) -> Result<Booking, StoreError> {
        let hold_expires_at = now() + hold.hold_for;
        let booking = Booking {
            id: hold.id,
            listing_id: hold.listing_id,
            guest: hold.guest,
            check_in: hold.check_in,
            check_out: hold.check_out,
            amount_minor: hold.amount_minor,
            currency: hold.currency,
            status: BookingStatus::PendingPayment,
            hold_expires_at,
            payment: None,
            escrow: Escrow::None,
            payout_status: PayoutStatus::None,
            payout_reference: None,
            refund_status: None,
            gateway_checks: 0,
            next_check_at: None,
        };
        let email = booking.guest.email.to_lowercase();
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                state.expire_lapsed();
                let open = state
                    .bookings
                    .values()
                    .filter(|other| {
                        other.status == BookingStatus::PendingPayment
                            && other.guest.email.to_lowercase() == email
                    })
                    .count();
                if open >= hold.open_holds as usize {
                    return Err(StoreError::TooManyHolds);
                }
                if state.overlaps(&booking.listing_id, booking.check_in, booking.check_out, "") {
                    return Err(StoreError::DatesUnavailable);
                }
                state.bookings.insert(booking.id.clone(), booking.clone());
                Ok(booking)
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // One booking at a time per listing: concurrent inserts that
                // violate the exclusion constraint would otherwise wait on
                // each other and deadlock. The constraint stays the guarantee.
                // One hold at a time per guest too, so racing requests
                // cannot both see room for one more.
                sqlx::query("SELECT pg_advisory_xact_lock(20261201, hashtext($1))")
                    .bind(&email)
                    .execute(&mut *tx)
                    .await?;
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM bookings
                      WHERE status = 'pending_payment' AND hold_expires_at > now()
                        AND lower(guest->>'email') = $1",
                )
                .bind(&email)
                .fetch_one(&mut *tx)
                .await?;
                if open >= i64::from(hold.open_holds) {
                    return Err(StoreError::TooManyHolds);
                }
                lock_listing(&mut tx, &booking.listing_id).await?;
                sqlx::query(
                    "UPDATE bookings SET status = 'expired', updated_at = now()
                      WHERE listing_id = $1 AND status = 'pending_payment' AND hold_expires_at <= now()
                        AND daterange(check_in, check_out) && daterange($2, $3)",
                )
                .bind(&booking.listing_id)
                .bind(booking.check_in)
                .bind(booking.check_out)
                .execute(&mut *tx)
                .await?;
                let inserted = sqlx::query(concat!(
                    "INSERT INTO bookings (id, listing_id, guest, check_in, check_out, amount_minor, currency, status, hold_expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending_payment', now() + make_interval(secs => $8))
                     RETURNING ", booking_columns!(), ""
                ))
                .bind(&booking.id)
                .bind(&booking.listing_id)
                .bind(serde_json::to_value(&booking.guest).unwrap_or_default())
                .bind(booking.check_in)
                .bind(booking.check_out)
                .bind(booking.amount_minor)
                .bind(&booking.currency)
                .bind(hold_expires_in(hold.hold_for))
                .fetch_one(&mut *tx)
                .await;
                match inserted {
                    Ok(row) => {
                        tx.commit().await?;
                        Ok(self::booking(&row)?)
                    }
                    Err(error) if is_exclusion_violation(&error) => {
                        Err(StoreError::DatesUnavailable)
                    }
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// One attempt of [`Self::attach_payment`].
    async fn attach_payment_once(
        &self,
        id: &str,
        payment: &Payment,
    ) -> Result<Option<Booking>, StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                Ok(state.bookings.get_mut(id).map(|booking| {
                    booking.payment = Some(payment.clone());
                    booking.clone()
                }))
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let attached = Self::attach_payment_in(&mut tx, id, payment).await?;
                tx.commit().await?;
                Ok(attached)
            }
        }
    }

    /// [`attach_payment`](Self::attach_payment) inside the caller's
    /// PostgreSQL transaction, so that something else (the request's stored
    /// answer) commits with it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn attach_payment_in(
        tx: &mut PgConnection,
        id: &str,
        payment: &Payment,
    ) -> Result<Option<Booking>, StoreError> {
        let listing: Option<String> =
            sqlx::query_scalar("SELECT listing_id FROM bookings WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(listing) = listing else {
            return Ok(None);
        };
        lock_listing(&mut *tx, &listing).await?;
        let row = sqlx::query(concat!(
            "UPDATE bookings SET gateway = $2, payment_reference = $3, authorization_url = $4, updated_at = now()
              WHERE id = $1 RETURNING ",
            booking_columns!(),
            ""
        ))
        .bind(id)
        .bind(payment.gateway.as_str())
        .bind(&payment.reference)
        .bind(&payment.authorization_url)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.as_ref().map(booking).transpose()?)
    }

    /// The pool, when the store is PostgreSQL.
    pub fn pool(&self) -> Option<&PgPool> {
        match self {
            Self::Memory(_) => None,
            Self::Postgres(pool) => Some(pool),
        }
    }

    /// Gives up a hold no gateway would take payment for.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_hold(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                if let Some(booking) = Self::memory_state(memory).bookings.get_mut(id)
                    && booking.status == BookingStatus::PendingPayment
                {
                    booking.status = BookingStatus::Cancelled;
                }
            }
            Self::Postgres(pool) => {
                sqlx::query(
                    "UPDATE bookings SET status = 'cancelled', updated_at = now() WHERE id = $1 AND status = 'pending_payment'",
                )
                .bind(id)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// A booking.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::memory_state(memory).bookings.get(id).cloned()),
            Self::Postgres(pool) => {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    booking_columns!(),
                    " FROM bookings WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?;
                Ok(row.as_ref().map(booking).transpose()?)
            }
        }
    }

    /// Every booking (for reconciliation and the demo's checks).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn bookings(&self) -> Result<Vec<Booking>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::memory_state(memory)
                .bookings
                .values()
                .cloned()
                .collect()),
            Self::Postgres(pool) => {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    booking_columns!(),
                    " FROM bookings ORDER BY id"
                ))
                .fetch_all(pool)
                .await?;
                Ok(rows.iter().map(booking).collect::<Result<_, _>>()?)
            }
        }
    }

    /// Records that reconciliation asked the gateway about `id`'s charge,
    /// and when it may ask again ([`crate::domain::check_backoff`]).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn charge_checked(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                if let Some(booking) = Self::memory_state(memory).bookings.get_mut(id) {
                    booking.next_check_at =
                        Some(now() + crate::domain::check_backoff(booking.gateway_checks));
                    booking.gateway_checks = booking.gateway_checks.saturating_add(1);
                }
                Ok(())
            }
            Self::Postgres(pool) => {
                let checks: Option<i32> =
                    sqlx::query_scalar("SELECT gateway_checks FROM bookings WHERE id = $1")
                        .bind(id)
                        .fetch_optional(pool)
                        .await?;
                let Some(checks) = checks else {
                    return Ok(());
                };
                let wait = crate::domain::check_backoff(u32::try_from(checks).unwrap_or(0));
                sqlx::query(
                    "UPDATE bookings SET gateway_checks = gateway_checks + 1,
                            next_check_at = now() + make_interval(secs => $2)
                      WHERE id = $1",
                )
                .bind(id)
                .bind(wait.as_secs_f64())
                .execute(pool)
                .await?;
                Ok(())
            }
        }
    }

    /// One attempt of [`Self::confirm_payment`].
    async fn confirm_payment_once(
        &self,
        reference: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Confirmation, StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                let Some(current) = state
                    .bookings
                    .values()
                    .find(|booking| {
                        booking
                            .payment
                            .as_ref()
                            .is_some_and(|payment| payment.reference == reference)
                    })
                    .cloned()
                else {
                    return Ok(Confirmation::Unknown);
                };
                if let Some(outcome) = judge_payment(&current, amount_minor, currency) {
                    return Ok(outcome);
                }
                if current.status == BookingStatus::Expired
                    && state.overlaps(
                        &current.listing_id,
                        current.check_in,
                        current.check_out,
                        &current.id,
                    )
                {
                    return Ok(Confirmation::Orphaned(current));
                }
                let Some(booking) = state.bookings.get_mut(&current.id) else {
                    return Ok(Confirmation::Unknown);
                };
                booking.status = BookingStatus::Confirmed;
                booking.escrow = Escrow::Held;
                Ok(Confirmation::Confirmed(booking.clone()))
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let listing: Option<String> = sqlx::query_scalar(
                    "SELECT listing_id FROM bookings WHERE payment_reference = $1",
                )
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(listing) = &listing {
                    lock_listing(&mut tx, listing).await?;
                }
                let row = sqlx::query(concat!(
                    "SELECT ",
                    booking_columns!(),
                    " FROM bookings WHERE payment_reference = $1 FOR UPDATE"
                ))
                .bind(reference)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(Confirmation::Unknown);
                };
                let current = booking(&row)?;
                if let Some(outcome) = judge_payment(&current, amount_minor, currency) {
                    return Ok(outcome);
                }
                let updated =
                    sqlx::query(concat!(
                    "UPDATE bookings SET status = 'confirmed', escrow = 'held', updated_at = now()
                      WHERE id = $1 RETURNING ", booking_columns!(), ""
                ))
                    .bind(&current.id)
                    .fetch_one(&mut *tx)
                    .await;
                match updated {
                    Ok(row) => {
                        tx.commit().await?;
                        Ok(Confirmation::Confirmed(booking(&row)?))
                    }
                    // An expired hold whose nights were re-let.
                    Err(error) if is_exclusion_violation(&error) => {
                        Ok(Confirmation::Orphaned(current))
                    }
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// Expires unpaid holds whose time ran out.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn expire_holds(&self) -> Result<u64, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::memory_state(memory).expire_lapsed()),
            Self::Postgres(pool) => Ok(sqlx::query(
                "UPDATE bookings SET status = 'expired', updated_at = now()
                  WHERE status = 'pending_payment' AND hold_expires_at <= now()",
            )
            .execute(pool)
            .await?
            .rows_affected()),
        }
    }

    /// Cancels a booking on the guest's request.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn cancel(&self, id: &str) -> Result<Option<Cancellation>, StoreError> {
        let decide = |booking: &Booking| match (booking.status, booking.escrow) {
            (BookingStatus::PendingPayment, _) => Some(BookingStatus::Cancelled),
            (BookingStatus::Confirmed, Escrow::Held)
                if booking.payout_status == PayoutStatus::None =>
            {
                Some(BookingStatus::Cancelled)
            }
            // Cancelled earlier, its refund not started yet: try again.
            (BookingStatus::Cancelled, Escrow::Held)
                if booking
                    .refund_status
                    .as_deref()
                    .is_none_or(|status| status == "requested") =>
            {
                Some(BookingStatus::Cancelled)
            }
            _ => None,
        };
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                let Some(booking) = state.bookings.get_mut(id) else {
                    return Ok(None);
                };
                let paid = booking.escrow == Escrow::Held;
                Ok(Some(match decide(booking) {
                    Some(status) => {
                        booking.status = status;
                        if paid {
                            Cancellation::Refund(booking.clone())
                        } else {
                            Cancellation::Cancelled(booking.clone())
                        }
                    }
                    None => Cancellation::NotCancellable(booking.clone()),
                }))
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    booking_columns!(),
                    " FROM bookings WHERE id = $1 FOR UPDATE"
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let current = booking(&row)?;
                let Some(status) = decide(&current) else {
                    return Ok(Some(Cancellation::NotCancellable(current)));
                };
                let row = sqlx::query(concat!(
                    "UPDATE bookings SET status = $2, updated_at = now() WHERE id = $1 RETURNING ",
                    booking_columns!(),
                    ""
                ))
                .bind(id)
                .bind(status_text(status))
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                let cancelled = booking(&row)?;
                Ok(Some(if current.escrow == Escrow::Held {
                    Cancellation::Refund(cancelled)
                } else {
                    Cancellation::Cancelled(cancelled)
                }))
            }
        }
    }

    /// Takes the right to send `id`'s refund for `lease`: its refund
    /// becomes `requested` (from none), or stays `requested` when nobody
    /// else holds a live claim. Only the winner calls the gateway; `false`
    /// means someone else is sending it, or it is already with the gateway.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn claim_refund(
        &self,
        id: &str,
        claim: &str,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                let now = now();
                let Memory {
                    bookings,
                    refund_claims,
                    ..
                } = &mut *state;
                let Some(booking) = bookings.get_mut(id) else {
                    return Ok(false);
                };
                let free = match booking.refund_status.as_deref() {
                    None => true,
                    Some("requested") => refund_claims
                        .get(id)
                        .is_none_or(|(_, until)| *until <= now),
                    Some(_) => false,
                };
                if free {
                    booking.refund_status = Some("requested".to_owned());
                    refund_claims.insert(id.to_owned(), (claim.to_owned(), now + lease));
                }
                Ok(free)
            }
            Self::Postgres(pool) => Ok(sqlx::query(
                "UPDATE bookings SET refund_status = 'requested', refund_claim = $2,
                        refund_claimed_until = clock_timestamp() + make_interval(secs => $3::float8),
                        updated_at = now()
                  WHERE id = $1
                    AND (refund_status IS NULL
                         OR (refund_status = 'requested'
                             AND (refund_claimed_until IS NULL OR refund_claimed_until <= clock_timestamp())))",
            )
            .bind(id)
            .bind(claim)
            .bind(lease.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected()
                == 1),
        }
    }

    /// The gateway took the refund sent under `claim`: it is `pending`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn refund_sent(&self, id: &str, claim: &str) -> Result<bool, StoreError> {
        if !self.holds_refund_claim(id, claim).await? {
            return Ok(false);
        }
        self.set_refund(id, "pending").await
    }

    /// The refund under `claim` could not be sent: the claim lapses now, so
    /// a retry of the cancellation, or the reconciliation job, can send it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_refund_claim(&self, id: &str, claim: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                if state
                    .refund_claims
                    .get(id)
                    .is_some_and(|(held, _)| held == claim)
                {
                    state.refund_claims.remove(id);
                }
                Ok(())
            }
            Self::Postgres(pool) => {
                sqlx::query(
                    "UPDATE bookings SET refund_claimed_until = clock_timestamp()
                      WHERE id = $1 AND refund_claim = $2",
                )
                .bind(id)
                .bind(claim)
                .execute(pool)
                .await?;
                Ok(())
            }
        }
    }

    async fn holds_refund_claim(&self, id: &str, claim: &str) -> Result<bool, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::memory_state(memory)
                .refund_claims
                .get(id)
                .is_some_and(|(held, _)| held == claim)),
            Self::Postgres(pool) => Ok(sqlx::query_scalar::<_, bool>(
                "SELECT refund_claim = $2 FROM bookings WHERE id = $1",
            )
            .bind(id)
            .bind(claim)
            .fetch_optional(pool)
            .await?
            .unwrap_or(false)),
        }
    }

    /// Moves a booking's refund forward: `requested` (claimed, not yet
    /// sent), `pending` (the gateway has it; the money left escrow), then
    /// `processed` or `failed` (the money is back in escrow). Never
    /// backwards; answers whether it changed.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_refund(&self, id: &str, status: &str) -> Result<bool, StoreError> {
        let status = match status {
            "processing" => "pending",
            "completed" => "processed",
            other => other,
        };
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                let Some(booking) = state.bookings.get_mut(id) else {
                    return Ok(false);
                };
                if !refund_may_become(booking.refund_status.as_deref(), status) {
                    return Ok(false);
                }
                booking.refund_status = Some(status.to_owned());
                match status {
                    "pending" | "processed" => booking.escrow = Escrow::Refunded,
                    "failed" => booking.escrow = Escrow::Held,
                    _ => {}
                }
                Ok(true)
            }
            Self::Postgres(pool) => Ok(sqlx::query(
                "UPDATE bookings SET refund_status = $2,
                        escrow = CASE $2 WHEN 'pending' THEN 'refunded' WHEN 'processed' THEN 'refunded'
                                         WHEN 'failed' THEN 'held' ELSE escrow END,
                        updated_at = now()
                  WHERE id = $1 AND CASE $2
                        WHEN 'requested' THEN refund_status IS NULL
                        WHEN 'pending' THEN refund_status = 'requested'
                        WHEN 'processed' THEN refund_status IN ('requested', 'pending')
                        WHEN 'failed' THEN refund_status IN ('requested', 'pending')
                        ELSE false END",
            )
            .bind(id)
            .bind(status)
            .execute(pool)
            .await?
            .rows_affected()
                == 1),
        }
    }

    /// Records a refund's progress by the charge it refunds; answers
    /// whether it moved the refund forward (a refund this backend started,
    /// not already further on).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn refund_event(
        &self,
        payment_reference: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        let id = match self {
            Self::Memory(memory) => Self::memory_state(memory)
                .bookings
                .values()
                .find(|booking| {
                    booking
                        .payment
                        .as_ref()
                        .is_some_and(|payment| payment.reference == payment_reference)
                })
                .map(|booking| booking.id.clone()),
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT id FROM bookings WHERE payment_reference = $1")
                    .bind(payment_reference)
                    .fetch_optional(pool)
                    .await?
            }
        };
        match id {
            Some(id) => self.set_refund(&id, status).await,
            None => Ok(false),
        }
    }

    /// Confirmed bookings whose escrow is due: check-in plus `hold` has passed.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn due_payouts(
        &self,
        hold: Duration,
        limit: i64,
    ) -> Result<Vec<Booking>, StoreError> {
        let due_before = now() - hold;
        match self {
            Self::Memory(memory) => {
                let state = Self::memory_state(memory);
                let mut due: Vec<Booking> = state
                    .bookings
                    .values()
                    .filter(|booking| {
                        booking.status == BookingStatus::Confirmed
                            && booking.escrow == Escrow::Held
                            && booking.payout_status == PayoutStatus::None
                            && booking.check_in.midnight().assume_utc() <= due_before
                    })
                    .cloned()
                    .collect();
                due.sort_by(|a, b| a.id.cmp(&b.id));
                due.truncate(usize::try_from(limit).unwrap_or(0));
                Ok(due)
            }
            Self::Postgres(pool) => {
                let rows = sqlx::query(concat!(
                    "SELECT ", booking_columns!(), " FROM bookings
                      WHERE status = 'confirmed' AND escrow = 'held' AND payout_status = 'none'
                        AND check_in::timestamp AT TIME ZONE 'UTC' <= now() - make_interval(secs => $1)
                      ORDER BY id LIMIT $2"
                ))
                .bind(hold.as_secs_f64())
                .bind(limit)
                .fetch_all(pool)
                .await?;
                Ok(rows.iter().map(booking).collect::<Result<_, _>>()?)
            }
        }
    }

    /// Marks a payout as started with its reference, in a transaction
    /// fenced by the escrow job's lock: `false` if it already started.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the lock was taken over, or the
    /// database failed.
    pub async fn begin_payout(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError> {
        let reference = Booking::payout_reference_for(id);
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                Ok(match state.bookings.get_mut(id) {
                    Some(booking)
                        if booking.payout_status == PayoutStatus::None
                            && booking.status == BookingStatus::Confirmed
                            && booking.escrow == Escrow::Held =>
                    {
                        booking.payout_status = PayoutStatus::Pending;
                        booking.payout_reference = Some(reference);
                        true
                    }
                    _ => false,
                })
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if let Some(fence) = fence {
                    fence.check(&mut tx).await?;
                }
                let started = sqlx::query(
                    "UPDATE bookings SET payout_status = 'pending', payout_reference = $2, payout_token = $3, updated_at = now()
                      WHERE id = $1 AND status = 'confirmed' AND payout_status = 'none' AND escrow = 'held'",
                )
                .bind(id)
                .bind(&reference)
                .bind(fence.map(|fence| fence.token().as_i64()))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                tx.commit().await?;
                Ok(started)
            }
        }
    }

    /// One attempt of [`Self::payout_event`].
    async fn payout_event_once(
        &self,
        reference: &str,
        next: PayoutStatus,
    ) -> Result<Option<Booking>, StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                let Some(booking) = state
                    .bookings
                    .values_mut()
                    .find(|booking| booking.payout_reference.as_deref() == Some(reference))
                else {
                    return Ok(None);
                };
                if !booking.payout_status.may_become(next) {
                    return Ok(None);
                }
                booking.payout_status = next;
                match next {
                    PayoutStatus::Paid => {
                        booking.escrow = Escrow::Released;
                        booking.status = BookingStatus::Completed;
                    }
                    PayoutStatus::Reversed => booking.escrow = Escrow::Held,
                    _ => {}
                }
                Ok(Some(booking.clone()))
            }
            Self::Postgres(pool) => {
                let allowed_from: &[&str] = match next {
                    PayoutStatus::Paid | PayoutStatus::Failed => &["pending"],
                    PayoutStatus::Reversed => &["pending", "paid"],
                    PayoutStatus::None | PayoutStatus::Pending => &[],
                };
                let row = sqlx::query(concat!(
                    "UPDATE bookings SET payout_status = $2,
                            escrow = CASE $2 WHEN 'paid' THEN 'released' WHEN 'reversed' THEN 'held' ELSE escrow END,
                            status = CASE $2 WHEN 'paid' THEN 'completed' ELSE status END,
                            updated_at = now()
                      WHERE payout_reference = $1 AND payout_status = ANY($3)
                      RETURNING ", booking_columns!(), ""
                ))
                .bind(reference)
                .bind(payout_text(next))
                .bind(allowed_from)
                .fetch_optional(pool)
                .await?;
                Ok(row.as_ref().map(booking).transpose()?)
            }
        }
    }

    /// Records a webhook in the inbox (raw payload, attempts).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn inbox_receive(
        &self,
        provider: &str,
        event_id: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut state = Self::memory_state(memory);
                let entry = state
                    .inbox
                    .entry((provider.to_owned(), event_id.to_owned()))
                    .or_insert_with(|| ("received".to_owned(), 0));
                entry.1 += 1;
            }
            Self::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO webhook_inbox (provider, event_id, event, payload, attempts) VALUES ($1, $2, $3, $4, 1)
                     ON CONFLICT (provider, event_id) DO UPDATE SET attempts = webhook_inbox.attempts + 1",
                )
                .bind(provider)
                .bind(event_id)
                .bind(event)
                .bind(payload)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Records what became of a webhook.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn inbox_finish(
        &self,
        provider: &str,
        event_id: &str,
        outcome: InboxOutcome,
    ) -> Result<(), StoreError> {
        let (status, error) = match &outcome {
            InboxOutcome::Processed => ("processed", None),
            InboxOutcome::Failed(error) => ("failed", Some(error.as_str())),
            InboxOutcome::Dead(why) => ("dead", Some(why.as_str())),
        };
        match self {
            Self::Memory(memory) => {
                if let Some(entry) = Self::memory_state(memory)
                    .inbox
                    .get_mut(&(provider.to_owned(), event_id.to_owned()))
                {
                    status.clone_into(&mut entry.0);
                }
            }
            Self::Postgres(pool) => {
                sqlx::query(
                    "UPDATE webhook_inbox SET status = $3, last_error = $4,
                            processed_at = CASE WHEN $3 = 'processed' THEN now() END
                      WHERE provider = $1 AND event_id = $2",
                )
                .bind(provider)
                .bind(event_id)
                .bind(status)
                .bind(error)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }
}

fn hold_expires_in(hold: Duration) -> f64 {
    hold.as_secs_f64()
}

/// Serialises changes to one listing's bookings: concurrent statements that
/// each check the exclusion constraint against the other's uncommitted row
/// would otherwise deadlock. The constraint stays the guarantee.
async fn lock_listing(tx: &mut sqlx::PgConnection, listing_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM listings WHERE id = $1 FOR NO KEY UPDATE")
        .bind(listing_id)
        .execute(tx)
        .await
        .map(|_| ())
}

/// Runs `attempt` again (up to five times) when PostgreSQL broke a deadlock
/// or a serialization conflict by aborting it: the transaction changed
/// nothing, so trying again is safe.
/// Runs `attempt` again when the database aborted it for a deadlock or a
/// serialization conflict (a few times).
pub(crate) async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(StoreError::Database(error)) if tries < 5 && is_conflict(&error) => {
                tries += 1;
                tracing::info!(%error, tries, "transaction aborted by a conflict; trying again");
            }
            other => return other,
        }
    }
}

fn is_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Refund states move forward only, and only from a refund this backend
/// started (claimed as `requested`): a gateway's event about a refund we
/// never asked for moves no money.
fn refund_may_become(current: Option<&str>, next: &str) -> bool {
    match next {
        "requested" => current.is_none(),
        "pending" => current == Some("requested"),
        "processed" | "failed" => matches!(current, Some("requested" | "pending")),
        _ => false,
    }
}
