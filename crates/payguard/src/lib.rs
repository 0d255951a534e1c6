#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use payguard_core::{Classify, Clock, HttpClassifier, Outcome, RetryAfter, SystemClock};
