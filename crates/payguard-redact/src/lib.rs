#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod detector;
mod headers;
mod json;
mod keys;
mod redactor;
mod scan;
mod secret;
#[cfg(feature = "tracing")]
mod tracing_layer;

pub use detector::Detector;
pub use keys::KeyClass;
pub use payguard_core::ConfigError;
pub use redactor::{CardMask, Redactor, RedactorBuilder, Report, Strategy};
pub use secret::Secret;
#[cfg(feature = "tracing")]
pub use tracing_layer::{LogFormat, RedactingLayer, RedactingMakeWriter, RedactingWriter};
