//! Restart in constant memory: what a broker holds for messages that were in flight at a
//! `kill -9` does not grow with the log that follows them.
//!
//! 2 500 messages are left in flight (a consumer with RDY 2500 that finishes only the filler
//! messages published between them, so each but the last is followed by more log), the broker is killed,
//! restarted on the same data, and must then redeliver every one of them — with its attempts
//! count (2: delivered once before the kill) — while its peak RSS stays under 64 MiB. (Before,
//! restoring an outstanding message read a multi-MiB chunk of the log and kept it pinned:
//! ~4 MiB per message.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{mpub_bytes, wait_for, Broker, RawConn};
use std::collections::HashSet;
use std::time::Duration;

const KEEPERS: usize = 2500;
/// Log published after each kept message.
const FILLER_BYTES: usize = 16 * 1024;
const RSS_MAX_KIB: u64 = 64 * 1024;
const TOPIC: &str = "restart_mem";
const STATE_SAVED_WITHIN: Duration = Duration::from_secs(1);

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn channel_stats(broker: &Broker) -> serde_json::Value {
    let url = format!(
        "http://{}/stats?format=json&topic={TOPIC}&channel=ch",
        broker.http_addr()
    );
    let body = ureq::get(&url).call().unwrap().into_string().unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["topics"][0]["channels"][0].clone()
}

#[test]
fn restart_with_2500_in_flight_redelivers_all_in_bounded_memory() {
    let mut broker = Broker::start(&["--mem-queue-size", "0"]);
    let filler = vec![b'f'; FILLER_BYTES];
    let mut consumer = RawConn::subscriber(broker.tcp_addr(), TOPIC, "ch");
    consumer.rdy(u64::try_from(KEEPERS).unwrap());
    let mut publisher = RawConn::connect(broker.tcp_addr());
    for i in 0..KEEPERS {
        let keep = format!("keep-{i}");
        // The filler first, so that the last message is a keeper and the window (RDY 2500)
        // takes every message.
        publisher.send(&mpub_bytes(TOPIC, &[&filler, keep.as_bytes()]));
    }
    for _ in 0..KEEPERS {
        publisher.expect_ok();
    }

    let mut kept = HashSet::new();
    while kept.len() < KEEPERS {
        let m = consumer.read_msg();
        if m.body.starts_with(b"keep-") {
            assert_eq!(m.attempts, 1);
            kept.insert(m.body);
        } else {
            consumer.fin(&m.id);
        }
    }
    // Every filler finished, every keeper in flight.
    wait_for(Duration::from_secs(20), "fillers finished", || {
        let c = channel_stats(&broker);
        (c["in_flight_count"] == KEEPERS && c["depth"] == 0).then_some(())
    });
    // The broker saves a changed channel state within ~100 ms (without fsync, which a kill -9
    // does not need); 10x that lets the last FINs and deliveries reach it on a loaded machine.
    std::thread::sleep(STATE_SAVED_WITHIN);
    broker.kill9();
    broker.restart();
    let pid = broker.pid().unwrap();

    let mut consumer = RawConn::subscriber(broker.tcp_addr(), TOPIC, "ch");
    consumer.rdy(u64::try_from(KEEPERS).unwrap());
    let mut again = HashSet::new();
    while again.len() < KEEPERS {
        let m = consumer.read_msg();
        assert!(
            m.body.starts_with(b"keep-"),
            "a finished filler came back: {:?}",
            String::from_utf8_lossy(&m.body[..16])
        );
        assert_eq!(m.attempts, 2, "attempts of a message in flight at the kill");
        consumer.fin(&m.id);
        again.insert(m.body);
    }
    assert_eq!(again, kept);
    let peak = status_kib(pid, "VmHWM:");
    println!("restart_memory: {KEEPERS} redelivered, broker peak RSS {peak} KiB after restart");
    assert!(
        peak < RSS_MAX_KIB,
        "peak RSS {peak} KiB after restarting with {KEEPERS} in flight (limit {RSS_MAX_KIB} KiB)"
    );
    broker.stop();
}
