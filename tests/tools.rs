//! The operator's toolbox against the real binary: `ringsq check` and `ringsq dump` on data
//! directories a real broker wrote (then damaged by hand), `--log-format=json`, and the
//! systemd unit in `contrib/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{http_post, wait_for, Broker, Msg, RawConn};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

/// Small segments, so a few dozen messages fill several; every message in the log when `OK`.
const BROKER_ARGS: &[&str] = &["--max-bytes-per-file", "1024", "--mem-queue-size", "0"];
/// Messages published to `alpha` (MPUB) and to `beta`.
const ALPHA: usize = 30;
const BETA: usize = 5;
/// Messages of `alpha` the consumer of `alpha/work` takes: it finishes one, requeues one an hour
/// away (deferred) and holds the others (in flight) when the broker stops.
const TAKEN: usize = 4;
const HELD: usize = TAKEN - 2;

fn ringsq(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args(args)
        .arg("--data-path")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run ringsq")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `check --json`: the exit code and the report.
fn check_json(data: &Path) -> (i32, serde_json::Value) {
    let out = ringsq(&["check", "--json"], data);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e}): {}", text(&out.stdout)));
    (out.status.code().unwrap_or(-1), report)
}

fn alpha_body(i: usize) -> Vec<u8> {
    format!("alpha-{i:03}-{}", "x".repeat(40)).into_bytes()
}

fn segments(data: &Path, topic: &str) -> Vec<PathBuf> {
    let dir = data.join(format!("ringsq/topics/{topic}.topic/log"));
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

/// A stopped broker's data directory: topic `alpha` with channel `work` (see [`TAKEN`]) and
/// channel `spare` (took nothing); topic `beta` with channel `idle`. Returns the broker (it
/// owns the directory) and the messages `work` received.
fn stopped_data_dir() -> (Broker, Vec<Msg>) {
    let mut broker = Broker::start(BROKER_ARGS);
    let mut work = RawConn::subscriber(broker.tcp_addr(), "alpha", "work");
    let spare = RawConn::subscriber(broker.tcp_addr(), "alpha", "spare");
    let idle = RawConn::subscriber(broker.tcp_addr(), "beta", "idle");
    let mut p = RawConn::connect(broker.tcp_addr());
    let bodies: Vec<Vec<u8>> = (0..ALPHA).map(alpha_body).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    p.mpublish("alpha", &refs);
    for i in 0..BETA {
        p.publish("beta", format!("beta-{i}").as_bytes());
    }
    work.rdy(u64::try_from(TAKEN).unwrap());
    let got: Vec<Msg> = (0..TAKEN).map(|_| work.read_msg()).collect();
    // RDY is a window: without RDY 0 the FIN would make room for one more message.
    work.rdy(0);
    work.fin(&got[0].id);
    work.req(&got[1].id, 3_000_000);
    // FIN and REQ have no reply: wait for the broker's own count of what is in flight.
    wait_for(
        Duration::from_secs(10),
        "the FIN and REQ to be counted",
        || in_flight(&broker, "alpha", "work").filter(|&n| n == HELD),
    );
    drop((work, spare, idle, p));
    broker.stop();
    (broker, got)
}

/// A channel's `in_flight_count` from `/stats`.
fn in_flight(broker: &Broker, topic: &str, channel: &str) -> Option<usize> {
    let url = format!(
        "http://{}/stats?format=json&topic={topic}",
        broker.http_addr()
    );
    let body = ureq::get(&url).call().ok()?.into_string().ok()?;
    let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
    let topics = stats.get("topics")?.as_array()?;
    let channels = topics
        .iter()
        .find(|t| t["topic_name"] == topic)?
        .get("channels")?
        .as_array()?;
    let c = channels.iter().find(|c| c["channel_name"] == channel)?;
    usize::try_from(c["in_flight_count"].as_u64()?).ok()
}

fn topic<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no topic {name} in {report:#}"))
}

fn channel<'a>(topic: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    topic["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no channel {name} in {topic:#}"))
}

/// The cells of the text table row whose first cell is `first`.
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|c| c == first))
        .unwrap_or_else(|| panic!("no row {first} in\n{table}"))
}

#[test]
fn check_passes_on_a_clean_data_dir_and_json_says_the_same() {
    let (broker, _) = stopped_data_dir();
    let data = broker.data_path();
    assert!(
        segments(data, "alpha").len() >= 3,
        "small segments: several"
    );

    let out = ringsq(&["check"], data);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}\n{}", text(&out.stderr));
    assert!(table.contains("\nOK: 2 topic(s), 3 channel(s)"), "{table}");

    let (code, report) = check_json(data);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["damaged"], 0);
    let alpha = topic(&report, "alpha");
    assert_eq!(alpha["messages"], ALPHA, "{alpha:#}");
    assert_eq!(topic(&report, "beta")["messages"], BETA);
    let oldest = alpha["oldest_timestamp_ns"].as_i64().unwrap();
    let newest = alpha["newest_timestamp_ns"].as_i64().unwrap();
    assert!(oldest > 0 && oldest <= newest, "{alpha:#}");

    // `work`: what its consumer held when the broker stopped, and the requeued one (it may
    // have been parked: a deferral past the next sync point is copied to the park log).
    let work = channel(alpha, "work");
    assert_eq!(work["outstanding"], HELD + 1, "{work:#}");
    assert_eq!(work["deferred"], 1, "{work:#}");
    let sources =
        work["outstanding_topic"].as_u64().unwrap() + work["outstanding_park"].as_u64().unwrap();
    assert_eq!(sources, u64::try_from(HELD + 1).unwrap());
    assert_eq!(work["behind"], ALPHA - TAKEN, "{work:#}");
    let spare = channel(alpha, "spare");
    assert_eq!(
        (&spare["behind"], &spare["outstanding"]),
        (&ALPHA.into(), &0.into())
    );
    let idle = channel(topic(&report, "beta"), "idle");
    assert_eq!(
        (&idle["behind"], &idle["outstanding"]),
        (&BETA.into(), &0.into())
    );

    // The text tables carry the same numbers.
    for (name, t) in [("alpha", alpha), ("beta", topic(&report, "beta"))] {
        let cells = row(&table, name);
        assert_eq!(cells[1], t["segments"].to_string(), "{table}");
        assert_eq!(cells[2], t["messages"].to_string(), "{table}");
        assert_eq!(cells[3], t["bytes"].to_string(), "{table}");
    }
    let cells = row(&table, "alpha/work");
    for (i, key) in [(3, "behind"), (4, "outstanding"), (7, "deferred")] {
        assert_eq!(cells[i], work[key].to_string(), "{key}: {table}");
    }
}

/// A byte flipped inside a record of a sealed segment: `check` names the segment and the
/// record's offset; `dump` skips that message with a note on stderr and prints the others.
#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named_and_skipped() {
    let (broker, _) = stopped_data_dir();
    let data = broker.data_path();
    let oldest = segments(data, "alpha")[0].clone();
    let mut bytes = std::fs::read(&oldest).unwrap();
    // Segment header 32 bytes, record header 16: byte 60 is inside the first message.
    bytes[60] ^= 0x01;
    std::fs::write(&oldest, &bytes).unwrap();

    let out = ringsq(&["check"], data);
    let report_text = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report_text}");
    let line = report_text
        .lines()
        .find(|l| l.starts_with("DAMAGED: /"))
        .unwrap_or_else(|| panic!("no damage line:\n{report_text}"));
    assert!(
        line.contains(&format!("{} at byte 32", oldest.display())),
        "{line}"
    );

    let (code, report) = check_json(data);
    assert_eq!(code, 1);
    let problems = report["problems"].as_array().unwrap();
    let damaged: Vec<_> = problems
        .iter()
        .filter(|p| p["severity"] == "damage")
        .collect();
    assert_eq!(damaged.len(), 1, "{problems:#?}");
    assert_eq!(damaged[0]["file"], oldest.display().to_string());
    assert_eq!(damaged[0]["offset"], 32);
    assert_eq!(
        topic(&report, "alpha")["messages"],
        ALPHA - 1,
        "one message fewer verifies"
    );

    let out = ringsq(&["dump", "--topic", "alpha"], data);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains(&oldest.display().to_string()),
        "{stderr}"
    );
    let lines = dump_lines(&out);
    let bodies: Vec<Vec<u8>> = lines.iter().map(body_of).collect();
    let want: Vec<Vec<u8>> = (1..ALPHA).map(alpha_body).collect();
    assert_eq!(bodies, want, "every message but the damaged one, in order");
}

#[test]
fn a_truncated_channel_state_is_named() {
    let (broker, _) = stopped_data_dir();
    let data = broker.data_path();
    let state = data.join("ringsq/topics/beta.topic/idle.channel");
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();

    let out = ringsq(&["check"], data);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("DAMAGED: ") && l.contains(&state.display().to_string())),
        "{report}"
    );
    let (code, json) = check_json(data);
    assert_eq!(code, 1);
    assert_eq!(json["damaged"], 1, "{json:#}");
}

#[test]
fn the_tools_refuse_while_a_broker_runs() {
    let broker = Broker::start(&[]);
    for args in [&["check"][..], &["dump", "--topic", "t"]] {
        let out = ringsq(args, broker.data_path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "a broker is running on {}",
                broker.data_path().display()
            )),
            "{args:?}: {stderr}"
        );
    }
    // The checks took nothing: the broker still serves.
    RawConn::connect(broker.tcp_addr()).assert_alive("still-here");

    let missing = broker.data_path().join("no-such-dir");
    let out = ringsq(&["check"], &missing);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!missing.exists(), "check creates nothing");
    let out = ringsq(&["check", "--bogus"], broker.data_path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

fn dump_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn body_of(line: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(line["body"].as_str().unwrap())
        .unwrap()
}

/// `dump` prints exactly what was published, in order, with the ids and timestamps consumers
/// saw; `--limit` cuts it short.
#[test]
fn dump_prints_what_was_published() {
    let mut broker = Broker::start(BROKER_ARGS);
    let mut c = RawConn::subscriber(broker.tcp_addr(), "gamma", "reader");
    let mut p = RawConn::connect(broker.tcp_addr());
    let before = now_ns();
    // Bodies with every byte value, so base64 is not a no-op.
    let bodies: Vec<Vec<u8>> = (0..20u8)
        .map(|i| {
            (0..=255u8)
                .map(|b| b.wrapping_add(i))
                .take(50 + usize::from(i))
                .collect()
        })
        .collect();
    for body in &bodies {
        p.publish("gamma", body);
    }
    let after = now_ns();
    // The consumer takes all of them and finishes none: the log keeps them, and the ids and
    // timestamps it saw are the ones the dump must print.
    c.rdy(u64::try_from(bodies.len()).unwrap());
    let seen: Vec<Msg> = (0..bodies.len()).map(|_| c.read_msg()).collect();
    drop((c, p));
    broker.stop();

    let out = ringsq(&["dump", "--topic", "gamma"], broker.data_path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = dump_lines(&out);
    assert_eq!(lines.len(), bodies.len());
    for ((line, body), msg) in lines.iter().zip(&bodies).zip(&seen) {
        assert_eq!(&body_of(line), body);
        assert_eq!(line["id"], msg.id_str());
        assert_eq!(line["timestamp"], msg.ts);
        assert_eq!(line["attempts"], 0);
        let ts = line["timestamp"].as_i64().unwrap();
        assert!(
            (before..=after).contains(&ts),
            "{ts} not in {before}..{after}"
        );
        assert_eq!(line.as_object().unwrap().len(), 4, "{line}");
    }

    let out = ringsq(
        &["dump", "--topic", "gamma", "--limit", "3"],
        broker.data_path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(dump_lines(&out), lines[..3].to_vec());

    let out = ringsq(&["dump", "--topic", "nope"], broker.data_path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "a topic that does not exist: {out:?}"
    );
}

fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_nanos()).unwrap()
}

/// `--since`, as Unix seconds with a fraction and as RFC 3339, keeps the second batch only.
#[test]
fn dump_since_keeps_what_was_published_after() {
    let mut broker = Broker::start(BROKER_ARGS);
    let mut p = RawConn::connect(broker.tcp_addr());
    // A channel first, so the log keeps everything for it.
    let (status, body) = http_post(&broker, "/topic/create?topic=delta", b"");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_post(&broker, "/channel/create?topic=delta&channel=c", b"");
    assert_eq!(status, 200, "{body}");
    for i in 0..5 {
        p.publish("delta", format!("first-{i}").as_bytes());
    }
    // Every first-batch message was timestamped before its OK arrived; every second-batch
    // one after this instant.
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    for i in 0..5 {
        p.publish("delta", format!("second-{i}").as_bytes());
    }
    drop(p);
    broker.stop();

    let seconds = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
    let rfc3339 =
        time::OffsetDateTime::from_unix_timestamp_nanos(since.as_nanos().try_into().unwrap())
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("second-{i}").into_bytes()).collect();
    for since in [seconds, rfc3339] {
        let out = ringsq(
            &["dump", "--topic", "delta", "--since", &since],
            broker.data_path(),
        );
        assert_eq!(out.status.code(), Some(0), "{since}: {}", text(&out.stderr));
        let bodies: Vec<Vec<u8>> = dump_lines(&out).iter().map(body_of).collect();
        assert_eq!(bodies, want, "--since {since}");
    }
    let out = ringsq(
        &["dump", "--topic", "delta", "--since", "yesterday"],
        broker.data_path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

/// `--log-format=json`: every line the broker writes parses and carries level, time (RFC 3339)
/// and message, plus the event's fields.
#[test]
fn json_log_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args([
            "--log-format=json",
            "--tcp-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "--https-address",
            "127.0.0.1:0",
            "--data-path",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut parsed: Vec<serde_json::Value> = Vec::new();
    let mut next = |parsed: &mut Vec<serde_json::Value>| -> Option<serde_json::Value> {
        let line = lines.next()?.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        parsed.push(value.clone());
        Some(value)
    };
    let tcp: std::net::SocketAddr = loop {
        let line = next(&mut parsed).expect("ringsq exited before listening");
        if let Some(addr) = line["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("TCP: listening on "))
        {
            break addr.parse().unwrap();
        }
    };
    // A SUB creates a topic and a channel: the channel's line carries both as fields.
    let sub = RawConn::subscriber(tcp, "logged", "chan");
    loop {
        let line = next(&mut parsed).expect("ringsq exited");
        if line["channel"] == "chan" {
            assert_eq!(line["topic"], "logged", "{line}");
            break;
        }
    }
    drop(sub);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .unwrap()
        .success());
    while next(&mut parsed).is_some() {}
    assert!(child.wait().unwrap().success());
    for line in &parsed {
        assert!(
            ["debug", "info", "warn", "error"].contains(&line["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
        let time = line["time"].as_str().unwrap_or("");
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("time is not RFC 3339 ({e}): {line}"));
    }
    assert!(
        parsed
            .iter()
            .any(|l| l["message"] == "ringsq: exited cleanly"),
        "{parsed:#?}"
    );
}

/// `contrib/ringsq.service` passes `systemd-analyze verify` (with `ExecStart` pointing at the
/// binary just built: verify insists that it exists).
#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed; contrib/ringsq.service NOT verified");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/ringsq.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/ringsq --data-path=/var/lib/ringsq"));
    for directive in [
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ringsq",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "ProtectHome=true",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "User=ringsq",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(directive)),
            "{directive} missing"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringsq.service");
    let here = unit.replace("/usr/local/bin/ringsq", env!("CARGO_BIN_EXE_ringsq"));
    std::fs::write(&path, here).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    // Other units of the machine may draw remarks of their own; none may be about this one.
    let stderr = text(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ringsq"),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

/// What a crash leaves and start-up repairs is a warning, not damage: a torn tail in the
/// newest segment, a quarantined file.
#[test]
fn a_torn_tail_and_a_quarantined_file_are_warnings() {
    let (broker, _) = stopped_data_dir();
    let data = broker.data_path();
    let newest = segments(data, "beta").pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let end = u64::try_from(bytes.len()).unwrap();
    // A record of 100 bytes cut after 30: a write cut by a crash.
    bytes.extend_from_slice(&[100, 0, 0, 0, 1, 2, 3, 4, 9, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[7; 14]);
    std::fs::write(&newest, &bytes).unwrap();
    let quarantined = newest.with_extension("seg.corrupt-crc-at-32");
    std::fs::write(&quarantined, b"moved aside").unwrap();

    let (code, report) = check_json(data);
    assert_eq!(code, 0, "{report:#}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().all(|p| p["severity"] == "warning"),
        "{problems:#?}"
    );
    let torn = problems
        .iter()
        .find(|p| p["file"] == newest.display().to_string())
        .unwrap_or_else(|| panic!("the torn tail is reported: {problems:#?}"));
    assert_eq!(torn["offset"], end);
    assert!(problems
        .iter()
        .any(|p| p["file"] == quarantined.display().to_string()));
    assert_eq!(topic(&report, "beta")["messages"], BETA);
}

/// `ringsq --help` lists the subcommands (and is still nsqd's usage); each has its own help.
#[test]
fn help_lists_the_subcommands() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ringsq"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for wanted in [
        "ringsq check --data-path DIR",
        "ringsq dump --data-path DIR",
        "--mem-queue-size",
    ] {
        assert!(help.contains(wanted), "{wanted}: {help}");
    }
    for (args, wanted) in [
        (
            &["check", "--help"][..],
            &["--data-path", "--json", "--max-msg-size"][..],
        ),
        (
            &["dump", "--help"],
            &["--topic", "--since", "--limit", "attempts"],
        ),
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let help = text(&out.stdout);
        for w in wanted {
            assert!(help.contains(w), "{args:?} lacks {w}: {help}");
        }
    }
}
