//! [`PgIdempotencyStore`]: claims and completions in one round trip each,
//! judged by the database clock.

use crate::key::Fingerprint;
use crate::store::{
    BoxFuture, Claim, ClaimRequest, IdempotencyStore, Lease, StoreError, StoredResponse,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};
use std::time::Duration;

/// The schema migrations (`payguard_idempotency` table and owner-token
/// sequence), embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A store on PostgreSQL. Every instance of a service shares it; leases and
/// retention are judged by the database's `now()`, so clocks of the
/// instances do not matter.
///
/// - `claim` is one statement: a read of the row, answered as is when the
///   record is live (a replay writes nothing), else an `INSERT … ON
///   CONFLICT DO UPDATE` that takes the row only when it is new, past
///   retention, or an expired claim with the same fingerprint.
/// - `complete`, `release` and `extend` are one statement each, fenced by
///   the owner token.
/// - [`complete_in`](Self::complete_in) writes the response inside the
///   caller's own transaction, so the business write and the stored
///   response commit or roll back together.
#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
    max_response_bytes: usize,
}

// A live record (completed, or claimed with a live lease, or claimed by a
// different request) is answered from the statement's snapshot without
// writing anything, so a replay is a read. Otherwise the INSERT claims the
// key; its ON CONFLICT re-checks the latest row version, so two racing
// claims cannot both win. No row at all means a concurrent claim committed
// after the snapshot: the caller asks again.
const CLAIM: &str = r#"
WITH existing AS (
    SELECT owner_token, attempt, state, fingerprint, fingerprint_version, lease_expires_at,
           response_status, response_headers, response_body,
           (expires_at <= now() AND (state = 1 OR lease_expires_at <= now()))
           OR (state = 0 AND lease_expires_at <= now()
               AND fingerprint = $2::bytea AND fingerprint_version = $3::smallint) AS claimable
      FROM payguard_idempotency
     WHERE scope_key = $1::bytea
),
claimed AS (
    INSERT INTO payguard_idempotency AS c
        (scope_key, fingerprint, fingerprint_version, state, owner_token, attempt, lease_expires_at, expires_at)
    SELECT $1::bytea, $2::bytea, $3::smallint, 0, nextval('payguard_idempotency_owner_token'), 1,
           now() + make_interval(secs => $4::float8 / 1000), now() + make_interval(secs => $5::float8 / 1000)
     WHERE NOT EXISTS (SELECT 1 FROM existing WHERE NOT claimable)
    ON CONFLICT (scope_key) DO UPDATE SET
        fingerprint = EXCLUDED.fingerprint,
        fingerprint_version = EXCLUDED.fingerprint_version,
        state = 0,
        owner_token = EXCLUDED.owner_token,
        attempt = CASE WHEN c.expires_at <= now() THEN 1 ELSE c.attempt + 1 END,
        lease_expires_at = EXCLUDED.lease_expires_at,
        expires_at = CASE WHEN c.expires_at <= now() THEN EXCLUDED.expires_at ELSE c.expires_at END,
        created_at = CASE WHEN c.expires_at <= now() THEN now() ELSE c.created_at END,
        completed_at = NULL, response_status = NULL, response_headers = NULL, response_body = NULL
    WHERE (c.expires_at <= now() AND (c.state = 1 OR c.lease_expires_at <= now()))
       OR (c.state = 0 AND c.lease_expires_at <= now()
           AND c.fingerprint = EXCLUDED.fingerprint AND c.fingerprint_version = EXCLUDED.fingerprint_version)
    RETURNING c.owner_token, c.attempt
)
SELECT true AS claimed, owner_token, attempt, NULL::smallint AS state, NULL::bytea AS fingerprint,
       NULL::smallint AS fingerprint_version, NULL::bigint AS lease_ms,
       NULL::smallint AS response_status, NULL::bytea AS response_headers, NULL::bytea AS response_body
  FROM claimed
UNION ALL
SELECT false, owner_token, attempt, state, fingerprint, fingerprint_version,
       GREATEST(0, (EXTRACT(EPOCH FROM lease_expires_at - now()) * 1000)::bigint),
       response_status, response_headers, response_body
  FROM existing
 WHERE NOT claimable
"#;

const COMPLETE: &str = "UPDATE payguard_idempotency
    SET state = 1, completed_at = now(), response_status = $3, response_headers = $4, response_body = $5
  WHERE scope_key = $1 AND owner_token = $2 AND state = 0";

const RELEASE: &str =
    "DELETE FROM payguard_idempotency WHERE scope_key = $1 AND owner_token = $2 AND state = 0";

const EXTEND: &str = "UPDATE payguard_idempotency
    SET lease_expires_at = now() + make_interval(secs => $3::float8 / 1000)
  WHERE scope_key = $1 AND owner_token = $2 AND state = 0";

const REAP: &str = "DELETE FROM payguard_idempotency WHERE scope_key IN (
    SELECT scope_key FROM payguard_idempotency
     WHERE expires_at <= now() AND NOT (state = 0 AND lease_expires_at > now())
     ORDER BY expires_at
     LIMIT $1
     FOR UPDATE SKIP LOCKED)";

fn unavailable(error: sqlx::Error) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl PgIdempotencyStore {
    /// The claim statement (`$1` scope key, `$2` fingerprint digest, `$3`
    /// fingerprint version, `$4` lease ms, `$5` retention ms), for review
    /// and for load tests with `pgbench`.
    pub const CLAIM_SQL: &'static str = CLAIM;
    /// The completion statement (`$1` scope key, `$2` owner token, `$3`
    /// status, `$4` encoded headers, `$5` body).
    pub const COMPLETE_SQL: &'static str = COMPLETE;

    /// A store on `pool`, keeping responses up to 256 KiB. Run
    /// [`migrate`](Self::migrate) once before use.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            max_response_bytes: 256 << 10,
        }
    }

    /// The largest response body kept.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
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
    /// the transaction commits. Until then duplicates wait on the row
    /// instead of seeing it in flight, and if the transaction rolls back
    /// (or the process dies) no record remains and a retry executes afresh.
    /// Pair with [`complete_in`](Self::complete_in) on the same
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn claim_in(
        &self,
        connection: &mut PgConnection,
        request: ClaimRequest,
    ) -> Result<Claim, StoreError> {
        for _ in 0..CLAIM_TRIES {
            if let Some(claim) = claim_once(&mut *connection, &request).await? {
                return Ok(claim);
            }
        }
        Ok(still_racing())
    }

    /// Completes the claim on `connection`, typically the caller's own
    /// transaction (`&mut *tx`): the stored response commits with the
    /// business write, or neither does. If the transaction rolls back, the
    /// claim stays in progress until released or its lease expires.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] when the token no longer owns the claim;
    /// [`StoreError::ResponseTooLarge`]; [`StoreError::Unavailable`].
    pub async fn complete_in(
        &self,
        connection: &mut PgConnection,
        lease: &Lease,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.check_size(response)?;
        let result = complete_query(lease, response)
            .execute(connection)
            .await
            .map_err(unavailable)?;
        owned(result.rows_affected())
    }

    fn check_size(&self, response: &StoredResponse) -> Result<(), StoreError> {
        if response.body.len() > self.max_response_bytes {
            return Err(StoreError::ResponseTooLarge {
                size: response.body.len(),
                limit: self.max_response_bytes,
            });
        }
        Ok(())
    }
}

/// How often a claim is re-asked after an empty answer (a concurrent claim
/// committed after the statement's snapshot) before answering in flight.
const CLAIM_TRIES: usize = 5;

fn still_racing() -> Claim {
    Claim::InFlight {
        retry_after: Duration::from_millis(100),
    }
}

async fn claim_once<'e>(
    executor: impl PgExecutor<'e>,
    request: &ClaimRequest,
) -> Result<Option<Claim>, StoreError> {
    let row = sqlx::query(CLAIM)
        .bind(&request.key.as_bytes()[..])
        .bind(&request.fingerprint.digest()[..])
        .bind(i16::try_from(request.fingerprint.version()).unwrap_or(i16::MAX))
        .bind(millis(request.lease))
        .bind(millis(request.retention))
        .fetch_optional(executor)
        .await
        .map_err(unavailable)?;
    row.map(|row| decide(request, &row)).transpose()
}

fn complete_query<'q>(
    lease: &'q Lease,
    response: &'q StoredResponse,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(COMPLETE)
        .bind(&lease.key.as_bytes()[..])
        .bind(i64::try_from(lease.token).unwrap_or(i64::MAX))
        .bind(i16::try_from(response.status).unwrap_or(i16::MAX))
        .bind(response.encode_headers())
        .bind(&response.body[..])
}

fn owned(rows: u64) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost)
    }
}

fn decide(request: &ClaimRequest, row: &PgRow) -> Result<Claim, StoreError> {
    let get = |error: sqlx::Error| unavailable(error);
    let claimed: bool = row.try_get("claimed").map_err(get)?;
    let token: i64 = row.try_get("owner_token").map_err(get)?;
    let attempt: i32 = row.try_get("attempt").map_err(get)?;
    if claimed {
        return Ok(Claim::Claimed(Lease {
            key: request.key,
            token: u64::try_from(token).unwrap_or(0),
            attempt: u32::try_from(attempt).unwrap_or(0),
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
    let lease_ms: i64 = row.try_get("lease_ms").map_err(get)?;
    Ok(Claim::InFlight {
        retry_after: Duration::from_millis(u64::try_from(lease_ms).unwrap_or(0)),
    })
}

impl IdempotencyStore for PgIdempotencyStore {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            // An empty answer means a concurrent claim committed after this
            // statement's snapshot: ask again, with a fresh snapshot.
            for _ in 0..CLAIM_TRIES {
                if let Some(claim) = claim_once(&self.pool, &request).await? {
                    return Ok(claim);
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
            let result = complete_query(lease, response)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            owned(result.rows_affected())
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let result = sqlx::query(RELEASE)
                .bind(&lease.key.as_bytes()[..])
                .bind(i64::try_from(lease.token).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            owned(result.rows_affected())
        })
    }

    fn extend<'a>(
        &'a self,
        lease: &'a Lease,
        by: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let result = sqlx::query(EXTEND)
                .bind(&lease.key.as_bytes()[..])
                .bind(i64::try_from(lease.token).unwrap_or(i64::MAX))
                .bind(millis(by))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            owned(result.rows_affected())
        })
    }

    fn reap(&self, batch: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let result = sqlx::query(REAP)
                .bind(i64::try_from(batch).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            Ok(result.rows_affected())
        })
    }
}
