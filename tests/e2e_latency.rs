//! Black-box tests of e2e processing latency (NSQ.md §1.5 `/stats`, §1.6 flags): measured at FIN
//! per channel, aggregated per topic, reported in `/stats` JSON and text, statsd and `/metrics`
//! in nsqd's shape. Every wait is bounded; the only timed assertion is a lower bound.
// Tests panic to fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{wait_for, Broker, RawConn};
use serde_json::Value;
use std::time::Duration;

/// How long the consumer holds the message before FIN: the latency's lower bound.
const HOLD: Duration = Duration::from_millis(50);

fn http(b: &Broker, method: &str, path: &str) -> String {
    let url = format!("http://{}{path}", b.http_addr());
    ureq::request(method, &url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", b.logs()))
        .into_string()
        .unwrap()
}

fn stats_json(b: &Broker) -> (String, Value) {
    let body = http(b, "GET", "/stats?format=json&topic=t");
    let v = serde_json::from_str(&body).unwrap();
    (body, v)
}

/// Publishes one message to `t`, consumes it on `c`, holds it for [`HOLD`], finishes it.
fn publish_hold_finish(b: &Broker) {
    let mut consumer = RawConn::subscriber(b.tcp_addr(), "t", "c");
    consumer.rdy(1);
    RawConn::connect(b.tcp_addr()).publish("t", b"m");
    let msg = consumer.read_msg();
    std::thread::sleep(HOLD);
    consumer.fin(&msg.id);
    consumer.nop();
}

#[test]
fn without_the_flag_percentiles_are_null() {
    let b = Broker::start(&[]);
    publish_hold_finish(&b);
    let (body, _) = stats_json(&b);
    let null = r#""e2e_processing_latency":{"count":0,"percentiles":null}"#;
    assert_eq!(body.matches(null).count(), 2, "topic and channel: {body}");
    assert!(!http(&b, "GET", "/metrics").contains("nsq_e2e_processing_latency_seconds{"));
}

#[test]
fn finishes_are_measured_and_reported_everywhere() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let statsd = udp.local_addr().unwrap().to_string();
    let b = Broker::start(&[
        "--e2e-processing-latency-percentile",
        "1.0",
        "--e2e-processing-latency-percentile",
        "0.5",
        "--e2e-processing-latency-window-time",
        "10m",
        "--statsd-address",
        &statsd,
        "--statsd-interval",
        "100ms",
        "--broadcast-address",
        "h",
    ]);
    // Before any FIN: the channel reports its quantiles at 0, count 0.
    let mut consumer = RawConn::subscriber(b.tcp_addr(), "t", "c");
    let (body, _) = stats_json(&b);
    assert!(
        body.contains(r#""e2e_processing_latency":{"count":0,"percentiles":[{"quantile":1,"value":0},{"quantile":0.5,"value":0}]}"#),
        "{body}"
    );
    consumer.rdy(1);
    RawConn::connect(b.tcp_addr()).publish("t", b"m");
    let msg = consumer.read_msg();
    std::thread::sleep(HOLD);
    consumer.fin(&msg.id);

    let (body, v) = wait_for(Duration::from_secs(10), "the FIN in /stats", || {
        let (body, v) = stats_json(&b);
        (v["topics"][0]["channels"][0]["e2e_processing_latency"]["count"] == 1).then_some((body, v))
    });
    let floor = f64::from(u32::try_from(HOLD.as_nanos()).unwrap()) * 0.99;
    for (what, e2e) in [
        (
            "channel",
            &v["topics"][0]["channels"][0]["e2e_processing_latency"],
        ),
        ("topic", &v["topics"][0]["e2e_processing_latency"]),
    ] {
        assert_eq!(e2e["count"], 1, "{what}: {body}");
        let p = e2e["percentiles"].as_array().unwrap();
        assert_eq!(p.len(), 2, "{what}: {body}");
        assert_eq!(p[0]["quantile"], 1, "{what}: {body}");
        assert_eq!(p[1]["quantile"], 0.5, "{what}: {body}");
        for q in p {
            let value = q["value"].as_f64().unwrap();
            assert!(value >= floor, "{what}: held {HOLD:?}, measured {value} ns");
            // Go prints a whole float64 without a fraction.
            assert!(q["value"].is_u64(), "{what}: {body}");
        }
    }

    // Text format: `e2e%: <human>, <human>` on the topic and channel lines.
    let text = http(&b, "GET", "/stats?topic=t");
    let e2e_lines: Vec<&str> = text.lines().filter(|l| l.contains("e2e%: ")).collect();
    assert_eq!(e2e_lines.len(), 2, "{text}");
    for line in e2e_lines {
        let human = line.split("e2e%: ").nth(1).unwrap_or_default();
        let parts: Vec<&str> = human.split(", ").collect();
        assert_eq!(parts.len(), 2, "{line}");
        for p in parts {
            assert!(p.ends_with("ms") || p.ends_with('s'), "{line}");
            assert!(p.contains('.'), "one decimal, as %0.1f: {line}");
        }
    }

    // /metrics: one gauge per quantile for the channel and the topic (channel="").
    let metrics = http(&b, "GET", "/metrics");
    for want in [
        r#"nsq_e2e_processing_latency_seconds{topic="t",channel="c",quantile="0.5"} "#,
        r#"nsq_e2e_processing_latency_seconds{topic="t",channel="",quantile="1"} "#,
        r#"nsq_e2e_processing_latency_count{topic="t",channel="c"} 1"#,
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }

    // statsd: `e2e_processing_latency_<pct>` gauges for the topic and the channel.
    let prefix = format!("nsq.h_{}.topic.t", b.http_addr().port());
    let want = [
        format!("{prefix}.e2e_processing_latency_100:"),
        format!("{prefix}.channel.c.e2e_processing_latency_50:"),
    ];
    let mut seen = [false; 2];
    let mut buf = [0; 4096];
    wait_for(Duration::from_secs(10), "e2e statsd gauges", || {
        let n = udp.recv(&mut buf).expect("a statsd datagram");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        for (i, w) in want.iter().enumerate() {
            seen[i] |= text.lines().any(|l| {
                l.strip_prefix(w.as_str())
                    .and_then(|rest| rest.strip_suffix("|g"))
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= floor)
            });
        }
        seen.iter().all(|s| *s).then_some(())
    });
}
