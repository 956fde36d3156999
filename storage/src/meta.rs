//! Atomic replacement of small state files: THE one helper for the log's checkpoint, channel
//! cursor files and `nsqd.dat`.
//!
//! Sequence: write `<path>.tmp` (created or truncated), fdatasync it, rename it over `path`,
//! fsync the directory. After a crash `path` holds either the old or the new contents, never a
//! mix; a leftover `<path>.tmp` is garbage (a log removes its own at open).

use crate::error::{Error, Result};
use crate::io::{read_exact_or_eof, Io, IoFile, OpenMode};
use crate::paths;
use std::path::Path;

/// Largest file `read_small_file` reads, in bytes.
pub const SMALL_FILE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Replaces `path` with `data` atomically and durably. The outcome is recorded in the backend's
/// write health.
pub async fn atomic_write<I: Io>(io: &I, path: &Path, data: &[u8]) -> Result<()> {
    let result = replace(io, path, data, true).await;
    io.health().record(&result);
    result
}

/// Replaces `path` with `data` atomically but without any fsync: after a process crash
/// (`kill -9`) `path` holds the old or the new contents; after a power cut it may hold either,
/// or (on file systems that do not order a rename after the data it replaces) be empty or torn.
/// For state that is also saved durably elsewhere and only shortens what a restart repeats.
/// The outcome is recorded in the backend's write health.
pub async fn replace_unsynced<I: Io>(io: &I, path: &Path, data: &[u8]) -> Result<()> {
    let result = replace(io, path, data, false).await;
    io.health().record(&result);
    result
}

async fn replace<I: Io>(io: &I, path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let temp = paths::temp_path(path);
    let file = io
        .open(&temp, OpenMode::CreateTruncate)
        .await
        .map_err(|e| Error::io("create", &temp, e))?;
    let (written, _buf) = file.write_all_at(data.to_vec(), 0).await;
    written.map_err(|e| Error::io("write", &temp, e))?;
    if durable {
        file.sync_data()
            .await
            .map_err(|e| Error::io("fdatasync", &temp, e))?;
    }
    drop(file);
    io.rename(&temp, path)
        .await
        .map_err(|e| Error::io("rename", path, e))?;
    if !durable {
        return Ok(());
    }
    let dir = paths::parent_dir(path);
    io.sync_dir(&dir)
        .await
        .map_err(|e| Error::io("fsync directory", &dir, e))
}

/// Reads a small file whole; `Ok(None)` if it does not exist.
pub async fn read_small_file<I: Io>(io: &I, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match io.open(path, OpenMode::Read).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let size = file.size().await.map_err(|e| Error::io("stat", path, e))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= SMALL_FILE_BYTES_MAX)
        .ok_or_else(|| Error::Corrupt {
            segment: path.to_path_buf(),
            offset: 0,
            reason: format!("{size} bytes is too large for a small state file"),
        })?;
    let bytes = read_exact_or_eof(&file, 0, size)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    Ok(Some(bytes))
}
