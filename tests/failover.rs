//! A primary failover under traffic: a primary and a streaming standby
//! built with `pg_basebackup` in a temporary directory on free local ports,
//! lock acquisitions, fenced writes and idempotent requests running against
//! the primary through a TCP proxy (the virtual IP), the primary killed
//! (`pg_ctl stop -m immediate`) after its link to the standby went silent,
//! the standby promoted, and the proxy switched to it.
//!
//! With synchronous replication nothing acknowledged is lost, tokens after
//! the failover are larger than every token before it, no stale fenced
//! write is accepted and every request's effect happens exactly once. With
//! asynchronous replication the same run loses the acquisitions the
//! standby never received, and hands their tokens out again: what the
//! crates' READMEs warn about.
//!
//! Needs the PostgreSQL server binaries (`pg_config --bindir`) and, when run
//! as root, a `postgres` user to run them as (`runuser`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use payguard_core::SqlTimeouts;
use payguard_idempotency::{IdempotencyClaim, IdempotencyLayer, PgIdempotencyStore};
use payguard_lock::{AcquireAnswer, LockOptions, LockStrategy, Owner, PgLeaseLock, ProcessId};
use payguard_test_support::TcpProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// The PostgreSQL server programs.
fn bindir() -> PathBuf {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config on PATH (the PostgreSQL server packages)");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// `program args`, as the `postgres` user when we are root (the server
/// refuses to run as root).
fn postgres_command(program: &str, args: &[&str]) -> Command {
    let program = bindir().join(program);
    if running_as_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run(program: &str, args: &[&str]) {
    let output = postgres_command(program, args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary and a standby that replicates through a proxy (so the test
/// can silence their link), both stopped and removed when dropped.
struct Pair {
    dir: PathBuf,
    primary: (PathBuf, u16),
    standby: (PathBuf, u16),
    link: TcpProxy,
}

impl Pair {
    async fn start(synchronous: bool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "payguard-failover-{}-{}",
            std::process::id(),
            if synchronous { "sync" } else { "async" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if running_as_root() {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let primary = (dir.join("primary"), free_port());
        let standby = (dir.join("standby"), free_port());
        let link = TcpProxy::start(format!("127.0.0.1:{}", primary.1)).await;
        let path = |path: &Path| path.to_str().unwrap().to_owned();

        run(
            "initdb",
            &[
                "-D",
                &path(&primary.0),
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
            ],
        );
        let settings = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n\
             shared_buffers = 16MB\nmax_connections = 60\n\
             synchronous_standby_names = '{}'\n",
            primary.1,
            path(&dir),
            if synchronous { "standby1" } else { "" }
        );
        append(&primary.0.join("postgresql.conf"), &settings);
        start_node(&primary.0, &dir);
        run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.1.to_string(),
                "-U",
                "postgres",
                "-D",
                &path(&standby.0),
                "-X",
                "stream",
                "-R",
                "--no-sync",
            ],
        );
        append(
            &standby.0.join("postgresql.auto.conf"),
            // Promoted, it has no standby of its own: it must not wait
            // for one (a real failover attaches a new standby).
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name=standby1'\n\
                 port = {}\nsynchronous_standby_names = ''\n",
                link.addr().port(),
                standby.1
            ),
        );
        start_node(&standby.0, &dir);
        let pair = Self {
            dir,
            primary,
            standby,
            link,
        };
        let mut admin = pair.connect(pair.primary.1).await;
        let wanted = if synchronous { "sync" } else { "async" };
        for _ in 0..200 {
            let state: Option<String> = sqlx::query_scalar(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'",
            )
            .fetch_optional(&mut admin)
            .await
            .unwrap();
            if state.as_deref() == Some(wanted) {
                return pair;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the standby never streamed as {wanted}");
    }

    fn url(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    async fn connect(&self, port: u16) -> PgConnection {
        PgConnection::connect(&Self::url(port)).await.unwrap()
    }

    fn kill_primary(&self) {
        run(
            "pg_ctl",
            &[
                "stop",
                "-D",
                self.primary.0.to_str().unwrap(),
                "-m",
                "immediate",
            ],
        );
    }

    fn promote_standby(&self) {
        run(
            "pg_ctl",
            &["promote", "-w", "-D", self.standby.0.to_str().unwrap()],
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for data in [&self.primary.0, &self.standby.0] {
            let _ = postgres_command(
                "pg_ctl",
                &["stop", "-D", data.to_str().unwrap(), "-m", "immediate"],
            )
            .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut handle = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    handle.write_all(text.as_bytes()).unwrap();
}

fn start_node(data: &Path, dir: &Path) {
    let log = dir.join(format!(
        "{}.log",
        data.file_name().unwrap().to_str().unwrap()
    ));
    run(
        "pg_ctl",
        &[
            "start",
            "-w",
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
        ],
    );
}

/// What the clients were told, in order.
#[derive(Default)]
struct Acknowledged {
    /// Acquisitions, with whether they happened after the failover.
    tokens: Vec<(i64, bool)>,
    /// Fenced writes that committed.
    writes: Vec<i64>,
    /// Requests answered 201.
    keys: Vec<String>,
    /// Every status the idempotent route answered.
    statuses: Vec<u16>,
    /// The lock's token on the standby when it was promoted, before any
    /// client reached it.
    token_at_promotion: i64,
    /// An acquisition of a fresh lock made while the standby heard
    /// nothing, if it was acknowledged, and whether the promoted standby
    /// has it.
    probe: Option<(i64, bool)>,
}

fn bounds() -> SqlTimeouts {
    SqlTimeouts::default()
        .lock_timeout(Duration::from_millis(300))
        .statement_timeout(Duration::from_millis(1500))
}

/// Books once per request key, in the transaction that stores the answer.
async fn book(
    State((pool, store)): State<(PgPool, PgIdempotencyStore)>,
    Extension(claim): Extension<IdempotencyClaim>,
    body: String,
) -> Response {
    let attempt = async {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO effects (key) VALUES ($1)")
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        let response = (StatusCode::CREATED, body.clone()).into_response();
        let response = claim
            .complete_in(&store, &mut tx, response)
            .await
            .map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(response)
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(response)) => response,
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn through(proxy: &TcpProxy, port: u16) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&proxy.url_for(&Pair::url(port)))
        .await
        .unwrap()
}

/// Runs the traffic, kills the primary after silencing its standby's
/// link, promotes the standby and moves the proxy; answers what the
/// clients were told.
async fn fail_over(pair: &Pair) -> Acknowledged {
    let mut admin = pair.connect(pair.primary.1).await;
    for statement in [
        "CREATE TABLE resource (id integer PRIMARY KEY, last_token bigint NOT NULL)",
        "INSERT INTO resource VALUES (1, 0)",
        "CREATE TABLE writes (id bigserial PRIMARY KEY, token bigint NOT NULL)",
        "CREATE TABLE effects (id bigserial PRIMARY KEY, key text NOT NULL)",
    ] {
        sqlx::query(statement).execute(&mut admin).await.unwrap();
    }
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", pair.primary.1)).await;
    let pool = through(&proxy, pair.primary.1).await;
    let lease = PgLeaseLock::new(pool.clone()).timeouts(bounds());
    lease.migrate().await.unwrap();
    let store = PgIdempotencyStore::builder(pool.clone())
        .timeouts(bounds())
        .build()
        .unwrap();
    store.migrate().await.unwrap();

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let failed_over = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let locking = tokio::spawn({
        let (acknowledged, failed_over, stop) = (
            Arc::clone(&acknowledged),
            Arc::clone(&failed_over),
            Arc::clone(&stop),
        );
        let pool = pool.clone();
        async move {
            // A release the failover swallowed leaves the lease to run
            // out: a short one, so the run goes on after it.
            let terms = LockOptions::builder(Duration::from_millis(1500))
                .build()
                .unwrap()
                .terms();
            while !stop.load(Ordering::SeqCst) {
                let owner = Owner::new(ProcessId::current());
                let Ok(AcquireAnswer::Acquired(grant)) =
                    lease.try_acquire("job", &owner, &terms).await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let token = grant.token.as_i64();
                acknowledged
                    .lock()
                    .unwrap()
                    .tokens
                    .push((token, failed_over.load(Ordering::SeqCst)));
                if fenced_write(&pool, token).await.is_ok() {
                    acknowledged.lock().unwrap().writes.push(token);
                }
                let _ = lease.release(&grant, &terms).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let requesting = tokio::spawn({
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        let app = Router::new()
            .route("/v1/bookings", post(book))
            .layer(
                IdempotencyLayer::builder(Arc::new(store.clone()))
                    .lease(Duration::from_secs(2))
                    .build()
                    .unwrap(),
            )
            .with_state((pool.clone(), store));
        async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("k{n}");
                let request = Request::post("/v1/bookings")
                    .header("idempotency-key", &key)
                    .body(Body::from(key.clone()))
                    .unwrap();
                let status = app.clone().oneshot(request).await.unwrap().status();
                let created = status == StatusCode::CREATED;
                {
                    let mut acknowledged = acknowledged.lock().unwrap();
                    acknowledged.statuses.push(status.as_u16());
                    if created {
                        acknowledged.keys.push(key);
                    }
                }
                if created {
                    n += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The standby stops hearing from the primary; traffic goes on, for
    // longer than the statement bound: commits wait for the standby.
    // Its own connection: the traffic's are all waiting by now.
    let probe_pool = through(&proxy, pair.primary.1).await;
    pair.link.blackhole();
    let probe = tokio::spawn({
        let lease = PgLeaseLock::new(probe_pool).timeouts(bounds());
        async move {
            let terms = LockOptions::builder(Duration::from_secs(60))
                .build()
                .unwrap()
                .terms();
            match lease
                .try_acquire("probe", &Owner::new(ProcessId::current()), &terms)
                .await
            {
                Ok(AcquireAnswer::Acquired(grant)) => Some(grant.token.as_i64()),
                _ => None,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tokio::task::block_in_place(|| {
        pair.kill_primary();
        pair.promote_standby();
    });
    let mut promoted = pair.connect(pair.standby.1).await;
    let token_at_promotion: i64 =
        sqlx::query_scalar("SELECT token FROM payguard_locks WHERE name = 'job'")
            .fetch_one(&mut promoted)
            .await
            .unwrap();
    let probe = match probe.await.unwrap() {
        Some(token) => {
            let kept: Option<i64> =
                sqlx::query_scalar("SELECT token FROM payguard_locks WHERE name = 'probe'")
                    .fetch_optional(&mut promoted)
                    .await
                    .unwrap();
            Some((token, kept == Some(token)))
        }
        None => None,
    };
    proxy.switch_upstream(format!("127.0.0.1:{}", pair.standby.1));
    failed_over.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::SeqCst);
    locking.await.unwrap();
    requesting.await.unwrap();
    let mut acknowledged = Arc::try_unwrap(acknowledged)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    acknowledged.token_at_promotion = token_at_promotion;
    acknowledged.probe = probe;
    acknowledged
}

/// A write fenced with the lock's token in its own transaction.
async fn fenced_write(pool: &PgPool, token: i64) -> Result<(), sqlx::Error> {
    let attempt = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT payguard_lock_fence('job', $1)")
            .bind(token)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE resource SET last_token = $1 WHERE id = 1 AND last_token < $1")
            .bind(token)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO writes (token) VALUES ($1)")
            .bind(token)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_synchronous_replication_a_failover_loses_nothing_acknowledged() {
    let pair = Pair::start(true).await;
    let seen = fail_over(&pair).await;
    let mut promoted = pair.connect(pair.standby.1).await;

    let before: Vec<i64> = seen.tokens.iter().filter(|t| !t.1).map(|t| t.0).collect();
    let after: Vec<i64> = seen.tokens.iter().filter(|t| t.1).map(|t| t.0).collect();
    assert!(
        !before.is_empty() && !after.is_empty(),
        "acquisitions before ({}) and after ({}) the failover",
        before.len(),
        after.len()
    );
    let last_before = *before.iter().max().unwrap();
    // An acquisition whose commit waited for the silent standby is never
    // acknowledged without it: the client gives up on it.
    assert!(
        seen.probe.is_none_or(|(_, kept)| kept),
        "acknowledged acquisition {:?} missing after the failover",
        seen.probe
    );
    assert!(
        last_before <= seen.token_at_promotion,
        "acknowledged acquisition {last_before} lost: the promoted standby had {}",
        seen.token_at_promotion
    );
    assert!(
        after.iter().all(|token| *token > last_before),
        "every token after the failover is larger than {last_before}: {after:?}"
    );
    assert!(
        seen.tokens.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "acknowledged tokens only grow: {:?}",
        seen.tokens
    );
    let current: i64 = sqlx::query_scalar("SELECT token FROM payguard_locks WHERE name = 'job'")
        .fetch_one(&mut promoted)
        .await
        .unwrap();
    assert!(current >= *after.iter().max().unwrap());

    // Every acknowledged fenced write survived, in token order, and a
    // holder from before the failover is refused.
    let written: Vec<i64> = sqlx::query_scalar("SELECT token FROM writes ORDER BY id")
        .fetch_all(&mut promoted)
        .await
        .unwrap();
    assert!(
        written.windows(2).all(|pair| pair[0] < pair[1]),
        "{written:?}"
    );
    for token in &seen.writes {
        assert!(written.contains(token), "acknowledged write {token} lost");
    }
    let mut tx = promoted.begin().await.unwrap();
    let stale = sqlx::query("SELECT payguard_lock_fence('job', $1)")
        .bind(last_before)
        .execute(&mut *tx)
        .await;
    assert!(
        stale.is_err(),
        "a holder from before the failover is refused"
    );
    drop(tx);

    // Every acknowledged request's effect exists once; none happened twice.
    let effects: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, count(*) FROM effects GROUP BY key")
            .fetch_all(&mut promoted)
            .await
            .unwrap();
    assert!(
        effects.iter().all(|(_, count)| *count == 1),
        "an effect happened twice: {effects:?}"
    );
    for key in &seen.keys {
        assert!(
            effects.iter().any(|(effect, _)| effect == key),
            "acknowledged request {key} lost"
        );
    }
    assert!(
        seen.statuses
            .iter()
            .all(|status| matches!(status, 201 | 409 | 503)),
        "only 201, or 409/503 during the gap: {:?}",
        seen.statuses
    );
    assert!(
        seen.statuses.iter().any(|status| *status != 201),
        "the clients saw the gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_asynchronous_replication_a_failover_loses_acknowledged_tokens() {
    let pair = Pair::start(false).await;
    let seen = fail_over(&pair).await;
    let last_before = seen
        .tokens
        .iter()
        .filter(|t| !t.1)
        .map(|t| t.0)
        .max()
        .unwrap();
    assert!(
        seen.token_at_promotion < last_before,
        "asynchronous replication loses the acquisitions the standby never received: {last_before} was acknowledged, the promoted standby had {}",
        seen.token_at_promotion
    );
}
