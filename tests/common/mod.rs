//! Black-box test harness: start the real `ringsq` binary and talk NSQ protocol V2 to it.
//!
//! Owns two things:
//! - [`Broker`]: a child `ringsq` process on `127.0.0.1:0` with its own data directory. It learns
//!   its addresses from the `TCP: listening on <addr>` / `HTTP: listening on <addr>` log lines
//!   (stderr, as Go nsqd), keeps draining stdout/stderr in background threads so the child never
//!   blocks on a full pipe, and keeps every line for failure messages. Dropping it kills the child.
//!   `RINGSQ_TEST_SHARDS=N` adds `--shards N` to every broker whose test does not set it (CI runs
//!   the suite at the default shard count and again with one shard).
//! - [`RawConn`]: a blocking V2 client over `std::net::TcpStream` that sends exact bytes and
//!   decodes exact frames (`[size i32][type i32][data]`, NSQ.md §1.1), so tests can assert the
//!   wire byte for byte.
//!
//! Invariants: every read has a timeout and a failing read names what was expected; no helper
//! sleeps to "let things settle" — tests wait for an observable event with a bound.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the broker may take to print its listen addresses.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a clean SIGTERM shutdown may take before the test fails.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound on waiting for one frame.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames larger than this are a protocol bug in the broker, not something to allocate.
const FRAME_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The protocol magic a V2 client sends first (two spaces, `V2`).
pub const MAGIC_V2: &[u8; 4] = b"  V2";
/// Body of the Response frame the broker sends as a heartbeat.
pub const HEARTBEAT: &[u8] = b"_heartbeat_";

/// NSQ frame types (NSQ.md §1.1).
pub const FRAME_TYPE_RESPONSE: i32 = 0;
pub const FRAME_TYPE_ERROR: i32 = 1;
pub const FRAME_TYPE_MESSAGE: i32 = 2;

// ---------------------------------------------------------------------------------------------
// Broker process
// ---------------------------------------------------------------------------------------------

/// A running `ringsq` child process. Killed on drop.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    /// Keeps a temporary data directory alive for the broker's whole life (restarts included).
    tmp: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    /// Extra flags given by the test, reused verbatim by [`Broker::restart`].
    args: Vec<String>,
    /// A command the binary runs under (e.g. `prlimit --nofile=…`), reused by restarts.
    wrapper: Vec<String>,
    tcp: SocketAddr,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    /// Start a broker on a fresh temporary data directory.
    pub fn start(args: &[&str]) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("ringsq-test-")
            .tempdir()
            .expect("create temp data dir");
        let dir = tmp.path().to_path_buf();
        let mut broker = Broker::spawn(&dir, args.iter().map(|s| (*s).to_owned()).collect());
        broker.tmp = Some(tmp);
        broker
    }

    /// Start a broker on `data_dir` (which the caller owns and keeps).
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Broker {
        Broker::spawn(data_dir, args.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Start a broker on `data_dir` run through `wrapper` (a command that takes the binary and
    /// its arguments, such as `prlimit --nofile=1024:1024 --`); restarts use it too.
    pub fn start_wrapped(wrapper: &[&str], data_dir: &Path, args: &[&str]) -> Broker {
        let wrapper: Vec<String> = wrapper.iter().map(|s| (*s).to_owned()).collect();
        let args = args.iter().map(|s| (*s).to_owned()).collect();
        Broker::spawn_wrapped(wrapper, data_dir, args)
    }

    /// Start a broker on a fresh temporary data directory with its file descriptor limit
    /// (soft and hard) set to `nofile` (through `sh -c 'ulimit -n'`); restarts keep it.
    pub fn start_with_nofile(nofile: u64, args: &[&str]) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("ringsq-test-")
            .tempdir()
            .expect("create temp data dir");
        let wrapper = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
        ];
        let args = args.iter().map(|s| (*s).to_owned()).collect();
        let mut broker = Broker::spawn_wrapped(wrapper, tmp.path(), args);
        broker.tmp = Some(tmp);
        broker
    }

    fn spawn(data_dir: &Path, args: Vec<String>) -> Broker {
        Broker::spawn_wrapped(Vec::new(), data_dir, args)
    }

    fn spawn_wrapped(wrapper: Vec<String>, data_dir: &Path, args: Vec<String>) -> Broker {
        let has = |flag: &str| {
            args.iter().any(|a| {
                let a = a.trim_start_matches('-');
                a == flag || a.starts_with(&format!("{flag}="))
            })
        };
        let mut full: Vec<String> = Vec::new();
        if !has("tcp-address") {
            full.extend(["--tcp-address".into(), "127.0.0.1:0".into()]);
        }
        if !has("http-address") {
            full.extend(["--http-address".into(), "127.0.0.1:0".into()]);
        }
        if !has("https-address") {
            // Only used with a certificate; never the shared default port 4152.
            full.extend(["--https-address".into(), "127.0.0.1:0".into()]);
        }
        if !has("data-path") {
            full.extend(["--data-path".into(), data_dir.display().to_string()]);
        }
        // CI runs the suite at the default shard count and again with one shard.
        if let (false, Some(shards)) = (has("shards"), test_shards()) {
            full.extend(["--shards".into(), shards]);
        }
        full.extend(args.iter().cloned());

        let binary = env!("CARGO_BIN_EXE_ringsq");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringsq binary");

        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("child stderr piped");
        let stdout = child.stdout.take().expect("child stdout piped");
        spawn_drain(stderr, "stderr", Arc::clone(&log), Some(tx.clone()));
        spawn_drain(stdout, "stdout", Arc::clone(&log), Some(tx));

        let mut broker = Broker {
            child: Some(child),
            tmp: None,
            data_dir: data_dir.to_path_buf(),
            args,
            wrapper,
            tcp: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: None,
            https: None,
            log,
        };
        let (tcp, http) = broker.wait_for_addresses(&rx, &full);
        broker.tcp = tcp;
        broker.http = http;
        broker
    }

    /// Read log lines until the TCP address is known; then give the HTTP line a short grace
    /// period (its order relative to the TCP line is not fixed, as in Go nsqd).
    fn wait_for_addresses(
        &mut self,
        rx: &Receiver<String>,
        argv: &[String],
    ) -> (SocketAddr, Option<SocketAddr>) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut tcp = None;
        let mut http = None;
        let mut http_grace: Option<Instant> = None;
        loop {
            if let (Some(t), Some(_)) = (tcp, http) {
                return (t, http);
            }
            if let (Some(t), Some(g)) = (tcp, http_grace) {
                if Instant::now() >= g {
                    return (t, http);
                }
            }
            let now = Instant::now();
            let wait_until = http_grace.map_or(deadline, |g| g.min(deadline));
            if now >= deadline {
                self.fail_startup(argv, "timed out waiting for `TCP: listening on <addr>`");
            }
            match rx.recv_timeout(wait_until.saturating_duration_since(now)) {
                Ok(line) => {
                    if line.contains("TCP: listening on ") {
                        // A unix socket path (`--tcp-address=/path`) has no address to keep.
                        tcp = Some(
                            parse_listen(&line, "TCP: listening on ")
                                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                        );
                        http_grace = Some(Instant::now() + Duration::from_secs(1));
                    }
                    if let Some(a) = parse_listen(&line, "HTTPS: listening on ") {
                        self.https = Some(a);
                    }
                    if let Some(a) = parse_listen(&line, "HTTP: listening on ") {
                        http = Some(a);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Both pipes closed: the child exited (or closed its output) before listening.
                    if let Some(t) = tcp {
                        return (t, http);
                    }
                    self.fail_startup(argv, "ringsq closed its output before listening on TCP");
                }
            }
        }
    }

    fn fail_startup(&mut self, argv: &[String], why: &str) -> ! {
        let status = self.child.as_mut().and_then(|c| {
            // Give a crashing child a moment to be reaped so its status is reported.
            wait_timeout(c, Duration::from_secs(2))
        });
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.child = None;
        panic!(
            "ringsq failed to start: {why}\n  argv: {argv:?}\n  exit status: {status:?}\n  \
             (the broker must log `TCP: listening on <ip:port>` to stderr; if it does not serve \
             the protocol yet, these tests are expected to fail)\n--- ringsq output ---\n{}",
            self.logs()
        );
    }

    /// The broker's TCP (protocol V2) address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The broker's HTTP address; fails the test if the broker never logged one.
    pub fn http_addr(&self) -> SocketAddr {
        match self.http {
            Some(a) => a,
            None => panic!(
                "ringsq did not log `HTTP: listening on <addr>`\n--- ringsq output ---\n{}",
                self.logs()
            ),
        }
    }

    /// The broker's HTTPS address; fails the test if the broker never logged one.
    pub fn https_addr(&self) -> SocketAddr {
        match self.https {
            Some(a) => a,
            None => panic!(
                "ringsq did not log `HTTPS: listening on <addr>`\n--- ringsq output ---\n{}",
                self.logs()
            ),
        }
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the broker has printed so far (stderr and stdout, interleaved by arrival).
    pub fn logs(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The child's pid, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, wait for exit, and assert a clean exit (status 0).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .expect("run kill -s TERM");
        assert!(sent.success(), "kill -s TERM {pid} failed: {sent}");
        let status = wait_timeout(&mut child, SHUTDOWN_TIMEOUT);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringsq did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n--- ringsq output ---\n{}",
                self.logs()
            );
        };
        // The drain threads finish when the pipes close; the log is complete enough for errors.
        assert!(
            status.success(),
            "ringsq exited uncleanly after SIGTERM: {status}\n--- ringsq output ---\n{}",
            self.logs()
        );
    }

    /// SIGKILL (no chance to flush anything) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop (SIGTERM, if still running) and start again on the same data dir with the same flags.
    /// Addresses change: ask [`Broker::tcp_addr`] again afterwards.
    pub fn restart(&mut self) {
        self.stop();
        let tmp = self.tmp.take();
        let next = Broker::spawn_wrapped(self.wrapper.clone(), &self.data_dir, self.args.clone());
        let old_log = self.logs();
        *self = next;
        self.tmp = tmp;
        if let Ok(mut l) = self.log.lock() {
            l.insert(0, format!("{old_log}\n--- restart ---"));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_drain(
    pipe: impl Read + Send + 'static,
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    tx: Option<mpsc::Sender<String>>,
) {
    thread::Builder::new()
        .name(format!("ringsq-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        if let Ok(mut l) = log.lock() {
                            l.push(format!("[{name}] {line}"));
                        }
                        if let Some(tx) = &tx {
                            // The receiver is gone once start-up is over; keep draining anyway.
                            let _ = tx.send(line);
                        }
                    }
                }
            }
        })
        .expect("spawn drain thread");
}

/// A tmpfs mounted for one test, unmounted when dropped (even when the test fails).
pub struct Tmpfs {
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.mnt).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("WARNING: could not unmount {}", self.mnt.display());
        }
    }
}

/// Mounts a tmpfs of `bytes` for `what` (a test's own name for what it checks), or `None` when
/// `RINGSQ_SKIP_TMPFS` says to skip; fails the test otherwise (mounting needs root).
pub fn tmpfs(bytes: u64, what: &str) -> Option<Tmpfs> {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(&mnt)
        .output()
        .unwrap();
    if out.status.success() {
        return Some(Tmpfs { mnt, _dir: dir });
    }
    assert!(
        std::env::var_os("RINGSQ_SKIP_TMPFS").is_some(),
        "cannot mount a tmpfs ({}); run as root, or set RINGSQ_SKIP_TMPFS=1 to skip {what} knowingly",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("SKIPPED (RINGSQ_SKIP_TMPFS set): {what} NOT RUN");
    None
}

/// POST `path` (with its query) to the broker's HTTP API: (status, body), errors included.
pub fn http_post(b: &Broker, path: &str, body: &[u8]) -> (u16, String) {
    let url = format!("http://{}{path}", b.http_addr());
    match ureq::post(&url)
        .timeout(Duration::from_secs(10))
        .send_bytes(body)
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let status = r.status();
            (status, r.into_string().unwrap_or_default())
        }
        Err(e) => panic!("POST {path}: {e}"),
    }
}

/// GET `path` (with its query) from the broker's HTTP API: (status, body), errors included.
pub fn http_get(b: &Broker, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", b.http_addr());
    match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let status = r.status();
            (status, r.into_string().unwrap_or_default())
        }
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// `RINGSQ_TEST_SHARDS`: the `--shards` every broker of the suite gets unless a test sets it.
pub fn test_shards() -> Option<String> {
    std::env::var("RINGSQ_TEST_SHARDS")
        .ok()
        .filter(|v| !v.is_empty())
}

fn parse_listen(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let token = rest.split_whitespace().next()?;
    token
        .trim_matches(|c| c == '"' || c == '\'' || c == ',')
        .parse()
        .ok()
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A decoded message frame body: `[ts i64][attempts u16][id 16B][body]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ts: i64,
    pub attempts: u16,
    pub id: [u8; 16],
    pub body: Vec<u8>,
}

impl Msg {
    pub fn id_str(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }
}

/// One server→client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Response(Vec<u8>),
    Error(String),
    Message(Msg),
}

impl Frame {
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Frame::Response(b) if b == HEARTBEAT)
    }

    fn describe(&self) -> String {
        match self {
            Frame::Response(b) => format!("Response({:?})", String::from_utf8_lossy(b)),
            Frame::Error(e) => format!("Error({e:?})"),
            Frame::Message(m) => format!(
                "Message(attempts={}, id={:?}, body={:?})",
                m.attempts,
                m.id_str(),
                String::from_utf8_lossy(&m.body)
            ),
        }
    }
}

/// Why a read did not produce a frame.
#[derive(Debug)]
pub enum ReadErr {
    Timeout,
    /// EOF or connection reset: the broker closed the connection.
    Closed(String),
    Io(std::io::Error),
    Protocol(String),
}

fn decode_frame(frame_type: i32, data: Vec<u8>) -> Result<Frame, ReadErr> {
    match frame_type {
        FRAME_TYPE_RESPONSE => Ok(Frame::Response(data)),
        FRAME_TYPE_ERROR => Ok(Frame::Error(String::from_utf8_lossy(&data).into_owned())),
        FRAME_TYPE_MESSAGE => {
            if data.len() < 26 {
                return Err(ReadErr::Protocol(format!(
                    "message frame of {} bytes (< 26)",
                    data.len()
                )));
            }
            let ts = i64::from_be_bytes(data[0..8].try_into().expect("8 bytes"));
            let attempts = u16::from_be_bytes(data[8..10].try_into().expect("2 bytes"));
            let id: [u8; 16] = data[10..26].try_into().expect("16 bytes");
            Ok(Frame::Message(Msg {
                ts,
                attempts,
                id,
                body: data[26..].to_vec(),
            }))
        }
        other => Err(ReadErr::Protocol(format!("unknown frame type {other}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw V2 connection
// ---------------------------------------------------------------------------------------------

/// A blocking NSQ V2 connection that writes exact bytes and reads exact frames.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read from the socket but not yet consumed as a frame.
    buf: Vec<u8>,
    /// Messages that arrived while a test waited for a Response/Error frame. Message delivery is
    /// asynchronous to command responses, so `expect_ok` sets them aside for `read_msg`.
    stashed: VecDeque<Msg>,
    pub label: String,
}

impl RawConn {
    /// Connect and send the `  V2` magic.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let mut c = RawConn::connect_no_magic(addr);
        c.send(MAGIC_V2);
        c
    }

    /// Connect without sending anything.
    pub fn connect_no_magic(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to ringsq at {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        // A broker that neither reads nor closes must fail the test, not hang it.
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("set_write_timeout");
        RawConn {
            stream,
            buf: Vec::new(),
            stashed: VecDeque::new(),
            label: format!("conn->{addr}"),
        }
    }

    /// Connect, send magic, and IDENTIFY with `feature_negotiation` off (plain `OK`).
    pub fn connect_identified(addr: SocketAddr, identify_json: &str) -> RawConn {
        let mut c = RawConn::connect(addr);
        c.identify(identify_json);
        c.expect_ok();
        c
    }

    /// Connect (no IDENTIFY: default heartbeats allow SUB), SUB and expect `OK`.
    pub fn subscriber(addr: SocketAddr, topic: &str, channel: &str) -> RawConn {
        let mut c = RawConn::connect(addr);
        c.sub(topic, channel);
        c
    }

    pub fn with_label(mut self, label: &str) -> RawConn {
        label.clone_into(&mut self.label);
        self
    }

    // ---- writing ------------------------------------------------------------------------

    /// Write raw bytes. A write error (broker already closed) is ignored: the following read
    /// reports what the broker did, which is what tests assert on.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Write one command line; `\n` is appended.
    pub fn cmd(&mut self, line: &str) {
        let mut b = line.as_bytes().to_vec();
        b.push(b'\n');
        self.send(&b);
    }

    /// `IDENTIFY\n` + size + JSON body.
    pub fn identify(&mut self, json: &str) {
        self.send(&with_body("IDENTIFY", json.as_bytes()));
    }

    /// IDENTIFY with `feature_negotiation` and return the parsed JSON response.
    pub fn identify_negotiate(&mut self, json: &str) -> serde_json::Value {
        self.identify(json);
        let data = self.expect_response();
        serde_json::from_slice(&data).unwrap_or_else(|e| {
            panic!(
                "[{}] IDENTIFY response is not JSON ({e}): {:?}",
                self.label,
                String::from_utf8_lossy(&data)
            )
        })
    }

    /// `PUB <topic>\n` + size + body (no read).
    pub fn pub_(&mut self, topic: &str, body: &[u8]) {
        self.send(&with_body(&format!("PUB {topic}"), body));
    }

    /// PUB and expect `OK`.
    pub fn publish(&mut self, topic: &str, body: &[u8]) {
        self.pub_(topic, body);
        self.expect_ok();
    }

    /// `MPUB <topic>\n` + body size + count + (size + bytes)* (no read).
    pub fn mpub(&mut self, topic: &str, bodies: &[&[u8]]) {
        self.send(&mpub_bytes(topic, bodies));
    }

    /// MPUB and expect `OK`.
    pub fn mpublish(&mut self, topic: &str, bodies: &[&[u8]]) {
        self.mpub(topic, bodies);
        self.expect_ok();
    }

    /// `DPUB <topic> <defer_ms>\n` + size + body (no read).
    pub fn dpub(&mut self, topic: &str, defer_ms: u64, body: &[u8]) {
        self.send(&with_body(&format!("DPUB {topic} {defer_ms}"), body));
    }

    /// `SUB <topic> <channel>` and expect `OK`.
    pub fn sub(&mut self, topic: &str, channel: &str) {
        self.cmd(&format!("SUB {topic} {channel}"));
        self.expect_ok();
    }

    pub fn rdy(&mut self, n: u64) {
        self.cmd(&format!("RDY {n}"));
    }

    pub fn fin(&mut self, id: &[u8; 16]) {
        self.send(&id_cmd("FIN", id, None));
    }

    pub fn req(&mut self, id: &[u8; 16], timeout_ms: u64) {
        self.send(&id_cmd("REQ", id, Some(timeout_ms)));
    }

    pub fn touch(&mut self, id: &[u8; 16]) {
        self.send(&id_cmd("TOUCH", id, None));
    }

    pub fn nop(&mut self) {
        self.cmd("NOP");
    }

    /// Half-close our write side (the broker sees EOF).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    // ---- reading ------------------------------------------------------------------------

    /// Read one frame (heartbeats included) within `timeout`.
    pub fn try_read_frame(&mut self, timeout: Duration) -> Result<Frame, ReadErr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.parse_buffered()? {
                return Ok(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadErr::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(ReadErr::Io)?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ReadErr::Closed(if self.buf.is_empty() {
                        "EOF".into()
                    } else {
                        format!("EOF with {} bytes of a partial frame", self.buf.len())
                    }))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return Err(ReadErr::Closed(e.to_string()))
                }
                Err(e) => return Err(ReadErr::Io(e)),
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Frame>, ReadErr> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes(self.buf[0..4].try_into().expect("4 bytes"));
        let size = usize::try_from(size)
            .ok()
            .filter(|s| (4..=FRAME_SIZE_MAX_BYTES).contains(s))
            .ok_or_else(|| ReadErr::Protocol(format!("bad frame size {size}")))?;
        if self.buf.len() < 4 + size {
            return Ok(None);
        }
        let frame_type = i32::from_be_bytes(self.buf[4..8].try_into().expect("4 bytes"));
        let data = self.buf[8..4 + size].to_vec();
        self.buf.drain(..4 + size);
        decode_frame(frame_type, data).map(Some)
    }

    /// Read exactly `n` raw bytes (for byte-level frame assertions).
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + READ_TIMEOUT;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "[{}] timed out reading {n} raw bytes",
                self.label
            );
            self.stream
                .set_read_timeout(Some(left))
                .expect("set_read_timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("[{}] EOF while reading {n} raw bytes", self.label),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("[{}] read error: {e}", self.label),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Read one frame (heartbeats included); fail the test on timeout/close.
    pub fn read_frame(&mut self) -> Frame {
        self.read_frame_within(READ_TIMEOUT)
    }

    pub fn read_frame_within(&mut self, timeout: Duration) -> Frame {
        match self.try_read_frame(timeout) {
            Ok(f) => f,
            Err(e) => panic!(
                "[{}] expected a frame within {timeout:?}, got {e:?}",
                self.label
            ),
        }
    }

    /// Next frame that is not a heartbeat (heartbeats are skipped, not answered).
    pub fn next_frame(&mut self) -> Frame {
        self.next_frame_within(READ_TIMEOUT)
    }

    pub fn next_frame_within(&mut self, timeout: Duration) -> Frame {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = match self.try_read_frame(left) {
                Ok(f) => f,
                Err(e) => panic!(
                    "[{}] expected a non-heartbeat frame within {timeout:?}, got {e:?}",
                    self.label
                ),
            };
            if !f.is_heartbeat() {
                return f;
            }
        }
    }

    /// Next Response or Error frame; heartbeats are skipped and messages set aside for
    /// [`RawConn::read_msg`].
    pub fn next_reply(&mut self) -> Frame {
        loop {
            match self.next_frame() {
                Frame::Message(m) => self.stashed.push_back(m),
                f => return f,
            }
        }
    }

    /// Next non-heartbeat frame must be `Response(OK)`.
    pub fn expect_ok(&mut self) {
        self.expect_response_eq(b"OK");
    }

    /// Next non-heartbeat frame must be a Response with exactly `want`.
    pub fn expect_response_eq(&mut self, want: &[u8]) {
        let data = self.expect_response();
        assert_eq!(
            String::from_utf8_lossy(&data),
            String::from_utf8_lossy(want),
            "[{}] unexpected response body",
            self.label
        );
    }

    /// Next non-heartbeat frame must be a Response; returns its body.
    pub fn expect_response(&mut self) -> Vec<u8> {
        match self.next_reply() {
            Frame::Response(b) => b,
            other => panic!(
                "[{}] expected a Response frame, got {}",
                self.label,
                other.describe()
            ),
        }
    }

    /// Next non-heartbeat frame must be an Error frame with exactly `want` (`"CODE description"`).
    pub fn expect_error(&mut self, want: &str) {
        match self.next_reply() {
            Frame::Error(e) => assert_eq!(e, want, "[{}] unexpected error frame", self.label),
            other => panic!(
                "[{}] expected Error({want:?}), got {}",
                self.label,
                other.describe()
            ),
        }
    }

    /// Next non-heartbeat frame must be an Error frame; returns its text.
    pub fn expect_any_error(&mut self) -> String {
        match self.next_reply() {
            Frame::Error(e) => e,
            other => panic!(
                "[{}] expected an Error frame, got {}",
                self.label,
                other.describe()
            ),
        }
    }

    /// A fatal error: exactly `want`, then the broker closes the connection.
    pub fn expect_fatal(&mut self, want: &str) {
        self.expect_error(want);
        self.expect_closed();
    }

    /// The broker closes the connection (EOF or reset) within the read timeout; heartbeats may
    /// arrive first, any other frame fails the test.
    pub fn expect_closed(&mut self) {
        self.expect_closed_within(READ_TIMEOUT);
    }

    pub fn expect_closed_within(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_frame(left) {
                Err(ReadErr::Closed(_)) => return,
                Ok(f) if f.is_heartbeat() => {}
                Ok(f) => panic!(
                    "[{}] expected the broker to close the connection, got {}",
                    self.label,
                    f.describe()
                ),
                Err(e) => panic!(
                    "[{}] expected the broker to close the connection within {timeout:?}, got {e:?}",
                    self.label
                ),
            }
        }
    }

    /// Read frames until the broker closes; returns every non-heartbeat frame seen.
    pub fn drain_until_closed(&mut self, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_frame(left) {
                Err(ReadErr::Closed(_)) => return seen,
                Ok(f) if f.is_heartbeat() => {}
                Ok(f) => seen.push(f),
                Err(ReadErr::Protocol(_)) => {
                    // Garbage after an error frame can't be framed; treat the rest as noise.
                    self.buf.clear();
                }
                Err(e) => panic!(
                    "[{}] expected the broker to close the connection within {timeout:?}, got {e:?} \
                     (frames so far: {seen:?})",
                    self.label
                ),
            }
        }
    }

    /// The connection is still open and answering: a PUB (allowed in every state) gets `OK`.
    pub fn assert_alive(&mut self, topic: &str) {
        self.publish(topic, b"alive-probe");
    }

    /// Next non-heartbeat frame must be a message.
    pub fn read_msg(&mut self) -> Msg {
        self.read_msg_within(READ_TIMEOUT)
    }

    pub fn read_msg_within(&mut self, timeout: Duration) -> Msg {
        if let Some(m) = self.stashed.pop_front() {
            return m;
        }
        match self.next_frame_within(timeout) {
            Frame::Message(m) => m,
            other => panic!(
                "[{}] expected a message frame, got {}",
                self.label,
                other.describe()
            ),
        }
    }

    /// Wait `window` and fail if a message (or any non-heartbeat frame) arrives. For negative
    /// assertions only ("RDY 0 stops delivery"); the window is a lower bound on patience.
    pub fn expect_no_frame(&mut self, window: Duration) {
        if let Some(m) = self.stashed.front() {
            panic!(
                "[{}] expected nothing, but a message was already received: {m:?}",
                self.label
            );
        }
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.try_read_frame(left) {
                Err(ReadErr::Timeout) => return,
                Ok(f) if f.is_heartbeat() => {}
                Ok(f) => panic!(
                    "[{}] expected nothing for {window:?}, got {}",
                    self.label,
                    f.describe()
                ),
                Err(e) => panic!(
                    "[{}] expected nothing for {window:?}, got {e:?}",
                    self.label
                ),
            }
        }
    }

    /// Read messages until `n` have arrived, FIN-ing each; returns them in arrival order.
    pub fn consume_fin(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = self.read_msg();
            self.fin(&m.id);
            out.push(m);
        }
        out
    }
}

/// `<line>\n` + int32 BE size + body.
pub fn with_body(line: &str, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(line.len() + 5 + body.len());
    b.extend_from_slice(line.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(&be_len(body.len()));
    b.extend_from_slice(body);
    b
}

/// A well-formed MPUB command.
pub fn mpub_bytes(topic: &str, bodies: &[&[u8]]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&be_len(bodies.len()));
    for body in bodies {
        payload.extend_from_slice(&be_len(body.len()));
        payload.extend_from_slice(body);
    }
    with_body(&format!("MPUB {topic}"), &payload)
}

/// `CMD <id>[ <n>]\n`.
fn id_cmd(name: &str, id: &[u8; 16], n: Option<u64>) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(name.as_bytes());
    b.push(b' ');
    b.extend_from_slice(id);
    if let Some(n) = n {
        b.extend_from_slice(format!(" {n}").as_bytes());
    }
    b.push(b'\n');
    b
}

/// int32 big-endian length prefix.
pub fn be_len(n: usize) -> [u8; 4] {
    i32::try_from(n).expect("length fits i32").to_be_bytes()
}

/// True if `id` is 16 lowercase hex ASCII characters (NSQ.md §1.1).
pub fn is_lower_hex_id(id: &[u8; 16]) -> bool {
    id.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Poll `f` every 20 ms until it returns `Some`, failing after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
