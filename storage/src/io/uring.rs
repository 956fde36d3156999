//! The `io_uring` backend (tokio-uring). Must run inside `tokio_uring::start`.
//!
//! File data operations (read, write, fdatasync, open, rename, unlink, statx) go through
//! `io_uring`. tokio-uring has no ftruncate, readdir or recursive remove: `set_len`, `list_dir` and
//! `remove_dir_all` (and `dir_exists`: a stat) use blocking `std::fs` calls. They only run at open (recovery), after a full
//! disk, and at topic delete, never on the append path.
//!
//! The file budget, handle cache and write health are per thread (each runtime thread is its own
//! shard): `UringIo` itself stays a plain value. `set_len` opens the file a second time through
//! `std::fs` for a moment, outside the budget (it runs only after ENOSPC and at recovery).

use super::{Io, IoFile, OpenMode};
use crate::files::{Files, Slot};
use crate::health::WriteHealth;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tokio_uring::buf::BoundedBuf;

/// The `io_uring` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct UringIo;

thread_local! {
    static FILES: Rc<Files<UringFile>> = Rc::new(Files::default());
    static HEALTH: Rc<WriteHealth> = Rc::new(WriteHealth::default());
}

/// A file opened through `io_uring`.
#[derive(Debug)]
pub struct UringFile {
    file: tokio_uring::fs::File,
    path: Rc<PathBuf>,
    /// Released after the descriptor is closed (fields drop in order).
    _slot: Slot,
}

impl Io for UringIo {
    type File = UringFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<UringFile> {
        let slot = self.files().acquire().await;
        let mut options = tokio_uring::fs::OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => options.write(true).create(true).truncate(true),
        };
        let file = options.open(path).await?;
        Ok(UringFile {
            file,
            path: Rc::new(path.to_path_buf()),
            _slot: slot,
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        tokio_uring::fs::rename(from, to).await
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        tokio_uring::fs::remove_file(path).await
    }

    async fn dir_exists(&self, path: &Path) -> io::Result<bool> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        tokio_uring::fs::create_dir_all(path).await
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let _slot = self.files().acquire().await;
        let dir = tokio_uring::fs::File::open(path).await?;
        let synced = dir.sync_all().await;
        let closed = dir.close().await;
        synced.and(closed)
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let _slot = self.files().acquire().await;
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    async fn modified(&self, path: &Path) -> io::Result<Option<std::time::SystemTime>> {
        std::fs::metadata(path)?.modified().map(Some)
    }

    fn files(&self) -> Rc<Files<UringFile>> {
        FILES.with(Rc::clone)
    }

    fn health(&self) -> Rc<WriteHealth> {
        HEALTH.with(Rc::clone)
    }
}

impl IoFile for UringFile {
    async fn read_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<usize>, Vec<u8>) {
        let (len, cap) = (buf.len(), buf.capacity());
        if len == cap {
            return (Ok(0), buf);
        }
        let (res, slice) = self.file.read_at(buf.slice(len..cap), pos).await;
        (res, slice.into_inner())
    }

    async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        self.file.write_all_at(buf, pos).await
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data().await
    }

    async fn size(&self) -> io::Result<u64> {
        let stat = self.file.statx().await?;
        Ok(stat.stx_size)
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path.as_path())?;
        file.set_len(len)
    }
}
