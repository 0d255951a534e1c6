//! The control plane under `/_sim`: faults, webhook settings, customer
//! and bank actions, state, journal, reset.

use crate::Sim;
use crate::faults::{FaultPlan, header_map};
use crate::model::{Event, Provider};
use crate::webhooks::WebhookSettings;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One provider request, as the simulator saw it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JournalEntry {
    seq: usize,
    at: String,
    provider: Provider,
    method: String,
    path: String,
    query: Option<String>,
    headers: std::collections::BTreeMap<String, String>,
    body: String,
    /// `rule: effects`, when a fault rule changed the request.
    fault: Option<String>,
    /// The status answered, or `None` when the connection was dropped.
    status: Option<u16>,
}

/// Where a request's journal entry is, to finish it.
pub(crate) struct EntryRef(usize);

impl JournalEntry {
    pub(crate) fn record(sim: &Sim, provider: Provider, parts: &Parts, body: &[u8]) -> EntryRef {
        let mut journal = sim.journal();
        let seq = journal.len();
        journal.push(Self {
            seq,
            at: sim.now(),
            provider,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: header_map(&parts.headers),
            body: String::from_utf8_lossy(body).chars().take(4096).collect(),
            fault: None,
            status: None,
        });
        EntryRef(seq)
    }
}

impl EntryRef {
    pub(crate) fn finish(self, sim: &Sim, fault: Option<String>, status: Option<u16>) {
        if let Some(entry) = sim.journal().get_mut(self.0) {
            entry.fault = fault;
            entry.status = status;
        }
    }
}

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/state", get(state))
        .route("/journal", get(journal))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/webhooks", get(get_webhooks).put(put_webhooks))
        .route("/webhooks/deliveries", get(deliveries))
        .route("/webhooks/deliveries/{id}/replay", post(replay))
        .route("/charges/{reference}/complete", post(complete_charge))
        .route("/transfers/{reference}/settle", post(settle_transfer))
        .route("/refunds/{id}/settle", post(settle_refund))
        .route("/checkout/{provider}/{reference}", get(checkout))
        .route("/reset", post(reset))
        .with_state(sim)
}

type Answer = Result<Json<Value>, Problem>;

/// A control-plane error: `{"error": "..."}` with a status.
#[derive(Debug)]
pub(crate) struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> Problem {
    Problem(StatusCode::BAD_REQUEST, message.into())
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|error| bad_request(format!("invalid JSON: {error}")))
}

async fn state(State(sim): State<Sim>) -> Json<crate::Snapshot> {
    Json(sim.books().snapshot())
}

async fn journal(State(sim): State<Sim>) -> Json<Vec<JournalEntry>> {
    Json(sim.journal().clone())
}

async fn get_faults(State(sim): State<Sim>) -> Json<FaultPlan> {
    Json(sim.faults().clone())
}

async fn put_faults(State(sim): State<Sim>, body: bytes::Bytes) -> Answer {
    let plan: FaultPlan = parse(&body)?;
    plan.validate().map_err(bad_request)?;
    let rules = plan.rules.len();
    *sim.faults() = plan;
    Ok(Json(json!({ "rules": rules })))
}

async fn get_webhooks(State(sim): State<Sim>) -> Json<WebhookSettings> {
    Json(sim.webhooks.settings())
}

async fn put_webhooks(State(sim): State<Sim>, body: bytes::Bytes) -> Answer {
    let settings: WebhookSettings = parse(&body)?;
    settings.validate().map_err(bad_request)?;
    sim.webhooks.configure(settings);
    Ok(Json(json!({ "ok": true })))
}

async fn deliveries(State(sim): State<Sim>) -> Json<Vec<crate::DeliveryLog>> {
    Json(sim.webhooks.log())
}

async fn replay(State(sim): State<Sim>, Path(id): Path<u64>) -> Answer {
    if sim.webhooks.replay(&sim, id) {
        Ok(Json(json!({ "replayed": id })))
    } else {
        Err(Problem(StatusCode::NOT_FOUND, format!("no delivery {id}")))
    }
}

async fn reset(State(sim): State<Sim>) -> Json<Value> {
    sim.reset();
    Json(json!({ "reset": true }))
}

async fn checkout(Path((provider, reference)): Path<(String, String)>) -> Html<String> {
    let escape = |text: &str| {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect::<String>()
    };
    let (provider, reference) = (escape(&provider), escape(&reference));
    Html(format!(
        "<!doctype html><title>gateway-sim checkout</title><h1>{provider} checkout for {reference}</h1>\
         <p>Simulated: <code>POST /_sim/charges/{reference}/complete</code> with \
         <code>{{\"outcome\":\"success\"}}</code> or <code>{{\"outcome\":\"failed\"}}</code>.</p>"
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    provider: Option<Provider>,
    #[serde(default)]
    reason: Option<String>,
}

/// Finds the provider holding `reference`, or the one asked for.
fn which<V>(
    map: &std::collections::BTreeMap<(Provider, String), V>,
    reference: &str,
    asked: Option<Provider>,
) -> Result<Provider, Problem> {
    let holders: Vec<Provider> = [Provider::Paystack, Provider::Flutterwave]
        .into_iter()
        .filter(|provider| asked.is_none_or(|asked| asked == *provider))
        .filter(|provider| map.contains_key(&(*provider, reference.to_owned())))
        .collect();
    match holders.as_slice() {
        [provider] => Ok(*provider),
        [] => Err(Problem(StatusCode::NOT_FOUND, format!("no {reference:?}"))),
        _ => Err(bad_request(format!(
            "{reference:?} exists at both providers: say which with \"provider\""
        ))),
    }
}

async fn complete_charge(
    State(sim): State<Sim>,
    Path(reference): Path<String>,
    body: bytes::Bytes,
) -> Answer {
    let asked: Outcome = parse(&body)?;
    let outcome = asked.outcome.as_deref().unwrap_or("success");
    let initial = sim.config.initial_balance;
    let (events, charge) = {
        let mut books = sim.books();
        let provider = which(&books.charges, &reference, asked.provider)?;
        let now = sim.now();
        let key = (provider, reference.clone());
        let Some(charge) = books.charges.get_mut(&key) else {
            return Err(Problem(StatusCode::NOT_FOUND, format!("no {reference:?}")));
        };
        if charge.status != "pending" {
            return Err(Problem(
                StatusCode::CONFLICT,
                format!("charge {reference:?} is already {}", charge.status),
            ));
        }
        let status = match (provider, outcome) {
            (Provider::Paystack, "success") => "success",
            (Provider::Flutterwave, "success") => "successful",
            (_, "failed") => "failed",
            (Provider::Paystack, "abandoned") => "abandoned",
            _ => return Err(bad_request(format!("unknown outcome {outcome:?}"))),
        };
        charge.status = status.to_owned();
        let mut events = Vec::new();
        if outcome == "success" {
            charge.paid_at = Some(now);
        }
        let charge = charge.clone();
        if outcome == "success" {
            books.credit(provider, &charge.currency, charge.amount, initial);
        }
        match provider {
            Provider::Paystack if outcome == "success" => events.push(Event {
                provider,
                name: "charge.success",
                data: charge.paystack_json(),
            }),
            Provider::Flutterwave if outcome != "abandoned" => events.push(Event {
                provider,
                name: "charge.completed",
                data: charge.flutterwave_json(),
            }),
            _ => {}
        }
        (events, charge)
    };
    sim.emit(events);
    Ok(Json(serde_json::to_value(charge).unwrap_or_default()))
}

async fn settle_transfer(
    State(sim): State<Sim>,
    Path(reference): Path<String>,
    body: bytes::Bytes,
) -> Answer {
    let asked: Outcome = parse(&body)?;
    let provider = which(&sim.books().transfers, &reference, asked.provider)?;
    let outcome = match asked.outcome.as_deref().unwrap_or("success") {
        "success" => TransferOutcome::Success,
        "failed" => TransferOutcome::Failed,
        "reversed" => TransferOutcome::Reversed,
        other => return Err(bad_request(format!("unknown outcome {other:?}"))),
    };
    settle(
        &sim,
        Settle::Transfer {
            provider,
            reference,
            outcome,
            reason: asked.reason,
        },
    )
    .map(Json)
}

async fn settle_refund(State(sim): State<Sim>, Path(id): Path<u64>, body: bytes::Bytes) -> Answer {
    let asked: Outcome = parse(&body)?;
    let processed = match asked.outcome.as_deref().unwrap_or("processed") {
        "processed" | "completed" | "success" => true,
        "failed" => false,
        other => return Err(bad_request(format!("unknown outcome {other:?}"))),
    };
    settle(&sim, Settle::Refund { id, processed }).map(Json)
}

/// How a transfer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferOutcome {
    Success,
    Failed,
    Reversed,
}

/// A bank-side event.
#[derive(Debug, Clone)]
pub(crate) enum Settle {
    Transfer {
        provider: Provider,
        reference: String,
        outcome: TransferOutcome,
        reason: Option<String>,
    },
    Refund {
        id: u64,
        processed: bool,
    },
}

/// Applies a bank-side event and sends its webhooks.
pub(crate) fn settle(sim: &Sim, settle: Settle) -> Result<Value, Problem> {
    let initial = sim.config.initial_balance;
    let (events, answer) = {
        let mut books = sim.books();
        match settle {
            Settle::Transfer {
                provider,
                reference,
                outcome,
                reason,
            } => {
                let key = (provider, reference.clone());
                let Some(transfer) = books.transfers.get_mut(&key) else {
                    return Err(Problem(StatusCode::NOT_FOUND, format!("no {reference:?}")));
                };
                let open = matches!(
                    transfer.status.as_str(),
                    "pending" | "otp" | "NEW" | "PENDING"
                );
                let done = matches!(transfer.status.as_str(), "success" | "SUCCESSFUL");
                let allowed = match outcome {
                    TransferOutcome::Success | TransferOutcome::Failed => open,
                    TransferOutcome::Reversed => open || done,
                };
                if !allowed {
                    return Err(Problem(
                        StatusCode::CONFLICT,
                        format!("transfer {reference:?} is {}", transfer.status),
                    ));
                }
                let status = match (provider, outcome) {
                    (Provider::Paystack, TransferOutcome::Success) => "success",
                    (Provider::Paystack, TransferOutcome::Failed) => "failed",
                    (Provider::Paystack, TransferOutcome::Reversed) => "reversed",
                    (Provider::Flutterwave, TransferOutcome::Success) => "SUCCESSFUL",
                    (Provider::Flutterwave, TransferOutcome::Failed) => "FAILED",
                    (Provider::Flutterwave, TransferOutcome::Reversed) => "REVERSED",
                };
                transfer.status = status.to_owned();
                if outcome == TransferOutcome::Failed {
                    transfer.failure =
                        Some(reason.unwrap_or_else(|| "Could not complete transfer".to_owned()));
                }
                let transfer = transfer.clone();
                if outcome != TransferOutcome::Success {
                    books.credit(provider, &transfer.currency, transfer.amount, initial);
                }
                let event = match provider {
                    Provider::Paystack => Event {
                        provider,
                        name: match outcome {
                            TransferOutcome::Success => "transfer.success",
                            TransferOutcome::Failed => "transfer.failed",
                            TransferOutcome::Reversed => "transfer.reversed",
                        },
                        data: transfer.paystack_json(),
                    },
                    Provider::Flutterwave => Event {
                        provider,
                        name: "transfer.completed",
                        data: transfer.flutterwave_json(),
                    },
                };
                (
                    vec![event],
                    serde_json::to_value(&transfer).unwrap_or_default(),
                )
            }
            Settle::Refund { id, processed } => {
                let Some(refund) = books.refunds.iter_mut().find(|refund| refund.id == id) else {
                    return Err(Problem(StatusCode::NOT_FOUND, format!("no refund {id}")));
                };
                if refund.status != "pending" {
                    return Err(Problem(
                        StatusCode::CONFLICT,
                        format!("refund {id} is {}", refund.status),
                    ));
                }
                let provider = refund.provider;
                refund.status = match (provider, processed) {
                    (_, false) => "failed",
                    (Provider::Paystack, true) => "processed",
                    (Provider::Flutterwave, true) => "completed",
                }
                .to_owned();
                let refund = refund.clone();
                let charge_key = (provider, refund.charge_reference.clone());
                let charge_id = books.charges.get(&charge_key).map_or(0, |charge| charge.id);
                if !processed {
                    books.credit(provider, &refund.currency, refund.amount, initial);
                    if let Some(charge) = books.charges.get_mut(&charge_key) {
                        charge.refunded -= refund.amount;
                    }
                }
                let event = match provider {
                    Provider::Paystack => Event {
                        provider,
                        name: if processed {
                            "refund.processed"
                        } else {
                            "refund.failed"
                        },
                        data: refund.paystack_json(),
                    },
                    Provider::Flutterwave => Event {
                        provider,
                        name: if processed {
                            "refund.completed"
                        } else {
                            "refund.failed"
                        },
                        data: refund.flutterwave_json(charge_id),
                    },
                };
                (
                    vec![event],
                    serde_json::to_value(&refund).unwrap_or_default(),
                )
            }
        }
    };
    sim.emit(events);
    Ok(answer)
}
