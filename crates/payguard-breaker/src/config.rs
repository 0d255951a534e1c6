//! [`BreakerBuilder`] and [`FailureModel`]: when a breaker opens and for how long.

use crate::breaker::{CircuitBreaker, Inner};
use crate::events::StateChange;
use payguard_core::{Clock, ConfigError, RandomSource, SplitMix64, SystemClock};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// When a closed breaker opens.
///
/// ```
/// use payguard_breaker::FailureModel;
/// use std::time::Duration;
///
/// // Five failures in a row.
/// let streak = FailureModel::consecutive_failures(5);
/// // Half of the last 100 calls failed, once at least 20 were seen.
/// let count = FailureModel::count_window(100).failure_rate(0.5).minimum_calls(20);
/// // A quarter of the calls of the last 30 s (in 10 buckets) failed.
/// let time = FailureModel::time_window(Duration::from_secs(30))
///     .buckets(10)
///     .failure_rate(0.25)
///     .minimum_calls(50);
/// # let _ = (streak, count, time);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureModel {
    pub(crate) kind: ModelKind,
    pub(crate) minimum_calls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ModelKind {
    Consecutive {
        threshold: u32,
    },
    CountWindow {
        size: u32,
        failure_rate: f64,
    },
    TimeWindow {
        window: Duration,
        buckets: u32,
        failure_rate: f64,
    },
}

impl FailureModel {
    /// Opens after `threshold` failures in a row (slow calls count as
    /// failures when slow-call detection is on).
    pub const fn consecutive_failures(threshold: u32) -> Self {
        Self {
            kind: ModelKind::Consecutive { threshold },
            minimum_calls: 1,
        }
    }

    /// Opens when at least [`failure_rate`](Self::failure_rate) (default
    /// 0.5) of the last `size` calls failed. Minimum calls default to `size`.
    pub const fn count_window(size: u32) -> Self {
        Self {
            kind: ModelKind::CountWindow {
                size,
                failure_rate: 0.5,
            },
            minimum_calls: size,
        }
    }

    /// Opens when at least [`failure_rate`](Self::failure_rate) (default
    /// 0.5) of the calls in the last `window` failed. The window slides in
    /// [`buckets`](Self::buckets) steps (default 10). Minimum calls default
    /// to 100.
    pub const fn time_window(window: Duration) -> Self {
        Self {
            kind: ModelKind::TimeWindow {
                window,
                buckets: 10,
                failure_rate: 0.5,
            },
            minimum_calls: 100,
        }
    }

    /// The share of failed calls (above 0, at most 1) that opens a window
    /// model. Ignored by `consecutive_failures`.
    pub const fn failure_rate(mut self, rate: f64) -> Self {
        match &mut self.kind {
            ModelKind::CountWindow { failure_rate, .. }
            | ModelKind::TimeWindow { failure_rate, .. } => *failure_rate = rate,
            ModelKind::Consecutive { .. } => {}
        }
        self
    }

    /// How many steps a time window slides in (1 to 1000). Ignored by the
    /// other models.
    pub const fn buckets(mut self, count: u32) -> Self {
        if let ModelKind::TimeWindow { buckets, .. } = &mut self.kind {
            *buckets = count;
        }
        self
    }

    /// The fewest calls in the window before a rate is judged (a window
    /// with 2 calls and 1 failure is not a 50 % failure rate worth opening
    /// for). Ignored by `consecutive_failures`.
    pub const fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }
}

pub(crate) type StateChangeHook = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Builds a [`CircuitBreaker`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | failure model | `count_window(100).failure_rate(0.5).minimum_calls(20)` |
/// | slow calls | not detected (a `slow_call_duration` turns it on; `slow_call_rate` 1.0) |
/// | throttled (429) outcomes | tracked, not counted as failures |
/// | open for | 30 s; no growth (`open_growth` 1.0), `max_open_for` 10 min, no jitter |
/// | half-open probes | 1 at a time; 1 success closes |
/// | probe timeout | 30 s |
/// | shadow mode | off |
/// | clock | [`SystemClock`] |
/// | randomness | [`SplitMix64`] seeded from entropy |
#[derive(Clone)]
pub struct BreakerBuilder {
    pub(crate) name: Cow<'static, str>,
    pub(crate) model: FailureModel,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate: f64,
    pub(crate) count_throttled: bool,
    pub(crate) open_for: Duration,
    pub(crate) open_growth: f64,
    pub(crate) max_open_for: Duration,
    pub(crate) open_jitter: f64,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: Option<u32>,
    pub(crate) probe_timeout: Duration,
    pub(crate) shadow: bool,
    pub(crate) on_state_change: Option<StateChangeHook>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn RandomSource>,
}

/// How the open period grows with consecutive trips.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OpenGrowth {
    pub(crate) factor: f64,
    pub(crate) max: Duration,
    pub(crate) jitter: f64,
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            model: FailureModel::count_window(100)
                .failure_rate(0.5)
                .minimum_calls(20),
            slow_call_duration: None,
            slow_call_rate: 1.0,
            count_throttled: false,
            open_for: Duration::from_secs(30),
            open_growth: 1.0,
            max_open_for: Duration::from_secs(600),
            open_jitter: 0.0,
            probes: 1,
            successes_to_close: None,
            probe_timeout: Duration::from_secs(30),
            shadow: false,
            on_state_change: None,
            clock: Arc::new(SystemClock),
            random: Arc::new(SplitMix64::from_entropy()),
        }
    }
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("slow_call_rate", &self.slow_call_rate)
            .field("count_throttled", &self.count_throttled)
            .field("open_for", &self.open_for)
            .field("open_growth", &self.open_growth)
            .field("max_open_for", &self.max_open_for)
            .field("open_jitter", &self.open_jitter)
            .field("probes", &self.probes)
            .field("successes_to_close", &self.successes_to_close)
            .field("probe_timeout", &self.probe_timeout)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    /// Names the breaker in events and `tracing` output.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// When the breaker opens.
    pub const fn failure_model(mut self, model: FailureModel) -> Self {
        self.model = model;
        self
    }

    /// Counts calls that take at least `threshold` as slow (turns slow-call
    /// detection on); with `consecutive_failures`, a slow call counts as a
    /// failure.
    pub const fn slow_call_duration(mut self, threshold: Duration) -> Self {
        self.slow_call_duration = Some(threshold);
        self
    }

    /// The share of slow calls (above 0, at most 1) that opens a window
    /// model.
    pub const fn slow_call_rate(mut self, rate: f64) -> Self {
        self.slow_call_rate = rate;
        self
    }

    /// Whether [`Outcome::Throttled`](payguard_core::Outcome::Throttled)
    /// (429) counts as a failure. By default it is tracked on its own: a
    /// rate limit is the gateway protecting itself, not failing.
    pub const fn count_throttled(mut self, count: bool) -> Self {
        self.count_throttled = count;
        self
    }

    /// How long the breaker stays open after a trip.
    pub const fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }

    /// Multiplies the open period by `factor` (at least 1) for each trip in
    /// a row (a trip from half-open counts), up to
    /// [`max_open_for`](Self::max_open_for).
    pub const fn open_growth(mut self, factor: f64) -> Self {
        self.open_growth = factor;
        self
    }

    /// The longest a grown open period lasts (at least `open_for`, at most
    /// a year).
    pub const fn max_open_for(mut self, duration: Duration) -> Self {
        self.max_open_for = duration;
        self
    }

    /// Takes up to this share (0 to 1) off each open period at random, so a
    /// fleet of breakers does not probe in step.
    pub const fn open_jitter(mut self, jitter: f64) -> Self {
        self.open_jitter = jitter;
        self
    }

    /// The most probe calls admitted at a time while half-open (1 to 64).
    pub const fn half_open_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// How many probe successes close the breaker (default: the number of
    /// probes). Any probe failure opens it again.
    pub const fn successes_to_close(mut self, successes: u32) -> Self {
        self.successes_to_close = Some(successes);
        self
    }

    /// A probe that has not reported after this long is written off and its
    /// place given to a new probe, so half-open never gets stuck.
    pub const fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Records decisions without acting on them: calls that would be
    /// rejected are admitted (and counted in
    /// [`Snapshot::shadow_rejections`](crate::Snapshot::shadow_rejections)).
    /// For tuning thresholds on live traffic.
    pub const fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Called on every state change, by the thread that made it.
    pub fn on_state_change(mut self, hook: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.on_state_change = Some(Arc::new(hook));
        self
    }

    /// The clock open periods, time windows and slow calls are measured by.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where open-period jitter comes from (default: a [`SplitMix64`]
    /// seeded from entropy, so a fleet does not jitter in step).
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// Seeds the jitter, to replay a run.
    pub fn seed(self, seed: u64) -> Self {
        self.random(Arc::new(SplitMix64::new(seed)))
    }

    /// Checks the settings and builds the breaker.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first setting out of range.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.validate()?;
        Ok(self.build_checked())
    }

    /// Builds a breaker from settings already validated.
    pub(crate) fn build_checked(self) -> CircuitBreaker {
        CircuitBreaker::from_inner(Inner::new(&self))
    }

    /// The open-period growth, if any is configured.
    pub(crate) fn growth(&self) -> Option<OpenGrowth> {
        (self.open_growth > 1.0 || self.open_jitter > 0.0).then_some(OpenGrowth {
            factor: self.open_growth,
            max: self.max_open_for,
            jitter: self.open_jitter,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, expected: &'static str| {
            Err(ConfigError::new(setting, expected))
        };
        let rate_ok = |rate: f64| rate > 0.0 && rate <= 1.0;
        match self.model.kind {
            ModelKind::Consecutive { threshold: 0 } => {
                return invalid("consecutive_failures", "at least 1");
            }
            ModelKind::CountWindow { size, .. } if size == 0 || size > 1_000_000 => {
                return invalid("count_window", "1 to 1 000 000 calls");
            }
            ModelKind::CountWindow { failure_rate, .. } if !rate_ok(failure_rate) => {
                return invalid("failure_rate", "above 0 and at most 1");
            }
            ModelKind::TimeWindow { buckets, .. } if buckets == 0 || buckets > 1000 => {
                return invalid("buckets", "1 to 1000");
            }
            ModelKind::TimeWindow {
                window, buckets, ..
            } if window.as_millis() < u128::from(buckets) => {
                return invalid("time_window", "at least 1 ms per bucket");
            }
            ModelKind::TimeWindow { failure_rate, .. } if !rate_ok(failure_rate) => {
                return invalid("failure_rate", "above 0 and at most 1");
            }
            _ => {}
        }
        if self.model.minimum_calls == 0 {
            return invalid("minimum_calls", "at least 1");
        }
        if self
            .slow_call_duration
            .is_some_and(|threshold| threshold.is_zero())
        {
            return invalid("slow_call_duration", "longer than zero");
        }
        if !rate_ok(self.slow_call_rate) {
            return invalid("slow_call_rate", "above 0 and at most 1");
        }
        if self.open_for.is_zero() || self.open_for > Duration::from_secs(365 * 86_400) {
            return invalid("open_for", "longer than zero and at most a year");
        }
        if !(self.open_growth.is_finite() && self.open_growth >= 1.0) {
            return invalid("open_growth", "a finite number of at least 1");
        }
        if self.max_open_for < self.open_for
            || self.max_open_for > Duration::from_secs(365 * 86_400)
        {
            return invalid("max_open_for", "between open_for and a year");
        }
        if !(0.0..=1.0).contains(&self.open_jitter) {
            return invalid("open_jitter", "from 0 to 1");
        }
        if self.probes == 0 || self.probes > 64 {
            return invalid("half_open_probes", "1 to 64");
        }
        if self.successes_to_close == Some(0) {
            return invalid("successes_to_close", "at least 1");
        }
        if self.probe_timeout < Duration::from_millis(1) {
            return invalid("probe_timeout", "at least 1 ms");
        }
        Ok(())
    }
}
