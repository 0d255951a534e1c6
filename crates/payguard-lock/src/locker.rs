//! [`Locker`] and [`LockGuard`]: acquiring, holding with a heartbeat, and
//! stopping the job when the lease is lost.

use crate::owner::{Owner, ProcessId};
use crate::strategy::{AcquireAnswer, Grant, LeaseTerms, LockError, LockInfo, LockStrategy};
use crate::telemetry;
use payguard_core::FencingToken;
use payguard_core::{Clock, ConfigError, RandomSource, SplitMix64, TokioClock};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a lock is held: built with [`LockOptions::builder`], checked when
/// built.
///
/// # Default
///
/// Lease 30 s, renewed every 10 s (a third), trusted until 3 s (a tenth,
/// at least 1 s, at most a quarter) before it would end, no `at_least`,
/// no `at_most`. Waiting callers sleep until the holder's lease would end,
/// woken earlier by a release where the strategy announces them
/// ([`PgLeaseLock`] does), and otherwise ask again at least every 500 ms.
///
/// ```
/// use payguard_lock::LockOptions;
/// use std::time::Duration;
///
/// let options = LockOptions::builder(Duration::from_secs(60))
///     .heartbeat(Duration::from_secs(15))
///     .at_least(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(options.heartbeat_every(), Duration::from_secs(15));
/// # Ok::<(), payguard_lock::ConfigError>(())
/// ```
///
/// [`PgLeaseLock`]: crate::PgLeaseLock
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    ttl: Duration,
    heartbeat: Option<Duration>,
    safety_margin: Option<Duration>,
    at_least: Duration,
    at_most: Option<Duration>,
    poll: Option<Duration>,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self::with_ttl(Duration::from_secs(30))
    }
}

/// Builds [`LockOptions`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct LockOptionsBuilder {
    options: LockOptions,
}

impl LockOptionsBuilder {
    /// Renew every `every` (default a third of the lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.options.heartbeat = Some(every);
        self
    }

    /// Stop trusting the lease this long before it would end by our own
    /// clock, to cover clock-rate drift and scheduling delay (default a
    /// tenth of the lease, at least 1 s, at most a quarter of it).
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.options.safety_margin = Some(margin);
        self
    }

    /// Keep the lock taken at least this long after acquiring it, even if
    /// released sooner.
    pub fn at_least(mut self, at_least: Duration) -> Self {
        self.options.at_least = at_least;
        self
    }

    /// Never hold the lock longer than this: renewals stop extending the
    /// lease, and the job is told it lost the lock before the lease ends.
    pub fn at_most(mut self, at_most: Duration) -> Self {
        self.options.at_most = Some(at_most);
        self
    }

    /// The longest [`Locker::lock`] sleeps between attempts while the lock
    /// is busy (a cap on sleeping until the holder's lease ends; jittered
    /// up to +10 %).
    pub fn poll_every(mut self, poll: Duration) -> Self {
        self.options.poll = Some(poll);
        self
    }

    /// Checks the options and builds them.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting: a zero lease, a safety margin
    /// not shorter than the lease, a heartbeat not shorter than the lease
    /// minus the margin, `at_most` shorter than `at_least`, or a zero poll.
    pub fn build(self) -> Result<LockOptions, ConfigError> {
        let options = self.options;
        if options.ttl.is_zero() {
            return Err(ConfigError::new("ttl", "longer than zero"));
        }
        if options.margin() >= options.ttl {
            return Err(ConfigError::new("safety_margin", "shorter than the lease"));
        }
        let every = options.heartbeat_every();
        if every.is_zero() || every >= options.ttl - options.margin() {
            return Err(ConfigError::new(
                "heartbeat",
                "longer than zero and shorter than the lease minus the safety margin",
            ));
        }
        if options
            .at_most
            .is_some_and(|at_most| at_most < options.at_least)
        {
            return Err(ConfigError::new("at_most", "at least `at_least`"));
        }
        if options.poll.is_some_and(|poll| poll.is_zero()) {
            return Err(ConfigError::new("poll_every", "longer than zero"));
        }
        Ok(options)
    }
}

impl LockOptions {
    /// Options with a lease of `ttl`, renewed while held, to adjust and
    /// check.
    pub fn builder(ttl: Duration) -> LockOptionsBuilder {
        LockOptionsBuilder {
            options: Self::with_ttl(ttl),
        }
    }

    const fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            heartbeat: None,
            safety_margin: None,
            at_least: Duration::ZERO,
            at_most: None,
            poll: None,
        }
    }

    /// The lease length.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The renewal interval.
    pub fn heartbeat_every(&self) -> Duration {
        self.heartbeat.unwrap_or(self.ttl / 3)
    }

    /// The safety margin.
    pub fn margin(&self) -> Duration {
        self.safety_margin.unwrap_or_else(|| {
            (self.ttl / 10)
                .max(Duration::from_secs(1))
                .min(self.ttl / 4)
        })
    }

    /// How long a waiter sleeps after a busy answer: until the holder's
    /// lease ends (`expires_in`), capped by the poll interval, which
    /// defaults to 500 ms where no release would wake the waiter; at least
    /// 10 ms, plus up to 10 % so that waiters do not all ask at once.
    fn nap(
        &self,
        expires_in: Option<Duration>,
        woken_on_release: bool,
        random: &dyn RandomSource,
    ) -> Duration {
        const DEFAULT_POLL: Duration = Duration::from_millis(500);
        let cap = match (self.poll, woken_on_release) {
            (Some(poll), _) => poll,
            (None, true) => Duration::MAX,
            (None, false) => DEFAULT_POLL,
        };
        let nap = expires_in
            .unwrap_or(DEFAULT_POLL)
            .min(cap)
            .max(Duration::from_millis(10));
        nap.saturating_add(nap.mul_f64(random.next_f64() * 0.1))
    }

    /// What the strategy is asked for.
    pub fn terms(&self) -> LeaseTerms {
        LeaseTerms {
            ttl: self.ttl,
            at_least: self.at_least,
            at_most: self.at_most,
        }
    }
}

/// Takes locks through a [`LockStrategy`].
///
/// ```
/// use payguard_lock::{Acquisition, LockOptions, Locker, MemoryLock};
/// use std::{sync::Arc, time::Duration};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let locker = Locker::new(Arc::new(MemoryLock::new()));
/// let options = LockOptions::builder(Duration::from_secs(30)).build()?;
/// if let Acquisition::Acquired(guard) = locker.try_lock("escrow-release", &options).await? {
///     // Stops with Err(Lost) if the lease is lost while the job runs.
///     guard.run(async { /* release escrows, fenced by guard.token() */ }).await?;
///     guard.release().await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Locker {
    strategy: Arc<dyn LockStrategy>,
    process: ProcessId,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
}

/// The answer to [`Locker::try_lock`].
#[derive(Debug)]
#[must_use = "an acquired lock is released when dropped"]
pub enum Acquisition {
    /// Yours until released, dropped or lost.
    Acquired(LockGuard),
    /// Held by someone else.
    Busy(LockInfo),
}

impl Locker {
    /// A locker for this process over `strategy`.
    ///
    /// Time follows tokio's clock ([`TokioClock`]); jitter comes from a
    /// [`SplitMix64`] seeded from entropy.
    pub fn new(strategy: Arc<dyn LockStrategy>) -> Self {
        Self {
            strategy,
            process: ProcessId::current(),
            clock: Arc::new(TokioClock::new()),
            random: Arc::new(SplitMix64::from_entropy()),
        }
    }

    /// Measures leases and waits by `clock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Draws jitter from `random` (a seeded source replays a run).
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    fn now(&self) -> Instant {
        Instant::from_std(self.clock.now())
    }

    /// Uses `process` as this locker's process id (tests of identity
    /// collisions; owners stay distinct through their nonces).
    pub fn process_id(mut self, process: ProcessId) -> Self {
        self.process = process;
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> &Arc<dyn LockStrategy> {
        &self.strategy
    }

    /// Tries once to take `name`.
    ///
    /// # Errors
    ///
    /// The strategy's error (the lock is then not held).
    pub async fn try_lock(
        &self,
        name: &str,
        options: &LockOptions,
    ) -> Result<Acquisition, LockError> {
        let owner = Owner::new(self.process);
        let terms = options.terms();
        let sent = self.now();
        let kind = self.strategy.kind();
        match self.strategy.try_acquire(name, &owner, &terms).await? {
            AcquireAnswer::Acquired(grant) => {
                telemetry::acquired(name, grant.token, kind);
                Ok(Acquisition::Acquired(LockGuard::start(
                    Arc::clone(&self.strategy),
                    Arc::clone(&self.clock),
                    grant,
                    options,
                    sent,
                )))
            }
            AcquireAnswer::Busy(info) => {
                telemetry::busy(name, kind);
                Ok(Acquisition::Busy(info))
            }
        }
    }

    /// Takes `name`, waiting up to `timeout` while it is busy. A waiter
    /// does not poll: it sleeps until the holder's lease would end, and
    /// wakes earlier when the strategy announces a release.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] naming the holder, or as
    /// [`try_lock`](Self::try_lock).
    pub async fn lock(
        &self,
        name: &str,
        options: &LockOptions,
        timeout: Duration,
    ) -> Result<LockGuard, LockError> {
        let deadline = self.now() + timeout;
        // Listening before the first attempt: a release between a busy
        // answer and the wait is not missed.
        let mut notices = self.strategy.release_notices();
        loop {
            let info = match self.try_lock(name, options).await? {
                Acquisition::Acquired(guard) => return Ok(guard),
                Acquisition::Busy(info) => info,
            };
            let now = self.now();
            if now >= deadline {
                let info = self.holder(name, info).await;
                return Err(LockError::Timeout {
                    name: name.to_owned(),
                    holder: describe_holder(&info),
                });
            }
            let nap = options.nap(info.expires_in, notices.is_some(), &*self.random);
            let wake = (now + nap).min(deadline);
            match notices.as_mut() {
                Some(notices) => tokio::select! {
                    () = notices.released(name) => {
                        // Spread the waiters a release wakes together.
                        let spread = Duration::from_millis(self.random.next_u64() % 20);
                        tokio::time::sleep_until((self.now() + spread).min(deadline)).await;
                    }
                    () = tokio::time::sleep_until(wake) => {}
                },
                None => tokio::time::sleep_until(wake).await,
            }
        }
    }

    /// `busy`, or, if it does not name the holder (it lost a race with
    /// another taker), the holder as the store now reports it.
    pub async fn holder(&self, name: &str, busy: LockInfo) -> LockInfo {
        if busy.owner.is_some() {
            return busy;
        }
        self.locks(Some(name))
            .await
            .ok()
            .and_then(|locks| locks.into_iter().next())
            .unwrap_or(busy)
    }

    /// Every lock the store knows, or just `name`.
    ///
    /// # Errors
    ///
    /// The strategy's error.
    pub async fn locks(&self, name: Option<&str>) -> Result<Vec<LockInfo>, LockError> {
        self.strategy.locks(name).await
    }
}

/// `owner (host pid N), expires in 12.3s`, or `unknown`.
pub fn describe_holder(info: &LockInfo) -> String {
    let Some(owner) = &info.owner else {
        return "unknown".to_owned();
    };
    let mut text = owner.clone();
    match (&info.host, info.pid) {
        (Some(host), Some(pid)) => text.push_str(&format!(" ({host} pid {pid})")),
        (Some(host), None) => text.push_str(&format!(" ({host})")),
        (None, Some(pid)) => text.push_str(&format!(" (pid {pid})")),
        (None, None) => {}
    }
    if let Some(left) = info.expires_in {
        if let Some(token) = info.token {
            text.push_str(&format!(", token {token}"));
        }
        text.push_str(&format!(", expires in {:.1}s", left.as_secs_f64()));
    }
    text
}

/// A held lock. A background heartbeat renews the lease; when renewal is
/// refused, or the local deadline (send time + lease − safety margin)
/// passes without a renewal, the guard's cancellation fires and
/// [`is_held`](Self::is_held) turns false. Dropping the guard releases the
/// lock in the background; [`release`](Self::release) does it now.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    shared: Arc<Shared>,
    heartbeat: tokio::task::JoinHandle<()>,
    released: bool,
}

struct Shared {
    strategy: Arc<dyn LockStrategy>,
    clock: Arc<dyn Clock>,
    grant: Grant,
    terms: LeaseTerms,
    margin: Duration,
    every: Duration,
    hold_until: Option<Instant>,
    trusted_until: Mutex<Instant>,
    lost: CancellationToken,
    stop: CancellationToken,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.shared.grant.name)
            .field("token", &self.shared.grant.token)
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn now(&self) -> Instant {
        Instant::from_std(self.clock.now())
    }

    fn trusted_until(&self) -> Instant {
        *self
            .trusted_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Trusts the lease until `sent + remaining − margin` (never past
    /// `at_most`).
    fn trust(&self, sent: Instant, remaining: Duration) -> Instant {
        let mut until = sent + remaining.min(self.terms.ttl).saturating_sub(self.margin);
        if let Some(hold_until) = self.hold_until {
            until = until.min(hold_until);
        }
        *self
            .trusted_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
        until
    }

    fn mark_lost(&self, reason: &'static str) {
        if self.lost.is_cancelled() {
            return;
        }
        telemetry::lost(
            &self.grant.name,
            self.grant.token,
            self.strategy.kind(),
            reason,
        );
        self.lost.cancel();
    }
}

impl LockGuard {
    fn start(
        strategy: Arc<dyn LockStrategy>,
        clock: Arc<dyn Clock>,
        grant: Grant,
        options: &LockOptions,
        sent: Instant,
    ) -> Self {
        let margin = options.margin();
        let shared = Arc::new(Shared {
            strategy,
            clock,
            terms: options.terms(),
            margin,
            every: options.heartbeat_every(),
            hold_until: options
                .at_most
                .map(|at_most| sent + at_most.saturating_sub(margin)),
            trusted_until: Mutex::new(sent),
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
            grant,
        });
        shared.trust(sent, shared.grant.remaining);
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&shared)));
        Self {
            shared,
            heartbeat,
            released: false,
        }
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.shared.grant.name
    }

    /// This acquisition's fencing token: larger than every earlier
    /// holder's. Pass it to whatever the job writes, so a resource can
    /// refuse a holder that was taken over.
    pub fn token(&self) -> FencingToken {
        self.shared.grant.token
    }

    /// This acquisition's owner.
    pub fn owner(&self) -> &Owner {
        &self.shared.grant.owner
    }

    /// What renew and release use.
    pub fn grant(&self) -> &Grant {
        &self.shared.grant
    }

    /// Whether the lease can still be trusted: not lost, and the local
    /// deadline not passed.
    pub fn is_held(&self) -> bool {
        !self.shared.lost.is_cancelled() && self.shared.now() < self.shared.trusted_until()
    }

    /// Fires when the lease is lost. Hand it to the job so it stops.
    pub fn cancellation(&self) -> CancellationToken {
        self.shared.lost.clone()
    }

    /// Completes when the lease is lost.
    pub async fn lost(&self) {
        self.shared.lost.cancelled().await;
    }

    /// Runs `job` while the lease holds; if it is lost first, `job` is
    /// dropped (stopped at its next await) and the answer is
    /// [`LockError::Lost`].
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`].
    pub async fn run<F: Future>(&self, job: F) -> Result<F::Output, LockError> {
        tokio::select! {
            biased;
            () = self.shared.lost.cancelled() => Err(LockError::lost(self.name())),
            output = job => Ok(output),
        }
    }

    /// Releases the lock now (it stays taken until `at_least` after
    /// acquisition).
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`] if it was no longer ours (nothing changed);
    /// [`LockError::Unavailable`] (the lease then ends on its own).
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.shared.stop.cancel();
        self.heartbeat.abort();
        let shared = &self.shared;
        let result = shared.strategy.release(&shared.grant, &shared.terms).await;
        shared.lost.cancel();
        result
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.heartbeat.abort();
        if self.released {
            return;
        }
        self.shared.lost.cancel();
        let shared = Arc::clone(&self.shared);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = shared.strategy.release(&shared.grant, &shared.terms).await {
                    telemetry::release_failed(&shared.grant.name, &error);
                }
            });
        }
    }
}

async fn heartbeat(shared: Arc<Shared>) {
    let mut retry_soon = false;
    loop {
        let deadline = shared.trusted_until();
        let every = if retry_soon {
            shared.every / 4
        } else {
            shared.every
        };
        let wake = (shared.now() + every).min(deadline);
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
        if shared.now() >= deadline {
            shared.mark_lost("the local deadline passed without a renewal");
            return;
        }
        let sent = shared.now();
        let renewal = tokio::time::timeout_at(
            deadline,
            shared.strategy.renew(&shared.grant, &shared.terms),
        );
        let result = tokio::select! {
            () = shared.stop.cancelled() => return,
            result = renewal => result,
        };
        match result {
            Ok(Ok(remaining)) => {
                retry_soon = false;
                if shared.trust(sent, remaining) <= shared.now() {
                    shared.mark_lost("the lease reached at_most or its end");
                    return;
                }
            }
            Ok(Err(LockError::Lost { .. })) => {
                shared.mark_lost("renewal refused: the lease expired or was taken over");
                return;
            }
            Ok(Err(error)) => {
                retry_soon = true;
                telemetry::renewal_failed(&shared.grant.name, &error);
            }
            Err(_) => {
                shared.mark_lost("the local deadline passed while renewing");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let build = |builder: LockOptionsBuilder| builder.build().map_err(|error| error.setting());
        assert!(build(LockOptions::builder(Duration::from_secs(30))).is_ok());
        assert!(build(LockOptions::builder(Duration::from_millis(300))).is_ok());
        assert_eq!(build(LockOptions::builder(Duration::ZERO)), Err("ttl"));
        assert_eq!(
            build(LockOptions::builder(Duration::from_secs(10)).heartbeat(Duration::from_secs(10))),
            Err("heartbeat")
        );
        assert_eq!(
            build(
                LockOptions::builder(Duration::from_secs(10))
                    .safety_margin(Duration::from_secs(10))
            ),
            Err("safety_margin")
        );
        assert_eq!(
            build(
                LockOptions::builder(Duration::from_secs(10))
                    .at_least(Duration::from_secs(60))
                    .at_most(Duration::from_secs(30))
            ),
            Err("at_most")
        );
        assert_eq!(
            build(LockOptions::builder(Duration::from_secs(10)).poll_every(Duration::ZERO)),
            Err("poll_every")
        );
        assert_eq!(LockOptions::default().margin(), Duration::from_secs(3));
        assert_eq!(
            LockOptions::builder(Duration::from_secs(2))
                .build()
                .unwrap()
                .margin(),
            Duration::from_millis(500)
        );
    }
}
