//! Reads: recent records from the in-memory cache, older ones from segment files with `io_uring`
//! reads (one chunk read straight into its buffer, several records decoded, each CRC verified,
//! data sliced from the chunk without copying).
//!
//! A chunk is sized from what the caller asked for (`max_bytes`, between
//! [`READ_CHUNK_BYTES_MIN`] and [`READ_CHUNK_BYTES_MAX`], or exactly one record when that is
//! larger), so a read never pulls megabytes from the page cache to return a few records, and the
//! records returned pin only that chunk.
//!
//! `io_uring` reads were chosen over memmap2: a page fault on a mapped segment would block the
//! runtime's only thread, while an `io_uring` read lets other tasks run while the disk works.

use crate::error::{Error, Result};
use crate::format::{self, RECORD_HEADER_BYTES, RECORD_HEADER_BYTES_U64, SEGMENT_HEADER_BYTES_U64};
use crate::io::{read_exact_or_eof, Io, OpenMode};
use crate::log::{Shared, State};
use crate::position::{Position, Record};
use bytes::Bytes;
use std::path::PathBuf;

/// Smallest disk read, in bytes (a page: one small record, or several).
const READ_CHUNK_BYTES_MIN: u64 = 4 * 1024;
/// Largest disk read, in bytes, unless a single record is larger.
const READ_CHUNK_BYTES_MAX: u64 = 1024 * 1024;
/// Bytes read at a time while scanning for where damaged records end (rare: after corruption).
const RESYNC_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// Where on disk a read starts.
struct DiskRead {
    path: PathBuf,
    start: Position,
    file_pos: u64,
    /// End of the records readable in this segment.
    end: Position,
}

enum Source {
    Done(Vec<Record>),
    Disk(DiskRead),
}

pub(crate) async fn read<I: Io>(
    shared: &Shared<I>,
    from: Position,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<Record>> {
    let target = match locate(&shared.state.borrow(), from, max_records, max_bytes)? {
        Source::Done(records) => return Ok(records),
        Source::Disk(target) => target,
    };
    let file = shared.segment_file(&target.path).await?;
    read_disk(
        &*file,
        &target,
        max_records,
        max_bytes,
        shared.config.record_size_max,
    )
    .await
}

/// Decides where records from `from` are: in the cache (answered at once) or in a segment.
fn locate(st: &State, from: Position, max_records: usize, max_bytes: usize) -> Result<Source> {
    let bad = Error::BadPosition {
        seq: from.seq,
        offset: from.offset,
    };
    let first = st.first();
    if from.seq < first.seq {
        return Err(Error::Retained {
            seq: from.seq,
            first: first.seq,
        });
    }
    if from.seq >= st.end.seq {
        return if from == st.end {
            Ok(Source::Done(Vec::new()))
        } else {
            Err(bad)
        };
    }
    // Every record from the cache front to `end` is in the cache, including records appended
    // but not written yet (which are past every segment's end: not a gap).
    let cache_front = st.cache.front().map_or(st.end.seq, |r| r.pos.seq);
    if from.seq >= cache_front {
        return from_cache(st, from, cache_front, max_records, max_bytes).map(Source::Done);
    }
    let index = st.segments.partition_point(|s| s.base.seq <= from.seq);
    let mut start = from;
    let mut segment = index.checked_sub(1).and_then(|i| st.segments.get(i));
    if segment.is_some_and(|s| from.seq >= s.end.seq) {
        // A gap left by a missing segment (see the recovery table): continue after it.
        segment = st.segments.range(index..).find(|s| s.end.seq > s.base.seq);
        start = segment.map_or(st.written, |s| s.base);
        if start == st.end {
            // Nothing after the gap yet.
            return Ok(Source::Done(Vec::new()));
        }
    } else if let Some(s) =
        segment.filter(|s| from.seq == s.base.seq && from.offset != s.base.offset)
    {
        // The segment's offsets do not continue its predecessor's (a damaged directory: recovery
        // reports it when it scans the predecessor). Seqs are the records' identity: a reader
        // coming from the predecessor starts at this base; no record is skipped or invented.
        start = s.base;
    } else if let Some(s) = segment.filter(|s| from.offset == s.end.offset && from.seq < s.end.seq)
    {
        // A sealed segment is trusted by its size at open; its records end before the seq its
        // successor's header claims: damaged, and reported as such (never guessed over).
        return Err(Error::Corrupt {
            segment: s.path.clone(),
            offset: SEGMENT_HEADER_BYTES_U64 + (s.end.offset - s.base.offset),
            reason: format!(
                "segment ends at seq {} but the next segment starts at seq {}",
                from.seq, s.end.seq
            ),
        });
    } else if segment.is_some_and(|s| from.offset < s.base.offset || from.offset >= s.end.offset) {
        return Err(bad);
    }
    if start.seq >= cache_front {
        return from_cache(st, start, cache_front, max_records, max_bytes).map(Source::Done);
    }
    let segment = segment.ok_or(bad)?;
    Ok(Source::Disk(DiskRead {
        path: segment.path.clone(),
        start,
        file_pos: SEGMENT_HEADER_BYTES_U64 + (start.offset - segment.base.offset),
        end: segment.end,
    }))
}

fn from_cache(
    st: &State,
    from: Position,
    cache_front: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<Record>> {
    let skip = usize::try_from(from.seq - cache_front).unwrap_or(usize::MAX);
    if st.cache.get(skip).is_none_or(|r| r.pos != from) {
        return Err(Error::BadPosition {
            seq: from.seq,
            offset: from.offset,
        });
    }
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for record in st.cache.iter().skip(skip).take(max_records) {
        if !out.is_empty() && bytes + record.data.len() > max_bytes {
            break;
        }
        bytes += record.data.len();
        out.push(record.clone());
    }
    Ok(out)
}

/// Reads one chunk of `target`'s segment and decodes records from it.
async fn read_disk<F: crate::io::IoFile>(
    file: &F,
    target: &DiskRead,
    max_records: usize,
    max_bytes: usize,
    record_size_max: u32,
) -> Result<Vec<Record>> {
    let available = target.end.offset - target.start.offset;
    let wanted = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .clamp(READ_CHUNK_BYTES_MIN, READ_CHUNK_BYTES_MAX);
    let mut chunk_len = available.min(wanted);
    loop {
        let chunk = read_chunk(file, target, chunk_len).await?;
        let (records, first_needs) =
            decode_chunk(&chunk, target, max_records, max_bytes, record_size_max)?;
        if !records.is_empty() {
            return Ok(records);
        }
        if u64::try_from(chunk.len()).unwrap_or(u64::MAX) < chunk_len {
            return Err(corrupt(
                target,
                target.file_pos,
                "segment file shorter than its records",
            ));
        }
        match first_needs {
            // The first record is larger than the chunk: read exactly it.
            Some(len) if len > chunk_len && len <= available => chunk_len = len,
            Some(_) | None => {
                return Err(corrupt(
                    target,
                    target.file_pos,
                    "record runs past the end of its segment",
                ))
            }
        }
    }
}

async fn read_chunk<F: crate::io::IoFile>(file: &F, target: &DiskRead, len: u64) -> Result<Bytes> {
    let len_usize =
        usize::try_from(len).map_err(|_| corrupt(target, target.file_pos, "read too large"))?;
    // Short only if the file was cut: the caller returns what records it holds.
    let bytes = read_exact_or_eof(file, target.file_pos, len_usize)
        .await
        .map_err(|e| Error::io("read", &target.path, e))?;
    Ok(Bytes::from(bytes))
}

/// Decodes records from the start of `chunk`. When none fits, also returns the encoded length of
/// the first record (so the caller can read all of it).
fn decode_chunk(
    chunk: &Bytes,
    target: &DiskRead,
    max_records: usize,
    max_bytes: usize,
    record_size_max: u32,
) -> Result<(Vec<Record>, Option<u64>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut pos = target.start;
    let mut bytes = 0usize;
    while out.len() < max_records && pos.seq < target.end.seq {
        let file_pos = target.file_pos + (pos.offset - target.start.offset);
        match format::decode_record(&chunk[at..], record_size_max) {
            // A damaged record after good ones: return the good ones; the next read starts
            // at the damaged one and gets the error (so the caller knows exactly where it is).
            Ok(Some((header, _))) if header.seq != pos.seq && !out.is_empty() => break,
            Err(_) if !out.is_empty() => break,
            Ok(Some((header, data))) => {
                if header.seq != pos.seq {
                    return Err(corrupt(target, file_pos, "record has an unexpected seq"));
                }
                if !out.is_empty() && bytes + data.len() > max_bytes {
                    break;
                }
                let data_at = at + RECORD_HEADER_BYTES;
                let data = chunk.slice(data_at..data_at + data.len());
                bytes += data.len();
                out.push(Record { pos, data });
                let len = header.encoded_len();
                at += usize::try_from(len).unwrap_or(usize::MAX);
                pos = Position {
                    seq: pos.seq + 1,
                    offset: pos.offset + len,
                };
            }
            Ok(None) => {
                let needs = (out.is_empty() && chunk.len() >= RECORD_HEADER_BYTES)
                    .then(|| format::record_encoded_len(format::le_u32(chunk, 0)));
                return Ok((out, needs));
            }
            Err(e) => return Err(corrupt(target, file_pos, &e.to_string())),
        }
    }
    Ok((out, None))
}

fn corrupt(target: &DiskRead, offset: u64, reason: &str) -> Error {
    Error::Corrupt {
        segment: target.path.clone(),
        offset,
        reason: reason.to_owned(),
    }
}

/// Where reading can go on after `read(from)` failed with [`Error::Corrupt`]: the first record
/// after `from` in the same segment that verifies, else the start of the next segment (or the
/// segment's end for the one being written). See [`crate::Log::skip_damaged`].
pub(crate) async fn resync<I: Io>(shared: &Shared<I>, from: Position) -> Result<Position> {
    let (segment, after) = {
        let st = shared.state.borrow();
        let first = st.first();
        if from.seq < first.seq {
            return Ok(first);
        }
        let index = st.segments.partition_point(|s| s.base.seq <= from.seq);
        let Some(segment) = index
            .checked_sub(1)
            .and_then(|i| st.segments.get(i))
            .cloned()
        else {
            return Ok(first);
        };
        let after = st.segments.get(index).map_or(segment.end, |s| s.base);
        (segment, after)
    };
    let inside = from.seq < segment.end.seq
        && (segment.base.offset..segment.end.offset).contains(&from.offset);
    if !inside {
        return Ok(after);
    }
    let file = shared
        .io
        .open(&segment.path, OpenMode::Read)
        .await
        .map_err(|e| Error::io("open", &segment.path, e))?;
    let mut scan = Resync {
        file: &file,
        path: &segment.path,
        file_end: segment.file_len(),
        buf: Vec::new(),
        buf_pos: 0,
        record_size_max: shared.config.record_size_max,
    };
    let seqs = from.seq + 1..segment.end.seq;
    let mut at = SEGMENT_HEADER_BYTES_U64 + (from.offset - segment.base.offset) + 1;
    while at + RECORD_HEADER_BYTES_U64 <= scan.file_end {
        if let Some(seq) = scan.record_at(at, &seqs).await? {
            return Ok(Position {
                seq,
                offset: segment.base.offset + (at - SEGMENT_HEADER_BYTES_U64),
            });
        }
        at += 1;
    }
    Ok(after)
}

/// A forward scan of one segment for a place where records verify again.
struct Resync<'a, F> {
    file: &'a F,
    path: &'a PathBuf,
    file_end: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    record_size_max: u32,
}

impl<F: crate::io::IoFile> Resync<'_, F> {
    /// The seq of a record at file position `at` that verifies, has a seq in `seqs`, and is
    /// either the segment's last record or followed by the one with the next seq (two chained
    /// records: a stray byte pattern inside some message body does not pass for a record).
    async fn record_at(&mut self, at: u64, seqs: &std::ops::Range<u64>) -> Result<Option<u64>> {
        let Some(seq) = self.verified(at, seqs).await? else {
            return Ok(None);
        };
        let next = at + self.len_at(at)?;
        if next == self.file_end {
            return Ok((seq + 1 == seqs.end).then_some(seq));
        }
        let chained = self.verified(next, &(seq + 1..seqs.end)).await?.is_some();
        Ok(chained.then_some(seq))
    }

    /// The seq of a record that verifies at `at`, if its seq is in `seqs`.
    async fn verified(&mut self, at: u64, seqs: &std::ops::Range<u64>) -> Result<Option<u64>> {
        if !self.load(at, RECORD_HEADER_BYTES_U64).await? {
            return Ok(None);
        }
        let i = self.index(at)?;
        let len = format::le_u32(&self.buf, i);
        // Cheap filters first: only a plausible seq and length cost a CRC.
        if !seqs.contains(&format::le_u64(&self.buf, i + 8)) || len > self.record_size_max {
            return Ok(None);
        }
        if !self.load(at, format::record_encoded_len(len)).await? {
            return Ok(None);
        }
        let i = self.index(at)?;
        Ok(
            match format::decode_record(&self.buf[i..], self.record_size_max) {
                Ok(Some((header, _))) => Some(header.seq),
                Ok(None) | Err(_) => None,
            },
        )
    }

    /// Encoded length of the record whose header is loaded at `at`.
    fn len_at(&self, at: u64) -> Result<u64> {
        let i = self.index(at)?;
        Ok(format::record_encoded_len(format::le_u32(&self.buf, i)))
    }

    fn index(&self, at: u64) -> Result<usize> {
        usize::try_from(at - self.buf_pos).map_err(|_| Error::Corrupt {
            segment: self.path.clone(),
            offset: at,
            reason: "offset does not fit in memory".to_owned(),
        })
    }

    /// Makes bytes `at..at + len` of the file available in the buffer; false past the end.
    async fn load(&mut self, at: u64, len: u64) -> Result<bool> {
        if at + len > self.file_end {
            return Ok(false);
        }
        let have = self.buf_pos + u64::try_from(self.buf.len()).unwrap_or(u64::MAX);
        if at >= self.buf_pos && at + len <= have {
            return Ok(true);
        }
        let want_u64 = len.max(RESYNC_CHUNK_BYTES).min(self.file_end - at);
        let want = usize::try_from(want_u64).unwrap_or(usize::MAX);
        self.buf = read_exact_or_eof(self.file, at, want)
            .await
            .map_err(|e| Error::io("read", self.path, e))?;
        self.buf_pos = at;
        let have = at + u64::try_from(self.buf.len()).unwrap_or(u64::MAX);
        if have < at + want_u64 {
            // The file is shorter than its records (cut by hand): nothing lies past its real end.
            self.file_end = have;
        }
        Ok(at + len <= have)
    }
}
