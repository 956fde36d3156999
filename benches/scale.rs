//! Many topics against the real `ringsq` binary: what N topics × 2 channels cost to create, to
//! keep idle, to stop and to start again (issue 9's "costs that grow linearly").
//!
//! For each N (default 1 000 and 10 000) on a fresh data directory:
//! 1. **create**: `POST /topic/create`, then `/channel/create` twice, for every topic, from
//!    [`CREATE_THREADS`] keep-alive HTTP clients; each create is on disk before its `200`;
//! 2. **publish**: one `POST /pub` per topic (every topic's log written once);
//! 3. **settle**: the broker's CPU over the next [`IDLE_SECONDS`] (the sync point that fsyncs
//!    what was published falls here), then **idle**: its CPU over [`IDLE_SECONDS`] more with
//!    nothing to do, its RSS and open fds;
//! 4. **stop**: SIGTERM to exit;
//! 5. **restart**: start on the same directory until `/ping` answers `200` ("ready"), then the
//!    CPU over the next [`IDLE_SECONDS`] (a burst after start shows here), RSS and fds;
//! 6. **stop** again.
//!
//! At the end, a table puts each count's idle CPU, RSS and restart time beside the first
//! count's, with the ratio: what grows with the number of topics shows there.
//!
//! `cargo bench --bench scale`; environment: `RINGSQ_SCALE_TOPICS` (comma-separated counts,
//! default `1000,10000`), `RINGSQ_SCALE_FLAGS` (extra broker flags, space-separated),
//! `RINGSQ_SCALE_BINARY` (another build of the broker, e.g. an older one to compare with).
//! Nothing here asserts a speed: it prints figures to compare before and after a change.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Concurrent HTTP clients creating topics (each waits for its answer before the next request).
const CREATE_THREADS: usize = 8;
/// Seconds of nothing to do over which idle CPU is measured.
const IDLE_SECONDS: u64 = 5;
/// Channels created on every topic.
const CHANNELS_PER_TOPIC: usize = 2;
/// How long a start or a stop may take before the bench gives up.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(600);

struct Broker {
    child: Child,
    http: SocketAddr,
}

impl Broker {
    fn start(dir: &Path, flags: &[String]) -> (Broker, Duration) {
        let started = Instant::now();
        let binary = std::env::var_os("RINGSQ_SCALE_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ringsq").into());
        let mut child = Command::new(binary)
            .args([
                "--tcp-address",
                "127.0.0.1:0",
                "--http-address",
                "127.0.0.1:0",
            ])
            .arg("--data-path")
            .arg(dir)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let http: SocketAddr = loop {
            let line = lines
                .next()
                .expect("ringsq exited before listening")
                .unwrap();
            if let Some(rest) = line.split("HTTP: listening on ").nth(1) {
                break rest.trim().parse().unwrap();
            }
        };
        // Keep draining stderr so the broker never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        let broker = Broker { child, http };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let deadline = started + PROCESS_TIMEOUT;
        while agent
            .get(&format!("http://{}/ping", broker.http))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "/ping never answered 200");
            thread::sleep(Duration::from_millis(5));
        }
        (broker, started.elapsed())
    }

    /// (user+system CPU seconds, RSS MiB, open fds) from /proc.
    fn usage(&self) -> (f64, f64, usize) {
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
        let rss_kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
        (cpu, rss_kib / 1024.0, fds)
    }

    /// SIGTERM, then the time until the process exited (it must exit 0).
    fn stop(mut self) -> Duration {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "ringsq exited with {status}");
                return started.elapsed();
            }
            assert!(started.elapsed() < PROCESS_TIMEOUT, "ringsq did not stop");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// CPU seconds used over the next `IDLE_SECONDS`.
    fn idle_cpu(&self) -> f64 {
        let (before, _, _) = self.usage();
        thread::sleep(Duration::from_secs(IDLE_SECONDS));
        self.usage().0 - before
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `request(agent, topic index)` for every topic from `CREATE_THREADS` clients.
fn for_every_topic(
    http: SocketAddr,
    topics: usize,
    request: fn(&ureq::Agent, SocketAddr, usize),
) -> Duration {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CREATE_THREADS)
        .map(|_| {
            let next = Arc::clone(&next);
            thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(120))
                    .build();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= topics {
                        return;
                    }
                    request(&agent, http, i);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    started.elapsed()
}

fn create_topic(agent: &ureq::Agent, http: SocketAddr, i: usize) {
    agent
        .post(&format!("http://{http}/topic/create?topic=scale-{i}"))
        .call()
        .unwrap();
    for c in 0..CHANNELS_PER_TOPIC {
        agent
            .post(&format!(
                "http://{http}/channel/create?topic=scale-{i}&channel=c{c}"
            ))
            .call()
            .unwrap();
    }
}

fn publish_one(agent: &ureq::Agent, http: SocketAddr, i: usize) {
    agent
        .post(&format!("http://{http}/pub?topic=scale-{i}"))
        .send_bytes(format!("message for topic {i}").as_bytes())
        .unwrap();
}

/// What one count of topics cost.
struct Figures {
    topics: usize,
    idle_cpu: f64,
    after_cpu: f64,
    rss_published: f64,
    rss_restarted: f64,
    restart: Duration,
}

fn run(topics: usize, flags: &[String]) -> Figures {
    let dir = tempfile::Builder::new()
        .prefix("ringsq-scale-")
        .tempdir_in(bench_dir())
        .unwrap();
    let (broker, start) = Broker::start(dir.path(), flags);
    println!("\n{topics} topics x {CHANNELS_PER_TOPIC} channels (empty start {start:.2?})");
    let create = for_every_topic(broker.http, topics, create_topic);
    let (_, rss, fds) = broker.usage();
    println!("  create   {create:>9.2?}  rss {rss:>7.1} MiB  fds {fds:>6}");
    let publish = for_every_topic(broker.http, topics, publish_one);
    let (_, rss, fds) = broker.usage();
    println!("  publish  {publish:>9.2?}  rss {rss:>7.1} MiB  fds {fds:>6}  (1 message per topic)");
    let rss_published = rss;
    let cpu = broker.idle_cpu();
    println!(
        "  settle   cpu {cpu:>5.2} s over {IDLE_SECONDS} s  (the sync point after the publishes)"
    );
    let idle_cpu = broker.idle_cpu();
    let cpu = idle_cpu;
    let (_, rss, fds) = broker.usage();
    println!("  idle     cpu {cpu:>5.2} s over {IDLE_SECONDS} s  rss {rss:>7.1} MiB  fds {fds:>6}");
    let stop = broker.stop();
    println!("  stop     {stop:>9.2?}");
    let (broker, ready) = Broker::start(dir.path(), flags);
    let (cpu_at_ready, rss, fds) = broker.usage();
    println!(
        "  restart  {ready:>9.2?} to /ping OK  cpu {cpu_at_ready:.2} s  rss {rss:>7.1} MiB  fds {fds:>6}"
    );
    let rss_restarted = rss;
    let after_cpu = broker.idle_cpu();
    let (_, rss, fds) = broker.usage();
    println!(
        "  after    cpu {after_cpu:>5.2} s over {IDLE_SECONDS} s  rss {rss:>7.1} MiB  fds {fds:>6}"
    );
    let stop = broker.stop();
    println!("  stop     {stop:>9.2?}");
    Figures {
        topics,
        idle_cpu,
        after_cpu,
        rss_published,
        rss_restarted,
        restart: ready,
    }
}

/// Each count beside the first, with the ratio.
fn summary(all: &[Figures]) {
    let Some(base) = all.first() else { return };
    println!("\nsummary (ratio: this count over {} topics)", base.topics);
    println!(
        "  {:>7}  {:>20}  {:>20}  {:>20}  {:>20}  {:>20}",
        "topics",
        "idle cpu % of a core",
        "after restart cpu %",
        "rss published MiB",
        "rss restarted MiB",
        "restart to /ping s"
    );
    let pct = |cpu: f64| cpu * 100.0 / IDLE_SECONDS as f64;
    for f in all {
        let cell = |v: f64, b: f64| format!("{v:>9.2} ({:>5.1}x)", v / b.max(f64::EPSILON));
        println!(
            "  {:>7}  {:>20}  {:>20}  {:>20}  {:>20}  {:>20}",
            f.topics,
            cell(pct(f.idle_cpu), pct(base.idle_cpu)),
            cell(pct(f.after_cpu), pct(base.after_cpu)),
            cell(f.rss_published, base.rss_published),
            cell(f.rss_restarted, base.rss_restarted),
            cell(f.restart.as_secs_f64(), base.restart.as_secs_f64()),
        );
    }
}

fn bench_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let counts: Vec<usize> = std::env::var("RINGSQ_SCALE_TOPICS")
        .unwrap_or_else(|_| "1000,10000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("RINGSQ_SCALE_TOPICS: numbers"))
        .collect();
    let flags: Vec<String> = std::env::var("RINGSQ_SCALE_FLAGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    println!("scale: {CREATE_THREADS} HTTP clients, flags {flags:?}");
    let all: Vec<Figures> = counts.into_iter().map(|n| run(n, &flags)).collect();
    summary(&all);
}
