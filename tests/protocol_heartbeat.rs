//! Heartbeats and the read deadline (NSQ.md §1.1 "Heartbeats").
//!
//! With IDENTIFY `heartbeat_interval` 1000 the broker sends `_heartbeat_` Response frames about
//! every second; a client that sends nothing for 2 intervals is disconnected; any command
//! (conventionally NOP) resets that deadline; `-1` disables heartbeats (and forbids SUB).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Broker, Frame, RawConn, ReadErr};

fn fast_heartbeat_subscriber(broker: &Broker, topic: &str) -> RawConn {
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"heartbeat_interval":1000}"#);
    c.expect_ok();
    c.sub(topic, "ch");
    c
}

#[test]
fn heartbeat_frames_arrive_at_the_negotiated_interval() {
    let broker = Broker::start(&[]);
    let mut c = fast_heartbeat_subscriber(&broker, "hb");
    match c.read_frame_within(Duration::from_secs(10)) {
        Frame::Response(b) => assert_eq!(b, common::HEARTBEAT),
        other => panic!("expected _heartbeat_, got {other:?}"),
    }
    c.nop();
    // A second one proves it is periodic.
    match c.read_frame_within(Duration::from_secs(10)) {
        Frame::Response(b) => assert_eq!(b, common::HEARTBEAT),
        other => panic!("expected _heartbeat_, got {other:?}"),
    }
}

#[test]
fn heartbeats_reach_a_connection_that_has_not_subscribed() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"heartbeat_interval":1000}"#);
    c.expect_ok();
    match c.read_frame_within(Duration::from_secs(10)) {
        Frame::Response(b) => assert_eq!(b, common::HEARTBEAT),
        other => panic!("expected _heartbeat_, got {other:?}"),
    }
}

#[test]
fn silent_client_is_dropped_after_two_intervals() {
    let broker = Broker::start(&[]);
    let mut c = fast_heartbeat_subscriber(&broker, "silent");
    let t0 = Instant::now();
    // Heartbeats may arrive first; then the broker closes the connection.
    c.expect_closed_within(Duration::from_secs(15));
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "dropped after only {:?} (2 × 1000 ms expected)",
        t0.elapsed()
    );
    // The broker itself is fine.
    let mut d = RawConn::connect(broker.tcp_addr());
    d.publish("silent", b"x");
}

#[test]
fn nop_in_reply_to_heartbeats_keeps_the_client_alive() {
    let broker = Broker::start(&[]);
    let mut c = fast_heartbeat_subscriber(&broker, "alive");
    let t0 = Instant::now();
    let mut beats = 0;
    // Answer each heartbeat with NOP, as every client library does, for > 4 intervals.
    while t0.elapsed() < Duration::from_secs(5) {
        match c.try_read_frame(Duration::from_secs(5)) {
            Ok(f) if f.is_heartbeat() => {
                beats += 1;
                c.nop();
            }
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(ReadErr::Timeout) => panic!("no heartbeat within 5 s"),
            Err(e) => panic!(
                "connection dropped despite NOPs after {:?}: {e:?}",
                t0.elapsed()
            ),
        }
    }
    assert!(
        beats >= 3,
        "expected several heartbeats in 5 s, got {beats}"
    );
    c.assert_alive("alive");
}

#[test]
fn disabled_heartbeats_send_none_and_do_not_time_out() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"heartbeat_interval":-1}"#);
    c.expect_ok();
    // Well past what a 1 s interval would allow, and nothing (not even a heartbeat) arrives.
    match c.try_read_frame(Duration::from_secs(3)) {
        Err(ReadErr::Timeout) => {}
        other => panic!("expected silence with heartbeats disabled, got {other:?}"),
    }
    c.assert_alive("nohb");
}

/// IDENTIFY's `heartbeat_interval` applies from the moment it is answered, even when the
/// connection's writer is already waiting for the previous interval (here 30 s, set by a first
/// IDENTIFY): the next heartbeat comes after the new interval, so a client that answers each
/// with NOP is never dropped by the read deadline (twice the new interval). Before, a writer
/// that started before the IDENTIFY was read kept the old interval, and the connection was
/// closed after 2 s without a heartbeat.
#[test]
fn a_new_heartbeat_interval_takes_effect_at_once() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"heartbeat_interval":30000}"#);
    c.expect_ok();
    c.identify(r#"{"heartbeat_interval":1000}"#);
    c.expect_ok();
    let t0 = Instant::now();
    let mut beats = 0;
    while beats < 3 {
        match c.try_read_frame(Duration::from_secs(10)) {
            Ok(f) if f.is_heartbeat() => {
                beats += 1;
                c.nop();
            }
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(e) => panic!("no heartbeat, connection {e:?} after {:?}", t0.elapsed()),
        }
    }
    c.assert_alive("rehb");
}
