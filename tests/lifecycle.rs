//! Process lifecycle against the real binary: the data directory lock and SIGTERM under load.
//!
//! - A second `ringsq` on a `--data-path` that a running one holds must refuse to start (exit
//!   non-zero, quickly, saying the path is `in use (possibly by another instance of nsqd)`, as
//!   nsqd does) and must not disturb the first, which keeps serving. Once the first has stopped
//!   cleanly the lock is free and a new broker starts on the same path with the data intact.
//! - SIGTERM while publishers are busy must end in exit 0 within [`SHUTDOWN_BOUND`], and every
//!   message the broker acknowledged before it went away is delivered after a restart.
//!
//! The second process is spawned here, not through the harness (which expects a broker that
//! listens); every wait on it is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_for, Broker, Frame, RawConn, ReadErr};

/// nsqd's words for a data path another process holds (`src/server.rs`, `lock_data_path`).
const IN_USE: &str = "in use (possibly by another instance of nsqd)";
/// A refused second instance has nothing to wait for; this only stops a broken one hanging.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The explicit bound on a clean shutdown under load (the only upper time bound asserted).
const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);
/// Concurrent publishing connections in the load test.
const PUBLISHERS: usize = 4;
/// Acknowledged messages to reach before SIGTERM, so the signal lands mid-load.
const ACKED_BEFORE_TERM: usize = 2000;
/// Every `MPUB_EVERY`-th command of a publisher is an MPUB of `MPUB_BATCH` bodies.
const MPUB_EVERY: usize = 8;
const MPUB_BATCH: usize = 10;
/// Bound on each wait for a message after the restart.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(10);

/// What a second `ringsq` on a held data path did.
struct Refused {
    status: Option<ExitStatus>,
    output: String,
}

/// Runs `ringsq --data-path <dir>` on ephemeral ports and waits (bounded) for it to exit. A
/// process still running at the deadline is killed and reported with `status: None`.
fn run_second_instance(data_path: &Path) -> Refused {
    let data_path = data_path.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args(["--tcp-address", "127.0.0.1:0"])
        .args(["--http-address", "127.0.0.1:0"])
        .args(["--data-path", &data_path])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn second ringsq");
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("try_wait on second ringsq") {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                break None;
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    // Exited (or killed): the pipes reach EOF, so collecting the output cannot block.
    let out = child
        .wait_with_output()
        .expect("collect second ringsq output");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Refused { status, output }
}

/// Subscribe to `topic/channel` and receive every body in `want` (FIN each). Extra bodies from
/// `allowed` are tolerated (published but never acknowledged; NSQ is also at-least-once);
/// anything else fails the test.
fn consume_all(
    broker: &Broker,
    topic: &str,
    channel: &str,
    want: &HashSet<Vec<u8>>,
    allowed: impl Fn(&[u8]) -> bool,
) {
    let mut c = RawConn::subscriber(broker.tcp_addr(), topic, channel).with_label("after-restart");
    c.rdy(1000);
    let mut got: HashSet<Vec<u8>> = HashSet::new();
    while !want.is_subset(&got) {
        let m = match c.try_read_frame(CONSUME_TIMEOUT) {
            Ok(Frame::Message(m)) => m,
            Ok(f) if f.is_heartbeat() => continue,
            Ok(f) => panic!("unexpected frame while consuming after restart: {f:?}"),
            Err(e) => {
                let missing = want.difference(&got).count();
                let sample: Vec<String> = want
                    .difference(&got)
                    .take(5)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
                panic!(
                    "{missing} of {} acknowledged messages never came back after restart \
                     ({e:?}); e.g. {sample:?}\n--- ringsq output ---\n{}",
                    want.len(),
                    broker.logs()
                );
            }
        };
        c.fin(&m.id);
        assert!(
            allowed(&m.body),
            "a body nobody published came back: {:?}",
            String::from_utf8_lossy(&m.body)
        );
        got.insert(m.body);
    }
}

#[test]
fn second_instance_on_a_held_data_path_is_refused() {
    let dir = tempfile::tempdir().expect("temp data dir");
    let mut first = Broker::start_in(dir.path(), &[]);
    // A channel, so the messages are kept for a consumer after the restart.
    let _consumer = RawConn::subscriber(first.tcp_addr(), "lock_topic", "ch");
    let mut producer = RawConn::connect(first.tcp_addr()).with_label("first");
    producer.publish("lock_topic", b"before-second");

    let refused = run_second_instance(dir.path());
    let status = refused.status.unwrap_or_else(|| {
        panic!(
            "a second ringsq on the same --data-path was still running after \
             {REFUSAL_TIMEOUT:?}; it must refuse to start\n--- its output ---\n{}",
            refused.output
        )
    });
    assert!(
        !status.success(),
        "a second ringsq on the same --data-path exited {status}; it must fail\n\
         --- its output ---\n{}",
        refused.output
    );
    assert!(
        refused.output.contains(IN_USE),
        "the second ringsq must say the data path is {IN_USE:?}; it printed:\n{}",
        refused.output
    );

    // The first broker is undisturbed: same connection, new connection, both answer.
    producer.publish("lock_topic", b"after-second");
    RawConn::connect(first.tcp_addr())
        .with_label("first-new-conn")
        .publish("lock_topic", b"new-connection");
    first.stop();

    // The lock went with the process: a new broker takes the path and finds the data.
    let third = Broker::start_in(dir.path(), &[]);
    let want: HashSet<Vec<u8>> = [
        b"before-second".to_vec(),
        b"after-second".to_vec(),
        b"new-connection".to_vec(),
    ]
    .into_iter()
    .collect();
    let allowed = want.clone();
    consume_all(&third, "lock_topic", "ch", &want, |b| allowed.contains(b));
}

/// One publishing connection: PUB and MPUB until the broker stops answering. Bodies are added
/// to `acked` only after their `OK`.
fn publish_until_closed(broker_addr: std::net::SocketAddr, id: usize, acked: &Mutex<Vec<Vec<u8>>>) {
    let mut conn = RawConn::connect(broker_addr).with_label(&format!("publisher-{id}"));
    let mut seq = 0usize;
    for round in 0usize.. {
        let batch: Vec<Vec<u8>> = if round % MPUB_EVERY == 0 {
            (0..MPUB_BATCH)
                .map(|k| format!("p{id}-{}", seq + k).into_bytes())
                .collect()
        } else {
            vec![format!("p{id}-{seq}").into_bytes()]
        };
        seq += batch.len();
        if batch.len() == 1 {
            conn.pub_("load_topic", &batch[0]);
        } else {
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            conn.mpub("load_topic", &refs);
        }
        loop {
            match conn.try_read_frame(common::READ_TIMEOUT) {
                Ok(Frame::Response(b)) if b == b"OK" => {
                    acked.lock().unwrap().extend(batch);
                    break;
                }
                Ok(f) if f.is_heartbeat() => {}
                // An error frame (e.g. E_PUB_FAILED while exiting) or a close ends the load;
                // what was not acknowledged is not owed.
                Ok(_) | Err(ReadErr::Closed(_)) => return,
                Err(e) => panic!("publisher-{id}: no answer to a publish: {e:?}"),
            }
        }
    }
}

#[test]
fn sigterm_under_publish_load_exits_cleanly_and_keeps_acknowledged_messages() {
    let dir = tempfile::tempdir().expect("temp data dir");
    let mut broker = Broker::start_in(dir.path(), &[]);
    // The channel exists before the load, so every message is queued for it.
    let _channel_holder = RawConn::subscriber(broker.tcp_addr(), "load_topic", "ch");

    let acked = Arc::new(Mutex::new(Vec::new()));
    let addr = broker.tcp_addr();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|id| {
            let acked = Arc::clone(&acked);
            thread::spawn(move || publish_until_closed(addr, id, &acked))
        })
        .collect();
    wait_for(
        Duration::from_secs(60),
        "the publishers to get their first acknowledgements",
        || (acked.lock().unwrap().len() >= ACKED_BEFORE_TERM).then_some(()),
    );

    let term_sent = Instant::now();
    broker.stop(); // SIGTERM; asserts exit status 0
    let took = term_sent.elapsed();
    assert!(
        took <= SHUTDOWN_BOUND,
        "SIGTERM under load took {took:?} to exit (bound {SHUTDOWN_BOUND:?})\n\
         --- ringsq output ---\n{}",
        broker.logs()
    );
    for p in publishers {
        p.join().expect("publisher thread");
    }

    let want: HashSet<Vec<u8>> = acked.lock().unwrap().iter().cloned().collect();
    println!("{} messages acknowledged before exit", want.len());
    let restarted = Broker::start_in(dir.path(), &[]);
    consume_all(&restarted, "load_topic", "ch", &want, |b| {
        b.starts_with(b"p")
    });
}

/// Without `--data-path`, nsqd keeps its data in the current directory; so does ringsq.
#[test]
fn no_data_path_means_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringsq"))
        .args([
            "--tcp-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nsqd_dat = dir.path().join("nsqd.dat");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nsqd_dat.exists() && Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ringsq exited with {status} without --data-path");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(nsqd_dat.exists(), "no nsqd.dat in the working directory");
}
