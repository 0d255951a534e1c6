//! [`RetryPolicy`]: what to retry, how often and how long to wait.

use crate::backoff::{Backoff, Jitter};
use crate::budget::RetryBudget;
use crate::telemetry::Metrics;
use payguard_core::{Clock, ConfigError};
use payguard_core::{RandomSource, SplitMix64};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How to retry: backoff shape, jitter, cap, stop conditions and budget.
/// Build one per downstream (per gateway, say) and share it; it is cheap to
/// clone and every call through it is independent, except for the budget and
/// the random source, which they share on purpose.
///
/// # Default
///
/// Exponential backoff from 100 ms with factor 2, full jitter, `max_delay`
/// 2 s, 3 attempts, no deadline, no per-attempt timeout, no budget, random
/// source seeded from the operating system, name `"default"`.
///
/// ```
/// use payguard_retry::{Backoff, Jitter, RetryPolicy};
/// use std::time::Duration;
///
/// let policy = RetryPolicy::builder()
///     .name("paystack")
///     .backoff(Backoff::exponential(Duration::from_millis(200), 2.0))
///     .jitter(Jitter::Full)
///     .max_delay(Duration::from_secs(5))
///     .max_attempts(4)
///     .deadline(Duration::from_secs(20))
///     .attempt_timeout(Duration::from_secs(8))
///     .build()?;
/// # let _ = policy;
/// # Ok::<(), payguard_retry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) name: Cow<'static, str>,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) max_delay: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) metrics: Metrics,
}

impl RetryPolicy {
    /// A builder with the defaults above.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// The policy's name, used in `tracing` events and `metrics` labels.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most attempts a call makes, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("name", &self.name)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("max_delay", &self.max_delay)
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RetryPolicy`]; see its `# Default` section.
#[derive(Clone)]
pub struct RetryPolicyBuilder {
    name: Cow<'static, str>,
    backoff: Backoff,
    jitter: Jitter,
    max_delay: Duration,
    max_attempts: u32,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    budget: Option<Arc<RetryBudget>>,
    seed: Option<u64>,
    random: Option<Arc<dyn RandomSource>>,
    clock: Option<Arc<dyn Clock>>,
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            backoff: Backoff::exponential(Duration::from_millis(100), 2.0),
            jitter: Jitter::Full,
            max_delay: Duration::from_secs(2),
            max_attempts: 3,
            deadline: None,
            attempt_timeout: None,
            budget: None,
            seed: None,
            random: None,
            clock: None,
        }
    }
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("name", &self.name)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("max_delay", &self.max_delay)
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl RetryPolicyBuilder {
    /// Names the policy in `tracing` events and `metrics` labels. With the
    /// `metrics` feature, counters are registered by [`build`](Self::build),
    /// so build policies after installing the recorder.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The delay shape.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How delays are randomised.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The cap: no single sleep, computed or asked for by the server
    /// (`Retry-After`), is longer.
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The most attempts per call, the first included (at least 1).
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The total time a call may take, measured from its first attempt. No
    /// sleep is started that would end past it, and each attempt is cut off
    /// when it is reached, so a call never overruns it.
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The longest a single attempt may run (async calls only; a blocking
    /// call cannot be interrupted).
    pub const fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A retry budget shared with other calls and policies.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Seeds the jitter, for reproducible delays.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Supplies the randomness for jitter (overrides [`seed`](Self::seed)).
    pub fn random_source(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// The clock deadlines are measured by. By default async calls follow
    /// tokio's clock (so paused-time tests work) and blocking calls the
    /// system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting: `max_attempts` is 0, the
    /// exponential factor is below 1 or not finite, a schedule is empty, the
    /// smallest backoff delay is above `max_delay`, or the deadline or
    /// attempt timeout is zero.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new("max_attempts", "at least 1"));
        }
        self.backoff.validate()?;
        let base = self.backoff.base();
        if base > self.max_delay {
            return Err(ConfigError::new(
                "max_delay",
                format!("at least the smallest backoff delay ({base:?})"),
            ));
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err(ConfigError::new("deadline", "longer than zero"));
        }
        if self.attempt_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new("attempt_timeout", "longer than zero"));
        }
        let random = match (self.random, self.seed) {
            (Some(random), _) => random,
            (None, Some(seed)) => Arc::new(SplitMix64::new(seed)),
            (None, None) => Arc::new(SplitMix64::from_entropy()),
        };
        Ok(RetryPolicy {
            metrics: Metrics::register(&self.name),
            name: self.name,
            backoff: self.backoff,
            jitter: self.jitter,
            max_delay: self.max_delay,
            max_attempts: self.max_attempts,
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
            budget: self.budget,
            random,
            clock: self.clock,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_build_errors() {
        let ms = Duration::from_millis(1);
        let cases = [
            (RetryPolicy::builder().max_attempts(0), "max_attempts"),
            (
                RetryPolicy::builder().backoff(Backoff::exponential(ms, 0.5)),
                "backoff",
            ),
            (
                RetryPolicy::builder().backoff(Backoff::exponential(ms, f64::NAN)),
                "backoff",
            ),
            (
                RetryPolicy::builder().backoff(Backoff::exponential(ms, f64::INFINITY)),
                "backoff",
            ),
            (
                RetryPolicy::builder().backoff(Backoff::schedule([])),
                "backoff",
            ),
            (
                RetryPolicy::builder()
                    .backoff(Backoff::constant(10 * ms))
                    .max_delay(ms),
                "max_delay",
            ),
            (RetryPolicy::builder().deadline(Duration::ZERO), "deadline"),
            (
                RetryPolicy::builder().attempt_timeout(Duration::ZERO),
                "attempt_timeout",
            ),
        ];
        for (builder, setting) in cases {
            let error = builder.build().unwrap_err();
            assert_eq!(error.setting(), setting);
            assert!(error.to_string().starts_with("invalid configuration: "));
        }
    }

    #[test]
    fn defaults_build() {
        let policy = RetryPolicy::builder().build().unwrap();
        assert_eq!(policy.max_attempts(), 3);
        assert_eq!(policy.name(), "default");
    }
}
