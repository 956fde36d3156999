//! Replacing Go nsqd on its own data directory: the messages Go left in its disk queues (one per
//! topic, one per channel; go-diskqueue's format, files written here byte by byte as Go writes
//! them) are delivered by ringsq to exactly the channels Go would have delivered them to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Broker, RawConn};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// nsqd's message encoding: `[ts i64 BE][attempts u16 BE][id 16][body]`.
fn go_message(n: u64, body: &str) -> Vec<u8> {
    let mut m = 1_700_000_000_000_000_000i64.to_be_bytes().to_vec();
    m.extend_from_slice(&3u16.to_be_bytes());
    m.extend_from_slice(format!("{n:016x}").as_bytes());
    m.extend_from_slice(body.as_bytes());
    m
}

/// go-diskqueue records: `u32 BE length` + payload.
fn records(bodies: &[&str], first_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let m = go_message(first_id + i as u64, body);
        out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&m);
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A data directory as Go nsqd 1.3.0 leaves it at exit: topic `orders` with channels `a`, `b`
/// and `c`; `a`'s queue spans two files, `b`'s ends in a record that cannot be a message, the
/// topic's own queue has one message already read (before its `readPos`).
fn go_data_dir(dir: &Path) {
    write(
        dir,
        "nsqd.dat",
        br#"{"topics":[{"channels":[{"name":"a","paused":false},{"name":"b","paused":false},{"name":"c","paused":false}],"name":"orders","paused":false}],"version":"1.3.0"}"#,
    );
    let read = records(&["already-read"], 100);
    let mut topic = read.clone();
    topic.extend(records(&["t0", "t1", "t2"], 101));
    write(dir, "orders.diskqueue.000000.dat", &topic);
    write(
        dir,
        "orders.diskqueue.meta.dat",
        format!("3\n0,{}\n0,{}\n", read.len(), topic.len()).as_bytes(),
    );

    let a0 = records(&["a0", "a1", "a2"], 200);
    let a1 = records(&["a3", "a4"], 203);
    write(dir, "orders:a.diskqueue.000003.dat", &a0);
    write(dir, "orders:a.diskqueue.000004.dat", &a1);
    write(
        dir,
        "orders:a.diskqueue.meta.dat",
        format!("5\n3,0\n4,{}\n", a1.len()).as_bytes(),
    );

    let mut b = records(&["b0", "b1"], 300);
    b.extend_from_slice(&3u32.to_be_bytes()); // shorter than a message header: not a message
    b.extend_from_slice(b"xyz");
    write(dir, "orders:b.diskqueue.000000.dat", &b);
    write(
        dir,
        "orders:b.diskqueue.meta.dat",
        format!("3\n0,0\n0,{}\n", b.len()).as_bytes(),
    );
}

fn depths(b: &Broker) -> BTreeMap<String, u64> {
    let url = format!("http://{}/stats?format=json&topic=orders", b.http_addr());
    let body = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("/stats: {e}\n{}", b.logs()))
        .into_string()
        .unwrap();
    let stats: Value = serde_json::from_str(&body).unwrap();
    stats["topics"][0]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["channel_name"].as_str().unwrap().to_owned(),
                c["depth"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Consumes exactly `n` messages of a channel; returns their bodies in order.
fn consume(b: &Broker, channel: &str, n: usize) -> Vec<String> {
    let mut c = RawConn::subscriber(b.tcp_addr(), "orders", channel);
    c.rdy(100);
    (0..n)
        .map(|_| {
            let m = c.read_msg();
            c.fin(&m.id);
            String::from_utf8(m.body).unwrap()
        })
        .collect()
}

#[test]
fn messages_in_go_nsqds_disk_queues_are_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    go_data_dir(tmp.path());
    let mut b = Broker::start_in(tmp.path(), &["--mem-queue-size", "0"]);

    let want: BTreeMap<String, u64> = [("a", 8), ("b", 5), ("c", 3)]
        .into_iter()
        .map(|(c, n)| (c.to_owned(), n))
        .collect();
    assert_eq!(depths(&b), want);
    let logs = b.logs();
    assert!(
        logs.contains("orders:b.diskqueue.000000.dat at offset") && logs.contains("out of bounds"),
        "the record that is not a message is reported with its file and offset:\n{logs}"
    );
    // Every Go file is renamed aside, so a restart does not take anything over twice.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".diskqueue."))
        .collect();
    names.sort();
    assert!(names.iter().all(|n| n.ends_with(".imported")), "{names:?}");
    assert_eq!(names.len(), 7, "{names:?}");

    // Which channel gets what survives a restart (the skipped ranges are in the channel state).
    b.restart();
    assert_eq!(depths(&b), want);

    let topic_msgs = ["t0", "t1", "t2"];
    let a: Vec<&str> = ["a0", "a1", "a2", "a3", "a4"]
        .into_iter()
        .chain(topic_msgs)
        .collect();
    let bb: Vec<&str> = ["b0", "b1"].into_iter().chain(topic_msgs).collect();
    assert_eq!(consume(&b, "a", a.len()), a);
    assert_eq!(consume(&b, "b", bb.len()), bb);
    assert_eq!(consume(&b, "c", 3), topic_msgs);

    // And nothing else: the next message on each channel is a new one.
    let mut p = RawConn::connect(b.tcp_addr());
    p.publish("orders", b"new");
    for channel in ["a", "b", "c"] {
        assert_eq!(consume(&b, channel, 1), ["new"]);
    }
}
