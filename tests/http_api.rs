//! Black-box tests of the HTTP API (NSQ.md §1.5), `nsqd.dat` (§1.8) and the nsqlookupd loop
//! (§1.10), against the real binary. Every wait is bounded; nothing sleeps and hopes.
// Tests panic to fail, and the shared harness (`common`) uses `expect`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::many_single_char_names
)]

mod common;

use common::{Broker, RawConn};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

struct Resp {
    status: u16,
    body: String,
    content_type: Option<String>,
    v1: bool,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn call(broker: &Broker, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
    let url = format!("http://{}{path}", broker.http_addr());
    let req = ureq::request(method, &url).timeout(Duration::from_secs(10));
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}\n{}", broker.logs()),
    };
    let status = resp.status();
    let content_type = resp.header("Content-Type").map(str::to_owned);
    let v1 = resp.header("X-NSQ-Content-Type") == Some("nsq; version=1.0");
    let body = resp.into_string().unwrap_or_default();
    Resp {
        status,
        body,
        content_type,
        v1,
    }
}

fn get(b: &Broker, path: &str) -> Resp {
    call(b, "GET", path, None)
}

fn post(b: &Broker, path: &str, body: &[u8]) -> Resp {
    call(b, "POST", path, Some(body))
}

#[track_caller]
fn assert_err(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.json(), serde_json::json!({ "message": message }));
    assert!(r.v1);
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
}

#[track_caller]
fn assert_ok_empty(r: &Resp) {
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, ""),
        "expected 200 with an empty body"
    );
    assert!(r.v1);
}

fn stats(b: &Broker, query: &str) -> Value {
    let r = get(b, &format!("/stats?format=json{query}"));
    assert_eq!(r.status, 200);
    r.json()
}

#[test]
fn ping_info_and_router_errors() {
    let b = Broker::start(&[]);
    let r = get(&b, "/ping");
    assert_eq!((r.status, r.body.as_str(), r.v1), (200, "OK", false));
    let info = get(&b, "/info");
    assert!(info.v1);
    let i = info.json();
    assert_eq!(i["version"], "1.3.0");
    assert_eq!(i["http_port"], b.http_addr().port());
    assert_eq!(i["tcp_port"], b.tcp_addr().port());
    assert_eq!(i["max_heartbeat_interval"], 60_000_000_000_u64);
    assert_eq!(i["max_output_buffer_size"], 65536);
    assert_eq!(i["max_output_buffer_timeout"], 30_000_000_000_u64);
    assert_eq!(i["max_deflate_level"], 6);
    assert!(
        i["start_time"].is_u64() && i["hostname"].is_string() && i["broadcast_address"].is_string()
    );
    assert_err(&get(&b, "/nope"), 404, "NOT_FOUND");
    assert_err(&post(&b, "/ping", b""), 405, "METHOD_NOT_ALLOWED");
    assert_err(&get(&b, "/pub?topic=t"), 405, "METHOD_NOT_ALLOWED");
    assert_err(&get(&b, "/config/"), 404, "NOT_FOUND");
}

/// One raw HTTP/1.1 exchange (no redirect following): the status line and headers
/// (lower-cased names), and the body.
fn raw_http(b: &Broker, method: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(b.http_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn router_allow_options_and_trailing_slash_as_httprouter() {
    let b = Broker::start(&[]);
    // 405 carries Allow; OPTIONS on a known path is a bare 200 with Allow.
    let (head, _) = raw_http(&b, "POST", "/ping");
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("\r\nallow: get, options\r\n"), "{head}");
    let (head, body) = raw_http(&b, "OPTIONS", "/config/max_msg_size");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nallow: get, options, put\r\n"), "{head}");
    assert!(!head.contains("x-nsq-content-type"), "{head}");
    assert_eq!(body, "");
    let (head, _) = raw_http(&b, "OPTIONS", "/nope");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    // A route plus a trailing slash: GET 301 with a link, other methods 307, query kept.
    let (head, body) = raw_http(&b, "GET", "/stats/?format=json");
    assert!(head.starts_with("http/1.1 301"), "{head}");
    assert!(
        head.contains("\r\nlocation: /stats?format=json\r\n"),
        "{head}"
    );
    assert_eq!(
        body,
        "<a href=\"/stats?format=json\">Moved Permanently</a>.\n\n"
    );
    let (head, body) = raw_http(&b, "POST", "/pub/?topic=t");
    assert!(head.starts_with("http/1.1 307"), "{head}");
    assert!(head.contains("\r\nlocation: /pub?topic=t\r\n"), "{head}");
    assert_eq!(body, "");
    // Not a route of this method without the slash: 404.
    let (head, _) = raw_http(&b, "POST", "/ping/");
    assert!(head.starts_with("http/1.1 404"), "{head}");
}

#[test]
fn pub_delivers_and_answers_every_error() {
    let b = Broker::start(&["--max-msg-size", "10"]);
    let r = post(&b, "/pub?topic=t", b"hello");
    assert_eq!((r.status, r.body.as_str(), r.v1), (200, "OK", true));
    let mut sub = RawConn::subscriber(b.tcp_addr(), "t", "c");
    sub.rdy(1);
    assert_eq!(sub.read_msg().body, b"hello");
    assert_err(&post(&b, "/pub?topic=t", b""), 400, "MSG_EMPTY");
    assert_err(
        &post(&b, "/pub?topic=t", b"01234567890"),
        413,
        "MSG_TOO_BIG",
    );
    assert_err(&post(&b, "/pub", b"x"), 400, "MISSING_ARG_TOPIC");
    assert_err(&post(&b, "/pub?topic=a%20b", b"x"), 400, "INVALID_TOPIC");
    assert_err(&post(&b, "/pub?topic=t;x", b"x"), 400, "INVALID_REQUEST");
    for d in ["-1", "abc", "3600001"] {
        assert_err(
            &post(&b, &format!("/pub?topic=t&defer={d}"), b"x"),
            400,
            "INVALID_DEFER",
        );
    }
    let r = post(&b, "/pub?topic=t&defer=60000", b"later");
    assert_eq!(r.status, 200);
    assert_eq!(stats(&b, "&topic=t")["topics"][0]["message_count"], 2);
    // The deferred message is not delivered now (the channel holds it until it is due).
    sub.rdy(2);
    let none = sub.try_read_frame(Duration::from_millis(300));
    assert!(
        !matches!(none, Ok(common::Frame::Message(_))),
        "a deferred message was delivered at once"
    );
}

#[test]
fn mpub_text_and_binary() {
    let b = Broker::start(&["--max-msg-size", "8", "--max-body-size", "64"]);
    assert_eq!(post(&b, "/mpub?topic=t", b"a\n\nbb\nccc").body, "OK");
    let mut bin = Vec::new();
    bin.extend_from_slice(&2_i32.to_be_bytes());
    for m in [&b"x"[..], b"yz"] {
        bin.extend_from_slice(&i32::try_from(m.len()).unwrap_or(0).to_be_bytes());
        bin.extend_from_slice(m);
    }
    assert_eq!(post(&b, "/mpub?topic=t&binary=true", &bin).body, "OK");
    assert_eq!(stats(&b, "&topic=t")["topics"][0]["message_count"], 5);
    assert_err(
        &post(&b, "/mpub?topic=t", b"123456789\n"),
        413,
        "MSG_TOO_BIG",
    );
    assert_err(&post(&b, "/mpub?topic=t", &[b'a'; 65]), 413, "BODY_TOO_BIG");
    assert_err(
        &post(&b, "/mpub?topic=t&binary=1", &0_i32.to_be_bytes()),
        413,
        "BAD_BODY",
    );
    let mut bad = 1_i32.to_be_bytes().to_vec();
    bad.extend_from_slice(&9_i32.to_be_bytes());
    bad.extend_from_slice(b"123456789");
    assert_err(
        &post(&b, "/mpub?topic=t&binary=1", &bad),
        413,
        "BAD_MESSAGE",
    );
    assert_err(&post(&b, "/mpub", b"a"), 400, "MISSING_ARG_TOPIC");
    // nsqd knows only true/1/false/0 (`boolParams`): `f` and `False`, which Go's ParseBool
    // would read as false, are unrecognised values and mean binary mode.
    for v in ["f", "False", "no"] {
        assert_err(
            &post(&b, &format!("/mpub?topic=u&binary={v}"), b"a\nb\n"),
            413,
            "BAD_BODY",
        );
    }
    assert_eq!(post(&b, "/mpub?topic=u&binary=0", b"a\nb\n").body, "OK");
    let mut sub = RawConn::subscriber(b.tcp_addr(), "t", "c");
    sub.rdy(10);
    let got: Vec<Vec<u8>> = (0..5).map(|_| sub.read_msg().body).collect();
    assert_eq!(
        got,
        vec![
            b"a".to_vec(),
            b"bb".to_vec(),
            b"ccc".to_vec(),
            b"x".to_vec(),
            b"yz".to_vec()
        ]
    );
}

#[test]
fn pub_waits_for_the_disk_with_ack_after_sync() {
    let b = Broker::start(&["--mem-queue-size", "0", "--ack-after-sync"]);
    for i in 0..20 {
        assert_eq!(
            post(&b, "/pub?topic=durable", format!("m{i}").as_bytes()).body,
            "OK"
        );
    }
    assert_eq!(post(&b, "/mpub?topic=durable", b"a\nb").body, "OK");
    assert_eq!(stats(&b, "&topic=durable")["topics"][0]["depth"], 22);
}

#[test]
fn topic_and_channel_admin() {
    let b = Broker::start(&[]);
    assert_err(&post(&b, "/topic/create", b""), 400, "MISSING_ARG_TOPIC");
    assert_err(
        &post(&b, "/topic/create?topic=b@d", b""),
        400,
        "INVALID_TOPIC",
    );
    assert_ok_empty(&post(&b, "/topic/create?topic=t", b""));
    assert_err(
        &post(&b, "/channel/create?channel=c", b""),
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_err(
        &post(&b, "/channel/create?topic=b@d&channel=c", b""),
        400,
        "INVALID_ARG_TOPIC",
    );
    assert_err(
        &post(&b, "/channel/create?topic=t", b""),
        400,
        "MISSING_ARG_CHANNEL",
    );
    assert_err(
        &post(&b, "/channel/create?topic=t&channel=b@d", b""),
        400,
        "INVALID_ARG_CHANNEL",
    );
    assert_err(
        &post(&b, "/channel/create?topic=nope&channel=c", b""),
        404,
        "TOPIC_NOT_FOUND",
    );
    assert_ok_empty(&post(&b, "/channel/create?topic=t&channel=c", b""));
    assert_ok_empty(&post(&b, "/channel/create?topic=t&channel=d", b""));
    post(&b, "/pub?topic=t", b"1");
    post(&b, "/pub?topic=t", b"2");
    assert_eq!(
        stats(&b, "&topic=t&channel=c")["topics"][0]["channels"][0]["depth"],
        2
    );
    assert_ok_empty(&post(&b, "/channel/empty?topic=t&channel=c", b""));
    assert_err(
        &post(&b, "/channel/empty?topic=t&channel=x", b""),
        404,
        "CHANNEL_NOT_FOUND",
    );
    assert_eq!(
        stats(&b, "&topic=t&channel=c")["topics"][0]["channels"][0]["depth"],
        0
    );
    assert_eq!(
        stats(&b, "&topic=t&channel=d")["topics"][0]["channels"][0]["depth"],
        2
    );
    assert_ok_empty(&post(&b, "/topic/empty?topic=t", b""));
    assert_err(
        &post(&b, "/topic/empty?topic=nope", b""),
        404,
        "TOPIC_NOT_FOUND",
    );
    // nsqd's topic empty drops what the topic holds, not what its channels already have.
    assert_eq!(
        stats(&b, "&topic=t&channel=d")["topics"][0]["channels"][0]["depth"],
        2
    );
    assert_ok_empty(&post(&b, "/topic/pause?topic=t", b""));
    assert_ok_empty(&post(&b, "/channel/pause?topic=t&channel=c", b""));
    assert_err(
        &post(&b, "/topic/pause?topic=nope", b""),
        404,
        "TOPIC_NOT_FOUND",
    );
    assert_err(
        &post(&b, "/channel/pause?topic=t&channel=x", b""),
        404,
        "CHANNEL_NOT_FOUND",
    );
    let s = stats(&b, "");
    assert_eq!(s["topics"][0]["paused"], true);
    assert_eq!(s["topics"][0]["channels"][0]["paused"], true);
    let dat = std::fs::read_to_string(b.data_path().join("nsqd.dat")).unwrap_or_default();
    let want = r#"{"topics":[{"channels":[{"name":"c","paused":true},{"name":"d","paused":false}],"name":"t","paused":true}],"version":"1.3.0"}"#;
    assert_eq!(dat, want);
    assert_ok_empty(&post(&b, "/topic/unpause?topic=t", b""));
    assert_ok_empty(&post(&b, "/channel/unpause?topic=t&channel=c", b""));
    assert_eq!(stats(&b, "")["topics"][0]["paused"], false);
    assert_ok_empty(&post(&b, "/channel/delete?topic=t&channel=d", b""));
    assert_err(
        &post(&b, "/channel/delete?topic=t&channel=d", b""),
        404,
        "CHANNEL_NOT_FOUND",
    );
    assert_ok_empty(&post(&b, "/topic/delete?topic=t", b""));
    assert_err(
        &post(&b, "/topic/delete?topic=t", b""),
        404,
        "TOPIC_NOT_FOUND",
    );
    assert_err(&post(&b, "/topic/delete", b""), 400, "MISSING_ARG_TOPIC");
    assert_eq!(stats(&b, "")["topics"], serde_json::json!([]));
}

/// The JSON type name of a value, for the golden shape below.
/// nsqd 1.3.0's `/stats` topic keys.
const NSQD_TOPIC_KEYS: [(&str, &str); 8] = [
    ("topic_name", "string"),
    ("channels", "array"),
    ("depth", "int"),
    ("backend_depth", "int"),
    ("message_count", "int"),
    ("message_bytes", "int"),
    ("paused", "bool"),
    ("e2e_processing_latency", "object"),
];

/// ringsq's own `/stats` topic keys, after nsqd's (nsqadmin ignores them).
const RINGSQ_TOPIC_KEYS: [(&str, &str); 3] = [
    ("disk_bytes", "int"),
    ("retained_messages", "int"),
    ("oldest_retained_ts", "int"),
];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[track_caller]
fn assert_shape(v: &Value, want: &[(&str, &str)]) {
    let Value::Object(map) = v else {
        panic!("not an object: {v}")
    };
    let got: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), kind(v))).collect();
    let mut want_sorted = want.to_vec();
    want_sorted.sort_unstable();
    let mut got_sorted = got.clone();
    got_sorted.sort_unstable();
    assert_eq!(got_sorted, want_sorted, "shape of {v}");
}

const CLIENT_SHAPE: &[(&str, &str)] = &[
    ("client_id", "string"),
    ("hostname", "string"),
    ("version", "string"),
    ("remote_address", "string"),
    ("state", "int"),
    ("ready_count", "int"),
    ("in_flight_count", "int"),
    ("message_count", "int"),
    ("finish_count", "int"),
    ("requeue_count", "int"),
    ("connect_ts", "int"),
    ("sample_rate", "int"),
    ("deflate", "bool"),
    ("snappy", "bool"),
    ("user_agent", "string"),
    ("tls", "bool"),
    ("tls_cipher_suite", "string"),
    ("tls_version", "string"),
    ("tls_negotiated_protocol", "string"),
    ("tls_negotiated_protocol_is_mutual", "bool"),
];

/// A broker with topic `t`: one message published over TCP, in flight to a consumer of `c`.
fn busy_broker() -> (Broker, RawConn, RawConn) {
    let b = Broker::start(&[]);
    let mut producer = RawConn::connect(b.tcp_addr());
    producer.publish("t", b"m");
    let mut sub = RawConn::subscriber(b.tcp_addr(), "t", "c");
    sub.rdy(1);
    let _ = sub.read_msg();
    (b, producer, sub)
}

#[test]
fn stats_text_and_metrics() {
    let (b, _producer, _sub) = busy_broker();
    // Text format.
    let text = get(&b, "/stats").body;
    assert!(text.starts_with("nsqd v1.3.0 "), "{text}");
    assert!(text.contains("\nHealth: OK\n"), "{text}");
    assert!(
        text.contains(
            "\n   [t              ] depth: 0     be-depth: 0     msgs: 1        e2e%: \n"
        ),
        "{text}"
    );
    assert!(text.contains("\n      [c                        ] depth: 0     be-depth: 0     inflt: 1    def: 0    re-q: 0     timeout: 0     msgs: 1        e2e%: \n"), "{text}");
    assert!(text.contains("\nProducers:\n   [V2 "), "{text}");
    // Metrics.
    let m = get(&b, "/metrics").body;
    assert!(
        m.contains("nsq_topic_messages_total{topic=\"t\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("nsq_channel_in_flight{topic=\"t\",channel=\"c\"} 1\n"),
        "{m}"
    );
}

#[test]
fn producer_pub_counts_show_one_topic_as_nsqd_1_3_0() {
    // nsqd 1.3.0's `ClientV2.Stats` keeps only the first pub count it meets.
    let b = Broker::start(&[]);
    let mut producer = RawConn::connect(b.tcp_addr());
    producer.publish("a", b"m");
    producer.publish("b", b"m");
    producer.publish("b", b"m");
    let s = stats(&b, "");
    let counts = s["producers"][0]["pub_counts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(counts.len(), 1, "{s}");
    let s = stats(&b, "&topic=b");
    assert_eq!(
        s["producers"][0]["pub_counts"],
        serde_json::json!([{"topic": "b", "count": 2}])
    );
}

#[test]
fn stats_json_has_nsqadmins_shape() {
    let (b, _producer, _sub) = busy_broker();
    let s = stats(&b, "");
    assert_shape(
        &s,
        &[
            ("version", "string"),
            ("health", "string"),
            ("start_time", "int"),
            ("topics", "array"),
            ("memory", "object"),
            ("producers", "array"),
        ],
    );
    assert_eq!(
        (s["version"].as_str(), s["health"].as_str()),
        (Some("1.3.0"), Some("OK"))
    );
    let t = &s["topics"][0];
    let topic_shape: Vec<_> = NSQD_TOPIC_KEYS
        .iter()
        .chain(&RINGSQ_TOPIC_KEYS)
        .copied()
        .collect();
    assert_shape(t, &topic_shape);
    assert_shape(
        &t["e2e_processing_latency"],
        &[("count", "int"), ("percentiles", "null")],
    );
    let c = &t["channels"][0];
    assert_shape(
        c,
        &[
            ("channel_name", "string"),
            ("depth", "int"),
            ("backend_depth", "int"),
            ("in_flight_count", "int"),
            ("deferred_count", "int"),
            ("message_count", "int"),
            ("requeue_count", "int"),
            ("timeout_count", "int"),
            ("client_count", "int"),
            ("clients", "array"),
            ("paused", "bool"),
            ("e2e_processing_latency", "object"),
            ("lag_messages", "int"),
            ("lag_seconds", "int"),
            ("dead_count", "int"),
        ],
    );
    assert_eq!(
        (c["client_count"].as_u64(), c["in_flight_count"].as_u64()),
        (Some(1), Some(1))
    );
    let client = &c["clients"][0];
    assert_shape(client, CLIENT_SHAPE);
    assert_eq!(
        (client["state"].as_u64(), client["version"].as_str()),
        (Some(3), Some("V2"))
    );
    let p = &s["producers"][0];
    let mut producer_shape = CLIENT_SHAPE.to_vec();
    producer_shape.push(("pub_counts", "array"));
    assert_shape(p, &producer_shape);
    assert_eq!(
        p["pub_counts"],
        serde_json::json!([{"topic": "t", "count": 1}])
    );
    assert_shape(
        &s["memory"],
        &[
            ("heap_objects", "int"),
            ("heap_idle_bytes", "int"),
            ("heap_in_use_bytes", "int"),
            ("heap_released_bytes", "int"),
            ("gc_pause_usec_100", "int"),
            ("gc_pause_usec_99", "int"),
            ("gc_pause_usec_95", "int"),
            ("next_gc_bytes", "int"),
            ("gc_total_runs", "int"),
        ],
    );
    // Filters.
    let s = stats(&b, "&include_clients=false&include_mem=false");
    assert!(s.get("memory").is_none());
    assert_eq!(
        (&s["producers"], &s["topics"][0]["channels"][0]["clients"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(s["topics"][0]["channels"][0]["client_count"], 1);
    assert_eq!(stats(&b, "&topic=missing")["topics"], Value::Null);
    assert_eq!(
        stats(&b, "&topic=t&channel=missing")["topics"],
        serde_json::json!([])
    );
}

#[test]
fn config_get_and_put() {
    let b = Broker::start(&["--lookupd-tcp-address", "127.0.0.1:1"]);
    // The option as given (nsqd answers the option, not the bound address).
    let r = get(&b, "/config/tcp_address");
    assert_eq!((r.status, r.body.as_str()), (200, "127.0.0.1:0"));
    assert_eq!(
        get(&b, "/config/nsqlookupd_tcp_addresses").json(),
        serde_json::json!(["127.0.0.1:1"])
    );
    assert_eq!(
        get(&b, "/config/msg_timeout").json(),
        serde_json::json!(60_000_000_000_u64)
    );
    assert_eq!(get(&b, "/config/log_level").json(), serde_json::json!(2));
    assert_err(&get(&b, "/config/nope"), 400, "INVALID_OPTION");
    // Flags without an nsqd 1.3.0 `Options` field are not options (`--verbose` is a no-op flag).
    for name in ["verbose", "worker_id", "node_id", "lookupd_tcp_address"] {
        assert_err(&get(&b, &format!("/config/{name}")), 400, "INVALID_OPTION");
    }
    let r = call(
        &b,
        "PUT",
        "/config/nsqlookupd_tcp_addresses",
        Some(br#"["127.0.0.1:2"]"#),
    );
    assert_eq!(r.json(), serde_json::json!(["127.0.0.1:2"]));
    assert_eq!(
        call(&b, "PUT", "/config/log_level", Some(b"debug")).json(),
        serde_json::json!(1)
    );
    assert_err(
        &call(&b, "PUT", "/config/log_level", Some(b"loud")),
        400,
        "INVALID_VALUE",
    );
    assert_err(
        &call(&b, "PUT", "/config/nsqlookupd_tcp_addresses", Some(b"{")),
        400,
        "INVALID_VALUE",
    );
    assert_err(
        &call(&b, "PUT", "/config/log_level", Some(b"")),
        413,
        "INVALID_VALUE",
    );
    assert_err(
        &call(&b, "PUT", "/config/tcp_address", Some(b"x")),
        400,
        "INVALID_OPTION",
    );
}

#[test]
fn topics_channels_paused_and_messages_survive_a_restart() {
    let mut b = Broker::start(&[]);
    post(&b, "/topic/create?topic=t", b"");
    post(&b, "/channel/create?topic=t&channel=c", b"");
    post(&b, "/channel/create?topic=t&channel=d", b"");
    post(&b, "/topic/create?topic=idle", b"");
    post(&b, "/topic/create?topic=gone%23ephemeral", b"");
    assert_eq!(
        stats(&b, "&topic=gone%23ephemeral")["topics"][0]["topic_name"],
        "gone#ephemeral"
    );
    for i in 0..3 {
        post(&b, "/pub?topic=t", format!("m{i}").as_bytes());
    }
    post(&b, "/channel/pause?topic=t&channel=d", b"");
    post(&b, "/topic/pause?topic=idle", b"");
    b.restart();
    let s = stats(&b, "");
    let names: Vec<&str> = s["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["topic_name"].as_str())
        .collect();
    assert_eq!(names, ["idle", "t"]);
    assert_eq!(s["topics"][0]["paused"], true);
    let t = &s["topics"][1];
    assert_eq!(t["paused"], false);
    assert_eq!(
        (
            t["channels"][0]["channel_name"].as_str(),
            t["channels"][0]["paused"].as_bool()
        ),
        (Some("c"), Some(false))
    );
    assert_eq!(
        (
            t["channels"][1]["channel_name"].as_str(),
            t["channels"][1]["paused"].as_bool()
        ),
        (Some("d"), Some(true))
    );
    assert_eq!(t["channels"][0]["depth"], 3);
    let mut sub = RawConn::subscriber(b.tcp_addr(), "t", "c");
    sub.rdy(3);
    let got: Vec<Vec<u8>> = (0..3).map(|_| sub.read_msg().body).collect();
    assert_eq!(got, vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]);
}

#[test]
fn a_go_written_nsqd_dat_is_loaded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let go = r#"{"topics":[{"channels":[{"name":"c1","paused":true},{"name":"bad name","paused":false}],"name":"gt","paused":false},{"channels":null,"name":"p","paused":true},{"channels":[],"name":"in valid","paused":false}],"version":"1.3.0"}"#;
    std::fs::write(dir.path().join("nsqd.dat"), go).unwrap_or_else(|e| panic!("write: {e}"));
    let b = Broker::start_in(dir.path(), &[]);
    let s = stats(&b, "");
    let t = &s["topics"];
    assert_eq!(
        (t[0]["topic_name"].as_str(), t[1]["topic_name"].as_str()),
        (Some("gt"), Some("p"))
    );
    assert_eq!(t.as_array().map(Vec::len), Some(2));
    assert_eq!(
        (
            t[0]["channels"][0]["channel_name"].as_str(),
            t[0]["channels"][0]["paused"].as_bool()
        ),
        (Some("c1"), Some(true))
    );
    assert_eq!(t[0]["channels"].as_array().map(Vec::len), Some(1));
    assert_eq!(t[1]["paused"], true);
    let dat = std::fs::read_to_string(dir.path().join("nsqd.dat")).unwrap_or_default();
    assert!(
        dat.contains(r#"{"channels":[],"name":"p","paused":true}"#),
        "{dat}"
    );
}

// ----- a fake nsqlookupd ---------------------------------------------------------------------

struct FakeLookupd {
    listener: TcpListener,
}

struct LookupConn {
    reader: BufReader<TcpStream>,
}

impl FakeLookupd {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        Self { listener }
    }

    fn addr(&self) -> String {
        self.listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    fn accept(&self, within: Duration, broker: &Broker) -> LookupConn {
        let deadline = Instant::now() + within;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap_or_else(|e| panic!("{e}"));
                    s.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap_or_else(|e| panic!("{e}"));
                    return LookupConn {
                        reader: BufReader::new(s),
                    };
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!(
                    "no connection from ringsq within {within:?}: {e}\n{}",
                    broker.logs()
                ),
            }
        }
    }
}

impl LookupConn {
    fn respond(&mut self, data: &[u8]) {
        let s = self.reader.get_mut();
        let mut frame = u32::try_from(data.len())
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(data);
        s.write_all(&frame)
            .unwrap_or_else(|e| panic!("respond: {e}"));
    }

    /// Reads one command line (without `\n`), answering `OK`.
    fn command(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read command: {e}"));
        let line = line.trim_end_matches('\n').to_owned();
        self.respond(b"OK");
        line
    }

    /// Magic + IDENTIFY; returns the IDENTIFY body.
    fn handshake(&mut self) -> Value {
        let mut magic = [0; 4];
        self.reader
            .read_exact(&mut magic)
            .unwrap_or_else(|e| panic!("magic: {e}"));
        assert_eq!(&magic, b"  V1");
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("identify: {e}"));
        assert_eq!(line, "IDENTIFY\n");
        let mut len = [0; 4];
        self.reader
            .read_exact(&mut len)
            .unwrap_or_else(|e| panic!("len: {e}"));
        let mut body = vec![0; usize::try_from(u32::from_be_bytes(len)).unwrap_or(0)];
        self.reader
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("body: {e}"));
        self.respond(br#"{"tcp_port":4160,"http_port":4161,"version":"1.3.0","broadcast_address":"x","hostname":"x"}"#);
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("identify JSON: {e}"))
    }
}

#[test]
fn registers_with_nsqlookupd_and_reconnects() {
    let lookupd = FakeLookupd::start();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        tmp.path().join("nsqd.dat"),
        r#"{"topics":[{"channels":[{"name":"c","paused":false}],"name":"t","paused":false},{"channels":[],"name":"u","paused":false}],"version":"1.3.0"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let b = Broker::start_in(
        tmp.path(),
        &[
            "--lookupd-tcp-address",
            &lookupd.addr(),
            "--broadcast-address",
            "bcast",
        ],
    );
    let mut conn = lookupd.accept(Duration::from_secs(10), &b);
    let id = conn.handshake();
    assert_eq!(id["version"], "1.3.0");
    assert_eq!(id["broadcast_address"], "bcast");
    assert_eq!(id["tcp_port"], b.tcp_addr().port());
    assert_eq!(id["http_port"], b.http_addr().port());
    assert!(id["hostname"].is_string());
    let mut initial = vec![conn.command(), conn.command()];
    initial.sort();
    assert_eq!(initial, ["REGISTER t c", "REGISTER u"]);
    post(&b, "/topic/create?topic=n", b"");
    assert_eq!(conn.command(), "REGISTER n");
    post(&b, "/channel/create?topic=n&channel=x", b"");
    assert_eq!(conn.command(), "REGISTER n x");
    post(&b, "/channel/delete?topic=n&channel=x", b"");
    assert_eq!(conn.command(), "UNREGISTER n x");
    post(&b, "/topic/delete?topic=u", b"");
    assert_eq!(conn.command(), "UNREGISTER u");
    // The lookupd goes away: ringsq reconnects and registers everything again.
    drop(conn);
    let mut conn = lookupd.accept(Duration::from_secs(10), &b);
    conn.handshake();
    let mut again = vec![conn.command(), conn.command()];
    again.sort();
    assert_eq!(again, ["REGISTER n", "REGISTER t c"]);
    // Peers change at run time.
    let second = FakeLookupd::start();
    let body = format!(r#"["{}"]"#, second.addr());
    assert_eq!(
        call(
            &b,
            "PUT",
            "/config/nsqlookupd_tcp_addresses",
            Some(body.as_bytes())
        )
        .status,
        200
    );
    let mut conn2 = second.accept(Duration::from_secs(10), &b);
    conn2.handshake();
    let mut regs = vec![conn2.command(), conn2.command()];
    regs.sort();
    assert_eq!(regs, ["REGISTER n", "REGISTER t c"]);
}

#[test]
fn statsd_sends_topic_and_channel_figures() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let addr = udp.local_addr().expect("addr").to_string();
    let b = Broker::start(&[
        "--statsd-address",
        &addr,
        "--statsd-interval",
        "100ms",
        "--broadcast-address",
        "h.x",
    ]);
    post(&b, "/pub?topic=t", b"m");
    post(&b, "/channel/create?topic=t&channel=c", b"");
    let prefix = format!("nsq.h_x_{}.", b.http_addr().port());
    let want = [
        format!("{prefix}topic.t.message_count:1|c"),
        format!("{prefix}topic.t.channel.c.depth:1|g"),
    ];
    let mut seen = vec![false; want.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0; 2048];
    while seen.iter().any(|s| !s) {
        assert!(
            Instant::now() < deadline,
            "statsd lines {want:?} not all seen\n{}",
            b.logs()
        );
        let n = udp.recv(&mut buf).expect("a statsd datagram");
        let text = String::from_utf8_lossy(&buf[..n]);
        for (i, w) in want.iter().enumerate() {
            seen[i] |= text.lines().any(|l| l == w);
        }
    }
}

/// The topic's and channel's entries in `/stats?format=json`.
fn topic_stats(b: &Broker, topic: &str) -> (Value, Value) {
    let stats = get(b, &format!("/stats?format=json&topic={topic}")).json();
    let t = stats["topics"][0].clone();
    let c = t["channels"][0].clone();
    (t, c)
}

#[test]
fn channel_message_count_counts_messages_reaching_the_channel() {
    let b = Broker::start(&[]);
    assert_eq!(post(&b, "/topic/create?topic=mc", b"").status, 200);
    assert_eq!(
        post(&b, "/channel/create?topic=mc&channel=c", b"").status,
        200
    );
    for _ in 0..5 {
        assert_eq!(post(&b, "/pub?topic=mc", b"m").status, 200);
    }
    let (t, c) = topic_stats(&b, "mc");
    assert_eq!(t["message_count"], 5);
    // nsqd counts a message for a channel when it reaches it, not when it is delivered.
    assert_eq!(c["message_count"], 5, "{c}");
    assert_eq!(c["depth"], 5, "{c}");
}

#[test]
fn a_paused_topic_holds_new_messages_at_the_topic() {
    let b = Broker::start(&[]);
    assert_eq!(post(&b, "/topic/create?topic=pz", b"").status, 200);
    assert_eq!(
        post(&b, "/channel/create?topic=pz&channel=c", b"").status,
        200
    );
    for _ in 0..2 {
        assert_eq!(post(&b, "/pub?topic=pz", b"before").status, 200);
    }
    assert_eq!(post(&b, "/topic/pause?topic=pz", b"").status, 200);
    for _ in 0..3 {
        assert_eq!(post(&b, "/pub?topic=pz", b"after").status, 200);
    }
    let (t, c) = topic_stats(&b, "pz");
    assert_eq!(
        (t["depth"].clone(), c["depth"].clone()),
        (3.into(), 2.into()),
        "{t}"
    );

    // The channel still delivers what reached it before the pause, and nothing after.
    let mut sub = RawConn::subscriber(b.tcp_addr(), "pz", "c");
    sub.rdy(10);
    for _ in 0..2 {
        let m = sub.read_msg();
        assert_eq!(m.body, b"before");
        sub.fin(&m.id);
    }
    sub.expect_no_frame(Duration::from_millis(500));
    assert_eq!(post(&b, "/topic/unpause?topic=pz", b"").status, 200);
    for _ in 0..3 {
        let m = sub.read_msg();
        assert_eq!(m.body, b"after");
        sub.fin(&m.id);
    }
}

#[test]
fn emptying_a_paused_topic_drops_what_it_held_back_only() {
    let b = Broker::start(&[]);
    assert_eq!(post(&b, "/topic/create?topic=ez", b"").status, 200);
    assert_eq!(
        post(&b, "/channel/create?topic=ez&channel=c", b"").status,
        200
    );
    for _ in 0..2 {
        assert_eq!(post(&b, "/pub?topic=ez", b"before").status, 200);
    }
    assert_eq!(post(&b, "/topic/pause?topic=ez", b"").status, 200);
    for _ in 0..3 {
        assert_eq!(post(&b, "/pub?topic=ez", b"held").status, 200);
    }
    assert_ok_empty(&post(&b, "/topic/empty?topic=ez", b""));
    let (t, c) = topic_stats(&b, "ez");
    assert_eq!(
        (t["depth"].clone(), c["depth"].clone()),
        (0.into(), 2.into()),
        "{t}"
    );
    assert_eq!(post(&b, "/pub?topic=ez", b"later").status, 200);
    assert_eq!(post(&b, "/topic/unpause?topic=ez", b"").status, 200);
    let (_, c) = topic_stats(&b, "ez");
    assert_eq!(c["depth"], 3, "{c}");

    // The channel gets what it had, then what came after the empty; never the emptied three.
    let mut sub = RawConn::subscriber(b.tcp_addr(), "ez", "c");
    sub.rdy(10);
    for want in [&b"before"[..], b"before", b"later"] {
        let m = sub.read_msg();
        assert_eq!(m.body, want);
        sub.fin(&m.id);
    }
    assert_eq!(post(&b, "/pub?topic=ez", b"last").status, 200);
    assert_eq!(sub.read_msg().body, b"last");
}

#[test]
fn emptying_a_topic_without_channels_drops_its_backlog() {
    let b = Broker::start(&[]);
    for _ in 0..4 {
        assert_eq!(post(&b, "/pub?topic=eb", b"old").status, 200);
    }
    assert_eq!(topic_stats(&b, "eb").0["depth"], 4);
    assert_ok_empty(&post(&b, "/topic/empty?topic=eb", b""));
    assert_eq!(topic_stats(&b, "eb").0["depth"], 0);
    assert_eq!(post(&b, "/pub?topic=eb", b"new").status, 200);
    let mut sub = RawConn::subscriber(b.tcp_addr(), "eb", "c");
    sub.rdy(10);
    assert_eq!(sub.read_msg().body, b"new");
}

/// nsqd's `Channel.Empty` drops what is in flight too: the client's later FIN fails.
#[test]
fn emptying_a_channel_drops_its_in_flight_messages() {
    let b = Broker::start(&[]);
    let mut sub = RawConn::subscriber(b.tcp_addr(), "ei", "c");
    sub.rdy(1);
    assert_eq!(post(&b, "/pub?topic=ei", b"one").status, 200);
    assert_eq!(post(&b, "/pub?topic=ei", b"two").status, 200);
    let m = sub.read_msg();
    assert_eq!(m.body, b"one");
    let (_, c) = topic_stats(&b, "ei");
    assert_eq!(
        (c["in_flight_count"].clone(), c["depth"].clone()),
        (1.into(), 1.into()),
        "{c}"
    );
    assert_ok_empty(&post(&b, "/channel/empty?topic=ei&channel=c", b""));
    let (_, c) = topic_stats(&b, "ei");
    assert_eq!(
        (c["in_flight_count"].clone(), c["depth"].clone()),
        (0.into(), 0.into()),
        "{c}"
    );
    sub.fin(&m.id);
    sub.expect_error(&format!(
        "E_FIN_FAILED FIN {} failed ID not in flight",
        m.id_str()
    ));
    // The client's window is free again: the next message reaches it.
    assert_eq!(post(&b, "/pub?topic=ei", b"three").status, 200);
    assert_eq!(sub.read_msg().body, b"three");
}

/// A DPUB'd message counts in `deferred_count` (not `depth`) from the moment it is published,
/// whatever `--mem-queue-size` says (nsqd puts it in each channel's deferred queue at once).
#[test]
fn a_dpub_is_deferred_at_once_at_every_mem_queue_size() {
    for flags in [&[][..], &["--mem-queue-size", "0"][..]] {
        let b = Broker::start(flags);
        assert_eq!(post(&b, "/topic/create?topic=dd", b"").status, 200);
        assert_eq!(
            post(&b, "/channel/create?topic=dd&channel=c", b"").status,
            200
        );
        assert_eq!(post(&b, "/pub?topic=dd&defer=1500", b"later").status, 200);
        assert_eq!(post(&b, "/pub?topic=dd", b"now").status, 200);
        let (_, c) = topic_stats(&b, "dd");
        assert_eq!(
            (c["deferred_count"].clone(), c["depth"].clone()),
            (1.into(), 1.into()),
            "{flags:?}: {c}"
        );
        let mut sub = RawConn::subscriber(b.tcp_addr(), "dd", "c");
        sub.rdy(10);
        let m = sub.read_msg();
        assert_eq!(m.body, b"now", "{flags:?}");
        sub.fin(&m.id);
        // Delivered when due, once: the cursor passes over its record.
        let m = sub.read_msg();
        assert_eq!(
            (m.body.as_slice(), m.attempts),
            (&b"later"[..], 1),
            "{flags:?}"
        );
        sub.fin(&m.id);
        sub.expect_no_frame(Duration::from_millis(300));
        let (_, c) = topic_stats(&b, "dd");
        assert_eq!(
            (c["deferred_count"].clone(), c["depth"].clone()),
            (0.into(), 0.into()),
            "{c}"
        );
    }
}
