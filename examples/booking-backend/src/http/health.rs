//! `/health/live`, `/health/ready` and `/metrics`.

use crate::startup::App;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness for a load balancer: up or down, and which part is down,
/// never why (the cause goes to the log) and nothing an outsider could use
/// (lock holders and tokens are for `payguard lock status`). While the
/// instance drains after SIGTERM it answers 503, so the balancer stops
/// sending before the listener closes.
pub(super) async fn ready(State(app): State<Arc<App>>) -> (StatusCode, Json<Value>) {
    let database = app.store.ping().await;
    if let Err(error) = &database {
        tracing::error!(%error, "readiness: the database is down");
    }
    let breakers: serde_json::Map<String, Value> = app
        .gateways
        .states()
        .into_iter()
        .map(|(gateway, state)| {
            (
                gateway.as_str().to_owned(),
                json!(format!("{state:?}").to_lowercase()),
            )
        })
        .collect();
    let draining = app.draining.is_cancelled();
    let status = match (database.is_ok(), draining) {
        (_, true) => "draining",
        (true, false) => "ready",
        (false, false) => "unavailable",
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "instance": app.settings.instance,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "database": if database.is_ok() { "up" } else { "down" },
        "breakers": breakers,
    });
    (code, Json(body))
}

pub(super) async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    crate::telemetry::record_pool(app.pool.as_ref());
    let patience = app.settings.job_every;
    let backlog = app.store.backlog(app.settings.escrow_hold, patience).await;
    match &backlog {
        Ok(backlog) => crate::telemetry::record_backlog(backlog),
        Err(error) => tracing::error!(%error, "metrics: the database is down"),
    }
    metrics::gauge!("booking_database_up").set(if backlog.is_ok() { 1.0 } else { 0.0 });
    // Rendering takes time proportional to the series: off the request
    // workers.
    let text = tokio::task::spawn_blocking(crate::telemetry::render_metrics)
        .await
        .unwrap_or_default();
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
}
