//! Damage found at read time, in sealed segments that open does not scan (open time does not
//! grow with the backlog): the reader gets `Error::Corrupt`, `skip_damaged` says where records
//! verify again, and only the damaged records are lost. Both backends.

// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{open, payload, segments, small_config, Disk};
use ringsq_storage::format::SEGMENT_HEADER_BYTES;
use ringsq_storage::{Error, Log, Record};
use std::path::{Path, PathBuf};

const RECORDS: u64 = 40;

/// A closed log of `RECORDS` records in small segments.
async fn closed_log<D: Disk>(disk: &D, dir: &Path) {
    let (log, _) = open(disk, dir, small_config()).await;
    for i in 0..RECORDS {
        log.append(payload(i)).unwrap();
    }
    log.close().await.unwrap();
}

/// (file position, seq) of every record of a segment file, walked by the length fields.
fn records_in(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        out.push((at, seq));
        at += 16 + len;
    }
    out
}

/// Reads the whole log as a consumer does: on `Corrupt`, asks where to go on and skips there.
/// Returns the records read and the number of seqs skipped.
async fn read_skipping<D: Disk>(log: &Log<D>) -> (Vec<Record>, u64) {
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut pos = log.first();
    while pos.seq < log.end().seq {
        match log.read(pos, 7, 100).await {
            Ok(batch) => {
                let last = batch.last().expect("a read below end() returns records");
                pos = last.next_pos();
                out.extend(batch);
            }
            Err(Error::Corrupt { .. }) => {
                let next = log.skip_damaged(pos).await.unwrap();
                assert!(next.seq > pos.seq, "{pos:?} -> {next:?}");
                skipped += next.seq - pos.seq;
                pos = next;
            }
            Err(e) => panic!("read at {pos:?}: {e}"),
        }
    }
    (out, skipped)
}

/// Every record read is ours, in order, and the ones missing are exactly `lost`.
fn check(records: &[Record], skipped: u64, lost: &[u64]) {
    let seqs: Vec<u64> = records.iter().map(|r| r.pos.seq).collect();
    let want: Vec<u64> = (0..RECORDS).filter(|s| !lost.contains(s)).collect();
    assert_eq!(seqs, want);
    assert!(records.iter().all(|r| r.data == payload(r.pos.seq)));
    assert_eq!(skipped, lost.len() as u64);
}

/// Damages record `nth` of the second segment with `damage(bytes, record file position)`;
/// returns the segment and the seq of the damaged record.
fn damage<D: Disk>(
    disk: &D,
    dir: &Path,
    nth: usize,
    damage: impl Fn(&mut Vec<u8>, usize),
) -> (PathBuf, u64) {
    let seg = segments(disk, dir)[1].clone();
    let mut bytes = disk.get(&seg).unwrap();
    let (at, seq) = records_in(&bytes)[nth];
    damage(&mut bytes, at);
    disk.put(&seg, &bytes);
    (seg, seq)
}

async fn bad_crc_loses_one_record<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir).await;
    let (_, bad) = damage(&disk, &dir, 1, |b, at| b[at + 17] ^= 0x55);
    let (log, report) = open(&disk, &dir, small_config()).await;
    assert!(report.is_clean(), "{report}");
    let (records, skipped) = read_skipping(&log).await;
    check(&records, skipped, &[bad]);
}

async fn bad_length_loses_one_record<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir).await;
    let (_, bad) = damage(&disk, &dir, 1, |b, at| {
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    let (log, _) = open(&disk, &dir, small_config()).await;
    let (records, skipped) = read_skipping(&log).await;
    check(&records, skipped, &[bad]);
}

async fn damaged_last_record_of_a_segment<D: Disk>(disk: D, dir: PathBuf) {
    closed_log(&disk, &dir).await;
    let seg = segments(&disk, &dir)[1].clone();
    let last = records_in(&disk.get(&seg).unwrap()).len() - 1;
    let (_, bad) = damage(&disk, &dir, last, |b, at| b[at + 4] ^= 1);
    let (log, _) = open(&disk, &dir, small_config()).await;
    let (records, skipped) = read_skipping(&log).await;
    check(&records, skipped, &[bad]);
}

async fn sealed_segment_cut_short_while_open<D: Disk>(disk: D, dir: PathBuf) {
    // (Cut before open, recovery finds it: row 12 of the recovery table.)
    closed_log(&disk, &dir).await;
    let (log, _) = open(&disk, &dir, small_config()).await;
    let seg = segments(&disk, &dir)[1].clone();
    let bytes = disk.get(&seg).unwrap();
    let all = records_in(&bytes);
    // Cut inside the second record: it and every record after it in this segment are gone.
    let cut = all[1].0 + 20;
    disk.put(&seg, &bytes[..cut]);
    let lost: Vec<u64> = all[1..].iter().map(|&(_, seq)| seq).collect();
    let (records, skipped) = read_skipping(&log).await;
    check(&records, skipped, &lost);
}

async fn skip_from_a_good_position_in_the_cache<D: Disk>(disk: D, dir: PathBuf) {
    // Outside any damage, skip_damaged never moves backwards and never past the log's end.
    closed_log(&disk, &dir).await;
    let (log, _) = open(&disk, &dir, small_config()).await;
    let end = log.end();
    assert_eq!(log.skip_damaged(end).await.unwrap(), end);
    let first = log.first();
    let next = log.skip_damaged(first).await.unwrap();
    assert_eq!(next.seq, first.seq + 1);
    assert_eq!(log.read(next, 1, 100).await.unwrap()[0].pos, next);
}

both_backends!(
    bad_crc_loses_one_record,
    bad_length_loses_one_record,
    damaged_last_record_of_a_segment,
    sealed_segment_cut_short_while_open,
    skip_from_a_good_position_in_the_cache,
);
