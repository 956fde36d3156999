//! The `Io` trait: every system call the log makes goes through it, so tests can run the same
//! code on `io_uring` ([`UringIo`]) and on an in-memory disk that injects faults ([`MemIo`]).
//!
//! Buffers are passed by ownership and handed back with the result (`io_uring`'s model: the kernel
//! owns the buffer while the operation runs). Futures are not `Send`: everything runs on one
//! thread. A caller must never drop one of these futures before it completes (no `select!` on
//! them): with `io_uring` the operation would still run.

pub mod mem;
pub mod uring;

pub use mem::MemIo;
pub use uring::UringIo;

use crate::files::Files;
use crate::health::WriteHealth;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::SystemTime;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; create the file, which must not exist.
    CreateNew,
    /// Write; create the file or truncate it to zero.
    CreateTruncate,
}

/// A storage backend: files, directories and their durability.
// Single-threaded by design: no `Send` bounds are wanted on these futures.
#[allow(async_fn_in_trait)]
pub trait Io: Clone + std::fmt::Debug + 'static {
    /// An open file.
    type File: IoFile;
    /// Opens `path`.
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Renames `from` to `to`, replacing `to` (durable only after [`Io::sync_dir`]).
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file (durable only after [`Io::sync_dir`]).
    async fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// True if `path` is an existing directory.
    async fn dir_exists(&self, path: &Path) -> io::Result<bool>;
    /// Creates a directory and its parents.
    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory, making creations, renames and removals in it durable.
    async fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory, in no particular order.
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// When a file was last written (`None` where the backend does not know: it then counts
    /// as written at open).
    async fn modified(&self, path: &Path) -> io::Result<Option<SystemTime>> {
        let _ = path;
        Ok(None)
    }
    /// The wall clock (segment modification times, which retention by age compares): the
    /// system's, or a simulated one.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    /// This backend's file budget and handle cache: every `open` (and `sync_dir`) takes a slot
    /// from it, waiting while none is free (see [`crate::files`]).
    fn files(&self) -> Rc<Files<Self::File>>;
    /// This backend's write health (see [`crate::health`]).
    fn health(&self) -> Rc<WriteHealth>;
}

/// An open file of an [`Io`] backend.
#[allow(async_fn_in_trait)]
pub trait IoFile: std::fmt::Debug + 'static {
    /// Reads up to `buf.capacity() - buf.len()` bytes at `pos` into `buf`'s spare capacity,
    /// appending them (its length grows by the bytes read, 0 at end of file).
    async fn read_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<usize>, Vec<u8>);
    /// Writes all of `buf` at `pos`. On error some prefix may have been written.
    async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>);
    /// fdatasync: makes the completed writes to this file durable.
    async fn sync_data(&self) -> io::Result<()>;
    /// The file's size in bytes.
    async fn size(&self) -> io::Result<u64>;
    /// Truncates (or extends with zeros) the file to `len` bytes.
    async fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Reads `[pos, pos + len)` of a file, fewer bytes only at end of file.
pub async fn read_exact_or_eof<F: IoFile>(file: &F, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let (res, buf) = read_exact_into(file, pos, Vec::with_capacity(len)).await;
    res.map(|()| buf)
}

/// Fills `buf` (cleared first) with `[pos, pos + buf.capacity())` of a file, straight from the
/// kernel into the buffer (no copy), fewer bytes only at end of file. The buffer comes back in
/// every case, so a caller can reuse it.
pub async fn read_exact_into<F: IoFile>(
    file: &F,
    pos: u64,
    mut buf: Vec<u8>,
) -> (io::Result<()>, Vec<u8>) {
    buf.clear();
    while buf.len() < buf.capacity() {
        let Ok(done) = u64::try_from(buf.len()) else {
            return (Err(io::Error::other("read too large")), buf);
        };
        let (res, back) = file.read_at(buf, pos + done).await;
        buf = back;
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}
