//! Black-box tests of topic creation asking nsqlookupd for known channels (nsqd's `GetTopic`,
//! NSQ.md §1.2 last bullet): a fake nsqlookupd (TCP protocol V1 plus a tiny HTTP `/channels`
//! endpoint, both in this test) and the real binary. Every wait is bounded.
// Tests panic to fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{wait_for, Broker, RawConn};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

/// What the fake lookupd's HTTP side does with `/channels`.
#[derive(Clone, Copy)]
enum HttpMode {
    /// `{"channels":[…]}` for the topic it was built with, `{"channels":[]}` otherwise.
    Answer,
    /// 500 with nsqlookupd's error body.
    Fail,
    /// Reads the request and never answers.
    Hang,
}

/// One HTTP request the fake lookupd received: request line and `Accept` header.
#[derive(Debug)]
struct SeenRequest {
    line: String,
    accept: Option<String>,
}

struct FakeLookupd {
    tcp_addr: String,
    requests: Receiver<SeenRequest>,
}

impl FakeLookupd {
    /// Serves TCP V1 (IDENTIFY answered with the HTTP port, every other command `OK`) and HTTP.
    fn start(mode: HttpMode, topic: &'static str, channels: &'static [&'static str]) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let http_port = http.local_addr().unwrap().port();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap().to_string();
        let (tx, requests) = mpsc::channel();
        thread::spawn(move || {
            for s in tcp.incoming().flatten() {
                thread::spawn(move || serve_v1(s, http_port));
            }
        });
        thread::spawn(move || {
            for s in http.incoming().flatten() {
                let tx = tx.clone();
                thread::spawn(move || serve_http(s, mode, topic, channels, &tx));
            }
        });
        Self { tcp_addr, requests }
    }

    /// Publishes to fresh probe topics until one is queried: ringsq has learned the HTTP port.
    fn wait_until_known(&self, b: &Broker, conn: &mut RawConn) {
        let mut i = 0;
        wait_for(
            Duration::from_secs(20),
            "a /channels query from ringsq",
            || {
                i += 1;
                let probe = format!("probe{i}");
                conn.publish(&probe, b"x");
                let want = format!("GET /channels?topic={probe} HTTP/1.1");
                std::iter::from_fn(|| self.requests.try_recv().ok()).find(|r| r.line == want)
            },
        );
        let _ = b;
    }
}

fn respond(s: &mut TcpStream, data: &[u8]) {
    let mut frame = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(data);
    let _ = s.write_all(&frame);
}

fn serve_v1(s: TcpStream, http_port: u16) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut magic = [0; 4];
    if r.read_exact(&mut magic).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "IDENTIFY\n" {
            let mut len = [0; 4];
            r.read_exact(&mut len).unwrap();
            let mut body = vec![0; usize::try_from(u32::from_be_bytes(len)).unwrap()];
            r.read_exact(&mut body).unwrap();
            let answer = format!(
                r#"{{"tcp_port":4160,"http_port":{http_port},"version":"1.3.0","broadcast_address":"unresolvable.invalid","hostname":"x"}}"#
            );
            respond(&mut w, answer.as_bytes());
        } else {
            respond(&mut w, b"OK");
        }
    }
}

fn serve_http(
    s: TcpStream,
    mode: HttpMode,
    topic: &str,
    channels: &[&str],
    tx: &Sender<SeenRequest>,
) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut accept = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("accept") {
                accept = Some(v.trim().to_owned());
            }
        }
    }
    let line = line.trim_end().to_owned();
    let asked_for_ours = line.starts_with(&format!("GET /channels?topic={topic} "));
    let _ = tx.send(SeenRequest { line, accept });
    let (status, body) = match mode {
        HttpMode::Hang => {
            // Hold the connection open until ringsq gives up and closes it.
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            return;
        }
        HttpMode::Fail => (
            "500 Internal Server Error",
            r#"{"message":"INTERNAL_ERROR"}"#.to_owned(),
        ),
        HttpMode::Answer if asked_for_ours => {
            let list: Vec<String> = channels.iter().map(|c| format!("\"{c}\"")).collect();
            ("200 OK", format!(r#"{{"channels":[{}]}}"#, list.join(",")))
        }
        HttpMode::Answer => ("200 OK", r#"{"channels":[]}"#.to_owned()),
    };
    let _ = write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nX-NSQ-Content-Type: nsq; version=1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn stats(b: &Broker, topic: &str) -> Value {
    let url = format!("http://{}/stats?format=json&topic={topic}", b.http_addr());
    let body = ureq::get(&url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("/stats: {e}\n{}", b.logs()))
        .into_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

fn channel_names(v: &Value) -> Vec<String> {
    v["topics"][0]["channels"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["channel_name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_new_topic_starts_with_the_channels_lookupd_knows() {
    let lookupd = FakeLookupd::start(
        HttpMode::Answer,
        "orders",
        &["audit", "billing", "tail#ephemeral"],
    );
    let b = Broker::start(&["--lookupd-tcp-address", &lookupd.tcp_addr]);
    let mut producer = RawConn::connect(b.tcp_addr());
    lookupd.wait_until_known(&b, &mut producer);

    producer.publish("orders", b"first");
    let seen = wait_for(Duration::from_secs(10), "the query for orders", || {
        std::iter::from_fn(|| lookupd.requests.try_recv().ok())
            .find(|r| r.line.contains("topic=orders"))
    });
    assert_eq!(seen.line, "GET /channels?topic=orders HTTP/1.1");
    assert_eq!(
        seen.accept.as_deref(),
        Some("application/vnd.nsq; version=1.0")
    );

    // The channels existed before the first message: each holds it; the ephemeral one is skipped.
    let s = stats(&b, "orders");
    assert_eq!(channel_names(&s), ["audit", "billing"], "{s}");
    for c in s["topics"][0]["channels"].as_array().unwrap() {
        assert_eq!(c["depth"], 1, "{c}");
    }
    for channel in ["audit", "billing"] {
        let mut consumer = RawConn::subscriber(b.tcp_addr(), "orders", channel);
        consumer.rdy(1);
        let msg = consumer.read_msg();
        assert_eq!(msg.body, b"first", "channel {channel}");
        consumer.fin(&msg.id);
    }
    // nsqd.dat records the pre-created channels like any other.
    let dat = wait_for(Duration::from_secs(10), "nsqd.dat with orders", || {
        std::fs::read_to_string(b.data_path().join("nsqd.dat"))
            .ok()
            .filter(|d| d.contains(r#""name":"orders""#))
    });
    assert!(dat.contains(r#""name":"audit""#), "{dat}");
    assert!(!dat.contains("tail#ephemeral"), "{dat}");
}

#[test]
fn a_failing_or_silent_lookupd_never_stops_the_publish() {
    for mode in [HttpMode::Fail, HttpMode::Hang] {
        let lookupd = FakeLookupd::start(mode, "t", &["c"]);
        let b = Broker::start(&[
            "--lookupd-tcp-address",
            &lookupd.tcp_addr,
            "--http-client-connect-timeout",
            "200ms",
            "--http-client-request-timeout",
            "300ms",
        ]);
        let mut producer = RawConn::connect(b.tcp_addr());
        lookupd.wait_until_known(&b, &mut producer);
        producer.publish("t", b"m");
        let s = stats(&b, "t");
        assert_eq!(s["topics"][0]["topic_name"], "t", "{s}");
        assert_eq!(s["topics"][0]["message_count"], 1, "{s}");
        assert_eq!(channel_names(&s), Vec::<String>::new(), "{s}");
        wait_for(Duration::from_secs(10), "the failure in the log", || {
            b.logs()
                .contains("failed to query nsqlookupd")
                .then_some(())
        });
    }
}

#[test]
fn no_lookupd_answering_yet_is_logged_and_the_topic_created() {
    // A lookupd that never accepts the TCP connection's IDENTIFY: no HTTP address is known.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let b = Broker::start(&["--lookupd-tcp-address", &addr]);
    let mut producer = RawConn::connect(b.tcp_addr());
    producer.publish("t", b"m");
    assert_eq!(stats(&b, "t")["topics"][0]["message_count"], 1);
    wait_for(Duration::from_secs(10), "the error in the log", || {
        b.logs()
            .contains("no available nsqlookupd to query for channels to pre-create for topic t")
            .then_some(())
    });
    drop(silent);
}
