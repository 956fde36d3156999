//! ringsq-storage: a segmented, checksummed append-only log on `io_uring`.
//!
//! The crate knows nothing of NSQ. A [`Log`] is a directory of segment files holding records
//! (opaque byte strings) numbered by `seq`. One writer task per log owns the write position;
//! [`Log::append`] is synchronous (it reserves a [`Position`] and queues the record), the writer
//! batches queued records into one write, and an fdatasync policy (every `sync_every_records`,
//! at least every `sync_timeout`, and group commit through [`Log::wait_synced`]) makes them
//! durable. All IO goes through the [`Io`] trait: [`UringIo`] (tokio-uring) in production,
//! [`MemIo`] (in memory, with scripted faults and crashes) in tests.
//!
//! # API overview
//!
//! - [`Log::open`] → `(Log, RecoveryReport)`; [`Log::append`] → `Position`;
//!   [`Log::wait_written`], [`Log::wait_synced`], [`Log::sync`]; [`Log::read`] from any record
//!   boundary; [`Log::retain_from`]; [`Log::close`]; [`Log::destroy`]; [`Log::end`],
//!   [`Log::first`], [`Log::written`], [`Log::synced`], [`Log::error`], [`Log::stats`].
//! - [`Log::copy_synced`] and [`Log::pin_retention`]: a consistent copy of a running log (the
//!   files and lengths to copy, a checkpoint for them) and a [`RetainPin`] that keeps those
//!   files from retention until the copy is done.
//! - [`atomic_write`] and [`read_small_file`]: small state files, replaced atomically.
//! - [`format`](mod@format): the pure, panic-free encoders and decoders (fuzz targets use them).
//! - Failure semantics: an fsync error or a write error other than ENOSPC *poisons* the log
//!   (no more appends; every waiter gets the error; [`Log::error`] keeps the original). ENOSPC
//!   fails the records of that write and those queued behind ([`Error::NoSpace`]), rolls `end`
//!   back to `written`, truncates the partial bytes, and does not poison; so does a write that
//!   finds no file descriptor (EMFILE, ENFILE). A caller that acknowledges records before they
//!   are written asks the log to keep that many ([`Log::keep_unwritten`]): those stay queued
//!   and are written again every half second until space returns.
//! - [`WriteHealth`] ([`Io::health`]): the outcome of the latest write through a backend (any
//!   log, any [`atomic_write`]) and the logs that are poisoned, for a health check.
//! - [`Files`] ([`Io::files`]): file descriptors as a budget. Every open takes a slot (waiting
//!   while none is free); segment handles stay in a small LRU cache and are closed when the
//!   budget needs them or after [`files::IDLE_CLOSE_AFTER`] unused, never while they hold
//!   unsynced writes. An idle log holds no descriptor; many logs share a few.
//! - Opening a log writes nothing when its directory exists (a full disk does not stop it):
//!   the first segment of an empty log is created by its first write, and the last segment is
//!   fdatasynced at open only when recovery found writes the checkpoint does not cover.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian, fixed width. CRCs are CRC32C (Castagnoli).
//!
//! A log directory holds:
//!
//! | file | what |
//! | --- | --- |
//! | `<base offset, 20 digits>.seg` | a segment: header + records |
//! | `checkpoint` | the durable end, replaced atomically |
//! | `<name>.tmp` | a temporary file of [`atomic_write`], removed at open |
//! | `<segment>.corrupt-<why>-at-<file offset>` | quarantined bytes, never read again |
//!
//! ## Segment file
//!
//! Header, 32 bytes:
//!
//! | bytes | field | value |
//! | --- | --- | --- |
//! | 0..8 | magic | `RINGSQSG` (ASCII) |
//! | 8..12 | version | u32 = 1 |
//! | 12..20 | base seq | u64: seq of the first record |
//! | 20..28 | base offset | u64: logical offset of the first record (also the file name) |
//! | 28..32 | header CRC | u32: CRC32C of bytes 0..28 |
//!
//! Then records, back to back, from file offset 32. A record is 16 bytes of header and its data:
//!
//! | bytes | field | value |
//! | --- | --- | --- |
//! | 0..4 | length | u32: data bytes (at most `record_size_max`) |
//! | 4..8 | CRC | u32: CRC32C of the length bytes, then the seq bytes, then the data |
//! | 8..16 | seq | u64: the record's seq (detects stale or recycled bytes) |
//! | 16..16+length | data | the appended bytes |
//!
//! A record's logical offset is `base offset + (file offset - 32)`: segment headers are not
//! counted, so the next record is at `offset + 16 + length`. All zeros is never a valid record
//! (its CRC would not match). A segment rolls when the next record would make the file larger
//! than `segment_size_bytes_max`; a record larger than that goes alone in a segment. Before
//! the next segment file is created the current one is fdatasynced; a new segment file is
//! created with `O_EXCL`, its header written and fdatasynced, then the directory fsynced. So
//! every segment but the last is *sealed*: complete and durable.
//!
//! ## Checkpoint file `checkpoint`, 40 bytes
//!
//! | bytes | field | value |
//! | --- | --- | --- |
//! | 0..8 | magic | `RINGSQCP` (ASCII) |
//! | 8..12 | version | u32 = 1 |
//! | 12..20 | segment | u64: base offset of the segment being written |
//! | 20..28 | end seq | u64: one past the last record covered by an fdatasync |
//! | 28..36 | end offset | u64: logical offset matching `end seq` |
//! | 36..40 | CRC | u32: CRC32C of bytes 0..36 |
//!
//! Written with [`atomic_write`] at every segment roll, at close when it is stale, and at most
//! once per `sync_timeout` while the durable end moves — never per group commit (that would
//! double the fsyncs), and only over a clean (fdatasynced) segment.
//!
//! ## Temporary files
//!
//! [`atomic_write`] writes the whole new contents to `<path>.tmp` (created or truncated),
//! fdatasyncs it, renames it over `<path>`, and fsyncs the directory. A `.tmp` file is
//! therefore either a complete copy of some new contents or a torn one; it is never read.
//!
//! # Recovery (at open)
//!
//! Open time does not grow with the backlog: sealed segments are trusted after a header read
//! and a size check; only the last segment is scanned, from the checkpoint when it names it.
//! The whole plan is made before anything is changed, so a refusal or a transient error leaves
//! the directory untouched. Every action is logged (`warn!`, `error!` for lost or quarantined
//! data) and listed in the [`RecoveryReport`].
//!
//! | # | situation on disk | what open does |
//! | --- | --- | --- |
//! | 1 | empty or missing directory | create it (each new directory fsynced in its parent); the first segment, at seq 0 (or at the checkpoint's end if only a checkpoint is left), is created by the first write |
//! | 2 | clean close: checkpoint names the last segment at its end | scan nothing; open |
//! | 3 | last segment longer than the checkpoint says (appended after it) | scan from the checkpoint; keep every valid record |
//! | 4 | torn last record: runs past end of file | truncate it (`TornTailTruncated`) |
//! | 5 | torn last record: the rest of the file is zeros | truncate there (`TornTailTruncated`) |
//! | 6 | bad CRC, bad length or wrong seq with non-zero bytes behind it, or a record whose end seq or offset would not fit in a u64 (`range`: no log writes one) | move the rest of the segment to `<segment>.corrupt-<crc,length,seq,range>-at-<offset>`, truncate there (`Quarantined`); never delivered |
//! | 7 | checkpoint missing or its CRC bad | scan the last segment whole (`CheckpointIgnored` if it existed) |
//! | 8 | checkpoint stale: its end is past the end of the file, or it names a segment that does not exist | scan the last segment whole; report that synced records may be lost (`CheckpointIgnored`) |
//! | 9 | extra segment after the checkpoint's, with a valid header | the checkpoint's segment is sealed; scan the extra one whole |
//! | 10 | newest segment(s) with an empty or torn (short or all-zero) header | remove them (`SegmentRemoved`): a crash while creating them |
//! | 11 | a segment with a bad magic, a bad header CRC, a header/name mismatch or out of order | move it aside whole to `<segment>.corrupt-<why>-at-0` (`Quarantined`) |
//! | 12 | a sealed segment whose size does not match the next segment's base | scan it: keep its valid records, move aside anything after them (`Quarantined`) |
//! | 13 | a missing segment (gap between segments) | keep both sides; report the missing seqs (`Gap`); reads skip the gap |
//! | 14 | `*.tmp` left by an interrupted [`atomic_write`] | remove it (`TempRemoved`) |
//! | 15 | a segment header or the checkpoint with an unknown version | refuse to open ([`Error::UnsupportedVersion`]); touch nothing |
//! | 16 | a transient error (EIO on a read, EMFILE on an open) | return the error; quarantine nothing, touch nothing |
//!
//! A record in a sealed segment is verified (CRC, seq) when it is read; a failure then is
//! returned to the reader as [`Error::Corrupt`] with the segment and offset.
//!
//! # Reads
//!
//! Recently appended records (up to `cache_bytes_max`, and always every record not yet
//! written) are served from memory. Older records are read with `io_uring` reads of up to 4 MiB
//! (one read, several records decoded, each CRC checked, data sliced from the read buffer
//! without copying). `io_uring` reads were chosen over memmap2 without a benchmark: a page fault
//! on a mapped segment would block the runtime's only thread.
//!
//! # Blocking calls
//!
//! tokio-uring has no ftruncate, readdir or recursive remove: [`UringIo`] uses `std::fs` for
//! those. They run at open, after ENOSPC, and in [`Log::destroy`], never on the append path.

mod copy;
mod error;
pub mod files;
pub mod format;
pub mod health;
pub mod io;
mod log;
mod meta;
mod paths;
mod position;
mod reader;
mod recovery;
mod writer;

pub use copy::{FileCut, LogCopy, RetainPin};
pub use error::Error;
pub use files::{Files, FilesStats};
pub use health::WriteHealth;
pub use io::mem::{CrashMode, Fault, MemIo, Op};
pub use io::{Io, IoFile, OpenMode, UringIo};
pub use log::{Log, LogConfig, LogStats, SegmentSummary, Ticket};
pub use meta::{atomic_write, read_small_file, replace_unsynced};
pub use paths::{checkpoint_path, parse_segment_name, segment_file_name, segment_path};
pub use position::{Position, Record};
pub use recovery::{RecoveryAction, RecoveryReport};
