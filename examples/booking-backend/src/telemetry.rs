//! Logs (JSON, redacted by payguard-redact) and Prometheus metrics.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use payguard_redact::{LogFormat, RedactingLayer, Redactor};
use std::sync::{Mutex, OnceLock};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process).
pub fn install_metrics() {
    METRICS.get_or_init(|| PrometheusBuilder::new().install_recorder().ok());
}

/// The metrics in Prometheus's text format.
pub fn render_metrics() -> String {
    METRICS
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Registers, at zero, the counters alerts watch with `increase()`: a
/// series first seen at 1 would show no increase, and the first payout
/// failure of a process would page nobody.
pub fn register_alerting_counters() {
    for outcome in ["failed", "reversed"] {
        metrics::counter!("booking_payouts_failed_total", "outcome" => outcome).increment(0);
    }
    for reason in ["lease_lost", "store_failed"] {
        metrics::counter!("booking_webhook_completions_failed_total", "reason" => reason)
            .increment(0);
    }
    metrics::counter!("booking_refunds_failed_total").increment(0);
    metrics::counter!("booking_payments_unmatched_total").increment(0);
    metrics::counter!("booking_charges_failed_total").increment(0);
}

/// The connection pool's gauges, read when metrics are scraped.
pub fn record_pool(pool: Option<&sqlx::PgPool>) {
    if let Some(pool) = pool {
        metrics::gauge!("booking_db_pool_connections").set(f64::from(pool.size()));
        #[allow(clippy::cast_precision_loss)] // a pool holds far fewer than 2^52
        metrics::gauge!("booking_db_pool_idle").set(pool.num_idle() as f64);
    }
}

/// What waits longer than it should, as gauges.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn record_backlog(backlog: &crate::store::Backlog) {
    metrics::gauge!("booking_payouts_stuck").set(backlog.stuck_payouts as f64);
    metrics::gauge!("booking_refunds_unsent").set(backlog.unsent_refunds as f64);
    metrics::gauge!("booking_webhook_inbox_failed").set(backlog.failed_webhooks as f64);
    metrics::gauge!("booking_webhook_inbox_dead").set(backlog.dead_webhooks as f64);
}

/// Sends JSON logs, with personal data and secrets redacted, to `writer`:
/// this crate and payguard's at `level`, everything else at `WARN` or
/// `level` if quieter. Once per process; later calls do nothing.
pub fn install_logs<W>(writer: W, level: Level)
where
    W: std::io::Write + Send + 'static,
{
    let quiet = std::cmp::min(level, Level::WARN);
    let layer = RedactingLayer::new(Redactor::new(), Mutex::new(writer))
        .format(LogFormat::Json)
        .with_filter(
            Targets::new()
                .with_default(quiet)
                .with_target("booking_backend", level)
                .with_target("payguard_lock", level)
                .with_target("payguard_idempotency", level)
                .with_target("payguard_webhook", level),
        );
    let subscriber = tracing_subscriber::registry().with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
