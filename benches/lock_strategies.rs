//! Lock strategies compared on the same PostgreSQL and Redis, in one run.
//!
//! `cargo bench -p payguard-benches --bench lock_strategies` (about 5
//! minutes), or `... -- --quick` (about 2); `-- --only ours,shedlock`
//! runs the strategies whose names contain one of those words. Needs PostgreSQL
//! (`DATABASE_URL`, default the local server), Redis on `REDIS_URL`
//! (default 127.0.0.1:6379) and `redis-server` on `PATH`: three more Redis
//! servers are started on free ports for Redlock and stopped at the end.
//!
//! For each strategy it measures: uncontended acquire+release latency
//! (p50, p99, and p50 over a `SELECT 1` round trip measured the same way);
//! successful acquisitions per second with 1, 8 and 32 contenders on one
//! name and on 1000 names (try-and-skip, no hold); fairness (Jain's index
//! of the 8 contenders' wins on one name); WAL bytes per 1000
//! acquisitions; time for another process to acquire after the holder is
//! killed with SIGKILL; and, after the holder is stopped with SIGSTOP past
//! the lease and another process took over, whether the old holder's
//! protected write was accepted. It prints a table and writes
//! `target/lock-strategies/results.csv` and `chart.svg`.

#![allow(clippy::disallowed_methods)] // benches time themselves

use payguard_core::SqlTimeouts;
use payguard_lock::{
    AcquireAnswer, Acquisition, Grant, LeaseTerms, LockGuard, LockOptions, LockStrategy, Locker,
    Owner, PgLeaseLock, ProcessId, Redlock,
};
use payguard_test_support::TestDb;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Lease length for the strategies that have one.
const TTL: Duration = Duration::from_secs(1);
const NAMES: usize = 1000;

/// A lock held, with whatever its strategy needs to release it.
#[derive(Default)]
struct Held {
    key: String,
    token: i64,
    owner: String,
    connection: Option<PoolConnection<Postgres>>,
    transaction: Option<Transaction<'static, Postgres>>,
    guard: Option<LockGuard>,
    grant: Option<Grant>,
}

trait Strategy: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether the protected write checks the holder's token.
    fn fenced(&self) -> bool;
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>>;
    /// How a contender that wants the lock gets it: by default it asks
    /// again at once (the fastest a strategy without a waiting API can go).
    fn acquire_waiting<'a>(&'a self, key: &'a str, _until: Instant) -> Fut<'a, Option<Held>> {
        self.acquire(key)
    }
    fn release(&self, held: Held) -> Fut<'_, ()>;
    /// The write the lock protects; `true` if the database accepted it.
    fn write<'a>(&'a self, held: &'a mut Held) -> Fut<'a, bool>;
}

fn owner() -> String {
    Owner::new(ProcessId::current()).as_str().to_owned()
}

fn key_of(name: &str) -> i64 {
    payguard_lock::advisory_key(name)
}

async fn plain_write(pool: &PgPool, token: i64) -> Result<bool, Error> {
    sqlx::query("UPDATE resource SET value = value + 1, last_token = $1 WHERE id = 1")
        .bind(token)
        .execute(pool)
        .await?;
    Ok(true)
}

// S1: session advisory try-lock, on a connection held while locked.
struct AdvisorySession(PgPool);

impl Strategy for AdvisorySession {
    fn name(&self) -> &'static str {
        "advisory session"
    }
    fn fenced(&self) -> bool {
        false
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let mut connection = self.0.acquire().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key_of(key))
                .fetch_one(&mut *connection)
                .await?;
            Ok(locked.then(|| Held {
                key: key.to_owned(),
                connection: Some(connection),
                ..Held::default()
            }))
        })
    }
    fn release(&self, mut held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            if let Some(mut connection) = held.connection.take() {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key_of(&held.key))
                    .execute(&mut *connection)
                    .await?;
            }
            Ok(())
        })
    }
    fn write<'a>(&'a self, _: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(plain_write(&self.0, 0))
    }
}

// S3 (advisory transaction lock), S4 (FOR UPDATE NOWAIT), S5 (SKIP LOCKED):
// locks that live as long as a transaction.
struct InTransaction {
    pool: PgPool,
    name: &'static str,
    sql: &'static str,
}

impl Strategy for InTransaction {
    fn name(&self) -> &'static str {
        self.name
    }
    fn fenced(&self) -> bool {
        false
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let mut transaction = self.pool.begin().await?;
            let query = sqlx::query_scalar::<_, bool>(self.sql);
            let query = if self.sql.contains("advisory") {
                query.bind(key_of(key))
            } else {
                query.bind(key.to_owned())
            };
            let locked = match query.fetch_optional(&mut *transaction).await {
                Ok(row) => row.unwrap_or(false),
                // 55P03 lock_not_available: NOWAIT's "busy".
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
                    false
                }
                Err(error) => return Err(error.into()),
            };
            if !locked {
                transaction.rollback().await?;
                return Ok(None);
            }
            Ok(Some(Held {
                key: key.to_owned(),
                transaction: Some(transaction),
                ..Held::default()
            }))
        })
    }
    fn release(&self, mut held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            if let Some(transaction) = held.transaction.take() {
                transaction.commit().await?;
            }
            Ok(())
        })
    }
    fn write<'a>(&'a self, held: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(async move {
            let Some(transaction) = held.transaction.as_mut() else {
                return Ok(false);
            };
            sqlx::query("UPDATE resource SET value = value + 1 WHERE id = 1")
                .execute(&mut **transaction)
                .await?;
            Ok(true)
        })
    }
}

// S6: a lease judged by the client's clock (ShedLock's default provider).
struct ClientClockLease(PgPool);

fn client_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Strategy for ClientClockLease {
    fn name(&self) -> &'static str {
        "client-clock lease"
    }
    fn fenced(&self) -> bool {
        false
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let owner = owner();
            let now = client_now();
            let row = sqlx::query(
                "INSERT INTO lease_client (name, owner, expires_at) VALUES ($1, $2, to_timestamp($3))
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                 WHERE lease_client.expires_at <= to_timestamp($4)",
            )
            .bind(key)
            .bind(&owner)
            .bind(now + TTL.as_secs_f64())
            .bind(now)
            .execute(&self.0)
            .await?;
            Ok((row.rows_affected() == 1).then(|| Held {
                key: key.to_owned(),
                owner,
                ..Held::default()
            }))
        })
    }
    fn release(&self, held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE lease_client SET expires_at = to_timestamp($3) WHERE name = $1 AND owner = $2")
                .bind(&held.key)
                .bind(&held.owner)
                .bind(client_now())
                .execute(&self.0)
                .await?;
            Ok(())
        })
    }
    fn write<'a>(&'a self, _: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(plain_write(&self.0, 0))
    }
}

// S7: a lease judged by the database clock (ShedLock `usingDbTime()`).
struct DbClockLease(PgPool);

impl Strategy for DbClockLease {
    fn name(&self) -> &'static str {
        "DB-clock lease (ShedLock)"
    }
    fn fenced(&self) -> bool {
        false
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let owner = owner();
            let row = sqlx::query(
                "INSERT INTO shedlock (name, lock_until, locked_at, locked_by)
                 VALUES ($1, CURRENT_TIMESTAMP + make_interval(secs => $3), CURRENT_TIMESTAMP, $2)
                 ON CONFLICT (name) DO UPDATE SET lock_until = CURRENT_TIMESTAMP + make_interval(secs => $3),
                     locked_at = CURRENT_TIMESTAMP, locked_by = EXCLUDED.locked_by
                 WHERE shedlock.lock_until <= CURRENT_TIMESTAMP",
            )
            .bind(key)
            .bind(&owner)
            .bind(TTL.as_secs_f64())
            .execute(&self.0)
            .await?;
            Ok((row.rows_affected() == 1).then(|| Held {
                key: key.to_owned(),
                owner,
                ..Held::default()
            }))
        })
    }
    fn release(&self, held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE shedlock SET lock_until = CURRENT_TIMESTAMP WHERE name = $1 AND locked_by = $2")
                .bind(&held.key)
                .bind(&held.owner)
                .execute(&self.0)
                .await?;
            Ok(())
        })
    }
    fn write<'a>(&'a self, _: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(plain_write(&self.0, 0))
    }
}

// S8: ours, through `Locker` (lease, fencing token, heartbeat).
struct Ours {
    pool: PgPool,
    locker: Locker,
    /// Contenders wait with `Locker::lock` (woken by release notices)
    /// instead of asking again at once.
    waits: bool,
    /// The database sets the statement bounds; statements go alone.
    inherited: bool,
}

fn ours_options() -> LockOptions {
    LockOptions::builder(TTL)
        .safety_margin(Duration::from_millis(200))
        .build()
        .unwrap()
}

impl Strategy for Ours {
    fn name(&self) -> &'static str {
        match (self.waits, self.inherited) {
            (true, false) => "payguard lease (ours)",
            (true, true) => "payguard lease (ours, inherited bounds)",
            (false, _) => "payguard lease (ours, spinning)",
        }
    }
    fn fenced(&self) -> bool {
        true
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            Ok(match self.locker.try_lock(key, &ours_options()).await? {
                Acquisition::Acquired(guard) => Some(Held {
                    key: key.to_owned(),
                    token: guard.token().as_i64(),
                    guard: Some(guard),
                    ..Held::default()
                }),
                Acquisition::Busy(_) => None,
            })
        })
    }
    fn acquire_waiting<'a>(&'a self, key: &'a str, until: Instant) -> Fut<'a, Option<Held>> {
        if !self.waits {
            return self.acquire(key);
        }
        Box::pin(async move {
            let left = until.saturating_duration_since(Instant::now());
            match self.locker.lock(key, &ours_options(), left).await {
                Ok(guard) => Ok(Some(Held {
                    key: key.to_owned(),
                    token: guard.token().as_i64(),
                    guard: Some(guard),
                    ..Held::default()
                })),
                Err(payguard_lock::LockError::Timeout { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
    }
    fn release(&self, mut held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            if let Some(guard) = held.guard.take() {
                guard.release().await?;
            }
            Ok(())
        })
    }
    fn write<'a>(&'a self, held: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(async move {
            let Some(guard) = held.guard.as_ref() else {
                return Ok(false);
            };
            let mut transaction = self.pool.begin().await?;
            if guard.fence().check(&mut transaction).await.is_err() {
                transaction.rollback().await?;
                return Ok(false);
            }
            sqlx::query("UPDATE resource SET value = value + 1, last_token = $1 WHERE id = 1")
                .bind(held.token)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok(true)
        })
    }
}

// S10: optimistic locking with a version column (db-scheduler style).
struct Optimistic(PgPool);

impl Strategy for Optimistic {
    fn name(&self) -> &'static str {
        "optimistic version"
    }
    fn fenced(&self) -> bool {
        true
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let row: Option<(i64, bool)> = sqlx::query_as(
                "SELECT version, expires_at <= now() FROM opt_locks WHERE name = $1",
            )
            .bind(key)
            .fetch_optional(&self.0)
            .await?;
            let Some((version, true)) = row else {
                return Ok(None);
            };
            let owner = owner();
            let taken: Option<i64> = sqlx::query_scalar(
                "UPDATE opt_locks SET owner = $2, version = version + 1, expires_at = now() + make_interval(secs => $4)
                  WHERE name = $1 AND version = $3 AND expires_at <= now() RETURNING version",
            )
            .bind(key)
            .bind(&owner)
            .bind(version)
            .bind(TTL.as_secs_f64())
            .fetch_optional(&self.0)
            .await?;
            Ok(taken.map(|version| Held {
                key: key.to_owned(),
                token: version,
                owner,
                ..Held::default()
            }))
        })
    }
    fn release(&self, held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE opt_locks SET expires_at = now() WHERE name = $1 AND version = $2")
                .bind(&held.key)
                .bind(held.token)
                .execute(&self.0)
                .await?;
            Ok(())
        })
    }
    fn write<'a>(&'a self, held: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(async move {
            let written = sqlx::query(
                "UPDATE resource SET value = value + 1, last_token = $2 WHERE id = 1
                   AND EXISTS (SELECT 1 FROM opt_locks WHERE name = $1 AND version = $2)",
            )
            .bind(&held.key)
            .bind(held.token)
            .execute(&self.0)
            .await?;
            Ok(written.rows_affected() == 1)
        })
    }
}

// S14: Redis `SET NX PX` with an owner-checked release.
struct RedisSetNx {
    connection: redis::aio::MultiplexedConnection,
    pool: PgPool,
    release: redis::Script,
}

impl Strategy for RedisSetNx {
    fn name(&self) -> &'static str {
        "Redis SET NX"
    }
    fn fenced(&self) -> bool {
        false
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let owner = owner();
            let mut connection = self.connection.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(format!("bench:{key}"))
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .query_async(&mut connection)
                .await?;
            Ok(set.map(|_| Held {
                key: key.to_owned(),
                owner,
                ..Held::default()
            }))
        })
    }
    fn release(&self, held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let _: i64 = self
                .release
                .key(format!("bench:{}", held.key))
                .arg(&held.owner)
                .invoke_async(&mut connection)
                .await?;
            Ok(())
        })
    }
    fn write<'a>(&'a self, _: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(plain_write(&self.pool, 0))
    }
}

// S15: Redlock over three Redis servers, through payguard-lock's `Redlock`.
struct RedlockStrategy {
    redlock: Redlock,
    pool: PgPool,
}

fn redlock_terms() -> LeaseTerms {
    LockOptions::builder(TTL)
        .build()
        .expect("the bench's lease is valid")
        .terms()
}

impl Strategy for RedlockStrategy {
    fn name(&self) -> &'static str {
        "Redlock (3 servers)"
    }
    fn fenced(&self) -> bool {
        false
    }
    fn acquire<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Held>> {
        Box::pin(async move {
            let owner = Owner::new(ProcessId::current());
            Ok(
                match self
                    .redlock
                    .try_acquire(key, &owner, &redlock_terms())
                    .await?
                {
                    AcquireAnswer::Acquired(grant) => Some(Held {
                        key: key.to_owned(),
                        grant: Some(grant),
                        ..Held::default()
                    }),
                    _ => None,
                },
            )
        })
    }
    fn release(&self, mut held: Held) -> Fut<'_, ()> {
        Box::pin(async move {
            if let Some(grant) = held.grant.take() {
                let _ = self.redlock.release(&grant, &redlock_terms()).await;
            }
            Ok(())
        })
    }
    fn write<'a>(&'a self, _: &'a mut Held) -> Fut<'a, bool> {
        Box::pin(plain_write(&self.pool, 0))
    }
}

const STRATEGIES: [&str; 12] = [
    "advisory session",
    "advisory xact",
    "FOR UPDATE NOWAIT",
    "SKIP LOCKED",
    "client-clock lease",
    "DB-clock lease (ShedLock)",
    "payguard lease (ours)",
    "payguard lease (ours, spinning)",
    "payguard lease (ours, inherited bounds)",
    "optimistic version",
    "Redis SET NX",
    "Redlock (3 servers)",
];

/// Where the strategies connect.
#[derive(Clone)]
struct Places {
    database: String,
    redis: String,
    redlock: Vec<String>,
}

async fn build(name: &str, places: &Places, connections: u32) -> Result<Arc<dyn Strategy>, Error> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .connect(&places.database)
        .await?;
    let in_transaction = |name: &'static str, sql: &'static str| -> Arc<dyn Strategy> {
        Arc::new(InTransaction {
            pool: pool.clone(),
            name,
            sql,
        })
    };
    Ok(match name {
        "advisory session" => Arc::new(AdvisorySession(pool)),
        "advisory xact" => in_transaction("advisory xact", "SELECT pg_try_advisory_xact_lock($1)"),
        "FOR UPDATE NOWAIT" => in_transaction(
            "FOR UPDATE NOWAIT",
            "SELECT true FROM bench_rows WHERE name = $1 FOR UPDATE NOWAIT",
        ),
        "SKIP LOCKED" => in_transaction(
            "SKIP LOCKED",
            "SELECT true FROM bench_rows WHERE name = $1 FOR UPDATE SKIP LOCKED",
        ),
        "client-clock lease" => Arc::new(ClientClockLease(pool)),
        "DB-clock lease (ShedLock)" => Arc::new(DbClockLease(pool)),
        "payguard lease (ours)"
        | "payguard lease (ours, spinning)"
        | "payguard lease (ours, inherited bounds)" => {
            let inherited = name.contains("inherited");
            let timeouts = if inherited {
                SqlTimeouts::default().inherited()
            } else {
                SqlTimeouts::default()
            };
            Arc::new(Ours {
                locker: Locker::new(Arc::new(PgLeaseLock::new(pool.clone()).timeouts(timeouts))),
                pool,
                waits: !name.contains("spinning"),
                inherited,
            })
        }
        "optimistic version" => Arc::new(Optimistic(pool)),
        "Redis SET NX" => {
            let client = redis::Client::open(places.redis.as_str())?;
            Arc::new(RedisSetNx {
                connection: client.get_multiplexed_async_connection().await?,
                pool,
                release: redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                ),
            })
        }
        "Redlock (3 servers)" => {
            let urls: Vec<&str> = places.redlock.iter().map(String::as_str).collect();
            Arc::new(RedlockStrategy {
                redlock: Redlock::connect(&urls).await?,
                pool,
            })
        }
        other => return Err(format!("unknown strategy {other}").into()),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

async fn latencies(
    iterations: usize,
    mut operation: impl FnMut() -> Fut<'static, ()>,
) -> Result<(Duration, Duration), Error> {
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        operation().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

/// Successful acquisitions per second, and each contender's wins.
async fn throughput(
    strategy: &Arc<dyn Strategy>,
    contenders: usize,
    keys: usize,
    duration: Duration,
) -> (f64, Vec<u64>, f64) {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..contenders)
        .map(|_| {
            let strategy = Arc::clone(strategy);
            tokio::spawn(async move {
                let (mut wins, mut tries) = (0u64, 0u64);
                while Instant::now() < deadline {
                    tries += 1;
                    let key = if keys == 1 {
                        "hot".to_owned()
                    } else {
                        format!("k{}", rand::random_range(0..keys))
                    };
                    match strategy.acquire_waiting(&key, deadline).await {
                        Ok(Some(held)) => {
                            if strategy.release(held).await.is_ok() {
                                wins += 1;
                            }
                        }
                        Ok(None) | Err(_) => tokio::task::yield_now().await,
                    }
                }
                (wins, tries)
            })
        })
        .collect();
    let mut wins = Vec::with_capacity(contenders);
    let mut tries = 0;
    for task in tasks {
        let (won, tried) = task.await.unwrap_or((0, 0));
        wins.push(won);
        tries += tried;
    }
    (
        wins.iter().sum::<u64>() as f64 / duration.as_secs_f64(),
        wins,
        tries as f64 / duration.as_secs_f64(),
    )
}

/// Jain's fairness index: 1 when every contender won equally often.
fn jain(wins: &[u64]) -> f64 {
    let sum: f64 = wins.iter().map(|&w| w as f64).sum();
    let squares: f64 = wins.iter().map(|&w| (w as f64).powi(2)).sum();
    if squares == 0.0 {
        0.0
    } else {
        sum * sum / (wins.len() as f64 * squares)
    }
}

async fn wal_bytes(
    admin: &PgPool,
    strategy: &Arc<dyn Strategy>,
    acquisitions: usize,
) -> Result<f64, Error> {
    let before: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(admin)
        .await?;
    for i in 0..acquisitions {
        if let Some(held) = strategy.acquire(&format!("k{}", i % NAMES)).await? {
            strategy.release(held).await?;
        }
    }
    let bytes: f64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
            .bind(before)
            .fetch_one(admin)
            .await?;
    Ok(bytes * 1000.0 / acquisitions as f64)
}

/// A child process holding `key` through `strategy`.
fn spawn_holder(
    strategy: &str,
    key: &str,
    mode: &str,
    places: &Places,
) -> Result<(Child, std::sync::mpsc::Receiver<String>), Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--hold",
            strategy,
            key,
            mode,
            &places.database,
            &places.redis,
        ])
        .args(&places.redlock)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (lines, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, receiver))
}

fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
}

fn expect_line(
    lines: &std::sync::mpsc::Receiver<String>,
    within: Duration,
) -> Result<String, Error> {
    Ok(lines.recv_timeout(within)?)
}

/// Time from SIGKILL of the holder to another process's acquisition.
async fn recovery(
    strategy: &Arc<dyn Strategy>,
    name: &str,
    places: &Places,
) -> Result<Duration, Error> {
    let key = "recovery";
    let (mut child, lines) = spawn_holder(name, key, "kill", places)?;
    expect_line(&lines, Duration::from_secs(10))?;
    signal(&child, "KILL");
    let killed = Instant::now();
    let _ = child.wait();
    loop {
        if let Some(held) = strategy.acquire(key).await? {
            let elapsed = killed.elapsed();
            strategy.release(held).await?;
            return Ok(elapsed);
        }
        if killed.elapsed() > Duration::from_secs(30) {
            return Err("no recovery within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After SIGSTOP past the lease: did another process take over, and was
/// the paused holder's write then accepted?
async fn pause(
    strategy: &Arc<dyn Strategy>,
    name: &str,
    places: &Places,
    trial: usize,
) -> Result<(bool, bool), Error> {
    let key = format!("pause-{trial}");
    let (mut child, lines) = spawn_holder(name, &key, "pause", places)?;
    expect_line(&lines, Duration::from_secs(10))?;
    signal(&child, "STOP");
    tokio::time::sleep(TTL + TTL / 2).await;
    let mut taken = None;
    let until = Instant::now() + TTL;
    while taken.is_none() && Instant::now() < until {
        taken = strategy.acquire(&key).await?;
        if taken.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took_over = taken.is_some();
    if let Some(held) = taken.as_mut() {
        strategy.write(held).await?;
    }
    signal(&child, "CONT");
    // The holder writes as soon as it runs again, and reports.
    let verdict = if took_over {
        expect_line(&lines, Duration::from_secs(5))?
    } else {
        String::new()
    };
    signal(&child, "KILL");
    let _ = child.wait();
    if let Some(held) = taken {
        strategy.release(held).await?;
    }
    Ok((took_over, verdict == "write accepted"))
}

/// The child side of `recovery` and `pause`.
async fn hold(args: &[String]) -> Result<(), Error> {
    let [name, key, mode, database, redis, redlock @ ..] = args else {
        return Err("usage: --hold STRATEGY KEY MODE DATABASE REDIS REDLOCK...".into());
    };
    let places = Places {
        database: database.clone(),
        redis: redis.clone(),
        redlock: redlock.to_vec(),
    };
    let strategy = build(name, &places, 3).await?;
    let mut held = loop {
        if let Some(held) = strategy.acquire(key).await? {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "held")?;
    stdout.flush()?;
    if mode == "pause" {
        // The parent stops us in here; once resumed, write at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let accepted = strategy.write(&mut held).await.unwrap_or(false);
        writeln!(
            stdout,
            "{}",
            if accepted {
                "write accepted"
            } else {
                "write rejected"
            }
        )?;
        stdout.flush()?;
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// Redis servers for Redlock, stopped on drop.
struct RedisServers(Vec<Child>);

impl Drop for RedisServers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_redis_servers(count: usize) -> Result<(RedisServers, Vec<String>), Error> {
    let mut servers = RedisServers(Vec::new());
    let mut urls = Vec::new();
    for _ in 0..count {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|error| format!("redis-server on PATH: {error}"))?;
        servers.0.push(child);
        urls.push(format!("redis://127.0.0.1:{port}"));
    }
    for url in &urls {
        let client = redis::Client::open(url.as_str())?;
        let mut ready = false;
        for _ in 0..100 {
            if client.get_multiplexed_async_connection().await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !ready {
            return Err(format!("{url} did not start").into());
        }
    }
    Ok((servers, urls))
}

async fn setup(pool: &PgPool) -> Result<(), Error> {
    PgLeaseLock::new(pool.clone()).migrate().await?;
    for statement in [
        // The bounds "ours, inherited bounds" relies on, for every new
        // connection to the bench's database (the same for all rows).
        "DO $$ BEGIN
            EXECUTE format('ALTER DATABASE %I SET lock_timeout = %L', current_database(), '1s');
            EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '5s');
         END $$",
        "CREATE TABLE bench_rows (name text PRIMARY KEY)",
        "INSERT INTO bench_rows SELECT 'k' || i FROM generate_series(0, 999) i
         UNION ALL SELECT unnest(ARRAY['hot', 'latency', 'recovery', 'pause-0', 'pause-1', 'pause-2'])",
        "CREATE TABLE lease_client (name text PRIMARY KEY, owner text, expires_at timestamptz NOT NULL)",
        "CREATE TABLE shedlock (name text PRIMARY KEY, lock_until timestamptz NOT NULL, locked_at timestamptz NOT NULL, locked_by text NOT NULL)",
        "CREATE TABLE opt_locks (name text PRIMARY KEY, owner text, version bigint NOT NULL, expires_at timestamptz NOT NULL)",
        "INSERT INTO opt_locks SELECT name, NULL, 0, '-infinity' FROM bench_rows",
        "CREATE TABLE resource (id integer PRIMARY KEY, value bigint NOT NULL, last_token bigint NOT NULL)",
        "INSERT INTO resource VALUES (1, 0, 0)",
    ] {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

#[derive(Debug, Default, Clone)]
struct Row {
    name: &'static str,
    fenced: bool,
    p50: Duration,
    p99: Duration,
    over_select1: f64,
    one_name: [f64; 3],
    /// Attempts per second by 32 contenders on one name: how hard the
    /// losers hit the store.
    tries_32: f64,
    many_names: [f64; 3],
    jain: f64,
    wal_per_1000: Option<f64>,
    recovery: Duration,
    took_over: bool,
    stale_accepted: usize,
    trials: usize,
}

async fn run(quick: bool, only: &[String]) -> Result<(), Error> {
    let db = TestDb::with_max_connections(4).await;
    setup(db.pool()).await?;
    let (_servers, redlock) = start_redis_servers(3).await?;
    let places = Places {
        database: db.url().to_owned(),
        redis: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        redlock,
    };
    let iterations = if quick { 300 } else { 2000 };
    let duration = Duration::from_millis(if quick { 400 } else { 1500 });
    let trials = if quick { 1 } else { 3 };

    let select1 = db.pool().clone();
    let (select1_p50, select1_p99) = latencies(iterations, move || {
        let pool = select1.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&pool).await?;
            Ok(())
        })
    })
    .await?;
    println!(
        "SELECT 1 round trip: p50 {:.0} µs, p99 {:.0} µs",
        micros(select1_p50),
        micros(select1_p99)
    );

    let mut rows = Vec::new();
    for name in STRATEGIES.into_iter().filter(|name| {
        only.is_empty() || only.iter().any(|part| name.to_lowercase().contains(part))
    }) {
        let strategy = build(name, &places, 40).await?;
        let mut row = Row {
            name: strategy.name(),
            fenced: strategy.fenced(),
            trials,
            ..Row::default()
        };
        let measured = Arc::clone(&strategy);
        (row.p50, row.p99) = latencies(iterations, move || {
            let strategy = Arc::clone(&measured);
            Box::pin(async move {
                let held = strategy
                    .acquire("latency")
                    .await?
                    .ok_or("busy without contenders")?;
                strategy.release(held).await
            })
        })
        .await?;
        row.over_select1 = row.p50.as_secs_f64() / select1_p50.as_secs_f64();
        for (slot, contenders) in [1usize, 8, 32].into_iter().enumerate() {
            let (rate, wins, tries) = throughput(&strategy, contenders, 1, duration).await;
            row.one_name[slot] = rate;
            if contenders == 32 {
                row.tries_32 = tries;
            }
            if contenders == 8 {
                row.jain = jain(&wins);
            }
            row.many_names[slot] = throughput(&strategy, contenders, NAMES, duration).await.0;
        }
        if !name.starts_with("Redis") && !name.starts_with("Redlock") {
            row.wal_per_1000 = Some(wal_bytes(db.pool(), &strategy, 1000).await?);
        }
        row.recovery = recovery(&strategy, name, &places).await?;
        for trial in 0..trials {
            let (took_over, stale) = pause(&strategy, name, &places, trial).await?;
            row.took_over |= took_over;
            row.stale_accepted += usize::from(stale);
        }
        eprintln!("{name}: done");
        rows.push(row);
    }
    report(&rows, select1_p50, quick)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn report(rows: &[Row], select1_p50: Duration, quick: bool) -> Result<(), Error> {
    let mut table = String::new();
    table.push_str(&format!(
        "{:<28} {:>6} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>7}\n",
        "strategy", "fenced", "p50 µs", "p99 µs", "÷SEL1", "1×1/s", "8×1/s", "32×1/s", "32×1 try/s", "1×1k/s", "8×1k/s", "32×1k/s",
        "Jain", "WAL B/1k", "kill→ms", "takeover", "stale"
    ));
    for row in rows {
        table.push_str(&format!(
            "{:<28} {:>6} {:>8.0} {:>8.0} {:>7.2} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>6.2} {:>9} {:>9.0} {:>9} {:>7}\n",
            row.name,
            if row.fenced { "yes" } else { "no" },
            micros(row.p50),
            micros(row.p99),
            row.over_select1,
            row.one_name[0],
            row.one_name[1],
            row.one_name[2],
            row.tries_32,
            row.many_names[0],
            row.many_names[1],
            row.many_names[2],
            row.jain,
            row.wal_per_1000.map_or("-".to_owned(), |bytes| format!("{bytes:.0}")),
            row.recovery.as_secs_f64() * 1000.0,
            if row.took_over { "yes" } else { "blocked" },
            format!("{}/{}", row.stale_accepted, row.trials),
        ));
    }
    println!(
        "\nLock strategies ({} mode; lease {} ms; SELECT 1 p50 {:.0} µs)\n{table}",
        if quick { "quick" } else { "full" },
        TTL.as_millis(),
        micros(select1_p50)
    );
    let directory =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lock-strategies");
    std::fs::create_dir_all(&directory)?;
    let mut csv = String::from(
        "strategy,fenced,p50_us,p99_us,p50_over_select1,one_name_1,one_name_8,one_name_32,tries_32,names_1000_1,names_1000_8,names_1000_32,jain_8,wal_bytes_per_1000,recovery_after_sigkill_ms,takeover_after_sigstop,stale_writes_accepted,trials\n",
    );
    for row in rows {
        csv.push_str(&format!(
            "\"{}\",{},{:.1},{:.1},{:.3},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.3},{},{:.0},{},{},{}\n",
            row.name,
            row.fenced,
            micros(row.p50),
            micros(row.p99),
            row.over_select1,
            row.one_name[0],
            row.one_name[1],
            row.one_name[2],
            row.tries_32,
            row.many_names[0],
            row.many_names[1],
            row.many_names[2],
            row.jain,
            row.wal_per_1000
                .map_or(String::new(), |bytes| format!("{bytes:.0}")),
            row.recovery.as_secs_f64() * 1000.0,
            row.took_over,
            row.stale_accepted,
            row.trials,
        ));
    }
    std::fs::write(directory.join("results.csv"), csv)?;
    std::fs::write(directory.join("chart.svg"), chart(rows))?;
    println!("wrote {}", directory.join("results.csv").display());
    println!("wrote {}", directory.join("chart.svg").display());
    Ok(())
}

/// A value a chart panel draws for a row.
type Metric = fn(&Row) -> f64;

/// Two horizontal bar charts: uncontended p50 latency, and acquisitions
/// per second with 8 contenders on 1000 names.
fn chart(rows: &[Row]) -> String {
    let bar_height = 22.0;
    let label_width = 210.0;
    let panel_width = 330.0;
    let top = 50.0;
    let height = top + rows.len() as f64 * bar_height + 30.0;
    let width = label_width + 2.0 * (panel_width + 40.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="20" font-size="14">uncontended acquire+release, p50 (µs, lower is better)</text>
<text x="{}" y="20" font-size="14">acquisitions/s, 8 contenders, 1000 names (higher is better)</text>
"##,
        label_width,
        label_width + panel_width + 40.0
    );
    let panels: [(f64, Metric); 2] = [
        (label_width, |row| micros(row.p50)),
        (label_width + panel_width + 40.0, |row| row.many_names[1]),
    ];
    for (x, value) in &panels {
        let max = rows.iter().map(value).fold(0.0_f64, f64::max).max(1.0);
        for (i, row) in rows.iter().enumerate() {
            let y = top + i as f64 * bar_height;
            let length = value(row) / max * (panel_width - 60.0);
            let colour = if row.fenced { "#2b7a3d" } else { "#8a8f98" };
            svg.push_str(&format!(
                r##"<rect x="{x}" y="{y}" width="{length:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{:.1}">{:.0}</text>
"##,
                bar_height - 6.0,
                x + length + 4.0,
                y + bar_height - 10.0,
                value(row)
            ));
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + i as f64 * bar_height + bar_height - 10.0;
        svg.push_str(&format!(
            r##"<text x="8" y="{y:.1}">{}</text>
"##,
            row.name
        ));
    }
    svg.push_str(&format!(
        r##"<text x="8" y="{:.1}" fill="#2b7a3d">green: fenced (a paused holder's write is refused)</text>
</svg>
"##,
        height - 10.0
    ));
    svg
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(position) = args.iter().position(|arg| arg == "--hold") {
        return runtime.block_on(hold(args.get(position + 1..).unwrap_or_default()));
    }
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var_os("PAYGUARD_BENCH_QUICK").is_some();
    // `--only ours,shedlock`: strategies whose names contain one of these.
    let only: Vec<String> = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|position| args.get(position + 1))
        .map(|list| list.split(',').map(str::to_lowercase).collect())
        .unwrap_or_default();
    runtime.block_on(run(quick, &only))
}
