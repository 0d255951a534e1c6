//! The reaper: deletes expired records in small batches, in the background.

use crate::store::IdempotencyStore;
use std::sync::Arc;
use std::time::Duration;

/// Runs `store.reap(batch)` every `every`, repeating at once while a batch
/// comes back full, with a short pause between batches so request latency
/// is not hurt. Stops when the returned handle is dropped or aborted.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use payguard_idempotency::{spawn_reaper, MemoryStore};
/// use std::{sync::Arc, time::Duration};
///
/// let reaper = spawn_reaper(Arc::new(MemoryStore::new()), Duration::from_secs(60), 500);
/// reaper.abort();
/// # }
/// ```
pub fn spawn_reaper(
    store: Arc<dyn IdempotencyStore>,
    every: Duration,
    batch: usize,
) -> ReaperHandle {
    let task = tokio::spawn(async move {
        loop {
            loop {
                match store.reap(batch).await {
                    Ok(removed) if removed as usize >= batch => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error = %error, "idempotency reaper could not reap");
                        break;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    });
    ReaperHandle(task)
}

/// Stops the reaper when dropped.
#[derive(Debug)]
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
