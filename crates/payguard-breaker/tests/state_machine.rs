//! The state machine, driven by a manual clock.

#![allow(clippy::unwrap_used)] // test helpers

use payguard_breaker::{
    BreakerBuilder, ChangeReason, CircuitBreaker, FailureModel, State, StateChange,
};
use payguard_core::{ManualClock, Outcome};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn builder(clock: &ManualClock) -> BreakerBuilder {
    CircuitBreaker::builder()
        .name("gateway")
        .clock(Arc::new(clock.clone()))
        .open_for(10 * SEC)
}

fn record(breaker: &CircuitBreaker, outcome: Outcome) {
    breaker.try_acquire().unwrap().record(outcome);
}

#[test]
fn consecutive_failures_open_and_a_success_resets_the_streak() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .failure_model(FailureModel::consecutive_failures(3))
        .build()
        .unwrap();
    record(&breaker, Outcome::Transient);
    record(&breaker, Outcome::TimedOut);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Ambiguous);
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Closed);
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn declines_never_open_the_breaker_and_timeouts_do() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .failure_model(
            FailureModel::count_window(10)
                .failure_rate(0.5)
                .minimum_calls(10),
        )
        .build()
        .unwrap();
    for _ in 0..1000 {
        record(&breaker, Outcome::Permanent); // card_declined, insufficient_funds, 422
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().window.failures, 0);
    for _ in 0..5 {
        record(&breaker, Outcome::TimedOut);
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn count_window_waits_for_minimum_calls_then_judges_the_rate() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .failure_model(
            FailureModel::count_window(20)
                .failure_rate(0.5)
                .minimum_calls(10),
        )
        .build()
        .unwrap();
    // 4 failures of 4 calls: 100 %, but below the minimum.
    for _ in 0..4 {
        record(&breaker, Outcome::Transient);
    }
    assert_eq!(breaker.state(), State::Closed);
    for _ in 0..5 {
        record(&breaker, Outcome::Success);
    }
    // 4 of 9: not yet. The 10th call is a failure: 5 of 10 = 50 %.
    assert_eq!(breaker.state(), State::Closed);
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Open);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.retry_after, Some(10 * SEC));
    assert_eq!(snapshot.window.calls, 0, "the window restarts on a trip");
}

#[test]
fn time_window_forgets_old_failures() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .failure_model(
            FailureModel::time_window(10 * SEC)
                .buckets(10)
                .failure_rate(0.5)
                .minimum_calls(4),
        )
        .build()
        .unwrap();
    record(&breaker, Outcome::Transient);
    record(&breaker, Outcome::Transient);
    record(&breaker, Outcome::Transient);
    clock.advance(11 * SEC);
    // The three failures slid out; 1 of 4 now.
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Success);
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().window.calls, 4);
    record(&breaker, Outcome::Transient);
    record(&breaker, Outcome::Transient);
    // 3 of 6 = 50 %.
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn slow_calls_open_the_breaker() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .failure_model(
            FailureModel::count_window(10)
                .failure_rate(0.5)
                .minimum_calls(4),
        )
        .slow_call_duration(2 * SEC)
        .slow_call_rate(0.5)
        .build()
        .unwrap();
    for slow in [false, true, false, true] {
        let permit = breaker.try_acquire().unwrap();
        clock.advance(if slow { 3 * SEC } else { 100 * MS });
        permit.record(Outcome::Success);
    }
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn throttling_is_tracked_apart_unless_configured_to_count() {
    let clock = ManualClock::new();
    let model = FailureModel::consecutive_failures(3);
    let lenient = builder(&clock).failure_model(model).build().unwrap();
    let strict = builder(&clock)
        .failure_model(model)
        .count_throttled(true)
        .build()
        .unwrap();
    for _ in 0..3 {
        record(
            &lenient,
            Outcome::Throttled {
                retry_after: Some(SEC),
            },
        );
        record(
            &strict,
            Outcome::Throttled {
                retry_after: Some(SEC),
            },
        );
    }
    assert_eq!(lenient.state(), State::Closed);
    assert_eq!(lenient.snapshot().throttled, 3);
    assert_eq!(strict.state(), State::Open);
}

fn tripped(clock: &ManualClock, builder: BreakerBuilder) -> CircuitBreaker {
    let breaker = builder
        .failure_model(FailureModel::consecutive_failures(1))
        .build()
        .unwrap();
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Open);
    let _ = clock;
    breaker
}

#[test]
fn open_rejects_with_the_time_left_then_half_opens() {
    let clock = ManualClock::new();
    let breaker = tripped(&clock, builder(&clock));
    clock.advance(4 * SEC);
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), State::Open);
    assert_eq!(rejected.retry_after(), Some(6 * SEC));
    assert_eq!(
        rejected.to_string(),
        "circuit breaker is open; try again in 6000 ms"
    );
    clock.advance(6 * SEC);
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), State::HalfOpen);
    // One probe at a time by default; the next caller is told when the
    // probe's place frees up at the latest.
    let busy = breaker.try_acquire().unwrap_err();
    assert_eq!(
        (busy.state(), busy.retry_after()),
        (State::HalfOpen, Some(Duration::from_secs(30)))
    );
    probe.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().rejections, 2);
}

#[test]
fn a_failed_probe_reopens_for_longer_with_growth() {
    let clock = ManualClock::new();
    let breaker = tripped(
        &clock,
        builder(&clock)
            .open_growth(2.0)
            .max_open_for(35 * SEC)
            .open_jitter(0.0),
    );
    let mut open_periods = vec![breaker.snapshot().retry_after.unwrap()];
    for _ in 0..3 {
        clock.advance(open_periods.last().copied().unwrap());
        record(&breaker, Outcome::Transient); // the probe fails
        assert_eq!(breaker.state(), State::Open);
        open_periods.push(breaker.snapshot().retry_after.unwrap());
    }
    assert_eq!(open_periods, [10 * SEC, 20 * SEC, 35 * SEC, 35 * SEC]);
    assert_eq!(breaker.snapshot().consecutive_trips, 4);
    // Recovery resets the growth.
    clock.advance(35 * SEC);
    record(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().consecutive_trips, 0);
}

#[test]
fn open_growth_jitter_stays_within_its_bounds() {
    for seed in 0..50 {
        let clock = ManualClock::new();
        let breaker = tripped(
            &clock,
            builder(&clock)
                .name(format!("b{seed}"))
                .open_growth(1.0)
                .max_open_for(10 * SEC)
                .open_jitter(0.5),
        );
        let open_for = breaker.snapshot().retry_after.unwrap();
        assert!(open_for >= 5 * SEC && open_for <= 10 * SEC, "{open_for:?}");
    }
}

#[test]
fn several_probes_and_successes_to_close() {
    let clock = ManualClock::new();
    let breaker = tripped(
        &clock,
        builder(&clock).half_open_probes(3).successes_to_close(3),
    );
    clock.advance(10 * SEC);
    let probes: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
    assert!(breaker.try_acquire().is_err());
    let mut probes = probes.into_iter();
    probes.next().unwrap().record(Outcome::Success);
    probes.next().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::HalfOpen);
    // A freed place admits another probe.
    let fourth = breaker.try_acquire().unwrap();
    assert!(fourth.is_probe());
    probes.next().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    // A probe that reports after the close counts for nothing.
    fourth.record(Outcome::Transient);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn a_lost_probe_is_written_off_after_the_probe_timeout() {
    let clock = ManualClock::new();
    let breaker = tripped(&clock, builder(&clock).probe_timeout(5 * SEC));
    clock.advance(10 * SEC);
    let lost = breaker.try_acquire().unwrap();
    clock.advance(4 * SEC);
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), Some(SEC));
    clock.advance(SEC);
    let replacement = breaker.try_acquire().unwrap();
    assert_eq!(breaker.snapshot().lost_probes, 1);
    // The lost probe finally answers: too late to count.
    lost.record(Outcome::Transient);
    assert_eq!(breaker.state(), State::HalfOpen);
    replacement.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn a_cancelled_or_throttled_probe_frees_its_place_without_deciding() {
    let clock = ManualClock::new();
    let breaker = tripped(&clock, builder(&clock));
    clock.advance(10 * SEC);
    drop(breaker.try_acquire().unwrap());
    breaker
        .try_acquire()
        .unwrap()
        .record(Outcome::Throttled { retry_after: None });
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn manual_control() {
    let clock = ManualClock::new();
    let breaker = builder(&clock)
        .failure_model(FailureModel::consecutive_failures(1))
        .build()
        .unwrap();
    breaker.force_open();
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(
        (rejected.state(), rejected.retry_after()),
        (State::ForcedOpen, None)
    );
    clock.advance(Duration::from_secs(3600));
    assert!(breaker.try_acquire().is_err());

    breaker.force_closed();
    for _ in 0..10 {
        record(&breaker, Outcome::Transient);
    }
    assert_eq!(breaker.state(), State::ForcedClosed);
    assert_eq!(breaker.snapshot().window.failures, 10);

    breaker.disable();
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Disabled);

    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    record(&breaker, Outcome::Transient);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn shadow_mode_admits_what_it_would_reject() {
    let clock = ManualClock::new();
    let breaker = tripped(&clock, builder(&clock).shadow(true));
    for _ in 0..5 {
        breaker.try_acquire().unwrap().record(Outcome::Transient);
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!((snapshot.rejections, snapshot.shadow_rejections), (0, 5));
}

#[test]
fn state_changes_are_reported_with_their_reason() {
    let clock = ManualClock::new();
    let changes: Arc<Mutex<Vec<StateChange>>> = Arc::default();
    let seen = Arc::clone(&changes);
    let breaker = tripped(
        &clock,
        builder(&clock).on_state_change(move |change| seen.lock().unwrap().push(change.clone())),
    );
    clock.advance(10 * SEC);
    record(&breaker, Outcome::Success);
    breaker.force_open();
    let changes = changes.lock().unwrap();
    let summary: Vec<_> = changes
        .iter()
        .map(|c| (c.from(), c.to(), c.reason()))
        .collect();
    assert_eq!(
        summary,
        [
            (State::Closed, State::Open, ChangeReason::FailureThreshold),
            (State::Open, State::HalfOpen, ChangeReason::OpenPeriodEnded),
            (
                State::HalfOpen,
                State::Closed,
                ChangeReason::ProbesSucceeded
            ),
            (State::Closed, State::ForcedOpen, ChangeReason::Manual),
        ]
    );
    assert_eq!(changes[0].open_for(), Some(10 * SEC));
    assert_eq!(changes[0].window().failures, 1);
    assert_eq!(changes[0].name(), "gateway");
}

#[test]
fn invalid_settings_are_build_errors() {
    let cases = [
        (
            CircuitBreaker::builder().failure_model(FailureModel::consecutive_failures(0)),
            "consecutive_failures",
        ),
        (
            CircuitBreaker::builder()
                .failure_model(FailureModel::count_window(0).failure_rate(0.5)),
            "count_window",
        ),
        (
            CircuitBreaker::builder()
                .failure_model(FailureModel::count_window(10).failure_rate(1.5)),
            "failure_rate",
        ),
        (
            CircuitBreaker::builder()
                .failure_model(FailureModel::count_window(10).failure_rate(f64::NAN)),
            "failure_rate",
        ),
        (
            CircuitBreaker::builder()
                .failure_model(FailureModel::time_window(MS).buckets(10).failure_rate(0.5)),
            "time_window",
        ),
        (
            CircuitBreaker::builder().half_open_probes(0),
            "half_open_probes",
        ),
        (
            CircuitBreaker::builder().probe_timeout(Duration::ZERO),
            "probe_timeout",
        ),
        (
            CircuitBreaker::builder().open_for(Duration::ZERO),
            "open_for",
        ),
        (
            CircuitBreaker::builder()
                .open_growth(0.5)
                .max_open_for(SEC * 60)
                .open_jitter(0.0),
            "open_growth",
        ),
        (
            CircuitBreaker::builder()
                .open_growth(2.0)
                .max_open_for(SEC * 60)
                .open_jitter(1.5),
            "open_jitter",
        ),
        (
            CircuitBreaker::builder()
                .slow_call_duration(Duration::ZERO)
                .slow_call_rate(0.5),
            "slow_call_duration",
        ),
    ];
    for (builder, setting) in cases {
        let error = builder.build().unwrap_err();
        assert_eq!(error.setting(), setting);
        assert!(error.to_string().starts_with("invalid configuration: "));
    }
}
