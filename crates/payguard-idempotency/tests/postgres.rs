//! The PostgreSQL backend under races, crashes, outages and transactions,
//! against a real server (`DATABASE_URL`, default the local one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use payguard_idempotency::{
    Claim, ClaimRequest, Fingerprint, IdempotencyLayer, IdempotencyStore, PgIdempotencyStore,
    Reaper, ScopeKey, StoreError, StoredResponse,
};
use payguard_test_support::TestDb;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

async fn store(db: &TestDb) -> PgIdempotencyStore {
    let store = PgIdempotencyStore::new(db.pool().clone());
    store.migrate().await.expect("migrate");
    store
}

/// Another instance of the service: its own pool to the same database.
async fn instance_pool(db: &TestDb, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(db.url())
        .await
        .expect("connect")
}

/// Books once per execution: a row in `bookings` is the effect we count.
async fn book(State(pool): State<PgPool>, body: String) -> (StatusCode, String) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id: i64 = sqlx::query_scalar("INSERT INTO bookings (body) VALUES ($1) RETURNING id")
        .bind(body)
        .fetch_one(&pool)
        .await
        .unwrap();
    (StatusCode::CREATED, format!(r#"{{"booking":{id}}}"#))
}

fn booking_app(store: PgIdempotencyStore, pool: PgPool) -> Router {
    Router::new()
        .route("/v1/bookings", post(book))
        .layer(
            IdempotencyLayer::builder(Arc::new(store))
                .required(true)
                .build()
                .unwrap(),
        )
        .with_state(pool)
}

async fn create_bookings_table(pool: &PgPool) {
    sqlx::query("CREATE TABLE bookings (id bigserial PRIMARY KEY, body text NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

fn booking_request(key: &str) -> Request<Body> {
    Request::post("/v1/bookings")
        .header("idempotency-key", key)
        .body(Body::from("listing 7, 2026-12-01..2026-12-03"))
        .unwrap()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    executed: usize,
    replayed: usize,
    in_use: usize,
    other: Vec<u16>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_identical_requests_on_four_instances_executes_once() {
    let db = TestDb::new().await;
    create_bookings_table(db.pool()).await;
    store(&db).await;
    let mut instances = Vec::new();
    for _ in 0..4 {
        let pool = instance_pool(&db, 8).await;
        instances.push(booking_app(PgIdempotencyStore::new(pool.clone()), pool));
    }
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let app = instances[i % 4].clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.wait().await;
                let response = app.oneshot(booking_request("storm-key")).await.unwrap();
                let replayed = response.headers().contains_key("idempotent-replayed");
                let status = response.status();
                let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
                (status, replayed, body)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut bodies = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, replayed, body) = task.await.unwrap();
        match (status, replayed) {
            (StatusCode::CREATED, false) => tally.executed += 1,
            (StatusCode::CREATED, true) => tally.replayed += 1,
            (StatusCode::CONFLICT, false) => tally.in_use += 1,
            (status, _) => tally.other.push(status.as_u16()),
        }
        if status == StatusCode::CREATED {
            bodies.insert(body);
        }
    }
    assert_eq!(tally.executed, 1, "{tally:?}");
    assert_eq!(tally.replayed + tally.in_use, 999, "{tally:?}");
    assert!(tally.other.is_empty(), "no 5xx or anything else: {tally:?}");
    assert_eq!(bodies.len(), 1, "every replay is the first answer");
    assert_eq!(count(db.pool(), "SELECT count(*) FROM bookings").await, 1);
    // After the storm every retry replays.
    let late = instances[3]
        .clone()
        .oneshot(booking_request("storm-key"))
        .await
        .unwrap();
    assert_eq!(late.headers()["idempotent-replayed"], "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_owner_is_taken_over_after_its_lease_and_then_fenced() {
    let db = TestDb::new().await;
    create_bookings_table(db.pool()).await;
    let store = store(&db).await;
    let app = Router::new()
        .route("/v1/bookings", post(book))
        .layer(
            IdempotencyLayer::builder(Arc::new(store.clone()))
                .lease(Duration::from_millis(600))
                .build()
                .unwrap(),
        )
        .with_state(db.pool().clone());
    // The crashed instance: it claimed the key with the middleware's exact
    // scope and fingerprint, then died without completing or releasing.
    let crashed = match store
        .claim(claim_like_the_middleware(
            "crash-key",
            Duration::from_millis(600),
        ))
        .await
        .unwrap()
    {
        Claim::Claimed(lease) => lease,
        other => panic!("{other:?}"),
    };
    let early = app
        .clone()
        .oneshot(booking_request("crash-key"))
        .await
        .unwrap();
    assert_eq!(
        early.status(),
        StatusCode::CONFLICT,
        "the lease still holds"
    );
    assert_eq!(count(db.pool(), "SELECT count(*) FROM bookings").await, 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let takeover = app
        .clone()
        .oneshot(booking_request("crash-key"))
        .await
        .unwrap();
    assert_eq!(takeover.status(), StatusCode::CREATED);
    assert!(!takeover.headers().contains_key("idempotent-replayed"));
    let takeover_body = to_bytes(takeover.into_body(), usize::MAX).await.unwrap();
    // The zombie wakes up and tries to finish: refused, nothing changes.
    let zombie = store
        .complete(&crashed, &StoredResponse::new(201, b"zombie".to_vec()))
        .await;
    assert!(matches!(zombie, Err(StoreError::LeaseLost)), "{zombie:?}");
    assert!(matches!(
        store.release(&crashed).await,
        Err(StoreError::LeaseLost)
    ));
    let replay = app.oneshot(booking_request("crash-key")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        to_bytes(replay.into_body(), usize::MAX).await.unwrap(),
        takeover_body
    );
    assert_eq!(count(db.pool(), "SELECT count(*) FROM bookings").await, 1);
    let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM payguard_idempotency")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(attempt, 2);
}

/// The claim the middleware makes for `booking_request(key)` (no tenant).
fn claim_like_the_middleware(key: &str, lease: Duration) -> ClaimRequest {
    ClaimRequest::new(
        ScopeKey::new("\u{0}POST\u{0}/v1/bookings", key),
        Fingerprint::of(&[
            b"POST",
            b"/v1/bookings",
            b"",
            b"listing 7, 2026-12-01..2026-12-03",
        ]),
    )
    .lease(lease)
    .retention(Duration::from_secs(86_400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapers_delete_expired_records_in_batches_and_spare_live_claims() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    let request = |i: usize, lease: Duration, retention: Duration| {
        ClaimRequest::new(
            ScopeKey::new("reap", &i.to_string()),
            Fingerprint::of(&[b"x"]),
        )
        .lease(lease)
        .retention(retention)
    };
    for i in 0..500 {
        if let Claim::Claimed(lease) = store
            .claim(request(
                i,
                Duration::from_secs(30),
                Duration::from_millis(300),
            ))
            .await
            .unwrap()
        {
            store
                .complete(&lease, &StoredResponse::new(200, vec![7; 100]))
                .await
                .unwrap();
        }
    }
    // A live claim past its retention (a handler still running) and a
    // record still within retention.
    store
        .claim(request(
            1000,
            Duration::from_secs(60),
            Duration::from_millis(1),
        ))
        .await
        .unwrap();
    store
        .claim(request(
            1001,
            Duration::from_secs(60),
            Duration::from_secs(3600),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Two reapers at once, as two instances would run them.
    let store: Arc<dyn IdempotencyStore> = Arc::new(store);
    let reapers = [reaper(Arc::clone(&store)), reaper(Arc::clone(&store))];
    let mut left = i64::MAX;
    for _ in 0..100 {
        left = count(db.pool(), "SELECT count(*) FROM payguard_idempotency").await;
        if left == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(reapers);
    assert_eq!(
        left, 2,
        "only the live claim and the unexpired record remain"
    );
    let in_flight = store
        .claim(request(
            1000,
            Duration::from_secs(60),
            Duration::from_millis(1),
        ))
        .await
        .unwrap();
    assert!(matches!(in_flight, Claim::InFlight { .. }), "{in_flight:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_closed_with_503_and_runs_nothing() {
    let db = TestDb::new().await;
    create_bookings_table(db.pool()).await;
    let down = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .unwrap();
    let app = Router::new()
        .route("/v1/bookings", post(book))
        .layer(IdempotencyLayer::new(Arc::new(PgIdempotencyStore::new(
            down,
        ))))
        .with_state(db.pool().clone());
    for _ in 0..3 {
        let response = app
            .clone()
            .oneshot(booking_request("outage-key"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("idempotency_unavailable"));
    }
    assert_eq!(
        count(db.pool(), "SELECT count(*) FROM bookings").await,
        0,
        "the handler never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_mode_commits_the_response_with_the_business_write_or_neither() {
    let db = TestDb::new().await;
    create_bookings_table(db.pool()).await;
    let store = store(&db).await;
    let request = ClaimRequest::new(ScopeKey::new("tx", "k"), Fingerprint::of(&[b"body"]))
        .lease(Duration::from_secs(30))
        .retention(Duration::from_secs(3600));
    let response = StoredResponse::new(201, b"booked".to_vec());
    // Rolled back (an error after the write): no record and no booking remain.
    let mut tx = db.pool().begin().await.unwrap();
    let Claim::Claimed(lease) = store.claim_in(&mut tx, request).await.unwrap() else {
        panic!("claim")
    };
    sqlx::query("INSERT INTO bookings (body) VALUES ('rolled back')")
        .execute(&mut *tx)
        .await
        .unwrap();
    store.complete_in(&mut tx, &lease, &response).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        count(db.pool(), "SELECT count(*) FROM payguard_idempotency").await,
        0
    );
    // A crash mid-transaction (the connection dropped): likewise.
    let mut tx = db.pool().begin().await.unwrap();
    let Claim::Claimed(_) = store.claim_in(&mut tx, request).await.unwrap() else {
        panic!("claim after rollback")
    };
    drop(tx);
    // Committed: both are there, and the key replays.
    let mut tx = db.pool().begin().await.unwrap();
    let Claim::Claimed(lease) = store.claim_in(&mut tx, request).await.unwrap() else {
        panic!("claim after crash")
    };
    sqlx::query("INSERT INTO bookings (body) VALUES ('committed')")
        .execute(&mut *tx)
        .await
        .unwrap();
    store.complete_in(&mut tx, &lease, &response).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(db.pool(), "SELECT count(*) FROM bookings").await, 1);
    assert!(matches!(store.claim(request).await.unwrap(), Claim::Replay(r) if r == response));
}

/// Applies a payment webhook once per event id: the README's example.
async fn on_charge_success(
    store: &PgIdempotencyStore,
    event_id: &str,
    reference: &str,
) -> Result<StatusCode, StoreError> {
    let unavailable = |e: sqlx::Error| StoreError::Unavailable(Box::new(e));
    let mut tx = store.pool().begin().await.map_err(unavailable)?;
    let request = ClaimRequest::new(
        ScopeKey::new("webhook:paystack", event_id),
        Fingerprint::of(&[]),
    )
    .lease(Duration::from_secs(30))
    .retention(Duration::from_secs(7 * 86_400));
    match store.claim_in(&mut tx, request).await? {
        Claim::Claimed(lease) => {
            sqlx::query("UPDATE payments SET paid_count = paid_count + 1 WHERE reference = $1")
                .bind(reference)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            store
                .complete_in(&mut tx, &lease, &StoredResponse::new(200, Vec::new()))
                .await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(StatusCode::OK)
        }
        // Applied before: acknowledge, do nothing.
        Claim::Replay(_) => Ok(StatusCode::OK),
        // Being applied right now elsewhere: ask the provider to redeliver.
        _ => Ok(StatusCode::SERVICE_UNAVAILABLE),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_webhook_deliveries_racing_on_two_instances_apply_once() {
    let db = TestDb::new().await;
    store(&db).await;
    sqlx::query(
        "CREATE TABLE payments (reference text PRIMARY KEY, paid_count int NOT NULL DEFAULT 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (reference) SELECT 'ref_' || i FROM generate_series(1, 10) i",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let instances = [
        PgIdempotencyStore::new(instance_pool(&db, 6).await),
        PgIdempotencyStore::new(instance_pool(&db, 6).await),
    ];
    // Ten events, each delivered twenty times at once across both instances.
    let mut tasks = Vec::new();
    for event in 1..=10 {
        for delivery in 0..20 {
            let store = instances[delivery % 2].clone();
            tasks.push(tokio::spawn(async move {
                on_charge_success(&store, &format!("evt_{event}"), &format!("ref_{event}")).await
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    let counts: Vec<i32> = sqlx::query_scalar("SELECT paid_count FROM payments ORDER BY reference")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(counts, vec![1; 10], "each event applied exactly once");
}

fn reaper(store: Arc<dyn IdempotencyStore>) -> payguard_idempotency::ReaperHandle {
    Reaper::builder(store)
        .every(Duration::from_millis(50))
        .batch_size(25)
        .build()
        .unwrap()
        .spawn()
}
