//! Test harness: runs one generic test body on both backends.
//!
//! `MemIo` tests run on a current-thread tokio runtime inside a `LocalSet` (the writer task is
//! spawned with `spawn_local`); `UringIo` tests run inside `tokio_uring::start` on a tempdir.

#![allow(dead_code)]
// Tests fail loudly: unwrap and panic are how they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use ringsq_storage::{Io, Log, LogConfig, MemIo, UringIo};
use std::future::Future;
use std::path::{Path, PathBuf};

/// Runs `body` on a fresh `MemIo` with the log directory `/mem/log`.
pub fn run_mem<F, Fut>(body: F)
where
    F: FnOnce(MemIo, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, body(MemIo::new(), PathBuf::from("/mem/log")));
}

/// Like [`run_mem`] with tokio's clock paused: time only moves when every task is idle, so a
/// timer-driven step (the sync timeout) happens at a known point without real waiting.
pub fn run_mem_paused<F, Fut>(body: F)
where
    F: FnOnce(MemIo, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, body(MemIo::new(), PathBuf::from("/mem/log")));
}

/// Runs `body` on `io_uring` with a fresh tempdir.
pub fn run_uring<F, Fut>(body: F)
where
    F: FnOnce(UringIo, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    tokio_uring::start(body(UringIo, dir));
    drop(tmp);
}

/// Instantiates a generic `async fn name<I: Io>(io: I, dir: PathBuf)` on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn mem() {
                    $crate::common::run_mem(super::$name::<ringsq_storage::MemIo>);
                }
                #[test]
                fn uring() {
                    $crate::common::run_uring(super::$name::<ringsq_storage::UringIo>);
                }
            }
        )*
    };
}

/// A small config: tiny segments, no automatic syncs (tests decide when to sync).
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_size_bytes_max: 256,
        sync_every_records: 1_000_000,
        sync_timeout: std::time::Duration::from_secs(3600),
        record_size_max: 1024,
        cache_bytes_max: 0,
    }
}

/// Deterministic record `i` of a varying length.
pub fn payload(i: u64) -> Bytes {
    let len = usize::try_from(i % 37).unwrap();
    Bytes::from(format!("record-{i}-{}", "x".repeat(len)))
}

/// Reads every record from `first()` to `end()`.
pub async fn read_all<I: Io>(log: &Log<I>) -> Vec<ringsq_storage::Record> {
    let mut out = Vec::new();
    let mut pos = log.first();
    loop {
        let batch = log.read(pos, 7, 100).await.unwrap();
        let Some(last) = batch.last() else { break };
        pos = ringsq_storage::Position {
            seq: last.pos.seq + 1,
            offset: last.pos.offset + 16 + u64::try_from(last.data.len()).unwrap(),
        };
        out.extend(batch);
    }
    out
}

/// Opens a log, panicking on error.
pub async fn open<I: Io>(
    io: &I,
    dir: &Path,
    config: LogConfig,
) -> (Log<I>, ringsq_storage::RecoveryReport) {
    Log::open(io.clone(), dir, config).await.unwrap()
}

/// Direct access to the files of a backend, to build and inspect directories by hand.
pub trait Disk: Io {
    fn put(&self, path: &Path, bytes: &[u8]);
    fn get(&self, path: &Path) -> Option<Vec<u8>>;
    fn remove(&self, path: &Path);
    /// File names in `dir`, sorted.
    fn names(&self, dir: &Path) -> Vec<String>;
}

impl Disk for MemIo {
    fn put(&self, path: &Path, bytes: &[u8]) {
        self.write_file(path, bytes);
    }
    fn get(&self, path: &Path) -> Option<Vec<u8>> {
        self.read_file(path)
    }
    fn remove(&self, path: &Path) {
        assert!(self.delete_file(path), "{}", path.display());
    }
    fn names(&self, dir: &Path) -> Vec<String> {
        let mut n = self.files_in(dir);
        n.sort();
        n
    }
}

impl Disk for UringIo {
    fn put(&self, path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    fn get(&self, path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }
    fn remove(&self, path: &Path) {
        std::fs::remove_file(path).unwrap();
    }
    fn names(&self, dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }
}

/// Segment file names in `dir`, oldest first.
pub fn segments<D: Disk>(disk: &D, dir: &Path) -> Vec<PathBuf> {
    disk.names(dir)
        .into_iter()
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "seg"))
        .map(|n| dir.join(n))
        .collect()
}
