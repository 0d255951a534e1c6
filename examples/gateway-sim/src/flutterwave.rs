//! The Flutterwave v3 subset, under `/flutterwave/v3`. Amounts on the wire
//! are in major units (`5000.50`), as in Flutterwave's API; the books keep
//! minor units.

// Indexing a serde_json::Value by key yields Null when absent; it never panics.
#![allow(clippy::indexing_slicing)]

use crate::control::{RefundOutcome, Settle, TransferOutcome};
use crate::faults::{self, envelope};
use crate::model::{Charge, Provider, Refund, Transfer};
use crate::{Sim, api};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const FLUTTERWAVE: Provider = Provider::Flutterwave;

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/payments", post(create_payment))
        .route(
            "/transactions/verify_by_reference",
            get(verify_by_reference),
        )
        .route("/transactions", get(list_transactions))
        .route("/transactions/{id}/verify", get(verify))
        .route("/transactions/{id}/refund", post(create_refund))
        .route("/refunds", get(list_refunds))
        .route("/refunds/{id}", get(fetch_refund))
        .route("/transfers", post(create_transfer).get(list_transfers))
        .route("/transfers/fee", get(transfer_fee))
        .route("/transfers/{id}", get(fetch_transfer))
        .route(
            "/transfers/{id}/retries",
            post(retry_transfer).get(list_retries),
        )
        .route("/banks/{country}", get(banks))
        .route("/accounts/resolve", post(resolve_account))
        .route("/balances", get(balances))
        .route("/balances/{currency}", get(balance))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async {
            fail(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(from_fn_with_state(
            (sim.clone(), FLUTTERWAVE),
            api::authorize,
        ))
        .layer(from_fn_with_state(
            (sim.clone(), FLUTTERWAVE),
            faults::apply,
        ))
        .with_state(sim)
}

fn ok(message: &str, data: Value) -> Response {
    api::ok(FLUTTERWAVE, message, data)
}

fn fail(status: StatusCode, message: &str) -> Response {
    api::fail(FLUTTERWAVE, status, message)
}

async fn create_payment(State(sim): State<Sim>, bytes: Bytes) -> Response {
    let Some(request) = api::json_object(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(reference) = request["tx_ref"].as_str().filter(|text| !text.is_empty()) else {
        return fail(StatusCode::BAD_REQUEST, "tx_ref is required");
    };
    let Some(amount) = api::major_to_minor(&request["amount"]) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid amount");
    };
    let Some(email) = request["customer"]["email"]
        .as_str()
        .filter(|email| email.contains('@'))
    else {
        return fail(StatusCode::BAD_REQUEST, "customer.email is required");
    };
    let currency = request["currency"].as_str().unwrap_or("NGN").to_owned();
    let now = sim.now();
    {
        let mut books = sim.books();
        let key = (FLUTTERWAVE, reference.to_owned());
        if books.charges.contains_key(&key) {
            return fail(StatusCode::BAD_REQUEST, "Duplicate transaction reference");
        }
        let id = books.new_id();
        books.charges.insert(
            key,
            Charge {
                provider: FLUTTERWAVE,
                id,
                reference: reference.to_owned(),
                amount,
                currency,
                email: email.to_owned(),
                status: "pending".to_owned(),
                refunded: 0,
                created_at: now,
                paid_at: None,
                attempted: false,
                metadata: request["meta"].clone(),
                customer_name: request["customer"]["name"].as_str().map(str::to_owned),
                customer_phone: request["customer"]["phonenumber"]
                    .as_str()
                    .map(str::to_owned),
            },
        );
    }
    ok(
        "Hosted Link",
        json!({ "link": format!("{}/_sim/checkout/flutterwave/{reference}", sim.base_url) }),
    )
}

/// A Standard payment is no transaction until the customer attempts to
/// pay: before that, verify finds nothing, as for an unknown id (the
/// status is 400 in the reports we found; unconfirmed).
fn charge_answer(charge: Option<&Charge>) -> Response {
    match charge.filter(|charge| charge.attempted) {
        Some(charge) => ok(
            "Transaction fetched successfully",
            charge.flutterwave_json(),
        ),
        None => no_transaction(),
    }
}

fn no_transaction() -> Response {
    fail(
        StatusCode::BAD_REQUEST,
        "No transaction was found for this id",
    )
}

async fn verify(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    charge_answer(
        books
            .charges
            .values()
            .find(|charge| charge.provider == FLUTTERWAVE && charge.id.to_string() == id),
    )
}

async fn verify_by_reference(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(reference) = query.get("tx_ref") else {
        return fail(StatusCode::BAD_REQUEST, "tx_ref is required");
    };
    charge_answer(sim.books().charges.get(&(FLUTTERWAVE, reference.clone())))
}

async fn create_refund(State(sim): State<Sim>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let request = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match api::json_object(&bytes) {
            Some(request) => request,
            None => return fail(StatusCode::BAD_REQUEST, "Invalid JSON body"),
        }
    };
    let asked = match &request["amount"] {
        Value::Null => None,
        value => match api::major_to_minor(value) {
            Some(amount) => Some(amount),
            None => return fail(StatusCode::BAD_REQUEST, "Invalid amount"),
        },
    };
    let now = sim.now();
    let initial = sim.config.initial_balance;
    let (refund, charge_id) = {
        let mut books = sim.books();
        let refund_id = books.new_id();
        let Some(charge) = books.charges.values_mut().find(|charge| {
            charge.provider == FLUTTERWAVE && charge.attempted && charge.id.to_string() == id
        }) else {
            return no_transaction();
        };
        if charge.status != "successful" {
            return fail(
                StatusCode::BAD_REQUEST,
                "Only successful transactions can be refunded",
            );
        }
        let remaining = charge.amount - charge.refunded;
        let amount = asked.unwrap_or(remaining);
        if amount <= 0 || amount > remaining {
            return fail(
                StatusCode::BAD_REQUEST,
                "Refund amount is more than what is left on this transaction",
            );
        }
        charge.refunded += amount;
        let refund = Refund {
            provider: FLUTTERWAVE,
            id: refund_id,
            charge_reference: charge.reference.clone(),
            amount,
            currency: charge.currency.clone(),
            status: "pending".to_owned(),
            created_at: now,
            settled_at: None,
        };
        let charge_id = charge.id;
        books.credit(FLUTTERWAVE, &refund.currency, -amount, initial);
        books.refunds.push(refund.clone());
        (refund, charge_id)
    };
    sim.auto_settle(Settle::Refund {
        id: refund.id,
        outcome: RefundOutcome::Processed,
    });
    ok(
        "Transaction refund initiated",
        refund.flutterwave_json(charge_id),
    )
}

async fn fetch_refund(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    let Some(refund) = books
        .refunds
        .iter()
        .find(|refund| refund.provider == FLUTTERWAVE && refund.id.to_string() == id)
    else {
        return fail(StatusCode::NOT_FOUND, "Refund not found");
    };
    let charge_id = books
        .charges
        .get(&(FLUTTERWAVE, refund.charge_reference.clone()))
        .map_or(0, |charge| charge.id);
    ok("Refund fetched", refund.flutterwave_json(charge_id))
}

async fn create_transfer(State(sim): State<Sim>, headers: HeaderMap, bytes: Bytes) -> Response {
    let key = headers
        .get("x-idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .map(str::to_owned);
    // One keyed request at a time: look up, create, remember, atomically.
    let _keyed = key.as_ref().map(|_| sim.idempotency_lock());
    if let Some(key) = &key
        && let Some((status, body)) = sim.books().idempotent_responses.get(key).cloned()
    {
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-idempotency-cache-hit", HeaderValue::from_static("true"));
        return response;
    }
    let (status, body) = transfer(&sim, &bytes);
    if let Some(key) = key {
        sim.books()
            .idempotent_responses
            .insert(key, (status.as_u16(), body.clone()));
    }
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Creates a transfer, answering the status and JSON body.
fn transfer(sim: &Sim, bytes: &[u8]) -> (StatusCode, Vec<u8>) {
    let answer = |status: StatusCode, value: Value| (status, value.to_string().into_bytes());
    let failure =
        |status: StatusCode, message: &str| answer(status, envelope(FLUTTERWAVE, message));
    let Ok(request) = serde_json::from_slice::<Value>(bytes) else {
        return failure(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let field = |name: &str| {
        request[name]
            .as_str()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let (Some(bank), Some(account)) = (field("account_bank"), field("account_number")) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "account_bank and account_number are required",
        );
    };
    let Some(amount) = api::major_to_minor(&request["amount"]) else {
        return failure(StatusCode::BAD_REQUEST, "Invalid amount");
    };
    // Optional: Flutterwave makes one up when it is absent.
    let reference = match field("reference") {
        Some(reference) => reference,
        None => format!("TRF-{}", sim.code(12).to_uppercase()),
    };
    if !reference
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
        || reference.len() > 100
    {
        return failure(
            StatusCode::BAD_REQUEST,
            "Invalid reference: use up to 100 letters, digits, - or _",
        );
    }
    let currency = field("currency").unwrap_or_else(|| "NGN".to_owned());
    let narration = field("narration").unwrap_or_default();
    let recipient = format!("{bank}:{account}");
    let now = sim.now();
    let initial = sim.config.initial_balance;
    let transfer = {
        let mut books = sim.books();
        let key = (FLUTTERWAVE, reference.clone());
        // A reference is unique; what v3 answers for a reused one is not
        // documented, so this refuses it like Paystack does (a client
        // then asks by reference). Flutterwave's documented replay is the
        // `X-Idempotency-Key` header (v4), served above.
        if let Some(existing) = books.transfers.get_mut(&key) {
            existing.create_requests += 1;
            return failure(
                StatusCode::BAD_REQUEST,
                "A transfer with this reference already exists",
            );
        }
        if books.balance(FLUTTERWAVE, &currency, initial) < amount {
            return failure(StatusCode::BAD_REQUEST, "Insufficient balance");
        }
        books.credit(FLUTTERWAVE, &currency, -amount, initial);
        let id = books.new_id();
        let transfer = Transfer {
            provider: FLUTTERWAVE,
            id,
            reference: reference.clone(),
            amount,
            currency,
            recipient,
            reason: narration,
            status: "NEW".to_owned(),
            transfer_code: String::new(),
            create_requests: 1,
            attempts: 1,
            retry_of: None,
            failure: None,
            created_at: now.clone(),
            updated_at: now,
            transferred_at: None,
        };
        books.transfers.insert(key, transfer.clone());
        transfer
    };
    sim.auto_settle(Settle::Transfer {
        provider: FLUTTERWAVE,
        reference,
        outcome: TransferOutcome::Success,
        reason: None,
    });
    answer(
        StatusCode::OK,
        json!({
            "status": "success",
            "message": "Transfer Queued Successfully",
            "data": transfer.flutterwave_json(),
        }),
    )
}

async fn fetch_transfer(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    match books
        .transfers
        .values()
        .find(|transfer| transfer.provider == FLUTTERWAVE && transfer.id.to_string() == id)
    {
        Some(transfer) => ok("Transfer fetched", transfer.flutterwave_json()),
        None => fail(StatusCode::NOT_FOUND, "Transfer not found"),
    }
}

async fn list_transfers(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let books = sim.books();
    let wanted = query.get("reference");
    let status = query.get("status");
    let transfers = books
        .transfers
        .values()
        .filter(|transfer| transfer.provider == FLUTTERWAVE)
        .filter(|transfer| wanted.is_none_or(|wanted| *wanted == transfer.reference))
        .filter(|transfer| {
            status.is_none_or(|status| status.eq_ignore_ascii_case(&transfer.status))
        })
        .map(Transfer::flutterwave_json)
        .collect();
    page("Transfers fetched", transfers, &query)
}

/// Ten `items` a page (newest first), with `meta.page_info` as Flutterwave's
/// lists carry it.
fn page(message: &str, mut items: Vec<Value>, query: &BTreeMap<String, String>) -> Response {
    const PER_PAGE: usize = 10;
    // Newest first: ids only go up.
    items.sort_by_key(|item| std::cmp::Reverse(item["id"].as_u64().unwrap_or(0)));
    let page = query
        .get("page")
        .and_then(|page| page.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let data: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(PER_PAGE))
        .take(PER_PAGE)
        .collect();
    let body = json!({
        "status": "success",
        "message": message,
        "meta": { "page_info": { "total": total, "current_page": page, "total_pages": total.div_ceil(PER_PAGE) } },
        "data": data,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A retry is a new transfer, `<reference>_RETRY_<n>`; the failed one
/// stays failed (the retry samples of Flutterwave's SDK documentation).
async fn retry_transfer(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let initial = sim.config.initial_balance;
    let now = sim.now();
    let retry = {
        let mut books = sim.books();
        let Some(original) = books
            .transfers
            .values()
            .find(|transfer| transfer.provider == FLUTTERWAVE && transfer.id.to_string() == id)
            .cloned()
        else {
            return fail(StatusCode::NOT_FOUND, "Transfer not found");
        };
        let latest_failed = books
            .transfers
            .values()
            .filter(|transfer| transfer.retry_of == Some(original.id))
            .map(|transfer| transfer.status.as_str())
            .next_back()
            .unwrap_or(original.status.as_str())
            == "FAILED";
        if !latest_failed {
            return fail(
                StatusCode::BAD_REQUEST,
                "Only failed transfers can be retried",
            );
        }
        let reason = original.failure.clone().unwrap_or_default().to_lowercase();
        if reason.contains("insufficient balance") || reason.contains("minimum amount") {
            return fail(
                StatusCode::BAD_REQUEST,
                "This transfer failed for a reason a retry cannot fix",
            );
        }
        if books.balance(FLUTTERWAVE, &original.currency, initial) < original.amount {
            return fail(StatusCode::BAD_REQUEST, "Insufficient balance");
        }
        books.credit(FLUTTERWAVE, &original.currency, -original.amount, initial);
        let id = books.new_id();
        let Some(stored) = books
            .transfers
            .get_mut(&(FLUTTERWAVE, original.reference.clone()))
        else {
            return fail(StatusCode::NOT_FOUND, "Transfer not found");
        };
        stored.attempts += 1;
        let retry = Transfer {
            id,
            reference: format!("{}_RETRY_{}", original.reference, stored.attempts - 1),
            status: "NEW".to_owned(),
            create_requests: 1,
            attempts: 1,
            retry_of: Some(original.id),
            failure: None,
            created_at: now.clone(),
            updated_at: now,
            transferred_at: None,
            ..original
        };
        books
            .transfers
            .insert((FLUTTERWAVE, retry.reference.clone()), retry.clone());
        retry
    };
    sim.auto_settle(Settle::Transfer {
        provider: FLUTTERWAVE,
        reference: retry.reference.clone(),
        outcome: TransferOutcome::Success,
        reason: None,
    });
    ok("Transfer retry attempt queued.", retry.flutterwave_json())
}

async fn list_retries(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let books = sim.books();
    let Some(original) = books
        .transfers
        .values()
        .find(|transfer| transfer.provider == FLUTTERWAVE && transfer.id.to_string() == id)
    else {
        return fail(StatusCode::NOT_FOUND, "Transfer not found");
    };
    let retries: Vec<Value> = books
        .transfers
        .values()
        .filter(|transfer| transfer.retry_of == Some(original.id))
        .map(Transfer::flutterwave_json)
        .collect();
    ok("Transfer retry attempts retrieved.", Value::Array(retries))
}

/// `GET /transfers/fee?amount=&currency=`.
async fn transfer_fee(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let amount = query
        .get("amount")
        .and_then(|amount| api::major_to_minor(&json!(amount)))
        .unwrap_or(0);
    let fee = crate::model::transfer_fee(amount);
    let currency = query.get("currency").map_or("NGN", String::as_str);
    ok(
        "Transfer fee fetched",
        json!([{ "currency": currency, "fee_type": "value", "fee": fee }]),
    )
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
        .filter(|charge| charge.provider == FLUTTERWAVE && charge.attempted)
        .filter(|charge| status.is_none_or(|status| *status == charge.status))
        .map(Charge::flutterwave_json)
        .collect();
    page("Transactions fetched", charges, &query)
}

async fn list_refunds(
    State(sim): State<Sim>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let books = sim.books();
    let refunds = books
        .refunds
        .iter()
        .filter(|refund| refund.provider == FLUTTERWAVE)
        .filter_map(|refund| {
            let charge = books
                .charges
                .get(&(FLUTTERWAVE, refund.charge_reference.clone()))?;
            let wanted = query
                .get("id")
                .is_none_or(|id| *id == charge.id.to_string());
            wanted.then(|| refund.flutterwave_json(charge.id))
        })
        .collect();
    page("Refunds fetched", refunds, &query)
}

async fn banks(Path(country): Path<String>) -> Response {
    let banks: Vec<Value> = crate::banks::BANKS
        .iter()
        .filter(|bank| bank.country_code.eq_ignore_ascii_case(&country))
        .map(|bank| json!({ "id": bank.id, "code": bank.code, "name": bank.name }))
        .collect();
    ok("Banks fetched successfully", Value::Array(banks))
}

async fn resolve_account(bytes: Bytes) -> Response {
    let Some(request) = api::json_object(&bytes) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let account = request["account_number"].as_str().unwrap_or_default();
    let bank = request["account_bank"].as_str().unwrap_or_default();
    let known = crate::banks::BANKS.iter().any(|known| known.code == bank);
    if known && account.len() == 10 && account.bytes().all(|byte| byte.is_ascii_digit()) {
        ok(
            "Account details fetched",
            json!({ "account_number": account, "account_name": format!("SIM ACCOUNT {}", &account[6..]) }),
        )
    } else {
        fail(
            StatusCode::BAD_REQUEST,
            "Sorry, that account number is invalid, please check and try again",
        )
    }
}

fn wallet(books: &crate::model::Books, currency: &str, initial: i64) -> Value {
    let balance = books.balance(FLUTTERWAVE, currency, initial);
    json!({ "currency": currency, "available_balance": api::major(balance), "ledger_balance": api::major(balance) })
}

async fn balances(State(sim): State<Sim>) -> Response {
    let books = sim.books();
    let initial = sim.config.initial_balance;
    let mut currencies: Vec<String> = books
        .balances
        .keys()
        .filter(|(provider, _)| *provider == FLUTTERWAVE)
        .map(|(_, currency)| currency.clone())
        .collect();
    if !currencies.iter().any(|currency| currency == "NGN") {
        currencies.insert(0, "NGN".to_owned());
    }
    let wallets: Vec<Value> = currencies
        .iter()
        .map(|currency| wallet(&books, currency, initial))
        .collect();
    ok("Wallet balances fetched", Value::Array(wallets))
}

async fn balance(State(sim): State<Sim>, Path(currency): Path<String>) -> Response {
    let books = sim.books();
    ok(
        "Wallet balance fetched",
        wallet(&books, &currency.to_uppercase(), sim.config.initial_balance),
    )
}
