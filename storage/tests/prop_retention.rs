//! Property: a reader that only reads synced records (what `--ack-after-sync` lets a consumer
//! see), finishes some, rewinds to any retained record, while retention drops whole segments
//! below its floor — by floor alone, or also by age — and the log crashes and reopens: every
//! record at or above the reader's floor stays readable with its contents, and nothing the
//! reader was handed is ever taken back by a crash.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use ringsq_storage::{CrashMode, Log, LogConfig, MemIo, Position};
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
enum Step {
    Append(usize),
    Sync,
    /// The reader takes up to this many visible (synced) records.
    Read(usize),
    /// The reader finishes everything it has read: its floor moves to its cursor.
    Finish,
    /// The reader goes back to the record this far into what the log retains.
    Rewind(usize),
    /// Retention: by the reader's floor only (`false`), or also everything "older" (`true`:
    /// every segment counts as expired).
    Retain(bool),
    Crash(CrashMode),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..200).prop_map(Step::Append),
        3 => Just(Step::Sync),
        4 => (1usize..20).prop_map(Step::Read),
        2 => Just(Step::Finish),
        1 => (0usize..40).prop_map(Step::Rewind),
        3 => any::<bool>().prop_map(Step::Retain),
        1 => prop_oneof![
            Just(CrashMode::LoseUnsynced),
            Just(CrashMode::TearLastWrite),
            Just(CrashMode::KeepUnsynced)
        ]
        .prop_map(Step::Crash),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 512,
        sync_every_records: 1_000_000,
        sync_timeout: Duration::from_secs(3600),
        record_size_max: 4096,
        cache_bytes_max: 256,
    }
}

/// The reader: where it reads next and the oldest record it still needs.
struct Reader {
    cursor: Position,
    floor: Position,
}

/// Reads what the log holds from `from` up to `until` (exclusive).
async fn read_range(log: &Log<MemIo>, from: Position, until: u64) -> Vec<(Position, Bytes)> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos.seq < until {
        let records = log.read(pos, 64, 4096).await.unwrap();
        let Some(last) = records.last() else { break };
        pos = last.next_pos();
        out.extend(
            records
                .into_iter()
                .filter(|r| r.pos.seq < until)
                .map(|r| (r.pos, r.data)),
        );
    }
    out
}

/// Everything from the reader's floor to what the log must have is there, as appended.
async fn check(log: &Log<MemIo>, model: &[Bytes], reader: &Reader, must_have: u64) {
    assert!(
        log.first().seq <= reader.floor.seq,
        "retention dropped seq {} that the reader still needs",
        log.first().seq.saturating_sub(1)
    );
    let got = read_range(log, reader.floor, must_have).await;
    let want = must_have.saturating_sub(reader.floor.seq);
    assert_eq!(got.len() as u64, want, "records from the floor");
    for (pos, data) in got {
        assert_eq!(
            data,
            model[usize::try_from(pos.seq).unwrap()],
            "seq {}",
            pos.seq
        );
    }
}

async fn run(steps: Vec<Step>) {
    let dir = Path::new("/mem/log");
    let mut io = MemIo::new();
    let mut log = Log::open(io.clone(), dir, config()).await.unwrap().0;
    let mut model: Vec<Bytes> = Vec::new();
    let mut reader = Reader {
        cursor: log.end(),
        floor: log.end(),
    };
    // Highest seq handed to the reader + 1: a crash must never take it back.
    let mut delivered = 0u64;
    for (n, step) in steps.into_iter().enumerate() {
        match step {
            Step::Append(len) => {
                let data = Bytes::from(format!("{n}:{}", "z".repeat(len)));
                log.append(data.clone()).unwrap();
                model.push(data);
            }
            Step::Sync => log.sync().await.unwrap(),
            Step::Read(k) => {
                let visible = log.synced().seq;
                let until = visible.min(reader.cursor.seq + k as u64);
                let got = read_range(&log, reader.cursor, until).await;
                if let Some((pos, data)) = got.last() {
                    reader.cursor = Position {
                        seq: pos.seq + 1,
                        offset: pos.offset + 16 + data.len() as u64,
                    };
                    delivered = delivered.max(reader.cursor.seq);
                }
            }
            Step::Finish => reader.floor = reader.cursor,
            Step::Rewind(back) => {
                let first = log.first().seq;
                let target = first + (back as u64).min(reader.cursor.seq - first);
                let from = read_range(&log, log.first(), target + 1).await;
                if let Some((pos, _)) = from.into_iter().find(|(p, _)| p.seq == target) {
                    reader.cursor = pos;
                    reader.floor = reader.floor.min(pos);
                }
            }
            Step::Retain(expired) => {
                let age = if expired {
                    SystemTime::now() + Duration::from_secs(86_400)
                } else {
                    SystemTime::UNIX_EPOCH
                };
                log.retain(reader.floor.seq, Some(age));
            }
            Step::Crash(mode) => {
                io = io.crash(mode);
                log = Log::open(io.clone(), dir, config()).await.unwrap().0;
                let kept = log.end().seq;
                assert!(
                    kept >= delivered,
                    "a crash took back records the reader was handed"
                );
                model.truncate(usize::try_from(kept).unwrap());
            }
        }
        let must_have = log.synced().seq.max(delivered);
        check(&log, &model, &reader, must_have).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn retention_and_rewinds_keep_what_a_reader_needs(steps in prop::collection::vec(step(), 1..60)) {
        common::run_mem(|_, _| run(steps));
    }
}
