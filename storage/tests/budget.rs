//! File descriptors as a budget and write health, on both backends where the OS matters:
//! many logs share a few descriptors (idle logs hold none, dirty files are synced before they
//! are closed), and the backend's write health follows the latest write (ENOSPC, a poisoned
//! log) and clears once a write succeeds.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{open, payload, read_all, run_mem, run_mem_paused, small_config};
use ringsq_storage::files::IDLE_CLOSE_AFTER;
use ringsq_storage::{CrashMode, Fault, Io, LogConfig, Op};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Logs opened side by side in the budget tests.
const LOGS: u64 = 40;
/// Descriptors those logs get.
const OPEN_MAX: usize = 4;

fn log_dir(root: &Path, i: u64) -> PathBuf {
    root.join(format!("log-{i}"))
}

/// Forty logs written, read, closed and reopened through four descriptors: never more open at
/// once, every record back.
async fn many_logs_share_a_few_descriptors<I: Io>(io: I, root: PathBuf) {
    io.files().set_open_max(OPEN_MAX);
    let mut logs = Vec::new();
    for i in 0..LOGS {
        logs.push(open(&io, &log_dir(&root, i), small_config()).await.0);
    }
    for round in 0..3 {
        for (i, log) in (0u64..).zip(&logs) {
            log.append(payload(i * 10 + round)).unwrap();
        }
    }
    for log in &logs {
        log.sync().await.unwrap();
    }
    for (i, log) in (0u64..).zip(&logs) {
        let all = read_all(log).await;
        let want: Vec<_> = (0..3).map(|round| payload(i * 10 + round)).collect();
        assert_eq!(all.iter().map(|r| r.data.clone()).collect::<Vec<_>>(), want);
        log.close().await.unwrap();
    }
    let stats = io.files().stats();
    assert!(stats.open_peak <= OPEN_MAX, "{stats:?}");
    assert_eq!(stats.open, 0, "closed logs hold no descriptor: {stats:?}");
    for i in 0..LOGS {
        let (log, report) = open(&io, &log_dir(&root, i), small_config()).await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(read_all(&log).await.len(), 3);
        log.close().await.unwrap();
    }
    assert!(io.files().stats().open_peak <= OPEN_MAX);
}

/// A log whose file holds unsynced writes keeps it until it syncs; when another log needs the
/// descriptor, the holders are asked to sync early (their sync timeout is an hour).
async fn a_dirty_file_is_synced_before_its_descriptor_goes<I: Io>(io: I, root: PathBuf) {
    io.files().set_open_max(2);
    let mut dirty = Vec::new();
    for i in 0..2 {
        let (log, _) = open(&io, &log_dir(&root, i), small_config()).await;
        log.append(payload(i)).unwrap();
        log.wait_written(1).await.unwrap();
        assert_eq!(log.synced().seq, 0, "nothing asked for a sync yet");
        dirty.push(log);
    }
    // Both descriptors hold unsynced writes: a third log can only open once one is synced.
    let (log, _) = open(&io, &log_dir(&root, 2), small_config()).await;
    log.append(payload(2)).unwrap();
    log.sync().await.unwrap();
    log.close().await.unwrap();
    let synced: u64 = dirty.iter().map(|l| l.synced().seq).sum();
    assert!(synced >= 1, "a holder synced to give its file back");
    for log in dirty {
        log.close().await.unwrap();
    }
    let stats = io.files().stats();
    assert!(stats.open_peak <= 2, "{stats:?}");
    assert!(stats.waits_total >= 1, "{stats:?}");
}

both_backends!(
    many_logs_share_a_few_descriptors,
    a_dirty_file_is_synced_before_its_descriptor_goes
);

#[test]
fn idle_logs_hold_no_descriptor() {
    run_mem_paused(|io, root| async move {
        let mut logs = Vec::new();
        for i in 0..5 {
            let (log, _) = open(&io, &log_dir(&root, i), small_config()).await;
            log.append(payload(i)).unwrap();
            log.sync().await.unwrap();
            logs.push(log);
        }
        assert!(io.files().stats().open > 0);
        tokio::time::sleep(IDLE_CLOSE_AFTER * 2).await;
        let stats = io.files().stats();
        assert_eq!((stats.open, stats.cached), (0, 0), "{stats:?}");
        // Still usable: files open again when needed.
        for (i, log) in (0u64..).zip(&logs) {
            assert_eq!(read_all(log).await[0].data, payload(i));
            log.append(payload(100 + i)).unwrap();
            log.sync().await.unwrap();
        }
    });
}

#[test]
fn health_follows_the_latest_write() {
    run_mem(|io, dir| async move {
        let health = io.health();
        let (log, _) = open(&io, &dir, small_config()).await;
        log.append(payload(0)).unwrap();
        log.sync().await.unwrap();
        assert!(health.error().is_none());
        io.fail_next(Op::Write, Fault::NoSpace);
        log.append(payload(1)).unwrap();
        assert!(log.wait_written(2).await.unwrap_err().is_no_space());
        assert!(health.error().is_some_and(|e| e.is_no_space()));
        assert!(log.error().is_none(), "ENOSPC does not poison");
        // The next write that gets through clears it.
        log.append(payload(1)).unwrap();
        log.sync().await.unwrap();
        assert!(health.error().is_none());
        // An fsync error poisons: failed until that log is closed, whatever else succeeds.
        let (other, _) = open(&io, &dir.with_file_name("other"), small_config()).await;
        log.append(payload(2)).unwrap();
        io.fail_next(Op::Sync, Fault::Eio);
        assert!(log.sync().await.is_err());
        other.append(payload(0)).unwrap();
        other.sync().await.unwrap();
        let error = health.error().expect("a poisoned log is a failure");
        assert!(error.to_string().contains("fdatasync"), "{error}");
        assert!(log.close().await.is_err());
        assert!(health.error().is_none(), "closed: {:?}", health.error());
        other.close().await.unwrap();
    });
}

/// A full disk at open: nothing at open needs space (not even a log with no segment yet), every
/// append fails with ENOSPC until space returns, then works.
#[test]
fn a_log_opens_on_a_full_disk() {
    run_mem(|io, root| async move {
        let full = log_dir(&root, 0);
        let (log, _) = open(&io, &full, small_config()).await;
        for i in 0..10 {
            log.append(payload(i)).unwrap();
        }
        log.close().await.unwrap();
        let empty = log_dir(&root, 1);
        open(&io, &empty, small_config())
            .await
            .0
            .close()
            .await
            .unwrap();
        let io = io.crash(CrashMode::KeepUnsynced);
        io.set_space_bytes_max(Some(0));
        for dir in [&full, &empty] {
            let (log, _) = open(&io, dir, small_config()).await;
            let end = log.end().seq;
            log.append(payload(end)).unwrap();
            let err = log.sync().await.unwrap_err();
            assert!(err.is_no_space(), "{}: {err}", dir.display());
            assert!(io.health().error().is_some());
            assert_eq!(log.end().seq, end);
            log.close().await.unwrap();
        }
        io.set_space_bytes_max(None);
        for dir in [&full, &empty] {
            let (log, _) = open(&io, dir, small_config()).await;
            let end = log.end().seq;
            log.append(payload(end)).unwrap();
            log.sync().await.unwrap();
            assert_eq!(read_all(&log).await.last().unwrap().data, payload(end));
            log.close().await.unwrap();
        }
        assert!(io.health().error().is_none());
    });
}

/// Running out of descriptors while writing fails the records (as ENOSPC does) and does not
/// poison the log.
#[test]
fn emfile_on_a_write_fails_the_records_without_poisoning() {
    run_mem(|io, dir| async move {
        let config = LogConfig {
            sync_timeout: Duration::from_secs(3600),
            ..small_config()
        };
        let (log, _) = open(&io, &dir, config).await;
        log.append(payload(0)).unwrap();
        log.sync().await.unwrap();
        io.files().set_open_max(2);
        // The segment handle stays cached; make the writer open it again, and fail that open.
        log.close().await.unwrap();
        let (log, _) = open(&io, &dir, small_config()).await;
        io.fail_next(Op::Open, Fault::TooManyFiles);
        log.append(payload(1)).unwrap();
        let err = log.wait_written(2).await.unwrap_err();
        assert!(err.to_string().contains("Too many open files"), "{err}");
        assert!(log.error().is_none());
        log.append(payload(1)).unwrap();
        log.sync().await.unwrap();
        assert_eq!(read_all(&log).await.len(), 2);
    });
}

/// The unwritten records a caller asked to keep (it told someone they were stored before they
/// were written) are not dropped by ENOSPC: they stay queued and are written once space
/// returns; records past them fail as before.
#[test]
fn kept_records_survive_a_full_disk() {
    run_mem_paused(|io, dir| async move {
        let (log, _) = open(&io, &dir, small_config()).await;
        log.keep_unwritten(2);
        for i in 0..3 {
            log.append(payload(i)).unwrap();
        }
        log.sync().await.unwrap();
        log.append(payload(3)).unwrap();
        log.append(payload(4)).unwrap();
        log.append(payload(5)).unwrap();
        let unpromised = log.ticket(6);
        io.fail_next(Op::Write, Fault::NoSpace);
        assert!(log
            .wait_ticket(unpromised, false)
            .await
            .unwrap_err()
            .is_no_space());
        assert_eq!(
            log.end().seq,
            5,
            "the two oldest unwritten records stay, the others go"
        );
        assert!(io.health().error().is_some());
        // The writer tries again by itself; this time the write goes through.
        log.wait_written(5).await.unwrap();
        assert!(io.health().error().is_none());
        log.append(payload(5)).unwrap();
        log.sync().await.unwrap();
        let all = read_all(&log).await;
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
        // A disk that stays full: kept records wait; closing gives up on them.
        io.set_space_bytes_max(Some(0));
        log.append(payload(6)).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(log.written().seq, 6);
        assert_eq!(log.end().seq, 7);
        log.close().await.unwrap();
        let io = io.crash(CrashMode::KeepUnsynced);
        let (log, _) = open(&io, &dir, small_config()).await;
        assert_eq!(log.end().seq, 6);
    });
}
