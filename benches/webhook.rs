//! Webhook verification throughput against a raw HMAC of the same bytes,
//! and against the `standardwebhooks` crate on the same payload.
//!
//! `cargo bench -p payguard-benches --bench webhook`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use payguard_core::{Clock, SystemClock};
use payguard_webhook::{Provider, Verifier};
use sha2::{Sha256, Sha512};
use std::hint::black_box;
use std::time::Duration;

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (64 * 1024, "64KiB")];

/// A JSON-looking body of `len` bytes.
fn body(len: usize) -> Vec<u8> {
    let mut body = br#"{"event":"charge.success","data":{"reference":""#.to_vec();
    while body.len() < len - 3 {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body.extend_from_slice(br#""}}"#);
    body
}

fn headers_for(verifier: &Verifier, body: &[u8]) -> HeaderMap {
    verifier
        .sign_at(body, SystemClock.wall(), Some("msg_bench"))
        .unwrap()
        .into_iter()
        .collect()
}

fn stripe_and_paystack(c: &mut Criterion) {
    let stripe = Verifier::builder(Provider::Stripe)
        .secret("whsec_bench")
        .build()
        .unwrap();
    let paystack = Verifier::builder(Provider::Paystack)
        .secret("sk_test_bench")
        .build()
        .unwrap();
    for (len, label) in SIZES {
        let body = body(len);
        let stripe_headers = headers_for(&stripe, &body);
        let timestamp = stripe_headers["stripe-signature"].to_str().unwrap()[2..12].to_owned();
        let paystack_headers = headers_for(&paystack, &body);

        let mut group = c.benchmark_group(format!("webhook/hmac_sha256/{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("raw_hmac", |b| {
            b.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_bench").unwrap();
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(black_box(&body));
                mac.finalize().into_bytes()
            })
        });
        group.bench_function("payguard_stripe", |b| {
            b.iter(|| {
                stripe
                    .verify(&stripe_headers, black_box(&body[..]))
                    .unwrap()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("webhook/hmac_sha512/{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("raw_hmac", |b| {
            b.iter(|| {
                let mut mac = Hmac::<Sha512>::new_from_slice(b"sk_test_bench").unwrap();
                mac.update(black_box(&body));
                mac.finalize().into_bytes()
            })
        });
        group.bench_function("payguard_paystack", |b| {
            b.iter(|| {
                paystack
                    .verify(&paystack_headers, black_box(&body[..]))
                    .unwrap()
            })
        });
        group.finish();
    }
}

fn standard_webhooks(c: &mut Criterion) {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ours = Verifier::builder(Provider::StandardWebhooks)
        .secret(secret)
        .build()
        .unwrap();
    let theirs = standardwebhooks::Webhook::new(secret).unwrap();
    for (len, label) in SIZES {
        let body = body(len);
        let headers = headers_for(&ours, &body);
        assert!(theirs.verify(&body, &headers).is_ok());
        let mut group = c.benchmark_group(format!("webhook/standard_webhooks/{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("payguard", |b| {
            b.iter(|| ours.verify(&headers, black_box(&body[..])).unwrap())
        });
        group.bench_function("standardwebhooks_crate", |b| {
            b.iter(|| theirs.verify(black_box(&body), &headers).unwrap())
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stripe_and_paystack, standard_webhooks
}
criterion_main!(benches);
