//! [`GenericHmac`]: a scheme described rather than built in.

use crate::keys::{Algorithm, SecretFormat};
use http::HeaderName;

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// Hex, either case accepted.
    Hex,
    /// Standard padded base64, canonical only.
    Base64,
}

/// What the MAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedContent {
    /// The raw body.
    Body,
    /// The verifier's configured URL, then the body.
    UrlAndBody,
    /// A timestamp header's value, a separator, then the body; the
    /// timestamp is held to the replay window.
    TimestampAndBody {
        /// The header carrying Unix seconds.
        header: HeaderName,
        /// What joins timestamp and body (`"."` for most).
        separator: String,
    },
}

/// How secrets for a generic scheme are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretEncoding {
    /// The text is the key.
    Text,
    /// Hex-encoded key bytes.
    Hex,
    /// Base64-encoded key bytes.
    Base64,
}

/// A webhook HMAC scheme described by its parts, for providers without a
/// built-in profile.
///
/// ```
/// use payguard_webhook::{Algorithm, Encoding, GenericHmac, SignedContent, Verifier};
/// use http::HeaderName;
///
/// // "X-Acme-Signature: sha512=<hex of HMAC-SHA512(secret, timestamp + "." + body)>"
/// let scheme = GenericHmac::new(HeaderName::from_static("x-acme-signature"), Algorithm::HmacSha512, Encoding::Hex)
///     .prefix("sha512=")
///     .signed(SignedContent::TimestampAndBody {
///         header: HeaderName::from_static("x-acme-timestamp"),
///         separator: ".".into(),
///     });
/// let verifier = Verifier::generic(scheme).secret("acme-secret").build()?;
/// # let _ = verifier;
/// # Ok::<(), payguard_webhook::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    pub(crate) header: HeaderName,
    pub(crate) algorithm: Algorithm,
    pub(crate) encoding: Encoding,
    pub(crate) prefix: Option<String>,
    pub(crate) signed: SignedContent,
    pub(crate) secret_format: SecretFormat,
}

impl GenericHmac {
    /// A scheme whose signature is in `header`, computed with `algorithm`
    /// over the body and written in `encoding`, keyed with the secret's text.
    pub fn new(header: HeaderName, algorithm: Algorithm, encoding: Encoding) -> Self {
        Self {
            header,
            algorithm,
            encoding,
            prefix: None,
            signed: SignedContent::Body,
            secret_format: SecretFormat::Text,
        }
    }

    /// A prefix the signature must carry (`"sha256="`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// What the MAC covers (default: the body).
    pub fn signed(mut self, signed: SignedContent) -> Self {
        self.signed = signed;
        self
    }

    /// How secrets are written (default: the text is the key).
    pub fn secret_encoding(mut self, encoding: SecretEncoding) -> Self {
        self.secret_format = match encoding {
            SecretEncoding::Text => SecretFormat::Text,
            SecretEncoding::Hex => SecretFormat::Hex,
            SecretEncoding::Base64 => SecretFormat::Base64,
        };
        self
    }
}

impl Algorithm {
    pub(crate) const fn output_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha512 => 64,
        }
    }
}
