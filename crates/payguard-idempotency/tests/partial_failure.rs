//! The PostgreSQL store and the layer under partial failure: one instance
//! that can still run its handler but not reach the store, a completion
//! that fails after the business write committed, a claim inside an old
//! transaction, and duplicates inside someone else's open transaction.

#![allow(clippy::disallowed_methods)] // measures elapsed time on tokio's clock directly
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Extension, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use payguard_core::SqlTimeouts;
use payguard_idempotency::{
    Claim, ClaimRequest, Fingerprint, IdempotencyClaim, IdempotencyLayer, PgIdempotencyStore,
    ScopeKey,
};
use payguard_test_support::{TcpProxy, TestDb};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, timeout};
use tower::ServiceExt;

const HANG: Duration = Duration::from_secs(15);

async fn store(pool: PgPool) -> PgIdempotencyStore {
    let store = PgIdempotencyStore::builder(pool)
        .timeouts(
            SqlTimeouts::default()
                .lock_timeout(Duration::from_millis(300))
                .statement_timeout(Duration::from_millis(800)),
        )
        .build()
        .unwrap();
    store.migrate().await.unwrap();
    store
}

async fn pool_through(proxy: &TcpProxy, db: &TestDb) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&proxy.url_for(db.url()))
        .await
        .unwrap()
}

fn post_booking(key: &str) -> Request<Body> {
    Request::post("/v1/bookings")
        .header("idempotency-key", key)
        .body(Body::from("listing 7, 2026-12-01..2026-12-03"))
        .unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, bool, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        replayed,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn claim_request(key: &str, lease: Duration) -> ClaimRequest {
    ClaimRequest::new(
        ScopeKey::new("POST /v1/bookings", key),
        Fingerprint::of(&[b"listing 7"]),
    )
    .lease(lease)
    .retention(Duration::from_secs(3600))
}

/// Executions of a slow handler: how many started, how many ran at once at
/// most, and how many finished.
#[derive(Default)]
struct Executions {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
}

async fn slow_booking(State(executions): State<Arc<Executions>>) -> (StatusCode, &'static str) {
    executions.started.fetch_add(1, Ordering::SeqCst);
    let now = executions.running.fetch_add(1, Ordering::SeqCst) + 1;
    executions.most_at_once.fetch_max(now, Ordering::SeqCst);
    // Decrements even when the layer drops this future.
    struct Leaving<'a>(&'a AtomicUsize);
    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _leaving = Leaving(&executions.running);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    executions.finished.fetch_add(1, Ordering::SeqCst);
    (StatusCode::CREATED, r#"{"booking":1}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_instance_loses_the_store_is_stopped_before_a_retry_runs_elsewhere() {
    let db = TestDb::new().await;
    let proxy = TcpProxy::start(TcpProxy::upstream_of(db.url())).await;
    let executions = Arc::new(Executions::default());
    let lease = Duration::from_secs(1);
    let instance = |store: PgIdempotencyStore| {
        Router::new()
            .route("/v1/bookings", post(slow_booking))
            .layer(
                IdempotencyLayer::builder(Arc::new(store))
                    .lease(lease)
                    .build()
                    .unwrap(),
            )
            .with_state(Arc::clone(&executions))
    };
    let cut_off = instance(store(pool_through(&proxy, &db).await).await);
    let healthy = instance(store(db.pool().clone()).await);

    let first = tokio::spawn({
        let cut_off = cut_off.clone();
        async move { send(&cut_off, post_booking("k")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(executions.started.load(Ordering::SeqCst), 1);
    proxy.blackhole();

    // The client retries on the healthy instance until it is let in.
    let started = Instant::now();
    let retried = loop {
        let answer = send(&healthy, post_booking("k")).await;
        if answer.0 != StatusCode::CONFLICT || started.elapsed() > HANG {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, _, body) = timeout(HANG, first).await.unwrap().unwrap();

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("idempotency_lease_lost"), "{body}");
    assert_eq!(retried.0, StatusCode::CREATED, "{}", retried.2);
    assert_eq!(executions.started.load(Ordering::SeqCst), 2);
    assert_eq!(
        executions.most_at_once.load(Ordering::SeqCst),
        1,
        "the cut-off handler was stopped before the takeover ran"
    );
    assert_eq!(
        executions.finished.load(Ordering::SeqCst),
        1,
        "exactly one execution finished"
    );
    proxy.restore();
}

/// Books in the database the layer cannot reach: the business write
/// commits, then the instance loses the store for a moment.
async fn book_then_lose_the_store(
    State((pool, proxy, executions)): State<(PgPool, Arc<TcpProxy>, Arc<Executions>)>,
) -> (StatusCode, String) {
    executions.started.fetch_add(1, Ordering::SeqCst);
    let id: i64 = sqlx::query_scalar("INSERT INTO bookings DEFAULT VALUES RETURNING id")
        .fetch_one(&pool)
        .await
        .unwrap();
    proxy.cut();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.restore();
    });
    (StatusCode::CREATED, format!(r#"{{"booking":{id}}}"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_fails_after_the_commit_is_retried_and_the_retry_replays() {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE bookings (id bigserial PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    let proxy = Arc::new(TcpProxy::start(TcpProxy::upstream_of(db.url())).await);
    let executions = Arc::new(Executions::default());
    let app = Router::new()
        .route("/v1/bookings", post(book_then_lose_the_store))
        .layer(
            IdempotencyLayer::builder(Arc::new(store(pool_through(&proxy, &db).await).await))
                .lease(Duration::from_secs(3))
                .build()
                .unwrap(),
        )
        .with_state((
            db.pool().clone(),
            Arc::clone(&proxy),
            Arc::clone(&executions),
        ));

    let (status, _, first) = send(&app, post_booking("k")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // Past the lease: had the completion been dropped, the key would be
    // free again and the retry would book twice.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, replayed, again) = send(&app, post_booking("k")).await;

    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(executions.started.load(Ordering::SeqCst), 1);
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(bookings, 1);
}

/// Books and stores the answer in one transaction.
async fn book_atomically(
    State((pool, store)): State<(PgPool, PgIdempotencyStore)>,
    Extension(claim): Extension<IdempotencyClaim>,
) -> Response {
    let mut tx = pool.begin().await.unwrap();
    let id: i64 = sqlx::query_scalar("INSERT INTO bookings DEFAULT VALUES RETURNING id")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let response = (StatusCode::CREATED, format!(r#"{{"booking":{id}}}"#)).into_response();
    match claim.complete_in(&store, &mut tx, response).await {
        Ok(response) => {
            tx.commit().await.unwrap();
            response
        }
        Err(error) => {
            tx.rollback().await.unwrap();
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_transactional_mode_the_write_and_the_answer_commit_together() {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE bookings (id bigserial PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    let proxy = TcpProxy::start(TcpProxy::upstream_of(db.url())).await;
    // The layer reaches the store through a proxy; the handler's
    // transaction goes to the database directly.
    let layer_store = store(pool_through(&proxy, &db).await).await;
    let handler_store = store(db.pool().clone()).await;
    let app = Router::new()
        .route("/v1/bookings", post(book_atomically))
        .layer(
            IdempotencyLayer::builder(Arc::new(layer_store))
                .lease(Duration::from_secs(2))
                .build()
                .unwrap(),
        )
        .with_state((db.pool().clone(), handler_store.clone()));

    let (status, _, first) = send(&app, post_booking("k")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // The layer can no longer reach the store: it need not, the answer
    // committed with the booking.
    proxy.cut();
    let replay = send(
        &Router::new()
            .route("/v1/bookings", post(book_atomically))
            .layer(IdempotencyLayer::new(Arc::new(handler_store.clone())))
            .with_state((db.pool().clone(), handler_store.clone())),
        post_booking("k"),
    )
    .await;
    assert_eq!((replay.0, replay.1), (StatusCode::CREATED, true));
    assert_eq!(replay.2, first);

    // A claim taken over before the handler's commit: its write rolls back.
    let lease = match payguard_idempotency::IdempotencyStore::claim(
        &handler_store,
        claim_request("late", Duration::from_millis(1)),
    )
    .await
    .unwrap()
    {
        Claim::Claimed(lease) => lease,
        other => panic!("{other:?}"),
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let heir = match payguard_idempotency::IdempotencyStore::claim(
        &handler_store,
        claim_request("late", Duration::from_secs(30)),
    )
    .await
    .unwrap()
    {
        Claim::Claimed(heir) => heir,
        other => panic!("{other:?}"),
    };
    assert!(heir.token > lease.token);
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO bookings DEFAULT VALUES")
        .execute(&mut *tx)
        .await
        .unwrap();
    let stale = handler_store
        .complete_in(
            &mut tx,
            &lease,
            &payguard_idempotency::StoredResponse::default(),
        )
        .await;
    assert!(
        matches!(stale, Err(payguard_idempotency::StoreError::LeaseLost)),
        "{stale:?}"
    );
    tx.rollback().await.unwrap();
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(bookings, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_inside_an_old_transaction_gets_its_whole_lease() {
    let db = TestDb::new().await;
    let store = store(db.pool().clone()).await;
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_sleep(2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let lease = match store
        .claim_in(&mut tx, claim_request("old-tx", Duration::from_secs(30)))
        .await
        .unwrap()
    {
        Claim::Claimed(lease) => lease,
        other => panic!("{other:?}"),
    };
    tx.commit().await.unwrap();
    assert!(
        lease.granted > Duration::from_millis(29_500),
        "granted {:?}",
        lease.granted
    );
    let left: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM lease_expires_at - clock_timestamp())::float8 FROM payguard_idempotency",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(
        left > 29.0,
        "a 30 s lease claimed in a 2 s old transaction has {left:.1} s left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_inside_another_open_transaction_are_answered_in_flight_promptly() {
    let db = TestDb::new().await;
    let store = store(db.pool().clone()).await;
    let mut first = db.pool().begin().await.unwrap();
    let held = store
        .claim_in(&mut first, claim_request("dup", Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(held, Claim::Claimed(_)), "{held:?}");

    // A duplicate in its own business transaction, and one on the pool.
    let started = Instant::now();
    let mut second = db.pool().begin().await.unwrap();
    let duplicate = timeout(
        HANG,
        store.claim_in(&mut second, claim_request("dup", Duration::from_secs(30))),
    )
    .await
    .expect("claim_in waited for the other transaction");
    assert!(
        matches!(duplicate, Ok(Claim::InFlight { .. })),
        "{duplicate:?}"
    );
    second.rollback().await.unwrap();
    let pooled = timeout(
        HANG,
        payguard_idempotency::IdempotencyStore::claim(
            &store,
            claim_request("dup", Duration::from_secs(30)),
        ),
    )
    .await
    .expect("claim waited for the other transaction");
    assert!(matches!(pooled, Ok(Claim::InFlight { .. })), "{pooled:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered within the 300 ms lock bound: {:?}",
        started.elapsed()
    );

    // Under REPEATABLE READ, a duplicate whose snapshot predates the
    // first claim's commit.
    let mut repeatable = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .execute(&mut repeatable)
        .await
        .unwrap();
    first.commit().await.unwrap();
    let serialized = store
        .claim_in(
            &mut repeatable,
            claim_request("dup", Duration::from_secs(30)),
        )
        .await;
    assert!(
        matches!(serialized, Ok(Claim::InFlight { .. })),
        "{serialized:?}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut repeatable)
        .await
        .unwrap();

    // The caller's own settings survive a claim_in.
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '7s'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let claimed = store
        .claim_in(&mut tx, claim_request("settings", Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(claimed, Claim::Claimed(_)));
    let setting: String = sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(setting, "7s");
    tx.commit().await.unwrap();
}
