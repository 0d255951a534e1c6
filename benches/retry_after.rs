//! `Retry-After` parsing against `httpdate` parsing the same date alone.
//!
//! `cargo bench -p payguard-benches --bench retry_after`

use criterion::{Criterion, criterion_group, criterion_main};
use payguard_core::RetryAfter;
use std::hint::black_box;

fn retry_after(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_after");
    group.bench_function("payguard/delta", |b| {
        b.iter(|| RetryAfter::parse(black_box(b"120")))
    });
    group.bench_function("payguard/http_date", |b| {
        b.iter(|| RetryAfter::parse(black_box(b"Sun, 06 Nov 1994 08:49:37 GMT")))
    });
    group.bench_function("httpdate/http_date", |b| {
        b.iter(|| httpdate::parse_http_date(black_box("Sun, 06 Nov 1994 08:49:37 GMT")))
    });
    group.finish();
}

criterion_group!(benches, retry_after);
criterion_main!(benches);
