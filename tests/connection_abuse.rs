//! No client can hurt another (issue 8, connection side), against the real binary on loopback.
//!
//! - Bounded work per turn: a deflate bomb (1 MB that inflates to 1 GiB of `NOP`s), a snappy
//!   bomb and a flood of tiny commands keep another client's PUB round trip short and the
//!   broker's memory bounded.
//! - Deadlines as nsqd: half a command line, a body sent a byte at a time, a missing magic are
//!   closed after twice the heartbeat interval (nsqd's error frame first where nsqd sends one),
//!   and the deadline follows the interval IDENTIFY negotiated.
//! - File descriptors: connections past the limit are refused while `/ping` and `/stats` keep
//!   answering; the broker does not spin when the limit is hit.
//!
//! After each abuse another client still publishes and consumes. Timed bounds are generous (a
//! debug build on a shared 2-core machine); each test prints what it measured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{with_body, Broker, Frame, RawConn, ReadErr};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Worst PUB round trip another client may see while one connection abuses the broker. The
/// goal is 50 ms (release build); before this work a deflate bomb stalled others for seconds.
const OTHER_RTT_BOUND: Duration = Duration::from_secs(1);
/// How long a probe measures round trips while the abuse goes on.
const PROBE_WINDOW: Duration = Duration::from_secs(3);
/// Round trips measured at least.
const PROBE_MIN_SAMPLES: usize = 10;
/// The broker's resident memory must stay below this during a bomb (it inflates to 1 GiB).
const RSS_BOUND_BYTES: u64 = 300 * 1024 * 1024;
/// `--max-heartbeat-interval` for the deadline tests: new connections get a 1 s heartbeat,
/// so a command (or the magic) must arrive within 2 s.
const SHORT_MAX_HEARTBEAT: &str = "--max-heartbeat-interval=1s";
const DEADLINE: Duration = Duration::from_secs(2);
/// Slack on a deadline: closing earlier than `DEADLINE - EARLY` or later than
/// `DEADLINE + LATE` fails.
const EARLY: Duration = Duration::from_millis(500);
const LATE: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A consumer on `topic` (channel `watch`), subscribed before any abuse starts.
fn watcher(addr: SocketAddr, topic: &str) -> RawConn {
    let mut s = RawConn::subscriber(addr, topic, "watch").with_label("watcher");
    s.rdy(100);
    s
}

/// Another client publishes on `topic` and the watcher consumes exactly that message.
fn assert_healthy(addr: SocketAddr, topic: &str, watcher: &mut RawConn, tag: &str) {
    let mut p = RawConn::connect(addr).with_label("healthy-publisher");
    p.publish(topic, tag.as_bytes());
    loop {
        let m = watcher.read_msg();
        watcher.fin(&m.id);
        if m.body == tag.as_bytes() {
            return;
        }
    }
}

/// A fresh consumer and a fresh publisher round-trip a message (for brokers whose short
/// heartbeat would drop a watcher that does not answer heartbeats).
fn assert_fresh_round_trip(addr: SocketAddr, tag: &str) {
    let mut sub = RawConn::subscriber(addr, tag, "c").with_label("fresh-consumer");
    sub.rdy(1);
    let mut p = RawConn::connect(addr).with_label("fresh-publisher");
    p.publish(tag, tag.as_bytes());
    assert_eq!(sub.read_msg().body, tag.as_bytes());
}

/// Round trips measured by [`probe_round_trips`].
struct Probe {
    /// Sorted.
    rtts: Vec<Duration>,
}

impl Probe {
    fn worst(&self) -> Duration {
        self.rtts.last().copied().unwrap_or_default()
    }

    fn quantile(&self, q: f64) -> Duration {
        let last = self.rtts.len().saturating_sub(1);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let at = ((last as f64) * q).round() as usize;
        self.rtts.get(at).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} round trips, p50 {:?}, p99 {:?}, worst {:?}",
            self.rtts.len(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.worst()
        )
    }
}

/// PUB round trips on a fresh connection while `busy` is true (at most [`PROBE_WINDOW`], at
/// least [`PROBE_MIN_SAMPLES`] of them).
fn probe_round_trips(addr: SocketAddr, topic: &str, busy: &mut dyn FnMut() -> bool) -> Probe {
    let mut p = RawConn::connect(addr).with_label("probe");
    let start = Instant::now();
    let mut rtts = Vec::new();
    while rtts.len() < PROBE_MIN_SAMPLES || (busy() && start.elapsed() < PROBE_WINDOW) {
        let t = Instant::now();
        p.publish(topic, b"probe");
        rtts.push(t.elapsed());
    }
    rtts.sort_unstable();
    Probe { rtts }
}

/// The broker's resident set size, from `/proc`.
fn rss_bytes(broker: &Broker) -> u64 {
    let pid = broker.pid().expect("broker running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// CPU time (user + system) the broker has used, from `/proc/<pid>/stat`, in clock ticks.
fn cpu_ticks(broker: &Broker) -> u64 {
    let pid = broker.pid().expect("broker running");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Connects, negotiates `codec_json` (e.g. `"deflate":true`) and returns the raw socket; the
/// IDENTIFY response is read, the compressed `OK` after it is left unread.
fn negotiated(addr: SocketAddr, codec_json: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    s.write_all(common::MAGIC_V2).unwrap();
    let json = format!(r#"{{"feature_negotiation":true,{codec_json}}}"#);
    s.write_all(&with_body("IDENTIFY", json.as_bytes()))
        .unwrap();
    let mut head = [0u8; 8];
    s.read_exact(&mut head).unwrap();
    let size = usize::try_from(i32::from_be_bytes(head[..4].try_into().unwrap()) - 4).unwrap();
    let mut body = vec![0u8; size];
    s.read_exact(&mut body).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v.to_string().contains(codec_json), "not negotiated: {v}");
    s
}

/// 1 GiB of `NOP\n` in raw DEFLATE (about 1 MB), then `PUB <done_topic>`. One sync-flushed
/// block that encodes 1 MiB of NOPs is repeated: it refers only to the 32 KiB window before
/// it, which is NOPs every time, so the repeats are a valid stream.
fn deflate_bomb(done_topic: &str) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    fn deflate(c: &mut Compress, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() / 100 + 1024);
        let mut at = 0;
        loop {
            let before = c.total_in();
            c.compress_vec(&plain[at..], &mut out, FlushCompress::Sync)
                .unwrap();
            at += usize::try_from(c.total_in() - before).unwrap();
            if at == plain.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(64 * 1024);
        }
    }
    let mib_of_nops = b"NOP\n".repeat(256 * 1024);
    let mut c = Compress::new(Compression::best(), false);
    let mut bomb = deflate(&mut c, &mib_of_nops);
    let block = deflate(&mut c, &mib_of_nops);
    for _ in 0..1022 {
        bomb.extend_from_slice(&block);
    }
    bomb.extend(deflate(
        &mut c,
        &with_body(&format!("PUB {done_topic}"), b"bomb done"),
    ));
    bomb
}

/// About 1 MB of snappy frames that decode to 64 KiB of NOPs each (~21 MB in all), then
/// `PUB <done_topic>`.
fn snappy_bomb(done_topic: &str) -> Vec<u8> {
    let encode = |plain: &[u8]| {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(plain).unwrap();
        w.into_inner().unwrap()
    };
    let framed = encode(&b"NOP\n".repeat(16 * 1024));
    let (stream_id, chunk) = framed.split_at(10);
    let mut bomb = stream_id.to_vec();
    while bomb.len() < 1_000_000 {
        bomb.extend_from_slice(chunk);
    }
    let tail = encode(&with_body(&format!("PUB {done_topic}"), b"bomb done"));
    bomb.extend_from_slice(&tail[10..]);
    bomb
}

/// Sends `bomb` on `s` from a thread; true in the returned flag once the broker delivered the
/// bomb's final publish to `done` (a subscriber on the bomb's done topic).
fn run_bomb(mut s: TcpStream, bomb: Vec<u8>, mut done: RawConn) -> Arc<AtomicBool> {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    thread::spawn(move || {
        // The broker may close the connection before it took everything; that ends the write.
        let _ = s.write_all(&bomb);
        loop {
            match done.try_read_frame(Duration::from_secs(600)) {
                Ok(Frame::Message(_)) => break flag.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        drop(s);
    });
    finished
}

fn bomb_test(codec_json: &str, make: fn(&str) -> Vec<u8>, name: &str) {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "healthy");
    let mut done = RawConn::subscriber(addr, "bombdone", "c").with_label("bomb-done");
    done.rdy(1);
    let bomb = make("bombdone");
    let s = negotiated(addr, codec_json);
    let finished = run_bomb(s, bomb, done);
    let mut rss_max = 0;
    let probe = probe_round_trips(addr, "probe", &mut || {
        rss_max = rss_max.max(rss_bytes(&broker));
        !finished.load(Ordering::SeqCst)
    });
    let worst = probe.worst();
    eprintln!(
        "{name}: other client's PUB round trips: {probe}; \
         bomb fully processed during the probe: {}; broker RSS max {} MiB",
        finished.load(Ordering::SeqCst),
        rss_max / (1024 * 1024)
    );
    assert!(
        worst < OTHER_RTT_BOUND,
        "{name}: another client waited {worst:?} for an OK"
    );
    assert!(rss_max < RSS_BOUND_BYTES, "{name}: RSS {rss_max} bytes");
    assert_healthy(addr, "healthy", &mut w, &format!("after-{name}"));
}

// ---------------------------------------------------------------------------------------------
// Bounded work per turn
// ---------------------------------------------------------------------------------------------

#[test]
fn deflate_bomb_does_not_stall_other_clients() {
    bomb_test(r#""deflate":true"#, deflate_bomb, "deflate bomb");
}

#[test]
fn snappy_bomb_does_not_stall_other_clients() {
    bomb_test(r#""snappy":true"#, snappy_bomb, "snappy bomb");
}

#[test]
fn a_snappy_chunk_claiming_a_huge_block_is_refused() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "healthy");
    let mut s = negotiated(addr, r#""snappy":true"#);
    // Stream identifier, then a compressed chunk whose varint claims a 4 GiB block.
    let mut bad = b"\xff\x06\x00\x00sNaPpY".to_vec();
    bad.extend_from_slice(b"\x00\x09\x00\x00\0\0\0\0\xff\xff\xff\xff\x0f");
    s.write_all(&bad).unwrap();
    // The broker closes the connection (after its compressed `OK`); nothing else arrives.
    let mut rest = Vec::new();
    let mut chunk = [0u8; 256];
    while let Ok(n @ 1..) = s.read(&mut chunk) {
        rest.extend_from_slice(&chunk[..n]);
    }
    assert!(rest.len() < 64, "unexpected output: {rest:?}");
    assert_healthy(addr, "healthy", &mut w, "after-snappy-claim");
}

#[test]
fn command_floods_do_not_stall_other_clients() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "healthy");
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = Arc::clone(&stop);
    let mut s = TcpStream::connect(addr).unwrap();
    let flood = thread::spawn(move || {
        s.write_all(common::MAGIC_V2).unwrap();
        // 10 000 tiny commands per packet, as fast as the broker takes them.
        let packet = b"NOP\n".repeat(10_000);
        let mut sent = 0_u64;
        while !flooding.load(Ordering::SeqCst) && s.write_all(&packet).is_ok() {
            sent += 10_000;
        }
        sent
    });
    let probe = probe_round_trips(addr, "probe", &mut || true);
    stop.store(true, Ordering::SeqCst);
    let sent = flood.join().unwrap();
    let worst = probe.worst();
    eprintln!("NOP flood: other client's PUB round trips: {probe}; {sent} NOPs sent");
    assert!(sent > 100_000, "the flood did not flood ({sent} NOPs)");
    assert!(worst < OTHER_RTT_BOUND, "another client waited {worst:?}");
    assert_healthy(addr, "healthy", &mut w, "after-flood");
}

// ---------------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------------

/// Sends `bytes` one at a time every 200 ms (a slow-loris client) until the broker closes the
/// connection; returns how long that took and the non-heartbeat frames seen.
fn dribble_until_closed(c: &mut RawConn, bytes: &[u8]) -> (Duration, Vec<Frame>) {
    let t0 = Instant::now();
    let mut frames = Vec::new();
    let mut next = bytes.iter().cycle();
    loop {
        assert!(
            t0.elapsed() < DEADLINE + LATE,
            "[{}] still open after {:?} (frames {frames:?})",
            c.label,
            t0.elapsed()
        );
        match c.try_read_frame(Duration::from_millis(200)) {
            Err(ReadErr::Timeout) => c.send(&[*next.next().unwrap()]),
            Err(ReadErr::Closed(_)) => return (t0.elapsed(), frames),
            Ok(f) if f.is_heartbeat() => {}
            Ok(f) => frames.push(f),
            Err(e) => panic!("[{}] {e:?}", c.label),
        }
    }
}

fn assert_deadline(what: &str, took: Duration) {
    eprintln!("{what}: closed after {took:?}");
    assert!(
        took >= DEADLINE.saturating_sub(EARLY),
        "{what}: closed after only {took:?}"
    );
}

#[test]
fn half_lines_and_slow_bodies_are_closed_after_two_heartbeats() {
    let broker = Broker::start(&[SHORT_MAX_HEARTBEAT]);
    let addr = broker.tcp_addr();
    // Half a line that grows a byte at a time (never a newline): closed, no frame (nsqd:
    // "failed to read command - i/o timeout").
    let mut c = RawConn::connect(addr).with_label("half-line");
    c.send(b"PUB t");
    let (took, frames) = dribble_until_closed(&mut c, b"x");
    assert_deadline("half line", took);
    assert!(frames.is_empty(), "{frames:?}");
    // Bodies and sizes that trickle in: nsqd's error for the read that timed out.
    for (label, head, want) in [
        (
            "PUB body",
            with_body("PUB t", &[b'x'; 1000])[..20].to_vec(),
            "E_BAD_MESSAGE PUB failed to read message body",
        ),
        (
            "PUB size",
            b"PUB t\n\x00".to_vec(),
            "E_BAD_MESSAGE PUB failed to read message body size",
        ),
        (
            "IDENTIFY body",
            with_body("IDENTIFY", &[b' '; 1000])[..15].to_vec(),
            "E_BAD_BODY IDENTIFY failed to read body",
        ),
        (
            "AUTH body",
            with_body("AUTH", &[b's'; 1000])[..10].to_vec(),
            "E_BAD_BODY AUTH failed to read body",
        ),
    ] {
        let mut c = RawConn::connect(addr).with_label(label);
        c.send(&head);
        // A body's bytes keep coming; a size stays short (more bytes would complete it).
        let (took, frames) = if label == "PUB size" {
            let t0 = Instant::now();
            let frames = c.drain_until_closed(DEADLINE + LATE);
            (t0.elapsed(), frames)
        } else {
            dribble_until_closed(&mut c, b"y")
        };
        assert_deadline(label, took);
        match frames.as_slice() {
            [Frame::Error(e)] => assert_eq!(e, want, "{label}"),
            other => panic!("{label}: expected exactly {want:?}, got {other:?}"),
        }
    }
    assert_fresh_round_trip(addr, "after-slow-clients");
}

#[test]
fn connections_without_the_magic_are_closed() {
    let broker = Broker::start(&[SHORT_MAX_HEARTBEAT]);
    let addr = broker.tcp_addr();
    let mut silent = RawConn::connect_no_magic(addr).with_label("no-magic");
    let mut partial = RawConn::connect_no_magic(addr).with_label("partial-magic");
    partial.send(b"  V");
    let t0 = Instant::now();
    silent.expect_closed_within(DEADLINE + LATE);
    partial.expect_closed_within(DEADLINE + LATE);
    assert_deadline("no magic", t0.elapsed());
    assert_fresh_round_trip(addr, "after-no-magic");
}

#[test]
fn the_deadline_follows_the_negotiated_heartbeat_interval() {
    let broker = Broker::start(&["--max-heartbeat-interval=3s"]);
    let addr = broker.tcp_addr();
    let mut fast =
        RawConn::connect_identified(addr, r#"{"heartbeat_interval":1000}"#).with_label("hb-1s");
    let mut slow =
        RawConn::connect_identified(addr, r#"{"heartbeat_interval":3000}"#).with_label("hb-3s");
    let mut off =
        RawConn::connect_identified(addr, r#"{"heartbeat_interval":-1}"#).with_label("hb-off");
    let t0 = Instant::now();
    for c in [&mut fast, &mut slow, &mut off] {
        c.send(b"PUB t");
    }
    fast.expect_closed_within(Duration::from_secs(2) + LATE);
    let fast_took = t0.elapsed();
    // 2 × 3 s: still open well after the 1 s client was dropped.
    slow.expect_no_frame(Duration::from_secs(5).saturating_sub(t0.elapsed()));
    slow.expect_closed_within(Duration::from_secs(1) + LATE);
    let slow_took = t0.elapsed();
    eprintln!(
        "deadline: heartbeat 1 s closed after {fast_took:?}, heartbeat 3 s after {slow_took:?}"
    );
    assert!(fast_took >= Duration::from_millis(1500), "{fast_took:?}");
    assert!(slow_took >= Duration::from_secs(5), "{slow_took:?}");
    // Heartbeats disabled: no deadline (nsqd); the command still completes later.
    off.send(b"\n\x00\x00\x00\x01x");
    off.expect_ok();
    // More than the negotiated maximum is nsqd's IDENTIFY error.
    let mut too_long = RawConn::connect(addr);
    too_long.identify(r#"{"heartbeat_interval":3001}"#);
    too_long.expect_fatal("E_BAD_BODY IDENTIFY heartbeat interval (3001) is invalid");
    assert_fresh_round_trip(addr, "after-negotiated-deadlines");
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_its_messages_requeued() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr();
    // 1 s heartbeats: 1 s write deadline. This consumer never reads its socket.
    let mut stuck = RawConn::connect_identified(addr, r#"{"heartbeat_interval":1000}"#)
        .with_label("not-reading");
    stuck.sub("stall", "c");
    stuck.rdy(40);
    // 40 MiB of messages: far more than the socket buffers hold.
    let body = vec![b'm'; 1024 * 1024];
    let mut p = RawConn::connect(addr).with_label("publisher");
    for _ in 0..40 {
        p.publish("stall", &body);
    }
    let t0 = Instant::now();
    // The broker drops it (the write deadline) and requeues its messages for another consumer.
    let mut next = RawConn::subscriber(addr, "stall", "c").with_label("next-consumer");
    next.rdy(40);
    let got = next.consume_fin(40);
    eprintln!(
        "non-reading consumer: its 40 messages redelivered after {:?}",
        t0.elapsed()
    );
    assert!(got.iter().all(|m| m.body.len() == body.len()));
    assert!(
        got.iter().any(|m| m.attempts >= 2),
        "some messages were in flight to the stuck client first"
    );
}

// ---------------------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------------------

/// GET `path` on the broker's HTTP port: the status and body.
fn http_get(broker: &Broker, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", broker.http_addr());
    match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("GET {path}: {e}\n{}", broker.logs()),
    }
}

/// Opens protocol connections until the broker refuses some; returns those it served.
fn connect_until_refused(addr: SocketAddr, tries: usize) -> (Vec<RawConn>, usize) {
    let mut served = Vec::new();
    let mut refused = 0;
    for i in 0..tries {
        let mut c = RawConn::connect(addr).with_label(&format!("fd-{i}"));
        c.pub_("fd", b"x");
        match c.try_read_frame(Duration::from_secs(5)) {
            Ok(Frame::Response(ok)) if ok == b"OK" => served.push(c),
            Err(ReadErr::Closed(_)) => refused += 1,
            other => panic!("connection {i}: {other:?}"),
        }
        if refused >= 20 {
            break;
        }
    }
    (served, refused)
}

#[test]
fn connections_past_the_descriptor_limit_are_refused_and_http_keeps_answering() {
    let broker = Broker::start_with_nofile(256, &[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "healthy");
    let (served, refused) = connect_until_refused(addr, 400);
    eprintln!(
        "fd limit 256: {} connections served, {refused} refused",
        served.len() + 1
    );
    assert!(served.len() >= 100, "only {} served", served.len());
    assert!(refused >= 20, "none refused past the limit");
    assert_eq!(http_get(&broker, "/ping"), (200, "OK".to_owned()));
    let (status, body) = http_get(&broker, "/stats?format=json");
    assert_eq!(status, 200, "{body}");
    let logs = broker.logs();
    assert!(
        logs.contains("refusing a connection (connection limit reached"),
        "{logs}"
    );
    assert!(
        logs.contains("file descriptor limit (RLIMIT_NOFILE): soft 256"),
        "{logs}"
    );
    // The watcher (admitted before the flood) is served; once the flood leaves, so is anyone.
    drop(served);
    common::wait_for(
        Duration::from_secs(10),
        "a new connection is served",
        || {
            let mut c = RawConn::connect(addr);
            c.pub_("fd", b"x");
            matches!(
                c.try_read_frame(Duration::from_secs(2)),
                Ok(Frame::Response(_))
            )
            .then_some(())
        },
    );
    assert_healthy(addr, "healthy", &mut w, "after-fd-flood");
}

#[test]
fn an_http_flood_is_refused_past_its_share_and_the_protocol_keeps_working() {
    let broker = Broker::start_with_nofile(256, &[]);
    let addr = broker.tcp_addr();
    let mut w = watcher(addr, "healthy");
    // HTTP clients may hold 32 of 256 descriptors; the rest of the flood is accepted and closed.
    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(broker.http_addr()).ok())
        .collect();
    common::wait_for(Duration::from_secs(10), "an HTTP refusal", || {
        broker
            .logs()
            .contains("HTTP: refusing a connection (connection limit reached")
            .then_some(())
    });
    let ticks_before = cpu_ticks(&broker);
    let t0 = Instant::now();
    // Knock on the full door a while longer.
    for _ in 0..50 {
        let _ = TcpStream::connect(broker.http_addr());
    }
    thread::sleep(Duration::from_secs(1));
    let ticks = cpu_ticks(&broker) - ticks_before;
    let refusal_lines = broker.logs().matches("refusing a connection").count();
    eprintln!(
        "HTTP flood: {ticks} CPU ticks in {:?}; {refusal_lines} refusal log lines",
        t0.elapsed()
    );
    // 100 ticks = 1 s of CPU: a spinning accept loop would use all of it.
    assert!(
        ticks < 50,
        "the broker used {ticks} CPU ticks refusing connections"
    );
    assert!(
        refusal_lines <= 3,
        "refusals are rate-limited: {refusal_lines} lines"
    );
    // Protocol clients and the topics' files still have their descriptors.
    assert_healthy(addr, "healthy", &mut w, "during-http-flood");
    drop(idle);
    let url = format!("http://{}/ping", broker.http_addr());
    common::wait_for(Duration::from_secs(10), "/ping answers again", || {
        ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .ok()
            .map(|r| r.status())
            .filter(|s| *s == 200)
    });
    assert!(!broker.logs().contains("poisoned"), "{}", broker.logs());
}
