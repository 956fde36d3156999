//! This shard's part of a consistent copy of the data directory, taken while the broker runs
//! (`GET /snapshot`: shard 0 gathers every shard's part and streams it as a tar).
//!
//! **The sync point.** Every durable log of the shard — each durable topic's, and each durable
//! channel's own logs (park log; see `Channel::own_logs`) — is fsynced; then, with no `.await`
//! until the end, each log's copy as of its synced end is noted and pinned against retention
//! (`Log::copy_synced`), and each durable channel's state is encoded as its `.channel` file.
//! Why that copy is consistent, and what a broker started on it does:
//!
//! - Everything appended before the sync began — every publish acknowledged before the request
//!   — is synced, so it is in the copy.
//! - A channel's state is taken at the same instant as its topic's copy: what it finished
//!   before is not outstanding (delivered once, not again); what it has in flight, deferred or
//!   requeued is, and comes back; records past the copy's end are cut from the state
//!   ([`ChannelSnapshot::cut_at`]): they are not in the copy.
//! - A channel refers to a parked copy only once the park log has fsynced it (`park.rs`), so
//!   the park log's synced end covers every reference of the state.
//! - The state files are bytes taken in memory: the channel's own files, its saves and its
//!   `dirty` flags are left as they are.
//! - `nsqd.dat` is this shard's picture at the same instant.
//!
//! The pins stay here, on the thread of their logs, until [`Broker::snapshot_release`]; a
//! copy's files are read by shard 0 meanwhile (write-once segments need no copying first).
//!
//! [`ChannelSnapshot::cut_at`]: super::channel::ChannelSnapshot::cut_at

use super::metadata::MetaTopic;
use super::{paths, Broker, BrokerError};
use ringsq_storage::{Io, Log, RetainPin};
use std::path::{Path, PathBuf};

/// One file of the copy, by its path relative to the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotItem {
    /// The first `len` bytes of the file at `source`.
    File {
        name: PathBuf,
        source: PathBuf,
        len: u64,
    },
    /// Contents taken in memory at the sync point.
    Data { name: PathBuf, bytes: Vec<u8> },
}

impl SnapshotItem {
    pub fn name(&self) -> &Path {
        match self {
            SnapshotItem::File { name, .. } | SnapshotItem::Data { name, .. } => name,
        }
    }

    /// Bytes of the file in the copy.
    pub fn len(&self) -> u64 {
        match self {
            SnapshotItem::File { len, .. } => *len,
            SnapshotItem::Data { bytes, .. } => u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One shard's part of a copy.
#[derive(Debug, Default)]
pub struct ShardSnapshot {
    /// Its topics and channels as `nsqd.dat` names them.
    pub topics: Vec<MetaTopic>,
    /// Its files: each topic's segments and checkpoint, its channels' state files, their own
    /// logs' segments and checkpoints.
    pub items: Vec<SnapshotItem>,
}

impl<I: Io> Broker<I> {
    /// Takes this shard's sync point for copy `id` (see the module docs). The files it names
    /// stay until [`Broker::snapshot_release`]`(id)`.
    pub async fn snapshot_take(&self, id: u64) -> Result<ShardSnapshot, BrokerError> {
        let Some(data) = self.cfg().data_path.clone() else {
            return Ok(ShardSnapshot::default());
        };
        let mut logs = Vec::new();
        for topic in self.topics() {
            let Some(log) = topic
                .log()
                .filter(|_| !topic.ephemeral && !topic.deleted.get())
            else {
                continue;
            };
            logs.push(log.clone());
            for channel in topic.channels() {
                if channel.ephemeral || channel.deleted.get() {
                    continue;
                }
                channel.open_own_logs().await?;
                logs.extend(channel.own_logs());
            }
        }
        self.sync_logs(logs).await?;
        // The sync point: no `.await` from here on.
        self.snapshot_now(id, &data)
    }

    /// Lets retention delete what copy `id` pinned.
    pub fn snapshot_release(&self, id: u64) {
        let pins = self.snapshot_pins.borrow_mut().remove(&id);
        drop(pins);
        // What the copy kept goes at the next sync point.
        for topic in self.topics.borrow().values() {
            topic.due().checkpoint();
        }
    }

    /// fsyncs every log, [`Broker::topic_jobs`] at a time (their fsyncs overlap).
    async fn sync_logs(&self, logs: Vec<Log<I>>) -> Result<(), BrokerError> {
        let mut running = tokio::task::JoinSet::new();
        let mut first_error = None;
        let mut note = |done: Option<super::Joined<Result<(), ringsq_storage::Error>>>| match done {
            // Closed meanwhile (its topic or channel deleted, or the broker exiting): closing
            // synced it, and a deleted one is left out of the copy.
            Some(Ok(Ok(()) | Err(ringsq_storage::Error::Closed))) | None => {}
            Some(Ok(Err(e))) => {
                first_error.get_or_insert(BrokerError::Storage(e));
            }
            Some(Err(e)) => {
                first_error.get_or_insert(BrokerError::Task(e.to_string()));
            }
        };
        for log in logs {
            if running.len() >= self.topic_jobs() {
                note(running.join_next().await);
            }
            running.spawn_local(async move { log.sync().await });
        }
        while let Some(done) = running.join_next().await {
            note(Some(done));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The copy as of now, its files pinned under `id`.
    fn snapshot_now(&self, id: u64, data: &Path) -> Result<ShardSnapshot, BrokerError> {
        let mut copy = Copy {
            data,
            items: Vec::new(),
            pins: Vec::new(),
        };
        for topic in self.topics() {
            let Some(log) = topic
                .log()
                .filter(|_| !topic.ephemeral && !topic.deleted.get())
            else {
                continue;
            };
            let end = copy.log(log)?;
            for channel in topic.channels() {
                if channel.ephemeral || channel.deleted.get() {
                    continue;
                }
                let mut state = channel.state_for_copy();
                state.cut_at(end);
                let path = paths::channel_file(data, &topic.name, &channel.name);
                copy.items.push(SnapshotItem::Data {
                    name: copy.name(&path)?,
                    bytes: state.encode(),
                });
                for own in channel.own_logs() {
                    copy.log(&own)?;
                }
            }
        }
        self.snapshot_pins.borrow_mut().insert(id, copy.pins);
        Ok(ShardSnapshot {
            topics: self.meta_topics(),
            items: copy.items,
        })
    }
}

/// A copy being listed.
struct Copy<'a, I: Io> {
    data: &'a Path,
    items: Vec<SnapshotItem>,
    pins: Vec<RetainPin<I>>,
}

impl<I: Io> Copy<'_, I> {
    /// Adds a log's synced copy and pins it; returns the copy's end.
    fn log(&mut self, log: &Log<I>) -> Result<ringsq_storage::Position, BrokerError> {
        let (copy, pin) = log.copy_synced();
        self.pins.push(pin);
        for cut in copy.segments {
            self.items.push(SnapshotItem::File {
                name: self.name(&cut.path)?,
                source: cut.path,
                len: cut.len,
            });
        }
        self.items.push(SnapshotItem::Data {
            name: self.name(&copy.checkpoint_path)?,
            bytes: copy.checkpoint,
        });
        Ok(copy.end)
    }

    /// `path` relative to the data directory (every path of ours is under it).
    fn name(&self, path: &Path) -> Result<PathBuf, BrokerError> {
        path.strip_prefix(self.data)
            .map(Path::to_path_buf)
            .map_err(|_| BrokerError::Io {
                op: "copy",
                path: path.to_path_buf(),
                source: std::io::Error::other("not under the data path"),
            })
    }
}
