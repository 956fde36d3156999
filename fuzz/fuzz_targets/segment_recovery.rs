//! Fuzz target for recovery: arbitrary bytes become a log directory (one segment, optionally a
//! checkpoint and a second segment; layout in `ringsq_fuzz::SegmentInput`) on the in-memory
//! backend `MemIo`, then `Log::open` runs on it.
//!
//! Checked invariants: no panic; open either fails with an error or yields a log whose
//! records, read from `first()` until nothing is left, are a valid prefix of what was on disk:
//! seqs contiguous from the first (a jump only across a `Gap` the report names, or where a
//! sealed-segment record failed its check when read — reported as `Error::Corrupt`, never
//! delivered — and `skip_damaged` moved the reader forward), each record's position following
//! the previous one, each record found at its place in its segment file with a verified CRC and
//! the same seq and data, the read ending exactly at `end()` (or at a reported gap with nothing
//! stored after it). Reading always terminates (every read and every skip makes progress, the
//! number of reads is bounded). Then one record is
//! appended, synced and the log closed; reopening must succeed without repairing anything and
//! hold the same records plus the new one. Hangs are caught by libFuzzer's `-timeout`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringsq_fuzz::SegmentInput;
use ringsq_storage::format::{decode_record, SegmentHeader, SEGMENT_HEADER_BYTES_U64};
use ringsq_storage::{
    checkpoint_path, segment_path, Error, Log, LogConfig, MemIo, Record, RecoveryAction,
    RecoveryReport,
};
use std::path::{Path, PathBuf};

/// Records per read call (small, so that batching across segments and gaps is exercised).
const READ_RECORDS_MAX: usize = 16;
/// Data bytes per read call.
const READ_BYTES_MAX: usize = 4096;

thread_local! {
    /// One runtime for every input: creating an `io_uring` per input would dominate the run time.
    static RUNTIME: tokio_uring::Runtime =
        tokio_uring::Runtime::new(&tokio_uring::builder()).unwrap();
}

fn log_dir() -> PathBuf {
    PathBuf::from("/fuzz/log")
}

/// Writes the input's files into a fresh in-memory disk.
fn build(input: &SegmentInput) -> MemIo {
    let io = MemIo::new();
    let dir = log_dir();
    let (first, second) = input.segment_names();
    io.write_file(&segment_path(&dir, first), &input.first);
    if let (Some(bytes), Some(name)) = (&input.second, second) {
        io.write_file(&segment_path(&dir, name), bytes);
    }
    if let Some(cp) = &input.checkpoint {
        io.write_file(&checkpoint_path(&dir), cp);
    }
    io
}

/// True when the report says records `[from, to)` are missing.
fn gap_reported(report: &RecoveryReport, from: u64, to: u64) -> bool {
    report.actions.iter().any(|a| {
        matches!(a, RecoveryAction::Gap { seq_from, seq_to } if *seq_from == from && *seq_to == to)
    })
}

/// Checks that `record` is stored, verified, at its place in the segment file of `dir` that
/// holds its seq (the one with the highest base seq not above it, as the log finds it).
fn check_on_disk(io: &MemIo, dir: &Path, record: &Record) {
    let holder = io
        .files_in(dir)
        .iter()
        .filter_map(|name| {
            let base_offset: u64 = name.strip_suffix(".seg")?.parse().ok()?;
            let bytes = io.read_file(&dir.join(name))?;
            let header = SegmentHeader::decode(&bytes).ok()?;
            Some((header.base_seq, base_offset, bytes))
        })
        .filter(|(base_seq, _, _)| *base_seq <= record.pos.seq)
        .max_by_key(|(base_seq, _, _)| *base_seq);
    let Some((_, base_offset, bytes)) = holder else {
        panic!("no segment holds {:?}", record.pos);
    };
    let at = record
        .pos
        .offset
        .checked_sub(base_offset)
        .and_then(|d| usize::try_from(d + SEGMENT_HEADER_BYTES_U64).ok())
        .filter(|&at| at <= bytes.len())
        .unwrap_or_else(|| panic!("record {:?} outside its segment", record.pos));
    let (header, data) = decode_record(&bytes[at..], u32::MAX)
        .unwrap_or_else(|e| panic!("record {:?} on disk: {e}", record.pos))
        .unwrap_or_else(|| panic!("record {:?} cut on disk", record.pos));
    assert_eq!(header.seq, record.pos.seq, "seq on disk");
    assert_eq!(data, &record.data[..], "data on disk");
}

/// How reading everything ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// Every record up to `end()` was read.
    Complete,
    /// A reported gap runs up to the end: nothing is stored after the records read.
    GapAtEnd,
    /// A record of a sealed segment failed its check when read (reported, never delivered,
    /// skipped over).
    Corrupt,
}

/// True when the report names a gap that starts at `seq`.
fn gap_starts_at(report: &RecoveryReport, seq: u64) -> bool {
    report
        .actions
        .iter()
        .any(|a| matches!(a, RecoveryAction::Gap { seq_from, .. } if *seq_from == seq))
}

/// Reads every record from `first()` and checks the invariants; returns them.
async fn read_all(log: &Log<MemIo>, io: &MemIo, report: &RecoveryReport) -> (Vec<Record>, ReadEnd) {
    let end = log.end();
    let mut next = log.first();
    let mut out: Vec<Record> = Vec::new();
    let mut damaged = false;
    // Every read that returns records, and every skip, moves `next` forward by at least one seq.
    let reads_max = end
        .seq
        .saturating_sub(next.seq)
        .saturating_mul(2)
        .saturating_add(2);
    for _ in 0..reads_max {
        if next.seq >= end.seq {
            break;
        }
        let batch = match log.read(next, READ_RECORDS_MAX, READ_BYTES_MAX).await {
            Ok(batch) => batch,
            // A sealed segment is trusted at open and verified when read: a bad record in it
            // is reported to the reader, never delivered; the reader skips to where records
            // verify again (checked like every other record read).
            Err(Error::Corrupt { .. }) => {
                damaged = true;
                let to = log
                    .skip_damaged(next)
                    .await
                    .unwrap_or_else(|e| panic!("skip_damaged at {next:?}: {e}; {report}"));
                assert!(
                    to.seq > next.seq && to.seq <= end.seq,
                    "skip from {next:?} to {to:?}, end {end:?}: {report}"
                );
                next = to;
                continue;
            }
            Err(e) => panic!("read at {next:?}: {e}; {report}"),
        };
        if batch.is_empty() {
            assert!(
                gap_starts_at(report, next.seq),
                "empty read at {next:?} before end {end:?}: {report}"
            );
            return (out, ReadEnd::GapAtEnd);
        }
        for record in batch {
            if record.pos.seq != next.seq {
                // Missing records: only across a gap the report names.
                assert!(
                    record.pos.seq > next.seq && gap_reported(report, next.seq, record.pos.seq),
                    "jump from {next:?} to {:?} without a reported gap: {report}",
                    record.pos
                );
            } else if record.pos != next {
                // Same seq, other offset: only where a segment's offsets do not continue its
                // predecessor's, i.e. the record is the first of its segment (nothing skipped).
                let base = ringsq_storage::segment_file_name(record.pos.offset);
                assert!(
                    io.files_in(&log_dir()).contains(&base),
                    "offset jump from {next:?} to {:?} inside a segment: {report}",
                    record.pos
                );
            }
            check_on_disk(io, &log_dir(), &record);
            next = record.next_pos();
            out.push(record);
        }
    }
    assert_eq!(
        next.seq, end.seq,
        "reading stopped before the end: {report}"
    );
    (
        out,
        if damaged {
            ReadEnd::Corrupt
        } else {
            ReadEnd::Complete
        },
    )
}

async fn check(io: MemIo, config: LogConfig) {
    let dir = log_dir();
    let Ok((log, report)) = Log::open(io.clone(), &dir, config.clone()).await else {
        return;
    };
    assert_eq!(report.first, log.first());
    assert_eq!(report.end, log.end());
    assert!(log.first().seq <= log.end().seq);
    let (records, how) = read_all(&log, &io, &report).await;

    // The recovered log accepts writes and reopens cleanly with what it held plus the new record.
    let Ok(pos) = log.append(Bytes::from_static(b"after recovery")) else {
        return;
    };
    let synced = log.wait_synced(pos.seq + 1).await;
    let closed = log.close().await;
    if synced.is_err() || closed.is_err() {
        return;
    }
    let (again, report2) = Log::open(io.clone(), &dir, config)
        .await
        .unwrap_or_else(|e| panic!("reopen after a clean close: {e}; first open: {report}"));
    let repaired = report2
        .actions
        .iter()
        .any(|a| !matches!(a, RecoveryAction::Gap { .. }));
    assert!(
        !repaired,
        "second open repaired: {report2}; first open: {report}"
    );
    let (reread, how2) = read_all(&again, &io, &report2).await;
    if how != ReadEnd::Corrupt {
        assert_eq!(
            how2,
            ReadEnd::Complete,
            "second: {report2}; first: {report}; read {} then {}",
            records.len(),
            reread.len()
        );
        assert_eq!(reread.len(), records.len() + 1, "{report2}");
        assert_eq!(reread[..records.len()], records[..]);
        assert_eq!(
            reread.last().map(|r| r.pos),
            Some(pos),
            "first: {report}; second: {report2}"
        );
    }
    assert!(again.close().await.is_ok());
}

fuzz_target!(|data: &[u8]| {
    let input = SegmentInput::parse(data);
    let io = build(&input);
    let config = input.config();
    RUNTIME.with(|rt| rt.block_on(check(io, config)));
});
