//! `booking-backend serve` runs the service; `booking-backend demo` shows
//! it working against gateway-sim.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command reports on its streams

mod demo;
mod load;
mod scratch;

use booking_backend::domain::GuestLimits;
use booking_backend::gateway::{BreakerSettings, GatewayConfig};
use booking_backend::http::parse_api_keys;
use booking_backend::server::Limits;
use booking_backend::{App, DatabaseSettings, Settings, WebhookSecrets, telemetry};
use clap::{ArgAction, Args, Parser, Subcommand};
use payguard_core::SqlTimeouts;
use payguard_redact::Secret;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A short-let booking backend built from the payguard crates.
#[derive(Debug, Parser)]
#[command(name = "booking-backend", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run the jobs.
    Serve(Box<ServeArgs>),
    /// Start gateway-sim and the backend, drive a realistic run with
    /// faults, and check the invariants (exit 0 only if all hold).
    Demo(demo::DemoArgs),
    /// Simulated users against the service (started here on DATABASE_URL,
    /// or `--base-url`): latency per route, throughput, and the invariants
    /// (exit 1 if one fails).
    Load(load::LoadArgs),
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?}: {error}"))
}

/// A secret from a flag or the environment, wrapped at once so that it
/// never prints (not even in a parse error).
fn secret(text: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret::new(text.to_owned()))
}

/// Comma-separated secrets, none empty: the first is current, the others
/// are still accepted while being rotated out.
fn secret_list(list: &Secret<String>, name: &str) -> Result<Vec<Secret<String>>, String> {
    let secrets: Vec<Secret<String>> = list
        .expose_secret()
        .split(',')
        .map(|secret| Secret::new(secret.trim().to_owned()))
        .collect();
    if secrets
        .iter()
        .any(|secret| secret.expose_secret().is_empty())
    {
        return Err(format!("{name} holds an empty secret in its list"));
    }
    Ok(secrets)
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where to listen.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Log level of this service and the payguard crates (error, warn,
    /// info, debug, trace); other crates log warnings and errors.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: tracing::Level,
    /// API keys, `tenant:key[:role],...` (roles `client`, the default, and
    /// `admin`); an admin key reads `GET /v1/bookings`.
    #[arg(long, env = "API_KEYS", hide_env_values = true, value_parser = secret)]
    api_keys: Option<Secret<String>>,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    gateways: GatewayArgs,
    /// How long an unpaid hold keeps its dates.
    #[arg(long, env = "HOLD_FOR", default_value = "15m", value_parser = duration)]
    hold_for: Duration,
    /// How long after check-in the host is paid.
    #[arg(long, env = "ESCROW_HOLD", default_value = "24h", value_parser = duration)]
    escrow_hold: Duration,
    /// How often the escrow-release job and hold expiry run.
    #[arg(long, env = "JOB_EVERY", default_value = "30s", value_parser = duration)]
    job_every: Duration,
    /// How often reconciliation asks the gateways about what was not heard.
    #[arg(long, env = "RECONCILE_EVERY", default_value = "60s", value_parser = duration)]
    reconcile_every: Duration,
    /// After SIGTERM, how long readiness answers 503 before the listener
    /// closes; open requests then finish.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "5s", value_parser = duration)]
    drain_timeout: Duration,
    /// This instance's name, in logs.
    #[arg(long, env = "INSTANCE_ID", default_value = "instance-1")]
    instance_id: String,
    /// Open connections at most; beyond, new ones are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// How long a client has to send request headers, and how long a
    /// keep-alive connection may sit idle.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "5s", value_parser = duration)]
    header_read_timeout: Duration,
    /// How long a request may take, its body included (408 after).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    request_timeout: Duration,
    /// The largest request body in bytes (413 beyond).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// The longest stay one booking may hold, in nights (422 beyond).
    #[arg(long, env = "MAX_NIGHTS", default_value_t = 30)]
    max_nights: u32,
    /// Unpaid holds one guest email may have at once (429 beyond).
    #[arg(long, env = "MAX_OPEN_HOLDS_PER_GUEST", default_value_t = 3)]
    max_open_holds_per_guest: u32,
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// PostgreSQL (migrated at start); without it, storage is in memory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// A direct connection for the migrations when DATABASE_URL goes
    /// through PgBouncer in transaction mode.
    #[arg(long, env = "DATABASE_MIGRATION_URL", hide_env_values = true)]
    database_migration_url: Option<String>,
    /// Connections in the pool at most.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    database_max_connections: u32,
    /// How long a request waits for a free connection (then 503).
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = duration)]
    database_acquire_timeout: Duration,
    /// The longest a statement may run (then 503, nothing written).
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "5s", value_parser = duration)]
    database_statement_timeout: Duration,
    /// The longest a statement waits for a row lock (then 409 busy).
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT", default_value = "1s", value_parser = duration)]
    database_lock_timeout: Duration,
    /// DATABASE_URL goes through a pooler in transaction mode (PgBouncer):
    /// no prepared statements across transactions, no LISTEN.
    #[arg(long, env = "DATABASE_TRANSACTION_POOLER", default_value_t = false, action = ArgAction::Set)]
    database_transaction_pooler: bool,
    /// Refuse a booking at once (409 dates_unavailable) while another
    /// booking of the same listing is being written, instead of waiting.
    #[arg(long, env = "BOOKING_NOWAIT", default_value_t = false, action = ArgAction::Set)]
    booking_nowait: bool,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    /// Paystack API base URL.
    #[arg(
        long,
        env = "PAYSTACK_BASE_URL",
        default_value = "https://api.paystack.co"
    )]
    paystack_base_url: String,
    /// Paystack secret key; comma-separated while rotating (the first is
    /// used for API calls, each verifies webhooks).
    #[arg(long, env = "PAYSTACK_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    paystack_secret_key: Secret<String>,
    /// Flutterwave v3 API base URL.
    #[arg(
        long,
        env = "FLUTTERWAVE_BASE_URL",
        default_value = "https://api.flutterwave.com/v3"
    )]
    flutterwave_base_url: String,
    /// Flutterwave secret key.
    #[arg(long, env = "FLUTTERWAVE_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    flutterwave_secret_key: Secret<String>,
    /// Flutterwave webhook secret hash; comma-separated while rotating.
    #[arg(long, env = "FLUTTERWAVE_SECRET_HASH", hide_env_values = true, value_parser = secret)]
    flutterwave_secret_hash: Secret<String>,
    /// Extra trusted roots for the gateways' TLS (PEM), added to the
    /// platform's: a simulator or a proxy with a private CA.
    #[arg(long, env = "GATEWAY_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Attempts per gateway call at most, the first included.
    #[arg(long, env = "GATEWAY_MAX_ATTEMPTS", default_value_t = 4)]
    gateway_max_attempts: u32,
    /// How long one gateway attempt may take.
    #[arg(long, env = "GATEWAY_ATTEMPT_TIMEOUT", default_value = "4s", value_parser = duration)]
    gateway_attempt_timeout: Duration,
    /// How long all attempts of one gateway call may take together.
    #[arg(long, env = "GATEWAY_DEADLINE", default_value = "12s", value_parser = duration)]
    gateway_deadline: Duration,
    /// Calls in each gateway breaker's window.
    #[arg(long, env = "BREAKER_WINDOW", default_value_t = 20)]
    breaker_window: u32,
    /// The failure rate (0 to 1) that opens a gateway's breaker.
    #[arg(long, env = "BREAKER_FAILURE_RATE", default_value_t = 0.5)]
    breaker_failure_rate: f64,
    /// Calls in the window before a breaker may open.
    #[arg(long, env = "BREAKER_MINIMUM_CALLS", default_value_t = 10)]
    breaker_minimum_calls: u32,
    /// How long an open breaker waits before a probe.
    #[arg(long, env = "BREAKER_OPEN_FOR", default_value = "3s", value_parser = duration)]
    breaker_open_for: Duration,
}

impl GatewayArgs {
    fn config(self) -> Result<(GatewayConfig, WebhookSecrets), String> {
        let paystack = secret_list(&self.paystack_secret_key, "PAYSTACK_SECRET_KEY")?;
        let flutterwave = secret_list(&self.flutterwave_secret_hash, "FLUTTERWAVE_SECRET_HASH")?;
        let mut config = GatewayConfig::new("", "");
        config.flutterwave_secret_key = self.flutterwave_secret_key;
        config.paystack_base_url = self.paystack_base_url.trim_end_matches('/').to_owned();
        config.flutterwave_base_url = self.flutterwave_base_url.trim_end_matches('/').to_owned();
        if let Some(current) = paystack.first() {
            config.paystack_secret_key = current.clone();
        }
        config.ca_file = self.ca_file;
        config.retry.max_attempts = self.gateway_max_attempts;
        config.retry.attempt_timeout = self.gateway_attempt_timeout;
        config.retry.deadline = self.gateway_deadline;
        config.breaker = BreakerSettings {
            window: self.breaker_window,
            failure_rate: self.breaker_failure_rate,
            minimum_calls: self.breaker_minimum_calls,
            open_for: self.breaker_open_for,
        };
        let secrets = WebhookSecrets {
            paystack,
            flutterwave,
        };
        Ok((config, secrets))
    }
}

impl DatabaseArgs {
    fn settings(self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.database_url.map(Secret::new),
            migration_url: self.database_migration_url.map(Secret::new),
            max_connections: self.database_max_connections,
            acquire_timeout: self.database_acquire_timeout,
            timeouts: SqlTimeouts::default()
                .statement_timeout(self.database_statement_timeout)
                .lock_timeout(self.database_lock_timeout),
            transaction_pooler: self.database_transaction_pooler,
            nowait: self.booking_nowait,
        }
    }
}

impl ServeArgs {
    fn settings(self) -> Result<Settings, String> {
        let (gateways, webhook_secrets) = self.gateways.config()?;
        let mut settings = Settings::new(gateways, webhook_secrets);
        settings.bind = self.bind;
        if let Some(keys) = &self.api_keys {
            settings.api_keys =
                parse_api_keys(keys.expose_secret()).map_err(|error| error.to_string())?;
        }
        settings.database = self.database.settings();
        settings.hold_for = self.hold_for;
        settings.escrow_hold = self.escrow_hold;
        settings.job_every = self.job_every;
        settings.reconcile_every = self.reconcile_every;
        settings.drain = self.drain_timeout;
        settings.instance = self.instance_id;
        settings.limits = Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
        };
        settings.guests = GuestLimits {
            max_nights: self.max_nights,
            open_holds: self.max_open_holds_per_guest,
        };
        Ok(settings)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("booking-backend: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Load(args) => runtime.block_on(load::run(args)),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    telemetry::install_metrics();
    telemetry::install_logs(std::io::stdout(), args.log_level);
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("booking-backend: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = settings.validate() {
        eprintln!("booking-backend: {error}");
        return ExitCode::from(2);
    }
    let app = match App::start(settings.clone()).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("booking-backend: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.bind).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "booking-backend: cannot listen on {}: {error}",
                settings.bind
            );
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        signals.cancel();
    });
    tracing::info!(addr = %settings.bind, instance = %settings.instance, "serving");
    match booking_backend::serve(app, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("booking-backend: {error}");
            ExitCode::from(1)
        }
    }
}
