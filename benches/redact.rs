//! Redaction against the naive baseline many payment backends use (one
//! `regex::Regex` per detector, applied in sequence), in the same run.
//!
//! `cargo bench -p payguard-benches --bench redact`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use payguard_redact::Redactor;
use regex::{Regex, RegexSet};
use std::hint::black_box;
use std::time::Duration;

/// One regex per detector, in sequence: the baseline.
struct Naive(Vec<(Regex, &'static str)>);

impl Naive {
    fn new() -> Self {
        let rules = [
            (r"\b(?:\d[ -]*?){13,19}\b", "[REDACTED:card]"),
            (r"\+?\d[\d\s().-]{7,}\d", "[REDACTED:phone]"),
            (
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
                "[REDACTED:email]",
            ),
            (r"(?i)bearer\s+[A-Za-z0-9\-._~+/]+=*", "Bearer [REDACTED]"),
            (
                r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
                "[REDACTED:jwt]",
            ),
            (
                r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9+/=]+|FLWSECK(?:_TEST)?-[A-Za-z0-9-]+",
                "[REDACTED:key]",
            ),
            (
                r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
                "[REDACTED:iban]",
            ),
            (r"://([^:/\s]+):[^@/\s]+@", "://$1:[REDACTED]@"),
            (
                r"(?i)(token|password|secret|api_key)=[^&\s]+",
                "$1=[REDACTED]",
            ),
        ];
        Self(
            rules
                .into_iter()
                .map(|(pattern, tag)| (Regex::new(pattern).unwrap(), tag))
                .collect(),
        )
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (regex, tag) in &self.0 {
            text = regex.replace_all(&text, *tag).into_owned();
        }
        text
    }
}

/// The fastest thing a user might reach for: one `RegexSet` of the same
/// patterns (one DFA pass says which match), then only those rewrite.
struct OneSet {
    set: RegexSet,
    each: Naive,
}

impl OneSet {
    fn new() -> Self {
        let each = Naive::new();
        let set = RegexSet::new(each.0.iter().map(|(regex, _)| regex.as_str())).unwrap();
        Self { set, each }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for index in self.set.matches(text).iter() {
            let (regex, tag) = &self.each.0[index];
            out = regex.replace_all(&out, *tag).into_owned();
        }
        out
    }
}

fn clean_lines() -> Vec<String> {
    (0..64)
        .map(|n| {
            format!(
                "2026-11-25T10:22:{:02}.{n:03}Z INFO booking_backend::payments: booking confirmed booking_id=7f3c2a1e-9b4d-4c1a-8e2f-0a1b2c3d{n:04} \
                 listing=lst_{n} amount={} currency=NGN gateway=paystack reference=escrow_{n} took_ms={} status=200",
                n % 60,
                2_500_000 + n * 1000,
                40 + n
            )
        })
        .collect()
}

fn dense_lines() -> Vec<String> {
    (0..64)
        .map(|n| {
            format!(
                "charge failed for customer ada{n}@example.com phone +23480312{n:05} card 4111 1111 1111 1111 \
                 auth=Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXNfMTIzIn0.c2lnbmF0dXJl{n} amount={}",
                n * 100
            )
        })
        .collect()
}

fn soup(len: usize) -> String {
    let pattern = "1 2-3 (4) 5.6 +7 8-9 0 12 34-56 ";
    pattern
        .repeat(len / pattern.len() + 1)
        .chars()
        .take(len)
        .collect()
}

fn lines(c: &mut Criterion) {
    let ours = Redactor::new();
    let naive = Naive::new();
    let one_set = OneSet::new();
    for (name, lines) in [
        ("clean_log_lines", clean_lines()),
        ("pii_dense_lines", dense_lines()),
    ] {
        let bytes: usize = lines.iter().map(String::len).sum();
        let mut group = c.benchmark_group(format!("redact/{name}"));
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function("payguard", |b| {
            b.iter(|| {
                lines
                    .iter()
                    .map(|l| ours.redact(black_box(l)).len())
                    .sum::<usize>()
            })
        });
        group.bench_function("naive_regex_per_detector", |b| {
            b.iter(|| {
                lines
                    .iter()
                    .map(|l| naive.redact(black_box(l)).len())
                    .sum::<usize>()
            })
        });
        group.bench_function("one_regex_set", |b| {
            b.iter(|| {
                lines
                    .iter()
                    .map(|l| one_set.redact(black_box(l)).len())
                    .sum::<usize>()
            })
        });
        group.finish();
    }
}

fn pathological(c: &mut Criterion) {
    let ours = Redactor::new();
    let naive = Naive::new();
    let mut group = c.benchmark_group("redact/separator_soup");
    group.sample_size(10);
    for size in [1usize << 20, 2 << 20] {
        let input = soup(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("payguard/{}MiB", size >> 20), |b| {
            b.iter(|| ours.redact(black_box(&input)).len())
        });
        group.bench_function(format!("naive_regex_per_detector/{}MiB", size >> 20), |b| {
            b.iter(|| naive.redact(black_box(&input)).len())
        });
    }
    group.finish();
}

fn tracing_field(c: &mut Criterion) {
    let ours = Redactor::new();
    c.bench_function("redact/clean_tracing_field", |b| {
        b.iter(|| {
            ours.redact_field(black_box("order_id"), black_box("ord_20240115_9f3a"))
                .len()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = lines, pathological, tracing_field
}
criterion_main!(benches);
