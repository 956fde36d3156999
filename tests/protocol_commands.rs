//! Protocol V2, command by command, against the real binary (NSQ.md §1.1–1.3).
//!
//! Covers the happy path and the state rules of every command: magic, IDENTIFY (plain and
//! feature-negotiated, with the exact 13-field JSON Go nsqd 1.3.0 marshals), AUTH with auth off,
//! snappy and deflate upgrades, SUB, PUB, MPUB, DPUB, RDY, FIN, REQ, TOUCH, CLS, NOP, unknown
//! commands and line parsing quirks (`\r\n`, double spaces, empty lines). Error strings are
//! compared byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use common::{is_lower_hex_id, with_body, Broker, RawConn};

/// The IDENTIFY response Go nsqd 1.3.0 sends with default flags to a client that asked only
/// for `feature_negotiation` (NSQ.md §1.3), byte for byte.
const DEFAULT_IDENTIFY_RESPONSE: &str = concat!(
    r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"#,
    r#""tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"#,
    r#""sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#
);

const IDENTIFY_FIELDS: [&str; 13] = [
    "max_rdy_count",
    "version",
    "max_msg_timeout",
    "msg_timeout",
    "tls_v1",
    "deflate",
    "deflate_level",
    "max_deflate_level",
    "snappy",
    "sample_rate",
    "auth_required",
    "output_buffer_size",
    "output_buffer_timeout",
];

fn now_ns() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_nanos()).unwrap()
}

// ---- magic ------------------------------------------------------------------------------

#[test]
fn bad_magic_gets_e_bad_protocol_and_close() {
    let broker = Broker::start(&[]);
    for magic in [
        &b"  V1"[..],
        b"V2  ",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\0\0\0\0",
    ] {
        let mut c = RawConn::connect_no_magic(broker.tcp_addr());
        c.send(magic);
        c.expect_fatal("E_BAD_PROTOCOL");
    }
    // The broker is unharmed.
    let mut c = RawConn::connect(broker.tcp_addr());
    c.publish("t", b"after bad magic");
}

// ---- IDENTIFY ---------------------------------------------------------------------------

#[test]
fn identify_without_feature_negotiation_answers_plain_ok() {
    let broker = Broker::start(&[]);
    for body in [
        "{}",
        r#"{"feature_negotiation":false}"#,
        r#"{"client_id":"a","hostname":"h","user_agent":"ua/1.0"}"#,
    ] {
        let mut c = RawConn::connect(broker.tcp_addr());
        c.identify(body);
        c.expect_ok();
        c.sub("t", "c");
    }
}

#[test]
fn identify_feature_negotiation_response_is_go_nsqd_bytes() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"feature_negotiation":true}"#);
    let body = c.expect_response();
    assert_eq!(String::from_utf8_lossy(&body), DEFAULT_IDENTIFY_RESPONSE);
    // IDENTIFY sends nothing more; the connection is usable.
    c.sub("t", "c");
}

#[test]
fn identify_response_has_exactly_the_13_fields_with_integer_types() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    let v = c.identify_negotiate(r#"{"feature_negotiation":true,"tls_v1":true}"#);
    let obj = v.as_object().expect("IDENTIFY response is a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = IDENTIFY_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["version"], "1.3.0");
    // No TLS certificate configured → tls_v1 stays false even though the client asked.
    assert_eq!(v["tls_v1"], false);
    // tokio-nsq deserializes these into u16/u8/u32 (NSQ.md §4).
    assert!(u16::try_from(v["max_rdy_count"].as_u64().unwrap()).is_ok());
    assert!(u8::try_from(v["deflate_level"].as_u64().unwrap()).is_ok());
    assert!(u8::try_from(v["sample_rate"].as_u64().unwrap()).is_ok());
    for k in [
        "max_msg_timeout",
        "msg_timeout",
        "output_buffer_size",
        "output_buffer_timeout",
    ] {
        assert!(
            u32::try_from(v[k].as_u64().unwrap()).is_ok(),
            "{k} must fit u32"
        );
    }
}

#[test]
fn identify_response_reflects_flags_and_client_settings() {
    let broker = Broker::start(&[
        "--max-rdy-count",
        "100",
        "--max-msg-timeout",
        "10m",
        "--msg-timeout",
        "30s",
        "--max-deflate-level",
        "4",
    ]);
    let mut client = RawConn::connect(broker.tcp_addr());
    let v = client.identify_negotiate(
        r#"{"feature_negotiation":true,"msg_timeout":5000,"sample_rate":25,
            "output_buffer_size":1024,"output_buffer_timeout":100}"#,
    );
    assert_eq!(v["max_rdy_count"], 100);
    assert_eq!(v["max_msg_timeout"], 600_000);
    assert_eq!(v["msg_timeout"], 5000);
    assert_eq!(v["sample_rate"], 25);
    assert_eq!(v["output_buffer_size"], 1024);
    assert_eq!(v["output_buffer_timeout"], 100);
    // Default level 6, clamped to --max-deflate-level even with deflate off.
    assert_eq!(v["deflate_level"], 4);
    assert_eq!(v["max_deflate_level"], 4);
    assert_eq!(v["deflate"], false);
    assert_eq!(v["snappy"], false);

    // A client that does not ask for msg_timeout gets --msg-timeout.
    let mut plain = RawConn::connect(broker.tcp_addr());
    let v = plain.identify_negotiate(r#"{"feature_negotiation":true}"#);
    assert_eq!(v["msg_timeout"], 30_000);

    // output_buffer_size -1 → size 1 and timeout 0; output_buffer_timeout -1 → 0.
    let mut tiny = RawConn::connect(broker.tcp_addr());
    let v = tiny.identify_negotiate(
        r#"{"feature_negotiation":true,"output_buffer_size":-1,"output_buffer_timeout":250}"#,
    );
    assert_eq!(v["output_buffer_size"], 1);
    assert_eq!(v["output_buffer_timeout"], 0);
    let mut unbuffered = RawConn::connect(broker.tcp_addr());
    let v =
        unbuffered.identify_negotiate(r#"{"feature_negotiation":true,"output_buffer_timeout":-1}"#);
    assert_eq!(v["output_buffer_timeout"], 0);
}

#[test]
fn identify_ignores_unknown_deprecated_and_null_keys() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    // What go-nsq/pynsq/nsqjs/tokio-nsq actually send (NSQ.md §4).
    let v = c.identify_negotiate(
        r#"{"feature_negotiation":true,"short_id":"s","long_id":"l.example",
            "topology_region":"r","topology_zone":"z","client_id":null,"sample_rate":null,
            "heartbeat_interval":30000,"user_agent":"tokio_nsq/0.14.0","extra":[1,{"x":2}]}"#,
    );
    assert_eq!(v["sample_rate"], 0);
    c.sub("t", "c");
}

#[test]
fn identify_keys_match_case_insensitively_like_go_json() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    let v = c.identify_negotiate(r#"{"Feature_Negotiation":true,"SAMPLE_RATE":7}"#);
    assert_eq!(v["sample_rate"], 7);
}

#[test]
fn identify_bad_json_is_fatal() {
    let broker = Broker::start(&[]);
    for body in [
        "{",
        "not json",
        r#"{"heartbeat_interval":"soon"}"#,
        r#"{"feature_negotiation":"yes"}"#,
    ] {
        let mut c = RawConn::connect(broker.tcp_addr());
        c.identify(body);
        c.expect_fatal("E_BAD_BODY IDENTIFY failed to decode JSON body");
    }
}

#[test]
fn identify_snappy_and_deflate_together_is_fatal() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify(r#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#);
    c.expect_fatal("E_IDENTIFY_FAILED cannot enable both deflate and snappy compression");
}

#[test]
fn identify_after_sub_is_fatal() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    c.identify("{}");
    c.expect_fatal("E_INVALID cannot IDENTIFY in current state");
}

// ---- compression (snappy, deflate) ------------------------------------------------------

/// Magic + IDENTIFY `json`; returns the socket positioned just after the (uncompressed) JSON
/// response frame, and that response.
fn negotiate_raw(addr: std::net::SocketAddr, json: &str) -> (TcpStream, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(common::MAGIC_V2).unwrap();
    s.write_all(&with_body("IDENTIFY", json.as_bytes()))
        .unwrap();
    let (kind, data) = read_frame_from(&mut s);
    assert_eq!(
        kind,
        common::FRAME_TYPE_RESPONSE,
        "{}",
        String::from_utf8_lossy(&data)
    );
    (s, serde_json::from_slice(&data).unwrap())
}

/// One frame `(type, data)` from a byte stream (plain or decompressing).
fn read_frame_from(r: &mut impl Read) -> (i32, Vec<u8>) {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).unwrap();
    let size = i32::from_be_bytes(head[..4].try_into().unwrap());
    let kind = i32::from_be_bytes(head[4..].try_into().unwrap());
    let mut data = vec![0u8; usize::try_from(size - 4).unwrap()];
    r.read_exact(&mut data).unwrap();
    (kind, data)
}

/// After the upgrade `OK`, a publish, a subscription, a delivery and a fatal error all travel
/// through the codec both ways.
fn exchange_compressed(r: &mut impl Read, w: &mut impl Write) {
    assert_eq!(read_frame_from(r), (0, b"OK".to_vec()), "upgrade OK");
    let mut cmds = with_body("PUB zt", b"squeezed");
    cmds.extend_from_slice(b"SUB zt c\nRDY 1\n");
    w.write_all(&cmds).unwrap();
    w.flush().unwrap();
    assert_eq!(read_frame_from(r), (0, b"OK".to_vec()), "PUB");
    assert_eq!(read_frame_from(r), (0, b"OK".to_vec()), "SUB");
    let (kind, msg) = read_frame_from(r);
    assert_eq!(
        (kind, &msg[26..]),
        (common::FRAME_TYPE_MESSAGE, &b"squeezed"[..])
    );
    w.write_all(b"BOGUS\n").unwrap();
    w.flush().unwrap();
    assert_eq!(
        read_frame_from(r),
        (1, b"E_INVALID invalid command BOGUS".to_vec())
    );
}

/// Raw-DEFLATE reader that hands out whatever each socket read inflates to (flate2's own
/// reader waits for more input than a sync-flushed block needs).
struct Inflater {
    s: TcpStream,
    d: flate2::Decompress,
    out: Vec<u8>,
}

impl Read for Inflater {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out.is_empty() {
            let mut raw = [0u8; 4096];
            let n = self.s.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            let mut at = 0;
            while at < n {
                self.out.reserve(64 * 1024);
                let before = self.d.total_in();
                self.d
                    .decompress_vec(&raw[at..n], &mut self.out, flate2::FlushDecompress::Sync)
                    .map_err(std::io::Error::other)?;
                at += usize::try_from(self.d.total_in() - before).unwrap();
            }
        }
        let k = buf.len().min(self.out.len());
        buf[..k].copy_from_slice(&self.out[..k]);
        self.out.drain(..k);
        Ok(k)
    }
}

#[test]
fn identify_deflate_upgrades_the_connection() {
    let broker = Broker::start(&[]);
    let (s, v) = negotiate_raw(
        broker.tcp_addr(),
        r#"{"feature_negotiation":true,"deflate":true,"deflate_level":3}"#,
    );
    assert_eq!(
        (&v["deflate"], &v["deflate_level"], &v["snappy"]),
        (&json!(true), &json!(3), &json!(false))
    );
    // Raw DEFLATE (no zlib header), sync-flushed.
    let mut r = Inflater {
        s: s.try_clone().unwrap(),
        d: flate2::Decompress::new(false),
        out: Vec::new(),
    };
    let mut w = flate2::write::DeflateEncoder::new(s, flate2::Compression::new(3));
    exchange_compressed(&mut r, &mut w);
}

#[test]
fn identify_snappy_upgrades_the_connection() {
    let broker = Broker::start(&[]);
    let (s, v) = negotiate_raw(
        broker.tcp_addr(),
        r#"{"feature_negotiation":true,"snappy":true}"#,
    );
    assert_eq!((&v["snappy"], &v["deflate"]), (&json!(true), &json!(false)));
    // The snappy framing format.
    let mut r = snap::read::FrameDecoder::new(s.try_clone().unwrap());
    let mut w = snap::write::FrameEncoder::new(s);
    exchange_compressed(&mut r, &mut w);
}

#[test]
fn compression_is_not_negotiated_when_disabled_by_flag() {
    let broker = Broker::start(&["--snappy=false", "--deflate=false"]);
    for ask in [
        r#""snappy":true"#,
        r#""deflate":true"#,
        r#""snappy":true,"deflate":true"#,
    ] {
        let (mut s, v) = negotiate_raw(
            broker.tcp_addr(),
            &format!(r#"{{"feature_negotiation":true,{ask}}}"#),
        );
        assert_eq!(
            (&v["snappy"], &v["deflate"]),
            (&json!(false), &json!(false))
        );
        s.write_all(&with_body("PUB zt", b"plain")).unwrap();
        assert_eq!(read_frame_from(&mut s), (0, b"OK".to_vec()));
    }
}

// ---- AUTH -------------------------------------------------------------------------------

#[test]
fn auth_without_auth_server_is_disabled_and_fatal() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.send(&with_body("AUTH", b"secret"));
    c.expect_fatal("E_AUTH_DISABLED AUTH disabled");
}

#[test]
fn auth_param_count_and_state_errors() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.send(&with_body("AUTH extra", b"secret"));
    c.expect_fatal("E_INVALID AUTH invalid number of parameters");

    let mut d = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    d.send(&with_body("AUTH", b"secret"));
    d.expect_fatal("E_INVALID cannot AUTH in current state");
}

// ---- PUB / SUB / message frame ----------------------------------------------------------

#[test]
fn pub_then_sub_delivers_message_with_attempts_1_and_hex_id() {
    let broker = Broker::start(&[]);
    let mut p = RawConn::connect(broker.tcp_addr());
    let before = now_ns();
    p.publish("basic", b"hello world");
    let after = now_ns();

    let mut c = RawConn::subscriber(broker.tcp_addr(), "basic", "ch");
    c.rdy(1);
    let m = c.read_msg();
    assert_eq!(m.body, b"hello world");
    assert_eq!(m.attempts, 1, "the first delivery carries attempts=1");
    assert!(
        is_lower_hex_id(&m.id),
        "message ID must be 16 lowercase hex chars, got {:?}",
        m.id_str()
    );
    // Timestamp is publish time in ns since the epoch (allow 5 s of clock slop either side).
    let slop = 5_000_000_000;
    assert!(
        m.ts >= before - slop && m.ts <= after + slop,
        "timestamp {} not within publish window [{before}, {after}]",
        m.ts
    );
    c.fin(&m.id);
    // FIN has no response: the next frame is the OK for this PUB.
    c.publish("basic", b"second");
}

#[test]
fn message_ids_are_distinct_hex_and_bodies_are_binary_safe() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "ids", "ch");
    c.rdy(100);
    let mut p = RawConn::connect(broker.tcp_addr());
    let bodies: Vec<Vec<u8>> = (0u8..50).map(|i| vec![i, b'\n', 0, 255, i]).collect();
    for b in &bodies {
        p.publish("ids", b);
    }
    let got = c.consume_fin(bodies.len());
    let mut ids: Vec<[u8; 16]> = got.iter().map(|m| m.id).collect();
    assert!(ids.iter().all(is_lower_hex_id));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), bodies.len(), "message IDs must be unique");
    let mut got_bodies: Vec<Vec<u8>> = got.into_iter().map(|m| m.body).collect();
    got_bodies.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(got_bodies, want, "every body delivered once, byte for byte");
}

#[test]
fn pub_is_allowed_in_every_state_and_answers_ok() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.publish("t", b"init state");
    c.identify("{}");
    c.expect_ok();
    c.publish("t", b"identified");
    c.sub("t", "c");
    c.publish("t", b"subscribed");
}

#[test]
fn mpub_delivers_all_in_order() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "m", "ch");
    c.rdy(10);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.mpublish("m", &[b"one", b"two", b"three"]);
    let got: Vec<Vec<u8>> = c.consume_fin(3).into_iter().map(|m| m.body).collect();
    assert_eq!(
        got,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

#[test]
fn dpub_answers_ok_and_delivers() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "d", "ch");
    c.rdy(10);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.dpub("d", 0, b"deferred zero");
    p.expect_ok();
    assert_eq!(c.read_msg().body, b"deferred zero");
}

#[test]
fn sub_twice_is_fatal() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    c.cmd("SUB t c2");
    c.expect_fatal("E_INVALID cannot SUB in current state");
}

#[test]
fn sub_accepts_crlf_line_endings() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.send(b"SUB crlf ch\r\n");
    c.expect_ok();
    c.send(b"RDY 1\r\n");
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("crlf", b"x");
    assert_eq!(c.read_msg().body, b"x");
}

#[test]
fn double_space_yields_an_empty_param() {
    // Params are split on single spaces: `SUB t  c` has channel "" (NSQ.md §1.1).
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.cmd("SUB t  c");
    c.expect_fatal(r#"E_BAD_CHANNEL SUB channel name "" is not valid"#);
}

// ---- RDY / FIN / REQ / TOUCH / CLS / NOP state rules ------------------------------------

#[test]
fn consumer_commands_before_sub_are_fatal() {
    let broker = Broker::start(&[]);
    let id = "0123456789abcdef";
    for (line, want) in [
        ("RDY 1".to_owned(), "E_INVALID cannot RDY in current state"),
        (format!("FIN {id}"), "E_INVALID cannot FIN in current state"),
        (
            format!("REQ {id} 0"),
            "E_INVALID cannot REQ in current state",
        ),
        (
            format!("TOUCH {id}"),
            "E_INVALID cannot TOUCH in current state",
        ),
        ("CLS".to_owned(), "E_INVALID cannot CLS in current state"),
    ] {
        let mut c = RawConn::connect(broker.tcp_addr());
        c.cmd(&line);
        c.expect_fatal(want);
    }
}

#[test]
fn rdy_without_count_means_one() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "r", "ch");
    c.cmd("RDY");
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("r", b"a");
    p.publish("r", b"b");
    let m = c.read_msg();
    assert_eq!(m.body, b"a");
    c.expect_no_frame(Duration::from_millis(500));
    c.fin(&m.id);
    assert_eq!(c.read_msg().body, b"b");
}

#[test]
fn nop_has_no_response() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.nop();
    c.nop();
    // The next frame is the OK for this PUB, not anything for the NOPs.
    c.publish("t", b"x");
    let mut s = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    s.nop();
    s.publish("t", b"y");
}

#[test]
fn cls_answers_close_wait_then_fin_still_works_and_delivery_stops() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "cls", "ch");
    c.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("cls", b"in flight");
    let m = c.read_msg();

    c.cmd("CLS");
    c.expect_response_eq(b"CLOSE_WAIT");
    // In the closing state FIN is accepted, RDY is ignored silently, PUB still works.
    c.fin(&m.id);
    c.rdy(5);
    p.publish("cls", b"after close");
    c.publish("cls", b"closing conn can publish");
    c.expect_no_frame(Duration::from_millis(700));

    // A fresh consumer gets what the closing one no longer takes.
    drop(c);
    let mut d = RawConn::subscriber(broker.tcp_addr(), "cls", "ch");
    d.rdy(10);
    let got: Vec<Vec<u8>> = d.consume_fin(2).into_iter().map(|m| m.body).collect();
    assert!(got.contains(&b"after close".to_vec()), "got {got:?}");
    assert!(
        !got.contains(&b"in flight".to_vec()),
        "FIN'd message redelivered: {got:?}"
    );
}

#[test]
fn fin_req_touch_of_unknown_id_are_non_fatal() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    let id = *b"0123456789abcdef";
    c.fin(&id);
    c.expect_error("E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight");
    c.req(&id, 0);
    c.expect_error("E_REQ_FAILED REQ 0123456789abcdef failed ID not in flight");
    c.touch(&id);
    c.expect_error("E_TOUCH_FAILED TOUCH 0123456789abcdef failed ID not in flight");
    // Still connected and subscribed.
    c.assert_alive("t");
    c.rdy(1);
    let m = c.read_msg();
    assert_eq!(m.body, b"alive-probe");
}

#[test]
fn fin_of_a_message_owned_by_another_client_is_non_fatal() {
    let broker = Broker::start(&[]);
    let mut a = RawConn::subscriber(broker.tcp_addr(), "own", "ch").with_label("a");
    let mut b = RawConn::subscriber(broker.tcp_addr(), "own", "ch").with_label("b");
    a.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("own", b"mine");
    let m = a.read_msg();
    let id = m.id_str();
    b.fin(&m.id);
    b.expect_error(&format!(
        "E_FIN_FAILED FIN {id} failed client does not own message"
    ));
    b.touch(&m.id);
    b.expect_error(&format!(
        "E_TOUCH_FAILED TOUCH {id} failed client does not own message"
    ));
    b.req(&m.id, 0);
    b.expect_error(&format!(
        "E_REQ_FAILED REQ {id} failed client does not own message"
    ));
    b.assert_alive("other");
    // The owner can still finish it; a second FIN is then "not in flight".
    a.fin(&m.id);
    a.fin(&m.id);
    a.expect_error(&format!("E_FIN_FAILED FIN {id} failed ID not in flight"));
}

// ---- unknown / malformed commands -------------------------------------------------------

#[test]
fn unknown_command_is_fatal() {
    let broker = Broker::start(&[]);
    for (line, want) in [
        ("ASDF", "E_INVALID invalid command ASDF"),
        ("pub t", "E_INVALID invalid command pub"),
        ("NOPE x y", "E_INVALID invalid command NOPE"),
    ] {
        let mut c = RawConn::connect(broker.tcp_addr());
        c.cmd(line);
        c.expect_fatal(want);
    }
}

#[test]
fn empty_line_is_an_invalid_command() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.send(b"\n");
    // Go formats `invalid command %s` with an empty name: note the trailing space.
    c.expect_fatal("E_INVALID invalid command ");
}

#[test]
fn frames_are_size_prefixed_with_type() {
    // Raw bytes: size counts frame type + data (NSQ.md §1.1).
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.identify("{}");
    assert_eq!(c.read_raw(10), b"\0\0\0\x06\0\0\0\0OK");
    c.cmd("FOO");
    let want = b"E_INVALID invalid command FOO";
    let mut frame = common::be_len(want.len() + 4).to_vec();
    frame.extend_from_slice(&[0, 0, 0, 1]);
    frame.extend_from_slice(want);
    assert_eq!(c.read_raw(frame.len()), frame);
    // A message frame: type 2, then ts(8) attempts(2) id(16) body.
    let mut s = RawConn::subscriber(broker.tcp_addr(), "raw", "ch");
    s.rdy(1);
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish("raw", b"xyz");
    let head = s.read_raw(8);
    assert_eq!(head[..4], common::be_len(4 + 26 + 3));
    assert_eq!(head[4..], [0, 0, 0, 2]);
    let rest = s.read_raw(29);
    assert_eq!(rest[8..10], [0, 1], "attempts=1, big-endian");
    assert_eq!(&rest[26..], b"xyz");
}
