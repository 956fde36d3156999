//! Recovery at open: decide what the directory holds (a read-only plan), then act on it.
//!
//! The decision table is in the crate docs (`lib.rs`); each row maps to one `Action` or one
//! branch here. The plan is computed entirely before anything is changed, so that a refusal
//! (unknown version) or a transient error (EIO, EMFILE) leaves the directory untouched.

use crate::error::{Error, Result};
use crate::format::{
    self, Checkpoint, FormatError, SegmentHeader, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES_U64,
};
use crate::io::{read_exact_or_eof, Io, IoFile, OpenMode};
use crate::meta;
use crate::paths;
use crate::position::Position;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes read at a time while scanning a segment.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

/// A segment as recovery leaves it (and as the log tracks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub path: PathBuf,
    pub base: Position,
    /// One past the last record.
    pub end: Position,
    /// When it was last written (its file's mtime at open): retention by age.
    pub modified: SystemTime,
}

impl SegmentInfo {
    /// File size in bytes: header + records.
    pub fn file_len(&self) -> u64 {
        SEGMENT_HEADER_BYTES_U64 + (self.end.offset - self.base.offset)
    }
}

/// One thing recovery did (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryAction {
    /// A temporary file left by an interrupted atomic replace was removed.
    TempRemoved {
        /// The file.
        path: PathBuf,
    },
    /// A record cut by a crash at the end of the last segment was truncated away.
    TornTailTruncated {
        /// The segment.
        segment: PathBuf,
        /// File offset of the cut record.
        file_offset: u64,
        /// Bytes removed.
        bytes: u64,
    },
    /// Bytes that do not decode were moved aside (never delivered).
    Quarantined {
        /// The segment.
        segment: PathBuf,
        /// File offset of the first bad byte.
        file_offset: u64,
        /// Why.
        reason: String,
        /// Where the bytes went.
        moved_to: PathBuf,
    },
    /// A segment with an empty or torn header (crash while creating it) was removed.
    SegmentRemoved {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Records are missing between two segments (a segment file was deleted or cut), or the
    /// next segment's offsets do not continue the previous one's (`seq_from == seq_to`).
    Gap {
        /// First missing seq.
        seq_from: u64,
        /// One past the last missing seq.
        seq_to: u64,
    },
    /// The checkpoint was not used.
    CheckpointIgnored {
        /// Why.
        reason: String,
    },
}

/// What recovery did at open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Everything done or found, in order.
    pub actions: Vec<RecoveryAction>,
    /// Record bytes read and verified.
    pub bytes_scanned: u64,
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Oldest record after recovery.
    pub first: Position,
    /// End of the log after recovery.
    pub end: Position,
    /// True when the scan of the last segment started at the checkpoint.
    pub used_checkpoint: bool,
}

impl RecoveryReport {
    /// True when nothing was repaired, quarantined or found missing.
    pub fn is_clean(&self) -> bool {
        self.actions.iter().all(|a| {
            matches!(
                a,
                RecoveryAction::TempRemoved { .. } | RecoveryAction::CheckpointIgnored { .. }
            )
        })
    }
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryAction::TempRemoved { path } => {
                write!(f, "removed temp file {}", path.display())
            }
            RecoveryAction::TornTailTruncated {
                segment,
                file_offset,
                bytes,
            } => write!(
                f,
                "truncated torn tail of {} at {file_offset} ({bytes} bytes)",
                segment.display()
            ),
            RecoveryAction::Quarantined {
                segment,
                file_offset,
                reason,
                moved_to,
            } => write!(
                f,
                "{}: {reason} at {file_offset}; moved the rest to {}",
                segment.display(),
                moved_to.display()
            ),
            RecoveryAction::SegmentRemoved { path, reason } => {
                write!(f, "removed segment {}: {reason}", path.display())
            }
            RecoveryAction::Gap { seq_from, seq_to } => {
                write!(
                    f,
                    "records {seq_from}..{seq_to} are missing (gap between segments)"
                )
            }
            RecoveryAction::CheckpointIgnored { reason } => {
                write!(f, "checkpoint ignored: {reason}")
            }
        }
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered {} segments, records {}..{}, {} bytes scanned{}",
            self.segments,
            self.first.seq,
            self.end.seq,
            self.bytes_scanned,
            if self.used_checkpoint {
                " from checkpoint"
            } else {
                ""
            }
        )?;
        for action in &self.actions {
            write!(f, "; {action}")?;
        }
        Ok(())
    }
}

/// How a scan of records stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Exactly at end of file.
    Clean,
    /// A record runs past end of file, or only zeros follow.
    Torn,
    /// A record does not decode and non-zero bytes follow it.
    Corrupt(&'static str),
    /// The seq limit (the next segment's base) was reached with bytes left.
    Overlap,
}

struct Scan {
    end: Position,
    end_file_pos: u64,
    file_len: u64,
    stop: Stop,
    bytes: u64,
}

/// A change to make once the plan is complete.
enum Change {
    Remove(PathBuf),
    MoveAside {
        path: PathBuf,
        to: PathBuf,
    },
    Truncate {
        path: PathBuf,
        file_len: u64,
    },
    CutAside {
        path: PathBuf,
        file_pos: u64,
        to: PathBuf,
    },
}

/// The result of recovery: the segments to serve, oldest first.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentInfo>,
    pub checkpoint: Option<Checkpoint>,
}

/// A segment file whose header decoded.
struct Found {
    path: PathBuf,
    header: SegmentHeader,
    file_len: u64,
}

/// Changes and report accumulated while planning.
#[derive(Default)]
struct Plan {
    changes: Vec<Change>,
    report: RecoveryReport,
}

impl Plan {
    fn act(&mut self, action: RecoveryAction) {
        match &action {
            RecoveryAction::TempRemoved { .. } | RecoveryAction::CheckpointIgnored { .. } => {
                tracing::warn!("recovery: {action}");
            }
            RecoveryAction::TornTailTruncated { .. } | RecoveryAction::SegmentRemoved { .. } => {
                tracing::warn!("recovery: {action}");
            }
            RecoveryAction::Quarantined { .. } | RecoveryAction::Gap { .. } => {
                tracing::error!("recovery: {action}");
            }
        }
        self.report.actions.push(action);
    }
}

/// Runs recovery on `dir` (which must exist).
pub(crate) async fn recover<I: Io>(
    io: &I,
    dir: &Path,
    record_size_max: u32,
) -> Result<(Recovered, RecoveryReport)> {
    let mut plan = Plan::default();
    let (segment_paths, temps) = list(io, dir).await?;
    let checkpoint = read_checkpoint(io, dir, &mut plan).await?;
    let headers = read_headers(io, &segment_paths).await?;
    let found = classify(headers, &mut plan);
    let segments = plan_segments(io, found, checkpoint, record_size_max, &mut plan).await?;
    for path in temps {
        plan.changes.insert(0, Change::Remove(path.clone()));
        plan.act(RecoveryAction::TempRemoved { path });
    }
    apply(io, dir, &plan.changes).await?;
    let mut report = plan.report;
    report.segments = segments.len();
    // With no segment left, the log restarts where the checkpoint ended (`writer::open_current`).
    let restart = checkpoint.map_or_else(Position::default, |c| Position {
        seq: c.end_seq,
        offset: c.end_offset,
    });
    report.first = segments.first().map_or(restart, |s| s.base);
    report.end = segments.last().map_or(restart, |s| s.end);
    Ok((
        Recovered {
            segments,
            checkpoint,
        },
        report,
    ))
}

async fn list<I: Io>(io: &I, dir: &Path) -> Result<(Vec<(u64, PathBuf)>, Vec<PathBuf>)> {
    let names = io
        .list_dir(dir)
        .await
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut segments = Vec::new();
    let mut temps = Vec::new();
    for name in names {
        if let Some(base_offset) = paths::parse_segment_name(&name) {
            segments.push((base_offset, dir.join(&name)));
        } else if paths::is_temp_name(&name) {
            temps.push(dir.join(&name));
        }
    }
    segments.sort();
    temps.sort();
    Ok((segments, temps))
}

async fn read_checkpoint<I: Io>(io: &I, dir: &Path, plan: &mut Plan) -> Result<Option<Checkpoint>> {
    let path = paths::checkpoint_path(dir);
    let Some(bytes) = meta::read_small_file(io, &path).await? else {
        return Ok(None);
    };
    match Checkpoint::decode(&bytes) {
        Ok(c) => Ok(Some(c)),
        Err(FormatError::UnsupportedVersion(found)) => {
            Err(Error::UnsupportedVersion { path, found })
        }
        Err(e) => {
            plan.act(RecoveryAction::CheckpointIgnored {
                reason: format!("{e}; scanning the last segment whole"),
            });
            Ok(None)
        }
    }
}

type Header = (PathBuf, u64, Result<SegmentHeader, FormatError>, u64);

/// Reads every segment header. Refuses (touching nothing) if any has an unknown version.
async fn read_headers<I: Io>(io: &I, segments: &[(u64, PathBuf)]) -> Result<Vec<Header>> {
    let mut out = Vec::with_capacity(segments.len());
    for (name_offset, path) in segments {
        let file = io
            .open(path, OpenMode::Read)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        let file_len = file.size().await.map_err(|e| Error::io("stat", path, e))?;
        let bytes = read_exact_or_eof(&file, 0, SEGMENT_HEADER_BYTES)
            .await
            .map_err(|e| Error::io("read", path, e))?;
        let header = SegmentHeader::decode(&bytes);
        if let Err(FormatError::UnsupportedVersion(found)) = header {
            return Err(Error::UnsupportedVersion {
                path: path.clone(),
                found,
            });
        }
        out.push((path.clone(), *name_offset, header, file_len));
    }
    Ok(out)
}

/// Sorts headers into usable segments, trailing torn creations (removed) and bad ones (moved aside).
fn classify(headers: Vec<Header>, plan: &mut Plan) -> Vec<Found> {
    let torn_tail = headers
        .iter()
        .rev()
        .take_while(|(_, _, h, _)| matches!(h, Err(FormatError::Zeroed | FormatError::TooShort)))
        .count();
    let keep = headers.len() - torn_tail;
    let mut found: Vec<Found> = Vec::new();
    for (index, (path, name_offset, header, file_len)) in headers.into_iter().enumerate() {
        let problem = match header {
            Ok(h) if h.base_offset != name_offset => Some("name"),
            Ok(h)
                if found
                    .last()
                    .is_some_and(|prev| h.base_seq < prev.header.base_seq) =>
            {
                Some("order")
            }
            Ok(header) => {
                found.push(Found {
                    path,
                    header,
                    file_len,
                });
                continue;
            }
            Err(e) if index >= keep => {
                plan.changes.push(Change::Remove(path.clone()));
                plan.act(RecoveryAction::SegmentRemoved {
                    path,
                    reason: format!(
                        "{e} in the header of the newest segment (crash while creating it)"
                    ),
                });
                continue;
            }
            Err(e) => Some(e.tag()),
        };
        let tag = problem.unwrap_or("header");
        let to = paths::quarantine_path(&path, tag, 0);
        plan.changes.push(Change::MoveAside {
            path: path.clone(),
            to: to.clone(),
        });
        plan.act(RecoveryAction::Quarantined {
            segment: path,
            file_offset: 0,
            reason: format!("bad segment header ({tag})"),
            moved_to: to,
        });
    }
    found
}

/// Decides each usable segment's end: sealed segments are trusted when their size matches the
/// next header; the last one is scanned from the checkpoint (or from its start).
async fn plan_segments<I: Io>(
    io: &I,
    found: Vec<Found>,
    checkpoint: Option<Checkpoint>,
    record_size_max: u32,
    plan: &mut Plan,
) -> Result<Vec<SegmentInfo>> {
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(found.len());
    for (index, seg) in found.iter().enumerate() {
        let base = Position {
            seq: seg.header.base_seq,
            offset: seg.header.base_offset,
        };
        let next = found.get(index + 1).map(|n| n.header);
        let info = match next {
            Some(next) if sealed_size_matches(seg, &next) => SegmentInfo {
                path: seg.path.clone(),
                base,
                end: Position {
                    seq: next.base_seq,
                    offset: next.base_offset,
                },
                modified: io.now(),
            },
            Some(next) => {
                let start = (base, SEGMENT_HEADER_BYTES_U64);
                let end = scan_and_plan(io, seg, start, Some(next.base_seq), record_size_max, plan)
                    .await?;
                // Missing records, or records whose offsets do not continue (the next segment
                // then starts a new run of offsets): either way a reader jumps to its base.
                if end.seq < next.base_seq || end.offset != next.base_offset {
                    plan.act(RecoveryAction::Gap {
                        seq_from: end.seq,
                        seq_to: next.base_seq,
                    });
                }
                SegmentInfo {
                    path: seg.path.clone(),
                    base,
                    end,
                    modified: io.now(),
                }
            }
            None => {
                let mut start = tail_start(seg, base, checkpoint, record_size_max, plan);
                if start.1 > SEGMENT_HEADER_BYTES_U64
                    && !record_ends_at(io, seg, start, record_size_max).await?
                {
                    plan.act(RecoveryAction::CheckpointIgnored {
                        reason: format!(
                            "no record with seq {} ends at its end (offset {}); scanning the last segment whole",
                            start.0.seq.saturating_sub(1),
                            start.0.offset
                        ),
                    });
                    start = (base, SEGMENT_HEADER_BYTES_U64);
                }
                plan.report.used_checkpoint = start.1 > SEGMENT_HEADER_BYTES_U64;
                let end = scan_and_plan(io, seg, start, None, record_size_max, plan).await?;
                SegmentInfo {
                    path: seg.path.clone(),
                    base,
                    end,
                    modified: io.now(),
                }
            }
        };
        segments.push(info);
    }
    check_checkpoint_against(checkpoint, &segments, plan);
    Ok(segments)
}

fn sealed_size_matches(seg: &Found, next: &SegmentHeader) -> bool {
    next.base_seq >= seg.header.base_seq
        && next
            .base_offset
            .checked_sub(seg.header.base_offset)
            .and_then(|len| len.checked_add(SEGMENT_HEADER_BYTES_U64))
            == Some(seg.file_len)
}

/// Where to start scanning the last segment: at the checkpoint if it names this segment and
/// lies inside the file, else at the first record.
/// Whether the checkpoint's end is a real record boundary: the record with seq `end.seq - 1`
/// must end exactly at file position `file_pos` (found by its length field, then verified by
/// CRC and seq). One read of at most a record's size, so open time stays independent of the
/// backlog; a checkpoint that fails this (only a damaged or crafted file can) is not trusted.
async fn record_ends_at<I: Io>(
    io: &I,
    seg: &Found,
    (end, file_pos): (Position, u64),
    record_size_max: u32,
) -> Result<bool> {
    let header = u64::try_from(crate::format::RECORD_HEADER_BYTES).unwrap_or(u64::MAX);
    let window = (file_pos - SEGMENT_HEADER_BYTES_U64).min(header + u64::from(record_size_max));
    let from = file_pos - window;
    let file = io
        .open(&seg.path, OpenMode::Read)
        .await
        .map_err(|e| Error::io("open", &seg.path, e))?;
    let len = usize::try_from(window).unwrap_or(usize::MAX);
    let bytes = crate::io::read_exact_or_eof(&file, from, len)
        .await
        .map_err(|e| Error::io("read", &seg.path, e))?;
    let want_seq = end.seq.wrapping_sub(1);
    let found = (0..bytes.len()).rev().any(|i| {
        let rest = &bytes[i..];
        // The length field must say "I end exactly here" before any CRC is computed.
        let len_field = rest
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        let ends_here = len_field
            .and_then(|len| usize::try_from(len).ok())
            .is_some_and(|len| crate::format::RECORD_HEADER_BYTES + len == rest.len());
        ends_here
            && matches!(
                crate::format::decode_record(rest, record_size_max),
                Ok(Some((h, data))) if h.seq == want_seq
                    && crate::format::RECORD_HEADER_BYTES + data.len() == rest.len()
            )
    });
    Ok(found)
}

/// Whether `records` records can occupy exactly `bytes` bytes (each a header plus at most
/// `record_size_max` bytes of data): a checkpoint that fails this is not trusted.
fn records_fit(records: u64, bytes: u64, record_size_max: u32) -> bool {
    let header = u64::try_from(crate::format::RECORD_HEADER_BYTES).unwrap_or(u64::MAX);
    let least = records.saturating_mul(header);
    let most = records.saturating_mul(header.saturating_add(u64::from(record_size_max)));
    (least..=most).contains(&bytes)
}

fn tail_start(
    seg: &Found,
    base: Position,
    checkpoint: Option<Checkpoint>,
    record_size_max: u32,
    plan: &mut Plan,
) -> (Position, u64) {
    let from_start = (base, SEGMENT_HEADER_BYTES_U64);
    let Some(cp) = checkpoint else {
        return from_start;
    };
    if cp.segment_base_offset < base.offset {
        // Segments were created after the checkpoint was written: scan this one whole.
        return from_start;
    }
    if cp.segment_base_offset > base.offset {
        plan.act(RecoveryAction::CheckpointIgnored {
            reason: format!(
                "it names segment {} which is missing; records from seq {} on may be lost",
                paths::segment_file_name(cp.segment_base_offset),
                base.seq
            ),
        });
        return from_start;
    }
    let file_pos = cp
        .end_offset
        .checked_sub(base.offset)
        .and_then(|d| d.checked_add(SEGMENT_HEADER_BYTES_U64));
    let consistent = records_fit(
        cp.end_seq - base.seq.min(cp.end_seq),
        cp.end_offset.saturating_sub(base.offset),
        record_size_max,
    );
    if cp.end_seq >= base.seq && !consistent {
        plan.act(RecoveryAction::CheckpointIgnored {
            reason: format!(
                "its end (seq {}, offset {}) cannot follow the segment base (seq {}, offset {})",
                cp.end_seq, cp.end_offset, base.seq, base.offset
            ),
        });
        return from_start;
    }
    match file_pos {
        Some(p) if p <= seg.file_len && cp.end_seq >= base.seq => (
            Position {
                seq: cp.end_seq,
                offset: cp.end_offset,
            },
            p,
        ),
        Some(_) | None => {
            plan.act(RecoveryAction::CheckpointIgnored {
                reason: format!(
                    "stale: its end (seq {}, offset {}) is past the end of {}; synced records may be lost",
                    cp.end_seq,
                    cp.end_offset,
                    seg.path.display()
                ),
            });
            from_start
        }
    }
}

fn check_checkpoint_against(
    checkpoint: Option<Checkpoint>,
    segments: &[SegmentInfo],
    plan: &mut Plan,
) {
    let (Some(cp), Some(last)) = (checkpoint, segments.last()) else {
        return;
    };
    if cp.end_seq > last.end.seq {
        plan.act(RecoveryAction::CheckpointIgnored {
            reason: format!(
                "records up to seq {} were synced but the log ends at seq {}",
                cp.end_seq, last.end.seq
            ),
        });
    }
}

/// Scans `seg` from `start` and plans what to do with whatever stops the scan.
async fn scan_and_plan<I: Io>(
    io: &I,
    seg: &Found,
    start: (Position, u64),
    seq_limit: Option<u64>,
    record_size_max: u32,
    plan: &mut Plan,
) -> Result<Position> {
    let path = &seg.path;
    let file = io
        .open(path, OpenMode::Read)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    let scan = scan(&file, path, start, seg.file_len, seq_limit, record_size_max).await?;
    plan.report.bytes_scanned += scan.bytes;
    let at = scan.end_file_pos;
    let (reason, tag) = match scan.stop {
        Stop::Clean => return Ok(scan.end),
        Stop::Torn if seq_limit.is_none() => {
            plan.changes.push(Change::Truncate {
                path: path.clone(),
                file_len: at,
            });
            plan.act(RecoveryAction::TornTailTruncated {
                segment: path.clone(),
                file_offset: at,
                bytes: scan.file_len - at,
            });
            return Ok(scan.end);
        }
        Stop::Torn => ("record cut short in a sealed segment".to_owned(), "short"),
        Stop::Corrupt(tag) => (format!("record fails its check ({tag})"), tag),
        Stop::Overlap => ("records overlap the next segment".to_owned(), "overlap"),
    };
    let to = paths::quarantine_path(path, tag, at);
    plan.changes.push(Change::CutAside {
        path: path.clone(),
        file_pos: at,
        to: to.clone(),
    });
    plan.act(RecoveryAction::Quarantined {
        segment: path.clone(),
        file_offset: at,
        reason,
        moved_to: to,
    });
    Ok(scan.end)
}

fn to_usize(n: u64, path: &Path) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::Corrupt {
        segment: path.to_path_buf(),
        offset: n,
        reason: "offset does not fit in memory".to_owned(),
    })
}

/// Reads records from `start` until end of file, a bad record, or `seq_limit`.
async fn scan<F: IoFile>(
    file: &F,
    path: &Path,
    start: (Position, u64),
    file_len: u64,
    seq_limit: Option<u64>,
    record_size_max: u32,
) -> Result<Scan> {
    let (mut pos, mut file_pos) = start;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_file_pos = file_pos;
    let mut bytes = 0;
    let stop = loop {
        if file_pos >= file_len {
            break Stop::Clean;
        }
        if seq_limit.is_some_and(|limit| pos.seq >= limit) {
            break Stop::Overlap;
        }
        let at = to_usize(file_pos - buf_file_pos, path)?;
        match format::decode_record(&buf[at..], record_size_max) {
            Ok(Some((header, _))) if header.seq == pos.seq => {
                let len = header.encoded_len();
                // The writer refuses an append whose end would not fit in u64 (`Exhausted`), so
                // a record that runs past it was never written by a log: only a crafted file.
                let (Some(seq), Some(offset)) =
                    (pos.seq.checked_add(1), pos.offset.checked_add(len))
                else {
                    break Stop::Corrupt("range");
                };
                pos = Position { seq, offset };
                file_pos += len;
                bytes += len;
            }
            Ok(Some(_)) => break rest_or(file, path, file_pos, file_len, "seq").await?,
            Ok(None) => {
                let buf_end = buf_file_pos + u64::try_from(buf.len()).unwrap_or(u64::MAX);
                if buf_end >= file_len {
                    break Stop::Torn;
                }
                buf.drain(..at);
                buf_file_pos = file_pos;
                let chunk = read_exact_or_eof(file, buf_end, SCAN_CHUNK_BYTES)
                    .await
                    .map_err(|e| Error::io("read", path, e))?;
                if chunk.is_empty() {
                    break Stop::Torn;
                }
                buf.extend_from_slice(&chunk);
            }
            Err(e) => break rest_or(file, path, file_pos, file_len, e.tag()).await?,
        }
    };
    Ok(Scan {
        end: pos,
        end_file_pos: file_pos,
        file_len,
        stop,
        bytes,
    })
}

/// A bad record followed only by zeros is a torn tail; with anything else behind it, corruption.
async fn rest_or<F: IoFile>(
    file: &F,
    path: &Path,
    from: u64,
    file_len: u64,
    tag: &'static str,
) -> Result<Stop> {
    let mut at = from;
    while at < file_len {
        let chunk = read_exact_or_eof(file, at, SCAN_CHUNK_BYTES)
            .await
            .map_err(|e| Error::io("read", path, e))?;
        if chunk.is_empty() {
            break;
        }
        if chunk.iter().any(|&b| b != 0) {
            return Ok(Stop::Corrupt(tag));
        }
        at += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
    }
    Ok(Stop::Torn)
}

/// Carries out the plan, then makes the directory changes durable.
async fn apply<I: Io>(io: &I, dir: &Path, changes: &[Change]) -> Result<()> {
    for change in changes {
        match change {
            Change::Remove(path) => io
                .remove_file(path)
                .await
                .map_err(|e| Error::io("remove", path, e))?,
            Change::MoveAside { path, to } => io
                .rename(path, to)
                .await
                .map_err(|e| Error::io("rename", path, e))?,
            Change::Truncate { path, file_len } => truncate(io, path, *file_len).await?,
            Change::CutAside { path, file_pos, to } => {
                copy_rest(io, path, *file_pos, to).await?;
                truncate(io, path, *file_pos).await?;
            }
        }
    }
    if !changes.is_empty() {
        io.sync_dir(dir)
            .await
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(())
}

async fn truncate<I: Io>(io: &I, path: &Path, file_len: u64) -> Result<()> {
    let file = io
        .open(path, OpenMode::ReadWrite)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    file.set_len(file_len)
        .await
        .map_err(|e| Error::io("truncate", path, e))?;
    file.sync_data()
        .await
        .map_err(|e| Error::io("fdatasync", path, e))
}

/// Copies `[file_pos, end)` of `path` into a new file `to`, durably.
async fn copy_rest<I: Io>(io: &I, path: &Path, file_pos: u64, to: &Path) -> Result<()> {
    let src = io
        .open(path, OpenMode::Read)
        .await
        .map_err(|e| Error::io("open", path, e))?;
    let dst = io
        .open(to, OpenMode::CreateTruncate)
        .await
        .map_err(|e| Error::io("create", to, e))?;
    let mut at = file_pos;
    loop {
        let chunk = read_exact_or_eof(&src, at, SCAN_CHUNK_BYTES)
            .await
            .map_err(|e| Error::io("read", path, e))?;
        if chunk.is_empty() {
            break;
        }
        let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let (res, _) = dst.write_all_at(chunk, at - file_pos).await;
        res.map_err(|e| Error::io("write", to, e))?;
        at += n;
    }
    dst.sync_data()
        .await
        .map_err(|e| Error::io("fdatasync", to, e))
}
