//! Faults and crashes: fsync and write errors poison; ENOSPC fails only the records it hit;
//! crashes keep exactly what was synced; group commit batches; sync policies fire.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{open, payload, read_all, run_mem, run_mem_paused, small_config};
use ringsq_storage::{CrashMode, Error, Fault, Io, Log, LogConfig, MemIo, Op};
use std::path::PathBuf;
use std::time::Duration;

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 4096,
        ..small_config()
    }
}

fn appended(log: &Log<MemIo>, range: std::ops::Range<u64>) {
    for i in range {
        log.append(payload(i)).unwrap();
    }
}

#[test]
fn fsync_failure_poisons_and_keeps_the_original_error() {
    run_mem(|io, dir| async move {
        let (log, _) = open(&io, &dir, config()).await;
        appended(&log, 0..5);
        log.sync().await.unwrap();
        appended(&log, 5..10);
        io.fail_next(Op::Sync, Fault::Eio);
        let err = log.wait_synced(10).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    op: "fdatasync",
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(log.error(), Some(Error::Io { .. })));
        assert!(matches!(log.append(payload(10)), Err(Error::Poisoned(_))));
        assert!(log.wait_synced(10).await.is_err());
        assert!(matches!(log.close().await, Err(Error::Poisoned(_))));
        // What was synced before survives a power loss.
        let io = io.crash(CrashMode::LoseUnsynced);
        let (log, _) = open(&io, &dir, config()).await;
        let all = read_all(&log).await;
        assert!(all.len() >= 5);
        assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
    });
}

#[test]
fn write_error_poisons_every_waiter() {
    run_mem(|io, dir| async move {
        let (log, _) = open(&io, &dir, config()).await;
        io.fail_next(Op::Write, Fault::ShortThenEio);
        appended(&log, 0..5);
        let a = log.clone();
        let waiter = tokio::task::spawn_local(async move { a.wait_synced(5).await });
        let err = log.wait_written(5).await.unwrap_err();
        assert!(matches!(err, Error::Io { op: "write", .. }), "{err}");
        assert!(waiter.await.unwrap().is_err());
        assert!(log.error().is_some());
    });
}

async fn no_space_then_recover(io: MemIo, dir: PathBuf, fault: Fault) {
    let (log, _) = open(&io, &dir, config()).await;
    appended(&log, 0..3);
    log.sync().await.unwrap();
    io.fail_next(Op::Write, fault);
    appended(&log, 3..8);
    let err = log.wait_written(8).await.unwrap_err();
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("no space left on device"));
    assert!(log.error().is_none());
    assert_eq!(log.end(), log.written());
    assert_eq!(log.end().seq, 3);
    // Appends work again; the same seqs are handed out again.
    let p = log.append(payload(3)).unwrap();
    assert_eq!(p.seq, 3);
    log.sync().await.unwrap();
    log.close().await.unwrap();
    let io = io.crash(CrashMode::LoseUnsynced);
    let (log, report) = open(&io, &dir, config()).await;
    assert!(report.is_clean(), "{report}");
    let all = read_all(&log).await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
}

#[test]
fn no_space_fails_the_write_only() {
    run_mem(|io, dir| no_space_then_recover(io, dir, Fault::NoSpace));
    run_mem(|io, dir| no_space_then_recover(io, dir, Fault::ShortThenNoSpace));
}

#[test]
fn full_disk_then_space_freed() {
    run_mem(|io, dir| async move {
        let (log, _) = open(&io, &dir, config()).await;
        appended(&log, 0..10);
        log.sync().await.unwrap();
        io.set_space_bytes_max(Some(4096 + 1000));
        let mut failed = None;
        for i in 10..1000 {
            let pos = log.append(payload(i)).unwrap();
            if let Err(e) = log.wait_written(pos.seq + 1).await {
                failed = Some((i, e));
                break;
            }
        }
        let (i, err) = failed.expect("the disk never filled");
        assert!(err.is_no_space(), "{err}");
        assert_eq!(log.end().seq, i);
        io.set_space_bytes_max(None);
        log.append(payload(i)).unwrap();
        log.sync().await.unwrap();
        let all = read_all(&log).await;
        assert_eq!(all.len() as u64, i + 1);
        assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
    });
}

async fn crash_case(io: MemIo, dir: PathBuf, mode: CrashMode) {
    let (log, _) = open(&io, &dir, config()).await;
    appended(&log, 0..50);
    log.sync().await.unwrap();
    appended(&log, 50..80);
    log.wait_written(80).await.unwrap();
    let io = io.crash(mode);
    drop(log);
    let (log, _) = open(&io, &dir, config()).await;
    let all = read_all(&log).await;
    assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
    match mode {
        CrashMode::LoseUnsynced => assert_eq!(all.len(), 50),
        CrashMode::TearLastWrite => assert!((50..80).contains(&all.len())),
        CrashMode::KeepUnsynced => assert_eq!(all.len(), 80),
    }
    // The log goes on from where it recovered.
    let p = log.append(payload(all.len() as u64)).unwrap();
    assert_eq!(p.seq, all.len() as u64);
    log.close().await.unwrap();
}

#[test]
fn crashes_keep_what_was_synced() {
    for mode in [
        CrashMode::LoseUnsynced,
        CrashMode::TearLastWrite,
        CrashMode::KeepUnsynced,
    ] {
        run_mem(move |io, dir| crash_case(io, dir, mode));
    }
}

/// N waiters arriving together are released by far fewer fsyncs than N.
async fn group_commit<I: Io>(io: I, dir: PathBuf) {
    let config = LogConfig {
        sync_every_records: 1_000_000,
        sync_timeout: Duration::from_secs(3600),
        ..LogConfig::default()
    };
    let (log, _) = open(&io, &dir, config).await;
    let waiters_count = 200u64;
    let mut tasks = Vec::new();
    for i in 0..waiters_count {
        let log = log.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let pos = log.append(payload(i)).unwrap();
            log.wait_synced(pos.seq + 1).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = log.stats();
    assert!(stats.fsyncs <= 4, "{stats:?}");
    assert!(stats.writes <= 4, "{stats:?}");
    assert_eq!(log.synced().seq, waiters_count);
    // Waves: each wave of waiters arriving while the previous fsync runs shares one fsync.
    let before = log.stats().fsyncs;
    for wave in 0..5u64 {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let log = log.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let pos = log.append(payload(wave * 100 + i)).unwrap();
                log.wait_synced(pos.seq + 1).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let used = log.stats().fsyncs - before;
    assert!(used <= 10, "250 waiters took {used} fsyncs");
    log.close().await.unwrap();
}

both_backends!(group_commit);

#[test]
fn sync_every_records_policy() {
    run_mem_paused(|io, dir| async move {
        let config = LogConfig {
            sync_every_records: 10,
            ..config()
        };
        let (log, _) = open(&io, &dir, config).await;
        appended(&log, 0..9);
        log.wait_written(9).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await; // paused clock: runs every ready task
        assert_eq!(log.synced().seq, 0);
        appended(&log, 9..10);
        log.wait_written(10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(log.synced().seq, 10);
    });
}

#[test]
fn sync_timeout_policy_and_checkpoint() {
    run_mem_paused(|io, dir| async move {
        let timed = LogConfig {
            sync_timeout: Duration::from_secs(2),
            sync_every_records: 1_000_000,
            ..config()
        };
        let (log, _) = open(&io, &dir, timed).await;
        let checkpoints_before = io.op_count(Op::Rename);
        appended(&log, 0..3);
        log.wait_written(3).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert_eq!(log.synced().seq, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log.synced().seq, 3);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            io.op_count(Op::Rename) > checkpoints_before,
            "checkpoint not written"
        );
        // A crash now recovers from the checkpoint without scanning.
        let io2 = io.crash(CrashMode::LoseUnsynced);
        let (log2, report) = open(&io2, &dir, config()).await;
        assert!(
            report.used_checkpoint && report.bytes_scanned == 0,
            "{report}"
        );
        assert_eq!(log2.end().seq, 3);
        drop(log);
    });
}

#[test]
fn group_commit_does_not_write_checkpoints() {
    run_mem(|io, dir| async move {
        let (log, _) = open(
            &io,
            &dir,
            LogConfig {
                sync_timeout: Duration::from_secs(3600),
                ..config()
            },
        )
        .await;
        let renames = io.op_count(Op::Rename);
        for i in 0..20 {
            let p = log.append(payload(i)).unwrap();
            log.wait_synced(p.seq + 1).await.unwrap();
        }
        assert!(log.stats().fsyncs >= 20);
        assert_eq!(io.op_count(Op::Rename), renames);
    });
}
