//! Property: for random sequences of appends, syncs, crashes and reopens on `MemIo`, what
//! reopens is exactly a prefix of what was appended, and that prefix holds every record that
//! was synced.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::read_all;
use proptest::prelude::*;
use ringsq_storage::{CrashMode, Log, LogConfig, MemIo};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Step {
    Append(usize),
    Sync,
    WaitWritten,
    Yield,
    Crash(CrashMode),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..300).prop_map(Step::Append),
        2 => Just(Step::Sync),
        1 => Just(Step::WaitWritten),
        2 => Just(Step::Yield),
        1 => prop_oneof![
            Just(CrashMode::LoseUnsynced),
            Just(CrashMode::TearLastWrite),
            Just(CrashMode::KeepUnsynced)
        ]
        .prop_map(Step::Crash),
        1 => Just(Step::Reopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 1024,
        sync_every_records: 1_000_000,
        sync_timeout: Duration::from_secs(3600),
        record_size_max: 4096,
        cache_bytes_max: 512,
    }
}

async fn open(io: &MemIo, dir: &Path) -> Log<MemIo> {
    Log::open(io.clone(), dir, config()).await.unwrap().0
}

/// Reopens and checks the prefix property; returns the records now in the log.
async fn check_prefix(log: &Log<MemIo>, model: &[Bytes], synced: usize) -> usize {
    let all = read_all(log).await;
    assert!(
        all.len() >= synced,
        "lost synced records: {} < {synced}",
        all.len()
    );
    assert!(all.len() <= model.len(), "records from nowhere");
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.pos.seq, i as u64);
        assert_eq!(r.data, model[i], "record {i} differs");
    }
    assert_eq!(log.end().seq, all.len() as u64);
    all.len()
}

async fn run(steps: Vec<Step>) {
    let dir = Path::new("/mem/log");
    let mut io = MemIo::new();
    let mut log = open(&io, dir).await;
    let mut model: Vec<Bytes> = Vec::new();
    let mut synced = 0usize;
    let mut counter = 0u64;
    for step in steps {
        match step {
            Step::Append(len) => {
                counter += 1;
                let data = Bytes::from(format!("{counter}:{}", "y".repeat(len)));
                log.append(data.clone()).unwrap();
                model.push(data);
            }
            Step::Sync => {
                log.sync().await.unwrap();
                synced = model.len();
            }
            Step::WaitWritten => log.wait_written(model.len() as u64).await.unwrap(),
            Step::Yield => tokio::task::yield_now().await,
            Step::Crash(mode) => {
                io = io.crash(mode);
                log = open(&io, dir).await;
                let kept = check_prefix(&log, &model, synced).await;
                model.truncate(kept);
                synced = kept;
            }
            Step::Reopen => {
                log.close().await.unwrap();
                log = open(&io, dir).await;
                assert_eq!(check_prefix(&log, &model, model.len()).await, model.len());
                synced = model.len();
            }
        }
    }
    let io = io.crash(CrashMode::LoseUnsynced);
    let log = open(&io, dir).await;
    check_prefix(&log, &model, synced).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn reopen_yields_a_prefix_holding_every_synced_record(steps in prop::collection::vec(step(), 1..40)) {
        common::run_mem(|_, _| run(steps));
    }
}
