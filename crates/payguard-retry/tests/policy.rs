//! Delays, deadlines, budgets and the idempotency gate through the public
//! API, on virtual time.

#![allow(clippy::disallowed_methods)] // measures elapsed time on tokio's clock directly
#![allow(clippy::unwrap_used)] // test helpers

use payguard_core::{Clock, ManualClock, Outcome, from_error};
use payguard_retry::{
    Backoff, Idempotency, IdempotencyKey, Jitter, RetryBudget, RetryPolicy, StopReason,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// The sleeps of one blocking call that fails `retries` times.
fn sleeps(policy: &RetryPolicy) -> Vec<Duration> {
    let mut slept = Vec::new();
    let _ = policy
        .retry_blocking(|_| Err::<(), _>(()))
        .classify(Outcome::Transient)
        .call_with_sleep(|delay| slept.push(delay));
    slept
}

fn jittered(jitter: Jitter, draws: u32) -> Vec<Duration> {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::exponential(MS, 2.0))
        .max_delay(50 * MS)
        .jitter(jitter)
        .max_attempts(draws + 1)
        .seed(0x5eed)
        .build()
        .unwrap();
    let delays = sleeps(&policy);
    assert_eq!(delays.len(), draws as usize);
    delays
}

/// The delay before retry `n` without jitter: 1, 2, 4, ... 32, 50, 50, ...
fn computed(n: usize) -> Duration {
    if n >= 6 { 50 * MS } else { MS * (1 << n) }
}

const DRAWS: u32 = 1_000_000;

#[test]
fn no_jitter_is_exactly_the_backoff() {
    let delays = jittered(Jitter::None, 1000);
    for (n, delay) in delays.iter().enumerate() {
        assert_eq!(*delay, computed(n));
    }
}

#[test]
fn full_jitter_stays_in_zero_to_delay_for_a_million_draws() {
    let delays = jittered(Jitter::Full, DRAWS);
    for (n, delay) in delays.iter().enumerate() {
        assert!(*delay <= computed(n), "draw {n}: {delay:?}");
    }
    // Uniform on [0, 50 ms]: the mean of the capped draws is 25 ms.
    let capped = &delays[6..];
    let mean = capped.iter().sum::<Duration>() / capped.len() as u32;
    assert!(
        (24_900..=25_100).contains(&mean.as_micros()),
        "mean {mean:?}"
    );
    assert!(capped.iter().any(|d| *d < MS) && capped.iter().any(|d| *d > 49 * MS));
}

#[test]
fn equal_jitter_stays_in_half_to_delay_for_a_million_draws() {
    let delays = jittered(Jitter::Equal, DRAWS);
    for (n, delay) in delays.iter().enumerate() {
        let d = computed(n);
        assert!(
            *delay >= d / 2 && *delay <= d,
            "draw {n}: {delay:?} for {d:?}"
        );
    }
    let capped = &delays[6..];
    let mean = capped.iter().sum::<Duration>() / capped.len() as u32;
    assert!(
        (37_400..=37_600).contains(&mean.as_micros()),
        "mean {mean:?}"
    );
}

#[test]
fn decorrelated_jitter_stays_between_base_and_cap_for_a_million_draws() {
    let delays = jittered(Jitter::Decorrelated, DRAWS);
    let mut previous = MS;
    for (n, delay) in delays.iter().enumerate() {
        assert!(*delay >= MS, "draw {n}: {delay:?} below base");
        assert!(*delay <= 50 * MS, "draw {n}: {delay:?} above cap");
        assert!(
            *delay <= (previous * 3).max(MS),
            "draw {n}: {delay:?} above 3x {previous:?}"
        );
        previous = *delay;
    }
}

#[test]
fn seeded_policies_repeat_their_delays() {
    let a = jittered(Jitter::Full, 100);
    let b = jittered(Jitter::Full, 100);
    assert_eq!(a, b);
}

#[tokio::test(start_paused = true)]
async fn deadline_is_never_overrun_and_no_attempt_starts_after_it() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::exponential(100 * MS, 2.0))
        .max_delay(Duration::from_secs(1))
        .jitter(Jitter::Full)
        .max_attempts(1000)
        .deadline(Duration::from_secs(2))
        .seed(3)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let starts = std::sync::Mutex::new(Vec::new());
    let error = policy
        .retry(|_| {
            starts.lock().unwrap().push(start.elapsed());
            async {
                tokio::time::sleep(300 * MS).await;
                Err::<(), _>("unavailable")
            }
        })
        .classify(Outcome::Transient)
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(error.reason(), StopReason::DeadlineExceeded);
    assert!(elapsed <= Duration::from_secs(2), "elapsed {elapsed:?}");
    let starts = starts.into_inner().unwrap();
    assert_eq!(error.attempts() as usize, starts.len());
    assert!(starts.len() >= 3, "{starts:?}");
    assert!(
        starts.iter().all(|s| *s < Duration::from_secs(2)),
        "{starts:?}"
    );
    assert_eq!(error.last_error(), Some(&"unavailable"));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_attempt_is_cut_at_the_deadline() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .deadline(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let error = policy
        .retry(|_| std::future::pending::<Result<(), &str>>())
        .idempotent()
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::DeadlineExceeded);
    assert_eq!(error.last_outcome(), Outcome::TimedOut);
    assert_eq!(error.last_error(), None);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(error.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_write_without_a_key_is_attempted_once() {
    let policy = RetryPolicy::builder()
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let error = policy
        .retry(|_| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), &str>>()
        })
        .await
        .unwrap_err();
    assert_eq!(error.reason(), StopReason::NotIdempotent);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_clamped_and_garbage_ignored() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(10 * MS))
        .jitter(Jitter::None)
        .max_delay(Duration::from_secs(5))
        .max_attempts(4)
        .build()
        .unwrap();
    let hints = [
        Some(Duration::from_secs(2)),    // honoured
        Some(Duration::from_secs(3600)), // clamped to max_delay
        None,                            // garbage was parsed as absent
    ];
    let mut delays = Vec::new();
    let _ = policy
        .retry(|attempt| {
            let hint = hints.get(attempt.number() as usize - 1).copied().flatten();
            async move { Err::<(), _>(hint) }
        })
        .classify(from_error(|hint: &Option<Duration>| Outcome::Throttled {
            retry_after: *hint,
        }))
        .notify(|event| delays.push(event.delay()))
        .await;
    assert_eq!(
        delays,
        [Duration::from_secs(2), Duration::from_secs(5), 10 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn notify_sees_each_retry() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(10 * MS))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let mut events = Vec::new();
    let value = policy
        .retry(|attempt| async move {
            if attempt.number() < 3 {
                Err(attempt.number())
            } else {
                Ok("paid")
            }
        })
        .classify(Outcome::Transient)
        .notify(|event| {
            events.push((
                event.attempt(),
                event.delay(),
                event.outcome(),
                event.error().copied(),
            ))
        })
        .await
        .unwrap();
    assert_eq!(value, "paid");
    assert_eq!(
        events,
        [
            (1, 10 * MS, Outcome::Transient, Some(1)),
            (2, 10 * MS, Outcome::Transient, Some(2)),
        ]
    );
}

#[test]
fn budget_keeps_retries_within_its_ratio_under_a_total_outage() {
    let budget = Arc::new(
        RetryBudget::builder()
            .ratio(0.2)
            .min_per_second(0.0)
            .initial_balance(0.0)
            .build()
            .unwrap(),
    );
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .budget(budget)
        .build()
        .unwrap();
    let attempts = AtomicU32::new(0);
    let mut exhausted = 0;
    for _ in 0..1000 {
        let error = policy
            .retry_blocking(|_| {
                attempts.fetch_add(1, Ordering::Relaxed);
                Err::<(), _>("down")
            })
            .classify(Outcome::Transient)
            .call_with_sleep(|_| {})
            .unwrap_err();
        if error.reason() == StopReason::BudgetExhausted {
            exhausted += 1;
        }
    }
    // 1000 calls earn 200 retries: 1200 attempts, not 3000.
    assert_eq!(attempts.load(Ordering::Relaxed), 1200);
    assert_eq!(exhausted, 1000);
}

#[test]
fn budget_is_exact_under_eight_threads() {
    let budget = Arc::new(
        RetryBudget::builder()
            .ratio(0.25)
            .min_per_second(0.0)
            .max_balance(1e9)
            .initial_balance(0.0)
            .build()
            .unwrap(),
    );
    let withdrawn = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..100_000 {
                    budget.deposit();
                    if budget.try_withdraw() {
                        withdrawn.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // 800 000 deposits of a quarter token: what was withdrawn plus what is
    // left is exactly 200 000 tokens.
    let total = f64::from(withdrawn.load(Ordering::Relaxed)) + budget.balance();
    assert_eq!(total, 200_000.0);
    assert!(budget.balance() < 1.0);
}

#[test]
fn blocking_calls_honour_the_deadline_on_a_manual_clock() {
    let clock = ManualClock::new();
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(300 * MS))
        .jitter(Jitter::None)
        .max_attempts(100)
        .deadline(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let start = clock.now();
    let error = policy
        .retry_blocking(|_| {
            clock.advance(100 * MS);
            Err::<(), _>("busy")
        })
        .classify(Outcome::Transient)
        .call_with_sleep(|delay| clock.advance(delay))
        .unwrap_err();
    // 100 + 300 + 100 + 300 + 100 = 900 ms; another 300 ms sleep would overrun.
    assert_eq!(error.reason(), StopReason::DeadlineExceeded);
    assert_eq!(error.attempts(), 3);
    assert_eq!(clock.now() - start, 900 * MS);
}

/// The outcome an attempt is scripted to end with.
fn any_failure() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Transient),
        Just(Outcome::TimedOut),
        Just(Outcome::Ambiguous),
        Just(Outcome::Permanent),
        proptest::option::of(0u64..10_000).prop_map(|ms| Outcome::Throttled {
            retry_after: ms.map(Duration::from_millis)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_that_may_have_taken_effect_is_repeated_without_a_key(
        outcomes in proptest::collection::vec(any_failure(), 1..12)
    ) {
        let policy = RetryPolicy::builder().max_attempts(20).build().unwrap();
        let mut seen = Vec::new();
        let _ = policy
            .retry_blocking(|attempt| {
                let outcome = outcomes.get(attempt.number() as usize - 1).copied().unwrap_or(Outcome::Transient);
                seen.push(outcome);
                Err::<(), _>(outcome)
            })
            .classify(from_error(|outcome: &Outcome| *outcome))
            .call_with_sleep(|_| {});
        // Every attempt but the last ended in a way that certainly did not
        // take effect.
        let (_last, earlier) = seen.split_last().unwrap();
        prop_assert!(earlier.iter().all(|o| !o.may_have_taken_effect() && *o != Outcome::Permanent));
    }

    #[test]
    fn no_sleep_ends_past_the_deadline(
        durations in proptest::collection::vec(0u64..3_000, 1..30),
        hints in proptest::collection::vec(proptest::option::of(0u64..20_000), 1..30),
        deadline_ms in 1u64..20_000,
        seed in any::<u64>(),
    ) {
        let clock = ManualClock::new();
        let deadline = Duration::from_millis(deadline_ms);
        let policy = RetryPolicy::builder()
            .max_attempts(64)
            .max_delay(Duration::from_secs(10))
            .deadline(deadline)
            .seed(seed)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let start = clock.now();
        let mut attempt_starts = Vec::new();
        let mut sleep_ends = Vec::new();
        let _ = policy
            .retry_blocking(|attempt| {
                attempt_starts.push(clock.now() - start);
                let n = attempt.number() as usize - 1;
                clock.advance(Duration::from_millis(durations[n % durations.len()]));
                Err::<(), _>(hints[n % hints.len()].map(Duration::from_millis))
            })
            .classify(from_error(|hint: &Option<Duration>| Outcome::Throttled { retry_after: *hint }))
            .idempotency(Idempotency::Key(IdempotencyKey::new("k").unwrap()))
            .call_with_sleep(|delay| {
                clock.advance(delay);
                sleep_ends.push(clock.now() - start);
            });
        prop_assert!(attempt_starts.iter().all(|s| *s < deadline), "{attempt_starts:?}");
        prop_assert!(sleep_ends.iter().all(|s| *s < deadline), "{sleep_ends:?}");
    }
}

mod metrics_counters {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;

    /// Records counters by name and sorted labels.
    #[derive(Default)]
    struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

    struct Handle(Arc<AtomicU64>);
    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    impl Recorder for Counters {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let id = format!("{}{{{}}}", key.name(), labels.join(","));
            let cell = Arc::clone(self.0.lock().unwrap().entry(id).or_default());
            Counter::from_arc(Arc::new(Handle(cell)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    impl Counters {
        fn get(&self, id: &str) -> u64 {
            self.0
                .lock()
                .unwrap()
                .get(id)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        }
    }

    #[test]
    fn calls_retries_and_give_ups_are_counted() {
        let recorder = Counters::default();
        let policy = metrics::with_local_recorder(&recorder, || {
            RetryPolicy::builder()
                .name("paystack")
                .max_attempts(2)
                .build()
                .unwrap()
        });
        let _ = policy.retry_blocking(|_| Ok::<(), ()>(())).call();
        let _ = policy
            .retry_blocking(|attempt| {
                if attempt.number() == 1 {
                    Err(())
                } else {
                    Ok(())
                }
            })
            .classify(Outcome::Transient)
            .call_with_sleep(|_| {});
        let _ = policy
            .retry_blocking(|_| Err::<(), ()>(()))
            .classify(Outcome::Ambiguous)
            .call_with_sleep(|_| {});
        assert_eq!(
            recorder.get("payguard_retry_calls_total{policy=paystack,result=first_attempt}"),
            1
        );
        assert_eq!(
            recorder.get("payguard_retry_calls_total{policy=paystack,result=after_retry}"),
            1
        );
        assert_eq!(
            recorder.get("payguard_retry_calls_total{policy=paystack,result=failed}"),
            1
        );
        assert_eq!(
            recorder.get("payguard_retry_retries_total{outcome=transient,policy=paystack}"),
            1
        );
        assert_eq!(
            recorder.get("payguard_retry_gave_up_total{policy=paystack,reason=not_idempotent}"),
            1
        );
    }
}

/// One classifier sees the whole result: an `Ok` it judges a failure is
/// retried like an error, and the last one is handed back when retrying
/// stops.
#[test]
fn an_ok_judged_a_failure_is_retried_and_the_last_answer_returned() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap();
    let by_status = |result: &Result<u16, std::io::Error>| match result {
        Ok(500..) => Outcome::Transient,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Permanent,
    };
    let mut statuses = [503, 502, 200].into_iter();
    let answer = policy
        .retry_blocking(|_| Ok(statuses.next().unwrap()))
        .classify(by_status)
        .call_with_sleep(|_| {});
    assert_eq!(answer.unwrap(), 200);

    let mut calls = 0;
    let answer = policy
        .retry_blocking(|_| {
            calls += 1;
            Ok(503)
        })
        .classify(by_status)
        .call_with_sleep(|_| {});
    assert_eq!((answer.unwrap(), calls), (503, 3));
}

#[tokio::test(start_paused = true)]
async fn an_ok_judged_a_failure_is_retried_when_awaited_too() {
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let calls = AtomicU32::new(0);
    let answer = policy
        .retry(|_| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(if call < 2 { 503u16 } else { 200 }) }
        })
        .classify(|result: &Result<u16, std::io::Error>| match result {
            Ok(503) => Outcome::Transient,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Permanent,
        })
        .await;
    assert_eq!((answer.unwrap(), calls.load(Ordering::SeqCst)), (200, 3));
}

/// A report that walks the chain prints the last error once: it is the
/// source, not part of the message.
#[test]
fn the_last_error_is_the_source_not_the_message() {
    use std::error::Error;
    let policy = RetryPolicy::builder().max_attempts(1).build().unwrap();
    let error = policy
        .retry_blocking(|_| Err::<(), _>(std::io::Error::other("gateway unavailable")))
        .classify(Outcome::Transient)
        .call()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "gave up after 1 attempt: attempts exhausted"
    );
    assert_eq!(error.source().unwrap().to_string(), "gateway unavailable");
    assert_eq!(error.code(), "attempts_exhausted");
}
