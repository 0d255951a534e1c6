//! The store contract: claim, complete, release, extend, reap.

use crate::key::{Fingerprint, ScopeKey};
use payguard_core::FencingToken;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so that [`IdempotencyStore`] is object safe
/// (`Arc<dyn IdempotencyStore>` works).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a claim asks for.
///
/// # Default
///
/// A 30 s lease and 24 h retention, as [`IdempotencyLayer`](crate::IdempotencyLayer)'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The record.
    pub key: ScopeKey,
    /// What the request said.
    pub fingerprint: Fingerprint,
    /// How long the claim holds before another request may take it over.
    pub lease: Duration,
    /// How long the record (and its stored response) is kept.
    pub retention: Duration,
}

impl ClaimRequest {
    /// A claim on `key` for a request that said `fingerprint`, with the
    /// default lease and retention.
    pub const fn new(key: ScopeKey, fingerprint: Fingerprint) -> Self {
        Self {
            key,
            fingerprint,
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
        }
    }

    /// How long the claim holds before another request may take it over.
    #[must_use]
    pub const fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long the record (and its stored response) is kept.
    #[must_use]
    pub const fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }
}

/// Proof of holding a claim. Its token only goes up: a takeover after the
/// lease expired gets a higher one, and everything the old holder does with
/// its token afterwards is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The record.
    pub key: ScopeKey,
    /// The fencing token.
    pub token: FencingToken,
    /// 1 for the first execution, 2 after one takeover, ...
    pub attempt: u32,
    /// How long the lease had left when the store granted it, by the
    /// store's clock at that moment: trust it until the time the claim was
    /// sent plus this, minus a safety margin.
    pub granted: Duration,
}

impl Lease {
    /// A lease on `key` with fencing `token`, for the `attempt`-th
    /// execution, with `granted` left when the store granted it: for
    /// implementations of [`IdempotencyStore`].
    pub const fn new(key: ScopeKey, token: FencingToken, attempt: u32, granted: Duration) -> Self {
        Self {
            key,
            token,
            attempt,
            granted,
        }
    }
}

/// A stored response: status, allow-listed headers and body, replayed byte
/// for byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StoredResponse {
    /// The HTTP status (or any code the application chooses).
    pub status: u16,
    /// Headers kept for replay, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// A response with `status` and `body` and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header to replay.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Whether every header can be encoded for storage (a name of at most
    /// 65,535 bytes, a value of at most 4 GiB); stores refuse the response
    /// as too large otherwise.
    pub(crate) fn headers_fit(&self) -> bool {
        self.headers.iter().all(|(name, value)| {
            u16::try_from(name.len()).is_ok() && u32::try_from(value.len()).is_ok()
        })
    }

    /// Encodes the headers for storage: for each, name length (u16 BE),
    /// name, value length (u32 BE), value. A header too long to encode
    /// (see [`headers_fit`](Self::headers_fit), which stores check first)
    /// is left out rather than written with a wrong length.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // the PostgreSQL store's format
    pub(crate) fn encode_headers(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.headers {
            let (Ok(name_len), Ok(value_len)) =
                (u16::try_from(name.len()), u32::try_from(value.len()))
            else {
                continue;
            };
            out.extend_from_slice(&name_len.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&value_len.to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// Decodes what [`encode_headers`](Self::encode_headers) wrote; `None`
    /// for anything else.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn decode_headers(mut bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
        let mut headers = Vec::new();
        while !bytes.is_empty() {
            let (len, rest) = bytes.split_first_chunk::<2>()?;
            let (name, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let (value, rest) =
                rest.split_at_checked(usize::try_from(u32::from_be_bytes(*len)).ok()?)?;
            headers.push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
            bytes = rest;
        }
        Some(headers)
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Yours: execute, then complete or release.
    Claimed(Lease),
    /// Already done with this request: here is what it answered.
    Replay(StoredResponse),
    /// Another holder is executing it now; ask again after this long.
    InFlight {
        /// When the holder's lease ends, at the latest.
        retry_after: Duration,
    },
    /// The key was used for a different request.
    Mismatch,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The token no longer owns the claim: the lease expired and another
    /// request took it over, or the claim was completed or released. Nothing
    /// was changed.
    #[error(
        "the idempotency claim is no longer held by this owner (lease lost to a takeover, or already finished)"
    )]
    LeaseLost,
    /// The response is larger than the store keeps.
    #[error("the response is {size} bytes, more than the {limit} the idempotency store keeps")]
    ResponseTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The store cannot be reached or failed; the protected operation must
    /// not run (fail closed).
    #[error("the idempotency store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A stable code: `lease_lost`, `response_too_large` or `unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::LeaseLost => "lease_lost",
            StoreError::ResponseTooLarge { .. } => "response_too_large",
            StoreError::Unavailable(_) => "unavailable",
        }
    }
}

/// Where idempotency records live. Both backends of this crate pass the
/// same conformance suite (`conformance`, feature `test-util`), which
/// third-party backends can run too.
///
/// The contract:
/// - `claim` decides in one step: a new or expired record, or an
///   in-progress one whose lease expired with the same fingerprint, is
///   claimed with a higher token; a completed one is replayed; a live one
///   is in flight; a different fingerprint is a mismatch (checked first).
/// - `complete`, `release` and `extend` act only if the token still owns an
///   in-progress claim, else [`StoreError::LeaseLost`] and nothing changes.
/// - Expiry is judged by the store's clock at the moment of each operation
///   (the database's `clock_timestamp()` for PostgreSQL), never by a
///   client's.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `request.key`.
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>>;

    /// Stores the response and finishes the claim.
    fn complete<'a>(
        &'a self,
        lease: &'a Lease,
        response: &'a StoredResponse,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives the claim up so the next request executes afresh (the attempt
    /// failed in a retryable way).
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Renews the lease for `by` from now; answers how long it now has
    /// left, by the store's clock.
    fn extend<'a>(
        &'a self,
        lease: &'a Lease,
        by: Duration,
    ) -> BoxFuture<'a, Result<Duration, StoreError>>;

    /// Deletes up to `batch` records past their retention (never a claim
    /// whose lease is live); returns how many went.
    fn reap(&self, batch: usize) -> BoxFuture<'_, Result<u64, StoreError>>;
}

// `Arc<dyn IdempotencyStore>` must work.
const _: fn(&dyn IdempotencyStore) = |_| {};

/// What happens to a claim after its request ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Store the response; later retries replay it.
    Store,
    /// Release the key; the next retry executes afresh.
    Release,
}

/// Which outcomes are stored.
///
/// # Default
///
/// 2xx and deterministic 4xx are stored; 5xx, 408 and 429 (and panics,
/// handled by the middleware) release the key. [`OutcomePolicy::stripe`]
/// stores every response once execution began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutcomePolicy {
    store_server_errors: bool,
    release_client_errors: bool,
}

impl OutcomePolicy {
    /// Stripe's rule: every response is stored, 500s included.
    pub const fn stripe() -> Self {
        Self {
            store_server_errors: true,
            release_client_errors: false,
        }
    }

    /// Only successes (1xx to 3xx) are stored; every error releases the
    /// key. For routes whose 4xx answers are re-validated on a retry with
    /// the same result (or a newer, truer one: dates that were taken may be
    /// free again), so a flood of invalid requests with fresh keys leaves
    /// no records behind.
    pub const fn successes_only() -> Self {
        Self {
            store_server_errors: false,
            release_client_errors: true,
        }
    }

    /// What to do after a response with `status`.
    pub const fn disposition(&self, status: u16) -> Disposition {
        match status {
            400..=499 if self.release_client_errors => Disposition::Release,
            408 | 429 if !self.store_server_errors => Disposition::Release,
            500..=599 if !self.store_server_errors => Disposition::Release,
            _ => Disposition::Store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_name_too_long_to_encode_does_not_fit_and_is_never_written_truncated() {
        let long = StoredResponse::new(200, "").header("x".repeat(70_000), "v");
        assert!(!long.headers_fit());
        assert!(long.encode_headers().is_empty());
        let ok = StoredResponse::new(200, "").header("x".repeat(65_535), "v");
        assert!(ok.headers_fit());
        assert_eq!(
            StoredResponse::decode_headers(&ok.encode_headers()),
            Some(ok.headers.clone())
        );
    }

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        let response = StoredResponse {
            status: 201,
            headers: vec![
                ("location".into(), b"/v1/bookings/7".to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ],
            body: b"{}".to_vec(),
        };
        assert_eq!(
            StoredResponse::decode_headers(&response.encode_headers()),
            Some(response.headers)
        );
        assert_eq!(StoredResponse::decode_headers(&[0, 9, b'x']), None);
    }

    #[test]
    fn default_policy() {
        let policy = OutcomePolicy::default();
        for status in [200, 201, 204, 400, 402, 404, 409, 422] {
            assert_eq!(policy.disposition(status), Disposition::Store, "{status}");
        }
        for status in [408, 429, 500, 502, 503] {
            assert_eq!(policy.disposition(status), Disposition::Release, "{status}");
        }
        assert_eq!(OutcomePolicy::stripe().disposition(500), Disposition::Store);
        let successes = OutcomePolicy::successes_only();
        assert_eq!(successes.disposition(201), Disposition::Store);
        for status in [400, 409, 422, 429, 500] {
            assert_eq!(
                successes.disposition(status),
                Disposition::Release,
                "{status}"
            );
        }
    }
}
