//! Writes the seed corpora of the storage fuzz targets from real logs.
//!
//! Run from `fuzz/`: `cargo run --example seed_corpus` (stable is fine). It writes logs with
//! `Log` on the in-memory backend, takes their files, and stores them under
//! `corpus/segment_recovery/` (in the `SegmentInput` layout) and `corpus/record_decode/`
//! (single records, runs of records, headers, checkpoints). The seeds cover a clean close, a
//! torn tail, a zero-filled tail, a corrupted CRC, two segments, and a stale checkpoint.
//! Deterministic: running it again rewrites the same files.

use bytes::Bytes;
use ringsq_fuzz::{SegmentInput, FLAG_FIX_CRCS, FLAG_SMALL};
use ringsq_storage::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use ringsq_storage::{checkpoint_path, Log, LogConfig, MemIo};
use std::error::Error;
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn Error>>;

/// A real log directory: its segment files (oldest first) and its checkpoint, if any.
struct Files {
    segments: Vec<Vec<u8>>,
    checkpoint: Option<Vec<u8>>,
}

fn payload(i: usize, len: usize) -> Bytes {
    let text = format!("record {i} ");
    Bytes::from(text.bytes().cycle().take(len).collect::<Vec<u8>>())
}

/// Appends records of the given lengths, syncs, and closes (or not) a log on `MemIo`.
async fn write_log(config: LogConfig, lens: &[usize], close: bool) -> Res<Files> {
    let io = MemIo::new();
    let dir = PathBuf::from("/seed/log");
    let (log, _) = Log::open(io.clone(), &dir, config).await?;
    for (i, &len) in lens.iter().enumerate() {
        log.append(payload(i, len))?;
    }
    log.sync().await?;
    if close {
        log.close().await?;
    } else {
        // Leave the checkpoint as it was at open: a crash after the sync.
        drop(log);
    }
    let mut names = io.files_in(&dir);
    names.sort();
    let segments = names
        .iter()
        .filter(|n| n.ends_with(".seg"))
        .filter_map(|n| io.read_file(&dir.join(n)))
        .collect();
    Ok(Files {
        segments,
        checkpoint: io.read_file(&checkpoint_path(&dir)),
    })
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
    Ok(())
}

fn input(flags: u8, files: &Files, first: Vec<u8>, second: Option<Vec<u8>>) -> Vec<u8> {
    SegmentInput {
        flags,
        checkpoint: files.checkpoint.clone(),
        first,
        second,
    }
    .encode()
}

async fn run(root: &Path) -> Res<()> {
    let recovery = root.join("segment_recovery");
    let records = root.join("record_decode");
    let big = SegmentInput::parse(&[0]).config();
    let small = SegmentInput::parse(&[FLAG_SMALL]).config();
    let lens = [0, 1, 40, 100, 1024, 7, 300];

    // One segment, closed cleanly: the checkpoint names its end.
    let clean = write_log(big.clone(), &lens, true).await?;
    let seg = clean.segments.first().ok_or("no segment")?.clone();
    put(
        &recovery,
        "clean_close",
        &input(0, &clean, seg.clone(), None),
    )?;

    // The same segment with the last record cut in half, no checkpoint (crash mid-write).
    let torn_at = seg.len() - 150;
    let torn = Files {
        segments: Vec::new(),
        checkpoint: None,
    };
    put(
        &recovery,
        "torn_tail",
        &input(0, &torn, seg[..torn_at].to_vec(), None),
    )?;

    // A zero-filled tail after the records (a crash after the file grew).
    let mut zeros = seg.clone();
    zeros.extend_from_slice(&[0; 64]);
    put(&recovery, "zero_tail", &input(0, &torn, zeros, None))?;

    // A flipped byte inside the 4th record's data, valid records after it: quarantine.
    let mut flipped = seg.clone();
    let fourth = SEGMENT_HEADER_BYTES + 3 * RECORD_HEADER_BYTES + 1 + 40 + RECORD_HEADER_BYTES + 5;
    flipped[fourth] ^= 0x55;
    put(
        &recovery,
        "bad_crc",
        &input(0, &clean, flipped.clone(), None),
    )?;

    // Small segments: two of them, the checkpoint naming the second.
    let rolled = write_log(small.clone(), &[150, 150, 150, 150, 20, 30], true).await?;
    let (a, b) = match rolled.segments.as_slice() {
        [.., a, b] => (a.clone(), b.clone()),
        _ => return Err("expected two segments".into()),
    };
    put(
        &recovery,
        "two_segments",
        &input(FLAG_SMALL, &rolled, a.clone(), Some(b.clone())),
    )?;
    // The same with checksums fixed by the target, so mutations get past the CRC checks.
    put(
        &recovery,
        "two_segments_fix_crcs",
        &input(FLAG_SMALL | FLAG_FIX_CRCS, &rolled, a, Some(b)),
    )?;

    // Not closed: the checkpoint is the one written at open (stale), records after it.
    let crashed = write_log(big, &[10, 20, 30, 40], false).await?;
    let seg2 = crashed.segments.first().ok_or("no segment")?.clone();
    put(
        &recovery,
        "stale_checkpoint",
        &input(0, &crashed, seg2, None),
    )?;

    // record_decode: single records, a run of records, a bad one, a torn one, a header, a
    // checkpoint.
    let body = &seg[SEGMENT_HEADER_BYTES..];
    let first_two = RECORD_HEADER_BYTES * 2 + 1;
    put(&records, "empty_record", &body[..RECORD_HEADER_BYTES])?;
    put(&records, "two_records", &body[..first_two])?;
    let kib_at = RECORD_HEADER_BYTES * 4 + 1 + 40 + 100;
    put(
        &records,
        "record_1k",
        &body[kib_at..kib_at + RECORD_HEADER_BYTES + 1024],
    )?;
    put(&records, "record_run", body)?;
    put(&records, "bad_crc_run", &flipped[SEGMENT_HEADER_BYTES..])?;
    put(&records, "torn", &body[..body.len() - 150])?;
    put(&records, "segment_header", &seg[..SEGMENT_HEADER_BYTES])?;
    if let Some(cp) = &clean.checkpoint {
        put(&records, "checkpoint", cp)?;
    }
    Ok(())
}

fn main() -> Res<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    tokio_uring::start(run(&root))
}
