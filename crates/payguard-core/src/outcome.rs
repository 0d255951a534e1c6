//! How an attempt ended, in the terms retry and breaker decisions need.

use std::time::Duration;

/// How one attempt of an operation ended.
///
/// Retry policies and circuit breakers both act on this one classification,
/// so an error is judged once. The distinction that matters most for money
/// is [`may_have_taken_effect`](Outcome::may_have_taken_effect): a transfer
/// whose request timed out after it was sent may exist at the gateway, and
/// repeating it without an idempotency key could pay twice.
///
/// ```
/// use payguard_core::Outcome;
///
/// assert!(!Outcome::Transient.may_have_taken_effect());
/// assert!(Outcome::Ambiguous.may_have_taken_effect());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The attempt did what was asked.
    Success,
    /// The attempt failed in a way that did not take effect and may succeed
    /// if repeated (connection refused, 503, 502 before the request reached
    /// the server).
    Transient,
    /// The server refused the attempt because of load or a rate limit (429),
    /// optionally saying how long to wait.
    Throttled {
        /// The server's requested delay, if it gave one (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The attempt ran out of time before an answer came. Whether the
    /// request reached the server is unknown.
    TimedOut,
    /// The request was sent and no trustworthy answer came back (the
    /// connection dropped mid-response, a timeout after sending): it may have
    /// taken effect.
    Ambiguous,
    /// The attempt failed in a way that repeating cannot fix (a decline, a
    /// validation error, bad credentials). For a gateway this is the gateway
    /// working correctly.
    Permanent,
}

impl Outcome {
    /// `true` only for [`Outcome::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// `true` when the operation may have been applied even though no
    /// success was seen: [`TimedOut`](Outcome::TimedOut) and
    /// [`Ambiguous`](Outcome::Ambiguous) (and, trivially,
    /// [`Success`](Outcome::Success)). Repeating such an operation is safe only
    /// when it is idempotent or carries an idempotency key.
    pub const fn may_have_taken_effect(self) -> bool {
        matches!(
            self,
            Outcome::Success | Outcome::TimedOut | Outcome::Ambiguous
        )
    }

    /// The server-given delay of a [`Throttled`](Outcome::Throttled) outcome.
    pub const fn retry_after(self) -> Option<Duration> {
        match self {
            Outcome::Throttled { retry_after } => retry_after,
            _ => None,
        }
    }
}

/// Classifies a result into an [`Outcome`]: the one contract every
/// payguard decision uses (retry policies, circuit breakers, their tower
/// layers), so one classifier serves them all and an attempt is judged
/// once.
///
/// A classifier sees the whole result: an `Ok` can be a failure too (an
/// HTTP client that returns a 503 response as `Ok`). Three ways to get one:
///
/// - a closure over the result, `|result: &Result<T, E>| -> Outcome`;
/// - [`from_error`], for the common case where every `Ok` is a success and
///   only errors need judging;
/// - [`HttpClassifier`], for `reqwest` results (feature `reqwest`).
///
/// ```
/// use payguard_core::{from_error, Classify, Outcome};
///
/// #[derive(Debug)]
/// enum GatewayError { Unavailable, Declined }
///
/// let whole = |result: &Result<u32, GatewayError>| match result {
///     Ok(_) => Outcome::Success,
///     Err(GatewayError::Unavailable) => Outcome::Transient,
///     Err(GatewayError::Declined) => Outcome::Permanent,
/// };
/// let errors_only = from_error(|error: &GatewayError| match error {
///     GatewayError::Unavailable => Outcome::Transient,
///     GatewayError::Declined => Outcome::Permanent,
/// });
/// for result in [Ok(1), Err(GatewayError::Unavailable), Err(GatewayError::Declined)] {
///     assert_eq!(whole.classify(&result), errors_only.classify(&result));
/// }
/// ```
pub trait Classify<T, E> {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// An outcome is itself a classifier: every `Ok` is a success, every
/// `Err` is this outcome (`.classify(Outcome::Transient)` retries every
/// error).
impl<T, E> Classify<T, E> for Outcome {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => *self,
        }
    }
}

/// A classifier that judges errors only: every `Ok` is a
/// [`Success`](Outcome::Success), every `Err` is what `judge` says. Made by
/// [`from_error`].
#[derive(Clone, Copy)]
pub struct FromError<F>(F);

/// The classifier that calls every `Ok` a success and judges errors with
/// `judge` (see [`Classify`]).
///
/// ```
/// use payguard_core::{from_error, Classify, Outcome};
///
/// let classify = from_error(|_: &std::io::Error| Outcome::Transient);
/// assert_eq!(classify.classify(&Ok::<_, std::io::Error>(1)), Outcome::Success);
/// ```
pub const fn from_error<F>(judge: F) -> FromError<F> {
    FromError(judge)
}

impl<T, E, F> Classify<T, E> for FromError<F>
where
    F: Fn(&E) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => (self.0)(error),
        }
    }
}

impl<F> std::fmt::Debug for FromError<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromError(..)")
    }
}

/// Classifies HTTP status codes.
///
/// # Default
///
/// | status | outcome |
/// |---|---|
/// | 100–399 | [`Success`](Outcome::Success) |
/// | 429 | [`Throttled`](Outcome::Throttled), with the `Retry-After` delay if given |
/// | 408, 500, 502, 503, 504 | [`Transient`](Outcome::Transient) |
/// | any other 400–599 | [`Permanent`](Outcome::Permanent) |
/// | anything outside 100–599 | [`Ambiguous`](Outcome::Ambiguous): not HTTP, so nothing is known |
///
/// The transient set is configurable. Gateways behind Cloudflare, for
/// example, answer 522 when the origin could not be reached:
///
/// ```
/// use payguard_core::{HttpClassifier, Outcome};
///
/// let classifier = HttpClassifier::new().with_transient(522);
/// assert_eq!(classifier.classify_status(522, None), Outcome::Transient);
/// assert_eq!(classifier.classify_status(402, None), Outcome::Permanent);
/// ```
///
/// Note that a 500, 502 or 504 to a request that is not idempotent may have
/// taken effect (a proxy can time out after forwarding it). `payguard-retry`
/// accounts for that when it knows the request; code classifying by hand
/// should too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpClassifier {
    /// Bit `n` set: status `400 + n` is transient (`n < 200`).
    transient: ErrorStatusSet,
}

/// A set of status codes in 400–599, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ErrorStatusSet {
    low: u128,
    high: u128,
}

impl ErrorStatusSet {
    const EMPTY: Self = Self { low: 0, high: 0 };

    /// `(bit in low, bit in high)` for `status`; both zero outside 400–599.
    const fn bits(status: u16) -> (u128, u128) {
        if status < 400 || status > 599 {
            return (0, 0);
        }
        let offset = (status - 400) as u32;
        if offset < 128 {
            (1 << offset, 0)
        } else {
            (0, 1 << (offset - 128))
        }
    }

    const fn with(self, status: u16) -> Self {
        let (low, high) = Self::bits(status);
        Self {
            low: self.low | low,
            high: self.high | high,
        }
    }

    const fn without(self, status: u16) -> Self {
        let (low, high) = Self::bits(status);
        Self {
            low: self.low & !low,
            high: self.high & !high,
        }
    }

    const fn contains(self, status: u16) -> bool {
        let (low, high) = Self::bits(status);
        self.low & low != 0 || self.high & high != 0
    }
}

impl HttpClassifier {
    /// The default classification (see the type's docs).
    pub const fn new() -> Self {
        Self {
            transient: ErrorStatusSet::EMPTY,
        }
        .with_transient(408)
        .with_transient(500)
        .with_transient(502)
        .with_transient(503)
        .with_transient(504)
    }

    /// Treats `status` as [`Transient`](Outcome::Transient). Codes outside
    /// 400–599 are ignored: they are never failures.
    pub const fn with_transient(mut self, status: u16) -> Self {
        if status != 429 {
            self.transient = self.transient.with(status);
        }
        self
    }

    /// Treats `status` as [`Permanent`](Outcome::Permanent) instead.
    pub const fn without_transient(mut self, status: u16) -> Self {
        self.transient = self.transient.without(status);
        self
    }

    /// The outcome of a response with `status`; `retry_after` is the parsed
    /// `Retry-After` header, used for 429.
    pub const fn classify_status(&self, status: u16, retry_after: Option<Duration>) -> Outcome {
        match status {
            100..=399 => Outcome::Success,
            429 => Outcome::Throttled { retry_after },
            400..=599 if self.transient.contains(status) => Outcome::Transient,
            400..=599 => Outcome::Permanent,
            _ => Outcome::Ambiguous,
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "reqwest")]
mod reqwest_support {
    use super::{HttpClassifier, Outcome};
    use crate::RetryAfter;
    use std::time::SystemTime;

    impl HttpClassifier {
        /// The outcome of a `reqwest` call: the response's status (with its
        /// `Retry-After` header judged against `now`), or the error's kind.
        ///
        /// | error | outcome |
        /// |---|---|
        /// | connecting failed (including a connect timeout) | [`Transient`](Outcome::Transient): nothing was sent |
        /// | request could not be built, redirect policy | [`Permanent`](Outcome::Permanent): nothing was sent |
        /// | timeout after connecting | [`Ambiguous`](Outcome::Ambiguous) |
        /// | anything else (reset mid-flight, body or decode error) | [`Ambiguous`](Outcome::Ambiguous) |
        /// | `error_for_status` errors | by status, as [`classify_status`](HttpClassifier::classify_status) |
        pub fn classify_reqwest(
            &self,
            result: &Result<reqwest::Response, reqwest::Error>,
            now: SystemTime,
        ) -> Outcome {
            match result {
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|value| RetryAfter::parse(value.as_bytes()))
                        .map(|hint| hint.delay_from(now));
                    self.classify_status(response.status().as_u16(), retry_after)
                }
                Err(error) => self.classify_reqwest_error(error),
            }
        }

        /// The outcome of a `reqwest::Error` alone (see
        /// [`classify_reqwest`](HttpClassifier::classify_reqwest)). With
        /// [`from_error`](crate::from_error) it judges
        /// `reqwest::Result<T>` of any `T` (a decoded body, say).
        pub fn classify_reqwest_error(&self, error: &reqwest::Error) -> Outcome {
            if let Some(status) = error.status() {
                return self.classify_status(status.as_u16(), None);
            }
            if error.is_connect() {
                Outcome::Transient
            } else if error.is_builder() || error.is_redirect() {
                Outcome::Permanent
            } else {
                // Timeouts after connecting, resets mid-flight, truncated or
                // undecodable bodies: the request may have been applied.
                Outcome::Ambiguous
            }
        }
    }

    /// A `reqwest` response judged by its status (a `Retry-After` date is
    /// measured against the system clock; use
    /// [`classify_reqwest`](HttpClassifier::classify_reqwest) to pass
    /// another time).
    impl crate::Classify<reqwest::Response, reqwest::Error> for HttpClassifier {
        fn classify(&self, result: &Result<reqwest::Response, reqwest::Error>) -> Outcome {
            self.classify_reqwest(result, crate::Clock::wall(&crate::SystemClock))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table() {
        let c = HttpClassifier::new();
        for status in [100, 200, 201, 204, 299, 301, 304, 399] {
            assert_eq!(
                c.classify_status(status, None),
                Outcome::Success,
                "{status}"
            );
        }
        for status in [408, 500, 502, 503, 504] {
            assert_eq!(
                c.classify_status(status, None),
                Outcome::Transient,
                "{status}"
            );
        }
        for status in [
            400, 401, 402, 403, 404, 409, 410, 422, 499, 501, 505, 520, 599,
        ] {
            assert_eq!(
                c.classify_status(status, None),
                Outcome::Permanent,
                "{status}"
            );
        }
        for status in [0, 1, 99, 600, 999, 1000, u16::MAX] {
            assert_eq!(
                c.classify_status(status, None),
                Outcome::Ambiguous,
                "{status}"
            );
        }
    }

    #[test]
    fn throttled_carries_the_hint() {
        let c = HttpClassifier::default();
        let hint = Some(Duration::from_secs(7));
        assert_eq!(
            c.classify_status(429, hint),
            Outcome::Throttled { retry_after: hint }
        );
        assert_eq!(c.classify_status(429, hint).retry_after(), hint);
        // The hint only matters for 429.
        assert_eq!(c.classify_status(503, hint), Outcome::Transient);
    }

    #[test]
    fn transient_set_is_configurable() {
        let c = HttpClassifier::new()
            .with_transient(522)
            .without_transient(500);
        assert_eq!(c.classify_status(522, None), Outcome::Transient);
        assert_eq!(c.classify_status(500, None), Outcome::Permanent);
        // 429 stays throttled and 2xx stays success whatever is configured.
        let c = c
            .with_transient(429)
            .with_transient(200)
            .without_transient(429);
        assert_eq!(
            c.classify_status(429, None),
            Outcome::Throttled { retry_after: None }
        );
        assert_eq!(c.classify_status(200, None), Outcome::Success);
        // Out-of-range codes are ignored, not a panic.
        let c = c.with_transient(u16::MAX).without_transient(u16::MAX);
        assert_eq!(
            c,
            HttpClassifier::new()
                .with_transient(522)
                .without_transient(500)
        );
    }

    #[test]
    fn effect_may_have_happened_only_for_timeouts_and_ambiguous() {
        assert!(Outcome::TimedOut.may_have_taken_effect());
        assert!(Outcome::Ambiguous.may_have_taken_effect());
        assert!(Outcome::Success.may_have_taken_effect());
        assert!(!Outcome::Transient.may_have_taken_effect());
        assert!(!Outcome::Permanent.may_have_taken_effect());
        assert!(!Outcome::Throttled { retry_after: None }.may_have_taken_effect());
    }

    #[test]
    fn closures_are_classifiers() {
        let classify = |r: &Result<(), u16>| match r {
            Ok(()) => Outcome::Success,
            Err(status) => HttpClassifier::new().classify_status(*status, None),
        };
        assert_eq!(classify.classify(&Err(503)), Outcome::Transient);
        assert_eq!(classify.classify(&Ok(())), Outcome::Success);
    }
}
