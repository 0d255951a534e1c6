//! [`Redactor`]: detectors, strategies and key rules, applied to text.

use crate::detector::{Detector, Finding};
use crate::keys::{KeyClass, KeyPolicy};
use crate::scan::{self, secrets::SecretScanner};
use hmac::{Hmac, KeyInit, Mac};
use payguard_core::ConfigError;
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What replaces a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// `[REDACTED:<detector>]`.
    Tag,
    /// For cards, PCI masking; other detectors fall back to [`Strategy::Tag`].
    Mask(CardMask),
    /// `[<detector>:<key id>:<16 letters>]`, a keyed HMAC-SHA256 of the
    /// normalised value (so `+234 803 123 4567` and `08031234567` get the
    /// same pseudonym): correlatable across log lines, not reversible
    /// without the key. Needs [`RedactorBuilder::pseudonym_key`].
    Pseudonym,
    /// Removed, leaving nothing.
    Drop,
}

/// How much of a card number stays visible (PCI DSS 3.4.1 allows at most
/// the BIN and the last four digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CardMask {
    /// `****1111`.
    #[default]
    Last4,
    /// `411111******1111`.
    Bin6Last4,
    /// `41111111****1111` (16 digits and more; shorter cards show BIN 6).
    Bin8Last4,
}

/// A redactor: which detectors run, what replaces their findings, and how
/// keys of structured data are judged. Cheap to clone and share.
///
/// ```
/// use payguard_redact::Redactor;
///
/// let redactor = Redactor::new();
/// let line = "charge failed for ada.obi@example.com (phone +2348031234567) card=4111111111111111";
/// assert_eq!(
///     redactor.redact(line),
///     "charge failed for [REDACTED:email] (phone [REDACTED:phone]) card=****1111"
/// );
/// // Clean text is returned as is, without allocating.
/// assert!(matches!(redactor.redact("order_id=42 amount=500000"), std::borrow::Cow::Borrowed(_)));
/// ```
#[derive(Clone)]
pub struct Redactor {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: [bool; Detector::ALL.len()],
    strategies: [Strategy; Detector::ALL.len()],
    keys: KeyPolicy,
    pseudonym: Option<(String, Hmac<Sha256>)>,
    max_input_bytes: usize,
    bare_ips: bool,
    secrets: SecretScanner,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enabled: Vec<&str> = Detector::ALL
            .iter()
            .filter(|d| self.inner.enabled.get(index(**d)).copied().unwrap_or(false))
            .map(|d| d.name())
            .collect();
        f.debug_struct("Redactor")
            .field("detectors", &enabled)
            .field(
                "pseudonym_key",
                &self.inner.pseudonym.as_ref().map(|(id, _)| id),
            )
            .field("max_input_bytes", &self.inner.max_input_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

const fn index(detector: Detector) -> usize {
    detector.priority() as usize
}

/// Builds a [`Redactor`].
///
/// # Default
///
/// Every detector on; cards masked to the last four digits, everything else
/// tagged; IP addresses only under keys that name one (not bare in free
/// text); no pseudonym key; inputs up to 4 MiB (the rest of a longer input
/// is replaced by a `[TRUNCATED:<n> bytes]` marker, never passed through).
#[derive(Clone)]
pub struct RedactorBuilder {
    enabled: [bool; Detector::ALL.len()],
    strategies: [Strategy; Detector::ALL.len()],
    keys: KeyPolicy,
    pseudonym: Option<(String, Vec<u8>)>,
    max_input_bytes: usize,
    bare_ips: bool,
}

impl fmt::Debug for RedactorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactorBuilder")
            .field("enabled", &self.enabled)
            .field("strategies", &self.strategies)
            .finish_non_exhaustive()
    }
}

impl Default for RedactorBuilder {
    fn default() -> Self {
        let mut strategies = [Strategy::Tag; Detector::ALL.len()];
        if let Some(card) = strategies.get_mut(index(Detector::Card)) {
            *card = Strategy::Mask(CardMask::Last4);
        }
        Self {
            enabled: [true; Detector::ALL.len()],
            strategies,
            keys: KeyPolicy::default(),
            pseudonym: None,
            max_input_bytes: 4 << 20,
            bare_ips: false,
        }
    }
}

impl RedactorBuilder {
    /// Runs exactly these detectors.
    pub fn detectors(mut self, detectors: &[Detector]) -> Self {
        self.enabled = [false; Detector::ALL.len()];
        for detector in detectors {
            if let Some(slot) = self.enabled.get_mut(index(*detector)) {
                *slot = true;
            }
        }
        self
    }

    /// Replaces `detector`'s findings with `strategy`.
    pub fn strategy(mut self, detector: Detector, strategy: Strategy) -> Self {
        if let Some(slot) = self.strategies.get_mut(index(detector)) {
            *slot = strategy;
        }
        self
    }

    /// Keeps values under `key` readable (they are still scanned), for
    /// correlation ids of your own.
    pub fn allow_key(mut self, key: &str) -> Self {
        self.keys
            .allowed
            .insert(crate::keys::Segments::new(key).joined());
        self
    }

    /// Treats values under `key` as secrets.
    pub fn secret_key(mut self, key: &str) -> Self {
        self.keys
            .secret
            .insert(crate::keys::Segments::new(key).joined());
        self
    }

    /// The key for [`Strategy::Pseudonym`], with an id written into each
    /// pseudonym so keys can rotate. At least 32 bytes.
    pub fn pseudonym_key(mut self, id: &str, key: &[u8]) -> Self {
        self.pseudonym = Some((id.to_owned(), key.to_vec()));
        self
    }

    /// Redacts IP addresses anywhere in free text, not only under keys
    /// that name one. Off by default: versions and other dotted numbers
    /// that happen to parse as addresses would go too. An IPv4 address has
    /// 2^32 values, so use [`Strategy::Pseudonym`] (a keyed hash), never an
    /// unkeyed one, to keep addresses correlatable.
    pub const fn bare_ip_addresses(mut self, redact: bool) -> Self {
        self.bare_ips = redact;
        self
    }

    /// The longest input scanned; the rest is replaced by a marker.
    pub const fn max_input_bytes(mut self, bytes: usize) -> Self {
        self.max_input_bytes = bytes;
        self
    }

    /// Builds the redactor.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a detector uses [`Strategy::Pseudonym`]
    /// without a key, the key is shorter than 32 bytes or its id is not
    /// plain ASCII, or `max_input_bytes` is zero.
    pub fn build(self) -> Result<Redactor, ConfigError> {
        let needs_key = self.strategies.contains(&Strategy::Pseudonym);
        let pseudonym = match self.pseudonym {
            Some((id, key)) => {
                if key.len() < 32 {
                    return Err(ConfigError::new("pseudonym_key", "at least 32 bytes"));
                }
                if id.is_empty()
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(ConfigError::new(
                        "pseudonym_key",
                        "an id of ASCII letters, digits, '_' or '-'",
                    ));
                }
                let mac = Hmac::<Sha256>::new_from_slice(&key)
                    .map_err(|_| ConfigError::new("pseudonym_key", "usable as an HMAC key"))?;
                Some((id, mac))
            }
            None if needs_key => {
                return Err(ConfigError::new(
                    "pseudonym_key",
                    "set when a detector uses Strategy::Pseudonym",
                ));
            }
            None => None,
        };
        if self.max_input_bytes == 0 {
            return Err(ConfigError::new("max_input_bytes", "above zero"));
        }
        Ok(Redactor {
            inner: Arc::new(Inner {
                enabled: self.enabled,
                strategies: self.strategies,
                keys: self.keys,
                pseudonym,
                max_input_bytes: self.max_input_bytes,
                bare_ips: self.bare_ips,
                secrets: SecretScanner::new(),
            }),
        })
    }
}

/// What a redaction did, by detector and key rule; never the values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    counts: [usize; Detector::ALL.len()],
    keys_redacted: usize,
    keys_removed: usize,
    truncated: bool,
}

impl Report {
    /// Findings of `detector`.
    pub fn count(&self, detector: Detector) -> usize {
        self.counts.get(index(detector)).copied().unwrap_or(0)
    }

    /// Values replaced because of their key (secrets, personal data).
    pub fn keys_redacted(&self) -> usize {
        self.keys_redacted
    }

    /// Fields removed because of their key (CVV, PIN, track data).
    pub fn keys_removed(&self) -> usize {
        self.keys_removed
    }

    /// Whether an input was longer than the limit and cut.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Every redaction, of any kind.
    pub fn total(&self) -> usize {
        self.counts.iter().sum::<usize>() + self.keys_redacted + self.keys_removed
    }

    /// `(detector name, count)` for detectors that found something.
    pub fn findings(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        Detector::ALL
            .iter()
            .map(|d| (d.name(), self.count(*d)))
            .filter(|(_, count)| *count > 0)
    }

    pub(crate) fn key_redacted(&mut self) {
        self.keys_redacted += 1;
    }

    pub(crate) fn key_removed(&mut self) {
        self.keys_removed += 1;
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, count) in self.findings() {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{name}={count}")?;
            first = false;
        }
        if self.keys_redacted > 0 {
            write!(
                f,
                "{}keys_redacted={}",
                if first { "" } else { " " },
                self.keys_redacted
            )?;
            first = false;
        }
        if self.keys_removed > 0 {
            write!(
                f,
                "{}keys_removed={}",
                if first { "" } else { " " },
                self.keys_removed
            )?;
        }
        Ok(())
    }
}

impl Redactor {
    /// A redactor with the defaults listed on [`RedactorBuilder`].
    pub fn new() -> Self {
        Self::builder().build().unwrap_or_else(|_| Self::fallback())
    }

    /// The defaults cannot fail to build; this is what `new` would do if
    /// they did, rather than panic.
    fn fallback() -> Self {
        Self {
            inner: Arc::new(Inner {
                enabled: [true; Detector::ALL.len()],
                strategies: [Strategy::Tag; Detector::ALL.len()],
                keys: KeyPolicy::default(),
                pseudonym: None,
                max_input_bytes: 4 << 20,
                bare_ips: false,
                secrets: SecretScanner::new(),
            }),
        }
    }

    /// A builder with the defaults.
    pub fn builder() -> RedactorBuilder {
        RedactorBuilder::default()
    }

    /// How `key`'s value is treated in structured data and `tracing` fields.
    pub fn classify_key(&self, key: &str) -> KeyClass {
        self.inner.keys.classify(key)
    }

    /// Redacts free text. Returns the input unchanged (borrowed, no
    /// allocation) when nothing is found.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact_in_context(text, None, &mut Report::default())
    }

    /// Redacts free text and says what was found.
    pub fn redact_with_report<'a>(&self, text: &'a str) -> (Cow<'a, str>, Report) {
        let mut report = Report::default();
        let redacted = self.redact_in_context(text, None, &mut report);
        (redacted, report)
    }

    /// Redacts the value of a field called `key` (`Cow::Owned` when anything
    /// changed): its key rule first (a
    /// secret or personal key is replaced whole, a removable one is dropped),
    /// then the content detectors, which also use the key as context (digits
    /// under `order_id` are not a card).
    pub fn redact_field<'a>(&self, key: &str, value: &'a str) -> Cow<'a, str> {
        self.redact_field_with_report(key, value, &mut Report::default())
    }

    pub(crate) fn redact_field_with_report<'a>(
        &self,
        key: &str,
        value: &'a str,
        report: &mut Report,
    ) -> Cow<'a, str> {
        match self.classify_key(key) {
            // Replacements are owned: `Cow::Owned` always means "changed".
            KeyClass::Remove => {
                report.key_removed();
                Cow::Owned(String::new())
            }
            KeyClass::Secret => {
                report.key_redacted();
                Cow::Owned("[REDACTED:secret]".to_owned())
            }
            KeyClass::Personal => {
                let redacted = self.redact_in_context(value, Some(key), report);
                if matches!(redacted, Cow::Borrowed(_)) && !value.is_empty() {
                    report.key_redacted();
                    Cow::Owned("[REDACTED:personal]".to_owned())
                } else {
                    redacted
                }
            }
            KeyClass::Allowed | KeyClass::Neutral => {
                self.redact_in_context(value, Some(key), report)
            }
        }
    }

    pub(crate) fn redact_in_context<'a>(
        &self,
        text: &'a str,
        key: Option<&str>,
        report: &mut Report,
    ) -> Cow<'a, str> {
        let inner = &*self.inner;
        let (scanned, overflow) = if text.len() > inner.max_input_bytes {
            let mut cut = inner.max_input_bytes;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            (text.get(..cut).unwrap_or_default(), text.len() - cut)
        } else {
            (text, 0)
        };
        let findings = self.find(scanned, key);
        if findings.is_empty() && overflow == 0 {
            return Cow::Borrowed(text);
        }
        let mut output = String::with_capacity(scanned.len() + 16);
        let mut written = 0;
        for finding in &findings {
            output.push_str(scanned.get(written..finding.start).unwrap_or_default());
            let original = scanned.get(finding.start..finding.end).unwrap_or_default();
            self.replacement(finding, original, &mut output);
            if let Some(count) = report.counts.get_mut(index(finding.detector)) {
                *count += 1;
            }
            written = finding.end;
        }
        output.push_str(scanned.get(written..).unwrap_or_default());
        if overflow > 0 {
            report.truncated = true;
            output.push_str(&format!("[TRUNCATED:{overflow} bytes]"));
        }
        Cow::Owned(output)
    }

    fn enabled(&self, detector: Detector) -> bool {
        self.inner
            .enabled
            .get(index(detector))
            .copied()
            .unwrap_or(false)
    }

    /// Every finding, non-overlapping, in order (higher-priority detectors
    /// win overlaps).
    fn find(&self, text: &str, key: Option<&str>) -> Vec<Finding> {
        let bytes = text.as_bytes();
        let mut findings = Vec::new();
        if Detector::ALL
            .iter()
            .any(|d| d.is_secret() && *d != Detector::SensitiveKey && self.enabled(*d))
        {
            self.inner
                .secrets
                .find(bytes, |d| self.enabled(d), &mut findings);
        }
        let has = |byte: u8| memchr::memchr(byte, bytes).is_some();
        if self.enabled(Detector::Email) && (has(b'@') || has(b'%')) {
            scan::emails::find(bytes, &mut findings);
        }
        let digits = scan::digit_count(bytes);
        let context_excludes = digits >= 7 && key.is_some_and(crate::keys::numeric_not_pii);
        if self.enabled(Detector::Iban) && digits >= 2 {
            scan::iban::find(bytes, &mut findings);
        }
        if self.enabled(Detector::Card) && digits >= 12 {
            scan::cards::find(bytes, context_excludes, &mut findings);
        }
        if self.enabled(Detector::IpAddress) {
            let under_ip_key = key.is_some_and(crate::keys::names_an_ip);
            if under_ip_key || self.inner.bare_ips || has(b'=') || has(b':') {
                scan::ips::find(bytes, self.inner.bare_ips, under_ip_key, &mut findings);
            }
        }
        if self.enabled(Detector::Phone) && digits >= 7 {
            scan::phones::find(bytes, context_excludes, &mut findings);
        }
        if self.enabled(Detector::SensitiveKey) && (has(b':') || has(b'=')) {
            scan::pairs::find(bytes, &self.inner.keys, &mut findings);
        }
        if findings.len() > 1 {
            findings.sort_by_key(|f| (f.start, f.detector.priority(), usize::MAX - f.end));
            let mut kept: Vec<Finding> = Vec::with_capacity(findings.len());
            for finding in findings {
                match kept.last_mut() {
                    Some(last) if finding.start < last.end => {
                        // Overlap: the higher-priority detector keeps it,
                        // stretched over both so nothing leaks at an edge.
                        if finding.detector.priority() < last.detector.priority() {
                            last.detector = finding.detector;
                        }
                        last.end = last.end.max(finding.end);
                    }
                    _ => kept.push(finding),
                }
            }
            findings = kept;
        }
        findings
    }

    fn replacement(&self, finding: &Finding, original: &str, output: &mut String) {
        let strategy = self
            .inner
            .strategies
            .get(index(finding.detector))
            .copied()
            .unwrap_or(Strategy::Tag);
        match (strategy, finding.detector) {
            (Strategy::Drop, _) => {}
            (Strategy::Mask(mask), Detector::Card) => mask_card(original, mask, output),
            (Strategy::Pseudonym, detector) => match &self.inner.pseudonym {
                Some((id, mac)) => {
                    let normalized = normalize(detector, original, finding.country);
                    let mut mac = mac.clone();
                    mac.update(detector.name().as_bytes());
                    mac.update(&[0]);
                    mac.update(normalized.as_bytes());
                    let digest = mac.finalize().into_bytes();
                    output.push('[');
                    output.push_str(detector.name());
                    output.push(':');
                    output.push_str(id);
                    output.push(':');
                    // Letters only, so a pseudonym is never re-detected as digits.
                    for byte in digest.iter().take(8) {
                        output.push(char::from(b'a' + (byte >> 4)));
                        output.push(char::from(b'a' + (byte & 0x0F)));
                    }
                    output.push(']');
                }
                None => tag(detector.name(), output),
            },
            (_, detector) => tag(finding.label.unwrap_or(detector.name()), output),
        }
    }
}

fn tag(label: &str, output: &mut String) {
    output.push_str("[REDACTED:");
    output.push_str(label);
    output.push(']');
}

/// Fixed-width masks, so the output does not reveal the card's length.
fn mask_card(original: &str, mask: CardMask, output: &mut String) {
    let digits: Vec<char> = original.chars().filter(char::is_ascii_digit).collect();
    let last4 = digits.iter().skip(digits.len().saturating_sub(4));
    let (bin, stars) = match mask {
        CardMask::Last4 => (0, "****"),
        CardMask::Bin8Last4 if digits.len() >= 16 => (8, "****"),
        CardMask::Bin6Last4 | CardMask::Bin8Last4 => (6, "******"),
    };
    output.extend(digits.iter().take(bin));
    output.push_str(stars);
    output.extend(last4);
}

/// The form two spellings of the same value share, for pseudonyms.
fn normalize(detector: Detector, original: &str, country: Option<&str>) -> String {
    match detector {
        Detector::Email => original.to_ascii_lowercase().replace("%40", "@"),
        Detector::Card => original.chars().filter(char::is_ascii_digit).collect(),
        Detector::IpAddress => original
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| original.to_ascii_lowercase(), |ip| ip.to_string()),
        Detector::Iban => original
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase(),
        Detector::Phone => {
            let international = original.trim_start().starts_with('+');
            let mut digits: String = original.chars().filter(char::is_ascii_digit).collect();
            let bracketed_zero = original.contains("(0)");
            if !international && digits.starts_with("00") {
                digits.drain(..2);
            } else if !international {
                // National (trunk 0) or MSISDN.
                if let Some(code) = country {
                    if let Some(national) = digits.strip_prefix('0') {
                        digits = format!("{code}{national}");
                    } else if !digits.starts_with(code) {
                        digits = format!("{code}{digits}");
                    }
                }
            }
            if let Some(code) = country
                && (bracketed_zero || international)
                && let Some(rest) = digits.strip_prefix(code)
                && let Some(national) = rest.strip_prefix('0')
            {
                digits = format!("{code}{national}");
            }
            digits
        }
        _ => original.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_masks() {
        let mut out = String::new();
        mask_card("4111 1111 1111 1111", CardMask::Last4, &mut out);
        assert_eq!(out, "****1111");
        out.clear();
        mask_card("4111111111111111", CardMask::Bin6Last4, &mut out);
        assert_eq!(out, "411111******1111");
        out.clear();
        mask_card("4111111111111111", CardMask::Bin8Last4, &mut out);
        assert_eq!(out, "41111111****1111");
    }

    #[test]
    fn phone_normalisation_agrees_across_forms() {
        let forms = [
            ("+234 803 123 4567", "234"),
            ("08031234567", "234"),
            ("2348031234567", "234"),
            ("+234 (0) 803 123 4567", "234"),
            ("002348031234567", "234"),
        ];
        for (form, country) in forms {
            assert_eq!(
                normalize(Detector::Phone, form, Some(country)),
                "2348031234567",
                "{form}"
            );
        }
    }
}
