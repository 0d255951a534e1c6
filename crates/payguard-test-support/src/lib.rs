//! Test helpers shared by the payguard crates.
//!
//! [`TestDb`] gives each test its own PostgreSQL database and drops it
//! afterwards. It finds the server through `DATABASE_URL`, defaulting to
//! [`DEFAULT_DATABASE_URL`] (the local server every payguard machine runs).
//! When no server answers, it fails the test with a message saying how to
//! point it at one: database tests are never skipped silently.
//!
//! [`TcpProxy`] stands between one client and a server so that a test can
//! cut, partition or redirect that client alone; [`PgBouncer`] puts the
//! pooler production uses, in transaction mode, in front of the server.
//!
//! ```no_run
//! # async fn example() {
//! let db = payguard_test_support::TestDb::new().await;
//! let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(db.pool()).await.unwrap();
//! assert_eq!(one, 1);
//! # }
//! ```

// Test support fails loudly: a test that cannot get its database must stop
// with a message, not carry on.
#![allow(clippy::panic, clippy::expect_used)]

mod pgbouncer;
mod proxy;

pub use pgbouncer::PgBouncer;
pub use proxy::TcpProxy;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use std::str::FromStr;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where tests look for PostgreSQL when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test databases are named `payguard_test_<unix seconds>_<pid>_<n>`.
const NAME_PREFIX: &str = "payguard_test_";

/// Databases older than this are leftovers of killed runs and are dropped.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The server URL tests use: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// A fresh, empty database on the test server, dropped (with `FORCE`) when
/// this value is dropped, even if the test panicked.
#[derive(Debug)]
pub struct TestDb {
    pool: PgPool,
    url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a database and a pool of up to 10 connections to it.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses to create the database;
    /// the message says how to set `DATABASE_URL`.
    pub async fn new() -> Self {
        Self::with_max_connections(10).await
    }

    /// Like [`TestDb::new`], with a pool of up to `max_connections`.
    ///
    /// # Panics
    ///
    /// As [`TestDb::new`].
    pub async fn with_max_connections(max_connections: u32) -> Self {
        Self::on_server(&database_url(), max_connections).await
    }

    /// Creates a database on the server at `admin_url` (any database there
    /// the user can connect to), with a pool of up to `max_connections`.
    ///
    /// # Panics
    ///
    /// As [`TestDb::new`].
    pub async fn on_server(admin_url: &str, max_connections: u32) -> Self {
        let admin_url = admin_url.to_owned();
        let mut admin = connect_admin(&admin_url).await;
        static CLEAN_STALE: Once = Once::new();
        let mut first = false;
        CLEAN_STALE.call_once(|| first = true);
        if first {
            drop_stale_databases(&mut admin).await;
        }

        let name = next_name();
        create_database(&mut admin, &name).await;
        let _ = admin.close().await;

        let url = with_database(&admin_url, &name);
        let options = PgConnectOptions::from_str(&url)
            .unwrap_or_else(|e| panic!("DATABASE_URL is not a valid PostgreSQL URL: {e}"));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
        Self {
            pool,
            url,
            name,
            admin_url,
        }
    }

    /// A pool connected to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL of this database, for other processes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on;
        // a short-lived thread with its own runtime does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = admin.execute(drop_statement(&name)).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn connect_admin(url: &str) -> PgConnection {
    match PgConnection::connect(url).await {
        Ok(connection) => connection,
        Err(error) => panic!(
            "payguard's database tests need PostgreSQL, and none answered at {} ({error}). \
             Start the local server (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
             or point the tests at one with DATABASE_URL=postgres://USER[:PASSWORD]@HOST:PORT/DATABASE \
             (the user must be allowed to CREATE DATABASE).",
            redact_password(url)
        ),
    }
}

async fn create_database(admin: &mut PgConnection, name: &str) {
    let mut attempts = 0;
    loop {
        match admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
        {
            Ok(_) => return,
            // 55006: template1 busy because of a concurrent CREATE DATABASE.
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && attempts < 50 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot create test database {name}: {error}"),
        }
    }
}

async fn drop_stale_databases(admin: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'payguard\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let cutoff = unix_now().saturating_sub(STALE_AFTER.as_secs());
    for name in names {
        let created = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| created < cutoff) {
            let _ = admin.execute(drop_statement(&name)).await;
        }
    }
}

/// Names are generated here ([`next_name`]) or matched by prefix, so quoting
/// them is enough.
fn drop_statement(name: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
}

fn next_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}_{}_{n}", unix_now(), std::process::id())
}

#[allow(clippy::disallowed_methods)] // naming test databases, not library time
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `url` with its database (path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{name}"));
            parsed.into()
        }
        Err(error) => panic!(
            "DATABASE_URL is not a valid URL ({error}): {}",
            redact_password(url)
        ),
    }
}

fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.into()
        }
        Ok(parsed) => parsed.into(),
        Err(_) => "<unparseable DATABASE_URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5433/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5433/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_password("postgres://u:secret@h/db"),
            "postgres://u:****@h/db"
        );
        assert_eq!(redact_password("not a url"), "<unparseable DATABASE_URL>");
    }
}
