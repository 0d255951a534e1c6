//! The simulator's books: charges, transfers, refunds, recipients and
//! balances, and the events their changes produce.

use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A simulated payment provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Paystack, under `/paystack`.
    Paystack,
    /// Flutterwave v3, under `/flutterwave/v3`.
    Flutterwave,
}

impl Provider {
    /// `paystack` or `flutterwave`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paystack => "paystack",
            Self::Flutterwave => "flutterwave",
        }
    }
}

/// A customer payment.
#[derive(Debug, Clone, Serialize)]
pub struct Charge {
    /// Who took it.
    pub provider: Provider,
    /// The provider's numeric id.
    pub id: u64,
    /// The merchant's reference (`tx_ref` for Flutterwave).
    pub reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO currency.
    pub currency: String,
    /// The customer's email.
    pub email: String,
    /// Paystack: `pending`, `success`, `failed`, `abandoned`; Flutterwave:
    /// `pending`, `successful`, `failed`.
    pub status: String,
    /// Minor units refunded so far (refunds that did not fail).
    pub refunded: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once paid.
    pub paid_at: Option<String>,
}

/// A payout to a bank account.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// Who made it.
    pub provider: Provider,
    /// The provider's numeric id.
    pub id: u64,
    /// The merchant's reference: at most one transfer per provider and reference.
    pub reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO currency.
    pub currency: String,
    /// Paystack recipient code, or `bank_code:account_number` for Flutterwave.
    pub recipient: String,
    /// Reason or narration.
    pub reason: String,
    /// Paystack: `pending`, `success`, `failed`, `reversed`; Flutterwave:
    /// `NEW`, `SUCCESSFUL`, `FAILED`, `REVERSED`.
    pub status: String,
    /// Paystack's `TRF_...` code.
    pub transfer_code: String,
    /// How many create requests named this reference (1 when the client
    /// never retried; more when it retried with the same reference).
    pub create_requests: u32,
    /// Times the transfer was (re)started: 1, plus Flutterwave retries.
    pub attempts: u32,
    /// Why it failed.
    pub failure: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(skip)]
    pub(crate) fingerprint: String,
}

/// A refund of a charge.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    /// Who made it.
    pub provider: Provider,
    /// The provider's numeric id.
    pub id: u64,
    /// The refunded charge's reference.
    pub charge_reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO currency.
    pub currency: String,
    /// `pending`, then `processed` (Flutterwave `completed`) or `failed`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A Paystack transfer recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    /// `RCP_...`.
    pub recipient_code: String,
    /// Account holder.
    pub name: String,
    /// Bank account number.
    pub account_number: String,
    /// Bank code.
    pub bank_code: String,
    /// ISO currency.
    pub currency: String,
}

/// A webhook event produced by a state change.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub provider: Provider,
    pub name: &'static str,
    pub data: Value,
}

/// Everything the simulator knows.
#[derive(Debug, Default)]
pub(crate) struct Books {
    pub charges: BTreeMap<(Provider, String), Charge>,
    pub transfers: BTreeMap<(Provider, String), Transfer>,
    pub refunds: Vec<Refund>,
    pub recipients: BTreeMap<String, Recipient>,
    /// Per provider and currency, minor units.
    pub balances: BTreeMap<(Provider, String), i64>,
    pub next_id: u64,
    /// Flutterwave `X-Idempotency-Key` → the first response (status, body).
    pub idempotent_responses: BTreeMap<String, (u16, Vec<u8>)>,
}

/// What `GET /_sim/state` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Every charge.
    pub charges: Vec<Charge>,
    /// Every transfer.
    pub transfers: Vec<Transfer>,
    /// Every refund.
    pub refunds: Vec<Refund>,
    /// Every Paystack recipient.
    pub recipients: Vec<Recipient>,
    /// `provider` → `currency` → minor units.
    pub balances: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Books {
    pub(crate) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        1_000_000 + self.next_id
    }

    /// Credits (or debits, if negative) a balance that starts at `initial`.
    pub(crate) fn credit(&mut self, provider: Provider, currency: &str, amount: i64, initial: i64) {
        let balance = self
            .balances
            .entry((provider, currency.to_owned()))
            .or_insert(initial);
        *balance = balance.saturating_add(amount);
    }

    pub(crate) fn balance(&self, provider: Provider, currency: &str, initial: i64) -> i64 {
        self.balances
            .get(&(provider, currency.to_owned()))
            .copied()
            .unwrap_or(initial)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut balances: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for ((provider, currency), amount) in &self.balances {
            balances
                .entry(provider.as_str().to_owned())
                .or_default()
                .insert(currency.clone(), *amount);
        }
        Snapshot {
            charges: self.charges.values().cloned().collect(),
            transfers: self.transfers.values().cloned().collect(),
            refunds: self.refunds.clone(),
            recipients: self.recipients.values().cloned().collect(),
            balances,
        }
    }
}

impl Charge {
    pub(crate) fn paystack_json(&self) -> Value {
        json!({
            "id": self.id,
            "domain": "test",
            "status": self.status,
            "reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "gateway_response": match self.status.as_str() {
                "success" => "Successful",
                "failed" => "Declined",
                "abandoned" => "The transaction was not completed",
                _ => "Pending",
            },
            "channel": "card",
            "paid_at": self.paid_at,
            "created_at": self.created_at,
            "customer": { "email": self.email },
        })
    }

    pub(crate) fn flutterwave_json(&self) -> Value {
        json!({
            "id": self.id,
            "tx_ref": self.reference,
            "flw_ref": format!("FLW-SIM-{}", self.id),
            "amount": crate::api::major(self.amount),
            "charged_amount": crate::api::major(self.amount),
            "currency": self.currency,
            "status": self.status,
            "payment_type": "card",
            "created_at": self.created_at,
            "customer": { "email": self.email },
        })
    }
}

impl Transfer {
    pub(crate) fn paystack_json(&self) -> Value {
        json!({
            "id": self.id,
            "integration": 1,
            "domain": "test",
            "reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "source": "balance",
            "reason": self.reason,
            "recipient": self.recipient,
            "status": self.status,
            "transfer_code": self.transfer_code,
            "failures": self.failure,
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        })
    }

    pub(crate) fn flutterwave_json(&self) -> Value {
        let (bank_code, account_number) = self
            .recipient
            .split_once(':')
            .unwrap_or(("", self.recipient.as_str()));
        json!({
            "id": self.id,
            "account_number": account_number,
            "bank_code": bank_code,
            "full_name": "Simulated Account",
            "created_at": self.created_at,
            "currency": self.currency,
            "debit_currency": self.currency,
            "amount": crate::api::major(self.amount),
            "fee": 0,
            "status": self.status,
            "reference": self.reference,
            "narration": self.reason,
            "complete_message": self.failure.clone().unwrap_or_default(),
            "requires_approval": 0,
            "is_approved": 1,
            "bank_name": "SIMULATED BANK",
        })
    }
}

impl Refund {
    pub(crate) fn paystack_json(&self) -> Value {
        json!({
            "id": self.id,
            "transaction": { "reference": self.charge_reference },
            "transaction_reference": self.charge_reference,
            "refund_reference": format!("rfd_{}", self.id),
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "createdAt": self.created_at,
        })
    }

    pub(crate) fn flutterwave_json(&self, charge_id: u64) -> Value {
        json!({
            "id": self.id,
            "tx_id": charge_id,
            "tx_ref": self.charge_reference,
            "amount_refunded": crate::api::major(self.amount),
            "currency": self.currency,
            "status": self.status,
            "created_at": self.created_at,
        })
    }
}

/// `2026-11-25T19:30:05.123Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_634_791_100)),
            "2026-11-25T19:26:31.100Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
