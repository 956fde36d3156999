//! Messages survive restarts: SIGTERM (clean, exit 0) and `kill -9` (nothing acknowledged lost).
//!
//! Clean shutdown must keep queued messages, messages still at a topic with no channel, and
//! messages in flight (redelivered after restart, NSQ.md §1.9), plus the channel set itself.
//! `kill -9` after an `OK` must lose nothing with `--mem-queue-size 0` (every message goes to
//! disk in Go nsqd) and with `--ack-after-sync` (ringsq's explicit durability ack).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::{Broker, RawConn};

fn bodies(n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

fn publish(broker: &Broker, topic: &str, msgs: &[Vec<u8>]) {
    let mut p = RawConn::connect(broker.tcp_addr()).with_label("publisher");
    for m in msgs {
        p.publish(topic, m);
    }
}

/// Subscribe and receive exactly the set `want` (FIN each); duplicates are tolerated (NSQ is
/// at-least-once) but every body must arrive.
fn consume_set(broker: &Broker, topic: &str, channel: &str, want: &[Vec<u8>]) {
    let mut c = RawConn::subscriber(broker.tcp_addr(), topic, channel).with_label(channel);
    c.rdy(100);
    let want: HashSet<Vec<u8>> = want.iter().cloned().collect();
    let mut got = HashSet::new();
    while got.len() < want.len() {
        let m = c.read_msg();
        c.fin(&m.id);
        assert!(
            want.contains(&m.body),
            "unexpected body after restart: {:?}",
            String::from_utf8_lossy(&m.body)
        );
        got.insert(m.body);
    }
}

#[test]
fn sigterm_exits_cleanly() {
    let mut broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    c.publish("t", b"x");
    broker.stop(); // asserts exit status 0
}

#[test]
fn queued_messages_survive_sigterm_restart() {
    let mut broker = Broker::start(&[]);
    // Create the channel, then leave it with everything queued.
    drop(RawConn::subscriber(broker.tcp_addr(), "keep", "ch"));
    let msgs = bodies(100, "q");
    publish(&broker, "keep", &msgs);
    broker.restart();
    consume_set(&broker, "keep", "ch", &msgs);
}

#[test]
fn topic_backlog_without_channels_survives_sigterm_restart() {
    let mut broker = Broker::start(&[]);
    let msgs = bodies(20, "b");
    publish(&broker, "nochan", &msgs);
    broker.restart();
    consume_set(&broker, "nochan", "first", &msgs);
}

#[test]
fn in_flight_messages_are_redelivered_after_sigterm_restart() {
    let mut broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "inflight", "ch");
    c.rdy(10);
    let msgs = bodies(10, "f");
    publish(&broker, "inflight", &msgs);
    for _ in 0..10 {
        c.read_msg(); // never FIN'd
    }
    broker.restart();
    drop(c);
    consume_set(&broker, "inflight", "ch", &msgs);
}

#[test]
fn channels_survive_sigterm_restart() {
    let mut broker = Broker::start(&[]);
    drop(RawConn::subscriber(broker.tcp_addr(), "meta", "durable"));
    broker.restart();
    // "durable" exists again, so this message flows to it even with no consumer connected...
    publish(&broker, "meta", &[b"after".to_vec()]);
    // ...and a channel created now starts at the tail, not with the backlog.
    let mut late = RawConn::subscriber(broker.tcp_addr(), "meta", "late").with_label("late");
    late.rdy(10);
    publish(&broker, "meta", &[b"later".to_vec()]);
    assert_eq!(
        String::from_utf8_lossy(&late.read_msg().body),
        "later",
        "channel `durable` was not restored: `late` got the topic backlog"
    );
    consume_set(
        &broker,
        "meta",
        "durable",
        &[b"after".to_vec(), b"later".to_vec()],
    );
}

#[test]
fn ephemeral_channels_are_not_restored() {
    let mut broker = Broker::start(&[]);
    drop(RawConn::subscriber(broker.tcp_addr(), "ephr", "durable"));
    let eph = RawConn::subscriber(broker.tcp_addr(), "ephr", "gone#ephemeral");
    publish(&broker, "ephr", &[b"before".to_vec()]);
    broker.restart();
    drop(eph);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "ephr", "gone#ephemeral");
    c.rdy(10);
    publish(&broker, "ephr", &[b"after".to_vec()]);
    assert_eq!(
        c.read_msg().body,
        b"after",
        "ephemeral channel came back after restart"
    );
}

#[test]
fn kill9_loses_nothing_acknowledged_with_mem_queue_size_0() {
    let mut broker = Broker::start(&["--mem-queue-size", "0"]);
    drop(RawConn::subscriber(broker.tcp_addr(), "crash", "ch"));
    let with_channel = bodies(50, "c");
    publish(&broker, "crash", &with_channel);
    let no_channel = bodies(10, "n");
    publish(&broker, "crash_nochan", &no_channel);
    broker.kill9();
    broker.restart();
    consume_set(&broker, "crash", "ch", &with_channel);
    consume_set(&broker, "crash_nochan", "first", &no_channel);
}

#[test]
fn kill9_loses_nothing_acknowledged_with_ack_after_sync() {
    let mut broker = Broker::start(&["--ack-after-sync"]);
    drop(RawConn::subscriber(broker.tcp_addr(), "acked", "ch"));
    let single = bodies(50, "s");
    publish(&broker, "acked", &single);
    let batch = bodies(50, "m");
    let mut p = RawConn::connect(broker.tcp_addr());
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    p.mpublish("acked", &refs);
    broker.kill9();
    broker.restart();
    let all: Vec<Vec<u8>> = single.into_iter().chain(batch).collect();
    consume_set(&broker, "acked", "ch", &all);
}

#[test]
fn finished_messages_stay_finished_across_sigterm_restart() {
    let mut broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "done", "ch");
    c.rdy(10);
    publish(&broker, "done", &bodies(5, "d"));
    c.consume_fin(5);
    // A NOP round trip via PUB on another topic makes sure the FINs were processed.
    c.assert_alive("done_probe");
    drop(c);
    broker.restart();
    let mut d = RawConn::subscriber(broker.tcp_addr(), "done", "ch");
    d.rdy(10);
    publish(&broker, "done", &[b"fresh".to_vec()]);
    assert_eq!(
        String::from_utf8_lossy(&d.read_msg().body),
        "fresh",
        "a FIN'd message came back after a clean restart"
    );
}
