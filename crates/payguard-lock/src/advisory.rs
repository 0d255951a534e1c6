//! [`PgSessionLock`]: PostgreSQL session advisory locks, on a dedicated
//! connection per held lock.

use crate::owner::Owner;
use crate::strategy::{
    AcquireAnswer, BoxFuture, Grant, LeaseTerms, LockError, LockInfo, LockStrategy,
};
use payguard_core::FencingToken;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Session advisory locks (`pg_try_advisory_lock`), each on its own
/// connection, opened for the acquisition and closed on release.
///
/// Fast (no table, no WAL for the lock itself) and released the moment the
/// holder's connection dies. Its limits, which is why [`PgLeaseLock`]
/// is the default:
/// - the lock dies *silently* with its session (`pg_terminate_backend`, an
///   idle timeout, a proxy, a failover) while the holder keeps working:
///   the heartbeat checks `pg_locks` on the held connection every beat and
///   fires the guard's cancellation when the lock is gone, but another
///   instance may already have taken it in between;
/// - the database cannot check its tokens: they come from
///   `pg_current_xact_id()` at acquisition (increasing across holders) and
///   are not stored anywhere a transaction could compare them;
/// - behind a transaction-pooling proxy (PgBouncer `pool_mode =
///   transaction`) session locks leak to other clients: the first
///   acquisition checks, with a probe connection, that the server session
///   is not shared, and refuses with [`LockError::Unsupported`] if it is.
///
/// Lock names map to the bigint key space through SHA-256; `at_least` is
/// honoured by unlocking later from this process.
///
/// [`PgLeaseLock`]: crate::PgLeaseLock
#[derive(Debug, Clone)]
pub struct PgSessionLock {
    options: PgConnectOptions,
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// Set once the server was seen to keep sessions (no transaction pooling).
    sessions_verified: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Clone)]
struct Held {
    connection: Arc<tokio::sync::Mutex<PgConnection>>,
    key: i64,
    acquired: Instant,
}

const IS_HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
    AND objsubid = 1 AND classid = $1::bigint::oid AND objid = $2::bigint::oid)";

const HOLDER: &str = "SELECT a.pid, a.application_name, host(a.client_addr) AS host
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
 LIMIT 1";

const ALL_HOLDERS: &str =
    "SELECT (l.classid::bigint << 32) | l.objid::bigint AS key, a.pid, a.application_name,
       host(a.client_addr) AS host
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
 ORDER BY 1";

/// The advisory key of a lock name: the first 8 bytes of
/// SHA-256("payguard-lock" ‖ 0 ‖ name).
pub fn advisory_key(name: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"payguard-lock\0")
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    i64::from_be_bytes(bytes)
}

/// `pg_locks` shows a bigint key as two oids: the high and low 32 bits.
fn key_halves(key: i64) -> (i64, i64) {
    let bits = key as u64;
    ((bits >> 32) as i64, (bits & 0xFFFF_FFFF) as i64)
}

fn unavailable(error: sqlx::Error) -> LockError {
    LockError::unavailable(error)
}

impl PgSessionLock {
    /// Advisory locks on the server `options` point at (each held lock
    /// opens its own connection with these options).
    pub fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            held: Arc::new(Mutex::new(HashMap::new())),
            sessions_verified: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn held(&self, owner: &Owner) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(owner.as_str())
            .cloned()
    }

    fn forget(&self, owner: &Owner) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(owner.as_str())
    }

    async fn holder(
        connection: &mut PgConnection,
        name: &str,
        key: i64,
    ) -> Result<LockInfo, LockError> {
        let (high, low) = key_halves(key);
        let row = sqlx::query(HOLDER)
            .bind(high)
            .bind(low)
            .fetch_optional(&mut *connection)
            .await
            .map_err(unavailable)?;
        let mut info = LockInfo {
            name: name.to_owned(),
            ..LockInfo::default()
        };
        if let Some(row) = row {
            let pid: i32 = row.try_get("pid").map_err(unavailable)?;
            let application: Option<String> =
                row.try_get("application_name").map_err(unavailable)?;
            info.owner = application
                .filter(|name| !name.is_empty())
                .or(Some(format!("backend {pid}")));
            info.host = row.try_get("host").map_err(unavailable)?;
        }
        Ok(info)
    }

    /// Refuses a transaction-pooling proxy (PgBouncer `pool_mode =
    /// transaction`), where a session lock would stay with a server
    /// connection that other clients then use. Between two statements on
    /// `connection`, a probe connection opens a transaction: through such a
    /// proxy the probe is handed the backend that served our first
    /// statement, or our second statement moves to another backend; a real
    /// session sees neither.
    async fn refuse_transaction_pooling(
        &self,
        connection: &mut PgConnection,
    ) -> Result<(), LockError> {
        let first = backend_pid(&mut *connection).await?;
        let mut probe = PgConnection::connect_with(&self.options)
            .await
            .map_err(unavailable)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe("BEGIN"))
            .execute(&mut probe)
            .await
            .map_err(unavailable)?;
        let probed = backend_pid(&mut probe).await;
        let second = backend_pid(&mut *connection).await;
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
            .execute(&mut probe)
            .await;
        let _ = probe.close().await;
        let (probed, second) = (probed?, second?);
        if first != second || first == probed {
            return Err(LockError::Unsupported(
                "this server connection is shared between clients (a transaction-pooling proxy such as \
                 PgBouncer in transaction mode): session advisory locks would leak to other clients; \
                 connect directly or in session mode, or use PgLeaseLock"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    async fn unlock(
        connection: &tokio::sync::Mutex<PgConnection>,
        key: i64,
    ) -> Result<bool, LockError> {
        let mut connection = connection.lock().await;
        sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await
            .map_err(unavailable)
    }
}

impl LockStrategy for PgSessionLock {
    fn kind(&self) -> &'static str {
        "pg-advisory"
    }

    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>> {
        Box::pin(async move {
            let options = self.options.clone().application_name(owner.as_str());
            let mut connection = PgConnection::connect_with(&options)
                .await
                .map_err(unavailable)?;
            if !self
                .sessions_verified
                .load(std::sync::atomic::Ordering::Acquire)
            {
                self.refuse_transaction_pooling(&mut connection).await?;
                self.sessions_verified
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            let key = advisory_key(name);
            let token: Option<i64> =
                sqlx::query_scalar("SELECT CASE WHEN pg_try_advisory_lock($1) THEN pg_current_xact_id()::text::bigint END")
                    .bind(key)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(unavailable)?;
            let Some(token) = token else {
                let info = Self::holder(&mut connection, name, key).await;
                let _ = connection.close().await;
                return Ok(AcquireAnswer::Busy(info?));
            };
            let held = Held {
                connection: Arc::new(tokio::sync::Mutex::new(connection)),
                key,
                acquired: crate::time::now(),
            };
            self.held
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(owner.as_str().to_owned(), held);
            Ok(AcquireAnswer::Acquired(Grant {
                name: name.to_owned(),
                owner: owner.clone(),
                token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
                remaining: terms.ttl,
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>> {
        Box::pin(async move {
            let held = self
                .held(&grant.owner)
                .ok_or_else(|| LockError::lost(&grant.name))?;
            let (high, low) = key_halves(held.key);
            let still_held: Result<bool, sqlx::Error> = {
                let mut connection = held.connection.lock().await;
                sqlx::query_scalar(IS_HELD)
                    .bind(high)
                    .bind(low)
                    .fetch_one(&mut *connection)
                    .await
            };
            match still_held {
                Ok(true) => Ok(terms.ttl),
                // The session died or the lock is gone: either way it is lost.
                Ok(false) | Err(_) => {
                    self.forget(&grant.owner);
                    Err(LockError::lost(&grant.name))
                }
            }
        })
    }

    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let held = self
                .forget(&grant.owner)
                .ok_or_else(|| LockError::lost(&grant.name))?;
            let keep_for =
                (held.acquired + terms.at_least).saturating_duration_since(crate::time::now());
            if !keep_for.is_zero() {
                // Hold on from here until `at_least` has passed.
                tokio::spawn(async move {
                    tokio::time::sleep(keep_for).await;
                    let _ = Self::unlock(&held.connection, held.key).await;
                });
                return Ok(());
            }
            if Self::unlock(&held.connection, held.key).await? {
                Ok(())
            } else {
                Err(LockError::lost(&grant.name))
            }
        })
    }

    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>> {
        Box::pin(async move {
            let mut connection = PgConnection::connect_with(&self.options)
                .await
                .map_err(unavailable)?;
            let infos = match name {
                Some(name) => {
                    let info = Self::holder(&mut connection, name, advisory_key(name)).await?;
                    if info.owner.is_some() {
                        vec![info]
                    } else {
                        Vec::new()
                    }
                }
                None => {
                    let rows = sqlx::query(ALL_HOLDERS)
                        .fetch_all(&mut connection)
                        .await
                        .map_err(unavailable)?;
                    let mut infos = Vec::with_capacity(rows.len());
                    for row in rows {
                        let key: i64 = row.try_get("key").map_err(unavailable)?;
                        let pid: i32 = row.try_get("pid").map_err(unavailable)?;
                        let application: Option<String> =
                            row.try_get("application_name").map_err(unavailable)?;
                        infos.push(LockInfo {
                            name: format!("advisory:{key}"),
                            owner: application
                                .filter(|name| !name.is_empty())
                                .or(Some(format!("backend {pid}"))),
                            host: row.try_get("host").map_err(unavailable)?,
                            ..LockInfo::default()
                        });
                    }
                    infos
                }
            };
            let _ = connection.close().await;
            Ok(infos)
        })
    }
}

/// The server backend behind `connection`, asked with the simple protocol
/// (a pooler may not carry prepared statements between backends).
async fn backend_pid(connection: &mut PgConnection) -> Result<i32, LockError> {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe("SELECT pg_backend_pid()"))
        .fetch_one(connection)
        .await
        .map_err(unavailable)?;
    row.try_get(0).map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_like_pg_locks() {
        assert_eq!(key_halves(0x0000_0001_0000_0002), (1, 2));
        assert_eq!(key_halves(-1), (0xFFFF_FFFF, 0xFFFF_FFFF));
        assert_ne!(advisory_key("a"), advisory_key("b"));
    }
}
