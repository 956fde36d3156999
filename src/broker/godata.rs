//! Taking over a data directory Go nsqd used: the messages it left in its disk queues are moved
//! into ringsq's topic logs at start, so replacing the binary loses nothing.
//!
//! Go nsqd keeps one go-diskqueue per topic (`<topic>`) and per channel (`<topic>:<channel>`):
//! `<data-path>/<name>.diskqueue.<n, 6+ digits>.dat` files of records (`u32 BE length` +
//! nsqd's message encoding `[ts i64 BE][attempts u16 BE][id 16][body]`) and a text meta file
//! `<name>.diskqueue.meta.dat` (`depth\nreadFileNum,readPos\nwriteFileNum,writePos\n`);
//! reference/NSQ.md §1.7.
//!
//! What happens to them:
//! - a channel's queue (its backlog, and the in-flight and deferred messages Go wrote there at
//!   exit) is appended to the topic's log as one range that only that channel reads: every other
//!   channel of the topic skips it (`Channel::skip_range`, persisted in the channel state);
//! - the topic's queue (messages no channel had yet) is appended after them, for every channel,
//!   or as the backlog of the first channel if the topic has none;
//! - once the log is synced and the channel states written, each file is renamed to
//!   `<file>.imported` (kept, so a return to Go nsqd is possible by renaming back).
//!
//! A crash during the import imports again at the next start: messages may come twice, never
//! zero times. Attempts restart from 1 (ringsq counts them per delivery); a deferral was already
//! lost by Go when it wrote the message to its queue. A record that cannot be a message (length
//! out of nsqd's bounds, cut short) ends the import of that file with an error log naming the
//! file and the offset of what was not understood (the file is kept, renamed like the others).

use super::message::StoredMessage;
use super::{Broker, BrokerError};
use crate::protocol::{is_ephemeral, is_valid_channel_name, is_valid_topic_name, MessageId};
use bytes::Bytes;
use ringsq_storage::{Io, IoFile, OpenMode};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const META_SUFFIX: &str = ".diskqueue.meta.dat";
/// What is appended to an imported file's name.
const IMPORTED_SUFFIX: &str = ".imported";
/// Go's message header: timestamp, attempts, id.
const GO_MESSAGE_HEADER_BYTES: usize = 8 + 2 + 16;

/// One of Go nsqd's disk queues found in the data directory.
#[derive(Debug)]
struct GoQueue {
    topic: String,
    channel: Option<String>,
    meta: PathBuf,
    /// Data files from the read file to the write file that exist, with where reading starts.
    files: Vec<(PathBuf, u64)>,
}

impl<I: Io> Broker<I> {
    /// Moves the messages of Go nsqd's disk queues into the topic logs (module docs). Runs at
    /// start, after `nsqd.dat` created the topics and channels, before anyone connects.
    pub(super) async fn import_go_queues(&self) -> Result<(), BrokerError> {
        let Some(data) = self.cfg().data_path.clone() else {
            return Ok(());
        };
        let mut by_topic: BTreeMap<String, Vec<GoQueue>> = BTreeMap::new();
        // Each shard takes over the queues of the topics it owns.
        for queue in find_queues(self.io(), &data).await? {
            if self.place.owns(&queue.topic) {
                by_topic.entry(queue.topic.clone()).or_default().push(queue);
            }
        }
        for (topic, mut queues) in by_topic {
            // Channel queues first (each a range for one channel), the topic's own queue last.
            queues.sort_by_key(|q| q.channel.is_none());
            self.import_topic(&topic, &queues).await?;
        }
        Ok(())
    }

    async fn import_topic(&self, name: &str, queues: &[GoQueue]) -> Result<(), BrokerError> {
        let topic = self.topic(name).await?;
        let Some(log) = topic.log() else {
            return Ok(());
        };
        let mut ranges = Vec::new();
        let mut imported = 0u64;
        for queue in queues {
            if let Some(channel) = &queue.channel {
                topic.channel(channel).await?;
            }
            let start = log.end();
            for (path, from) in &queue.files {
                let messages =
                    read_file(self.io(), path, *from, self.cfg().log.record_size_max).await?;
                for msg in &messages {
                    log.append(msg.encode())?;
                }
                imported += messages.len() as u64;
                // Bounded memory: what is appended stays cached until written.
                log.wait_written(log.end().seq).await?;
            }
            if let Some(channel) = &queue.channel {
                ranges.push((channel.clone(), start.seq, log.end()));
            }
        }
        log.sync().await?;
        for (owner, from, to) in ranges {
            if from == to.seq {
                continue;
            }
            for other in topic.channels() {
                if other.name != owner {
                    other.skip_range(from, to);
                }
            }
        }
        topic.persist_channels().await?;
        for queue in queues {
            for (path, _) in &queue.files {
                rename_imported(self.io(), path).await;
            }
            rename_imported(self.io(), &queue.meta).await;
        }
        tracing::info!(topic = %name, "took over {imported} message(s) from Go nsqd's disk queues");
        Ok(())
    }
}

/// Every Go disk queue of a valid, non-ephemeral topic or channel in `data`.
async fn find_queues<I: Io>(io: &I, data: &Path) -> Result<Vec<GoQueue>, BrokerError> {
    let entries = io.list_dir(data).await.map_err(|source| BrokerError::Io {
        op: "read_dir",
        path: data.to_path_buf(),
        source,
    })?;
    let present: BTreeSet<_> = entries.iter().cloned().collect();
    let mut queues = Vec::new();
    for file_name in &entries {
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(META_SUFFIX)) else {
            continue;
        };
        let (topic, channel) = match name.split_once(':') {
            Some((t, c)) => (t, Some(c)),
            None => (name, None),
        };
        let valid = is_valid_topic_name(topic.as_bytes())
            && channel.is_none_or(|c| is_valid_channel_name(c.as_bytes()))
            && !is_ephemeral(topic)
            && !channel.is_some_and(is_ephemeral);
        if !valid {
            tracing::warn!("skipping Go nsqd disk queue {name:?}: not a durable topic or channel");
            continue;
        }
        let meta = data.join(file_name);
        let text = ringsq_storage::read_small_file(io, &meta)
            .await
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let Some((read_file, read_pos, write_file)) = parse_meta(&text) else {
            tracing::error!(
                "cannot parse Go nsqd disk queue metadata {}: its messages are not taken over",
                meta.display()
            );
            continue;
        };
        let files = (read_file..=write_file)
            .map(|n| (format!("{name}.diskqueue.{n:06}.dat"), n))
            .filter(|(file, _)| present.contains(std::ffi::OsStr::new(file)))
            .map(|(file, n)| (data.join(file), if n == read_file { read_pos } else { 0 }))
            .collect();
        queues.push(GoQueue {
            topic: topic.to_owned(),
            channel: channel.map(str::to_owned),
            meta,
            files,
        });
    }
    Ok(queues)
}

/// `depth\nreadFileNum,readPos\nwriteFileNum,writePos\n` → (read file, read pos, write file).
fn parse_meta(text: &str) -> Option<(u64, u64, u64)> {
    let mut lines = text.lines();
    lines.next()?.trim().parse::<i64>().ok()?;
    let pair = |line: &str| -> Option<(u64, u64)> {
        let (a, b) = line.trim().split_once(',')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let (read_file, read_pos) = pair(lines.next()?)?;
    let (write_file, _) = pair(lines.next()?)?;
    // A read file past the write file is what Go's tail check repairs: nothing to read.
    (read_file <= write_file).then_some((read_file, read_pos, write_file))
}

/// Reads the messages of one data file from `from` to its end (or to what is not a message).
async fn read_file<I: Io>(
    io: &I,
    path: &Path,
    from: u64,
    record_size_max: u32,
) -> Result<Vec<StoredMessage>, BrokerError> {
    let failed = |op| {
        move |source| BrokerError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = io
        .open(path, OpenMode::Read)
        .await
        .map_err(failed("open"))?;
    let size = file.size().await.map_err(failed("stat"))?;
    let len =
        usize::try_from(size).map_err(|_| failed("read")(std::io::Error::other("too large")))?;
    let bytes = ringsq_storage::io::read_exact_or_eof(&file, 0, len)
        .await
        .map_err(failed("read"))?;
    let bytes = Bytes::from(bytes);
    // Go's bounds: a message is at least its header and at most --max-msg-size plus it.
    let max_body = usize::try_from(record_size_max)
        .unwrap_or(usize::MAX)
        .saturating_sub(super::message::MESSAGE_HEADER_BYTES);
    let max_payload = max_body.saturating_add(GO_MESSAGE_HEADER_BYTES);
    let mut at = usize::try_from(from).unwrap_or(usize::MAX);
    let mut messages = Vec::new();
    while at < bytes.len() {
        let problem = match bytes.get(at..at + 4) {
            None => Some("record length cut short".to_owned()),
            Some(len) => {
                let mut be = [0u8; 4];
                be.copy_from_slice(len);
                let len = usize::try_from(u32::from_be_bytes(be)).unwrap_or(usize::MAX);
                if !(GO_MESSAGE_HEADER_BYTES..=max_payload).contains(&len) {
                    Some(format!("record length {len} out of bounds"))
                } else if at + 4 + len <= bytes.len() {
                    messages.push(go_message(&bytes.slice(at + 4..at + 4 + len)));
                    at += 4 + len;
                    None
                } else {
                    Some(format!("record of {len} bytes cut short"))
                }
            }
        };
        if let Some(problem) = problem {
            tracing::error!(
                "Go nsqd disk queue file {} at offset {at}: {problem}; the rest of the file is not taken over",
                path.display()
            );
            break;
        }
    }
    Ok(messages)
}

/// nsqd's message encoding (at least `GO_MESSAGE_HEADER_BYTES` long) as a stored message.
fn go_message(payload: &Bytes) -> StoredMessage {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload[..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&payload[10..GO_MESSAGE_HEADER_BYTES]);
    StoredMessage {
        id: MessageId::from_wire(&id).unwrap_or_else(|| MessageId::from_u64(0)),
        timestamp_ns: i64::from_be_bytes(ts),
        deliver_at_ns: 0,
        body: payload.slice(GO_MESSAGE_HEADER_BYTES..),
    }
}

async fn rename_imported<I: Io>(io: &I, path: &Path) {
    let mut to = path.as_os_str().to_owned();
    to.push(IMPORTED_SUFFIX);
    if let Err(e) = io.rename(path, Path::new(&to)).await {
        tracing::error!(
            "renaming imported {} (it will be imported again at the next start): {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_parsed_as_go_writes_it() {
        assert_eq!(parse_meta("3\n0,46347\n2,120\n"), Some((0, 46347, 2)));
        assert_eq!(parse_meta("0\n5,0\n4,0\n"), None);
        assert_eq!(parse_meta("garbage"), None);
        assert_eq!(parse_meta("1\n0,x\n0,0\n"), None);
    }
}
