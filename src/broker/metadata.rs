//! `nsqd.dat`: Go nsqd's metadata file (topics, channels, paused flags), read at start and
//! rewritten whenever that picture changes, so an operator can swap binaries either way.
//!
//! Format (Go marshals maps, so keys come sorted):
//! `{"topics":[{"channels":[{"name":"c","paused":false}],"name":"t","paused":false}],"version":"1.3.0"}`.
//! `topics`/`channels` may be `null` in a file Go wrote. Ephemeral topics and channels are never
//! written. Writes go through `ringsq_storage::atomic_write` (temp, fsync, rename, fsync dir),
//! one at a time (the temp name is fixed), and always from the broker's current state, so the
//! last write wins with the newest picture.

use super::{paths, Broker, BrokerError};
use crate::protocol::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use tokio::sync::broadcast::error::RecvError;

/// The nsqd version written into `nsqd.dat` (what nsqd 1.3.0 writes).
pub const METADATA_VERSION: &str = "1.3.0";

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    #[serde(default)]
    topics: Option<Vec<MetaTopic>>,
    #[serde(default)]
    version: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaTopic {
    #[serde(default)]
    channels: Option<Vec<MetaChannel>>,
    name: String,
    #[serde(default)]
    paused: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaChannel {
    name: String,
    #[serde(default)]
    paused: bool,
}

impl Broker {
    /// The current picture as `nsqd.dat` bytes.
    fn metadata_bytes(&self) -> Vec<u8> {
        let topics = self
            .topics()
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
            .collect();
        let file = MetaFile {
            topics: Some(topics),
            version: METADATA_VERSION.to_owned(),
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// Rewrites `nsqd.dat` from the current state (no-op without a data directory).
    pub async fn persist_metadata(&self) -> Result<(), BrokerError> {
        let Some(data) = self.cfg.data_path.clone() else {
            return Ok(());
        };
        let _one_writer = self.metadata_lock.lock().await;
        // Taken after the lock: a writer that waited writes the newest picture.
        let bytes = self.metadata_bytes();
        let path = paths::metadata_file(&data);
        ringsq_storage::atomic_write(&self.cfg.io, &path, &bytes).await?;
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
        for t in file.topics.unwrap_or_default() {
            if !is_valid_topic_name(t.name.as_bytes()) || is_ephemeral(&t.name) {
                tracing::warn!(
                    "skipping creation of invalid topic {:?} from {}",
                    t.name,
                    path.display()
                );
                continue;
            }
            let topic = self.topic(&t.name).await?;
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
                let channel = topic.channel(&c.name).await?;
                if c.paused {
                    channel.paused.set(true);
                }
            }
        }
        Ok(())
    }

    /// Subscribes now, then (when polled) rewrites `nsqd.dat` after every persistent create or
    /// delete, coalescing bursts into one write. Ends when the broker exits.
    pub fn metadata_loop(self: Rc<Self>) -> impl std::future::Future<Output = ()> {
        let mut rx = self.cfg.events.subscribe();
        async move {
            loop {
                let mut changed = match rx.recv().await {
                    Ok(event) => event.is_persistent(),
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                };
                while let Ok(event) = rx.try_recv() {
                    changed |= event.is_persistent();
                }
                if self.exiting.get() {
                    return;
                }
                if changed {
                    if let Err(e) = self.persist_metadata().await {
                        tracing::error!("failed to persist metadata - {e}");
                    }
                }
            }
        }
    }
}
