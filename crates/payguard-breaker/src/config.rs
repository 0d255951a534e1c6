//! [`BreakerBuilder`] and [`FailureModel`]: when a breaker opens and for how long.

use crate::breaker::{CircuitBreaker, Inner};
use crate::events::StateChange;
use payguard_core::{Clock, SystemClock};
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
/// let count = FailureModel::count_window(100, 0.5).minimum_calls(20);
/// // A quarter of the calls of the last 30 s (in 10 buckets) failed.
/// let time = FailureModel::time_window(Duration::from_secs(30), 10, 0.25).minimum_calls(50);
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

    /// Opens when at least `failure_rate` (0 < rate ≤ 1) of the last `size`
    /// calls failed. Minimum calls default to `size`.
    pub const fn count_window(size: u32, failure_rate: f64) -> Self {
        Self {
            kind: ModelKind::CountWindow { size, failure_rate },
            minimum_calls: size,
        }
    }

    /// Opens when at least `failure_rate` of the calls in the last `window`
    /// failed. The window slides in `buckets` steps. Minimum calls default
    /// to 100.
    pub const fn time_window(window: Duration, buckets: u32, failure_rate: f64) -> Self {
        Self {
            kind: ModelKind::TimeWindow {
                window,
                buckets,
                failure_rate,
            },
            minimum_calls: 100,
        }
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
/// | failure model | `count_window(100, 0.5).minimum_calls(20)` |
/// | slow calls | not detected |
/// | throttled (429) outcomes | tracked, not counted as failures |
/// | open for | 30 s, no growth |
/// | half-open probes | 1 at a time; 1 success closes |
/// | probe timeout | 30 s |
/// | shadow mode | off |
/// | clock | [`SystemClock`] |
#[derive(Clone)]
pub struct BreakerBuilder {
    pub(crate) name: Cow<'static, str>,
    pub(crate) model: FailureModel,
    pub(crate) slow_call: Option<(Duration, f64)>,
    pub(crate) count_throttled: bool,
    pub(crate) open_for: Duration,
    pub(crate) open_growth: Option<OpenGrowth>,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: Option<u32>,
    pub(crate) probe_timeout: Duration,
    pub(crate) shadow: bool,
    pub(crate) on_state_change: Option<StateChangeHook>,
    pub(crate) clock: Arc<dyn Clock>,
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
            model: FailureModel::count_window(100, 0.5).minimum_calls(20),
            slow_call: None,
            count_throttled: false,
            open_for: Duration::from_secs(30),
            open_growth: None,
            probes: 1,
            successes_to_close: None,
            probe_timeout: Duration::from_secs(30),
            shadow: false,
            on_state_change: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("slow_call", &self.slow_call)
            .field("count_throttled", &self.count_throttled)
            .field("open_for", &self.open_for)
            .field("open_growth", &self.open_growth)
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

    /// Counts calls that take at least `threshold` as slow, and opens when
    /// at least `rate` of the window's calls were slow (window models); with
    /// `consecutive_failures`, a slow call counts as a failure.
    pub const fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow_call = Some((threshold, rate));
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

    /// Grows the open period by `factor` for each trip in a row (a trip from
    /// half-open counts), up to `max`, with up to `jitter` (0 to 1) of it
    /// taken off at random so that a fleet does not probe in step.
    pub const fn open_growth(mut self, factor: f64, max: Duration, jitter: f64) -> Self {
        self.open_growth = Some(OpenGrowth {
            factor,
            max,
            jitter,
        });
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

    /// Checks the settings and builds the breaker.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first setting out of range.
    pub fn build(&self) -> Result<CircuitBreaker, InvalidConfig> {
        self.validate()?;
        Ok(CircuitBreaker::from_inner(Inner::new(self)))
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |setting: &'static str, expected: &'static str| {
            Err(InvalidConfig { setting, expected })
        };
        let rate_ok = |rate: f64| rate > 0.0 && rate <= 1.0;
        match self.model.kind {
            ModelKind::Consecutive { threshold: 0 } => {
                return invalid("consecutive_failures", "at least 1");
            }
            ModelKind::CountWindow { size, .. } if size == 0 || size > 1_000_000 => {
                return invalid("count_window size", "1 to 1 000 000 calls");
            }
            ModelKind::CountWindow { failure_rate, .. } if !rate_ok(failure_rate) => {
                return invalid("failure_rate", "above 0 and at most 1");
            }
            ModelKind::TimeWindow { buckets, .. } if buckets == 0 || buckets > 1000 => {
                return invalid("time_window buckets", "1 to 1000");
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
        if let Some((threshold, rate)) = self.slow_call {
            if threshold.is_zero() {
                return invalid("slow_calls threshold", "longer than zero");
            }
            if !rate_ok(rate) {
                return invalid("slow_calls rate", "above 0 and at most 1");
            }
        }
        if self.open_for.is_zero() || self.open_for > Duration::from_secs(365 * 86_400) {
            return invalid("open_for", "longer than zero and at most a year");
        }
        if let Some(growth) = self.open_growth {
            if !(growth.factor.is_finite() && growth.factor >= 1.0) {
                return invalid("open_growth factor", "a finite number of at least 1");
            }
            if growth.max < self.open_for || growth.max > Duration::from_secs(365 * 86_400) {
                return invalid("open_growth max", "between open_for and a year");
            }
            if !(0.0..=1.0).contains(&growth.jitter) {
                return invalid("open_growth jitter", "from 0 to 1");
            }
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

/// A breaker setting out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    setting: &'static str,
    expected: &'static str,
}

impl InvalidConfig {
    pub(crate) const fn new(setting: &'static str, expected: &'static str) -> Self {
        Self { setting, expected }
    }

    /// The setting that is wrong.
    pub fn setting(&self) -> &str {
        self.setting
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker setting {}: expected {}",
            self.setting, self.expected
        )
    }
}

impl std::error::Error for InvalidConfig {}
