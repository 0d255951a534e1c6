//! [`MemoryStore`]: sharded, TTL-aware, for one process and for tests.

use crate::key::{Fingerprint, ScopeKey};
use crate::store::{
    BoxFuture, Claim, ClaimRequest, IdempotencyStore, Lease, StoreError, StoredResponse,
};
use payguard_core::{Clock, ConfigError, FencingToken, SystemClock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// An in-memory store: records in 16 mutex-guarded shards picked by key,
/// expiry judged by an injected [`Clock`]. Records die with the process, so
/// it protects one instance only; use PostgreSQL across instances.
///
/// ```
/// use payguard_idempotency::{Claim, ClaimRequest, Fingerprint, IdempotencyStore, MemoryStore, ScopeKey, StoredResponse};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let request = ClaimRequest::new(ScopeKey::new("POST /v1/bookings", "key-1"), Fingerprint::of(&[b"{}"]))
///     .lease(Duration::from_secs(30))
///     .retention(Duration::from_secs(86_400));
/// let Claim::Claimed(lease) = store.claim(request).await? else { panic!("first claim") };
/// store.complete(&lease, &StoredResponse::new(201, b"{}".to_vec())).await?;
/// assert!(matches!(store.claim(request).await?, Claim::Replay(r) if r.status == 201));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: [Mutex<HashMap<ScopeKey, Record>>; SHARDS],
    next_token: AtomicU64,
    clock: Arc<dyn Clock>,
    max_response_bytes: usize,
}

#[derive(Debug, Clone)]
struct Record {
    fingerprint: Fingerprint,
    attempt: u32,
    expires_at: Instant,
    state: State,
}

impl Record {
    fn holds_live_lease(&self, now: Instant) -> bool {
        matches!(self.state, State::InProgress { lease_until, .. } if lease_until > now)
    }
}

#[derive(Debug, Clone)]
enum State {
    InProgress { token: u64, lease_until: Instant },
    Completed(StoredResponse),
}

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct MemoryStoreBuilder {
    clock: Arc<dyn Clock>,
    max_response_bytes: usize,
}

impl MemoryStoreBuilder {
    /// The clock leases and retention are measured by (a `ManualClock` in
    /// tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The largest response body kept; at most 64 MiB.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Checks the settings and builds the store.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max_response_bytes` is above 64 MiB.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        if self.max_response_bytes > 64 << 20 {
            return Err(ConfigError::new("max_response_bytes", "at most 64 MiB"));
        }
        Ok(MemoryStore {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next_token: AtomicU64::new(1),
            clock: self.clock,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store on the system clock, keeping responses up to 256 KiB.
    pub fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next_token: AtomicU64::new(1),
            clock: Arc::new(SystemClock),
            max_response_bytes: 256 << 10,
        }
    }

    /// A store with settings of your choosing (defaults as
    /// [`new`](Self::new)).
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock),
            max_response_bytes: 256 << 10,
        }
    }

    #[allow(clippy::indexing_slicing)] // a byte modulo SHARDS indexes SHARDS shards
    fn shard(&self, key: &ScopeKey) -> MutexGuard<'_, HashMap<ScopeKey, Record>> {
        let index = usize::from(key.as_bytes()[0]) % SHARDS;
        // Records are plain data, valid even if a holder panicked.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn claim_now(&self, request: ClaimRequest) -> Claim {
        let now = self.clock.now();
        let mut shard = self.shard(&request.key);
        let lease_until = now.checked_add(request.lease).unwrap_or(now);
        let expires_at = now.checked_add(request.retention).unwrap_or(now);
        let fresh = |token| Record {
            fingerprint: request.fingerprint,
            attempt: 1,
            expires_at,
            state: State::InProgress { token, lease_until },
        };
        match shard.get_mut(&request.key) {
            Some(record) if record.expires_at > now || record.holds_live_lease(now) => {
                if record.fingerprint != request.fingerprint {
                    return Claim::Mismatch;
                }
                match &record.state {
                    State::Completed(response) => Claim::Replay(response.clone()),
                    State::InProgress {
                        lease_until: held, ..
                    } if *held > now => Claim::InFlight {
                        retry_after: held.saturating_duration_since(now),
                    },
                    State::InProgress { .. } => {
                        let token = self.next_token.fetch_add(1, Ordering::AcqRel);
                        record.attempt += 1;
                        record.state = State::InProgress { token, lease_until };
                        Claim::Claimed(Lease {
                            key: request.key,
                            token: FencingToken::new(token),
                            attempt: record.attempt,
                            granted: request.lease,
                        })
                    }
                }
            }
            _ => {
                let token = self.next_token.fetch_add(1, Ordering::AcqRel);
                shard.insert(request.key, fresh(token));
                Claim::Claimed(Lease {
                    key: request.key,
                    token: FencingToken::new(token),
                    attempt: 1,
                    granted: request.lease,
                })
            }
        }
    }

    /// Applies `change` to the claim if `lease` still owns it.
    fn with_owned(
        &self,
        lease: &Lease,
        change: impl FnOnce(&mut Record, &mut bool),
    ) -> Result<(), StoreError> {
        let mut shard = self.shard(&lease.key);
        let mut remove = false;
        match shard.get_mut(&lease.key) {
            Some(record) if matches!(record.state, State::InProgress { token, .. } if token == lease.token.get()) =>
            {
                change(record, &mut remove);
            }
            _ => return Err(StoreError::LeaseLost),
        }
        if remove {
            shard.remove(&lease.key);
        }
        Ok(())
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>> {
        let claim = self.claim_now(request);
        Box::pin(async move { Ok(claim) })
    }

    fn complete<'a>(
        &'a self,
        lease: &'a Lease,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = if response.body.len() > self.max_response_bytes || !response.headers_fit() {
            Err(StoreError::ResponseTooLarge {
                size: response.body.len(),
                limit: self.max_response_bytes,
            })
        } else {
            self.with_owned(lease, |record, _| {
                record.state = State::Completed(response.clone())
            })
        };
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.with_owned(lease, |_, remove| *remove = true);
        Box::pin(async move { result })
    }

    fn extend<'a>(
        &'a self,
        lease: &'a Lease,
        by: Duration,
    ) -> BoxFuture<'a, Result<Duration, StoreError>> {
        let now = self.clock.now();
        let result = self
            .with_owned(lease, |record, _| {
                if let State::InProgress { lease_until, .. } = &mut record.state {
                    *lease_until = now.checked_add(by).unwrap_or(now);
                }
            })
            .map(|()| by);
        Box::pin(async move { result })
    }

    fn reap(&self, batch: usize) -> BoxFuture<'_, Result<u64, StoreError>> {
        let now = self.clock.now();
        let mut removed = 0u64;
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let expired: Vec<ScopeKey> = shard
                .iter()
                .filter(|(_, record)| record.expires_at <= now && !record.holds_live_lease(now))
                .map(|(key, _)| *key)
                .take(batch.saturating_sub(removed as usize))
                .collect();
            for key in expired {
                shard.remove(&key);
                removed += 1;
            }
            if removed as usize >= batch {
                break;
            }
        }
        Box::pin(async move { Ok(removed) })
    }
}
