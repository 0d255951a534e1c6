//! [`Verifier`]: one endpoint's scheme, key ring and replay window.

use crate::encoding::{self, Mac64};
use crate::error::{SignError, VerifyError};
use crate::event::EventHint;
use crate::generic::{Encoding, GenericHmac, SignedContent};
use crate::keys::{Algorithm, Key, SecretFormat};
use crate::provider::Provider;
use crate::timestamp::{self, ReplayWindow};
use crate::verified::Verified;
use crate::{adyen, twilio};
use ed25519_dalek::Signature;
use http::{HeaderMap, HeaderName, HeaderValue};
use payguard_core::ConfigError;
use payguard_core::{Clock, SystemClock};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

pub(crate) mod names {
    use http::HeaderName;

    pub(crate) const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
    pub(crate) const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
    pub(crate) const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
    pub(crate) const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
    pub(crate) const SVIX_ID: HeaderName = HeaderName::from_static("svix-id");
    pub(crate) const SVIX_TIMESTAMP: HeaderName = HeaderName::from_static("svix-timestamp");
    pub(crate) const SVIX_SIGNATURE: HeaderName = HeaderName::from_static("svix-signature");
    pub(crate) const PAYSTACK_SIGNATURE: HeaderName =
        HeaderName::from_static("x-paystack-signature");
    pub(crate) const FLUTTERWAVE_SIGNATURE: HeaderName =
        HeaderName::from_static("flutterwave-signature");
    pub(crate) const VERIF_HASH: HeaderName = HeaderName::from_static("verif-hash");
    pub(crate) const SHOPIFY_HMAC: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
    pub(crate) const SHOPIFY_EVENTS_HMAC: HeaderName =
        HeaderName::from_static("shopify-hmac-sha256");
    pub(crate) const SHOPIFY_EVENT_ID: HeaderName = HeaderName::from_static("x-shopify-event-id");
    pub(crate) const SHOPIFY_WEBHOOK_ID: HeaderName =
        HeaderName::from_static("x-shopify-webhook-id");
    pub(crate) const GITHUB_SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");
    pub(crate) const GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
    pub(crate) const SLACK_SIGNATURE: HeaderName = HeaderName::from_static("x-slack-signature");
    pub(crate) const SLACK_TIMESTAMP: HeaderName =
        HeaderName::from_static("x-slack-request-timestamp");
    pub(crate) const SQUARE_SIGNATURE: HeaderName =
        HeaderName::from_static("x-square-hmacsha256-signature");
    pub(crate) const TWILIO_SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-signature");
    pub(crate) const TWILIO_IDEMPOTENCY: HeaderName =
        HeaderName::from_static("i-twilio-idempotency-token");
    pub(crate) const RAZORPAY_SIGNATURE: HeaderName =
        HeaderName::from_static("x-razorpay-signature");
    pub(crate) const RAZORPAY_EVENT_ID: HeaderName = HeaderName::from_static("x-razorpay-event-id");
    pub(crate) const ADYEN_SIGNATURE: HeaderName = HeaderName::from_static("hmacsignature");
}

/// The scheme a verifier checks.
#[derive(Debug, Clone)]
pub(crate) enum Scheme {
    Provider(Provider),
    Generic(GenericHmac),
}

/// Verifies (and signs) one endpoint's webhooks: a scheme, a key ring of
/// one or more secrets, a replay window and, for URL-signing schemes, the
/// URL as registered with the provider.
///
/// Verification works on the raw body bytes as received (no UTF-8 needed,
/// nothing re-serialised), compares MACs in constant time, checks the MAC
/// before the timestamp (so a forger learns nothing from which check failed),
/// and reports which key matched.
///
/// ```
/// use payguard_webhook::{Provider, Verifier};
/// use http::{HeaderMap, HeaderValue};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let verifier = Verifier::builder(Provider::Paystack)
///     .secret("sk_test_old")
///     .secret("sk_test_new") // rotation: both are accepted, the match is reported
///     .build()?;
/// let body = br#"{"event":"charge.success","data":{"id":302961,"reference":"bk_1"}}"#;
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
///
/// // What Paystack would send, signed with the new key.
/// let signer = Verifier::builder(Provider::Paystack).secret("sk_test_new").build()?;
/// let mut headers = HeaderMap::new();
/// for (name, value) in signer.sign_at(body, now, None)? {
///     headers.insert(name, value);
/// }
///
/// let verified = verifier.verify_at(&headers, &body[..], now)?;
/// assert_eq!(verified.key_id(), "key-2");
/// assert_eq!(verified.event_id().as_str(), "paystack:charge.success:302961");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    scheme: Scheme,
    keys: Vec<Key>,
    window: ReplayWindow,
    url: Option<String>,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("keys", &self.keys)
            .field("window", &self.window)
            .field("url", &self.url)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`].
///
/// # Default
///
/// `max_age` 300 s, `max_future` 300 s (timestamped schemes only), no
/// URL, [`SystemClock`], bodies up to 1 MiB (for the axum extractor). Key ids
/// are `key-1`, `key-2`, ... in the order secrets are added, unless given.
#[derive(Clone)]
pub struct VerifierBuilder {
    scheme: Scheme,
    secrets: Vec<(Option<String>, String)>,
    window: ReplayWindow,
    url: Option<String>,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .field("window", &self.window)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    fn new(scheme: Scheme) -> Self {
        Self {
            scheme,
            secrets: Vec::new(),
            window: ReplayWindow::default(),
            url: None,
            clock: Arc::new(SystemClock),
            max_body_bytes: 1 << 20,
        }
    }

    /// Adds a secret, as the provider's dashboard shows it: Stripe's whole
    /// `whsec_…`, a Standard Webhooks `whsec_…` (base64 after the prefix) or
    /// `whpk_…`/`whsk_…` Ed25519 key, Paystack's `sk_…` secret key, an Adyen
    /// hex key, ...
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push((None, secret.into()));
        self
    }

    /// Adds a secret with an id of your choosing, reported when it matches.
    pub fn secret_with_id(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.secrets.push((Some(id.into()), secret.into()));
        self
    }

    /// How old a signed timestamp may be (inclusive).
    pub const fn max_age(mut self, max_age: Duration) -> Self {
        self.window.max_age = max_age;
        self
    }

    /// How far ahead of this clock a signed timestamp may be (inclusive),
    /// for senders whose clocks run fast.
    pub const fn max_future(mut self, max_future: Duration) -> Self {
        self.window.max_future = max_future;
        self
    }

    /// The same tolerance both ways: `max_age` and `max_future`.
    pub const fn tolerance(self, tolerance: Duration) -> Self {
        self.max_age(tolerance).max_future(tolerance)
    }

    /// The URL as registered with the provider (Square, Twilio): never the
    /// `Host` header of the request, which a proxy may have changed.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The clock [`Verifier::verify`] judges timestamps by.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The largest body the axum extractor reads (413 beyond it).
    pub const fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Parses the secrets and builds the verifier.
    ///
    /// # Errors
    ///
    /// [`ConfigError`]: no secret, a secret not in the provider's format
    /// (empty, surrounding whitespace, bad base64 or hex), a missing URL for
    /// a URL-signing scheme, or a repeated key id.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if self.secrets.is_empty() {
            return Err(ConfigError::new("secret", "given at least once"));
        }
        let (format, algorithm, signs_url) = match &self.scheme {
            Scheme::Provider(provider) => {
                let (format, algorithm) = provider_keys(*provider);
                (format, algorithm, provider.signs_url())
            }
            Scheme::Generic(generic) => (
                generic.secret_format,
                generic.algorithm,
                generic.signed == SignedContent::UrlAndBody,
            ),
        };
        if signs_url && self.url.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                "url",
                "the URL exactly as registered with the provider (this scheme signs it)",
            ));
        }
        let mut keys: Vec<Key> = Vec::with_capacity(self.secrets.len());
        for (index, (id, secret)) in self.secrets.iter().enumerate() {
            let id: Arc<str> = match id {
                Some(id) => Arc::from(id.as_str()),
                None => Arc::from(format!("key-{}", index + 1)),
            };
            if keys.iter().any(|key| key.id == id) {
                return Err(ConfigError::new(
                    "secret_with_id",
                    format!("a different key id for each secret ({id:?} is used twice)"),
                ));
            }
            let key = Key::parse(id, secret, format, algorithm).map_err(|reason| {
                ConfigError::new(
                    "secret",
                    format!("in the provider's format (secret #{}: {reason})", index + 1),
                )
            })?;
            keys.push(key);
        }
        Ok(Verifier {
            scheme: self.scheme,
            keys,
            window: self.window,
            url: self.url,
            clock: self.clock,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

fn provider_keys(provider: Provider) -> (SecretFormat, Algorithm) {
    match provider {
        Provider::StandardWebhooks | Provider::Svix => {
            (SecretFormat::StandardWebhooks, Algorithm::HmacSha256)
        }
        Provider::Paystack => (SecretFormat::Text, Algorithm::HmacSha512),
        Provider::Twilio => (SecretFormat::Text, Algorithm::HmacSha1),
        Provider::Adyen => (SecretFormat::Hex, Algorithm::HmacSha256),
        _ => (SecretFormat::Text, Algorithm::HmacSha256),
    }
}

/// The result of the checks, before it is wrapped around the body.
#[derive(Debug)]
pub(crate) struct Check {
    key: usize,
    signed_at: Option<u64>,
    body_authenticated: bool,
    event: EventHint,
}

impl Check {
    fn new(key: usize) -> Self {
        Self {
            key,
            signed_at: None,
            body_authenticated: true,
            event: EventHint::FromBody,
        }
    }
}

/// When to judge the signed timestamp.
#[derive(Debug, Clone, Copy)]
enum Now {
    At(SystemTime),
    Ignored,
}

impl Verifier {
    /// A builder for a built-in provider's scheme.
    pub fn builder(provider: Provider) -> VerifierBuilder {
        VerifierBuilder::new(Scheme::Provider(provider))
    }

    /// A builder for a scheme of your own description.
    pub fn generic(scheme: GenericHmac) -> VerifierBuilder {
        VerifierBuilder::new(Scheme::Generic(scheme))
    }

    /// The provider, for built-in schemes.
    pub fn provider(&self) -> Option<Provider> {
        match &self.scheme {
            Scheme::Provider(provider) => Some(*provider),
            Scheme::Generic(_) => None,
        }
    }

    /// The replay window.
    pub fn replay_window(&self) -> ReplayWindow {
        self.window
    }

    /// The largest body the axum extractor reads.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Verifies a delivery now (by the verifier's clock).
    ///
    /// # Errors
    ///
    /// [`VerifyError`] saying what was wrong.
    pub fn verify<B: AsRef<[u8]>>(
        &self,
        headers: &HeaderMap,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        self.verify_at(headers, body, self.clock.wall())
    }

    /// Verifies a delivery as of `now`.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] saying what was wrong.
    pub fn verify_at<B: AsRef<[u8]>>(
        &self,
        headers: &HeaderMap,
        body: B,
        now: SystemTime,
    ) -> Result<Verified<B>, VerifyError> {
        let check = self.check(headers, body.as_ref(), Now::At(now))?;
        Ok(self.verified(body, check))
    }

    /// Verifies signatures but not the timestamp, for replaying stored
    /// deliveries on purpose (back-fills). Never use it for live traffic.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] saying what was wrong.
    pub fn verify_ignoring_timestamp<B: AsRef<[u8]>>(
        &self,
        headers: &HeaderMap,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        let check = self.check(headers, body.as_ref(), Now::Ignored)?;
        Ok(self.verified(body, check))
    }

    fn verified<B: AsRef<[u8]>>(&self, body: B, check: Check) -> Verified<B> {
        let key_id = self
            .keys
            .get(check.key)
            .map(|key| Arc::clone(&key.id))
            .unwrap_or_else(|| Arc::from(""));
        Verified::new(
            body,
            self.provider(),
            key_id,
            check.signed_at,
            check.body_authenticated,
            check.event,
        )
    }

    fn check(&self, headers: &HeaderMap, body: &[u8], now: Now) -> Result<Check, VerifyError> {
        let checked = self.check_signature(headers, body, now);
        crate::telemetry::verified(
            self.provider(),
            checked.as_ref().err().map(VerifyError::code),
        );
        checked
    }

    fn check_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Now,
    ) -> Result<Check, VerifyError> {
        let check = match &self.scheme {
            Scheme::Provider(provider) => self.check_provider(*provider, headers, body)?,
            Scheme::Generic(generic) => self.check_generic(generic, headers, body)?,
        };
        // The timestamp is judged only once the signature proved it genuine.
        if let (Some(signed_at), Now::At(now)) = (check.signed_at, now) {
            self.window.check(signed_at, now)?;
        }
        Ok(check)
    }

    fn check_provider(
        &self,
        provider: Provider,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Check, VerifyError> {
        use names::*;
        match provider {
            Provider::Stripe => self.check_stripe(headers, body),
            Provider::StandardWebhooks => self.check_standard(
                headers,
                body,
                [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE],
            ),
            Provider::Svix => {
                let names = if headers.contains_key(SVIX_ID) {
                    [SVIX_ID, SVIX_TIMESTAMP, SVIX_SIGNATURE]
                } else {
                    [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]
                };
                self.check_standard(headers, body, names)
            }
            Provider::Paystack => {
                let signature = decoded(headers, &PAYSTACK_SIGNATURE, Encoding::Hex, 64)?;
                self.match_mac(&[body], &[signature]).map(Check::new)
            }
            Provider::Flutterwave => self.check_flutterwave(headers, body),
            Provider::Shopify => {
                let name = if headers.contains_key(SHOPIFY_HMAC) {
                    SHOPIFY_HMAC
                } else {
                    SHOPIFY_EVENTS_HMAC
                };
                let signature = decoded(headers, &name, Encoding::Base64, 32)?;
                let mut check = self.match_mac(&[body], &[signature]).map(Check::new)?;
                check.event = EventHint::header(headers, &SHOPIFY_EVENT_ID)
                    .or_else(|| EventHint::header(headers, &SHOPIFY_WEBHOOK_ID))
                    .unwrap_or(EventHint::FromBody);
                Ok(check)
            }
            Provider::Github => {
                let value = header(headers, &GITHUB_SIGNATURE)?;
                let hex =
                    value
                        .strip_prefix(b"sha256=")
                        .ok_or_else(|| VerifyError::MalformedHeader {
                            header: GITHUB_SIGNATURE,
                            reason: "expected sha256=<hex>",
                        })?;
                let signature = decode(hex, Encoding::Hex, 32)?;
                let mut check = self.match_mac(&[body], &[signature]).map(Check::new)?;
                check.event =
                    EventHint::header(headers, &GITHUB_DELIVERY).unwrap_or(EventHint::FromBody);
                Ok(check)
            }
            Provider::Slack => {
                let timestamp = header(headers, &SLACK_TIMESTAMP)?;
                let signed_at = timestamp::parse(&SLACK_TIMESTAMP, timestamp)?;
                let value = header(headers, &SLACK_SIGNATURE)?;
                let hex =
                    value
                        .strip_prefix(b"v0=")
                        .ok_or_else(|| VerifyError::MalformedHeader {
                            header: SLACK_SIGNATURE,
                            reason: "expected v0=<hex>",
                        })?;
                let signature = decode(hex, Encoding::Hex, 32)?;
                let mut check = self
                    .match_mac(&[b"v0:", timestamp, b":", body], &[signature])
                    .map(Check::new)?;
                check.signed_at = Some(signed_at);
                Ok(check)
            }
            Provider::Square => {
                let signature = decoded(headers, &SQUARE_SIGNATURE, Encoding::Base64, 32)?;
                let url = self.url.as_deref().unwrap_or_default();
                self.match_mac(&[url.as_bytes(), body], &[signature])
                    .map(Check::new)
            }
            Provider::Twilio => {
                let signature = decoded(headers, &TWILIO_SIGNATURE, Encoding::Base64, 20)?;
                let url = self.url.as_deref().unwrap_or_default();
                let key = twilio::verify(url, body, |content| {
                    self.match_mac(&[content], std::slice::from_ref(&signature))
                        .ok()
                })?;
                let mut check = Check::new(key);
                check.event =
                    EventHint::header(headers, &TWILIO_IDEMPOTENCY).unwrap_or(EventHint::FromBody);
                Ok(check)
            }
            Provider::Razorpay => {
                let signature = decoded(headers, &RAZORPAY_SIGNATURE, Encoding::Hex, 32)?;
                let mut check = self.match_mac(&[body], &[signature]).map(Check::new)?;
                check.event =
                    EventHint::header(headers, &RAZORPAY_EVENT_ID).unwrap_or(EventHint::FromBody);
                Ok(check)
            }
            Provider::Adyen => {
                if headers.contains_key(ADYEN_SIGNATURE) {
                    let signature = decoded(headers, &ADYEN_SIGNATURE, Encoding::Base64, 32)?;
                    return self.match_mac(&[body], &[signature]).map(Check::new);
                }
                let key = adyen::verify_items(body, |signed, signature| {
                    self.match_mac(&[signed], &[signature]).ok()
                })?;
                Ok(Check::new(key))
            }
        }
    }

    fn check_stripe(&self, headers: &HeaderMap, body: &[u8]) -> Result<Check, VerifyError> {
        use names::STRIPE_SIGNATURE;
        let value = header(headers, &STRIPE_SIGNATURE)?;
        let mut signed_at = None;
        let mut signatures = Vec::new();
        // Malformed items are skipped, not fatal; only v1 counts (v0 and
        // unknown schemes are ignored: no downgrade).
        for item in value.split(|byte| *byte == b',') {
            let Some((name, value)) = split_once(item, b'=') else {
                continue;
            };
            let (name, value) = (name.trim_ascii(), value.trim_ascii());
            match name {
                b"t" if signed_at.is_none() => signed_at = Some(value),
                b"v1" => {
                    if let Some(signature) =
                        encoding::hex_mac(value).filter(|s| s.as_slice().len() == 32)
                    {
                        signatures.push(signature);
                    }
                }
                _ => {}
            }
        }
        let timestamp = signed_at.ok_or(VerifyError::MalformedHeader {
            header: STRIPE_SIGNATURE,
            reason: "no timestamp (t=)",
        })?;
        let seconds = timestamp::parse(&STRIPE_SIGNATURE, timestamp)?;
        let mut check = self
            .match_mac(&[timestamp, b".", body], &signatures)
            .map(Check::new)?;
        check.signed_at = Some(seconds);
        Ok(check)
    }

    fn check_standard(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        [id_name, timestamp_name, signature_name]: [HeaderName; 3],
    ) -> Result<Check, VerifyError> {
        let id = header(headers, &id_name)?;
        let timestamp = header(headers, &timestamp_name)?;
        let seconds = timestamp::parse(&timestamp_name, timestamp)?;
        let value = header(headers, &signature_name)?;
        let mut hmacs = Vec::new();
        let mut ed25519 = Vec::new();
        for token in value
            .split(|byte| *byte == b' ')
            .filter(|token| !token.is_empty())
        {
            let Some((version, encoded)) = split_once(token, b',') else {
                continue;
            };
            match (version, encoding::base64_mac(encoded)) {
                (b"v1", Some(signature)) if signature.as_slice().len() == 32 => {
                    hmacs.push(signature)
                }
                (b"v1a", Some(signature)) => {
                    if let Ok(signature) = Signature::from_slice(signature.as_slice()) {
                        ed25519.push(signature);
                    }
                }
                _ => {}
            }
        }
        let parts: [&[u8]; 5] = [id, b".", timestamp, b".", body];
        let key = match self.match_mac(&parts, &hmacs) {
            Ok(key) => key,
            Err(mismatch) if ed25519.is_empty() => return Err(mismatch),
            Err(mismatch) => {
                let message = parts.concat();
                self.keys
                    .iter()
                    .position(|key| {
                        key.ed25519.is_some_and(|public| {
                            ed25519
                                .iter()
                                .any(|signature| public.verify_strict(&message, signature).is_ok())
                        })
                    })
                    .ok_or(mismatch)?
            }
        };
        let mut check = Check::new(key);
        check.signed_at = Some(seconds);
        check.event = EventHint::Header(String::from_utf8_lossy(id).into_owned());
        Ok(check)
    }

    fn check_flutterwave(&self, headers: &HeaderMap, body: &[u8]) -> Result<Check, VerifyError> {
        use names::{FLUTTERWAVE_SIGNATURE, VERIF_HASH};
        if headers.contains_key(FLUTTERWAVE_SIGNATURE) {
            let signature = decoded(headers, &FLUTTERWAVE_SIGNATURE, Encoding::Base64, 32)?;
            return self.match_mac(&[body], &[signature]).map(Check::new);
        }
        // Legacy: the header is the shared secret itself; it proves who sent
        // the request, not what it says.
        let presented = header(headers, &VERIF_HASH)?;
        let key = self
            .keys
            .iter()
            .position(|key| bool::from(key.bytes.as_slice().ct_eq(presented)))
            .ok_or(VerifyError::SignatureMismatch)?;
        let mut check = Check::new(key);
        check.body_authenticated = false;
        Ok(check)
    }

    fn check_generic(
        &self,
        generic: &GenericHmac,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Check, VerifyError> {
        let value = header(headers, &generic.header)?;
        let encoded = match &generic.prefix {
            Some(prefix) => value.strip_prefix(prefix.as_bytes()).ok_or_else(|| {
                VerifyError::MalformedHeader {
                    header: generic.header.clone(),
                    reason: "the signature lacks its prefix",
                }
            })?,
            None => value,
        };
        let signature = decode(encoded, generic.encoding, generic.algorithm.output_len())?;
        match &generic.signed {
            SignedContent::Body => self.match_mac(&[body], &[signature]).map(Check::new),
            SignedContent::UrlAndBody => {
                let url = self.url.as_deref().unwrap_or_default();
                self.match_mac(&[url.as_bytes(), body], &[signature])
                    .map(Check::new)
            }
            SignedContent::TimestampAndBody {
                header: name,
                separator,
            } => {
                let timestamp = header(headers, name)?;
                let seconds = timestamp::parse(name, timestamp)?;
                let mut check = self
                    .match_mac(&[timestamp, separator.as_bytes(), body], &[signature])
                    .map(Check::new)?;
                check.signed_at = Some(seconds);
                Ok(check)
            }
        }
    }

    /// The first key whose MAC over `parts` equals one of `candidates`,
    /// compared in constant time.
    fn match_mac(&self, parts: &[&[u8]], candidates: &[Mac64]) -> Result<usize, VerifyError> {
        if candidates.is_empty() {
            return Err(VerifyError::SignatureMismatch);
        }
        self.keys
            .iter()
            .position(|key| {
                key.mac.as_ref().is_some_and(|mac| {
                    let expected = mac.compute(parts);
                    candidates.iter().any(|candidate| {
                        bool::from(candidate.as_slice().ct_eq(expected.as_slice()))
                    })
                })
            })
            .ok_or(VerifyError::SignatureMismatch)
    }

    /// The headers that make `body` valid as of `now`, signed with the first
    /// key that can sign. `id` is the Standard Webhooks/Svix message id
    /// (default: `msg_` + a digest of the body and time).
    ///
    /// For Adyen this is the `HmacSignature` of banking webhooks; notification
    /// items carry their own signatures (see [`adyen_item_signature`](crate::adyen_item_signature)).
    /// For Twilio, a URL with a `bodySHA256` parameter signs the URL alone
    /// (JSON bodies); otherwise the body is read as form parameters.
    ///
    /// # Errors
    ///
    /// [`SignError`] when no key can sign, the time is before 1970, or the id
    /// cannot go in a header.
    pub fn sign_at(
        &self,
        body: &[u8],
        now: SystemTime,
        id: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let seconds =
            u64::try_from(timestamp::unix_seconds(now)).map_err(|_| SignError::TimeBeforeEpoch)?;
        let timestamp = seconds.to_string();
        let mac = |parts: &[&[u8]]| -> Result<Vec<u8>, SignError> {
            self.keys
                .iter()
                .find_map(|key| key.mac.as_ref())
                .map(|mac| mac.compute(parts).as_slice().to_vec())
                .ok_or(SignError::NoSigningKey)
        };
        let text = |value: String| HeaderValue::from_str(&value).map_err(|_| SignError::BadId);
        use names::*;
        let headers = match &self.scheme {
            Scheme::Provider(Provider::Stripe) => {
                let signature =
                    encoding::to_hex(mac(&[timestamp.as_bytes(), b".", body])?.as_slice());
                vec![(
                    STRIPE_SIGNATURE,
                    text(format!("t={timestamp},v1={signature}"))?,
                )]
            }
            Scheme::Provider(provider @ (Provider::StandardWebhooks | Provider::Svix)) => {
                let id = match id {
                    Some(id)
                        if !id.contains('.')
                            && !id.is_empty()
                            && id.bytes().all(|b| b.is_ascii_graphic()) =>
                    {
                        id.to_owned()
                    }
                    Some(_) => return Err(SignError::BadId),
                    None => {
                        let digest = Sha256::new()
                            .chain_update(timestamp.as_bytes())
                            .chain_update(body)
                            .finalize();
                        format!("msg_{}", &encoding::to_hex(&digest)[..24])
                    }
                };
                let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
                let signature = match self.keys.first() {
                    Some(key) if key.signing.is_some() => {
                        let signature = key
                            .sign_ed25519(&parts.concat())
                            .ok_or(SignError::NoSigningKey)?;
                        format!("v1a,{}", encoding::to_base64(&signature.to_bytes()))
                    }
                    _ => format!("v1,{}", encoding::to_base64(mac(&parts)?.as_slice())),
                };
                let [id_name, timestamp_name, signature_name] = if *provider == Provider::Svix {
                    [SVIX_ID, SVIX_TIMESTAMP, SVIX_SIGNATURE]
                } else {
                    [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]
                };
                vec![
                    (id_name, text(id)?),
                    (timestamp_name, text(timestamp)?),
                    (signature_name, text(signature)?),
                ]
            }
            Scheme::Provider(Provider::Paystack) => {
                vec![(
                    PAYSTACK_SIGNATURE,
                    text(encoding::to_hex(mac(&[body])?.as_slice()))?,
                )]
            }
            Scheme::Provider(Provider::Flutterwave) => {
                let secret = self.keys.first().ok_or(SignError::NoSigningKey)?;
                vec![
                    (
                        FLUTTERWAVE_SIGNATURE,
                        text(encoding::to_base64(&mac(&[body])?))?,
                    ),
                    (
                        VERIF_HASH,
                        text(String::from_utf8_lossy(&secret.bytes).into_owned())?,
                    ),
                ]
            }
            Scheme::Provider(Provider::Shopify) => {
                vec![(
                    SHOPIFY_HMAC,
                    text(encoding::to_base64(mac(&[body])?.as_slice()))?,
                )]
            }
            Scheme::Provider(Provider::Github) => {
                vec![(
                    GITHUB_SIGNATURE,
                    text(format!("sha256={}", encoding::to_hex(&mac(&[body])?)))?,
                )]
            }
            Scheme::Provider(Provider::Slack) => {
                let signature =
                    encoding::to_hex(&mac(&[b"v0:", timestamp.as_bytes(), b":", body])?);
                vec![
                    (SLACK_TIMESTAMP, text(timestamp)?),
                    (SLACK_SIGNATURE, text(format!("v0={signature}"))?),
                ]
            }
            Scheme::Provider(Provider::Square) => {
                let url = self.url.as_deref().unwrap_or_default();
                vec![(
                    SQUARE_SIGNATURE,
                    text(encoding::to_base64(&mac(&[url.as_bytes(), body])?))?,
                )]
            }
            Scheme::Provider(Provider::Twilio) => {
                let url = self.url.as_deref().unwrap_or_default();
                let content = twilio::signed_content(url, body);
                vec![(
                    TWILIO_SIGNATURE,
                    text(encoding::to_base64(&mac(&[&content])?))?,
                )]
            }
            Scheme::Provider(Provider::Razorpay) => {
                vec![(
                    RAZORPAY_SIGNATURE,
                    text(encoding::to_hex(mac(&[body])?.as_slice()))?,
                )]
            }
            Scheme::Provider(Provider::Adyen) => {
                vec![(
                    ADYEN_SIGNATURE,
                    text(encoding::to_base64(mac(&[body])?.as_slice()))?,
                )]
            }
            Scheme::Generic(generic) => {
                let (digest, extra) = match &generic.signed {
                    SignedContent::Body => (mac(&[body])?, None),
                    SignedContent::UrlAndBody => {
                        let url = self.url.as_deref().unwrap_or_default();
                        (mac(&[url.as_bytes(), body])?, None)
                    }
                    SignedContent::TimestampAndBody { header, separator } => (
                        mac(&[timestamp.as_bytes(), separator.as_bytes(), body])?,
                        Some((header.clone(), text(timestamp.clone())?)),
                    ),
                };
                let encoded = match generic.encoding {
                    Encoding::Hex => encoding::to_hex(digest.as_slice()),
                    Encoding::Base64 => encoding::to_base64(digest.as_slice()),
                };
                let prefix = generic.prefix.as_deref().unwrap_or_default();
                let mut headers = Vec::from_iter(extra);
                headers.push((generic.header.clone(), text(format!("{prefix}{encoded}"))?));
                headers
            }
        };
        Ok(headers)
    }
}

/// `bytes` split around the first `separator`.
fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|byte| *byte == separator)?;
    let (before, rest) = bytes.split_at_checked(at)?;
    Some((before, rest.get(1..)?))
}

fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h [u8], VerifyError> {
    headers
        .get(name)
        .map(HeaderValue::as_bytes)
        .ok_or_else(|| VerifyError::MissingHeader {
            header: name.clone(),
        })
}

fn decoded(
    headers: &HeaderMap,
    name: &HeaderName,
    encoding: Encoding,
    len: usize,
) -> Result<Mac64, VerifyError> {
    decode(header(headers, name)?, encoding, len)
}

/// Decodes a signature that must be `len` bytes. A value that is not one
/// (wrong encoding or length, empty) matches nothing.
fn decode(value: &[u8], encoding: Encoding, len: usize) -> Result<Mac64, VerifyError> {
    let value = value.trim_ascii();
    let decoded = match encoding {
        Encoding::Hex => encoding::hex_mac(value),
        Encoding::Base64 => encoding::base64_mac(value),
    };
    decoded
        .filter(|bytes| bytes.as_slice().len() == len)
        .ok_or(VerifyError::SignatureMismatch)
}
