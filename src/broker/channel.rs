//! A channel: a cursor over its topic's store, plus what it has handed out and not yet finished.
//!
//! Every message a channel has taken from the store and not finished is *outstanding*, in exactly
//! one of three places: in flight to a client (with a deadline), deferred (REQ with a delay, or a
//! DPUB not yet due), or requeued (due now, waiting for a ready client). `outstanding` indexes them
//! by log sequence so the low-water mark — the oldest record this channel still needs — is one
//! lookup. That mark is what lets the topic delete old segments, and it is what a restart resumes
//! from: the persisted state ([`ChannelSnapshot`]) is the read cursor plus the outstanding list, so
//! after `kill -9` every in-flight or deferred message is delivered again and finished ones are
//! not (beyond one sync interval).
//!
//! Two tasks per channel, both started by [`Channel::start`]: the dispatcher (takes messages from
//! the requeue list, then the store, and writes them into ready clients' outboxes) and the timer
//! (wakes at the earliest in-flight or deferred deadline, never by polling).

use super::client::Client;
use super::guid::now_ns;
use super::message::StoredMessage;
use super::store::Store;
use crate::protocol::MessageId;
use ringsq_storage::{Log, LogConfig, Position, Record, UringIo};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Records read from the store per dispatcher read.
const PREFETCH_RECORDS_MAX: usize = 512;
/// A message delivered this many times is parked (it may keep timing out for a long while).
const PARK_ATTEMPTS_MIN: u16 = 3;
/// A park log's segments: parked messages are few; small segments are reclaimed sooner.
const PARK_SEGMENT_BYTES_MAX: u64 = 8 << 20;
/// Parked messages stay in memory too, so the park log needs no big read cache.
const PARK_CACHE_BYTES_MAX: usize = 1 << 20;

/// Every key of an outstanding message whose record is in the topic's log.
fn topic_keys() -> std::ops::RangeInclusive<Key> {
    (Source::Topic, 0)..=(Source::Topic, u64::MAX)
}

/// Every key of a parked message.
fn park_keys() -> std::ops::RangeInclusive<Key> {
    (Source::Park, 0)..=(Source::Park, u64::MAX)
}

/// Limits a channel needs from the options.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The topic's log settings, which a park log follows (fsync policy).
    pub park_log: LogConfig,
    pub mem_queue_size: u64,
    pub max_msg_timeout: Duration,
    pub max_channel_consumers: u64,
    pub e2e: super::e2e::E2eConfig,
}

/// Which log holds an outstanding message's record: the topic's, or the channel's park log
/// (where a message that would pin the topic's log for long is copied, see [`Channel::park`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Topic,
    Park,
}

/// An outstanding message's record: its log and sequence number there.
type Key = (Source, u64);

/// One delivery of a message by this channel.
#[derive(Debug, Clone)]
struct Delivery {
    source: Source,
    pos: Position,
    msg: StoredMessage,
    attempts: u16,
}

impl Delivery {
    fn key(&self) -> Key {
        (self.source, self.pos.seq)
    }
}

#[derive(Debug)]
struct InFlight {
    delivery: Delivery,
    client_id: u64,
    deadline: Instant,
    delivered_at: Instant,
}

/// An outstanding message as the snapshot (and parking) needs it.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    id: MessageId,
    pos: Position,
    attempts: u16,
    /// Wall-clock ns when a deferred message is due; 0 when it is in flight or due now.
    deliver_at_ns: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Next record to read from the store.
    read_pos: Position,
    /// Read from the store, not yet handed out.
    prefetch: VecDeque<Record>,
    /// Ranges `[seq, to)` of the log ahead of the cursor that are not this channel's (see
    /// [`SnapSkip`]), in order: the cursor jumps over each when it gets there.
    skip: VecDeque<(u64, Position)>,
    requeued: VecDeque<Delivery>,
    deferred: HashMap<Key, (Delivery, Instant, u64)>,
    deferred_deadlines: BinaryHeap<Reverse<(Instant, Key)>>,
    in_flight: HashMap<MessageId, InFlight>,
    in_flight_deadlines: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// Every outstanding message (in flight, deferred or requeued), by where its record is.
    outstanding: BTreeMap<Key, Outstanding>,
    consumers: Vec<Rc<Client>>,
    next_consumer: usize,
}

/// Counters reported by `/stats`.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    pub message_count: Cell<u64>,
    pub requeue_count: Cell<u64>,
    pub timeout_count: Cell<u64>,
    pub dropped_count: Cell<u64>,
}

/// Why FIN/REQ/TOUCH failed (nsqd's words, sent as `E_FIN_FAILED FIN <id> failed <why>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightError {
    NotInFlight,
    NotOwner,
}

impl std::fmt::Display for InFlightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InFlightError::NotInFlight => "ID not in flight",
            InFlightError::NotOwner => "client does not own message",
        })
    }
}

/// What a channel persists: enough to resume after a crash without losing anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub version: u32,
    pub cursor: SnapPos,
    pub outstanding: Vec<SnapOutstanding>,
    /// Ranges of the topic's log ahead of the cursor that this channel skips (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<SnapSkip>,
}

/// Records `[seq, to)` of the topic's log that are not this channel's: what a paused topic held
/// back when it was emptied, or another channel's messages taken over from Go nsqd's disk queues.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapSkip {
    pub seq: u64,
    pub to: SnapPos,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapPos {
    pub seq: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapOutstanding {
    /// The log holding the record (absent in files written before parking existed: topic).
    #[serde(default)]
    pub source: Source,
    pub seq: u64,
    pub offset: u64,
    pub attempts: u16,
    /// Wall-clock ns when a deferred message is due; 0 = due now.
    pub deliver_at_ns: u64,
}

pub const CHANNEL_SNAPSHOT_VERSION: u32 = 1;

#[derive(Debug)]
pub struct Channel {
    pub name: String,
    pub topic_name: String,
    pub ephemeral: bool,
    store: Rc<Store>,
    topic_paused: Rc<Cell<bool>>,
    topic_pause_at: Rc<Cell<u64>>,
    pub paused: Cell<bool>,
    cfg: Rc<ChannelConfig>,
    state: RefCell<State>,
    pub counters: ChannelCounters,
    /// Finish latencies (`--e2e-processing-latency-percentile`).
    pub e2e: super::e2e::E2eLatency,
    wake_dispatch: Notify,
    wake_timer: Notify,
    /// Where this channel's park log lives (`None` for ephemeral channels), and the log once opened.
    park_dir: Option<PathBuf>,
    park: RefCell<Option<Log<UringIo>>>,
    /// Set when the state changed since the last snapshot.
    pub dirty: Cell<bool>,
    pub deleted: Cell<bool>,
}

/// What a channel shares with its topic.
#[derive(Debug)]
pub struct TopicLink {
    pub name: String,
    pub store: Rc<Store>,
    pub paused: Rc<Cell<bool>>,
    /// The topic's log end when it was paused.
    pub pause_at: Rc<Cell<u64>>,
}

impl Channel {
    pub fn new(
        name: String,
        topic: TopicLink,
        cfg: Rc<ChannelConfig>,
        start: Position,
        park_dir: Option<PathBuf>,
    ) -> Rc<Self> {
        let TopicLink {
            name: topic_name,
            store,
            paused: topic_paused,
            pause_at: topic_pause_at,
        } = topic;
        let ephemeral = crate::protocol::is_ephemeral(&name);
        let e2e = super::e2e::E2eLatency::new(&cfg.e2e);
        let park_dir = park_dir.filter(|_| !ephemeral);
        Rc::new(Self {
            name,
            topic_name,
            ephemeral,
            store,
            topic_paused,
            topic_pause_at,
            paused: Cell::new(false),
            cfg,
            state: RefCell::new(State {
                read_pos: start,
                ..State::default()
            }),
            counters: ChannelCounters::default(),
            e2e,
            wake_dispatch: Notify::new(),
            wake_timer: Notify::new(),
            park_dir,
            park: RefCell::new(None),
            dirty: Cell::new(true),
            deleted: Cell::new(false),
        })
    }

    /// Starts the dispatcher and timer tasks (they end when the channel is deleted).
    pub fn start(self: &Rc<Self>) {
        tokio::task::spawn_local(Rc::clone(self).dispatch_loop());
        tokio::task::spawn_local(Rc::clone(self).timer_loop());
    }

    /// New records were appended to the topic, or something else may let delivery continue.
    pub fn wake(&self) {
        self.wake_dispatch.notify_one();
    }

    pub fn stop(&self) {
        self.deleted.set(true);
        self.wake_dispatch.notify_one();
        self.wake_timer.notify_one();
    }

    // ----- consumers -------------------------------------------------------------------------

    pub fn add_consumer(&self, client: Rc<Client>) -> Result<(), String> {
        let mut st = self.state.borrow_mut();
        let max = self.cfg.max_channel_consumers;
        if max != 0 && st.consumers.len() as u64 >= max {
            return Err(format!(
                "consumers for {}:{} exceeds limit of {max}",
                self.topic_name, self.name
            ));
        }
        st.consumers.push(client);
        drop(st);
        self.wake();
        Ok(())
    }

    /// Removes a consumer and requeues everything it had in flight. Returns how many remain.
    pub fn remove_consumer(&self, client_id: u64) -> usize {
        let mut st = self.state.borrow_mut();
        st.consumers.retain(|c| c.id != client_id);
        let owned: Vec<MessageId> = st
            .in_flight
            .iter()
            .filter(|(_, f)| f.client_id == client_id)
            .map(|(id, _)| *id)
            .collect();
        for id in owned {
            if let Some(f) = st.in_flight.remove(&id) {
                st.requeue_now(f.delivery);
            }
        }
        let left = st.consumers.len();
        drop(st);
        self.dirty.set(true);
        self.wake();
        left
    }

    pub fn consumers(&self) -> Vec<Rc<Client>> {
        self.state.borrow().consumers.clone()
    }

    // ----- FIN / REQ / TOUCH -----------------------------------------------------------------

    pub fn finish(&self, client: &Client, id: &MessageId) -> Result<(), InFlightError> {
        let f = self.take_in_flight(client, id)?;
        self.e2e.record(f.delivery.msg.timestamp_ns);
        self.state
            .borrow_mut()
            .outstanding
            .remove(&f.delivery.key());
        client.finish_count.set(client.finish_count.get() + 1);
        self.dirty.set(true);
        self.wake();
        Ok(())
    }

    /// REQ: `delay` already clamped to `--max-req-timeout` by the caller.
    pub fn requeue(
        &self,
        client: &Client,
        id: &MessageId,
        delay: Duration,
    ) -> Result<(), InFlightError> {
        let f = self.take_in_flight(client, id)?;
        client.requeue_count.set(client.requeue_count.get() + 1);
        self.counters
            .requeue_count
            .set(self.counters.requeue_count.get() + 1);
        let mut st = self.state.borrow_mut();
        if delay.is_zero() {
            st.requeue_now(f.delivery);
        } else {
            let due = Instant::now() + delay;
            let due_ns =
                now_ns().saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
            st.defer(f.delivery, due, due_ns);
            self.wake_timer.notify_one();
        }
        drop(st);
        self.dirty.set(true);
        self.wake();
        Ok(())
    }

    /// TOUCH: a new deadline of now + the client's msg timeout, capped at delivery + max.
    pub fn touch(
        &self,
        client: &Client,
        id: &MessageId,
        msg_timeout: Duration,
    ) -> Result<(), InFlightError> {
        let mut st = self.state.borrow_mut();
        let f = st.in_flight.get_mut(id).ok_or(InFlightError::NotInFlight)?;
        if f.client_id != client.id {
            return Err(InFlightError::NotOwner);
        }
        let cap = f.delivered_at + self.cfg.max_msg_timeout;
        let deadline = (Instant::now() + msg_timeout).min(cap);
        f.deadline = deadline;
        st.in_flight_deadlines.push(Reverse((deadline, *id)));
        Ok(())
    }

    fn take_in_flight(&self, client: &Client, id: &MessageId) -> Result<InFlight, InFlightError> {
        let mut st = self.state.borrow_mut();
        match st.in_flight.get(id) {
            None => return Err(InFlightError::NotInFlight),
            Some(f) if f.client_id != client.id => return Err(InFlightError::NotOwner),
            Some(_) => {}
        }
        let f = st.in_flight.remove(id).ok_or(InFlightError::NotInFlight)?;
        drop(st);
        client
            .in_flight
            .set(client.in_flight.get().saturating_sub(1));
        // A client that was full may flush and take more now.
        client.wake.notify_one();
        Ok(f)
    }

    // ----- delivery --------------------------------------------------------------------------

    async fn dispatch_loop(self: Rc<Self>) {
        loop {
            if self.deleted.get() {
                return;
            }
            match self.pump().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(topic = %self.topic_name, channel = %self.name, "reading messages failed: {e}");
                    // Back off instead of spinning on a failing disk; a wake retries sooner.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), self.wake_dispatch.notified())
                            .await;
                    continue;
                }
            }
            self.wake_dispatch.notified().await;
        }
    }

    /// Hands out as much as ready clients can take; Ok(false) once nothing more can go now.
    async fn pump(&self) -> Result<bool, ringsq_storage::Error> {
        loop {
            if self.deleted.get() || self.paused.get() || !self.any_consumer_ready() {
                return Ok(false);
            }
            let requeued = self.state.borrow_mut().requeued.pop_front();
            if let Some(d) = requeued {
                self.deliver(d);
                continue;
            }
            let next = self.state.borrow_mut().prefetch.pop_front();
            let Some(record) = next else {
                if self.fill_prefetch().await? {
                    continue;
                }
                return Ok(false);
            };
            self.take_record(&record);
        }
    }

    /// Reads the next records from the store; false when there are none.
    async fn fill_prefetch(&self) -> Result<bool, ringsq_storage::Error> {
        let (mut from, skip_at) = self.pass_skipped();
        let end = self.store.end();
        if self.ephemeral && end.seq.saturating_sub(from.seq) > self.cfg.mem_queue_size.max(1) {
            // An ephemeral channel keeps at most --mem-queue-size messages; the rest is dropped.
            let dropped = end.seq - from.seq;
            self.counters
                .dropped_count
                .set(self.counters.dropped_count.get() + dropped);
            from = end;
            self.state.borrow_mut().read_pos = end;
        }
        let first = self.store.first();
        if from.seq < first.seq {
            // Records went from under the cursor: only an ephemeral channel's (retention follows
            // the durable channels) — what it missed is dropped, as its overflow is.
            self.counters
                .dropped_count
                .set(self.counters.dropped_count.get() + (first.seq - from.seq));
            from = first;
            self.state.borrow_mut().read_pos = first;
        }
        let limit = self.readable_end_seq(end.seq).min(skip_at);
        if from.seq >= limit {
            return Ok(false);
        }
        let max = usize::try_from(limit - from.seq)
            .map_or(PREFETCH_RECORDS_MAX, |n| n.min(PREFETCH_RECORDS_MAX));
        let records = match self.store.read(from, max).await {
            Ok(records) => records,
            Err(e @ ringsq_storage::Error::Corrupt { .. }) => {
                return self.skip_damaged(from, &e).await
            }
            Err(e) => return Err(e),
        };
        let Some(last) = records.last() else {
            return Ok(false);
        };
        let next = last.next_pos();
        let mut st = self.state.borrow_mut();
        if st.read_pos != from {
            // The cursor moved while we read (channel emptied): drop this read.
            return Ok(true);
        }
        st.read_pos = next;
        st.prefetch.extend(records);
        Ok(true)
    }

    /// Moves the cursor past damaged records at `from` (a record that fails its check in a
    /// segment): they cannot be delivered, and waiting would stop the channel for good. Every
    /// channel reading there does the same and says so; the bytes stay on disk.
    async fn skip_damaged(
        &self,
        from: Position,
        error: &ringsq_storage::Error,
    ) -> Result<bool, ringsq_storage::Error> {
        let next = self.store.skip_damaged(from).await?;
        let mut st = self.state.borrow_mut();
        if st.read_pos != from {
            return Ok(true);
        }
        let lost = next.seq.saturating_sub(from.seq);
        tracing::error!(topic = %self.topic_name, channel = %self.name,
            "skipping {lost} message(s) from seq {} that cannot be read back: {error}", from.seq);
        st.read_pos = next;
        self.dirty.set(true);
        Ok(next != from)
    }

    /// Jumps over the emptied ranges the cursor has reached; returns the cursor and where the
    /// next emptied range starts (`u64::MAX` if none: reading must stop there).
    fn pass_skipped(&self) -> (Position, u64) {
        let mut st = self.state.borrow_mut();
        while let Some(&(at, to)) = st.skip.front() {
            if st.read_pos.seq < at {
                return (st.read_pos, at);
            }
            if st.read_pos.seq < to.seq {
                st.read_pos = to;
                self.dirty.set(true);
            }
            st.skip.pop_front();
        }
        (st.read_pos, u64::MAX)
    }

    /// Records `[from_seq, to)` of the topic's log, ahead of the cursor, are not for this
    /// channel: nsqd's topic empty while paused (what the topic held back goes, what the channel
    /// had stays), or another channel's messages taken over from Go nsqd. Persisted with the
    /// channel's state once `to` is synced.
    pub fn skip_range(&self, from_seq: u64, to: Position) {
        {
            let mut st = self.state.borrow_mut();
            let at = st.skip.partition_point(|&(seq, _)| seq <= from_seq);
            st.skip.insert(at, (from_seq, to));
        }
        self.dirty.set(true);
        self.pass_skipped();
        self.wake();
    }

    /// A record taken from the store: deliver it, defer it (DPUB not yet due), or skip it.
    fn take_record(&self, record: &Record) {
        self.dirty.set(true);
        let msg = match StoredMessage::decode(&record.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(topic = %self.topic_name, channel = %self.name, seq = record.pos.seq,
                    "skipping a record that is not a message: {e}");
                return;
            }
        };
        let delivery = Delivery {
            source: Source::Topic,
            pos: record.pos,
            msg,
            attempts: 0,
        };
        let now = now_ns();
        if delivery.msg.deliver_at_ns > now {
            let due = Instant::now() + Duration::from_nanos(delivery.msg.deliver_at_ns - now);
            let due_ns = delivery.msg.deliver_at_ns;
            self.state.borrow_mut().defer(delivery, due, due_ns);
            self.wake_timer.notify_one();
            return;
        }
        self.deliver(delivery);
    }

    /// How far this channel may read: the topic's end, or where it was paused.
    fn readable_end_seq(&self, end_seq: u64) -> u64 {
        if self.topic_paused.get() {
            end_seq.min(self.topic_pause_at.get())
        } else {
            end_seq
        }
    }

    fn any_consumer_ready(&self) -> bool {
        self.state
            .borrow()
            .consumers
            .iter()
            .any(|c| c.is_ready_for_messages())
    }

    /// Gives `d` to the next ready consumer (round robin), or requeues it if none is ready.
    fn deliver(&self, mut d: Delivery) {
        let mut st = self.state.borrow_mut();
        let n = st.consumers.len();
        let picked = (0..n)
            .map(|i| (st.next_consumer + i) % n)
            .find(|&i| st.consumers[i].is_ready_for_messages());
        let Some(i) = picked else {
            st.requeue_front(d);
            return;
        };
        st.next_consumer = (i + 1) % n;
        let client = Rc::clone(&st.consumers[i]);
        let (sample_rate, msg_timeout) = {
            let s = client.settings.borrow();
            (s.sample_rate, s.msg_timeout)
        };
        if sample_rate > 0 && rand::random::<u8>() % 100 > sample_rate {
            // nsqd drops a message a sampling client skips: it is finished for the channel.
            st.outstanding.remove(&d.key());
            return;
        }
        d.attempts = d.attempts.saturating_add(1);
        let now = Instant::now();
        let deadline = now + msg_timeout;
        st.mark(&d, 0);
        st.in_flight_deadlines.push(Reverse((deadline, d.msg.id)));
        let (id, ts, attempts, body) =
            (d.msg.id, d.msg.timestamp_ns, d.attempts, d.msg.body.clone());
        st.in_flight.insert(
            id,
            InFlight {
                delivery: d,
                client_id: client.id,
                deadline,
                delivered_at: now,
            },
        );
        drop(st);
        client.in_flight.set(client.in_flight.get() + 1);
        client.message_count.set(client.message_count.get() + 1);
        client.send_message(ts, attempts, &id, &body);
        self.wake_timer.notify_one();
    }

    // ----- deadlines -------------------------------------------------------------------------

    async fn timer_loop(self: Rc<Self>) {
        loop {
            if self.deleted.get() {
                return;
            }
            let next = self.fire_due(Instant::now());
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.wake_timer.notified() => {}
                    }
                }
                None => self.wake_timer.notified().await,
            }
        }
    }

    /// Times out expired in-flight messages and releases due deferred ones; returns the next deadline.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut timed_out = Vec::new();
        let mut released = false;
        let mut st = self.state.borrow_mut();
        while let Some(Reverse((at, id))) = st.in_flight_deadlines.peek().copied() {
            if at > now {
                break;
            }
            st.in_flight_deadlines.pop();
            // Stale heap entries (finished, or touched to a later deadline) are skipped.
            if st.in_flight.get(&id).is_some_and(|f| f.deadline == at) {
                if let Some(f) = st.in_flight.remove(&id) {
                    timed_out.push(f.client_id);
                    st.requeue_now(f.delivery);
                }
            }
        }
        while let Some(Reverse((at, key))) = st.deferred_deadlines.peek().copied() {
            if at > now {
                break;
            }
            st.deferred_deadlines.pop();
            if st.deferred.get(&key).is_some_and(|(_, due, _)| *due == at) {
                if let Some((d, _, _)) = st.deferred.remove(&key) {
                    st.requeue_now(d);
                    released = true;
                }
            }
        }
        let next = [
            st.in_flight_deadlines.peek().map(|r| r.0 .0),
            st.deferred_deadlines.peek().map(|r| r.0 .0),
        ]
        .into_iter()
        .flatten()
        .min();
        let consumers = st.consumers.clone();
        drop(st);
        for client_id in &timed_out {
            if let Some(c) = consumers.iter().find(|c| c.id == *client_id) {
                c.in_flight.set(c.in_flight.get().saturating_sub(1));
                c.wake.notify_one();
            }
        }
        if !timed_out.is_empty() {
            let n = timed_out.len() as u64;
            self.counters
                .timeout_count
                .set(self.counters.timeout_count.get() + n);
        }
        if released || !timed_out.is_empty() {
            self.dirty.set(true);
            self.wake();
        }
        next
    }

    // ----- parking -----------------------------------------------------------------------------

    /// The channel's park log, opened on first use.
    async fn park_log(&self) -> Option<Log<UringIo>> {
        if let Some(log) = self.park.borrow().clone() {
            return Some(log);
        }
        let dir = self.park_dir.clone()?;
        let config = LogConfig {
            segment_size_bytes_max: PARK_SEGMENT_BYTES_MAX,
            cache_bytes_max: PARK_CACHE_BYTES_MAX,
            ..self.cfg.park_log.clone()
        };
        match Log::open(UringIo, &dir, config).await {
            Ok((log, report)) => {
                tracing::info!(topic = %self.topic_name, channel = %self.name, "park log: {report}");
                *self.park.borrow_mut() = Some(log.clone());
                Some(log)
            }
            Err(e) => {
                tracing::error!(topic = %self.topic_name, channel = %self.name, "opening the park log: {e}");
                None
            }
        }
    }

    /// Copies every message that would hold the topic's log back for long — deferred beyond
    /// `horizon` from now, or delivered [`PARK_ATTEMPTS_MIN`] times or more — into the channel's
    /// park log, fsyncs it, and from then on refers to the copy: the topic's segments can be
    /// reclaimed while the message waits. Then lets the park log drop what nobody needs.
    pub async fn park(&self, horizon: Duration) -> Result<(), ringsq_storage::Error> {
        if self.park_dir.is_none() {
            return Ok(());
        }
        let beyond_ns =
            now_ns().saturating_add(u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX));
        let picked = self.state.borrow().to_park(beyond_ns);
        let log = if picked.is_empty() {
            self.park.borrow().clone()
        } else {
            self.park_log().await
        };
        let Some(log) = log else {
            return Ok(());
        };
        let mut moved = Vec::with_capacity(picked.len());
        for (key, msg) in picked {
            moved.push((key, log.append(msg.encode())?));
        }
        if !moved.is_empty() {
            log.sync().await?;
            let mut st = self.state.borrow_mut();
            for (old, pos) in moved {
                st.repoint(old, Source::Park, pos);
            }
            drop(st);
            self.dirty.set(true);
        }
        let floor = self
            .state
            .borrow()
            .outstanding
            .range(park_keys())
            .next()
            .map(|(k, _)| k.1);
        log.retain_from(floor.unwrap_or(log.end().seq));
        Ok(())
    }

    /// The park log, for the owner to close or destroy with the channel.
    pub fn take_park_log(&self) -> Option<Log<UringIo>> {
        self.park.borrow_mut().take()
    }

    pub fn park_dir(&self) -> Option<&std::path::Path> {
        self.park_dir.as_deref()
    }

    // ----- empty, depth, low-water mark, persistence ------------------------------------------

    /// Drops everything queued for this channel (HTTP `/channel/empty`): the cursor jumps to the
    /// topic's end; requeued and deferred messages are finished. In-flight ones stay (as nsqd).
    pub fn empty(&self) {
        let end = self.store.end();
        let mut st = self.state.borrow_mut();
        st.prefetch.clear();
        st.skip.clear();
        st.read_pos = end;
        let mut dropped: Vec<Key> = st.requeued.drain(..).map(|d| d.key()).collect();
        dropped.extend(st.deferred.drain().map(|(key, _)| key));
        for key in dropped {
            st.outstanding.remove(&key);
        }
        st.deferred_deadlines.clear();
        drop(st);
        self.dirty.set(true);
    }

    /// Messages waiting for this channel: unread in the store, plus requeued.
    pub fn depth(&self) -> u64 {
        let st = self.state.borrow();
        let readable_end = self.readable_end_seq(self.store.end().seq);
        let emptied: u64 = st
            .skip
            .iter()
            .map(|&(at, to)| {
                to.seq
                    .min(readable_end)
                    .saturating_sub(at.min(readable_end))
            })
            .sum();
        let unread = readable_end
            .saturating_sub(st.read_pos.seq)
            .saturating_sub(emptied)
            + st.prefetch.len() as u64;
        unread + st.requeued.len() as u64
    }

    pub fn in_flight_count(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    pub fn deferred_count(&self) -> usize {
        self.state.borrow().deferred.len()
    }

    /// The oldest record of the topic's log this channel still needs (parked messages do not
    /// count: their records are in the channel's park log).
    pub fn low_water_mark(&self) -> Position {
        let st = self.state.borrow();
        let cursor = st.prefetch.front().map_or(st.read_pos, |r| r.pos);
        match st.outstanding.range(topic_keys()).next() {
            Some((_, o)) if o.pos.seq < cursor.seq => o.pos,
            _ => cursor,
        }
    }

    /// What to persist, never referring past `durable` (the log's synced end): records above it
    /// may not survive a crash, and a cursor past them would skip the records that replace them.
    pub fn snapshot(&self, durable: Position) -> ChannelSnapshot {
        let st = self.state.borrow();
        let read_cursor = st.prefetch.front().map_or(st.read_pos, |r| r.pos);
        let cursor = if read_cursor.seq > durable.seq {
            durable
        } else {
            read_cursor
        };
        // Topic records at or past the cursor are read again from it; parked records are synced
        // before any snapshot mentions them (see `park`).
        let outstanding = st
            .outstanding
            .iter()
            .filter(|((source, seq), _)| *source == Source::Park || *seq < cursor.seq)
            .map(|(&(source, seq), o)| SnapOutstanding {
                source,
                seq,
                offset: o.pos.offset,
                attempts: o.attempts,
                deliver_at_ns: o.deliver_at_ns,
            })
            .collect();
        // A skip past the synced end is cut there: after a crash, new records may take those
        // seqs, and they are this channel's.
        let skip = st
            .skip
            .iter()
            .filter(|(seq, _)| *seq < durable.seq)
            .map(|&(seq, to)| {
                let to = if to.seq > durable.seq { durable } else { to };
                SnapSkip {
                    seq,
                    to: SnapPos {
                        seq: to.seq,
                        offset: to.offset,
                    },
                }
            })
            .collect();
        ChannelSnapshot {
            version: CHANNEL_SNAPSHOT_VERSION,
            cursor: SnapPos {
                seq: cursor.seq,
                offset: cursor.offset,
            },
            outstanding,
            skip,
        }
    }

    /// Restores a persisted state: the cursor, and every outstanding message read back from the
    /// store (due ones requeued, deferred ones deferred again). Records no longer in the store
    /// are reported and skipped.
    pub async fn restore(&self, snap: &ChannelSnapshot) {
        let first = self.store.first();
        let cursor = Position {
            seq: snap.cursor.seq,
            offset: snap.cursor.offset,
        };
        {
            let mut st = self.state.borrow_mut();
            st.read_pos = if cursor.seq < first.seq {
                first
            } else {
                cursor
            };
            st.skip = snap
                .skip
                .iter()
                .map(|s| {
                    let to = Position {
                        seq: s.to.seq,
                        offset: s.to.offset,
                    };
                    (s.seq, to)
                })
                .filter(|&(seq, to)| seq < to.seq)
                .collect();
            st.skip.make_contiguous().sort_by_key(|&(seq, _)| seq);
        }
        self.pass_skipped();
        let now = now_ns();
        let park = if snap.outstanding.iter().any(|o| o.source == Source::Park) {
            self.park_log().await
        } else {
            None
        };
        for o in &snap.outstanding {
            let pos = Position {
                seq: o.seq,
                offset: o.offset,
            };
            let read = match (o.source, &park) {
                (Source::Topic, _) if pos.seq < first.seq => continue,
                (Source::Topic, _) => self.store.read(pos, 1).await,
                (Source::Park, Some(log)) => log.read(pos, 1, 1).await,
                (Source::Park, None) => continue,
            };
            let record = match read {
                Ok(mut v) if !v.is_empty() && v[0].pos.seq == pos.seq => v.swap_remove(0),
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(topic = %self.topic_name, channel = %self.name, seq = pos.seq,
                        "cannot read back an outstanding message: {e}");
                    continue;
                }
            };
            let Ok(msg) = StoredMessage::decode(&record.data) else {
                continue;
            };
            let d = Delivery {
                source: o.source,
                pos,
                msg,
                attempts: o.attempts,
            };
            let mut st = self.state.borrow_mut();
            if o.deliver_at_ns > now {
                let due = Instant::now() + Duration::from_nanos(o.deliver_at_ns - now);
                st.defer(d, due, o.deliver_at_ns);
            } else {
                st.requeue_now(d);
            }
        }
        self.wake_timer.notify_one();
        self.wake();
    }
}

impl State {
    /// Topic-log messages to park (see [`Channel::park`]), with the deadline they keep.
    fn to_park(&self, beyond_ns: u64) -> Vec<(Key, StoredMessage)> {
        self.outstanding
            .range(topic_keys())
            .filter(|(_, o)| o.deliver_at_ns > beyond_ns || o.attempts >= PARK_ATTEMPTS_MIN)
            .filter_map(|(key, o)| {
                let msg = self.message(*key, &o.id)?;
                Some((
                    *key,
                    StoredMessage {
                        deliver_at_ns: o.deliver_at_ns,
                        ..msg.clone()
                    },
                ))
            })
            .collect()
    }

    /// The message of an outstanding key, wherever it waits.
    fn message(&self, key: Key, id: &MessageId) -> Option<&StoredMessage> {
        if let Some((d, _, _)) = self.deferred.get(&key) {
            return Some(&d.msg);
        }
        if let Some(f) = self.in_flight.get(id).filter(|f| f.delivery.key() == key) {
            return Some(&f.delivery.msg);
        }
        self.requeued
            .iter()
            .find(|d| d.key() == key)
            .map(|d| &d.msg)
    }

    /// An outstanding message's record now lives at `pos` in `source`'s log (a message finished
    /// meanwhile is left alone: its copy is garbage the park log reclaims).
    fn repoint(&mut self, old: Key, source: Source, pos: Position) {
        let Some(o) = self.outstanding.remove(&old) else {
            return;
        };
        let key = (source, pos.seq);
        self.outstanding.insert(key, Outstanding { pos, ..o });
        if let Some((mut d, due, due_ns)) = self.deferred.remove(&old) {
            (d.source, d.pos) = (source, pos);
            self.deferred_deadlines.push(Reverse((due, key)));
            self.deferred.insert(key, (d, due, due_ns));
        } else if let Some(f) = self
            .in_flight
            .get_mut(&o.id)
            .filter(|f| f.delivery.key() == old)
        {
            (f.delivery.source, f.delivery.pos) = (source, pos);
        } else if let Some(d) = self.requeued.iter_mut().find(|d| d.key() == old) {
            (d.source, d.pos) = (source, pos);
        }
    }

    fn mark(&mut self, d: &Delivery, deliver_at_ns: u64) {
        let o = Outstanding {
            id: d.msg.id,
            pos: d.pos,
            attempts: d.attempts,
            deliver_at_ns,
        };
        self.outstanding.insert(d.key(), o);
    }

    fn requeue_now(&mut self, d: Delivery) {
        self.mark(&d, 0);
        self.requeued.push_back(d);
    }

    /// Back to the head of the queue (taken, but no client was ready after all).
    fn requeue_front(&mut self, d: Delivery) {
        self.mark(&d, 0);
        self.requeued.push_front(d);
    }

    fn defer(&mut self, d: Delivery, due: Instant, due_ns: u64) {
        let key = d.key();
        self.mark(&d, due_ns);
        self.deferred_deadlines.push(Reverse((due, key)));
        self.deferred.insert(key, (d, due, due_ns));
    }
}
