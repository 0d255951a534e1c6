//! Email addresses: a local part, `@` (or `%40`), and a domain of at least
//! two labels whose last is alphabetic (or punycode) and not a file
//! extension, so `logo@2x.png`, `lodash@4.17.21` and `nginx@sha256:…` stay.

use super::at;
use crate::detector::{Detector, Finding};

/// Top-level "domains" that are file extensions or registries in practice.
const NOT_TLDS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"css", b"js", b"mjs", b"ts",
    b"json", b"map", b"html", b"htm", b"txt", b"md", b"xml", b"yml", b"yaml", b"toml", b"lock",
    b"rs", b"py", b"rb", b"go", b"java", b"woff", b"woff2", b"ttf", b"zip", b"gz", b"tar", b"pdf",
    b"exe", b"dll", b"so",
];

fn local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.')
}

/// Finds email addresses in `text`.
pub(crate) fn find(text: &[u8], out: &mut Vec<Finding>) {
    let mut from = 0;
    while let Some(found) = memchr::memchr2(b'@', b'%', text.get(from..).unwrap_or_default()) {
        let at_sign = from + found;
        from = at_sign + 1;
        let separator_len = match at(text, at_sign) {
            b'@' => 1,
            _ if text
                .get(at_sign..at_sign + 3)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"%40")) =>
            {
                3
            }
            _ => continue,
        };
        if let Some((start, end)) = address_around(text, at_sign, separator_len) {
            out.push(Finding::new(start, end, Detector::Email));
            from = end;
        }
    }
}

fn address_around(text: &[u8], at_sign: usize, separator_len: usize) -> Option<(usize, usize)> {
    // Local part: up to 64 bytes back.
    let mut start = at_sign;
    while start > 0 && local_byte(at(text, start - 1)) && at_sign - start < 64 {
        start -= 1;
    }
    // "%40" inside a local part scanned backwards would swallow a previous
    // address's encoding; trim leading punctuation.
    while start < at_sign && matches!(at(text, start), b'.' | b'%' | b'+' | b'-' | b'\'') {
        start += 1;
    }
    if start == at_sign || at(text, at_sign - 1) == b'.' {
        return None;
    }
    // "scheme://user:password@host" is URL user info, not an address.
    if start > 0 && at(text, start - 1) == b':' {
        let line_start = text
            .get(..start)
            .and_then(|head| head.iter().rposition(|b| b.is_ascii_whitespace()))
            .map_or(0, |p| p + 1);
        if text
            .get(line_start..start)
            .is_some_and(|token| memchr::memmem::find(token, b"://").is_some())
        {
            return None;
        }
    }
    // Domain: labels of letters, digits and hyphens.
    let domain_start = at_sign + separator_len;
    let mut end = domain_start;
    while end < text.len() && domain_byte(at(text, end)) && end - domain_start < 253 {
        end += 1;
    }
    while end > domain_start && matches!(at(text, end - 1), b'.' | b'-') {
        end -= 1;
    }
    let domain = text.get(domain_start..end)?;
    let mut labels = domain.split(|byte| *byte == b'.');
    let first = labels.next()?;
    let tld = domain.rsplit(|byte| *byte == b'.').next()?;
    let label_count = domain.iter().filter(|b| **b == b'.').count() + 1;
    let tld_ok = (tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
        && !NOT_TLDS.iter().any(|ext| ext.eq_ignore_ascii_case(tld)))
        || (tld.len() > 4
            && tld
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--")));
    if label_count < 2 || first.is_empty() || !tld_ok || labels.any(<[u8]>::is_empty) {
        return None;
    }
    // "name@host:tag" (docker) and "pkg@1.2" are not addresses.
    if at(text, end) == b':' && at(text, end + 1).is_ascii_alphanumeric() {
        return None;
    }
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text.as_bytes(), &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn addresses() {
        assert_eq!(emails("to ada.obi@example.com."), ["ada.obi@example.com"]);
        assert_eq!(
            emails("Ada+tag@Mail.Example.CO.UK"),
            ["Ada+tag@Mail.Example.CO.UK"]
        );
        assert_eq!(
            emails("owner=user@xn--bcher-kva.de"),
            ["user@xn--bcher-kva.de"]
        );
        assert_eq!(
            emails("/login?email=ada%40example.com&x=1"),
            ["ada%40example.com"]
        );
        assert_eq!(
            emails("555-222-2222@example.org subscribed"),
            ["555-222-2222@example.org"]
        );
        assert_eq!(emails("a@b.io, c@d.io"), ["a@b.io", "c@d.io"]);
    }

    #[test]
    fn look_alikes() {
        for text in [
            "logo@2x.png",
            "installed @babel/core@7.24.0 and lodash@4.17.21",
            "image nginx@sha256:abcdef",
            "cdn.jsdelivr.net/gh/devicons/devicon@master/icons",
            "git@github.com:org/repo",
            "50% off @ store",
            "user@localhost",
        ] {
            assert!(emails(text).is_empty(), "{text}: {:?}", emails(text));
        }
    }
}
