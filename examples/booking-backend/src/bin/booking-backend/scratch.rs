//! What `demo` and `load` share: a free port, and a scratch database of
//! their own on the server `DATABASE_URL` names.

use booking_backend::domain::new_id;
use std::time::Duration;

/// A port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| format!("no free port: {error}"))
}

/// A database of its own on the server `DATABASE_URL` names, so a run never
/// meets an earlier run's bookings; dropped at the end.
pub(crate) struct ScratchDatabase {
    admin: sqlx::PgPool,
    name: String,
    pub(crate) url: String,
}

impl ScratchDatabase {
    pub(crate) async fn create(server_url: &str) -> Result<Self, String> {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(server_url)
            .await
            .map_err(|error| format!("cannot connect to DATABASE_URL: {error}"))?;
        let name = new_id("booking_demo_");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .map_err(|error| {
                format!("cannot create a scratch database (needs CREATEDB): {error}")
            })?;
        let mut url =
            url::Url::parse(server_url).map_err(|error| format!("DATABASE_URL: {error}"))?;
        url.set_path(&name);
        Ok(Self {
            admin,
            name,
            url: url.to_string(),
        })
    }

    pub(crate) async fn drop_database(self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&self.admin)
            .await;
    }
}
