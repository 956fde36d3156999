//! File descriptors as a budget: 20 000 topics under a hard `RLIMIT_NOFILE` of 1024 (the broker
//! runs under `prlimit`, so it cannot raise its own limit): created by PUB, consumed, restarted
//! on a data directory holding far more topics than descriptors, consumed again. An idle topic
//! holds no descriptor: the broker stays well under its limit and never hits EMFILE.
//!
//! The data directory is a tmpfs the test mounts (root; `RINGSQ_SKIP_TMPFS=1` skips knowingly):
//! what is measured is descriptors, not the disk's fsync speed.
// Tests panic to fail, and the shared harness (`common`) uses `expect`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{tmpfs, Broker, RawConn};
use std::time::{Duration, Instant};

const TOPICS: usize = 20_000;
/// The broker's descriptor limit, soft and hard.
const NOFILE: u64 = 1024;
/// Every this many topics, one is consumed (a consumer needs a connection per topic).
const SAMPLE_EVERY: usize = 200;
/// Publishing connections.
const PUBLISHERS: usize = 4;
/// Size of the tmpfs: a few pages per topic.
const TMPFS_BYTES: u64 = 2 << 30;

fn topic(i: usize) -> String {
    format!("fd-{i}")
}

/// Open descriptors of the broker process now.
fn fds(broker: &Broker) -> usize {
    let pid = broker.pid().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// PUB `body(i)` to every topic from a few connections, each waiting for its `OK`s in order.
fn publish_everywhere(broker: &Broker, body: fn(usize) -> String) {
    std::thread::scope(|s| {
        for p in 0..PUBLISHERS {
            let addr = broker.tcp_addr();
            s.spawn(move || {
                let mut conn = RawConn::connect(addr);
                let mine: Vec<usize> = (p..TOPICS).step_by(PUBLISHERS).collect();
                // Pipelined in windows: the broker answers every PUB in order.
                for window in mine.chunks(100) {
                    for &i in window {
                        conn.pub_(&topic(i), body(i).as_bytes());
                    }
                    for _ in window {
                        conn.expect_ok();
                    }
                }
            });
        }
    });
}

/// Subscribes to every sampled topic (from `first`), one connection at a time, and expects
/// `want(i)` as its next message.
fn consume_sample(broker: &Broker, first: usize, want: fn(usize) -> String) {
    for i in (first..TOPICS).step_by(SAMPLE_EVERY) {
        let mut c = RawConn::subscriber(broker.tcp_addr(), &topic(i), "c");
        c.rdy(1);
        let m = c.read_msg();
        assert_eq!(
            String::from_utf8_lossy(&m.body),
            want(i),
            "topic {}",
            topic(i)
        );
        c.fin(&m.id);
        c.cmd("CLS");
        c.expect_response_eq(b"CLOSE_WAIT");
    }
}

#[track_caller]
fn assert_within_budget(broker: &Broker, when: &str, started: Instant) {
    let open = fds(broker);
    assert!(
        open < usize::try_from(NOFILE).unwrap(),
        "{when}: {open} descriptors open"
    );
    let logs = broker.logs();
    assert!(
        !logs.contains("Too many open files"),
        "{when}: the broker ran out of descriptors:\n{logs}"
    );
    let ping = ureq::get(&format!("http://{}/ping", broker.http_addr()))
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap();
    assert_eq!(ping.into_string().unwrap(), "OK", "{when}");
    eprintln!(
        "{when}: {open} descriptors open ({:.1?} since the start)",
        started.elapsed()
    );
}

#[test]
fn twenty_thousand_topics_under_a_limit_of_1024_descriptors() {
    let started = Instant::now();
    let Some(fs) = tmpfs(TMPFS_BYTES, "the 20 000-topic fd test") else {
        return;
    };
    let limit = format!("--nofile={NOFILE}:{NOFILE}");
    let wrapper = ["prlimit", limit.as_str(), "--"];
    let data = fs.mnt.join("data");
    let mut broker = Broker::start_wrapped(&wrapper, &data, &["--mem-queue-size", "0"]);
    publish_everywhere(&broker, |i| format!("first {i}"));
    assert_within_budget(&broker, "after creating 20 000 topics", started);
    consume_sample(&broker, 0, |i| format!("first {i}"));
    assert_within_budget(&broker, "after consuming", started);

    broker.restart();
    assert!(
        broker
            .logs()
            .contains(&format!("file descriptors: limit {NOFILE}")),
        "the broker runs under the test's limit"
    );
    assert_within_budget(&broker, "after restarting", started);
    let stats = ureq::get(&format!(
        "http://{}/stats?format=json&include_clients=false",
        broker.http_addr()
    ))
    .timeout(Duration::from_secs(30))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["topics"].as_array().unwrap().len(), TOPICS);
    // Topics not consumed yet still hold their first message; consumed ones get a second.
    consume_sample(&broker, SAMPLE_EVERY / 2, |i| format!("first {i}"));
    publish_everywhere(&broker, |i| format!("second {i}"));
    consume_sample(&broker, 0, |i| format!("second {i}"));
    assert_within_budget(&broker, "at the end", started);
    broker.stop();
}
