//! Settings and start-up: the database pool, the stores, the gateways and
//! the webhook verifiers, built once and shared by every request and job.

use crate::domain::GuestLimits;
use crate::gateway::{GatewayConfig, Gateways};
use crate::server::Limits;
use crate::store::{BookingStore, MIGRATOR, MemoryStore, PgStore, PgStoreOptions};
use payguard_core::SqlTimeouts;
use payguard_idempotency::{
    IdempotencyLayer, IdempotencyStore, MemoryStore as MemoryIdempotency, OutcomePolicy,
    PgIdempotencyStore,
};
use payguard_lock::{Locker, MemoryLock, PgLeaseLock};
use payguard_redact::Secret;
use payguard_webhook::{Provider, Verifier};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where bookings are kept and how long the database may make a request
/// wait.
///
/// # Default
///
/// In memory; for PostgreSQL, 10 connections, 3 s to get one, lock waits
/// of 1 s and statements of 5 s, direct connections, waiting (within the
/// lock timeout) for another booking of the same listing.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// PostgreSQL (migrated at start); `None` keeps everything in memory
    /// (one instance).
    pub url: Option<Secret<String>>,
    /// A direct connection for the migrations at start, when `url` goes
    /// through a pooler in transaction mode (migrations take a session
    /// lock); `None` migrates over `url`.
    pub migration_url: Option<Secret<String>>,
    /// Connections in the pool at most.
    pub max_connections: u32,
    /// How long a request waits for a free connection (then 503).
    pub acquire_timeout: Duration,
    /// `lock_timeout` and `statement_timeout` of every transaction.
    pub timeouts: SqlTimeouts,
    /// Connections go through a pooler in transaction mode (PgBouncer):
    /// statements are not prepared across transactions and lock waiters do
    /// not `LISTEN`.
    pub transaction_pooler: bool,
    /// Refuse a booking at once (`409 dates_unavailable`) while another
    /// booking of the same listing is being written, instead of waiting.
    pub nowait: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            migration_url: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            timeouts: SqlTimeouts::default(),
            transaction_pooler: false,
            nowait: false,
        }
    }
}

impl DatabaseSettings {
    /// PostgreSQL at `url`, other settings by default.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            url: Some(Secret::new(url.into())),
            ..Self::default()
        }
    }
}

/// The secrets webhooks are verified with: several per provider while one
/// is being rotated (each is tried; any may match).
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets {
    /// Paystack signs with the secret key: the current one and, during a
    /// rotation, the previous ones.
    pub paystack: Vec<Secret<String>>,
    /// Flutterwave's secret hashes.
    pub flutterwave: Vec<Secret<String>>,
}

/// How an instance runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Storage.
    pub database: DatabaseSettings,
    /// Gateway endpoints, keys, retries and breakers.
    pub gateways: GatewayConfig,
    /// Webhook verification secrets.
    pub webhook_secrets: WebhookSecrets,
    /// API keys; an `admin` key reads the admin routes.
    pub api_keys: Vec<crate::http::ApiKey>,
    /// How long an unpaid hold keeps its dates.
    pub hold_for: Duration,
    /// How long after check-in the host is paid.
    pub escrow_hold: Duration,
    /// How often the escrow-release job and hold expiry run.
    pub job_every: Duration,
    /// How often reconciliation asks the gateways about what we have not
    /// heard.
    pub reconcile_every: Duration,
    /// After SIGTERM, how long readiness answers 503 before the listener
    /// closes (open requests then finish).
    pub drain: Duration,
    /// This instance's name, in logs.
    pub instance: String,
    /// Connection, time and size limits of the HTTP server.
    pub limits: Limits,
    /// What one guest may hold.
    pub guests: GuestLimits,
}

impl Settings {
    /// Settings for `gateways` and `webhook_secrets`, everything else by
    /// default: in memory, listening on 127.0.0.1:8080, holds of 15
    /// minutes, escrow released a day after check-in, jobs every 30 s.
    pub fn new(gateways: GatewayConfig, webhook_secrets: WebhookSecrets) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: DatabaseSettings::default(),
            gateways,
            webhook_secrets,
            api_keys: Vec::new(),
            hold_for: Duration::from_secs(15 * 60),
            escrow_hold: Duration::from_secs(24 * 3600),
            job_every: Duration::from_secs(30),
            reconcile_every: Duration::from_secs(60),
            drain: Duration::ZERO,
            instance: "instance-1".to_owned(),
            limits: Limits::default(),
            guests: GuestLimits::default(),
        }
    }

    /// Settings paying through the gateway simulator `sim` with its
    /// default keys, everything else as [`new`](Self::new): what the demo,
    /// the load command and the tests run on.
    pub fn for_simulator(sim: &gateway_sim::SimHandle) -> Self {
        let mut gateways = GatewayConfig::new(
            gateway_sim::DEFAULT_PAYSTACK_SECRET_KEY,
            gateway_sim::DEFAULT_FLUTTERWAVE_SECRET_KEY,
        );
        gateways.paystack_base_url = sim.paystack_url();
        gateways.flutterwave_base_url = sim.flutterwave_url();
        let secrets = WebhookSecrets {
            paystack: vec![gateways.paystack_secret_key.clone()],
            flutterwave: vec![Secret::new(
                gateway_sim::DEFAULT_FLUTTERWAVE_SECRET_HASH.to_owned(),
            )],
        };
        Self::new(gateways, secrets)
    }

    /// Checks what a flag's type cannot: every count and duration that must
    /// be above zero is.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] naming the setting.
    pub fn validate(&self) -> Result<(), StartError> {
        let zero = [
            ("--max-connections", self.limits.max_connections == 0),
            (
                "--header-read-timeout",
                self.limits.header_read_timeout.is_zero(),
            ),
            ("--request-timeout", self.limits.request_timeout.is_zero()),
            ("--max-body-bytes", self.limits.max_body_bytes == 0),
            ("--max-nights", self.guests.max_nights == 0),
            ("--max-open-holds-per-guest", self.guests.open_holds == 0),
            ("--job-every", self.job_every.is_zero()),
            ("--reconcile-every", self.reconcile_every.is_zero()),
            ("--hold-for", self.hold_for.is_zero()),
            (
                "--database-max-connections",
                self.database.max_connections == 0,
            ),
            (
                "--database-acquire-timeout",
                self.database.acquire_timeout.is_zero(),
            ),
            (
                "--database-statement-timeout",
                self.database.timeouts.statement().is_zero(),
            ),
            (
                "--database-lock-timeout",
                self.database.timeouts.lock().is_zero(),
            ),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(StartError::Config(format!("{name} must be above zero")));
        }
        if self.webhook_secrets.paystack.is_empty() || self.webhook_secrets.flutterwave.is_empty() {
            return Err(StartError::Config(
                "each provider needs at least one webhook secret".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be used.
    #[error("database: {0}")]
    Database(String),
}

/// Everything a request or a job needs.
pub struct App {
    /// Bookings and listings.
    pub store: Arc<dyn BookingStore>,
    /// Payment gateways.
    pub gateways: Gateways,
    /// Settings.
    pub settings: Settings,
    /// Job locks.
    pub locker: Locker,
    /// Request answers and webhook de-duplication.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The pool, when the store is PostgreSQL (for its gauges).
    pub pool: Option<sqlx::PgPool>,
    /// The `Idempotency-Key` layer of the routes that move money.
    pub(crate) keyed: IdempotencyLayer,
    pub(crate) paystack: Arc<Verifier>,
    pub(crate) flutterwave: Arc<Verifier>,
    /// When this instance started, for readiness.
    pub(crate) started: tokio::time::Instant,
    /// Set after SIGTERM: readiness answers 503 so a load balancer stops
    /// sending while open requests finish.
    pub(crate) draining: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("App")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn verifier(provider: Provider, secrets: &[Secret<String>]) -> Result<Arc<Verifier>, StartError> {
    let builder = secrets
        .iter()
        .fold(Verifier::builder(provider), |builder, secret| {
            builder.secret(secret.expose_secret().clone())
        });
    builder
        .build()
        .map(Arc::new)
        .map_err(|error| StartError::Config(error.to_string()))
}

type Stores = (
    Arc<dyn BookingStore>,
    Arc<dyn IdempotencyStore>,
    Locker,
    Option<sqlx::PgPool>,
);

async fn stores(database: &DatabaseSettings) -> Result<Stores, StartError> {
    let Some(url) = &database.url else {
        return Ok((
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryIdempotency::new()),
            Locker::new(Arc::new(MemoryLock::new())),
            None,
        ));
    };
    let failed = |error: &dyn std::fmt::Display| StartError::Database(error.to_string());
    let connect = |url: &Secret<String>, connections: u32, bounded: bool| {
        let options = url.expose_secret().parse::<PgConnectOptions>();
        async move {
            let mut options = options.map_err(|error| failed(&error))?;
            if bounded {
                options = options.options(session_bounds(database.timeouts));
            }
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(database.acquire_timeout)
                .connect_with(options)
                .await
                .map_err(|error| failed(&error))
        }
    };
    // On direct connections the bounds are set once per session, and
    // statements go alone; through a transaction pooler, a session's
    // settings do not follow the client, so every transaction sets them.
    let direct = !database.transaction_pooler;
    let timeouts = if direct {
        database.timeouts.inherited()
    } else {
        database.timeouts
    };
    let pool = connect(url, database.max_connections, direct).await?;
    let migrations = match &database.migration_url {
        Some(direct) => connect(direct, 1, false).await?,
        None => pool.clone(),
    };
    let idempotency = PgIdempotencyStore::builder(pool.clone())
        .timeouts(timeouts)
        .prepared_statements(!database.transaction_pooler)
        .build()
        .map_err(|error| StartError::Config(error.to_string()))?;
    let lease = PgLeaseLock::new(pool.clone())
        .timeouts(timeouts)
        .prepared_statements(!database.transaction_pooler)
        .listen_for_releases(!database.transaction_pooler);
    PgIdempotencyStore::new(migrations.clone())
        .migrate()
        .await
        .map_err(|error| failed(&error))?;
    PgLeaseLock::new(migrations.clone())
        .migrate()
        .await
        .map_err(|error| failed(&error))?;
    MIGRATOR
        .run(&migrations)
        .await
        .map_err(|error| failed(&error))?;
    if database.migration_url.is_some() {
        migrations.close().await;
    }
    let store = PgStore::new(
        pool.clone(),
        idempotency.clone(),
        PgStoreOptions {
            timeouts,
            prepared_statements: !database.transaction_pooler,
            nowait: database.nowait,
        },
    );
    Ok((
        Arc::new(store),
        Arc::new(idempotency),
        Locker::new(Arc::new(lease)),
        Some(pool),
    ))
}

/// `lock_timeout` and `statement_timeout` as session settings, in
/// milliseconds (at least 1: 0 would mean no bound).
fn session_bounds(timeouts: SqlTimeouts) -> [(&'static str, String); 2] {
    let millis = |bound: Duration| bound.as_millis().clamp(1, i32::MAX as u128).to_string();
    [
        ("lock_timeout", millis(timeouts.lock())),
        ("statement_timeout", millis(timeouts.statement())),
    ]
}

impl App {
    /// Connects (and migrates) storage and builds the clients.
    ///
    /// # Errors
    ///
    /// Bad settings or an unusable database.
    pub async fn start(settings: Settings) -> Result<Arc<Self>, StartError> {
        settings.validate()?;
        crate::telemetry::register_alerting_counters();
        let paystack = verifier(Provider::Paystack, &settings.webhook_secrets.paystack)?;
        let flutterwave = verifier(Provider::Flutterwave, &settings.webhook_secrets.flutterwave)?;
        let gateways = Gateways::new(settings.gateways.clone()).map_err(StartError::Config)?;
        let (store, idempotency, locker, pool) = stores(&settings.database).await?;
        // Only successes are kept (24 h): an invalid request is judged again
        // on a retry, and a flood of them with fresh keys leaves nothing.
        let keyed = IdempotencyLayer::builder(Arc::clone(&idempotency))
            .required(true)
            .outcome_policy(OutcomePolicy::successes_only())
            .build()
            .map_err(|error| StartError::Config(error.to_string()))?;
        Ok(Arc::new(Self {
            store,
            gateways,
            settings,
            locker,
            idempotency,
            pool,
            keyed,
            paystack,
            flutterwave,
            started: tokio::time::Instant::now(),
            draining: tokio_util::sync::CancellationToken::new(),
        }))
    }
}
