//! Replay and bounds, ringsq's own (issue 12), against the real binary:
//!
//! - `POST /channel/rewind?since=` delivers again, on that channel only, exactly what was
//!   published since then; its new position survives a restart and a `kill -9`; a channel
//!   created with `since=` starts from history; every error status.
//! - `--retention` keeps finished messages while they are young and drops them once older.
//! - `--max-topic-bytes` refuses publishes (TCP and HTTP, exact errors) while channels still need
//!   that much of the log, and takes them again once a consumer catches up; nothing
//!   acknowledged is lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{http_post as post, wait_for, Broker, RawConn};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `/channel/create` as nsqd: the topic must exist, so it is created first.
fn create_channel(b: &Broker, topic: &str, channel: &str) {
    assert_eq!(post(b, &format!("/topic/create?topic={topic}"), b"").0, 200);
    let path = format!("/channel/create?topic={topic}&channel={channel}");
    assert_eq!(post(b, &path, b"").0, 200);
}

fn topic_stats(b: &Broker, topic: &str) -> Value {
    let url = format!("http://{}/stats?format=json&topic={topic}", b.http_addr());
    let body = ureq::get(&url).call().unwrap().into_string().unwrap();
    serde_json::from_str::<Value>(&body).unwrap()["topics"][0].clone()
}

fn unix_s(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn publish_all(b: &Broker, topic: &str, bodies: &[String]) {
    for body in bodies {
        assert_eq!(
            post(b, &format!("/pub?topic={topic}"), body.as_bytes()).0,
            200
        );
    }
}

/// Receives `n` messages, finishing each; returns their bodies in order.
fn take(c: &mut RawConn, n: usize) -> Vec<String> {
    c.consume_fin(n)
        .into_iter()
        .map(|m| String::from_utf8(m.body).unwrap())
        .collect()
}

fn batch(name: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{name}-{i}")).collect()
}

#[test]
fn rewind_redelivers_what_was_published_since_on_that_channel_only() {
    let mut b = Broker::start(&["--mem-queue-size", "0"]);
    let mut a = RawConn::subscriber(b.tcp_addr(), "rw", "a");
    let mut other = RawConn::subscriber(b.tcp_addr(), "rw", "other");
    a.rdy(100);
    other.rdy(100);
    let (first, second, third) = (batch("one", 5), batch("two", 5), batch("three", 5));
    publish_all(&b, "rw", &first);
    let since = SystemTime::now();
    publish_all(&b, "rw", &second);
    publish_all(&b, "rw", &third);
    let everything: Vec<String> = [&first[..], &second, &third].concat();
    assert_eq!(take(&mut a, 15), everything);
    assert_eq!(take(&mut other, 15), everything);

    let path = format!("/channel/rewind?topic=rw&channel=a&since={}", unix_s(since));
    assert_eq!(post(&b, &path, b""), (200, String::new()));
    let later: Vec<String> = [&second[..], &third].concat();
    assert_eq!(take(&mut a, 10), later, "in log order, from `since` on");
    a.expect_no_frame(Duration::from_millis(300));
    other.expect_no_frame(Duration::from_millis(300));

    // The position is on disk before the 200: a kill -9 right after does not undo it.
    drop(a);
    assert_eq!(post(&b, &path, b"").0, 200);
    b.kill9();
    b.restart();
    let mut a = RawConn::subscriber(b.tcp_addr(), "rw", "a");
    a.rdy(100);
    assert_eq!(take(&mut a, 10), later, "after kill -9");
    // And a clean restart keeps a finished replay finished.
    b.restart();
    let mut a = RawConn::subscriber(b.tcp_addr(), "rw", "a");
    a.rdy(100);
    a.expect_no_frame(Duration::from_millis(500));
}

#[test]
fn rewind_takes_rfc3339_and_older_times_start_at_the_oldest_retained() {
    let b = Broker::start(&["--retention", "1h"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "r3", "c");
    c.rdy(100);
    let all = batch("m", 4);
    publish_all(&b, "r3", &all);
    assert_eq!(take(&mut c, 4), all);
    let path = "/channel/rewind?topic=r3&channel=c&since=2001-02-03T04:05:06.5%2B01:00";
    assert_eq!(post(&b, path, b"").0, 200);
    assert_eq!(take(&mut c, 4), all);
    // A time in the future: nothing to deliver, and new messages still come.
    let future = unix_s(SystemTime::now() + Duration::from_secs(3600));
    let path = format!("/channel/rewind?topic=r3&channel=c&since={future}");
    assert_eq!(post(&b, &path, b"").0, 200);
    c.expect_no_frame(Duration::from_millis(300));
    publish_all(&b, "r3", &batch("new", 1));
    assert_eq!(take(&mut c, 1), batch("new", 1));
}

#[test]
fn a_channel_created_with_since_starts_from_history() {
    let b = Broker::start(&[]);
    create_channel(&b, "h", "first");
    let (old, recent) = (batch("old", 3), batch("recent", 3));
    publish_all(&b, "h", &old);
    let since = SystemTime::now();
    publish_all(&b, "h", &recent);
    let path = format!(
        "/channel/create?topic=h&channel=late&since={}",
        unix_s(since)
    );
    assert_eq!(post(&b, &path, b"").0, 200);
    assert_eq!(post(&b, "/channel/create?topic=h&channel=tail", b"").0, 200);
    let mut late = RawConn::subscriber(b.tcp_addr(), "h", "late");
    late.rdy(10);
    assert_eq!(take(&mut late, 3), recent);
    // Without `since` a later channel starts at the tail, as nsqd.
    let mut tail = RawConn::subscriber(b.tcp_addr(), "h", "tail");
    tail.rdy(10);
    tail.expect_no_frame(Duration::from_millis(300));
}

#[test]
fn rewind_errors() {
    let b = Broker::start(&[]);
    create_channel(&b, "e", "c");
    let cases: &[(&str, u16, &str)] = &[
        ("topic=e&channel=c", 400, "MISSING_ARG_SINCE"),
        (
            "topic=e&channel=c&since=yesterday",
            400,
            "INVALID_ARG_SINCE",
        ),
        ("topic=e&channel=c&since=-5", 400, "INVALID_ARG_SINCE"),
        ("topic=e&channel=c&since=", 400, "INVALID_ARG_SINCE"),
        ("channel=c&since=1", 400, "MISSING_ARG_TOPIC"),
        ("topic=b@d&channel=c&since=1", 400, "INVALID_ARG_TOPIC"),
        ("topic=e&since=1", 400, "MISSING_ARG_CHANNEL"),
        ("topic=e&channel=b@d&since=1", 400, "INVALID_ARG_CHANNEL"),
        ("topic=nope&channel=c&since=1", 404, "TOPIC_NOT_FOUND"),
        ("topic=e&channel=nope&since=1", 404, "CHANNEL_NOT_FOUND"),
    ];
    for (query, status, message) in cases {
        let (got, body) = post(&b, &format!("/channel/rewind?{query}"), b"");
        assert_eq!(
            (got, body.as_str()),
            (*status, format!("{{\"message\":\"{message}\"}}").as_str()),
            "{query}"
        );
    }
    let (status, body) = post(&b, "/channel/create?topic=e&channel=d&since=never", b"");
    assert_eq!(
        (status, body.as_str()),
        (400, "{\"message\":\"INVALID_ARG_SINCE\"}")
    );
}

#[test]
fn retention_keeps_finished_messages_while_young() {
    let b = Broker::start(&[
        "--retention",
        "2s",
        "--max-bytes-per-file",
        "512",
        "--sync-timeout",
        "100ms",
    ]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "ret", "c");
    c.rdy(100);
    let all = batch("kept-for-a-while", 20);
    publish_all(&b, "ret", &all);
    assert_eq!(take(&mut c, 20), all);
    // Finished everywhere, but young: still held (and a rewind gets it back).
    let held = topic_stats(&b, "ret");
    assert_eq!(held["retained_messages"], 20, "{held}");
    assert!(held["disk_bytes"].as_u64().unwrap() > 512, "{held}");
    // The oldest publish time is as of the last sync point (every 100 ms here).
    let oldest = wait_for(Duration::from_secs(10), "the oldest publish time", || {
        let ts = topic_stats(&b, "ret")["oldest_retained_ts"]
            .as_i64()
            .unwrap();
        (ts != 0).then_some(ts)
    });
    assert!(oldest > 1_700_000_000, "{oldest}");
    assert_eq!(
        post(&b, "/channel/rewind?topic=ret&channel=c&since=0", b"").0,
        200
    );
    assert_eq!(take(&mut c, 20), all);
    // Once older than the retention, every sealed segment goes.
    wait_for(Duration::from_secs(20), "old segments deleted", || {
        let t = topic_stats(&b, "ret");
        (t["retained_messages"].as_u64().unwrap() < 20).then_some(())
    });
}

#[test]
fn retention_never_drops_what_a_channel_still_needs() {
    let b = Broker::start(&[
        "--retention",
        "100ms",
        "--max-bytes-per-file",
        "512",
        "--sync-timeout",
        "100ms",
    ]);
    create_channel(&b, "slow", "c");
    let all = batch("needed", 20);
    publish_all(&b, "slow", &all);
    std::thread::sleep(Duration::from_millis(600));
    let mut c = RawConn::subscriber(b.tcp_addr(), "slow", "c");
    c.rdy(100);
    assert_eq!(take(&mut c, 20), all);
}

/// The bound is on what channels still need; a stalled second channel keeps the topic full.
#[test]
fn a_full_topic_refuses_publishes_until_consumers_catch_up() {
    let b = Broker::start(&["--max-topic-bytes", "2000", "--mem-queue-size", "0"]);
    create_channel(&b, "full", "c");
    let mut p = RawConn::connect(b.tcp_addr());
    let body = [b'x'; 100];
    // What counts is the log's bytes: each 100-byte message is a 149-byte record (16 bytes of
    // record header, 33 of message header).
    let acked = 2000 / 149;
    for _ in 0..acked {
        p.publish("full", &body);
    }
    p.pub_("full", &body);
    p.expect_fatal("E_PUB_FAILED PUB failed topic full is full (2000 bytes)");
    let mut p = RawConn::connect(b.tcp_addr());
    p.mpub("full", &[&body, &body]);
    p.expect_fatal("E_MPUB_FAILED MPUB failed topic full is full (2000 bytes)");
    let mut p = RawConn::connect(b.tcp_addr());
    p.dpub("full", 10, &body);
    p.expect_fatal("E_DPUB_FAILED DPUB failed topic full is full (2000 bytes)");
    assert_eq!(
        post(&b, "/pub?topic=full", &body),
        (507, "{\"message\":\"TOPIC_FULL\"}".to_owned())
    );
    let mpub = post(&b, "/mpub?topic=full", b"a\nb\n");
    assert_eq!(mpub, (507, "{\"message\":\"TOPIC_FULL\"}".to_owned()));
    // A full topic is not an unhealthy broker.
    let ping = ureq::get(&format!("http://{}/ping", b.http_addr()))
        .call()
        .unwrap();
    assert_eq!(ping.into_string().unwrap(), "OK");

    // The consumer catches up: publishing works again, and every acknowledged message is there.
    let mut c = RawConn::subscriber(b.tcp_addr(), "full", "c");
    c.rdy(100);
    assert_eq!(c.consume_fin(acked).len(), acked);
    let mut p = RawConn::connect(b.tcp_addr());
    p.publish("full", b"after");
    assert_eq!(take(&mut c, 1), vec!["after".to_owned()]);

    // A second channel that does not read keeps the topic full, whatever the first one does.
    assert_eq!(
        post(&b, "/channel/create?topic=full&channel=stalled", b"").0,
        200
    );
    let mut refused = false;
    for _ in 0..40 {
        p.pub_("full", &body);
        match p.next_reply() {
            common::Frame::Response(r) if r == b"OK" => {}
            common::Frame::Error(e) => {
                assert_eq!(e, "E_PUB_FAILED PUB failed topic full is full (2000 bytes)");
                refused = true;
                break;
            }
            common::Frame::Message(m) => panic!("unexpected message {m:?}"),
            common::Frame::Response(r) => panic!("unexpected response {r:?}"),
        }
    }
    assert!(refused, "the stalled channel never made the topic full");
    let drained = c.consume_fin(acked - 1);
    assert_eq!(drained.len(), acked - 1);
    let mut p = RawConn::connect(b.tcp_addr());
    p.pub_("full", &body);
    p.expect_fatal("E_PUB_FAILED PUB failed topic full is full (2000 bytes)");
}

/// A rewind to a time after the channel's cursor does not move it forward: the messages the
/// channel has not delivered yet are still delivered (a rewind only ever adds deliveries).
#[test]
fn a_rewind_never_skips_what_the_channel_has_not_delivered() {
    let b = Broker::start(&[]);
    create_channel(&b, "fw", "c");
    let (old, recent) = (batch("old", 3), batch("recent", 3));
    publish_all(&b, "fw", &old);
    let since = SystemTime::now();
    publish_all(&b, "fw", &recent);
    let path = format!("/channel/rewind?topic=fw&channel=c&since={}", unix_s(since));
    assert_eq!(post(&b, &path, b"").0, 200);
    let mut c = RawConn::subscriber(b.tcp_addr(), "fw", "c");
    c.rdy(10);
    let mut all = old;
    all.extend(recent);
    assert_eq!(take(&mut c, 6), all);
}
