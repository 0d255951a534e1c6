//! [`MemoryLock`]: the contract in one process, for tests and single-node
//! tools.

use crate::owner::Owner;
use crate::strategy::{
    AcquireAnswer, BoxFuture, Grant, LeaseTerms, LockError, LockInfo, LockStrategy,
};
use payguard_core::FencingToken;
use payguard_core::{Clock, SystemClock};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Locks in a map, expiry judged by an injected [`Clock`]: the same
/// contract as the database strategies, within one process.
#[derive(Debug)]
pub struct MemoryLock {
    locks: Mutex<HashMap<String, Entry>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Entry {
    owner: Option<Owner>,
    token: u64,
    acquired_at: Instant,
    expires_at: Instant,
    hold_until: Option<Instant>,
}

impl Default for MemoryLock {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLock {
    /// Locks on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// Locks on `clock` (a `ManualClock` in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn locks(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are plain data, valid even if a holder panicked.
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn info(&self, name: &str, entry: &Entry, now: Instant) -> LockInfo {
        let wall = self.clock.wall();
        let expires_at = if entry.expires_at >= now {
            wall + (entry.expires_at - now)
        } else {
            wall - (now - entry.expires_at)
        };
        LockInfo {
            name: name.to_owned(),
            owner: entry
                .owner
                .as_ref()
                .filter(|_| entry.expires_at > now)
                .map(ToString::to_string),
            token: Some(FencingToken::new(entry.token)).filter(|token| token.get() > 0),
            expires_at: Some(expires_at),
            expires_in: Some(entry.expires_at.saturating_duration_since(now)),
            host: None,
            pid: Some(std::process::id()),
        }
    }

    fn owned<'a>(
        entries: &'a mut HashMap<String, Entry>,
        grant: &Grant,
    ) -> Result<&'a mut Entry, LockError> {
        entries
            .get_mut(&grant.name)
            .filter(|entry| {
                entry.token == grant.token.get() && entry.owner.as_ref() == Some(&grant.owner)
            })
            .ok_or_else(|| LockError::lost(&grant.name))
    }
}

impl LockStrategy for MemoryLock {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a Owner,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<AcquireAnswer, LockError>> {
        let now = self.clock.now();
        let mut locks = self.locks();
        let attempt = match locks.get(name) {
            Some(entry) if entry.expires_at > now => {
                AcquireAnswer::Busy(self.info(name, entry, now))
            }
            held => {
                let token = held.map_or(0, |entry| entry.token) + 1;
                let lease = terms
                    .at_most
                    .map_or(terms.ttl, |at_most| terms.ttl.min(at_most));
                locks.insert(
                    name.to_owned(),
                    Entry {
                        owner: Some(owner.clone()),
                        token,
                        acquired_at: now,
                        expires_at: now + lease,
                        hold_until: terms.at_most.map(|at_most| now + at_most),
                    },
                );
                AcquireAnswer::Acquired(Grant {
                    name: name.to_owned(),
                    owner: owner.clone(),
                    token: FencingToken::new(token),
                    remaining: lease,
                })
            }
        };
        Box::pin(async move { Ok(attempt) })
    }

    fn renew<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<Duration, LockError>> {
        let now = self.clock.now();
        let mut locks = self.locks();
        let result = Self::owned(&mut locks, grant).and_then(|entry| {
            if entry.expires_at <= now {
                return Err(LockError::lost(&grant.name));
            }
            let renewed = now + terms.ttl;
            entry.expires_at = entry
                .hold_until
                .map_or(renewed, |hold_until| renewed.min(hold_until));
            Ok(entry.expires_at.saturating_duration_since(now))
        });
        Box::pin(async move { result })
    }

    fn release<'a>(
        &'a self,
        grant: &'a Grant,
        terms: &'a LeaseTerms,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        let now = self.clock.now();
        let mut locks = self.locks();
        let result = Self::owned(&mut locks, grant).map(|entry| {
            entry.owner = None;
            entry.expires_at = now.max(entry.acquired_at + terms.at_least);
        });
        Box::pin(async move { result })
    }

    fn locks<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<LockInfo>, LockError>> {
        let now = self.clock.now();
        let locks = self.locks();
        let mut infos: Vec<LockInfo> = locks
            .iter()
            .filter(|(key, _)| name.is_none_or(|name| name == key.as_str()))
            .map(|(key, entry)| self.info(key, entry, now))
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Box::pin(async move { Ok(infos) })
    }
}
