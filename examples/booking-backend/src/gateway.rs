//! Paystack (primary) and Flutterwave (fail-over) clients. Every call goes
//! through a circuit breaker per gateway and a retry policy that retries an
//! ambiguous POST only when it carries a reference the gateway dedupes on.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use crate::domain::{Gateway, Host};
use payguard_breaker::{CircuitBreaker, FailureModel, State};
use payguard_core::{Classify, Clock, Outcome, from_error};
use payguard_redact::Secret;
use payguard_retry::{Backoff, IdempotencyKey, Jitter, RetryPolicy};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Where the gateways are.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `https://api.paystack.co`, or gateway-sim's `/paystack`.
    pub paystack_base_url: String,
    /// Paystack secret key.
    pub paystack_secret_key: Secret<String>,
    /// `https://api.flutterwave.com/v3`, or gateway-sim's `/flutterwave/v3`.
    pub flutterwave_base_url: String,
    /// Flutterwave secret key.
    pub flutterwave_secret_key: Secret<String>,
    /// Extra trusted roots (PEM), added to the platform's, for a gateway
    /// (or a simulator) whose certificate a private CA issued.
    pub ca_file: Option<std::path::PathBuf>,
    /// How each call is retried.
    pub retry: RetrySettings,
    /// When each gateway's breaker opens.
    pub breaker: BreakerSettings,
}

impl GatewayConfig {
    /// The real gateways' APIs with these keys; retries and breakers by
    /// default.
    pub fn new(paystack_secret_key: &str, flutterwave_secret_key: &str) -> Self {
        Self {
            paystack_base_url: "https://api.paystack.co".to_owned(),
            paystack_secret_key: Secret::new(paystack_secret_key.to_owned()),
            flutterwave_base_url: "https://api.flutterwave.com/v3".to_owned(),
            flutterwave_secret_key: Secret::new(flutterwave_secret_key.to_owned()),
            ca_file: None,
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// How a gateway call is retried (each gateway the same way).
///
/// # Default
///
/// Four attempts of at most 4 s each, exponential backoff from 100 ms
/// (full jitter, at most 2 s), all within 12 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    /// Attempts at most, the first included.
    pub max_attempts: u32,
    /// The first backoff.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// How long all attempts together may take.
    pub deadline: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(4),
            deadline: Duration::from_secs(12),
        }
    }
}

/// When a gateway's breaker opens (each gateway has its own).
///
/// # Default
///
/// Half of the last 20 calls failed, once at least 10 were made; open for
/// 3 s, then one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Calls in the window.
    pub window: u32,
    /// The failure rate (0 to 1) that opens the breaker.
    pub failure_rate: f64,
    /// Calls in the window before it may open.
    pub minimum_calls: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: 20,
            failure_rate: 0.5,
            minimum_calls: 10,
            open_for: Duration::from_secs(3),
        }
    }
}

/// A gateway call that failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway's breaker is open.
    #[error("{0} is unavailable (circuit open)")]
    Open(&'static str),
    /// The request never reached the gateway.
    #[error("could not reach the gateway: {0}")]
    Unreachable(String),
    /// The request may have reached the gateway; no answer came back.
    #[error("no answer from the gateway: {0}")]
    NoAnswer(String),
    /// The gateway answered with an error.
    #[error("gateway answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The gateway's message.
        message: String,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// The answer was not what the API documents.
    #[error("unreadable answer: {0}")]
    Malformed(String),
}

impl GatewayError {
    fn outcome(&self, method: &Method) -> Outcome {
        let read_only = *method == Method::GET;
        match self {
            Self::Open(_) => Outcome::Permanent,
            Self::Unreachable(_) => Outcome::Transient,
            Self::NoAnswer(_) | Self::Malformed(_) if read_only => Outcome::Transient,
            Self::NoAnswer(_) | Self::Malformed(_) => Outcome::Ambiguous,
            Self::Status {
                status: 429,
                retry_after,
                ..
            } => Outcome::Throttled {
                retry_after: *retry_after,
            },
            Self::Status { status, .. } if *status >= 500 && read_only => Outcome::Transient,
            Self::Status { status, .. } if *status >= 500 => Outcome::Ambiguous,
            Self::Status { .. } => Outcome::Permanent,
        }
    }

    /// Whether the gateway answered "no" for good (a 4xx other than 429).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Status { status, .. } if (400..500).contains(status) && *status != 429)
    }

    /// Whether the gateway says it has no such charge: Paystack's 404, or
    /// Flutterwave's "No transaction was found" (which is also its answer
    /// before the customer attempts to pay).
    fn is_no_such_charge(&self, gateway: Gateway) -> bool {
        match (gateway, self) {
            (Gateway::Paystack, Self::Status { status: 404, .. }) => true,
            (
                Gateway::Flutterwave,
                Self::Status {
                    status: 400 | 404,
                    message,
                    ..
                },
            ) => message.starts_with("No transaction was found"),
            _ => false,
        }
    }

    /// Whether the gateway might have acted on the request.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::NoAnswer(_) | Self::Malformed(_))
            || matches!(self, Self::Status { status, .. } if *status >= 500)
    }
}

/// How a gateway call ended: one classifier for the breaker and the retry
/// policy, so an answer is judged once.
fn judge(method: &Method) -> impl Classify<Value, GatewayError> + '_ {
    from_error(move |error: &GatewayError| error.outcome(method))
}

/// Where a guest pays.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// Who took the charge.
    pub gateway: Gateway,
    /// Its reference.
    pub reference: String,
    /// Where to send the guest.
    pub authorization_url: String,
}

/// A charge as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeState {
    /// Paid.
    pub paid: bool,
    /// Failed (not merely unpaid yet).
    pub failed: bool,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO currency.
    pub currency: String,
}

/// A payout as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// Still moving.
    Pending,
    /// The host has the money.
    Paid,
    /// It did not go through.
    Failed,
    /// Paid, then reversed.
    Reversed,
}

/// The two gateways.
#[derive(Debug)]
pub struct Gateways {
    http: reqwest::Client,
    config: GatewayConfig,
    paystack: CircuitBreaker,
    flutterwave: CircuitBreaker,
    policy: RetryPolicy,
}

/// A gateway's breaker; its state and transitions are exported by
/// payguard-breaker itself (`payguard_breaker_state`,
/// `payguard_breaker_transitions_total`) and its state changes logged.
fn breaker(
    name: &'static str,
    settings: &BreakerSettings,
) -> Result<CircuitBreaker, payguard_core::ConfigError> {
    CircuitBreaker::builder()
        .name(name)
        .failure_model(
            FailureModel::count_window(settings.window)
                .failure_rate(settings.failure_rate)
                .minimum_calls(settings.minimum_calls),
        )
        .open_for(settings.open_for)
        .half_open_probes(1)
        .build()
}

impl Gateways {
    /// Clients for both gateways.
    ///
    /// # Errors
    ///
    /// The retry policy or HTTP client could not be built.
    pub fn new(config: GatewayConfig) -> Result<Self, String> {
        let retry = &config.retry;
        let policy = RetryPolicy::builder()
            .name("gateway")
            .backoff(Backoff::exponential(retry.base_delay, 2.0))
            .jitter(Jitter::Full)
            .max_delay(retry.max_delay)
            .max_attempts(retry.max_attempts)
            .deadline(retry.deadline)
            .attempt_timeout(retry.attempt_timeout)
            .build()
            .map_err(|error| error.to_string())?;
        let mut http = reqwest::Client::builder().timeout(retry.attempt_timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("cannot read the CA file {}: {error}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|error| format!("the CA file {} is not PEM: {error}", path.display()))?;
            if roots.is_empty() {
                return Err(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                ));
            }
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        let http = http.build().map_err(|error| error.to_string())?;
        Ok(Self {
            http,
            paystack: breaker("paystack", &config.breaker).map_err(|error| error.to_string())?,
            flutterwave: breaker("flutterwave", &config.breaker)
                .map_err(|error| error.to_string())?,
            config,
            policy,
        })
    }

    /// The breaker of a gateway.
    pub fn breaker(&self, gateway: Gateway) -> &CircuitBreaker {
        match gateway {
            Gateway::Paystack => &self.paystack,
            Gateway::Flutterwave => &self.flutterwave,
        }
    }

    /// Breaker states, for readiness.
    pub fn states(&self) -> [(Gateway, State); 2] {
        [
            (Gateway::Paystack, self.paystack.state()),
            (Gateway::Flutterwave, self.flutterwave.state()),
        ]
    }

    /// One HTTP exchange through the gateway's breaker.
    async fn exchange(
        &self,
        gateway: Gateway,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        request_id: &str,
    ) -> Result<Value, GatewayError> {
        let permit = self
            .breaker(gateway)
            .try_acquire()
            .map_err(|_| GatewayError::Open(gateway.as_str()))?;
        let (base, key) = match gateway {
            Gateway::Paystack => (
                &self.config.paystack_base_url,
                self.config.paystack_secret_key.expose_secret(),
            ),
            Gateway::Flutterwave => (
                &self.config.flutterwave_base_url,
                self.config.flutterwave_secret_key.expose_secret(),
            ),
        };
        let mut request = self
            .http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(key)
            .header("x-request-id", request_id);
        if let Some(body) = body {
            request = request.json(body);
        }
        let result = async {
            let response = request.send().await.map_err(|error| {
                if error.is_connect() {
                    GatewayError::Unreachable(error.to_string())
                } else {
                    GatewayError::NoAnswer(error.to_string())
                }
            })?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| payguard_core::RetryAfter::parse(value.as_bytes()))
                .map(|after| after.delay_from(payguard_core::SystemClock.wall()));
            let bytes = response
                .bytes()
                .await
                .map_err(|error| GatewayError::NoAnswer(error.to_string()))?;
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|error| GatewayError::Malformed(error.to_string()))?;
            if (200..300).contains(&status) {
                Ok(value)
            } else {
                Err(GatewayError::Status {
                    status,
                    message: value["message"].as_str().unwrap_or("").to_owned(),
                    retry_after,
                })
            }
        }
        .await;
        permit.record(judge(method).classify(&result));
        result
    }

    /// An exchange with retries. `key` makes an ambiguous failure safe to
    /// retry (the gateway dedupes on it); GETs are always safe.
    async fn call(
        &self,
        gateway: Gateway,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
        request_id: &str,
    ) -> Result<Value, GatewayError> {
        let mut retry = self
            .policy
            .retry(|_| self.exchange(gateway, &method, path, body.as_ref(), request_id))
            .classify(judge(&method))
            .notify(|event: &payguard_retry::RetryEvent<'_, GatewayError>| {
                metrics::counter!("booking_gateway_retries_total", "gateway" => gateway.as_str())
                    .increment(1);
                tracing::info!(
                    gateway = gateway.as_str(),
                    attempt = event.attempt(),
                    "retrying gateway call"
                );
            });
        if method == Method::GET {
            retry = retry.idempotent();
        } else if let Some(key) = key.and_then(|key| IdempotencyKey::new(key).ok()) {
            retry = retry.idempotency_key(key);
        }
        retry.await.map_err(|error| {
            error
                .into_last_error()
                .unwrap_or_else(|| GatewayError::NoAnswer("the attempt timed out".to_owned()))
        })
    }

    /// Starts a charge: Paystack, or Flutterwave when Paystack fails or
    /// its breaker is open. The reference is the booking id, so the
    /// gateway refuses a second charge for it.
    ///
    /// # Errors
    ///
    /// Both gateways failed.
    pub async fn initialize_charge(
        &self,
        reference: &str,
        email: &str,
        amount_minor: i64,
        currency: &str,
        request_id: &str,
    ) -> Result<Checkout, GatewayError> {
        let paystack = self
            .call(
                Gateway::Paystack,
                Method::POST,
                "/transaction/initialize",
                Some(json!({"email": email, "amount": amount_minor, "currency": currency, "reference": reference})),
                None,
                request_id,
            )
            .await;
        let paystack_error = match paystack {
            Ok(answer) => {
                if let Some(url) = answer["data"]["authorization_url"].as_str() {
                    return Ok(Checkout {
                        gateway: Gateway::Paystack,
                        reference: reference.to_owned(),
                        authorization_url: url.to_owned(),
                    });
                }
                GatewayError::Malformed("no authorization_url".to_owned())
            }
            Err(error) => error,
        };
        metrics::counter!("booking_gateway_failovers_total").increment(1);
        tracing::warn!(error = %paystack_error, "paystack could not take the charge; failing over to flutterwave");
        let answer = self
            .call(
                Gateway::Flutterwave,
                Method::POST,
                "/payments",
                Some(json!({
                    "tx_ref": reference,
                    "amount": major(amount_minor),
                    "currency": currency,
                    "customer": {"email": email},
                })),
                None,
                request_id,
            )
            .await?;
        let url = answer["data"]["link"]
            .as_str()
            .ok_or_else(|| GatewayError::Malformed("no link".to_owned()))?;
        Ok(Checkout {
            gateway: Gateway::Flutterwave,
            reference: reference.to_owned(),
            authorization_url: url.to_owned(),
        })
    }

    /// A charge's state, asked of the gateway.
    ///
    /// # Errors
    ///
    /// The gateway failed.
    pub async fn verify_charge(
        &self,
        gateway: Gateway,
        reference: &str,
        request_id: &str,
    ) -> Result<Option<ChargeState>, GatewayError> {
        let (path, paid_status) = match gateway {
            Gateway::Paystack => (format!("/transaction/verify/{reference}"), "success"),
            Gateway::Flutterwave => (
                format!("/transactions/verify_by_reference?tx_ref={reference}"),
                "successful",
            ),
        };
        match self
            .call(gateway, Method::GET, &path, None, None, request_id)
            .await
        {
            Ok(answer) => {
                let data = &answer["data"];
                let amount_minor = match gateway {
                    Gateway::Paystack => data["amount"].as_i64(),
                    Gateway::Flutterwave => data["amount"].as_f64().map(minor),
                }
                .unwrap_or(0);
                Ok(Some(ChargeState {
                    paid: data["status"] == paid_status,
                    failed: data["status"] == "failed",
                    amount_minor,
                    currency: data["currency"].as_str().unwrap_or_default().to_owned(),
                }))
            }
            Err(error) if error.is_no_such_charge(gateway) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Pays a host. The reference is deterministic (`escrow_<booking>`):
    /// an ambiguous failure is retried with the same reference, and if the
    /// outcome is still unknown, or the gateway refuses the reference as
    /// already used, the gateway is asked by reference, never sent a new
    /// one.
    ///
    /// # Errors
    ///
    /// The gateway refused, or the outcome is still unknown (reconciliation
    /// settles it later).
    pub async fn payout(
        &self,
        gateway: Gateway,
        host: &Host,
        amount_minor: i64,
        currency: &str,
        reference: &str,
        request_id: &str,
    ) -> Result<TransferState, GatewayError> {
        let sent = match gateway {
            Gateway::Paystack => {
                let recipient = self
                    .call(
                        gateway,
                        Method::POST,
                        "/transferrecipient",
                        Some(json!({
                            "type": "nuban",
                            "name": host.name,
                            "account_number": host.account_number,
                            "bank_code": host.bank_code,
                            "currency": currency,
                        })),
                        // Creating a recipient twice returns the same one.
                        Some(reference),
                        request_id,
                    )
                    .await?;
                let code = recipient["data"]["recipient_code"]
                    .as_str()
                    .ok_or_else(|| GatewayError::Malformed("no recipient_code".to_owned()))?
                    .to_owned();
                self.call(
                    gateway,
                    Method::POST,
                    "/transfer",
                    Some(json!({
                        "source": "balance",
                        "amount": amount_minor,
                        "recipient": code,
                        "reference": reference,
                        "currency": currency,
                        "reason": "booking payout",
                    })),
                    Some(reference),
                    request_id,
                )
                .await
            }
            Gateway::Flutterwave => {
                self.call(
                    gateway,
                    Method::POST,
                    "/transfers",
                    Some(json!({
                        "account_bank": host.bank_code,
                        "account_number": host.account_number,
                        "amount": major(amount_minor),
                        "currency": currency,
                        "narration": "booking payout",
                        "reference": reference,
                    })),
                    Some(reference),
                    request_id,
                )
                .await
            }
        };
        match sent {
            Ok(answer) => Ok(transfer_state(gateway, &answer["data"]["status"])),
            // Unclear, or refused: a retry after a lost answer is refused
            // as a reused reference (Paystack: "Duplicate Transfer
            // Reference"), so the reference decides what happened.
            Err(error) if error.is_ambiguous() || error.is_refusal() => {
                match self.verify_payout(gateway, reference, request_id).await? {
                    Some(state) => Ok(state),
                    None => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// A payout's state by reference; `None` if the gateway has none.
    ///
    /// # Errors
    ///
    /// The gateway failed.
    pub async fn verify_payout(
        &self,
        gateway: Gateway,
        reference: &str,
        request_id: &str,
    ) -> Result<Option<TransferState>, GatewayError> {
        let path = match gateway {
            Gateway::Paystack => format!("/transfer/verify/{reference}"),
            Gateway::Flutterwave => format!("/transfers?reference={reference}"),
        };
        match self
            .call(gateway, Method::GET, &path, None, None, request_id)
            .await
        {
            Ok(answer) => {
                let data = match gateway {
                    Gateway::Paystack => answer["data"].clone(),
                    Gateway::Flutterwave => answer["data"][0].clone(),
                };
                Ok((!data.is_null()).then(|| transfer_state(gateway, &data["status"])))
            }
            Err(GatewayError::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Refunds a charge in full, through the gateway that took it. Refunds
    /// carry no idempotency key, so the gateway's refunds for the charge
    /// are listed first, and after an unclear answer, again.
    ///
    /// # Errors
    ///
    /// The gateway failed.
    pub async fn refund(
        &self,
        gateway: Gateway,
        charge_reference: &str,
        request_id: &str,
    ) -> Result<(), GatewayError> {
        if self
            .has_refund(gateway, charge_reference, request_id)
            .await?
        {
            return Ok(());
        }
        let (path, body) = match gateway {
            Gateway::Paystack => (
                "/refund".to_owned(),
                json!({"transaction": charge_reference}),
            ),
            Gateway::Flutterwave => {
                let answer = self
                    .call(
                        gateway,
                        Method::GET,
                        &format!("/transactions/verify_by_reference?tx_ref={charge_reference}"),
                        None,
                        None,
                        request_id,
                    )
                    .await?;
                let id = answer["data"]["id"]
                    .as_u64()
                    .ok_or_else(|| GatewayError::Malformed("no transaction id".to_owned()))?;
                (format!("/transactions/{id}/refund"), json!({}))
            }
        };
        match self
            .call(gateway, Method::POST, &path, Some(body), None, request_id)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_ambiguous() => {
                if self
                    .has_refund(gateway, charge_reference, request_id)
                    .await?
                {
                    Ok(())
                } else {
                    Err(error)
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn has_refund(
        &self,
        gateway: Gateway,
        charge_reference: &str,
        request_id: &str,
    ) -> Result<bool, GatewayError> {
        match gateway {
            Gateway::Paystack => {
                let answer = self
                    .call(
                        gateway,
                        Method::GET,
                        &format!("/refund?transaction={charge_reference}"),
                        None,
                        None,
                        request_id,
                    )
                    .await?;
                Ok(answer["data"].as_array().is_some_and(|refunds| {
                    refunds.iter().any(|refund| refund["status"] != "failed")
                }))
            }
            Gateway::Flutterwave => {
                let answer = self
                    .call(
                        gateway,
                        Method::GET,
                        &format!("/transactions/verify_by_reference?tx_ref={charge_reference}"),
                        None,
                        None,
                        request_id,
                    )
                    .await?;
                Ok(answer["data"]["status"] == "refunded")
            }
        }
    }
}

fn transfer_state(gateway: Gateway, status: &Value) -> TransferState {
    match (gateway, status.as_str().unwrap_or_default()) {
        (Gateway::Paystack, "success") | (Gateway::Flutterwave, "SUCCESSFUL") => {
            TransferState::Paid
        }
        (Gateway::Paystack, "failed" | "abandoned" | "rejected" | "blocked")
        | (Gateway::Flutterwave, "FAILED") => TransferState::Failed,
        (Gateway::Paystack, "reversed") | (Gateway::Flutterwave, "REVERSED") => {
            TransferState::Reversed
        }
        _ => TransferState::Pending,
    }
}

/// Minor units as a major-unit number (Flutterwave).
fn major(minor_units: i64) -> Value {
    serde_json::Number::from_f64(minor_units as f64 / 100.0).map_or(Value::Null, Value::Number)
}

/// A major-unit number as minor units.
fn minor(major_units: f64) -> i64 {
    (major_units * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paystack's transfer lifecycle: only a conclusive status ends a
    /// payout; `otp` and `received` wait.
    #[test]
    fn every_documented_transfer_status_maps_to_its_meaning() {
        for (status, state) in [
            ("pending", TransferState::Pending),
            ("otp", TransferState::Pending),
            ("received", TransferState::Pending),
            ("success", TransferState::Paid),
            ("failed", TransferState::Failed),
            ("abandoned", TransferState::Failed),
            ("blocked", TransferState::Failed),
            ("rejected", TransferState::Failed),
            ("reversed", TransferState::Reversed),
        ] {
            assert_eq!(
                transfer_state(Gateway::Paystack, &json!(status)),
                state,
                "{status}"
            );
        }
        for (status, state) in [
            ("NEW", TransferState::Pending),
            ("PENDING", TransferState::Pending),
            ("SUCCESSFUL", TransferState::Paid),
            ("FAILED", TransferState::Failed),
        ] {
            assert_eq!(
                transfer_state(Gateway::Flutterwave, &json!(status)),
                state,
                "{status}"
            );
        }
    }

    #[test]
    fn no_transaction_yet_is_no_charge() {
        let flutterwave = GatewayError::Status {
            status: 400,
            message: "No transaction was found for this id".to_owned(),
            retry_after: None,
        };
        assert!(flutterwave.is_no_such_charge(Gateway::Flutterwave));
        assert!(!flutterwave.is_no_such_charge(Gateway::Paystack));
    }
}
