//! Secrets as users paste them, and the MACs they key.

use crate::encoding::{self, Mac64};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::fmt;
use std::sync::Arc;

/// A MAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC-SHA1 (Twilio; legacy elsewhere).
    HmacSha1,
    /// HMAC-SHA256.
    HmacSha256,
    /// HMAC-SHA512 (Paystack).
    HmacSha512,
}

/// An HMAC keyed once, when the verifier is built; each verification clones
/// the keyed state instead of hashing the key again.
#[derive(Clone)]
pub(crate) enum KeyedMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl KeyedMac {
    pub(crate) fn new(algorithm: Algorithm, key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so these cannot fail.
        match algorithm {
            Algorithm::HmacSha1 => KeyedMac::Sha1(keyed(key)),
            Algorithm::HmacSha256 => KeyedMac::Sha256(keyed(key)),
            Algorithm::HmacSha512 => KeyedMac::Sha512(keyed(key)),
        }
    }

    /// The MAC of the concatenated `parts`.
    pub(crate) fn compute(&self, parts: &[&[u8]]) -> Mac64 {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Mac64 {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            // Every digest here is at most 64 bytes.
            Mac64::new(&mac.finalize().into_bytes()).unwrap_or(Mac64::EMPTY)
        }
        match self {
            KeyedMac::Sha1(mac) => run(mac, parts),
            KeyedMac::Sha256(mac) => run(mac, parts),
            KeyedMac::Sha512(mac) => run(mac, parts),
        }
    }
}

fn keyed<M: KeyInit>(key: &[u8]) -> M {
    match M::new_from_slice(key) {
        Ok(mac) => mac,
        // Unreachable for HMAC; an empty key is the most conservative answer.
        Err(_) => M::new(&Default::default()),
    }
}

/// How a provider's secrets are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretFormat {
    /// The text itself is the key (Stripe's whole `whsec_…`, Paystack's
    /// `sk_…`, GitHub, Shopify, ...).
    Text,
    /// Standard Webhooks: `whsec_` + base64 for HMAC, `whpk_`/`whsk_` +
    /// base64 for Ed25519.
    StandardWebhooks,
    /// Hex (Adyen).
    Hex,
    /// Base64, for generic schemes.
    Base64,
}

/// One secret of a key ring.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) id: Arc<str>,
    /// The key bytes (for shared-secret comparison and HMAC).
    pub(crate) bytes: Vec<u8>,
    pub(crate) mac: Option<KeyedMac>,
    pub(crate) ed25519: Option<VerifyingKey>,
    pub(crate) signing: Option<SigningKey>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the material itself.
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("hmac", &self.mac.is_some())
            .field("ed25519", &self.ed25519.is_some())
            .finish_non_exhaustive()
    }
}

impl Key {
    pub(crate) fn parse(
        id: Arc<str>,
        secret: &str,
        format: SecretFormat,
        algorithm: Algorithm,
    ) -> Result<Self, &'static str> {
        if secret.is_empty() {
            return Err("the secret is empty");
        }
        if secret.trim() != secret {
            return Err(
                "the secret has leading or trailing whitespace (a stray newline from an environment file?)",
            );
        }
        let hmac = |bytes: Vec<u8>| Key {
            id: id.clone(),
            mac: Some(KeyedMac::new(algorithm, &bytes)),
            bytes,
            ed25519: None,
            signing: None,
        };
        match format {
            SecretFormat::Text => Ok(hmac(secret.as_bytes().to_vec())),
            SecretFormat::Hex => encoding::hex(secret.as_bytes())
                .filter(|bytes| !bytes.is_empty())
                .map(hmac)
                .ok_or("the secret is not hex"),
            SecretFormat::Base64 => encoding::base64(secret.as_bytes())
                .filter(|bytes| !bytes.is_empty())
                .map(hmac)
                .ok_or("the secret is not canonical base64"),
            SecretFormat::StandardWebhooks => {
                if let Some(public) = secret.strip_prefix("whpk_") {
                    let bytes =
                        encoding::base64(public.as_bytes()).ok_or("the whpk_ key is not base64")?;
                    let array: [u8; 32] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| "a whpk_ key is 32 bytes")?;
                    let verifying = VerifyingKey::from_bytes(&array)
                        .map_err(|_| "the whpk_ key is not an Ed25519 public key")?;
                    return Ok(Key {
                        id,
                        bytes: Vec::new(),
                        mac: None,
                        ed25519: Some(verifying),
                        signing: None,
                    });
                }
                if let Some(private) = secret.strip_prefix("whsk_") {
                    let bytes = encoding::base64(private.as_bytes())
                        .ok_or("the whsk_ key is not base64")?;
                    let signing = match bytes.len() {
                        32 => {
                            let seed: [u8; 32] =
                                bytes.as_slice().try_into().map_err(|_| "bad seed")?;
                            SigningKey::from_bytes(&seed)
                        }
                        64 => {
                            let pair: [u8; 64] =
                                bytes.as_slice().try_into().map_err(|_| "bad key pair")?;
                            SigningKey::from_keypair_bytes(&pair)
                                .map_err(|_| "the whsk_ key pair's halves do not match")?
                        }
                        _ => return Err("a whsk_ key is a 32-byte seed or a 64-byte key pair"),
                    };
                    return Ok(Key {
                        id,
                        bytes: Vec::new(),
                        mac: None,
                        ed25519: Some(signing.verifying_key()),
                        signing: Some(signing),
                    });
                }
                let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
                encoding::base64(encoded.as_bytes())
                    .filter(|bytes| !bytes.is_empty())
                    .map(hmac)
                    .ok_or("a Standard Webhooks secret is whsec_ followed by base64")
            }
        }
    }

    pub(crate) fn sign_ed25519(&self, message: &[u8]) -> Option<Signature> {
        self.signing.as_ref().map(|key| key.sign(message))
    }
}
