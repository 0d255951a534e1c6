//! Idempotency store throughput: the memory store, and the PostgreSQL store
//! against `pgbench` running the same two statements on the same server in
//! the same run.
//!
//! `cargo bench -p payguard-benches --bench idempotency`
//!
//! Needs PostgreSQL (`DATABASE_URL`, default the local server) and
//! `pgbench` on `PATH`. Rows (time per request; lower is better):
//! - `memory/claim_complete/{1,2}_threads`: a key claimed and completed
//!   (65 536 keys per thread, cycling, records expiring at once).
//! - `memory/replay`: a claim answered from a stored response.
//! - `postgres/claim_complete/c{1,8}` and `pgbench/claim_complete/c{1,8}`:
//!   a first execution (claim, then complete) with 1 and 8 concurrent
//!   clients; the ratio pgbench time / payguard time is the figure of merit.
//! - `postgres/replay/c1` and `pgbench/replay/c1`: a replay (one claim).
//! - `postgres/replay_held_connection/c1`: the same on one connection held
//!   throughout (`claim_in`), which shows what sqlx's pool acquire and
//!   release add to a single-statement request.
//! - `postgres_ping_on_acquire/claim_complete/c1`: the same through a pool
//!   with sqlx's default `test_before_acquire(true)`.
//!
//! Before the rows it prints the statements each request commits, counted
//! by the server (`pg_stat_database.xact_commit`).

#![allow(clippy::disallowed_methods)] // benches time themselves

use criterion::{Criterion, criterion_group, criterion_main};
use payguard_idempotency::{
    Claim, ClaimRequest, Fingerprint, IdempotencyStore, Lease, MemoryStore, PgIdempotencyStore,
    ScopeKey, StoredResponse,
};
use payguard_test_support::TestDb;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::future::Future;
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// Keys each memory-bench thread cycles through. Their records expire at
/// once (retention zero), so a claim finds an expired record and starts
/// over: the map stays at a steady size, as it does with the reaper
/// running, instead of rehashing as it grows without bound.
const MEMORY_KEYS: u64 = 1 << 16;

fn cycling_request(thread: u64, i: u64) -> ClaimRequest {
    let request = request("memory");
    ClaimRequest::new(
        ScopeKey::new(
            "memory",
            &(thread * MEMORY_KEYS + i % MEMORY_KEYS).to_string(),
        ),
        request.fingerprint,
    )
    .lease(request.lease)
    .retention(Duration::ZERO)
}

fn request(scope: &str) -> ClaimRequest {
    ClaimRequest::new(
        ScopeKey::new(scope, &NEXT_KEY.fetch_add(1, Ordering::Relaxed).to_string()),
        Fingerprint::of(&[b"POST", b"/v1/bookings", b"{\"listing\":7}"]),
    )
    .lease(Duration::from_secs(30))
    .retention(Duration::from_secs(86_400))
}

fn response() -> StoredResponse {
    StoredResponse::new(
        201,
        br#"{"booking":"bk_123","status":"confirmed"}"#.to_vec(),
    )
    .header("content-type", b"application/json".to_vec())
}

/// The memory store's futures are ready at once: poll once, no runtime.
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the memory store never waits"),
    }
}

fn claimed(claim: Claim) -> Lease {
    match claim {
        Claim::Claimed(lease) => lease,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory");
    let store = Arc::new(MemoryStore::new());
    let stored = response();
    group.bench_function("claim_complete/1_thread", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let lease = claimed(now(store.claim(cycling_request(0, i))).unwrap());
            now(store.complete(&lease, &stored)).unwrap();
        });
    });
    group.bench_function("claim_complete/2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for thread in 1..=2 {
                    let (store, stored) = (&store, &stored);
                    scope.spawn(move || {
                        for i in 0..iters.div_ceil(2) {
                            let lease =
                                claimed(now(store.claim(cycling_request(thread, i))).unwrap());
                            now(store.complete(&lease, stored)).unwrap();
                        }
                    });
                }
            });
            start
                .elapsed()
                .mul_f64(iters as f64 / (iters.div_ceil(2) * 2) as f64)
        });
    });
    let replayed = request("memory-replay");
    now(store.complete(&claimed(now(store.claim(replayed)).unwrap()), &stored)).unwrap();
    group.bench_function("replay", |b| {
        b.iter(|| black_box(now(store.claim(black_box(replayed))).unwrap()));
    });
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn pool(url: &str, connections: u32, ping_on_acquire: bool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .test_before_acquire(ping_on_acquire)
        .connect(url)
        .await
        .unwrap()
}

/// Runs `iters` first executions (or replays of `replayed`) over `clients`
/// tasks on the runtime's workers, as a server's handlers would; the wall
/// time.
async fn requests(
    store: &PgIdempotencyStore,
    iters: u64,
    clients: u64,
    replayed: Option<ClaimRequest>,
) -> Duration {
    let per_client = iters.div_ceil(clients);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stored = response();
                for _ in 0..per_client {
                    match replayed {
                        Some(replayed) => {
                            black_box(store.claim(replayed).await.unwrap());
                        }
                        None => {
                            let lease = claimed(store.claim(request("pg")).await.unwrap());
                            store.complete(&lease, &stored).await.unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_client * clients) as f64)
}

/// The same statements as a pgbench script, each in the same bounded
/// transaction the store opens (`BEGIN; SET LOCAL lock_timeout ...;
/// SET LOCAL statement_timeout ...` in one round trip, the statement,
/// `COMMIT`): the claim's result row is kept with `\gset` and its owner
/// token completes the claim.
fn pgbench_script(replay: bool) -> String {
    let begin = payguard_core::SqlTimeouts::default()
        .begin_sql()
        .unwrap_or_default()
        .replace("; ", " \\; ");
    let bounded = |statement: &str| format!("{begin};\n{statement}\nCOMMIT;\n");
    let key = if replay {
        "sha256('pgbench-replay'::bytea)".to_owned()
    } else {
        "sha256(('pgbench-' || :k)::bytea)".to_owned()
    };
    let fingerprint = "sha256('fingerprint'::bytea)";
    let claim = include_str!("../crates/payguard-idempotency/sql/claim.sql")
        .replace("$1", &key)
        .replace("$2", fingerprint)
        .replace("$3", "1")
        .replace("$4", "30000")
        .replace("$5", "86400000");
    let claim = claim.trim().replace('\n', " ");
    let mut script = String::from("\\set k random(1, 4000000000000000000)\n");
    script.push_str(&bounded(&format!("{claim} \\gset")));
    if !replay {
        let complete = include_str!("../crates/payguard-idempotency/sql/complete.sql")
            .replace("$1", &key)
            .replace("$2", ":owner_token")
            .replace("$3", "201")
            .replace(
                "$4",
                "'\\x000c636f6e74656e742d74797065000000106170706c69636174696f6e2f6a736f6e'::bytea",
            )
            .replace(
                "$5",
                "convert_to('{\"booking\":\"bk_123\",\"status\":\"confirmed\"}', 'UTF8')",
            );
        script.push_str(&bounded(&format!("{};", complete.replace('\n', " "))));
    }
    script
}

/// Runs pgbench for about `iters` transactions; the time they take at the
/// rate pgbench reports (connection set-up excluded).
fn pgbench(url: &str, script: &std::path::Path, iters: u64, clients: u64) -> Duration {
    let per_client = iters.div_ceil(clients).max(1);
    let output = Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-t", &per_client.to_string(), "-f"])
        .arg(script)
        .arg(url)
        .output()
        .expect("pgbench on PATH (postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tps: f64 = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench output: {stdout}"));
    Duration::from_secs_f64(iters as f64 / tps)
}

async fn commits(admin: &PgPool, database: &str) -> i64 {
    sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(database)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Statements committed per request, counted by the server: run `n`
/// requests on a fresh one-connection pool, close it (a backend flushes its
/// statistics as it exits), then read the counter.
async fn statements_per_request(db: &TestDb, replay: bool) -> f64 {
    const N: i64 = 2000;
    let admin = pool(db.url(), 1, false).await;
    let warm = PgIdempotencyStore::new(pool(db.url(), 1, false).await);
    let replayed = request("pg-count-replay");
    warm.complete(&claimed(warm.claim(replayed).await.unwrap()), &response())
        .await
        .unwrap();
    warm.pool().close().await;
    let store = PgIdempotencyStore::new(pool(db.url(), 1, false).await);
    // Prepare both statements before counting.
    store
        .complete(
            &claimed(store.claim(request("pg-count")).await.unwrap()),
            &response(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = commits(&admin, db.name()).await;
    for _ in 0..N {
        if replay {
            black_box(store.claim(replayed).await.unwrap());
        } else {
            let lease = claimed(store.claim(request("pg-count")).await.unwrap());
            store.complete(&lease, &response()).await.unwrap();
        }
    }
    store.pool().close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = commits(&admin, db.name()).await;
    admin.close().await;
    (after - before) as f64 / N as f64
}

fn postgres(c: &mut Criterion) {
    let runtime = runtime();
    let db = runtime.block_on(TestDb::with_max_connections(2));
    let store = PgIdempotencyStore::new(db.pool().clone());
    runtime.block_on(store.migrate()).unwrap();
    let first = runtime.block_on(statements_per_request(&db, false));
    let replay = runtime.block_on(statements_per_request(&db, true));
    eprintln!(
        "statements committed per request (server-counted): first execution {first:.2}, replay {replay:.2}"
    );

    let scripts = tempdir_scripts();
    let mut group = c.benchmark_group("postgres");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for clients in [1u64, 8] {
        let store =
            PgIdempotencyStore::new(runtime.block_on(pool(db.url(), clients as u32, false)));
        group.bench_function(format!("claim_complete/c{clients}"), |b| {
            b.iter_custom(|iters| runtime.block_on(requests(&store, iters, clients, None)));
        });
    }
    let store = PgIdempotencyStore::new(runtime.block_on(pool(db.url(), 1, false)));
    let replayed = request("pg-replay");
    runtime.block_on(async {
        store
            .complete(&claimed(store.claim(replayed).await.unwrap()), &response())
            .await
            .unwrap();
    });
    group.bench_function("replay/c1", |b| {
        b.iter_custom(|iters| runtime.block_on(requests(&store, iters, 1, Some(replayed))));
    });
    let mut connection = runtime.block_on(store.pool().acquire()).unwrap();
    group.bench_function("replay_held_connection/c1", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(store.claim_in(&mut connection, replayed).await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    // A pooled connection goes back to its pool on a runtime task.
    runtime.block_on(async move { drop(connection) });
    group.finish();

    let mut group = c.benchmark_group("pgbench");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for clients in [1u64, 8] {
        group.bench_function(format!("claim_complete/c{clients}"), |b| {
            b.iter_custom(|iters| pgbench(db.url(), &scripts.0, iters, clients));
        });
    }
    // The replayed record pgbench reads: claimed and completed once.
    pgbench(db.url(), &scripts.0.with_file_name("seed.sql"), 1, 1);
    group.bench_function("replay/c1", |b| {
        b.iter_custom(|iters| pgbench(db.url(), &scripts.1, iters, 1));
    });
    group.finish();

    let mut group = c.benchmark_group("postgres_ping_on_acquire");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let store = PgIdempotencyStore::new(runtime.block_on(pool(db.url(), 1, true)));
    group.bench_function("claim_complete/c1", |b| {
        b.iter_custom(|iters| runtime.block_on(requests(&store, iters, 1, None)));
    });
    group.finish();
}

/// Writes the pgbench scripts (first execution, replay, and the replay's
/// seed) next to each other in a temporary directory.
fn tempdir_scripts() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("payguard-idempotency-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.sql");
    let replay = dir.join("replay.sql");
    std::fs::write(&first, pgbench_script(false)).unwrap();
    std::fs::write(&replay, pgbench_script(true)).unwrap();
    std::fs::write(
        dir.join("seed.sql"),
        pgbench_script(false).replace(
            "sha256(('pgbench-' || :k)::bytea)",
            "sha256('pgbench-replay'::bytea)",
        ),
    )
    .unwrap();
    (first, replay)
}

criterion_group!(benches, memory, postgres);
criterion_main!(benches);
