//! The strategy conformance suite: every strategy of this crate runs it,
//! and a third-party [`LockStrategy`] can too.
//!
//! ```
//! use payguard_core::ManualClock;
//! use payguard_lock::MemoryLock;
//! use payguard_lock::conformance::{self, ManualTime};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let clock = ManualClock::new();
//! let strategy = MemoryLock::with_clock(Arc::new(clock.clone()));
//! conformance::run(&strategy, Some(&ManualTime(clock))).await;
//! # }
//! ```
//!
//! A failed check panics with what was expected: this is test support.

#![allow(clippy::panic)]

use crate::owner::{Owner, ProcessId};
use crate::strategy::{AcquireAnswer, BoxFuture, Grant, LeaseTerms, LockError, LockStrategy};
use payguard_core::ManualClock;
use std::time::Duration;

/// How the suite lets leases run out.
pub trait TimeTravel: Send + Sync {
    /// Lets `by` pass for the strategy.
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()>;
}

/// For strategies on a [`ManualClock`]: advancing is instant.
#[derive(Debug, Clone)]
pub struct ManualTime(pub ManualClock);

impl TimeTravel for ManualTime {
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        self.0.advance(by);
        Box::pin(async {})
    }
}

/// For strategies judged by a server's clock: advancing sleeps, so the
/// suite uses leases of half a second.
#[derive(Debug, Clone, Copy)]
pub struct RealTime;

impl TimeTravel for RealTime {
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(by))
    }
}

const LEASE: Duration = Duration::from_millis(500);
const PAST_LEASE: Duration = Duration::from_millis(700);

fn terms() -> LeaseTerms {
    LeaseTerms {
        ttl: LEASE,
        at_least: Duration::ZERO,
        at_most: None,
    }
}

fn unique_name(check: &str) -> String {
    let salt = payguard_core::entropy();
    format!("conformance-{check}-{salt:x}")
}

/// Two owners of one process id: they must never share a lock.
fn owners() -> (Owner, Owner) {
    let process = ProcessId::from_bytes([0x5a; 16]);
    (Owner::new(process), Owner::new(process))
}

async fn acquired(
    strategy: &dyn LockStrategy,
    name: &str,
    owner: &Owner,
    terms: &LeaseTerms,
    context: &str,
) -> Grant {
    match strategy.try_acquire(name, owner, terms).await {
        Ok(AcquireAnswer::Acquired(grant)) => grant,
        other => panic!("{context}: expected Acquired, got {other:?}"),
    }
}

async fn busy(strategy: &dyn LockStrategy, name: &str, owner: &Owner, context: &str) {
    match strategy.try_acquire(name, owner, &terms()).await {
        Ok(AcquireAnswer::Busy(_)) => {}
        other => panic!("{context}: expected Busy, got {other:?}"),
    }
}

fn lost<T: std::fmt::Debug>(result: Result<T, LockError>, context: &str) {
    if !matches!(result, Err(LockError::Lost { .. })) {
        panic!("{context}: expected Lost, got {result:?}");
    }
}

/// Runs every check; `time` is `None` for strategies whose locks do not
/// expire (session advisory locks), which skips the expiry checks.
pub async fn run(strategy: &dyn LockStrategy, time: Option<&dyn TimeTravel>) {
    exclusive_until_released(strategy).await;
    tokens_only_go_up(strategy).await;
    one_winner_among_concurrent_attempts(strategy).await;
    status_names_the_holder(strategy).await;
    if let Some(time) = time {
        expired_leases_are_taken_over_and_never_resurrected(strategy, time).await;
        renewal_keeps_the_lease(strategy, time).await;
        at_least_keeps_a_released_lock_taken(strategy, time).await;
        at_most_caps_renewals(strategy, time).await;
    }
}

/// Only the owner renews or releases; anyone else, even with the same
/// process id, is refused and changes nothing.
pub async fn exclusive_until_released(strategy: &dyn LockStrategy) {
    let name = unique_name("exclusive");
    let (a, b) = owners();
    let grant = acquired(strategy, &name, &a, &terms(), "first acquisition").await;
    busy(strategy, &name, &b, "second owner while held").await;
    let forged = Grant {
        owner: b.clone(),
        ..grant.clone()
    };
    lost(
        strategy.renew(&forged, &terms()).await,
        "renewal by another owner",
    );
    lost(
        strategy.release(&forged, &terms()).await,
        "release by another owner",
    );
    busy(strategy, &name, &b, "still held after refused release").await;
    strategy
        .renew(&grant, &terms())
        .await
        .unwrap_or_else(|e| panic!("owner renews: {e}"));
    strategy
        .release(&grant, &terms())
        .await
        .unwrap_or_else(|e| panic!("owner releases: {e}"));
    let next = acquired(strategy, &name, &b, &terms(), "after release").await;
    assert!(
        next.token > grant.token,
        "a later holder gets a larger token"
    );
    lost(strategy.release(&grant, &terms()).await, "releasing twice");
    strategy
        .release(&next, &terms())
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// Every acquisition's token is larger than the one before.
pub async fn tokens_only_go_up(strategy: &dyn LockStrategy) {
    let name = unique_name("tokens");
    let mut last = None;
    for _ in 0..5 {
        let (owner, _) = owners();
        let grant = acquired(strategy, &name, &owner, &terms(), "acquire").await;
        if let Some(last) = last {
            assert!(grant.token > last, "tokens strictly increase");
        }
        last = Some(grant.token);
        strategy
            .release(&grant, &terms())
            .await
            .unwrap_or_else(|e| panic!("release: {e}"));
    }
}

/// Of 20 simultaneous attempts on a free lock, exactly one wins.
pub async fn one_winner_among_concurrent_attempts(strategy: &dyn LockStrategy) {
    let name = unique_name("race");
    let owners: Vec<Owner> = (0..20).map(|_| owners().0).collect();
    let lease = terms();
    let attempts = futures_util::future::join_all(
        owners
            .iter()
            .map(|owner| strategy.try_acquire(&name, owner, &lease)),
    )
    .await;
    let winners: Vec<&Grant> = attempts
        .iter()
        .filter_map(|attempt| match attempt {
            Ok(AcquireAnswer::Acquired(grant)) => Some(grant),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {attempts:?}");
    if let Some(winner) = winners.first() {
        strategy
            .release(winner, &lease)
            .await
            .unwrap_or_else(|e| panic!("release: {e}"));
    }
}

/// The status view shows the holder and its token.
pub async fn status_names_the_holder(strategy: &dyn LockStrategy) {
    let name = unique_name("status");
    let (a, _) = owners();
    let grant = acquired(strategy, &name, &a, &terms(), "acquire").await;
    let locks = strategy
        .locks(Some(&name))
        .await
        .unwrap_or_else(|e| panic!("locks: {e}"));
    let info = locks
        .iter()
        .find(|info| info.name == name)
        .unwrap_or_else(|| panic!("{name} listed: {locks:?}"));
    assert_eq!(
        info.owner.as_deref(),
        Some(a.as_str()),
        "the holder is shown"
    );
    if let Some(token) = info.token {
        assert_eq!(token, grant.token, "the token is shown");
    }
    strategy
        .release(&grant, &terms())
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// An expired lease cannot be renewed, even before anyone takes it; once
/// taken over, the old holder can neither renew nor release it.
pub async fn expired_leases_are_taken_over_and_never_resurrected(
    strategy: &dyn LockStrategy,
    time: &dyn TimeTravel,
) {
    let name = unique_name("expiry");
    let (a, b) = owners();
    let old = acquired(strategy, &name, &a, &terms(), "acquire").await;
    time.advance(PAST_LEASE).await;
    lost(
        strategy.renew(&old, &terms()).await,
        "renewing an expired lease nobody took",
    );
    let new = acquired(
        strategy,
        &name,
        &b,
        &terms(),
        "taking over an expired lease",
    )
    .await;
    assert!(new.token > old.token, "a takeover gets a larger token");
    lost(
        strategy.renew(&old, &terms()).await,
        "the old holder renews",
    );
    lost(
        strategy.release(&old, &terms()).await,
        "the old holder releases",
    );
    busy(strategy, &name, &a, "the new holder still holds").await;
    strategy
        .renew(&new, &terms())
        .await
        .unwrap_or_else(|e| panic!("new holder renews: {e}"));
    strategy
        .release(&new, &terms())
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// Renewing before the lease ends keeps it past its first end.
pub async fn renewal_keeps_the_lease(strategy: &dyn LockStrategy, time: &dyn TimeTravel) {
    let name = unique_name("renew");
    let (a, b) = owners();
    let grant = acquired(strategy, &name, &a, &terms(), "acquire").await;
    time.advance(LEASE / 2).await;
    strategy
        .renew(&grant, &terms())
        .await
        .unwrap_or_else(|e| panic!("renew: {e}"));
    time.advance(LEASE * 3 / 5).await;
    busy(
        strategy,
        &name,
        &b,
        "held past the first lease after renewing",
    )
    .await;
    strategy
        .release(&grant, &terms())
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// A lock released early stays taken until `at_least` after acquisition.
pub async fn at_least_keeps_a_released_lock_taken(
    strategy: &dyn LockStrategy,
    time: &dyn TimeTravel,
) {
    let name = unique_name("at-least");
    let (a, b) = owners();
    let held = LeaseTerms {
        at_least: LEASE * 2,
        ..terms()
    };
    let grant = acquired(strategy, &name, &a, &held, "acquire").await;
    strategy
        .release(&grant, &held)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    busy(strategy, &name, &b, "released but inside at_least").await;
    time.advance(LEASE * 2 + Duration::from_millis(200)).await;
    let next = acquired(strategy, &name, &b, &terms(), "after at_least").await;
    strategy
        .release(&next, &terms())
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// Renewals never extend a lease past `at_most` after acquisition.
pub async fn at_most_caps_renewals(strategy: &dyn LockStrategy, time: &dyn TimeTravel) {
    let name = unique_name("at-most");
    let (a, b) = owners();
    let capped = LeaseTerms {
        at_most: Some(LEASE * 3 / 2),
        ..terms()
    };
    let grant = acquired(strategy, &name, &a, &capped, "acquire").await;
    time.advance(LEASE * 4 / 5).await;
    let left = strategy
        .renew(&grant, &capped)
        .await
        .unwrap_or_else(|e| panic!("renew: {e}"));
    assert!(
        left <= LEASE * 3 / 2 - LEASE * 4 / 5 + Duration::from_millis(50),
        "renewal stops at at_most: {left:?}"
    );
    time.advance(LEASE).await;
    let next = acquired(strategy, &name, &b, &terms(), "after at_most").await;
    strategy
        .release(&next, &terms())
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}
