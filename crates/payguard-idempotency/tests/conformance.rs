//! Both backends pass the exported conformance suite.

#![allow(clippy::expect_used)]

use payguard_core::ManualClock;
use payguard_idempotency::conformance::{self, ManualTime, RealTime};
use payguard_idempotency::{MemoryStore, PgIdempotencyStore};
use payguard_test_support::TestDb;
use std::sync::Arc;

#[tokio::test]
async fn memory_store_conforms() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    conformance::run(&store, &ManualTime(clock)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let db = TestDb::with_max_connections(20).await;
    let store = PgIdempotencyStore::new(db.pool().clone());
    store.migrate().await.expect("migrate");
    // Migrating twice is harmless (a second instance starting up).
    store.migrate().await.expect("migrate again");
    conformance::run(&store, &RealTime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms_with_unprepared_statements_and_inherited_bounds() {
    let db = TestDb::with_max_connections(20).await;
    let store = PgIdempotencyStore::builder(db.pool().clone())
        .prepared_statements(false)
        .timeouts(payguard_core::SqlTimeouts::default().inherited())
        .build()
        .unwrap();
    store.migrate().await.expect("migrate");
    conformance::run(&store, &RealTime).await;
}
