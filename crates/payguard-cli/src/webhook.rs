//! `payguard webhook verify|sign`.

use crate::Failure;
use clap::{Args, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue};
use payguard_core::{Clock, SystemClock};
use payguard_webhook::{Provider, Verifier};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Verify a delivery: the body on stdin (or --body-file), the request's
    /// headers with --header.
    ///
    /// Exit status: 0 valid, 1 rejected (the reason on stderr), 2 usage error
    /// (unknown provider, unusable secret, malformed --header, unreadable
    /// body).
    Verify(Verify),
    /// Print the headers (`Name: value`, one per line) that make the body on
    /// stdin a valid delivery.
    Sign(Sign),
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// stripe, standard-webhooks, svix, paystack, flutterwave, shopify,
    /// github, slack, square, twilio, razorpay or adyen.
    #[arg(long)]
    provider: String,
    /// The secret as the provider shows it; repeat for a key ring.
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    /// The URL as registered with the provider (Square, Twilio).
    #[arg(long)]
    url: Option<String>,
    /// The time to judge (or sign) at, in Unix seconds (default: now).
    #[arg(long)]
    now: Option<u64>,
    /// Read the body from this file instead of stdin.
    #[arg(long)]
    body_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct Verify {
    #[command(flatten)]
    common: Common,
    /// A request header, `Name: value`; repeat for each.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The replay window in seconds, both past and future (default 300).
    #[arg(long)]
    tolerance: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct Sign {
    #[command(flatten)]
    common: Common,
    /// The Standard Webhooks / Svix message id (default: derived from the
    /// body and time).
    #[arg(long)]
    id: Option<String>,
}

pub(crate) fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Verify(verify) => run_verify(verify),
        Command::Sign(sign) => run_sign(sign),
    }
}

fn run_verify(args: Verify) -> Result<(), Failure> {
    let verifier = verifier(&args.common, args.tolerance.map(Duration::from_secs))?;
    let headers = parse_headers(&args.headers)?;
    let body = read_body(args.common.body_file.as_ref())?;
    let now = at(args.common.now);
    match verifier.verify_at(&headers, &body[..], now) {
        Ok(verified) => {
            println!(
                "valid key={} event_id={}",
                verified.key_id(),
                verified.event_id()
            );
            if !verified.body_authenticated() {
                eprintln!(
                    "payguard: note: this scheme authenticates the sender, not the body; confirm the event with the provider"
                );
            }
            Ok(())
        }
        Err(error) => Err(Failure::Rejected(format!(
            "rejected ({}): {error}",
            error.code()
        ))),
    }
}

fn run_sign(args: Sign) -> Result<(), Failure> {
    let verifier = verifier(&args.common, None)?;
    let body = read_body(args.common.body_file.as_ref())?;
    let headers = verifier
        .sign_at(&body, at(args.common.now), args.id.as_deref())
        .map_err(|error| Failure::Usage(error.to_string()))?;
    for (name, value) in headers {
        let value = value
            .to_str()
            .map_err(|_| Failure::Usage("a signed header is not text".into()))?;
        println!("{name}: {value}");
    }
    Ok(())
}

fn verifier(common: &Common, tolerance: Option<Duration>) -> Result<Verifier, Failure> {
    let provider: Provider = common
        .provider
        .parse()
        .map_err(|error: payguard_webhook::UnknownProvider| Failure::Usage(error.to_string()))?;
    let mut builder = Verifier::builder(provider);
    if let Some(tolerance) = tolerance {
        builder = builder.tolerance(tolerance);
    }
    for secret in &common.secrets {
        builder = builder.secret(secret.clone());
    }
    if let Some(url) = &common.url {
        builder = builder.url(url.clone());
    }
    builder
        .build()
        .map_err(|error| Failure::Usage(error.to_string()))
}

fn at(now: Option<u64>) -> SystemTime {
    match now {
        Some(secs) => UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .unwrap_or(UNIX_EPOCH),
        None => SystemClock.wall(),
    }
}

fn parse_headers(lines: &[String]) -> Result<HeaderMap, Failure> {
    let mut headers = HeaderMap::new();
    for line in lines {
        let usage = || Failure::Usage(format!("--header must be 'Name: value', got {line:?}"));
        let (name, value) = line.split_once(':').ok_or_else(usage)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| usage())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| usage())?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn read_body(file: Option<&PathBuf>) -> Result<Vec<u8>, Failure> {
    match file {
        Some(path) => std::fs::read(path)
            .map_err(|error| Failure::Usage(format!("cannot read {}: {error}", path.display()))),
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|error| Failure::Usage(format!("cannot read stdin: {error}")))?;
            Ok(body)
        }
    }
}
