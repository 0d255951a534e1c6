//! Strict decoding of signatures: lowercase or uppercase hex, canonical
//! base64. Anything else is not a signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Decodes hex of either case; `None` for odd length or any other byte.
pub(crate) fn hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some((nibble(*high)? << 4) | nibble(*low)?),
            _ => None,
        })
        .collect()
}

/// Nibble values of hex digits; 0xFF for every other byte.
#[allow(clippy::indexing_slicing)] // evaluated at compile time: a bad index fails the build
const NIBBLES: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        table[b'A' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

fn nibble(digit: u8) -> Option<u8> {
    match NIBBLES.get(usize::from(digit)) {
        Some(0xFF) | None => None,
        Some(value) => Some(*value),
    }
}

/// Lowercase hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        for digit in [byte >> 4, byte & 0x0F] {
            if let Some(digit) = DIGITS.get(usize::from(digit)) {
                text.push(char::from(*digit));
            }
        }
    }
    text
}

/// Decodes standard, padded base64, rejecting non-canonical encodings (two
/// texts for the same bytes would let a signature be "changed" and still pass).
pub(crate) fn base64(text: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// A MAC or signature of up to 64 bytes, kept on the stack so that
/// verifying allocates nothing for it.
#[derive(Clone, Copy)]
pub(crate) struct Mac64 {
    len: usize,
    bytes: [u8; 64],
}

impl Mac64 {
    pub(crate) const EMPTY: Mac64 = Mac64 {
        len: 0,
        bytes: [0; 64],
    };

    pub(crate) fn new(source: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; 64];
        bytes.get_mut(..source.len())?.copy_from_slice(source);
        Some(Self {
            len: source.len(),
            bytes,
        })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// Decodes hex of up to 128 digits (either case) without allocating.
pub(crate) fn hex_mac(text: &[u8]) -> Option<Mac64> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    let mut bytes = [0u8; 64];
    for (out, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *out = match pair {
            [high, low] => (nibble(*high)? << 4) | nibble(*low)?,
            _ => return None,
        };
    }
    Some(Mac64 {
        len: text.len() / 2,
        bytes,
    })
}

/// Decodes canonical base64 of up to 64 bytes without allocating.
pub(crate) fn base64_mac(text: &[u8]) -> Option<Mac64> {
    // Room for the decoder's conservative estimate of 88 characters.
    let mut buffer = [0u8; 72];
    let len = STANDARD.decode_slice(text, &mut buffer).ok()?;
    Mac64::new(buffer.get(..len)?)
}

/// Standard, padded base64.
pub(crate) fn to_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_case_insensitive_and_strict() {
        assert_eq!(hex(b"00fFaB"), Some(vec![0x00, 0xff, 0xab]));
        assert_eq!(hex(b""), Some(vec![]));
        assert_eq!(hex(b"abc"), None);
        assert_eq!(hex(b"zz"), None);
        assert_eq!(hex(b"0x00"), None);
        assert_eq!(to_hex(&[0x00, 0xff, 0xab]), "00ffab");
    }

    #[test]
    fn fixed_size_decoders_agree_with_the_allocating_ones() {
        let hex_text = b"00fFaB";
        assert_eq!(
            hex_mac(hex_text).unwrap().as_slice(),
            hex(hex_text).unwrap().as_slice()
        );
        assert!(hex_mac(&[b'a'; 130]).is_none());
        let b64 = to_base64(&[7u8; 64]);
        assert_eq!(base64_mac(b64.as_bytes()).unwrap().as_slice(), &[7u8; 64]);
        assert!(base64_mac(to_base64(&[7u8; 65]).as_bytes()).is_none());
        assert!(base64_mac(b"OB==").is_none());
    }

    #[test]
    fn base64_must_be_canonical() {
        // "OE=" and "OF=" both decode leniently to the same byte; only the
        // canonical form is accepted.
        assert_eq!(base64(b"OA=="), Some(vec![0x38]));
        assert_eq!(base64(b"OB=="), None);
        assert_eq!(base64(b"OA"), None);
        assert_eq!(base64(b"O A=="), None);
        assert_eq!(to_base64(&[0x38]), "OA==");
    }
}
