#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod call;
mod config;
mod events;
mod registry;
mod state;
mod sync;
#[cfg(feature = "tower")]
mod tower;
mod window;

pub use breaker::{CircuitBreaker, Permit, Rejected};
pub use call::BreakerError;
pub use config::{BreakerBuilder, FailureModel};
pub use events::{ChangeReason, Snapshot, StateChange, WindowStats};
pub use payguard_core::{Classify, ConfigError, FromError, Outcome, from_error};
pub use registry::{BreakerRegistry, RegistryBuilder, RegistryFull};
pub use state::State;
#[cfg(feature = "tower")]
pub use tower::{CircuitBreakerLayer, CircuitBreakerService, ResponseFuture};
