//! Hostile and broken clients: each is closed, and the broker keeps serving everyone else.
//!
//! Garbage bytes, a frame truncated by a close, absurd declared sizes (nothing may be allocated
//! from them), a command line longer than any buffer, a client that vanishes mid-IDENTIFY, and
//! many abrupt disconnects. After each, a well-behaved publisher/consumer pair on the same
//! broker must still round-trip a message — and nothing from a broken frame may be delivered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Broker, Frame, RawConn};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A healthy client round trip on `topic`: the first message the consumer sees must be ours.
fn assert_healthy(addr: SocketAddr, topic: &str, sub: &mut RawConn, tag: &str) {
    let mut p = RawConn::connect(addr).with_label("healthy-publisher");
    p.publish(topic, tag.as_bytes());
    let m = sub.read_msg();
    assert_eq!(
        String::from_utf8_lossy(&m.body),
        tag,
        "after a hostile client the next delivered message must be the healthy one"
    );
    sub.fin(&m.id);
}

fn watcher(addr: SocketAddr, topic: &str) -> RawConn {
    let mut s = RawConn::subscriber(addr, topic, "watch").with_label("watcher");
    s.rdy(10);
    s
}

/// The hostile connection is closed; any frames before the close must be errors.
fn assert_closed_with_only_errors(c: &mut RawConn) {
    for f in c.drain_until_closed(CLOSE_TIMEOUT) {
        assert!(
            matches!(f, Frame::Error(_)),
            "hostile client got a non-error frame: {f:?}"
        );
    }
}

#[test]
fn garbage_after_magic_is_closed() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "g");
    let mut c = RawConn::connect(addr);
    c.send(b"\x00\xff\x13\x37garbage\x01\x02\nPUB g\n\xff\xff");
    assert_closed_with_only_errors(&mut c);
    assert_healthy(addr, "g", &mut w, "after-garbage");
}

#[test]
fn truncated_pub_then_close_publishes_nothing() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "trunc");
    let mut c = RawConn::connect(addr);
    let mut b = b"PUB trunc\n".to_vec();
    b.extend_from_slice(&100i32.to_be_bytes());
    b.extend_from_slice(b"only ten b");
    c.send(&b);
    c.shutdown_write();
    assert_closed_with_only_errors(&mut c);
    assert_healthy(addr, "trunc", &mut w, "after-truncated-pub");
}

#[test]
fn truncated_mpub_then_close_publishes_nothing() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "tm");
    let mut c = RawConn::connect(addr);
    // Declares 3 messages, sends one whole and half of the second.
    let mut body = Vec::new();
    body.extend_from_slice(&3i32.to_be_bytes());
    body.extend_from_slice(&5i32.to_be_bytes());
    body.extend_from_slice(b"whole");
    body.extend_from_slice(&5i32.to_be_bytes());
    body.extend_from_slice(b"ha");
    let mut b = b"MPUB tm\n".to_vec();
    b.extend_from_slice(&40i32.to_be_bytes());
    b.extend_from_slice(&body);
    c.send(&b);
    c.shutdown_write();
    assert_closed_with_only_errors(&mut c);
    assert_healthy(addr, "tm", &mut w, "after-truncated-mpub");
}

#[test]
fn huge_declared_sizes_are_rejected_without_reading() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "huge");
    for (line, want) in [
        (
            "PUB huge",
            "E_BAD_MESSAGE PUB message too big 2147483647 > 1048576",
        ),
        (
            "DPUB huge 0",
            "E_BAD_MESSAGE DPUB message too big 2147483647 > 1048576",
        ),
        (
            "MPUB huge",
            "E_BAD_BODY MPUB body too big 2147483647 > 5242880",
        ),
        (
            "IDENTIFY",
            "E_BAD_BODY IDENTIFY body too big 2147483647 > 5242880",
        ),
        ("AUTH", "E_BAD_BODY AUTH body too big 2147483647 > 5242880"),
    ] {
        let mut c = RawConn::connect(addr).with_label(line);
        let mut b = format!("{line}\n").into_bytes();
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        c.send(&b);
        c.expect_fatal(want);
    }
    // A huge MPUB message count inside a small body.
    let mut c = RawConn::connect(addr);
    let mut b = b"MPUB huge\n".to_vec();
    b.extend_from_slice(&8i32.to_be_bytes());
    b.extend_from_slice(&i32::MAX.to_be_bytes());
    c.send(&b);
    c.expect_fatal("E_BAD_BODY MPUB invalid message count 2147483647");
    assert_healthy(addr, "huge", &mut w, "after-huge");
}

#[test]
fn endless_line_without_newline_is_closed() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "long");
    let mut c = RawConn::connect(addr);
    // Far beyond any sane command-line buffer (Go's is 16 KiB).
    c.send(&vec![b'A'; 1024 * 1024]);
    assert_closed_with_only_errors(&mut c);
    assert_healthy(addr, "long", &mut w, "after-long-line");
}

#[test]
fn client_vanishing_mid_command_does_not_hurt_others() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "vanish");
    let partials: [&[u8]; 6] = [
        b" ",
        b"  V",
        b"  V2IDENT",
        b"  V2IDENTIFY\n\x00\x00",
        b"  V2IDENTIFY\n\x00\x00\x00\x10{\"feat",
        b"  V2SUB vanish watch\nRDY 5\n",
    ];
    for _ in 0..20 {
        for p in partials {
            let mut c = RawConn::connect_no_magic(addr);
            c.send(p);
            drop(c);
        }
    }
    assert_healthy(addr, "vanish", &mut w, "after-vanishing");
}

#[test]
fn consumer_dropping_with_messages_in_flight_loses_nothing() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut a = RawConn::subscriber(addr, "drop", "ch").with_label("a");
    a.rdy(5);
    let mut p = RawConn::connect(addr);
    for i in 0..5 {
        p.publish("drop", format!("m{i}").as_bytes());
    }
    for _ in 0..5 {
        a.read_msg();
    }
    drop(a); // never FIN'd: all five go back to the channel
    let mut b = RawConn::subscriber(addr, "drop", "ch").with_label("b");
    b.rdy(5);
    let mut got: Vec<String> = b
        .consume_fin(5)
        .into_iter()
        .map(|m| {
            assert!(m.attempts >= 2, "redelivery must count attempts");
            String::from_utf8_lossy(&m.body).into_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
}
