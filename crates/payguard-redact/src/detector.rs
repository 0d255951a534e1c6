//! The detectors a redactor can be built from.

use std::fmt;

/// A kind of sensitive content found in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Detector {
    /// Payment card numbers: issuer range (Visa, Mastercard incl. 2-series,
    /// Amex, Discover, JCB, Diners, UnionPay, Verve, Mir), length, Luhn,
    /// compact or in card groupings, never bridging into a neighbouring number.
    Card,
    /// Phone numbers of Nigeria, Ghana, Kenya, South Africa, Uganda,
    /// Tanzania, Rwanda, Zambia, Malawi, Egypt, Cameroon, Côte d'Ivoire,
    /// Senegal, Greece, the US and the UK: E.164, `00`-prefixed, MSISDN and
    /// national forms.
    Phone,
    /// Email addresses, `%40`-encoded ones and punycode domains included.
    Email,
    /// IBANs (per-country length and mod-97 checksum), compact or grouped.
    Iban,
    /// IPv4 and IPv6 addresses (personal data under the GDPR) under keys
    /// that name one (`client_ip`, `x-forwarded-for`, `remote_addr`, ...),
    /// with the rest of their comma lists; anywhere in free text with
    /// [`RedactorBuilder::bare_ip_addresses`](crate::RedactorBuilder::bare_ip_addresses).
    IpAddress,
    /// `Bearer` and `Basic` credentials (the scheme word stays).
    BearerToken,
    /// JSON Web Tokens (`eyJ…`).
    Jwt,
    /// Provider secret keys: `sk_live_`/`sk_test_`, `rk_`, `whsec_`,
    /// `whsk_`, Flutterwave `FLWSECK-`; and client secrets that embed their
    /// object's id (`pi_…_secret_…`, `pay_…_secret_…`), of which the id
    /// stays readable.
    ProviderKey,
    /// PEM private key bodies (the BEGIN/END lines stay).
    PrivateKey,
    /// Passwords in URL user info (`https://user:password@host`).
    UrlPassword,
    /// Credential parameters: `token=`, `access_token=`, `password=`,
    /// `api_key=`, `secret=`, `signature=`, ...
    CredentialParam,
    /// `Cookie:`, `Set-Cookie:` and `Authorization:` header values in text.
    CredentialHeader,
    /// Values of `key=value`, `key: value` and `"key":"value"` pairs whose
    /// key names a secret or personal data (`password`, `client_secret`,
    /// `bvn`, `account_number`, `cvv`, ...), judged segment by segment.
    SensitiveKey,
}

impl Detector {
    /// Every detector, in priority order (earlier wins an overlap).
    pub const ALL: [Detector; 13] = [
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::BearerToken,
        Detector::CredentialHeader,
        Detector::ProviderKey,
        Detector::UrlPassword,
        Detector::CredentialParam,
        Detector::Email,
        Detector::Iban,
        Detector::Card,
        Detector::IpAddress,
        Detector::Phone,
        Detector::SensitiveKey,
    ];

    /// The detector's name, used in tags (`[REDACTED:email]`) and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Detector::Card => "card",
            Detector::Phone => "phone",
            Detector::Email => "email",
            Detector::Iban => "iban",
            Detector::IpAddress => "ip",
            Detector::BearerToken => "bearer",
            Detector::Jwt => "jwt",
            Detector::ProviderKey => "provider_key",
            Detector::PrivateKey => "private_key",
            Detector::UrlPassword => "url_password",
            Detector::CredentialParam => "credential",
            Detector::CredentialHeader => "credential_header",
            Detector::SensitiveKey => "sensitive_key",
        }
    }

    /// Whether this detector finds secrets (as opposed to personal data).
    pub const fn is_secret(self) -> bool {
        !matches!(
            self,
            Detector::Card
                | Detector::Phone
                | Detector::Email
                | Detector::Iban
                | Detector::IpAddress
        )
    }

    pub(crate) const fn priority(self) -> u8 {
        match self {
            Detector::PrivateKey => 0,
            Detector::Jwt => 1,
            Detector::BearerToken => 2,
            Detector::CredentialHeader => 3,
            Detector::ProviderKey => 4,
            Detector::UrlPassword => 5,
            Detector::CredentialParam => 6,
            Detector::Email => 7,
            Detector::Iban => 8,
            Detector::Card => 9,
            Detector::IpAddress => 10,
            Detector::Phone => 11,
            Detector::SensitiveKey => 12,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One span of sensitive content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) detector: Detector,
    /// For phones, the country calling code it was read with (normalises
    /// national forms for pseudonyms).
    pub(crate) country: Option<&'static str>,
    /// For key rules, what the tag says (`secret`, `personal`, `removed`).
    pub(crate) label: Option<&'static str>,
}

impl Finding {
    pub(crate) const fn new(start: usize, end: usize, detector: Detector) -> Self {
        Self {
            start,
            end,
            detector,
            country: None,
            label: None,
        }
    }
}
