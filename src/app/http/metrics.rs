//! `GET /metrics`: the figures of `/stats` in the Prometheus text exposition format (0.0.4).
//!
//! Every metric is written family by family (`# HELP`, `# TYPE`, then one sample per topic or
//! channel), so the output is valid even with no topics. Counters end in `_total`.

use super::response::{self, Resp};
use crate::app::node::Node;
use crate::app::stats::{ChannelStats, Filter, TopicStats};
use std::fmt::Write as _;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type TopicFigure = fn(&TopicStats) -> u64;
type ChannelFigure = fn(&ChannelStats) -> u64;

const TOPIC_METRICS: &[(&str, &str, &str, TopicFigure)] = &[
    (
        "nsq_topic_depth",
        "gauge",
        "Messages queued at the topic.",
        |t| t.depth,
    ),
    (
        "nsq_topic_backend_depth",
        "gauge",
        "Messages of the topic in its log.",
        |t| t.backend_depth,
    ),
    (
        "nsq_topic_messages_total",
        "counter",
        "Messages published to the topic.",
        |t| t.message_count,
    ),
    (
        "nsq_topic_message_bytes_total",
        "counter",
        "Body bytes published to the topic.",
        |t| t.message_bytes,
    ),
    (
        "nsq_topic_paused",
        "gauge",
        "1 when the topic is paused.",
        |t| u64::from(t.paused),
    ),
    (
        "ringsq_topic_disk_bytes",
        "gauge",
        "Bytes of the topic's log on disk.",
        |t| t.disk_bytes,
    ),
    (
        "ringsq_topic_retained_messages",
        "gauge",
        "Messages the topic's log holds (what --retention keeps included).",
        |t| t.retained_messages,
    ),
    (
        "ringsq_topic_oldest_retained_timestamp_seconds",
        "gauge",
        "Unix time the oldest message the log holds was published (0: none).",
        |t| u64::try_from(t.oldest_retained_ts).unwrap_or(0),
    ),
];

const CHANNEL_METRICS: &[(&str, &str, &str, ChannelFigure)] = &[
    (
        "nsq_channel_depth",
        "gauge",
        "Messages queued for the channel.",
        |c| c.depth,
    ),
    (
        "nsq_channel_backend_depth",
        "gauge",
        "Messages of the channel in the log.",
        |c| c.backend_depth,
    ),
    (
        "nsq_channel_in_flight",
        "gauge",
        "Messages in flight.",
        |c| c.in_flight_count,
    ),
    ("nsq_channel_deferred", "gauge", "Messages deferred.", |c| {
        c.deferred_count
    }),
    (
        "nsq_channel_messages_total",
        "counter",
        "Messages delivered.",
        |c| c.message_count,
    ),
    (
        "nsq_channel_requeues_total",
        "counter",
        "Messages requeued.",
        |c| c.requeue_count,
    ),
    (
        "nsq_channel_timeouts_total",
        "counter",
        "In-flight timeouts.",
        |c| c.timeout_count,
    ),
    (
        "nsq_channel_clients",
        "gauge",
        "Connected consumers.",
        |c| c.client_count,
    ),
    (
        "nsq_channel_paused",
        "gauge",
        "1 when the channel is paused.",
        |c| u64::from(c.paused),
    ),
    (
        "ringsq_channel_lag_messages",
        "gauge",
        "Messages from the oldest one the channel has not finished to the topic's end.",
        |c| c.lag_messages,
    ),
    (
        "ringsq_channel_lag_seconds",
        "gauge",
        "Seconds since the oldest message the channel has not finished was published.",
        |c| c.lag_seconds,
    ),
    (
        "ringsq_channel_dead_messages",
        "gauge",
        "Messages in the channel's dead letters (--max-attempts, --message-ttl).",
        |c| c.dead_count,
    ),
];

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn render(node: &Node) -> String {
    let filter = Filter::default();
    let snapshot = crate::app::gather::stats(&node.link, &filter).await;
    let topics = snapshot.topics.unwrap_or_default();
    let mut w = String::new();
    let healthy = u8::from(crate::app::gather::health(&node.link).await.is_ok());
    let _ = writeln!(
        w,
        "# HELP nsq_healthy 1 while every log accepts writes (/ping OK)."
    );
    let _ = writeln!(w, "# TYPE nsq_healthy gauge\nnsq_healthy {healthy}");
    let _ = writeln!(
        w,
        "# HELP nsq_start_time_seconds Unix time the broker started."
    );
    let _ = writeln!(
        w,
        "# TYPE nsq_start_time_seconds gauge\nnsq_start_time_seconds {}",
        node.start_unix_s
    );
    let writes =
        crate::connection::writer::SOCKET_WRITES.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        w,
        "# HELP ringsq_socket_writes_total Writes to client connections (messages and replies are batched into them).\n# TYPE ringsq_socket_writes_total counter\nringsq_socket_writes_total {writes}"
    );
    for (name, kind, help, figure) in TOPIC_METRICS {
        let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for t in &topics {
            let _ = writeln!(
                w,
                "{name}{{topic=\"{}\"}} {}",
                label(&t.topic_name),
                figure(t)
            );
        }
    }
    for (name, kind, help, figure) in CHANNEL_METRICS {
        let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for t in &topics {
            for c in &t.channels {
                let (tl, cl) = (label(&t.topic_name), label(&c.channel_name));
                let _ = writeln!(w, "{name}{{topic=\"{tl}\",channel=\"{cl}\"}} {}", figure(c));
            }
        }
    }
    e2e_metrics(&mut w, &topics);
    w
}

/// `--e2e-processing-latency-percentile`: one gauge per configured quantile, in seconds, and the
/// number of finishes in the window; nothing when no percentile is configured.
fn e2e_metrics(w: &mut String, topics: &[TopicStats]) {
    let mut samples = String::new();
    let mut counts = String::new();
    let mut add = |labels: String, e2e: &crate::app::stats::LatencyStats| {
        let Some(percentiles) = &e2e.percentiles else {
            return;
        };
        for p in percentiles {
            let _ = writeln!(
                samples,
                "nsq_e2e_processing_latency_seconds{{{labels},quantile=\"{}\"}} {}",
                p.quantile,
                p.value / 1e9
            );
        }
        let _ = writeln!(
            counts,
            "nsq_e2e_processing_latency_count{{{labels}}} {}",
            e2e.count
        );
    };
    for t in topics {
        let tl = label(&t.topic_name);
        add(
            format!("topic=\"{tl}\",channel=\"\""),
            &t.e2e_processing_latency,
        );
        for c in &t.channels {
            let cl = label(&c.channel_name);
            add(
                format!("topic=\"{tl}\",channel=\"{cl}\""),
                &c.e2e_processing_latency,
            );
        }
    }
    let _ = writeln!(
        w,
        "# HELP nsq_e2e_processing_latency_seconds Publish-to-FIN time at each configured quantile over the window (channel=\"\" is the topic's aggregate)."
    );
    let _ = write!(
        w,
        "# TYPE nsq_e2e_processing_latency_seconds gauge\n{samples}"
    );
    let _ = writeln!(
        w,
        "# HELP nsq_e2e_processing_latency_count Finishes measured in the current window."
    );
    let _ = write!(w, "# TYPE nsq_e2e_processing_latency_count gauge\n{counts}");
}

pub async fn metrics(node: &Node) -> Resp {
    response::typed(CONTENT_TYPE, render(node).await)
}
