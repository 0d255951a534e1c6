//! `gateway-sim`: a local Paystack and Flutterwave with faults on demand.
//!
//! Prints its base URL (`http://127.0.0.1:PORT`, or `https://` with
//! `--tls-cert` and `--tls-key`) as the first line of stdout, then serves
//! until SIGINT or SIGTERM.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a server binary reports on its streams

use clap::Parser;
use gateway_sim::{SimConfig, TlsIdentity};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A stateful, deterministic Paystack and Flutterwave simulator with fault
/// injection. Secrets come from PAYSTACK_SECRET_KEY, FLUTTERWAVE_SECRET_KEY
/// and FLUTTERWAVE_SECRET_HASH (test defaults when unset); webhook targets
/// from SIM_WEBHOOK_PAYSTACK_URL and SIM_WEBHOOK_FLUTTERWAVE_URL.
#[derive(Debug, Parser)]
#[command(name = "gateway-sim", version, about)]
struct Args {
    /// Where to listen (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Seed of the one RNG behind every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where Paystack webhooks go (overrides SIM_WEBHOOK_PAYSTACK_URL).
    #[arg(long)]
    paystack_webhook_url: Option<String>,
    /// Where Flutterwave webhooks go (overrides SIM_WEBHOOK_FLUTTERWAVE_URL).
    #[arg(long)]
    flutterwave_webhook_url: Option<String>,
    /// Settle transfers and refunds by themselves after this many
    /// milliseconds (default: only when POST /_sim/.../settle says so).
    #[arg(long)]
    auto_settle_ms: Option<u64>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match TlsIdentity::from_files(cert, key) {
            Ok(identity) => Some(identity),
            Err(error) => {
                eprintln!("gateway-sim: cannot read the TLS certificate or key: {error}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let defaults = SimConfig::from_env();
    let config = SimConfig {
        addr: args.addr,
        seed: args.seed,
        paystack_webhook_url: args
            .paystack_webhook_url
            .or(defaults.paystack_webhook_url.clone()),
        flutterwave_webhook_url: args
            .flutterwave_webhook_url
            .or(defaults.flutterwave_webhook_url.clone()),
        auto_settle: args.auto_settle_ms.map(Duration::from_millis),
        tls,
        ..defaults
    };
    let sim = match config.start().await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("gateway-sim: cannot serve on {}: {error}", args.addr);
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", sim.base_url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    drop(stdout);
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
    sim.shutdown().await;
    ExitCode::SUCCESS
}
