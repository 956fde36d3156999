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
//! Shards: every shard reads the file at start and creates the topics it owns; the file is
//! written ([`write`]) by shard 0 from every shard's picture (`app::metadata`), never from a
//! partial one.

use super::{paths, Broker, BrokerError};
use crate::protocol::{is_ephemeral, is_valid_channel_name, is_valid_topic_name};
use ringsq_storage::Io;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

impl<I: Io> Broker<I> {
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
    /// Reads `nsqd.dat` (Go's or ours) and creates what it names; invalid names are skipped with
    /// a warning, as nsqd does. A missing file is an empty picture; an unparsable one an error.
    pub(super) async fn load_metadata(&self) -> Result<(), BrokerError> {
        let Some(data) = self.cfg().data_path.clone() else {
            return Ok(());
        };
        let path = paths::metadata_file(&data);
        let Some(bytes) = ringsq_storage::read_small_file(self.io(), &path).await? else {
            return Ok(());
        };
        let file: MetaFile = serde_json::from_slice(&bytes).map_err(|e| BrokerError::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let first = self.place.is_first();
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
            if !self.place.owns(&t.name) {
                continue;
            }
            // A topic or channel that cannot be created now (a full disk) does not stop the
            // start: what exists is served; the file keeps naming it until it is rewritten.
            let topic = match self.topic(&t.name).await {
                Ok(topic) => topic,
                Err(e) => {
                    tracing::error!(topic = %t.name, "cannot create the topic from {}: {e}", path.display());
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
                        tracing::error!(topic = %t.name, channel = %c.name,
                            "cannot create the channel from {}: {e}", path.display());
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
}

/// Writes `nsqd.dat` under `data` with these topics (sorted by name by the caller), atomically.
pub async fn write<I: Io>(
    io: &I,
    data: &Path,
    topics: Vec<MetaTopic>,
) -> Result<(), ringsq_storage::Error> {
    ringsq_storage::atomic_write(io, &paths::metadata_file(data), &encode(topics)).await
}

/// The bytes of `nsqd.dat` naming these topics (sorted by name by the caller).
pub fn encode(topics: Vec<MetaTopic>) -> Vec<u8> {
    let file = MetaFile {
        topics: Some(topics),
        version: METADATA_VERSION.to_owned(),
    };
    serde_json::to_vec(&file).unwrap_or_default()
}
