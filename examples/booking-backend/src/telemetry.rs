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

/// Sends JSON logs, with personal data and secrets redacted, to `writer`
/// (once per process; later calls do nothing).
pub fn install_logs<W>(writer: W)
where
    W: std::io::Write + Send + 'static,
{
    let layer = RedactingLayer::new(Redactor::new(), Mutex::new(writer))
        .format(LogFormat::Json)
        .with_filter(
            Targets::new()
                .with_default(Level::WARN)
                .with_target("booking_backend", Level::INFO)
                .with_target("payguard_lock", Level::INFO)
                .with_target("payguard_idempotency", Level::INFO),
        );
    let subscriber = tracing_subscriber::registry().with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
