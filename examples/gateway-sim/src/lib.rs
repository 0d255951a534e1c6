#![doc = include_str!("../README.md")]

mod api;
mod banks;
mod control;
mod faults;
mod flutterwave;
mod model;
mod paystack;
mod webhooks;

pub use faults::{FaultPlan, FaultRule};
pub use model::{Charge, Provider, Recipient, Refund, Snapshot, Transfer};
pub use webhooks::{DeliveryLog, WebhookSettings};

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use model::{Books, Event};
use payguard_core::{Clock, TokioClock};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The Paystack secret key used when `PAYSTACK_SECRET_KEY` is unset.
pub const DEFAULT_PAYSTACK_SECRET_KEY: &str = "sk_test_payguard_sim";
/// The Flutterwave secret key used when `FLUTTERWAVE_SECRET_KEY` is unset.
pub const DEFAULT_FLUTTERWAVE_SECRET_KEY: &str = "FLWSECK_TEST-payguard-sim-X";
/// The Flutterwave webhook secret hash used when `FLUTTERWAVE_SECRET_HASH` is unset.
pub const DEFAULT_FLUTTERWAVE_SECRET_HASH: &str = "payguard-sim-hash";

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Seeds the one RNG behind every random choice.
    pub seed: u64,
    /// Bearer key Paystack requests must carry; also signs its webhooks.
    pub paystack_secret_key: String,
    /// Bearer key Flutterwave requests must carry.
    pub flutterwave_secret_key: String,
    /// Flutterwave's webhook secret hash (`verif-hash`, and the key of
    /// `flutterwave-signature`).
    pub flutterwave_secret_hash: String,
    /// Where Paystack webhooks go, if anywhere.
    pub paystack_webhook_url: Option<String>,
    /// Where Flutterwave webhooks go, if anywhere.
    pub flutterwave_webhook_url: Option<String>,
    /// Every provider balance, per currency, starts here (minor units).
    pub initial_balance: i64,
    /// Settle transfers (success) and refunds (processed) on their own
    /// after this long; `None` leaves them pending until `/_sim` settles them.
    pub auto_settle: Option<Duration>,
    /// Time for timestamps and rate limits.
    pub clock: Arc<dyn Clock>,
    /// Serve HTTPS with this certificate chain and key instead of HTTP.
    pub tls: Option<TlsIdentity>,
}

/// A certificate chain and its private key, both PEM, for serving HTTPS.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The server certificate, then its intermediates (PEM).
    pub certificate_chain: Vec<u8>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads both PEM files.
    ///
    /// # Errors
    ///
    /// A file cannot be read.
    pub fn from_files(certificate_chain: &Path, private_key: &Path) -> std::io::Result<Self> {
        Ok(Self {
            certificate_chain: std::fs::read(certificate_chain)?,
            private_key: std::fs::read(private_key)?,
        })
    }

    fn acceptor(&self) -> std::io::Result<tokio_rustls::TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |what: &str, error: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {error}"))
        };
        let chain = CertificateDer::pem_slice_iter(&self.certificate_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| invalid("the TLS certificate is not PEM", &error))?;
        if chain.is_empty() {
            return Err(invalid("the TLS certificate file", &"holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.private_key)
            .map_err(|error| invalid("the TLS key is not a PEM private key", &error))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid("TLS versions", &error))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| invalid("the TLS certificate and key do not go together", &error))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 0,
            paystack_secret_key: DEFAULT_PAYSTACK_SECRET_KEY.to_owned(),
            flutterwave_secret_key: DEFAULT_FLUTTERWAVE_SECRET_KEY.to_owned(),
            flutterwave_secret_hash: DEFAULT_FLUTTERWAVE_SECRET_HASH.to_owned(),
            paystack_webhook_url: None,
            flutterwave_webhook_url: None,
            initial_balance: 100_000_000_000,
            auto_settle: None,
            clock: Arc::new(TokioClock),
            tls: None,
        }
    }
}

impl SimConfig {
    /// Defaults, with secrets from `PAYSTACK_SECRET_KEY`,
    /// `FLUTTERWAVE_SECRET_KEY`, `FLUTTERWAVE_SECRET_HASH` and webhook
    /// targets from `SIM_WEBHOOK_PAYSTACK_URL`, `SIM_WEBHOOK_FLUTTERWAVE_URL`
    /// where set.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let defaults = Self::default();
        Self {
            paystack_secret_key: var("PAYSTACK_SECRET_KEY").unwrap_or(defaults.paystack_secret_key),
            flutterwave_secret_key: var("FLUTTERWAVE_SECRET_KEY")
                .unwrap_or(defaults.flutterwave_secret_key),
            flutterwave_secret_hash: var("FLUTTERWAVE_SECRET_HASH")
                .unwrap_or(defaults.flutterwave_secret_hash),
            paystack_webhook_url: var("SIM_WEBHOOK_PAYSTACK_URL"),
            flutterwave_webhook_url: var("SIM_WEBHOOK_FLUTTERWAVE_URL"),
            ..defaults
        }
    }

    /// Binds and starts serving.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn start(self) -> std::io::Result<SimHandle> {
        let acceptor = self.tls.as_ref().map(TlsIdentity::acceptor).transpose()?;
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}");
        let sim = Sim::new(self, base_url.clone(), shutdown.clone());
        let router = router(sim.clone());
        let task = tokio::spawn(serve(listener, acceptor, router, shutdown.clone()));
        Ok(SimHandle {
            addr,
            base_url,
            sim,
            shutdown,
            task,
        })
    }
}

/// A running simulator. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    base_url: String,
    sim: Sim,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, or `https://` when serving TLS.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `.../paystack`, the Paystack base URL.
    pub fn paystack_url(&self) -> String {
        format!("{}/paystack", self.base_url())
    }

    /// `.../flutterwave/v3`, the Flutterwave base URL.
    pub fn flutterwave_url(&self) -> String {
        format!("{}/flutterwave/v3", self.base_url())
    }

    /// The books right now.
    pub fn snapshot(&self) -> Snapshot {
        self.sim.books().snapshot()
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, plan: FaultPlan) {
        *self.sim.faults() = plan;
    }

    /// Replaces the webhook settings.
    pub fn set_webhooks(&self, settings: WebhookSettings) {
        self.sim.webhooks.configure(settings);
    }

    /// Every webhook delivery so far.
    pub fn deliveries(&self) -> Vec<DeliveryLog> {
        self.sim.webhooks.log()
    }

    /// Stops accepting, drops open connections and pending deliveries.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// State shared by every handler.
#[derive(Debug, Clone)]
pub(crate) struct Sim(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: SimConfig,
    pub base_url: String,
    books: Mutex<Books>,
    faults: Mutex<FaultPlan>,
    rng: Mutex<StdRng>,
    journal: Mutex<Vec<control::JournalEntry>>,
    keyed: Mutex<()>,
    pub webhooks: webhooks::Webhooks,
}

impl std::ops::Deref for Sim {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sim {
    fn new(config: SimConfig, base_url: String, shutdown: CancellationToken) -> Self {
        let webhooks = webhooks::Webhooks::new(&config, shutdown.clone());
        Self(Arc::new(Inner {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            base_url,
            books: Mutex::new(Books::default()),
            faults: Mutex::new(FaultPlan::default()),
            journal: Mutex::new(Vec::new()),
            keyed: Mutex::new(()),
            webhooks,
        }))
    }

    pub(crate) fn books(&self) -> MutexGuard<'_, Books> {
        lock(&self.books)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultPlan> {
        lock(&self.faults)
    }

    pub(crate) fn rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.rng)
    }

    /// Serialises `X-Idempotency-Key` requests (Flutterwave).
    pub(crate) fn idempotency_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.keyed)
    }

    pub(crate) fn journal(&self) -> MutexGuard<'_, Vec<control::JournalEntry>> {
        lock(&self.journal)
    }

    pub(crate) fn now(&self) -> String {
        model::rfc3339(self.config.clock.wall())
    }

    /// Random `[a-z0-9]` text, from the seeded RNG.
    pub(crate) fn code(&self, length: usize) -> String {
        use rand::RngExt;
        let mut rng = self.rng();
        (0..length)
            .map(|_| match rng.random_range(0u8..36) {
                letter @ 0..26 => char::from(b'a' + letter),
                digit => char::from(b'0' + digit - 26),
            })
            .collect()
    }

    /// Sends the webhooks for `events`.
    pub(crate) fn emit(&self, events: Vec<Event>) {
        for event in events {
            self.webhooks.enqueue(self, event);
        }
    }

    /// Forgets everything but the configuration, and reseeds.
    pub(crate) fn reset(&self) {
        {
            let mut books = self.books();
            // Ids keep counting: a timer of the old era cannot hit a new object.
            let next_id = books.next_id;
            *books = Books::default();
            books.next_id = next_id;
        }
        *self.faults() = FaultPlan::default();
        *self.rng() = StdRng::seed_from_u64(self.config.seed);
        self.journal().clear();
        self.webhooks.reset(&self.config);
    }

    /// Schedules automatic settlement of a transfer or refund, if configured.
    pub(crate) fn auto_settle(&self, settle: control::Settle) {
        let Some(after) = self.config.auto_settle else {
            return;
        };
        let sim = self.clone();
        let era = self.webhooks.era();
        tokio::spawn(async move {
            tokio::select! {
                () = era.cancelled() => {}
                () = tokio::time::sleep(after) => {
                    let _ = control::settle(&sim, settle);
                }
            }
        });
    }
}

/// A handle on the connection a request came in on, so a fault can drop it.
#[derive(Debug, Clone)]
pub(crate) struct Connection(pub CancellationToken);

fn router(sim: Sim) -> Router {
    Router::new()
        .nest("/paystack", paystack::router(sim.clone()))
        .nest("/flutterwave/v3", flutterwave::router(sim.clone()))
        .nest("/_sim", control::router(sim.clone()))
        .fallback(|uri: http::Uri| async move {
            let provider = if uri.path().starts_with("/flutterwave") {
                model::Provider::Flutterwave
            } else {
                model::Provider::Paystack
            };
            api::fail(provider, http::StatusCode::NOT_FOUND, "Not found")
        })
}

/// The path as the providers' servers read it: repeated slashes collapse
/// (Flutterwave's Node SDK asks for `//v3/transfers`) and a trailing slash
/// goes (pypaystack2 asks for `/transaction/{id}/`).
fn normalize<B>(request: &mut Request<B>) {
    let path = request.uri().path();
    if !path.contains("//") && (path.len() <= 1 || !path.ends_with('/')) {
        return;
    }
    let mut clean = String::with_capacity(path.len());
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    if let Some(query) = request.uri().query() {
        clean.push('?');
        clean.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = clean.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// Serves HTTP/1.1 (over TLS when given an acceptor) with one task per
/// connection, so a fault can close a connection without answering.
async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(stream, router, shutdown).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, router, shutdown).await,
                    Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, router: Router, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let kill = CancellationToken::new();
    let connection = Connection(kill.clone());
    let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(connection.clone());
        normalize(&mut request);
        router.clone().oneshot(request.map(Body::new))
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::select! {
        _ = serving => {}
        () = kill.cancelled() => {}
        () = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_and_trailing_slashes_go() {
        for (given, read) in [
            (
                "/flutterwave//v3/transfers?&page=2",
                "/flutterwave/v3/transfers?&page=2",
            ),
            ("/paystack/transaction/42/", "/paystack/transaction/42"),
            (
                "/paystack/transaction/?perPage=50",
                "/paystack/transaction?perPage=50",
            ),
            ("/", "/"),
            ("/paystack/balance", "/paystack/balance"),
        ] {
            let mut request = http::Request::get(given).body(()).unwrap_or_default();
            super::normalize(&mut request);
            assert_eq!(request.uri().to_string(), read);
        }
    }
}
