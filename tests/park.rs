//! A message that waits long (REQ with a long delay) must not stop the topic's log from being
//! reclaimed: it is parked in the channel's own log, the topic's old segments are deleted, and
//! the deferral still holds across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Broker, RawConn};
use std::path::Path;
use std::time::{Duration, Instant};

const DEFER_MS: u64 = 4000;

fn segment_count(data: &Path, topic: &str) -> usize {
    let dir = data
        .join("ringsq")
        .join("topics")
        .join(format!("{topic}.topic"))
        .join("log");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[test]
fn long_deferred_message_does_not_pin_the_topic_log_and_survives_restart() {
    let mut broker = Broker::start(&[
        "--mem-queue-size",
        "0",
        "--max-bytes-per-file",
        "4096",
        "--sync-timeout",
        "200ms",
    ]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "park", "ch");
    let mut p = RawConn::connect(broker.tcp_addr());
    let body = vec![b'x'; 100];
    for _ in 0..200 {
        p.publish("park", &body);
    }
    let segments_before = segment_count(broker.data_path(), "park");
    assert!(
        segments_before >= 5,
        "expected several segments, got {segments_before}"
    );

    c.rdy(1);
    let first = c.read_msg();
    c.req(&first.id, DEFER_MS);
    let requeued_at = Instant::now();
    c.rdy(50);
    for _ in 0..199 {
        let m = c.read_msg();
        assert_ne!(m.id, first.id, "the deferred message came back early");
        c.fin(&m.id);
    }

    // Every other message is finished: the segments below the deferred one must go once it is
    // parked (at the next sync point).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut segments = segment_count(broker.data_path(), "park");
    while segments > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        segments = segment_count(broker.data_path(), "park");
    }
    assert!(segments <= 2, "topic log still holds {segments} segments (was {segments_before}): the deferred message pins it");

    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = RawConn::subscriber(broker.tcp_addr(), "park", "ch");
    c.rdy(10);
    // Messages finished just before the kill may come again (at-least-once); the deferred one
    // must come too, after its deferral.
    let deadline = Instant::now() + Duration::from_secs(DEFER_MS / 1000 + 20);
    let again = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = c.read_msg_within(left.max(Duration::from_millis(1)));
        if m.id == first.id {
            break m;
        }
        c.fin(&m.id);
    };
    assert_eq!(again.body, first.body);
    assert_eq!(again.attempts, 2, "attempts survive the restart");
    let waited = requeued_at.elapsed();
    assert!(
        waited >= Duration::from_millis(DEFER_MS - 100),
        "delivered after {waited:?}, before its {DEFER_MS} ms deferral"
    );
    c.fin(&again.id);
    c.expect_no_frame(Duration::from_millis(500));
}

/// An ephemeral channel does not hold the topic's log back; when it lags behind the segments
/// the durable channels let go, it carries on from the oldest record left (the rest is dropped,
/// as its overflow is) and the broker keeps serving everyone.
#[test]
fn lagging_ephemeral_channel_resumes_after_retention() {
    let broker = Broker::start(&[
        "--mem-queue-size",
        "100000",
        "--max-bytes-per-file",
        "4096",
        "--sync-timeout",
        "100ms",
    ]);
    let mut durable = RawConn::subscriber(broker.tcp_addr(), "lag", "d");
    let mut lagging = RawConn::subscriber(broker.tcp_addr(), "lag", "e#ephemeral");
    let mut p = RawConn::connect(broker.tcp_addr());
    let body = vec![b'y'; 100];
    for _ in 0..300 {
        p.publish("lag", &body);
    }
    durable.rdy(100);
    for _ in 0..300 {
        let m = durable.read_msg();
        durable.fin(&m.id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while segment_count(broker.data_path(), "lag") > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        segment_count(broker.data_path(), "lag") <= 2,
        "the ephemeral channel held the topic's log back"
    );

    lagging.rdy(10);
    let m = lagging.read_msg();
    assert_eq!(m.body, body);
    // The broker still answers others.
    p.publish("lag", &body);
    let mut other = RawConn::connect(broker.tcp_addr());
    other.publish("other", b"still serving");
}

/// The deferred count of `topic`/`channel` in `/stats`.
fn deferred_count(broker: &Broker, topic: &str, channel: &str) -> u64 {
    let url = format!(
        "http://{}/stats?format=json&topic={topic}&channel={channel}",
        broker.http_addr()
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ureq::get(&url).call().unwrap().into_string().unwrap()).unwrap();
    stats["topics"][0]["channels"][0]["deferred_count"]
        .as_u64()
        .unwrap()
}

/// A DPUB is deferred for every channel the moment it is published, ahead of the channel's
/// cursor (as nsqd puts it in every channel's deferred queue). If a stop parks it while the
/// cursor is still behind it, a restart must not defer it a second time when the cursor gets
/// there (it would be delivered twice).
#[test]
fn a_dpub_ahead_of_the_cursor_is_deferred_once_across_a_restart() {
    let mut broker = Broker::start(&["--mem-queue-size", "0", "--sync-timeout", "100ms"]);
    for path in [
        "/topic/create?topic=dp",
        "/channel/create?topic=dp&channel=c",
    ] {
        assert_eq!(common::http_post(&broker, path, b"").0, 200, "{path}");
    }
    let mut p = RawConn::connect(broker.tcp_addr());
    p.dpub("dp", 3_600_000, b"later");
    p.expect_ok();
    p.publish("dp", b"now");
    assert_eq!(deferred_count(&broker, "dp", "c"), 1);
    // A clean stop parks what waits past the next sync point, the DPUB included.
    broker.stop();
    broker.restart();
    let mut c = RawConn::subscriber(broker.tcp_addr(), "dp", "c");
    c.rdy(10);
    // The cursor passes the DPUB's record on its way to "now".
    let m = c.read_msg();
    assert_eq!(m.body, b"now");
    c.fin(&m.id);
    c.expect_no_frame(Duration::from_millis(300));
    assert_eq!(
        deferred_count(&broker, "dp", "c"),
        1,
        "the DPUB is deferred twice"
    );
}
