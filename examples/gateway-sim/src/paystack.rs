//! The Paystack subset, under `/paystack`.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use crate::control::{RefundOutcome, Settle, TransferOutcome};
use crate::faults;
use crate::model::{Charge, Event, Provider, Recipient, Refund, Transfer};
use crate::{Sim, api};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const PAYSTACK: Provider = Provider::Paystack;

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/transaction", get(list_transactions))
        .route("/transaction/initialize", post(initialize))
        .route("/transaction/verify/{reference}", get(verify))
        .route("/transaction/{id}", get(fetch_transaction))
        .route(
            "/transferrecipient",
            post(create_recipient).get(list_recipients),
        )
        .route("/transferrecipient/{id_or_code}", get(fetch_recipient))
        .route("/transfer", post(create_transfer).get(list_transfers))
        .route("/transfer/verify/{reference}", get(verify_transfer))
        .route("/transfer/{id_or_code}", get(fetch_transfer))
        .route("/refund", post(create_refund).get(list_refunds))
        .route("/refund/{id}", get(fetch_refund))
        .route("/bank", get(banks))
        .route("/bank/resolve", get(resolve_account))
        .route("/balance", get(balance))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async {
            fail(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(from_fn_with_state((sim.clone(), PAYSTACK), api::authorize))
        .layer(from_fn_with_state((sim.clone(), PAYSTACK), faults::apply))
        .with_state(sim)
}

fn ok(message: &str, data: Value) -> Response {
    api::ok(PAYSTACK, message, data)
}

fn fail(status: StatusCode, message: &str) -> Response {
    api::fail(PAYSTACK, status, message)
}

/// A 400 in the shape of Paystack's newer errors: `type`, `code` and
/// `meta.nextStep` besides the message (as in the samples of
/// <https://paystack.com/docs/api/#errors>).
fn refuse(message: &str, code: &str, next_step: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "status": false,
            "message": message,
            "meta": { "nextStep": next_step },
            "type": "validation_error",
            "code": code,
        })),
    )
        .into_response()
}

async fn initialize(State(sim): State<Sim>, bytes: Bytes) -> Response {
    let Some(request) = api::json_object(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(email) = request["email"]
        .as_str()
        .filter(|email| email.contains('@'))
    else {
        return fail(StatusCode::BAD_REQUEST, "Invalid Email Address Passed");
    };
    let Some(amount) = api::minor_units(&request["amount"]) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid Amount Sent");
    };
    let currency = request["currency"].as_str().unwrap_or("NGN").to_owned();
    let reference = match request["reference"].as_str() {
        Some(reference) if api::valid_charge_reference(reference) => reference.to_owned(),
        Some(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "Invalid transaction reference: only -, ., = and alphanumeric characters allowed",
            );
        }
        None => sim.code(16),
    };
    let access_code = sim.code(15);
    let now = sim.now();
    {
        let mut books = sim.books();
        let key = (PAYSTACK, reference.clone());
        if books.charges.contains_key(&key) {
            return refuse(
                "Duplicate Transaction Reference",
                "duplicate_reference",
                "Try and create the Transaction or Charge with a new reference",
            );
        }
        let id = books.new_id();
        books.charges.insert(
            key,
            Charge {
                provider: PAYSTACK,
                id,
                reference: reference.clone(),
                amount,
                currency,
                email: email.to_owned(),
                status: "abandoned".to_owned(),
                refunded: 0,
                created_at: now,
                paid_at: None,
                attempted: false,
                metadata: request["metadata"].clone(),
                customer_name: None,
                customer_phone: None,
            },
        );
    }
    ok(
        "Authorization URL created",
        json!({
            "authorization_url": format!("{}/_sim/checkout/paystack/{reference}", sim.base_url),
            "access_code": access_code,
            "reference": reference,
        }),
    )
}

async fn verify(State(sim): State<Sim>, Path(reference): Path<String>) -> Response {
    match sim.books().charges.get(&(PAYSTACK, reference)) {
        Some(charge) => ok("Verification successful", charge.paystack_json()),
        None => fail(StatusCode::NOT_FOUND, "Transaction reference not found"),
    }
}

async fn create_recipient(State(sim): State<Sim>, bytes: Bytes) -> Response {
    let Some(request) = api::json_object(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let field = |name: &str| {
        request[name]
            .as_str()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let Some(kind) = field("type") else {
        return refuse(
            "Recipient type is required",
            "missing_params",
            "Provide a type: nuban, mobile_money, basa, ghipss, kepss, mobile_money_business or authorization",
        );
    };
    let Some(name) = field("name") else {
        return refuse(
            "Name is required",
            "missing_params",
            "Provide the recipient's name",
        );
    };
    // What each type identifies the account with (the recipient types of
    // https://paystack.com/docs/api/transfer-recipient/#create). Lengths
    // are kept loose: test accounts and tills are shorter or longer than
    // a live NUBAN.
    let digits = |text: &str, lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_digit())
    };
    let account = match kind.as_str() {
        "authorization" => match field("authorization_code") {
            Some(code) if code.starts_with("AUTH_") => Account {
                number: None,
                bank_code: field("bank_code").unwrap_or_default(),
                authorization_code: Some(code),
            },
            _ => {
                return refuse(
                    "Authorization code is invalid",
                    "invalid_params",
                    "Provide the AUTH_ code of a reusable authorization",
                );
            }
        },
        "nuban" | "mobile_money" | "basa" | "ghipss" | "kepss" | "mobile_money_business" => {
            let (Some(number), Some(bank_code)) = (field("account_number"), field("bank_code"))
            else {
                return refuse(
                    "Account number and bank code are required",
                    "missing_params",
                    "Provide account_number and bank_code",
                );
            };
            let lengths = match kind.as_str() {
                "nuban" => 10..=11,
                "mobile_money_business" => 5..=12,
                _ => 6..=20,
            };
            if !digits(&number, lengths) {
                return refuse(
                    "Account number is invalid",
                    "invalid_params",
                    "Provide a valid account number for the recipient type",
                );
            }
            Account {
                number: Some(number),
                bank_code,
                authorization_code: None,
            }
        }
        _ => {
            return refuse(
                "Invalid recipient type",
                "invalid_params",
                "Use nuban, mobile_money, basa, ghipss, kepss, mobile_money_business or authorization",
            );
        }
    };
    let currency = field("currency").unwrap_or_else(|| "NGN".to_owned());
    let code = format!("RCP_{}", sim.code(14));
    let now = sim.now();
    let mut books = sim.books();
    // "A duplicate account number will lead to the retrieval of the
    // existing record."
    let existing = books
        .recipients
        .values()
        .find(|recipient| {
            recipient.kind == kind
                && recipient.account_number == account.number
                && recipient.bank_code == account.bank_code
                && recipient.authorization_code == account.authorization_code
        })
        .cloned();
    let recipient = match existing {
        Some(recipient) => recipient,
        None => {
            let recipient = Recipient {
                id: books.new_id(),
                recipient_code: code.clone(),
                kind,
                name,
                account_number: account.number,
                bank_code: account.bank_code,
                authorization_code: account.authorization_code,
                currency,
                created_at: now,
            };
            books.recipients.insert(code, recipient.clone());
            recipient
        }
    };
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "status": true,
            "message": "Transfer recipient created successfully",
            "data": recipient.paystack_json(),
        })),
    )
        .into_response()
}

/// How a recipient is paid.
struct Account {
    number: Option<String>,
    bank_code: String,
    authorization_code: Option<String>,
}

async fn create_transfer(State(sim): State<Sim>, bytes: Bytes) -> Response {
    let Some(request) = api::json_object(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    if request["source"].as_str().unwrap_or("balance") != "balance" {
        return fail(StatusCode::BAD_REQUEST, "Invalid transfer source");
    }
    let Some(amount) = api::minor_units(&request["amount"]) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid amount");
    };
    // Optional: Paystack makes one up (ten lowercase letters and digits in
    // its samples), which "defeats the purpose of the transfer reference".
    let reference = match request["reference"].as_str() {
        Some(reference) if api::valid_transfer_reference(reference) => reference.to_owned(),
        Some(_) => {
            return refuse(
                "Invalid transfer reference",
                "invalid_params",
                "Use 16 to 100 lowercase letters, digits, - or _",
            );
        }
        None => sim.code(10),
    };
    let Some(recipient) = request["recipient"].as_str() else {
        return invalid_recipient();
    };
    let reason = request["reason"].as_str().unwrap_or_default().to_owned();
    let currency = request["currency"].as_str().unwrap_or("NGN").to_owned();
    let transfer_code = format!("TRF_{}", sim.code(12));
    let now = sim.now();
    let initial = sim.config.initial_balance;
    let transfer = {
        let mut books = sim.books();
        let key = (PAYSTACK, reference.clone());
        // A reference names one transfer, ever: a retry with it is refused
        // (the docs' "reference has already been used on a prior
        // transfer"), and the client asks `GET /transfer/verify/{reference}`.
        if let Some(existing) = books.transfers.get_mut(&key) {
            existing.create_requests += 1;
            return refuse(
                "Duplicate Transfer Reference",
                "duplicate_reference",
                "Create a new reference for the new transfer",
            );
        }
        if !books.recipients.contains_key(recipient) {
            return invalid_recipient();
        }
        if books.balance(PAYSTACK, &currency, initial) < amount {
            return fail(
                StatusCode::BAD_REQUEST,
                "Your balance is not enough to fulfil this request",
            );
        }
        books.credit(PAYSTACK, &currency, -amount, initial);
        let id = books.new_id();
        let transfer = Transfer {
            provider: PAYSTACK,
            id,
            reference: reference.clone(),
            amount,
            currency,
            recipient: recipient.to_owned(),
            reason,
            status: "pending".to_owned(),
            transfer_code,
            create_requests: 1,
            attempts: 1,
            retry_of: None,
            failure: None,
            created_at: now.clone(),
            updated_at: now,
            transferred_at: None,
        };
        books.transfers.insert(key, transfer.clone());
        transfer.paystack_created_json(&books)
    };
    sim.auto_settle(Settle::Transfer {
        provider: PAYSTACK,
        reference,
        outcome: TransferOutcome::Success,
        reason: None,
    });
    ok("Transfer has been queued", transfer)
}

fn invalid_recipient() -> Response {
    refuse(
        "Recipient specified is invalid",
        "invalid_transfer_recipient",
        "Provide a valid recipient. Ensure you are passing the recipient code in the recipient param",
    )
}

async fn verify_transfer(State(sim): State<Sim>, Path(reference): Path<String>) -> Response {
    let books = sim.books();
    match books.transfers.get(&(PAYSTACK, reference)) {
        Some(transfer) => ok("Transfer retrieved", transfer.paystack_json(&books)),
        None => fail(StatusCode::NOT_FOUND, "Transfer not found"),
    }
}

async fn fetch_transfer(State(sim): State<Sim>, Path(id_or_code): Path<String>) -> Response {
    let books = sim.books();
    let found = books.transfers.values().find(|transfer| {
        transfer.provider == PAYSTACK
            && (transfer.transfer_code == id_or_code || transfer.id.to_string() == id_or_code)
    });
    match found {
        Some(transfer) => ok("Transfer retrieved", transfer.paystack_json(&books)),
        None => fail(StatusCode::NOT_FOUND, "Transfer not found"),
    }
}

async fn create_refund(State(sim): State<Sim>, bytes: Bytes) -> Response {
    let Some(request) = api::json_object(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let transaction = match &request["transaction"] {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => {
            return fail(
                StatusCode::BAD_REQUEST,
                "Transaction reference or id is required",
            );
        }
    };
    let asked = match &request["amount"] {
        Value::Null => None,
        value => match api::minor_units(value) {
            Some(amount) => Some(amount),
            None => return fail(StatusCode::BAD_REQUEST, "Invalid amount"),
        },
    };
    let now = sim.now();
    let initial = sim.config.initial_balance;
    let (refund, answer, event) = {
        let mut books = sim.books();
        let id = books.new_id();
        let Some(charge) = books.charges.values_mut().find(|charge| {
            charge.provider == PAYSTACK
                && (charge.reference == transaction || charge.id.to_string() == transaction)
        }) else {
            return fail(StatusCode::NOT_FOUND, "Transaction not found");
        };
        if charge.status != "success" {
            return fail(
                StatusCode::BAD_REQUEST,
                "Transaction has not been completed",
            );
        }
        let remaining = charge.amount - charge.refunded;
        let amount = asked.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return fail(
                StatusCode::BAD_REQUEST,
                "Refund amount cannot be more than the unrefunded transaction amount",
            );
        }
        charge.refunded += amount;
        let refund = Refund {
            provider: PAYSTACK,
            id,
            charge_reference: charge.reference.clone(),
            amount,
            currency: charge.currency.clone(),
            status: "pending".to_owned(),
            created_at: now,
            settled_at: None,
        };
        let answer = refund.paystack_json(charge.id, Some(charge));
        let event = refund.paystack_event_json(&charge.email);
        books.credit(PAYSTACK, &refund.currency, -amount, initial);
        books.refunds.push(refund.clone());
        (refund, answer, event)
    };
    sim.emit(vec![Event {
        provider: PAYSTACK,
        name: "refund.pending",
        data: event,
        event_type: None,
    }]);
    sim.auto_settle(Settle::Refund {
        id: refund.id,
        outcome: RefundOutcome::Processed,
    });
    ok("Refund has been queued for processing", answer)
}

async fn list_refunds(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let books = sim.books();
    let wanted = query.get("transaction");
    let refunds: Vec<Value> = books
        .refunds
        .iter()
        .filter(|refund| refund.provider == PAYSTACK)
        .filter_map(|refund| {
            let charge = books
                .charges
                .get(&(PAYSTACK, refund.charge_reference.clone()))?;
            let matches = wanted.is_none_or(|wanted| {
                *wanted == refund.charge_reference || *wanted == charge.id.to_string()
            });
            matches.then(|| refund.paystack_json(charge.id, None))
        })
        .collect();
    page("Refunds retrieved", refunds, &query)
}

async fn fetch_refund(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    let found = books
        .refunds
        .iter()
        .find(|refund| refund.provider == PAYSTACK && refund.id.to_string() == id);
    match found {
        Some(refund) => {
            let charge_id = books
                .charges
                .get(&(PAYSTACK, refund.charge_reference.clone()))
                .map_or(0, |charge| charge.id);
            ok("Refund retrieved", refund.paystack_json(charge_id, None))
        }
        None => fail(StatusCode::NOT_FOUND, "Refund not found"),
    }
}

/// One page of `items` (newest first) with Paystack's pagination `meta`:
/// `perPage` (or `per_page`, default 50, at most 100) and `page` (from 1).
fn page(message: &str, mut items: Vec<Value>, query: &BTreeMap<String, String>) -> Response {
    // Newest first: ids only go up.
    items.sort_by_key(|item| std::cmp::Reverse(item["id"].as_u64().unwrap_or(0)));
    let number = |name: &str| {
        query
            .get(name)
            .and_then(|value| value.parse::<usize>().ok())
    };
    let per_page = number("perPage")
        .or_else(|| number("per_page"))
        .unwrap_or(50)
        .clamp(1, 100);
    let page = number("page").unwrap_or(1).max(1);
    let total = items.len();
    let skipped = (page - 1).saturating_mul(per_page);
    let data: Vec<Value> = items.into_iter().skip(skipped).take(per_page).collect();
    let body = json!({
        "status": true,
        "message": message,
        "data": data,
        "meta": {
            "total": total,
            "skipped": skipped,
            "perPage": per_page,
            "page": page,
            "pageCount": total.div_ceil(per_page),
        },
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn fetch_transaction(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return fail(StatusCode::BAD_REQUEST, "Transaction ID should be numeric.");
    }
    let books = sim.books();
    match books
        .charges
        .values()
        .find(|charge| charge.provider == PAYSTACK && charge.id.to_string() == id)
    {
        Some(charge) => ok("Transaction retrieved", charge.paystack_json()),
        None => fail(StatusCode::NOT_FOUND, "Transaction not found"),
    }
}

async fn list_transactions(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let books = sim.books();
    let status = query.get("status");
    let charges = books
        .charges
        .values()
        .filter(|charge| charge.provider == PAYSTACK)
        .filter(|charge| status.is_none_or(|status| *status == charge.status))
        .map(Charge::paystack_json)
        .collect();
    page("Transactions retrieved", charges, &query)
}

async fn list_transfers(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let books = sim.books();
    let status = query.get("status");
    let transfers = books
        .transfers
        .values()
        .filter(|transfer| transfer.provider == PAYSTACK)
        .filter(|transfer| status.is_none_or(|status| *status == transfer.status))
        .map(|transfer| transfer.paystack_json(&books))
        .collect();
    page("Transfers retrieved", transfers, &query)
}

async fn list_recipients(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let books = sim.books();
    let recipients = books
        .recipients
        .values()
        .map(Recipient::paystack_json)
        .collect();
    page("Recipients retrieved", recipients, &query)
}

async fn fetch_recipient(State(sim): State<Sim>, Path(id_or_code): Path<String>) -> Response {
    let books = sim.books();
    match books.recipients.values().find(|recipient| {
        recipient.recipient_code == id_or_code || recipient.id.to_string() == id_or_code
    }) {
        Some(recipient) => ok("Recipient retrieved", recipient.paystack_json()),
        None => fail(StatusCode::NOT_FOUND, "Recipient not found"),
    }
}

/// `GET /bank`: the banks the simulator knows, filtered by `country`,
/// `currency` and `type` (the shape of <https://paystack.com/docs/api/miscellaneous/#bank>).
async fn banks(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let wanted = |name: &str, value: &str| {
        query
            .get(name)
            .is_none_or(|wanted| wanted.eq_ignore_ascii_case(value))
    };
    let banks = crate::banks::BANKS
        .iter()
        .filter(|bank| {
            wanted("country", bank.country)
                && wanted("currency", bank.currency)
                && wanted("type", bank.kind)
        })
        .map(|bank| {
            json!({
                "name": bank.name, "slug": bank.slug, "code": bank.code, "longcode": "",
                "gateway": null, "pay_with_bank": false, "supports_transfer": true,
                "available_for_direct_debit": false, "active": true, "is_deleted": false,
                "country": capitalised(bank.country), "currency": bank.currency, "type": bank.kind,
                "id": bank.id, "createdAt": "2020-12-07T16:19:09.000Z", "updatedAt": "2020-12-07T16:19:19.000Z",
            })
        })
        .collect();
    page("Banks retrieved", banks, &query)
}

fn capitalised(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /bank/resolve`: any 10-digit account at a known bank resolves to a
/// name made from its digits; anything else is refused as Paystack does.
async fn resolve_account(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let account = query.get("account_number").map_or("", String::as_str);
    let bank = query.get("bank_code").map_or("", String::as_str);
    let known = crate::banks::BANKS.iter().find(|known| known.code == bank);
    match known {
        Some(known) if account.len() == 10 && account.bytes().all(|byte| byte.is_ascii_digit()) => {
            ok(
                "Account number resolved",
                json!({
                    "account_number": account,
                    "account_name": format!("SIM ACCOUNT {}", &account[6..]),
                    "bank_id": known.id,
                }),
            )
        }
        _ => refuse(
            "Could not resolve account name. Check parameters or try again.",
            "invalid_bank_account",
            "Check the account number and bank code",
        ),
    }
}

/// `GET /balance`: one entry per currency the books have touched (NGN at
/// least).
async fn balance(State(sim): State<Sim>) -> Response {
    let books = sim.books();
    let initial = sim.config.initial_balance;
    let mut currencies: Vec<String> = books
        .balances
        .keys()
        .filter(|(provider, _)| *provider == PAYSTACK)
        .map(|(_, currency)| currency.clone())
        .collect();
    if !currencies.iter().any(|currency| currency == "NGN") {
        currencies.insert(0, "NGN".to_owned());
    }
    let balances: Vec<Value> = currencies
        .iter()
        .map(|currency| {
            json!({ "currency": currency, "balance": books.balance(PAYSTACK, currency, initial) })
        })
        .collect();
    ok("Balances retrieved", Value::Array(balances))
}
