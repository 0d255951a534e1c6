//! Retrying `reqwest` requests: each attempt sends a clone of the request,
//! so an `Idempotency-Key` header is the same on every attempt.

use crate::attempt::{Idempotency, RetryEvent};
use crate::error::{RetryError, StopReason};
use crate::policy::RetryPolicy;
use payguard_core::IdempotencyKey;
use payguard_core::{Clock, HttpClassifier, Outcome, RetryAfter, SystemClock, from_error};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response};
use std::fmt;
use std::time::Duration;

/// The `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header).
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Adds [`with_retry`](RetryRequest::with_retry) to `reqwest::RequestBuilder`.
///
/// ```no_run
/// use payguard_retry::{IdempotencyKey, RetryPolicy, RetryRequest};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = RetryPolicy::builder().name("paystack").build()?;
/// let client = reqwest::Client::new();
/// let response = client
///     .post("http://127.0.0.1:4010/paystack/transfer")
///     .body(r#"{"reference":"escrow_42","amount":250000}"#)
///     .with_retry(&policy)
///     .idempotency_key(IdempotencyKey::new("escrow_42")?)
///     .send()
///     .await?;
/// assert!(response.status().is_success());
/// # Ok(())
/// # }
/// ```
pub trait RetryRequest: sealed::Sealed {
    /// Prepares this request to be sent under `policy`.
    fn with_retry(self, policy: &RetryPolicy) -> HttpRetry<'_>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for reqwest::RequestBuilder {}
}

impl RetryRequest for RequestBuilder {
    fn with_retry(self, policy: &RetryPolicy) -> HttpRetry<'_> {
        HttpRetry {
            policy,
            request: self,
            classifier: HttpClassifier::new(),
            provider_hint: None,
            notify: None,
            key: None,
        }
    }
}

type ProviderHint = Box<dyn Fn(&HeaderMap) -> Option<Duration> + Send + Sync>;
type Notify = Box<dyn FnMut(&RetryEvent<'_, HttpError>) + Send>;

/// A `reqwest` request about to be sent with retries.
///
/// Whether it may be repeated after an ambiguous outcome follows HTTP:
/// `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and `DELETE` are idempotent; any
/// request with an `Idempotency-Key` header is keyed; anything else (`POST`,
/// `PATCH`) is sent again only after failures that certainly did not take
/// effect. For such requests a 500, 502 or 504 counts as
/// [`Outcome::Ambiguous`]: the server, or a proxy that timed out after
/// forwarding the request, may have acted on it.
///
/// `Retry-After` (both forms) is honoured on every failed response, as a
/// floor for the next sleep clamped to the policy's `max_delay`.
#[must_use = "nothing is sent until `send` is awaited"]
pub struct HttpRetry<'p> {
    policy: &'p RetryPolicy,
    request: RequestBuilder,
    classifier: HttpClassifier,
    provider_hint: Option<ProviderHint>,
    notify: Option<Notify>,
    key: Option<IdempotencyKey>,
}

impl fmt::Debug for HttpRetry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRetry")
            .field("policy", &self.policy.name())
            .field("request", &self.request)
            .field("classifier", &self.classifier)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl HttpRetry<'_> {
    /// How statuses are judged (default: [`HttpClassifier::new`]).
    pub fn classifier(mut self, classifier: HttpClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Reads a provider's own "wait this long" header (rate-limit reset
    /// headers and the like); combined with `Retry-After`, the longer wins.
    pub fn provider_hint(
        mut self,
        hint: impl Fn(&HeaderMap) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        self.provider_hint = Some(Box::new(hint));
        self
    }

    /// Called before each retry's sleep, as [`Retry::notify`](crate::Retry::notify).
    pub fn notify(
        mut self,
        notify: impl FnMut(&RetryEvent<'_, HttpError>) + Send + 'static,
    ) -> Self {
        self.notify = Some(Box::new(notify));
        self
    }

    /// Sends `key` as the `Idempotency-Key` header on every attempt.
    pub fn idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Sends the request, retrying as the policy allows. A response is
    /// returned when its status classifies as success.
    ///
    /// # Errors
    ///
    /// [`RetryError`] whose last error is the last failed response
    /// ([`HttpError::Status`], body unread) or transport error, or
    /// [`HttpError::BodyNotReplayable`] when the body is a stream (nothing is
    /// sent then).
    pub async fn send(self) -> Result<Response, RetryError<HttpError>> {
        let HttpRetry {
            policy,
            mut request,
            classifier,
            provider_hint,
            mut notify,
            key,
        } = self;
        if let Some(key) = &key
            && let Ok(value) = HeaderValue::from_str(key.as_str())
        {
            request = request.header(IDEMPOTENCY_KEY, value);
        }
        let Some(probe) = request.try_clone() else {
            return Err(refuse(HttpError::BodyNotReplayable));
        };
        let probe = probe
            .build()
            .map_err(|error| refuse(HttpError::Transport(error)))?;
        let idempotency = idempotency_of(probe.method(), probe.headers());
        let unkeyed_write = idempotency == Idempotency::NotIdempotent;
        let wall = || match &policy.clock {
            Some(clock) => clock.wall(),
            None => SystemClock.wall(),
        };

        policy
            .retry(|_attempt| {
                let attempt = request.try_clone();
                async move {
                    let Some(attempt) = attempt else {
                        return Err(HttpError::BodyNotReplayable);
                    };
                    match attempt.send().await {
                        Ok(response)
                            if classifier
                                .classify_status(response.status().as_u16(), None)
                                .is_success() =>
                        {
                            Ok(response)
                        }
                        Ok(response) => Err(HttpError::Status(response)),
                        Err(error) => Err(HttpError::Transport(error)),
                    }
                }
            })
            .idempotency(idempotency)
            .notify(|event: &RetryEvent<'_, HttpError>| {
                if let Some(notify) = notify.as_mut() {
                    notify(event);
                }
            })
            .classify(from_error(|error: &HttpError| match error {
                HttpError::Status(response) => {
                    let status = response.status().as_u16();
                    match classifier.classify_status(status, None) {
                        Outcome::Transient if unkeyed_write && status != 408 && status != 503 => {
                            Outcome::Ambiguous
                        }
                        outcome => outcome,
                    }
                }
                HttpError::Transport(error) => classifier.classify_reqwest_error(error),
                HttpError::BodyNotReplayable => Outcome::Permanent,
            }))
            .hint(|error: &HttpError| {
                let HttpError::Status(response) = error else {
                    return None;
                };
                let headers = response.headers();
                let retry_after = headers
                    .get(RETRY_AFTER)
                    .and_then(|value| RetryAfter::parse(value.as_bytes()))
                    .map(|hint| hint.delay_from(wall()));
                let provider = provider_hint.as_ref().and_then(|hint| hint(headers));
                retry_after.max(provider)
            })
            .await
    }
}

fn idempotency_of(method: &Method, headers: &HeaderMap) -> Idempotency {
    if let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| IdempotencyKey::from_header(value.as_bytes()).ok())
    {
        return Idempotency::Key(key);
    }
    match *method {
        Method::GET
        | Method::HEAD
        | Method::OPTIONS
        | Method::TRACE
        | Method::PUT
        | Method::DELETE => Idempotency::Idempotent,
        _ => Idempotency::NotIdempotent,
    }
}

/// A request that was never sent.
fn refuse(error: HttpError) -> RetryError<HttpError> {
    RetryError {
        reason: StopReason::Permanent,
        attempts: 0,
        last_outcome: Outcome::Permanent,
        last_error: Some(error),
    }
}

/// Why an HTTP attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server answered with a status that is not a success; the
    /// response (body unread) is here to inspect.
    #[error("the server answered {}", .0.status())]
    Status(Response),
    /// The request could not be built, sent, or its answer received.
    #[error("the request failed")]
    Transport(#[source] reqwest::Error),
    /// The body is a stream and cannot be sent twice; nothing was sent.
    #[error(
        "the request body is a stream and cannot be replayed; buffer it to send it with retries"
    )]
    BodyNotReplayable,
}

impl HttpError {
    /// A stable code: `status`, `transport` or `body_not_replayable`.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::Status(_) => "status",
            HttpError::Transport(_) => "transport",
            HttpError::BodyNotReplayable => "body_not_replayable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_follows_method_and_key() {
        let empty = HeaderMap::new();
        assert_eq!(
            idempotency_of(&Method::GET, &empty),
            Idempotency::Idempotent
        );
        assert_eq!(
            idempotency_of(&Method::PUT, &empty),
            Idempotency::Idempotent
        );
        assert_eq!(
            idempotency_of(&Method::POST, &empty),
            Idempotency::NotIdempotent
        );
        assert_eq!(
            idempotency_of(&Method::PATCH, &empty),
            Idempotency::NotIdempotent
        );
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k1"));
        assert_eq!(
            idempotency_of(&Method::POST, &keyed),
            Idempotency::Key(IdempotencyKey::new("k1").unwrap())
        );
        // A key that is not a valid key does not make a POST safe.
        keyed.insert(IDEMPOTENCY_KEY, HeaderValue::from_static(""));
        assert_eq!(
            idempotency_of(&Method::POST, &keyed),
            Idempotency::NotIdempotent
        );
    }
}
