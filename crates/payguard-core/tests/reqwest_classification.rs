//! `HttpClassifier::classify_reqwest` against real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)] // helpers of tests, not library code

use payguard_core::{HttpClassifier, Outcome};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NOW: Duration = Duration::from_secs(1_700_000_000);

fn now() -> SystemTime {
    UNIX_EPOCH + NOW
}

/// How the one-shot server treats the connection it accepts.
enum Behaviour {
    Respond(&'static str),
    CloseAfterReading,
    Hang,
}

/// Serves one connection on a fresh port and returns the base URL.
async fn serve_once(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await;
        match behaviour {
            Behaviour::Respond(raw) => {
                let _ = socket.write_all(raw.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
            Behaviour::CloseAfterReading => drop(socket),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(socket);
            }
        }
    });
    format!("http://{addr}/")
}

async fn classify(url: &str, timeout: Duration) -> Outcome {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let result = client.post(url).body("{}").send().await;
    HttpClassifier::new().classify_reqwest(&result, now())
}

#[tokio::test]
async fn refused_connection_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    assert_eq!(
        classify(&url, Duration::from_secs(5)).await,
        Outcome::Transient
    );
}

#[tokio::test]
async fn timeout_after_sending_is_ambiguous() {
    let url = serve_once(Behaviour::Hang).await;
    assert_eq!(
        classify(&url, Duration::from_millis(200)).await,
        Outcome::Ambiguous
    );
}

#[tokio::test]
async fn connection_dropped_before_the_answer_is_ambiguous() {
    let url = serve_once(Behaviour::CloseAfterReading).await;
    assert_eq!(
        classify(&url, Duration::from_secs(5)).await,
        Outcome::Ambiguous
    );
}

#[tokio::test]
async fn unbuildable_request_is_permanent() {
    assert_eq!(
        classify("http://exa mple.com/", Duration::from_secs(5)).await,
        Outcome::Permanent
    );
}

#[tokio::test]
async fn throttled_with_delta_seconds() {
    let url = serve_once(Behaviour::Respond(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    assert_eq!(
        classify(&url, Duration::from_secs(5)).await,
        Outcome::Throttled {
            retry_after: Some(Duration::from_secs(5))
        }
    );
}

#[tokio::test]
async fn throttled_with_http_date_is_relative_to_now() {
    let at = httpdate::fmt_http_date(now() + Duration::from_secs(90));
    let raw =
        format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {at}\r\ncontent-length: 0\r\n\r\n");
    let url = serve_once(Behaviour::Respond(Box::leak(raw.into_boxed_str()))).await;
    assert_eq!(
        classify(&url, Duration::from_secs(5)).await,
        Outcome::Throttled {
            retry_after: Some(Duration::from_secs(90))
        }
    );
}

#[tokio::test]
async fn throttled_with_garbage_hint_has_none() {
    let url = serve_once(Behaviour::Respond(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: later\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    assert_eq!(
        classify(&url, Duration::from_secs(5)).await,
        Outcome::Throttled { retry_after: None }
    );
}

#[tokio::test]
async fn statuses_follow_the_table() {
    for (raw, expected) in [
        (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            Outcome::Transient,
        ),
        (
            "HTTP/1.1 402 Payment Required\r\ncontent-length: 0\r\n\r\n",
            Outcome::Permanent,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
            Outcome::Success,
        ),
    ] {
        let url = serve_once(Behaviour::Respond(raw)).await;
        assert_eq!(
            classify(&url, Duration::from_secs(5)).await,
            expected,
            "{raw}"
        );
    }
}
