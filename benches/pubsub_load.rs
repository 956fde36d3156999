//! Pub/sub load against the real `ringsq` binary, like NSQ's `bench_writer` / `bench_reader`, with
//! the load generator's own ceiling measured in the same run.
//!
//! Publishers send MPUB batches of 200 messages of 100 bytes (each waits for its `OK`); consumers
//! SUB with RDY 2500 and FIN everything they get. Three phases per broker setting:
//!
//! - `publish_only`: publishers alone for the phase time;
//! - `publish_and_consume`: publishers and consumers at once (the consumers' rate is what counts);
//! - `drain`: a backlog of `RINGSQ_BENCH_DRAIN_MESSAGES` (default 5 M) is published first with no
//!   consumer, then the consumers alone take all of it.
//!
//! Settings: nsqd's defaults, `--mem-queue-size 0`, `--mem-queue-size 0 --ack-after-sync`, and
//! `tls_defaults` (the defaults with every client upgraded to TLS by IDENTIFY `tls_v1`, with a
//! certificate generated for the run: the cost of TLS beside `defaults`).
//!
//! The **ceiling** is a bare server inside this process that speaks only the wire protocol: it
//! answers every MPUB with `OK` and streams ready-made message frames into each consumer's RDY
//! window. The same client code runs against it first, so every broker figure is printed beside
//! what the client itself can do (`of_ceiling`). For each broker phase: msgs/s, the broker's CPU
//! µs per message (CPU seconds of the broker process / messages of the phase), the broker's peak
//! RSS during the phase (`VmHWM`, reset at the phase start through `/proc/<pid>/clear_refs`),
//! and for publishing the MPUB → OK latency percentiles.
//!
//! `shards` (ringsq's `--shards`): publish + consume over 1 and over 4 topics (4 publishers and 4
//! consumers spread over them; topic names chosen to spread evenly over the shards, as many
//! topics do), defaults and `--mem-queue-size 0`, each with `--shards 1` and with the default
//! (one shard per CPU), beside the client ceiling of the same shape; `broker_cores` is the
//! broker's CPU seconds over wall seconds. Then `forward`: the CPU cost of one MPUB batch
//! forwarded to the shard that owns its topic (see [`run_forward`]).
//!
//! `cargo bench --bench pubsub_load [-- FILTER]` (FILTER selects settings by name, `shards`
//! included; `ceiling` always runs). Environment: `RINGSQ_BENCH_SECONDS` (per timed phase, default 5),
//! `RINGSQ_BENCH_PUBLISHERS` (default 2), `RINGSQ_BENCH_CONSUMERS` (default 2),
//! `RINGSQ_BENCH_DRAIN_MESSAGES` (default 5 000 000), `RINGSQ_BENCH_BINARY` (another broker
//! binary that takes nsqd's flags, e.g. an older ringsq, measured the same way). No assertion on
//! speed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A client configuration for TLS connections (`None`: plain TCP).
type ClientTls = Option<Arc<rustls::ClientConfig>>;

const MSG_BYTES: usize = 100;
const BATCH: usize = 200;
const RDY: u64 = 2500;
/// How long a drain may take before the bench gives up on it (and says so).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// The broker under test
// ---------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    /// Its HTTP listener (`/metrics`: socket writes).
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(flags: &[String]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("ringsq-bench-")
            .tempdir_in(bench_dir())
            .unwrap();
        let binary = std::env::var("RINGSQ_BENCH_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ringsq").to_owned());
        let mut child = Command::new(binary)
            .args([
                "--tcp-address",
                "127.0.0.1:0",
                "--http-address",
                "127.0.0.1:0",
                "--data-path",
            ])
            .arg(dir.path())
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut http) = (None, None);
        while addr.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("ringsq exited before listening")
                .unwrap();
            if let Some(rest) = line.split("TCP: listening on ").nth(1) {
                addr = Some(rest.trim().parse().unwrap());
            }
            if let Some(rest) = line.split("HTTP: listening on ").nth(1) {
                http = Some(rest.trim().parse().unwrap());
            }
        }
        // Keep draining stderr so the broker never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr: addr.unwrap(),
            http: http.unwrap(),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker's writes to client sockets so far (`ringsq_socket_writes_total` in `/metrics`;
/// `None` for a broker without it).
fn socket_writes(http: SocketAddr) -> Option<u64> {
    let mut s = TcpStream::connect(http).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: b\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ringsq_socket_writes_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU seconds and peak RSS of a process, read from `/proc`.
#[derive(Clone, Copy)]
struct Usage {
    cpu_secs: f64,
    peak_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Usage {
        cpu_secs: (ticks(11) + ticks(12)) / 100.0,
        peak_kib,
    }
}

/// Resets the peak RSS (`VmHWM`) so the next reading is the peak of the phase that follows.
fn reset_peak(pid: u32) {
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        eprintln!("pubsub_load: cannot reset VmHWM of {pid}: {e}");
    }
}

/// Where the data directories go: the same filesystem as the project (not a tmpfs).
fn bench_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// The ceiling: a bare server that only speaks the wire protocol
// ---------------------------------------------------------------------------------------------

/// A consumer's RDY window as the bare server tracks it.
#[derive(Default)]
struct Window {
    /// (RDY, in flight).
    state: Mutex<(u64, u64)>,
    changed: Condvar,
}

/// Starts the bare server on 127.0.0.1:0; it runs until the process ends.
fn start_ceiling() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || ceiling_conn(stream));
        }
    });
    addr
}

fn write_frame(out: &mut Vec<u8>, kind: i32, data: &[u8]) {
    out.extend_from_slice(&u32::try_from(4 + data.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(data);
}

/// One connection to the bare server: commands in, `OK`s and message frames out.
fn ceiling_conn(stream: TcpStream) {
    stream.set_nodelay(true).unwrap();
    let mut r = BufReader::with_capacity(256 * 1024, stream.try_clone().unwrap());
    let mut w = stream;
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).is_err() {
        return;
    }
    let window = Arc::new(Window::default());
    let mut ok = Vec::new();
    write_frame(&mut ok, 0, b"OK");
    let mut line = Vec::new();
    let mut body = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            break;
        }
        let cmd = line.split(|b| *b == b' ' || *b == b'\n').next().unwrap();
        match cmd {
            b"PUB" | b"MPUB" => {
                let mut len = [0u8; 4];
                if r.read_exact(&mut len).is_err() {
                    break;
                }
                body.resize(usize::try_from(u32::from_be_bytes(len)).unwrap(), 0);
                if r.read_exact(&mut body).is_err() || w.write_all(&ok).is_err() {
                    break;
                }
            }
            b"SUB" => {
                if w.write_all(&ok).is_err() {
                    break;
                }
                let (w2, window) = (w.try_clone().unwrap(), Arc::clone(&window));
                thread::spawn(move || ceiling_stream(w2, &window));
            }
            b"RDY" => {
                let n = std::str::from_utf8(&line[4..line.len() - 1])
                    .unwrap()
                    .parse()
                    .unwrap();
                window.state.lock().unwrap().0 = n;
                window.changed.notify_one();
            }
            b"FIN" => {
                let mut st = window.state.lock().unwrap();
                st.1 = st.1.saturating_sub(1);
                if st.1 + 64 <= st.0 {
                    window.changed.notify_one();
                }
            }
            _ => {}
        }
    }
    window.state.lock().unwrap().0 = u64::MAX; // tells the streamer to stop
    window.changed.notify_one();
}

/// Streams ready-made message frames while the consumer's window has room.
fn ceiling_stream(mut w: TcpStream, window: &Window) {
    const BLOCK: u64 = 64;
    let mut frame = Vec::new();
    frame.extend_from_slice(&1_700_000_000_000_000_000i64.to_be_bytes());
    frame.extend_from_slice(&1u16.to_be_bytes());
    frame.extend_from_slice(b"0123456789abcdef");
    frame.extend_from_slice(&[b'x'; MSG_BYTES]);
    let mut block = Vec::new();
    for _ in 0..BLOCK {
        write_frame(&mut block, 2, &frame);
    }
    let one = block.len() / usize::try_from(BLOCK).unwrap();
    loop {
        let n = {
            let mut st = window.state.lock().unwrap();
            loop {
                if st.0 == u64::MAX {
                    return;
                }
                let room = st.0.saturating_sub(st.1).min(BLOCK);
                if room > 0 && (room == BLOCK || st.1 == 0) {
                    st.1 += room;
                    break room;
                }
                st = window.changed.wait(st).unwrap();
            }
        };
        let bytes = &block[..one * usize::try_from(n).unwrap()];
        if w.write_all(bytes).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator (the same code against the broker and the ceiling)
// ---------------------------------------------------------------------------------------------

/// A client connection: plain TCP, or TLS after IDENTIFY `tls_v1`.
enum Link {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}

/// A certificate for the run: the broker's flags and a client configuration that trusts it.
struct TlsSetup {
    flags: Vec<String>,
    client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl TlsSetup {
    fn new() -> TlsSetup {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsSetup {
            flags: vec![
                format!("--tls-cert={}", cert_path.display()),
                format!("--tls-key={}", key_path.display()),
            ],
            client: Arc::new(client),
            _dir: dir,
        }
    }
}

fn connect(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Link {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"  V2").unwrap();
    let Some(config) = tls else {
        return Link::Plain(s);
    };
    let identify = br#"{"feature_negotiation":true,"tls_v1":true}"#;
    s.write_all(b"IDENTIFY\n").unwrap();
    s.write_all(&u32::try_from(identify.len()).unwrap().to_be_bytes())
        .unwrap();
    s.write_all(identify).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut s, &mut buf).unwrap(), 0, "IDENTIFY");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, s);
    assert_eq!(read_frame(&mut tls, &mut buf).unwrap(), 0, "TLS OK");
    Link::Tls(Box::new(tls))
}

fn mpub_command(topic: &str) -> Vec<u8> {
    let body = vec![b'x'; MSG_BYTES];
    let mut payload = Vec::with_capacity(4 + BATCH * (4 + MSG_BYTES));
    payload.extend_from_slice(&u32::try_from(BATCH).unwrap().to_be_bytes());
    for _ in 0..BATCH {
        payload.extend_from_slice(&u32::try_from(MSG_BYTES).unwrap().to_be_bytes());
        payload.extend_from_slice(&body);
    }
    let mut cmd = format!("MPUB {topic}\n").into_bytes();
    cmd.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    cmd.extend_from_slice(&payload);
    cmd
}

fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<i32> {
    let mut hdr = [0u8; 8];
    r.read_exact(&mut hdr)?;
    let size = usize::try_from(u32::from_be_bytes(hdr[0..4].try_into().unwrap())).unwrap();
    buf.resize(size - 4, 0);
    r.read_exact(buf)?;
    Ok(i32::from_be_bytes(hdr[4..8].try_into().unwrap()))
}

/// One publisher: MPUB, wait for OK, repeat until `stop` or until `budget` messages are
/// claimed. Returns (messages, latency histogram).
fn publisher(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    topics: &[String],
    stop: &AtomicBool,
    budget: &AtomicU64,
) -> (u64, Histogram<u64>) {
    let mut s = connect(addr, tls);
    let cmds: Vec<Vec<u8>> = topics.iter().map(|t| mpub_command(t)).collect();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut buf = Vec::new();
    let mut sent = 0;
    let batch = BATCH as u64;
    while !stop.load(Ordering::Relaxed) {
        let claimed = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(batch)
        });
        if claimed.is_err() {
            break;
        }
        let t = Instant::now();
        let cmd = &cmds[usize::try_from(sent / batch).unwrap() % cmds.len()];
        s.write_all(cmd).unwrap();
        loop {
            let kind = read_frame(&mut s, &mut buf).unwrap();
            assert_ne!(kind, 1, "publish failed: {}", String::from_utf8_lossy(&buf));
            if buf != b"_heartbeat_" {
                break;
            }
        }
        hist.record(u64::try_from(t.elapsed().as_micros()).unwrap())
            .unwrap();
        sent += batch;
    }
    (sent, hist)
}

/// One consumer: SUB, RDY 2500, FIN everything (FINs written in batches). Counts into
/// `received`; stops when `stop` is set.
fn consumer(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    topic: &str,
    stop: &AtomicBool,
    received: &AtomicU64,
) {
    let mut s = connect(addr, tls);
    write!(s, "SUB {topic} bench\nRDY {RDY}\n").unwrap();
    match &s {
        Link::Plain(t) => t.set_read_timeout(Some(Duration::from_millis(100))),
        Link::Tls(t) => t.sock.set_read_timeout(Some(Duration::from_millis(100))),
    }
    .unwrap();
    // FINs are written through the reader's stream (a TLS stream cannot be split).
    let mut r = BufReader::with_capacity(256 * 1024, s);
    let mut buf = Vec::new();
    let mut fins = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) {
        match read_frame(&mut r, &mut buf) {
            Ok(2) => {
                fins.extend_from_slice(b"FIN ");
                fins.extend_from_slice(&buf[10..26]);
                fins.push(b'\n');
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                if buf == b"_heartbeat_" {
                    fins.extend_from_slice(b"NOP\n");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("consumer: {e}"),
        }
        // Flush FINs when nothing more is buffered (or plenty are pending).
        if !fins.is_empty() && (r.buffer().is_empty() || fins.len() > 32 * 1024) {
            r.get_mut().write_all(&fins).unwrap();
            fins.clear();
        }
    }
}

/// What one phase did.
struct Phase {
    published: u64,
    consumed: u64,
    secs: f64,
    hist: Histogram<u64>,
    /// Broker CPU seconds and peak RSS during the phase (`None` for the ceiling).
    broker: Option<Usage>,
    /// The broker's socket writes during the phase.
    writes: Option<u64>,
}

/// Publishers (and consumers, if any) for `secs`, or until `budget` messages are published
/// and, with consumers, `consume_target` are received.
struct Load<'a> {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    pid: Option<u32>,
    /// The broker's HTTP address (socket writes per message), `None` for the ceiling.
    http: Option<SocketAddr>,
    /// Publisher and consumer `i` use topic `i % topics.len()`.
    topics: &'a [String],
    /// Every publisher sends its MPUBs to every topic in turn instead.
    publish_everywhere: bool,
    publishers: u64,
    consumers: u64,
}

impl Load<'_> {
    fn topic(&self, i: u64) -> String {
        let n = u64::try_from(self.topics.len()).unwrap();
        self.topics[usize::try_from(i % n).unwrap()].clone()
    }

    /// The topics publisher `i` sends to.
    fn publisher_topics(&self, i: u64) -> Vec<String> {
        if self.publish_everywhere {
            self.topics.to_vec()
        } else {
            vec![self.topic(i)]
        }
    }

    fn run(&self, secs: Option<u64>, budget: u64, consume_target: Option<u64>) -> Phase {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(AtomicU64::new(budget));
        let before = self.pid.map(|pid| {
            reset_peak(pid);
            usage(pid)
        });
        let writes_before = self.http.and_then(socket_writes);
        let start = Instant::now();
        let consumer_threads: Vec<_> = (0..self.consumers)
            .map(|i| {
                let (stop, received, topic) =
                    (Arc::clone(&stop), Arc::clone(&received), self.topic(i));
                let (addr, tls) = (self.addr, self.tls.clone());
                thread::spawn(move || consumer(addr, tls.as_ref(), &topic, &stop, &received))
            })
            .collect();
        let publisher_threads: Vec<_> = (0..self.publishers)
            .map(|i| {
                let (stop, budget) = (Arc::clone(&stop), Arc::clone(&budget));
                let (addr, tls, topics) = (self.addr, self.tls.clone(), self.publisher_topics(i));
                thread::spawn(move || publisher(addr, tls.as_ref(), &topics, &stop, &budget))
            })
            .collect();
        wait_phase(secs, consume_target, &received, &budget, start);
        stop.store(true, Ordering::Relaxed);
        let mut hist = Histogram::<u64>::new(3).unwrap();
        let mut published = 0;
        for t in publisher_threads {
            let (n, h) = t.join().unwrap();
            published += n;
            hist.add(h).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let consumed = received.load(Ordering::Relaxed);
        let broker = self.pid.zip(before).map(|(pid, before)| {
            let after = usage(pid);
            Usage {
                cpu_secs: after.cpu_secs - before.cpu_secs,
                peak_kib: after.peak_kib,
            }
        });
        for t in consumer_threads {
            t.join().unwrap();
        }
        let writes = writes_before
            .zip(self.http.and_then(socket_writes))
            .map(|(before, after)| after - before);
        Phase {
            published,
            consumed,
            secs,
            hist,
            broker,
            writes,
        }
    }
}

/// Waits for the phase's end: `secs`, or the consume target, or the publish budget spent.
fn wait_phase(
    secs: Option<u64>,
    consume_target: Option<u64>,
    received: &AtomicU64,
    budget: &AtomicU64,
    start: Instant,
) {
    loop {
        thread::sleep(Duration::from_millis(5));
        let elapsed = start.elapsed();
        let timed_out = secs.map_or(elapsed > DRAIN_TIMEOUT, |s| elapsed.as_secs() >= s);
        let done = match consume_target {
            Some(n) => received.load(Ordering::Relaxed) >= n,
            None => secs.is_none() && budget.load(Ordering::Relaxed) < BATCH as u64,
        };
        if timed_out || done {
            if timed_out && secs.is_none() {
                eprintln!("pubsub_load: phase gave up after {DRAIN_TIMEOUT:?}");
            }
            return;
        }
    }
}

/// msgs/s of a phase: the consumers' rate when there are consumers, else the publishers'.
fn rate(p: &Phase) -> f64 {
    let n = if p.consumed > 0 {
        p.consumed
    } else {
        p.published
    };
    n as f64 / p.secs
}

fn print_phase(setting: &str, phase: &str, p: &Phase, ceiling: Option<f64>) {
    let pub_rate = p.published as f64 / p.secs;
    let sub_rate = p.consumed as f64 / p.secs;
    let of_ceiling = ceiling.map_or_else(|| "-".to_owned(), |c| format!("{:.2}", rate(p) / c));
    let (cpu, cores, peak) = p.broker.map_or_else(
        || ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        |u| {
            let msgs = p.consumed.max(p.published).max(1) as f64;
            (
                format!("{:.2}", u.cpu_secs * 1e6 / msgs),
                format!("{:.2}", u.cpu_secs / p.secs),
                format!("{:.1}", u.peak_kib as f64 / 1024.0),
            )
        },
    );
    // Socket writes per message delivered (replies to publishers are writes too).
    let writes = p.writes.map_or_else(
        || "-".to_owned(),
        |w| {
            format!(
                "{:.4}",
                w as f64 / p.consumed.max(p.published).max(1) as f64
            )
        },
    );
    let latency = if p.published > 0 {
        format!(
            " pub_p50_us={} pub_p99_us={}",
            p.hist.value_at_quantile(0.50),
            p.hist.value_at_quantile(0.99)
        )
    } else {
        String::new()
    };
    println!(
        "pubsub_load setting={setting} phase={phase} msgs_per_s={:.0} of_ceiling={of_ceiling} \
         pub_msgs_per_s={pub_rate:.0} sub_msgs_per_s={sub_rate:.0}{latency} \
         broker_cpu_us_per_msg={cpu} broker_cores={cores} broker_peak_rss_mib={peak} \
         writes_per_msg={writes} secs={:.1}",
        rate(p),
        p.secs,
    );
}

/// Where the load goes: the broker's (or the ceiling's) address, its pid and HTTP address (`None`
/// for the ceiling), and the clients' TLS.
struct Target {
    addr: SocketAddr,
    pid: Option<u32>,
    http: Option<SocketAddr>,
    tls: ClientTls,
}

/// The three phases against one target; returns their rates (for the ceiling).
fn run_target(setting: &str, target: Target, cfg: &Config, ceiling: Option<&[f64; 3]>) -> [f64; 3] {
    let Target {
        addr,
        pid,
        http,
        tls,
    } = target;
    let names = ["bench_pub", "bench_pubsub", "bench_drain"].map(|t| vec![t.to_owned()]);
    let load = |topic: &'static str, publishers, consumers| Load {
        addr,
        tls: tls.clone(),
        pid,
        http,
        topics: names.iter().find(|n| n[0] == topic).unwrap(),
        publish_everywhere: false,
        publishers,
        consumers,
    };
    let p = load("bench_pub", cfg.publishers, 0).run(Some(cfg.secs), u64::MAX, None);
    print_phase(setting, "publish_only", &p, ceiling.map(|c| c[0]));
    let pub_only = rate(&p);
    let p = load("bench_pubsub", cfg.publishers, cfg.consumers).run(Some(cfg.secs), u64::MAX, None);
    print_phase(setting, "publish_and_consume", &p, ceiling.map(|c| c[1]));
    let pubsub = rate(&p);
    // The backlog: published with no consumer, then drained by the consumers alone.
    if pid.is_some() {
        let fill = load("bench_drain", cfg.publishers, 0).run(None, cfg.drain, None);
        print_phase(setting, "drain_fill", &fill, None);
    }
    let p = load("bench_drain", 0, cfg.consumers).run(None, 0, Some(cfg.drain));
    print_phase(setting, "drain", &p, ceiling.map(|c| c[2]));
    [pub_only, pubsub, rate(&p)]
}

struct Config {
    secs: u64,
    publishers: u64,
    consumers: u64,
    drain: u64,
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects settings by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cfg = Config {
        secs: env_u64("RINGSQ_BENCH_SECONDS", 5),
        publishers: env_u64("RINGSQ_BENCH_PUBLISHERS", 2),
        consumers: env_u64("RINGSQ_BENCH_CONSUMERS", 2),
        drain: env_u64("RINGSQ_BENCH_DRAIN_MESSAGES", 5_000_000) / BATCH as u64 * BATCH as u64,
    };
    println!(
        "pubsub_load: {} publishers x MPUB {BATCH} x {MSG_BYTES} B, {} consumer(s) RDY {RDY} \
         FIN all, {} s per timed phase, drain of {} messages, data under {}",
        cfg.publishers,
        cfg.consumers,
        cfg.secs,
        cfg.drain,
        bench_dir().display()
    );
    let ceiling_addr = start_ceiling();
    let ceiling = run_target(
        "ceiling",
        Target {
            addr: ceiling_addr,
            pid: None,
            http: None,
            tls: None,
        },
        &cfg,
        None,
    );
    let tls = TlsSetup::new();
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let settings: [(&str, Vec<String>, ClientTls); 4] = [
        ("defaults", Vec::new(), None),
        (
            "mem_queue_size_0",
            strings(&["--mem-queue-size", "0"]),
            None,
        ),
        (
            "mem_queue_size_0_ack_after_sync",
            strings(&["--mem-queue-size", "0", "--ack-after-sync"]),
            None,
        ),
        // nsqd's defaults with every client upgraded to TLS: the cost of TLS beside `defaults`.
        (
            "tls_defaults",
            tls.flags.clone(),
            Some(Arc::clone(&tls.client)),
        ),
    ];
    for (name, flags, client_tls) in settings {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let server = Server::start(&flags);
        let target = Target {
            addr: server.addr,
            pid: Some(server.child.id()),
            http: Some(server.http),
            tls: client_tls,
        };
        run_target(name, target, &cfg, Some(&ceiling));
    }
    if filter.as_ref().is_none_or(|f| "lone".contains(f.as_str())) {
        run_lone(&cfg);
    }
    if filter
        .as_ref()
        .is_none_or(|f| "shards".contains(f.as_str()))
    {
        run_shards(ceiling_addr, &cfg);
        run_forward(&cfg);
    }
}

// ---------------------------------------------------------------------------------------------
// Every core: `--shards 1` beside the default (one shard per CPU)
// ---------------------------------------------------------------------------------------------

/// Publishers and consumers of the `shards` runs (spread over the topics).
const SHARD_RUN_CLIENTS: u64 = 4;

/// `n` topic names spread evenly over `shards` shards (as many topics hash onto a shard).
fn spread_names(prefix: &str, n: usize, shards: usize) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for i in 0.. {
        let name = format!("{prefix}_{i}");
        let owner = ringsq::shard::owner(&name, shards);
        let on_owner = names
            .iter()
            .filter(|t| ringsq::shard::owner(t.as_str(), shards) == owner)
            .count();
        if on_owner < n.div_ceil(shards) {
            names.push(name);
        }
        if names.len() == n {
            return names;
        }
    }
    unreachable!("names run out")
}

/// Publish + consume over 1 and 4 topics, defaults and `--mem-queue-size 0`, with `--shards 1`
/// and with the default shard count, each beside the client's ceiling for the same shape.
fn run_shards(ceiling_addr: SocketAddr, cfg: &Config) {
    let default_shards = ringsq::shard::count(0);
    println!(
        "pubsub_load: shards: {SHARD_RUN_CLIENTS} publishers and {SHARD_RUN_CLIENTS} consumers \
         spread over the topics, --shards 1 beside the default ({default_shards} here)"
    );
    for topics in [1, 4] {
        let names = spread_names(&format!("bench_topics{topics}"), topics, default_shards);
        let load = |addr, pid, http| Load {
            addr,
            tls: None,
            pid,
            http,
            topics: &names,
            publish_everywhere: false,
            publishers: SHARD_RUN_CLIENTS,
            consumers: SHARD_RUN_CLIENTS,
        };
        let p = load(ceiling_addr, None, None).run(Some(cfg.secs), u64::MAX, None);
        let setting = format!("ceiling_topics{topics}");
        print_phase(&setting, "publish_and_consume", &p, None);
        let ceiling = rate(&p);
        for (name, flags) in [
            ("defaults", &[][..]),
            ("mem_queue_size_0", &["--mem-queue-size", "0"][..]),
        ] {
            for shards in [1, default_shards] {
                let mut flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
                flags.extend(["--shards".to_owned(), shards.to_string()]);
                let server = Server::start(&flags);
                let p = load(server.addr, Some(server.child.id()), Some(server.http)).run(
                    Some(cfg.secs),
                    u64::MAX,
                    None,
                );
                let setting = format!("{name}_topics{topics}_shards{shards}");
                print_phase(&setting, "publish_and_consume", &p, Some(ceiling));
            }
        }
    }
}

/// The cost of forwarding a publish to another shard: every publisher sends its MPUBs to one
/// topic per shard in turn (so `(N-1)/N` of its batches go to another shard, wherever it was
/// accepted), with `--shards N` and with `--shards 1`; the extra broker CPU per message, over
/// the forwarded share, times the batch size, is the cost of one forwarded batch (an upper
/// bound: it includes whatever else a second runtime costs).
fn run_forward(cfg: &Config) {
    let shards = ringsq::shard::count(0).max(2);
    let names = spread_names("bench_forward", shards, shards);
    let mut cpu_per_msg = Vec::new();
    for n in [1, shards] {
        let server = Server::start(&["--shards".to_owned(), n.to_string()]);
        let load = Load {
            addr: server.addr,
            tls: None,
            pid: Some(server.child.id()),
            http: Some(server.http),
            topics: &names,
            publish_everywhere: true,
            publishers: SHARD_RUN_CLIENTS,
            consumers: 0,
        };
        let p = load.run(Some(cfg.secs), u64::MAX, None);
        print_phase(&format!("forward_shards{n}"), "publish_only", &p, None);
        let cpu = p.broker.map_or(0.0, |u| u.cpu_secs);
        cpu_per_msg.push(cpu * 1e6 / p.published.max(1) as f64);
    }
    let forwarded = (shards - 1) as f64 / shards as f64;
    let per_batch = (cpu_per_msg[1] - cpu_per_msg[0]) * BATCH as f64 / forwarded;
    println!(
        "pubsub_load setting=forward phase=cost shards={shards} forwarded_share={forwarded:.2} \
         extra_cpu_us_per_msg={:.3} forward_cpu_us_per_batch_of_{BATCH}={per_batch:.1}",
        cpu_per_msg[1] - cpu_per_msg[0]
    );
}

// ---------------------------------------------------------------------------------------------
// A lone message: publish → delivery latency at a light load
// ---------------------------------------------------------------------------------------------

/// Messages of the lone-message phase, one every [`LONE_INTERVAL`] (20 msgs/s).
const LONE_MESSAGES: u64 = 100;
const LONE_INTERVAL: Duration = Duration::from_millis(50);

/// One publisher sends one PUB every 50 ms (20 msgs/s) to a consumer with RDY 50 that FINs
/// each: the publish → delivery latency of a message that has the broker to itself (nsqd
/// holds it for its flush ticker; a broker that waits for `--output-buffer-timeout` holds it
/// 250 ms by default). With the defaults, and with `--output-buffer-timeout=2s`.
fn run_lone(cfg: &Config) {
    let _ = cfg;
    for (name, flags) in [
        ("lone_defaults", &[][..]),
        (
            "lone_output_buffer_timeout_2s",
            &["--output-buffer-timeout", "2s"][..],
        ),
    ] {
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let server = Server::start(&flags);
        let base = Instant::now();
        let mut c = connect(server.addr, None);
        write!(c, "SUB lone bench\nRDY 50\n").unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut c, &mut buf).unwrap(), 0, "SUB OK");
        let addr = server.addr;
        let publisher = thread::spawn(move || {
            let mut p = connect(addr, None);
            let mut buf = Vec::new();
            for _ in 0..LONE_MESSAGES {
                let sent = u64::try_from(base.elapsed().as_nanos()).unwrap();
                let body = sent.to_be_bytes();
                p.write_all(b"PUB lone\n").unwrap();
                p.write_all(&u32::try_from(body.len()).unwrap().to_be_bytes())
                    .unwrap();
                p.write_all(&body).unwrap();
                assert_eq!(read_frame(&mut p, &mut buf).unwrap(), 0, "PUB OK");
                thread::sleep(LONE_INTERVAL);
            }
        });
        let mut hist = Histogram::<u64>::new(3).unwrap();
        while hist.len() < LONE_MESSAGES {
            if read_frame(&mut c, &mut buf).unwrap() != 2 {
                continue;
            }
            let now = u64::try_from(base.elapsed().as_nanos()).unwrap();
            let sent = u64::from_be_bytes(buf[26..34].try_into().unwrap());
            hist.record((now - sent) / 1000).unwrap();
            c.write_all(b"FIN ").unwrap();
            c.write_all(&buf[10..26]).unwrap();
            c.write_all(b"\n").unwrap();
        }
        publisher.join().unwrap();
        println!(
            "pubsub_load setting={name} phase=lone msgs={LONE_MESSAGES} rate_per_s=20 \
             publish_to_delivery_p50_us={} p99_us={} max_us={}",
            hist.value_at_quantile(0.50),
            hist.value_at_quantile(0.99),
            hist.max()
        );
    }
}
