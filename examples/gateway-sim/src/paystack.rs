//! The Paystack subset, under `/paystack`.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use crate::control::{Settle, TransferOutcome};
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
        .route("/transaction/initialize", post(initialize))
        .route("/transaction/verify/{reference}", get(verify))
        .route("/transferrecipient", post(create_recipient))
        .route("/transfer", post(create_transfer))
        .route("/transfer/verify/{reference}", get(verify_transfer))
        .route("/transfer/{id_or_code}", get(fetch_transfer))
        .route("/refund", post(create_refund).get(list_refunds))
        .route("/refund/{id}", get(fetch_refund))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "Not found") })
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
            return fail(StatusCode::BAD_REQUEST, "Duplicate Transaction Reference");
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
                status: "pending".to_owned(),
                refunded: 0,
                created_at: now,
                paid_at: None,
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
    let (Some(name), Some(account_number), Some(bank_code)) =
        (field("name"), field("account_number"), field("bank_code"))
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            "name, account_number and bank_code are required",
        );
    };
    if !account_number.bytes().all(|byte| byte.is_ascii_digit()) || account_number.len() != 10 {
        return fail(StatusCode::BAD_REQUEST, "Account number is invalid");
    }
    let currency = field("currency").unwrap_or_else(|| "NGN".to_owned());
    let code = format!("RCP_{}", sim.code(14));
    let mut books = sim.books();
    let existing = books
        .recipients
        .values()
        .find(|recipient| {
            recipient.account_number == account_number && recipient.bank_code == bank_code
        })
        .cloned();
    let recipient = existing.unwrap_or_else(|| {
        let recipient = Recipient {
            recipient_code: code.clone(),
            name,
            account_number,
            bank_code,
            currency,
        };
        books.recipients.insert(code, recipient.clone());
        recipient
    });
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "status": true,
            "message": "Transfer recipient created successfully",
            "data": {
                "recipient_code": recipient.recipient_code,
                "name": recipient.name,
                "type": "nuban",
                "currency": recipient.currency,
                "details": {
                    "account_number": recipient.account_number,
                    "bank_code": recipient.bank_code,
                },
            },
        })),
    )
        .into_response()
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
    let Some(reference) = request["reference"].as_str() else {
        return fail(StatusCode::BAD_REQUEST, "Transfer reference is required");
    };
    if !api::valid_transfer_reference(reference) {
        return fail(
            StatusCode::BAD_REQUEST,
            "Invalid transfer reference: use 16 to 100 lowercase letters, digits, - or _",
        );
    }
    let Some(recipient) = request["recipient"].as_str() else {
        return fail(StatusCode::BAD_REQUEST, "Recipient specified is invalid");
    };
    let reason = request["reason"].as_str().unwrap_or_default().to_owned();
    let currency = request["currency"].as_str().unwrap_or("NGN").to_owned();
    let fingerprint = format!("{amount}|{currency}|{recipient}|{reason}");
    let transfer_code = format!("TRF_{}", sim.code(12));
    let now = sim.now();
    let initial = sim.config.initial_balance;
    let transfer = {
        let mut books = sim.books();
        let key = (PAYSTACK, reference.to_owned());
        if let Some(existing) = books.transfers.get_mut(&key) {
            if existing.fingerprint != fingerprint {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "Duplicate Transfer Reference: a transfer with this reference has different details",
                );
            }
            existing.create_requests += 1;
            return ok("Transfer has been queued", existing.paystack_json());
        }
        if !books.recipients.contains_key(recipient) {
            return fail(StatusCode::BAD_REQUEST, "Recipient specified is invalid");
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
            reference: reference.to_owned(),
            amount,
            currency,
            recipient: recipient.to_owned(),
            reason,
            status: "pending".to_owned(),
            transfer_code,
            create_requests: 1,
            attempts: 1,
            failure: None,
            created_at: now,
            fingerprint,
        };
        books.transfers.insert(key, transfer.clone());
        transfer
    };
    sim.auto_settle(Settle::Transfer {
        provider: PAYSTACK,
        reference: transfer.reference.clone(),
        outcome: TransferOutcome::Success,
        reason: None,
    });
    ok("Transfer has been queued", transfer.paystack_json())
}

async fn verify_transfer(State(sim): State<Sim>, Path(reference): Path<String>) -> Response {
    match sim.books().transfers.get(&(PAYSTACK, reference)) {
        Some(transfer) => ok("Transfer retrieved", transfer.paystack_json()),
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
        Some(transfer) => ok("Transfer retrieved", transfer.paystack_json()),
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
    let refund = {
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
        };
        books.credit(PAYSTACK, &refund.currency, -amount, initial);
        books.refunds.push(refund.clone());
        refund
    };
    sim.emit(vec![Event {
        provider: PAYSTACK,
        name: "refund.pending",
        data: refund.paystack_json(),
    }]);
    sim.auto_settle(Settle::Refund {
        id: refund.id,
        processed: true,
    });
    ok(
        "Refund has been queued for processing",
        refund.paystack_json(),
    )
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
        .filter(|refund| {
            wanted.is_none_or(|wanted| {
                *wanted == refund.charge_reference
                    || books
                        .charges
                        .get(&(PAYSTACK, refund.charge_reference.clone()))
                        .is_some_and(|charge| charge.id.to_string() == *wanted)
            })
        })
        .map(Refund::paystack_json)
        .collect();
    ok("Refunds retrieved", Value::Array(refunds))
}

async fn fetch_refund(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    match books
        .refunds
        .iter()
        .find(|refund| refund.provider == PAYSTACK && refund.id.to_string() == id)
    {
        Some(refund) => ok("Refund retrieved", refund.paystack_json()),
        None => fail(StatusCode::NOT_FOUND, "Refund not found"),
    }
}
