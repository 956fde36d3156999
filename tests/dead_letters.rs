//! Poison messages and expiry against the real binary: `--max-attempts`, `--message-ttl`, the
//! per-channel `/channel/config`, and the dead letters (`/channel/dead`, `/channel/dead/requeue`,
//! `/channel/dead/empty`).
//!
//! - A REQ loop stops at the limit: the letter is listed (id, body, attempts, reason,
//!   timestamps) and counted in `/stats` (JSON and text) and `/metrics`; timeouts count too.
//! - A channel's own limit leaves the others alone and survives `kill -9`.
//! - Letters survive `kill -9` and are never delivered again unless requeued; requeue and empty
//!   work by id and for all, and what they remove stays removed after `kill -9`.
//! - An expired message goes to the letters while fresh ones keep flowing.
//! - Every error status, in nsqd's JSON shape.
//! - Crash: `kill -9` rounds while a consumer drives poison messages into the letters under
//!   load; then every acknowledged message is finished or listed, none listed twice, and none
//!   delivered after its letter was written.
//!
//! Every wait is for an observable condition, with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::{http_get, http_post, wait_for, Broker, Msg, RawConn};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(20);

fn get_json(b: &Broker, path: &str) -> Value {
    let (status, body) = http_get(b, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn post_ok(b: &Broker, path: &str) -> String {
    let (status, body) = http_post(b, path, b"");
    assert_eq!(status, 200, "POST {path}: {body}");
    body
}

fn dead(b: &Broker, topic: &str, channel: &str) -> Value {
    get_json(
        b,
        &format!("/channel/dead?topic={topic}&channel={channel}&limit=1000"),
    )
}

fn dead_count(b: &Broker, topic: &str, channel: &str) -> u64 {
    dead(b, topic, channel)["count"].as_u64().unwrap()
}

/// Waits until the channel lists `n` dead letters; returns the listing.
fn wait_dead(b: &Broker, topic: &str, channel: &str, n: u64) -> Value {
    wait_for(
        WAIT,
        &format!("{n} dead letter(s) in {topic}/{channel}"),
        || {
            let d = dead(b, topic, channel);
            (d["count"] == n).then_some(d)
        },
    )
}

fn body_of(letter: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(letter["body"].as_str().unwrap())
        .unwrap()
}

fn bodies(listing: &Value) -> Vec<String> {
    listing["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| String::from_utf8(body_of(l)).unwrap())
        .collect()
}

fn config(b: &Broker, topic: &str, channel: &str) -> Value {
    get_json(
        b,
        &format!("/channel/config?topic={topic}&channel={channel}"),
    )
}

/// Reads the next message (which must be `body`) and REQs it; returns it.
fn read_and_req(c: &mut RawConn, body: &[u8]) -> Msg {
    let m = c.read_msg();
    assert_eq!(
        String::from_utf8_lossy(&m.body),
        String::from_utf8_lossy(body)
    );
    c.req(&m.id, 0);
    m
}

/// With `--max-attempts 1` and RDY 1: publishes each body and REQs it once, so each dies;
/// returns the letters listed.
fn make_letters(b: &Broker, c: &mut RawConn, names: &[&str]) -> Value {
    let mut p = RawConn::connect(b.tcp_addr());
    for (i, name) in names.iter().enumerate() {
        p.publish("t", name.as_bytes());
        read_and_req(c, name.as_bytes());
        wait_dead(b, "t", "c", i as u64 + 1);
    }
    dead(b, "t", "c")
}

#[test]
fn a_req_loop_stops_at_max_attempts_and_the_letter_is_listed_and_counted() {
    let b = Broker::start(&["--max-attempts", "3"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(1);
    let mut p = RawConn::connect(b.tcp_addr());
    p.publish("t", b"poison");
    let mut last = None;
    for attempts in 1..=3u16 {
        let m = read_and_req(&mut c, b"poison");
        assert_eq!(m.attempts, attempts);
        last = Some(m);
    }
    let poison = last.unwrap();
    // A requeued message is served before new ones: "next" first means no fourth delivery.
    p.publish("t", b"next");
    let next = c.read_msg();
    assert_eq!((next.attempts, next.body.as_slice()), (1, &b"next"[..]));
    c.fin(&next.id);

    let listing = wait_dead(&b, "t", "c", 1);
    let letter = &listing["messages"][0];
    assert_eq!(letter["id"], poison.id_str());
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["reason"], "max_attempts");
    assert_eq!(letter["timestamp"].as_i64(), Some(poison.ts));
    let dead_at = letter["dead_at"].as_i64().unwrap();
    assert!(
        dead_at >= poison.ts,
        "dead at {dead_at}, published {}",
        poison.ts
    );
    assert_eq!(body_of(letter), b"poison");

    let stats = get_json(&b, "/stats?format=json&topic=t&channel=c");
    let ch = &stats["topics"][0]["channels"][0];
    assert_eq!(
        (ch["dead_count"].as_u64(), ch["requeue_count"].as_u64()),
        (Some(1), Some(3))
    );
    let (_, text) = http_get(&b, "/stats?format=text&topic=t");
    assert!(text.contains(" dead: 1\n"), "{text}");
    let (_, metrics) = http_get(&b, "/metrics");
    assert!(
        metrics.contains("ringsq_channel_dead_messages{topic=\"t\",channel=\"c\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn timeouts_count_as_attempts() {
    let b = Broker::start(&["--max-attempts", "2"]);
    let mut c = RawConn::connect_identified(b.tcp_addr(), r#"{"msg_timeout":1000}"#);
    c.sub("t", "c");
    c.rdy(1);
    RawConn::connect(b.tcp_addr()).publish("t", b"slow");
    // Never finished: it times out after each delivery.
    let first = c.read_msg();
    let second = c.read_msg();
    assert_eq!((first.attempts, second.attempts), (1, 2));
    let listing = wait_dead(&b, "t", "c", 1);
    let letter = &listing["messages"][0];
    assert_eq!(
        (letter["attempts"].as_u64(), letter["reason"].as_str()),
        (Some(2), Some("max_attempts"))
    );
    let stats = get_json(&b, "/stats?format=json&topic=t&channel=c");
    assert_eq!(stats["topics"][0]["channels"][0]["timeout_count"], 2);
    // It is no longer in flight: a late FIN fails as nsqd's does.
    c.fin(&second.id);
    let err = c.expect_any_error();
    assert!(err.starts_with("E_FIN_FAILED"), "{err}");
}

#[test]
fn a_channel_limit_leaves_other_channels_alone_and_survives_kill9() {
    let mut b = Broker::start(&["--mem-queue-size", "0"]);
    post_ok(&b, "/topic/create?topic=t");
    post_ok(&b, "/channel/create?topic=t&channel=strict");
    post_ok(&b, "/channel/create?topic=t&channel=lax");
    let set = post_ok(
        &b,
        "/channel/config?topic=t&channel=strict&max_attempts=1&message_ttl=90s",
    );
    let expected = json!({"max_attempts": 1, "message_ttl": "1m30s"});
    assert_eq!(serde_json::from_str::<Value>(&set).unwrap(), expected);
    assert_eq!(config(&b, "t", "strict"), expected);
    assert_eq!(
        config(&b, "t", "lax"),
        json!({"max_attempts": 0, "message_ttl": "0s"})
    );

    let mut strict = RawConn::subscriber(b.tcp_addr(), "t", "strict");
    let mut lax = RawConn::subscriber(b.tcp_addr(), "t", "lax");
    strict.rdy(1);
    lax.rdy(1);
    RawConn::connect(b.tcp_addr()).publish("t", b"m");
    read_and_req(&mut strict, b"m");
    read_and_req(&mut lax, b"m");
    let again = lax.read_msg();
    assert_eq!((again.attempts, again.body.as_slice()), (2, &b"m"[..]));
    lax.fin(&again.id);
    wait_dead(&b, "t", "strict", 1);
    assert_eq!(dead_count(&b, "t", "lax"), 0);

    // Answered 200, so on disk: kill -9 keeps it.
    b.kill9();
    b.restart();
    assert_eq!(config(&b, "t", "strict"), expected);
    assert_eq!(
        config(&b, "t", "lax"),
        json!({"max_attempts": 0, "message_ttl": "0s"})
    );
    assert_eq!(dead_count(&b, "t", "strict"), 1);
    // An override of 0 (unlimited) is an override, not "the flag's value".
    let off = post_ok(&b, "/channel/config?topic=t&channel=strict&max_attempts=0");
    assert_eq!(
        serde_json::from_str::<Value>(&off).unwrap(),
        json!({"max_attempts": 0, "message_ttl": "1m30s"})
    );
}

#[test]
fn letters_survive_kill9_and_are_not_delivered_again_unless_requeued() {
    let mut b = Broker::start(&["--max-attempts", "1", "--mem-queue-size", "0"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(1);
    make_letters(&b, &mut c, &["poison"]);
    drop(c);
    b.kill9();
    b.restart();

    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(10);
    RawConn::connect(b.tcp_addr()).publish("t", b"after");
    // A message restored as outstanding would be served before new ones.
    let m = c.read_msg();
    assert_eq!(m.body, b"after");
    c.fin(&m.id);
    let listing = dead(&b, "t", "c");
    assert_eq!(
        (listing["count"].as_u64(), bodies(&listing)),
        (Some(1), vec!["poison".to_owned()])
    );

    post_ok(&b, "/channel/dead/requeue?topic=t&channel=c");
    let back = c.read_msg();
    assert_eq!((back.attempts, back.body.as_slice()), (1, &b"poison"[..]));
    c.fin(&back.id);
    assert_eq!(dead_count(&b, "t", "c"), 0);
}

#[test]
fn requeue_by_id_and_all() {
    let b = Broker::start(&["--max-attempts", "1"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(1);
    let listing = make_letters(&b, &mut c, &["a", "b", "c"]);
    assert_eq!(bodies(&listing), ["a", "b", "c"], "oldest first");
    let a_id = listing["messages"][0]["id"].as_str().unwrap().to_owned();

    post_ok(
        &b,
        &format!("/channel/dead/requeue?topic=t&channel=c&id={a_id}"),
    );
    let a = c.read_msg();
    assert_eq!(
        (a.attempts, a.body.as_slice(), a.id_str()),
        (1, &b"a"[..], a_id.clone())
    );
    c.fin(&a.id);
    assert_eq!(bodies(&dead(&b, "t", "c")), ["b", "c"]);
    // Gone from the letters: requeueing it again finds nothing.
    let (status, body) = http_post(
        &b,
        &format!("/channel/dead/requeue?topic=t&channel=c&id={a_id}"),
        b"",
    );
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"message":"MESSAGE_NOT_FOUND"}"#)
    );

    post_ok(&b, "/channel/dead/requeue?topic=t&channel=c");
    c.rdy(2);
    let mut back: Vec<(u16, Vec<u8>)> = (0..2)
        .map(|_| {
            let m = c.read_msg();
            c.fin(&m.id);
            (m.attempts, m.body)
        })
        .collect();
    back.sort();
    assert_eq!(back, [(1, b"b".to_vec()), (1, b"c".to_vec())]);
    assert_eq!(dead_count(&b, "t", "c"), 0);
    // Nothing left: requeueing all is still fine.
    post_ok(&b, "/channel/dead/requeue?topic=t&channel=c");
}

#[test]
fn empty_by_id_and_all_stays_emptied_after_kill9() {
    let mut b = Broker::start(&["--max-attempts", "1", "--mem-queue-size", "0"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(1);
    let listing = make_letters(&b, &mut c, &["a", "b", "c"]);
    drop(c);
    let b_id = listing["messages"][1]["id"].as_str().unwrap().to_owned();
    post_ok(
        &b,
        &format!("/channel/dead/empty?topic=t&channel=c&id={b_id}"),
    );
    assert_eq!(bodies(&dead(&b, "t", "c")), ["a", "c"]);
    let (status, _) = http_post(
        &b,
        &format!("/channel/dead/empty?topic=t&channel=c&id={b_id}"),
        b"",
    );
    assert_eq!(status, 404);

    b.kill9();
    b.restart();
    assert_eq!(bodies(&dead(&b, "t", "c")), ["a", "c"]);
    post_ok(&b, "/channel/dead/empty?topic=t&channel=c");
    assert_eq!(dead_count(&b, "t", "c"), 0);

    b.kill9();
    b.restart();
    assert_eq!(dead_count(&b, "t", "c"), 0);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(10);
    RawConn::connect(b.tcp_addr()).publish("t", b"x");
    assert_eq!(c.read_msg().body, b"x", "an emptied letter came back");
}

#[test]
fn expired_messages_go_to_the_letters_while_fresh_ones_flow() {
    let b = Broker::start(&["--message-ttl", "1s"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(100);
    assert_eq!(
        config(&b, "t", "c"),
        json!({"max_attempts": 0, "message_ttl": "1s"})
    );
    let mut publisher = RawConn::connect(b.tcp_addr());
    // Due after 2 s, by when it is older than the TTL.
    publisher.dpub("t", 2000, b"stale");
    publisher.expect_ok();
    let mut fresh = 0u64;
    let listing = wait_for(WAIT, "the stale message among the dead letters", || {
        let body = format!("fresh-{fresh}");
        publisher.publish("t", body.as_bytes());
        let m = c.read_msg();
        assert_eq!(
            (m.attempts, String::from_utf8_lossy(&m.body)),
            (1, body.clone().into())
        );
        c.fin(&m.id);
        fresh += 1;
        let d = dead(&b, "t", "c");
        (d["count"] == 1).then_some(d)
    });
    assert!(fresh > 1, "no fresh message flowed meanwhile");
    let letter = &listing["messages"][0];
    assert_eq!(body_of(letter), b"stale");
    assert_eq!(
        (letter["reason"].as_str(), letter["attempts"].as_u64()),
        (Some("expired"), Some(0))
    );
    let age = letter["dead_at"].as_i64().unwrap() - letter["timestamp"].as_i64().unwrap();
    assert!(age > 1_000_000_000, "expired at age {age} ns");
}

#[test]
fn an_ephemeral_channel_keeps_no_letters_and_counts_them() {
    let b = Broker::start(&["--max-attempts", "1"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "e#ephemeral");
    c.rdy(1);
    RawConn::connect(b.tcp_addr()).publish("t", b"poison");
    read_and_req(&mut c, b"poison");
    let listing = wait_dead(&b, "t", "e%23ephemeral", 1);
    assert_eq!(listing["messages"], json!([]));
    post_ok(&b, "/channel/dead/empty?topic=t&channel=e%23ephemeral");
    assert_eq!(dead_count(&b, "t", "e%23ephemeral"), 0);
}

#[test]
fn deleting_a_channel_deletes_its_letters() {
    let b = Broker::start(&["--max-attempts", "1"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(1);
    make_letters(&b, &mut c, &["poison"]);
    let dir = b.data_path().join("ringsq/topics/t.topic/c.dead");
    assert!(dir.is_dir(), "{} missing", dir.display());
    post_ok(&b, "/channel/delete?topic=t&channel=c");
    assert!(!dir.exists(), "{} left behind", dir.display());
    post_ok(&b, "/channel/create?topic=t&channel=c");
    assert_eq!(dead_count(&b, "t", "c"), 0);
}

#[test]
fn ringsq_check_verifies_the_letters_and_counts_those_listed() {
    let mut b = Broker::start(&["--max-attempts", "1"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "t", "c");
    c.rdy(1);
    let listing = make_letters(&b, &mut c, &["a", "b", "c"]);
    drop(c);
    let b_id = listing["messages"][1]["id"].as_str().unwrap().to_owned();
    post_ok(
        &b,
        &format!("/channel/dead/empty?topic=t&channel=c&id={b_id}"),
    );
    b.stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args(["check", "--json", "--data-path"])
        .arg(b.data_path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let channel = &report["topics"][0]["channels"][0];
    assert_eq!(channel["name"], "c");
    let letters = &channel["dead_letters"];
    assert_eq!(
        (letters["letters"].as_u64(), letters["listed"].as_u64()),
        (Some(3), Some(2)),
        "{report:#}"
    );
    assert_eq!(report["problems"], json!([]));
}

/// (status, message) of an error answer, checking nsqd's JSON shape.
fn error_of(b: &Broker, post: bool, path: &str) -> (u16, String) {
    let (status, body) = if post {
        http_post(b, path, b"")
    } else {
        http_get(b, path)
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    let message = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: {body}"));
    assert_eq!(
        v.as_object().map(serde_json::Map::len),
        Some(1),
        "{path}: {body}"
    );
    (status, message.to_owned())
}

#[test]
fn every_error_status() {
    let b = Broker::start(&[]);
    post_ok(&b, "/topic/create?topic=t");
    post_ok(&b, "/channel/create?topic=t&channel=c");
    let endpoints = [
        (false, "/channel/config"),
        (true, "/channel/config"),
        (false, "/channel/dead"),
        (true, "/channel/dead/requeue"),
        (true, "/channel/dead/empty"),
    ];
    for (post, path) in endpoints {
        let cases = [
            ("", 400, "MISSING_ARG_TOPIC"),
            ("?topic=a!b&channel=c", 400, "INVALID_ARG_TOPIC"),
            ("?topic=t", 400, "MISSING_ARG_CHANNEL"),
            ("?topic=t&channel=a!b", 400, "INVALID_ARG_CHANNEL"),
            ("?topic=nosuch&channel=c", 404, "TOPIC_NOT_FOUND"),
            ("?topic=t&channel=nosuch", 404, "CHANNEL_NOT_FOUND"),
        ];
        for (query, status, message) in cases {
            let got = error_of(&b, post, &format!("{path}{query}"));
            assert_eq!(got, (status, message.to_owned()), "{path}{query}");
        }
    }
    let bad = [
        ("max_attempts=-1", "INVALID_ARG_MAX_ATTEMPTS"),
        ("max_attempts=x", "INVALID_ARG_MAX_ATTEMPTS"),
        ("max_attempts=65536", "INVALID_ARG_MAX_ATTEMPTS"),
        ("message_ttl=x", "INVALID_ARG_MESSAGE_TTL"),
        ("message_ttl=-1s", "INVALID_ARG_MESSAGE_TTL"),
        ("message_ttl=5", "INVALID_ARG_MESSAGE_TTL"),
    ];
    for (arg, message) in bad {
        // Arguments are checked before the topic is looked up.
        for topic in ["t", "nosuch"] {
            let path = format!("/channel/config?topic={topic}&channel=c&{arg}");
            assert_eq!(
                error_of(&b, true, &path),
                (400, message.to_owned()),
                "{path}"
            );
        }
    }
    assert_eq!(
        error_of(&b, false, "/channel/dead?topic=t&channel=c&limit=x"),
        (400, "INVALID_ARG_LIMIT".to_owned())
    );
    for path in ["/channel/dead/requeue", "/channel/dead/empty"] {
        for id in ["0123456789abcdef", "short"] {
            let path = format!("{path}?topic=t&channel=c&id={id}");
            assert_eq!(
                error_of(&b, true, &path),
                (404, "MESSAGE_NOT_FOUND".to_owned()),
                "{path}"
            );
        }
    }
    assert_eq!(
        error_of(&b, false, "/channel/dead/requeue?topic=t&channel=c"),
        (405, "METHOD_NOT_ALLOWED".to_owned())
    );
    assert_eq!(
        error_of(&b, true, "/channel/dead?topic=t&channel=c"),
        (405, "METHOD_NOT_ALLOWED".to_owned())
    );
    // The valid forms, for contrast.
    post_ok(
        &b,
        "/channel/config?topic=t&channel=c&max_attempts=65535&message_ttl=0",
    );
    assert_eq!(
        config(&b, "t", "c"),
        json!({"max_attempts": 65535, "message_ttl": "0s"})
    );
    assert_eq!(dead(&b, "t", "c"), json!({"count": 0, "messages": []}));
}

// ---------------------------------------------------------------------------------------------
// Crash: kill -9 while messages are being dead-lettered under load
// ---------------------------------------------------------------------------------------------

const CRASH_ROUNDS: usize = 6;
/// Messages per MPUB; every [`POISON_EVERY`]th of them is a poison message (always REQ'd).
const CRASH_BATCH: usize = 10;
const POISON_EVERY: usize = 5;
/// A round publishes at most this many batches (poison letters stay under the listing's limit).
const CRASH_BATCHES_MAX: usize = 50;
/// Between two batches of a round (the kill comes 200..1200 ms into it).
const CRASH_BATCH_PACE: Duration = Duration::from_millis(20);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// A minimal client that takes any connection error for "the broker died".
struct Client {
    s: TcpStream,
}

enum Frame {
    Response(Vec<u8>),
    Error(String),
    Message { id: [u8; 16], body: String },
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        s.write_all(b"  V2")?;
        Ok(Client { s })
    }

    fn read_frame(&mut self) -> std::io::Result<Frame> {
        let mut hdr = [0u8; 8];
        self.s.read_exact(&mut hdr)?;
        let size = usize::try_from(u32::from_be_bytes(hdr[0..4].try_into().unwrap())).unwrap();
        let kind = i32::from_be_bytes(hdr[4..8].try_into().unwrap());
        let mut data = vec![0u8; size - 4];
        self.s.read_exact(&mut data)?;
        Ok(match kind {
            0 => Frame::Response(data),
            1 => Frame::Error(String::from_utf8_lossy(&data).into_owned()),
            _ => Frame::Message {
                id: data[10..26].try_into().unwrap(),
                body: String::from_utf8(data[26..].to_vec()).unwrap(),
            },
        })
    }
}

fn is_poison(body: &str) -> bool {
    body.starts_with("poison-")
}

/// MPUBs batches until the broker dies or the round's budget is spent; returns what was acked.
fn crash_publish(addr: SocketAddr, round: usize) -> Vec<String> {
    let mut acked = Vec::new();
    let Ok(mut c) = Client::connect(addr) else {
        return acked;
    };
    for batch in 0..CRASH_BATCHES_MAX {
        let bodies: Vec<String> = (0..CRASH_BATCH)
            .map(|i| {
                let kind = if i % POISON_EVERY == 0 {
                    "poison"
                } else {
                    "ok"
                };
                format!("{kind}-r{round}-b{batch}-{i}")
            })
            .collect();
        let mut payload = u32::try_from(bodies.len()).unwrap().to_be_bytes().to_vec();
        for b in &bodies {
            payload.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
            payload.extend_from_slice(b.as_bytes());
        }
        let mut cmd = b"MPUB t\n".to_vec();
        cmd.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        cmd.extend_from_slice(&payload);
        if c.s.write_all(&cmd).is_err() {
            break;
        }
        match c.read_frame() {
            Ok(Frame::Response(r)) if r == b"OK" => acked.extend(bodies),
            Ok(Frame::Error(e)) => panic!("publish failed: {e}"),
            Ok(_) | Err(_) => break,
        }
        // Paced: the round's messages keep coming (and dying) until about when the kill comes.
        thread::sleep(CRASH_BATCH_PACE);
    }
    acked
}

/// What a consumer saw: each delivery (body, when it arrived, Unix ns) and the bodies it FIN'd.
#[derive(Default)]
struct Seen {
    deliveries: Vec<(String, i64)>,
    finished: Vec<String>,
}

fn now_ns() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// REQs every poison message, FINs the rest, until the broker dies or `stop` is set.
fn crash_consume(addr: SocketAddr, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let Ok(mut c) = Client::connect(addr) else {
        return seen;
    };
    if c.s.write_all(b"SUB t c\nRDY 200\n").is_err() {
        return seen;
    }
    c.s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        match c.read_frame() {
            Ok(Frame::Message { id, body }) => {
                seen.deliveries.push((body.clone(), now_ns()));
                let poison = is_poison(&body);
                let mut cmd = if poison {
                    b"REQ ".to_vec()
                } else {
                    b"FIN ".to_vec()
                };
                cmd.extend_from_slice(&id);
                cmd.extend_from_slice(if poison { b" 0\n" } else { b"\n" });
                if c.s.write_all(&cmd).is_err() {
                    break;
                }
                if !poison {
                    seen.finished.push(body);
                }
            }
            Ok(Frame::Response(r)) if r == b"_heartbeat_" => {
                if c.s.write_all(b"NOP\n").is_err() {
                    break;
                }
            }
            Ok(Frame::Response(_)) => {}
            Ok(Frame::Error(e)) => panic!("consumer got an error frame: {e}"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    seen
}

/// The count, and the listed letters: body → every `dead_at` (ns) it is listed with.
fn listed(b: &Broker) -> (u64, usize, HashMap<String, Vec<i64>>) {
    let listing = dead(b, "t", "c");
    let letters = listing["messages"].as_array().unwrap();
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for l in letters {
        let body = String::from_utf8(body_of(l)).unwrap();
        out.entry(body)
            .or_default()
            .push(l["dead_at"].as_i64().unwrap());
    }
    (listing["count"].as_u64().unwrap(), letters.len(), out)
}

fn absorb(seen: Seen, deliveries: &mut Vec<(String, i64)>, finished: &mut HashSet<String>) {
    deliveries.extend(seen.deliveries);
    finished.extend(seen.finished);
}

#[test]
fn kill9_while_dead_lettering_under_load_loses_nothing_and_delivers_no_letter() {
    let mut broker = Broker::start(&["--mem-queue-size", "0", "--max-attempts", "2"]);
    let mut rng = rand::thread_rng();
    let mut acked: Vec<String> = Vec::new();
    let mut deliveries: Vec<(String, i64)> = Vec::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut letters_at_kills = Vec::new();
    for round in 0..CRASH_ROUNDS {
        let addr = broker.tcp_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = thread::spawn(move || crash_publish(addr, round));
        let consumer = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || crash_consume(addr, &stop))
        };
        // The kill comes at a random moment of the round (its point: anywhere in the work).
        thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
        letters_at_kills.push(dead_count(&broker, "t", "c"));
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        acked.extend(publisher.join().unwrap());
        absorb(consumer.join().unwrap(), &mut deliveries, &mut finished);
        broker.restart();
    }

    // Drain: until every acknowledged message is finished or listed (bounded).
    let done = |finished: &HashSet<String>, letters: &HashMap<String, Vec<i64>>| {
        acked.iter().all(|b| {
            if is_poison(b) {
                letters.contains_key(b)
            } else {
                finished.contains(b)
            }
        })
    };
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let (mut count, mut shown, mut letters) = listed(&broker);
    while !done(&finished, &letters) && Instant::now() < deadline {
        let addr = broker.tcp_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || crash_consume(addr, &stop))
        };
        // A pass of the drain; what it achieved is checked after it.
        thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        absorb(consumer.join().unwrap(), &mut deliveries, &mut finished);
        (count, shown, letters) = listed(&broker);
    }
    broker.stop();

    let lost: Vec<&String> = acked
        .iter()
        .filter(|b| {
            if is_poison(b) {
                !letters.contains_key(*b)
            } else {
                !finished.contains(*b)
            }
        })
        .collect();
    let twice: Vec<(&String, &Vec<i64>)> = letters.iter().filter(|(_, at)| at.len() > 1).collect();
    let not_poison: Vec<&String> = letters.keys().filter(|b| !is_poison(b)).collect();
    // A delivery that arrived after the letter was written (dead_at is taken when the REQ
    // that killed it is run, after every legitimate delivery arrived).
    let after_death: Vec<&(String, i64)> = deliveries
        .iter()
        .filter(|(body, at)| {
            letters
                .get(body)
                .is_some_and(|d| d.iter().any(|dead| at > dead))
        })
        .collect();
    println!(
        "dead-letter crash test: {CRASH_ROUNDS} kill -9 rounds; acknowledged={} poison={} \
         listed={} deliveries={} letters at each kill={letters_at_kills:?}",
        acked.len(),
        acked.iter().filter(|b| is_poison(b)).count(),
        letters.len(),
        deliveries.len()
    );
    assert!(
        acked.len() > CRASH_ROUNDS * CRASH_BATCH,
        "the load never got going"
    );
    assert_eq!(count, shown as u64, "the count is not what is listed");
    assert!(
        letters_at_kills.iter().any(|&n| n > 0),
        "no letter was written before any kill: the test proved nothing"
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(twice.is_empty(), "listed twice: {twice:?}");
    assert!(
        not_poison.is_empty(),
        "finished messages listed: {not_poison:?}"
    );
    assert!(
        after_death.is_empty(),
        "{} deliveries after the letter was written, e.g. {:?}",
        after_death.len(),
        &after_death[..after_death.len().min(5)]
    );
}
