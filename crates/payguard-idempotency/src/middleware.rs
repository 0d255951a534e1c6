//! [`IdempotencyLayer`]: the `Idempotency-Key` header (IETF draft), as
//! middleware for axum (a `tower::Layer` over axum's body type).

use crate::key::{Fingerprint, KeyError, ScopeKey};
use crate::store::{
    Claim, ClaimRequest, Disposition, IdempotencyStore, Lease, OutcomePolicy, StoreError,
    StoredResponse,
};
use crate::telemetry;
use axum::body::{Body, Bytes};
use axum::extract::MatchedPath;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Limited};
use payguard_core::IdempotencyKey;
use payguard_core::{Clock, ConfigError, TokioClock};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
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
/// [`IdempotencyLayerBuilder::tenant_header`]. The same type
/// payguard-ratelimit limits by.
pub use payguard_core::Tenant;

/// Makes a route's effects happen once per `Idempotency-Key`.
///
/// - The key is an sf-string (`"abc"`) or a bare token (`abc`), up to 255
///   characters; a missing key is a 400 when [`required`](IdempotencyLayerBuilder::required),
///   else the request passes through.
/// - Keys are scoped by tenant, method and route, and checked against a
///   fingerprint of the method, route, query and body: same key, different
///   request is a 422.
/// - While the first request runs, duplicates get a 409 with `Retry-After`
///   (or, with [`wait_for_in_flight`](IdempotencyLayerBuilder::wait_for_in_flight), wait up to a
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
/// let idempotency = IdempotencyLayer::builder(Arc::new(MemoryStore::new()))
///     .required(true)
///     .build()?;
/// let app: Router = Router::new().route("/v1/bookings", post(create_booking).route_layer(idempotency));
/// # let _ = app;
/// # Ok::<(), payguard_idempotency::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

struct Config {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
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
                clock: Arc::new(TokioClock::new()),
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

    /// A layer over `store` with settings of your choosing, checked when
    /// built.
    pub fn builder(store: Arc<dyn IdempotencyStore>) -> IdempotencyLayerBuilder {
        let Self { config } = Self::new(store);
        IdempotencyLayerBuilder {
            config: Arc::unwrap_or_clone(config),
        }
    }
}

/// Builds an [`IdempotencyLayer`] (defaults as [`IdempotencyLayer::new`]).
#[must_use = "a builder does nothing until built"]
pub struct IdempotencyLayerBuilder {
    config: Config,
}

impl fmt::Debug for IdempotencyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayerBuilder")
            .field("required", &self.config.required)
            .field("lease", &self.config.lease)
            .field("retention", &self.config.retention)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayerBuilder {
    /// Whether a request without a key is refused (400).
    pub fn required(mut self, required: bool) -> Self {
        self.config.required = required;
        self
    }

    /// How long a claim holds while its handler runs (renewed every third;
    /// at least 10 ms).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// How long a completed response is replayed (at least the lease).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// Wait up to `bound` for an in-flight duplicate's first request to
    /// finish and replay it, instead of answering 409 at once.
    pub fn wait_for_in_flight(mut self, bound: Duration) -> Self {
        self.config.wait_for_in_flight = Some(bound);
        self
    }

    /// Which outcomes are stored.
    pub fn outcome_policy(mut self, policy: OutcomePolicy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Replays this response header too.
    pub fn replay_header(mut self, name: HeaderName) -> Self {
        self.config.replayed_headers.push(name);
        self
    }

    /// The largest request body accepted (it is read whole to fingerprint
    /// it); larger ones get 413 and do not run. At least 1 byte.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.config.max_request_bytes = bytes;
        self
    }

    /// Measures leases and waits by `clock` (default: tokio's clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// Scopes keys by the value of this request header (when no [`Tenant`]
    /// extension is present).
    pub fn tenant_header(mut self, name: HeaderName) -> Self {
        self.config.tenant_header = Some(name);
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the lease is under 10 ms, the retention is
    /// shorter than the lease, the in-flight wait is zero, or
    /// `max_request_bytes` is zero.
    pub fn build(self) -> Result<IdempotencyLayer, ConfigError> {
        let config = &self.config;
        if config.lease < Duration::from_millis(10) {
            return Err(ConfigError::new("lease", "at least 10 ms"));
        }
        if config.retention < config.lease {
            return Err(ConfigError::new("retention", "at least the lease"));
        }
        if config
            .wait_for_in_flight
            .is_some_and(|bound| bound.is_zero())
        {
            return Err(ConfigError::new("wait_for_in_flight", "longer than zero"));
        }
        if config.max_request_bytes == 0 {
            return Err(ConfigError::new("max_request_bytes", "at least 1"));
        }
        Ok(IdempotencyLayer {
            config: Arc::new(self.config),
        })
    }
}

impl Config {
    fn now(&self) -> Instant {
        Instant::from_std(self.clock.now())
    }
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
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
        Err(KeyError::Missing) if !config.required => {
            telemetry::request("passed_through");
            return call(&mut inner, request).await;
        }
        Err(KeyError::Missing) => {
            telemetry::request("invalid_key");
            return problem(
                StatusCode::BAD_REQUEST,
                KeyError::Missing.code(),
                "this operation needs an Idempotency-Key header",
                None,
            );
        }
        Err(error) => {
            telemetry::request("invalid_key");
            return problem(
                StatusCode::BAD_REQUEST,
                error.code(),
                &error.to_string(),
                None,
            );
        }
    };
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, config.max_request_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            telemetry::request("request_too_large");
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
        .map(|tenant| tenant.as_str().to_owned())
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
        key: ScopeKey::new(&scope, key.as_str()),
        fingerprint,
        lease: config.lease,
        retention: config.retention,
    };
    let (lease, sent) = match claim(&config, claim_request).await {
        Ok((Claim::Claimed(lease), sent)) => (lease, sent),
        Ok((Claim::Replay(stored), _)) => {
            telemetry::request("replayed");
            return replay(stored);
        }
        Ok((Claim::InFlight { retry_after }, _)) => {
            telemetry::request("key_in_use");
            return problem(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; retry later",
                Some(retry_after),
            );
        }
        Ok((Claim::Mismatch, _)) => {
            telemetry::request("key_mismatch");
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_mismatch",
                "this Idempotency-Key was used for a different request",
                None,
            );
        }
        Err(error) => {
            telemetry::request("store_unavailable");
            telemetry::store_unavailable(&error);
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_unavailable",
                "idempotency protection is unavailable, so the request was not processed; retry later",
                Some(Duration::from_secs(1)),
            );
        }
    };
    let watch = LeaseWatch::new(&config, lease, sent);
    let claim = IdempotencyClaim {
        lease,
        shared: Arc::clone(&watch.shared),
    };
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(claim);
    match watch.run(&config, call(&mut inner, request)).await {
        Ran::Finished(Some(response)) => {
            telemetry::request("executed");
            finish(&config, &watch, response).await
        }
        Ran::Finished(None) => {
            telemetry::request("handler_panicked");
            // The handler panicked: free the key and answer 500.
            release(&config, &lease).await;
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the request failed",
                None,
            )
        }
        Ran::Lost(reason) => {
            telemetry::request("lease_lost");
            telemetry::handler_stopped(lease.attempt, reason);
            release(&config, &lease).await;
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_lease_lost",
                "the request could not keep its idempotency claim and was stopped before it finished; retry with the same Idempotency-Key",
                Some(Duration::from_secs(1)),
            )
        }
    }
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

/// Claims, waiting for an in-flight first request if configured; with the
/// instant the successful claim was sent, which its lease counts from.
async fn claim(config: &Config, request: ClaimRequest) -> Result<(Claim, Instant), StoreError> {
    let mut sent = config.now();
    let claim = config.store.claim(request).await?;
    let (Claim::InFlight { .. }, Some(bound)) = (&claim, config.wait_for_in_flight) else {
        return Ok((claim, sent));
    };
    let deadline = sent + bound;
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        sent = config.now();
        let claim = config.store.claim(request).await?;
        if !matches!(claim, Claim::InFlight { .. }) || config.now() >= deadline {
            return Ok((claim, sent));
        }
    }
}

/// The claim a request runs under, in the request's extensions while its
/// handler runs: the [`Lease`] (its owner token fences the handler's own
/// writes, see [`PgIdempotencyStore::fence_in`]) and, with the `postgres`
/// feature, [`complete_in`](Self::complete_in) to store the response in
/// the handler's own transaction.
///
/// [`PgIdempotencyStore::fence_in`]: crate::PgIdempotencyStore::fence_in
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    lease: Lease,
    shared: Arc<Shared>,
}

impl IdempotencyClaim {
    /// The lease this request holds.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// What the layer stores for `response`: its status, the replayed
    /// headers and the whole body; with the response, rebuilt to be sent.
    /// Tells the layer that the handler completes the claim itself, in its
    /// own transaction: the layer then lets the handler finish even when a
    /// renewal finds the claim already completed.
    ///
    /// # Errors
    ///
    /// The body could not be read (`StoreError::Unavailable`).
    pub async fn stored_response(
        &self,
        response: Response<Body>,
    ) -> Result<(StoredResponse, Response<Body>), StoreError> {
        self.shared
            .completing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?
            .to_bytes();
        let stored = stored(&self.shared.replayed_headers, &parts, &body);
        Ok((stored, Response::from_parts(parts, Body::from(body))))
    }

    /// Stores `response` as this request's answer inside the handler's own
    /// transaction on `connection`, so that the business write and the
    /// stored response commit together (Brandur's atomic phases): a crash
    /// or a failed completion can no longer leave a committed write whose
    /// retry runs again. The completion also fences the transaction: from
    /// it until the commit, the claim cannot be taken over, and if it
    /// already was, it fails and the transaction must roll back. Returns
    /// the response to send. A response larger than the store keeps is
    /// stored without its body, as the layer does.
    ///
    /// ```no_run
    /// # use axum::{Extension, body::Body, http::{Response, StatusCode}, response::IntoResponse};
    /// # use payguard_idempotency::{IdempotencyClaim, PgIdempotencyStore};
    /// # async fn handler(claim: IdempotencyClaim, store: PgIdempotencyStore, pool: sqlx::PgPool) -> Result<Response<Body>, Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO bookings (id) VALUES ($1)").bind(7_i64).execute(&mut *tx).await?;
    /// let response = (StatusCode::CREATED, r#"{"id":7}"#).into_response();
    /// let response = claim.complete_in(&store, &mut tx, response).await?; // LeaseLost: roll back
    /// tx.commit().await?;
    /// Ok(response)
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] when the claim is no longer this
    /// request's: roll back. [`StoreError::Unavailable`].
    #[cfg(feature = "postgres")]
    pub async fn complete_in(
        &self,
        store: &crate::PgIdempotencyStore,
        connection: &mut sqlx::PgConnection,
        response: Response<Body>,
    ) -> Result<Response<Body>, StoreError> {
        let (mut stored, response) = self.stored_response(response).await?;
        match store
            .complete_in(&mut *connection, &self.lease, &stored)
            .await
        {
            Err(StoreError::ResponseTooLarge { .. }) => {
                omit_body(&mut stored);
                store.complete_in(connection, &self.lease, &stored).await?;
            }
            result => result?,
        }
        Ok(response)
    }
}

/// What a claim's handler and the layer share.
#[derive(Debug)]
struct Shared {
    replayed_headers: Vec<HeaderName>,
    /// The handler completes the claim in its own transaction.
    completing: AtomicBool,
    /// Until when the lease can be trusted: the instant its last grant was
    /// sent, plus what was granted, minus the safety margin.
    trusted_until: Mutex<Instant>,
}

impl Shared {
    fn trusted_until(&self) -> Instant {
        *self
            .trusted_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn trust(&self, sent: Instant, granted: Duration, margin: Duration) {
        *self
            .trusted_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            sent + granted.saturating_sub(margin);
    }
}

/// How a handler run under a lease ended.
enum Ran {
    /// It returned (`None`: it panicked).
    Finished(Option<Response<Body>>),
    /// The lease was lost first, and the handler was dropped.
    Lost(&'static str),
}

/// Keeps a claim's lease, as `payguard-lock`'s guard keeps a lock: renews
/// it every third of the lease, and gives up when a renewal finds the claim
/// taken over or when the local deadline (send time of the last grant +
/// lease − safety margin) passes without one.
struct LeaseWatch {
    lease: Lease,
    margin: Duration,
    shared: Arc<Shared>,
}

impl LeaseWatch {
    fn new(config: &Config, lease: Lease, sent: Instant) -> Self {
        let margin = safety_margin(config.lease);
        let shared = Arc::new(Shared {
            replayed_headers: config.replayed_headers.clone(),
            completing: AtomicBool::new(false),
            trusted_until: Mutex::new(sent),
        });
        shared.trust(sent, lease.granted, margin);
        Self {
            lease,
            margin,
            shared,
        }
    }

    /// Runs the handler while the lease holds; drops it if the lease is
    /// lost first (unless it is completing the claim itself).
    async fn run(&self, config: &Config, handler: impl Future<Output = Response<Body>>) -> Ran {
        let handler = AssertUnwindSafe(handler).catch_unwind();
        tokio::select! {
            biased;
            result = handler => Ran::Finished(result.ok()),
            reason = self.keep(config) => Ran::Lost(reason),
        }
    }

    /// Renews until the lease is lost; answers why.
    async fn keep(&self, config: &Config) -> &'static str {
        let every = (config.lease / 3).max(Duration::from_millis(10));
        let mut next = config.now() + every;
        let reason = loop {
            let trusted_until = self.shared.trusted_until();
            tokio::time::sleep_until(next.min(trusted_until)).await;
            if config.now() >= trusted_until {
                break "the lease could not be renewed before it ran out";
            }
            let sent = config.now();
            let renewal = config.store.extend(&self.lease, config.lease);
            match tokio::time::timeout_at(trusted_until, renewal).await {
                Ok(Ok(granted)) => {
                    self.shared.trust(sent, granted, self.margin);
                    next = sent + every;
                }
                Ok(Err(StoreError::LeaseLost)) => break "the claim was taken over",
                Ok(Err(error)) => {
                    telemetry::renewal_failed(&error, self.lease.attempt);
                    next = config.now() + every / 4;
                }
                Err(_) => break "the lease could not be renewed before it ran out",
            }
        };
        if self
            .shared
            .completing
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // The handler's own transaction completes the claim (or finds
            // it lost); let it finish.
            std::future::pending::<()>().await;
        }
        reason
    }
}

/// Stop trusting a lease this long before it ends: a tenth of it, at least
/// a second, at most a quarter (as `payguard-lock` does).
fn safety_margin(lease: Duration) -> Duration {
    (lease / 10).max(Duration::from_secs(1)).min(lease / 4)
}

fn stored(
    replayed_headers: &[HeaderName],
    parts: &axum::http::response::Parts,
    body: &Bytes,
) -> StoredResponse {
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| replayed_headers.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: body.to_vec(),
    }
}

/// Kept at most once all the same: the status and headers are stored, the
/// body is not, and a replay says so.
fn omit_body(stored: &mut StoredResponse) {
    stored.body.clear();
    stored
        .headers
        .push((BODY_OMITTED.as_str().to_owned(), b"true".to_vec()));
}

async fn finish(config: &Config, watch: &LeaseWatch, response: Response<Body>) -> Response<Body> {
    let lease = &watch.lease;
    let (parts, body) = response.into_parts();
    if config.policy.disposition(parts.status.as_u16()) == Disposition::Release {
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
    let mut stored = stored(&config.replayed_headers, &parts, &body);
    // The handler's effects happened: keep trying to store its answer
    // while the lease can be trusted, or a retry would run them again.
    let mut pause = Duration::from_millis(20);
    loop {
        match config.store.complete(lease, &stored).await {
            Ok(()) => break,
            Err(StoreError::ResponseTooLarge { .. }) if !stored.body.is_empty() => {
                omit_body(&mut stored);
            }
            Err(StoreError::LeaseLost)
                if watch
                    .shared
                    .completing
                    .load(std::sync::atomic::Ordering::SeqCst) =>
            {
                // Completed in the handler's transaction, or lost: either
                // way nothing is left to store.
                break;
            }
            Err(StoreError::LeaseLost) => {
                telemetry::lost_before_completion(lease.attempt);
                break;
            }
            Err(error) if config.now() + pause < watch.shared.trusted_until() => {
                telemetry::completion_retried(&error);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(error) => {
                telemetry::completion_failed(&error);
                break;
            }
        }
    }
    Response::from_parts(parts, Body::from(body))
}

async fn release(config: &Config, lease: &Lease) {
    if let Err(error) = config.store.release(lease).await {
        telemetry::release_failed(&error);
    }
}

fn key_of(headers: &HeaderMap) -> Result<IdempotencyKey, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Err(KeyError::Missing);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    IdempotencyKey::from_header(value.as_bytes()).map_err(|_| KeyError::Invalid)
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
