//! Walks every row of the recovery decision table (crate docs) on both backends: build the
//! situation on disk by hand, reopen, check what open did and what the log then holds.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{open, payload, read_all, segments, small_config, Disk};
use ringsq_storage::format::{encode_record, Checkpoint, SegmentHeader};
use ringsq_storage::{checkpoint_path, Error, Log, RecoveryAction, RecoveryReport};
use std::path::{Path, PathBuf};

/// A closed log of `n` records in small segments.
async fn closed_log<D: Disk>(disk: &D, dir: &Path, n: u64) {
    let (log, _) = open(disk, dir, small_config()).await;
    for i in 0..n {
        log.append(payload(i)).unwrap();
    }
    log.close().await.unwrap();
}

async fn reopen<D: Disk>(disk: &D, dir: &Path) -> (Log<D>, RecoveryReport) {
    open(disk, dir, small_config()).await
}

fn has(report: &RecoveryReport, pred: impl Fn(&RecoveryAction) -> bool) -> bool {
    report.actions.iter().any(pred)
}

fn append_bytes<D: Disk>(disk: &D, path: &Path, extra: &[u8]) {
    let mut bytes = disk.get(path).unwrap();
    bytes.extend_from_slice(extra);
    disk.put(path, &bytes);
}

/// Asserts the log holds exactly records 0..n with the expected payloads.
async fn holds<D: Disk>(log: &Log<D>, n: u64) {
    let all = read_all(log).await;
    assert_eq!(all.len() as u64, n);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.data, payload(i as u64), "record {i}");
    }
}

async fn row_03_appended_after_checkpoint<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    let last = segments(&disk, &dir).pop().unwrap();
    let mut extra = Vec::new();
    encode_record(&mut extra, 20, &payload(20)).unwrap();
    append_bytes(&disk, &last, &extra);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(report.is_clean() && report.used_checkpoint, "{report}");
    assert!(report.bytes_scanned > 0, "{report}");
    holds(&log, 21).await;
}

async fn row_04_torn_record_past_eof<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    let last = segments(&disk, &dir).pop().unwrap();
    let mut extra = Vec::new();
    encode_record(&mut extra, 20, &payload(20)).unwrap();
    append_bytes(&disk, &last, &extra[..extra.len() - 3]);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(
            a,
            RecoveryAction::TornTailTruncated { .. }
        )),
        "{report}"
    );
    holds(&log, 20).await;
    log.append(payload(20)).unwrap();
    log.close().await.unwrap();
    let (log, report) = reopen(&disk, &dir).await;
    assert!(report.is_clean(), "{report}");
    holds(&log, 21).await;
}

async fn row_05_zeros_after_last_record<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    let last = segments(&disk, &dir).pop().unwrap();
    append_bytes(&disk, &last, &[0u8; 100]);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(
            a,
            RecoveryAction::TornTailTruncated { bytes: 100, .. }
        )),
        "{report}"
    );
    holds(&log, 20).await;
}

async fn row_06_bad_crc_with_data_behind<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    let last = segments(&disk, &dir).pop().unwrap();
    let before = disk.get(&last).unwrap().len() as u64;
    let mut extra = Vec::new();
    encode_record(&mut extra, 20, &payload(20)).unwrap();
    encode_record(&mut extra, 21, &payload(21)).unwrap();
    extra[20] ^= 0xff; // inside record 20's data
    append_bytes(&disk, &last, &extra);
    let (log, report) = reopen(&disk, &dir).await;
    let moved = report.actions.iter().find_map(|a| match a {
        RecoveryAction::Quarantined {
            file_offset,
            moved_to,
            ..
        } => Some((*file_offset, moved_to.clone())),
        _ => None,
    });
    let (at, moved_to) = moved.unwrap_or_else(|| panic!("{report}"));
    assert_eq!(at, before);
    assert!(moved_to
        .to_string_lossy()
        .ends_with(&format!(".corrupt-crc-at-{before}")));
    assert_eq!(disk.get(&moved_to).unwrap(), extra);
    assert_eq!(disk.get(&last).unwrap().len() as u64, before);
    holds(&log, 20).await;
}

/// A hand-made segment based at seq `u64::MAX`: its one record would end past the last seq a
/// log can hold. It is moved aside, never delivered, and open does not overflow (found by the
/// `segment_recovery` fuzz target).
async fn row_06_record_past_u64<D: Disk>(disk: D, dir: PathBuf) {
    let base_offset = 1 << 40;
    let mut bytes = SegmentHeader {
        base_seq: u64::MAX,
        base_offset,
    }
    .encode()
    .to_vec();
    let mut record = Vec::new();
    encode_record(&mut record, u64::MAX, b"never").unwrap();
    bytes.extend_from_slice(&record);
    let seg = ringsq_storage::segment_path(&dir, base_offset);
    disk.put(&seg, &bytes);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(
            &report,
            |a| matches!(a, RecoveryAction::Quarantined { moved_to, .. } if moved_to.to_string_lossy().ends_with(".corrupt-range-at-32"))
        ),
        "{report}"
    );
    assert_eq!(log.end().seq, u64::MAX);
    assert!(read_all(&log).await.is_empty());
    assert!(matches!(
        log.append(payload(0)),
        Err(Error::Exhausted { .. })
    ));
}

async fn row_07_checkpoint_missing_or_bad<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    disk.remove(&checkpoint_path(&dir));
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        report.is_clean() && !report.used_checkpoint && report.bytes_scanned > 0,
        "{report}"
    );
    holds(&log, 20).await;
    log.close().await.unwrap();
    let mut cp = disk.get(&checkpoint_path(&dir)).unwrap();
    cp[25] ^= 1;
    disk.put(&checkpoint_path(&dir), &cp);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(
            a,
            RecoveryAction::CheckpointIgnored { .. }
        )),
        "{report}"
    );
    holds(&log, 20).await;
}

async fn row_08_stale_checkpoint<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    let last = segments(&disk, &dir).pop().unwrap();
    let bytes = disk.get(&last).unwrap();
    // Cut the last segment after its header: the checkpoint's end is now past end of file.
    disk.put(&last, &bytes[..32]);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(
            &report,
            |a| matches!(a, RecoveryAction::CheckpointIgnored { reason } if reason.contains("stale"))
        ),
        "{report}"
    );
    let n = log.end().seq;
    assert!(n < 20);
    holds(&log, n).await;
}

async fn row_09_extra_segment_after_checkpoint<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 40).await;
    let segs = segments(&disk, &dir);
    assert!(segs.len() >= 3);
    let older = &segs[segs.len() - 2];
    let base: u64 = older.file_name().unwrap().to_str().unwrap()[..20]
        .parse()
        .unwrap();
    let stale = Checkpoint {
        segment_base_offset: base,
        end_seq: 0,
        end_offset: base,
    };
    // end_seq below the segment base would be refused; point at its start instead.
    let header = disk.get(older).unwrap();
    let base_seq = u64::from_le_bytes(header[12..20].try_into().unwrap());
    let stale = Checkpoint {
        end_seq: base_seq,
        ..stale
    };
    disk.put(&checkpoint_path(&dir), &stale.encode());
    let (log, report) = reopen(&disk, &dir).await;
    assert!(report.is_clean() && !report.used_checkpoint, "{report}");
    holds(&log, 40).await;
}

async fn row_10_torn_new_segment_header<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 20).await;
    let (log, _) = reopen(&disk, &dir).await;
    let end = log.end();
    log.close().await.unwrap();
    let torn = ringsq_storage::segment_path(&dir, end.offset);
    disk.put(&torn, &[0u8; 10]);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(
            a,
            RecoveryAction::SegmentRemoved { .. }
        )),
        "{report}"
    );
    assert!(disk.get(&torn).is_none());
    holds(&log, 20).await;
}

async fn row_11_bad_magic<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 40).await;
    let segs = segments(&disk, &dir);
    let mut bytes = disk.get(&segs[1]).unwrap();
    bytes[0] = b'X';
    disk.put(&segs[1], &bytes);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(
            &report,
            |a| matches!(a, RecoveryAction::Quarantined { moved_to, .. } if moved_to.to_string_lossy().ends_with(".corrupt-magic-at-0"))
        ),
        "{report}"
    );
    assert!(
        has(&report, |a| matches!(a, RecoveryAction::Gap { .. })),
        "{report}"
    );
    assert!(log.end().seq == 40);
    // Reads skip the gap: every record returned is one of ours, in order.
    let all = read_all(&log).await;
    assert!(all.len() < 40);
    assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
}

async fn row_12_sealed_segment_cut_short<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 40).await;
    let segs = segments(&disk, &dir);
    let bytes = disk.get(&segs[1]).unwrap();
    disk.put(&segs[1], &bytes[..bytes.len() - 5]);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(a, RecoveryAction::Quarantined { .. })),
        "{report}"
    );
    assert!(
        has(
            &report,
            |a| matches!(a, RecoveryAction::Gap { seq_to, seq_from } if seq_to - seq_from == 1)
        ),
        "{report}"
    );
    let all = read_all(&log).await;
    assert_eq!(all.len(), 39);
    assert!(all.iter().all(|r| r.data == payload(r.pos.seq)));
}

async fn row_13_missing_segment<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 40).await;
    let segs = segments(&disk, &dir);
    disk.remove(&segs[1]);
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(a, RecoveryAction::Gap { .. })),
        "{report}"
    );
    let all = read_all(&log).await;
    assert!(all.len() < 40 && all.iter().all(|r| r.data == payload(r.pos.seq)));
    assert_eq!(log.end().seq, 40);
}

async fn row_14_temp_file<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 5).await;
    let tmp = dir.join("checkpoint.tmp");
    disk.put(&tmp, b"half a checkpoint");
    let (log, report) = reopen(&disk, &dir).await;
    assert!(
        has(&report, |a| matches!(a, RecoveryAction::TempRemoved { .. })),
        "{report}"
    );
    assert!(disk.get(&tmp).is_none());
    holds(&log, 5).await;
}

async fn row_15_unknown_version<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir, 40).await;
    let segs = segments(&disk, &dir);
    let mut bytes = disk.get(&segs[1]).unwrap();
    bytes[8] = 2;
    disk.put(&segs[1], &bytes);
    disk.put(&dir.join("checkpoint.tmp"), b"x");
    let before: Vec<_> = disk
        .names(&dir)
        .into_iter()
        .map(|n| (disk.get(&dir.join(&n)), n))
        .collect();
    let err = Log::open(disk.clone(), &dir, small_config())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );
    let after: Vec<_> = disk
        .names(&dir)
        .into_iter()
        .map(|n| (disk.get(&dir.join(&n)), n))
        .collect();
    assert_eq!(before, after);
}

both_backends!(
    row_03_appended_after_checkpoint,
    row_04_torn_record_past_eof,
    row_05_zeros_after_last_record,
    row_06_bad_crc_with_data_behind,
    row_06_record_past_u64,
    row_07_checkpoint_missing_or_bad,
    row_08_stale_checkpoint,
    row_09_extra_segment_after_checkpoint,
    row_10_torn_new_segment_header,
    row_11_bad_magic,
    row_12_sealed_segment_cut_short,
    row_13_missing_segment,
    row_14_temp_file,
    row_15_unknown_version,
);

/// Row 16: a transient error is returned and nothing is touched (`MemIo` only: faults are scripted).
#[test]
fn row_16_transient_errors_touch_nothing() {
    use ringsq_storage::{Fault, MemIo, Op};
    common::run_mem(|disk: MemIo, dir| async move {
        closed_log(&disk, &dir, 40).await;
        let last = segments(&disk, &dir).pop().unwrap();
        append_bytes(
            &disk,
            &last,
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
            ],
        );
        disk.put(&dir.join("x.tmp"), b"x");
        let snapshot = |d: &MemIo| -> Vec<_> {
            d.names(&dir)
                .into_iter()
                .map(|n| (d.get(&dir.join(&n)), n))
                .collect()
        };
        let before = snapshot(&disk);
        for (op, fault) in [
            (Op::Read, Fault::Eio),
            (Op::Open, Fault::TooManyFiles),
            (Op::List, Fault::Eio),
        ] {
            disk.fail_next(op, fault);
            let err = Log::open(disk.clone(), &dir, small_config())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{err}");
            assert_eq!(snapshot(&disk), before, "{op:?}");
        }
        // With the fault gone, the same directory recovers.
        let (log, report) = reopen(&disk, &dir).await;
        assert!(
            has(&report, |a| matches!(a, RecoveryAction::TempRemoved { .. })),
            "{report}"
        );
        holds(&log, 40).await;
    });
}
