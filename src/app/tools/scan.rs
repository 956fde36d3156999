//! Reading a storage log directory offline (a topic's log or a channel's park log), for
//! `ringsq check` and `ringsq dump`: every segment header, every record (length, CRC32C, seq
//! chaining), the checkpoint, and what else the directory holds. Read-only, plain `std::fs`.
//!
//! The byte layout and the recovery decision table are the storage crate's (`storage/src/lib.rs`);
//! every decoding here goes through its pure decoders ([`format`]), and each problem is
//! classified the way start-up recovery would treat it:
//!
//! - a torn tail of the newest segment (a record running past the end of the file, or a bad
//!   record followed only by zeros) is what a crash leaves and start-up truncates: a warning;
//! - a bad record with anything but zeros after it, anything wrong in a sealed segment, a bad
//!   segment header or checkpoint: damage;
//! - quarantined files (`*.corrupt-*`), leftover temporary files, the newest segment with an
//!   empty header (a crash while creating it): warnings.
//!
//! Memory is bounded whatever the files hold: a segment is read through one window of at most
//! `max(WINDOW_BYTES_MIN, 2 × (record header + record_size_max))` bytes, and a record's length
//! is checked against `record_size_max` (by the decoder) before its bytes are read.

use ringsq_storage::format::{
    self, Checkpoint, FormatError, SegmentHeader, CHECKPOINT_BYTES, RECORD_HEADER_BYTES_U64,
    SEGMENT_HEADER_BYTES_U64,
};
use std::fs::File;
use std::io::{self, Read as _};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// Bytes a window reads at a time at least.
const WINDOW_BYTES_MIN: u64 = 4 << 20;
/// A checkpoint file larger than this is not read (it must be exactly 40 bytes).
const CHECKPOINT_READ_BYTES_MAX: u64 = 4096;
const _: () = assert!(CHECKPOINT_READ_BYTES_MAX > CHECKPOINT_BYTES as u64);

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Bytes that do not verify and that no crash explains: `check` exits 1.
    Damage,
    /// What a crash or a past recovery leaves (start-up handles it): reported, exit 0.
    Warning,
}

/// One thing found wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// The file's path (as text: JSON has no other way to say it).
    pub file: String,
    /// Byte offset in the file where the problem starts (`None`: the whole file).
    pub offset: Option<u64>,
    pub reason: String,
}

impl Problem {
    pub fn damage(file: &Path, offset: Option<u64>, reason: String) -> Self {
        Self {
            severity: Severity::Damage,
            file: file.display().to_string(),
            offset,
            reason,
        }
    }

    pub fn warning(file: &Path, offset: Option<u64>, reason: String) -> Self {
        Self {
            severity: Severity::Warning,
            file: file.display().to_string(),
            offset,
            reason,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity {
            Severity::Damage => "DAMAGED",
            Severity::Warning => "warning",
        };
        write!(f, "{what}: {}", self.file)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// An IO error while reading `path`: the tools cannot run (exit 2), nothing is judged.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct ReadError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl ReadError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The files of a log directory, by kind, each list sorted.
#[derive(Debug, Default)]
pub struct LogDir {
    /// `(base offset in the name, path)`, oldest first.
    pub segments: Vec<(u64, PathBuf)>,
    pub checkpoint: Option<PathBuf>,
    /// Bytes moved aside by start-up recovery (`<segment>.corrupt-<why>-at-<offset>`).
    pub quarantined: Vec<PathBuf>,
    /// Left by an interrupted atomic replace (removed at start).
    pub temps: Vec<PathBuf>,
    /// Anything else.
    pub other: Vec<PathBuf>,
}

/// Lists `dir` (which must exist).
pub fn list_log_dir(dir: &Path) -> Result<LogDir, ReadError> {
    let mut out = LogDir::default();
    let checkpoint = ringsq_storage::checkpoint_path(dir);
    let entries = std::fs::read_dir(dir).map_err(|e| ReadError::new("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::new("list", dir, e))?;
        let name = entry.file_name();
        let path = entry.path();
        let text = name.to_string_lossy();
        if let Some(base_offset) = ringsq_storage::parse_segment_name(&name) {
            out.segments.push((base_offset, path));
        } else if path == checkpoint {
            out.checkpoint = Some(path);
        } else if text.contains(".corrupt-") || text.contains(".bad-") {
            out.quarantined.push(path);
        } else if text.ends_with(".tmp") {
            out.temps.push(path);
        } else {
            out.other.push(path);
        }
    }
    out.segments.sort();
    out.quarantined.sort();
    out.temps.sort();
    out.other.sort();
    Ok(out)
}

/// A read-only file read through one reusable buffer.
struct Window {
    file: File,
    path: PathBuf,
    /// The file's length (lowered if reads find it shorter than `stat` said).
    file_len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_pos: u64,
}

impl Window {
    fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|e| ReadError::new("open", path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| ReadError::new("stat", path, e))?
            .len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            file_len,
            buf: Vec::new(),
            buf_pos: 0,
        })
    }

    /// Bytes `at..at + len`, or `None` when they run past the end of the file. The caller
    /// bounds `len` (a record at most); the buffer holds at most `max(2 len, WINDOW_BYTES_MIN)`.
    fn get(&mut self, at: u64, len: u64) -> Result<Option<&[u8]>, ReadError> {
        let Some(end) = at.checked_add(len).filter(|&end| end <= self.file_len) else {
            return Ok(None);
        };
        let have = self.buf_pos + u64_of(self.buf.len());
        if at < self.buf_pos || end > have {
            let want = len
                .saturating_mul(2)
                .max(WINDOW_BYTES_MIN)
                .min(self.file_len - at);
            self.fill(at, want)?;
        }
        let (Ok(from), Ok(n)) = (usize::try_from(at - self.buf_pos), usize::try_from(len)) else {
            return Ok(None);
        };
        Ok(from.checked_add(n).and_then(|to| self.buf.get(from..to)))
    }

    fn fill(&mut self, at: u64, want: u64) -> Result<(), ReadError> {
        let want = usize::try_from(want).map_err(|_| {
            ReadError::new(
                "read",
                &self.path,
                io::Error::new(io::ErrorKind::OutOfMemory, "read does not fit in memory"),
            )
        })?;
        self.buf.clear();
        self.buf.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match self
                .file
                .read_at(&mut self.buf[filled..], at + u64_of(filled))
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::new("read", &self.path, e)),
            }
        }
        self.buf.truncate(filled);
        self.buf_pos = at;
        if filled < want {
            // The file is shorter than its length said (cut meanwhile): nothing lies past this.
            self.file_len = at + u64_of(filled);
        }
        Ok(())
    }

    /// True when every byte from `from` to the end of the file is zero.
    fn rest_is_zero(&mut self, from: u64) -> Result<bool, ReadError> {
        let mut at = from;
        while at < self.file_len {
            let len = (self.file_len - at).min(WINDOW_BYTES_MIN);
            let Some(bytes) = self.get(at, len)? else {
                break;
            };
            if bytes.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += len;
        }
        Ok(true)
    }
}

/// One segment file, its header read.
pub struct SegmentFile {
    window: Window,
    pub header: Result<SegmentHeader, FormatError>,
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.window.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl SegmentFile {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let mut window = Window::open(path)?;
        let len = window.file_len.min(SEGMENT_HEADER_BYTES_U64);
        let header = match window.get(0, len)? {
            Some(bytes) => SegmentHeader::decode(bytes),
            None => Err(FormatError::TooShort),
        };
        Ok(Self { window, header })
    }

    pub fn path(&self) -> &Path {
        &self.window.path
    }

    pub fn file_len(&self) -> u64 {
        self.window.file_len
    }

    /// Reads the records after the header, which starts at `base_seq`; `seq_limit` is the next
    /// segment's base seq (a sealed segment's records must stop there).
    pub fn scan(self, base_seq: u64, seq_limit: Option<u64>, record_size_max: u32) -> SegmentScan {
        SegmentScan {
            window: self.window,
            pos: SEGMENT_HEADER_BYTES_U64,
            seq: base_seq,
            seq_limit,
            record_size_max,
            done: false,
            verified: 0,
        }
    }
}

/// What reading a segment meets, in file order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A record that verifies (length, CRC32C, seq).
    Record {
        file_pos: u64,
        seq: u64,
        data: &'a [u8],
    },
    /// Bytes from `file_pos` do not verify and are followed by more than zeros. Verified
    /// records start again at `resumed_at` (`None`: not in this segment).
    Damaged {
        file_pos: u64,
        reason: String,
        resumed_at: Option<u64>,
    },
    /// From `file_pos` to the end: a record cut by the end of the file, or a record that does
    /// not verify followed only by zeros (what a crash leaves at the tail).
    Torn { file_pos: u64, bytes: u64 },
}

/// The records of one segment, read in order through a bounded window.
pub struct SegmentScan {
    window: Window,
    /// File offset of the next record.
    pos: u64,
    /// Seq the next record must have.
    seq: u64,
    seq_limit: Option<u64>,
    record_size_max: u32,
    done: bool,
    /// Records that verified so far.
    verified: u64,
}

impl std::fmt::Debug for SegmentScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentScan")
            .field("path", &self.window.path)
            .field("pos", &self.pos)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// How the bytes at one file offset read.
enum Class {
    /// A record with the expected seq, `len` bytes in all.
    Good { len: u64 },
    /// Runs past the end of the file.
    Cut,
    /// Does not verify.
    Bad(String),
}

impl SegmentScan {
    /// Seq one past the last record read so far.
    pub fn end_seq(&self) -> u64 {
        self.seq
    }

    /// Records that verified so far.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// File offset one past the last record read so far.
    pub fn end_file_pos(&self) -> u64 {
        self.pos
    }

    /// The next event, `None` at the end of the segment.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let at = self.pos;
        if at >= self.window.file_len {
            self.done = true;
            return Ok(None);
        }
        if self.seq_limit.is_some_and(|limit| self.seq >= limit) {
            self.done = true;
            return Ok(Some(Event::Damaged {
                file_pos: at,
                reason: "records overlap the next segment".to_owned(),
                resumed_at: None,
            }));
        }
        match self.classify(at)? {
            Class::Good { len } => {
                let Some(next_seq) = self.seq.checked_add(1) else {
                    return self.damaged(at, "a seq past the largest there can be".to_owned());
                };
                let seq = self.seq;
                self.seq = next_seq;
                self.pos = at + len;
                self.verified += 1;
                let data = self
                    .window
                    .get(at + RECORD_HEADER_BYTES_U64, len - RECORD_HEADER_BYTES_U64)?
                    .unwrap_or_default();
                Ok(Some(Event::Record {
                    file_pos: at,
                    seq,
                    data,
                }))
            }
            Class::Cut => Ok(Some(self.torn(at))),
            Class::Bad(reason) => {
                // As recovery: torn only if the record and all after it are zeros.
                if self.window.rest_is_zero(at)? {
                    return Ok(Some(self.torn(at)));
                }
                self.damaged(at, reason)
            }
        }
    }

    fn torn(&mut self, at: u64) -> Event<'_> {
        self.done = true;
        Event::Torn {
            file_pos: at,
            bytes: self.window.file_len.saturating_sub(at),
        }
    }

    /// Reports damage at `at` and moves to where verified records start again, if anywhere.
    fn damaged(&mut self, at: u64, reason: String) -> Result<Option<Event<'_>>, ReadError> {
        let resumed = self.resync(at)?;
        match resumed {
            Some((pos, seq)) => (self.pos, self.seq) = (pos, seq),
            None => self.done = true,
        }
        Ok(Some(Event::Damaged {
            file_pos: at,
            reason,
            resumed_at: resumed.map(|(pos, _)| pos),
        }))
    }

    /// The bytes at `at` as a record: the decoder checks the length against `record_size_max`
    /// before anything more is read.
    fn classify(&mut self, at: u64) -> Result<Class, ReadError> {
        let most = RECORD_HEADER_BYTES_U64 + u64::from(self.record_size_max);
        let len = (self.window.file_len - at).min(most);
        let Some(bytes) = self.window.get(at, len)? else {
            return Ok(Class::Cut);
        };
        Ok(match format::decode_record(bytes, self.record_size_max) {
            Ok(Some((header, _))) if header.seq == self.seq => Class::Good {
                len: header.encoded_len(),
            },
            Ok(Some((header, _))) => Class::Bad(format!(
                "record with seq {} where seq {} should follow",
                header.seq, self.seq
            )),
            Ok(None) => Class::Cut,
            Err(e) => Class::Bad(format!("record fails its check: {e}")),
        })
    }

    /// The seq and length of a record at `at` that verifies with a seq in `seqs`.
    fn verified_at(
        &mut self,
        at: u64,
        seqs: &std::ops::RangeInclusive<u64>,
    ) -> Result<Option<(u64, u64)>, ReadError> {
        let most = RECORD_HEADER_BYTES_U64 + u64::from(self.record_size_max);
        let len = self.window.file_len.saturating_sub(at).min(most);
        let Some(bytes) = self.window.get(at, len)? else {
            return Ok(None);
        };
        Ok(match format::decode_record(bytes, self.record_size_max) {
            Ok(Some((header, _))) if seqs.contains(&header.seq) => {
                Some((header.seq, header.encoded_len()))
            }
            Ok(_) | Err(_) => None,
        })
    }

    /// After damage at `from`: the first later offset where a record with a later seq verifies
    /// and is followed by the next one (or by the end of the segment), as the broker's reader
    /// resyncs, so a stray pattern inside a message body does not pass for a record.
    fn resync(&mut self, from: u64) -> Result<Option<(u64, u64)>, ReadError> {
        let file_len = self.window.file_len;
        let last_allowed = self.seq_limit.map_or(u64::MAX, |l| l.saturating_sub(1));
        let mut at = from + 1;
        while at + RECORD_HEADER_BYTES_U64 <= file_len {
            // Every record takes at least a header: later seqs than this cannot fit.
            let fits = (file_len - at) / RECORD_HEADER_BYTES_U64;
            let seqs = self.seq.saturating_add(1)..=self.seq.saturating_add(fits).min(last_allowed);
            if let Some((seq, len)) = self.verified_at(at, &seqs)? {
                let next = at + len;
                let chained = if next == file_len {
                    self.seq_limit.is_none_or(|l| seq.saturating_add(1) == l)
                } else {
                    let following = seq.saturating_add(1)..=seq.saturating_add(1);
                    self.verified_at(next, &following)?.is_some()
                };
                if chained {
                    return Ok(Some((at, seq)));
                }
            }
            at += 1;
        }
        Ok(None)
    }
}

/// What a log directory holds, as far as it verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogSummary {
    /// Segment files with a good header.
    pub segments: usize,
    /// Records that verify.
    pub records: u64,
    /// Bytes in segment files.
    pub bytes: u64,
    /// Seq of the oldest record kept (the first segment's base).
    pub first_seq: u64,
    /// Seq one past the newest record that verifies.
    pub end_seq: u64,
    /// The checkpoint, if it verifies.
    #[serde(skip)]
    pub checkpoint: Option<Checkpoint>,
}

/// One record handed to a [`walk_log`] visitor.
#[derive(Debug)]
pub struct Found<'a> {
    pub segment: &'a Path,
    pub file_pos: u64,
    pub seq: u64,
    pub data: &'a [u8],
}

/// Reads every segment of the log in `dir` in order, handing each record that verifies to
/// `record` (which may stop the walk) and each problem to `problem`.
pub fn walk_log(
    dir: &Path,
    record_size_max: u32,
    record: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
    problem: &mut dyn FnMut(Problem),
) -> Result<LogSummary, ReadError> {
    let listing = list_log_dir(dir)?;
    let mut summary = LogSummary::default();
    if let Some(path) = &listing.checkpoint {
        summary.checkpoint = read_checkpoint(path, problem)?;
    }
    let segments = open_segments(&listing, problem)?;
    summary.segments = segments.len();
    summary.bytes = segments.iter().map(|(_, s)| s.file_len()).sum();
    summary.first_seq = segments.first().map_or(0, |(h, _)| h.base_seq);
    let next_headers: Vec<Option<SegmentHeader>> = segments
        .iter()
        .skip(1)
        .map(|(h, _)| Some(*h))
        .chain(std::iter::once(None))
        .collect();
    for ((header, file), next) in segments.into_iter().zip(next_headers) {
        let path = file.path().to_path_buf();
        let mut scan = file.scan(header.base_seq, next.map(|n| n.base_seq), record_size_max);
        let stopped = scan_segment(&mut scan, &path, next.is_some(), record, problem)?;
        summary.records += scan.verified();
        summary.end_seq = scan.end_seq();
        if stopped.is_break() {
            return Ok(summary);
        }
        if let Some(next) = next {
            check_continuity(&scan, &header, &next, &path, &listing, problem);
        }
    }
    if summary.segments == 0 {
        if let Some(cp) = summary.checkpoint {
            (summary.first_seq, summary.end_seq) = (cp.end_seq, cp.end_seq);
        }
    }
    check_checkpoint(&summary, &listing, dir, problem);
    for path in &listing.quarantined {
        problem(Problem::warning(
            path,
            None,
            "quarantined by start-up recovery: bytes that did not verify, never delivered (kept for an operator)"
                .to_owned(),
        ));
    }
    for path in &listing.temps {
        problem(Problem::warning(
            path,
            None,
            "leftover temporary file of an interrupted write (removed at start)".to_owned(),
        ));
    }
    for path in &listing.other {
        problem(Problem::warning(path, None, "unexpected file".to_owned()));
    }
    Ok(summary)
}

/// Hands each event of one segment on; `Break` when the visitor asked to stop.
fn scan_segment(
    scan: &mut SegmentScan,
    path: &Path,
    sealed: bool,
    record: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
    problem: &mut dyn FnMut(Problem),
) -> Result<ControlFlow<()>, ReadError> {
    while let Some(event) = scan.next_event()? {
        match event {
            Event::Record {
                file_pos,
                seq,
                data,
            } => {
                let found = Found {
                    segment: path,
                    file_pos,
                    seq,
                    data,
                };
                if record(found).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Event::Damaged {
                file_pos,
                reason,
                resumed_at,
            } => {
                let after = match resumed_at {
                    Some(pos) => format!("; records verify again from byte {pos}"),
                    None => "; no record after it verifies".to_owned(),
                };
                problem(Problem::damage(path, Some(file_pos), format!("{reason}{after}")));
            }
            Event::Torn { file_pos, bytes } if sealed => problem(Problem::damage(
                path,
                Some(file_pos),
                format!("record cut short in a sealed segment ({bytes} bytes to the end)"),
            )),
            Event::Torn { file_pos, bytes } => problem(Problem::warning(
                path,
                Some(file_pos),
                format!(
                    "torn tail of the newest segment ({bytes} bytes): a record cut by a crash, truncated at start"
                ),
            )),
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Reads and decodes the checkpoint; damage if it does not decode.
fn read_checkpoint(
    path: &Path,
    problem: &mut dyn FnMut(Problem),
) -> Result<Option<Checkpoint>, ReadError> {
    let file = File::open(path).map_err(|e| ReadError::new("open", path, e))?;
    let mut bytes = Vec::with_capacity(CHECKPOINT_BYTES);
    file.take(CHECKPOINT_READ_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::new("read", path, e))?;
    match Checkpoint::decode(&bytes) {
        Ok(cp) => Ok(Some(cp)),
        Err(e) => {
            let reason = match e {
                FormatError::TooShort => format!(
                    "checkpoint of {} bytes (it must be {CHECKPOINT_BYTES}); start-up scans the newest segment whole",
                    bytes.len()
                ),
                other => {
                    format!("checkpoint does not verify: {other}; start-up scans the newest segment whole")
                }
            };
            problem(Problem::damage(path, Some(0), reason));
            Ok(None)
        }
    }
}

/// Opens every segment and checks its header as start-up recovery does; returns those with a
/// good header, oldest first.
fn open_segments(
    listing: &LogDir,
    problem: &mut dyn FnMut(Problem),
) -> Result<Vec<(SegmentHeader, SegmentFile)>, ReadError> {
    let mut files = Vec::with_capacity(listing.segments.len());
    for (name_offset, path) in &listing.segments {
        files.push((*name_offset, SegmentFile::open(path)?));
    }
    // The newest segments with an empty or torn header: a crash while creating them.
    let torn = files
        .iter()
        .rev()
        .take_while(|(_, f)| matches!(f.header, Err(FormatError::Zeroed | FormatError::TooShort)))
        .count();
    let keep = files.len() - torn;
    let mut good: Vec<(SegmentHeader, SegmentFile)> = Vec::with_capacity(keep);
    for (index, (name_offset, file)) in files.into_iter().enumerate() {
        let path = file.path().to_path_buf();
        let reason = match file.header {
            Ok(h) if h.base_offset != name_offset => format!(
                "segment header says base offset {}, its name says {name_offset}",
                h.base_offset
            ),
            Ok(h) if good.last().is_some_and(|(p, _)| h.base_seq < p.base_seq) => format!(
                "segment header's base seq {} is below the previous segment's",
                h.base_seq
            ),
            Ok(h) => {
                good.push((h, file));
                continue;
            }
            Err(e) if index >= keep => {
                problem(Problem::warning(
                    &path,
                    Some(0),
                    format!("{e} in the header of the newest segment: a crash while creating it (removed at start)"),
                ));
                continue;
            }
            Err(e) => format!("bad segment header: {e}"),
        };
        problem(Problem::damage(&path, Some(0), reason));
    }
    Ok(good)
}

/// A sealed segment must end where the next one starts (seq and offset); otherwise records
/// are missing. Explained by a quarantined file of that segment (recovery moved bytes aside):
/// a warning; unexplained: damage.
fn check_continuity(
    scan: &SegmentScan,
    header: &SegmentHeader,
    next: &SegmentHeader,
    path: &Path,
    listing: &LogDir,
    problem: &mut dyn FnMut(Problem),
) {
    let end_offset = header
        .base_offset
        .saturating_add(scan.end_file_pos() - SEGMENT_HEADER_BYTES_U64);
    if scan.end_seq() == next.base_seq && end_offset == next.base_offset {
        return;
    }
    let reason = if scan.end_seq() < next.base_seq {
        format!(
            "records {}..{} are missing: the segment ends before the next one starts",
            scan.end_seq(),
            next.base_seq
        )
    } else {
        format!(
            "the segment ends at offset {end_offset}, the next one starts at {}",
            next.base_offset
        )
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let explained = listing.quarantined.iter().any(|q| {
        let q = q.file_name().map(|n| n.to_string_lossy().into_owned());
        matches!((&q, &name), (Some(q), Some(n)) if q.starts_with(n.as_str()))
    });
    let at = Some(scan.end_file_pos());
    problem(if explained {
        Problem::warning(path, at, format!("{reason} (moved aside at start)"))
    } else {
        Problem::damage(path, at, reason)
    });
}

/// What the checkpoint says against what the segments hold (start-up ignores a checkpoint
/// that does not fit, and says synced records may be lost).
fn check_checkpoint(
    summary: &LogSummary,
    listing: &LogDir,
    dir: &Path,
    problem: &mut dyn FnMut(Problem),
) {
    let Some(cp) = summary.checkpoint else {
        return;
    };
    let path = ringsq_storage::checkpoint_path(dir);
    let newest = listing.segments.last().map(|(base, _)| *base);
    if newest.is_some_and(|newest| cp.segment_base_offset > newest) {
        problem(Problem::warning(
            &path,
            None,
            format!(
                "it names segment {} which is missing: records from there on may be lost",
                ringsq_storage::segment_file_name(cp.segment_base_offset)
            ),
        ));
    } else if summary.segments > 0 && cp.end_seq > summary.end_seq {
        problem(Problem::warning(
            &path,
            None,
            format!(
                "records up to seq {} were synced but the log ends at seq {}",
                cp.end_seq, summary.end_seq
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 1024;

    fn segment(base_seq: u64, base_offset: u64, records: &[&[u8]]) -> Vec<u8> {
        let mut out = SegmentHeader {
            base_seq,
            base_offset,
        }
        .encode()
        .to_vec();
        for (seq, data) in (base_seq..).zip(records) {
            format::encode_record(&mut out, seq, data).unwrap();
        }
        out
    }

    fn events(bytes: &[u8], base_seq: u64, limit: Option<u64>) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        std::fs::write(&path, bytes).unwrap();
        let file = SegmentFile::open(&path).unwrap();
        assert!(file.header.is_ok());
        let mut scan = file.scan(base_seq, limit, MAX);
        let mut out = Vec::new();
        while let Some(event) = scan.next_event().unwrap() {
            out.push(match event {
                Event::Record {
                    file_pos,
                    seq,
                    data,
                } => {
                    format!(
                        "record {seq} at {file_pos}: {}",
                        String::from_utf8_lossy(data)
                    )
                }
                Event::Damaged {
                    file_pos,
                    resumed_at,
                    ..
                } => format!("damaged at {file_pos}, resumed at {resumed_at:?}"),
                Event::Torn { file_pos, bytes } => format!("torn at {file_pos} ({bytes})"),
            });
        }
        out
    }

    #[test]
    fn clean_records_read_in_order() {
        let bytes = segment(5, 0, &[b"one", b"two"]);
        assert_eq!(
            events(&bytes, 5, Some(7)),
            ["record 5 at 32: one", "record 6 at 51: two"]
        );
    }

    #[test]
    fn a_flipped_byte_is_damage_and_reading_resumes_after_it() {
        let mut bytes = segment(0, 0, &[b"aaaa", b"bbbb", b"cccc"]);
        bytes[32 + 16 + 1] ^= 0x10;
        assert_eq!(
            events(&bytes, 0, None),
            [
                "damaged at 32, resumed at Some(52)",
                "record 1 at 52: bbbb",
                "record 2 at 72: cccc"
            ]
        );
    }

    #[test]
    fn a_torn_tail_is_torn_not_damage() {
        let whole = segment(0, 0, &[b"aaaa", b"bbbb"]);
        let cut = &whole[..whole.len() - 2];
        assert_eq!(
            events(cut, 0, None),
            ["record 0 at 32: aaaa", "torn at 52 (18)"]
        );
        let mut zeros = segment(0, 0, &[b"aaaa"]);
        zeros.extend_from_slice(&[0; 100]);
        assert_eq!(
            events(&zeros, 0, None),
            ["record 0 at 32: aaaa", "torn at 52 (100)"]
        );
    }

    #[test]
    fn a_length_above_the_maximum_is_checked_before_reading() {
        let mut bytes = segment(0, 0, &[b"aaaa", b"bbbb"]);
        bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            events(&bytes, 0, None),
            ["damaged at 32, resumed at Some(52)", "record 1 at 52: bbbb"]
        );
    }

    #[test]
    fn records_past_the_next_segment_overlap() {
        let bytes = segment(0, 0, &[b"aaaa", b"bbbb"]);
        assert_eq!(
            events(&bytes, 0, Some(1)),
            ["record 0 at 32: aaaa", "damaged at 52, resumed at None"]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..200 {
            let mut bytes = segment(0, 0, &[b"hello", b"world", &[7; 300]]);
            for _ in 0..=(round % 7) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = usize::try_from(rng % u64_of(bytes.len())).unwrap();
                bytes[at.max(32)] = u8::try_from(rng >> 56).unwrap();
            }
            let cut = usize::try_from(rng % 400).unwrap().min(bytes.len());
            let _ = events(&bytes[..cut.max(32)], 0, None);
        }
    }
}
