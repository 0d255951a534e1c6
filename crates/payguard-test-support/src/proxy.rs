//! [`TcpProxy`]: a network between one client and a server that a test can
//! break on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards both ways.
    Open,
    /// Connections are closed at once, as a restarted server or a reset
    /// would close them.
    Cut,
    /// Connections stay open and accepted, but nothing crosses: a network
    /// partition, where packets vanish and nobody is told.
    Blackhole,
}

#[derive(Debug)]
struct State {
    mode: watch::Sender<Mode>,
    upstream: Mutex<String>,
    links: Mutex<Vec<JoinHandle<()>>>,
}

/// A TCP proxy in front of a server (PostgreSQL, Redis, an HTTP service)
/// for fault injection: give one instance its address and leave the others
/// on the real server, and that instance alone can be cut off
/// ([`cut`](Self::cut)), partitioned ([`blackhole`](Self::blackhole)),
/// healed ([`restore`](Self::restore)) or pointed at another server, as a
/// virtual IP moves after a failover ([`switch_upstream`](Self::switch_upstream)).
/// It stops when dropped.
///
/// ```no_run
/// # async fn example() {
/// use payguard_test_support::{TcpProxy, TestDb};
/// let db = TestDb::new().await;
/// let proxy = TcpProxy::start(TcpProxy::upstream_of(db.url())).await;
/// let through_proxy = proxy.url_for(db.url());
/// proxy.blackhole(); // queries through `through_proxy` now hang
/// # }
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`
    /// (`host:port`).
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start(upstream: impl Into<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port for the test proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State {
            mode: watch::Sender::new(Mode::Open),
            upstream: Mutex::new(upstream.into()),
            links: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept(listener, Arc::clone(&state)));
        Self {
            addr,
            state,
            accept,
        }
    }

    /// `host:port` of a `postgres://` or `redis://` URL (port 5432 if it
    /// names none), for [`start`](Self::start).
    ///
    /// # Panics
    ///
    /// When `url` is not a URL with a host.
    pub fn upstream_of(url: &str) -> String {
        let parsed = url::Url::parse(url).expect("a URL");
        let host = parsed.host_str().expect("a URL with a host");
        format!("{host}:{}", parsed.port().unwrap_or(5432))
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the proxy's.
    ///
    /// # Panics
    ///
    /// When `url` is not a URL.
    pub fn url_for(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("a URL");
        parsed
            .set_host(Some("127.0.0.1"))
            .expect("a URL that can have a host");
        parsed
            .set_port(Some(self.addr.port()))
            .expect("a URL that can have a port");
        parsed.into()
    }

    /// Closes every connection and every new one at once.
    pub fn cut(&self) {
        self.state.mode.send_replace(Mode::Cut);
        self.drop_links();
    }

    /// Keeps connections open but lets nothing through, in either
    /// direction, until [`restore`](Self::restore): requests hang.
    pub fn blackhole(&self) {
        self.state.mode.send_replace(Mode::Blackhole);
    }

    /// Forwards again. Connections held by a black hole carry on where they
    /// stopped, as after a healed partition.
    pub fn restore(&self) {
        self.state.mode.send_replace(Mode::Open);
    }

    /// Sends new connections to `upstream` and closes the current ones, as
    /// clients see a virtual IP or DNS name move to a promoted standby.
    pub fn switch_upstream(&self, upstream: impl Into<String>) {
        *self
            .state
            .upstream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = upstream.into();
        self.drop_links();
    }

    fn drop_links(&self) {
        for link in self
            .state
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_links();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    while let Ok((inbound, _)) = listener.accept().await {
        if *state.mode.borrow() == Mode::Cut {
            drop(inbound);
            continue;
        }
        let upstream = state
            .upstream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let link = tokio::spawn(forward(inbound, upstream, state.mode.subscribe()));
        let mut links = state
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        links.retain(|link| !link.is_finished());
        links.push(link);
    }
}

async fn forward(inbound: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    if mode.wait_for(|mode| *mode == Mode::Open).await.is_err() {
        return;
    }
    let Ok(outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = inbound.into_split();
    let (server_read, server_write) = outbound.into_split();
    tokio::select! {
        () = pump(client_read, server_write, mode.clone()) => {}
        () = pump(server_read, client_write, mode) => {}
    }
}

/// Copies one direction, holding whatever it read while the proxy is not
/// open; returns when either side closes or the proxy is cut.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = mode.wait_for(|mode| *mode == Mode::Cut) => {
                let _ = changed;
                return;
            }
        };
        let Ok(read) = read else { return };
        let Some(bytes) = buffer.get(..read).filter(|bytes| !bytes.is_empty()) else {
            return;
        };
        match mode.wait_for(|mode| *mode != Mode::Blackhole).await {
            Ok(open) if *open == Mode::Open => {}
            _ => return,
        }
        if to.write_all(bytes).await.is_err() {
            return;
        }
    }
}
