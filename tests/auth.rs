//! AUTH against an auth server (issue 11, NSQ.md §1.2/§1.4), against the real binary and a
//! scripted auth server in the test (a blocking HTTP/1.1 listener on loopback that records
//! every query): what is allowed and denied, every error string, the TTL re-ask, the query's
//! parameters (with TLS and a client certificate too), `/stats`' auth fields, and an auth
//! server that hangs or is down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth_support;
mod common;
mod tls_support;

use auth_support::{grant, standard_grants, Answer, AuthServer};
use common::{with_body, Broker, Frame, RawConn};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

fn authed(addr: SocketAddr, secret: &str) -> RawConn {
    let mut c = RawConn::connect(addr);
    c.send(&with_body("AUTH", secret.as_bytes()));
    let answer: Value = serde_json::from_slice(&c.expect_response()).unwrap();
    assert_eq!(
        answer,
        json!({"identity":"alice","identity_url":"https://id.example/alice","permission_count":2})
    );
    c
}

#[test]
fn auth_is_required_first_and_announced_by_identify() {
    let server = AuthServer::start(Box::new(|_, _| grant(3600, &standard_grants())));
    let broker = Broker::start(&[&server.flag()]);
    let addr = broker.tcp_addr();
    let mut c = RawConn::connect(addr);
    let v = c.identify_negotiate(r#"{"feature_negotiation":true}"#);
    assert_eq!(v["auth_required"], json!(true));
    for (cmd, bytes) in [
        ("PUB", with_body("PUB allowed", b"x")),
        ("DPUB", with_body("DPUB allowed 10", b"x")),
        ("SUB", b"SUB allowed c\n".to_vec()),
        // MPUB is checked at its line, before a body (this one is cut short).
        ("MPUB", b"MPUB allowed\n\x00\x00".to_vec()),
    ] {
        let mut c = RawConn::connect(addr);
        c.send(&bytes);
        c.expect_fatal(&format!("E_AUTH_FIRST AUTH required before {cmd}"));
    }
    assert!(server.queries().is_empty());
}

#[test]
fn auth_allows_exactly_what_the_server_grants() {
    let server = AuthServer::start(Box::new(|_, _| grant(3600, &standard_grants())));
    let broker = Broker::start(&[&server.flag()]);
    let addr = broker.tcp_addr();
    let mut p = authed(addr, "s3cret");
    p.publish("allowed", b"granted");
    p.mpublish("allowed", &[b"m1", b"m2"]);
    let mut sub = authed(addr, "s3cret");
    sub.sub("allowed", "c");
    sub.rdy(10);
    assert_eq!(sub.read_msg().body, b"granted");
    // Denials close the connection with nsqd's %q quoting.
    p.pub_("other", b"x");
    p.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for PUB on "other" """#);
    let mut s2 = authed(addr, "s3cret");
    s2.cmd("SUB allowed d");
    s2.expect_fatal(r#"E_UNAUTHORIZED AUTH failed for SUB on "allowed" "d""#);
    let mut again = authed(addr, "s3cret");
    again.send(&with_body("AUTH", b"s3cret"));
    again.expect_fatal("E_INVALID AUTH already set");
    // What the server was asked.
    let q = &server.queries()[0];
    assert_eq!(q["path"], "/auth");
    assert_eq!(
        (
            q["secret"].as_str(),
            q["remote_ip"].as_str(),
            q["tls"].as_str()
        ),
        ("s3cret", "127.0.0.1", "false")
    );
    assert_eq!(q["common_name"], "");
    // /stats shows who the client is.
    let url = format!("http://{}/stats?format=json", broker.http_addr());
    let stats: Value =
        serde_json::from_str(&ureq::get(&url).call().unwrap().into_string().unwrap()).unwrap();
    let client = &stats["topics"][0]["channels"][0]["clients"][0];
    assert_eq!(
        (
            &client["authed"],
            &client["auth_identity"],
            &client["auth_identity_url"]
        ),
        (
            &json!(true),
            &json!("alice"),
            &json!("https://id.example/alice")
        )
    );
}

#[test]
fn every_auth_error_string() {
    let server = AuthServer::start(Box::new(|params, _| {
        match params.get("secret").map(String::as_str) {
            Some("none") => grant(60, &json!([])),
            Some("forbidden") => Answer::Reply(403, r#"{"message":"NO"}"#.to_owned()),
            Some("garbage") => Answer::Reply(200, "not json".to_owned()),
            Some("bad-permission") => grant(
                60,
                &json!([{"topic":".*","channels":[".*"],"permissions":["admin"]}]),
            ),
            Some("bad-regex") => grant(60, &json!([{"topic":"(","channels":[],"permissions":[]}])),
            Some("zero-ttl") => grant(0, &standard_grants()),
            _ => grant(60, &standard_grants()),
        }
    }));
    let broker = Broker::start(&[&server.flag()]);
    let addr = broker.tcp_addr();
    for (secret, want) in [
        ("none", "E_UNAUTHORIZED AUTH no authorizations found"),
        ("forbidden", "E_AUTH_FAILED AUTH failed"),
        ("garbage", "E_AUTH_FAILED AUTH failed"),
        ("bad-permission", "E_AUTH_FAILED AUTH failed"),
        ("bad-regex", "E_AUTH_FAILED AUTH failed"),
        ("zero-ttl", "E_AUTH_FAILED AUTH failed"),
    ] {
        let mut c = RawConn::connect(addr).with_label(secret);
        c.send(&with_body("AUTH", secret.as_bytes()));
        c.expect_fatal(want);
    }
    let mut c = RawConn::connect(addr);
    c.send(&with_body("AUTH x", b"s"));
    c.expect_fatal("E_INVALID AUTH invalid number of parameters");
    // Without --auth-http-address AUTH is disabled.
    let plain = Broker::start(&[]);
    let mut c = RawConn::connect(plain.tcp_addr());
    c.send(&with_body("AUTH", b"s"));
    c.expect_fatal("E_AUTH_DISABLED AUTH disabled");
}

#[test]
fn an_auth_server_that_is_down_fails_auth() {
    // A port nobody listens on (bound, then closed).
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let broker = Broker::start(&[&format!("--auth-http-address={down}")]);
    let mut c = RawConn::connect(broker.tcp_addr());
    c.send(&with_body("AUTH", b"s"));
    c.expect_fatal("E_AUTH_FAILED AUTH failed");
}

#[test]
fn a_hanging_auth_server_is_bounded_and_stalls_no_one_else() {
    let server = AuthServer::start(Box::new(|_, _| Answer::Hang));
    let broker = Broker::start(&[&server.flag(), "--http-client-request-timeout=1s"]);
    let addr = broker.tcp_addr();
    let mut waiting = RawConn::connect(addr).with_label("waiting-for-auth");
    let t0 = Instant::now();
    waiting.send(&with_body("AUTH", b"s"));
    common::wait_for(Duration::from_secs(5), "the auth query to be made", || {
        (!server.queries().is_empty()).then_some(())
    });
    // Meanwhile another client is served (AUTH is required: it gets its error at once).
    let mut other = RawConn::connect(addr).with_label("other");
    let t1 = Instant::now();
    other.pub_("t", b"x");
    other.expect_fatal("E_AUTH_FIRST AUTH required before PUB");
    let other_took = t1.elapsed();
    waiting.expect_fatal("E_AUTH_FAILED AUTH failed");
    let took = t0.elapsed();
    eprintln!("hanging auth server: AUTH failed after {took:?}; another client answered in {other_took:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(other_took < Duration::from_millis(500), "{other_took:?}");
}

#[test]
fn an_expired_ttl_is_asked_again() {
    // The first answer allows `allowed` for 1 s; later ones allow nothing on it.
    let server = AuthServer::start(Box::new(|_, n| {
        if n == 1 {
            grant(1, &standard_grants())
        } else {
            grant(
                1,
                &json!([{"topic":"^elsewhere$","channels":[".*"],"permissions":["publish"]}]),
            )
        }
    }));
    let broker = Broker::start(&[&server.flag()]);
    let mut c = authed(broker.tcp_addr(), "s");
    let t0 = Instant::now();
    let err = loop {
        c.pub_("allowed", b"x");
        match c.next_reply() {
            Frame::Response(ok) if ok == b"OK" => {}
            Frame::Error(e) => break e,
            other => panic!("{other:?}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the TTL was never re-asked"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(err, r#"E_UNAUTHORIZED AUTH failed for PUB on "allowed" """#);
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(server.queries().len(), 2);
}

#[test]
fn auth_over_tls_sends_the_client_certificate_common_name() {
    let server = AuthServer::start(Box::new(|_, _| grant(3600, &standard_grants())));
    let pki = tls_support::Pki::new();
    let ca = format!("--tls-root-ca-file={}", pki.ca.cert_pem.display());
    let mut args = pki.server_flags();
    args.extend([
        server.flag(),
        "--tls-client-auth-policy=require-verify".to_owned(),
        ca,
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args);
    let config = pki.client_config(Some(&pki.client), tls_support::Versions::Any);
    let mut tls = tls_support::tls_conn(broker.tcp_addr(), config);
    tls.write_all(&with_body("AUTH", b"tls-secret")).unwrap();
    let (kind, body) = tls_support::read_reply(&mut tls);
    assert_eq!(kind, 0, "{}", String::from_utf8_lossy(&body));
    tls.write_all(&with_body("PUB allowed", b"x")).unwrap();
    assert_eq!(tls_support::read_reply(&mut tls), (0, b"OK".to_vec()));
    let q = &server.queries()[0];
    assert_eq!(
        (
            q["tls"].as_str(),
            q["common_name"].as_str(),
            q["secret"].as_str()
        ),
        ("true", tls_support::CLIENT_CN, "tls-secret")
    );
}
