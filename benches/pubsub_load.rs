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
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(flags: &[&str]) -> Server {
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

fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"  V2").unwrap();
    s
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
fn publisher(addr: SocketAddr, topic: &str, stop: &AtomicBool) -> (u64, Histogram<u64>) {
    let mut s = connect(addr);
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
fn consumer(addr: SocketAddr, topic: &str, stop: &AtomicBool, received: &AtomicU64) {
    let mut s = connect(addr);
    write!(s, "SUB {topic} bench\nRDY {RDY}\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut r = BufReader::with_capacity(256 * 1024, s.try_clone().unwrap());
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
            s.write_all(&fins).unwrap();
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
            let addr = server.addr;
            thread::spawn(move || consumer(addr, &topic, &stop, &received))
        })
        .collect();
    let (cpu0, _, _) = server.usage();
    let start = Instant::now();
    let publisher_threads: Vec<_> = (0..publishers)
        .map(|_| {
            let (stop, topic, addr) = (Arc::clone(&stop), topic.to_owned(), server.addr);
            thread::spawn(move || publisher(addr, &topic, &stop))
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
    let settings: [(&str, &[&str]); 3] = [
        ("baseline_defaults", &[]),
        ("mem_queue_size_0", &["--mem-queue-size", "0"]),
        (
            "mem_queue_size_0_ack_after_sync",
            &["--mem-queue-size", "0", "--ack-after-sync"],
        ),
    ];
    for (name, flags) in settings {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let server = Server::start(flags);
        let p = run_phase(&server, "bench_pub", publishers, 0, secs);
        print_phase(name, "publish_only", &p);
        let p = run_phase(&server, "bench_pubsub", publishers, consumers, secs);
        print_phase(name, "publish_and_consume", &p);
    }
}
