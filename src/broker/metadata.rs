//! `nsqd.dat`: Go nsqd's metadata file (topics, channels, paused flags), read at start and
//! rewritten whenever that picture changes, so an operator can swap binaries either way.
//!
//! Format (Go marshals maps, so keys come sorted):
//! `{"topics":[{"channels":[{"name":"c","paused":false}],"name":"t","paused":false}],"version":"1.3.0"}`.
//! `topics`/`channels` may be `null` in a file Go wrote. Ephemeral topics and channels are never
//! written. Writes go through `ringsq_storage::atomic_write` (temp, fsync, rename, fsync dir),
//! one at a time (the temp name is fixed), and always from the broker's current state, so the
//! last write wins with the newest picture.
//!
//! Shards: every shard reads the file at start and creates the topics it owns; only shard 0
//! writes it, from every shard's picture ([`crate::shard::gather::metadata`]), and never from
//! a partial one (a shard that does not answer fails the write).

use super::{paths, Broker, BrokerError};
use crate::protocol::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
use ringsq_storage::Io;
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// How often a failed `nsqd.dat` write is tried again (and, while writes fail, a probe write).
pub const METADATA_RETRY: Duration = Duration::from_secs(1);
/// Least time between two background rewrites of `nsqd.dat`.
pub const METADATA_WRITE_INTERVAL_MIN: Duration = Duration::from_millis(200);
/// After a background rewrite that took `t`, the next waits at least this many times `t`.
pub const METADATA_WRITE_PAUSE_FACTOR: u32 = 9;

/// The nsqd version written into `nsqd.dat` (what nsqd 1.3.0 writes).
pub const METADATA_VERSION: &str = "1.3.0";

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    #[serde(default)]
    topics: Option<Vec<MetaTopic>>,
    #[serde(default)]
    version: String,
}

/// One topic as `nsqd.dat` holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MetaTopic {
    #[serde(default)]
    channels: Option<Vec<MetaChannel>>,
    pub name: String,
    #[serde(default)]
    paused: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MetaChannel {
    name: String,
    #[serde(default)]
    paused: bool,
}

impl Broker {
    /// This shard's topics and channels as `nsqd.dat` holds them (ephemeral ones are not).
    pub fn meta_topics(&self) -> Vec<MetaTopic> {
        self.topics()
            .iter()
            .filter(|t| !t.ephemeral && !t.deleted.get())
            .map(|t| MetaTopic {
                channels: Some(
                    t.channels()
                        .iter()
                        .filter(|c| !c.ephemeral)
                        .map(|c| MetaChannel {
                            name: c.name.clone(),
                            paused: c.paused.get(),
                        })
                        .collect(),
                ),
                name: t.name.clone(),
                paused: t.paused.get(),
            })
            .collect()
    }

    /// Every shard's picture as `nsqd.dat` bytes.
    async fn metadata_bytes(&self) -> Result<Vec<u8>, BrokerError> {
        let topics = crate::shard::gather::metadata(&self.link)
            .await
            .map_err(|_| BrokerError::Exiting)?;
        let file = MetaFile {
            topics: Some(topics),
            version: METADATA_VERSION.to_owned(),
        };
        Ok(serde_json::to_vec(&file).unwrap_or_default())
    }

    /// Rewrites `nsqd.dat` from the current state of every shard (no-op without a data
    /// directory, and on any shard but 0).
    pub async fn persist_metadata(&self) -> Result<(), BrokerError> {
        let Some(data) = self.cfg.data_path.clone() else {
            return Ok(());
        };
        if !self.cfg.place.is_first() {
            return Ok(());
        }
        let _one_writer = self.metadata_lock.lock().await;
        // Taken after the lock: a writer that waited writes the newest picture.
        let bytes = match self.metadata_bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.metadata_dirty.set(true);
                return Err(e);
            }
        };
        let path = paths::metadata_file(&data);
        let written = ringsq_storage::atomic_write(&self.cfg.io, &path, &bytes).await;
        // Behind until a write of the newest picture succeeds (the metadata loop retries).
        self.metadata_dirty.set(written.is_err());
        written?;
        Ok(())
    }

    /// Reads `nsqd.dat` (Go's or ours) and creates what it names; invalid names are skipped with
    /// a warning, as nsqd does. A missing file is an empty picture; an unparsable one an error.
    pub(super) async fn load_metadata(&self) -> Result<(), BrokerError> {
        let Some(data) = self.cfg.data_path.clone() else {
            return Ok(());
        };
        let path = paths::metadata_file(&data);
        let Some(bytes) = ringsq_storage::read_small_file(&self.cfg.io, &path).await? else {
            return Ok(());
        };
        let file: MetaFile = serde_json::from_slice(&bytes).map_err(|e| BrokerError::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let first = self.cfg.place.is_first();
        for t in file.topics.unwrap_or_default() {
            if !is_valid_topic_name(t.name.as_bytes()) || is_ephemeral(&t.name) {
                if first {
                    tracing::warn!(
                        "skipping creation of invalid topic {:?} from {}",
                        t.name,
                        path.display()
                    );
                }
                continue;
            }
            if !self.cfg.place.owns(&t.name) {
                continue;
            }
            // A topic or channel that cannot be created now (a full disk) does not stop the
            // start: what exists is served; the file keeps naming it until it is rewritten.
            let topic = match self.topic(&t.name).await {
                Ok(topic) => topic,
                Err(e) => {
                    tracing::error!(
                        "TOPIC({}): cannot create it from {}: {e}",
                        t.name,
                        path.display()
                    );
                    continue;
                }
            };
            if t.paused {
                topic.pause(true);
            }
            for c in t.channels.unwrap_or_default() {
                if !is_valid_channel_name(c.name.as_bytes()) || is_ephemeral(&c.name) {
                    tracing::warn!(
                        "skipping creation of invalid channel {:?} from {}",
                        c.name,
                        path.display()
                    );
                    continue;
                }
                let channel = match topic.channel(&c.name).await {
                    Ok(channel) => channel,
                    Err(e) => {
                        tracing::error!(
                            "TOPIC({}): cannot create channel {} from {}: {e}",
                            t.name,
                            c.name,
                            path.display()
                        );
                        continue;
                    }
                };
                if c.paused {
                    channel.paused.set(true);
                }
            }
        }
        Ok(())
    }

    /// Subscribes now, then (when polled) rewrites `nsqd.dat` after every persistent create or
    /// delete, coalescing bursts into one write. A failed write is tried again every
    /// [`METADATA_RETRY`]; so is one while the latest write anywhere failed (a full disk): its
    /// success is what tells that writes work again when nothing else is written. Ends when the
    /// broker exits.
    pub fn metadata_loop(self: Rc<Self>) -> impl std::future::Future<Output = ()> {
        let mut rx = self.cfg.events.subscribe();
        async move {
            loop {
                let retry = self.metadata_dirty.get() || self.cfg.io.health().latest_write_failed();
                let event = if retry {
                    tokio::time::timeout(METADATA_RETRY, rx.recv()).await.ok()
                } else {
                    Some(rx.recv().await)
                };
                let mut changed = match event {
                    None | Some(Err(RecvError::Lagged(_))) => true,
                    Some(Ok(event)) => event.is_persistent(),
                    Some(Err(RecvError::Closed)) => return,
                };
                loop {
                    match rx.try_recv() {
                        Ok(event) => changed |= event.is_persistent(),
                        Err(TryRecvError::Lagged(_)) => changed = true,
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                if self.exiting.get() {
                    return;
                }
                if changed || self.metadata_dirty.get() {
                    let started = tokio::time::Instant::now();
                    if let Err(e) = self.persist_metadata().await {
                        tracing::error!("failed to persist metadata - {e}");
                    }
                    // The file grows with the topics: rewritten per create, creating N topics
                    // would cost N². So a burst of creates gets one rewrite per interval, and
                    // rewriting takes at most a tenth of the time, however large the file. (A
                    // create does not wait for it: the topic's directory and the channel's
                    // state file are on disk before its `200`, and start-up finds them.)
                    let spent = started.elapsed();
                    let pause = METADATA_WRITE_INTERVAL_MIN
                        .max(spent.saturating_mul(METADATA_WRITE_PAUSE_FACTOR));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}
