//! The booking backend: every payguard crate assembled into a short-let
//! marketplace that never double-books and moves money exactly once.

pub mod app;
pub mod demo;
pub mod domain;
mod edge;
pub mod gateway;
pub mod server;
pub mod store;
pub mod telemetry;

use app::App;
use payguard_lock::{LockOptions, ScheduledJob};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` and runs its jobs until `shutdown` fires.
///
/// # Errors
///
/// The server failed.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let jobs = spawn_jobs(&app, &shutdown);
    let router = app.router();
    server::serve(listener, router, app.settings.limits, shutdown.clone()).await;
    shutdown.cancel();
    for job in jobs {
        let _ = job.await;
    }
    Ok(())
}

/// The escrow-release and reconciliation jobs (under fleet-wide locks) and
/// hold expiry.
pub fn spawn_jobs(
    app: &Arc<App>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let every = app.settings.job_every;
    let lease = (every * 10).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let options = LockOptions::new(lease).at_least(every / 2);
    let escrow = {
        let app = Arc::clone(app);
        let job = ScheduledJob::new("escrow-release", every).lock_options(options.clone());
        let locker = app.locker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            job.run(locker, shutdown, |run| {
                let app = Arc::clone(&app);
                async move {
                    let started = tokio::time::Instant::now();
                    let fenced = app.store_is_shared().then(|| run.fence());
                    let result =
                        app::release_escrow(&app, fenced.as_ref(), &run.cancellation).await;
                    metrics::histogram!("booking_job_duration_seconds", "job" => "escrow-release")
                        .record(started.elapsed().as_secs_f64());
                    result.map(|_| ())
                }
            })
            .await;
        })
    };
    let reconcile = {
        let app = Arc::clone(app);
        let job = ScheduledJob::new("reconcile", every * 2).lock_options(options);
        let locker = app.locker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            job.run(locker, shutdown, |_run| {
                let app = Arc::clone(&app);
                async move {
                    let started = tokio::time::Instant::now();
                    let result = app::reconcile(&app).await;
                    metrics::histogram!("booking_job_duration_seconds", "job" => "reconcile")
                        .record(started.elapsed().as_secs_f64());
                    result.map(|_| ())
                }
            })
            .await;
        })
    };
    let expire = {
        let app = Arc::clone(app);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                if let Err(error) = app.store.expire_holds().await {
                    tracing::warn!(%error, "expiring holds failed");
                }
            }
        })
    };
    // Idempotency records past their retention (answers 24 h, webhook
    // events 7 days) go, a batch at a time.
    let reaper = {
        let reaper =
            payguard_idempotency::spawn_reaper(app.idempotency(), Duration::from_secs(60), 500);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            reaper.abort();
        })
    };
    vec![escrow, reconcile, expire, reaper]
}
