//! `booking-backend serve` runs the service; `booking-backend demo` shows
//! it working against gateway-sim.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command reports on its streams

use booking_backend::app::{App, Settings};
use booking_backend::gateway::GatewayConfig;
use booking_backend::{demo, telemetry};
use clap::{Args, Parser, Subcommand};
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
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?}: {error}"))
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where to listen.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// PostgreSQL (migrated at start); without it, storage is in memory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Paystack API base URL.
    #[arg(
        long,
        env = "PAYSTACK_BASE_URL",
        default_value = "https://api.paystack.co"
    )]
    paystack_base_url: String,
    /// Paystack secret key.
    #[arg(long, env = "PAYSTACK_SECRET_KEY", hide_env_values = true)]
    paystack_secret_key: String,
    /// Flutterwave v3 API base URL.
    #[arg(
        long,
        env = "FLUTTERWAVE_BASE_URL",
        default_value = "https://api.flutterwave.com/v3"
    )]
    flutterwave_base_url: String,
    /// Flutterwave secret key.
    #[arg(long, env = "FLUTTERWAVE_SECRET_KEY", hide_env_values = true)]
    flutterwave_secret_key: String,
    /// Flutterwave webhook secret hash.
    #[arg(long, env = "FLUTTERWAVE_SECRET_HASH", hide_env_values = true)]
    flutterwave_secret_hash: String,
    /// How long an unpaid hold keeps its dates.
    #[arg(long, env = "HOLD_FOR", default_value = "15m", value_parser = duration)]
    hold_for: Duration,
    /// How long after check-in the host is paid.
    #[arg(long, env = "ESCROW_HOLD", default_value = "24h", value_parser = duration)]
    escrow_hold: Duration,
    /// How often the escrow and reconciliation jobs run.
    #[arg(long, env = "JOB_EVERY", default_value = "30s", value_parser = duration)]
    job_every: Duration,
    /// This instance's name, in logs.
    #[arg(long, env = "INSTANCE_ID", default_value = "instance-1")]
    instance_id: String,
    /// Extra trusted roots for the gateways' TLS (PEM), added to the
    /// platform's: a simulator or a proxy with a private CA.
    #[arg(long, env = "GATEWAY_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
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
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    telemetry::install_metrics();
    telemetry::install_logs(std::io::stdout());
    let settings = Settings {
        bind: args.bind,
        database_url: args.database_url,
        gateways: GatewayConfig {
            paystack_base_url: args.paystack_base_url.trim_end_matches('/').to_owned(),
            paystack_secret_key: args.paystack_secret_key,
            flutterwave_base_url: args.flutterwave_base_url.trim_end_matches('/').to_owned(),
            flutterwave_secret_key: args.flutterwave_secret_key,
            ca_file: args.ca_file,
        },
        flutterwave_secret_hash: args.flutterwave_secret_hash,
        hold_for: args.hold_for,
        escrow_hold: args.escrow_hold,
        job_every: args.job_every,
        instance: args.instance_id,
        limits: booking_backend::server::Limits {
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
            request_timeout: args.request_timeout,
            max_body_bytes: args.max_body_bytes,
        },
        guests: booking_backend::domain::GuestLimits {
            max_nights: args.max_nights,
            open_holds: args.max_open_holds_per_guest,
        },
    };
    let limits = settings.limits;
    if limits.max_connections == 0
        || limits.header_read_timeout.is_zero()
        || limits.request_timeout.is_zero()
        || limits.max_body_bytes == 0
        || settings.guests.max_nights == 0
        || settings.guests.open_holds == 0
    {
        eprintln!(
            "booking-backend: --max-connections, --header-read-timeout, --request-timeout, --max-body-bytes, --max-nights and --max-open-holds-per-guest must be above zero"
        );
        return ExitCode::from(2);
    }
    if settings.job_every.is_zero() {
        eprintln!("booking-backend: --job-every must be longer than zero");
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
