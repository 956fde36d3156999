//! A byte flipped in a sealed segment while ringsq is stopped (bad disk, bad hand): open does not
//! scan sealed segments (open time does not grow with the backlog), so the damage is found when a
//! channel reads it. The damaged message is skipped with an error log naming the segment, every
//! other message is delivered, and the channel keeps serving — it does not stop at the damage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Broker, RawConn};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const TOPIC: &str = "damaged";
const MESSAGES: usize = 200;
const DAMAGED: usize = 42;

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("message-{i:04}-").into_bytes();
    b.resize(100, b'.');
    b
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let dir = data
        .join("ringsq")
        .join("topics")
        .join(format!("{TOPIC}.topic"))
        .join("log");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Flips one byte inside message `i`'s body, wherever it is stored; returns the segment.
fn damage_message(data: &Path, i: usize) -> PathBuf {
    let needle = format!("message-{i:04}-").into_bytes();
    for seg in segments(data) {
        let mut bytes = std::fs::read(&seg).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 2] ^= 0x20;
            std::fs::write(&seg, &bytes).unwrap();
            return seg;
        }
    }
    panic!("message {i} is in no segment");
}

#[test]
fn a_damaged_message_is_skipped_and_the_rest_delivered() {
    let mut broker = Broker::start(&["--mem-queue-size", "0", "--max-bytes-per-file", "4096"]);
    let mut p = RawConn::connect(broker.tcp_addr());
    // A channel exists before the messages, so it holds all of them.
    let mut c = RawConn::subscriber(broker.tcp_addr(), TOPIC, "ch");
    for i in 0..MESSAGES {
        p.publish(TOPIC, &body(i));
    }
    drop((p, c));
    broker.stop();
    let seg = damage_message(broker.data_path(), DAMAGED);
    assert_ne!(
        Some(&seg),
        segments(broker.data_path()).last(),
        "the damage must be in a sealed segment"
    );
    broker.restart();

    c = RawConn::subscriber(broker.tcp_addr(), TOPIC, "ch");
    c.rdy(MESSAGES as u64);
    let mut got = BTreeSet::new();
    for _ in 0..MESSAGES - 1 {
        let m = c.read_msg();
        c.fin(&m.id);
        assert!(got.insert(m.body.clone()), "delivered twice: {:?}", m.body);
    }
    let want: BTreeSet<Vec<u8>> = (0..MESSAGES).filter(|&i| i != DAMAGED).map(body).collect();
    assert_eq!(got, want);

    // The channel goes on: the next message published is the next one delivered.
    let mut p = RawConn::connect(broker.tcp_addr());
    p.publish(TOPIC, b"after the damage");
    assert_eq!(c.read_msg().body, b"after the damage");

    let logs = broker.logs();
    let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        logs.lines()
            .any(|l| l.contains("skipping 1 message(s)") && l.contains(&seg_name)),
        "no error log names the damaged segment:\n{logs}"
    );
}
