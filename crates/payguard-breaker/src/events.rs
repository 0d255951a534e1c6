//! State-change events, window statistics and telemetry: `tracing`
//! events and `metrics`, each compiled to nothing without its feature.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `payguard_breaker_state` | gauge | `breaker`; [`State::as_gauge`]: 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed, 5 disabled |
//! | `payguard_breaker_transitions_total` | counter | `breaker`, `from`, `to` ([`State::as_str`]) |
//! | `payguard_breaker_rejected_calls_total` | counter | `breaker` |
//!
//! The state gauge and the rejection counter are registered when the
//! breaker is built (install the recorder first); a rejection increments an
//! existing handle.

use crate::state::State;
use std::time::Duration;

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeReason {
    /// The failure rate (or the failure streak) reached its threshold.
    FailureThreshold,
    /// The slow-call rate reached its threshold.
    SlowCallThreshold,
    /// The open period ended; probes are admitted.
    OpenPeriodEnded,
    /// A probe failed while half-open.
    ProbeFailed,
    /// Enough probes succeeded while half-open.
    ProbesSucceeded,
    /// Changed by hand (`force_open`, `force_closed`, `disable`, `reset`).
    Manual,
}

impl ChangeReason {
    /// A short snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeReason::FailureThreshold => "failure_threshold",
            ChangeReason::SlowCallThreshold => "slow_call_threshold",
            ChangeReason::OpenPeriodEnded => "open_period_ended",
            ChangeReason::ProbeFailed => "probe_failed",
            ChangeReason::ProbesSucceeded => "probes_succeeded",
            ChangeReason::Manual => "manual",
        }
    }
}

/// A state change, passed to the `on_state_change` hook.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: ChangeReason,
    pub(crate) window: WindowStats,
    pub(crate) open_for: Option<Duration>,
}

impl StateChange {
    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The state before.
    pub fn from(&self) -> State {
        self.from
    }
    /// The state after.
    pub fn to(&self) -> State {
        self.to
    }
    /// Why.
    pub fn reason(&self) -> ChangeReason {
        self.reason
    }
    /// The window at the moment of the change.
    pub fn window(&self) -> WindowStats {
        self.window
    }
    /// For a change to `Open`: how long it stays open.
    pub fn open_for(&self) -> Option<Duration> {
        self.open_for
    }
}

/// The failure model's window: calls, failures and slow calls counted, and
/// the rates they make.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    /// Calls in the window (for `consecutive_failures`, the current streak).
    pub calls: u64,
    /// Failures among them.
    pub failures: u64,
    /// Slow calls among them.
    pub slow_calls: u64,
}

impl WindowStats {
    /// `failures / calls`, 0 when there were no calls.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// `slow_calls / calls`, 0 when there were no calls.
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow_calls, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A breaker's state and counters, for health and metrics endpoints.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current state.
    pub state: State,
    /// The failure model's window.
    pub window: WindowStats,
    /// For `Open` (and `HalfOpen` with every probe out): when a call may be
    /// admitted again.
    pub retry_after: Option<Duration>,
    /// Trips in a row without closing in between (drives open growth).
    pub consecutive_trips: u32,
    /// Calls rejected since the breaker was built.
    pub rejections: u64,
    /// Calls shadow mode admitted that would have been rejected.
    pub shadow_rejections: u64,
    /// Throttled (429) outcomes seen.
    pub throttled: u64,
    /// Probes written off after the probe timeout.
    pub lost_probes: u64,
}

/// A breaker's metric handles (empty without the `metrics` feature).
#[derive(Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    rejected: Option<metrics::Counter>,
}

impl Metrics {
    #[allow(unused_variables)]
    pub(crate) fn register(name: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!("payguard_breaker_state", "breaker" => name.to_owned())
                .set(f64::from(State::Closed.as_gauge()));
            Self {
                rejected: Some(metrics::counter!(
                    "payguard_breaker_rejected_calls_total",
                    "breaker" => name.to_owned()
                )),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self::default()
    }

    pub(crate) fn rejected(&self) {
        #[cfg(feature = "metrics")]
        if let Some(counter) = &self.rejected {
            counter.increment(1);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Reports a state change to `tracing` and `metrics`.
#[allow(unused_variables)]
pub(crate) fn report(change: &StateChange) {
    #[cfg(feature = "metrics")]
    {
        let breaker = change.name.to_string();
        metrics::gauge!("payguard_breaker_state", "breaker" => breaker.clone())
            .set(f64::from(change.to.as_gauge()));
        metrics::counter!(
            "payguard_breaker_transitions_total",
            "breaker" => breaker,
            "from" => change.from.as_str(),
            "to" => change.to.as_str()
        )
        .increment(1);
    }
    #[cfg(feature = "tracing")]
    match change.to {
        State::Open | State::ForcedOpen => tracing::warn!(
            breaker = %change.name,
            from = change.from.as_str(),
            to = change.to.as_str(),
            reason = change.reason.as_str(),
            calls = change.window.calls,
            failures = change.window.failures,
            slow_calls = change.window.slow_calls,
            open_for_ms = change.open_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "circuit breaker opened"
        ),
        _ => tracing::info!(
            breaker = %change.name,
            from = change.from.as_str(),
            to = change.to.as_str(),
            reason = change.reason.as_str(),
            "circuit breaker changed state"
        ),
    }
}
