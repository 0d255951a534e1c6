//! `booking-backend load`: simulated users against the service, each
//! looking at a listing, booking it with an `Idempotency-Key` (sometimes
//! retrying, sometimes losing the nights to someone else), paying at the
//! simulator and reading the booking back, with exponentially distributed
//! think time. Prints latency per route and the invariants; exits 1 if one
//! fails.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing, clippy::print_stdout, clippy::print_stderr)]

use crate::scratch::ScratchDatabase;
use booking_backend::{App, DatabaseSettings, Settings, telemetry};
use gateway_sim::{SimConfig, SimHandle};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::{Date, OffsetDateTime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?}: {error}"))
}

/// Load options.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Simulated users; each makes one request at a time.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Mean think time between a user's steps (exponentially distributed);
    /// `0s` runs every user flat out, to find the highest throughput.
    #[arg(long, default_value = "1s", value_parser = duration)]
    think: Duration,
    /// How long the users keep going.
    #[arg(long, default_value = "30s", value_parser = duration)]
    duration: Duration,
    /// Load a running backend instead of starting one.
    #[arg(long)]
    base_url: Option<String>,
    /// The gateway-sim the running backend pays through (`--base-url`);
    /// without it, users do not pay.
    #[arg(long, requires = "base_url")]
    sim_url: Option<String>,
    /// PostgreSQL for the backend this starts (in a scratch database of its
    /// own); without it, the backend keeps everything in memory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Connections the started backend's pool may open.
    #[arg(long, default_value_t = 20)]
    pool: u32,
    /// Listings to book (default: one per four users, at least ten).
    #[arg(long)]
    listings: Option<usize>,
    /// Seed of the users' choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// One route's answers.
#[derive(Debug, Default)]
struct Route {
    /// Microseconds per answered request.
    latencies: Vec<u64>,
    /// 5xx answers.
    server_errors: u64,
    /// Requests that got no answer.
    unanswered: u64,
}

/// What the users saw.
#[derive(Debug, Default)]
struct Observed {
    routes: HashMap<&'static str, Route>,
    created: Vec<Value>,
    paid: Vec<String>,
    conflicts: u64,
    replays: u64,
    replay_mismatches: u64,
}

struct Run {
    http: reqwest::Client,
    base: String,
    sim: Option<String>,
    listings: Vec<String>,
    think: Duration,
    today: Date,
    observed: Mutex<Observed>,
}

/// Runs the load.
pub(crate) async fn run(args: LoadArgs) -> ExitCode {
    if args.users == 0 || args.duration.is_zero() {
        eprintln!("booking-backend load: --users and --duration must be above zero");
        return ExitCode::from(2);
    }
    match drive(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("booking-backend load: {error}");
            ExitCode::from(1)
        }
    }
}

/// The backend and simulator this run started, stopped at the end.
struct Started {
    sim: SimHandle,
    shutdown: CancellationToken,
    scratch: Option<ScratchDatabase>,
}

async fn start(args: &LoadArgs) -> Result<(String, String, Started), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("cannot listen: {error}"))?;
    let addr = listener.local_addr().map_err(|error| error.to_string())?;
    let base = format!("http://{addr}");
    let sim = SimConfig {
        seed: args.seed,
        paystack_webhook_url: Some(format!("{base}/v1/webhooks/paystack")),
        flutterwave_webhook_url: Some(format!("{base}/v1/webhooks/flutterwave")),
        ..SimConfig::default()
    }
    .start()
    .await
    .map_err(|error| format!("gateway-sim: {error}"))?;
    let scratch = match &args.database_url {
        Some(url) => Some(ScratchDatabase::create(url).await?),
        None => None,
    };
    let mut settings = Settings::for_simulator(&sim);
    settings.bind = addr;
    settings.limits.max_connections = args.users * 2 + 64;
    if let Some(scratch) = &scratch {
        settings.database = DatabaseSettings::postgres(scratch.url.clone());
        settings.database.max_connections = args.pool;
    }
    let log = std::env::temp_dir().join(format!("booking-load-{}.log", std::process::id()));
    let file =
        std::fs::File::create(&log).map_err(|error| format!("{}: {error}", log.display()))?;
    telemetry::install_logs(file, tracing::Level::WARN);
    println!("backend warnings and errors: {}", log.display());
    let app = App::start(settings)
        .await
        .map_err(|error| error.to_string())?;
    let shutdown = CancellationToken::new();
    tokio::spawn(booking_backend::serve(app, listener, shutdown.clone()));
    let sim_url = sim.base_url();
    Ok((
        base,
        sim_url,
        Started {
            sim,
            shutdown,
            scratch,
        },
    ))
}

async fn drive(args: LoadArgs) -> Result<bool, String> {
    let (base, sim, started) = match &args.base_url {
        Some(base) => (
            base.trim_end_matches('/').to_owned(),
            args.sim_url.clone(),
            None,
        ),
        None => {
            let (base, sim, started) = start(&args).await?;
            (base, Some(sim), Some(started))
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.users)
        // Below the server's keep-alive idle limit (5 s by default), so a
        // user who thought longer never reuses a connection the server is
        // closing.
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .map_err(|error| error.to_string())?;
    let count = args.listings.unwrap_or(args.users / 4).max(10);
    let listings = create_listings(&http, &base, count).await?;
    let run = Arc::new(Run {
        http,
        base,
        sim,
        listings,
        think: args.think,
        today: OffsetDateTime::now_utc().date(),
        observed: Mutex::new(Observed::default()),
    });
    println!(
        "{} users, think {:?}, {:?}, {} listings, against {}",
        args.users,
        args.think,
        args.duration,
        run.listings.len(),
        run.base
    );
    let began = Instant::now();
    let deadline = began + args.duration;
    let users: Vec<_> = (0..args.users)
        .map(|user| {
            let run = Arc::clone(&run);
            let rng = StdRng::seed_from_u64(args.seed.wrapping_add(user as u64));
            tokio::spawn(async move { run.user(user, rng, deadline).await })
        })
        .collect();
    for user in users {
        let _ = user.await;
    }
    let elapsed = began.elapsed();
    let holds = report(&run, elapsed).await;
    if let Some(started) = started {
        started.shutdown.cancel();
        started.sim.shutdown().await;
        if let Some(scratch) = started.scratch {
            scratch.drop_database().await;
        }
    }
    Ok(holds)
}

async fn create_listings(
    http: &reqwest::Client,
    base: &str,
    count: usize,
) -> Result<Vec<String>, String> {
    let mut listings = Vec::with_capacity(count);
    for n in 0..count {
        let body = json!({"title": format!("Load flat {n}"), "nightly_rate_minor": 2_500_000,
                          "currency": "NGN",
                          "host": {"name": "Load Host", "email": "host@example.com", "phone": "+2348031234567",
                                   "bank_code": "058", "account_number": "0123456789"}});
        let response = http
            .post(format!("{base}/v1/listings"))
            .json(&body)
            .send()
            .await
            .map_err(|error| format!("creating listings: {error}"))?;
        let created: Value = response.json().await.map_err(|error| error.to_string())?;
        let id = created["id"].as_str().ok_or("creating listings: no id")?;
        listings.push(id.to_owned());
    }
    Ok(listings)
}

impl Run {
    /// One simulated user, until `deadline`.
    async fn user(&self, user: usize, mut rng: StdRng, deadline: Instant) {
        for attempt in 0.. {
            if !self.pause(&mut rng, deadline).await {
                return;
            }
            let listing = &self.listings[rng.random_range(0..self.listings.len())];
            self.send(
                "GET /v1/listings/{id}",
                self.http
                    .get(format!("{}/v1/listings/{listing}", self.base)),
            )
            .await;
            if !self.pause(&mut rng, deadline).await {
                return;
            }
            let from = self.today + time::Duration::days(rng.random_range(1..=90));
            let to = from + time::Duration::days(rng.random_range(1..=3));
            let body = json!({"listing_id": listing,
                              "guest": {"name": format!("User {user}"), "email": format!("user{user}@load.example"),
                                        "phone": "+2348059876543"},
                              "check_in": from.to_string(), "check_out": to.to_string()});
            let key = format!("load-{user}-{attempt}");
            let book = || {
                self.http
                    .post(format!("{}/v1/bookings", self.base))
                    .header("idempotency-key", &key)
                    .json(&body)
            };
            let Some((status, booking)) = self.send("POST /v1/bookings", book()).await else {
                continue;
            };
            if status == 409 && booking["code"] == "dates_unavailable" {
                self.observed().conflicts += 1;
                continue;
            }
            if status != 201 {
                continue;
            }
            if rng.random_bool(0.1) {
                // The client lost the answer and tries again with the key.
                if let Some((_, replayed)) = self.send("POST /v1/bookings (retry)", book()).await {
                    let mut observed = self.observed();
                    observed.replays += 1;
                    if replayed["id"] != booking["id"] {
                        observed.replay_mismatches += 1;
                    }
                }
            }
            self.observed().created.push(booking.clone());
            if !self.pause(&mut rng, deadline).await {
                return;
            }
            let id = booking["id"].as_str().unwrap_or_default().to_owned();
            if let Some(sim) = &self.sim {
                let reference = booking["payment"]["reference"].as_str().unwrap_or_default();
                let pay = self
                    .http
                    .post(format!("{sim}/_sim/charges/{reference}/complete"))
                    .json(&json!({"outcome": "success"}));
                if let Some((200, _)) = self.send("pay at the simulator", pay).await {
                    self.observed().paid.push(id.clone());
                }
                if !self.pause(&mut rng, deadline).await {
                    return;
                }
            }
            self.send(
                "GET /v1/bookings/{id}",
                self.http.get(format!("{}/v1/bookings/{id}", self.base)),
            )
            .await;
        }
    }

    /// Think time, exponentially distributed around the mean; `false`
    /// once the run is over.
    async fn pause(&self, rng: &mut StdRng, deadline: Instant) -> bool {
        if !self.think.is_zero() {
            let uniform: f64 = rng.random_range(0.0..1.0);
            let wait = -self.think.as_secs_f64() * (1.0 - uniform).ln();
            let until = Instant::now() + Duration::from_secs_f64(wait.min(60.0));
            tokio::time::sleep_until(until.min(deadline)).await;
        }
        Instant::now() < deadline
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `request`, timing it under `route`; the status and JSON body,
    /// or `None` when no answer came.
    async fn send(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, Value)> {
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Some((status, body))
            }
            Err(_) => None,
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut observed = self.observed();
        let entry = observed.routes.entry(route).or_default();
        match &answer {
            Some((status, _)) => {
                entry.latencies.push(micros);
                if *status >= 500 {
                    entry.server_errors += 1;
                }
            }
            None => entry.unanswered += 1,
        }
        answer
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// Prints the table and the invariants; answers whether they all hold.
async fn report(run: &Run, elapsed: Duration) -> bool {
    let settled = settle(run).await;
    let observed = run.observed();
    println!();
    println!(
        "{:<28} {:>9} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "route", "requests", "5xx", "no answer", "p50 ms", "p95 ms", "p99 ms"
    );
    let mut total = 0;
    let mut failed = 0;
    let mut routes: Vec<_> = observed.routes.iter().collect();
    routes.sort_by_key(|(name, _)| *name);
    for (name, route) in routes {
        let mut sorted = route.latencies.clone();
        sorted.sort_unstable();
        let requests = sorted.len() as u64 + route.unanswered;
        total += requests;
        failed += route.server_errors + route.unanswered;
        println!(
            "{:<28} {:>9} {:>5} {:>10} {:>9.1} {:>9.1} {:>9.1}",
            name,
            requests,
            route.server_errors,
            route.unanswered,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.95),
            percentile(&sorted, 0.99)
        );
    }
    println!(
        "\nthroughput {:.0} requests/s over {:.1} s; {} bookings, {} conflicts (409), {} replays",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        observed.created.len(),
        observed.conflicts,
        observed.replays
    );
    let invariants = [
        (
            "double bookings",
            format!("{}", settled.overlaps),
            settled.overlaps == 0,
        ),
        (
            "paid bookings confirmed",
            format!("{} of {}", settled.confirmed, observed.paid.len()),
            settled.confirmed == observed.paid.len(),
        ),
        (
            "replays answer the same booking",
            format!(
                "{} of {} differ",
                observed.replay_mismatches, observed.replays
            ),
            observed.replay_mismatches == 0,
        ),
        (
            "requests failed (5xx or no answer)",
            format!("{failed} of {total}"),
            failed == 0,
        ),
    ];
    println!("\n{:<36} {:<24} holds", "invariant", "measured");
    let mut all = true;
    for (name, measured, holds) in invariants {
        println!(
            "{name:<36} {measured:<24} {}",
            if holds { "yes" } else { "NO" }
        );
        all &= holds;
    }
    all
}

struct Settled {
    overlaps: usize,
    confirmed: usize,
}

/// Waits (up to 20 s) for the paid bookings' webhooks, then reads every
/// booking this run made and counts live bookings sharing a night.
async fn settle(run: &Run) -> Settled {
    let (created, paid): (Vec<String>, Vec<String>) = {
        let observed = run.observed();
        let created = observed
            .created
            .iter()
            .filter_map(|booking| booking["id"].as_str().map(str::to_owned))
            .collect();
        (created, observed.paid.clone())
    };
    let read = |id: String| async move {
        let url = format!("{}/v1/bookings/{id}", run.base);
        let response = run.http.get(url).send().await.ok()?;
        response.json::<Value>().await.ok()
    };
    let give_up = Instant::now() + Duration::from_secs(20);
    let confirmed = loop {
        let mut confirmed = 0;
        for id in &paid {
            if read(id.clone())
                .await
                .is_some_and(|booking| booking["status"] == "confirmed")
            {
                confirmed += 1;
            }
        }
        if confirmed == paid.len() || Instant::now() >= give_up {
            break confirmed;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut live: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for id in created {
        let Some(booking) = read(id).await else {
            continue;
        };
        if matches!(
            booking["status"].as_str(),
            Some("pending_payment" | "confirmed" | "completed")
        ) {
            let nights = (
                booking["check_in"].as_str().unwrap_or_default().to_owned(),
                booking["check_out"].as_str().unwrap_or_default().to_owned(),
            );
            let listing = booking["listing_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            live.entry(listing).or_default().push(nights);
        }
    }
    let mut overlaps = 0;
    for stays in live.values_mut() {
        stays.sort();
        overlaps += stays
            .windows(2)
            .filter(|pair| pair[1].0 < pair[0].1)
            .count();
    }
    Settled {
        overlaps,
        confirmed,
    }
}
