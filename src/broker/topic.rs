//! A topic: one store (its log, written once per message), its channels (cursors over it), and
//! the publish path with the ack policy that decides how long an `OK` waits for the disk.

use super::channel::{Channel, ChannelConfig, ChannelSnapshot, TopicLink};
use super::guid::{now_ns, GuidFactory};
use super::message::StoredMessage;
use super::paths;
use super::store::{Appended, Store};
use super::BrokerConfig;
use bytes::Bytes;
use ringsq_storage::{Log, Position, Ticket, UringIo};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// When a publisher may be told `OK`.
#[derive(Debug)]
pub enum Ack {
    Now,
    /// After the log has written (or fsynced, with `synced`) the ticket's records.
    Wait {
        log: Log<UringIo>,
        ticket: Ticket,
        synced: bool,
    },
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub ephemeral: bool,
    store: Rc<Store>,
    channels: RefCell<BTreeMap<String, Rc<Channel>>>,
    pub paused: Rc<Cell<bool>>,
    /// The log's end when the topic was paused: channels read no further while paused.
    pause_at: Rc<Cell<u64>>,
    guid: RefCell<GuidFactory>,
    /// Messages (and body bytes) stored: see [`Topic::message_count`].
    message_count: Cell<u64>,
    message_bytes: Cell<u64>,
    /// Publishes whose `OK` waits for the log: (ticket, messages, body bytes). They count once
    /// the log got there, never if the write failed (ENOSPC).
    unsettled: RefCell<VecDeque<(Ticket, u64, u64)>>,
    /// Where the next "first channel" starts: the topic's backlog (nsqd gives it to the first
    /// channel; later channels start at the tail).
    backlog_start: Cell<Position>,
    cfg: Rc<BrokerConfig>,
    channel_cfg: Rc<ChannelConfig>,
    create_lock: tokio::sync::Mutex<()>,
    pub deleted: Cell<bool>,
    /// CRC32C of the state last written (or restored) per channel: an unchanged state is not
    /// written again (a clean stop with 10 000 idle topics rewrote 20 000 files).
    written_states: RefCell<HashMap<String, u32>>,
}

impl Topic {
    pub fn new(name: String, store: Store, cfg: Rc<BrokerConfig>) -> Rc<Self> {
        let ephemeral = crate::protocol::is_ephemeral(&name);
        let store = Rc::new(store);
        let channel_cfg = Rc::new(ChannelConfig {
            park_log: cfg.log.clone(),
            mem_queue_size: cfg.mem_queue_size,
            max_msg_timeout: cfg.max_msg_timeout,
            max_channel_consumers: cfg.max_channel_consumers,
            e2e: cfg.e2e.clone(),
        });
        Rc::new(Self {
            backlog_start: Cell::new(store.first()),
            name,
            ephemeral,
            store,
            channels: RefCell::new(BTreeMap::new()),
            paused: Rc::new(Cell::new(false)),
            pause_at: Rc::new(Cell::new(0)),
            guid: RefCell::new(GuidFactory::new(cfg.node_id)),
            message_count: Cell::new(0),
            message_bytes: Cell::new(0),
            unsettled: RefCell::new(VecDeque::new()),
            channel_cfg,
            cfg,
            create_lock: tokio::sync::Mutex::new(()),
            deleted: Cell::new(false),
            written_states: RefCell::new(HashMap::new()),
        })
    }

    pub fn log(&self) -> Option<&Log<UringIo>> {
        self.store.log()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // ----- publish ---------------------------------------------------------------------------

    /// Appends every body (already validated) in order and says when the publisher may be told `OK`.
    pub fn publish(
        &self,
        bodies: &[Bytes],
        defer: Option<Duration>,
    ) -> Result<Ack, ringsq_storage::Error> {
        let now = now_ns();
        let deliver_at_ns = defer.map_or(0, |d| {
            now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        });
        let timestamp_ns = i64::try_from(now).unwrap_or(i64::MAX);
        let mut last = None;
        let mut stored = 0u64;
        let (mut count, mut bytes) = (0u64, 0u64);
        for body in bodies {
            let id = self.guid.borrow_mut().next_id();
            let msg = StoredMessage {
                id,
                timestamp_ns,
                deliver_at_ns,
                body: body.clone(),
            };
            let appended = self.store.append(msg.encode())?;
            if !matches!(appended, Appended::Dropped) {
                stored += 1;
            }
            last = Some(appended);
            count += 1;
            bytes += u64::try_from(body.len()).unwrap_or(u64::MAX);
        }
        for c in self.channels.borrow().values() {
            // nsqd counts a message for a channel when it reaches it, not when it is delivered.
            c.counters
                .message_count
                .set(c.counters.message_count.get() + stored);
            c.wake();
        }
        let ack = match (last, self.store.log()) {
            (Some(Appended::Log(pos)), Some(log)) => self.ack_policy(log, pos.seq + 1),
            _ => Ack::Now,
        };
        self.count_published(&ack, count, bytes);
        Ok(ack)
    }

    /// Counts published messages as the publisher's `OK` does: at once when it is sent at once,
    /// else once the log has done what the `OK` waits for (never if that failed).
    fn count_published(&self, ack: &Ack, count: u64, bytes: u64) {
        if let Ack::Wait { ticket, .. } = ack {
            self.unsettled
                .borrow_mut()
                .push_back((*ticket, count, bytes));
            self.settle();
        } else {
            self.message_count.set(self.message_count.get() + count);
            self.message_bytes.set(self.message_bytes.get() + bytes);
        }
    }

    /// Moves written publishes into the counts and drops failed ones (oldest first: the log
    /// writes, and fails, in order).
    fn settle(&self) {
        let Some(log) = self.store.log() else {
            return;
        };
        let mut unsettled = self.unsettled.borrow_mut();
        while let Some(&(ticket, count, bytes)) = unsettled.front() {
            match log.ticket_state(ticket, self.cfg.ack_after_sync) {
                None => break,
                Some(Ok(())) => {
                    self.message_count.set(self.message_count.get() + count);
                    self.message_bytes.set(self.message_bytes.get() + bytes);
                }
                Some(Err(_)) => {}
            }
            unsettled.pop_front();
        }
    }

    /// nsqd's topic `message_count`: messages acknowledged to their publisher (a publish whose
    /// write failed, ENOSPC for example, is not counted).
    pub fn message_count(&self) -> u64 {
        self.settle();
        self.message_count.get()
    }

    /// Body bytes of the messages counted by [`Topic::message_count`].
    pub fn message_bytes(&self) -> u64 {
        self.settle();
        self.message_bytes.get()
    }

    /// `--ack-after-sync`: after the fsync. `--mem-queue-size 0`: after the write. Otherwise at
    /// most `--mem-queue-size` of this topic's messages may exist only in memory.
    fn ack_policy(&self, log: &Log<UringIo>, seq_end: u64) -> Ack {
        if self.cfg.ack_after_sync {
            return Ack::Wait {
                log: log.clone(),
                ticket: log.ticket(seq_end),
                synced: true,
            };
        }
        let in_memory_max = self.cfg.mem_queue_size;
        let written = log.written().seq;
        if seq_end.saturating_sub(written) <= in_memory_max && in_memory_max > 0 {
            return Ack::Now;
        }
        Ack::Wait {
            log: log.clone(),
            ticket: log.ticket(seq_end.saturating_sub(in_memory_max)),
            synced: false,
        }
    }

    fn wake_channels(&self) {
        for c in self.channels.borrow().values() {
            c.wake();
        }
    }

    // ----- channels --------------------------------------------------------------------------

    pub fn get_channel(&self, name: &str) -> Option<Rc<Channel>> {
        self.channels.borrow().get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Rc<Channel>> {
        self.channels.borrow().values().cloned().collect()
    }

    /// Gets or creates a channel. A new durable channel's state file is written before this
    /// returns, so a crash right after `SUB` cannot lose its place.
    pub async fn channel(&self, name: &str) -> Result<Rc<Channel>, ringsq_storage::Error> {
        if let Some(c) = self.get_channel(name) {
            return Ok(c);
        }
        let _guard = self.create_lock.lock().await;
        if let Some(c) = self.get_channel(name) {
            return Ok(c);
        }
        let start = if self.channels.borrow().is_empty() {
            self.backlog_start.get()
        } else {
            self.store.end()
        };
        let channel = self.new_channel(name, start);
        // The backlog a first channel takes reaches it now (nsqd's topic pump puts it there).
        let backlog = self.store.end().seq.saturating_sub(start.seq);
        channel.counters.message_count.set(backlog);
        self.persist_channel(&channel).await?;
        self.insert_channel(&channel);
        tracing::info!(topic = %self.name, channel = %name, "CHANNEL({name}): created");
        self.cfg
            .events
            .send(super::events::MetaEvent::ChannelCreated {
                topic: self.name.clone(),
                channel: name.to_owned(),
            });
        Ok(channel)
    }

    fn new_channel(&self, name: &str, start: Position) -> Rc<Channel> {
        let link = TopicLink {
            name: self.name.clone(),
            store: Rc::clone(&self.store),
            paused: Rc::clone(&self.paused),
            pause_at: Rc::clone(&self.pause_at),
        };
        Channel::new(
            name.to_owned(),
            link,
            Rc::clone(&self.channel_cfg),
            start,
            self.cfg
                .data_path
                .as_ref()
                .map(|data| paths::channel_park_dir(data, &self.name, name)),
        )
    }

    fn insert_channel(&self, channel: &Rc<Channel>) {
        channel.start();
        self.channels
            .borrow_mut()
            .insert(channel.name.clone(), Rc::clone(channel));
    }

    /// Re-creates a channel from its state file at start-up.
    pub async fn restore_channel(&self, name: &str, snap: &ChannelSnapshot) {
        let channel = self.new_channel(name, self.store.first());
        channel.restore(snap).await;
        channel.dirty.set(false);
        if let Some(log) = self.store.log() {
            let bytes = serde_json::to_vec(&channel.snapshot(log.synced())).unwrap_or_default();
            self.written_states
                .borrow_mut()
                .insert(name.to_owned(), crc32c::crc32c(&bytes));
        }
        self.insert_channel(&channel);
    }

    /// Deletes a channel (and its state file). The last channel gone makes the tail the start of
    /// the backlog for the next first channel.
    pub fn delete_channel(&self, name: &str) -> bool {
        let Some(channel) = self.channels.borrow_mut().remove(name) else {
            return false;
        };
        channel.stop();
        for client in channel.consumers() {
            client.closed.set(true);
            client.wake.notify_one();
        }
        if self.channels.borrow().is_empty() {
            self.backlog_start.set(self.store.end());
        }
        match (channel.take_park_log(), channel.park_dir()) {
            (Some(log), _) => {
                tokio::task::spawn_local(async move {
                    if let Err(e) = log.destroy().await {
                        tracing::error!("removing a park log: {e}");
                    }
                });
            }
            (None, Some(dir)) => paths::remove_logged(dir),
            (None, None) => {}
        }
        if let (false, Some(data)) = (channel.ephemeral, &self.cfg.data_path) {
            paths::remove_logged(&paths::channel_file(data, &self.name, name));
        }
        self.written_states.borrow_mut().remove(name);
        tracing::info!(topic = %self.name, channel = %name, "CHANNEL({name}): deleted");
        self.cfg
            .events
            .send(super::events::MetaEvent::ChannelDeleted {
                topic: self.name.clone(),
                channel: name.to_owned(),
            });
        self.retain();
        true
    }

    // ----- persistence, retention ------------------------------------------------------------

    fn channel_path(&self, channel: &str) -> Option<PathBuf> {
        let data = self.cfg.data_path.as_ref()?;
        Some(paths::channel_file(data, &self.name, channel))
    }

    async fn persist_channel(&self, channel: &Channel) -> Result<(), ringsq_storage::Error> {
        let (Some(log), Some(path), false) = (
            self.store.log(),
            self.channel_path(&channel.name),
            channel.ephemeral,
        ) else {
            return Ok(());
        };
        let snap = channel.snapshot(log.synced());
        let bytes = serde_json::to_vec(&snap).unwrap_or_default();
        let fingerprint = crc32c::crc32c(&bytes);
        channel.dirty.set(false);
        if self.written_states.borrow().get(&channel.name) == Some(&fingerprint) {
            return Ok(());
        }
        let result = ringsq_storage::atomic_write(&self.cfg.io, &path, &bytes).await;
        if result.is_ok() {
            self.written_states
                .borrow_mut()
                .insert(channel.name.clone(), fingerprint);
        } else {
            channel.dirty.set(true);
        }
        result
    }

    /// Writes the state of every changed durable channel now; the first error is returned.
    pub async fn persist_channels(&self) -> Result<(), ringsq_storage::Error> {
        for channel in self.channels() {
            if channel.dirty.get() && !channel.deleted.get() {
                self.persist_channel(&channel).await?;
            }
        }
        Ok(())
    }

    /// Persists every changed channel, then lets the log drop what no channel needs any more.
    pub async fn checkpoint(&self) {
        for channel in self.channels() {
            // Whatever would wait past the next sync point moves out of the topic's log first.
            if let Err(e) = channel.park(self.cfg.sync_timeout).await {
                tracing::error!(topic = %self.name, channel = %channel.name, "parking messages: {e}");
            }
            if channel.dirty.get() && !channel.deleted.get() {
                if let Err(e) = self.persist_channel(&channel).await {
                    tracing::error!(topic = %self.name, channel = %channel.name, "saving channel state: {e}");
                }
            }
        }
        self.retain();
    }

    /// Segments below every channel's low-water mark can go. With no channel, nothing goes
    /// (nsqd keeps a topic's messages until a channel takes them).
    fn retain(&self) {
        let channels = self.channels.borrow();
        let durable: Vec<_> = channels.values().filter(|c| !c.ephemeral).collect();
        let pool: Vec<_> = if durable.is_empty() {
            channels.values().collect()
        } else {
            durable
        };
        let lowest = pool.iter().map(|c| c.low_water_mark().seq).min();
        let floor = match lowest {
            Some(seq) => seq,
            None => self.backlog_start.get().seq,
        };
        self.store.retain_from(floor);
    }

    /// Removes the messages the topic itself holds (HTTP `/topic/empty`, nsqd's `Topic.Empty`):
    /// with no channel, the backlog the first channel would get; while paused, what was published
    /// since the pause. What channels already hold stays theirs (`/channel/empty` drops that).
    pub fn empty(&self) {
        let end = self.store.end();
        self.backlog_start.set(end);
        if self.paused.get() {
            let from = self.pause_at.get();
            for c in self.channels() {
                c.skip_range(from, end);
            }
            self.pause_at.set(end.seq);
        }
        self.retain();
    }

    /// Pausing a topic holds back, at the topic, every message published from now on (nsqd's
    /// paused topic pump); channels still deliver what reached them before.
    pub fn pause(&self, paused: bool) {
        if paused && !self.paused.get() {
            self.pause_at.set(self.store.end().seq);
        }
        self.paused.set(paused);
        if !paused {
            self.wake_channels();
        }
    }

    /// Messages waiting at the topic level (nsqd's topic depth): with no channel, the backlog the
    /// first channel will get; while paused, what was published since the pause.
    pub fn depth(&self) -> u64 {
        let end = self.store.end().seq;
        if self.channels.borrow().is_empty() {
            end.saturating_sub(self.backlog_start.get().seq)
        } else if self.paused.get() {
            end.saturating_sub(self.pause_at.get())
        } else {
            0
        }
    }

    /// Saves channel state and closes the log (clean shutdown).
    pub async fn close(&self) {
        if let Some(log) = self.store.log() {
            if let Err(e) = log.sync().await {
                tracing::error!(topic = %self.name, "final sync failed: {e}");
            }
        }
        for c in self.channels() {
            c.dirty.set(true);
        }
        self.checkpoint().await;
        for c in self.channels() {
            c.stop();
            if let Some(log) = c.take_park_log() {
                if let Err(e) = log.close().await {
                    tracing::error!(topic = %self.name, channel = %c.name, "closing park log: {e}");
                }
            }
        }
        if let Some(log) = self.store.log() {
            if let Err(e) = log.close().await {
                tracing::error!(topic = %self.name, "closing log failed: {e}");
            }
        }
    }
}
