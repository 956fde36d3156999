//! `GET /snapshot` against the real binary: a tar of a consistent copy of the data directory,
//! taken while publishers and consumers run, that a second broker starts on.
//!
//! - [`a_snapshot_taken_under_load_restores_every_channel_where_it_was`]: the consistency
//!   promise, message by message (see its doc comment for the exact assertion).
//! - [`one_snapshot_at_a_time`]: a second request while one streams gets `409`; the next one
//!   after it works.
//! - [`a_client_that_goes_away_releases_the_pins_and_the_slot`]: while a snapshot streams, the
//!   segments it will read stay through retention; a client that disconnects mid-stream lets
//!   retention delete them and the next snapshot run.
//! - [`memory_stays_bounded_during_a_large_snapshot`]: the broker's peak RSS while it streams
//!   `RINGSQ_SNAPSHOT_TEST_BYTES` of data (default 256 MiB) to a client that reads slowly at
//!   first stays far below the data size; the figure is printed.
//!
//! Tests wait for observable conditions (acks, FIN confirmations, files on disk, `/stats`),
//! never for a time to pass; none asserts on timing.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{http_post, wait_for, Broker, Frame, RawConn, ReadErr};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a whole phase (publishing, draining, a snapshot) may take before the test fails.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// A FIN for an id nobody has in flight: its `E_FIN_FAILED` reply tells that every command
/// sent before it on the connection has run (commands run in order; FIN has no reply).
const BARRIER_ID: &[u8; 16] = b"0000000000000000";
const MIB: u64 = 1024 * 1024;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(60))
        .build()
}

/// `GET /snapshot`: the response once its headers are in (the body still streaming), or the
/// status and body of a refusal.
fn get_snapshot(b: &Broker) -> Result<ureq::Response, (u16, String)> {
    let url = format!("http://{}/snapshot", b.http_addr());
    match agent().get(&url).call() {
        Ok(r) => Ok(r),
        Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
        Err(e) => panic!("GET /snapshot: {e}"),
    }
}

fn content_length(r: &ureq::Response) -> u64 {
    r.header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {:?}", r.headers_names()))
}

/// Reads a whole snapshot into memory and checks its framing: `Content-Length` bytes, ending
/// with the two zero blocks, every entry a regular file of mode 0600 with a relative path.
/// Returns the bytes and the entries (path, size).
fn read_whole(r: ureq::Response) -> (Vec<u8>, Vec<(String, u64)>) {
    assert_eq!(r.content_type(), "application/x-tar");
    let len = content_length(&r);
    let mut bytes = Vec::new();
    r.into_reader().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, len, "the body is as long as announced");
    assert!(bytes.len() % 512 == 0 && bytes.len() >= 1024);
    assert!(bytes[bytes.len() - 1024..].iter().all(|&b| b == 0));
    let mut entries = Vec::new();
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        assert_eq!(header.mode().unwrap(), 0o600);
        let path = entry.path().unwrap().into_owned();
        assert!(path.is_relative(), "{}", path.display());
        entries.push((path.display().to_string(), entry.size()));
    }
    (bytes, entries)
}

/// Unpacks a snapshot streamed from `r` into `dir`; returns the paths of its entries.
fn unpack(r: ureq::Response, dir: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(r.into_reader());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(entry.path().unwrap().display().to_string());
        assert!(entry.unpack_in(dir).unwrap());
    }
    names
}

/// `ringsq check` on a data directory: its exit code and output.
fn check(dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args(["check", "--data-path"])
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A channel's (depth, in flight, deferred) from `/stats`.
fn channel_counts(b: &Broker, topic: &str, channel: &str) -> (u64, u64, u64) {
    let url = format!(
        "http://{}/stats?format=json&topic={topic}&channel={channel}",
        b.http_addr()
    );
    let stats: serde_json::Value =
        serde_json::from_str(&agent().get(&url).call().unwrap().into_string().unwrap()).unwrap();
    let c = &stats["topics"][0]["channels"][0];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {stats}"));
    (n("depth"), n("in_flight_count"), n("deferred_count"))
}

/// Segment files of a topic's log in a data directory.
fn topic_segments(data: &Path, topic: &str) -> usize {
    let dir = data.join(format!("ringsq/topics/{topic}.topic/log"));
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count()
    })
}

/// A process's memory line from `/proc/<pid>/status`, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// Creates a topic and a channel of it (before anything is published: it gets everything).
fn create_channel(b: &Broker, topic: &str, channel: &str) {
    for path in [
        format!("/topic/create?topic={topic}"),
        format!("/channel/create?topic={topic}&channel={channel}"),
    ] {
        let (status, body) = http_post(b, &path, b"");
        assert_eq!(status, 200, "{path}: {body}");
    }
}

/// Publishes `bytes` of 64 KiB messages to `topic`, 1 MiB per MPUB.
fn publish_bytes(addr: SocketAddr, topic: &str, bytes: u64) {
    let body = vec![b'm'; 64 * 1024];
    let batch: Vec<&[u8]> = (0..16).map(|_| body.as_slice()).collect();
    let mut c = RawConn::connect(addr).with_label("publisher");
    for _ in 0..bytes.div_ceil(MIB) {
        c.mpublish(topic, &batch);
    }
}

/// Consumes and FINs `count` messages of `topic`/`channel`, then waits until the broker has run
/// every FIN (a barrier FIN's reply).
fn consume_all(addr: SocketAddr, topic: &str, channel: &str, count: usize) {
    let mut c = RawConn::subscriber(addr, topic, channel).with_label("drain");
    c.rdy(100);
    c.consume_fin(count);
    c.fin(BARRIER_ID);
    c.expect_error("E_FIN_FAILED FIN 0000000000000000 failed ID not in flight");
}

// ---------------------------------------------------------------------------------------------
// Consistency under load
// ---------------------------------------------------------------------------------------------

const LOAD_TOPICS: [&str; 3] = ["snap_a", "snap_b", "snap_c"];

/// Message `n` of a topic: its number, padded so that segments fill.
fn load_body(n: u64) -> Vec<u8> {
    format!("{n}:{}", "p".repeat(200)).into_bytes()
}

fn load_number(body: &[u8]) -> u64 {
    let text = std::str::from_utf8(body).unwrap();
    text.split(':').next().unwrap().parse().unwrap()
}

/// What a load consumer did, by message number: when it sent each FIN, and when the broker had
/// run it (its barrier's reply arrived); messages it REQ'd (deferred, and so parked) and those
/// it keeps in flight without ever finishing them.
#[derive(Debug, Default)]
struct Consumed {
    fin_sent: HashMap<u64, Instant>,
    fin_done: HashMap<u64, Instant>,
    req_done: HashMap<u64, Instant>,
    held: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Fin(u64),
    Req(u64),
}

/// Publishes to `topic` one message at a time, counting the `OK`s: messages `0..acked` were
/// acknowledged.
fn load_publisher(addr: SocketAddr, topic: &'static str, stop: &AtomicBool, acked: &AtomicU64) {
    let mut c = RawConn::connect(addr).with_label(&format!("pub {topic}"));
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        c.publish(topic, &load_body(n));
        n += 1;
        acked.store(n, Ordering::SeqCst);
    }
}

/// Consumes `topic`/`c`: every 10th message is REQ'd for 2 s on its first delivery (deferred
/// past the next sync point: parked), three are kept in flight for ever, the rest FIN'd. After
/// each action a barrier FIN; its reply dates the actions before it.
fn load_consumer(addr: SocketAddr, topic: &'static str, stop: &AtomicBool, out: &Mutex<Consumed>) {
    let mut c = RawConn::subscriber(addr, topic, "c").with_label(&format!("sub {topic}"));
    c.rdy(20);
    let mut barriers: VecDeque<Act> = VecDeque::new();
    let mut held = 0;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping && barriers.is_empty() {
            return;
        }
        match c.try_read_frame(Duration::from_millis(50)) {
            Ok(Frame::Message(m)) if !stopping => {
                let n = load_number(&m.body);
                let act = if m.attempts == 1 && n % 10 == 3 {
                    c.req(&m.id, 2000);
                    Act::Req(n)
                } else if m.attempts == 1 && n % 97 == 5 && held < 3 {
                    held += 1;
                    out.lock().unwrap().held.push(n);
                    continue;
                } else {
                    c.fin(&m.id);
                    out.lock().unwrap().fin_sent.insert(n, Instant::now());
                    Act::Fin(n)
                };
                c.fin(BARRIER_ID);
                barriers.push_back(act);
            }
            // Stopping: what comes now is left alone.
            Ok(Frame::Message(_)) | Err(ReadErr::Timeout) => {}
            Ok(Frame::Error(e)) if e.starts_with("E_FIN_FAILED FIN 0000000000000000") => {
                let now = Instant::now();
                let mut out = out.lock().unwrap();
                match barriers.pop_front() {
                    Some(Act::Fin(n)) => drop(out.fin_done.insert(n, now)),
                    Some(Act::Req(n)) => drop(out.req_done.insert(n, now)),
                    None => panic!("[{}] a barrier reply with no barrier", c.label),
                }
            }
            Ok(f) if f.is_heartbeat() => c.nop(),
            Ok(f) => panic!("[{}] unexpected {f:?}", c.label),
            Err(e) => panic!("[{}] {e:?}", c.label),
        }
    }
}

/// Drains `topic`/`channel` of a broker, FIN-ing everything, until `/stats` shows nothing left
/// (no depth, nothing in flight or deferred); returns the message numbers delivered.
fn drain(b: &Broker, topic: &str, channel: &str) -> BTreeSet<u64> {
    let mut c = RawConn::subscriber(b.tcp_addr(), topic, channel).with_label("drain");
    c.rdy(200);
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "draining {topic}/{channel}");
        match c.try_read_frame(Duration::from_millis(300)) {
            Ok(Frame::Message(m)) => {
                got.insert(load_number(&m.body));
                c.fin(&m.id);
            }
            Ok(f) if f.is_heartbeat() => c.nop(),
            Ok(f) => panic!("draining {topic}/{channel}: unexpected {f:?}"),
            Err(ReadErr::Timeout) => {
                // Every FIN sent has run before the counts are read.
                c.fin(BARRIER_ID);
                c.expect_error("E_FIN_FAILED FIN 0000000000000000 failed ID not in flight");
                if channel_counts(b, topic, channel) == (0, 0, 0) {
                    return got;
                }
            }
            Err(e) => panic!("draining {topic}/{channel}: {e:?}"),
        }
    }
}

/// What [`snapshot_under_load`] saw.
struct LoadRun {
    /// Per topic: messages `0..n` were acknowledged before the request was sent.
    acked_before: Vec<u64>,
    /// When the request was sent, and when its response's headers arrived (after every
    /// shard's sync point).
    t0: Instant,
    t1: Instant,
    consumed: Vec<Arc<Mutex<Consumed>>>,
    /// The tar's entries, in order.
    names: Vec<String>,
    /// Where the tar was unpacked.
    restored: tempfile::TempDir,
}

/// Publishers and a consumer run on three topics (every `OK` means written:
/// `--mem-queue-size 0`; small segments; a 500 ms sync interval so that REQ'd messages get
/// parked), one more channel `idle` on one of them consumes nothing; once they are well under
/// way, a snapshot is taken and unpacked into a fresh directory while they go on.
fn snapshot_under_load() -> LoadRun {
    let args = [
        "--mem-queue-size",
        "0",
        "--max-bytes-per-file",
        "32768",
        "--sync-timeout",
        "500ms",
    ];
    let b = Broker::start(&args);
    let addr = b.tcp_addr();
    for topic in LOAD_TOPICS {
        create_channel(&b, topic, "c");
    }
    create_channel(&b, "snap_a", "idle");
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<AtomicU64>> = LOAD_TOPICS.iter().map(|_| Arc::default()).collect();
    let consumed: Vec<Arc<Mutex<Consumed>>> = LOAD_TOPICS.iter().map(|_| Arc::default()).collect();
    let mut threads = Vec::new();
    for (i, topic) in LOAD_TOPICS.into_iter().enumerate() {
        let (stop_p, acked_p) = (Arc::clone(&stop), Arc::clone(&acked[i]));
        threads.push(thread::spawn(move || {
            load_publisher(addr, topic, &stop_p, &acked_p);
        }));
        let (stop_c, out) = (Arc::clone(&stop), Arc::clone(&consumed[i]));
        threads.push(thread::spawn(move || {
            load_consumer(addr, topic, &stop_c, &out);
        }));
    }
    // Under way: several segments per topic, FINs run, messages held and parked.
    let park_dir = b.data_path().join("ringsq/topics/snap_a.topic/c.park");
    wait_for(PHASE_TIMEOUT, "load under way", || {
        let enough = (0..LOAD_TOPICS.len()).all(|i| {
            let c = consumed[i].lock().unwrap();
            acked[i].load(Ordering::SeqCst) >= 1500 && c.fin_done.len() >= 300 && !c.held.is_empty()
        });
        let parked = std::fs::read_dir(&park_dir).is_ok_and(|d| d.count() > 0);
        (enough && parked).then_some(())
    });
    let acked_before = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let t0 = Instant::now();
    let response = get_snapshot(&b).unwrap_or_else(|e| panic!("GET /snapshot: {e:?}"));
    let t1 = Instant::now();
    let restored = tempfile::tempdir().unwrap();
    let names = unpack(response, restored.path());
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    LoadRun {
        acked_before,
        t0,
        t1,
        consumed,
        names,
        restored,
    }
}

/// A snapshot taken under load ([`snapshot_under_load`]) is a data directory (`ringsq check`
/// passes on it), and a second broker started there drains every channel. With `T0` when the
/// request was sent and `T1` when its response headers arrived (the sync point is taken in
/// between, on every shard):
///
/// - every message acknowledged before `T0` is delivered by the second broker on `c`, unless
///   its FIN was sent before `T1` (a FIN sent between `T0` and `T1` may have run before the
///   sync point or after it: either outcome is right, at least once);
/// - no message whose FIN had run before `T0` (its barrier's reply arrived) is delivered again;
/// - on `idle`, every message acknowledged before `T0` is delivered;
/// - non-vacuous: FINs had run before `T0` on every topic; messages kept in flight and
///   messages deferred (parked: the tar holds a park log) at `T0` are among those delivered.
#[test]
fn a_snapshot_taken_under_load_restores_every_channel_where_it_was() {
    let run = snapshot_under_load();
    let names = &run.names;
    assert_eq!(names.first().map(String::as_str), Some("nsqd.dat"));
    let count = |pattern: &str| names.iter().filter(|n| n.contains(pattern)).count();
    assert!(count("snap_a.topic/log/") > 3, "{names:?}");
    assert!(count(".park/") > 0, "no park log in {names:?}");
    assert_eq!(count(".channel"), 4, "{names:?}");
    let (code, report) = check(run.restored.path());
    assert_eq!(code, 0, "ringsq check on the restored directory:\n{report}");

    let b2 = Broker::start_in(run.restored.path(), &["--mem-queue-size", "0"]);
    let idle = drain(&b2, "snap_a", "idle");
    assert!(
        (0..run.acked_before[0]).all(|n| idle.contains(&n)),
        "idle lost messages"
    );
    let (mut finished_before, mut held_back, mut deferred_back) = (0, 0, 0);
    for (i, topic) in LOAD_TOPICS.into_iter().enumerate() {
        let got = drain(&b2, topic, "c");
        let c = run.consumed[i].lock().unwrap();
        let fin_sent_before_t1 = |n: &u64| c.fin_sent.get(n).is_some_and(|at| *at < run.t1);
        let missing: Vec<u64> = (0..run.acked_before[i])
            .filter(|n| !got.contains(n) && !fin_sent_before_t1(n))
            .collect();
        assert!(
            missing.is_empty(),
            "{topic}: acknowledged before the request, never finished, not restored: {missing:?}"
        );
        let done_before: Vec<u64> = c
            .fin_done
            .iter()
            .filter(|(_, at)| **at < run.t0)
            .map(|(n, _)| *n)
            .collect();
        let again: Vec<u64> = done_before
            .iter()
            .copied()
            .filter(|n| got.contains(n))
            .collect();
        assert!(
            again.is_empty(),
            "{topic}: finished before the request, delivered again: {again:?}"
        );
        finished_before += done_before.len();
        held_back += c.held.iter().filter(|n| got.contains(n)).count();
        deferred_back += c
            .req_done
            .iter()
            .filter(|(n, at)| **at < run.t0 && !fin_sent_before_t1(n) && got.contains(n))
            .count();
        println!(
            "{topic}: {} acknowledged before the request, {} finished before it, {} restored",
            run.acked_before[i],
            done_before.len(),
            got.len()
        );
    }
    assert!(
        finished_before > 0 && held_back > 0 && deferred_back > 0,
        "vacuous: finished {finished_before}, held {held_back}, deferred {deferred_back}"
    );
}

// ---------------------------------------------------------------------------------------------
// One at a time; clients that go away
// ---------------------------------------------------------------------------------------------

/// Data enough that a snapshot cannot be sent whole into the socket buffers and the body's
/// queue while its client reads nothing (a few MiB on Linux), so it is still streaming.
const UNREAD_SNAPSHOT_BYTES: u64 = 40 * MIB;

/// While a snapshot streams (its client reading nothing yet), a second request gets
/// `409 {"message":"SNAPSHOT_IN_PROGRESS"}`; the first then completes whole, and a third,
/// after it, works.
#[test]
fn one_snapshot_at_a_time() {
    let b = Broker::start(&["--mem-queue-size", "0", "--max-bytes-per-file", "4194304"]);
    publish_bytes(b.tcp_addr(), "big", UNREAD_SNAPSHOT_BYTES);
    let first = get_snapshot(&b).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(content_length(&first) > UNREAD_SNAPSHOT_BYTES);
    let refused = get_snapshot(&b).err();
    assert_eq!(
        refused,
        Some((409, r#"{"message":"SNAPSHOT_IN_PROGRESS"}"#.to_owned()))
    );
    let (_, entries) = read_whole(first);
    let data: u64 = entries
        .iter()
        .filter(|(name, _)| {
            let name = Path::new(name);
            name.starts_with("ringsq/topics/big.topic/log/")
                && name.extension().is_some_and(|e| e == "seg")
        })
        .map(|(_, size)| size)
        .sum();
    assert!(data > UNREAD_SNAPSHOT_BYTES, "{entries:?}");
    let third = get_snapshot(&b).unwrap_or_else(|e| panic!("after the first: {e:?}"));
    let (_, again) = read_whole(third);
    assert_eq!(again.len(), entries.len());
}

/// A snapshot pins what it will read: a topic whose messages are all finished while the
/// snapshot streams keeps its segments through retention (a topic created after the request,
/// not pinned, shows that a retention pass ran). The client then disconnects mid-stream: the
/// segments go and the next snapshot runs.
#[test]
fn a_client_that_goes_away_releases_the_pins_and_the_slot() {
    let b = Broker::start(&[
        "--mem-queue-size",
        "0",
        "--max-bytes-per-file",
        "1048576",
        "--sync-timeout",
        "200ms",
    ]);
    let addr = b.tcp_addr();
    create_channel(&b, "pinned", "c");
    publish_bytes(addr, "pinned", UNREAD_SNAPSHOT_BYTES);
    let segments = topic_segments(b.data_path(), "pinned");
    assert!(segments > 30, "{segments}");

    let first = get_snapshot(&b).unwrap_or_else(|e| panic!("{e:?}"));
    let mut reader = first.into_reader();
    let mut head = vec![0; 64 * 1024];
    reader.read_exact(&mut head).unwrap();
    consume_all(
        addr,
        "pinned",
        "c",
        usize::try_from(UNREAD_SNAPSHOT_BYTES / (64 * 1024)).unwrap(),
    );

    create_channel(&b, "unpinned", "c");
    publish_bytes(addr, "unpinned", 4 * MIB);
    consume_all(addr, "unpinned", "c", 64);
    wait_for(PHASE_TIMEOUT, "retention of the unpinned topic", || {
        (topic_segments(b.data_path(), "unpinned") <= 1).then_some(())
    });
    assert_eq!(
        topic_segments(b.data_path(), "pinned"),
        segments,
        "pinned segments went"
    );

    drop(reader);
    wait_for(PHASE_TIMEOUT, "retention once the client went away", || {
        (topic_segments(b.data_path(), "pinned") <= 1).then_some(())
    });
    let next = wait_for(
        PHASE_TIMEOUT,
        "the slot to be free",
        || match get_snapshot(&b) {
            Ok(r) => Some(r),
            Err((409, _)) => None,
            Err(e) => panic!("{e:?}"),
        },
    );
    let (_, entries) = read_whole(next);
    assert!(entries
        .iter()
        .any(|(n, _)| n.starts_with("ringsq/topics/pinned.topic/")));
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// Bytes published before the memory test's snapshot (`RINGSQ_SNAPSHOT_TEST_BYTES`).
fn large_snapshot_bytes() -> u64 {
    std::env::var("RINGSQ_SNAPSHOT_TEST_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256 * MIB)
}

/// A client that reads at most 64 KiB every 10 ms for its first `slow_left` bytes.
struct SlowStart<R> {
    inner: R,
    slow_left: u64,
}

impl<R: Read> Read for SlowStart<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.slow_left == 0 {
            return self.inner.read(buf);
        }
        thread::sleep(Duration::from_millis(10));
        let want = buf.len().min(64 * 1024);
        let n = self.inner.read(&mut buf[..want])?;
        self.slow_left = self.slow_left.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Most the broker's resident memory may peak at while it streams the snapshot.
const SNAPSHOT_RSS_MAX_BYTES: u64 = 100 * MIB;

/// The broker's peak resident set (`VmHWM`, reset through `clear_refs` just before) while it
/// streams a snapshot of `RINGSQ_SNAPSHOT_TEST_BYTES` (default 256 MiB) to a client that reads
/// 64 KiB every 10 ms for its first 4 MiB, then as fast as it can, stays under
/// [`SNAPSHOT_RSS_MAX_BYTES`] (and the data size). The tar is checked entry by entry as it
/// streams (headers, sizes), never stored.
#[test]
fn memory_stays_bounded_during_a_large_snapshot() {
    let bytes = large_snapshot_bytes();
    let b = Broker::start(&["--mem-queue-size", "0"]);
    let pid = b.pid().unwrap();
    let started = Instant::now();
    publish_bytes(b.tcp_addr(), "large", bytes);
    let published_in = started.elapsed();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM (needs root)");
    let before = proc_status_bytes(pid, "VmHWM");

    let started = Instant::now();
    let response = get_snapshot(&b).unwrap_or_else(|e| panic!("{e:?}"));
    let len = content_length(&response);
    let reader = SlowStart {
        inner: response.into_reader(),
        slow_left: 4 * MIB,
    };
    let mut archive = tar::Archive::new(reader);
    let mut data = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        data += std::io::copy(&mut entry, &mut std::io::sink()).unwrap();
    }
    let streamed_in = started.elapsed();
    let peak = proc_status_bytes(pid, "VmHWM");
    println!(
        "snapshot of {} MiB published ({published_in:?}); tar {} MiB streamed in {streamed_in:?}; \
         broker VmHWM {} MiB before, {} MiB peak while streaming",
        bytes / MIB,
        len / MIB,
        before / MIB,
        peak / MIB
    );
    assert!(data >= bytes, "{data} bytes of files for {bytes} published");
    assert!(
        peak < SNAPSHOT_RSS_MAX_BYTES && peak < bytes,
        "peak RSS {} MiB while streaming {} MiB",
        peak / MIB,
        bytes / MIB
    );
    // The snapshot slot is free again once the stream is done.
    let next = wait_for(
        PHASE_TIMEOUT,
        "the slot to be free",
        || match get_snapshot(&b) {
            Ok(r) => Some(r),
            Err((409, _)) => None,
            Err(e) => panic!("{e:?}"),
        },
    );
    drop(next);
}

/// A channel's dead letters are in the copy: restored, they are listed as they were, and
/// requeueing them there delivers them.
#[test]
fn dead_letters_are_in_the_snapshot() {
    let b = Broker::start(&["--mem-queue-size", "0", "--max-attempts", "1"]);
    let mut c = RawConn::subscriber(b.tcp_addr(), "poison", "c");
    let mut p = RawConn::connect(b.tcp_addr());
    for i in 0..3 {
        p.publish("poison", format!("bad {i}").as_bytes());
    }
    c.rdy(3);
    for _ in 0..3 {
        let m = c.read_msg();
        c.req(&m.id, 0);
    }
    let dead = |b: &Broker| -> serde_json::Value {
        let url = format!(
            "http://{}/channel/dead?topic=poison&channel=c",
            b.http_addr()
        );
        serde_json::from_str(&agent().get(&url).call().unwrap().into_string().unwrap()).unwrap()
    };
    wait_for(Duration::from_secs(10), "three dead letters", || {
        (dead(&b)["count"] == 3).then_some(())
    });
    let restored = tempfile::tempdir().unwrap();
    unpack(get_snapshot(&b).unwrap(), restored.path());
    let (code, out) = check(restored.path());
    assert_eq!(code, 0, "{out}");
    let r = Broker::start_in(restored.path(), &["--mem-queue-size", "0"]);
    let listed = dead(&r);
    assert_eq!(listed["count"], 3, "{listed}");
    let (status, body) = http_post(&r, "/channel/dead/requeue?topic=poison&channel=c", b"");
    assert_eq!(status, 200, "{body}");
    let mut c = RawConn::subscriber(r.tcp_addr(), "poison", "c");
    c.rdy(3);
    let mut bodies: Vec<String> = (0..3)
        .map(|_| String::from_utf8(c.read_msg().body).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["bad 0", "bad 1", "bad 2"]);
}
