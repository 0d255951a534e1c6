//! The store conformance suite: every backend of this crate runs it, and a
//! third-party [`IdempotencyStore`] can too.
//!
//! ```
//! use payguard_core::ManualClock;
//! use payguard_idempotency::MemoryStore;
//! use payguard_idempotency::conformance::{self, ManualTime};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), payguard_idempotency::ConfigError> {
//! let clock = ManualClock::new();
//! let store = MemoryStore::builder().clock(Arc::new(clock.clone())).build()?;
//! conformance::run(&store, &ManualTime(clock)).await;
//! # Ok(())
//! # }
//! ```
//!
//! A failed check panics with what was expected: this is test support.

#![allow(clippy::panic)]

use crate::key::{Fingerprint, ScopeKey};
use crate::store::{
    BoxFuture, Claim, ClaimRequest, IdempotencyStore, Lease, StoreError, StoredResponse,
};
use payguard_core::ManualClock;
use std::time::Duration;

/// How the suite moves the store's clock past leases and retention.
pub trait TimeTravel: Send + Sync {
    /// Lets `by` pass for the store.
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()>;
}

/// For stores on a [`ManualClock`]: advancing is instant.
#[derive(Debug, Clone)]
pub struct ManualTime(pub ManualClock);

impl TimeTravel for ManualTime {
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        self.0.advance(by);
        Box::pin(async {})
    }
}

/// For stores judged by a real clock (PostgreSQL's `now()`): advancing
/// sleeps, so the suite uses leases and retention of a fraction of a second.
#[derive(Debug, Clone, Copy)]
pub struct RealTime;

impl TimeTravel for RealTime {
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(by))
    }
}

const LEASE: Duration = Duration::from_millis(400);
const RETENTION: Duration = Duration::from_millis(1500);

fn unique_key(name: &str) -> ScopeKey {
    let salt = payguard_core::entropy();
    ScopeKey::new(&format!("conformance {name} {salt}"), "key")
}

fn request(key: ScopeKey, body: &[u8]) -> ClaimRequest {
    ClaimRequest {
        key,
        fingerprint: Fingerprint::of(&[body]),
        lease: LEASE,
        retention: RETENTION,
    }
}

fn response(body: &[u8]) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("location".into(), b"/v1/bookings/42".to_vec()),
        ],
        body: body.to_vec(),
    }
}

async fn claimed(store: &dyn IdempotencyStore, request: ClaimRequest, context: &str) -> Lease {
    match store.claim(request).await {
        Ok(Claim::Claimed(lease)) => {
            assert!(
                lease.granted <= request.lease
                    && lease.granted + Duration::from_millis(500) >= request.lease,
                "{context}: the lease granted ({:?}) is the lease asked for ({:?}), as of the claim",
                lease.granted,
                request.lease
            );
            lease
        }
        other => panic!("{context}: expected Claimed, got {other:?}"),
    }
}

async fn expect(
    store: &dyn IdempotencyStore,
    request: ClaimRequest,
    check: impl Fn(&Claim) -> bool,
    context: &str,
) {
    let claim = store.claim(request).await;
    match &claim {
        Ok(claim) if check(claim) => {}
        other => panic!("{context}: unexpected {other:?}"),
    }
}

fn lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>, context: &str) {
    if !matches!(result, Err(StoreError::LeaseLost)) {
        panic!("{context}: expected LeaseLost, got {result:?}");
    }
}

/// Runs every check against `store`.
pub async fn run(store: &dyn IdempotencyStore, time: &dyn TimeTravel) {
    first_claim_then_in_flight_then_replay(store).await;
    mismatch_comes_first(store).await;
    stale_tokens_change_nothing(store).await;
    release_frees_the_key(store).await;
    expired_lease_is_taken_over_and_the_zombie_fenced(store, time).await;
    takeover_needs_the_same_fingerprint(store, time).await;
    extend_renews_the_lease(store, time).await;
    retention_expiry_makes_the_key_new(store, time).await;
    reaper_deletes_expired_records_only(store, time).await;
    bodies_round_trip_exactly(store).await;
    one_winner_among_concurrent_claims(store).await;
}

/// A new key is claimed at attempt 1; while held it is in flight; once
/// completed it replays exactly.
pub async fn first_claim_then_in_flight_then_replay(store: &dyn IdempotencyStore) {
    let key = unique_key("first");
    let lease = claimed(store, request(key, b"a"), "first claim").await;
    assert_eq!(lease.attempt, 1, "first claim is attempt 1");
    expect(
        store,
        request(key, b"a"),
        |c| matches!(c, Claim::InFlight { retry_after } if *retry_after <= LEASE),
        "claim while held",
    )
    .await;
    store
        .complete(&lease, &response(b"{\"id\":42}"))
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    for _ in 0..3 {
        expect(
            store,
            request(key, b"a"),
            |c| matches!(c, Claim::Replay(r) if *r == response(b"{\"id\":42}")),
            "replay",
        )
        .await;
    }
    lease_lost(
        store.complete(&lease, &response(b"other")).await,
        "completing twice",
    );
}

/// A different request under the same key is a mismatch, in flight or done,
/// and changes nothing.
pub async fn mismatch_comes_first(store: &dyn IdempotencyStore) {
    let key = unique_key("mismatch");
    let lease = claimed(store, request(key, b"a"), "claim").await;
    expect(
        store,
        request(key, b"b"),
        |c| matches!(c, Claim::Mismatch),
        "mismatch while in flight",
    )
    .await;
    store
        .complete(&lease, &response(b"done"))
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    expect(
        store,
        request(key, b"b"),
        |c| matches!(c, Claim::Mismatch),
        "mismatch after completion",
    )
    .await;
    expect(
        store,
        request(key, b"a"),
        |c| matches!(c, Claim::Replay(r) if r.body == b"done"),
        "original still replays",
    )
    .await;
}

/// Completing, releasing or extending with a token that does not own the
/// claim fails and changes nothing.
pub async fn stale_tokens_change_nothing(store: &dyn IdempotencyStore) {
    let key = unique_key("stale");
    let lease = claimed(store, request(key, b"a"), "claim").await;
    let forged = Lease {
        token: payguard_core::FencingToken::new(lease.token.get().wrapping_add(1_000_000)),
        ..lease
    };
    lease_lost(
        store.complete(&forged, &response(b"x")).await,
        "complete with a wrong token",
    );
    lease_lost(store.release(&forged).await, "release with a wrong token");
    lease_lost(
        store.extend(&forged, LEASE).await,
        "extend with a wrong token",
    );
    expect(
        store,
        request(key, b"a"),
        |c| matches!(c, Claim::InFlight { .. }),
        "still held by the owner",
    )
    .await;
    store
        .complete(&lease, &response(b"owner"))
        .await
        .unwrap_or_else(|e| panic!("owner completes: {e}"));
}

/// A released key executes afresh, with a higher token.
pub async fn release_frees_the_key(store: &dyn IdempotencyStore) {
    let key = unique_key("release");
    let first = claimed(store, request(key, b"a"), "claim").await;
    store
        .release(&first)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    let second = claimed(store, request(key, b"a"), "claim after release").await;
    assert!(second.token > first.token, "tokens only go up");
    lease_lost(store.release(&first).await, "release twice");
    lease_lost(
        store.complete(&first, &response(b"zombie")).await,
        "complete after release",
    );
}

/// After the lease expires the same request takes over (next attempt,
/// higher token) and the old holder's completion is refused.
pub async fn expired_lease_is_taken_over_and_the_zombie_fenced(
    store: &dyn IdempotencyStore,
    time: &dyn TimeTravel,
) {
    let key = unique_key("takeover");
    let zombie = claimed(store, request(key, b"a"), "claim").await;
    time.advance(LEASE + Duration::from_millis(150)).await;
    let heir = claimed(store, request(key, b"a"), "takeover").await;
    assert_eq!(heir.attempt, 2, "a takeover is the next attempt");
    assert!(heir.token > zombie.token, "a takeover has a higher token");
    lease_lost(
        store.complete(&zombie, &response(b"zombie")).await,
        "the zombie completes",
    );
    lease_lost(store.release(&zombie).await, "the zombie releases");
    store
        .complete(&heir, &response(b"heir"))
        .await
        .unwrap_or_else(|e| panic!("heir completes: {e}"));
    expect(
        store,
        request(key, b"a"),
        |c| matches!(c, Claim::Replay(r) if r.body == b"heir"),
        "the heir's response replays",
    )
    .await;
}

/// An expired claim is not taken over by a different request.
pub async fn takeover_needs_the_same_fingerprint(
    store: &dyn IdempotencyStore,
    time: &dyn TimeTravel,
) {
    let key = unique_key("takeover-mismatch");
    let _held = claimed(store, request(key, b"a"), "claim").await;
    time.advance(LEASE + Duration::from_millis(150)).await;
    expect(
        store,
        request(key, b"b"),
        |c| matches!(c, Claim::Mismatch),
        "different body after expiry",
    )
    .await;
}

/// Extending keeps the claim held past its first lease.
pub async fn extend_renews_the_lease(store: &dyn IdempotencyStore, time: &dyn TimeTravel) {
    let key = unique_key("extend");
    let lease = claimed(store, request(key, b"a"), "claim").await;
    time.advance(Duration::from_millis(250)).await;
    let left = store
        .extend(&lease, Duration::from_millis(800))
        .await
        .unwrap_or_else(|e| panic!("extend: {e}"));
    assert!(
        left > Duration::from_millis(700) && left <= Duration::from_millis(800),
        "extend answers the lease it granted: {left:?}"
    );
    time.advance(Duration::from_millis(300)).await;
    expect(
        store,
        request(key, b"a"),
        |c| matches!(c, Claim::InFlight { .. }),
        "held after extending",
    )
    .await;
    store
        .complete(&lease, &response(b"ok"))
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
}

/// Past retention a key is new again, whatever the request.
pub async fn retention_expiry_makes_the_key_new(
    store: &dyn IdempotencyStore,
    time: &dyn TimeTravel,
) {
    let key = unique_key("retention");
    let lease = claimed(store, request(key, b"a"), "claim").await;
    store
        .complete(&lease, &response(b"old"))
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    time.advance(RETENTION + Duration::from_millis(200)).await;
    let again = claimed(store, request(key, b"b"), "claim after retention").await;
    assert_eq!(again.attempt, 1, "an expired record starts over");
    store
        .release(&again)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// The reaper removes records past retention, never a live claim.
pub async fn reaper_deletes_expired_records_only(
    store: &dyn IdempotencyStore,
    time: &dyn TimeTravel,
) {
    let done = unique_key("reap-done");
    let lease = claimed(store, request(done, b"a"), "claim").await;
    store
        .complete(&lease, &response(b"x"))
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    time.advance(RETENTION + Duration::from_millis(200)).await;
    let live = unique_key("reap-live");
    let held = claimed(
        store,
        ClaimRequest {
            retention: Duration::from_millis(1),
            lease: Duration::from_secs(60),
            ..request(live, b"a")
        },
        "live claim",
    )
    .await;
    time.advance(Duration::from_millis(50)).await;
    let mut reaped = 0;
    for _ in 0..1000 {
        match store.reap(100).await {
            Ok(0) => break,
            Ok(n) => reaped += n,
            Err(e) => panic!("reap: {e}"),
        }
    }
    assert!(reaped >= 1, "the expired record was reaped");
    expect(
        store,
        request(live, b"a"),
        |c| matches!(c, Claim::InFlight { .. }),
        "a live claim survives reaping",
    )
    .await;
    store
        .release(&held)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// Binary, empty and larger bodies round-trip exactly.
pub async fn bodies_round_trip_exactly(store: &dyn IdempotencyStore) {
    for body in [
        Vec::new(),
        (0..=255u8).collect::<Vec<u8>>(),
        vec![0xAB; 64 << 10],
    ] {
        let key = unique_key("bodies");
        let lease = claimed(store, request(key, &body), "claim").await;
        let stored = StoredResponse {
            status: 204,
            headers: vec![],
            body: body.clone(),
        };
        store
            .complete(&lease, &stored)
            .await
            .unwrap_or_else(|e| panic!("complete: {e}"));
        expect(
            store,
            request(key, &body),
            |c| matches!(c, Claim::Replay(r) if *r == stored),
            "exact replay",
        )
        .await;
    }
}

/// Of many simultaneous claims on one new key, exactly one wins.
pub async fn one_winner_among_concurrent_claims(store: &dyn IdempotencyStore) {
    let key = unique_key("race");
    let claims =
        futures_util::future::join_all((0..50).map(|_| store.claim(request(key, b"a")))).await;
    let winners = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Claimed(_))))
        .count();
    let others = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::InFlight { .. })))
        .count();
    assert_eq!((winners, others), (1, 49), "exactly one winner: {claims:?}");
}
