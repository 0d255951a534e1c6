//! The `metrics` feature: state gauge, transitions and rejections, as the
//! crate documents them.

#![allow(clippy::unwrap_used)] // test helpers

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use payguard_breaker::{CircuitBreaker, FailureModel, State};
use payguard_core::{ManualClock, Outcome};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn state_transitions_and_rejections_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new();
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder()
            .name("paystack")
            .clock(Arc::new(clock.clone()))
            .failure_model(FailureModel::consecutive_failures(1))
            .open_for(Duration::from_secs(10))
            .half_open_probes(1)
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Transient);
        assert_eq!(breaker.state(), State::Open);
        assert!(breaker.try_acquire().is_err());
        assert!(breaker.try_acquire().is_err());
        clock.advance(Duration::from_secs(11));
        breaker.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(breaker.state(), State::Closed);
    });

    let mut transitions = Vec::new();
    let (mut state, mut rejected) = (None, None);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
                .unwrap()
        };
        assert_eq!(label("breaker"), "paystack");
        match (key.name(), value) {
            ("payguard_breaker_state", DebugValue::Gauge(level)) => {
                state = Some(level.into_inner())
            }
            ("payguard_breaker_rejected_calls_total", DebugValue::Counter(n)) => rejected = Some(n),
            ("payguard_breaker_transitions_total", DebugValue::Counter(n)) => {
                transitions.push((label("from"), label("to"), n));
            }
            (name, value) => panic!("undocumented metric {name}: {value:?}"),
        }
    }
    transitions.sort();
    assert_eq!(state, Some(f64::from(State::Closed.as_gauge())));
    assert_eq!(rejected, Some(2));
    let edge = |from: &str, to: &str| (from.to_owned(), to.to_owned(), 1);
    assert_eq!(
        transitions,
        vec![
            edge("closed", "open"),
            edge("half_open", "closed"),
            edge("open", "half_open"),
        ]
    );
}
