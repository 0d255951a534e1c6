//! `tracing` integration: a formatting layer that redacts every field and
//! the message before anything is written, and a writer wrapper that scans
//! the final bytes of any other layer as a backstop.
//!
//! The layer formats events itself because `tracing-subscriber`'s JSON
//! formatter writes event fields directly, past any field formatter, so a
//! redacting `FormatFields` would miss them.

use crate::keys::KeyClass;
use crate::redactor::{Redactor, Report};
use payguard_core::{Clock, SystemClock};
use serde_json::{Map, Value};
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// How [`RedactingLayer`] writes lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (the message included), `spans`.
    #[default]
    Json,
    /// `timestamp LEVEL target: message key=value ...`.
    Text,
}

/// A `tracing` layer that writes redacted log lines: key rules for field
/// names (an `authorization` field is never written in clear), content
/// detectors for values and the message.
///
/// ```
/// use payguard_redact::{LogFormat, RedactingLayer, Redactor};
/// use tracing_subscriber::prelude::*;
///
/// let layer = RedactingLayer::new(Redactor::new(), std::io::stdout).format(LogFormat::Json);
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(email = "ada@example.com", "charge ok for card 4111111111111111");
///     // {"timestamp":"…","level":"INFO","target":"…","fields":{"message":"charge ok for card ****1111","email":"[REDACTED:email]"}}
/// });
/// ```
pub struct RedactingLayer<W> {
    redactor: Redactor,
    make_writer: W,
    format: LogFormat,
    clock: Arc<dyn Clock>,
}

impl<W> fmt::Debug for RedactingLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactingLayer")
            .field("redactor", &self.redactor)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl<W> RedactingLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// Writes JSON lines redacted by `redactor` to `make_writer`.
    pub fn new(redactor: Redactor, make_writer: W) -> Self {
        Self {
            redactor,
            make_writer,
            format: LogFormat::Json,
            clock: Arc::new(SystemClock),
        }
    }

    /// The line format.
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// The clock timestamps come from.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// A span's redacted fields, kept in its extensions.
struct SpanFields(Vec<(&'static str, Value)>);

/// Records fields redacted, in the order they come.
struct Redacting<'r> {
    redactor: &'r Redactor,
    fields: Vec<(&'static str, Value)>,
    report: Report,
}

impl<'r> Redacting<'r> {
    fn new(redactor: &'r Redactor) -> Self {
        Self {
            redactor,
            fields: Vec::new(),
            report: Report::default(),
        }
    }

    fn text(&mut self, field: &Field, value: &str) {
        let key = field.name();
        if key != "message" && self.redactor.classify_key(key) == KeyClass::Remove {
            self.report.key_removed();
            return;
        }
        let redacted = if key == "message" {
            self.redactor
                .redact_in_context(value, None, &mut self.report)
        } else {
            self.redactor
                .redact_field_with_report(key, value, &mut self.report)
        };
        self.fields
            .push((key, Value::String(redacted.into_owned())));
    }

    fn number(&mut self, field: &Field, value: Value, rendered: impl fmt::Display) {
        // Numbers under sensitive keys, and long ones (a card sent as a
        // number), go through the text rules.
        let class = self.redactor.classify_key(field.name());
        let long = value.as_u64().is_some_and(|n| n >= 1_000_000)
            || value.as_i64().is_some_and(|n| n <= -1_000_000);
        if long || !matches!(class, KeyClass::Allowed | KeyClass::Neutral) {
            let text = rendered.to_string();
            let redacted =
                self.redactor
                    .redact_field_with_report(field.name(), &text, &mut self.report);
            if redacted != text || class == KeyClass::Remove {
                if class != KeyClass::Remove {
                    self.fields
                        .push((field.name(), Value::String(redacted.into_owned())));
                }
                return;
            }
        }
        self.fields.push((field.name(), value));
    }
}

impl Visit for Redacting<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.text(field, &text);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.text(field, &text);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, Value::from(value), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, Value::from(value), value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.text(field, &value.to_string());
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.text(field, &value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name(), Value::from(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), Value::Bool(value)));
    }
}

impl<S, W> Layer<S> for RedactingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut visitor = Redacting::new(&self.redactor);
        attributes.record(&mut visitor);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let mut visitor = Redacting::new(&self.redactor);
        values.record(&mut visitor);
        if let Some(span) = context.span(id) {
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<SpanFields>() {
                Some(fields) => fields.0.extend(visitor.fields),
                None => extensions.insert(SpanFields(visitor.fields)),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        let mut visitor = Redacting::new(&self.redactor);
        event.record(&mut visitor);
        let metadata = event.metadata();
        let mut spans: Vec<(String, Vec<(&'static str, Value)>)> = Vec::new();
        if let Some(scope) = context.event_scope(event) {
            for span in scope.from_root() {
                let fields = span
                    .extensions()
                    .get::<SpanFields>()
                    .map(|fields| fields.0.clone())
                    .unwrap_or_default();
                spans.push((span.name().to_owned(), fields));
            }
        }
        let timestamp = rfc3339(self.clock.wall());
        let mut line = match self.format {
            LogFormat::Json => {
                let mut object = Map::new();
                object.insert("timestamp".into(), Value::String(timestamp));
                object.insert("level".into(), Value::String(metadata.level().to_string()));
                object.insert("target".into(), Value::String(metadata.target().to_owned()));
                object.insert(
                    "fields".into(),
                    Value::Object(
                        visitor
                            .fields
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    ),
                );
                if !spans.is_empty() {
                    let spans = spans
                        .into_iter()
                        .map(|(name, fields)| {
                            let mut span: Map<String, Value> =
                                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                            span.insert("name".into(), Value::String(name));
                            Value::Object(span)
                        })
                        .collect();
                    object.insert("spans".into(), Value::Array(spans));
                }
                serde_json::to_string(&Value::Object(object)).unwrap_or_default()
            }
            LogFormat::Text => {
                let mut line =
                    format!("{timestamp} {:>5} {}:", metadata.level(), metadata.target());
                for (name, fields) in &spans {
                    let _ = write!(line, " {name}");
                    if !fields.is_empty() {
                        line.push('{');
                        write_pairs(&mut line, fields);
                        line.push('}');
                    }
                    line.push(':');
                }
                if let Some((_, Value::String(message))) =
                    visitor.fields.iter().find(|(k, _)| *k == "message")
                {
                    let _ = write!(line, " {message}");
                }
                let others: Vec<(&'static str, Value)> = visitor
                    .fields
                    .into_iter()
                    .filter(|(k, _)| *k != "message")
                    .collect();
                if !others.is_empty() {
                    line.push(' ');
                    write_pairs(&mut line, &others);
                }
                line
            }
        };
        line.push('\n');
        let _ = self
            .make_writer
            .make_writer_for(metadata)
            .write_all(line.as_bytes());
    }
}

fn write_pairs(line: &mut String, fields: &[(&'static str, Value)]) {
    for (index, (name, value)) in fields.iter().enumerate() {
        if index > 0 {
            line.push(' ');
        }
        match value {
            Value::String(text) => {
                let _ = write!(line, "{name}={text:?}");
            }
            other => {
                let _ = write!(line, "{name}={other}");
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Wraps another layer's writer and redacts each event's final bytes before
/// they reach it: a backstop for layers that do not redact (the stock `fmt`
/// layer, third-party layers, `Debug` dumps). It sees no field names, so it
/// relies on the content detectors and on `key=value` pairs in the text.
///
/// ```
/// use payguard_redact::{RedactingMakeWriter, Redactor};
///
/// let writer = RedactingMakeWriter::new(Redactor::new(), std::io::stderr);
/// let subscriber = tracing_subscriber::fmt().json().with_writer(writer).finish();
/// # let _ = subscriber;
/// ```
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    redactor: Redactor,
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    /// Redacts what `inner`'s writers are given.
    pub fn new(redactor: Redactor, inner: M) -> Self {
        Self { redactor, inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            redactor: self.redactor.clone(),
            inner: self.inner.make_writer(),
            buffer: Vec::new(),
        }
    }
}

/// Buffers one event's bytes, redacts them on flush or drop, and passes
/// them on.
#[derive(Debug)]
pub struct RedactingWriter<W: Write> {
    redactor: Redactor,
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn pass_on(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.buffer);
        match std::str::from_utf8(&bytes) {
            Ok(text) => self.inner.write_all(self.redactor.redact(text).as_bytes()),
            // Not text: what it says cannot be checked, so it is not written.
            Err(_) => self.inner.write_all(b"[REDACTED:binary log output]\n"),
        }
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.pass_on();
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
