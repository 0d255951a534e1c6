//! Wrapping a call: async, blocking.

use crate::breaker::{CircuitBreaker, Rejected};
use payguard_core::Classify;
use std::fmt;
use std::future::Future;

/// A call through a breaker failed: it was rejected, or it ran and failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The breaker did not let the call through; nothing was sent.
    Rejected(Rejected),
    /// The call ran and returned this error.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The rejection, if the call never ran.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            BreakerError::Rejected(rejected) => Some(rejected),
            BreakerError::Inner(_) => None,
        }
    }

    /// `circuit_open` or `probes_busy` when rejected
    /// ([`Rejected::code`]), `failed` when the call ran and failed.
    pub fn code(&self) -> &'static str {
        match self {
            BreakerError::Rejected(rejected) => rejected.code(),
            BreakerError::Inner(_) => "failed",
        }
    }

    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Inner(error) => Some(error),
            BreakerError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Rejected(rejected) => rejected.fmt(f),
            BreakerError::Inner(error) => error.fmt(f),
        }
    }
}

/// Transparent: the message and the source are those of the rejection or
/// of the call's own error, so nothing prints twice.
impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BreakerError::Rejected(rejected) => rejected.source(),
            BreakerError::Inner(error) => error.source(),
        }
    }
}

impl CircuitBreaker {
    /// Runs `op` if the breaker admits it and records its outcome, judged by
    /// `classify`. If the returned future is dropped before `op` finishes,
    /// nothing is recorded (and a probe's place is freed).
    ///
    /// ```
    /// use payguard_breaker::{BreakerError, CircuitBreaker};
    /// use payguard_core::{HttpClassifier, Outcome};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::builder().name("paystack").build()?;
    /// let classify = |result: &Result<u16, std::io::Error>| match result {
    ///     Ok(status) => HttpClassifier::new().classify_status(*status, None),
    ///     Err(_) => Outcome::Ambiguous,
    /// };
    /// match breaker.call(classify, || async { Ok(200) }).await {
    ///     Ok(status) => assert_eq!(status, 200),
    ///     Err(BreakerError::Rejected(rejected)) => println!("fail over; retry in {:?}", rejected.retry_after()),
    ///     Err(error) => return Err(error.into()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BreakerError::Rejected`] without running `op`, or
    /// [`BreakerError::Inner`] with `op`'s error.
    pub async fn call<T, E, C, F, Fut>(&self, classify: C, op: F) -> Result<T, BreakerError<E>>
    where
        C: Classify<T, E>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(BreakerError::Rejected)?;
        let result = op().await;
        permit.record(classify.classify(&result));
        result.map_err(BreakerError::Inner)
    }

    /// [`call`](Self::call) for blocking code.
    ///
    /// ```
    /// use payguard_breaker::CircuitBreaker;
    /// use payguard_core::Outcome;
    ///
    /// let breaker = CircuitBreaker::builder().build()?;
    /// let value = breaker.call_blocking(|r: &Result<u8, ()>| if r.is_ok() { Outcome::Success } else { Outcome::Transient }, || Ok(7));
    /// assert_eq!(value.ok(), Some(7));
    /// # Ok::<(), payguard_breaker::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    #[inline]
    pub fn call_blocking<T, E, C, F>(&self, classify: C, op: F) -> Result<T, BreakerError<E>>
    where
        C: Classify<T, E>,
        F: FnOnce() -> Result<T, E>,
    {
        let permit = match self.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => return Err(BreakerError::Rejected(rejected)),
        };
        let result = op();
        permit.record(classify.classify(&result));
        result.map_err(BreakerError::Inner)
    }
}
