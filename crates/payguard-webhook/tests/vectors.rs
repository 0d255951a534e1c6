//! Every vector in `tests/vectors/webhooks.json` through the library.

#![allow(clippy::unwrap_used, clippy::panic)] // test code

mod common;

#[test]
fn every_vector() {
    let vectors = common::vectors();
    assert!(vectors.len() >= 29, "{} vectors", vectors.len());
    for vector in &vectors {
        let result = vector
            .verifier()
            .verify_at(&vector.headers, &vector.body[..], vector.now());
        match (&result, vector.valid) {
            (Ok(_), true) => {}
            (Err(error), false) => {
                if let Some(expected) = &vector.expected_error {
                    assert_eq!(error.code(), expected, "{}", vector.id);
                }
            }
            (Ok(_), false) => panic!("{}: accepted an invalid delivery", vector.id),
            (Err(error), true) => panic!("{}: rejected a valid delivery: {error}", vector.id),
        }
    }
}

#[test]
fn flutterwave_legacy_vectors_are_not_body_authenticated() {
    for vector in common::vectors()
        .iter()
        .filter(|v| v.id == "flutterwave-legacy-verif-hash")
    {
        let verified = vector
            .verifier()
            .verify_at(&vector.headers, &vector.body[..], vector.now())
            .unwrap();
        assert!(!verified.body_authenticated());
    }
}
