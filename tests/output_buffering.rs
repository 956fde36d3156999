//! Output buffering (nsqd's `--output-buffer-timeout`, IDENTIFY `output_buffer_timeout`): a
//! message is written to its consumer as soon as the connection has nothing more to write at
//! that moment, so a lone message is not held for the timeout; the flag is the bound a client
//! gets when it sets none (as nsqd), and a client's own value (`-1`: no buffering) wins.
//!
//! No timing is asserted: the timeouts here are far longer than the waits the tests allow, so
//! a broker that held a message for its timeout fails whatever the machine's load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Broker, RawConn};
use std::time::Duration;

/// Far below the 30 s timeouts of the tests: a message held for its timeout misses it.
const PROMPTLY: Duration = Duration::from_secs(10);

fn lone_message_arrives_promptly(flags: &[&str], identify: Option<&str>) {
    let b = Broker::start(flags);
    let mut c = RawConn::connect(b.tcp_addr());
    if let Some(json) = identify {
        c.identify_negotiate(json);
    }
    c.sub("lone", "c");
    c.rdy(50);
    let mut p = RawConn::connect(b.tcp_addr());
    for i in 0..3 {
        let body = format!("lone {i}");
        p.publish("lone", body.as_bytes());
        let m = c.read_msg_within(PROMPTLY);
        assert_eq!(m.body, body.as_bytes());
        c.fin(&m.id);
    }
}

#[test]
fn a_lone_message_reaches_a_ready_consumer_at_the_defaults() {
    lone_message_arrives_promptly(&[], None);
}

#[test]
fn a_lone_message_is_not_held_for_a_long_output_buffer_timeout() {
    lone_message_arrives_promptly(&["--output-buffer-timeout", "30s"], None);
}

#[test]
fn a_lone_message_is_not_held_for_a_clients_own_long_timeout() {
    lone_message_arrives_promptly(
        &[],
        Some(r#"{"feature_negotiation":true,"output_buffer_timeout":30000}"#),
    );
}

#[test]
fn the_flag_is_the_default_and_a_clients_value_wins() {
    let b = Broker::start(&["--output-buffer-timeout", "2s"]);
    let mut c = RawConn::connect(b.tcp_addr());
    let v = c.identify_negotiate(r#"{"feature_negotiation":true}"#);
    assert_eq!(v["output_buffer_timeout"], 2000, "{v}");
    let mut c = RawConn::connect(b.tcp_addr());
    let v = c.identify_negotiate(r#"{"feature_negotiation":true,"output_buffer_timeout":100}"#);
    assert_eq!(v["output_buffer_timeout"], 100, "{v}");
    let mut c = RawConn::connect(b.tcp_addr());
    let v = c.identify_negotiate(r#"{"feature_negotiation":true,"output_buffer_timeout":-1}"#);
    assert_eq!(v["output_buffer_timeout"], 0, "{v}");
    // Unbuffered, messages still come.
    c.sub("unbuffered", "c");
    c.rdy(1);
    let mut p = RawConn::connect(b.tcp_addr());
    p.publish("unbuffered", b"now");
    assert_eq!(c.read_msg_within(PROMPTLY).body, b"now");
}

/// Under load messages are still written in batches: many messages per write to the socket
/// (`ringsq_socket_writes_total` in `/metrics`).
#[test]
fn under_load_messages_share_writes() {
    let b = Broker::start(&[]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "load", "c");
    let mut p = RawConn::connect(b.tcp_addr());
    let bodies: Vec<Vec<u8>> = (0..1000).map(|i| format!("m{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    for chunk in refs.chunks(200) {
        p.mpublish("load", chunk);
    }
    let writes = |b: &Broker| -> u64 {
        let url = format!("http://{}/metrics", b.http_addr());
        let text = ureq::get(&url).call().unwrap().into_string().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("ringsq_socket_writes_total "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = writes(&b);
    c.rdy(1000);
    let got = c.consume_fin(1000);
    assert_eq!(got.len(), 1000);
    let used = writes(&b) - before;
    assert!(
        used * 10 < 1000,
        "{used} writes for 1000 messages: they were not batched"
    );
}
