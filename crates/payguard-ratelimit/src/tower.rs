//! [`RateLimitLayer`]: a tower middleware that limits each request by a key
//! taken from it.

use crate::{BoxFuture, Decision, Quota, RateLimitError, RateLimiter};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use payguard_core::{ConfigError, Tenant};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The draft's `RateLimit` header: remaining quota and when more comes.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The draft's `RateLimit-Policy` header: the quota.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A function from a request's parts to its key.
pub type KeyFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// Where a request's key comes from. Requests without one share the key
/// `-` (limited together, never unlimited).
#[derive(Clone)]
pub enum KeySource {
    /// The [`Tenant`] in the request's extensions (an authentication layer
    /// puts it there; payguard-idempotency scopes by the same value).
    Tenant,
    /// A header's value, as is (an API key header: prefer the tenant it
    /// authenticates, so that no secret becomes a Redis key).
    Header(HeaderName),
    /// The client's address: the peer (a `SocketAddr` request extension,
    /// as `hyper` servers or axum's `ConnectInfo` set it), or, when the
    /// peer is a [`TrustedProxies`] proxy, the rightmost `X-Forwarded-For`
    /// address that is not. IPv6 addresses are keyed by their /64 (one
    /// household, one limit).
    PeerIp(TrustedProxies),
    /// Your own function of the request's parts.
    Custom(KeyFn),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant => formatter.write_str("Tenant"),
            Self::Header(name) => formatter.debug_tuple("Header").field(name).finish(),
            Self::PeerIp(proxies) => formatter.debug_tuple("PeerIp").field(proxies).finish(),
            Self::Custom(_) => formatter.write_str("Custom(..)"),
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed: networks in CIDR
/// notation (`10.0.0.0/8`, `fd00::/8`, or a bare address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// No proxy is trusted: the peer's address is the client's.
    pub fn none() -> Self {
        Self::default()
    }

    /// These networks.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming a network that is not `address[/prefix]`.
    pub fn new<'a>(networks: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        networks
            .into_iter()
            .map(|network| {
                let bad = || {
                    ConfigError::new("trusted_proxies", format!("CIDR networks, not {network:?}"))
                };
                let (address, prefix) = network.split_once('/').unwrap_or((network, ""));
                let address: IpAddr = address.trim().parse().map_err(|_| bad())?;
                let width = if address.is_ipv4() { 32 } else { 128 };
                let prefix = if prefix.is_empty() {
                    width
                } else {
                    prefix.trim().parse::<u8>().map_err(|_| bad())?
                };
                if prefix > width {
                    return Err(bad());
                }
                Ok((address, prefix))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0
            .iter()
            .any(|(network, prefix)| same_network(*network, address, *prefix))
    }

    /// The client's address of a request from `peer` carrying
    /// `forwarded_for` (every `X-Forwarded-For` value, in order).
    fn client<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|hop| !self.contains(**hop))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

fn same_network(network: IpAddr, address: IpAddr, prefix: u8) -> bool {
    let mask = |bits: u32, width: u32| -> u128 {
        if bits == 0 {
            0
        } else {
            (!0u128 << (width - bits)) & (!0u128 >> (128 - width))
        }
    };
    match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) => {
            let mask = mask(u32::from(prefix), 32);
            (u128::from(u32::from(network)) & mask) == (u128::from(u32::from(address)) & mask)
        }
        (IpAddr::V6(network), IpAddr::V6(address)) => {
            let mask = mask(u32::from(prefix), 128);
            (u128::from(network) & mask) == (u128::from(address) & mask)
        }
        _ => false,
    }
}

/// An address as a key: IPv4 as is, IPv6 by its /64.
fn ip_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & (!0u128 << 64);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

impl KeySource {
    fn key_of(&self, parts: &http::request::Parts) -> Option<String> {
        match self {
            Self::Tenant => parts
                .extensions
                .get::<Tenant>()
                .map(|tenant| tenant.as_str().to_owned()),
            Self::Header(name) => parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            Self::PeerIp(proxies) => {
                let peer = parts.extensions.get::<SocketAddr>()?.ip();
                let forwarded = parts
                    .headers
                    .get_all(FORWARDED_FOR)
                    .iter()
                    .filter_map(|value| value.to_str().ok());
                Some(ip_key(proxies.client(peer, forwarded)))
            }
            Self::Custom(key) => key(parts),
        }
    }
}

/// Limits requests by key: allowed requests go on with `RateLimit` and
/// `RateLimit-Policy` headers on their answer; limited ones get `429
/// Too Many Requests` with `Retry-After` (whole seconds, rounded up) and
/// `application/problem+json` (`code` `rate_limited`); a limiter that
/// cannot decide (its store is down and its fallback is to refuse) gives
/// `503` (`code` `rate_limit_unavailable`). The inner service is not
/// called for either.
///
/// ```
/// use payguard_ratelimit::{KeySource, MemoryLimiter, Quota, RateLimitLayer};
/// use std::sync::Arc;
///
/// let limiter = Arc::new(MemoryLimiter::<String>::new("50/s".parse::<Quota>()?));
/// let layer = RateLimitLayer::builder(limiter)
///     .policy("tenant")
///     .key(KeySource::Tenant)
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    limiter: Arc<dyn RateLimiter>,
    key: KeySource,
    policy: String,
    policy_header: HeaderValue,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RateLimitLayer")
            .field("policy", &self.shared.policy)
            .field("key", &self.shared.key)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RateLimitLayer`].
#[must_use = "a builder does nothing until built"]
pub struct RateLimitLayerBuilder {
    limiter: Arc<dyn RateLimiter>,
    key: KeySource,
    policy: String,
}

impl fmt::Debug for RateLimitLayerBuilder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RateLimitLayerBuilder")
            .field("policy", &self.policy)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayerBuilder {
    /// Where each request's key comes from (default [`KeySource::Tenant`]).
    pub fn key(mut self, key: KeySource) -> Self {
        self.key = key;
        self
    }

    /// The policy's name in the `RateLimit` headers (default `default`).
    pub fn policy(mut self, name: impl Into<String>) -> Self {
        self.policy = name.into();
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the policy name is empty or not printable
    /// ASCII without `"` or `\`.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        let printable = !self.policy.is_empty()
            && self
                .policy
                .bytes()
                .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\');
        if !printable {
            return Err(ConfigError::new("policy", "printable ASCII without quotes"));
        }
        let quota = self.limiter.quota();
        let window = quota.period().as_secs_f64().ceil().max(1.0);
        let policy_header = HeaderValue::from_str(&format!(
            "\"{}\";q={};w={window}",
            self.policy,
            quota.count()
        ))
        .map_err(|_| ConfigError::new("policy", "printable ASCII without quotes"))?;
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                limiter: self.limiter,
                key: self.key,
                policy: self.policy,
                policy_header,
            }),
        })
    }
}

impl RateLimitLayer {
    /// A layer limiting by `limiter`.
    pub fn builder(limiter: Arc<dyn RateLimiter>) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            limiter,
            key: KeySource::Tenant,
            policy: "default".to_owned(),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around yours.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimitService<S> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

/// Whole seconds, rounded up (a wait of 1 ms is `1`, never `0`).
fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl Shared {
    /// `"policy";r=<remaining>;t=<seconds until more quota>`.
    fn state(&self, decision: &Decision, quota: &Quota) -> HeaderValue {
        let more_in = if decision.is_allowed() {
            // The next cell frees when the key's TAT less the tolerance,
            // plus one interval per cell still left, has passed.
            let tolerance = quota.interval() * (quota.burst() - 1);
            (decision.reset_after() + quota.interval() * decision.remaining())
                .saturating_sub(tolerance)
        } else {
            decision.retry_after()
        };
        let value = format!(
            "\"{}\";r={};t={}",
            self.policy,
            decision.remaining(),
            ceil_secs(more_in)
        );
        HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static("\"default\";r=0"))
    }

    fn problem<B: From<String>>(
        &self,
        status: StatusCode,
        code: &str,
        detail: &str,
        retry_after: u64,
    ) -> Response<B> {
        let body = format!(
            r#"{{"type":"https://payguard.dev/problems/{code}","title":"{}","status":{},"code":"{code}","detail":"{detail}"}}"#,
            status.canonical_reason().unwrap_or("Error"),
            status.as_u16()
        );
        let mut response = Response::new(B::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        headers.insert(RATELIMIT_POLICY, self.policy_header.clone());
        response
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RateLimitService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    ReqB: Send + 'static,
    ResB: From<String> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The ready service answers this request; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let key = shared.key.key_of(&parts).unwrap_or_else(|| "-".to_owned());
            let quota = shared.limiter.quota();
            let decision = match shared.limiter.check(&key, 1).await {
                Ok(decision) => decision,
                Err(RateLimitError::Unavailable(_)) => {
                    return Ok(shared.problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "rate_limit_unavailable",
                        "the rate limiter cannot decide right now; retry shortly",
                        1,
                    ));
                }
                Err(_) => {
                    return Ok(shared.problem(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "this request is larger than the quota allows",
                        ceil_secs(quota.period()),
                    ));
                }
            };
            let state = shared.state(&decision, &quota);
            if !decision.is_allowed() {
                let mut response = shared.problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; retry after the time in Retry-After",
                    ceil_secs(decision.retry_after()),
                );
                response.headers_mut().insert(RATELIMIT, state);
                return Ok(response);
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            let headers = response.headers_mut();
            headers.insert(RATELIMIT_POLICY, shared.policy_header.clone());
            headers.insert(RATELIMIT, state);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let proxies = TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).unwrap();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let client = |forwarded: &[&str]| proxies.client(peer, forwarded.iter().copied());
        assert_eq!(client(&["203.0.113.9"]).to_string(), "203.0.113.9");
        // The leftmost entry is the client's to write: never believed over
        // what a trusted proxy appended.
        assert_eq!(
            client(&["1.1.1.1, 203.0.113.9, 10.0.0.7"]).to_string(),
            "203.0.113.9"
        );
        assert_eq!(
            client(&["1.1.1.1", "203.0.113.9"]).to_string(),
            "203.0.113.9"
        );
        assert_eq!(client(&["10.0.0.5"]).to_string(), "10.0.0.5");
        assert_eq!(client(&["garbage"]), peer);
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            proxies.client(outsider, ["203.0.113.9"].into_iter()),
            outsider,
            "spoofed"
        );
        assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::new(["ten"]).is_err());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key(a), "2001:db8:1:2::/64");
        assert_eq!(ip_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert!(same_network(
            "0.0.0.0".parse().unwrap(),
            "8.8.8.8".parse().unwrap(),
            0
        ));
    }
}
