//! [`ScheduledJob`]: a job run every period by whichever instance holds its
//! lock.

use crate::locker::{Acquisition, LockOptions, Locker, describe_holder};
use crate::owner::Owner;
use crate::telemetry;
use payguard_core::FencingToken;
use payguard_core::{Clock, ConfigError, SystemClock};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// One run of a scheduled job.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The schedule slot this run is for (its start, on the wall clock).
    pub slot: SystemTime,
    /// The lock holder's fencing token.
    pub token: FencingToken,
    /// Fires if the lock is lost while the job runs (the job's future is
    /// also dropped then); pass it to work that outlives an await.
    pub cancellation: CancellationToken,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // for `fence`
    name: String,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    owner: Owner,
}

#[cfg(feature = "postgres")]
impl JobRun {
    /// The proof to check in the run's transactions (jobs locked through
    /// `PgLeaseLock`); with [`Fence::claim_slot`](crate::Fence::claim_slot)
    /// a slot runs at most once even if two holders briefly coexist.
    pub fn fence(&self) -> crate::Fence {
        crate::Fence::new(&self.name, self.owner.clone(), self.token)
    }
}

/// A job that runs every `every`, in slots aligned to the Unix epoch (a
/// 1-hour job runs at the top of each hour), on whichever instance takes
/// its lock for the slot. Every instance runs the same `ScheduledJob`; the
/// others skip the slot with a log line and the
/// `payguard_lock_job_skipped_total` metric.
///
/// ```no_run
/// use payguard_lock::{Locker, PgLeaseLock, ScheduledJob};
/// use std::{sync::Arc, time::Duration};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn example(pool: sqlx::PgPool) -> Result<(), payguard_lock::ConfigError> {
/// let locker = Locker::new(Arc::new(PgLeaseLock::new(pool.clone())));
/// let shutdown = CancellationToken::new();
/// ScheduledJob::builder("escrow-release", Duration::from_secs(300))
///     .build()?
///     .run(locker, shutdown, |run| {
///         let pool = pool.clone();
///         async move {
///             let mut tx = pool.begin().await?;
///             if !run.fence().claim_slot(&mut tx, run.slot).await? {
///                 return Ok(()); // this slot already ran
///             }
///             // ... release due escrows in `tx`, fenced by `run.fence()` ...
///             tx.commit().await?;
///             Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
///         }
///     })
///     .await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    name: String,
    every: Duration,
    options: LockOptions,
    clock: Arc<dyn Clock>,
}

/// Builds a [`ScheduledJob`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct ScheduledJobBuilder {
    name: String,
    every: Duration,
    options: Option<LockOptions>,
}

impl ScheduledJobBuilder {
    /// Uses these lock options instead of the default.
    pub fn lock_options(mut self, options: LockOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Checks the settings and builds the job.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the period is under 1 ms, or the default lock
    /// options cannot hold a slot of it.
    pub fn build(self) -> Result<ScheduledJob, ConfigError> {
        if self.every < Duration::from_millis(1) {
            return Err(ConfigError::new("every", "at least 1 ms"));
        }
        let options = match self.options {
            Some(options) => options,
            None => LockOptions::builder(Duration::from_secs(30))
                .at_least(self.every / 2)
                .build()?,
        };
        Ok(ScheduledJob {
            name: self.name,
            every: self.every,
            options,
            clock: Arc::new(SystemClock),
        })
    }
}

impl ScheduledJob {
    /// A job named `name` (also its lock name) running every `every`, to
    /// configure and check.
    ///
    /// Lock options default to a 30 s lease (renewed while the job runs)
    /// held at least half a period, so an instance whose clock runs a
    /// little late does not run the same slot again.
    pub fn builder(name: &str, every: Duration) -> ScheduledJobBuilder {
        ScheduledJobBuilder {
            name: name.to_owned(),
            every,
            options: None,
        }
    }

    /// The start of the slot after `now`.
    fn next_slot(&self, now: SystemTime) -> SystemTime {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let every = self.every.as_nanos().max(1);
        let slots = since.as_nanos() / every + 1;
        let nanos = slots.saturating_mul(every);
        UNIX_EPOCH
            + Duration::new(
                u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
                u32::try_from(nanos % 1_000_000_000).unwrap_or(0),
            )
    }

    /// Runs the schedule until `shutdown` fires. Each slot: try the lock;
    /// if held elsewhere, skip; else run `job` while the lease holds (it is
    /// dropped if the lease is lost), then release.
    pub async fn run<F, Fut, E>(self, locker: Locker, shutdown: CancellationToken, mut job: F)
    where
        F: FnMut(JobRun) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let name = self.name.as_str();
        loop {
            let slot = self.next_slot(self.clock.wall());
            let wait = slot.duration_since(self.clock.wall()).unwrap_or_default();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let guard = match locker.try_lock(name, &self.options).await {
                Ok(Acquisition::Acquired(guard)) => guard,
                Ok(Acquisition::Busy(holder)) => {
                    telemetry::job_skipped(name, &describe_holder(&holder), true);
                    continue;
                }
                Err(error) => {
                    telemetry::job_skipped(name, &error, false);
                    continue;
                }
            };
            let run = JobRun {
                slot,
                token: guard.token(),
                cancellation: guard.cancellation(),
                name: name.to_owned(),
                owner: guard.owner().clone(),
            };
            let token = guard.token();
            match guard.run(job(run)).await {
                Ok(Ok(())) => telemetry::job_ran(name, token, "ok", None),
                Ok(Err(error)) => telemetry::job_ran(name, token, "failed", Some(&error)),
                Err(_) => telemetry::job_ran(name, token, "lost", None),
            }
            if let Err(error) = guard.release().await {
                telemetry::release_failed(name, &error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_align_to_the_epoch() {
        let job = ScheduledJob::builder("j", Duration::from_secs(60))
            .build()
            .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(3_600 + 59);
        assert_eq!(job.next_slot(now), UNIX_EPOCH + Duration::from_secs(3_660));
        let boundary = UNIX_EPOCH + Duration::from_secs(3_660);
        assert_eq!(
            job.next_slot(boundary),
            UNIX_EPOCH + Duration::from_secs(3_720)
        );
    }
}
