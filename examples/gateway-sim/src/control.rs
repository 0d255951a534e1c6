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
        // Paystack's `abandoned` only means nobody has paid yet.
        if !matches!(charge.status.as_str(), "pending" | "abandoned" | "ongoing") {
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
            (Provider::Paystack, "attempted") => "ongoing",
            (Provider::Flutterwave, "attempted") => "pending",
            _ => return Err(bad_request(format!("unknown outcome {outcome:?}"))),
        };
        charge.attempted = charge.attempted || outcome != "abandoned";
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
                event_type: None,
            }),
            Provider::Flutterwave if matches!(outcome, "success" | "failed") => {
                events.push(Event {
                    provider,
                    name: "charge.completed",
                    data: charge.flutterwave_json(),
                    event_type: Some("CARD_TRANSACTION"),
                })
            }
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
    let Some(outcome) = TransferOutcome::parse(asked.outcome.as_deref().unwrap_or("success"))
    else {
        return Err(bad_request(format!(
            "unknown outcome {:?}: pending, otp, received, success, failed, reversed, abandoned, blocked or rejected",
            asked.outcome
        )));
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
    let outcome = match asked.outcome.as_deref().unwrap_or("processed") {
        "processing" => RefundOutcome::Processing,
        "processed" | "completed" | "success" => RefundOutcome::Processed,
        "failed" => RefundOutcome::Failed,
        other => return Err(bad_request(format!("unknown outcome {other:?}"))),
    };
    settle(&sim, Settle::Refund { id, outcome }).map(Json)
}

/// Where a transfer goes next: Paystack's documented lifecycle
/// (<https://paystack.com/docs/transfers/how-transfers-work>). `Pending`,
/// `Otp` and `Received` are not conclusive; the rest are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferOutcome {
    Pending,
    Otp,
    Received,
    Success,
    Failed,
    Reversed,
    Abandoned,
    Blocked,
    Rejected,
}

impl TransferOutcome {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "otp" => Self::Otp,
            "received" => Self::Received,
            "success" => Self::Success,
            "failed" => Self::Failed,
            "reversed" => Self::Reversed,
            "abandoned" => Self::Abandoned,
            "blocked" => Self::Blocked,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }

    /// The status the provider shows, if it has this state.
    fn status(self, provider: Provider) -> Option<&'static str> {
        Some(match (provider, self) {
            (Provider::Paystack, Self::Pending) => "pending",
            (Provider::Paystack, Self::Otp) => "otp",
            (Provider::Paystack, Self::Received) => "received",
            (Provider::Paystack, Self::Success) => "success",
            (Provider::Paystack, Self::Failed) => "failed",
            (Provider::Paystack, Self::Reversed) => "reversed",
            (Provider::Paystack, Self::Abandoned) => "abandoned",
            (Provider::Paystack, Self::Blocked) => "blocked",
            (Provider::Paystack, Self::Rejected) => "rejected",
            (Provider::Flutterwave, Self::Pending) => "PENDING",
            (Provider::Flutterwave, Self::Success) => "SUCCESSFUL",
            (Provider::Flutterwave, Self::Failed) => "FAILED",
            (Provider::Flutterwave, Self::Reversed) => "REVERSED",
            (Provider::Flutterwave, _) => return None,
        })
    }

    fn conclusive(self) -> bool {
        !matches!(self, Self::Pending | Self::Otp | Self::Received)
    }

    /// The money goes back to the balance.
    fn returns_money(self) -> bool {
        self.conclusive() && self != Self::Success
    }

    /// The webhook Paystack documents for it; none for the approval
    /// outcomes (`abandoned`, `blocked`, `rejected`) and the steps on the
    /// way.
    fn paystack_event(self) -> Option<&'static str> {
        match self {
            Self::Success => Some("transfer.success"),
            Self::Failed => Some("transfer.failed"),
            Self::Reversed => Some("transfer.reversed"),
            _ => None,
        }
    }
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
        outcome: RefundOutcome,
    },
}

/// Where a refund goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundOutcome {
    /// Paystack's step between `pending` and `processed`.
    Processing,
    Processed,
    Failed,
}

/// Applies a bank-side event and sends its webhooks.
pub(crate) fn settle(sim: &Sim, settle: Settle) -> Result<Value, Problem> {
    let initial = sim.config.initial_balance;
    let now = sim.now();
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
                    "pending" | "otp" | "received" | "NEW" | "PENDING"
                );
                let done = matches!(transfer.status.as_str(), "success" | "SUCCESSFUL");
                let allowed = match outcome {
                    TransferOutcome::Reversed => open || done,
                    _ => open,
                };
                let Some(status) = outcome.status(provider) else {
                    return Err(bad_request(format!(
                        "{} transfers have no {outcome:?} state",
                        provider.as_str()
                    )));
                };
                if !allowed {
                    return Err(Problem(
                        StatusCode::CONFLICT,
                        format!("transfer {reference:?} is {}", transfer.status),
                    ));
                }
                transfer.status = status.to_owned();
                transfer.updated_at = now.clone();
                if outcome == TransferOutcome::Success {
                    transfer.transferred_at = Some(now.clone());
                }
                if outcome.returns_money() && outcome != TransferOutcome::Reversed {
                    transfer.failure =
                        Some(reason.unwrap_or_else(|| "Could not complete transfer".to_owned()));
                }
                let transfer = transfer.clone();
                if outcome.returns_money() {
                    books.credit(provider, &transfer.currency, transfer.amount, initial);
                }
                let event = match provider {
                    Provider::Paystack => outcome.paystack_event().map(|name| Event {
                        provider,
                        name,
                        data: transfer.paystack_event_json(&books),
                        event_type: None,
                    }),
                    Provider::Flutterwave => outcome.conclusive().then(|| Event {
                        provider,
                        name: "transfer.completed",
                        data: transfer.flutterwave_event_json(),
                        event_type: Some("Transfer"),
                    }),
                };
                (
                    event.into_iter().collect(),
                    serde_json::to_value(&transfer).unwrap_or_default(),
                )
            }
            Settle::Refund { id, outcome } => {
                let Some(refund) = books.refunds.iter_mut().find(|refund| refund.id == id) else {
                    return Err(Problem(StatusCode::NOT_FOUND, format!("no refund {id}")));
                };
                let provider = refund.provider;
                let open = match (provider, outcome) {
                    (Provider::Paystack, RefundOutcome::Processing) => refund.status == "pending",
                    (Provider::Flutterwave, RefundOutcome::Processing) => {
                        return Err(bad_request("Flutterwave refunds have no processing step"));
                    }
                    _ => matches!(refund.status.as_str(), "pending" | "processing"),
                };
                if !open {
                    return Err(Problem(
                        StatusCode::CONFLICT,
                        format!("refund {id} is {}", refund.status),
                    ));
                }
                refund.status = match (provider, outcome) {
                    (_, RefundOutcome::Failed) => "failed",
                    (_, RefundOutcome::Processing) => "processing",
                    (Provider::Paystack, RefundOutcome::Processed) => "processed",
                    (Provider::Flutterwave, RefundOutcome::Processed) => "completed",
                }
                .to_owned();
                if outcome != RefundOutcome::Processing {
                    refund.settled_at = Some(now.clone());
                }
                let refund = refund.clone();
                let charge_key = (provider, refund.charge_reference.clone());
                if let Some(charge) = books.charges.get_mut(&charge_key) {
                    match outcome {
                        RefundOutcome::Failed => charge.refunded -= refund.amount,
                        // Paystack: a fully refunded transaction reads
                        // `reversed` ("Understanding refund statuses").
                        RefundOutcome::Processed
                            if provider == Provider::Paystack
                                && charge.refunded >= charge.amount =>
                        {
                            charge.status = "reversed".to_owned();
                        }
                        _ => {}
                    }
                }
                if outcome == RefundOutcome::Failed {
                    books.credit(provider, &refund.currency, refund.amount, initial);
                }
                let charge = books.charges.get(&charge_key);
                let event = match provider {
                    Provider::Paystack => Event {
                        provider,
                        name: match outcome {
                            RefundOutcome::Processing => "refund.processing",
                            RefundOutcome::Processed => "refund.processed",
                            RefundOutcome::Failed => "refund.failed",
                        },
                        data: refund.paystack_event_json(charge.map_or("", |charge| &charge.email)),
                        event_type: None,
                    },
                    Provider::Flutterwave => Event {
                        provider,
                        name: if outcome == RefundOutcome::Processed {
                            "refund.completed"
                        } else {
                            "refund.failed"
                        },
                        data: refund.flutterwave_json(charge.map_or(0, |charge| charge.id)),
                        event_type: Some("REFUND"),
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
