//! The per-call decision logic shared by the async, blocking and tower
//! front ends: when to stop, how long to sleep.

use crate::attempt::{Attempt, Idempotency};
use crate::error::StopReason;
use crate::policy::RetryPolicy;
use crate::telemetry;
use payguard_core::{Clock, Outcome, SystemClock, TokioClock};
use std::time::{Duration, Instant};

/// Which clock the front end defaults to when the policy names none.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DefaultClock {
    Tokio,
    System,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry(Duration),
    Stop(StopReason),
}

/// An attempt about to start.
#[derive(Debug)]
pub(crate) struct AttemptPlan {
    pub(crate) attempt: Attempt,
    /// The attempt is cut off after this long.
    pub(crate) timeout: Option<Duration>,
    /// The cut-off is the deadline, not the per-attempt timeout.
    pub(crate) timeout_is_deadline: bool,
}

#[derive(Debug)]
pub(crate) struct Controller<'p> {
    policy: &'p RetryPolicy,
    idempotency: Idempotency,
    default_clock: DefaultClock,
    /// When the call must be over; read the clock only when there is one,
    /// so the success path does not pay for it.
    deadline: Option<Instant>,
    attempts: u32,
    /// The last sleep, for decorrelated jitter; `None` before the first.
    previous_delay: Option<Duration>,
    last_outcome: Outcome,
}

impl<'p> Controller<'p> {
    #[inline(always)] // keeps the success path free of large moves (see benches/retry.rs)
    pub(crate) fn new(
        policy: &'p RetryPolicy,
        idempotency: Idempotency,
        default: DefaultClock,
    ) -> Self {
        let mut controller = Self {
            policy,
            idempotency,
            default_clock: default,
            deadline: None,
            attempts: 0,
            previous_delay: None,
            last_outcome: Outcome::Success,
        };
        if let Some(deadline) = policy.deadline {
            // A deadline past the end of representable time is no deadline.
            controller.deadline = controller.now().checked_add(deadline);
        }
        controller
    }

    fn now(&self) -> Instant {
        match (&self.policy.clock, self.default_clock) {
            (Some(clock), _) => clock.now(),
            (None, DefaultClock::Tokio) => TokioClock.now(),
            (None, DefaultClock::System) => SystemClock.now(),
        }
    }

    #[inline]
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How the most recent attempt ended.
    #[inline]
    pub(crate) fn last_outcome(&self) -> Outcome {
        self.last_outcome
    }

    /// Starts the next attempt, or says why none may start.
    #[inline(always)] // keeps the success path free of large moves (see benches/retry.rs)
    pub(crate) fn begin_attempt(&mut self) -> Result<AttemptPlan, StopReason> {
        let remaining = match self.deadline {
            Some(ends) => {
                let remaining = ends.saturating_duration_since(self.now());
                if remaining.is_zero() {
                    telemetry::gave_up(
                        self.policy,
                        self.attempts,
                        StopReason::DeadlineExceeded,
                        self.last_outcome,
                    );
                    return Err(StopReason::DeadlineExceeded);
                }
                Some(remaining)
            }
            None => None,
        };
        self.attempts += 1;
        if self.attempts == 1
            && let Some(budget) = &self.policy.budget
        {
            budget.deposit();
        }
        let (timeout, timeout_is_deadline) = match (self.policy.attempt_timeout, remaining) {
            (Some(attempt), Some(remaining)) if remaining <= attempt => (Some(remaining), true),
            (Some(attempt), _) => (Some(attempt), false),
            (None, Some(remaining)) => (Some(remaining), true),
            (None, None) => (None, false),
        };
        Ok(AttemptPlan {
            attempt: Attempt {
                number: self.attempts,
                idempotency_key: self.idempotency.key().cloned(),
                timeout,
            },
            timeout,
            timeout_is_deadline,
        })
    }

    /// Decides what follows a failed attempt. `hint` is a server-requested
    /// delay; [`Outcome::Throttled`] carries its own.
    pub(crate) fn after_failure(&mut self, outcome: Outcome, hint: Option<Duration>) -> Decision {
        self.last_outcome = outcome;
        let decision = self.decide(outcome, hint);
        match decision {
            Decision::Retry(delay) => {
                self.previous_delay = Some(delay);
                telemetry::retrying(self.policy, self.attempts, delay, outcome);
            }
            Decision::Stop(reason) => {
                telemetry::gave_up(self.policy, self.attempts, reason, outcome)
            }
        }
        decision
    }

    /// Stops after an attempt that ended with `outcome`, for `reason`
    /// decided by the front end (the deadline cut the attempt off).
    pub(crate) fn stop(&mut self, reason: StopReason, outcome: Outcome) -> Decision {
        self.last_outcome = outcome;
        telemetry::gave_up(self.policy, self.attempts, reason, outcome);
        Decision::Stop(reason)
    }

    /// Records a successful call.
    #[inline]
    pub(crate) fn succeeded(&self) {
        telemetry::succeeded(self.policy, self.attempts);
    }

    fn decide(&self, outcome: Outcome, hint: Option<Duration>) -> Decision {
        let policy = self.policy;
        match outcome {
            // An error classified as success is not something to repeat.
            Outcome::Permanent | Outcome::Success => return Decision::Stop(StopReason::Permanent),
            _ if !self.idempotency.allows_retry_after(outcome) => {
                return Decision::Stop(StopReason::NotIdempotent);
            }
            _ => {}
        }
        if self.attempts >= policy.max_attempts {
            return Decision::Stop(StopReason::AttemptsExhausted);
        }
        let cap = policy.max_delay;
        let computed = policy.backoff.delay(self.attempts - 1).min(cap);
        let base = policy.backoff.base();
        let mut delay = policy.jitter.apply(
            computed,
            self.previous_delay.unwrap_or(base),
            base,
            cap,
            policy.random.as_ref(),
        );
        if let Some(hint) = hint.or(outcome.retry_after()) {
            delay = delay.max(hint.min(cap));
        }
        if let Some(ends) = self.deadline {
            let remaining = ends.saturating_duration_since(self.now());
            if delay >= remaining {
                return Decision::Stop(StopReason::DeadlineExceeded);
            }
        }
        if let Some(budget) = &policy.budget
            && !budget.try_withdraw()
        {
            return Decision::Stop(StopReason::BudgetExhausted);
        }
        Decision::Retry(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backoff, IdempotencyKey, Jitter, RetryBudget};
    use payguard_core::ManualClock;
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> crate::RetryPolicyBuilder {
        RetryPolicy::builder()
            .backoff(Backoff::exponential(100 * MS, 2.0))
            .jitter(Jitter::None)
            .max_delay(1000 * MS)
            .max_attempts(5)
    }

    fn run(policy: &RetryPolicy, idempotency: Idempotency, outcomes: &[Outcome]) -> Vec<Decision> {
        let mut controller = Controller::new(policy, idempotency, DefaultClock::System);
        outcomes
            .iter()
            .map(|outcome| {
                controller.begin_attempt().unwrap();
                controller.after_failure(*outcome, None)
            })
            .collect()
    }

    #[test]
    fn exponential_without_jitter_until_attempts_run_out() {
        let policy = policy().build().unwrap();
        let decisions = run(&policy, Idempotency::Idempotent, &[Outcome::Transient; 5]);
        assert_eq!(
            decisions,
            [
                Decision::Retry(100 * MS),
                Decision::Retry(200 * MS),
                Decision::Retry(400 * MS),
                Decision::Retry(800 * MS),
                Decision::Stop(StopReason::AttemptsExhausted),
            ]
        );
    }

    #[test]
    fn cap_applies_before_jitter() {
        let policy = policy().max_attempts(10).build().unwrap();
        let decisions = run(&policy, Idempotency::Idempotent, &[Outcome::Transient; 6]);
        assert_eq!(decisions[4], Decision::Retry(1000 * MS));
        assert_eq!(decisions[5], Decision::Retry(1000 * MS));
    }

    #[test]
    fn permanent_stops_at_once() {
        let policy = policy().build().unwrap();
        let decisions = run(&policy, Idempotency::Idempotent, &[Outcome::Permanent]);
        assert_eq!(decisions, [Decision::Stop(StopReason::Permanent)]);
    }

    #[test]
    fn idempotency_gate() {
        let policy = policy().build().unwrap();
        for outcome in [Outcome::Ambiguous, Outcome::TimedOut] {
            assert_eq!(
                run(&policy, Idempotency::NotIdempotent, &[outcome]),
                [Decision::Stop(StopReason::NotIdempotent)]
            );
            assert_eq!(
                run(&policy, Idempotency::Idempotent, &[outcome]),
                [Decision::Retry(100 * MS)]
            );
            let keyed = Idempotency::Key(IdempotencyKey::new("k").unwrap());
            assert_eq!(run(&policy, keyed, &[outcome]), [Decision::Retry(100 * MS)]);
        }
        assert_eq!(
            run(&policy, Idempotency::NotIdempotent, &[Outcome::Transient]),
            [Decision::Retry(100 * MS)]
        );
    }

    #[test]
    fn hint_is_a_floor_clamped_to_the_cap() {
        let policy = policy().build().unwrap();
        let mut controller =
            Controller::new(&policy, Idempotency::Idempotent, DefaultClock::System);
        controller.begin_attempt().unwrap();
        let throttled = Outcome::Throttled {
            retry_after: Some(300 * MS),
        };
        assert_eq!(
            controller.after_failure(throttled, None),
            Decision::Retry(300 * MS)
        );
        controller.begin_attempt().unwrap();
        let huge = Outcome::Throttled {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            controller.after_failure(huge, None),
            Decision::Retry(1000 * MS)
        );
        controller.begin_attempt().unwrap();
        // A hint below the backoff does not shorten it.
        assert_eq!(
            controller.after_failure(Outcome::Transient, Some(MS)),
            Decision::Retry(400 * MS)
        );
    }

    #[test]
    fn no_sleep_ends_past_the_deadline() {
        let clock = ManualClock::new();
        let policy = policy()
            .max_attempts(100)
            .deadline(1000 * MS)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let mut controller =
            Controller::new(&policy, Idempotency::Idempotent, DefaultClock::System);
        let mut slept = Duration::ZERO;
        loop {
            let plan = match controller.begin_attempt() {
                Ok(plan) => plan,
                Err(reason) => panic!("stopped before an attempt: {reason:?}"),
            };
            // The attempt itself takes 50 ms.
            clock.advance(50 * MS);
            slept += 50 * MS;
            assert!(plan.timeout.unwrap() <= 1000 * MS);
            match controller.after_failure(Outcome::Transient, None) {
                Decision::Retry(delay) => {
                    clock.advance(delay);
                    slept += delay;
                }
                Decision::Stop(reason) => {
                    assert_eq!(reason, StopReason::DeadlineExceeded);
                    break;
                }
            }
        }
        // 50 + 100 + 50 + 200 + 50 + 400 + 50 = 900; the next 800 ms sleep
        // would overrun, so the call stops at 900 ms.
        assert_eq!(slept, 900 * MS);
    }

    #[test]
    fn server_asking_past_the_deadline_stops_instead_of_waiting() {
        let clock = ManualClock::new();
        let policy = policy()
            .max_delay(Duration::from_secs(60))
            .deadline(Duration::from_secs(10))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let mut controller =
            Controller::new(&policy, Idempotency::Idempotent, DefaultClock::System);
        controller.begin_attempt().unwrap();
        let throttled = Outcome::Throttled {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            controller.after_failure(throttled, None),
            Decision::Stop(StopReason::DeadlineExceeded)
        );
    }

    #[test]
    fn attempt_timeout_shrinks_to_the_deadline() {
        let clock = ManualClock::new();
        let policy = policy()
            .deadline(1000 * MS)
            .attempt_timeout(700 * MS)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let mut controller =
            Controller::new(&policy, Idempotency::Idempotent, DefaultClock::System);
        let first = controller.begin_attempt().unwrap();
        assert_eq!(
            (first.timeout, first.timeout_is_deadline),
            (Some(700 * MS), false)
        );
        clock.advance(700 * MS);
        assert_eq!(
            controller.after_failure(Outcome::TimedOut, None),
            Decision::Retry(100 * MS)
        );
        clock.advance(100 * MS);
        let second = controller.begin_attempt().unwrap();
        assert_eq!(
            (second.timeout, second.timeout_is_deadline),
            (Some(200 * MS), true)
        );
    }

    #[test]
    fn budget_stops_retries() {
        let budget = Arc::new(
            RetryBudget::builder()
                .ratio(0.0)
                .min_per_second(0.0)
                .initial_balance(1.0)
                .build()
                .unwrap(),
        );
        let policy = policy().budget(budget).build().unwrap();
        let decisions = run(&policy, Idempotency::Idempotent, &[Outcome::Transient; 2]);
        assert_eq!(
            decisions,
            [
                Decision::Retry(100 * MS),
                Decision::Stop(StopReason::BudgetExhausted)
            ]
        );
    }

    #[test]
    fn every_attempt_carries_the_same_key() {
        let policy = policy().build().unwrap();
        let key = IdempotencyKey::new("transfer_42").unwrap();
        let mut controller =
            Controller::new(&policy, Idempotency::Key(key.clone()), DefaultClock::System);
        for number in 1..=3 {
            let plan = controller.begin_attempt().unwrap();
            assert_eq!(plan.attempt.number(), number);
            assert_eq!(plan.attempt.idempotency_key(), Some(&key));
            let _ = controller.after_failure(Outcome::Ambiguous, None);
        }
    }
}
