//! `--log-format=json`: one JSON object per log line, for log shippers.
//!
//! Each line is `{"level":"info","time":"<RFC 3339, UTC>","message":"...", <fields>}`: the
//! event's fields (`topic`, `channel`, `client`, `seq`, ...) and those of the spans it is in
//! (outermost first; the event's own win a clash) at the top level, `level`, `time` and
//! `message` first. Values keep their JSON type when the event gave a number or a bool; any
//! other value is its text. Every line is built with `serde_json`, so every line parses.
//!
//! tracing-subscriber's own JSON formatter names the time `timestamp` and nests span fields
//! under `span`/`spans`; this one writes the names operators asked for, flat.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Keys every line starts with; an event field of the same name is written as `field.<name>`.
const RESERVED_KEYS: [&str; 3] = ["level", "time", "message"];

/// The event formatter of `--log-format=json` (use with [`SpanFields`] for span fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// A layer that keeps each span's fields as JSON values, for [`JsonLines`] to flatten.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFields;

/// A span's fields, in its extensions.
struct SpanJson(Map<String, Value>);

/// Collects fields into a JSON map.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields and the message arrive here; their Debug is their Display.
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl<S> Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Map::new();
        attrs.record(&mut Collect(&mut fields));
        span.extensions_mut().insert(SpanJson(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(SpanJson(fields)) = extensions.get_mut::<SpanJson>() {
            values.record(&mut Collect(fields));
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(SpanJson(span_fields)) = span.extensions().get::<SpanJson>() {
                    fields.extend(span_fields.clone());
                }
            }
        }
        event.record(&mut Collect(&mut fields));
        let message = fields.remove("message").unwrap_or(Value::Null);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        writer.write_str(&line(&level, &now_rfc3339(), message, fields))?;
        writer.write_char('\n')
    }
}

/// One line: `level`, `time`, `message`, then the fields (a reserved name gets `field.`).
fn line(level: &str, time: &str, message: Value, fields: Map<String, Value>) -> String {
    let head = [
        (RESERVED_KEYS[0].to_owned(), Value::from(level)),
        (RESERVED_KEYS[1].to_owned(), Value::from(time)),
        (RESERVED_KEYS[2].to_owned(), message),
    ];
    let rest = fields.into_iter().map(|(key, value)| {
        if RESERVED_KEYS.contains(&key.as_str()) {
            (format!("field.{key}"), value)
        } else {
            (key, value)
        }
    });
    let mut text = String::from("{");
    for (i, (key, value)) in head.into_iter().chain(rest).enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&Value::from(key).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    }
    text.push('}');
    text
}

/// The wall clock as RFC 3339 in UTC, nanoseconds included.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_json_with_its_keys_first() {
        let mut fields = Map::new();
        fields.insert("topic".to_owned(), Value::from("orders \"eu\""));
        fields.insert("seq".to_owned(), Value::from(7));
        fields.insert("level".to_owned(), Value::from("clash"));
        let text = line(
            "warn",
            "2026-01-02T03:04:05.6Z",
            Value::from("hi\nthere"),
            fields,
        );
        assert!(
            text.starts_with(
                r#"{"level":"warn","time":"2026-01-02T03:04:05.6Z","message":"hi\nthere""#
            ),
            "{text}"
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["topic"], "orders \"eu\"");
        assert_eq!(parsed["seq"], 7);
        assert_eq!(parsed["field.level"], "clash");
        assert!(!text.contains('\n'));
    }

    /// A writer into a shared buffer, for a subscriber under test.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_and_span_fields_come_out_flat() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFields).with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("conn", client = "10.0.0.1:5000", shard = 1_u64);
            let _entered = span.enter();
            tracing::warn!(topic = %"orders", channel = "c", seq = 7_u64, "CHANNEL({}): slow", "c");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["message"], "CHANNEL(c): slow");
        assert_eq!(
            (&line["topic"], &line["channel"], &line["seq"]),
            (&Value::from("orders"), &Value::from("c"), &Value::from(7))
        );
        assert_eq!(
            (&line["client"], &line["shard"]),
            (&Value::from("10.0.0.1:5000"), &Value::from(1))
        );
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
    }

    #[test]
    fn time_is_rfc_3339() {
        let t = now_rfc3339();
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).is_ok(),
            "{t}"
        );
    }
}
