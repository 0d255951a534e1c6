//! Webhook deliveries: signed like the providers sign them, with delays,
//! duplicates, out-of-order release, drops with a retry schedule, forged
//! signatures and replays on demand.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use crate::model::{Event, Provider};
use crate::{Sim, SimConfig, lock};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Sha256, Sha512};
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How deliveries behave. Every field has a default, so a `PUT
/// /_sim/webhooks` names only what it changes from the defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Send webhooks at all.
    pub enabled: bool,
    /// Overrides the Paystack target given at start.
    pub paystack_url: Option<String>,
    /// Overrides the Flutterwave target given at start.
    pub flutterwave_url: Option<String>,
    /// Before the first attempt: uniform within `[min, max]` ms.
    pub delay_ms: DelayRange,
    /// Extra byte-identical copies of every delivery.
    pub duplicates: u32,
    /// Between copies.
    pub duplicate_spacing_ms: u64,
    /// Hold deliveries for this long and release each batch newest first
    /// (0: off).
    pub out_of_order_window_ms: u64,
    /// Chance that an attempt is lost before reaching the receiver.
    pub drop_probability: f64,
    /// Waits between failed attempts (Paystack-like by default: 3 min four
    /// times, then hourly up to 72 h), multiplied by `time_scale`.
    pub retry_schedule_ms: Vec<u64>,
    /// Scales the retry schedule (0.001 turns minutes into tenths of a second).
    pub time_scale: f64,
    /// `valid`, `invalid` (a signature of other bytes), `missing`, or
    /// `wrong_secret`.
    pub signature: SignatureMode,
    /// How long the receiver has to answer an attempt.
    pub receiver_timeout_ms: u64,
}

/// `[min, max]` milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayRange {
    /// At least.
    pub min: u64,
    /// At most.
    pub max: u64,
}

/// How deliveries are signed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignatureMode {
    /// As the provider signs.
    #[default]
    Valid,
    /// A well-formed signature of different bytes.
    Invalid,
    /// No signature headers.
    Missing,
    /// Signed with a secret that is not the configured one.
    WrongSecret,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        let mut schedule = vec![180_000; 4];
        schedule.extend(std::iter::repeat_n(3_600_000, 68));
        Self {
            enabled: true,
            paystack_url: None,
            flutterwave_url: None,
            delay_ms: DelayRange::default(),
            duplicates: 0,
            duplicate_spacing_ms: 0,
            out_of_order_window_ms: 0,
            drop_probability: 0.0,
            retry_schedule_ms: schedule,
            time_scale: 1.0,
            signature: SignatureMode::Valid,
            receiver_timeout_ms: 10_000,
        }
    }
}

impl WebhookSettings {
    /// Checks settings before they are installed.
    ///
    /// # Errors
    ///
    /// What is wrong, for the 400 answer.
    pub fn validate(&self) -> Result<(), String> {
        if self.delay_ms.min > self.delay_ms.max {
            return Err("delay_ms.min must not exceed delay_ms.max".to_owned());
        }
        if !(0.0..=1.0).contains(&self.drop_probability) {
            return Err("drop_probability must be within 0..=1".to_owned());
        }
        if !self.time_scale.is_finite() || self.time_scale < 0.0 {
            return Err("time_scale must be a finite number >= 0".to_owned());
        }
        if self.receiver_timeout_ms == 0 {
            return Err("receiver_timeout_ms must be > 0".to_owned());
        }
        const TEN_MINUTES: u64 = 600_000;
        let delays = [
            self.delay_ms.max,
            self.duplicate_spacing_ms,
            self.out_of_order_window_ms,
            self.receiver_timeout_ms,
        ];
        if self.time_scale > 1000.0
            || delays.into_iter().any(|ms| ms > TEN_MINUTES)
            || self.retry_schedule_ms.iter().any(|ms| *ms > 72 * 3_600_000)
            || self.duplicates > 100
        {
            return Err(
                "limits: time_scale <= 1000, delays and timeouts <= 10 min, \
                        retry waits <= 72 h, duplicates <= 100"
                    .to_owned(),
            );
        }
        for url in [&self.paystack_url, &self.flutterwave_url]
            .into_iter()
            .flatten()
        {
            if reqwest::Url::parse(url).is_err() {
                return Err(format!("{url:?} is not a URL"));
            }
        }
        Ok(())
    }
}

/// One delivery (and its copies and replays), as `GET
/// /_sim/webhooks/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryLog {
    /// For `POST /_sim/webhooks/deliveries/{id}/replay`.
    pub id: u64,
    /// Who sent it.
    pub provider: Provider,
    /// `charge.success`, `transfer.completed`, ...
    pub event: String,
    /// The object's reference.
    pub reference: String,
    /// Where it went; `None` when no target was configured.
    pub target: Option<String>,
    /// The exact body sent (every copy is byte-identical).
    pub body: String,
    /// The exact headers sent, secrets masked.
    pub headers: Vec<(String, String)>,
    /// How it was signed.
    pub signature: SignatureMode,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Whether some attempt got a 2xx.
    pub delivered: bool,
    #[serde(skip)]
    raw_headers: Vec<(String, String)>,
}

/// One attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// 0 for the original, 1.. for duplicate copies, `replay` for replays.
    pub copy: String,
    /// RFC 3339.
    pub at: String,
    /// The receiver's status, `dropped`, `gave up`, or the transport error.
    pub outcome: String,
}

#[derive(Debug)]
pub(crate) struct Webhooks {
    settings: Mutex<WebhookSettings>,
    targets: Mutex<(Option<String>, Option<String>)>,
    log: Mutex<Vec<DeliveryLog>>,
    held: Mutex<Vec<u64>>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    /// Cancelled by a reset: deliveries and timers of the old era stop.
    era: Mutex<CancellationToken>,
    /// Delivery ids, never reused (not even across resets).
    next_id: std::sync::atomic::AtomicU64,
}

impl Webhooks {
    pub(crate) fn new(config: &SimConfig, shutdown: CancellationToken) -> Self {
        Self {
            settings: Mutex::new(WebhookSettings::default()),
            targets: Mutex::new((
                config.paystack_webhook_url.clone(),
                config.flutterwave_webhook_url.clone(),
            )),
            log: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
            era: Mutex::new(shutdown.child_token()),
            shutdown,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub(crate) fn settings(&self) -> WebhookSettings {
        lock(&self.settings).clone()
    }

    pub(crate) fn configure(&self, settings: WebhookSettings) {
        *lock(&self.settings) = settings;
    }

    pub(crate) fn log(&self) -> Vec<DeliveryLog> {
        lock(&self.log).clone()
    }

    pub(crate) fn reset(&self, config: &SimConfig) {
        *lock(&self.settings) = WebhookSettings::default();
        *lock(&self.targets) = (
            config.paystack_webhook_url.clone(),
            config.flutterwave_webhook_url.clone(),
        );
        lock(&self.log).clear();
        lock(&self.held).clear();
        let old = std::mem::replace(&mut *lock(&self.era), self.shutdown.child_token());
        old.cancel();
    }

    /// Whether delivery `id` has had an attempt (or was dropped).
    fn attempted(&self, id: u64) -> bool {
        lock(&self.log)
            .iter()
            .any(|delivery| delivery.id == id && !delivery.attempts.is_empty())
    }

    /// The current era's token: cancelled by shutdown and by reset.
    pub(crate) fn era(&self) -> CancellationToken {
        lock(&self.era).clone()
    }

    fn target(&self, settings: &WebhookSettings, provider: Provider) -> Option<String> {
        let targets = lock(&self.targets);
        match provider {
            Provider::Paystack => settings.paystack_url.clone().or_else(|| targets.0.clone()),
            Provider::Flutterwave => settings
                .flutterwave_url
                .clone()
                .or_else(|| targets.1.clone()),
        }
    }

    /// Records a delivery for `event` and sends it as configured.
    pub(crate) fn enqueue(&self, sim: &Sim, event: Event) {
        let settings = self.settings();
        let body = match event.event_type {
            Some(kind) => json!({ "event": event.name, "event.type": kind, "data": event.data }),
            None => json!({ "event": event.name, "data": event.data }),
        }
        .to_string();
        let raw_headers = sign(
            &sim.config,
            event.provider,
            body.as_bytes(),
            settings.signature,
        );
        let reference = event.data["reference"]
            .as_str()
            .or_else(|| event.data["tx_ref"].as_str())
            .or_else(|| event.data["transaction_reference"].as_str())
            .unwrap_or_default()
            .to_owned();
        let target = if settings.enabled {
            self.target(&settings, event.provider)
        } else {
            None
        };
        let id = {
            let mut log = lock(&self.log);
            let id = self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log.push(DeliveryLog {
                id,
                provider: event.provider,
                event: event.name.to_owned(),
                reference,
                target: target.clone(),
                body,
                headers: raw_headers
                    .iter()
                    .map(|(name, value)| (name.clone(), crate::faults::mask(name, value)))
                    .collect(),
                signature: settings.signature,
                attempts: Vec::new(),
                delivered: false,
                raw_headers,
            });
            id
        };
        if target.is_none() {
            return;
        }
        if settings.out_of_order_window_ms > 0 {
            let first = {
                let mut held = lock(&self.held);
                held.push(id);
                held.len() == 1
            };
            if first {
                let sim = sim.clone();
                let window = Duration::from_millis(settings.out_of_order_window_ms);
                let era = self.era();
                tokio::spawn(async move {
                    tokio::select! {
                        () = era.cancelled() => return,
                        () = tokio::time::sleep(window) => {}
                    }
                    let batch: Vec<u64> = std::mem::take(&mut *lock(&sim.webhooks.held));
                    // Newest first: each delivery (with its retries) runs on
                    // its own task, the next starting once this one's first
                    // attempt is over, so the order holds however slow the
                    // receiver is.
                    for id in batch.into_iter().rev() {
                        let (task_sim, task_settings) = (sim.clone(), settings.clone());
                        tokio::spawn(async move {
                            task_sim
                                .webhooks
                                .deliver(&task_sim, id, &task_settings)
                                .await;
                        });
                        let patience = Duration::from_millis(
                            settings.delay_ms.max + settings.receiver_timeout_ms,
                        );
                        let started = tokio::time::Instant::now();
                        while !sim.webhooks.attempted(id) && started.elapsed() < patience {
                            if !sleep(&era, Duration::from_millis(2)).await {
                                return;
                            }
                        }
                    }
                });
            }
            return;
        }
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.webhooks.deliver(&sim, id, &settings).await;
        });
    }

    /// The original and its duplicate copies, each retried on failure.
    async fn deliver(&self, sim: &Sim, id: u64, settings: &WebhookSettings) {
        let era = self.era();
        let delay = {
            let mut rng = sim.rng();
            rng.random_range(settings.delay_ms.min..=settings.delay_ms.max)
        };
        if !sleep(&era, Duration::from_millis(delay)).await {
            return;
        }
        for copy in 0..=settings.duplicates {
            if copy > 0 && !sleep(&era, Duration::from_millis(settings.duplicate_spacing_ms)).await
            {
                return;
            }
            for attempt in 0.. {
                let dropped = sim.rng().random_bool(settings.drop_probability);
                let outcome = if dropped {
                    "dropped".to_owned()
                } else {
                    self.attempt(&era, id, settings.receiver_timeout_ms).await
                };
                let delivered = outcome.starts_with('2');
                self.note(sim, id, copy.to_string(), outcome, delivered);
                if delivered {
                    break;
                }
                let Some(wait) = settings.retry_schedule_ms.get(attempt) else {
                    self.note(sim, id, copy.to_string(), "gave up".to_owned(), false);
                    break;
                };
                let wait = Duration::from_secs_f64(
                    (*wait as f64 / 1000.0 * settings.time_scale).min(86_400.0),
                );
                if !sleep(&era, wait).await {
                    return;
                }
            }
        }
    }

    /// Sends delivery `id` once more, byte for byte (no retries).
    pub(crate) fn replay(&self, sim: &Sim, id: u64) -> bool {
        if !lock(&self.log).iter().any(|delivery| delivery.id == id) {
            return false;
        }
        let timeout = self.settings().receiver_timeout_ms;
        let sim = sim.clone();
        let era = self.era();
        tokio::spawn(async move {
            let outcome = sim.webhooks.attempt(&era, id, timeout).await;
            let delivered = outcome.starts_with('2');
            sim.webhooks
                .note(&sim, id, "replay".to_owned(), outcome, delivered);
        });
        true
    }

    /// One POST; the status, or the error.
    async fn attempt(&self, era: &CancellationToken, id: u64, timeout_ms: u64) -> String {
        let Some((target, body, headers)) = lock(&self.log)
            .iter()
            .find(|delivery| delivery.id == id)
            .and_then(|delivery| {
                Some((
                    delivery.target.clone()?,
                    delivery.body.clone(),
                    delivery.raw_headers.clone(),
                ))
            })
        else {
            return "no target".to_owned();
        };
        let mut request = self
            .http
            .post(target)
            .timeout(Duration::from_millis(timeout_ms))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        tokio::select! {
            () = era.cancelled() => "shut down".to_owned(),
            sent = request.send() => match sent {
                Ok(response) => response.status().as_u16().to_string(),
                Err(error) => format!("error: {error}"),
            },
        }
    }

    fn note(&self, sim: &Sim, id: u64, copy: String, outcome: String, delivered: bool) {
        let at = sim.now();
        if let Some(delivery) = lock(&self.log)
            .iter_mut()
            .find(|delivery| delivery.id == id)
        {
            delivery.attempts.push(Attempt { copy, at, outcome });
            delivery.delivered |= delivered;
        }
    }
}

/// The signature headers for `body`.
fn sign(
    config: &SimConfig,
    provider: Provider,
    body: &[u8],
    mode: SignatureMode,
) -> Vec<(String, String)> {
    let (secret, signed): (&str, Vec<u8>) = match mode {
        SignatureMode::Missing => return Vec::new(),
        SignatureMode::Valid => (secret_of(config, provider), body.to_vec()),
        SignatureMode::Invalid => {
            let mut other = body.to_vec();
            other.extend_from_slice(b" ");
            (secret_of(config, provider), other)
        }
        SignatureMode::WrongSecret => ("wrong-secret", body.to_vec()),
    };
    match provider {
        Provider::Paystack => {
            let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(secret.as_bytes()) else {
                return Vec::new();
            };
            mac.update(&signed);
            vec![(
                "x-paystack-signature".to_owned(),
                hex::encode(mac.finalize().into_bytes()),
            )]
        }
        Provider::Flutterwave => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                return Vec::new();
            };
            mac.update(&signed);
            let hash = match mode {
                SignatureMode::Invalid => "not-the-secret-hash",
                _ => secret,
            };
            vec![
                (
                    "flutterwave-signature".to_owned(),
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
                ),
                ("verif-hash".to_owned(), hash.to_owned()),
            ]
        }
    }
}

fn secret_of(config: &SimConfig, provider: Provider) -> &str {
    match provider {
        Provider::Paystack => &config.paystack_secret_key,
        Provider::Flutterwave => &config.flutterwave_secret_hash,
    }
}

/// Sleeps unless the era ends first; `false` if it did.
async fn sleep(era: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        () = era.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}
