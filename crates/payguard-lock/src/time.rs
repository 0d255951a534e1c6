//! The strategies' clock: tokio's, read through `payguard_core`, so a
//! paused tokio test moves it.

use payguard_core::{Clock, TokioClock};
use tokio::time::Instant;

/// Now, by tokio's clock.
pub(crate) fn now() -> Instant {
    Instant::from_std(TokioClock::new().now())
}

/// How long ago `since` was, by the same clock.
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // Redlock's validity
pub(crate) fn elapsed(since: Instant) -> std::time::Duration {
    now().saturating_duration_since(since)
}
