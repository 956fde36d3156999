//! Every protocol error string and its fatality, plus every configurable limit (NSQ.md §1.2–1.3).
//!
//! Fatal errors must be followed by the broker closing the connection; the three non-fatal
//! ones (`E_FIN_FAILED`, `E_REQ_FAILED`, `E_TOUCH_FAILED`) are in `protocol_commands.rs`. Limits are
//! exercised with tiny values set through nsqd's own flags so boundary cases are cheap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::{be_len, mpub_bytes, with_body, Broker, RawConn};

/// Send `bytes` on a fresh connection and expect the fatal error `want`.
fn fatal(addr: SocketAddr, bytes: &[u8], want: &str) {
    let mut c = RawConn::connect(addr).with_label(want);
    c.send(bytes);
    c.expect_fatal(want);
}

/// Same, on a connection that has subscribed first.
fn fatal_subscribed(addr: SocketAddr, bytes: &[u8], want: &str) {
    let mut c = RawConn::subscriber(addr, "sub_topic", "sub_channel").with_label(want);
    c.send(bytes);
    c.expect_fatal(want);
}

fn line(s: &str) -> Vec<u8> {
    format!("{s}\n").into_bytes()
}

// ---- names ------------------------------------------------------------------------------

#[test]
fn valid_names_are_accepted() {
    let broker = Broker::start(&[]);
    let max = "a".repeat(64);
    let mut c = RawConn::connect(broker.tcp_addr());
    for topic in ["a", "a.b-c_D9", "t#ephemeral", max.as_str(), "...", "-_-"] {
        c.publish(topic, b"x");
    }
    let mut s = RawConn::connect(broker.tcp_addr());
    s.sub(&max, &format!("{}#ephemeral", "c".repeat(54)));
}

#[test]
fn invalid_topic_names_are_fatal_for_pub_mpub_dpub_sub() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let too_long = "a".repeat(65);
    for name in [
        too_long.as_str(),
        "a:b",
        "a*b",
        "a/b",
        "#ephemeral",
        "t#eph",
        "t#ephemeral#ephemeral",
        "t#ephemeralx",
    ] {
        fatal(
            addr,
            &with_body(&format!("PUB {name}"), b"x"),
            &format!("E_BAD_TOPIC PUB topic name \"{name}\" is not valid"),
        );
        // The MPUB message repeats its code inside the description (a real 1.3.0 quirk).
        fatal(
            addr,
            &mpub_bytes(name, &[b"x"]),
            &format!("E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"{name}\" is not valid"),
        );
        fatal(
            addr,
            &with_body(&format!("DPUB {name} 10"), b"x"),
            &format!("E_BAD_TOPIC DPUB topic name \"{name}\" is not valid"),
        );
        fatal(
            addr,
            &line(&format!("SUB {name} ch")),
            &format!("E_BAD_TOPIC SUB topic name \"{name}\" is not valid"),
        );
    }
}

#[test]
fn invalid_channel_names_are_fatal() {
    let broker = Broker::start(&[]);
    let too_long = "c".repeat(65);
    for name in [too_long.as_str(), "c:d", "c!", "#ephemeral", "c#ephemeral2"] {
        fatal(
            broker.tcp_addr(),
            &line(&format!("SUB topic {name}")),
            &format!("E_BAD_CHANNEL SUB channel name \"{name}\" is not valid"),
        );
    }
}

// ---- parameter counts and parsing -------------------------------------------------------

#[test]
fn missing_parameters_are_fatal() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    fatal(
        addr,
        &line("PUB"),
        "E_INVALID PUB insufficient number of parameters",
    );
    fatal(
        addr,
        &line("MPUB"),
        "E_INVALID MPUB insufficient number of parameters",
    );
    fatal(
        addr,
        &line("DPUB t"),
        "E_INVALID DPUB insufficient number of parameters",
    );
    fatal(
        addr,
        &line("SUB t"),
        "E_INVALID SUB insufficient number of parameters",
    );
    fatal(
        addr,
        &line("SUB"),
        "E_INVALID SUB insufficient number of parameters",
    );
    fatal_subscribed(
        addr,
        &line("FIN"),
        "E_INVALID FIN insufficient number of params",
    );
    fatal_subscribed(
        addr,
        &line("REQ 0123456789abcdef"),
        "E_INVALID REQ insufficient number of params",
    );
    fatal_subscribed(
        addr,
        &line("TOUCH"),
        "E_INVALID TOUCH insufficient number of params",
    );
}

#[test]
fn malformed_message_ids_are_fatal() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    for id in ["abc", "0123456789abcdef0", ""] {
        fatal_subscribed(
            addr,
            &line(&format!("FIN {id}")),
            "E_INVALID invalid message ID",
        );
        fatal_subscribed(
            addr,
            &line(&format!("REQ {id} 0")),
            "E_INVALID invalid message ID",
        );
        fatal_subscribed(
            addr,
            &line(&format!("TOUCH {id}")),
            "E_INVALID invalid message ID",
        );
    }
}

#[test]
fn unparsable_numbers_are_fatal() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    for n in ["abc", "-1", "1.5", "+1"] {
        fatal_subscribed(
            addr,
            &line(&format!("RDY {n}")),
            &format!("E_INVALID RDY could not parse count {n}"),
        );
        fatal_subscribed(
            addr,
            &line(&format!("REQ 0123456789abcdef {n}")),
            &format!("E_INVALID REQ could not parse timeout {n}"),
        );
        fatal(
            addr,
            &with_body(&format!("DPUB t {n}"), b"x"),
            &format!("E_INVALID DPUB could not parse timeout {n}"),
        );
    }
}

// ---- message and body sizes -------------------------------------------------------------

#[test]
fn pub_and_dpub_message_size_limits() {
    let broker = Broker::start(&["--max-msg-size", "100", "--max-body-size", "1000"]);
    let addr = broker.tcp_addr();
    let mut ok = RawConn::connect(addr);
    ok.publish("lim", &[b'x'; 100]);
    ok.dpub("lim", 0, &[b'x'; 100]);
    ok.expect_ok();

    // Declared sizes are checked before the body is read: send only the header.
    let header = |cmd: &str, size: i32| {
        let mut b = line(cmd);
        b.extend_from_slice(&size.to_be_bytes());
        b
    };
    fatal(
        addr,
        &header("PUB lim", 101),
        "E_BAD_MESSAGE PUB message too big 101 > 100",
    );
    fatal(
        addr,
        &header("PUB lim", 0),
        "E_BAD_MESSAGE PUB invalid message body size 0",
    );
    fatal(
        addr,
        &header("PUB lim", -1),
        "E_BAD_MESSAGE PUB invalid message body size -1",
    );
    fatal(
        addr,
        &header("DPUB lim 0", 101),
        "E_BAD_MESSAGE DPUB message too big 101 > 100",
    );
    fatal(
        addr,
        &header("DPUB lim 0", 0),
        "E_BAD_MESSAGE DPUB invalid message body size 0",
    );
    fatal(
        addr,
        &header("DPUB lim 0", -5),
        "E_BAD_MESSAGE DPUB invalid message body size -5",
    );
}

#[test]
fn mpub_body_count_and_message_limits() {
    let broker = Broker::start(&["--max-msg-size", "100", "--max-body-size", "1000"]);
    let addr = broker.tcp_addr();
    let hundred: &[u8] = &[b'x'; 100];

    let mut ok = RawConn::connect(addr);
    ok.mpublish("lim", &[hundred; 5]);

    // 4 + 11 × (4 + 100) = 1148 bytes.
    fatal(
        addr,
        &mpub_bytes("lim", &[hundred; 11]),
        "E_BAD_BODY MPUB body too big 1148 > 1000",
    );

    let mut zero_body = line("MPUB lim");
    zero_body.extend_from_slice(&0i32.to_be_bytes());
    fatal(addr, &zero_body, "E_BAD_BODY MPUB invalid body size 0");

    // Count 0, and count above (max_body_size - 4) / 5 = 199.
    for count in [0i32, 200, -1] {
        let mut b = line("MPUB lim");
        b.extend_from_slice(&be_len(8));
        b.extend_from_slice(&count.to_be_bytes());
        fatal(
            addr,
            &b,
            &format!("E_BAD_BODY MPUB invalid message count {count}"),
        );
    }
    // 199 is within the count limit: the error (if any) comes from reading messages.
    let mut c = RawConn::connect(addr);
    let bodies: Vec<&[u8]> = vec![b"y"; 199];
    c.mpublish("lim", &bodies);

    let mut with_empty: Vec<&[u8]> = vec![hundred; 5];
    with_empty.push(b"");
    fatal(
        addr,
        &mpub_bytes("lim", &with_empty),
        "E_BAD_MESSAGE MPUB invalid message(5) body size 0",
    );

    let big: &[u8] = &[b'x'; 101];
    fatal(
        addr,
        &mpub_bytes("lim", &[big; 5]),
        "E_BAD_MESSAGE MPUB message too big 101 > 100",
    );
}

#[test]
fn mpub_is_atomic_when_a_later_message_is_invalid() {
    let broker = Broker::start(&["--max-msg-size", "100"]);
    let addr = broker.tcp_addr();
    let mut sub = RawConn::subscriber(addr, "atomic", "ch");
    sub.rdy(10);
    let big: &[u8] = &[b'x'; 101];
    fatal(
        addr,
        &mpub_bytes("atomic", &[b"first", b"second", big]),
        "E_BAD_MESSAGE MPUB message too big 101 > 100",
    );
    let mut p = RawConn::connect(addr);
    p.publish("atomic", b"after");
    let m = sub.read_msg();
    assert_eq!(
        String::from_utf8_lossy(&m.body),
        "after",
        "no message of a rejected MPUB may be queued"
    );
}

#[test]
fn default_size_limits_are_nsqd_defaults() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut b = line("PUB t");
    b.extend_from_slice(&1_048_577i32.to_be_bytes());
    fatal(
        addr,
        &b,
        "E_BAD_MESSAGE PUB message too big 1048577 > 1048576",
    );
    let mut b = line("MPUB t");
    b.extend_from_slice(&5_242_881i32.to_be_bytes());
    fatal(addr, &b, "E_BAD_BODY MPUB body too big 5242881 > 5242880");
    let mut b = line("IDENTIFY");
    b.extend_from_slice(&5_242_881i32.to_be_bytes());
    fatal(
        addr,
        &b,
        "E_BAD_BODY IDENTIFY body too big 5242881 > 5242880",
    );
}

// ---- IDENTIFY body and field validation -------------------------------------------------

#[test]
fn identify_body_size_limits() {
    let broker = Broker::start(&["--max-msg-size", "100", "--max-body-size", "1000"]);
    let addr = broker.tcp_addr();
    for (size, want) in [
        (1001i32, "E_BAD_BODY IDENTIFY body too big 1001 > 1000"),
        (0, "E_BAD_BODY IDENTIFY invalid body size 0"),
        (-1, "E_BAD_BODY IDENTIFY invalid body size -1"),
    ] {
        let mut b = line("IDENTIFY");
        b.extend_from_slice(&size.to_be_bytes());
        fatal(addr, &b, want);
    }
}

/// IDENTIFY with `json` on a fresh connection: `None` → expect success, `Some(e)` → fatal `e`.
fn check_identify(addr: SocketAddr, json: &str, want_err: Option<&str>) {
    let mut c = RawConn::connect(addr).with_label(json);
    c.identify(json);
    match want_err {
        None => {
            c.expect_ok();
        }
        Some(e) => c.expect_fatal(e),
    }
}

#[test]
fn identify_heartbeat_interval_validation() {
    let broker = Broker::start(&["--max-heartbeat-interval", "5s"]);
    let a = broker.tcp_addr();
    check_identify(a, r#"{"heartbeat_interval":-1}"#, None);
    check_identify(a, r#"{"heartbeat_interval":0}"#, None);
    check_identify(a, r#"{"heartbeat_interval":1000}"#, None);
    check_identify(a, r#"{"heartbeat_interval":5000}"#, None);
    for bad in [999, 5001, -2, 1] {
        check_identify(
            a,
            &format!(r#"{{"heartbeat_interval":{bad}}}"#),
            Some(&format!(
                "E_BAD_BODY IDENTIFY heartbeat interval ({bad}) is invalid"
            )),
        );
    }
}

#[test]
fn identify_output_buffer_validation() {
    let broker = Broker::start(&[
        "--max-output-buffer-size",
        "1024",
        "--max-output-buffer-timeout",
        "1s",
        "--min-output-buffer-timeout",
        "25ms",
    ]);
    let a = broker.tcp_addr();
    for ok in [-1, 0, 64, 1024] {
        check_identify(a, &format!(r#"{{"output_buffer_size":{ok}}}"#), None);
    }
    for bad in [63, 1025, -2] {
        check_identify(
            a,
            &format!(r#"{{"output_buffer_size":{bad}}}"#),
            Some(&format!(
                "E_BAD_BODY IDENTIFY output buffer size ({bad}) is invalid"
            )),
        );
    }
    for ok in [-1, 0, 25, 1000] {
        check_identify(a, &format!(r#"{{"output_buffer_timeout":{ok}}}"#), None);
    }
    for bad in [24, 1001, -2] {
        check_identify(
            a,
            &format!(r#"{{"output_buffer_timeout":{bad}}}"#),
            Some(&format!(
                "E_BAD_BODY IDENTIFY output buffer timeout ({bad}) is invalid"
            )),
        );
    }
}

#[test]
fn identify_msg_timeout_validation() {
    let broker = Broker::start(&["--max-msg-timeout", "5s"]);
    let a = broker.tcp_addr();
    for ok in [0, 1000, 5000] {
        check_identify(a, &format!(r#"{{"msg_timeout":{ok}}}"#), None);
    }
    for bad in [999, 5001, -1] {
        check_identify(
            a,
            &format!(r#"{{"msg_timeout":{bad}}}"#),
            Some(&format!(
                "E_BAD_BODY IDENTIFY msg timeout ({bad}) is invalid"
            )),
        );
    }
}

#[test]
fn identify_sample_rate_validation() {
    let broker = Broker::start(&[]);
    let a = broker.tcp_addr();
    for ok in [0, 1, 99] {
        check_identify(a, &format!(r#"{{"sample_rate":{ok}}}"#), None);
    }
    for bad in [100, -1] {
        check_identify(
            a,
            &format!(r#"{{"sample_rate":{bad}}}"#),
            Some(&format!(
                "E_BAD_BODY IDENTIFY sample rate ({bad}) is invalid"
            )),
        );
    }
}

#[test]
fn sub_with_heartbeats_disabled_is_fatal() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"heartbeat_interval":-1}"#);
    c.expect_ok();
    c.cmd("SUB t c");
    c.expect_fatal("E_INVALID cannot SUB with heartbeats disabled");
}

// ---- RDY, REQ, DPUB ranges --------------------------------------------------------------

#[test]
fn rdy_count_limit() {
    let broker = Broker::start(&["--max-rdy-count", "50"]);
    let a = broker.tcp_addr();
    let mut c = RawConn::subscriber(a, "t", "c");
    c.rdy(50);
    c.rdy(0);
    c.assert_alive("t");
    fatal_subscribed(
        a,
        &line("RDY 51"),
        "E_INVALID RDY count 51 out of range 0-50",
    );
    fatal_subscribed(
        a,
        &line("RDY 99999999999"),
        "E_INVALID RDY count 99999999999 out of range 0-50",
    );
}

#[test]
fn dpub_timeout_out_of_range_is_fatal_not_clamped() {
    let broker = Broker::start(&["--max-req-timeout", "5s"]);
    let a = broker.tcp_addr();
    let mut c = RawConn::connect(a);
    c.dpub("t", 5000, b"x");
    c.expect_ok();
    fatal(
        a,
        &with_body("DPUB t 5001", b"x"),
        "E_INVALID DPUB timeout 5001 out of range 0-5000",
    );
    let default = Broker::start(&[]);
    fatal(
        default.tcp_addr(),
        &with_body("DPUB t 3600001", b"x"),
        "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
    );
}

// ---- consumers per channel --------------------------------------------------------------

#[test]
fn max_channel_consumers_limit() {
    let broker = Broker::start(&["--max-channel-consumers", "1"]);
    let a = broker.tcp_addr();
    let _first = RawConn::subscriber(a, "t", "c");
    fatal(
        a,
        &line("SUB t c"),
        "E_SUB_FAILED SUB failed consumers for t:c exceeds limit of 1",
    );
    // Another channel is a separate limit.
    let _other = RawConn::subscriber(a, "t", "other");
}
