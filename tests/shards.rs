//! Sharding (`--shards`), black-box: what spreading topics over threads could break.
//!
//! - one connection publishing to topics on every shard gets its `OK`s in command order, and
//!   each topic stores its messages in the order they were sent;
//! - a publish refused on another shard (`--max-topic-bytes`) answers after the replies queued
//!   before it, then the connection closes, as a local refusal does; so does a fatal error
//!   behind `OK`s that wait for other shards;
//! - consumers move to the shard of their topic whatever they negotiated before the `SUB`
//!   (plain, snappy, deflate, TLS, TLS with either), with the bytes they sent after the `SUB`;
//!   many connections, so that some subscribe where they were accepted and some move;
//! - topic and channel pause, empty and delete through HTTP while other shards publish;
//! - `/stats` totals equal what was published;
//! - `kill -9` with topics on every shard loses nothing acknowledged.
//!
//! Every test sets `--shards 4` itself (a machine with fewer cores still runs 4 threads), so the
//! suite's one-shard run (`RINGSQ_TEST_SHARDS=1`) exercises sharding here too.

// Tests panic to fail, and the shared harness (`common`) uses `expect`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod tls_support;

use common::{http_post as post, mpub_bytes, wait_for, with_body, Broker, Frame, RawConn};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tls_support::{Pki, Versions};

const SHARDS: usize = 4;
const SHARDS_FLAG: &str = "4";

/// `n` topic names (`<prefix>-<i>`) that between them land on every shard.
fn spread_topics(prefix: &str, n: usize) -> Vec<String> {
    let topics: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let shards: BTreeSet<usize> = topics
        .iter()
        .map(|t| ringsq::shard::owner(t, SHARDS))
        .collect();
    assert_eq!(shards.len(), SHARDS, "{topics:?} do not cover every shard");
    topics
}

fn create_channel(b: &Broker, topic: &str, channel: &str) {
    assert_eq!(post(b, &format!("/topic/create?topic={topic}"), b"").0, 200);
    let path = format!("/channel/create?topic={topic}&channel={channel}");
    assert_eq!(post(b, &path, b"").0, 200);
}

fn stats(b: &Broker) -> Value {
    let url = format!("http://{}/stats?format=json", b.http_addr());
    let body = ureq::get(&url).call().unwrap().into_string().unwrap();
    serde_json::from_str(&body).unwrap()
}

fn topic_stats(b: &Broker, topic: &str) -> Option<Value> {
    stats(b)["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic_name"] == topic)
        .cloned()
}

/// Reads every message a fresh consumer of `topic`/`channel` gets, `n` of them, finishing each.
fn consume_bodies(b: &Broker, topic: &str, channel: &str, n: usize) -> Vec<Vec<u8>> {
    let mut c = RawConn::subscriber(b.tcp_addr(), topic, channel).with_label(topic);
    c.rdy(2500);
    c.consume_fin(n).into_iter().map(|m| m.body).collect()
}

#[test]
fn one_connection_publishes_to_every_shard_and_gets_its_replies_in_order() {
    let broker = Broker::start(&["--shards", SHARDS_FLAG, "--mem-queue-size", "0"]);
    let topics = spread_topics("order", 12);
    let mut sent: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
    let mut commands = Vec::new();
    let mut replies = 0;
    for round in 0..30 {
        for t in &topics {
            let bodies: Vec<Vec<u8>> = (0..=(round % 3))
                .map(|i| format!("{t}/{round}/{i}").into_bytes())
                .collect();
            if bodies.len() == 1 {
                commands.extend(with_body(&format!("PUB {t}"), &bodies[0]));
            } else {
                let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                commands.extend(mpub_bytes(t, &refs));
            }
            sent.entry(t).or_default().extend(bodies);
            replies += 1;
        }
    }
    // A deferred publish to each topic too (not part of the order: it comes when due).
    for t in &topics {
        commands.extend(with_body(&format!("DPUB {t} 1"), b"deferred"));
        replies += 1;
    }
    let mut c = RawConn::connect(broker.tcp_addr());
    c.send(&commands);
    for _ in 0..replies {
        c.expect_ok();
    }
    let mut total = 0;
    for t in &topics {
        let want = &sent[t.as_str()];
        let got = consume_bodies(&broker, t, "c", want.len() + 1);
        let (deferred, ordered): (Vec<_>, Vec<_>) = got.into_iter().partition(|b| b == b"deferred");
        assert_eq!(&ordered, want, "{t}: messages in the order they were sent");
        assert_eq!(deferred.len(), 1, "{t}: the deferred message");
        total += want.len() + 1;
    }
    let s = stats(&broker);
    let counted: u64 = s["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["message_count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, total as u64, "/stats counts every message once");
    let names: Vec<&str> = s["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic_name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        names, sorted,
        "topics sorted by name, whatever shard owns them"
    );
}

#[test]
fn a_refused_publish_on_any_shard_answers_in_order_then_closes() {
    let broker = Broker::start(&["--shards", SHARDS_FLAG, "--max-topic-bytes", "2000"]);
    // Fill `full` until it refuses (no channel: its backlog counts).
    let body = [b'x'; 300];
    wait_for(Duration::from_secs(10), "the topic to be full", || {
        (post(&broker, "/pub?topic=full", &body).0 == 507).then_some(())
    });
    let single = "E_PUB_FAILED PUB failed topic full is full (2000 bytes)";
    let batch = "E_MPUB_FAILED MPUB failed topic full is full (2000 bytes)";
    let others = spread_topics("ok", 8);
    // Many connections: some are on the shard that owns `full`, most are not.
    for (i, other) in others.iter().enumerate() {
        let mut c = RawConn::connect(broker.tcp_addr()).with_label(other);
        let refused = [b'r'; 300];
        let mut cmds = with_body(&format!("PUB {other}"), b"before");
        if i % 2 == 0 {
            cmds.extend(with_body("PUB full", &refused));
        } else {
            cmds.extend(mpub_bytes("full", &[&refused, &refused]));
        }
        cmds.extend(with_body(&format!("PUB {other}"), b"after"));
        cmds.extend(with_body("PUB full", &refused));
        c.send(&cmds);
        c.expect_ok();
        c.expect_fatal(if i % 2 == 0 { single } else { batch });
    }
    let t = topic_stats(&broker, "full").unwrap();
    let stored = t["message_count"].as_u64().unwrap();
    assert!(
        consume_bodies(&broker, "full", "c", usize::try_from(stored).unwrap())
            .iter()
            .all(|b| b == &body),
        "nothing published after a refusal reached the full topic"
    );
}

#[test]
fn a_fatal_error_comes_after_the_replies_queued_before_it() {
    let broker = Broker::start(&["--shards", SHARDS_FLAG, "--mem-queue-size", "0"]);
    let topics = spread_topics("before", 8);
    for _ in 0..4 {
        let mut cmds = Vec::new();
        for t in &topics {
            cmds.extend(with_body(&format!("PUB {t}"), b"x"));
        }
        cmds.extend(with_body("PUB bad!topic", b"x"));
        cmds.extend(with_body(&format!("PUB {}", topics[0]), b"never"));
        let mut c = RawConn::connect(broker.tcp_addr());
        c.send(&cmds);
        for _ in &topics {
            c.expect_ok();
        }
        let e = c.expect_any_error();
        assert!(e.starts_with("E_BAD_TOPIC PUB topic name"), "{e}");
        c.expect_closed();
    }
}

/// A client's two halves through the layers it negotiated.
struct Layers {
    r: Box<dyn Read>,
    w: Box<dyn Write>,
}

/// How a consumer talks to the broker before and after it moves.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Plain,
    Snappy,
    Deflate,
    Tls,
    TlsSnappy,
    TlsDeflate,
}

const MODES: [Mode; 6] = [
    Mode::Plain,
    Mode::Snappy,
    Mode::Deflate,
    Mode::Tls,
    Mode::TlsSnappy,
    Mode::TlsDeflate,
];

impl Mode {
    fn identify(self) -> &'static str {
        match self {
            Mode::Plain => r#"{"feature_negotiation":true}"#,
            Mode::Snappy => r#"{"feature_negotiation":true,"snappy":true}"#,
            Mode::Deflate => r#"{"feature_negotiation":true,"deflate":true,"deflate_level":3}"#,
            Mode::Tls => r#"{"feature_negotiation":true,"tls_v1":true}"#,
            Mode::TlsSnappy => r#"{"feature_negotiation":true,"tls_v1":true,"snappy":true}"#,
            Mode::TlsDeflate => {
                r#"{"feature_negotiation":true,"tls_v1":true,"deflate":true,"deflate_level":2}"#
            }
        }
    }

    fn tls(self) -> bool {
        matches!(self, Mode::Tls | Mode::TlsSnappy | Mode::TlsDeflate)
    }

    fn compression(self) -> Option<&'static str> {
        match self {
            Mode::Snappy | Mode::TlsSnappy => Some("snappy"),
            Mode::Deflate | Mode::TlsDeflate => Some("deflate"),
            Mode::Plain | Mode::Tls => None,
        }
    }

    /// Connects, IDENTIFYs and goes through the upgrades (each with its `OK`).
    fn connect(self, broker: &Broker, pki: &Pki) -> Layers {
        let (s, _) = tls_support::identify(broker.tcp_addr(), self.identify());
        let (r, w): (Box<dyn Read>, Box<dyn Write>) = if self.tls() {
            let mut tls =
                tls_support::handshake(s, pki.client_config(None, Versions::Any)).unwrap();
            assert_eq!(
                tls_support::read_frame(&mut tls).unwrap(),
                (0, b"OK".to_vec())
            );
            let shared = tls_support::Shared::new(tls);
            (Box::new(shared.clone()), Box::new(shared))
        } else {
            (Box::new(s.try_clone().unwrap()), Box::new(s))
        };
        let (mut r, w): (Box<dyn Read>, Box<dyn Write>) = match self.compression() {
            Some("snappy") => (
                Box::new(snap::read::FrameDecoder::new(r)),
                Box::new(snap::write::FrameEncoder::new(w)),
            ),
            Some(_) => (
                Box::new(tls_support::Inflater::new(r)),
                Box::new(flate2::write::DeflateEncoder::new(
                    w,
                    flate2::Compression::new(2),
                )),
            ),
            None => (r, w),
        };
        if self.compression().is_some() {
            assert_eq!(
                tls_support::read_frame(&mut r).unwrap(),
                (0, b"OK".to_vec())
            );
        }
        Layers { r, w }
    }
}

/// Publishes, subscribes, sets RDY and publishes again in one write (so the bytes after the
/// `SUB` are read before the connection moves), then reads 3 `OK`s and both messages, in
/// publish order, and finishes them.
fn publish_subscribe_in_one_write(l: &mut Layers, topic: &str) {
    let mut cmds = with_body(&format!("PUB {topic}"), b"first");
    cmds.extend(format!("SUB {topic} c\nRDY 5\n").into_bytes());
    cmds.extend(with_body(&format!("PUB {topic}"), b"second"));
    l.w.write_all(&cmds).unwrap();
    l.w.flush().unwrap();
    let (mut oks, mut bodies) = (0, Vec::new());
    while oks < 3 || bodies.len() < 2 {
        let (kind, data) = tls_support::read_frame(&mut l.r).unwrap();
        match kind {
            0 if data == b"OK" => oks += 1,
            0 if data == b"_heartbeat_" => {}
            2 => {
                let mut fin = b"FIN ".to_vec();
                fin.extend_from_slice(&data[10..26]);
                fin.push(b'\n');
                l.w.write_all(&fin).unwrap();
                l.w.flush().unwrap();
                bodies.push(data[26..].to_vec());
            }
            _ => panic!(
                "{topic}: unexpected frame {kind} {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
    assert_eq!(bodies, [b"first".to_vec(), b"second".to_vec()], "{topic}");
}

/// How many `SUB`s moved their connection to another shard (from the debug log).
fn moves(broker: &Broker) -> usize {
    broker
        .logs()
        .matches("moving the connection to shard")
        .count()
}

#[test]
fn consumers_move_to_their_topics_shard_with_tls_and_compression() {
    let pki = Pki::new();
    let mut args = pki.server_flags();
    args.extend(["--shards", SHARDS_FLAG, "--log-level", "debug"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args);
    let topics = spread_topics("mv", 24);
    let mut open = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let mode = MODES[i % MODES.len()];
        let mut l = mode.connect(&broker, &pki);
        publish_subscribe_in_one_write(&mut l, topic);
        open.push((topic, mode, l));
    }
    // Both cases: connections that subscribed where they were accepted, and ones that moved.
    let mut extra = 0;
    while moves(&broker) == 0 || moves(&broker) == topics.len() + extra {
        assert!(
            extra < 50,
            "every SUB moved, or none did: {}",
            moves(&broker)
        );
        let topic = format!("mv-extra-{extra}");
        let mut l = Mode::Plain.connect(&broker, &pki);
        publish_subscribe_in_one_write(&mut l, &topic);
        extra += 1;
    }
    // Each client is where its channel is, with the state it had before it moved (once the
    // FINs, which have no reply, are in).
    let s = wait_for(Duration::from_secs(10), "every FIN counted", || {
        let s = stats(&broker);
        let fins: Vec<u64> = s["topics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["channels"][0]["clients"][0]["finish_count"].as_u64())
            .collect();
        (fins.len() == topics.len() + extra && fins.iter().all(|n| *n == 2)).then_some(s)
    });
    for (topic, mode, _) in &open {
        let t = s["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic_name"] == topic.as_str())
            .unwrap();
        let client = &t["channels"][0]["clients"][0];
        assert_eq!(client["tls"], mode.tls(), "{topic} {mode:?}: {client}");
        assert_eq!(client["snappy"], mode.compression() == Some("snappy"));
        assert_eq!(client["deflate"], mode.compression() == Some("deflate"));
        assert_eq!(client["finish_count"], 2, "{topic}: {client}");
        assert_eq!(client["pub_counts"][0]["count"], 2, "{topic}: {client}");
        assert_eq!(t["message_count"], 2);
    }
    // And they keep working where they are: one more message each.
    for (topic, _, l) in &mut open {
        let mut c = RawConn::connect(broker.tcp_addr());
        c.publish(topic, b"third");
        let (kind, data) = loop {
            let frame = tls_support::read_frame(&mut l.r).unwrap();
            if frame != (0, b"_heartbeat_".to_vec()) {
                break frame;
            }
        };
        assert_eq!((kind, &data[26..]), (2, &b"third"[..]), "{topic}");
    }
}

#[test]
fn pause_empty_and_delete_while_other_shards_publish() {
    let broker = Broker::start(&["--shards", SHARDS_FLAG]);
    assert_eq!(
        post(&broker, "/channel/create?topic=hot&channel=c", b"").0,
        404
    );
    assert_eq!(post(&broker, "/topic/create?topic=hot", b"").0, 200);
    assert_eq!(
        post(&broker, "/channel/create?topic=hot&channel=c", b"").0,
        200
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let publishers: Vec<_> = (0..6)
        .map(|p| {
            let (stop, acked, failures) = (stop.clone(), acked.clone(), failures.clone());
            let addr = broker.tcp_addr();
            thread::spawn(move || {
                let mut c = RawConn::connect(addr).with_label(&format!("publisher {p}"));
                while !stop.load(Ordering::Relaxed) {
                    let mut cmds = Vec::new();
                    for i in 0..20 {
                        cmds.extend(with_body("PUB hot", format!("{p}-{i}").as_bytes()));
                    }
                    c.send(&cmds);
                    for _ in 0..20 {
                        match c.next_reply() {
                            Frame::Response(r) if r == b"OK" => {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                }
            })
        })
        .collect();
    let published_more = |from: u64| {
        wait_for(Duration::from_secs(10), "more publishes", || {
            (acked.load(Ordering::Relaxed) > from + 100).then_some(())
        });
    };
    for _ in 0..3 {
        for path in [
            "/topic/pause?topic=hot",
            "/channel/pause?topic=hot&channel=c",
            "/topic/empty?topic=hot",
            "/channel/empty?topic=hot&channel=c",
            "/topic/unpause?topic=hot",
            "/channel/unpause?topic=hot&channel=c",
        ] {
            published_more(acked.load(Ordering::Relaxed));
            assert_eq!(post(&broker, path, b""), (200, String::new()), "{path}");
        }
        let paused = topic_stats(&broker, "hot").unwrap()["paused"].clone();
        assert_eq!(paused, false);
        assert_eq!(post(&broker, "/topic/delete?topic=hot", b"").0, 200);
        // The publishers bring it back (nsqd creates a topic on publish).
        wait_for(Duration::from_secs(10), "the topic to come back", || {
            topic_stats(&broker, "hot").map(drop)
        });
        let created = post(&broker, "/channel/create?topic=hot&channel=c", b"");
        assert_eq!(created.0, 200, "{created:?}\n{}", broker.logs());
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.join().unwrap();
    }
    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        ureq::get(&format!("http://{}/ping", broker.http_addr()))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
        "OK"
    );
    let mut consumer = RawConn::subscriber(broker.tcp_addr(), "hot", "c");
    let mut c = RawConn::connect(broker.tcp_addr());
    c.publish("hot", b"last");
    // What the channel held before is delivered first; `last` comes in its turn.
    let depth = topic_stats(&broker, "hot").unwrap()["channels"][0]["depth"]
        .as_u64()
        .unwrap();
    consumer.rdy(2500);
    let got = consumer.consume_fin(usize::try_from(depth).unwrap());
    assert_eq!(got.last().map(|m| m.body.clone()), Some(b"last".to_vec()));
}

#[test]
fn stats_totals_equal_what_was_published_on_every_shard() {
    let broker = Broker::start(&["--shards", SHARDS_FLAG]);
    let topics = spread_topics("count", 12);
    for t in &topics {
        create_channel(&broker, t, "c");
    }
    let publishers: Vec<_> = (0..6)
        .map(|p| {
            let (addr, topics) = (broker.tcp_addr(), topics.clone());
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut sent: HashMap<String, u64> = HashMap::new();
                for round in 0..25 {
                    let t = &topics[(p * 7 + round) % topics.len()];
                    let n = 1 + (p + round) % 4;
                    let bodies: Vec<Vec<u8>> = (0..n).map(|i| vec![b'a'; 10 + i]).collect();
                    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                    c.mpublish(t, &refs);
                    *sent.entry(t.clone()).or_default() += u64::try_from(n).unwrap();
                }
                sent
            })
        })
        .collect();
    let mut sent: HashMap<String, u64> = HashMap::new();
    for p in publishers {
        for (t, n) in p.join().unwrap() {
            *sent.entry(t).or_default() += n;
        }
    }
    let s = stats(&broker);
    let mut total = 0;
    for t in s["topics"].as_array().unwrap() {
        let name = t["topic_name"].as_str().unwrap();
        let want = sent.get(name).copied().unwrap_or(0);
        assert_eq!(t["message_count"], want, "{name}");
        assert_eq!(t["channels"][0]["message_count"], want, "{name}");
        assert_eq!(t["channels"][0]["depth"], want, "{name}");
        total += t["message_count"].as_u64().unwrap();
    }
    assert_eq!(total, sent.values().sum::<u64>());
    // `/metrics` agrees.
    let metrics = ureq::get(&format!("http://{}/metrics", broker.http_addr()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for (t, n) in &sent {
        let line = format!("nsq_topic_messages_total{{topic=\"{t}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

/// Publishes MPUB batches to `topic` until the broker dies; the bodies acknowledged.
fn publish_until_killed(
    addr: std::net::SocketAddr,
    topic: &str,
    round: usize,
    acked: &AtomicU64,
) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut s) = TcpStream::connect(addr) else {
        return out;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(b"  V2").is_err() {
        return out;
    }
    for batch in 0.. {
        let bodies: Vec<String> = (0..10)
            .map(|i| format!("{topic}/{round}/{batch}/{i}"))
            .collect();
        let refs: Vec<&[u8]> = bodies.iter().map(String::as_bytes).collect();
        if s.write_all(&mpub_bytes(topic, &refs)).is_err() {
            break;
        }
        match tls_support::read_frame(&mut s) {
            Ok((0, r)) if r == b"OK" => {
                acked.fetch_add(10, Ordering::Relaxed);
                out.extend(bodies);
            }
            Ok((1, e)) => panic!("{topic}: {}", String::from_utf8_lossy(&e)),
            Ok(_) | Err(_) => break,
        }
    }
    out
}

#[test]
fn kill9_with_topics_on_every_shard_loses_nothing_acknowledged() {
    let flags = [
        "--shards",
        SHARDS_FLAG,
        "--mem-queue-size",
        "0",
        "--ack-after-sync",
        "--sync-timeout",
        "200ms",
    ];
    let mut broker = Broker::start(&flags);
    let topics = spread_topics("crash", 8);
    for t in &topics {
        create_channel(&broker, t, "c");
    }
    let mut acked: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..3 {
        let count = Arc::new(AtomicU64::new(0));
        let publishers: Vec<_> = topics
            .iter()
            .map(|t| {
                let (addr, t, count) = (broker.tcp_addr(), t.clone(), count.clone());
                thread::spawn(move || (t.clone(), publish_until_killed(addr, &t, round, &count)))
            })
            .collect();
        // Killed while every publisher is busy.
        wait_for(
            Duration::from_secs(20),
            "publishes to be acknowledged",
            || (count.load(Ordering::Relaxed) >= 2000).then_some(()),
        );
        broker.kill9();
        for p in publishers {
            let (t, bodies) = p.join().unwrap();
            acked.entry(t).or_default().extend(bodies);
        }
        broker.restart();
    }
    for t in &topics {
        let want: BTreeSet<&String> = acked[t].iter().collect();
        let depth = topic_stats(&broker, t).unwrap()["channels"][0]["depth"]
            .as_u64()
            .unwrap();
        assert!(
            depth >= want.len() as u64,
            "{t}: depth {depth} < {} acknowledged",
            want.len()
        );
        let got = consume_bodies(&broker, t, "c", usize::try_from(depth).unwrap());
        let got: BTreeSet<String> = got
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        let lost: Vec<_> = want.iter().filter(|b| !got.contains(**b)).collect();
        assert!(
            lost.is_empty(),
            "{t}: {} acknowledged messages lost, e.g. {:?}",
            lost.len(),
            lost.first()
        );
    }
}
