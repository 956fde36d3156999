//! Real NSQ client libraries against the `ringsq` binary: pynsq (Python) and nsqjs (Node) over
//! TCP (plain, deflate, and TLS + AUTH against a test auth server with `--tls-required`), gnsq's
//! `NsqdHTTPClient` (Python, gevent) over the HTTP API.
//!
//! Each test starts a broker, runs the client's script from `tests/clients/` with the broker's
//! address, prints the script's output, and asserts exit status 0 (a round-trip script exits 0
//! only if every published message was acknowledged and consumed; the gnsq script only if every
//! HTTP call and `/stats` check passed). Missing client dependencies are a failure with
//! instructions, never a silent skip: run `.ci/install-clients.sh` (called by `.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth_support;
mod common;
mod tls_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Broker;

const MESSAGES: usize = 1000;
/// The scripts enforce this themselves; the harness waits a little longer before giving up.
const SCRIPT_TIMEOUT_SECS: u64 = 90;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn require(ok: bool, what: &str) {
    assert!(
        ok,
        "{what} is not installed; run `.ci/install-clients.sh` (it is part of `.ci/run`) \
         to install the real NSQ clients these tests drive"
    );
}

/// Run `program args…` and fail with its output unless it exits 0 within the timeout.
fn run_client(broker: &Broker, name: &str, program: &str, args: &[String]) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {program}: {e} (run `.ci/install-clients.sh`)"));
    let deadline = std::time::Instant::now() + Duration::from_secs(SCRIPT_TIMEOUT_SECS + 30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for client") {
            break Some(s);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("collect client output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {name} stdout ---\n{stdout}\n--- {name} stderr ---\n{stderr}");
    match status {
        Some(s) if s.success() => {}
        other => panic!(
            "{name} client script failed ({other:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n\
             --- ringsq output ---\n{}",
            broker.logs()
        ),
    }
}

fn script_args(broker: &Broker, topic: &str) -> Vec<String> {
    vec![
        "--tcp".into(),
        broker.tcp_addr().to_string(),
        "--count".into(),
        MESSAGES.to_string(),
        "--topic".into(),
        topic.into(),
        "--timeout".into(),
        SCRIPT_TIMEOUT_SECS.to_string(),
    ]
}

/// Runs `pynsq_roundtrip.py` on `topic` with `extra` arguments against `broker`.
fn pynsq_round_trip(broker: &Broker, name: &str, topic: &str, extra: &[&str]) {
    let have_pynsq = Command::new("python3")
        .args(["-c", "import nsq, tornado"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        have_pynsq,
        "python3 with pynsq + tornado (tests/clients/requirements.txt)",
    );

    let script = clients_dir().join("pynsq_roundtrip.py");
    let mut args = vec![script.display().to_string()];
    args.extend(script_args(broker, topic));
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    run_client(broker, name, "python3", &args);
}

#[test]
fn pynsq_writer_and_reader_round_trip() {
    let broker = Broker::start(&[]);
    pynsq_round_trip(&broker, "pynsq", "pynsq_roundtrip", &[]);
}

#[test]
fn pynsq_round_trip_over_deflate() {
    let broker = Broker::start(&[]);
    pynsq_round_trip(&broker, "pynsq (deflate)", "pynsq_deflate", &["--deflate"]);
}

/// A broker that requires TLS and AUTH (every topic granted to the secret `client-secret`),
/// with the PKI and auth server it uses.
fn secure_broker() -> (Broker, tls_support::Pki, auth_support::AuthServer) {
    let pki = tls_support::Pki::new();
    let grants = serde_json::json!([
        {"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}
    ]);
    let auth = auth_support::AuthServer::start(Box::new(move |params, _| {
        if params.get("secret").map(String::as_str) == Some("client-secret") {
            auth_support::grant(3600, &grants)
        } else {
            auth_support::grant(3600, &serde_json::json!([]))
        }
    }));
    let mut args = pki.server_flags();
    args.extend(["--tls-required=true".to_owned(), auth.flag()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Broker::start(&args), pki, auth)
}

/// Every auth query of a secure run came over TLS with the client's secret.
fn assert_auth_over_tls(auth: &auth_support::AuthServer) {
    let queries = auth.queries();
    assert!(
        queries.len() >= 2,
        "reader and writer both AUTH: {queries:?}"
    );
    for q in &queries {
        assert_eq!(
            (q["tls"].as_str(), q["secret"].as_str()),
            ("true", "client-secret")
        );
    }
}

#[test]
fn pynsq_round_trip_over_tls_with_auth() {
    let (broker, pki, auth) = secure_broker();
    let ca = pki.ca.cert_pem.display().to_string();
    pynsq_round_trip(
        &broker,
        "pynsq (tls + auth)",
        "pynsq_tls",
        &["--tls-ca", &ca, "--auth-secret", "client-secret"],
    );
    assert_auth_over_tls(&auth);
}

#[test]
fn gnsq_http_client_publish_admin_and_stats() {
    let have_gnsq = Command::new("python3")
        .args(["-c", "import gnsq, gevent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        have_gnsq,
        "python3 with gnsq + gevent (tests/clients/requirements.txt)",
    );

    let broker = Broker::start(&[]);
    let script = clients_dir().join("gnsq_http.py");
    let args = vec![
        script.display().to_string(),
        "--http".into(),
        broker.http_addr().to_string(),
        "--topic".into(),
        "gnsq_http".into(),
        "--timeout".into(),
        SCRIPT_TIMEOUT_SECS.to_string(),
    ];
    run_client(&broker, "gnsq", "python3", &args);
}

#[test]
fn nsqjs_writer_and_reader_round_trip() {
    let broker = Broker::start(&[]);
    nsqjs_round_trip(&broker, "nsqjs", "nsqjs_roundtrip", &[]);
}

fn nsqjs_round_trip(broker: &Broker, name: &str, topic: &str, extra: &[&str]) {
    let have_nsqjs = clients_dir()
        .join("node_modules/nsqjs/package.json")
        .is_file();
    require(have_nsqjs, "nsqjs (tests/clients/node_modules)");
    let script = clients_dir().join("nsqjs_roundtrip.js");
    let mut args = vec![script.display().to_string()];
    args.extend(script_args(broker, topic));
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    run_client(broker, name, "node", &args);
}

#[test]
fn nsqjs_round_trip_over_tls_with_auth() {
    let (broker, pki, auth) = secure_broker();
    let ca = pki.ca.cert_pem.display().to_string();
    nsqjs_round_trip(
        &broker,
        "nsqjs (tls + auth)",
        "nsqjs_tls",
        &["--tls-ca", &ca, "--auth-secret", "client-secret"],
    );
    assert_auth_over_tls(&auth);
}
