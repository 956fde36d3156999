//! `GET /snapshot`'s engine, on shard 0: a consistent copy of the data directory, streamed as a
//! tar while the broker runs.
//!
//! 1. **The sync point**, on every shard at once (`Broker::snapshot_take`, see
//!    `broker::snapshot` for why it is consistent): every durable log fsynced, then at one
//!    instant each log's synced end and files noted and pinned against retention, each durable
//!    channel's state encoded, the shard's `nsqd.dat` picture taken.
//! 2. **The stream**: one task reads the files itself — `nsqd.dat` (from every shard's picture)
//!    first, then each topic's segments (sealed ones whole, the last cut at the synced end) and
//!    checkpoint, its channels' state files, their park logs — through the storage's `Io` and
//!    file budget (one file open at a time), in chunks of [`CHUNK_BYTES`], into a channel of
//!    [`CHUNKS_QUEUED_MAX`] chunks that the HTTP body drains. Memory is bounded by that channel,
//!    whatever the data size; a slow client slows only this task. Tar headers come from the
//!    `tar` crate (ustar: names up to 255 bytes split at a `/`, which every path of ours fits);
//!    each file is padded to 512 bytes and two zero blocks end the archive.
//! 3. **The end**: when the last byte is queued, or the client goes away (the body, and so the
//!    channel, is dropped), or the client reads nothing for [`STALL_MAX`], or a file cannot be
//!    read: the pins are released on every shard and the slot is free again.
//!
//! Publishing and consuming go on meanwhile: nothing is stopped beyond the one fsync per log
//! that every sync interval costs anyway. One snapshot at a time ([`Snapshots`]).
//!
//! Paths in the tar are relative to the data directory, so `tar -x -C <empty dir>` gives a data
//! directory that `ringsq --data-path` starts on. Files are mode 0600: a snapshot holds every
//! message body.
//!
//! A topic or channel deleted while its files are being read ends the stream with an error
//! (the client sees a body shorter than its `Content-Length`): the copy would not be whole.

use crate::broker::metadata::{self, MetaTopic};
use crate::broker::paths;
use crate::broker::snapshot::{ShardSnapshot, SnapshotItem};
use crate::shard::{Gone, Link};
use bytes::Bytes;
use ringsq_storage::{Io, OpenMode, UringIo};
use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Bytes of a file read at once (one chunk of the body).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks queued for the client at most: with one being read and one being sent, the memory a
/// snapshot holds, whatever the data size.
pub const CHUNKS_QUEUED_MAX: usize = 4;
/// A client that takes nothing for this long is given up on (its pins would hold the disk).
pub const STALL_MAX: Duration = Duration::from_secs(120);
/// The tar format's block.
const BLOCK_BYTES: u64 = 512;
/// Mode of every file in the tar: a snapshot is as sensitive as the data.
const FILE_MODE: u32 = 0o600;

/// A piece of the tar, or why it stops early.
pub type Chunk = Result<Bytes, std::io::Error>;

/// The one snapshot that may run at a time (shard 0).
#[derive(Debug, Default)]
pub struct Snapshots {
    running: Rc<Cell<bool>>,
    next_id: Cell<u64>,
}

/// Why a snapshot did not start.
#[derive(Debug)]
pub enum StartError {
    /// Another one is running.
    InProgress,
    /// The sync point could not be taken (a log's fsync failed, a shard is exiting).
    Failed(String),
}

/// A snapshot under way: the tar's length, and its bytes as they are read.
#[derive(Debug)]
pub struct Started {
    pub len: u64,
    pub chunks: mpsc::Receiver<Chunk>,
}

/// Holds the one snapshot slot; frees it when dropped.
#[derive(Debug)]
struct Slot(Rc<Cell<bool>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Snapshots {
    /// Takes the sync point on every shard and starts streaming the copy. The work runs in a
    /// task of its own, which releases the pins and the slot however it ends, even if the
    /// caller stops waiting.
    pub async fn start(&self, link: Rc<Link>, io: UringIo) -> Result<Started, StartError> {
        if self.running.replace(true) {
            return Err(StartError::InProgress);
        }
        let slot = Slot(Rc::clone(&self.running));
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (reply, started) = oneshot::channel();
        tokio::task::spawn_local(run(link, io, id, slot, reply));
        started
            .await
            .unwrap_or_else(|_| Err(StartError::Failed("the snapshot task ended".to_owned())))
    }
}

/// How a stream ended early.
#[derive(Debug)]
enum End {
    ClientGone,
    Stalled,
    Failed(std::io::Error),
}

async fn run(
    link: Rc<Link>,
    io: UringIo,
    id: u64,
    slot: Slot,
    reply: oneshot::Sender<Result<Started, StartError>>,
) {
    let items = match take(&link, id).await {
        Ok(items) => items,
        Err(e) => {
            release(&link, id).await;
            drop(reply.send(Err(e)));
            return;
        }
    };
    let len = tar_len(&items);
    let files = items.len();
    let (tx, chunks) = mpsc::channel(CHUNKS_QUEUED_MAX);
    if reply.send(Ok(Started { len, chunks })).is_ok() {
        tracing::info!("snapshot {id}: sync point taken; streaming {files} files, {len} bytes");
        let began = tokio::time::Instant::now();
        match stream(&items, &io, &tx).await {
            Ok(()) => tracing::info!("snapshot {id}: sent in {:?}", began.elapsed()),
            Err(End::ClientGone) => tracing::warn!("snapshot {id}: the client went away"),
            Err(End::Stalled) => {
                tracing::warn!(
                    "snapshot {id}: the client read nothing for {STALL_MAX:?}: given up"
                );
            }
            Err(End::Failed(e)) => {
                tracing::error!("snapshot {id}: failed: {e}");
                // The body ends with this error: the client sees the tar cut short.
                drop(tx.try_send(Err(e)));
            }
        }
    }
    drop(tx);
    release(&link, id).await;
    drop(slot);
}

/// The sync point on every shard; the copy's files, `nsqd.dat` first.
async fn take(link: &Link, id: u64) -> Result<Vec<SnapshotItem>, StartError> {
    let parts = link
        .call_all(
            move |s| async move { s.broker.snapshot_take(id).await.map_err(|e| e.to_string()) },
        )
        .await;
    let mut topics: Vec<MetaTopic> = Vec::new();
    let mut files = Vec::new();
    for part in parts {
        match part {
            Ok(Ok(ShardSnapshot { topics: t, items })) => {
                topics.extend(t);
                files.extend(items);
            }
            Ok(Err(e)) => return Err(StartError::Failed(e)),
            Err(Gone) => return Err(StartError::Failed("a shard is exiting".to_owned())),
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut items = vec![SnapshotItem::Data {
        name: paths::metadata_file(Path::new("")),
        bytes: metadata::encode(topics),
    }];
    items.extend(files);
    for item in &items {
        // Every header can be made before the first byte goes out.
        header(item, 0).map_err(|e| StartError::Failed(e.to_string()))?;
    }
    Ok(items)
}

/// Lets every shard's retention go on (a shard that has exited holds nothing).
async fn release(link: &Link, id: u64) {
    let released = link
        .call_all(move |s| async move { s.broker.snapshot_release(id) })
        .await;
    drop(released);
}

/// Bytes of padding after a file of `len` bytes.
fn padding(len: u64) -> u64 {
    (BLOCK_BYTES - len % BLOCK_BYTES) % BLOCK_BYTES
}

/// The tar's length: a header and the padded contents per file, then two zero blocks.
fn tar_len(items: &[SnapshotItem]) -> u64 {
    let files: u64 = items
        .iter()
        .map(|i| BLOCK_BYTES + i.len() + padding(i.len()))
        .sum();
    files + 2 * BLOCK_BYTES
}

/// The ustar header of a file of the copy.
fn header(item: &SnapshotItem, mtime: u64) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(item.name())?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(item.len());
    h.set_mode(FILE_MODE);
    h.set_mtime(mtime);
    h.set_cksum();
    Ok(h)
}

/// Sends the whole tar.
async fn stream(items: &[SnapshotItem], io: &UringIo, tx: &mpsc::Sender<Chunk>) -> Result<(), End> {
    let mtime = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for item in items {
        let head = header(item, mtime).map_err(End::Failed)?;
        let pad = usize::try_from(padding(item.len())).unwrap_or(0);
        match item {
            SnapshotItem::Data { bytes, .. } => {
                let mut chunk = Vec::with_capacity(head.as_bytes().len() + bytes.len() + pad);
                chunk.extend_from_slice(head.as_bytes());
                chunk.extend_from_slice(bytes);
                chunk.resize(chunk.len() + pad, 0);
                send(tx, Bytes::from(chunk)).await?;
            }
            SnapshotItem::File { source, len, .. } => {
                send(tx, Bytes::copy_from_slice(head.as_bytes())).await?;
                copy_file(io, source, *len, tx).await?;
                if pad > 0 {
                    send(tx, Bytes::from(vec![0; pad])).await?;
                }
            }
        }
    }
    let end = usize::try_from(2 * BLOCK_BYTES).unwrap_or(1024);
    send(tx, Bytes::from(vec![0; end])).await
}

/// Sends the first `len` bytes of `source`, [`CHUNK_BYTES`] at a time.
async fn copy_file(
    io: &UringIo,
    source: &Path,
    len: u64,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), End> {
    let failed = |op: &str, e: std::io::Error| {
        End::Failed(std::io::Error::new(
            e.kind(),
            format!("{op} {}: {e}", source.display()),
        ))
    };
    let file = io
        .open(source, OpenMode::Read)
        .await
        .map_err(|e| failed("open", e))?;
    let chunk_max = u64::try_from(CHUNK_BYTES).unwrap_or(u64::MAX);
    let mut pos = 0;
    while pos < len {
        let left = (len - pos).min(chunk_max);
        let want = usize::try_from(left).unwrap_or(CHUNK_BYTES);
        let mut buf = ringsq_storage::io::read_exact_or_eof(&file, pos, want)
            .await
            .map_err(|e| failed("read", e))?;
        if buf.len() < want {
            let short = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("shorter than the {len} bytes the copy holds"),
            );
            return Err(failed("read", short));
        }
        buf.truncate(want);
        pos += left;
        send(tx, Bytes::from(buf)).await?;
    }
    Ok(())
}

/// Queues one chunk for the client, waiting while the queue is full (at most [`STALL_MAX`]).
async fn send(tx: &mpsc::Sender<Chunk>, chunk: Bytes) -> Result<(), End> {
    match tokio::time::timeout(STALL_MAX, tx.send(Ok(chunk))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ClientGone),
        Err(_) => Err(End::Stalled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn lengths_follow_the_tar_format() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
        let items = vec![
            SnapshotItem::Data {
                name: PathBuf::from("nsqd.dat"),
                bytes: vec![1; 10],
            },
            SnapshotItem::File {
                name: PathBuf::from("a/b.seg"),
                source: PathBuf::from("/x/a/b.seg"),
                len: 1024,
            },
        ];
        assert_eq!(tar_len(&items), 512 + 512 + 512 + 1024 + 1024);
    }

    #[test]
    fn the_longest_names_fit_a_ustar_header() {
        let topic = "t".repeat(64);
        let channel = "c".repeat(64);
        for name in [
            format!("ringsq/topics/{topic}.topic/{channel}.park/00000000000000000000.seg"),
            format!("ringsq/topics/{topic}.topic/{channel}.dead/00000000000000000000.seg"),
            format!("ringsq/topics/{topic}.topic/{channel}.channel"),
            format!("ringsq/topics/{topic}.topic/log/checkpoint"),
        ] {
            let item = SnapshotItem::Data {
                name: PathBuf::from(&name),
                bytes: Vec::new(),
            };
            let h = header(&item, 0).unwrap();
            assert_eq!(h.path().unwrap(), Path::new(&name));
            assert_eq!(h.mode().unwrap(), FILE_MODE);
        }
    }
}
