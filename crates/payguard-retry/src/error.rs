//! Why a call gave up, with what it last saw.

use payguard_core::Outcome;
use std::fmt;

/// Why retrying stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The last error was classified [`Outcome::Permanent`]: repeating
    /// cannot help.
    Permanent,
    /// Every allowed attempt was made.
    AttemptsExhausted,
    /// The deadline was reached, or the next sleep would have ended past it
    /// (including a server asking to wait longer than the time left).
    DeadlineExceeded,
    /// The retry budget had no token left.
    BudgetExhausted,
    /// The last attempt may have taken effect ([`Outcome::TimedOut`] or
    /// [`Outcome::Ambiguous`]) and the operation is neither idempotent nor
    /// keyed, so repeating it could apply it twice. Resolve it by asking the
    /// server, not by sending it again.
    NotIdempotent,
}

impl StopReason {
    /// A short snake_case name, for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            StopReason::Permanent => "permanent",
            StopReason::AttemptsExhausted => "attempts_exhausted",
            StopReason::DeadlineExceeded => "deadline_exceeded",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::NotIdempotent => "not_idempotent",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Permanent => "the error is permanent",
            StopReason::AttemptsExhausted => "attempts exhausted",
            StopReason::DeadlineExceeded => "the deadline would be exceeded",
            StopReason::BudgetExhausted => "the retry budget is exhausted",
            StopReason::NotIdempotent => {
                "the attempt may have taken effect and the operation is not idempotent"
            }
        })
    }
}

/// A call that gave up: why, after how many attempts, and the last error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use payguard_core::Outcome;
/// use payguard_retry::{RetryPolicy, StopReason};
///
/// let policy = RetryPolicy::builder().max_attempts(2).build().unwrap();
/// let error = policy
///     .retry(|_| async { Err::<(), _>("gateway unavailable") })
///     .classify(Outcome::Transient)
///     .await
///     .unwrap_err();
/// assert_eq!(error.reason(), StopReason::AttemptsExhausted);
/// assert_eq!(error.attempts(), 2);
/// assert_eq!(error.last_error(), Some(&"gateway unavailable"));
/// # }
/// ```
#[derive(Debug)]
pub struct RetryError<E> {
    pub(crate) reason: StopReason,
    pub(crate) attempts: u32,
    pub(crate) last_outcome: Outcome,
    pub(crate) last_error: Option<E>,
}

impl<E> RetryError<E> {
    /// Why retrying stopped.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// A stable snake_case code for the reason, to branch on or log
    /// ([`StopReason::as_str`]).
    pub fn code(&self) -> &'static str {
        self.reason.as_str()
    }

    /// How many attempts were made (started), the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How the last attempt was classified ([`Outcome::TimedOut`] when it
    /// was cut off).
    pub fn last_outcome(&self) -> Outcome {
        self.last_outcome
    }

    /// The most recent error an attempt returned; `None` if every attempt
    /// was cut off by a timeout.
    pub fn last_error(&self) -> Option<&E> {
        self.last_error.as_ref()
    }

    /// The most recent error, owned.
    pub fn into_last_error(self) -> Option<E> {
        self.last_error
    }

    /// Applies `f` to the last error.
    pub fn map_err<F, E2>(self, f: F) -> RetryError<E2>
    where
        F: FnOnce(E) -> E2,
    {
        RetryError {
            reason: self.reason,
            attempts: self.attempts,
            last_outcome: self.last_outcome,
            last_error: self.last_error.map(f),
        }
    }
}

impl<E> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "gave up after {} attempt{plural}: {}",
            self.attempts, self.reason
        )?;
        if self.last_error.is_none() {
            f.write_str("; the last attempt timed out")?;
        }
        Ok(())
    }
}

/// The last error is the [`source`](std::error::Error::source), not part
/// of the message, so a report that walks the chain prints it once.
impl<E> std::error::Error for RetryError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_error
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}
