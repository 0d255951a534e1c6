//! Keys, scopes and fingerprints: what a stored record is found by and
//! checked against.

use sha2::{Digest, Sha256};
use std::fmt;

/// Where a key lives, hashed with the key: `SHA-256(scope ‖ 0 ‖ key)`. Raw
/// client keys are never stored or indexed, and the same key in two scopes
/// (two tenants, two routes) names two records.
///
/// ```
/// use payguard_idempotency::ScopeKey;
///
/// let a = ScopeKey::new("tenant_1 POST /v1/bookings", "8e03978e");
/// let b = ScopeKey::new("tenant_2 POST /v1/bookings", "8e03978e");
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey([u8; 32]);

impl ScopeKey {
    /// The record id of `key` in `scope`.
    pub fn new(scope: &str, key: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(scope.as_bytes())
            .chain_update([0u8])
            .chain_update(key.as_bytes())
            .finalize();
        Self(digest.into())
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a key from stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short prefix: enough to correlate logs, not the whole hash.
        write!(f, "ScopeKey(")?;
        for byte in self.0.iter().take(6) {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// What a request said, so the same key with a different request can be
/// told apart. Versioned: records fingerprinted by an older algorithm are
/// compared by version, never silently matched by a weaker one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    version: u16,
    digest: [u8; 32],
}

impl Fingerprint {
    /// The fingerprint algorithm this crate writes.
    pub const CURRENT_VERSION: u16 = 1;

    /// Version 1: SHA-256 over a domain tag, then each part
    /// length-prefixed (method, route, body, ... as the caller chooses).
    ///
    /// ```
    /// use payguard_idempotency::Fingerprint;
    ///
    /// let a = Fingerprint::of(&[b"POST", br#"{"listing_id":1}"#]);
    /// let b = Fingerprint::of(&[b"POST", br#"{"listing_id":2}"#]);
    /// assert_ne!(a, b);
    /// ```
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new().chain_update(b"payguard-fingerprint-v1");
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self {
            version: Self::CURRENT_VERSION,
            digest: hasher.finalize().into(),
        }
    }

    /// Rebuilds a stored fingerprint.
    pub fn from_parts(version: u16, digest: [u8; 32]) -> Self {
        Self { version, digest }
    }

    /// The algorithm version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(v{}:", self.version)?;
        for byte in self.digest.iter().take(4) {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Why an `Idempotency-Key` header value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The header is absent.
    #[error("the Idempotency-Key header is missing")]
    Missing,
    /// The header appears more than once.
    #[error("the Idempotency-Key header appears more than once")]
    Repeated,
    /// The value is empty, too long, or not a string or token.
    #[error(
        "the Idempotency-Key must be 1 to 255 visible ASCII characters, bare or as a quoted string"
    )]
    Invalid,
}

impl KeyError {
    /// A stable code, the problem body's `code` in the middleware's 400:
    /// `idempotency_key_missing`, or `idempotency_key_invalid` (a repeated
    /// header is an invalid key).
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Missing => "idempotency_key_missing",
            KeyError::Repeated | KeyError::Invalid => "idempotency_key_invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_parts() {
        assert_ne!(
            Fingerprint::of(&[b"ab", b"c"]),
            Fingerprint::of(&[b"a", b"bc"])
        );
    }
}
