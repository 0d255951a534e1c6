//! `booking-backend demo`: gateway-sim and the backend, a realistic run
//! with faults, and a table of invariants. Exit 0 only if every one holds.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing, clippy::print_stdout, clippy::print_stderr)]

use booking_backend::domain::new_id;
use booking_backend::gateway::GatewayConfig;
use booking_backend::{App, DatabaseSettings, Settings, WebhookSecrets, telemetry};
use gateway_sim::{SimConfig, SimHandle};
use indicatif::{ProgressBar, ProgressStyle};
use payguard_redact::Redactor;
use payguard_redact::Secret;
use payguard_webhook::{Provider as WebhookProvider, Verifier};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

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
        let mut settings = Settings::new(gateways, secrets);
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

    async fn script(&self, args: &DemoArgs, log_path: &std::path::Path) -> Result<bool, Failed> {
        let mut tally = Tally::default();
        self.wait_ready().await?;
        self.control(
            reqwest::Method::PUT,
            "/webhooks",
            json!({"duplicates": 1, "duplicate_spacing_ms": 50, "delay_ms": {"min": 0, "max": 150},
                   "out_of_order_window_ms": 100, "time_scale": 0.001}),
        )
        .await?;
        let noise = json!([
            {"name": "lost-transfer", "match": {"provider": "paystack", "method": "POST", "path": "/transfer"},
             "times": 3, "timeout": {"mode": "apply_then_drop"}},
            {"name": "recipient-429", "match": {"provider": "paystack", "path": "/transferrecipient"},
             "rate_limit": {"rps": 3, "burst": 2}},
            {"name": "verify-5xx", "match": {"method": "GET", "path_prefix": "/paystack/transfer/verify"},
             "times": 4, "error": {"status": [500, 503]}},
            {"name": "fw-5xx", "match": {"provider": "flutterwave", "method": "GET"},
             "times": 4, "error": {"status": [502], "probability": 0.5}}
        ]);
        let with_noise = |first: Value| {
            let mut rules = vec![first];
            rules.extend(noise.as_array().cloned().unwrap_or_default());
            json!({ "rules": rules })
        };
        self.control(
            reqwest::Method::PUT,
            "/faults",
            with_noise(json!({"name": "init-5xx", "match": {"provider": "paystack", "path": "/transaction/initialize"},
                              "times": 2, "error": {"status": [502, 503], "probability": 0.3}})),
        )
        .await?;
        self.step("listings");
        let mut listings = Vec::new();
        for n in 0..LISTINGS + OUTAGE_LISTINGS {
            listings.push(self.listing(n).await?);
        }

        self.step("racing guests for the same nights");
        let mut guest = 0;
        for (n, listing) in listings.iter().take(LISTINGS).enumerate() {
            let racers: Vec<_> = (0..RACERS)
                .map(|racer| {
                    guest += 1;
                    let url = format!("{}/v1/bookings", self.backend(n + racer));
                    let body = self.booking_body(listing, guest, 0, 2);
                    let key = new_id("idem_");
                    let http = self.http.clone();
                    tokio::spawn(async move {
                        let response = http
                            .post(&url)
                            .header("idempotency-key", &key)
                            .json(&body)
                            .send()
                            .await
                            .map_err(|error| error.to_string())?;
                        let status = response.status().as_u16();
                        let answer: Value = response.json().await.unwrap_or(Value::Null);
                        Ok::<_, String>((status, answer, url, body, key))
                    })
                })
                .collect();
            for racer in racers {
                let (status, answer, url, body, key) =
                    racer.await.map_err(|error| error.to_string())??;
                match status {
                    201 => {
                        // A client retry with the same key replays the answer.
                        if tally.replays == 0 {
                            let (status, headers, replay) =
                                self.post(&url, &body, Some(&key)).await?;
                            if status == 201
                                && headers.contains_key("idempotent-replayed")
                                && replay == answer
                            {
                                tally.replays += 1;
                            }
                        }
                        tally.created.push(answer);
                    }
                    409 if answer["code"] == "dates_unavailable" => tally.conflicts += 1,
                    other => return Err(format!("booking answered {other}: {answer}")),
                }
            }
            // A later stay on the same listing, not yet due for payout.
            guest += 1;
            let (status, _, answer) = self
                .post(
                    &format!("{}/v1/bookings", self.backend(n)),
                    &self.booking_body(listing, guest, 5, 3),
                    Some(&new_id("idem_")),
                )
                .await?;
            if status != 201 {
                return Err(format!("booking answered {status}: {answer}"));
            }
            tally.created.push(answer);
        }

        self.step("guests pay (some cards fail)");
        for (index, booking) in tally.created.iter().enumerate() {
            let reference = booking["payment"]["reference"].as_str().unwrap_or_default();
            let outcome = if index % 9 == 4 { "failed" } else { "success" };
            if outcome == "failed" {
                tally
                    .unpaid
                    .push(booking["id"].as_str().unwrap_or_default().to_owned());
            }
            self.control(
                reqwest::Method::POST,
                &format!("/charges/{reference}/complete"),
                json!({"outcome": outcome}),
            )
            .await?;
        }

        if args.kill_one && self.backends.len() > 1 {
            let mut children = self.children.lock().await;
            if let Some(child) = children.last_mut() {
                child
                    .start_kill()
                    .map_err(|error| format!("cannot kill an instance: {error}"))?;
                let _ = child.wait().await;
                self.live
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                tally.killed += 1;
            }
        }

        self.step("forged webhooks");
        let target = tally
            .unpaid
            .first()
            .and_then(|id| {
                tally
                    .created
                    .iter()
                    .find(|booking| booking["id"] == id.as_str())
            })
            .cloned();
        if let Some(target) = target {
            tally.forged_target = target["id"].as_str().map(str::to_owned);
            for n in 0..FORGED {
                let body = json!({"event": "charge.success", "data": {
                    "reference": target["payment"]["reference"], "amount": target["amount_minor"],
                    "currency": target["currency"], "status": "success"}})
                .to_string();
                let signature = match n % 3 {
                    0 => Some(sign("sk_test_not_the_key", &body)),
                    1 => Some(sign(
                        gateway_sim::DEFAULT_PAYSTACK_SECRET_KEY,
                        &format!("{body} "),
                    )),
                    _ => None,
                };
                let mut request = self
                    .http
                    .post(format!("{}/v1/webhooks/paystack", self.backend(n)))
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(signature) = signature {
                    request = request.header("x-paystack-signature", signature);
                }
                tally.forged_sent += 1;
                if request
                    .send()
                    .await
                    .map_err(|error| error.to_string())?
                    .status()
                    == 401
                {
                    tally.forged_rejected += 1;
                }
            }
        }

        self.step("cancellations and refunds");
        tokio::time::sleep(Duration::from_millis(800)).await;
        let later = tally
            .created
            .iter()
            .filter(|booking| booking["check_in"] == self.date(5).as_str())
            .filter(|booking| !tally.unpaid.iter().any(|id| booking["id"] == id.as_str()))
            .find_map(|booking| booking["id"].as_str().map(str::to_owned));
        if let Some(id) = later {
            // As a client should: a 503 says when to try again (the refund
            // is blocked while Paystack's breaker is open, say).
            let key = new_id("idem_");
            let mut answer = (0, HeaderMap::new(), Value::Null);
            for _ in 0..10 {
                answer = self
                    .post(
                        &format!("{}/v1/bookings/{id}/cancel", self.backend(1)),
                        &json!({}),
                        Some(&key),
                    )
                    .await?;
                if answer.0 != 503 {
                    break;
                }
                let wait = answer
                    .1
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            let (status, _, answer) = answer;
            if status != 200 {
                return Err(format!(
                    "cancelling a paid booking answered {status}: {answer}"
                ));
            }
            tally.cancelled_paid = Some(id);
        }

        self.step("Paystack outage: the breaker trips, Flutterwave takes the charges");
        self.control(
            reqwest::Method::PUT,
            "/faults",
            with_noise(json!({"name": "paystack-outage", "match": {"provider": "paystack", "path": "/transaction/initialize"},
                              "times": 40, "error": {"status": [503]}})),
        )
        .await?;
        for (n, listing) in listings.iter().enumerate().skip(LISTINGS) {
            for slot in 0..3 {
                guest += 1;
                let (status, _, answer) = self
                    .post(
                        &format!("{}/v1/bookings", self.backend(n)),
                        &self.booking_body(listing, guest, i64::from(slot) * 3, 2),
                        Some(&new_id("idem_")),
                    )
                    .await?;
                if status != 201 {
                    return Err(format!(
                        "booking during the outage answered {status}: {answer}"
                    ));
                }
                let reference = answer["payment"]["reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.control(
                    reqwest::Method::POST,
                    &format!("/charges/{reference}/complete"),
                    json!({"outcome": "success"}),
                )
                .await?;
                tally.created.push(answer);
            }
        }
        self.control(reqwest::Method::PUT, "/faults", json!({ "rules": noise }))
            .await?;

        self.step("escrow release: paying hosts");
        let due: Vec<String> = tally
            .created
            .iter()
            .filter(|booking| booking["check_in"] == self.date(0).as_str())
            .filter(|booking| !tally.unpaid.iter().any(|id| booking["id"] == id.as_str()))
            .filter_map(|booking| booking["id"].as_str().map(str::to_owned))
            .collect();
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut reversal_done = false;
        loop {
            let mut settled = 0;
            for id in &due {
                let booking = self
                    .get(&format!("{}/v1/bookings/{id}", self.backend(0)))
                    .await?;
                if matches!(booking["payout_status"].as_str(), Some("paid" | "reversed")) {
                    settled += 1;
                }
                if !reversal_done && booking["payout_status"] == "paid" {
                    // The bank reverses one payout; a late duplicate of its
                    // success must not resurrect it.
                    let reference = booking["payout_reference"].as_str().unwrap_or_default();
                    self.control(
                        reqwest::Method::POST,
                        &format!("/transfers/{reference}/settle"),
                        json!({"outcome": "reversed"}),
                    )
                    .await?;
                    tally.reversed = Some(id.clone());
                    reversal_done = true;
                }
            }
            self.progress.set_message(format!(
                "escrow release: {settled}/{} payouts settled",
                due.len()
            ));
            if settled == due.len() && reversal_done {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Replay the reversed payout's old success, late.
        if let Some(id) = &tally.reversed {
            let reference = format!("escrow_{id}");
            if let Some(delivery) = self.sim.deliveries().into_iter().find(|delivery| {
                delivery.reference == reference && delivery.event == "transfer.success"
            }) {
                self.control(
                    reqwest::Method::POST,
                    &format!("/webhooks/deliveries/{}/replay", delivery.id),
                    json!({}),
                )
                .await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;

        self.step("checking the invariants");
        let ok = self.check(&tally, &due, log_path).await?;
        Ok(ok)
    }

    async fn check(
        &self,
        tally: &Tally,
        due: &[String],
        log_path: &std::path::Path,
    ) -> Result<bool, Failed> {
        let mut bookings = Vec::new();
        for booking in &tally.created {
            let id = booking["id"].as_str().unwrap_or_default();
            bookings.push(
                self.get(&format!("{}/v1/bookings/{id}", self.backend(0)))
                    .await?,
            );
        }
        let state = self.sim.snapshot();
        let metrics = self.metrics().await;

        // Double bookings: live bookings of one listing sharing a night.
        let mut double_bookings = 0;
        for (index, a) in bookings.iter().enumerate() {
            for b in bookings.iter().skip(index + 1) {
                let live = |booking: &Value| {
                    matches!(
                        booking["status"].as_str(),
                        Some("pending_payment" | "confirmed" | "completed")
                    )
                };
                if a["listing_id"] == b["listing_id"]
                    && live(a)
                    && live(b)
                    && a["check_in"].as_str() < b["check_out"].as_str()
                    && b["check_in"].as_str() < a["check_out"].as_str()
                {
                    double_bookings += 1;
                }
            }
        }

        // Payouts: each due booking paid exactly once, nothing else paid.
        let transfers: HashMap<&str, &gateway_sim::Transfer> = state
            .transfers
            .iter()
            .map(|transfer| (transfer.reference.as_str(), transfer))
            .collect();
        let mut payouts_wrong = 0;
        let mut problems: Vec<String> = Vec::new();
        let mut payout_requests = 0;
        for booking in &bookings {
            let id = booking["id"].as_str().unwrap_or_default();
            let reference = format!("escrow_{id}");
            let transfer = transfers.get(reference.as_str());
            payout_requests += transfer.map_or(0, |transfer| transfer.create_requests);
            let should_pay = due.iter().any(|due| due == id) && booking["status"] != "cancelled";
            let paid_right = match transfer {
                Some(transfer) => {
                    let expected = if tally.reversed.as_deref() == Some(id) {
                        ("reversed", "REVERSED", "reversed")
                    } else {
                        ("success", "SUCCESSFUL", "paid")
                    };
                    should_pay
                        && transfer.amount == booking["amount_minor"].as_i64().unwrap_or(-1)
                        && (transfer.status == expected.0 || transfer.status == expected.1)
                        && booking["payout_status"] == expected.2
                }
                None => !should_pay,
            };
            if !paid_right {
                payouts_wrong += 1;
                problems.push(format!(
                    "payout of {id}: booking {} / payout {}, gateway transfer {:?}",
                    booking["status"],
                    booking["payout_status"],
                    transfer.map(|transfer| (&transfer.status, transfer.amount))
                ));
            }
        }
        let stray_transfers = state
            .transfers
            .iter()
            .filter(|transfer| {
                !bookings.iter().any(|booking| {
                    Some(transfer.reference.as_str()) == booking["payout_reference"].as_str()
                })
            })
            .count();

        // Every charged booking confirmed (or cancelled and refunded).
        let mut charged_not_confirmed = 0;
        for charge in state
            .charges
            .iter()
            .filter(|charge| charge.status == "success" || charge.status == "successful")
        {
            let Some(booking) = bookings
                .iter()
                .find(|booking| booking["payment"]["reference"] == charge.reference.as_str())
            else {
                continue;
            };
            let honoured = matches!(booking["status"].as_str(), Some("confirmed" | "completed"))
                || (booking["status"] == "cancelled" && booking["refund_status"].is_string());
            if !honoured {
                charged_not_confirmed += 1;
                problems.push(format!(
                    "charge {} paid, booking is {}",
                    charge.reference, booking["status"]
                ));
            }
        }

        // Webhooks: every delivered event applied once, duplicates ignored.
        let deliveries = self.sim.deliveries();
        let delivered = deliveries
            .iter()
            .filter(|delivery| delivery.delivered)
            .count();
        let copies: usize = deliveries
            .iter()
            .map(|delivery| {
                delivery
                    .attempts
                    .iter()
                    .filter(|attempt| attempt.outcome.starts_with('2'))
                    .count()
            })
            .sum();
        let applied = metric(&metrics, "booking_webhooks_total", "outcome=\"applied\"");
        let duplicates = metric(&metrics, "booking_webhooks_total", "outcome=\"duplicate\"");
        let forged_target_untouched = match &tally.forged_target {
            Some(id) => bookings
                .iter()
                .find(|booking| booking["id"] == id.as_str())
                .is_some_and(|booking| {
                    booking["status"] != "confirmed" && booking["status"] != "completed"
                }),
            None => true,
        };

        // Personal data in the logs.
        let redactor = Redactor::new();
        let logs = std::fs::read_to_string(log_path).unwrap_or_default();
        let pii_lines = logs
            .lines()
            .filter(|line| redactor.redact(line) != *line)
            .count();
        let guest_emails_in_logs = bookings
            .iter()
            .filter(|booking| {
                booking["guest"]["email"]
                    .as_str()
                    .is_some_and(|email| logs.contains(email))
            })
            .count();

        let rows: Vec<(&str, String, bool)> = vec![
            (
                "double bookings",
                double_bookings.to_string(),
                double_bookings == 0,
            ),
            (
                "due payouts made exactly once",
                format!(
                    "{} due, {} wrong, {} stray transfers",
                    due.len(),
                    payouts_wrong,
                    stray_transfers
                ),
                payouts_wrong == 0 && stray_transfers == 0,
            ),
            (
                "charged bookings confirmed",
                format!("{charged_not_confirmed} not confirmed"),
                charged_not_confirmed == 0,
            ),
            (
                "webhooks applied once",
                format!(
                    "{delivered} events, {applied} applied, {copies} deliveries, {duplicates} duplicates ignored"
                ),
                applied == delivered as u64 && duplicates + applied >= copies as u64,
            ),
            (
                "forged webhooks rejected",
                format!("{}/{} rejected", tally.forged_rejected, tally.forged_sent),
                tally.forged_sent > 0
                    && tally.forged_rejected == tally.forged_sent
                    && forged_target_untouched,
            ),
            (
                "personal data in logs",
                format!("{pii_lines} lines, {guest_emails_in_logs} guest emails"),
                pii_lines == 0 && guest_emails_in_logs == 0 && !logs.is_empty(),
            ),
            (
                "dates contested",
                format!(
                    "{} booked, {} refused (409), {} replayed",
                    tally.created.len(),
                    tally.conflicts,
                    tally.replays
                ),
                tally.conflicts == LISTINGS * (RACERS - 1) && tally.replays == 1,
            ),
        ];
        let retries = metric(&metrics, "booking_gateway_retries_total", "");
        let trips = metric(
            &metrics,
            "payguard_breaker_transitions_total",
            "to=\"open\"",
        );
        let failovers = metric(&metrics, "booking_gateway_failovers_total", "");
        let flutterwave_charges = state
            .charges
            .iter()
            .filter(|charge| charge.provider == gateway_sim::Provider::Flutterwave)
            .count();
        self.progress.finish_and_clear();
        println!(
            "\nbooking-backend demo: {} instance(s), seed {}\n",
            self.backends.len(),
            self.seed
        );
        println!("{:<34} {:<62} holds", "invariant", "measured");
        for (name, measured, holds) in &rows {
            println!(
                "{name:<34} {measured:<62} {}",
                if *holds { "yes" } else { "NO" }
            );
        }
        println!(
            "\ngateway retries {retries}, breaker trips {trips}, fail-overs to Flutterwave {failovers} \
             ({flutterwave_charges} charges there), payout create requests {payout_requests} for {} transfers, \
             refunds {}, instances killed with SIGKILL {}, logs {}",
            state.transfers.len(),
            state.refunds.len(),
            tally.killed,
            log_path.display()
        );
        for problem in &problems {
            println!("  ! {problem}");
        }
        Ok(rows.iter().all(|(_, _, holds)| *holds))
    }

    /// Every instance's metrics (in-process instances share one registry).
    async fn metrics(&self) -> String {
        let mut text = String::new();
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for backend in &live {
            if let Ok(response) = self.http.get(format!("{backend}/metrics")).send().await
                && let Ok(body) = response.text().await
            {
                text.push_str(&body);
                text.push('\n');
            }
            if self.backends.len() == 1 {
                break;
            }
        }
        text
    }
}

type HeaderMap = http::HeaderMap;

/// Sums a counter's samples whose labels contain `filter`.
fn metric(text: &str, name: &str, filter: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#') && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// The `x-paystack-signature` of `body` under `key` (payguard-webhook signs).
fn sign(key: &str, body: &str) -> String {
    Verifier::builder(WebhookProvider::Paystack)
        .secret(key)
        .build()
        .ok()
        .and_then(|signer| {
            signer
                .sign_at(body.as_bytes(), std::time::UNIX_EPOCH, None)
                .ok()
        })
        .and_then(|headers| headers.into_iter().next())
        .and_then(|(_, value)| value.to_str().ok().map(str::to_owned))
        .unwrap_or_default()
}
