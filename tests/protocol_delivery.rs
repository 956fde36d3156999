//! Delivery semantics through the real binary (NSQ.md §1.2 "Other behaviour", §1.9).
//!
//! RDY as a window, RDY 0, consumers sharing a channel, channels each getting every message,
//! backlog to the first channel and tail for later ones, ephemeral channels, `sample_rate`,
//! REQ (immediate, delayed, clamped), TOUCH, message timeouts, DPUB deferral.
//!
//! Timing: only lower bounds on delays ("not before"); upper bounds are the generous read
//! timeouts, so a slow machine makes a test slower, never wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{Broker, RawConn, ReadErr};

/// Slack for timer granularity when asserting "not earlier than": a broker may round a
/// deadline to its tick, never deliver meaningfully early.
const EARLY_SLACK: Duration = Duration::from_millis(50);

fn bodies(n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

fn publish_all(addr: std::net::SocketAddr, topic: &str, msgs: &[Vec<u8>]) {
    let mut p = RawConn::connect(addr).with_label("publisher");
    for chunk in msgs.chunks(50) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        p.mpublish(topic, &refs);
    }
}

// ---- RDY --------------------------------------------------------------------------------

#[test]
fn rdy_is_a_window_of_in_flight_messages() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "win", "ch");
    c.rdy(1);
    publish_all(broker.tcp_addr(), "win", &bodies(3, "w"));
    let m1 = c.read_msg();
    c.expect_no_frame(Duration::from_millis(700));
    c.fin(&m1.id);
    // No new RDY needed: the window re-opens when in-flight drops below it.
    let m2 = c.read_msg();
    c.fin(&m2.id);
    let m3 = c.read_msg();
    c.fin(&m3.id);
    let got: HashSet<Vec<u8>> = [m1.body, m2.body, m3.body].into_iter().collect();
    assert_eq!(got, bodies(3, "w").into_iter().collect());

    // RDY 3 → three in flight at once, then nothing until one is finished.
    publish_all(broker.tcp_addr(), "win", &bodies(4, "x"));
    c.rdy(3);
    let held: Vec<_> = (0..3).map(|_| c.read_msg()).collect();
    c.expect_no_frame(Duration::from_millis(700));
    c.fin(&held[0].id);
    let last = c.read_msg();
    assert!(!held.iter().any(|m| m.id == last.id));
}

#[test]
fn rdy_0_stops_delivery_until_raised() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "zero", "ch");
    // No RDY yet: a fresh subscriber has RDY 0.
    publish_all(broker.tcp_addr(), "zero", &bodies(2, "z"));
    c.expect_no_frame(Duration::from_millis(700));
    c.rdy(1);
    let m = c.read_msg();
    c.rdy(0);
    c.fin(&m.id);
    c.expect_no_frame(Duration::from_millis(700));
    c.rdy(1);
    let m2 = c.read_msg();
    assert_ne!(m.id, m2.id);
}

// ---- fan-out ----------------------------------------------------------------------------

#[test]
fn consumers_on_one_channel_split_messages_without_duplicates() {
    const N: usize = 200;
    let broker = Broker::start(&[]);
    let mut a = RawConn::subscriber(broker.tcp_addr(), "split", "ch").with_label("a");
    let mut b = RawConn::subscriber(broker.tcp_addr(), "split", "ch").with_label("b");
    a.rdy(5);
    b.rdy(5);
    publish_all(broker.tcp_addr(), "split", &bodies(N, "s"));

    let mut seen: HashMap<Vec<u8>, &str> = HashMap::new();
    let mut per = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < N {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} delivered",
            seen.len()
        );
        for (i, (conn, name)) in [(&mut a, "a"), (&mut b, "b")].into_iter().enumerate() {
            match conn.try_read_frame(Duration::from_millis(50)) {
                Ok(common::Frame::Message(m)) => {
                    conn.fin(&m.id);
                    if let Some(prev) = seen.insert(m.body.clone(), name) {
                        panic!(
                            "duplicate delivery of {:?} (to {prev}, then {name})",
                            String::from_utf8_lossy(&m.body)
                        );
                    }
                    per[i] += 1;
                }
                Ok(f) if f.is_heartbeat() => {}
                Ok(f) => panic!("[{name}] unexpected frame {f:?}"),
                Err(ReadErr::Timeout) => {}
                Err(e) => panic!("[{name}] read failed: {e:?}"),
            }
        }
    }
    assert!(
        per[0] > 0 && per[1] > 0,
        "both consumers must get messages: {per:?}"
    );
}

#[test]
fn every_channel_gets_every_message() {
    const N: usize = 100;
    let broker = Broker::start(&[]);
    let mut c1 = RawConn::subscriber(broker.tcp_addr(), "fan", "c1").with_label("c1");
    let mut c2 = RawConn::subscriber(broker.tcp_addr(), "fan", "c2").with_label("c2");
    c1.rdy(20);
    c2.rdy(20);
    let sent = bodies(N, "f");
    publish_all(broker.tcp_addr(), "fan", &sent);
    let want: HashSet<Vec<u8>> = sent.into_iter().collect();
    for c in [&mut c1, &mut c2] {
        let got: HashSet<Vec<u8>> = c.consume_fin(N).into_iter().map(|m| m.body).collect();
        assert_eq!(got, want, "[{}] must receive every message", c.label);
    }
}

#[test]
fn first_channel_gets_backlog_later_channel_starts_at_tail() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut p = RawConn::connect(addr);
    // No channel yet: the topic holds these.
    p.publish("tail", b"old-1");
    p.publish("tail", b"old-2");

    let mut first = RawConn::subscriber(addr, "tail", "first").with_label("first");
    first.rdy(10);
    let got: HashSet<Vec<u8>> = first.consume_fin(2).into_iter().map(|m| m.body).collect();
    assert_eq!(
        got,
        [b"old-1".to_vec(), b"old-2".to_vec()].into_iter().collect()
    );

    let mut later = RawConn::subscriber(addr, "tail", "later").with_label("later");
    later.rdy(10);
    p.publish("tail", b"new");
    let m = later.read_msg();
    assert_eq!(
        String::from_utf8_lossy(&m.body),
        "new",
        "a channel created after messages flowed starts at the tail"
    );
    assert_eq!(first.read_msg().body, b"new");
}

#[test]
fn ephemeral_channel_vanishes_with_its_last_consumer() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    // A durable channel keeps the topic flowing while the ephemeral one comes and goes.
    let _keep = RawConn::subscriber(addr, "eph", "durable");
    let mut p = RawConn::connect(addr);

    // Removal after disconnect is asynchronous; retry with growing patience instead of
    // guessing one sleep. Each round is a fresh "last consumer leaves" event.
    let mut last_seen = String::new();
    for round in 0..5u32 {
        let mut a = RawConn::subscriber(addr, "eph", "e#ephemeral").with_label("a");
        a.rdy(1);
        p.publish("eph", format!("seen-{round}").as_bytes());
        let m = a.read_msg();
        a.fin(&m.id);
        drop(a);
        std::thread::sleep(Duration::from_millis(100 * u64::from(round + 1)));

        // Published while no consumer is on the ephemeral channel.
        p.publish("eph", format!("orphan-{round}").as_bytes());
        let mut b = RawConn::subscriber(addr, "eph", "e#ephemeral").with_label("b");
        b.rdy(1);
        p.publish("eph", format!("fresh-{round}").as_bytes());
        let first = String::from_utf8_lossy(&b.read_msg().body).into_owned();
        if first == format!("fresh-{round}") {
            return;
        }
        last_seen = first;
        drop(b);
        std::thread::sleep(Duration::from_millis(100 * u64::from(round + 1)));
    }
    panic!(
        "ephemeral channel kept messages after its last consumer left (new consumer got {last_seen:?})"
    );
}

// ---- sampling ---------------------------------------------------------------------------

#[test]
fn sample_rate_drops_most_messages_for_that_client() {
    const N: usize = 1000;
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"sample_rate":10}"#);
    c.expect_ok();
    c.sub("sample", "ch");
    c.rdy(100);
    publish_all(broker.tcp_addr(), "sample", &bodies(N, "r"));
    // Count until the stream goes quiet; the count is random (~11%), so bounds are wide.
    let mut got = 0usize;
    loop {
        match c.try_read_frame(Duration::from_secs(3)) {
            Ok(common::Frame::Message(m)) => {
                c.fin(&m.id);
                got += 1;
            }
            Ok(f) if f.is_heartbeat() => {}
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(ReadErr::Timeout) => break,
            Err(e) => panic!("read failed: {e:?}"),
        }
    }
    assert!(
        (20..=300).contains(&got),
        "sample_rate 10 should deliver roughly 11% of {N}, got {got}"
    );
}

// ---- REQ / TOUCH / timeouts -------------------------------------------------------------

#[test]
fn req_0_redelivers_immediately_with_attempts_2() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "req", "ch");
    c.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("req", b"again");
    let m = c.read_msg();
    assert_eq!(m.attempts, 1);
    c.req(&m.id, 0);
    let m2 = c.read_msg();
    assert_eq!(m2.id, m.id, "a requeued message keeps its ID");
    assert_eq!(m2.body, m.body);
    assert_eq!(m2.attempts, 2);
    c.fin(&m2.id);
}

#[test]
fn req_with_delay_is_not_redelivered_early() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "reqd", "ch");
    c.rdy(2);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("reqd", b"later");
    let m = c.read_msg();
    let delay = Duration::from_millis(1500);
    let t0 = Instant::now();
    c.req(&m.id, 1500);
    // A message published after the REQ overtakes the deferred one.
    p.publish("reqd", b"sooner");
    let s = c.read_msg();
    assert_eq!(s.body, b"sooner");
    c.fin(&s.id);
    let again = c.read_msg();
    let waited = t0.elapsed();
    assert_eq!(again.id, m.id);
    assert_eq!(again.attempts, 2);
    assert!(
        waited + EARLY_SLACK >= delay,
        "REQ 1500 redelivered after {waited:?}"
    );
}

#[test]
fn req_timeout_above_max_is_clamped_not_rejected() {
    let broker = Broker::start(&["--max-req-timeout", "2s"]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "clamp", "ch");
    c.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("clamp", b"x");
    let m = c.read_msg();
    let t0 = Instant::now();
    // One hour requested; clamped to 2 s (an error here would close the connection).
    c.req(&m.id, 3_600_000);
    let again = c.read_msg_within(Duration::from_secs(20));
    let waited = t0.elapsed();
    assert_eq!(again.id, m.id);
    assert_eq!(again.attempts, 2);
    assert!(
        waited + EARLY_SLACK >= Duration::from_secs(2),
        "clamped REQ redelivered after {waited:?}"
    );
}

#[test]
fn msg_timeout_flag_redelivers_unfinished_message() {
    let broker = Broker::start(&["--msg-timeout", "1s"]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "mto", "ch");
    c.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("mto", b"slow");
    let m = c.read_msg();
    let t0 = Instant::now();
    let again = c.read_msg();
    assert!(t0.elapsed() + EARLY_SLACK >= Duration::from_secs(1));
    assert_eq!(again.id, m.id);
    assert_eq!(again.attempts, 2);
    // The timed-out delivery is no longer ours to finish; the new one is.
    c.fin(&again.id);
    c.assert_alive("mto_other");
}

#[test]
fn identify_msg_timeout_redelivers_unfinished_message() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"msg_timeout":1000}"#);
    c.expect_ok();
    c.sub("imto", "ch");
    c.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("imto", b"slow");
    let m = c.read_msg();
    let t0 = Instant::now();
    let again = c.read_msg();
    assert!(t0.elapsed() + EARLY_SLACK >= Duration::from_secs(1));
    assert_eq!((again.id, again.attempts), (m.id, 2));
}

#[test]
fn touch_extends_the_deadline() {
    let broker = Broker::start(&["--msg-timeout", "3s"]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "touch", "ch");
    c.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("touch", b"long job");
    let m = c.read_msg();
    let t0 = Instant::now();
    // Touch every second for 4 s: past the original 3 s deadline.
    let mut last_touch = t0;
    while t0.elapsed() < Duration::from_secs(4) {
        match c.try_read_frame(Duration::from_secs(1)) {
            Err(ReadErr::Timeout) => {}
            Ok(f) if f.is_heartbeat() => {}
            Ok(f) => panic!(
                "after {:?} with TOUCH every 1 s (msg-timeout 3 s) got {f:?}",
                t0.elapsed()
            ),
            Err(e) => panic!("read failed: {e:?}"),
        }
        c.touch(&m.id);
        last_touch = Instant::now();
    }
    let again = c.read_msg_within(Duration::from_secs(20));
    assert!(
        last_touch.elapsed() + EARLY_SLACK >= Duration::from_secs(3),
        "redelivered {:?} after the last TOUCH (msg-timeout 3 s)",
        last_touch.elapsed()
    );
    assert_eq!((again.id, again.attempts), (m.id, 2));
}

// ---- DPUB -------------------------------------------------------------------------------

#[test]
fn dpub_is_not_delivered_before_its_delay() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "defer", "ch");
    c.rdy(10);
    let mut p = RawConn::connect(broker.tcp_addr());
    let t0 = Instant::now();
    p.dpub("defer", 1500, b"deferred");
    p.expect_ok();
    p.publish("defer", b"immediate");
    let first = c.read_msg();
    assert_eq!(
        first.body, b"immediate",
        "a deferred message must not overtake"
    );
    c.fin(&first.id);
    let d = c.read_msg();
    let waited = t0.elapsed();
    assert_eq!(d.body, b"deferred");
    assert_eq!(d.attempts, 1, "deferral is not a delivery attempt");
    assert!(
        waited + EARLY_SLACK >= Duration::from_millis(1500),
        "DPUB 1500 delivered after {waited:?}"
    );
}
