//! The reaper: deletes expired records in small batches, in the background.

use crate::store::IdempotencyStore;
use payguard_core::ConfigError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Deletes records past their retention: `store.reap(batch_size)` every
/// `every`, repeating at once while a batch comes back full, with a short
/// pause between batches so request latency is not hurt.
///
/// # Default
///
/// Every 60 s, 500 records a batch.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), payguard_idempotency::ConfigError> {
/// use payguard_idempotency::{MemoryStore, Reaper};
/// use std::{sync::Arc, time::Duration};
///
/// let reaper = Reaper::builder(Arc::new(MemoryStore::new()))
///     .every(Duration::from_secs(30))
///     .batch_size(200)
///     .build()?
///     .spawn();
/// drop(reaper); // stops it
/// # Ok(())
/// # }
/// ```
pub struct Reaper {
    store: Arc<dyn IdempotencyStore>,
    every: Duration,
    batch_size: usize,
}

impl fmt::Debug for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("every", &self.every)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Reaper {
    /// A reaper of `store` with the defaults.
    pub fn new(store: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            store,
            every: Duration::from_secs(60),
            batch_size: 500,
        }
    }

    /// A reaper of `store` with settings of your choosing.
    pub fn builder(store: Arc<dyn IdempotencyStore>) -> ReaperBuilder {
        ReaperBuilder {
            reaper: Self::new(store),
        }
    }

    /// Starts reaping on the current tokio runtime; it stops when the
    /// handle is dropped or aborted.
    pub fn spawn(self) -> ReaperHandle {
        let Self {
            store,
            every,
            batch_size,
        } = self;
        let task = tokio::spawn(async move {
            loop {
                loop {
                    match store.reap(batch_size).await {
                        Ok(removed) if removed as usize >= batch_size => {
                            crate::telemetry::reaped(removed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(removed) => {
                            crate::telemetry::reaped(removed);
                            break;
                        }
                        Err(error) => {
                            crate::telemetry::reap_failed(&error);
                            break;
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        ReaperHandle(task)
    }
}

/// Builds a [`Reaper`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ReaperBuilder {
    reaper: Reaper,
}

impl ReaperBuilder {
    /// How long to wait between rounds (at least 10 ms).
    pub fn every(mut self, every: Duration) -> Self {
        self.reaper.every = every;
        self
    }

    /// Records deleted per statement (1 to 100 000).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.reaper.batch_size = batch_size;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `every` is under 10 ms or `batch_size` is out of
    /// range.
    pub fn build(self) -> Result<Reaper, ConfigError> {
        if self.reaper.every < Duration::from_millis(10) {
            return Err(ConfigError::new("every", "at least 10 ms"));
        }
        if !(1..=100_000).contains(&self.reaper.batch_size) {
            return Err(ConfigError::new("batch_size", "1 to 100 000"));
        }
        Ok(self.reaper)
    }
}

/// A running reaper; dropping it stops the reaper.
#[derive(Debug)]
#[must_use = "the reaper stops when its handle is dropped"]
pub struct ReaperHandle(tokio::task::JoinHandle<()>);

impl ReaperHandle {
    /// Stops the reaper now.
    pub fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for ReaperHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}
