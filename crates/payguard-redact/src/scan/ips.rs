//! IP addresses, personal data under the GDPR: IPv4 dotted quads and IPv6
//! (checked by the standard library's parser), found under keys that name
//! an address (`client_ip`, `x-forwarded-for`, `remote_addr`, ...), and
//! in lists that follow such a key; anywhere in free text only when asked.

use super::{at, before, is_word, key_before};
use crate::detector::{Detector, Finding};
use crate::keys;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Finds IP addresses. `everywhere`: bare addresses in free text too.
/// `under_ip_key`: the whole value belongs to a key naming an address.
pub(crate) fn find(text: &[u8], everywhere: bool, under_ip_key: bool, out: &mut Vec<Finding>) {
    // After an address under an IP key, the next ones of a comma list
    // ("x-forwarded-for: 203.0.113.7, 10.0.0.1") belong to the same key.
    let mut list_until = 0;
    // Outside free-text mode an address counts only right after a
    // `key=`/`key:` (a few quotes, blanks or a `[` between) or in a list
    // after one: jump from separator to separator.
    let keyed_only = !everywhere && !under_ip_key;
    let mut window_end = 0;
    let mut i = 0;
    while i < text.len() {
        if keyed_only && i > list_until && i >= window_end {
            let Some(found) = memchr::memchr2(b'=', b':', text.get(i..).unwrap_or_default()) else {
                break;
            };
            let separator = i + found;
            window_end = separator + 8;
            i = separator + 1;
            continue;
        }
        let byte = at(text, i);
        let candidate = (byte.is_ascii_hexdigit() || byte == b':')
            && !is_word(before(text, i))
            && !matches!(before(text, i), b'.' | b':' | b'-');
        if !candidate {
            i += 1;
            continue;
        }
        let Some(end) = address_end(text, i) else {
            i += 1;
            continue;
        };
        // "[2001:db8::1]:443": the key is before the bracket.
        let value_start = if before(text, i) == b'[' { i - 1 } else { i };
        let in_context = everywhere
            || under_ip_key
            || i <= list_until
            || key_before(text, value_start).is_some_and(keys::names_an_ip);
        if in_context {
            out.push(Finding::new(i, end, Detector::IpAddress));
            list_until = list_continues(text, end).unwrap_or(0);
        }
        i = end;
    }
}

/// Where an address starting at `start` ends, if one does.
fn address_end(text: &[u8], start: usize) -> Option<usize> {
    let token_end = {
        let mut end = start;
        while end < text.len()
            && (at(text, end).is_ascii_hexdigit() || matches!(at(text, end), b':' | b'.'))
        {
            end += 1;
        }
        // A trailing ":" or "." is punctuation ("ip 10.0.0.1." or "…7: ok").
        while end > start && matches!(at(text, end - 1), b':' | b'.') {
            end -= 1;
        }
        end
    };
    if is_word(at(text, token_end)) || at(text, token_end) == b'-' {
        return None;
    }
    let token = std::str::from_utf8(text.get(start..token_end)?).ok()?;
    let colons = token.bytes().filter(|b| *b == b':').count();
    if colons >= 2 {
        return token.parse::<Ipv6Addr>().ok().map(|_| token_end);
    }
    // IPv4, perhaps with a port ("203.0.113.7:51234"): the address alone.
    let address = token.split(':').next()?;
    if address.bytes().filter(|b| *b == b'.').count() != 3
        || !address.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    address
        .parse::<Ipv4Addr>()
        .ok()
        .map(|_| start + address.len())
}

/// After an address ending at `end`: where the next item of a comma list
/// starts, if the list goes on.
fn list_continues(text: &[u8], end: usize) -> Option<usize> {
    let mut i = end;
    // Skip a port.
    if at(text, i) == b':' {
        i += 1;
        while at(text, i).is_ascii_digit() {
            i += 1;
        }
    }
    if at(text, i) != b',' {
        return None;
    }
    i += 1;
    while at(text, i) == b' ' {
        i += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(text: &str, everywhere: bool) -> Vec<&str> {
        let mut out = Vec::new();
        find(text.as_bytes(), everywhere, false, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn addresses_under_ip_keys_and_their_lists() {
        assert_eq!(
            ips("client_ip=203.0.113.7 path=/v1", false),
            ["203.0.113.7"]
        );
        assert_eq!(
            ips(
                "x-forwarded-for: 203.0.113.7, 198.51.100.2:8443, 10.0.0.1 method: GET",
                false
            ),
            ["203.0.113.7", "198.51.100.2", "10.0.0.1"]
        );
        assert_eq!(
            ips(
                r#"{"remote_addr":"[2001:db8::1]:443","peer_ip":"::ffff:192.0.2.1"}"#,
                false
            ),
            ["2001:db8::1", "::ffff:192.0.2.1"]
        );
        assert_eq!(
            ips("x-real-ip: fe80::1ff:fe23:4567:890a.", false),
            ["fe80::1ff:fe23:4567:890a"]
        );
    }

    #[test]
    fn bare_addresses_only_when_asked() {
        let line = "login from 203.0.113.7 via 2001:db8::1 ok";
        assert!(ips(line, false).is_empty());
        assert_eq!(ips(line, true), ["203.0.113.7", "2001:db8::1"]);
    }

    #[test]
    fn versions_times_macs_and_hashes_are_not_addresses() {
        for text in [
            "version 1.2.3.4.5 built",
            "at 12:30:45",
            "mac aa:bb:cc:dd:ee:ff",
            "sha deadbeef:cafebabe",
            "semver 10.0.0",
            "octet 999.1.1.1",
            "ip-10.0.0.1-host",
        ] {
            assert!(ips(text, true).is_empty(), "{text}: {:?}", ips(text, true));
        }
    }
}
