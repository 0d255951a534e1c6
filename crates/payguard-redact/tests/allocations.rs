//! Clean text and clean fields cost no allocation.
//!
//! `harness = false`: the test harness's own threads would allocate while
//! the region counts (the counter is global), so this binary runs alone on
//! its main thread.

#![allow(clippy::unwrap_used)] // test code

use payguard_redact::Redactor;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::borrow::Cow;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    clean_values_allocate_nothing();
}

fn clean_values_allocate_nothing() {
    let redactor = Redactor::new();
    let line = "2026-11-25T10:22:33.123Z INFO booking confirmed booking_id=7f3c2a1e-9b4d-4c1a-8e2f-0a1b2c3d4e5f amount=2500000 currency=NGN took_ms=42";
    let _ = redactor.redact(line);
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        assert!(matches!(redactor.redact(line), Cow::Borrowed(_)));
        assert!(matches!(
            redactor.redact_field("order_id", "ord_20240115_9f3a"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            redactor.redact_field("status", "paid"),
            Cow::Borrowed(_)
        ));
    }
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "{stats:?}");
}
