//! Fault injection on the provider routes: an ordered list of rules, each
//! matching provider, method and path, with a budget of times.

use crate::model::Provider;
use crate::{Connection, Sim, control};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The rules, tried in order; the first that matches (and has budget
/// left) applies. A request with `X-Sim-Scenario: NAME` gets the rule
/// named NAME instead, whatever its match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// In order.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// One fault rule. Its effects apply in this order: `rate_limit`,
/// `latency`, `sequence`, `error`, `timeout`, `malformed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// For `X-Sim-Scenario` and the journal.
    #[serde(default)]
    pub name: Option<String>,
    /// Which requests it applies to; empty matches every provider request.
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// How many more requests it may change; absent means no limit.
    #[serde(default)]
    pub times: Option<u32>,
    /// Apply only when selected by `X-Sim-Scenario`.
    #[serde(default)]
    pub scenario_only: bool,
    /// Sleep before handling.
    #[serde(default)]
    pub latency: Option<Latency>,
    /// Answer an error without touching state.
    #[serde(default)]
    pub error: Option<ErrorFault>,
    /// A token bucket; over it, 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Hang, close before handling, or apply and then drop the connection.
    #[serde(default)]
    pub timeout: Option<Timeout>,
    /// Corrupt the (successful) response.
    #[serde(default)]
    pub malformed: Option<Malformed>,
    /// Scripted outcomes for successive matching requests, then pass.
    #[serde(default)]
    pub sequence: Option<Vec<Step>>,
    /// Requests this rule changed so far (read-only).
    #[serde(default)]
    pub applied: u32,
    #[serde(skip)]
    bucket: Option<(f64, Instant)>,
    #[serde(skip)]
    step: usize,
}

/// What a rule matches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// `paystack` or `flutterwave`.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// `GET`, `POST`, ...
    #[serde(default)]
    pub method: Option<String>,
    /// The path, with or without the provider prefix (`/transfer` or
    /// `/paystack/transfer`).
    #[serde(default)]
    pub path: Option<String>,
    /// A path prefix, with or without the provider prefix.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// `fixed_ms` plus a uniform `0..=jitter_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Always.
    #[serde(default)]
    pub fixed_ms: u64,
    /// Up to this much more.
    #[serde(default)]
    pub jitter_ms: u64,
}

/// An error answer with some probability.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// One of these statuses, picked at random.
    pub status: Vec<u16>,
    /// Chance per matching request (default 1).
    #[serde(default = "one")]
    pub probability: f64,
    /// The body; default the provider's error envelope.
    #[serde(default)]
    pub body: Option<Value>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn one() -> f64 {
    1.0
}

/// A token bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens per second.
    pub rps: f64,
    /// Bucket size.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// `Retry-After` as `seconds` (default) or `http-date`.
    #[serde(default)]
    pub retry_after: RetryAfterFormat,
}

fn default_burst() -> u32 {
    1
}

/// How `Retry-After` is written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfterFormat {
    /// `Retry-After: 2`.
    #[default]
    Seconds,
    /// `Retry-After: Wed, 25 Nov 2026 19:30:07 GMT`.
    HttpDate,
}

/// A transport fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    /// What happens.
    pub mode: TimeoutMode,
    /// For `hang`: how long before the connection is closed (default 30 s).
    #[serde(default = "default_hang")]
    pub hang_ms: u64,
}

fn default_hang() -> u64 {
    30_000
}

/// Transport faults.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutMode {
    /// Hold the request without answering, then close the connection.
    Hang,
    /// Close the connection before handling: nothing changes.
    Close,
    /// Handle the request (the change is made), then close the connection
    /// without answering.
    ApplyThenDrop,
}

/// Response corruption.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Malformed {
    /// What is done to the body.
    pub mode: MalformedMode,
}

/// Ways to corrupt a response.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MalformedMode {
    /// Cut the body in half.
    Truncate,
    /// Replace it with text that is not JSON.
    InvalidJson,
    /// Keep it, labelled `text/html`.
    WrongContentType,
}

/// One scripted outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Answer this status without handling.
    #[serde(default)]
    pub status: Option<u16>,
    /// With this body (default the provider's error envelope).
    #[serde(default)]
    pub body: Option<Value>,
    /// With `Retry-After: N`.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// A transport fault instead.
    #[serde(default)]
    pub timeout: Option<TimeoutMode>,
    /// Handle normally.
    #[serde(default)]
    pub pass: bool,
}

/// An answer given instead of handling: status, body, headers.
type Answer = (u16, Option<Value>, Vec<(String, String)>);

/// What the chosen rule does to one request.
#[derive(Debug, Default)]
struct Decision {
    rule: Option<String>,
    limited: Option<(Duration, RetryAfterFormat)>,
    latency: Option<Duration>,
    answer: Option<Answer>,
    timeout: Option<(TimeoutMode, Duration)>,
    malformed: Option<MalformedMode>,
    notes: Vec<String>,
}

impl Match {
    fn matches(&self, provider: Provider, method: &Method, path: &str) -> bool {
        let relative = relative_path(provider, path);
        self.provider.is_none_or(|wanted| wanted == provider)
            && self
                .method
                .as_deref()
                .is_none_or(|wanted| wanted.eq_ignore_ascii_case(method.as_str()))
            && self
                .path
                .as_deref()
                .is_none_or(|wanted| wanted == path || wanted == relative)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|wanted| path.starts_with(wanted) || relative.starts_with(wanted))
    }
}

fn relative_path(provider: Provider, path: &str) -> &str {
    let prefix = match provider {
        Provider::Paystack => "/paystack",
        Provider::Flutterwave => "/flutterwave/v3",
    };
    path.strip_prefix(prefix).unwrap_or(path)
}

impl FaultPlan {
    /// Checks a plan before it is installed.
    ///
    /// # Errors
    ///
    /// What is wrong, for the 400 answer.
    pub fn validate(&self) -> Result<(), String> {
        for (index, rule) in self.rules.iter().enumerate() {
            let label = rule.name.clone().unwrap_or_else(|| format!("rule {index}"));
            if let Some(error) = &rule.error {
                if error.status.is_empty()
                    || error
                        .status
                        .iter()
                        .any(|status| StatusCode::from_u16(*status).is_err())
                {
                    return Err(format!("{label}: error.status needs valid HTTP statuses"));
                }
                if !(0.0..=1.0).contains(&error.probability) {
                    return Err(format!("{label}: error.probability must be within 0..=1"));
                }
            }
            if let Some(limit) = &rule.rate_limit
                && (!(0.001..=1_000_000.0).contains(&limit.rps) || limit.burst == 0)
            {
                return Err(format!(
                    "{label}: rate_limit needs 0.001 <= rps <= 1e6 and burst >= 1"
                ));
            }
            const TEN_MINUTES: u64 = 600_000;
            let too_long = rule.latency.as_ref().is_some_and(|latency| {
                latency.fixed_ms > TEN_MINUTES || latency.jitter_ms > TEN_MINUTES
            }) || rule
                .timeout
                .as_ref()
                .is_some_and(|timeout| timeout.hang_ms > TEN_MINUTES);
            if too_long {
                return Err(format!(
                    "{label}: latency and hang_ms are at most 10 minutes"
                ));
            }
            for step in rule.sequence.iter().flatten() {
                if step
                    .status
                    .is_some_and(|status| StatusCode::from_u16(status).is_err())
                {
                    return Err(format!("{label}: a sequence step has an invalid status"));
                }
            }
        }
        Ok(())
    }

    fn decide(
        &mut self,
        provider: Provider,
        method: &Method,
        path: &str,
        scenario: Option<&str>,
        sim: &Sim,
    ) -> Decision {
        let chosen = match scenario {
            Some(name) => self.rules.iter().position(|rule| {
                rule.name.as_deref() == Some(name) && rule.times.is_none_or(|left| left > 0)
            }),
            None => self.rules.iter().position(|rule| {
                !rule.scenario_only
                    && rule.times.is_none_or(|left| left > 0)
                    && rule.matcher.matches(provider, method, path)
            }),
        };
        let Some(index) = chosen else {
            return Decision::default();
        };
        let Some(rule) = self.rules.get_mut(index) else {
            return Decision::default();
        };
        let decision = rule.decide(sim);
        let changed = decision.limited.is_some()
            || decision.latency.is_some()
            || decision.answer.is_some()
            || decision.timeout.is_some()
            || decision.malformed.is_some();
        if changed {
            rule.applied += 1;
            if let Some(left) = &mut rule.times {
                *left -= 1;
            }
        }
        decision
    }
}

impl FaultRule {
    fn decide(&mut self, sim: &Sim) -> Decision {
        let mut decision = Decision {
            rule: self.name.clone(),
            ..Decision::default()
        };
        if let Some(limit) = &self.rate_limit {
            let now = sim.config.clock.now();
            let burst = f64::from(limit.burst);
            let (tokens, since) = self.bucket.unwrap_or((burst, now));
            let tokens = (tokens + now.duration_since(since).as_secs_f64() * limit.rps).min(burst);
            if tokens >= 1.0 {
                self.bucket = Some((tokens - 1.0, now));
            } else {
                self.bucket = Some((tokens, now));
                let wait = Duration::from_secs_f64((1.0 - tokens) / limit.rps);
                decision.limited = Some((wait, limit.retry_after));
                decision.notes.push("rate_limited".to_owned());
                return decision;
            }
        }
        let mut rng = sim.rng();
        if let Some(latency) = &self.latency {
            let jitter = if latency.jitter_ms > 0 {
                rng.random_range(0..=latency.jitter_ms)
            } else {
                0
            };
            let delay = Duration::from_millis(latency.fixed_ms + jitter);
            decision
                .notes
                .push(format!("latency {}ms", delay.as_millis()));
            decision.latency = Some(delay);
        }
        if let Some(steps) = &self.sequence
            && let Some(step) = steps.get(self.step)
        {
            self.step += 1;
            decision.notes.push(format!("sequence[{}]", self.step - 1));
            if let Some(mode) = step.timeout {
                decision.timeout = Some((mode, Duration::from_millis(default_hang())));
            } else if let Some(status) = step.status.filter(|_| !step.pass) {
                let headers = step
                    .retry_after
                    .map(|seconds| vec![("retry-after".to_owned(), seconds.to_string())])
                    .unwrap_or_default();
                decision.answer = Some((status, step.body.clone(), headers));
            }
        }
        if decision.answer.is_none()
            && decision.timeout.is_none()
            && let Some(error) = &self.error
            && rng.random_bool(error.probability)
        {
            let pick = rng.random_range(0..error.status.len().max(1));
            let status = error.status.get(pick).copied().unwrap_or(500);
            let headers = error
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            decision.notes.push(format!("error {status}"));
            decision.answer = Some((status, error.body.clone(), headers));
        }
        if decision.answer.is_none()
            && decision.timeout.is_none()
            && let Some(timeout) = &self.timeout
        {
            decision.timeout = Some((timeout.mode, Duration::from_millis(timeout.hang_ms)));
        }
        if let Some((mode, _)) = decision.timeout {
            decision.notes.push(
                match mode {
                    TimeoutMode::Hang => "hang",
                    TimeoutMode::Close => "close",
                    TimeoutMode::ApplyThenDrop => "apply_then_drop",
                }
                .to_owned(),
            );
        }
        if decision.answer.is_none()
            && let Some(malformed) = &self.malformed
        {
            decision.malformed = Some(malformed.mode);
            decision
                .notes
                .push(format!("malformed {:?}", malformed.mode).to_lowercase());
        }
        decision
    }
}

/// The provider's error envelope.
pub(crate) fn envelope(provider: Provider, message: &str) -> Value {
    match provider {
        Provider::Paystack => json!({ "status": false, "message": message }),
        Provider::Flutterwave => json!({ "status": "error", "message": message, "data": null }),
    }
}

fn answer(
    provider: Provider,
    status: u16,
    body: Option<Value>,
    headers: &[(String, String)],
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = body.unwrap_or_else(|| {
        envelope(
            provider,
            status.canonical_reason().unwrap_or("Simulated failure"),
        )
    });
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The fault layer on a provider's routes: journals every request and
/// applies the plan.
pub(crate) async fn apply(
    State((sim, provider)): State<(Sim, Provider)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, 1 << 20).await else {
        return answer(provider, 413, None, &[]);
    };
    let path = parts.uri.path().to_owned();
    let scenario = parts
        .headers
        .get("x-sim-scenario")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let entry = control::JournalEntry::record(&sim, provider, &parts, &bytes);
    let decision = sim
        .faults()
        .decide(provider, &parts.method, &path, scenario.as_deref(), &sim);
    let fault = (!decision.notes.is_empty()).then(|| {
        let rule = decision.rule.as_deref().unwrap_or("unnamed");
        format!("{rule}: {}", decision.notes.join(", "))
    });
    let connection = parts.extensions.get::<Connection>().cloned();

    if let Some((wait, format)) = decision.limited {
        let seconds = wait.as_secs_f64().ceil().max(1.0);
        let retry_after = match format {
            RetryAfterFormat::Seconds => format!("{seconds:.0}"),
            RetryAfterFormat::HttpDate => {
                httpdate::fmt_http_date(sim.config.clock.wall() + Duration::from_secs_f64(seconds))
            }
        };
        let response = answer(
            provider,
            429,
            Some(envelope(provider, "Too many requests, retry later")),
            &[("retry-after".to_owned(), retry_after)],
        );
        entry.finish(&sim, fault, Some(429));
        return response;
    }
    if let Some(latency) = decision.latency {
        tokio::time::sleep(latency).await;
    }
    if let Some((status, body, headers)) = decision.answer {
        entry.finish(&sim, fault, Some(status));
        return answer(provider, status, body, &headers);
    }
    match decision.timeout {
        Some((TimeoutMode::Close, _)) => {
            entry.finish(&sim, fault, None);
            return drop_connection(connection).await;
        }
        Some((TimeoutMode::Hang, hang)) => {
            entry.finish(&sim, fault, None);
            tokio::time::sleep(hang).await;
            return drop_connection(connection).await;
        }
        _ => {}
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = next.run(request).await;
    if matches!(decision.timeout, Some((TimeoutMode::ApplyThenDrop, _))) {
        entry.finish(&sim, fault, None);
        return drop_connection(connection).await;
    }
    let status = response.status().as_u16();
    let response = match decision.malformed {
        Some(mode) if response.status().is_success() => malform(response, mode).await,
        _ => response,
    };
    entry.finish(&sim, fault, Some(status));
    response
}

async fn drop_connection(connection: Option<Connection>) -> Response {
    match connection {
        Some(Connection(kill)) => {
            kill.cancel();
            // The connection task drops this future with the connection.
            std::future::pending().await
        }
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

async fn malform(response: Response, mode: MalformedMode) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let body = match mode {
        MalformedMode::Truncate => bytes.slice(..bytes.len() / 2),
        MalformedMode::InvalidJson => bytes::Bytes::from_static(b"<html>upstream error</html"),
        MalformedMode::WrongContentType => bytes,
    };
    if mode != MalformedMode::Truncate {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Masks a header value that carries a secret: its first 7 characters, then `***`.
pub(crate) fn mask(name: &str, value: &str) -> String {
    if matches!(
        name,
        "authorization"
            | "verif-hash"
            | "x-paystack-signature"
            | "flutterwave-signature"
            | "cookie"
    ) {
        let kept: String = value.chars().take(7).collect();
        format!("{kept}***")
    } else {
        value.to_owned()
    }
}

pub(crate) fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                mask(name.as_str(), &String::from_utf8_lossy(value.as_bytes())),
            )
        })
        .collect()
}
