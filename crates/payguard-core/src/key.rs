//! [`IdempotencyKey`] and [`FencingToken`]: the two values every payguard
//! crate that moves money passes around.

use std::fmt;
use std::sync::Arc;

/// An idempotency key: 1 to 255 visible ASCII characters, as the
/// `Idempotency-Key` header carries it. Cheap to clone. The one rule for
/// keys in every payguard crate: what a client sends is parsed by
/// [`from_header`](Self::from_header), what code makes by
/// [`new`](Self::new).
///
/// ```
/// use payguard_core::IdempotencyKey;
///
/// let key = IdempotencyKey::new("escrow_9f1c")?;
/// assert_eq!(key.as_str(), "escrow_9f1c");
/// assert!(IdempotencyKey::new("").is_err());
/// // A header may quote the key (RFC 8941); both spellings are one key.
/// assert_eq!(IdempotencyKey::from_header(br#""escrow_9f1c""#)?, key);
/// # Ok::<(), payguard_core::InvalidIdempotencyKey>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// The longest key accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Checks and wraps `key`.
    ///
    /// # Errors
    ///
    /// [`InvalidIdempotencyKey`] when the key is empty, longer than 255 bytes
    /// or contains anything but visible ASCII (`!` to `~`).
    pub fn new(key: impl AsRef<str>) -> Result<Self, InvalidIdempotencyKey> {
        let key = key.as_ref();
        if key.is_empty() || key.len() > Self::MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidIdempotencyKey { len: key.len() });
        }
        Ok(Self(key.into()))
    }

    /// Parses an `Idempotency-Key` header value: an RFC 8941 string
    /// (`"abc"`, with `\"` and `\\` escapes, spaces allowed inside) or, as
    /// most providers send it, a bare token (`abc`).
    ///
    /// # Errors
    ///
    /// [`InvalidIdempotencyKey`] for anything else, or a key that is empty
    /// or longer than 255 bytes.
    pub fn from_header(value: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let value = value.trim_ascii();
        let invalid = || InvalidIdempotencyKey { len: value.len() };
        let key = match value
            .strip_prefix(b"\"")
            .and_then(|rest| rest.strip_suffix(b"\""))
        {
            Some(inner) => {
                let mut key = Vec::with_capacity(inner.len());
                let mut bytes = inner.iter();
                while let Some(&byte) = bytes.next() {
                    match byte {
                        b'\\' => match bytes.next() {
                            Some(&escaped @ (b'"' | b'\\')) => key.push(escaped),
                            _ => return Err(invalid()),
                        },
                        b'"' => return Err(invalid()),
                        0x20..=0x7E => key.push(byte),
                        _ => return Err(invalid()),
                    }
                }
                key
            }
            None if value
                .iter()
                .all(|&byte| byte.is_ascii_graphic() && byte != b'"') =>
            {
                value.to_vec()
            }
            None => return Err(invalid()),
        };
        if key.is_empty() || key.len() > Self::MAX_LEN {
            return Err(InvalidIdempotencyKey { len: key.len() });
        }
        let key = String::from_utf8(key).map_err(|_| invalid())?;
        Ok(Self(key.into()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdempotencyKey").field(&&*self.0).finish()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key that cannot be an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid idempotency key ({len} bytes): use 1 to 255 visible ASCII characters, bare or as a quoted string"
)]
pub struct InvalidIdempotencyKey {
    len: usize,
}

impl InvalidIdempotencyKey {
    /// The stable code `idempotency_key_invalid`.
    pub fn code(&self) -> &'static str {
        "idempotency_key_invalid"
    }
}

/// A number that only goes up per lock or claim: each new holder gets a
/// larger one, so a store that remembers the largest it has seen can refuse
/// a holder whose lease was taken over (Kleppmann's fencing token). Locks
/// and idempotency claims both issue them.
///
/// ```
/// use payguard_core::FencingToken;
///
/// assert!(FencingToken::new(8) > FencingToken::new(7));
/// assert_eq!(FencingToken::new(7).as_i64(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token with this value.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The value as a PostgreSQL `bigint` (saturating).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_and_received_keys_follow_one_rule() {
        assert!(IdempotencyKey::new("a b").is_err());
        assert_eq!(
            IdempotencyKey::from_header(br#""a b""#).unwrap().as_str(),
            "a b"
        );
        assert_eq!(
            IdempotencyKey::from_header(br#""say \"hi\"""#)
                .unwrap()
                .as_str(),
            r#"say "hi""#
        );
        assert_eq!(
            IdempotencyKey::from_header(b" abc ").unwrap().as_str(),
            "abc"
        );
        for bad in [
            &b""[..],
            b"\"\"",
            b"a\"b",
            b"\"unterminated",
            b"\"\\x\"",
            &[b'a'; 256],
        ] {
            assert!(IdempotencyKey::from_header(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::from_header(&[b'a'; 255]).is_ok());
    }
}
