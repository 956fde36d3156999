//! A full disk, as an operator sees it, on a small tmpfs the test mounts (needs root; set
//! `RINGSQ_SKIP_TMPFS=1` to skip knowingly): `/ping` answers `500 NOK - <error>` while writes
//! fail and `OK` again once one succeeds, `/stats` `health` and `/metrics` `nsq_healthy` agree,
//! a topic's `message_count` counts only what was stored, and the broker starts on a full disk,
//! serves its backlog to consumers, refuses publishes, and recovers by itself when space
//! returns.
// Tests panic to fail, and the shared harness (`common`) uses `expect`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{tmpfs, wait_for, Broker, RawConn};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Size of the test's tmpfs.
const TMPFS_BYTES: u64 = 8 << 20;
/// How long the broker may take to notice by itself that space came back (it retries its
/// failed writes every second).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Fills the file system holding `path` with one file, to the last byte; removed when dropped.
struct Filler(PathBuf);

impl Filler {
    fn fill(path: &Path) -> Filler {
        let mut file = std::fs::File::create(path).unwrap();
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut size = chunk.len();
        // Halve the chunk at each ENOSPC until not even one byte fits.
        while size > 0 {
            match file.write_all(&chunk[..size]) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => size /= 2,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        Filler(path.to_path_buf())
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).unwrap();
    }
}

/// (status, body) of an HTTP request.
fn http(broker: &Broker, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let url = format!("http://{}{path}", broker.http_addr());
    let req = ureq::request(method, &url).timeout(Duration::from_secs(10));
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("{method} {path}: {e}\n{}", broker.logs()),
    }
}

fn publish(broker: &Broker, topic: &str, body: &[u8]) -> u16 {
    http(broker, "POST", &format!("/pub?topic={topic}"), Some(body)).0
}

fn stats(broker: &Broker) -> Value {
    let (status, body) = http(broker, "GET", "/stats?format=json", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `/ping`, `/stats` `health` and `/metrics` `nsq_healthy` tell one story: returns `/ping`'s
/// (status, body).
#[track_caller]
fn health(broker: &Broker) -> (u16, String) {
    let ping = http(broker, "GET", "/ping", None);
    let stats_health = stats(broker)["health"].as_str().unwrap().to_owned();
    let metrics = http(broker, "GET", "/metrics", None).1;
    let healthy = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nsq_healthy "))
        .unwrap_or_else(|| panic!("no nsq_healthy in /metrics:\n{metrics}"))
        .to_owned();
    assert_eq!(ping.1, stats_health, "/ping and /stats health disagree");
    let ok = ping.0 == 200;
    assert_eq!(
        healthy,
        if ok { "1" } else { "0" },
        "/metrics disagrees with /ping {ping:?}"
    );
    assert_eq!(ok, ping.1 == "OK", "/ping {ping:?}");
    ping
}

#[track_caller]
fn assert_no_space(ping: &(u16, String)) {
    assert_eq!(ping.0, 500, "{ping:?}");
    assert!(
        ping.1.starts_with("NOK - ") && ping.1.contains("no space left on device"),
        "{ping:?}"
    );
}

fn topic_stats(broker: &Broker, topic: &str) -> Value {
    stats(broker)["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .cloned()
        .unwrap_or_else(|| panic!("no topic {topic} in /stats"))
}

/// A body no file's last, partly used page can take: writing it needs free space.
fn big_body() -> Vec<u8> {
    vec![b'x'; 64 * 1024]
}

#[test]
fn ping_is_nok_while_writes_fail_and_ok_once_one_succeeds() {
    let Some(fs) = tmpfs(TMPFS_BYTES, "the full-disk tests") else {
        return;
    };
    let broker = Broker::start_in(&fs.mnt.join("data"), &["--mem-queue-size", "0"]);
    for i in 0..5 {
        assert_eq!(publish(&broker, "t", format!("before {i}").as_bytes()), 200);
    }
    assert_eq!(health(&broker), (200, "OK".to_owned()));
    let filler = Filler::fill(&fs.mnt.join("filler"));
    for _ in 0..3 {
        assert_eq!(publish(&broker, "t", &big_body()), 503, "{}", broker.logs());
    }
    assert_no_space(&health(&broker));
    assert_eq!(
        topic_stats(&broker, "t")["message_count"],
        5,
        "failed publishes are not counted"
    );
    drop(filler);
    assert_eq!(publish(&broker, "t", b"after"), 200);
    assert_eq!(health(&broker), (200, "OK".to_owned()), "a write succeeded");
    assert_eq!(topic_stats(&broker, "t")["message_count"], 6);
}

/// At nsqd's defaults a publish is acknowledged once queued in memory (`--mem-queue-size`):
/// a full disk must not lose it. It is written when space returns.
#[test]
fn messages_acknowledged_in_memory_survive_a_full_disk() {
    let Some(fs) = tmpfs(TMPFS_BYTES, "the full-disk tests") else {
        return;
    };
    let data = fs.mnt.join("data");
    let mut broker = Broker::start_in(&data, &[]);
    assert_eq!(publish(&broker, "t", b"before"), 200);
    let filler = Filler::fill(&fs.mnt.join("filler"));
    for _ in 0..3 {
        assert_eq!(publish(&broker, "t", &big_body()), 200, "queued in memory");
    }
    wait_for(RECOVERY_TIMEOUT, "/ping NOK once the write failed", || {
        (http(&broker, "GET", "/ping", None).0 == 500).then_some(())
    });
    drop(filler);
    wait_for(RECOVERY_TIMEOUT, "/ping OK once written", || {
        (http(&broker, "GET", "/ping", None).0 == 200).then_some(())
    });
    broker.stop();
    let broker = Broker::start_in(&data, &[]);
    let mut consumer = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    consumer.rdy(10);
    let got = consumer.consume_fin(4);
    assert_eq!(got[0].body, b"before");
    assert!(
        got[1..].iter().all(|m| m.body == big_body()),
        "the three acknowledged messages"
    );
}

/// With `--mem-queue-size 0` a consumer is handed only records the log has written, so a
/// publish that fails with ENOSPC (its publisher gets an error) is never delivered, even though
/// the log gives its sequence numbers to the next records. (It was, before consumers were held
/// to what the ack policy made safe.)
#[test]
fn a_publish_that_failed_is_never_delivered() {
    let Some(fs) = tmpfs(TMPFS_BYTES, "the full-disk tests") else {
        return;
    };
    let broker = Broker::start_in(&fs.mnt.join("data"), &["--mem-queue-size", "0"]);
    let mut consumer = RawConn::subscriber(broker.tcp_addr(), "t", "c");
    consumer.rdy(100);
    assert_eq!(publish(&broker, "t", b"before"), 200);
    assert_eq!(consumer.consume_fin(1)[0].body, b"before");
    let filler = Filler::fill(&fs.mnt.join("filler"));
    assert_eq!(publish(&broker, "t", &big_body()), 503);
    drop(filler);
    assert_eq!(publish(&broker, "t", b"after"), 200);
    let m = consumer.read_msg();
    assert!(
        m.body == b"after",
        "delivered a message whose publish failed ({} bytes)",
        m.body.len()
    );
}

#[test]
fn starts_on_a_full_disk_serves_the_backlog_and_recovers_by_itself() {
    let Some(fs) = tmpfs(TMPFS_BYTES, "the full-disk tests") else {
        return;
    };
    let data = fs.mnt.join("data");
    let flags = ["--mem-queue-size", "0", "--max-bytes-per-file", "65536"];
    let mut broker = Broker::start_in(&data, &flags);
    let mut conn = RawConn::connect(broker.tcp_addr());
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("{i:04}-{}", "b".repeat(1000)).into_bytes())
        .collect();
    for batch in bodies.chunks(50) {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        conn.mpublish("backlog", &refs);
    }
    assert_eq!(
        http(
            &broker,
            "POST",
            "/channel/create?topic=backlog&channel=c",
            Some(b"")
        )
        .0,
        200
    );
    assert_eq!(
        http(&broker, "POST", "/topic/create?topic=empty", Some(b"")).0,
        200
    );
    assert_eq!(
        http(
            &broker,
            "POST",
            "/channel/create?topic=empty&channel=c",
            Some(b"")
        )
        .0,
        200
    );
    drop(conn);
    broker.stop();

    let filler = Filler::fill(&fs.mnt.join("filler"));
    let broker = Broker::start_in(&data, &flags);
    assert_no_space(&health(&broker));
    assert_eq!(
        publish(&broker, "backlog", &big_body()),
        503,
        "{}",
        broker.logs()
    );
    assert_eq!(
        publish(&broker, "empty", &big_body()),
        503,
        "{}",
        broker.logs()
    );
    assert_no_space(&health(&broker));
    let mut consumer = RawConn::subscriber(broker.tcp_addr(), "backlog", "c");
    consumer.rdy(250);
    let got = consumer.consume_fin(bodies.len());
    assert!(
        got.iter().map(|m| &m.body).eq(bodies.iter()),
        "the backlog, whole and in order"
    );
    wait_for(RECOVERY_TIMEOUT, "the backlog channel to drain", || {
        let t = topic_stats(&broker, "backlog");
        (t["channels"][0]["depth"] == 0 && t["channels"][0]["in_flight_count"] == 0).then_some(())
    });

    drop(filler);
    wait_for(RECOVERY_TIMEOUT, "/ping OK once space returned", || {
        (http(&broker, "GET", "/ping", None).0 == 200).then_some(())
    });
    assert_eq!(health(&broker), (200, "OK".to_owned()));
    assert_eq!(publish(&broker, "backlog", b"space again"), 200);
    assert_eq!(consumer.read_msg().body, b"space again");
    let mut empty = RawConn::subscriber(broker.tcp_addr(), "empty", "c");
    empty.rdy(1);
    assert_eq!(publish(&broker, "empty", b"first"), 200);
    assert_eq!(empty.read_msg().body, b"first");
}
