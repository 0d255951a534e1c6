//! [`PgLeaseLock`], the default strategy, and [`Fence`], which checks a
//! holder's token inside the caller's own transaction.

use crate::locker::LockGuard;
use crate::owner::Owner;
use crate::strategy::{
    AcquireAnswer, BoxFuture, Grant, LeaseTerms, LockError, LockInfo, LockStrategy, ReleaseNotices,
    host_name, millis,
};
use payguard_core::FencingToken;
use payguard_core::SqlTimeouts;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// The schema migrations (`payguard_locks`, `payguard_lock_slots`,
/// `payguard_lock_intents`), embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A lease in `payguard_locks`, one row per lock name, judged by the
/// database clock (`clock_timestamp()`), so the clocks of your instances
/// do not matter.
///
/// - Acquiring is one statement. A busy answer is a plain read: it takes no
///   row lock, writes nothing and never queues behind the holder. A free or
///   expired row is taken with `FOR UPDATE SKIP LOCKED` (a row someone else
///   is locking right now is reported busy, not waited for), and the
///   fencing token is drawn from a sequence under that row lock, so tokens
///   grow in commit order, and keep growing across a deleted row.
/// - Renewing and releasing are one statement each and require the
///   current owner *and* token; renewing also requires an unexpired lease,
///   so a holder that was away too long can never resurrect it. A release
///   is announced (`NOTIFY payguard_lock_released`), so waiters sleep
///   until the lease would end instead of polling, and wake when it is
///   given back.
/// - Every operation runs in a short transaction under [`SqlTimeouts`]
///   (`SET LOCAL lock_timeout` and `statement_timeout`, so PgBouncer in
///   transaction mode keeps working) and within a client-side deadline: a
///   server or network that stops answering gives a typed error, never a
///   hang.
/// - [`Fence::check`] lets the job's own transaction refuse to commit once
///   the lease is no longer its own, without blocking the holder's renewal.
#[derive(Debug, Clone)]
pub struct PgLeaseLock {
    pool: PgPool,
    host: Option<String>,
    timeouts: SqlTimeouts,
    prepared: bool,
    notices: Option<Arc<Notices>>,
}

const ACQUIRE: &str = r#"
WITH current AS (
    SELECT owner, token, expires_at, holder_host, holder_pid, expires_at > clock_timestamp() AS live
      FROM payguard_locks
     WHERE name = $1
),
free AS (
    SELECT name FROM payguard_locks
     WHERE name = $1 AND expires_at <= clock_timestamp()
       FOR UPDATE SKIP LOCKED
),
taken AS (
    UPDATE payguard_locks AS l SET
        owner = $2,
        token = nextval('payguard_lock_tokens'),
        acquired_at = clock_timestamp(),
        renewed_at = clock_timestamp(),
        expires_at = clock_timestamp() + make_interval(secs => $3::float8 / 1000),
        hold_until = clock_timestamp() + make_interval(secs => $4::float8 / 1000),
        holder_host = $5,
        holder_pid = $6
      FROM free
     WHERE l.name = free.name AND l.expires_at <= clock_timestamp()
    RETURNING l.token, l.expires_at
),
created AS (
    INSERT INTO payguard_locks
        (name, owner, token, acquired_at, renewed_at, expires_at, hold_until, holder_host, holder_pid)
    SELECT $1, $2, nextval('payguard_lock_tokens'), clock_timestamp(), clock_timestamp(),
           clock_timestamp() + make_interval(secs => $3::float8 / 1000),
           clock_timestamp() + make_interval(secs => $4::float8 / 1000),
           $5, $6
     WHERE NOT EXISTS (SELECT 1 FROM current)
    ON CONFLICT (name) DO NOTHING
    RETURNING token, expires_at
),
won AS (
    SELECT token, expires_at FROM taken
    UNION ALL
    SELECT token, expires_at FROM created
)
SELECT true AS acquired, token, NULL::text AS owner, NULL::text AS holder_host, NULL::integer AS holder_pid,
       EXTRACT(EPOCH FROM expires_at)::float8 AS expires_epoch,
       GREATEST(0, EXTRACT(EPOCH FROM expires_at - clock_timestamp()) * 1000)::bigint AS remaining_ms
  FROM won
UNION ALL
SELECT false, token, CASE WHEN live THEN owner END, holder_host, holder_pid,
       EXTRACT(EPOCH FROM expires_at)::float8,
       GREATEST(0, EXTRACT(EPOCH FROM expires_at - clock_timestamp()) * 1000)::bigint
  FROM current
 WHERE NOT EXISTS (SELECT 1 FROM won)
"#;

const RENEW: &str = "UPDATE payguard_locks
    SET renewed_at = clock_timestamp(),
        expires_at = LEAST(clock_timestamp() + make_interval(secs => $4::float8 / 1000),
                           COALESCE(hold_until, 'infinity'::timestamptz))
  WHERE name = $1 AND owner = $2 AND token = $3 AND expires_at > clock_timestamp()
RETURNING GREATEST(0, EXTRACT(EPOCH FROM expires_at - clock_timestamp()) * 1000)::bigint";

/// The channel releases are announced on; the payload is the lock name.
const RELEASED_CHANNEL: &str = "payguard_lock_released";

const RELEASE: &str = "WITH released AS (
    UPDATE payguard_locks
       SET owner = NULL,
           expires_at = GREATEST(clock_timestamp(), acquired_at + make_interval(secs => $4::float8 / 1000))
     WHERE name = $1 AND owner = $2 AND token = $3
    RETURNING name
)
SELECT pg_notify('payguard_lock_released', left(name, 4000)) FROM released";

const LOCKS: &str = "SELECT name, CASE WHEN expires_at > clock_timestamp() THEN owner END AS owner, token,
       holder_host, holder_pid, EXTRACT(EPOCH FROM expires_at)::float8 AS expires_epoch,
       GREATEST(0, EXTRACT(EPOCH FROM expires_at - clock_timestamp()) * 1000)::bigint AS remaining_ms
  FROM payguard_locks
 WHERE $1::text IS NULL OR name = $1
 ORDER BY name";

// FOR KEY SHARE: a takeover (FOR UPDATE) waits for the fenced transaction,
// the holder's renewal (an UPDATE of non-key columns) does not. A taker
// that is looking at the row this instant (it locks the newest version
// before rechecking that it expired) is waited for: briefly, and within
// the transaction's own lock_timeout.
const CHECK: &str = "SELECT 1 FROM payguard_locks
  WHERE name = $1 AND owner = $2 AND token = $3 AND expires_at > clock_timestamp()
    FOR KEY SHARE";
const INTENT: &str = "WITH inserted AS (
    INSERT INTO payguard_lock_intents (lock_name, item, reference, token) VALUES ($1, $2, $3, $4)
    ON CONFLICT (lock_name, item) DO NOTHING
    RETURNING reference
)
SELECT reference FROM inserted
UNION ALL
SELECT reference FROM payguard_lock_intents
 WHERE lock_name = $1 AND item = $2 AND NOT EXISTS (SELECT 1 FROM inserted)";

const SLOT: &str = "INSERT INTO payguard_lock_slots (lock_name, slot, token)
VALUES ($1, to_timestamp($2::float8), $3)
ON CONFLICT (lock_name, slot) DO NOTHING";

fn unavailable(error: sqlx::Error) -> LockError {
    LockError::unavailable(error)
}

/// Whether the database refused to wait: a bound of [`SqlTimeouts`] was
/// hit, or a row lock was not available.
fn contended(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| SqlTimeouts::is_contention(&code))
}

fn remaining(row: &PgRow) -> Result<Duration, LockError> {
    let ms: i64 = row.try_get("remaining_ms").map_err(unavailable)?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn info(name: String, row: &PgRow) -> Result<LockInfo, LockError> {
    let get = |error: sqlx::Error| unavailable(error);
    let epoch: Option<f64> = row.try_get("expires_epoch").map_err(get)?;
    let token: i64 = row.try_get("token").map_err(get)?;
    let pid: Option<i32> = row.try_get("holder_pid").map_err(get)?;
    Ok(LockInfo {
        name,
        owner: row.try_get("owner").map_err(get)?,
        token: u64::try_from(token)
            .ok()
            .filter(|token| *token > 0)
            .map(FencingToken::new),
        expires_at: epoch
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(|seconds| UNIX_EPOCH + Duration::from_secs_f64(seconds)),
        expires_in: Some(remaining(row)?),
        host: row.try_get("holder_host").map_err(get)?,
        pid: pid.and_then(|pid| u32::try_from(pid).ok()),
    })
}

/// The database did not answer within [`SqlTimeouts::client_deadline`].
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {0:?}")]
struct NoAnswer(Duration);

impl PgLeaseLock {
    /// Leases in `pool`'s database, under the default [`SqlTimeouts`]. Run
    /// [`migrate`](Self::migrate) once before use.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            host: host_name(),
            timeouts: SqlTimeouts::default(),
            prepared: true,
            notices: Some(Arc::default()),
        }
    }

    /// Runs every operation under these bounds instead.
    #[must_use]
    pub fn timeouts(mut self, timeouts: SqlTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Whether statements are prepared once per connection and reused
    /// (default `true`). Turn it off behind a pooler that cannot keep
    /// prepared statements across transactions (PgBouncer before 1.21 in
    /// transaction mode): each statement is then parsed anew, unnamed,
    /// inside its transaction, which costs a round trip and a plan more.
    #[must_use]
    pub fn prepared_statements(mut self, prepared: bool) -> Self {
        self.prepared = prepared;
        self
    }

    /// Whether waiters listen for releases (`LISTEN payguard_lock_released`
    /// on one connection of the pool; default `true`). Turn it off behind
    /// a pooler in transaction mode: `LISTEN` does not follow a session
    /// there, and its notifications would reach other clients' connections.
    /// Waiters then sleep until the holder's lease ends, capped by
    /// `LockOptions::poll_every`.
    #[must_use]
    pub fn listen_for_releases(mut self, listen: bool) -> Self {
        self.notices = listen.then(Arc::default);
        self
    }

    /// Creates the tables if they do not exist, recording the version in
    /// its own `_payguard_lock_migrations` table (your own `sqlx::migrate!`
    /// history is untouched).
    ///
    /// # Errors
    ///
    /// The migration error.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate::Migrator::with_migrations(MIGRATOR.migrations.to_vec());
        migrator.dangerous_set_table_name("_payguard_lock_migrations");
        migrator.run(&self.pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `statement` under the timeouts (in a transaction that sets
    /// them, unless they are inherited) and gives up on the client side
    /// after their deadline.
    async fn bounded(&self, statement: PgQuery<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        let statement = statement.persistent(self.prepared);
        let begin = match self.timeouts.begin_sql() {
            Some(begin) => Some(begin),
            // Unnamed statements need their transaction behind a pooler.
            None if !self.prepared => Some("BEGIN".to_owned()),
            None => None,
        };
        let work = async {
            let Some(begin) = begin else {
                return statement.fetch_all(&self.pool).await;
            };
            let mut tx = self.pool.begin_with(AssertSqlSafe(begin)).await?;
            let rows = statement.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok(rows)
        };
        let deadline = self.timeouts.client_deadline();
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::Io(std::io::Error::other(NoAnswer(deadline)))))
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl LockStrategy for PgLeaseLock {
    fn kind(&self) -> &'static str {
        "pg-lease"
    }

    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>> {
        Box::pin(async move {
            let lease = terms
                .at_most
                .map_or(terms.ttl, |at_most| terms.ttl.min(at_most));
            let statement = sqlx::query(ACQUIRE)
                .bind(name)
                .bind(owner.as_str())
                .bind(millis(lease))
                .bind(terms.at_most.map(millis))
                .bind(self.host.as_deref())
                .bind(i32::try_from(std::process::id()).ok());
            // No row at all: another acquisition created the row after this
            // statement's snapshot. A contended statement: someone holds the
            // row (or the table) locked. Both are busy, holder unknown.
            let busy = || {
                AcquireAnswer::Busy(LockInfo {
                    name: name.to_owned(),
                    ..LockInfo::default()
                })
            };
            let row = match self
                .bounded(statement)
                .await
                .map(|rows| rows.into_iter().next())
            {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(busy()),
                Err(error) if contended(&error) => return Ok(busy()),
                Err(error) => return Err(unavailable(error)),
            };
            if row.try_get("acquired").map_err(unavailable)? {
                let token: i64 = row.try_get("token").map_err(unavailable)?;
                return Ok(AcquireAnswer::Acquired(Grant {
                    name: name.to_owned(),
                    owner: owner.clone(),
                    token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
                    remaining: remaining(&row)?,
                }));
            }
            Ok(AcquireAnswer::Busy(info(name.to_owned(), &row)?))
        })
    }

    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>> {
        Box::pin(async move {
            let statement = sqlx::query(RENEW)
                .bind(&grant.name)
                .bind(grant.owner.as_str())
                .bind(grant.token.as_i64())
                .bind(millis(terms.ttl));
            let rows = self.bounded(statement).await.map_err(unavailable)?;
            let row = rows.first().ok_or_else(|| LockError::lost(&grant.name))?;
            let ms: i64 = row.try_get(0).map_err(unavailable)?;
            Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        })
    }

    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let statement = sqlx::query(RELEASE)
                .bind(&grant.name)
                .bind(grant.owner.as_str())
                .bind(grant.token.as_i64())
                .bind(millis(terms.at_least));
            if self
                .bounded(statement)
                .await
                .map_err(unavailable)?
                .is_empty()
            {
                return Err(LockError::lost(&grant.name));
            }
            Ok(())
        })
    }

    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>> {
        Box::pin(async move {
            let rows = self
                .bounded(sqlx::query(LOCKS).bind(name))
                .await
                .map_err(unavailable)?;
            rows.iter()
                .map(|row| info(row.try_get("name").map_err(unavailable)?, row))
                .collect()
        })
    }

    fn release_notices(&self) -> Option<ReleaseNotices> {
        self.notices
            .as_ref()
            .map(|notices| notices.subscribe(&self.pool))
    }
}

/// Releases announced by PostgreSQL (`LISTEN payguard_lock_released`),
/// shared by every waiter of one [`PgLeaseLock`]: one listening connection,
/// opened on the first subscription and closed when nobody listens.
#[derive(Debug, Default)]
struct Notices {
    sender: Mutex<Option<broadcast::Sender<Arc<str>>>>,
}

impl Notices {
    fn subscribe(&self, pool: &PgPool) -> ReleaseNotices {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(live) = sender.as_ref().filter(|live| live.receiver_count() > 0) {
            return ReleaseNotices::new(live.subscribe());
        }
        let (live, receiver) = broadcast::channel(64);
        tokio::spawn(listen(pool.clone(), live.clone()));
        *sender = Some(live);
        ReleaseNotices::new(receiver)
    }
}

/// Forwards release notifications until no waiter is left, then closes
/// its connection. While the connection is down, waiters sleep until the
/// lease would end; when it comes back, every waiter is woken to look
/// again (a release may have been missed).
async fn listen(pool: PgPool, sender: broadcast::Sender<Arc<str>>) {
    tokio::select! {
        () = sender.closed() => {}
        () = forward(&pool, &sender) => {}
    }
}

async fn forward(pool: &PgPool, sender: &broadcast::Sender<Arc<str>>) {
    let wake_all = || {
        let _ = sender.send(Arc::from(""));
    };
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(RELEASED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                wake_all();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notice)) => {
                            let _ = sender.send(Arc::from(notice.payload()));
                        }
                        // Reconnected: notices may have been missed.
                        Ok(None) => wake_all(),
                        Err(error) => {
                            crate::telemetry::not_listening(&error);
                            break;
                        }
                    }
                }
            }
            Err(error) => crate::telemetry::not_listening(&error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A holder's proof, to check inside the transaction that makes the
/// protected change (for locks held through [`PgLeaseLock`]).
///
/// ```no_run
/// # async fn example(guard: payguard_lock::LockGuard, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let fence = guard.fence();
/// let mut tx = pool.begin().await?;
/// fence.check(&mut tx).await?; // Err(Lost) once another instance took over
/// sqlx::query("UPDATE escrows SET state = 'released' WHERE id = $1").bind(42_i64).execute(&mut *tx).await?;
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    name: String,
    owner: Owner,
    token: FencingToken,
}

impl LockGuard {
    /// The proof to check in the job's transactions.
    pub fn fence(&self) -> Fence {
        Fence::new(self.name(), self.owner().clone(), self.token())
    }
}

impl Fence {
    pub(crate) fn new(name: &str, owner: Owner, token: FencingToken) -> Self {
        Self {
            name: name.to_owned(),
            owner,
            token,
        }
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The holder's token.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Checks, inside the caller's transaction, that this holder still owns
    /// a live lease, and keeps anyone from taking it over until the
    /// transaction ends (`FOR KEY SHARE` on the lock row): a change made
    /// after this check commits only while the lease is ours. The holder's
    /// own heartbeat keeps renewing meanwhile, so a long transaction does
    /// not make the lease lapse; it does hold off a takeover after a crash
    /// for as long as it stays open.
    ///
    /// A taker looking at the row at this instant holds it for a moment;
    /// the check waits for that, within your transaction's `lock_timeout`
    /// (set one: `SET LOCAL lock_timeout = '1s'`), and answers
    /// [`LockError::Unavailable`] if it runs out.
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`]: roll back. [`LockError::Unavailable`]: roll
    /// back too (the lease could not be confirmed).
    pub async fn check(&self, connection: &mut PgConnection) -> Result<(), LockError> {
        let held = sqlx::query(CHECK)
            .persistent(false)
            .bind(&self.name)
            .bind(self.owner.as_str())
            .bind(self.token.as_i64())
            .fetch_optional(&mut *connection)
            .await
            .map_err(unavailable)?;
        held.map(|_| ()).ok_or_else(|| LockError::lost(&self.name))
    }

    /// The reference to send to a gateway for `item` (a payout, a
    /// transfer): checks the lease, then returns the reference recorded for
    /// this lock and item, recording [`intent_reference`] of this holder's
    /// token if there is none. Every later holder gets the same reference,
    /// so a payout retried after a takeover is deduplicated by the
    /// gateway instead of paid twice. Commit the transaction before calling
    /// the gateway.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub async fn reference(
        &self,
        connection: &mut PgConnection,
        item: &str,
    ) -> Result<String, LockError> {
        self.check(&mut *connection).await?;
        let reference = intent_reference(&self.name, self.token, item);
        for _ in 0..3 {
            let recorded: Option<String> = sqlx::query_scalar(INTENT)
                .persistent(false)
                .bind(&self.name)
                .bind(item)
                .bind(&reference)
                .bind(self.token.as_i64())
                .fetch_optional(&mut *connection)
                .await
                .map_err(unavailable)?;
            if let Some(recorded) = recorded {
                return Ok(recorded);
            }
        }
        Err(LockError::Unsupported(format!(
            "the intent for {item:?} keeps changing under concurrent writers"
        )))
    }

    /// Records that the run for schedule `slot` happened: `true` the first
    /// time for this lock and slot, `false` ever after, so a tick runs at
    /// most once even if two holders briefly coexist. Call it in the
    /// transaction that makes the run's changes (after checking the lease).
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub async fn claim_slot(
        &self,
        connection: &mut PgConnection,
        slot: SystemTime,
    ) -> Result<bool, LockError> {
        self.check(&mut *connection).await?;
        let seconds = slot
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let result = sqlx::query(SLOT)
            .persistent(false)
            .bind(&self.name)
            .bind(seconds)
            .bind(self.token.as_i64())
            .execute(&mut *connection)
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }
}

/// The gateway reference for `item` done under `lock` by the holder with
/// `token`: `pgl_` and 32 hex digits of SHA-256 over the three, safe for
/// Paystack, Flutterwave and Stripe references. Use [`Fence::reference`],
/// which keeps the first holder's reference for later holders.
pub fn intent_reference(lock: &str, token: FencingToken, item: &str) -> String {
    let digest = Sha256::new()
        .chain_update(lock.as_bytes())
        .chain_update([0])
        .chain_update(token.get().to_be_bytes())
        .chain_update([0])
        .chain_update(item.as_bytes())
        .finalize();
    let mut reference = String::from("pgl_");
    for byte in digest.iter().take(16) {
        reference.push_str(&format!("{byte:02x}"));
    }
    reference
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_stable_and_distinct() {
        let a = intent_reference("escrow-release", FencingToken::new(7), "booking-42");
        assert_eq!(
            a,
            intent_reference("escrow-release", FencingToken::new(7), "booking-42")
        );
        assert_eq!(a.len(), 36);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_ne!(
            a,
            intent_reference("escrow-release", FencingToken::new(8), "booking-42")
        );
        assert_ne!(
            a,
            intent_reference("escrow-release", FencingToken::new(7), "booking-43")
        );
    }
}
