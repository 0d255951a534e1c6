//! [`IdempotencyLayer`]: the `Idempotency-Key` header (IETF draft), as
//! middleware for axum (a `tower::Layer` over axum's body type).

use crate::key::{Fingerprint, KeyError, ScopeKey, parse_key};
use crate::store::{
    Claim, ClaimRequest, Disposition, IdempotencyStore, Lease, OutcomePolicy, StoreError,
    StoredResponse,
};
use axum::body::{Body, Bytes};
use axum::extract::MatchedPath;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Limited};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The header replays carry.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The header a replay carries when the response was too large to keep
/// and only its status and headers were stored.
pub const BODY_OMITTED: HeaderName = HeaderName::from_static("idempotency-body-omitted");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The tenant a request belongs to, for scoping keys: put it in the
/// request's extensions (an auth layer usually does), or name a header with
/// [`IdempotencyLayer::tenant_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// Makes a route's effects happen once per `Idempotency-Key`.
///
/// - The key is an sf-string (`"abc"`) or a bare token (`abc`), up to 255
///   characters; a missing key is a 400 when [`required`](Self::required),
///   else the request passes through.
/// - Keys are scoped by tenant, method and route, and checked against a
///   fingerprint of the method, route, query and body: same key, different
///   request is a 422.
/// - While the first request runs, duplicates get a 409 with `Retry-After`
///   (or, with [`wait_for_in_flight`](Self::wait_for_in_flight), wait up to a
///   bound for the first and replay it).
/// - A completed request is replayed byte for byte (status, allow-listed
///   headers, body) with `Idempotent-Replayed: true`; the handler does not
///   run.
/// - Outcomes are stored or released by an [`OutcomePolicy`] (by default
///   5xx, 408, 429 and panics release the key).
/// - A store that cannot be reached gives 503 and the handler does not run.
///
/// Errors are `application/problem+json` with a stable `code`:
/// `idempotency_key_missing`, `idempotency_key_invalid`,
/// `idempotency_key_in_use`, `idempotency_key_mismatch`,
/// `idempotency_unavailable`.
///
/// ```
/// use axum::{Router, routing::post};
/// use payguard_idempotency::{IdempotencyLayer, MemoryStore};
/// use std::sync::Arc;
///
/// async fn create_booking() -> (axum::http::StatusCode, &'static str) {
///     (axum::http::StatusCode::CREATED, r#"{"id":"bk_1"}"#)
/// }
///
/// let idempotency = IdempotencyLayer::new(Arc::new(MemoryStore::new())).required(true);
/// let app: Router = Router::new().route("/v1/bookings", post(create_booking).route_layer(idempotency));
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

struct Config {
    store: Arc<dyn IdempotencyStore>,
    required: bool,
    lease: Duration,
    retention: Duration,
    wait_for_in_flight: Option<Duration>,
    policy: OutcomePolicy,
    replayed_headers: Vec<HeaderName>,
    tenant_header: Option<HeaderName>,
    max_request_bytes: usize,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        f.debug_struct("IdempotencyLayer")
            .field("required", &config.required)
            .field("lease", &config.lease)
            .field("retention", &config.retention)
            .field("wait_for_in_flight", &config.wait_for_in_flight)
            .field("policy", &config.policy)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayer {
    /// A layer over `store`.
    ///
    /// # Default
    ///
    /// Key optional; lease 30 s (renewed while the handler runs); retention
    /// 24 h; in-flight duplicates get 409 at once; the default
    /// [`OutcomePolicy`]; replayed headers `content-type`, `location`,
    /// `content-location`, `etag`, `last-modified`, `link`; no tenant header;
    /// request bodies up to 1 MiB. The store caps stored response bodies: a
    /// larger response is kept without its body, and its replays carry
    /// [`BODY_OMITTED`].
    pub fn new(store: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                required: false,
                lease: Duration::from_secs(30),
                retention: Duration::from_secs(24 * 3600),
                wait_for_in_flight: None,
                policy: OutcomePolicy::default(),
                replayed_headers: [
                    "content-type",
                    "location",
                    "content-location",
                    "etag",
                    "last-modified",
                    "link",
                ]
                .into_iter()
                .map(HeaderName::from_static)
                .collect(),
                tenant_header: None,
                max_request_bytes: 1 << 20,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = match Arc::try_unwrap(self.config) {
            Ok(config) => config,
            Err(shared) => Config {
                store: Arc::clone(&shared.store),
                replayed_headers: shared.replayed_headers.clone(),
                tenant_header: shared.tenant_header.clone(),
                ..*shared
            },
        };
        change(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    /// Whether a request without a key is refused (400).
    pub fn required(self, required: bool) -> Self {
        self.with(|c| c.required = required)
    }

    /// How long a claim holds while its handler runs (renewed every third).
    pub fn lease(self, lease: Duration) -> Self {
        self.with(|c| c.lease = lease)
    }

    /// How long a completed response is replayed.
    pub fn retention(self, retention: Duration) -> Self {
        self.with(|c| c.retention = retention)
    }

    /// Wait up to `bound` for an in-flight duplicate's first request to
    /// finish and replay it, instead of answering 409 at once.
    pub fn wait_for_in_flight(self, bound: Duration) -> Self {
        self.with(|c| c.wait_for_in_flight = Some(bound))
    }

    /// Which outcomes are stored.
    pub fn outcome_policy(self, policy: OutcomePolicy) -> Self {
        self.with(|c| c.policy = policy)
    }

    /// Replays this response header too.
    pub fn replay_header(self, name: HeaderName) -> Self {
        self.with(|c| c.replayed_headers.push(name))
    }

    /// The largest request body accepted (it is read whole to fingerprint
    /// it); larger ones get 413 and do not run.
    pub fn max_request_bytes(self, bytes: usize) -> Self {
        self.with(|c| c.max_request_bytes = bytes)
    }

    /// Scopes keys by the value of this request header (when no [`Tenant`]
    /// extension is present).
    pub fn tenant_header(self, name: HeaderName) -> Self {
        self.with(|c| c.tenant_header = Some(name))
    }
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            replayed_headers: self.replayed_headers.clone(),
            tenant_header: self.tenant_header.clone(),
            ..*self
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotent {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`IdempotencyLayer`].
#[derive(Clone)]
pub struct Idempotent<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotent").finish_non_exhaustive()
    }
}

impl<S> Service<Request<Body>> for Idempotent<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The ready service handles this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(async move { Ok(handle(config, inner, request).await) })
    }
}

async fn handle<S>(config: Arc<Config>, mut inner: S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return call(&mut inner, request).await;
    }
    let key = match key_of(request.headers()) {
        Ok(key) => key,
        Err(KeyError::Missing) if !config.required => return call(&mut inner, request).await,
        Err(KeyError::Missing) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "idempotency_key_missing",
                "this operation needs an Idempotency-Key header",
                None,
            );
        }
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                &error.to_string(),
                None,
            );
        }
    };
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, config.max_request_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "the request body is too large",
                None,
            );
        }
    };
    let route = parts.extensions.get::<MatchedPath>().map_or_else(
        || parts.uri.path().to_owned(),
        |matched| matched.as_str().to_owned(),
    );
    let tenant = parts
        .extensions
        .get::<Tenant>()
        .map(|tenant| tenant.0.clone())
        .or_else(|| {
            config
                .tenant_header
                .as_ref()
                .and_then(|name| parts.headers.get(name))
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let scope = format!("{tenant}\u{0}{}\u{0}{route}", parts.method);
    // The scope names the operation (route template); the fingerprint the
    // exact request (concrete path, query, body).
    let fingerprint = Fingerprint::of(&[
        parts.method.as_str().as_bytes(),
        parts.uri.path().as_bytes(),
        parts.uri.query().unwrap_or_default().as_bytes(),
        &body,
    ]);
    let claim_request = ClaimRequest {
        key: ScopeKey::new(&scope, &key),
        fingerprint,
        lease: config.lease,
        retention: config.retention,
    };
    let lease = match claim(&config, claim_request).await {
        Ok(Claim::Claimed(lease)) => lease,
        Ok(Claim::Replay(stored)) => return replay(stored),
        Ok(Claim::InFlight { retry_after }) => {
            return problem(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; retry later",
                Some(retry_after),
            );
        }
        Ok(Claim::Mismatch) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_mismatch",
                "this Idempotency-Key was used for a different request",
                None,
            );
        }
        Err(error) => {
            tracing::error!(error = %error, "idempotency store unavailable; refusing the request");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_unavailable",
                "idempotency protection is unavailable, so the request was not processed; retry later",
                Some(Duration::from_secs(1)),
            );
        }
    };
    let request = Request::from_parts(parts, Body::from(body));
    let response = run_holding_lease(&config, &lease, call(&mut inner, request)).await;
    let Some(response) = response else {
        // The handler panicked: free the key and answer 500.
        release(&config, &lease).await;
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request failed",
            None,
        );
    };
    finish(&config, &lease, response).await
}

async fn call<S>(inner: &mut S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    if let Err(never) = std::future::poll_fn(|cx| inner.poll_ready(cx)).await {
        match never {}
    }
    match inner.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Claims, waiting for an in-flight first request if configured.
async fn claim(config: &Config, request: ClaimRequest) -> Result<Claim, StoreError> {
    let claim = config.store.claim(request).await?;
    let (Claim::InFlight { .. }, Some(bound)) = (&claim, config.wait_for_in_flight) else {
        return Ok(claim);
    };
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let claim = config.store.claim(request).await?;
        if !matches!(claim, Claim::InFlight { .. }) || tokio::time::Instant::now() >= deadline {
            return Ok(claim);
        }
    }
}

/// Runs the handler, renewing the lease every third of it; `None` if the
/// handler panicked.
async fn run_holding_lease(
    config: &Config,
    lease: &Lease,
    handler: impl Future<Output = Response<Body>>,
) -> Option<Response<Body>> {
    let handler = AssertUnwindSafe(handler).catch_unwind();
    tokio::pin!(handler);
    let every = (config.lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            result = &mut handler => return result.ok(),
            () = tokio::time::sleep(every) => {
                if let Err(error) = config.store.extend(lease, config.lease).await {
                    tracing::warn!(error = %error, attempt = lease.attempt, "could not renew an idempotency lease");
                }
            }
        }
    }
}

async fn finish(config: &Config, lease: &Lease, response: Response<Body>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    if config.policy.disposition(status) == Disposition::Release {
        release(config, lease).await;
        return Response::from_parts(parts, body);
    }
    let body: Bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            release(config, lease).await;
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the response could not be read",
                None,
            );
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| config.replayed_headers.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let mut stored = StoredResponse {
        status,
        headers,
        body: body.to_vec(),
    };
    let mut result = config.store.complete(lease, &stored).await;
    if let Err(StoreError::ResponseTooLarge { .. }) = result {
        // Kept at most once all the same: the status and headers are stored,
        // the body is not, and a replay says so.
        stored.body.clear();
        stored
            .headers
            .push((BODY_OMITTED.as_str().to_owned(), b"true".to_vec()));
        result = config.store.complete(lease, &stored).await;
    }
    match result {
        Ok(()) => {}
        Err(StoreError::LeaseLost) => {
            tracing::warn!(
                attempt = lease.attempt,
                "idempotency lease lost before completion; the response was not stored"
            );
        }
        Err(error) => {
            tracing::error!(error = %error, "could not store an idempotent response; the key stays claimed until its lease ends");
        }
    }
    Response::from_parts(parts, Body::from(body))
}

async fn release(config: &Config, lease: &Lease) {
    if let Err(error) = config.store.release(lease).await {
        tracing::warn!(error = %error, "could not release an idempotency claim; it frees when its lease ends");
    }
}

fn key_of(headers: &HeaderMap) -> Result<String, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Err(KeyError::Missing);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    parse_key(value.as_bytes())
}

fn replay(stored: StoredResponse) -> Response<Body> {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() =
        StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(&value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// An RFC 9457 problem response with a stable `code`.
pub(crate) fn problem(
    status: StatusCode,
    code: &str,
    detail: &str,
    retry_after: Option<Duration>,
) -> Response<Body> {
    let body = format!(
        r#"{{"type":"about:blank","title":"{}","status":{},"code":"{code}","detail":"{}"}}"#,
        status.canonical_reason().unwrap_or("Error"),
        status.as_u16(),
        detail.replace('"', "'")
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}
