//! API keys (`API_KEYS`: `tenant:key[:role],...`) and the [`Admin`]
//! extractor the admin routes take: `Authorization: Bearer <key>` of a key
//! with the `admin` role, compared in constant time. A missing or wrong key
//! is `401 unauthorized`, never saying which part was wrong.

use super::ApiError;
use crate::startup::App;
use axum::extract::FromRequestParts;
use http::request::Parts;
use payguard_redact::Secret;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Books and reads its own bookings.
    Client,
    /// Also reads every booking.
    Admin,
}

/// One API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Whose key it is.
    pub tenant: String,
    /// The key; never printed.
    pub key: Secret<String>,
    /// What it may do.
    pub role: Role,
}

/// Why `API_KEYS` could not be read; names the entry by position, never
/// its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API_KEYS entry {position}: {problem}")]
pub struct ApiKeysError {
    position: usize,
    problem: &'static str,
}

/// Parses `tenant:key[:role],...` (roles `client`, the default, and
/// `admin`). Tenants are 1 to 64 letters, digits, `-` or `_`; keys at
/// least 16 characters without `,` or `:`.
///
/// # Errors
///
/// [`ApiKeysError`] naming the first entry that is not one.
pub fn parse_api_keys(text: &str) -> Result<Vec<ApiKey>, ApiKeysError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .enumerate()
        .map(|(index, entry)| {
            let failed = |problem| ApiKeysError {
                position: index + 1,
                problem,
            };
            let mut parts = entry.trim().split(':');
            let (Some(tenant), Some(key)) = (parts.next(), parts.next()) else {
                return Err(failed("is not tenant:key[:role]"));
            };
            let role = match parts.next() {
                None | Some("client") => Role::Client,
                Some("admin") => Role::Admin,
                Some(_) => return Err(failed("has a role other than client or admin")),
            };
            if parts.next().is_some() {
                return Err(failed("is not tenant:key[:role]"));
            }
            let tenant_ok = (1..=64).contains(&tenant.len())
                && tenant
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
            if !tenant_ok {
                return Err(failed(
                    "has a tenant that is not 1 to 64 letters, digits, - or _",
                ));
            }
            if key.len() < 16 || key.chars().any(char::is_whitespace) {
                return Err(failed(
                    "has a key shorter than 16 characters, or with spaces",
                ));
            }
            Ok(ApiKey {
                tenant: tenant.to_owned(),
                key: Secret::new(key.to_owned()),
                role,
            })
        })
        .collect()
}

/// The key a request presents, if any.
fn presented(parts: &Parts) -> Option<&[u8]> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value.get(7..))
        .flatten()
}

/// The key `presented` matches, compared against every configured key in
/// constant time (no early exit on the first match).
fn matching<'a>(keys: &'a [ApiKey], presented: &[u8]) -> Option<&'a ApiKey> {
    let mut found = None;
    for candidate in keys {
        let equal: bool = candidate
            .key
            .expose_secret()
            .as_bytes()
            .ct_eq(presented)
            .into();
        if equal {
            found = Some(candidate);
        }
    }
    found
}

/// A request made with an admin key; its tenant.
#[derive(Debug, Clone)]
pub(super) struct Admin(pub(super) String);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let key =
            presented(parts).and_then(|presented| matching(&app.settings.api_keys, presented));
        match key {
            Some(key) if key.role == Role::Admin => Ok(Self(key.tenant.clone())),
            Some(_) => Err(ApiError::Forbidden),
            None => Err(ApiError::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_parse_and_never_echo_a_key() {
        let keys = parse_api_keys("acme:aaaaaaaaaaaaaaaa, ops:bbbbbbbbbbbbbbbb:admin").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].tenant.as_str(), keys[0].role),
            ("acme", Role::Client)
        );
        assert_eq!(
            (keys[1].tenant.as_str(), keys[1].role),
            ("ops", Role::Admin)
        );
        assert!(parse_api_keys("").unwrap().is_empty());
        for bad in [
            "acme",
            "acme:tinykey",
            "acme:cccccccccccccccc:root",
            "a b:cccccccccccccccc",
            "acme:cccccccccccccccc:admin:x",
        ] {
            let error = parse_api_keys(bad).unwrap_err().to_string();
            assert!(
                !error.contains("cccc") && !error.contains("tinykey"),
                "{error}"
            );
        }
        assert!(matching(&keys, b"bbbbbbbbbbbbbbbb").is_some_and(|key| key.role == Role::Admin));
        assert!(matching(&keys, b"bbbbbbbbbbbbbbb").is_none());
    }
}
