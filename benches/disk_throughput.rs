//! Disk throughput: the log against a raw sequential write of the same bytes, in one run.
//!
//! For each record size and sync policy, a case first appends records through
//! `Log<UringIo>` (bounded by time and bytes), then reads back the bytes the log wrote (its
//! segment files minus their headers) and writes exactly those bytes to a fresh file in the same
//! directory with tokio-uring `write_all_at`, in batches of the log's average write size, with
//! the same fdatasync pattern: none; or one fdatasync per as many records as the log covered with
//! each of its fdatasyncs (measured from `log.stats()`). `ratio = log_mb_s / raw_mb_s`.
//!
//! Policies: `none` (no fdatasync: `sync_every_records` and `sync_timeout` out of reach),
//! `sync_every_2500` (nsqd's default `--sync-every`), and `ack_after_sync` with 1, 16 and 256
//! concurrent appenders, each looping append → `wait_synced` (group commit); for that policy
//! the append-to-durable latency percentiles are printed too.
//!
//! Output: a header line naming the directory and its filesystem, then one line per case:
//! `disk_throughput record_bytes=… policy=… appenders=… records_per_s=… log_mb_s=… raw_mb_s=…
//! ratio=… fsyncs_per_s=…[ p50_us=… p99_us=…]`. MB are 10^6 bytes as written (record headers
//! included), the same bytes on both sides. Details (batch sizes, raw fsync counts) go to stderr.
//! No assertion on speed.
//!
//! Environment: `RINGSQ_BENCH_SECONDS` (seconds per case and side, default 2),
//! `RINGSQ_BENCH_DIR` (where the temporary directory goes, default `std::env::temp_dir()`).

#![allow(
    clippy::cast_precision_loss,
    reason = "rates and averages are reported as f64; counts stay far below 2^52"
)]

use bytes::Bytes;
use hdrhistogram::Histogram;
use ringsq_storage::format::{RECORD_HEADER_BYTES_U64, SEGMENT_HEADER_BYTES};
use ringsq_storage::{Log, LogConfig, UringIo};
use std::cell::{Cell, RefCell};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

/// Record sizes measured, in data bytes.
const RECORD_SIZES_BYTES: [usize; 3] = [100, 1024, 64 * 1024];
/// Record bytes appended per case at most (and so also written by the raw side).
const CASE_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Default time per case and side.
const CASE_SECONDS_DEFAULT: f64 = 2.0;
/// Data bytes a single streaming appender queues before waiting for the previous chunk to be
/// written (bounds memory; the writer batches what is queued).
const APPEND_CHUNK_BYTES: usize = 1024 * 1024;
/// A timeout the benchmark never reaches ("no fsync by time").
const SYNC_TIMEOUT_NEVER: Duration = Duration::from_secs(24 * 3600);
/// Appender counts measured with `ack_after_sync`.
const ACK_APPENDERS: [usize; 3] = [1, 16, 256];
/// Latencies above this are clamped in the histogram.
const LATENCY_US_MAX: u64 = 60_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    None,
    SyncEvery2500,
    AckAfterSync,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::SyncEvery2500 => "sync_every_2500",
            Policy::AckAfterSync => "ack_after_sync",
        }
    }

    fn config(self) -> LogConfig {
        LogConfig {
            sync_every_records: match self {
                Policy::SyncEvery2500 => 2500,
                Policy::None | Policy::AckAfterSync => u64::MAX,
            },
            sync_timeout: SYNC_TIMEOUT_NEVER,
            ..LogConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    record_bytes: usize,
    policy: Policy,
    appenders: usize,
}

/// When a case stops appending: whichever of time and bytes comes first.
#[derive(Debug, Clone, Copy)]
struct Budget {
    time: Duration,
    bytes: u64,
}

impl Budget {
    fn done(&self, start: Instant, bytes: u64) -> bool {
        bytes >= self.bytes || start.elapsed() >= self.time
    }
}

/// What the log side measured.
#[derive(Debug)]
struct LogRun {
    records: u64,
    elapsed: Duration,
    fsyncs: u64,
    writes: u64,
    bytes_written: u64,
    latency_us: Option<Histogram<u64>>,
}

/// What the raw side measured.
#[derive(Debug)]
struct RawRun {
    elapsed: Duration,
    fsyncs: u64,
    writes: u64,
}

/// Shared by the appenders of one `ack_after_sync` case.
#[derive(Debug)]
struct Appenders {
    start: Instant,
    budget: Budget,
    appended_bytes: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
}

/// A single appender streaming records, waiting only to bound what is queued.
async fn stream_appends(log: &Log<UringIo>, payload: &Bytes, budget: Budget) -> Res<()> {
    let per_chunk = (APPEND_CHUNK_BYTES / payload.len()).max(1);
    let chunk_bytes = u64::try_from(per_chunk * payload.len())?;
    let start = Instant::now();
    let mut appended = 0;
    let mut previous_end = log.end().seq;
    while !budget.done(start, appended) {
        for _ in 0..per_chunk {
            log.append(payload.clone())?;
        }
        appended += chunk_bytes;
        log.wait_written(previous_end).await?;
        previous_end = log.end().seq;
    }
    log.wait_written(log.end().seq).await?;
    Ok(())
}

/// One `ack_after_sync` appender: append, wait until durable, record the latency, repeat.
async fn ack_appender(log: Log<UringIo>, payload: Bytes, shared: Rc<Appenders>) -> Res<()> {
    let len = u64::try_from(payload.len())?;
    while !shared
        .budget
        .done(shared.start, shared.appended_bytes.get())
    {
        let t = Instant::now();
        let pos = log.append(payload.clone())?;
        shared.appended_bytes.set(shared.appended_bytes.get() + len);
        log.wait_synced(pos.seq + 1).await?;
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared
            .latency_us
            .borrow_mut()
            .saturating_record(us.clamp(1, LATENCY_US_MAX));
    }
    Ok(())
}

async fn ack_appends(
    log: &Log<UringIo>,
    payload: &Bytes,
    appenders: usize,
    budget: Budget,
) -> Res<Histogram<u64>> {
    let shared = Rc::new(Appenders {
        start: Instant::now(),
        budget,
        appended_bytes: Cell::new(0),
        latency_us: RefCell::new(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?),
    });
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            tokio_uring::spawn(ack_appender(
                log.clone(),
                payload.clone(),
                Rc::clone(&shared),
            ))
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let histogram = shared.latency_us.borrow().clone();
    Ok(histogram)
}

/// Appends through the log in `dir` and closes it.
async fn run_log(dir: &Path, case: Case, budget: Budget) -> Res<LogRun> {
    let (log, _) = Log::open(UringIo, dir, case.policy.config()).await?;
    let payload = Bytes::from(
        (0..case.record_bytes)
            .map(|i| u8::try_from(i % 251).unwrap_or(0))
            .collect::<Vec<u8>>(),
    );
    let before = log.stats();
    let first = log.end().seq;
    let start = Instant::now();
    let latency_us = match case.policy {
        Policy::AckAfterSync => Some(ack_appends(&log, &payload, case.appenders, budget).await?),
        Policy::None | Policy::SyncEvery2500 => {
            stream_appends(&log, &payload, budget).await?;
            None
        }
    };
    let elapsed = start.elapsed();
    let after = log.stats();
    let records = log.end().seq - first;
    log.close().await?;
    Ok(LogRun {
        records,
        elapsed,
        fsyncs: after.fsyncs - before.fsyncs,
        writes: after.writes - before.writes,
        bytes_written: after.bytes_written - before.bytes_written,
        latency_us,
    })
}

/// The record bytes of the log in `dir`: its segment files in order, headers removed.
fn read_stream(dir: &Path) -> Res<Vec<u8>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let mut stream = Vec::new();
    for path in segments {
        let bytes = std::fs::read(&path)?;
        stream.extend_from_slice(bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or_default());
    }
    Ok(stream)
}

/// How the raw side writes: batches of `chunk_bytes`, an fdatasync after every `group_bytes`
/// (if any), and at most `fsyncs_max` fdatasyncs in all.
#[derive(Debug, Clone, Copy)]
struct RawPlan {
    chunk_bytes: usize,
    group_bytes: Option<usize>,
    fsyncs_max: u64,
}

impl RawPlan {
    /// The log's own pattern: its average write size, and its records per fdatasync.
    fn mirror(run: &LogRun, record_encoded_bytes: u64, stream_len: usize) -> Res<Self> {
        let per_write = run.bytes_written.div_ceil(run.writes.max(1));
        let records_per_write = per_write.div_ceil(record_encoded_bytes).max(1);
        let chunk_bytes = usize::try_from(records_per_write * record_encoded_bytes)?;
        let group_bytes = if run.fsyncs == 0 {
            None
        } else {
            let records_per_fsync = run.records.div_ceil(run.fsyncs).max(1);
            Some(usize::try_from(records_per_fsync * record_encoded_bytes)?)
        };
        Ok(RawPlan {
            chunk_bytes: chunk_bytes.min(stream_len.max(1)),
            group_bytes,
            fsyncs_max: run.fsyncs,
        })
    }
}

/// Writes `stream` to a new file at `path` following `plan`; the buffers are cut before the
/// clock starts and each is handed to the kernel once.
async fn run_raw(path: &Path, stream: &[u8], plan: RawPlan) -> Res<RawRun> {
    let group_bytes = plan.group_bytes.unwrap_or(stream.len()).max(1);
    let groups: Vec<Vec<Vec<u8>>> = stream
        .chunks(group_bytes)
        .map(|g| g.chunks(plan.chunk_bytes).map(<[u8]>::to_vec).collect())
        .collect();
    let file = tokio_uring::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .await?;
    // Like a segment: a header written and made durable before the first record.
    let (res, _) = file.write_all_at(vec![0; SEGMENT_HEADER_BYTES], 0).await;
    res?;
    file.sync_data().await?;
    let mut pos = u64::try_from(SEGMENT_HEADER_BYTES)?;
    let (mut fsyncs, mut writes) = (0, 0);
    let start = Instant::now();
    for group in groups {
        for chunk in group {
            let len = u64::try_from(chunk.len())?;
            let (res, _) = file.write_all_at(chunk, pos).await;
            res?;
            pos += len;
            writes += 1;
        }
        if plan.group_bytes.is_some() && fsyncs < plan.fsyncs_max {
            file.sync_data().await?;
            fsyncs += 1;
        }
    }
    let elapsed = start.elapsed();
    // Outside the clock: leave nothing dirty for the next case.
    file.sync_all().await?;
    file.close().await?;
    Ok(RawRun {
        elapsed,
        fsyncs,
        writes,
    })
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn report(case: Case, log: &LogRun, raw: &RawRun, stream_len: usize) {
    let secs = log.elapsed.as_secs_f64().max(1e-9);
    let log_mb_s = mb_per_s(stream_len, log.elapsed);
    let raw_mb_s = mb_per_s(stream_len, raw.elapsed);
    let latency = log.latency_us.as_ref().map_or_else(String::new, |h| {
        format!(
            " p50_us={} p99_us={}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        )
    });
    println!(
        "disk_throughput record_bytes={} policy={} appenders={} records_per_s={:.0} \
         log_mb_s={log_mb_s:.1} raw_mb_s={raw_mb_s:.1} ratio={:.3} fsyncs_per_s={:.1}{latency}",
        case.record_bytes,
        case.policy.name(),
        case.appenders,
        log.records as f64 / secs,
        log_mb_s / raw_mb_s.max(1e-9),
        log.fsyncs as f64 / secs,
    );
    eprintln!(
        "  detail: records={} bytes={stream_len} log_s={:.3} raw_s={:.3} log_writes={} \
         log_avg_write_bytes={} raw_writes={} log_fsyncs={} raw_fsyncs={} records_per_fsync={:.1}",
        log.records,
        log.elapsed.as_secs_f64(),
        raw.elapsed.as_secs_f64(),
        log.writes,
        log.bytes_written / log.writes.max(1),
        raw.writes,
        log.fsyncs,
        raw.fsyncs,
        log.records as f64 / log.fsyncs.max(1) as f64,
    );
}

async fn run_case(root: &Path, index: usize, case: Case, budget: Budget) -> Res<()> {
    let case_dir = root.join(format!("case-{index}"));
    let log_dir = case_dir.join("log");
    let log = run_log(&log_dir, case, budget).await?;
    let stream = read_stream(&log_dir)?;
    let record_encoded = RECORD_HEADER_BYTES_U64 + u64::try_from(case.record_bytes)?;
    let expected = log.records * record_encoded;
    if u64::try_from(stream.len())? != expected {
        return Err(format!("log holds {} bytes, expected {expected}", stream.len()).into());
    }
    let plan = RawPlan::mirror(&log, record_encoded, stream.len())?;
    let raw = run_raw(&case_dir.join("raw.dat"), &stream, plan).await?;
    report(case, &log, &raw, stream.len());
    std::fs::remove_dir_all(&case_dir)?;
    Ok(())
}

/// The mount (device, filesystem type, mount point) holding `dir`, from `/proc/self/mounts`.
fn filesystem_of(dir: &Path) -> (String, String, String) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount = fields.next()?;
            let fstype = fields.next()?;
            dir.starts_with(mount)
                .then(|| (device.to_owned(), fstype.to_owned(), mount.to_owned()))
        })
        .max_by_key(|(_, _, mount)| mount.len())
        .unwrap_or_else(|| ("?".into(), "?".into(), "?".into()))
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for &record_bytes in &RECORD_SIZES_BYTES {
        for policy in [Policy::None, Policy::SyncEvery2500] {
            cases.push(Case {
                record_bytes,
                policy,
                appenders: 1,
            });
        }
        for &appenders in &ACK_APPENDERS {
            cases.push(Case {
                record_bytes,
                policy: Policy::AckAfterSync,
                appenders,
            });
        }
    }
    cases
}

fn main() -> Res<()> {
    let seconds = match std::env::var("RINGSQ_BENCH_SECONDS") {
        Ok(s) => s.parse::<f64>()?,
        Err(_) => CASE_SECONDS_DEFAULT,
    };
    let budget = Budget {
        time: Duration::try_from_secs_f64(seconds)?,
        bytes: CASE_BYTES_MAX,
    };
    let base = std::env::var_os("RINGSQ_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let tmp = tempfile::Builder::new()
        .prefix("ringsq-disk-throughput-")
        .tempdir_in(&base)?;
    let root = tmp.path().canonicalize()?;
    let (device, fstype, mount) = filesystem_of(&root);
    println!(
        "disk_throughput dir={} fs={fstype} device={device} mount={mount} \
         seconds_per_case={seconds} bytes_per_case_max={CASE_BYTES_MAX} \
         (log and raw file in the same directory; MB = 10^6 bytes written, record headers included)",
        root.display()
    );
    tokio_uring::start(async {
        for (index, case) in cases().into_iter().enumerate() {
            run_case(&root, index, case, budget).await?;
        }
        Ok::<(), Box<dyn Error>>(())
    })?;
    tmp.close()?;
    Ok(())
}
