//! Background work: escrow release and reconciliation (each on one
//! instance at a time, under a fleet-wide lease lock), hold expiry, and
//! the idempotency reaper.

mod escrow;
mod holds;
mod reconcile;

pub use escrow::release_escrow;
pub use reconcile::reconcile;

use crate::startup::App;
use payguard_lock::{ConfigError, LockOptions, ScheduledJob};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts every job; each stops when `shutdown` fires.
///
/// # Errors
///
/// The jobs' lock settings cannot work (a period so long that no lease
/// covers half of it).
pub fn spawn(
    app: &Arc<App>,
    shutdown: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, ConfigError> {
    let escrow = scheduled(
        app,
        shutdown,
        "escrow-release",
        app.settings.job_every,
        |app, run| async move {
            let fence = app.store.is_shared().then(|| run.fence());
            release_escrow(&app, fence.as_ref(), &run.cancellation)
                .await
                .map(|_| ())
        },
    )?;
    let reconcile = scheduled(
        app,
        shutdown,
        "reconcile",
        app.settings.reconcile_every,
        |app, _run| async move { reconcile(&app).await.map(|_| ()) },
    )?;
    let expire = tokio::spawn(holds::expire_every(
        Arc::clone(app),
        app.settings.job_every,
        shutdown.clone(),
    ));
    // Idempotency records past their retention (answers 24 h, webhook
    // events 7 days) go, a batch at a time.
    let reaper = {
        let reaper = payguard_idempotency::Reaper::new(Arc::clone(&app.idempotency)).spawn();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            reaper.abort();
        })
    };
    Ok(vec![escrow, reconcile, expire, reaper])
}

/// Runs `body` every `every` on one instance of the fleet at a time,
/// timing each run.
fn scheduled<F, Fut, E>(
    app: &Arc<App>,
    shutdown: &CancellationToken,
    name: &'static str,
    every: Duration,
    body: F,
) -> Result<JoinHandle<()>, ConfigError>
where
    F: Fn(Arc<App>, payguard_lock::JobRun) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display + Send + 'static,
{
    let lease = (every * 10).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let options = LockOptions::builder(lease).at_least(every / 2).build()?;
    let job = ScheduledJob::builder(name, every)
        .lock_options(options)
        .build()?;
    let app = Arc::clone(app);
    let locker = app.locker.clone();
    let shutdown = shutdown.clone();
    let body = Arc::new(body);
    Ok(tokio::spawn(async move {
        job.run(locker, shutdown, move |run| {
            let app = Arc::clone(&app);
            let body = Arc::clone(&body);
            async move {
                let started = tokio::time::Instant::now();
                let result = body(app, run).await;
                metrics::histogram!("booking_job_duration_seconds", "job" => name)
                    .record(started.elapsed().as_secs_f64());
                if result.is_ok() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    metrics::gauge!("booking_job_last_success_timestamp_seconds", "job" => name)
                        .set(now.as_secs_f64());
                }
                result
            }
        })
        .await;
    }))
}
