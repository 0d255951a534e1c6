//! The providers with a built-in scheme.

use std::fmt;
use std::str::FromStr;

/// A webhook sender whose scheme is built in. The names (`Display`,
/// `FromStr`) are the ones the `payguard webhook` CLI takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// `Stripe-Signature: t=…,v1=…`, HMAC-SHA256 over `t.body`.
    Stripe,
    /// Standard Webhooks `webhook-*` headers: `v1` HMAC-SHA256 and `v1a`
    /// Ed25519 over `id.timestamp.body`.
    StandardWebhooks,
    /// Svix: Standard Webhooks with `svix-*` header names.
    Svix,
    /// `x-paystack-signature`, HMAC-SHA512 hex of the body keyed with the
    /// secret API key.
    Paystack,
    /// `flutterwave-signature` (base64 HMAC-SHA256 of the body), or the
    /// legacy `verif-hash` shared secret.
    Flutterwave,
    /// `X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 of the body.
    Shopify,
    /// `X-Hub-Signature-256: sha256=…` (the SHA-1 header is ignored).
    Github,
    /// `X-Slack-Signature: v0=…` over `v0:timestamp:body`.
    Slack,
    /// `x-square-hmacsha256-signature`, base64 HMAC-SHA256 of URL + body.
    Square,
    /// `X-Twilio-Signature`, base64 HMAC-SHA1 of URL + sorted form
    /// parameters (or URL with `bodySHA256` for JSON bodies).
    Twilio,
    /// `X-Razorpay-Signature`, hex HMAC-SHA256 of the body.
    Razorpay,
    /// Adyen: `HmacSignature` over the body (banking webhooks), or each
    /// notification item's `hmacSignature`; hex keys.
    Adyen,
}

impl Provider {
    /// Every built-in provider.
    pub const ALL: [Provider; 12] = [
        Provider::Stripe,
        Provider::StandardWebhooks,
        Provider::Svix,
        Provider::Paystack,
        Provider::Flutterwave,
        Provider::Shopify,
        Provider::Github,
        Provider::Slack,
        Provider::Square,
        Provider::Twilio,
        Provider::Razorpay,
        Provider::Adyen,
    ];

    /// The CLI name: `stripe`, `standard-webhooks`, `svix`, ...
    pub const fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::StandardWebhooks => "standard-webhooks",
            Provider::Svix => "svix",
            Provider::Paystack => "paystack",
            Provider::Flutterwave => "flutterwave",
            Provider::Shopify => "shopify",
            Provider::Github => "github",
            Provider::Slack => "slack",
            Provider::Square => "square",
            Provider::Twilio => "twilio",
            Provider::Razorpay => "razorpay",
            Provider::Adyen => "adyen",
        }
    }

    /// Whether the scheme signs a timestamp (and so has a replay window).
    pub const fn signs_timestamp(self) -> bool {
        matches!(
            self,
            Provider::Stripe | Provider::StandardWebhooks | Provider::Svix | Provider::Slack
        )
    }

    /// Whether the scheme signs the URL, which must then be configured.
    pub const fn signs_url(self) -> bool {
        matches!(self, Provider::Square | Provider::Twilio)
    }

    /// The request headers that carry this provider's signature, or its
    /// shared secret itself (Flutterwave's `verif-hash`), lowercase: never
    /// log them unredacted. `payguard-redact` redacts every one of them in
    /// text, JSON and header maps.
    ///
    /// ```
    /// use payguard_webhook::Provider;
    /// assert_eq!(Provider::Flutterwave.secret_headers(), ["flutterwave-signature", "verif-hash"]);
    /// ```
    pub const fn secret_headers(self) -> &'static [&'static str] {
        match self {
            Provider::Stripe => &["stripe-signature"],
            Provider::StandardWebhooks => &["webhook-signature"],
            Provider::Svix => &["svix-signature"],
            Provider::Paystack => &["x-paystack-signature"],
            Provider::Flutterwave => &["flutterwave-signature", "verif-hash"],
            Provider::Shopify => &["x-shopify-hmac-sha256", "shopify-hmac-sha256"],
            Provider::Github => &["x-hub-signature-256", "x-hub-signature"],
            Provider::Slack => &["x-slack-signature"],
            Provider::Square => &["x-square-hmacsha256-signature", "x-square-signature"],
            Provider::Twilio => &["x-twilio-signature"],
            Provider::Razorpay => &["x-razorpay-signature"],
            Provider::Adyen => &["hmacsignature"],
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A provider name that is not one of [`Provider::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProvider(String);

impl UnknownProvider {
    /// The stable code `unknown_provider`.
    pub fn code(&self) -> &'static str {
        "unknown_provider"
    }
}

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown webhook provider {:?}; expected one of ", self.0)?;
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        f.write_str(&names.join(", "))
    }
}

impl std::error::Error for UnknownProvider {}

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|provider| provider.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| UnknownProvider(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(provider.name().parse::<Provider>(), Ok(provider));
        }
        assert_eq!(
            "Standard-Webhooks".parse::<Provider>(),
            Ok(Provider::StandardWebhooks)
        );
        let error = "mitto".parse::<Provider>().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("stripe, standard-webhooks, svix")
        );
    }
}
