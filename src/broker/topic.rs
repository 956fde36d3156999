//! A topic: one store (its log, written once per message), its channels (cursors over it), and
//! the publish path with the ack policy that decides how long an `OK` waits for the disk.

use super::channel::{Channel, ChannelConfig, ChannelDirs, Saved, TopicLink};
use super::due::TopicDue;
use super::guid::GuidFactory;
use super::message::{Arena, MessageView, StoredMessage, MESSAGE_HEADER_BYTES};
use super::paths;
use super::store::{Appended, Store, Visible};
use super::Env;
use bytes::Bytes;
use ringsq_storage::{Io, Log, Position, Ticket, UringIo};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// How long a clean stop waits for a topic's log to write and fsync what it holds.
const STOP_SYNC_MAX: Duration = Duration::from_secs(5);

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Storage(#[from] ringsq_storage::Error),
    /// ringsq's `--max-topic-bytes`: the topic's channels still need that much of its log.
    #[error("topic {topic} is full ({bytes} bytes)")]
    Full { topic: String, bytes: u64 },
    /// A crash lost records some channel's saved state still refers to, and that state could
    /// not be saved again yet (a full disk): new records would take the lost ones' seqs.
    #[error("topic {topic} is recovering: channel states could not be saved yet")]
    Recovering { topic: String },
}

/// When a publisher may be told `OK`.
#[derive(Debug)]
pub enum Ack<I: Io = UringIo> {
    Now,
    /// Once the topic's log got there (see [`AckWait`]).
    Wait(AckWait<I>),
}

/// A publish whose `OK` waits for its topic's log: until the log has written (or, with
/// `synced`, fsynced) the records of its ticket. The one way to wait for the disk before
/// answering, whoever answers (a connection's writer, another shard, HTTP).
#[derive(Debug, Clone)]
pub struct AckWait<I: Io = UringIo> {
    log: Log<I>,
    ticket: Ticket,
    synced: bool,
}

impl<I: Io> AckWait<I> {
    /// `None` while the log has not got there; then whether it did (`Err`: the write or fsync
    /// failed, and the publish must be refused).
    pub fn outcome(&self) -> Option<Result<(), ringsq_storage::Error>> {
        self.log.ticket_state(self.ticket, self.synced)
    }

    /// Waits for the outcome.
    pub async fn wait(&self) -> Result<(), ringsq_storage::Error> {
        self.log.wait_ticket(self.ticket, self.synced).await
    }
}

#[derive(Debug)]
pub struct Topic<I: Io = UringIo> {
    pub name: String,
    pub ephemeral: bool,
    store: Rc<Store<I>>,
    channels: RefCell<BTreeMap<String, Rc<Channel<I>>>>,
    pub paused: Rc<Cell<bool>>,
    /// The log's end when the topic was paused: channels read no further while paused.
    pause_at: Rc<Cell<u64>>,
    guid: RefCell<GuidFactory>,
    /// Where this topic's records are encoded (see `StoredMessage::encode_into`).
    arena: RefCell<Arena>,
    /// Messages (and body bytes) stored: see [`Topic::message_count`].
    message_count: Cell<u64>,
    message_bytes: Cell<u64>,
    /// Publishes whose `OK` waits for the log: (ticket, messages, body bytes). They count once
    /// the log got there, never if the write failed (ENOSPC).
    unsettled: RefCell<VecDeque<(Ticket, u64, u64)>>,
    /// Where the next "first channel" starts: the topic's backlog (nsqd gives it to the first
    /// channel; later channels start at the tail).
    backlog_start: Cell<Position>,
    env: Rc<Env<I>>,
    channel_cfg: Rc<ChannelConfig>,
    create_lock: tokio::sync::Mutex<()>,
    pub deleted: Cell<bool>,
    /// Refusing publishes (`--max-topic-bytes`): logged once per episode.
    full: Cell<bool>,
    /// (seq, publish time in ns) of the oldest record the log held at the last sync point.
    oldest: Cell<Option<(u64, i64)>>,
    /// Some channel's saved state refers to records a crash lost, and has not been saved again
    /// since: publishes wait for that (see [`Topic::repair_channels`]).
    recovering: Cell<bool>,
    /// The topic's place on the lists of what the periodic saves visit.
    due: Rc<TopicDue>,
}

impl<I: Io> Topic<I> {
    pub fn new(name: String, store: Store<I>, env: Rc<Env<I>>) -> Rc<Self> {
        let ephemeral = crate::protocol::is_ephemeral(&name);
        let store = Rc::new(store);
        let cfg = &env.cfg;
        let channel_cfg = Rc::new(ChannelConfig {
            park_log: cfg.log.clone(),
            mem_queue_size: cfg.mem_queue_size,
            max_msg_timeout: cfg.max_msg_timeout,
            max_channel_consumers: cfg.max_channel_consumers,
            max_attempts: cfg.max_attempts,
            message_ttl: cfg.message_ttl,
            e2e: cfg.e2e.clone(),
            clock: cfg.clock,
            visible: if cfg.ack_after_sync {
                Visible::Synced
            } else if cfg.mem_queue_size == 0 {
                Visible::Written
            } else {
                Visible::Appended
            },
        });
        let mut guid = GuidFactory::new(cfg.node_id);
        // Ids continue past those already in the log even if the clock went back.
        if let Some(newest) = store
            .log()
            .and_then(|l| l.segments().iter().map(|s| s.modified).max())
        {
            guid.resume_after(
                newest
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            );
        }
        let due = Rc::new(TopicDue::new(name.clone(), Rc::clone(&env.due)));
        Rc::new(Self {
            backlog_start: Cell::new(store.first()),
            name,
            ephemeral,
            store,
            channels: RefCell::new(BTreeMap::new()),
            paused: Rc::new(Cell::new(false)),
            pause_at: Rc::new(Cell::new(0)),
            guid: RefCell::new(guid),
            arena: RefCell::new(Arena::default()),
            message_count: Cell::new(0),
            message_bytes: Cell::new(0),
            unsettled: RefCell::new(VecDeque::new()),
            channel_cfg,
            env,
            create_lock: tokio::sync::Mutex::new(()),
            deleted: Cell::new(false),
            full: Cell::new(false),
            oldest: Cell::new(None),
            recovering: Cell::new(false),
            due,
        })
    }

    pub fn log(&self) -> Option<&Log<I>> {
        self.store.log()
    }

    pub fn store(&self) -> &Store<I> {
        &self.store
    }

    /// The topic's place on the lists of what the periodic saves visit.
    pub fn due(&self) -> &TopicDue {
        &self.due
    }

    // ----- publish ---------------------------------------------------------------------------

    /// Appends every body (already validated) in order and says when the publisher may be told `OK`.
    pub fn publish(
        &self,
        bodies: &[Bytes],
        defer: Option<Duration>,
    ) -> Result<Ack<I>, PublishError> {
        if self.recovering.get() {
            return Err(PublishError::Recovering {
                topic: self.name.clone(),
            });
        }
        self.check_room(bodies)?;
        let now = self.env.cfg.clock.now_ns();
        let deliver_at_ns = defer.map_or(0, |d| {
            now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        });
        let timestamp_ns = i64::try_from(now).unwrap_or(i64::MAX);
        let mut last = None;
        let mut stored = 0u64;
        let (mut count, mut bytes) = (0u64, 0u64);
        for body in bodies {
            let id = self.guid.borrow_mut().next_id(now);
            let msg = StoredMessage {
                id,
                timestamp_ns,
                deliver_at_ns,
                body: body.clone(),
            };
            let record = msg.encode_into(&mut self.arena.borrow_mut());
            let appended = self.store.append(record)?;
            let pos = match appended {
                Appended::Log(pos) | Appended::Memory(pos) => Some(pos),
                Appended::Dropped => None,
            };
            if let Some(pos) = pos {
                stored += 1;
                if deliver_at_ns != 0 && !self.paused.get() {
                    // nsqd puts a DPUB straight into every channel's deferred queue.
                    for c in self.channels.borrow().values() {
                        c.take_deferred_ahead(pos, deliver_at_ns);
                    }
                }
            }
            last = Some(appended);
            count += 1;
            bytes += u64::try_from(body.len()).unwrap_or(u64::MAX);
        }
        let mut floor = self.store.end().seq;
        for c in self.channels.borrow().values() {
            // nsqd counts a message for a channel when it reaches it, not when it is delivered.
            c.counters
                .message_count
                .set(c.counters.message_count.get() + stored);
            c.wake();
            floor = floor.min(c.cursor_seq());
        }
        // The sync point refreshes the ages `/stats` shows and applies retention.
        self.due.checkpoint();
        if let Some(log) = self.store.log() {
            // What every channel has read leaves the tail cache (with no channel: everything
            // written; the first channel reads its backlog from disk).
            log.uncache_below(floor);
        }
        let ack = match (last, self.store.log()) {
            (Some(Appended::Log(pos)), Some(log)) => self.ack_policy(log, pos.seq + 1),
            _ => Ack::Now,
        };
        self.count_published(&ack, count, bytes);
        Ok(ack)
    }

    /// `--max-topic-bytes`: refuses a publish that would make the log hold more than the bound
    /// of what channels still need (from the slowest channel's low-water mark to the end; with
    /// no channel, the backlog). Consuming frees room at once; nothing stored is ever dropped.
    fn check_room(&self, bodies: &[Bytes]) -> Result<(), PublishError> {
        let max = self.env.cfg.max_topic_bytes;
        if max == 0 || self.store.log().is_none() {
            return Ok(());
        }
        let incoming: u64 = bodies
            .iter()
            .map(|b| {
                let len = u32::try_from(MESSAGE_HEADER_BYTES + b.len()).unwrap_or(u32::MAX);
                ringsq_storage::format::record_encoded_len(len)
            })
            .sum();
        let end = self.store.end().offset;
        // A cheap bound first; the exact low-water marks only when it says full.
        let fits = |exact: bool| {
            let floor = self.needed_from(exact).offset;
            end.saturating_sub(floor).saturating_add(incoming) <= max
        };
        if fits(false) || fits(true) {
            self.full.set(false);
            return Ok(());
        }
        if !self.full.replace(true) {
            tracing::warn!(topic = %self.name,
                "topic full: its channels still need {max} bytes (--max-topic-bytes); refusing publishes until they catch up");
        }
        Err(PublishError::Full {
            topic: self.name.clone(),
            bytes: max,
        })
    }

    /// The oldest record some channel still needs (the durable channels', if any), or the
    /// backlog's start with no channel. `exact: false` takes each channel's cheap hint, which
    /// is never above its low-water mark.
    fn needed_from(&self, exact: bool) -> Position {
        let channels = self.channels.borrow();
        let durable = channels.values().any(|c| !c.ephemeral);
        channels
            .values()
            .filter(|c| !durable || !c.ephemeral)
            .map(|c| {
                if exact {
                    c.low_water_mark()
                } else {
                    c.low_water_mark_hint()
                }
            })
            .min()
            .unwrap_or_else(|| self.backlog_start.get())
    }

    /// Where a reader must start to get every retained message published at or after `since`
    /// (the oldest retained one if `since` is older, the end if none is that recent). Segments
    /// last written before `since` hold no such message; the first later one is scanned (or,
    /// if none, the records not written yet).
    pub async fn position_at(&self, since: SystemTime) -> Result<Position, ringsq_storage::Error> {
        let since_ns = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let first = self.store.first();
        let mut pos = match self.store.log() {
            Some(log) => {
                let segments = log.segments();
                match segments
                    .iter()
                    .find(|s| s.modified >= since && s.end.seq > s.base.seq)
                {
                    Some(s) => s.base.max(first),
                    // Records appended but not written yet are in no segment's range (nor its
                    // time): they are scanned from where the written ones end.
                    None => match segments.last() {
                        Some(s) => s.end.max(first),
                        None => return Ok(self.store.end()),
                    },
                }
            }
            None => first,
        };
        loop {
            let records = match self.store.read(pos, 1024, 256 * 1024).await {
                Ok(records) => records,
                Err(ringsq_storage::Error::Corrupt { .. }) => {
                    pos = self.store.skip_damaged(pos).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = records.last() else {
                return Ok(pos);
            };
            let found = records.iter().find(|r| {
                MessageView::parse(&r.data)
                    .is_ok_and(|m| u64::try_from(m.timestamp_ns).unwrap_or(0) >= since_ns)
            });
            if let Some(r) = found {
                return Ok(r.pos);
            }
            pos = last.next_pos();
        }
    }

    /// Rewinds a channel to what was published at or after `since`; the new position is on
    /// disk when this returns.
    pub async fn rewind_channel(
        &self,
        channel: &Channel<I>,
        since: SystemTime,
    ) -> Result<(), ringsq_storage::Error> {
        let to = self.position_at(since).await?;
        channel.rewind(to);
        tracing::info!(topic = %self.name, channel = %channel.name,
            "rewound to seq {} (messages published since {since:?})", to.seq);
        self.save_channel(channel).await
    }

    /// Counts published messages as the publisher's `OK` does: at once when it is sent at once,
    /// else once the log has done what the `OK` waits for (never if that failed).
    fn count_published(&self, ack: &Ack<I>, count: u64, bytes: u64) {
        if let Ack::Wait(wait) = ack {
            self.unsettled
                .borrow_mut()
                .push_back((wait.ticket, count, bytes));
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
            match log.ticket_state(ticket, self.env.cfg.ack_after_sync) {
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
    fn ack_policy(&self, log: &Log<I>, seq_end: u64) -> Ack<I> {
        if self.env.cfg.ack_after_sync {
            return Ack::Wait(AckWait {
                log: log.clone(),
                ticket: log.ticket(seq_end),
                synced: true,
            });
        }
        let in_memory_max = self.env.cfg.mem_queue_size;
        let written = log.written().seq;
        if seq_end.saturating_sub(written) <= in_memory_max && in_memory_max > 0 {
            return Ack::Now;
        }
        // The `OK` waits for the records beyond the in-memory budget to be written, and fails
        // if a full disk rolls back any of this publish's own records (those kept in memory are
        // not rolled back, so an `OK` that did not wait is never taken back).
        Ack::Wait(AckWait {
            log: log.clone(),
            ticket: log.ticket_within(seq_end.saturating_sub(in_memory_max), seq_end),
            synced: false,
        })
    }

    fn wake_channels(&self) {
        for c in self.channels.borrow().values() {
            c.wake();
        }
    }

    // ----- channels --------------------------------------------------------------------------

    pub fn get_channel(&self, name: &str) -> Option<Rc<Channel<I>>> {
        self.channels.borrow().get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Rc<Channel<I>>> {
        self.channels.borrow().values().cloned().collect()
    }

    /// Gets or creates a channel. A new durable channel's state file is written before this
    /// returns, so a crash right after `SUB` cannot lose its place.
    pub async fn channel(&self, name: &str) -> Result<Rc<Channel<I>>, ringsq_storage::Error> {
        self.channel_created(name).await.map(|(c, _)| c)
    }

    /// As [`Topic::channel`], also saying whether this call created it.
    pub async fn channel_created(
        &self,
        name: &str,
    ) -> Result<(Rc<Channel<I>>, bool), ringsq_storage::Error> {
        if let Some(c) = self.get_channel(name) {
            return Ok((c, false));
        }
        let _guard = self.create_lock.lock().await;
        if let Some(c) = self.get_channel(name) {
            return Ok((c, false));
        }
        let start = if self.channels.borrow().is_empty() {
            self.backlog_start.get()
        } else {
            self.store.end()
        };
        let channel = self.new_channel(name, start);
        channel.adopt_dead().await?;
        // The backlog a first channel takes reaches it now (nsqd's topic pump puts it there).
        let backlog = self.store.end().seq.saturating_sub(start.seq);
        channel.counters.message_count.set(backlog);
        if let Some(path) = self.channel_path(&channel) {
            // A recent state left by an earlier channel of this name is not this one's.
            paths::remove_logged(&self.env.io, &super::channel::recent_path(&path)).await;
        }
        self.save_channel(&channel).await?;
        self.insert_channel(&channel);
        // Its lag for `/stats`, at the next sync point.
        self.due.checkpoint();
        tracing::info!(topic = %self.name, channel = %name, "channel created");
        self.env
            .events
            .send(super::events::MetaEvent::ChannelCreated {
                topic: self.name.clone(),
                channel: name.to_owned(),
            });
        Ok((channel, true))
    }

    fn new_channel(&self, name: &str, start: Position) -> Rc<Channel<I>> {
        let link = TopicLink {
            name: self.name.clone(),
            store: Rc::clone(&self.store),
            paused: Rc::clone(&self.paused),
            pause_at: Rc::clone(&self.pause_at),
            due: Rc::clone(&self.due),
        };
        let data = self.env.cfg.data_path.as_ref();
        let dirs = ChannelDirs {
            park: data.map(|data| paths::channel_park_dir(data, &self.name, name)),
            // An ephemeral topic has no files: its channels keep no dead letters.
            dead: data
                .filter(|_| !self.ephemeral)
                .map(|data| paths::channel_dead_dir(data, &self.name, name)),
        };
        Channel::new(
            name.to_owned(),
            link,
            Rc::clone(&self.channel_cfg),
            start,
            dirs,
            self.env.io.clone(),
        )
    }

    fn insert_channel(&self, channel: &Rc<Channel<I>>) {
        channel.start();
        self.channels
            .borrow_mut()
            .insert(channel.name.clone(), Rc::clone(channel));
    }

    /// Re-creates a channel from its saved state at start-up (from the start of the log when
    /// none is readable: duplicates, never loss), less what went to its dead letters after that
    /// state was saved.
    ///
    /// A channel whose saved state refers to records a crash lost must be saved again before the
    /// log takes new records: the topic refuses publishes until [`Topic::repair_channels`] did.
    pub async fn restore_channel(
        &self,
        name: &str,
        saved: &Saved,
    ) -> Result<(), ringsq_storage::Error> {
        let channel = self.new_channel(name, self.store.first());
        if saved.newest().is_none() {
            tracing::error!(topic = %self.name, channel = %name,
                "no readable channel state: redelivering from the start of the log");
        }
        let saved_end = saved
            .newest()
            .map(|s| ringsq_storage::Position::from(s.dead.end));
        let dead = channel.read_dead_since(saved_end).await?;
        let stale = channel.restore(saved, &dead);
        channel.dirty.set(saved.newest().is_none() || stale);
        channel.dirty_recent.set(stale);
        if stale {
            self.recovering.set(true);
        }
        if channel.dirty.get() {
            self.due.changed();
        }
        self.insert_channel(&channel);
        Ok(())
    }

    /// Saves (durably) the state of every channel restored from a state that refers to records
    /// a crash lost; publishes are taken again once every one is saved. Called at start, before
    /// the topic serves anyone, and at each sync point while it has not succeeded.
    pub async fn repair_channels(&self) {
        if !self.recovering.get() {
            return;
        }
        let mut saved = true;
        for channel in self.channels() {
            if channel.dirty.get() && !channel.deleted.get() {
                if let Err(e) = self.save_channel(&channel).await {
                    tracing::error!(topic = %self.name, channel = %channel.name,
                        "saving the channel's state after a crash (publishes wait for it): {e}");
                    saved = false;
                }
            }
        }
        self.recovering.set(!saved);
    }

    /// Deletes a channel, its state files and its park log (under the topic's create lock: a
    /// channel of the same name created meanwhile would find its files removed). The last
    /// channel gone makes the tail the start of the backlog for the next first channel.
    pub async fn delete_channel(&self, name: &str) -> bool {
        let _no_create_meanwhile = self.create_lock.lock().await;
        let Some(channel) = self.channels.borrow_mut().remove(name) else {
            return false;
        };
        channel.stop();
        for consumer in channel.consumers() {
            consumer.close();
        }
        if self.channels.borrow().is_empty() {
            self.backlog_start.set(self.store.end());
        }
        tracing::info!(topic = %self.name, channel = %name, "channel deleted");
        self.env
            .events
            .send(super::events::MetaEvent::ChannelDeleted {
                topic: self.name.clone(),
                channel: name.to_owned(),
            });
        self.retain();
        let io = &self.env.io;
        let logs = [
            ("park log", channel.take_park_log(), channel.park_dir()),
            ("dead letters", channel.take_dead_log(), channel.dead_dir()),
        ];
        for (what, log, dir) in logs {
            match (log, dir) {
                (Some(log), _) => {
                    if let Err(e) = log.destroy().await {
                        tracing::error!(topic = %self.name, channel = %name, "removing the {what}: {e}");
                    }
                }
                (None, Some(dir)) => paths::remove_logged(io, dir).await,
                (None, None) => {}
            }
        }
        if let (false, Some(data)) = (channel.ephemeral, &self.env.cfg.data_path) {
            let path = paths::channel_file(data, &self.name, name);
            // Not while a save is under way, whose rename would bring a state file back (saves
            // started from now on see `deleted` and stop).
            let _no_save_under_way = channel.save_lock.lock().await;
            paths::remove_logged(io, &super::channel::recent_path(&path)).await;
            paths::remove_logged(io, &path).await;
        }
        true
    }

    // ----- persistence, retention ------------------------------------------------------------

    fn channel_path(&self, channel: &Channel<I>) -> Option<PathBuf> {
        if channel.ephemeral || self.store.log().is_none() {
            return None;
        }
        let data = self.env.cfg.data_path.as_ref()?;
        Some(paths::channel_file(data, &self.name, &channel.name))
    }

    /// Where a channel's state is saved (`None` for ephemeral channels).
    pub fn state_path(&self, channel: &Channel<I>) -> Option<PathBuf> {
        self.channel_path(channel)
    }

    /// Saves a channel's state durably (nothing for ephemeral channels).
    pub async fn save_channel(&self, channel: &Channel<I>) -> Result<(), ringsq_storage::Error> {
        match self.channel_path(channel) {
            Some(path) => channel.save_durable(&path).await,
            None => Ok(()),
        }
    }

    /// Saves the state of every changed durable channel now; the first error is returned.
    pub async fn persist_channels(&self) -> Result<(), ringsq_storage::Error> {
        for channel in self.channels() {
            if channel.dirty.get() && !channel.deleted.get() {
                self.save_channel(&channel).await?;
            }
        }
        Ok(())
    }

    /// Between sync points: saves what changed in each channel without an fsync (every ~100 ms),
    /// so that a `kill -9` delivers again only what was finished since. A channel left unsaved
    /// (paced, or the save failed) keeps the topic on the list for the next ~100 ms save.
    pub async fn save_recent(&self) {
        self.due.visiting_recent();
        for channel in self.channels() {
            let Some(path) = self.channel_path(&channel) else {
                continue;
            };
            if channel.deleted.get() {
                continue;
            }
            if let Err(e) = channel.save_recent(&path).await {
                tracing::error!(topic = %self.name, channel = %channel.name, "saving channel state: {e}");
            }
            if channel.dirty_recent.get() && !channel.deleted.get() {
                self.due.recent();
            }
        }
    }

    /// The sync point: parks long waits, saves every changed channel durably, then lets the log
    /// drop what no channel needs any more; refreshes the ages `/stats` shows. A topic left
    /// recovering, or with a channel whose save failed, stays on the list for the next one.
    pub async fn checkpoint(&self) {
        self.due.visiting_checkpoint();
        self.save_and_retain().await;
        self.refresh_ages().await;
        let unsaved = self
            .channels()
            .iter()
            .any(|c| c.dirty.get() && !c.deleted.get() && self.channel_path(c).is_some());
        if self.recovering.get() || unsaved {
            self.due.checkpoint();
        }
    }

    async fn save_and_retain(&self) {
        self.repair_channels().await;
        for channel in self.channels() {
            // Whatever would wait past the next sync point moves out of the topic's log first.
            if let Err(e) = channel.park(self.env.cfg.sync_timeout).await {
                tracing::error!(topic = %self.name, channel = %channel.name, "parking messages: {e}");
            }
            if channel.dirty.get() && !channel.deleted.get() {
                if let Err(e) = self.save_channel(&channel).await {
                    tracing::error!(topic = %self.name, channel = %channel.name, "saving channel state: {e}");
                }
            }
        }
        self.retain();
    }

    /// The publish times `/stats` shows (the topic's oldest record, each channel's oldest
    /// unfinished one), read again only when those records changed.
    async fn refresh_ages(&self) {
        let first = self.store.first();
        if first.seq < self.store.end().seq && self.oldest.get().map(|o| o.0) != Some(first.seq) {
            self.oldest
                .set(self.timestamp_at(first).await.map(|ts| (first.seq, ts)));
        }
        for c in self.channels() {
            let lwm = c.low_water_mark();
            if lwm.seq < self.store.end().seq && c.lag_since.get().map(|o| o.0) != Some(lwm.seq) {
                c.lag_since
                    .set(self.timestamp_at(lwm).await.map(|ts| (lwm.seq, ts)));
            }
        }
    }

    /// The publish time of the message at `pos` (`None` if it cannot be read).
    async fn timestamp_at(&self, pos: Position) -> Option<i64> {
        let records = self.store.read(pos, 1, 1).await.ok()?;
        let record = records.first().filter(|r| r.pos == pos)?;
        MessageView::parse(&record.data)
            .ok()
            .map(|m| m.timestamp_ns)
    }

    /// Unix seconds when the oldest message the log holds was published (0: none).
    pub fn oldest_retained_s(&self) -> i64 {
        match self.oldest.get() {
            Some((seq, ts)) if seq >= self.store.first().seq && seq < self.store.end().seq => {
                ts / 1_000_000_000
            }
            _ => 0,
        }
    }

    /// How far behind a channel is: messages from its oldest unfinished one to the end, and
    /// seconds since that one was published (as of the last sync point).
    pub fn channel_lag(&self, c: &Channel<I>) -> (u64, u64) {
        let end = self.store.end().seq;
        let lwm = c.low_water_mark_hint().seq.max(self.store.first().seq);
        if lwm >= end {
            return (0, 0);
        }
        let now_ns = self.env.cfg.clock.now_timestamp_ns();
        let seconds = c.lag_since.get().map_or(0, |(_, ts)| {
            u64::try_from(now_ns.saturating_sub(ts) / 1_000_000_000).unwrap_or(0)
        });
        (end - lwm, seconds)
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
        let lowest = pool.iter().map(|c| c.retention_floor().seq).min();
        let floor = match lowest {
            Some(seq) => seq,
            None => self.backlog_start.get().seq,
        };
        // Segments' write times come from the storage's clock: compared with the same.
        let retention = self.env.cfg.retention;
        let written_before = (!retention.is_zero()).then(|| self.env.io.now() - retention);
        self.store.retain_from(floor, written_before);
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
            // On a full disk the records acknowledged from memory wait for space (retried every
            // half second): a stop waits for them a while, not for ever.
            match tokio::time::timeout(STOP_SYNC_MAX, log.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(topic = %self.name, "final sync failed: {e}"),
                Err(_) => tracing::error!(topic = %self.name,
                    "final sync: records still not written after {STOP_SYNC_MAX:?} (the disk is full?); stopping without them"),
            }
        }
        for c in self.channels() {
            // What died is written now (else it would be delivered again after the restart).
            if let Err(e) = c.commit_dying().await {
                tracing::error!(topic = %self.name, channel = %c.name, "writing dead letters: {e}");
            }
        }
        // Only what changed since its last durable save is written (idle channels cost nothing).
        self.save_and_retain().await;
        for c in self.channels() {
            c.stop();
            for (what, log) in [
                ("park log", c.take_park_log()),
                ("dead letters", c.take_dead_log()),
            ] {
                if let Some(log) = log {
                    if let Err(e) = log.close().await {
                        tracing::error!(topic = %self.name, channel = %c.name, "closing {what}: {e}");
                    }
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
