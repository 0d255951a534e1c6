//! The breaker itself: admission (`try_acquire`) and accounting (`Permit`).

use crate::config::{BreakerBuilder, FailureModel, ModelKind, OpenGrowth, StateChangeHook};
use crate::events::{self, ChangeReason, Snapshot, StateChange, WindowStats};
use crate::state::{GENERATION_MASK, State, Word};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::window::{Counts, Window};
use payguard_core::{Clock, Outcome, RandomSource};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A circuit breaker. Cheap to clone: clones share one state.
///
/// In the closed state, [`try_acquire`](Self::try_acquire) is one atomic
/// load and recording an outcome a few atomic instructions, with no lock and
/// no allocation. See the crate docs for the state machine.
///
/// ```
/// use payguard_breaker::{CircuitBreaker, FailureModel, State};
/// use payguard_core::Outcome;
///
/// let breaker = CircuitBreaker::builder()
///     .name("paystack")
///     .failure_model(FailureModel::consecutive_failures(3))
///     .build()?;
/// for _ in 0..3 {
///     let permit = breaker.try_acquire().expect("closed");
///     permit.record(Outcome::Transient); // a 503
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert!(rejected.retry_after().is_some()); // fail over, or tell the client when to come back
/// # Ok::<(), payguard_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Probe slot value: occupied flag | generation (20 bits) | acquired at (ms).
const OCCUPIED: u64 = 1 << 63;
const TICKET_MS_SHIFT: u32 = 20;

const fn ticket(generation: u64, now_ms: u64) -> u64 {
    OCCUPIED | (generation & GENERATION_MASK) | ((now_ms & ((1 << 42) - 1)) << TICKET_MS_SHIFT)
}

const fn ticket_generation(ticket: u64) -> u64 {
    ticket & GENERATION_MASK
}

const fn ticket_ms(ticket: u64) -> u64 {
    (ticket & !OCCUPIED) >> TICKET_MS_SHIFT
}

pub(crate) struct Inner {
    name: Arc<str>,
    model: FailureModel,
    slow_call: Option<(Duration, f64)>,
    count_throttled: bool,
    open_for: Duration,
    open_growth: Option<OpenGrowth>,
    successes_to_close: u32,
    probe_timeout_ms: u64,
    shadow: bool,
    on_state_change: Option<StateChangeHook>,
    clock: Arc<dyn Clock>,
    origin: Instant,

    state: AtomicU64,
    window: Window,
    probes: Box<[AtomicU64]>,
    /// generation << 32 | probe successes in that generation.
    probe_successes: AtomicU64,
    trips: AtomicU32,
    random: Arc<dyn RandomSource>,
    rejections: AtomicU64,
    shadow_rejections: AtomicU64,
    throttled: AtomicU64,
    lost_probes: AtomicU64,
    metrics: events::Metrics,
}

/// How an outcome counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    Ignored,
    Counted { failure: bool, slow: bool },
}

impl Inner {
    pub(crate) fn new(config: &BreakerBuilder) -> Self {
        let origin = config.clock.now();
        Self {
            name: Arc::from(&*config.name),
            model: config.model,
            slow_call: config
                .slow_call_duration
                .map(|threshold| (threshold, config.slow_call_rate)),
            count_throttled: config.count_throttled,
            open_for: config.open_for,
            open_growth: config.growth(),
            successes_to_close: config.successes_to_close.unwrap_or(config.probes),
            probe_timeout_ms: u64::try_from(config.probe_timeout.as_millis()).unwrap_or(u64::MAX),
            shadow: config.shadow,
            on_state_change: config.on_state_change.clone(),
            clock: Arc::clone(&config.clock),
            origin,
            state: AtomicU64::new(Word::new(State::Closed, 0, 0).0),
            window: Window::new(config.model.kind),
            probes: (0..config.probes).map(|_| AtomicU64::new(0)).collect(),
            probe_successes: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            random: Arc::clone(&config.random),
            rejections: AtomicU64::new(0),
            shadow_rejections: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            lost_probes: AtomicU64::new(0),
            metrics: events::Metrics::register(&config.name),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(
            self.clock
                .now()
                .saturating_duration_since(self.origin)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    #[inline]
    fn word(&self) -> Word {
        Word(self.state.load(Ordering::Acquire))
    }

    /// Nanoseconds since the origin (at least 1, so 0 can mean "not timed").
    fn now_ns(&self) -> u64 {
        u64::try_from(
            self.clock
                .now()
                .saturating_duration_since(self.origin)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
        .max(1)
    }

    /// When a permit starts timing: only if slow calls are detected.
    #[inline]
    fn started_ns(&self) -> u64 {
        if self.slow_call.is_some() {
            self.now_ns()
        } else {
            0
        }
    }

    #[inline]
    fn judge(&self, outcome: Outcome, started_ns: u64) -> Judgement {
        let failure = match outcome {
            Outcome::Success | Outcome::Permanent => false,
            Outcome::Throttled { .. } => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                if !self.count_throttled {
                    return Judgement::Ignored;
                }
                true
            }
            // Transient, TimedOut, Ambiguous, and anything added later.
            _ => true,
        };
        let slow = match self.slow_call {
            Some((threshold, _)) if started_ns != 0 => {
                Duration::from_nanos(self.now_ns().saturating_sub(started_ns)) >= threshold
            }
            _ => false,
        };
        Judgement::Counted { failure, slow }
    }

    #[inline]
    fn acquire(&self) -> Result<Token, Rejected> {
        let word = self.word();
        if word.state() == State::Closed {
            return Ok(Token::closed(word.generation(), self.started_ns()));
        }
        self.acquire_slow()
    }

    #[inline(never)]
    fn acquire_slow(&self) -> Result<Token, Rejected> {
        loop {
            let word = self.word();
            match word.state() {
                State::Closed | State::ForcedClosed => {
                    return Ok(Token::closed(word.generation(), self.started_ns()));
                }
                State::Disabled => return Ok(Token::UNTRACKED),
                State::ForcedOpen => return self.reject(State::ForcedOpen, None),
                State::Open => {
                    let now = self.now_ms();
                    if now < word.until_ms() {
                        let wait = Duration::from_millis(word.until_ms() - now);
                        return self.reject(State::Open, Some(wait));
                    }
                    let half_open = word.next(State::HalfOpen, 0);
                    if self
                        .state
                        .compare_exchange(word.0, half_open.0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.changed(
                            State::Open,
                            State::HalfOpen,
                            ChangeReason::OpenPeriodEnded,
                            None,
                        );
                    }
                }
                State::HalfOpen => match self.acquire_probe(word) {
                    Some(Ok(token)) => return Ok(token),
                    Some(Err(retry_after)) => return self.reject(State::HalfOpen, retry_after),
                    // The state moved on while taking a slot: look again.
                    None => {}
                },
            }
        }
    }

    /// Takes a probe slot for half-open generation `word`, reclaiming one
    /// whose probe outlived the probe timeout. `None` when the state changed
    /// meanwhile; `Some(Err(wait))` when every slot is taken.
    fn acquire_probe(&self, word: Word) -> Option<Result<Token, Option<Duration>>> {
        let generation = word.generation();
        let now = self.now_ms();
        let mine = ticket(generation, now);
        let mut soonest_free: Option<u64> = None;
        for (slot, probe) in self.probes.iter().enumerate() {
            let current = probe.load(Ordering::Acquire);
            let taken = current & OCCUPIED != 0 && ticket_generation(current) == generation;
            let lost = taken && now.saturating_sub(ticket_ms(current)) >= self.probe_timeout_ms;
            if taken && !lost {
                let frees_at = ticket_ms(current).saturating_add(self.probe_timeout_ms);
                soonest_free = Some(soonest_free.map_or(frees_at, |soonest| soonest.min(frees_at)));
                continue;
            }
            if probe
                .compare_exchange(current, mine, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            if self.word() != word {
                // Not half-open in this generation any more: give it back.
                let _ = probe.compare_exchange(mine, 0, Ordering::AcqRel, Ordering::Acquire);
                return None;
            }
            if lost {
                self.lost_probes.fetch_add(1, Ordering::Relaxed);
            }
            let slot = u8::try_from(slot).unwrap_or(u8::MAX);
            return Some(Ok(Token::probe(generation, slot, mine, self.started_ns())));
        }
        if self.word() != word {
            return None;
        }
        Some(Err(
            soonest_free.map(|at| Duration::from_millis(at.saturating_sub(now)))
        ))
    }

    fn reject(&self, state: State, retry_after: Option<Duration>) -> Result<Token, Rejected> {
        if self.shadow {
            self.shadow_rejections.fetch_add(1, Ordering::Relaxed);
            return Ok(Token::UNTRACKED);
        }
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejected();
        Err(Rejected { state, retry_after })
    }

    #[inline(always)]
    fn record(&self, token: Token, outcome: Outcome) {
        match token.kind() {
            TokenKind::Closed => self.record_closed(token, outcome),
            TokenKind::Probe => self.record_probe(token, outcome),
            TokenKind::Untracked | TokenKind::Spent => {}
        }
    }

    #[inline(always)]
    fn record_closed(&self, token: Token, outcome: Outcome) {
        let Judgement::Counted { failure, slow } = self.judge(outcome, token.started_ns) else {
            return;
        };
        let word = self.word();
        if word.generation() != token.generation() {
            return; // admitted before a state change; no longer counts
        }
        if let Some(counts) = self.window.record(failure, slow, || self.now_ms()) {
            self.consider_trip(word, counts);
        }
    }

    #[inline(never)]
    fn consider_trip(&self, word: Word, counts: Counts) {
        if word.state() == State::Closed
            && let Some(reason) = self.trip_reason(counts)
        {
            self.trip(word, reason, counts);
        }
    }

    #[inline(never)]
    fn record_probe(&self, token: Token, outcome: Outcome) {
        // A probe written off after the timeout no longer counts.
        if !self.release_probe(token) {
            return;
        }
        let Judgement::Counted { failure, slow } = self.judge(outcome, token.started_ns) else {
            return; // a throttled probe says nothing about health
        };
        let word = self.word();
        let generation = token.generation();
        if word.state() != State::HalfOpen || word.generation() != generation {
            return;
        }
        if failure || slow {
            let counts = Counts {
                calls: 1,
                failures: u64::from(failure),
                slow: u64::from(slow),
            };
            self.trip(word, ChangeReason::ProbeFailed, counts);
        } else if self.count_probe_success(generation) >= self.successes_to_close {
            let closed = word.next(State::Closed, 0);
            if self
                .state
                .compare_exchange(word.0, closed.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.trips.store(0, Ordering::Release);
                self.changed(
                    State::HalfOpen,
                    State::Closed,
                    ChangeReason::ProbesSucceeded,
                    None,
                );
            }
        }
    }

    fn cancel(&self, token: Token) {
        if token.kind() == TokenKind::Probe {
            self.release_probe(token);
        }
    }

    fn release_probe(&self, token: Token) -> bool {
        self.probes.get(token.slot()).is_some_and(|probe| {
            probe
                .compare_exchange(token.ticket, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    fn count_probe_success(&self, generation: u64) -> u32 {
        let updated = self
            .probe_successes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let count = if current >> 32 == generation {
                    (current & 0xFFFF_FFFF) + 1
                } else {
                    1
                };
                Some((generation << 32) | count)
            })
            .unwrap_or(0);
        let previous = if updated >> 32 == generation {
            updated & 0xFFFF_FFFF
        } else {
            0
        };
        u32::try_from(previous + 1).unwrap_or(u32::MAX)
    }

    fn trip_reason(&self, counts: Counts) -> Option<ChangeReason> {
        match self.model.kind {
            ModelKind::Consecutive { threshold } => {
                (counts.failures >= u64::from(threshold)).then_some(ChangeReason::FailureThreshold)
            }
            ModelKind::CountWindow { failure_rate, .. }
            | ModelKind::TimeWindow { failure_rate, .. } => {
                if counts.calls < u64::from(self.model.minimum_calls) || counts.calls == 0 {
                    return None;
                }
                let calls = counts.calls as f64;
                if counts.failures as f64 / calls >= failure_rate {
                    return Some(ChangeReason::FailureThreshold);
                }
                match self.slow_call {
                    Some((_, rate)) if counts.slow as f64 / calls >= rate => {
                        Some(ChangeReason::SlowCallThreshold)
                    }
                    _ => None,
                }
            }
        }
    }

    /// Opens the breaker from `word` (closed or half-open).
    fn trip(&self, word: Word, reason: ChangeReason, counts: Counts) {
        let trips = self.trips.load(Ordering::Acquire).saturating_add(1);
        let open_for = self.open_duration(trips);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX));
        let open = word.next(State::Open, until);
        if self
            .state
            .compare_exchange(word.0, open.0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.trips.store(trips, Ordering::Release);
            self.window.reset();
            self.changed(word.state(), State::Open, reason, Some((counts, open_for)));
        }
    }

    fn open_duration(&self, trips: u32) -> Duration {
        let Some(growth) = self.open_growth else {
            return self.open_for;
        };
        let exponent = i32::try_from(trips.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.open_for.as_secs_f64() * growth.factor.powi(exponent);
        let capped = grown.min(growth.max.as_secs_f64());
        let jittered = capped * (1.0 - growth.jitter * self.random.next_f64());
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(growth.max)
            .max(Duration::from_millis(1))
    }

    fn changed(
        &self,
        from: State,
        to: State,
        reason: ChangeReason,
        opened: Option<(Counts, Duration)>,
    ) {
        if self.on_state_change.is_none() && !cfg!(feature = "tracing") {
            return;
        }
        let counts = match opened {
            Some((counts, _)) => counts,
            None => self.window.counts(self.now_ms()),
        };
        let change = StateChange {
            name: Arc::clone(&self.name),
            from,
            to,
            reason,
            window: stats(counts),
            open_for: opened.map(|(_, open_for)| open_for),
        };
        events::report(&change);
        if let Some(hook) = &self.on_state_change {
            hook(&change);
        }
    }

    /// Moves to `to` by hand, whatever the state.
    fn set(&self, to: State) {
        let mut word = self.word();
        loop {
            let next = word.next(to, 0);
            match self
                .state
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(current) => word = Word(current),
            }
        }
        if matches!(to, State::Closed | State::ForcedClosed) {
            self.window.reset();
            self.trips.store(0, Ordering::Release);
        }
        self.changed(word.state(), to, ChangeReason::Manual, None);
    }

    fn snapshot(&self) -> Snapshot {
        let word = self.word();
        let now = self.now_ms();
        let retry_after = match word.state() {
            State::Open => Some(Duration::from_millis(word.until_ms().saturating_sub(now))),
            _ => None,
        };
        Snapshot {
            state: word.state(),
            window: stats(self.window.counts(now)),
            retry_after,
            consecutive_trips: self.trips.load(Ordering::Acquire),
            rejections: self.rejections.load(Ordering::Relaxed),
            shadow_rejections: self.shadow_rejections.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            lost_probes: self.lost_probes.load(Ordering::Relaxed),
        }
    }
}

fn stats(counts: Counts) -> WindowStats {
    WindowStats {
        calls: counts.calls,
        failures: counts.failures,
        slow_calls: counts.slow,
    }
}

impl CircuitBreaker {
    /// A builder with the defaults listed on [`BreakerBuilder`].
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Asks to make a call. Report how it went with [`Permit::record`];
    /// dropping the permit instead (a cancelled call) records nothing and
    /// frees a half-open probe's place.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the breaker is open, forced open, or half-open with
    /// every probe out; it says when to try again. In shadow mode this never
    /// fails.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        match self.inner.acquire() {
            Ok(token) => Ok(Permit {
                breaker: &self.inner,
                token,
            }),
            Err(rejected) => Err(rejected),
        }
    }

    /// The current state. An `Open` breaker whose period has ended reports
    /// `Open` until the next call moves it to `HalfOpen`.
    pub fn state(&self) -> State {
        self.inner.word().state()
    }

    /// State, window and counters, for health and metrics endpoints.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshot()
    }

    /// Rejects every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.inner.set(State::ForcedOpen);
    }

    /// Admits every call and keeps counting, but never opens, until
    /// [`reset`](Self::reset).
    pub fn force_closed(&self) {
        self.inner.set(State::ForcedClosed);
    }

    /// Admits every call and counts nothing, until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.inner.set(State::Disabled);
    }

    /// Back to a normal, closed breaker with an empty window.
    pub fn reset(&self) {
        self.inner.set(State::Closed);
    }

    #[cfg(feature = "tower")]
    pub(crate) fn acquire_token(&self) -> Result<Token, Rejected> {
        self.inner.acquire()
    }

    #[cfg(feature = "tower")]
    pub(crate) fn record_token(&self, token: Token, outcome: Outcome) {
        self.inner.record(token, outcome);
    }

    #[cfg(feature = "tower")]
    pub(crate) fn cancel_token(&self, token: Token) {
        self.inner.cancel(token);
    }
}

/// What a permit stands for: three words, each written and read whole, so
/// that handing it from `try_acquire` to `record` costs no store-forwarding
/// stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// generation (bits 0–31) | kind (32–39) | probe slot (40–47).
    meta: u64,
    ticket: u64,
    /// When timing started, in ns since the breaker's origin; 0 when the
    /// breaker does not look for slow calls.
    started_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Closed,
    Probe,
    Untracked,
    Spent,
}

impl Token {
    const UNTRACKED: Token = Token::new(TokenKind::Untracked, 0, 0, 0, 0);

    const fn new(kind: TokenKind, generation: u64, slot: u8, ticket: u64, started_ns: u64) -> Self {
        Self {
            meta: (generation & GENERATION_MASK) | ((kind as u64) << 32) | ((slot as u64) << 40),
            ticket,
            started_ns,
        }
    }

    #[inline]
    const fn closed(generation: u64, started_ns: u64) -> Self {
        Self::new(TokenKind::Closed, generation, 0, 0, started_ns)
    }

    const fn probe(generation: u64, slot: u8, ticket: u64, started_ns: u64) -> Self {
        Self::new(TokenKind::Probe, generation, slot, ticket, started_ns)
    }

    #[inline]
    const fn kind(self) -> TokenKind {
        match (self.meta >> 32) & 0xFF {
            0 => TokenKind::Closed,
            1 => TokenKind::Probe,
            2 => TokenKind::Untracked,
            _ => TokenKind::Spent,
        }
    }

    #[inline]
    const fn generation(self) -> u64 {
        self.meta & GENERATION_MASK
    }

    const fn slot(self) -> usize {
        ((self.meta >> 40) & 0xFF) as usize
    }

    #[inline]
    fn take(&mut self) -> Token {
        let token = *self;
        self.meta = (self.meta & !(0xFF << 32)) | ((TokenKind::Spent as u64) << 32);
        token
    }
}

/// Permission to make one call. Report its outcome with
/// [`record`](Self::record); a permit dropped unreported (the call was
/// cancelled) counts for nothing and frees its half-open probe place.
#[must_use = "record the outcome, or the call is not counted"]
pub struct Permit<'a> {
    breaker: &'a Inner,
    token: Token,
}

impl Permit<'_> {
    /// Reports how the call went.
    #[inline(always)] // the closed-state hot path; see benches/breaker.rs
    pub fn record(mut self, outcome: Outcome) {
        self.breaker.record(self.token.take(), outcome);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.token.kind() == TokenKind::Probe
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.token.kind() == TokenKind::Probe {
            self.breaker.cancel(self.token.take());
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("token", &self.token)
            .finish()
    }
}

/// A call the breaker turned away, and when it will admit one again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    state: State,
    retry_after: Option<Duration>,
}

impl Rejected {
    /// The state that rejected the call.
    pub fn state(&self) -> State {
        self.state
    }

    /// A stable code: `probes_busy` when half-open with every probe out,
    /// `circuit_open` otherwise.
    pub fn code(&self) -> &'static str {
        match self.state {
            State::HalfOpen => "probes_busy",
            _ => "circuit_open",
        }
    }

    /// How long until the breaker admits a call (the end of the open
    /// period, or the earliest probe timeout); `None` when forced open.
    /// Use it to fail over now, or for an HTTP `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (State::HalfOpen, Some(wait)) => write!(
                f,
                "circuit breaker is half-open and every probe is out; try again in {} ms",
                wait.as_millis()
            ),
            (state, Some(wait)) => write!(
                f,
                "circuit breaker is {state}; try again in {} ms",
                wait.as_millis()
            ),
            (state, None) => write!(f, "circuit breaker is {state}"),
        }
    }
}

impl std::error::Error for Rejected {}
