//! [`PgIdempotencyStore`]: claims and completions in one statement each,
//! judged by the database clock, every wait bounded.

use crate::key::Fingerprint;
use crate::store::{
    BoxFuture, Claim, ClaimRequest, IdempotencyStore, Lease, StoreError, StoredResponse,
};
use payguard_core::{ConfigError, FencingToken, SqlTimeouts};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use std::time::Duration;

/// The schema migrations (`payguard_idempotency` table and owner-token
/// sequence), embedded.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A store on PostgreSQL. Every instance of a service shares it; leases and
/// retention are judged by the database's clock at the moment of each
/// statement (`clock_timestamp()`), so the clocks of the instances, and the
/// age of the caller's transaction, do not matter.
///
/// - `claim` is one statement. A live record (completed, or claimed with a
///   live lease, or claimed by a different request) is answered from a
///   plain read: no row lock, nothing written. A new key is inserted; a
///   record that may be taken over (its retention or its lease ended) is
///   locked with `FOR UPDATE SKIP LOCKED` and re-claimed with a new owner
///   token, so a row someone is locking right now is answered in flight
///   instead of waited for.
/// - `complete`, `release` and `extend` are one statement each, fenced by
///   the owner token.
/// - Every operation on the pool runs in a short transaction under
///   [`SqlTimeouts`] (`SET LOCAL`, so PgBouncer in transaction mode keeps
///   working) and within a client-side deadline: a server or network that
///   stops answering gives [`StoreError::Unavailable`], never a hang.
/// - [`claim_in`](Self::claim_in), [`fence_in`](Self::fence_in) and
///   [`complete_in`](Self::complete_in) work inside the caller's own
///   transaction, so the business write and the stored response commit or
///   roll back together.
///
/// # Isolation
///
/// The store expects READ COMMITTED, PostgreSQL's default, for its own
/// transactions and for the caller's in `claim_in`. Under REPEATABLE READ
/// or SERIALIZABLE, a duplicate that races a concurrent claim gets a
/// serialization failure, which `claim_in` answers as
/// [`Claim::InFlight`]; the transaction is then aborted and must be rolled
/// back.
#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
    max_response_bytes: usize,
    timeouts: SqlTimeouts,
    prepared: bool,
}

// `existing` reads the row from the statement's snapshot; a live record is
// answered from it alone. `free` locks the row only when it may be taken
// over, skipping it if another transaction holds it (a claimer that will
// win, or a handler's transaction fencing its claim). No row at all in the
// answer means the row changed after the snapshot: the caller asks again.
// `$1` scope key, `$2` fingerprint digest, `$3` fingerprint version, `$4`
// lease ms, `$5` retention ms. (Files, so the pgbench script of
// `benches/idempotency.rs` runs the very same statements.)
const CLAIM: &str = include_str!("../sql/claim.sql");

// `$1` scope key, `$2` owner token, `$3` status, `$4` encoded headers, `$5`
// body.
const COMPLETE: &str = include_str!("../sql/complete.sql");

const RELEASE: &str = "DELETE FROM payguard_idempotency
  WHERE scope_key = $1 AND owner_token = $2 AND state = 0
RETURNING 1";

const EXTEND: &str = "UPDATE payguard_idempotency
    SET lease_expires_at = clock_timestamp() + make_interval(secs => $3::float8 / 1000)
  WHERE scope_key = $1 AND owner_token = $2 AND state = 0
RETURNING GREATEST(0, (EXTRACT(EPOCH FROM lease_expires_at - clock_timestamp()) * 1000)::bigint)";

// FOR KEY SHARE: a takeover (FOR UPDATE) waits for the handler's
// transaction; the layer's own renewal and completion (UPDATEs of non-key
// columns) do not. A claimer looking at the row this instant is waited
// for, within the transaction's own lock_timeout.
const FENCE: &str = "SELECT 1 FROM payguard_idempotency
  WHERE scope_key = $1 AND owner_token = $2 AND state = 0
    FOR KEY SHARE";

const REAP: &str = "WITH reaped AS (
    DELETE FROM payguard_idempotency WHERE scope_key IN (
        SELECT scope_key FROM payguard_idempotency
         WHERE expires_at <= clock_timestamp() AND NOT (state = 0 AND lease_expires_at > clock_timestamp())
         ORDER BY expires_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT count(*) FROM reaped";

// `claim_in` bounds its own statement inside the caller's transaction and
// then puts the caller's settings back.
const BOUND_IN: &str = "SELECT previous.lock_timeout, previous.statement_timeout
  FROM (SELECT current_setting('lock_timeout') AS lock_timeout,
               current_setting('statement_timeout') AS statement_timeout
        OFFSET 0) AS previous,
       LATERAL (SELECT set_config('lock_timeout', $1, true),
                       set_config('statement_timeout', $2, true)) AS bounded";

const RESTORE_IN: &str =
    "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)";

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

/// Whether the database refused to wait: a bound was hit, a row lock was
/// not available, or a serialization failure.
fn contended(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| SqlTimeouts::is_contention(&code))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The database did not answer within [`SqlTimeouts::client_deadline`].
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {0:?}")]
struct NoAnswer(Duration);

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Builds a [`PgIdempotencyStore`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct PgIdempotencyStoreBuilder {
    store: PgIdempotencyStore,
}

impl PgIdempotencyStoreBuilder {
    /// The largest response body kept (a larger response is stored without
    /// its body); at most 64 MiB.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.store.max_response_bytes = bytes;
        self
    }

    /// Runs every operation under these bounds instead.
    pub fn timeouts(mut self, timeouts: SqlTimeouts) -> Self {
        self.store.timeouts = timeouts;
        self
    }

    /// Whether statements are prepared once per connection and reused
    /// (default `true`). Turn it off behind a pooler that cannot keep
    /// prepared statements across transactions (PgBouncer before 1.21 in
    /// transaction mode): each statement is then parsed anew, unnamed,
    /// inside its transaction, which costs a round trip and a plan more.
    pub fn prepared_statements(mut self, prepared: bool) -> Self {
        self.store.prepared = prepared;
        self
    }

    /// Checks the settings and builds the store.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max_response_bytes` is above 64 MiB.
    pub fn build(self) -> Result<PgIdempotencyStore, ConfigError> {
        if self.store.max_response_bytes > 64 << 20 {
            return Err(ConfigError::new("max_response_bytes", "at most 64 MiB"));
        }
        Ok(self.store)
    }
}

impl PgIdempotencyStore {
    /// A store on `pool`, keeping responses up to 256 KiB, under the
    /// default [`SqlTimeouts`], with prepared statements. Run
    /// [`migrate`](Self::migrate) once before use.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            max_response_bytes: 256 << 10,
            timeouts: SqlTimeouts::default(),
            prepared: true,
        }
    }

    /// A store on `pool` with settings of your choosing (defaults as
    /// [`new`](Self::new)).
    pub fn builder(pool: PgPool) -> PgIdempotencyStoreBuilder {
        PgIdempotencyStoreBuilder {
            store: Self::new(pool),
        }
    }

    /// Creates the table and sequence if they do not exist. The applied
    /// version is recorded in its own `_payguard_idempotency_migrations`
    /// table, so it never shows up as an unknown migration to your own
    /// `sqlx::migrate!` set. To manage the schema yourself instead, copy
    /// `migrations/` from this crate into your migrations.
    ///
    /// # Errors
    ///
    /// The migration error.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate::Migrator::with_migrations(MIGRATOR.migrations.to_vec());
        migrator.dangerous_set_table_name("_payguard_idempotency_migrations");
        migrator.run(&self.pool).await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims on `connection`, typically the caller's own transaction
    /// (`&mut *tx`), for the transactional mode: the claim exists only if
    /// the transaction commits, and if it rolls back (or the process dies)
    /// no record remains and a retry executes afresh. Pair with
    /// [`complete_in`](Self::complete_in) on the same transaction.
    ///
    /// The statement runs under the store's [`SqlTimeouts`] (set for it
    /// alone; the transaction's own settings are put back after it): a
    /// duplicate whose first request is still inside its own open
    /// transaction waits at most `lock_timeout`, then is answered
    /// [`Claim::InFlight`]. That answer, like a serialization failure under
    /// REPEATABLE READ, leaves the transaction aborted: roll it back.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn claim_in(
        &self,
        connection: &mut PgConnection,
        request: ClaimRequest,
    ) -> Result<Claim, StoreError> {
        let previous: (String, String) = sqlx::query_as(BOUND_IN)
            .persistent(self.prepared)
            .bind(format!("{}ms", self.timeouts.lock().as_millis()))
            .bind(format!("{}ms", self.timeouts.statement().as_millis()))
            .fetch_one(&mut *connection)
            .await
            .map_err(unavailable)?;
        let mut answer = Ok(still_racing());
        for _ in 0..CLAIM_TRIES {
            match claim_query(&request)
                .persistent(self.prepared)
                .fetch_optional(&mut *connection)
                .await
            {
                Ok(Some(row)) => {
                    answer = decide(&request, &row);
                    break;
                }
                Ok(None) => {}
                Err(error) if contended(&error) => return Ok(still_racing()),
                Err(error) => return Err(unavailable(error)),
            }
        }
        sqlx::query(RESTORE_IN)
            .persistent(self.prepared)
            .bind(previous.0)
            .bind(previous.1)
            .execute(&mut *connection)
            .await
            .map_err(unavailable)?;
        answer
    }

    /// Checks, inside the caller's transaction, that `lease` still owns
    /// its claim, and holds off a takeover until the transaction ends
    /// (`FOR KEY SHARE`): a write made after this check commits only while
    /// the claim is this request's. The lease's own renewal and completion
    /// are not held up. A claimer looking at the row at this instant holds
    /// it for a moment: the check waits for that, within your transaction's
    /// `lock_timeout`.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`]: roll back. [`StoreError::Unavailable`]:
    /// roll back too.
    pub async fn fence_in(
        &self,
        connection: &mut PgConnection,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let held = sqlx::query(FENCE)
            .persistent(self.prepared)
            .bind(&lease.key.as_bytes()[..])
            .bind(lease.token.as_i64())
            .fetch_optional(connection)
            .await;
        match held {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StoreError::LeaseLost),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Completes the claim on `connection`, typically the caller's own
    /// transaction (`&mut *tx`): the stored response commits with the
    /// business write, or neither does. The completion fences the
    /// transaction too: it fails if the claim is no longer this lease's,
    /// and from then until the commit nobody can take the claim over. If
    /// the transaction rolls back, the claim stays in progress until
    /// released or its lease expires.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] when the token no longer owns the claim
    /// (roll back); [`StoreError::ResponseTooLarge`];
    /// [`StoreError::Unavailable`].
    pub async fn complete_in(
        &self,
        connection: &mut PgConnection,
        lease: &Lease,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.check_size(response)?;
        let row = complete_query(lease, response)
            .persistent(self.prepared)
            .fetch_optional(connection)
            .await
            .map_err(unavailable)?;
        owned(row)
    }

    fn check_size(&self, response: &StoredResponse) -> Result<(), StoreError> {
        if response.body.len() > self.max_response_bytes || !response.headers_fit() {
            return Err(StoreError::ResponseTooLarge {
                size: response.body.len(),
                limit: self.max_response_bytes,
            });
        }
        Ok(())
    }

    /// Runs `statement` under the timeouts (in a transaction that sets
    /// them, unless they are inherited) and gives up on the client side
    /// after their deadline.
    async fn bounded(&self, statement: PgQuery<'_>) -> Result<Option<PgRow>, sqlx::Error> {
        let statement = statement.persistent(self.prepared);
        let begin = match self.timeouts.begin_sql() {
            Some(begin) => Some(begin),
            // Unnamed statements need their transaction behind a pooler.
            None if !self.prepared => Some("BEGIN".to_owned()),
            None => None,
        };
        let work = async {
            let Some(begin) = begin else {
                return statement.fetch_optional(&self.pool).await;
            };
            let mut tx = self.pool.begin_with(AssertSqlSafe(begin)).await?;
            let row = statement.fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            Ok(row)
        };
        let deadline = self.timeouts.client_deadline();
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::Io(std::io::Error::other(NoAnswer(deadline)))))
    }
}

/// How often a claim is re-asked after an empty answer (the row changed
/// after the statement's snapshot) before answering in flight.
const CLAIM_TRIES: usize = 5;

fn still_racing() -> Claim {
    Claim::InFlight {
        retry_after: Duration::from_millis(100),
    }
}

fn claim_query(request: &ClaimRequest) -> PgQuery<'static> {
    sqlx::query(CLAIM)
        .bind(request.key.as_bytes().to_vec())
        .bind(request.fingerprint.digest().to_vec())
        .bind(i16::try_from(request.fingerprint.version()).unwrap_or(i16::MAX))
        .bind(millis(request.lease))
        .bind(millis(request.retention))
}

fn complete_query<'q>(lease: &'q Lease, response: &'q StoredResponse) -> PgQuery<'q> {
    sqlx::query(COMPLETE)
        .bind(&lease.key.as_bytes()[..])
        .bind(lease.token.as_i64())
        .bind(i16::try_from(response.status).unwrap_or(i16::MAX))
        .bind(response.encode_headers())
        .bind(&response.body[..])
}

/// A fenced statement's answer: a row if the token still owned the claim.
fn owned(row: Option<PgRow>) -> Result<(), StoreError> {
    row.map(drop).ok_or(StoreError::LeaseLost)
}

fn decide(request: &ClaimRequest, row: &PgRow) -> Result<Claim, StoreError> {
    let get = |error: sqlx::Error| unavailable(error);
    let claimed: bool = row.try_get("claimed").map_err(get)?;
    let token: i64 = row.try_get("owner_token").map_err(get)?;
    let attempt: i32 = row.try_get("attempt").map_err(get)?;
    let lease_ms: i64 = row.try_get("lease_ms").map_err(get)?;
    if claimed {
        return Ok(Claim::Claimed(Lease {
            key: request.key,
            token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
            attempt: u32::try_from(attempt).unwrap_or(0),
            granted: from_millis(lease_ms),
        }));
    }
    let digest: Vec<u8> = row.try_get("fingerprint").map_err(get)?;
    let version: i16 = row.try_get("fingerprint_version").map_err(get)?;
    let stored = Fingerprint::from_parts(
        u16::try_from(version).unwrap_or(0),
        digest.try_into().unwrap_or([0; 32]),
    );
    if stored != request.fingerprint {
        return Ok(Claim::Mismatch);
    }
    let state: i16 = row.try_get("state").map_err(get)?;
    if state == 1 {
        let status: i16 = row.try_get("response_status").map_err(get)?;
        let headers: Vec<u8> = row.try_get("response_headers").map_err(get)?;
        let body: Vec<u8> = row.try_get("response_body").map_err(get)?;
        return Ok(Claim::Replay(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            headers: StoredResponse::decode_headers(&headers).unwrap_or_default(),
            body,
        }));
    }
    Ok(Claim::InFlight {
        retry_after: from_millis(lease_ms),
    })
}

impl IdempotencyStore for PgIdempotencyStore {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            for _ in 0..CLAIM_TRIES {
                match self.bounded(claim_query(&request)).await {
                    Ok(Some(row)) => return decide(&request, &row),
                    Ok(None) => {}
                    Err(error) if contended(&error) => return Ok(still_racing()),
                    Err(error) => return Err(unavailable(error)),
                }
            }
            Ok(still_racing())
        })
    }

    fn complete<'a>(
        &'a self,
        lease: &'a Lease,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check_size(response)?;
            owned(
                self.bounded(complete_query(lease, response))
                    .await
                    .map_err(unavailable)?,
            )
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let statement = sqlx::query(RELEASE)
                .bind(&lease.key.as_bytes()[..])
                .bind(lease.token.as_i64());
            owned(self.bounded(statement).await.map_err(unavailable)?)
        })
    }

    fn extend<'a>(
        &'a self,
        lease: &'a Lease,
        by: Duration,
    ) -> BoxFuture<'a, Result<Duration, StoreError>> {
        Box::pin(async move {
            let statement = sqlx::query(EXTEND)
                .bind(&lease.key.as_bytes()[..])
                .bind(lease.token.as_i64())
                .bind(millis(by));
            let row = self.bounded(statement).await.map_err(unavailable)?;
            let row = row.ok_or(StoreError::LeaseLost)?;
            let ms: i64 = row.try_get(0).map_err(unavailable)?;
            Ok(from_millis(ms))
        })
    }

    fn reap(&self, batch: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let statement = sqlx::query(REAP).bind(i64::try_from(batch).unwrap_or(i64::MAX));
            let row = self.bounded(statement).await.map_err(unavailable)?;
            let reaped: i64 = match row {
                Some(row) => row.try_get(0).map_err(unavailable)?,
                None => 0,
            };
            Ok(u64::try_from(reaped).unwrap_or(0))
        })
    }
}
