//! The system of record: the database itself refuses a double booking
//! (an exclusion constraint), every method is one transaction under
//! `lock_timeout` and `statement_timeout`, and a request's answer commits
//! with its write.

use super::{
    Answer, Attached, Backlog, BookingStore, Cancellation, Confirmation, InboxOutcome,
    LAPSED_CHARGE_WATCH, NewHold, StoreError, judge_payment, may_cancel, refund_state,
};
use crate::domain::{Booking, BookingStatus, Escrow, Gateway, Listing, Payment, PayoutStatus};
use payguard_core::SqlTimeouts;
use payguard_idempotency::PgIdempotencyStore;
use payguard_lock::Fence;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row, Transaction};
use std::time::Duration;

/// The backend's own migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How [`PgStore`] talks to PostgreSQL.
///
/// # Default
///
/// [`SqlTimeouts::default`] (lock waits 1 s, statements 5 s), prepared
/// statements, and a booking waits for another booking of the same listing
/// to commit (within the lock timeout).
#[derive(Debug, Clone, Copy)]
pub struct PgStoreOptions {
    /// The bounds of every transaction.
    pub timeouts: SqlTimeouts,
    /// Whether statements are prepared once per connection (turn off behind
    /// PgBouncer before 1.21 in transaction mode).
    pub prepared_statements: bool,
    /// A booking whose listing another booking is writing right now is
    /// refused at once (`409 dates_unavailable`) instead of waiting.
    pub nowait: bool,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            timeouts: SqlTimeouts::default(),
            prepared_statements: true,
            nowait: false,
        }
    }
}

/// Bookings in PostgreSQL, shared by every instance.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    idempotency: PgIdempotencyStore,
    options: PgStoreOptions,
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;
type PgScalar<'q, T> = sqlx::query::QueryScalar<'q, Postgres, T, PgArguments>;

/// How a statement names a booking.
#[derive(Debug, Clone, Copy)]
enum Named<'a> {
    Id(&'a str),
    PaymentReference(&'a str),
}

macro_rules! booking_columns {
    () => {
        "id, listing_id, guest, check_in, check_out, amount_minor, currency, status, hold_expires_at, \
         gateway, payment_reference, authorization_url, escrow, payout_status, payout_reference, refund_status, \
         gateway_checks, next_check_at"
    };
}

impl PgStore {
    /// A store on `pool` that stores request answers through
    /// `idempotency` (on the same database). Run [`MIGRATOR`] first.
    pub fn new(pool: PgPool, idempotency: PgIdempotencyStore, options: PgStoreOptions) -> Self {
        Self {
            pool,
            idempotency,
            options,
        }
    }

    fn query(&self, sql: &'static str) -> PgQuery<'static> {
        sqlx::query(sql).persistent(self.options.prepared_statements)
    }

    fn scalar<T>(&self, sql: &'static str) -> PgScalar<'static, T>
    where
        (T,): for<'r> sqlx::FromRow<'r, PgRow>,
    {
        sqlx::query_scalar(sql).persistent(self.options.prepared_statements)
    }

    /// Whether one statement may go without a transaction around it: the
    /// session already carries the bounds ([`SqlTimeouts::inherited`]) and
    /// statements are prepared (unnamed ones need their transaction behind
    /// a pooler).
    fn alone(&self) -> bool {
        self.options.timeouts.begin_sql().is_none() && self.options.prepared_statements
    }

    /// A transaction under the store's bounds.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        match self.options.timeouts.begin_sql() {
            Some(begin) => self.pool.begin_with(AssertSqlSafe(begin)).await,
            None => self.pool.begin().await,
        }
    }

    /// Runs `attempt`, again (up to five times) when PostgreSQL broke a
    /// deadlock or a serialization conflict by aborting it (the transaction
    /// changed nothing), and gives up after the client deadline: a server
    /// or network that stops answering is [`StoreError::TimedOut`], never a
    /// hang.
    async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let deadline = self.options.timeouts.client_deadline();
        let mut tries = 0;
        loop {
            let outcome = tokio::time::timeout(deadline, attempt())
                .await
                .unwrap_or(Err(StoreError::TimedOut));
            match outcome {
                Err(StoreError::Database(error)) if tries < 5 && is_conflict(&error) => {
                    tries += 1;
                    tracing::info!(%error, tries, "transaction aborted by a conflict; trying again");
                }
                other => return other,
            }
        }
    }

    /// One statement in its own bounded transaction.
    async fn execute<'q>(&self, statement: impl Fn() -> PgQuery<'q>) -> Result<u64, StoreError> {
        self.run(|| async {
            if self.alone() {
                return Ok(statement().execute(&self.pool).await?.rows_affected());
            }
            let mut tx = self.begin().await?;
            let rows = statement().execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(rows)
        })
        .await
    }

    /// One statement's rows, in its own bounded transaction.
    async fn fetch<'q>(
        &self,
        statement: impl Fn() -> PgQuery<'q>,
    ) -> Result<Vec<Booking>, StoreError> {
        self.run(|| async {
            if self.alone() {
                let rows = statement().fetch_all(&self.pool).await?;
                return Ok(rows.iter().map(booking).collect::<Result<_, _>>()?);
            }
            let mut tx = self.begin().await?;
            let rows = statement().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok(rows.iter().map(booking).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Serialises changes to one listing's bookings: concurrent statements
    /// that each check the exclusion constraint against the other's
    /// uncommitted row would otherwise deadlock. The constraint stays the
    /// guarantee. With [`PgStoreOptions::nowait`], a new hold is refused
    /// at once while another transaction holds the listing.
    async fn lock_listing(
        &self,
        tx: &mut PgConnection,
        listing_id: &str,
    ) -> Result<(), StoreError> {
        let sql = if self.options.nowait {
            "SELECT 1 FROM listings WHERE id = $1 FOR NO KEY UPDATE NOWAIT"
        } else {
            "SELECT 1 FROM listings WHERE id = $1 FOR NO KEY UPDATE"
        };
        self.query(sql).bind(listing_id).execute(tx).await?;
        Ok(())
    }

    /// Locks the listing of the booking `booking` names, waiting within
    /// the lock timeout (only a new hold may be refused at once), in one
    /// round trip; `false` when there is no such booking.
    async fn lock_listing_of(
        &self,
        tx: &mut PgConnection,
        booking: Named<'_>,
    ) -> Result<bool, StoreError> {
        let (sql, value) = match booking {
            Named::Id(id) => (
                "SELECT 1 FROM listings WHERE id = (SELECT listing_id FROM bookings WHERE id = $1) FOR NO KEY UPDATE",
                id,
            ),
            Named::PaymentReference(reference) => (
                "SELECT 1 FROM listings WHERE id = (SELECT listing_id FROM bookings WHERE payment_reference = $1) FOR NO KEY UPDATE",
                reference,
            ),
        };
        Ok(self
            .query(sql)
            .bind(value)
            .fetch_optional(tx)
            .await?
            .is_some())
    }

    async fn place_hold_once(&self, hold: &NewHold) -> Result<Booking, StoreError> {
        let email = hold.guest.email.to_lowercase();
        let mut tx = self.begin().await?;
        // One hold at a time per guest, so racing requests cannot both see
        // room for one more.
        self.query("SELECT pg_advisory_xact_lock(20261201, hashtext($1))")
            .bind(&email)
            .execute(&mut *tx)
            .await?;
        let open: i64 = self
            .scalar(
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
        match self.lock_listing(&mut tx, &hold.listing_id).await {
            Err(StoreError::Contended) if self.options.nowait => {
                return Err(StoreError::DatesUnavailable);
            }
            other => other?,
        }
        self.query(
            "UPDATE bookings SET status = 'expired', updated_at = now()
              WHERE listing_id = $1 AND status = 'pending_payment' AND hold_expires_at <= now()
                AND daterange(check_in, check_out) && daterange($2, $3)",
        )
        .bind(&hold.listing_id)
        .bind(hold.check_in)
        .bind(hold.check_out)
        .execute(&mut *tx)
        .await?;
        let inserted = self
            .query(concat!(
                "INSERT INTO bookings (id, listing_id, guest, check_in, check_out, amount_minor, currency, status, hold_expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending_payment', now() + make_interval(secs => $8))
                 RETURNING ", booking_columns!()
            ))
            .bind(&hold.id)
            .bind(&hold.listing_id)
            .bind(serde_json::to_value(&hold.guest).unwrap_or_default())
            .bind(hold.check_in)
            .bind(hold.check_out)
            .bind(hold.amount_minor)
            .bind(&hold.currency)
            .bind(hold.hold_for.as_secs_f64())
            .fetch_one(&mut *tx)
            .await;
        match inserted {
            Ok(row) => {
                tx.commit().await?;
                Ok(booking(&row)?)
            }
            Err(error) if is_exclusion_violation(&error) => Err(StoreError::DatesUnavailable),
            Err(error) => Err(error.into()),
        }
    }

    async fn attach_payment_once(
        &self,
        id: &str,
        payment: &Payment,
        answer: Option<Answer<'_>>,
    ) -> Result<Option<Attached>, StoreError> {
        let mut tx = self.begin().await?;
        if !self.lock_listing_of(&mut tx, Named::Id(id)).await? {
            return Ok(None);
        }
        let row = self
            .query(concat!(
                "UPDATE bookings SET gateway = $2, payment_reference = $3, authorization_url = $4, updated_at = now()
                  WHERE id = $1 RETURNING ",
                booking_columns!()
            ))
            .bind(id)
            .bind(payment.gateway.as_str())
            .bind(&payment.reference)
            .bind(&payment.authorization_url)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(booking) = row.as_ref().map(booking).transpose()? else {
            return Ok(None);
        };
        // The answer commits with the write, or neither does: a claim
        // taken over meanwhile rolls the attachment back.
        let answer = match answer {
            Some(answer) => Some(
                answer
                    .claim
                    .complete_in(&self.idempotency, &mut tx, (answer.respond)(&booking))
                    .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        Ok(Some(Attached { booking, answer }))
    }

    async fn confirm_payment_once(
        &self,
        reference: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Confirmation, StoreError> {
        let mut tx = self.begin().await?;
        if !self
            .lock_listing_of(&mut tx, Named::PaymentReference(reference))
            .await?
        {
            return Ok(Confirmation::Unknown);
        }
        let row = self
            .query(concat!(
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
        let updated = self
            .query(concat!(
                "UPDATE bookings SET status = 'confirmed', escrow = 'held', updated_at = now()
                  WHERE id = $1 RETURNING ",
                booking_columns!()
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
            Err(error) if is_exclusion_violation(&error) => Ok(Confirmation::Orphaned(current)),
            Err(error) => Err(error.into()),
        }
    }

    async fn cancel_once(&self, id: &str) -> Result<Option<Cancellation>, StoreError> {
        let mut tx = self.begin().await?;
        let row = self
            .query(concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings WHERE id = $1 FOR UPDATE"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let current = booking(&row)?;
        if !may_cancel(&current) {
            return Ok(Some(Cancellation::NotCancellable(current)));
        }
        let row = self
            .query(concat!(
                "UPDATE bookings SET status = 'cancelled', updated_at = now() WHERE id = $1 RETURNING ",
                booking_columns!()
            ))
            .bind(id)
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

    async fn begin_payout_once(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(fence) = fence {
            fence.check(&mut tx).await?;
        }
        let started = self
            .query(
                "UPDATE bookings SET payout_status = 'pending', payout_reference = $2, payout_token = $3, updated_at = now()
                  WHERE id = $1 AND status = 'confirmed' AND payout_status = 'none' AND escrow = 'held'",
            )
            .bind(id)
            .bind(Booking::payout_reference_for(id))
            .bind(fence.map(|fence| fence.token().as_i64()))
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(started)
    }

    /// Moves a booking's refund forward (see [`super::refund_may_become`]):
    /// `pending` and `processed` take the money out of escrow, `failed`
    /// puts it back.
    fn set_refund<'q>(&self, id: &'q str, status: &str) -> PgQuery<'q> {
        self.query(
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
        .bind(refund_state(status).to_owned())
    }
}

#[async_trait::async_trait]
impl BookingStore for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.execute(|| self.query("SELECT 1")).await.map(|_| ())
    }

    async fn create_listing(&self, listing: &Listing) -> Result<(), StoreError> {
        let host = serde_json::to_value(&listing.host).unwrap_or_default();
        self.execute(||
            self.query(
                "INSERT INTO listings (id, title, nightly_rate_minor, currency, host) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&listing.id)
            .bind(&listing.title)
            .bind(listing.nightly_rate_minor)
            .bind(&listing.currency)
            .bind(host.clone()),
        )
        .await
        .map(|_| ())
    }

    async fn listing(&self, id: &str) -> Result<Option<Listing>, StoreError> {
        self.run(|| async {
            let statement = self
                .query("SELECT id, title, nightly_rate_minor, currency, host FROM listings WHERE id = $1")
                .bind(id);
            let row = if self.alone() {
                statement.fetch_optional(&self.pool).await?
            } else {
                let mut tx = self.begin().await?;
                let row = statement.fetch_optional(&mut *tx).await?;
                tx.commit().await?;
                row
            };
            let Some(row) = row else { return Ok(None) };
            Ok(Some(Listing {
                id: row.try_get("id")?,
                title: row.try_get("title")?,
                nightly_rate_minor: row.try_get("nightly_rate_minor")?,
                currency: row.try_get("currency")?,
                host: serde_json::from_value(row.try_get("host")?)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
            }))
        })
        .await
    }

    async fn place_hold(&self, hold: NewHold) -> Result<Booking, StoreError> {
        self.run(|| self.place_hold_once(&hold)).await
    }

    async fn attach_payment(
        &self,
        id: &str,
        payment: &Payment,
        answer: Option<Answer<'_>>,
    ) -> Result<Option<Attached>, StoreError> {
        self.run(|| self.attach_payment_once(id, payment, answer))
            .await
    }

    async fn release_hold(&self, id: &str) -> Result<(), StoreError> {
        self.execute(|| {
            self.query(
                "UPDATE bookings SET status = 'cancelled', updated_at = now()
                  WHERE id = $1 AND status = 'pending_payment'",
            )
            .bind(id.to_owned())
        })
        .await
        .map(|_| ())
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        let found = self
            .fetch(|| {
                self.query(concat!(
                    "SELECT ",
                    booking_columns!(),
                    " FROM bookings WHERE id = $1"
                ))
                .bind(id.to_owned())
            })
            .await?;
        Ok(found.into_iter().next())
    }

    async fn bookings(&self) -> Result<Vec<Booking>, StoreError> {
        self.fetch(|| {
            self.query(concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings ORDER BY id"
            ))
        })
        .await
    }

    async fn list(
        &self,
        status: Option<BookingStatus>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Booking>, StoreError> {
        // Keyset pagination, one index range scan per page: the primary key,
        // or `bookings_status_id` with a status (migration 20261206000010).
        let after = after.unwrap_or("");
        match status {
            None => {
                self.fetch(|| {
                    self.query(concat!(
                        "SELECT ",
                        booking_columns!(),
                        " FROM bookings WHERE id > $1 ORDER BY id LIMIT $2"
                    ))
                    .bind(after)
                    .bind(i64::from(limit))
                })
                .await
            }
            Some(status) => {
                self.fetch(|| {
                    self.query(concat!(
                        "SELECT ",
                        booking_columns!(),
                        " FROM bookings WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3"
                    ))
                    .bind(status_text(status))
                    .bind(after)
                    .bind(i64::from(limit))
                })
                .await
            }
        }
    }

    async fn reconcilable(&self, limit: u32) -> Result<Vec<Booking>, StoreError> {
        // Each branch is served by a partial index (migration 20261205000010).
        self.fetch(|| {
            self.query(concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings
                  WHERE payout_status = 'pending'
                     OR refund_status = 'requested'
                     OR (payment_reference IS NOT NULL AND escrow = 'none' AND refund_status IS NULL
                         AND status IN ('pending_payment', 'expired', 'cancelled')
                         AND hold_expires_at > now() - make_interval(secs => $1)
                         AND (next_check_at IS NULL OR next_check_at <= now()))
                  ORDER BY id LIMIT $2"
            ))
            .bind(LAPSED_CHARGE_WATCH.as_secs_f64())
            .bind(i64::from(limit))
        })
        .await
    }

    async fn charge_checked(&self, id: &str) -> Result<(), StoreError> {
        self.run(|| async {
            let mut tx = self.begin().await?;
            let checks: Option<i32> = self
                .scalar("SELECT gateway_checks FROM bookings WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(checks) = checks else {
                return Ok(());
            };
            let wait = crate::domain::check_backoff(u32::try_from(checks).unwrap_or(0));
            self.query(
                "UPDATE bookings SET gateway_checks = gateway_checks + 1,
                        next_check_at = now() + make_interval(secs => $2)
                  WHERE id = $1",
            )
            .bind(id)
            .bind(wait.as_secs_f64())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn confirm_payment(
        &self,
        reference: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Confirmation, StoreError> {
        self.run(|| self.confirm_payment_once(reference, amount_minor, currency))
            .await
    }

    async fn charge_failed(&self, reference: &str) -> Result<Option<Booking>, StoreError> {
        let changed = self
            .fetch(|| {
                self.query(concat!(
                    "UPDATE bookings SET status = 'expired', updated_at = now()
                      WHERE payment_reference = $1 AND status = 'pending_payment' RETURNING ",
                    booking_columns!()
                ))
                .bind(reference.to_owned())
            })
            .await?;
        Ok(changed.into_iter().next())
    }

    async fn expire_holds(&self) -> Result<u64, StoreError> {
        self.execute(|| {
            self.query(
                "UPDATE bookings SET status = 'expired', updated_at = now()
              WHERE status = 'pending_payment' AND hold_expires_at <= now()",
            )
        })
        .await
    }

    async fn cancel(&self, id: &str) -> Result<Option<Cancellation>, StoreError> {
        self.run(|| self.cancel_once(id)).await
    }

    async fn claim_refund(
        &self,
        id: &str,
        claim: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let claimed = self
            .execute(||
                self.query(
                    "UPDATE bookings SET refund_status = 'requested', refund_claim = $2,
                            refund_claimed_until = clock_timestamp() + make_interval(secs => $3::float8),
                            updated_at = now()
                      WHERE id = $1
                        AND (refund_status IS NULL
                             OR (refund_status = 'requested'
                                 AND (refund_claimed_until IS NULL OR refund_claimed_until <= clock_timestamp())))",
                )
                .bind(id.to_owned())
                .bind(claim.to_owned())
                .bind(lease.as_secs_f64()),
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn refund_sent(&self, id: &str, claim: &str) -> Result<bool, StoreError> {
        self.run(|| async {
            let mut tx = self.begin().await?;
            let holds: Option<bool> = self
                .scalar("SELECT refund_claim = $2 FROM bookings WHERE id = $1 FOR UPDATE")
                .bind(id)
                .bind(claim)
                .fetch_optional(&mut *tx)
                .await?;
            if holds != Some(true) {
                return Ok(false);
            }
            let moved = self
                .set_refund(id, "pending")
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            tx.commit().await?;
            Ok(moved)
        })
        .await
    }

    async fn release_refund_claim(&self, id: &str, claim: &str) -> Result<(), StoreError> {
        self.execute(|| {
            self.query(
                "UPDATE bookings SET refund_claimed_until = clock_timestamp()
                  WHERE id = $1 AND refund_claim = $2",
            )
            .bind(id.to_owned())
            .bind(claim.to_owned())
        })
        .await
        .map(|_| ())
    }

    async fn refund_event(
        &self,
        payment_reference: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        self.run(|| async {
            let mut tx = self.begin().await?;
            let id: Option<String> = self
                .scalar("SELECT id FROM bookings WHERE payment_reference = $1 FOR UPDATE")
                .bind(payment_reference)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(id) = id else { return Ok(false) };
            let moved = self
                .set_refund(&id, status)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            tx.commit().await?;
            Ok(moved)
        })
        .await
    }

    async fn due_payouts(&self, hold: Duration, limit: u32) -> Result<Vec<Booking>, StoreError> {
        self.fetch(|| {
            self.query(concat!(
                "SELECT ",
                booking_columns!(),
                " FROM bookings
                  WHERE status = 'confirmed' AND escrow = 'held' AND payout_status = 'none'
                    AND check_in::timestamp AT TIME ZONE 'UTC' <= now() - make_interval(secs => $1)
                  ORDER BY id LIMIT $2"
            ))
            .bind(hold.as_secs_f64())
            .bind(i64::from(limit))
        })
        .await
    }

    async fn begin_payout(&self, id: &str, fence: Option<&Fence>) -> Result<bool, StoreError> {
        self.run(|| self.begin_payout_once(id, fence)).await
    }

    async fn payout_event(
        &self,
        reference: &str,
        next: PayoutStatus,
    ) -> Result<Option<Booking>, StoreError> {
        let allowed_from: &[&str] = match next {
            PayoutStatus::Paid | PayoutStatus::Failed => &["pending"],
            PayoutStatus::Reversed => &["pending", "paid"],
            PayoutStatus::None | PayoutStatus::Pending => &[],
        };
        let changed = self
            .fetch(||
                self.query(concat!(
                    "UPDATE bookings SET payout_status = $2,
                            escrow = CASE $2 WHEN 'paid' THEN 'released' WHEN 'reversed' THEN 'held' ELSE escrow END,
                            status = CASE $2 WHEN 'paid' THEN 'completed' ELSE status END,
                            updated_at = now()
                      WHERE payout_reference = $1 AND payout_status = ANY($3)
                      RETURNING ", booking_columns!()
                ))
                .bind(reference.to_owned())
                .bind(payout_text(next))
                .bind(allowed_from),
            )
            .await?;
        Ok(changed.into_iter().next())
    }

    async fn backlog(
        &self,
        escrow_hold: Duration,
        patience: Duration,
    ) -> Result<Backlog, StoreError> {
        // Each count is served by a partial index.
        self.run(|| async {
            let mut tx = self.begin().await?;
            let row = self
                .query(
                    "SELECT
                       (SELECT count(*) FROM bookings
                         WHERE status = 'confirmed' AND escrow = 'held' AND payout_status IN ('none', 'pending')
                           AND check_in::timestamp AT TIME ZONE 'UTC' <= now() - make_interval(secs => $1)) AS stuck_payouts,
                       (SELECT count(*) FROM bookings
                         WHERE refund_status = 'requested'
                           AND (refund_claimed_until IS NULL OR refund_claimed_until <= clock_timestamp())) AS unsent_refunds,
                       (SELECT count(*) FROM webhook_inbox WHERE status = 'failed') AS failed_webhooks,
                       (SELECT count(*) FROM webhook_inbox WHERE status = 'dead') AS dead_webhooks",
                )
                .bind((escrow_hold + patience).as_secs_f64())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            let count = |name: &str| -> Result<u64, sqlx::Error> {
                Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
            };
            Ok(Backlog {
                stuck_payouts: count("stuck_payouts")?,
                unsent_refunds: count("unsent_refunds")?,
                failed_webhooks: count("failed_webhooks")?,
                dead_webhooks: count("dead_webhooks")?,
            })
        })
        .await
    }

    async fn inbox_receive(
        &self,
        provider: &str,
        event_id: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        self.execute(||
            self.query(
                "INSERT INTO webhook_inbox (provider, event_id, event, payload, attempts) VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (provider, event_id) DO UPDATE SET attempts = webhook_inbox.attempts + 1",
            )
            .bind(provider.to_owned())
            .bind(event_id.to_owned())
            .bind(event.to_owned())
            .bind(payload.to_vec()),
        )
        .await
        .map(|_| ())
    }

    async fn inbox_finish(
        &self,
        provider: &str,
        event_id: &str,
        outcome: InboxOutcome,
    ) -> Result<(), StoreError> {
        self.execute(|| {
            self.query(
                "UPDATE webhook_inbox SET status = $3, last_error = $4,
                        processed_at = CASE WHEN $3 = 'processed' THEN now() END
                  WHERE provider = $1 AND event_id = $2",
            )
            .bind(provider.to_owned())
            .bind(event_id.to_owned())
            .bind(outcome.status())
            .bind(outcome.error().map(str::to_owned))
        })
        .await
        .map(|_| ())
    }
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

fn booking(row: &PgRow) -> Result<Booking, sqlx::Error> {
    fn state<T: serde::de::DeserializeOwned>(row: &PgRow, name: &str) -> Result<T, sqlx::Error> {
        let text: String = row.try_get(name)?;
        serde_json::from_value(serde_json::Value::String(text))
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))
    }
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
        id: row.try_get("id")?,
        listing_id: row.try_get("listing_id")?,
        guest: serde_json::from_value(row.try_get("guest")?)
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        check_in: row.try_get("check_in")?,
        check_out: row.try_get("check_out")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: state::<BookingStatus>(row, "status")?,
        hold_expires_at: row.try_get("hold_expires_at")?,
        payment,
        escrow: state(row, "escrow")?,
        payout_status: state(row, "payout_status")?,
        payout_reference: row.try_get("payout_reference")?,
        refund_status: row.try_get("refund_status")?,
        gateway_checks: u32::try_from(row.try_get::<i32, _>("gateway_checks")?).unwrap_or(0),
        next_check_at: row.try_get("next_check_at")?,
    })
}

fn is_exclusion_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "23P01")
}

fn is_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}
