//! TLS on the V2 protocol and HTTPS (issue 11), against the real binary with certificates the
//! test generates (`tls_support::Pki`): IDENTIFY `tls_v1` upgrades in nsqd's order (JSON, the
//! handshake, `OK` over TLS, then snappy or deflate with their own `OK`), `--tls-required`,
//! the client-auth policies, `--tls-min-version`, `/stats`' TLS fields, HTTPS for every kind
//! of endpoint and `403 TLS_REQUIRED` on plain HTTP, and unix-socket listeners.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::many_single_char_names
)]

mod common;
mod tls_support;

use common::{Broker, RawConn};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use tls_support::{read_frame, read_reply, with_body, Pki, Versions};

fn start(pki: &Pki, extra: &[&str]) -> Broker {
    let mut args = pki.server_flags();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Broker::start(&args)
}

/// Publishes on `w`, subscribes and receives on `r` (both over the same layers).
fn round_trip(r: &mut impl Read, w: &mut impl Write, topic: &str) {
    w.write_all(&with_body(&format!("PUB {topic}"), b"over tls"))
        .unwrap();
    w.flush().unwrap();
    assert_eq!(read_reply(r), (0, b"OK".to_vec()), "PUB");
    w.write_all(format!("SUB {topic} c\nRDY 1\n").as_bytes())
        .unwrap();
    w.flush().unwrap();
    assert_eq!(read_reply(r), (0, b"OK".to_vec()), "SUB");
    let (kind, data) = read_reply(r);
    assert_eq!(kind, 2, "a message frame");
    assert_eq!(&data[26..], b"over tls");
    let mut fin = b"FIN ".to_vec();
    fin.extend_from_slice(&data[10..26]);
    fin.push(b'\n');
    w.write_all(&fin).unwrap();
    w.flush().unwrap();
}

fn stats(broker: &Broker) -> Value {
    let url = format!("http://{}/stats?format=json", broker.http_addr());
    serde_json::from_str(&ureq::get(&url).call().unwrap().into_string().unwrap()).unwrap()
}

/// The one client in `/stats` (a producer that also subscribed).
fn only_client(broker: &Broker) -> Value {
    let s = stats(broker);
    s["topics"][0]["channels"][0]["clients"][0].clone()
}

#[test]
fn identify_tls_v1_upgrades_then_commands_travel_over_tls() {
    let pki = Pki::new();
    let broker = start(&pki, &[]);
    let tls = tls_support::tls_conn(broker.tcp_addr(), pki.client_config(None, Versions::Any));
    let s = tls_support::Shared::new(tls);
    round_trip(&mut s.clone(), &mut s.clone(), "t");
    let c = only_client(&broker);
    assert_eq!(c["tls"], json!(true), "{c}");
    assert_eq!(c["tls_version"], json!("TLS1.3"), "{c}");
    // nsqd names no TLS 1.3 suite: "Unknown <n>".
    assert!(
        c["tls_cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("Unknown 48"),
        "{c}"
    );
    assert_eq!(c["tls_negotiated_protocol"], json!(""), "{c}");
    assert_eq!(c["tls_negotiated_protocol_is_mutual"], json!(true), "{c}");
}

#[test]
fn tls_1_2_clients_are_served_and_shown_as_such() {
    let pki = Pki::new();
    let broker = start(&pki, &["--tls-min-version=tls1.0"]);
    let config = pki.client_config(None, Versions::Only12);
    let s = tls_support::Shared::new(tls_support::tls_conn(broker.tcp_addr(), config));
    round_trip(&mut s.clone(), &mut s.clone(), "t12");
    assert_eq!(only_client(&broker)["tls_version"], json!("TLS1.2"));
}

#[test]
fn tls_min_version_1_3_refuses_tls_1_2() {
    let pki = Pki::new();
    let broker = start(&pki, &["--tls-min-version=tls1.3"]);
    let (s, v) = tls_support::identify(
        broker.tcp_addr(),
        r#"{"feature_negotiation":true,"tls_v1":true}"#,
    );
    assert_eq!(v["tls_v1"], json!(true));
    assert!(tls_support::handshake(s, pki.client_config(None, Versions::Only12)).is_err());
    // A TLS 1.3 client is fine.
    tls_support::tls_conn(broker.tcp_addr(), pki.client_config(None, Versions::Any));
}

#[test]
fn tls_then_snappy_each_with_its_own_ok() {
    let pki = Pki::new();
    let broker = start(&pki, &[]);
    let (s, v) = tls_support::identify(
        broker.tcp_addr(),
        r#"{"feature_negotiation":true,"tls_v1":true,"snappy":true}"#,
    );
    assert_eq!((&v["tls_v1"], &v["snappy"]), (&json!(true), &json!(true)));
    let mut tls = tls_support::handshake(s, pki.client_config(None, Versions::Any)).unwrap();
    assert_eq!(read_frame(&mut tls).unwrap(), (0, b"OK".to_vec()), "TLS OK");
    let shared = tls_support::Shared::new(tls);
    let mut r = snap::read::FrameDecoder::new(shared.clone());
    let mut w = snap::write::FrameEncoder::new(shared);
    assert_eq!(
        read_frame(&mut r).unwrap(),
        (0, b"OK".to_vec()),
        "snappy OK"
    );
    round_trip(&mut r, &mut w, "ts");
    let c = only_client(&broker);
    assert_eq!((&c["tls"], &c["snappy"]), (&json!(true), &json!(true)));
}

#[test]
fn tls_then_deflate_each_with_its_own_ok() {
    let pki = Pki::new();
    let broker = start(&pki, &[]);
    let (s, v) = tls_support::identify(
        broker.tcp_addr(),
        r#"{"feature_negotiation":true,"tls_v1":true,"deflate":true,"deflate_level":2}"#,
    );
    assert_eq!((&v["tls_v1"], &v["deflate"]), (&json!(true), &json!(true)));
    let mut tls = tls_support::handshake(s, pki.client_config(None, Versions::Any)).unwrap();
    assert_eq!(read_frame(&mut tls).unwrap(), (0, b"OK".to_vec()), "TLS OK");
    let shared = tls_support::Shared::new(tls);
    let mut r = tls_support::Inflater::new(shared.clone());
    let mut w = flate2::write::DeflateEncoder::new(shared, flate2::Compression::new(2));
    assert_eq!(
        read_frame(&mut r).unwrap(),
        (0, b"OK".to_vec()),
        "deflate OK"
    );
    round_trip(&mut r, &mut w, "td");
    let c = only_client(&broker);
    assert_eq!((&c["tls"], &c["deflate"]), (&json!(true), &json!(true)));
}

#[test]
fn tls_required_refuses_everything_but_identify_before_the_upgrade() {
    let pki = Pki::new();
    for policy in ["true", "tcp-https"] {
        let broker = start(&pki, &[&format!("--tls-required={policy}")]);
        let mut plain = RawConn::connect(broker.tcp_addr());
        plain.pub_("t", b"x");
        plain.expect_fatal("E_INVALID cannot PUB in current state (TLS required)");
        // IDENTIFY is allowed; what follows it in plain text is not.
        let mut c = RawConn::connect(broker.tcp_addr());
        c.identify(r#"{"feature_negotiation":true}"#);
        c.expect_response();
        c.cmd("NOP");
        c.expect_fatal("E_INVALID cannot NOP in current state (TLS required)");
        // Over TLS everything works.
        let tls = tls_support::tls_conn(broker.tcp_addr(), pki.client_config(None, Versions::Any));
        let s = tls_support::Shared::new(tls);
        round_trip(&mut s.clone(), &mut s.clone(), "req");
    }
}

#[test]
fn require_verify_accepts_a_ca_signed_client_and_refuses_others() {
    let pki = Pki::new();
    let ca = format!("--tls-root-ca-file={}", pki.ca.cert_pem.display());
    let broker = start(&pki, &["--tls-client-auth-policy=require-verify", &ca]);
    let good = pki.client_config(Some(&pki.client), Versions::Any);
    let s = tls_support::Shared::new(tls_support::tls_conn(broker.tcp_addr(), good));
    round_trip(&mut s.clone(), &mut s.clone(), "rv");
    for (what, cert) in [("rogue", Some(&pki.rogue_client)), ("none", None)] {
        let (sock, _) = tls_support::identify(
            broker.tcp_addr(),
            r#"{"feature_negotiation":true,"tls_v1":true}"#,
        );
        let refused = match tls_support::handshake(sock, pki.client_config(cert, Versions::Any)) {
            Err(_) => true,
            // TLS 1.3: the server's verdict on the client's certificate comes after the
            // client's side of the handshake, on the first read.
            Ok(mut tls) => read_frame(&mut tls).is_err(),
        };
        assert!(refused, "{what} client certificate was accepted");
    }
}

#[test]
fn require_takes_any_client_certificate_but_not_none() {
    let pki = Pki::new();
    let broker = start(&pki, &["--tls-client-auth-policy=require"]);
    let rogue = pki.client_config(Some(&pki.rogue_client), Versions::Any);
    let s = tls_support::Shared::new(tls_support::tls_conn(broker.tcp_addr(), rogue));
    round_trip(&mut s.clone(), &mut s.clone(), "any");
    let (sock, _) = tls_support::identify(
        broker.tcp_addr(),
        r#"{"feature_negotiation":true,"tls_v1":true}"#,
    );
    let refused = match tls_support::handshake(sock, pki.client_config(None, Versions::Any)) {
        Err(_) => true,
        Ok(mut tls) => read_frame(&mut tls).is_err(),
    };
    assert!(refused, "a client without a certificate was accepted");
    // The policy forces --tls-required (nsqd).
    let mut plain = RawConn::connect(broker.tcp_addr());
    plain.cmd("NOP");
    plain.expect_fatal("E_INVALID cannot NOP in current state (TLS required)");
}

#[test]
fn https_serves_every_kind_of_endpoint() {
    let pki = Pki::new();
    let broker = start(&pki, &[]);
    let addr = broker.https_addr();
    let config = pki.client_config(None, Versions::Any);
    let call = |method: &str, path: &str, body: &[u8]| {
        tls_support::https_request(addr, config.clone(), method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };
    assert_eq!(call("GET", "/ping", b""), (200, "OK".to_owned()));
    assert_eq!(call("POST", "/pub?topic=h", b"one"), (200, "OK".to_owned()));
    assert_eq!(
        call("POST", "/mpub?topic=h", b"two\nthree"),
        (200, "OK".to_owned())
    );
    assert_eq!(call("POST", "/topic/create?topic=made", b"").0, 200);
    assert_eq!(
        call("POST", "/channel/create?topic=made&channel=c", b"").0,
        200
    );
    assert_eq!(call("POST", "/topic/pause?topic=made", b"").0, 200);
    assert_eq!(
        call("GET", "/config/max_msg_size", b""),
        (200, "1048576".to_owned())
    );
    let (status, info) = call("GET", "/info", b"");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["tcp_port"], json!(broker.tcp_addr().port()));
    let (status, s) = call("GET", "/stats?format=json", b"");
    assert_eq!(status, 200);
    let s: Value = serde_json::from_str(&s).unwrap();
    let topics = s["topics"].as_array().unwrap();
    let h = topics
        .iter()
        .find(|t| t["topic_name"] == json!("h"))
        .unwrap();
    assert_eq!(h["message_count"], json!(3));
    assert_eq!(call("GET", "/nowhere", b"").0, 404);
    // Plain HTTP keeps working without --tls-required.
    let url = format!("http://{}/ping", broker.http_addr());
    assert_eq!(ureq::get(&url).call().unwrap().status(), 200);
}

#[test]
fn https_applies_the_client_auth_policy() {
    let pki = Pki::new();
    let ca = format!("--tls-root-ca-file={}", pki.ca.cert_pem.display());
    let broker = start(&pki, &["--tls-client-auth-policy=require-verify", &ca]);
    let good = pki.client_config(Some(&pki.client), Versions::Any);
    let got = tls_support::https_request(broker.https_addr(), good, "GET", "/ping", b"");
    assert_eq!(got.unwrap(), (200, "OK".to_owned()));
    let rogue = pki.client_config(Some(&pki.rogue_client), Versions::Any);
    assert!(tls_support::https_request(broker.https_addr(), rogue, "GET", "/ping", b"").is_err());
}

/// A raw HTTP/1.1 GET on `stream`: the whole response.
fn raw_get(mut stream: impl Read + Write, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (status, body) = tls_support::parse_http(&raw);
    (status, body, text)
}

#[test]
fn plain_http_is_403_tls_required_when_tls_is_required() {
    let pki = Pki::new();
    let broker = start(&pki, &["--tls-required=true"]);
    for path in ["/ping", "/stats", "/pub?topic=t"] {
        let s = TcpStream::connect(broker.http_addr()).unwrap();
        let (status, body, raw) = raw_get(s, path);
        assert_eq!(status, 403, "{raw}");
        assert_eq!(
            body,
            format!(
                r#"{{"message": "TLS_REQUIRED", "https_port": {}}}"#,
                broker.https_addr().port()
            )
        );
        assert!(
            raw.contains("X-NSQ-Content-Type: nsq; version=1.0")
                || raw
                    .to_ascii_lowercase()
                    .contains("x-nsq-content-type: nsq; version=1.0"),
            "{raw}"
        );
    }
    let config = pki.client_config(None, Versions::Any);
    let got = tls_support::https_request(broker.https_addr(), config, "GET", "/ping", b"");
    assert_eq!(got.unwrap(), (200, "OK".to_owned()));
    // tcp-https: TLS on TCP only, plain HTTP keeps working.
    let broker = start(&pki, &["--tls-required=tcp-https"]);
    let (status, body, _) = raw_get(TcpStream::connect(broker.http_addr()).unwrap(), "/ping");
    assert_eq!((status, body.as_str()), (200, "OK"));
}

#[test]
fn unix_socket_listeners_for_tcp_http_and_https() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let tcp = dir.path().join("nsqd.sock");
    let http = dir.path().join("http.sock");
    let https = dir.path().join("https.sock");
    let mut broker = start(
        &pki,
        &[
            &format!("--tcp-address={}", tcp.display()),
            &format!("--http-address={}", http.display()),
            &format!("--https-address={}", https.display()),
        ],
    );
    // The protocol over the socket.
    let mut s = std::os::unix::net::UnixStream::connect(&tcp).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(b"  V2").unwrap();
    s.write_all(&with_body("PUB u", b"via unix")).unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), (0, b"OK".to_vec()));
    // HTTP over its socket: /info has no ports (-1), /stats sees the message.
    let (status, body, _) = raw_get(
        std::os::unix::net::UnixStream::connect(&http).unwrap(),
        "/info",
    );
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&info["tcp_port"], &info["http_port"]),
        (&json!(-1), &json!(-1))
    );
    let (_, body, _) = raw_get(
        std::os::unix::net::UnixStream::connect(&http).unwrap(),
        "/stats?format=json",
    );
    assert!(body.contains(r#""topic_name":"u""#), "{body}");
    // HTTPS over its socket.
    let tls = https_over_unix(&https, &pki);
    let (status, body, _) = raw_get(tls, "/ping");
    assert_eq!((status, body.as_str()), (200, "OK"));
    broker.stop();
    for path in [&tcp, &http, &https] {
        assert!(!path.exists(), "{} left behind", path.display());
    }
}

/// A TLS client over a unix socket (HTTPS on `--https-address=/path`).
fn https_over_unix(
    path: &std::path::Path,
    pki: &Pki,
) -> rustls::StreamOwned<rustls::ClientConnection, std::os::unix::net::UnixStream> {
    let sock = std::os::unix::net::UnixStream::connect(path).unwrap();
    sock.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(None, Versions::Any), name).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn an_empty_address_disables_the_listener() {
    let pki = Pki::new();
    let broker = start(&pki, &["--https-address=", "--http-address="]);
    let logs = broker.logs();
    assert!(
        !logs.contains("HTTP: listening") && !logs.contains("HTTPS: listening"),
        "{logs}"
    );
    let mut c = RawConn::connect(broker.tcp_addr());
    c.publish("still", b"works");
}
