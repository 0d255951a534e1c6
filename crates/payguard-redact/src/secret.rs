//! [`Secret`]: a value that refuses to be printed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Wraps a value so that `Debug`, `Display` and `Serialize` show
/// `[REDACTED]`; reading it takes an explicit [`expose_secret`](Self::expose_secret).
/// Deserializing reads the real value, so configuration can hold secrets.
///
/// ```
/// use payguard_redact::Secret;
///
/// let key = Secret::new("sk_live_abc".to_string());
/// assert_eq!(format!("{key:?} {key}"), "Secret([REDACTED]) [REDACTED]");
/// assert_eq!(serde_json::to_string(&key).unwrap(), "\"[REDACTED]\"");
/// assert_eq!(key.expose_secret(), "sk_live_abc");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The value. Every call site is a place a secret leaves its wrapper.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }

    /// The value, owned.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[REDACTED]")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}
