//! The booking backend: every payguard crate assembled into a short-let
//! marketplace that never double-books and moves money exactly once.
//!
//! - [`http`]: the routes, one module per resource, errors as problem+json;
//! - [`jobs`]: escrow release, reconciliation, hold expiry;
//! - [`payments`] and [`events`]: how money moves, and what gateway events
//!   mean;
//! - [`store`]: the [`store::BookingStore`] trait, on PostgreSQL or in
//!   memory;
//! - [`startup`]: settings, and the [`App`] every request shares.

pub mod domain;
pub mod events;
pub mod gateway;
pub mod http;
pub mod jobs;
pub mod payments;
pub mod server;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use startup::{App, DatabaseSettings, Settings, StartError, WebhookSecrets};

use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Every route of the service, for `app`.
pub fn app(app: &Arc<App>) -> Router {
    http::router(app)
}

/// Serves `app` on `listener` and runs its jobs until `shutdown` fires;
/// then readiness answers 503 for `drain` while the listener still
/// accepts (so a load balancer stops sending first), and open requests
/// finish.
///
/// # Errors
///
/// The jobs' settings cannot work.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let jobs = jobs::spawn(&app, &shutdown)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let stop_serving = CancellationToken::new();
    let drain = app.settings.drain;
    let draining = {
        let (app, shutdown, stop_serving) =
            (Arc::clone(&app), shutdown.clone(), stop_serving.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            app.draining.cancel();
            if !drain.is_zero() {
                tracing::info!(
                    ?drain,
                    "draining: readiness answers 503 until the listener closes"
                );
                tokio::time::sleep(drain).await;
            }
            stop_serving.cancel();
        })
    };
    server::serve(listener, self::app(&app), app.settings.limits, stop_serving).await;
    let _ = draining.await;
    for job in jobs {
        let _ = job.await;
    }
    Ok(())
}
