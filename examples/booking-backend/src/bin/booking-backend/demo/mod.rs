//! `booking-backend demo`: gateway-sim and the backend, a realistic run
//! with faults, and a table of invariants. Exit 0 only if every one holds.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing, clippy::print_stdout, clippy::print_stderr)]

use booking_backend::domain::new_id;
use booking_backend::{App, DatabaseSettings, Settings, telemetry};
use gateway_sim::{SimConfig, SimHandle};
use indicatif::{ProgressBar, ProgressStyle};
use payguard_redact::Redactor;
use payguard_webhook::{Provider as WebhookProvider, Verifier};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

mod check;
mod script;

use crate::scratch::{ScratchDatabase, free_port};

/// Demo options.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// PostgreSQL shared by the instances; without it, one in-memory instance.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Backend processes sharing the database (needs DATABASE_URL).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Seed of the simulator's RNG.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the backend's JSON logs go (scanned for personal data at the end).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// With several instances: SIGKILL the last one mid-run (after the
    /// guests paid); the others carry on.
    #[arg(long)]
    kill_one: bool,
    /// Longest wait for payouts to settle.
    #[arg(long, default_value = "60s", value_parser = |text: &str| humantime::parse_duration(text).map_err(|error| error.to_string()))]
    timeout: Duration,
}

const LISTINGS: usize = 10;
const RACERS: usize = 4;
const OUTAGE_LISTINGS: usize = 4;
const FORGED: usize = 6;

/// A failure that ends the demo early.
type Failed = String;

struct Demo {
    http: reqwest::Client,
    sim: SimHandle,
    backends: Vec<String>,
    /// Instances still running (one may be killed mid-run).
    live: std::sync::Mutex<Vec<String>>,
    children: tokio::sync::Mutex<Vec<tokio::process::Child>>,
    progress: ProgressBar,
    today: Date,
    seed: u64,
}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    if args.instances == 0 || (args.instances > 1 && args.database_url.is_none()) {
        eprintln!(
            "booking-backend demo: --instances above 1 needs DATABASE_URL (instances share the database)"
        );
        return ExitCode::from(2);
    }
    match drive(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("booking-backend demo: {error}");
            ExitCode::from(1)
        }
    }
}

async fn drive(args: DemoArgs) -> Result<bool, Failed> {
    let log_path = args.log_file.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("booking-demo-{}.log", std::process::id()))
    });
    let log = std::fs::File::create(&log_path)
        .map_err(|error| format!("{}: {error}", log_path.display()))?;
    telemetry::install_metrics();
    let ports: Vec<u16> = (0..args.instances)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let backends: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let webhook_target = backends[0].clone();

    let progress = ProgressBar::new(9);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    progress.set_message("starting gateway-sim and the backend");

    let sim = SimConfig {
        seed: args.seed,
        paystack_webhook_url: Some(format!("{webhook_target}/v1/webhooks/paystack")),
        flutterwave_webhook_url: Some(format!("{webhook_target}/v1/webhooks/flutterwave")),
        auto_settle: Some(Duration::from_millis(300)),
        ..SimConfig::default()
    }
    .start()
    .await
    .map_err(|error| format!("gateway-sim: {error}"))?;
    let scratch = match &args.database_url {
        Some(url) => Some(ScratchDatabase::create(url).await?),
        None => None,
    };
    let database_url = scratch.as_ref().map(|scratch| scratch.url.clone());
    let settings = |port: u16, instance: usize| {
        let mut settings = Settings::for_simulator(&sim);
        settings.bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if let Some(url) = &database_url {
            settings.database = DatabaseSettings::postgres(url.clone());
        }
        settings.hold_for = Duration::from_secs(8);
        settings.escrow_hold = Duration::from_secs(3);
        settings.job_every = Duration::from_secs(1);
        settings.reconcile_every = Duration::from_secs(2);
        settings.instance = format!("instance-{}", instance + 1);
        settings
    };
    let shutdown = CancellationToken::new();
    let mut children = Vec::new();
    if args.database_url.is_none() {
        telemetry::install_logs(log, tracing::Level::INFO);
        let app = App::start(settings(ports[0], 0))
            .await
            .map_err(|error| error.to_string())?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports[0]))
            .await
            .map_err(|error| format!("cannot listen: {error}"))?;
        tokio::spawn(booking_backend::serve(app, listener, shutdown.clone()));
    } else {
        let exe = std::env::current_exe().map_err(|error| error.to_string())?;
        for (instance, port) in ports.iter().enumerate() {
            let s = settings(*port, instance);
            let out = log.try_clone().map_err(|error| error.to_string())?;
            let child = tokio::process::Command::new(&exe)
                .arg("serve")
                .env("BIND_ADDR", s.bind.to_string())
                .env("DATABASE_URL", database_url.clone().unwrap_or_default())
                .env("PAYSTACK_BASE_URL", &s.gateways.paystack_base_url)
                .env(
                    "PAYSTACK_SECRET_KEY",
                    s.gateways.paystack_secret_key.expose_secret(),
                )
                .env("FLUTTERWAVE_BASE_URL", &s.gateways.flutterwave_base_url)
                .env(
                    "FLUTTERWAVE_SECRET_KEY",
                    s.gateways.flutterwave_secret_key.expose_secret(),
                )
                .env(
                    "FLUTTERWAVE_SECRET_HASH",
                    gateway_sim::DEFAULT_FLUTTERWAVE_SECRET_HASH,
                )
                .env("HOLD_FOR", "8s")
                .env("ESCROW_HOLD", "3s")
                .env("JOB_EVERY", "1s")
                .env("RECONCILE_EVERY", "2s")
                .env("DRAIN_TIMEOUT", "0s")
                .env("INSTANCE_ID", &s.instance)
                .stdout(out)
                .kill_on_drop(true)
                .spawn()
                .map_err(|error| format!("cannot start an instance: {error}"))?;
            children.push(child);
        }
    }
    let demo = Demo {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| error.to_string())?,
        sim,
        live: std::sync::Mutex::new(backends.clone()),
        backends,
        children: tokio::sync::Mutex::new(children),
        progress,
        today: OffsetDateTime::now_utc().date(),
        seed: args.seed,
    };
    let result = demo.script(&args, &log_path).await;
    shutdown.cancel();
    for child in demo.children.lock().await.iter_mut() {
        let _ = child.kill().await;
    }
    demo.progress.finish_and_clear();
    if let Some(scratch) = scratch {
        scratch.drop_database().await;
    }
    result
}

#[derive(Debug, Default)]
struct Tally {
    created: Vec<Value>,
    conflicts: usize,
    replays: usize,
    forged_sent: usize,
    forged_rejected: usize,
    forged_target: Option<String>,
    cancelled_paid: Option<String>,
    reversed: Option<String>,
    unpaid: Vec<String>,
    killed: usize,
}

impl Demo {
    fn backend(&self, n: usize) -> String {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.get(n % live.len().max(1)).cloned().unwrap_or_default()
    }

    async fn post(
        &self,
        url: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<(u16, HeaderMap, Value), Failed> {
        let mut request = self.http.post(url).json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("POST {url}: {error}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, headers, body))
    }

    async fn get(&self, url: &str) -> Result<Value, Failed> {
        self.http
            .get(url)
            .send()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?
            .json()
            .await
            .map_err(|error| format!("GET {url}: {error}"))
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, Failed> {
        let url = format!("{}/_sim{path}", self.sim.base_url());
        let response = self
            .http
            .request(method, &url)
            .json(&body)
            .send()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()));
        }
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    fn step(&self, message: &str) {
        self.progress.inc(1);
        self.progress.set_message(message.to_owned());
    }

    async fn wait_ready(&self) -> Result<(), Failed> {
        for backend in &self.backends {
            let mut ready = false;
            for _ in 0..150 {
                if let Ok(response) = self
                    .http
                    .get(format!("{backend}/health/ready"))
                    .send()
                    .await
                    && response.status().is_success()
                {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ready {
                return Err(format!("{backend} never became ready"));
            }
        }
        Ok(())
    }

    fn date(&self, days: i64) -> String {
        (self.today + time::Duration::days(days)).to_string()
    }

    async fn listing(&self, n: usize) -> Result<String, Failed> {
        let (status, _, body) = self
            .post(
                &format!("{}/v1/listings", self.backend(n)),
                &json!({
                    "title": format!("Lekki loft {n}"),
                    "nightly_rate_minor": 2_500_000 + 10_000 * i64::try_from(n).unwrap_or(0),
                    "currency": "NGN",
                    "host": {
                        "name": format!("Host Number{n}"),
                        "email": format!("host{n}@example.com"),
                        "phone": format!("+2348031234{n:03}"),
                        "bank_code": "058",
                        "account_number": format!("01234567{:02}", n % 100),
                    },
                }),
                None,
            )
            .await?;
        if status != 201 {
            return Err(format!("creating a listing answered {status}: {body}"));
        }
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }

    fn booking_body(&self, listing: &str, guest: usize, from: i64, nights: i64) -> Value {
        json!({
            "listing_id": listing,
            "guest": {
                "name": format!("Guest Person{guest}"),
                "email": format!("guest{guest}@example.com"),
                "phone": format!("+2348059876{:03}", guest % 1000),
            },
            "check_in": self.date(from),
            "check_out": self.date(from + nights),
        })
    }
}

type HeaderMap = http::HeaderMap;
