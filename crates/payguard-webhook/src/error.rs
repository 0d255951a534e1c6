//! Why a delivery was rejected, and why a verifier could not be built.

use http::HeaderName;
use std::fmt;

/// A rejected delivery. Messages say what was wrong with the request, never
/// what a valid signature would have been or what the secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    MissingHeader {
        /// The header's name.
        header: HeaderName,
    },
    /// A header is present but unusable (not text, no timestamp, a
    /// timestamp that is not a non-negative integer, no signature at all).
    MalformedHeader {
        /// The header's name.
        header: HeaderName,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No signature in the request matches the body under any configured
    /// secret.
    SignatureMismatch,
    /// The signed timestamp is older than the replay window allows.
    TimestampTooOld {
        /// How old it is, in seconds.
        age_secs: u64,
        /// The most allowed.
        max_age_secs: u64,
    },
    /// The signed timestamp is further in the future than allowed.
    TimestampTooNew {
        /// How far ahead it is, in seconds.
        ahead_secs: u64,
        /// The most allowed.
        max_future_secs: u64,
    },
    /// The body cannot be read the way the scheme needs (Adyen items).
    MalformedBody {
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl VerifyError {
    /// A stable snake_case code: `missing_header`, `malformed_header`,
    /// `signature_mismatch`, `timestamp_too_old`, `timestamp_too_new`,
    /// `malformed_body`.
    pub const fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader { .. } => "missing_header",
            VerifyError::MalformedHeader { .. } => "malformed_header",
            VerifyError::SignatureMismatch => "signature_mismatch",
            VerifyError::TimestampTooOld { .. } => "timestamp_too_old",
            VerifyError::TimestampTooNew { .. } => "timestamp_too_new",
            VerifyError::MalformedBody { .. } => "malformed_body",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::MissingHeader { header } => write!(f, "missing header {header}"),
            VerifyError::MalformedHeader { header, reason } => {
                write!(f, "malformed header {header}: {reason}")
            }
            VerifyError::SignatureMismatch => f.write_str(
                "no signature matches the body under any configured secret (was the body re-serialised, or the secret rotated?)",
            ),
            VerifyError::TimestampTooOld { age_secs, max_age_secs } => write!(
                f,
                "the signed timestamp is {age_secs} s old, more than the {max_age_secs} s allowed (a replay, or a clock far behind)"
            ),
            VerifyError::TimestampTooNew { ahead_secs, max_future_secs } => write!(
                f,
                "the signed timestamp is {ahead_secs} s in the future, more than the {max_future_secs} s allowed (milliseconds instead of seconds, or a clock far ahead)"
            ),
            VerifyError::MalformedBody { reason } => write!(f, "malformed body: {reason}"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// A payload that cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// No key in the ring can sign for this scheme (a Standard Webhooks ring
    /// of `whpk_` public keys only).
    #[error("no key in the ring can sign (Ed25519 signing needs a whsk_ key)")]
    NoSigningKey,
    /// The time is before the Unix epoch.
    #[error("cannot sign a time before 1970")]
    TimeBeforeEpoch,
    /// The id contains a `.` or a character a header cannot carry.
    #[error("the message id must be visible ASCII without '.'")]
    BadId,
}

impl SignError {
    /// A stable code: `no_signing_key`, `time_before_epoch` or `bad_id`.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::NoSigningKey => "no_signing_key",
            SignError::TimeBeforeEpoch => "time_before_epoch",
            SignError::BadId => "bad_id",
        }
    }
}
