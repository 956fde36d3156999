//! A channel: a cursor over its topic's store, plus what it has handed out and not yet finished.
//!
//! Every message a channel has taken from the store and not finished is *outstanding*, in exactly
//! one of four places: in flight to a client (with a deadline), deferred (REQ with a delay, or a
//! DPUB not yet due), requeued (due now, waiting for a ready client), or dying (going to the dead
//! letters: outstanding until its letter is on disk, see `dead.rs`). The oldest of their
//! records and the cursor make the low-water mark — the oldest record this channel still needs
//! (computed when asked, at sync points: nothing is kept per message for it). That mark is what
//! lets the topic delete old segments, and it is what a restart resumes
//! from: the persisted state (`persist.rs`) is the read cursor plus the outstanding list, so after
//! `kill -9` every in-flight or deferred message is delivered again and finished ones are not
//! (beyond the last ~100 ms).
//!
//! **Memory.** An outstanding message costs a few words whatever its size: its body stays in the
//! log and is read again when it is delivered again (from the log's tail cache, or the disk). What
//! a channel holds beyond that is bounded: its read-ahead (at most [`READ_AHEAD_BYTES_MAX`] of
//! records read from the log and not yet handed out) and a small re-read window
//! ([`REREAD_BYTES_MAX`]). Nothing grows with the backlog.
//!
//! **Visibility.** A channel reads only what the topic's ack policy has made safe (`Visible`):
//! written records with `--mem-queue-size 0`, fdatasynced ones with `--ack-after-sync`, so a crash
//! never takes back a message a consumer already processed.
//!
//! The code: this file (state, consumers, FIN/REQ/TOUCH, empty, depth); `dispatch.rs` (reading the
//! log and handing messages to ready clients); `timers.rs` (in-flight timeouts, deferred
//! deliveries); `park.rs` (long waits moved out of the topic's log); `dead.rs` (dead letters:
//! `--max-attempts`, `--message-ttl`); `persist.rs` (the state file: format, snapshot, restore).
//! Three tasks per channel, all started by [`Channel::start`]: the dispatcher, the timer (which
//! wakes at the earliest deadline, never by polling) and the dead-letter writer (woken when a
//! message dies).

mod dead;
mod dispatch;
mod park;
mod persist;
#[cfg(test)]
mod restore_tests;
mod timers;

pub use dead::{
    ChannelLimits, DeadLetter, DeadList, DeadRecord, DeadSince, Pick, Reason, DEAD_HEADER_BYTES,
    DEAD_LIST_LIMIT_DEFAULT, DEAD_LIST_LIMIT_MAX,
};
pub use persist::{
    recent_path, ChannelSnapshot, Saved, SnapConfig, SnapDead, SnapOutstanding, SnapPos, SnapSkip,
    CHANNEL_SNAPSHOT_VERSION,
};

use super::consumer::Consumer;
use super::store::{Store, Visible};
use crate::protocol::MessageId;
use ringsq_storage::{Io, Log, LogConfig, Position, Record, UringIo};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The hash maps' hasher: fixed keys, so that a run is repeatable (the simulation replays a
/// seed exactly). Their keys are ids and positions the broker made, never a client's choice.
type Fixed = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Most bytes of records a channel reads ahead of its consumers (one read of the log).
pub const READ_AHEAD_BYTES_MAX: usize = 256 * 1024;
/// Most records one read-ahead holds.
const READ_AHEAD_RECORDS_MAX: usize = 4096;
/// Most bytes of records kept after reading a requeued message again (its neighbours are often
/// requeued too: a consumer that went away, a batch that timed out).
pub const REREAD_BYTES_MAX: usize = 64 * 1024;
/// Most records of the re-read window.
const REREAD_RECORDS_MAX: usize = 64;
/// Stale deadline-heap entries (finished or touched messages) are dropped once the heap holds
/// more than twice the live entries plus this many.
const HEAP_SLACK_ENTRIES: usize = 1024;

/// Limits a channel needs from the options.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The topic's log settings, which a park log follows (fsync policy).
    pub park_log: LogConfig,
    pub mem_queue_size: u64,
    pub max_msg_timeout: Duration,
    pub max_channel_consumers: u64,
    /// `--max-attempts` (0: unlimited), for channels without their own.
    pub max_attempts: u16,
    /// `--message-ttl` (zero: never), for channels without their own.
    pub message_ttl: Duration,
    pub e2e: super::e2e::E2eConfig,
    /// How far consumers may read (the ack policy).
    pub visible: Visible,
    pub clock: super::Clock,
}

/// Which log holds an outstanding message's record: the topic's, or the channel's park log
/// (where a message that would pin the topic's log for long is copied, see `park.rs`).
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

/// A message this channel took and has not finished: where its record is and how many times it
/// was delivered. The body is not kept: it is read again from the log when needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    source: Source,
    pos: Position,
    attempts: u16,
}

impl Pending {
    fn key(&self) -> Key {
        (self.source, self.pos.seq)
    }
}

#[derive(Debug)]
struct InFlight {
    pending: Pending,
    /// The message's publish time (for the e2e latency at FIN).
    timestamp_ns: i64,
    client_id: u64,
    deadline: Instant,
    delivered_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Next record to read from the store.
    read_pos: Position,
    /// Read from the store, not yet handed out (at most one read: [`READ_AHEAD_BYTES_MAX`]).
    prefetch: VecDeque<Record>,
    /// Ranges `[seq, to)` of the log ahead of the cursor that are not this channel's (see
    /// [`SnapSkip`]), in order: the cursor jumps over each when it gets there.
    skip: VecDeque<(u64, Position)>,
    /// Topic records ahead of the cursor that this channel already took (a DPUB is deferred the
    /// moment it is published, as nsqd): the cursor passes over them.
    taken_ahead: BTreeSet<u64>,
    requeued: VecDeque<Pending>,
    /// By key: the message, when it is due, and that as wall-clock ns (what is saved).
    deferred: HashMap<Key, (Pending, Instant, u64), Fixed>,
    deferred_deadlines: BinaryHeap<Reverse<(Instant, Key)>>,
    in_flight: HashMap<MessageId, InFlight, foldhash::fast::FixedState>,
    in_flight_deadlines: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// Records read again for requeued messages, kept for their neighbours.
    reread: VecDeque<Record>,
    consumers: Vec<Rc<dyn Consumer>>,
    next_consumer: usize,
    /// Bumped when the channel is emptied: a read that started before must not deliver.
    epoch: u64,
    /// The topic log's roll-back generation this channel has caught up with.
    rollback_gen: u64,
    /// When the timer task sleeps until (`None`: until woken).
    timer_at: Option<Instant>,
    /// Outstanding messages going to the dead letters: each stays here until its dead-letter
    /// record is fsynced (see `dead.rs`).
    dying: Vec<dead::Dying>,
    /// Bytes of the records kept in `dying`.
    dying_bytes: usize,
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

/// `--max-channel-consumers` is reached (nsqd's `E_SUB_FAILED SUB failed <this>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consumers for {topic}:{channel} exceeds limit of {max}")]
pub struct TooManyConsumers {
    pub topic: String,
    pub channel: String,
    pub max: u64,
}

#[derive(Debug)]
pub struct Channel<I: Io = UringIo> {
    pub name: String,
    pub topic_name: String,
    pub ephemeral: bool,
    store: Rc<Store<I>>,
    topic_paused: Rc<Cell<bool>>,
    topic_pause_at: Rc<Cell<u64>>,
    /// The topic's place on the lists of what the periodic saves visit.
    topic_due: Rc<crate::broker::due::TopicDue>,
    pub paused: Cell<bool>,
    cfg: Rc<ChannelConfig>,
    state: RefCell<State>,
    pub counters: ChannelCounters,
    /// Finish latencies (`--e2e-processing-latency-percentile`).
    pub e2e: super::e2e::E2eLatency,
    wake_dispatch: super::wake::Wake,
    wake_timer: Notify,
    /// Where this channel's park log lives (`None` for ephemeral channels), and the log once opened.
    park_dir: Option<PathBuf>,
    park: RefCell<Option<Log<I>>>,
    /// Held while the park log is appended to or trimmed (parking, requeueing dead letters).
    park_lock: tokio::sync::Mutex<()>,
    /// Where this channel's dead letters live (`None` for ephemeral channels: dropped), and the
    /// log once opened.
    dead_dir: Option<PathBuf>,
    dead_log: RefCell<Option<Log<I>>>,
    /// What the state says of the dead letters (count, what was removed).
    dead: RefCell<dead::DeadBook>,
    /// Whether the dead-letter task runs: only while messages wait for their letters (see
    /// [`Channel::die`]); a channel that never sees one has no such task.
    dead_task: Cell<bool>,
    /// This channel, for the tasks it starts on demand.
    me: std::rc::Weak<Self>,
    /// One writer of dead letters at a time (the dead-letter task, a shutdown).
    dead_write_lock: tokio::sync::Mutex<()>,
    /// One requeue or empty of the dead letters at a time.
    dead_op_lock: tokio::sync::Mutex<()>,
    /// The channel's own limits (`POST /channel/config`), saved with its state...
    overrides: Cell<SnapConfig>,
    /// ...and the limits in effect: `--max-attempts` (0: off)...
    max_attempts: Cell<u16>,
    /// ...and `--message-ttl` in ns (0: off).
    ttl_ns: Cell<u64>,
    io: I,
    /// Set when the state changed since the last durable save.
    pub dirty: Cell<bool>,
    /// Set when the state changed since the last save of either kind (see `persist.rs`).
    pub dirty_recent: Cell<bool>,
    /// Numbers the saved states; a restart takes the newest readable one.
    pub(super) generation: Cell<u64>,
    /// A low-water mark at or below the true one (the true one only moves back by a rewind or a
    /// roll-back, which lower this too): a cheap bound for `--max-topic-bytes`.
    lwm_hint: Cell<Position>,
    /// (seq, publish time in ns) of the oldest unfinished message, as of the last sync point
    /// (`/stats` lag).
    pub lag_since: Cell<Option<(u64, i64)>>,
    /// The low-water mark of the last state saved durably: the topic's log keeps everything
    /// from there, so whatever a restart after a power cut resumes from is still there.
    pub(super) persisted_lwm: Cell<Option<Position>>,
    /// One save of this channel's state at a time.
    pub(crate) save_lock: tokio::sync::Mutex<()>,
    /// The next recent save is not before this (paced by the state's size).
    pub(super) recent_due: Cell<Option<Instant>>,
    pub deleted: Cell<bool>,
}

/// Where a channel's own logs live (`None`: it has none, as an ephemeral channel).
#[derive(Debug, Clone, Default)]
pub struct ChannelDirs {
    pub park: Option<PathBuf>,
    pub dead: Option<PathBuf>,
}

/// What a channel shares with its topic.
#[derive(Debug)]
pub struct TopicLink<I: Io = UringIo> {
    pub name: String,
    pub store: Rc<Store<I>>,
    pub paused: Rc<Cell<bool>>,
    /// The topic's log end when it was paused.
    pub pause_at: Rc<Cell<u64>>,
    /// The topic's place on the lists of what the periodic saves visit.
    pub due: Rc<crate::broker::due::TopicDue>,
}

impl<I: Io> Channel<I> {
    pub fn new(
        name: String,
        topic: TopicLink<I>,
        cfg: Rc<ChannelConfig>,
        start: Position,
        dirs: ChannelDirs,
        io: I,
    ) -> Rc<Self> {
        let TopicLink {
            name: topic_name,
            store,
            paused: topic_paused,
            pause_at: topic_pause_at,
            due: topic_due,
        } = topic;
        let ephemeral = crate::protocol::is_ephemeral(&name);
        let e2e = super::e2e::E2eLatency::new(&cfg.e2e, cfg.clock);
        let park_dir = dirs.park.filter(|_| !ephemeral);
        let dead_dir = dirs.dead.filter(|_| !ephemeral);
        let rollback_gen = store.rollback_gen();
        let max_attempts = cfg.max_attempts;
        let ttl_ns = u64::try_from(cfg.message_ttl.as_nanos()).unwrap_or(u64::MAX);
        Rc::new_cyclic(|me| Self {
            name,
            topic_name,
            ephemeral,
            store,
            topic_paused,
            topic_pause_at,
            topic_due,
            paused: Cell::new(false),
            cfg,
            state: RefCell::new(State {
                read_pos: start,
                rollback_gen,
                ..State::default()
            }),
            counters: ChannelCounters::default(),
            e2e,
            wake_dispatch: super::wake::Wake::new(),
            wake_timer: Notify::new(),
            park_dir,
            park: RefCell::new(None),
            park_lock: tokio::sync::Mutex::new(()),
            dead_dir,
            dead_log: RefCell::new(None),
            dead: RefCell::new(dead::DeadBook::default()),
            dead_task: Cell::new(false),
            me: me.clone(),
            dead_write_lock: tokio::sync::Mutex::new(()),
            dead_op_lock: tokio::sync::Mutex::new(()),
            overrides: Cell::new(SnapConfig::default()),
            max_attempts: Cell::new(max_attempts),
            ttl_ns: Cell::new(ttl_ns),
            io,
            dirty: Cell::new(true),
            dirty_recent: Cell::new(true),
            generation: Cell::new(0),
            lwm_hint: Cell::new(start),
            lag_since: Cell::new(None),
            persisted_lwm: Cell::new(None),
            save_lock: tokio::sync::Mutex::new(()),
            recent_due: Cell::new(None),
            deleted: Cell::new(false),
        })
    }

    /// Starts the dispatcher and timer tasks (they end when the channel is deleted; the
    /// dead-letter task starts when a message dies, see [`Channel::die`]).
    pub fn start(self: &Rc<Self>) {
        use tracing::Instrument as _;
        let span = self.span();
        crate::broker::spawn(Rc::clone(self).dispatch_loop().instrument(span.clone()));
        crate::broker::spawn(Rc::clone(self).timer_loop().instrument(span));
    }

    /// What the channel's tasks log under.
    fn span(&self) -> tracing::Span {
        tracing::info_span!("channel", topic = %self.topic_name, channel = %self.name)
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

    /// The state changed: to be saved (at the next ~100 ms save, and at the next sync point).
    fn mark_dirty(&self) {
        self.dirty.set(true);
        self.dirty_recent.set(true);
        self.topic_due.changed();
    }

    // ----- consumers -------------------------------------------------------------------------

    pub fn add_consumer(&self, consumer: Rc<dyn Consumer>) -> Result<(), TooManyConsumers> {
        let mut st = self.state.borrow_mut();
        let max = self.cfg.max_channel_consumers;
        if max != 0 && st.consumers.len() as u64 >= max {
            return Err(TooManyConsumers {
                topic: self.topic_name.clone(),
                channel: self.name.clone(),
                max,
            });
        }
        st.consumers.push(consumer);
        drop(st);
        self.wake();
        Ok(())
    }

    /// Removes a consumer and requeues everything it had in flight (a message that has used
    /// its attempts goes to the dead letters: a consumer that crashes on it counts). Returns
    /// how many remain.
    pub fn remove_consumer(&self, client_id: u64) -> usize {
        let mut dying = Vec::new();
        let mut st = self.state.borrow_mut();
        st.consumers.retain(|c| c.id() != client_id);
        let mut owned: Vec<MessageId> = st
            .in_flight
            .iter()
            .filter(|(_, f)| f.client_id == client_id)
            .map(|(id, _)| *id)
            .collect();
        // In log order, so that reading them again is sequential.
        owned.sort_by_key(|id| st.in_flight.get(id).map(|f| f.pending.key()));
        for id in owned {
            if let Some(f) = st.in_flight.remove(&id) {
                if self.attempts_spent(f.pending.attempts) {
                    dying.push(f.pending);
                } else {
                    st.requeue_now(f.pending);
                }
            }
        }
        let left = st.consumers.len();
        if left == 0 {
            // Nobody to read ahead for: let the read-ahead's buffer go.
            st.drop_read_ahead();
        }
        drop(st);
        for p in dying {
            self.die(p, Reason::MaxAttempts, None);
        }
        self.mark_dirty();
        self.wake();
        left
    }

    pub fn consumers(&self) -> Vec<Rc<dyn Consumer>> {
        self.state.borrow().consumers.clone()
    }

    /// The ids of its consumers, in the order they subscribed.
    pub fn consumer_ids(&self) -> Vec<u64> {
        self.state
            .borrow()
            .consumers
            .iter()
            .map(|c| c.id())
            .collect()
    }

    /// The consumer with this id, if it consumes this channel.
    fn consumer(&self, id: u64) -> Option<Rc<dyn Consumer>> {
        let st = self.state.borrow();
        st.consumers.iter().find(|c| c.id() == id).cloned()
    }

    // ----- FIN / REQ / TOUCH -----------------------------------------------------------------

    pub fn finish(&self, client: &dyn Consumer, id: &MessageId) -> Result<(), InFlightError> {
        let f = self.take_in_flight(client, id)?;
        self.e2e.record(f.timestamp_ns);
        self.mark_dirty();
        Ok(())
    }

    /// REQ: `delay` already clamped to `--max-req-timeout` by the caller.
    pub fn requeue(
        &self,
        client: &dyn Consumer,
        id: &MessageId,
        delay: Duration,
    ) -> Result<(), InFlightError> {
        let f = self.take_in_flight(client, id)?;
        self.counters
            .requeue_count
            .set(self.counters.requeue_count.get() + 1);
        if self.attempts_spent(f.pending.attempts) {
            self.die(f.pending, Reason::MaxAttempts, None);
            self.wake();
            return Ok(());
        }
        let mut st = self.state.borrow_mut();
        if delay.is_zero() {
            st.requeue_now(f.pending);
        } else {
            let due = Instant::now() + delay;
            let due_ns = self
                .cfg
                .clock
                .now_ns()
                .saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
            st.defer(f.pending, due, due_ns);
            drop(st);
            self.timer_wanted(due);
        }
        self.mark_dirty();
        self.wake();
        Ok(())
    }

    /// TOUCH: a new deadline of now + the client's msg timeout, capped at delivery + max.
    pub fn touch(
        &self,
        client: &dyn Consumer,
        id: &MessageId,
        msg_timeout: Duration,
    ) -> Result<(), InFlightError> {
        let mut st = self.state.borrow_mut();
        let f = st.in_flight.get_mut(id).ok_or(InFlightError::NotInFlight)?;
        if f.client_id != client.id() {
            return Err(InFlightError::NotOwner);
        }
        let cap = f.delivered_at + self.cfg.max_msg_timeout;
        let deadline = (Instant::now() + msg_timeout).min(cap);
        f.deadline = deadline;
        st.in_flight_deadlines.push(Reverse((deadline, *id)));
        st.compact_in_flight_deadlines();
        Ok(())
    }

    /// Removes an in-flight message of `client`. A client that was at its RDY limit can take
    /// more now: the dispatcher and the client's writer are woken then, and only then.
    fn take_in_flight(
        &self,
        client: &dyn Consumer,
        id: &MessageId,
    ) -> Result<InFlight, InFlightError> {
        let mut st = self.state.borrow_mut();
        let f = st.in_flight.remove(id).ok_or(InFlightError::NotInFlight)?;
        if f.client_id != client.id() {
            st.in_flight.insert(*id, f);
            return Err(InFlightError::NotOwner);
        }
        drop(st);
        if client.release() {
            self.wake();
        }
        Ok(f)
    }

    // ----- empty, depth, low-water mark --------------------------------------------------------

    /// Drops everything queued for this channel (HTTP `/channel/empty`, nsqd's `Channel.Empty`):
    /// the cursor jumps to the topic's end; requeued, deferred and in-flight messages are dropped
    /// (a later FIN of one of those gets `E_FIN_FAILED`, as with nsqd).
    pub fn empty(&self) {
        let end = self.store.end();
        let mut st = self.state.borrow_mut();
        st.prefetch.clear();
        st.skip.clear();
        st.taken_ahead.clear();
        st.read_pos = end;
        st.requeued.clear();
        st.deferred.clear();
        st.deferred_deadlines.clear();
        st.in_flight.clear();
        st.in_flight_deadlines.clear();
        st.reread.clear();
        // Going to the dead letters too: their letters may still be written, as if they had
        // died a moment earlier.
        st.retain_dying(|_| false);
        st.epoch += 1;
        let consumers = st.consumers.clone();
        drop(st);
        for c in consumers {
            c.release_all();
        }
        self.mark_dirty();
        self.wake();
    }

    /// Messages waiting for this channel: unread in the store (less what it took ahead or
    /// skips), plus requeued. Deferred and in-flight ones are counted apart, as nsqd does.
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
        (unread + st.requeued.len() as u64).saturating_sub(st.taken_ahead.len() as u64)
    }

    /// The seq of the next record this channel will take from the topic's log.
    pub fn cursor_seq(&self) -> u64 {
        self.state.borrow().cursor().seq
    }

    pub fn in_flight_count(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    /// Bytes of records the channel holds: its read-ahead and its re-read window (bounded by
    /// [`READ_AHEAD_BYTES_MAX`] and [`REREAD_BYTES_MAX`], or one record if it is larger).
    pub fn held_bytes(&self) -> (usize, usize) {
        let st = self.state.borrow();
        let bytes = |records: &VecDeque<Record>| records.iter().map(|r| r.data.len()).sum();
        (bytes(&st.prefetch), bytes(&st.reread))
    }

    pub fn deferred_count(&self) -> usize {
        self.state.borrow().deferred.len()
    }

    /// The oldest record of the topic's log this channel still needs (parked messages do not
    /// count: their records are in the channel's park log).
    pub fn low_water_mark(&self) -> Position {
        let lwm = self.state.borrow().low_water_mark();
        self.lwm_hint.set(lwm);
        lwm
    }

    /// A position at or below the low-water mark, without looking at every outstanding message
    /// (see [`Channel::low_water_mark`] for the exact one).
    pub fn low_water_mark_hint(&self) -> Position {
        self.lwm_hint.get()
    }

    /// Rewinds the cursor to `to`, an earlier record of the topic's log: the channel delivers
    /// again everything from there, finished or not. What is in flight, deferred or requeued
    /// stays so (a message may come twice: NSQ is at-least-once). A rewind never moves the
    /// cursor forward: a channel whose cursor is before `to` delivers everything from there
    /// anyway, and jumping would skip messages it has not delivered yet.
    pub fn rewind(&self, to: Position) {
        let mut st = self.state.borrow_mut();
        if to.seq >= st.cursor().seq {
            return;
        }
        st.prefetch.clear();
        st.reread.clear();
        st.read_pos = to;
        // Taken-ahead records the cursor now starts past stay deferred; nothing to pass over.
        st.taken_ahead = st.taken_ahead.split_off(&to.seq);
        drop(st);
        self.pass_skipped();
        if to.seq < self.lwm_hint.get().seq {
            self.lwm_hint.set(to);
        }
        self.mark_dirty();
        self.wake();
    }

    /// What the topic's log must keep for this channel: everything a restart could resume from
    /// (the low-water mark of the last durable save, or the live one if lower or never saved).
    pub fn retention_floor(&self) -> Position {
        let live = self.low_water_mark();
        match self.persisted_lwm.get() {
            Some(saved) if saved.seq < live.seq => saved,
            _ => live,
        }
    }

    /// How far this channel may read: the topic's end, or where it was paused.
    fn readable_end_seq(&self, end_seq: u64) -> u64 {
        if self.topic_paused.get() {
            end_seq.min(self.topic_pause_at.get())
        } else {
            end_seq
        }
    }

    // ----- the channel's own logs ------------------------------------------------------------

    /// The logs this channel keeps beside its topic's, those open now: its park log (a log of
    /// another kind, such as dead letters, is one more line here). A copy of the data directory
    /// (`GET /snapshot`) takes each with the channel's state.
    pub fn own_logs(&self) -> Vec<Log<I>> {
        let mut logs = Vec::new();
        logs.extend(self.park.borrow().clone());
        logs.extend(self.dead_log.borrow().clone());
        logs
    }

    /// Opens every own log that exists on disk and is not open yet (they open lazily: after a
    /// restart, a channel's state may refer to records of a log nobody has opened), so that
    /// [`Channel::own_logs`] names every log the state may refer to.
    pub async fn open_own_logs(&self) -> Result<(), ringsq_storage::Error> {
        self.open_park_log_on_disk().await?;
        if let Some(dir) = self.dead_dir.clone() {
            let exists = self
                .io
                .dir_exists(&dir)
                .await
                .map_err(|e| ringsq_storage::Error::io("stat", &dir, e))?;
            if exists {
                self.dead_log().await?;
            }
        }
        Ok(())
    }

    // ----- DPUB ------------------------------------------------------------------------------

    /// A DPUB'd message was just appended at `pos`: it is deferred for this channel at once (as
    /// nsqd puts it in every channel's deferred queue), and the cursor will pass over its record.
    pub fn take_deferred_ahead(&self, pos: Position, deliver_at_ns: u64) {
        let now_ns = self.cfg.clock.now_ns();
        let due = Instant::now() + Duration::from_nanos(deliver_at_ns.saturating_sub(now_ns));
        let p = Pending {
            source: Source::Topic,
            pos,
            attempts: 0,
        };
        let mut st = self.state.borrow_mut();
        if pos.seq < st.read_pos.seq {
            // Already passed (cannot happen for a new record): the cursor's own path defers it.
            return;
        }
        st.taken_ahead.insert(pos.seq);
        st.defer(p, due, deliver_at_ns);
        drop(st);
        self.timer_wanted(due);
        self.mark_dirty();
    }
}

impl State {
    /// Every outstanding message, with when it is due (wall-clock ns; 0 = now or in flight):
    /// those waiting in the channel and those going to the dead letters.
    fn outstanding(&self) -> impl Iterator<Item = (Pending, u64)> + '_ {
        let dying = self.dying.iter().map(|d| (d.pending, 0));
        self.waiting().chain(dying)
    }

    /// The outstanding messages in flight, deferred or requeued (not those dying).
    fn waiting(&self) -> impl Iterator<Item = (Pending, u64)> + '_ {
        let in_flight = self.in_flight.values().map(|f| (f.pending, 0));
        let deferred = self.deferred.values().map(|(p, _, due_ns)| (*p, *due_ns));
        let requeued = self.requeued.iter().map(|p| (*p, 0));
        in_flight.chain(deferred).chain(requeued)
    }

    fn low_water_mark(&self) -> Position {
        let cursor = self.cursor();
        self.outstanding()
            .filter(|(p, _)| p.source == Source::Topic && p.pos.seq < cursor.seq)
            .map(|(p, _)| p.pos)
            .min()
            .unwrap_or(cursor)
    }

    /// The next record this channel will take from the store.
    fn cursor(&self) -> Position {
        self.prefetch.front().map_or(self.read_pos, |r| r.pos)
    }

    /// Forgets the read-ahead: the cursor goes back to its first record (read again later).
    fn drop_read_ahead(&mut self) {
        if let Some(front) = self.prefetch.front() {
            self.read_pos = front.pos;
        }
        self.prefetch = VecDeque::new();
        self.reread = VecDeque::new();
    }

    fn requeue_now(&mut self, p: Pending) {
        self.requeued.push_back(p);
    }

    /// Back to the head of the queue (taken, but no client was ready after all).
    fn requeue_front(&mut self, p: Pending) {
        self.requeued.push_front(p);
    }

    fn defer(&mut self, p: Pending, due: Instant, due_ns: u64) {
        let key = p.key();
        self.deferred_deadlines.push(Reverse((due, key)));
        self.deferred.insert(key, (p, due, due_ns));
        self.compact_deferred_deadlines();
    }

    /// Drops stale entries of the in-flight deadline heap once they outnumber the live ones
    /// (finished messages leave theirs behind): memory follows what is in flight, not the
    /// message rate.
    fn compact_in_flight_deadlines(&mut self) {
        if self.in_flight_deadlines.len() <= 2 * self.in_flight.len() + HEAP_SLACK_ENTRIES {
            return;
        }
        self.in_flight_deadlines = self
            .in_flight
            .iter()
            .map(|(id, f)| Reverse((f.deadline, *id)))
            .collect();
    }

    fn compact_deferred_deadlines(&mut self) {
        if self.deferred_deadlines.len() <= 2 * self.deferred.len() + HEAP_SLACK_ENTRIES {
            return;
        }
        self.deferred_deadlines = self
            .deferred
            .iter()
            .map(|(key, (_, due, _))| Reverse((*due, *key)))
            .collect();
    }

    /// Records from `to` on of the topic's log were rolled back (a full disk: appended, never
    /// written, and their seqs go to later appends): whatever this channel took from them is
    /// gone, and the cursor goes back to read what takes their place. Returns how many
    /// outstanding messages went, and the clients that had one of them in flight.
    fn forget_rolled_back(&mut self, to: Position) -> (usize, Vec<u64>) {
        let seq = to.seq;
        let gone_from = |p: &Pending| p.source == Source::Topic && p.pos.seq >= seq;
        let before = self.deferred.len() + self.in_flight.len() + self.requeued.len();
        self.retain_dying(|d| !gone_from(&d.pending));
        self.deferred.retain(|_, (p, _, _)| !gone_from(p));
        let mut clients = Vec::new();
        self.in_flight.retain(|_, f| {
            let gone = gone_from(&f.pending);
            if gone {
                clients.push(f.client_id);
            }
            !gone
        });
        self.requeued.retain(|p| !gone_from(p));
        let after = self.deferred.len() + self.in_flight.len() + self.requeued.len();
        let _gone_ahead = self.taken_ahead.split_off(&seq);
        self.prefetch.retain(|r| r.pos.seq < seq);
        self.reread.clear();
        if self.read_pos.seq > seq {
            self.read_pos = to;
        }
        (before - after, clients)
    }
}
