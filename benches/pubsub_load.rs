//! Pub/sub load against the real `ringsq` binary, like NSQ's `bench_writer` / `bench_reader`:
//! N publishers sending MPUB batches of 200 messages of 100 bytes (each waits for its `OK`),
//! M consumers with RDY 2500 finishing everything they get.
//!
//! For each broker setting it runs publish-only, then publish and consume at the same time, and
//! prints msgs/s, MB/s, p50/p99 publish (MPUB → OK) latency, the consumer's rate, the backlog at
//! the end, and the broker's CPU and RSS. The first setting, nsqd's defaults
//! (`--mem-queue-size 10000`, messages may live in memory), is the baseline measured in the same
//! run; the durable settings are printed beside it.
//!
//! `tls_defaults` is nsqd's defaults with every client connection upgraded to TLS by IDENTIFY
//! `tls_v1` (a certificate generated for the run): the cost of TLS, beside the baseline.
//!
//! `cargo bench --bench pubsub_load`; environment: `RINGSQ_BENCH_SECONDS` (per phase, default 5),
//! `RINGSQ_BENCH_PUBLISHERS` (default 4), `RINGSQ_BENCH_CONSUMERS` (default 1).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MSG_BYTES: usize = 100;
const BATCH: usize = 200;
const RDY: u32 = 2500;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    addr: SocketAddr,
    /// Clients connect with TLS when set.
    tls: Option<Arc<rustls::ClientConfig>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(flags: &[String], tls: Option<Arc<rustls::ClientConfig>>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("ringsq-bench-")
            .tempdir_in(bench_dir())
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringsq"))
            .args([
                "--tcp-address",
                "127.0.0.1:0",
                "--http-address",
                "",
                "--https-address",
                "",
                "--data-path",
            ])
            .arg(dir.path())
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("ringsq exited before listening")
                .unwrap();
            if let Some(rest) = line.split("TCP: listening on ").nth(1) {
                break rest.trim().parse().unwrap();
            }
        };
        // Keep draining stderr so the broker never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            tls,
            _dir: dir,
        }
    }

    /// (user+system CPU seconds, RSS now KiB, peak RSS KiB) from /proc.
    fn usage(&self) -> (f64, u64, u64) {
        let pid = self.child.id();
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
        let cpu = (ticks(11) + ticks(12)) / 100.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (cpu, kib("VmRSS:"), kib("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// One publisher: MPUB, wait for OK, repeat until `stop`. Returns (messages, latency histogram).
fn publisher(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    topic: &str,
    stop: &AtomicBool,
) -> (u64, Histogram<u64>) {
    let mut s = connect(addr, tls);
    let cmd = mpub_command(topic);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut buf = Vec::new();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(&cmd).unwrap();
        loop {
            let kind = read_frame(&mut s, &mut buf).unwrap();
            assert_ne!(kind, 1, "publish failed: {}", String::from_utf8_lossy(&buf));
            if buf != b"_heartbeat_" {
                break;
            }
        }
        hist.record(u64::try_from(t.elapsed().as_micros()).unwrap())
            .unwrap();
        sent += BATCH as u64;
    }
    (sent, hist)
}

/// One consumer: SUB, RDY 2500, FIN everything (FINs written in batches). Counts into `received`.
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

struct Phase {
    published: u64,
    consumed: u64,
    secs: f64,
    hist: Histogram<u64>,
    cpu_secs: f64,
    rss_kib: u64,
    peak_kib: u64,
}

fn run_phase(server: &Server, topic: &str, publishers: u64, consumers: u64, secs: u64) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let consumer_threads: Vec<_> = (0..consumers)
        .map(|_| {
            let (stop, received, topic) =
                (Arc::clone(&stop), Arc::clone(&received), topic.to_owned());
            let (addr, tls) = (server.addr, server.tls.clone());
            thread::spawn(move || consumer(addr, tls.as_ref(), &topic, &stop, &received))
        })
        .collect();
    let (cpu0, _, _) = server.usage();
    let start = Instant::now();
    let publisher_threads: Vec<_> = (0..publishers)
        .map(|_| {
            let (stop, topic, addr) = (Arc::clone(&stop), topic.to_owned(), server.addr);
            let tls = server.tls.clone();
            thread::spawn(move || publisher(addr, tls.as_ref(), &topic, &stop))
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut published = 0;
    for t in publisher_threads {
        let (n, h) = t.join().unwrap();
        published += n;
        hist.add(h).unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let consumed = received.load(Ordering::Relaxed);
    let (cpu1, rss_kib, peak_kib) = server.usage();
    for t in consumer_threads {
        t.join().unwrap();
    }
    Phase {
        published,
        consumed,
        secs: elapsed,
        hist,
        cpu_secs: cpu1 - cpu0,
        rss_kib,
        peak_kib,
    }
}

fn print_phase(setting: &str, phase: &str, p: &Phase) {
    let pub_rate = p.published as f64 / p.secs;
    let sub_rate = p.consumed as f64 / p.secs;
    println!(
        "pubsub_load setting={setting} phase={phase} pub_msgs_per_s={:.0} pub_mb_s={:.1} \
         pub_p50_us={} pub_p99_us={} sub_msgs_per_s={:.0} backlog_end={} broker_cpu_pct={:.0} \
         broker_rss_mib={:.1} broker_peak_rss_mib={:.1}",
        pub_rate,
        pub_rate * MSG_BYTES as f64 / 1e6,
        p.hist.value_at_quantile(0.50),
        p.hist.value_at_quantile(0.99),
        sub_rate,
        p.published.saturating_sub(p.consumed),
        100.0 * p.cpu_secs / p.secs,
        p.rss_kib as f64 / 1024.0,
        p.peak_kib as f64 / 1024.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects settings by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let secs = env_u64("RINGSQ_BENCH_SECONDS", 5);
    let publishers = env_u64("RINGSQ_BENCH_PUBLISHERS", 4);
    let consumers = env_u64("RINGSQ_BENCH_CONSUMERS", 1);
    println!(
        "pubsub_load: {publishers} publishers x MPUB {BATCH} x {MSG_BYTES} B, {consumers} consumer(s) RDY {RDY}, \
         {secs} s per phase, data under {}",
        bench_dir().display()
    );
    let tls = TlsSetup::new();
    let settings: [(&str, &[&str], bool); 4] = [
        ("baseline_defaults", &[], false),
        ("tls_defaults", &[], true),
        ("mem_queue_size_0", &["--mem-queue-size", "0"], false),
        (
            "mem_queue_size_0_ack_after_sync",
            &["--mem-queue-size", "0", "--ack-after-sync"],
            false,
        ),
    ];
    for (name, flags, with_tls) in settings {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let mut flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        if with_tls {
            flags.extend(tls.flags.iter().cloned());
        }
        let server = Server::start(&flags, with_tls.then(|| Arc::clone(&tls.client)));
        let p = run_phase(&server, "bench_pub", publishers, 0, secs);
        print_phase(name, "publish_only", &p);
        let p = run_phase(&server, "bench_pubsub", publishers, consumers, secs);
        print_phase(name, "publish_and_consume", &p);
    }
}
