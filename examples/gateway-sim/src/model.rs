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
    /// Paystack: `abandoned` until the customer pays (not final: a later
    /// payment succeeds), `ongoing`, `success`, `failed`; Flutterwave:
    /// `pending`, `successful`, `failed`.
    pub status: String,
    /// Whether the customer attempted payment. Flutterwave has no
    /// transaction before that: verify answers "No transaction was found".
    pub attempted: bool,
    /// Minor units refunded so far (refunds that did not fail).
    pub refunded: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once paid.
    pub paid_at: Option<String>,
    /// What the merchant sent as `metadata` (Paystack) or `meta`
    /// (Flutterwave), echoed on verify and in webhooks.
    pub metadata: Value,
    /// The customer's name and phone, if the merchant sent them.
    pub customer_name: Option<String>,
    /// The customer's phone.
    pub customer_phone: Option<String>,
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
    /// Paystack: `pending`, `otp`, `received` (not conclusive), then
    /// `success`, `failed`, `reversed`, `abandoned`, `blocked` or
    /// `rejected`; Flutterwave: `NEW`, `PENDING`, then `SUCCESSFUL`,
    /// `FAILED` (or `REVERSED`, which only this simulator sends).
    pub status: String,
    /// Paystack's `TRF_...` code.
    pub transfer_code: String,
    /// How many create requests named this reference (1 when the client
    /// never retried; more when it retried with the same reference).
    pub create_requests: u32,
    /// Times the transfer was tried: 1, plus its Flutterwave retries
    /// (each a transfer of its own, `<reference>_RETRY_<n>`).
    pub attempts: u32,
    /// The Flutterwave transfer this one retries.
    pub retry_of: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, at the last change.
    pub updated_at: String,
    /// RFC 3339, once paid.
    pub transferred_at: Option<String>,
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
    /// Paystack: `pending`, `processing`, then `processed` or `failed`;
    /// Flutterwave: `pending`, then `completed` or `failed`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once processed or failed.
    pub settled_at: Option<String>,
}

/// A Paystack transfer recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    /// Paystack's numeric id (what `POST /transfer` answers as `recipient`).
    pub id: u64,
    /// `RCP_...`.
    pub recipient_code: String,
    /// `nuban`, `mobile_money`, `basa`, `ghipss`, `kepss`,
    /// `mobile_money_business` or `authorization`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Account holder.
    pub name: String,
    /// Account number; none for an `authorization` recipient.
    pub account_number: Option<String>,
    /// Bank (or mobile money operator) code.
    pub bank_code: String,
    /// `AUTH_...`, for an `authorization` recipient.
    pub authorization_code: Option<String>,
    /// ISO currency.
    pub currency: String,
    /// RFC 3339.
    pub created_at: String,
}

impl Recipient {
    pub(crate) fn paystack_json(&self) -> Value {
        json!({
            "active": true,
            "createdAt": self.created_at,
            "currency": self.currency,
            "description": "",
            "domain": "test",
            "email": null,
            "id": self.id,
            "integration": INTEGRATION,
            "metadata": null,
            "name": self.name,
            "recipient_code": self.recipient_code,
            "type": self.kind,
            "updatedAt": self.created_at,
            "is_deleted": false,
            "isDeleted": false,
            "details": {
                "authorization_code": self.authorization_code,
                "account_number": self.account_number,
                "account_name": self.name,
                "bank_code": self.bank_code,
                "bank_name": crate::banks::name(&self.bank_code),
            },
        })
    }
}

/// The simulated merchant's integration id.
pub(crate) const INTEGRATION: u64 = 463_433;

/// A webhook event produced by a state change.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub provider: Provider,
    pub name: &'static str,
    pub data: Value,
    /// Flutterwave's top-level `event.type` (`CARD_TRANSACTION`, `Transfer`).
    pub event_type: Option<&'static str>,
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

/// A stable number from text (FNV-1a), for ids derived from an email.
fn stable(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A customer's id, the same for the same email, below 2^32 (some typed
/// clients read ids as `u32`).
fn customer_id(email: &str) -> u64 {
    100_000_000 + stable(email) % 900_000_000
}

/// `CUS_` and 15 lowercase letters and digits, the same for the same email.
fn customer_code(email: &str) -> String {
    let mut hash = stable(email);
    let mut code = String::from("CUS_");
    for _ in 0..15 {
        let digit = u8::try_from(hash % 36).unwrap_or(0);
        code.push(char::from(if digit < 26 {
            b'a' + digit
        } else {
            b'0' + digit - 26
        }));
        hash = (hash / 36).wrapping_add(stable(&code));
    }
    code
}

/// Paystack's local card fee: 1.5 %, plus NGN 100 from NGN 2,500, at most
/// NGN 2,000 (kobo).
fn paystack_fee(amount: i64) -> i64 {
    let fee = amount * 15 / 1000 + if amount >= 250_000 { 10_000 } else { 0 };
    fee.min(200_000)
}

/// Flutterwave's local fee, 1.4 %, in minor units.
fn flutterwave_fee(amount: i64) -> i64 {
    amount * 14 / 1000
}

/// Flutterwave's fee for a transfer of `amount` minor units, in major
/// units: 10.75 up to 5,000, 26.875 up to 50,000, 53.75 above.
pub(crate) fn transfer_fee(amount: i64) -> f64 {
    if amount <= 500_000 {
        10.75
    } else if amount <= 5_000_000 {
        26.875
    } else {
        53.75
    }
}

/// The simulated merchant, as Paystack's transfer webhooks show it.
fn paystack_integration() -> Value {
    json!({ "id": INTEGRATION, "is_live": false, "business_name": "gateway-sim", "logo_path": null })
}

impl Charge {
    fn paid(&self) -> bool {
        matches!(self.status.as_str(), "success" | "successful" | "reversed")
    }

    /// The transaction, as Paystack's verify, fetch, list and
    /// `charge.success` show it (the sample of
    /// <https://paystack.com/docs/api/transaction/#verify>).
    pub(crate) fn paystack_json(&self) -> Value {
        let paid = self.paid();
        let authorization = if paid {
            json!({
                "authorization_code": format!("AUTH_{:010}", self.id),
                "bin": "408408", "last4": "4081", "exp_month": "12", "exp_year": "2030",
                "channel": "card", "card_type": "visa ", "bank": "TEST BANK",
                "country_code": "NG", "brand": "visa", "reusable": true,
                "signature": format!("SIG_{:016}", self.id), "account_name": null,
            })
        } else {
            json!({})
        };
        let (first_name, last_name) = self
            .customer_name
            .as_deref()
            .and_then(|name| name.split_once(' '))
            .map_or((Value::Null, Value::Null), |(first, last)| {
                (json!(first), json!(last))
            });
        json!({
            "id": self.id,
            "domain": "test",
            "status": self.status,
            "reference": self.reference,
            "receipt_number": null,
            "amount": self.amount,
            "message": null,
            "gateway_response": match self.status.as_str() {
                "success" | "reversed" => "Successful",
                "failed" => "Declined",
                "ongoing" => "Awaiting customer action",
                _ => "The transaction was not completed",
            },
            "paid_at": self.paid_at,
            "created_at": self.created_at,
            "channel": "card",
            "currency": self.currency,
            "ip_address": if self.attempted { json!("127.0.0.1") } else { Value::Null },
            "metadata": if self.metadata.is_null() { json!("") } else { self.metadata.clone() },
            "log": null,
            "fees": if paid { json!(paystack_fee(self.amount)) } else { Value::Null },
            "fees_split": null,
            "authorization": authorization,
            "customer": {
                "id": customer_id(&self.email),
                "first_name": first_name,
                "last_name": last_name,
                "email": self.email,
                "customer_code": customer_code(&self.email),
                "phone": self.customer_phone,
                "metadata": null,
                "risk_action": "default",
                "international_format_phone": null,
            },
            "plan": null,
            "split": {},
            "order_id": null,
            "paidAt": self.paid_at,
            "createdAt": self.created_at,
            "requested_amount": self.amount,
            "pos_transaction_data": null,
            "source": null,
            "fees_breakdown": null,
            "connect": null,
            "transaction_date": self.created_at,
            "plan_object": {},
            "subaccount": {},
        })
    }

    /// The transaction, as Flutterwave's verify and `charge.completed`
    /// show it (<https://developer.flutterwave.com/docs/transaction-verification>).
    pub(crate) fn flutterwave_json(&self) -> Value {
        let fee = flutterwave_fee(self.amount);
        json!({
            "id": self.id,
            "tx_ref": self.reference,
            "flw_ref": format!("FLW-SIM-{}", self.id),
            "device_fingerprint": "N/A",
            "amount": crate::api::major(self.amount),
            "currency": self.currency,
            "charged_amount": crate::api::major(self.amount),
            "app_fee": crate::api::major(fee),
            "merchant_fee": 0,
            "processor_response": match self.status.as_str() {
                "successful" => "Approved by Financial Institution",
                "failed" => "Declined",
                _ => "Pending",
            },
            "auth_model": "PIN",
            "ip": "127.0.0.1",
            "narration": "CARD Transaction ",
            "status": self.status,
            "payment_type": "card",
            "created_at": self.created_at,
            "account_id": 17321,
            "amount_settled": crate::api::major(self.amount - fee),
            "card": {
                "first_6digits": "553188", "last_4digits": "2950", "issuer": "MASTERCARD  CREDIT",
                "country": "NG", "type": "MASTERCARD", "expiry": "09/32",
            },
            "meta": self.metadata,
            "customer": {
                "id": customer_id(&self.email),
                "name": self.customer_name.clone().unwrap_or_else(|| "Anonymous customer".to_owned()),
                "phone_number": self.customer_phone,
                "email": self.email,
                "created_at": self.created_at,
            },
        })
    }
}

impl Transfer {
    /// The transfer with `recipient` as Paystack's integer id, as `POST
    /// /transfer` answers it.
    pub(crate) fn paystack_created_json(&self, books: &Books) -> Value {
        let mut json = self.paystack_json(books);
        let recipient_id = books
            .recipients
            .get(&self.recipient)
            .map_or(Value::Null, |recipient| json!(recipient.id));
        if let Value::Object(fields) = &mut json {
            fields.insert("recipient".to_owned(), recipient_id);
            fields.insert("transfersessionid".to_owned(), json!([]));
            fields.insert("transfertrials".to_owned(), json!([]));
        }
        json
    }

    /// The transfer with its recipient as an object, as verify, fetch and
    /// list answer it (<https://paystack.com/docs/api/transfer/#verify>).
    pub(crate) fn paystack_json(&self, books: &Books) -> Value {
        let recipient = books
            .recipients
            .get(&self.recipient)
            .map_or(Value::Null, Recipient::paystack_json);
        json!({
            "amount": self.amount,
            "createdAt": self.created_at,
            "currency": self.currency,
            "domain": "test",
            "failures": null,
            "id": self.id,
            "integration": INTEGRATION,
            "reason": self.reason,
            "reference": self.reference,
            "source": "balance",
            "source_details": null,
            "status": self.status,
            "titan_code": null,
            "transfer_code": self.transfer_code,
            "request": self.id + 1,
            "transferred_at": self.transferred_at,
            "updatedAt": self.updated_at,
            "recipient": recipient,
            "session": match self.status.as_str() {
                "success" | "reversed" => json!({ "provider": "nip", "id": format!("{:030}", self.id) }),
                _ => json!({ "provider": null, "id": null }),
            },
            "fee_charged": 0,
            "fees_breakdown": null,
            "gateway_response": self.failure,
        })
    }

    /// A transfer webhook's `data`: the transfer, with the integration as
    /// an object and both spellings of the timestamps, as in Paystack's
    /// `transfer.*` samples.
    pub(crate) fn paystack_event_json(&self, books: &Books) -> Value {
        let mut json = self.paystack_json(books);
        if let Value::Object(fields) = &mut json {
            fields.insert("integration".to_owned(), paystack_integration());
            fields.insert("created_at".to_owned(), json!(self.created_at));
            fields.insert("updated_at".to_owned(), json!(self.updated_at));
        }
        json
    }

    fn account(&self) -> (&str, &str) {
        self.recipient
            .split_once(':')
            .unwrap_or(("", self.recipient.as_str()))
    }

    /// The transfer as Flutterwave's API answers it.
    pub(crate) fn flutterwave_json(&self) -> Value {
        let (bank_code, account_number) = self.account();
        json!({
            "id": self.id,
            "account_number": account_number,
            "bank_code": bank_code,
            "full_name": "Simulated Account",
            "created_at": self.created_at,
            "currency": self.currency,
            "debit_currency": self.currency,
            "amount": crate::api::major(self.amount),
            "fee": transfer_fee(self.amount),
            "status": self.status,
            "reference": self.reference,
            "meta": null,
            "narration": self.reason,
            "approver": null,
            "complete_message": self.failure.clone().unwrap_or_default(),
            "requires_approval": 0,
            "is_approved": 1,
            "bank_name": crate::banks::name(bank_code),
        })
    }

    /// `transfer.completed`'s `data`: `fullname`, not `full_name`.
    pub(crate) fn flutterwave_event_json(&self) -> Value {
        let mut json = self.flutterwave_json();
        if let Value::Object(fields) = &mut json
            && let Some(name) = fields.remove("full_name")
        {
            fields.insert("fullname".to_owned(), name);
        }
        json
    }
}

impl Refund {
    /// The refund as Paystack's API answers it; `transaction` is the
    /// transaction object when `charge` is given (`POST /refund`), else
    /// its id (fetch and list).
    pub(crate) fn paystack_json(&self, charge_id: u64, charge: Option<&Charge>) -> Value {
        let processed = self.status == "processed";
        json!({
            "transaction": charge.map_or(json!(charge_id), Charge::paystack_json),
            "integration": INTEGRATION,
            "dispute": null,
            "settlement": null,
            "id": self.id,
            "domain": "test",
            "currency": self.currency,
            "amount": self.amount,
            "status": self.status,
            "channel": null,
            "refunded_at": if processed { json!(self.settled_at) } else { Value::Null },
            "expected_at": self.created_at,
            "refunded_by": "merchant@gateway-sim.test",
            "customer_note": format!("Refund for transaction {}", self.charge_reference),
            "merchant_note": format!("Refund for transaction {}", self.charge_reference),
            "deducted_amount": if processed { self.amount } else { 0 },
            "fully_deducted": processed,
            "transaction_reference": self.charge_reference,
            "refund_reference": if processed { json!(format!("{:012}", self.id)) } else { Value::Null },
            "createdAt": self.created_at,
            "updatedAt": self.settled_at.as_ref().unwrap_or(&self.created_at),
        })
    }

    /// A `refund.*` webhook's `data`: flat, keyed by the transaction's
    /// reference, `amount` as a string, no refund id (Paystack's refund
    /// event samples).
    pub(crate) fn paystack_event_json(&self, email: &str) -> Value {
        json!({
            "status": self.status,
            "transaction_reference": self.charge_reference,
            "refund_reference": if self.status == "processed" { json!(format!("{:012}", self.id)) } else { Value::Null },
            "amount": self.amount.to_string(),
            "currency": self.currency,
            "processor": "gateway-sim",
            "customer": { "first_name": null, "last_name": null, "email": email },
            "integration": INTEGRATION,
            "domain": "test",
        })
    }

    /// The refund as Flutterwave answers it (`tx_ref` is this simulator's
    /// addition).
    pub(crate) fn flutterwave_json(&self, charge_id: u64) -> Value {
        json!({
            "id": self.id,
            "account_id": 17321,
            "tx_id": charge_id,
            "tx_ref": self.charge_reference,
            "flw_ref": format!("FLW-SIM-{charge_id}"),
            "wallet_id": 17346,
            "amount_refunded": crate::api::major(self.amount),
            "currency": self.currency,
            "status": self.status,
            "destination": "payment_source",
            "meta": { "source": "availablebalance" },
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
