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
/// The server failed, or the jobs' settings cannot work.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let jobs = spawn_jobs(&app, &shutdown)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
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
///
/// # Errors
///
/// The jobs' lock settings cannot work (a job period so long that no
/// lease covers half of it).
pub fn spawn_jobs(
    app: &Arc<App>,
    shutdown: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, payguard_lock::ConfigError> {
    let every = app.settings.job_every;
    let lease = (every * 10).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let options = LockOptions::builder(lease).at_least(every / 2).build()?;
    let escrow_job = ScheduledJob::builder("escrow-release", every)
        .lock_options(options.clone())
        .build()?;
    let reconcile_job = ScheduledJob::builder("reconcile", every * 2)
        .lock_options(options)
        .build()?;
    let escrow = {
        let app = Arc::clone(app);
        let job = escrow_job;
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
        let job = reconcile_job;
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
        let reaper = payguard_idempotency::Reaper::new(app.idempotency()).spawn();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            reaper.abort();
        })
    };
    Ok(vec![escrow, reconcile, expire, reaper])
}
