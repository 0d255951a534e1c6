//! [`Verified`]: a body that passed verification, and what is known about it.

use crate::event::{self, EventHint, EventId};
use crate::provider::Provider;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A delivery whose signature was verified. Only [`Verifier`](crate::Verifier)
/// makes one, so code that takes a `Verified` cannot be handed an
/// unverified body.
pub struct Verified<B> {
    body: B,
    provider: Option<Provider>,
    key_id: Arc<str>,
    signed_at: Option<u64>,
    body_authenticated: bool,
    event: EventHint,
}

impl<B: AsRef<[u8]>> Verified<B> {
    pub(crate) fn new(
        body: B,
        provider: Option<Provider>,
        key_id: Arc<str>,
        signed_at: Option<u64>,
        body_authenticated: bool,
        event: EventHint,
    ) -> Self {
        Self {
            body,
            provider,
            key_id,
            signed_at,
            body_authenticated,
            event,
        }
    }

    /// The raw body, exactly as received.
    pub fn body(&self) -> &[u8] {
        self.body.as_ref()
    }

    /// The body, owned.
    pub fn into_body(self) -> B {
        self.body
    }

    /// The id of the key that matched (`key-1`, ... or your own), so a
    /// rotated-out key can be retired once nothing matches it any more.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signed timestamp, for schemes that sign one.
    pub fn signed_at(&self) -> Option<SystemTime> {
        self.signed_at
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Whether the signature covers the body. `false` only for Flutterwave's
    /// legacy `verif-hash`, which proves who sent the request but not what
    /// it says: confirm the transaction with the gateway before acting.
    pub fn body_authenticated(&self) -> bool {
        self.body_authenticated
    }

    /// The id to de-duplicate on (see [`EventIdSource`](crate::EventIdSource)
    /// for where it comes from per provider). Reading a body id parses the
    /// body, so call it once.
    pub fn event_id(&self) -> EventId {
        event::event_id(self.provider, &self.event, self.body.as_ref())
    }

    /// Parses the body as JSON.
    ///
    /// # Errors
    ///
    /// The parse error.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.body.as_ref())
    }
}

impl<B> fmt::Debug for Verified<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may carry personal data; it is not printed.
        f.debug_struct("Verified")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("signed_at", &self.signed_at)
            .field("body_authenticated", &self.body_authenticated)
            .finish_non_exhaustive()
    }
}
