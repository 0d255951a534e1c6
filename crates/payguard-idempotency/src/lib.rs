#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "test-util")]
pub mod conformance;
mod key;
mod memory;
#[cfg(feature = "axum")]
mod middleware;
#[cfg(feature = "postgres")]
mod postgres;
mod reaper;
mod store;
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // the layer reports most events
mod telemetry;

pub use key::{Fingerprint, KeyError, ScopeKey};
pub use memory::{MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "axum")]
pub use middleware::{
    BODY_OMITTED, IDEMPOTENT_REPLAYED, IdempotencyClaim, IdempotencyLayer, IdempotencyLayerBuilder,
    Idempotent, Tenant,
};
pub use payguard_core::{ConfigError, FencingToken, IdempotencyKey};
#[cfg(feature = "postgres")]
pub use postgres::{PgIdempotencyStore, PgIdempotencyStoreBuilder};
pub use reaper::{Reaper, ReaperBuilder, ReaperHandle};
pub use store::{
    BoxFuture, Claim, ClaimRequest, Disposition, IdempotencyStore, Lease, OutcomePolicy,
    StoreError, StoredResponse,
};
