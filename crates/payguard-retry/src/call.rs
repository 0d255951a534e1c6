//! [`Retry`]: one call under a policy, awaited (async) or `call`ed (blocking).

use crate::attempt::{Attempt, Idempotency, RetryEvent};
use crate::controller::{AttemptPlan, Controller, Decision, DefaultClock};
use crate::error::{RetryError, StopReason};
use crate::policy::RetryPolicy;
use payguard_core::IdempotencyKey;
use payguard_core::{Classify, FromError, Outcome, from_error};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// Classifies an error when the call says nothing: it may have taken effect.
type DefaultClassify<E> = FromError<fn(&E) -> Outcome>;

fn may_have_taken_effect<E>(_: &E) -> Outcome {
    Outcome::Ambiguous
}
type DefaultNotify<E> = for<'a, 'b> fn(&'a RetryEvent<'b, E>);
type DefaultHint<E> = fn(&E) -> Option<Duration>;

impl RetryPolicy {
    /// Retries the async operation `op` under this policy. Configure the
    /// call, then `.await` it.
    ///
    /// `op` is called once per attempt with the [`Attempt`] it is making.
    /// An `Ok` ends the call; an `Err` is classified (see
    /// [`Retry::classify`]) to decide whether to try again.
    ///
    /// Without [`classify`](Retry::classify), every error counts as
    /// [`Outcome::Ambiguous`]: retried only when the call is idempotent or
    /// keyed, which is the one safe assumption about an unknown error.
    ///
    /// ```
    /// use payguard_retry::{from_error, IdempotencyKey, Outcome, RetryPolicy};
    ///
    /// # #[derive(Debug)] enum GatewayError { Unavailable, Declined }
    /// # async fn create_transfer(_key: &str) -> Result<u64, GatewayError> { Ok(7) }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RetryPolicy::builder().build()?;
    /// let key = IdempotencyKey::new("escrow_42")?;
    /// let transfer = policy
    ///     .retry(|attempt| async move {
    ///         let key = attempt.idempotency_key().map(|k| k.as_str()).unwrap_or_default();
    ///         create_transfer(key).await
    ///     })
    ///     .idempotency_key(key)
    ///     .classify(from_error(|error: &GatewayError| match error {
    ///         GatewayError::Unavailable => Outcome::Transient,
    ///         GatewayError::Declined => Outcome::Permanent,
    ///     }))
    ///     .await
    ///     .map_err(|e| format!("{:?}", e.last_error()))?;
    /// assert_eq!(transfer, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn retry<Op, Fut, T, E>(
        &self,
        op: Op,
    ) -> Retry<'_, Op, DefaultClassify<E>, DefaultNotify<E>, DefaultHint<E>>
    where
        Op: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Retry::new(self, op)
    }

    /// Retries the blocking operation `op` under this policy; finish with
    /// [`Retry::call`]. Sleeps block the thread; per-attempt timeouts do not
    /// apply (a blocking call cannot be interrupted), the deadline does.
    ///
    /// ```
    /// use payguard_core::Outcome;
    /// use payguard_retry::{Backoff, RetryPolicy};
    /// use std::time::Duration;
    ///
    /// let policy = RetryPolicy::builder().backoff(Backoff::constant(Duration::from_millis(1))).build()?;
    /// let mut calls = 0;
    /// let value = policy
    ///     .retry_blocking(|_| {
    ///         calls += 1;
    ///         if calls < 3 { Err("busy") } else { Ok(calls) }
    ///     })
    ///     .classify(Outcome::Transient)
    ///     .call();
    /// assert_eq!(value.ok(), Some(3));
    /// # Ok::<(), payguard_retry::ConfigError>(())
    /// ```
    pub fn retry_blocking<Op, T, E>(
        &self,
        op: Op,
    ) -> Retry<'_, Op, DefaultClassify<E>, DefaultNotify<E>, DefaultHint<E>>
    where
        Op: FnMut(Attempt) -> Result<T, E>,
    {
        Retry::new(self, op)
    }
}

/// One call under a [`RetryPolicy`], being configured. `.await` it (async
/// operations) or [`call`](Retry::call) it (blocking operations).
#[must_use = "a retry does nothing until it is awaited or called"]
pub struct Retry<'p, Op, C, N, H> {
    policy: &'p RetryPolicy,
    op: Op,
    classify: C,
    notify: N,
    hint: H,
    idempotency: Idempotency,
}

impl<'p, Op, E> Retry<'p, Op, DefaultClassify<E>, DefaultNotify<E>, DefaultHint<E>> {
    fn new(policy: &'p RetryPolicy, op: Op) -> Self {
        Self {
            policy,
            op,
            classify: from_error(may_have_taken_effect::<E> as fn(&E) -> Outcome),
            notify: |_| {},
            hint: |_| None,
            idempotency: Idempotency::NotIdempotent,
        }
    }
}

impl<'p, Op, C, N, H> Retry<'p, Op, C, N, H> {
    /// How each attempt's result is judged (any [`Classify`]: a closure over
    /// the result, [`from_error`](payguard_core::from_error) for errors
    /// only, an `HttpClassifier`). `Transient` and `Throttled` are retried;
    /// `TimedOut` and `Ambiguous` only when the call is idempotent or keyed;
    /// `Permanent` never. An `Ok` judged a failure is retried the same way,
    /// and handed back as it is when retrying stops.
    ///
    /// A closure over the whole result names its type
    /// (`|result: &Result<Transfer, GatewayError>| ...`); `from_error`
    /// needs only the error's (`from_error(|error: &GatewayError| ...)`).
    pub fn classify<C2>(self, classify: C2) -> Retry<'p, Op, C2, N, H> {
        Retry {
            policy: self.policy,
            op: self.op,
            classify,
            notify: self.notify,
            hint: self.hint,
            idempotency: self.idempotency,
        }
    }

    /// Called before each retry's sleep with the attempt, the delay, the
    /// outcome and the error.
    pub fn notify<E, N2>(self, notify: N2) -> Retry<'p, Op, C, N2, H>
    where
        N2: FnMut(&RetryEvent<'_, E>),
    {
        Retry {
            policy: self.policy,
            op: self.op,
            classify: self.classify,
            notify,
            hint: self.hint,
            idempotency: self.idempotency,
        }
    }

    /// Reads a server-requested delay from an error (a provider's own
    /// header, say). The delay becomes a floor for the next sleep, clamped
    /// to `max_delay`; if it would end past the deadline, the call stops.
    pub fn hint<E, H2>(self, hint: H2) -> Retry<'p, Op, C, N, H2>
    where
        H2: Fn(&E) -> Option<Duration>,
    {
        Retry {
            policy: self.policy,
            op: self.op,
            classify: self.classify,
            notify: self.notify,
            hint,
            idempotency: self.idempotency,
        }
    }

    /// Declares the operation safe to repeat.
    pub fn idempotent(mut self) -> Self {
        self.idempotency = Idempotency::Idempotent;
        self
    }

    /// Gives the call an idempotency key, passed to every attempt through
    /// [`Attempt::idempotency_key`]; keyed calls are retried after ambiguous
    /// outcomes.
    pub fn idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency = Idempotency::Key(key);
        self
    }

    /// Sets the idempotency explicitly.
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// Runs a blocking call, sleeping with `std::thread::sleep`.
    ///
    /// # Errors
    ///
    /// [`RetryError`] with the reason, the attempt count and the last error.
    #[inline]
    pub fn call<T, E>(self) -> Result<T, RetryError<E>>
    where
        Op: FnMut(Attempt) -> Result<T, E>,
        C: Classify<T, E>,
        N: FnMut(&RetryEvent<'_, E>),
        H: Fn(&E) -> Option<Duration>,
    {
        self.call_with_sleep(std::thread::sleep)
    }

    /// Runs a blocking call, sleeping with `sleep` (for tests that advance a
    /// manual clock instead of waiting).
    ///
    /// # Errors
    ///
    /// As [`call`](Retry::call).
    #[inline(always)]
    pub fn call_with_sleep<T, E, S>(mut self, mut sleep: S) -> Result<T, RetryError<E>>
    where
        Op: FnMut(Attempt) -> Result<T, E>,
        C: Classify<T, E>,
        N: FnMut(&RetryEvent<'_, E>),
        H: Fn(&E) -> Option<Duration>,
        S: FnMut(Duration),
    {
        let mut controller = Controller::new(self.policy, self.idempotency, DefaultClock::System);
        let mut last_error = None;
        loop {
            let plan = match controller.begin_attempt() {
                Ok(plan) => plan,
                Err(reason) => return Err(give_up(&controller, reason, last_error)),
            };
            let result = (self.op)(plan.attempt);
            let outcome = self.classify.classify(&result);
            let error = match result {
                Ok(value) if outcome.is_success() => {
                    controller.succeeded();
                    return Ok(value);
                }
                Ok(value) => match controller.after_failure(outcome, None) {
                    Decision::Retry(delay) => {
                        (self.notify)(&RetryEvent {
                            attempt: controller.attempts(),
                            delay,
                            outcome,
                            error: None,
                        });
                        sleep(delay);
                        continue;
                    }
                    // Retrying stopped: the caller gets the last answer.
                    Decision::Stop(_) => return Ok(value),
                },
                Err(error) => error,
            };
            match controller.after_failure(outcome, (self.hint)(&error)) {
                Decision::Retry(delay) => {
                    (self.notify)(&RetryEvent {
                        attempt: controller.attempts(),
                        delay,
                        outcome,
                        error: Some(&error),
                    });
                    last_error = Some(error);
                    sleep(delay);
                }
                Decision::Stop(reason) => {
                    return Err(give_up(&controller, reason, Some(error)));
                }
            }
        }
    }
}

fn give_up<E>(
    controller: &Controller<'_>,
    reason: StopReason,
    last_error: Option<E>,
) -> RetryError<E> {
    RetryError {
        reason,
        attempts: controller.attempts(),
        last_outcome: controller.last_outcome(),
        last_error,
    }
}

impl<Op, C, N, H> fmt::Debug for Retry<'_, Op, C, N, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("policy", &self.policy)
            .field("idempotency", &self.idempotency)
            .finish_non_exhaustive()
    }
}

impl<'p, Op, Fut, T, E, C, N, H> IntoFuture for Retry<'p, Op, C, N, H>
where
    Op: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    N: FnMut(&RetryEvent<'_, E>),
    H: Fn(&E) -> Option<Duration>,
{
    type Output = Result<T, RetryError<E>>;
    type IntoFuture = RetryFuture<'p, Op, Fut, E, C, N, H>;

    #[inline]
    fn into_future(self) -> Self::IntoFuture {
        RetryFuture {
            controller: Controller::new(self.policy, self.idempotency, DefaultClock::Tokio),
            op: self.op,
            classify: self.classify,
            notify: self.notify,
            hint: self.hint,
            last_error: None,
            state: State::Idle,
        }
    }
}

pin_project! {
    /// The future of an awaited [`Retry`]. Allocates nothing and reads no
    /// clock unless the policy has a deadline.
    #[must_use = "futures do nothing unless polled"]
    pub struct RetryFuture<'p, Op, Fut, E, C, N, H> {
        controller: Controller<'p>,
        op: Op,
        classify: C,
        notify: N,
        hint: H,
        last_error: Option<E>,
        #[pin]
        state: State<Fut>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut> {
        Idle,
        Running { #[pin] attempt: Fut },
        RunningWithTimeout {
            #[pin] attempt: Fut,
            #[pin] timeout: Sleep,
            timeout_is_deadline: bool,
        },
        Sleeping { #[pin] sleep: Sleep },
    }
}

impl<Op, Fut, T, E, C, N, H> Future for RetryFuture<'_, Op, Fut, E, C, N, H>
where
    Op: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    N: FnMut(&RetryEvent<'_, E>),
    H: Fn(&E) -> Option<Duration>,
{
    type Output = Result<T, RetryError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            // What the attempt that just ended produced, if one did.
            let ended: Result<T, Option<E>>;
            let mut cut_by_deadline = false;
            match this.state.as_mut().project() {
                StateProj::Idle => {
                    let AttemptPlan {
                        attempt,
                        timeout,
                        timeout_is_deadline,
                    } = match this.controller.begin_attempt() {
                        Ok(plan) => plan,
                        Err(reason) => {
                            let error = give_up(this.controller, reason, this.last_error.take());
                            return Poll::Ready(Err(error));
                        }
                    };
                    let attempt = (this.op)(attempt);
                    match timeout {
                        Some(timeout) => this.state.set(State::RunningWithTimeout {
                            attempt,
                            timeout: tokio::time::sleep(timeout),
                            timeout_is_deadline,
                        }),
                        None => this.state.set(State::Running { attempt }),
                    }
                    continue;
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Idle);
                    continue;
                }
                StateProj::Running { attempt } => {
                    ended = ready!(attempt.poll(cx)).map_err(Some);
                }
                StateProj::RunningWithTimeout {
                    attempt,
                    timeout,
                    timeout_is_deadline,
                } => {
                    if let Poll::Ready(result) = attempt.poll(cx) {
                        ended = result.map_err(Some);
                    } else {
                        ready!(timeout.poll(cx));
                        cut_by_deadline = *timeout_is_deadline;
                        ended = Err(None);
                    }
                }
            }
            // The attempt is over: drop its future before deciding.
            this.state.set(State::Idle);
            let (error, outcome, hint) = match ended {
                Ok(value) => {
                    let result = Ok(value);
                    let outcome = this.classify.classify(&result);
                    let Ok(value) = result else {
                        unreachable!("an Ok stays Ok")
                    };
                    if outcome.is_success() {
                        this.controller.succeeded();
                        return Poll::Ready(Ok(value));
                    }
                    match this.controller.after_failure(outcome, None) {
                        Decision::Retry(delay) => {
                            (this.notify)(&RetryEvent {
                                attempt: this.controller.attempts(),
                                delay,
                                outcome,
                                error: None,
                            });
                            if !delay.is_zero() {
                                this.state.set(State::Sleeping {
                                    sleep: tokio::time::sleep(delay),
                                });
                            }
                            continue;
                        }
                        // Retrying stopped: the caller gets the last answer.
                        Decision::Stop(_) => return Poll::Ready(Ok(value)),
                    }
                }
                Err(Some(error)) => {
                    let result = Err(error);
                    let outcome = this.classify.classify(&result);
                    let Err(error) = result else {
                        unreachable!("an Err stays Err")
                    };
                    let hint = (this.hint)(&error);
                    (Some(error), outcome, hint)
                }
                Err(None) => (None, Outcome::TimedOut, None),
            };
            let decision = if cut_by_deadline {
                this.controller.stop(StopReason::DeadlineExceeded, outcome)
            } else {
                this.controller.after_failure(outcome, hint)
            };
            match decision {
                Decision::Retry(delay) => {
                    (this.notify)(&RetryEvent {
                        attempt: this.controller.attempts(),
                        delay,
                        outcome,
                        error: error.as_ref(),
                    });
                    if let Some(error) = error {
                        *this.last_error = Some(error);
                    }
                    if !delay.is_zero() {
                        this.state.set(State::Sleeping {
                            sleep: tokio::time::sleep(delay),
                        });
                    }
                }
                Decision::Stop(reason) => {
                    let last_error = error.or_else(|| this.last_error.take());
                    return Poll::Ready(Err(give_up(this.controller, reason, last_error)));
                }
            }
        }
    }
}

impl<Op, Fut, E, C, N, H> fmt::Debug for RetryFuture<'_, Op, Fut, E, C, N, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFuture")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}
