//! The HTTP server: hyper's HTTP/1.1 with the limits a service exposed to
//! the internet needs, which `axum::serve` does not set.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What one client, or many, can hold of the server.
///
/// # Default
///
/// 1024 connections; request headers within 5 s (and an idle keep-alive
/// connection closed after the same); a whole request, body and answer,
/// within 30 s; bodies up to 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; beyond, new ones are closed at once (a
    /// warning and `booking_connections_refused_total`).
    pub max_connections: usize,
    /// How long a client has to send a request's headers, and how long a
    /// keep-alive connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// How long a request may take, reading its body included (`408
    /// request_timeout` after).
    pub request_timeout: Duration,
    /// The largest request body (`413 request_too_large` beyond).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 64 << 10,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` fires;
/// then stops accepting and lets open requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_warning: Option<Instant> = None;
    let mut open = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, mostly: say so, and do not spin.
                metrics::counter!("booking_accept_errors_total").increment(1);
                warn_at_most_every_second(&mut last_warning, || {
                    tracing::warn!(%error, "cannot accept a connection");
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            metrics::counter!("booking_connections_refused_total").increment(1);
            warn_at_most_every_second(&mut last_warning, || {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; closing new connections"
                );
            });
            drop(stream);
            continue;
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        open.spawn(async move {
            let _permit = permit;
            metrics::gauge!("booking_connections_open").increment(1.0);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.request_timeout, connection).await;
                }
            }
            metrics::gauge!("booking_connections_open").decrement(1.0);
        });
        while open.try_join_next().is_some() {}
    }
    while open.join_next().await.is_some() {}
}

fn warn_at_most_every_second(last: &mut Option<Instant>, warn: impl FnOnce()) {
    let now = Instant::now();
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
        *last = Some(now);
        warn();
    }
}
