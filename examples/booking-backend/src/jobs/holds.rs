//! Hold expiry: unpaid holds whose time ran out free their nights.

use crate::startup::App;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Expires lapsed holds every `every` until `shutdown` fires. Any instance
/// may run it: expiring twice changes nothing.
pub(super) async fn expire_every(app: Arc<App>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match app.store.expire_holds().await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "lapsed holds expired"),
            Err(error) => tracing::warn!(%error, "expiring holds failed; trying again next time"),
        }
    }
}
