//! The PostgreSQL store behind PgBouncer in transaction pooling mode,
//! started for the test (`payguard_test_support::PgBouncer`; needs
//! `pgbouncer` installed): a storm of 1000 identical requests over four
//! instances executes once.

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
use payguard_idempotency::{IdempotencyLayer, PgIdempotencyStore};
use payguard_test_support::{PgBouncer, TestDb};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Books once per execution, through the pooler too: an unnamed statement
/// inside a transaction (outside one, PgBouncer before 1.21 may hand its
/// parse and its execution to two different server connections).
async fn book(State(pool): State<PgPool>, body: String) -> (StatusCode, String) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tx = pool.begin().await.unwrap();
    let id: i64 = sqlx::query_scalar("INSERT INTO bookings (body) VALUES ($1) RETURNING id")
        .persistent(false)
        .bind(body)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (StatusCode::CREATED, format!(r#"{{"booking":{id}}}"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_identical_requests_through_pgbouncer_executes_once() {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE bookings (id bigserial PRIMARY KEY, body text NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    // Migrations take a session advisory lock: run them directly.
    PgIdempotencyStore::new(db.pool().clone())
        .migrate()
        .await
        .unwrap();
    let bouncer = PgBouncer::start(db.url());
    let url = bouncer.url_for(db.url());
    let mut instances = Vec::new();
    for _ in 0..4 {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .unwrap();
        let store = PgIdempotencyStore::builder(pool.clone())
            .prepared_statements(false)
            .build()
            .unwrap();
        instances.push(
            Router::new()
                .route("/v1/bookings", post(book))
                .layer(
                    IdempotencyLayer::builder(Arc::new(store))
                        .required(true)
                        .build()
                        .unwrap(),
                )
                .with_state(pool),
        );
    }
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let app = instances[i % 4].clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.wait().await;
                let request = Request::post("/v1/bookings")
                    .header("idempotency-key", "storm-key")
                    .body(Body::from("listing 7, 2026-12-01..2026-12-03"))
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                let replayed = response.headers().contains_key("idempotent-replayed");
                let status = response.status();
                let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
                (status, replayed, body)
            })
        })
        .collect();
    let (mut executed, mut replayed, mut in_use, mut other) = (0, 0, 0, Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            (StatusCode::CREATED, false, _) => executed += 1,
            (StatusCode::CREATED, true, _) => replayed += 1,
            (StatusCode::CONFLICT, false, _) => in_use += 1,
            (status, _, body) => other.push((status, body)),
        }
    }
    assert_eq!(executed, 1);
    assert_eq!(replayed + in_use, 999);
    assert!(other.is_empty(), "{other:?}");
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(bookings, 1);
}
