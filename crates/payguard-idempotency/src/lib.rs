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

pub use key::{Fingerprint, KeyError, MAX_KEY_LEN, ScopeKey, parse_key};
pub use memory::{MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "axum")]
pub use middleware::{
    BODY_OMITTED, IDEMPOTENT_REPLAYED, IdempotencyClaim, IdempotencyLayer, IdempotencyLayerBuilder,
    Idempotent, Tenant,
};
pub use payguard_core::ConfigError;
#[cfg(feature = "postgres")]
pub use postgres::{MIGRATOR, PgIdempotencyStore, PgIdempotencyStoreBuilder};
pub use reaper::{Reaper, ReaperBuilder, ReaperHandle};
pub use store::{
    BoxFuture, Claim, ClaimRequest, Disposition, IdempotencyStore, Lease, OutcomePolicy,
    StoreError, StoredResponse,
};
