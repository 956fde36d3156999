//! The crate's one error type.
//!
//! `Error` is `Clone` because one failure (an fsync error, a full disk) must reach every waiter:
//! the `io::Error` inside is shared through an `Arc`. Every variant says what failed and where.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong in the storage crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`"write"`, `"fdatasync"`, `"open"`, …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// A write hit ENOSPC. The records of that write (and those queued behind) were not stored;
    /// the log is not poisoned and accepts appends again once space is freed.
    #[error("no space left on device writing {path}")]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// Bytes on disk that do not decode (bad CRC, bad length, wrong seq, bad magic).
    #[error("corrupt data in {segment} at file offset {offset}: {reason}")]
    Corrupt {
        /// The file concerned.
        segment: PathBuf,
        /// Byte offset in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log's sequence numbers or offsets would pass `u64::MAX` (only a damaged or crafted
    /// checkpoint can bring a log there).
    #[error("log positions exhausted at seq {}, offset {}", end.seq, end.offset)]
    Exhausted {
        /// The log's end.
        end: crate::Position,
    },
    /// A file was written by a newer format version; nothing was touched.
    #[error("{path}: unsupported format version {found}")]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version found in it.
        found: u32,
    },
    /// The log stopped accepting writes after this error (an fsync or write failure).
    #[error("log is poisoned: {0}")]
    Poisoned(Box<Error>),
    /// An append larger than `LogConfig::record_size_max`.
    #[error("record of {len} bytes is larger than the maximum {max}")]
    RecordTooLarge {
        /// Size of the refused record in bytes.
        len: usize,
        /// `LogConfig::record_size_max`.
        max: u32,
    },
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// A read asked for records that retention already deleted.
    #[error("position seq {seq} is before the first stored record {first}")]
    Retained {
        /// Requested seq.
        seq: u64,
        /// `Log::first().seq`.
        first: u64,
    },
    /// A read position that is not a record boundary of this log.
    #[error("position seq {seq} offset {offset} is not a record boundary of this log")]
    BadPosition {
        /// Requested seq.
        seq: u64,
        /// Requested offset.
        offset: u64,
    },
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

impl Error {
    /// Wraps an `io::Error`, turning ENOSPC into [`Error::NoSpace`].
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Error::NoSpace {
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                op,
                path: path.to_path_buf(),
                source: Arc::new(source),
            }
        }
    }

    /// True for [`Error::NoSpace`].
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }

    /// True when a system call failed for want of a file descriptor (EMFILE, ENFILE): transient,
    /// nothing on disk is wrong.
    pub fn is_out_of_files(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
    }
}

/// Short alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
