//! Twilio: the URL plus the sorted form parameters, or, for JSON bodies, the
//! URL alone with the body's SHA-256 in its `bodySHA256` parameter.

use crate::encoding;
use crate::error::VerifyError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What Twilio signs for `url` and `body`.
pub(crate) fn signed_content(url: &str, body: &[u8]) -> Vec<u8> {
    if body_hash_param(url).is_some() {
        return url.as_bytes().to_vec();
    }
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    let mut content = url.as_bytes().to_vec();
    for (name, value) in params {
        content.extend_from_slice(name.as_bytes());
        content.extend_from_slice(value.as_bytes());
    }
    content
}

fn body_hash_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value.into_owned())
}

/// Tries the configured URL and its default-port variant (Twilio's signer
/// is inconsistent about `:443`), returning the matching key.
pub(crate) fn verify(
    url: &str,
    body: &[u8],
    matches: impl Fn(&[u8]) -> Option<usize>,
) -> Result<usize, VerifyError> {
    if let Some(expected) = body_hash_param(url) {
        let actual = encoding::to_hex(&Sha256::digest(body));
        if !bool::from(
            actual
                .as_bytes()
                .ct_eq(expected.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(VerifyError::SignatureMismatch);
        }
    }
    [Some(url.to_owned()), port_variant(url)]
        .into_iter()
        .flatten()
        .find_map(|url| matches(&signed_content(&url, body)))
        .ok_or(VerifyError::SignatureMismatch)
}

/// The URL with its default port added if absent, or removed if present.
fn port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let userinfo = &authority[..authority.len() - host_port.len()];
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port == default => {
            return Some(format!("{scheme}://{userinfo}{host}{tail}"));
        }
        Some(_) => return None,
        None => host_port,
    };
    Some(format!("{scheme}://{userinfo}{host}:{default}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_are_toggled() {
        assert_eq!(
            port_variant("https://a.com/x?y=1").as_deref(),
            Some("https://a.com:443/x?y=1")
        );
        assert_eq!(
            port_variant("https://a.com:443/x").as_deref(),
            Some("https://a.com/x")
        );
        assert_eq!(
            port_variant("http://a.com").as_deref(),
            Some("http://a.com:80")
        );
        assert_eq!(port_variant("https://a.com:8443/x"), None);
        assert_eq!(port_variant("not a url"), None);
    }

    #[test]
    fn form_parameters_are_sorted_and_decoded() {
        let content = signed_content("https://x/y", b"b=2&a=1&a=0&c=%2B1");
        assert_eq!(content, b"https://x/ya0a1b2c+1");
    }
}
