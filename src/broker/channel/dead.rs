//! Dead letters: the messages a channel gave up on — delivered `--max-attempts` times and then
//! requeued or timed out once more (reason `max_attempts`), or older than `--message-ttl` when
//! they would be delivered (reason `expired`) — kept in the channel's own dead-letter log
//! (`<channel>.dead/`, a `ringsq_storage::Log` like the park log) where an operator can list,
//! requeue or delete them (`/channel/dead*`).
//!
//! # Moving a message there, crash-safe
//!
//! A message that dies goes to the channel's *dying* list: it is still outstanding (every saved
//! state still has it). The channel's dead-letter task (woken like the timer task) appends one
//! record per dying message, fsyncs once for all of them, and only then removes them from the
//! channel, counts them and marks the state dirty. The state records the dead-letter log's end
//! as of each save ([`SnapDead::end`]); at restore the records from there to the log's end (only
//! those written since that save) are read, and every outstanding entry with the key of one of
//! them is dropped (a topic record at or past the cursor is passed over). So after a crash at any
//! moment each message is in the channel or in the dead letters, never neither and never both.
//!
//! # Removing letters (requeue, empty)
//!
//! The log is append-only; what is removed is recorded in the channel's state ([`DeadBook`]: a
//! floor below which everything is removed, and ranges removed one by one above it), saved
//! durably before the answer. A requeued letter's message is first appended to the channel's park
//! log and fsynced, then in one change of the state it becomes a requeued outstanding message
//! (attempts 0) and the letter is removed, then the state is saved durably: a crash before the
//! save leaves the letter listed (and an unused copy in the park log), never neither.
//!
//! # Memory and reads
//!
//! In memory: the dying list (at most [`DYING_MAX`] messages and [`DYING_BYTES_MAX`] of records
//! kept for them: delivery waits while it is full),
//! the book (two positions, and one range per run of letters removed one by one above the
//! floor: at most one per letter still listed, none when letters are removed oldest first or all
//! at once). Listing reads the log from its first retained record up to the letters it returns
//! (at most [`DEAD_LIST_LIMIT_MAX`]); after each removal the floor moves up past what is
//! removed at the bottom and the log drops its whole segments below it.
//!
//! # Record format (version 1; integers little-endian unless said)
//!
//! | bytes | field |
//! | --- | --- |
//! | 0 | version u8 = 1 |
//! | 1..3 | attempts u16: deliveries before it died |
//! | 3..11 | dead-at u64: Unix ns when it died |
//! | 11 | reason u8: 1 `max_attempts`, 2 `expired` |
//! | 12 | source u8 of the outstanding entry it came from: 0 topic log, 1 park log |
//! | 13..21 | seq u64 of that entry's record in its log |
//! | 21.. | the message as `StoredMessage` encodes it (`message.rs`: version, timestamp, id, deliver-at 0, body; big-endian there) |
//!
//! The fixed fields come first so that the message, whose length varies, is the rest of the
//! record. The storage framing (length, CRC32C, seq) is the log's.

use super::{Channel, Key, Pending, Source};
use crate::broker::message::{StoredMessage, MESSAGE_HEADER_BYTES};
use crate::protocol::MessageId;
use bytes::{BufMut, Bytes, BytesMut};
use ringsq_storage::{Error, Io, Log, LogConfig, Position, Record};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use super::persist::{SnapConfig, SnapDead, SnapSkip};

pub const DEAD_RECORD_VERSION: u8 = 1;
/// Bytes of a dead-letter record before its message.
pub const DEAD_HEADER_BYTES: usize = 21;
/// A dead-letter log's segments: letters are few; small segments are reclaimed sooner.
const DEAD_SEGMENT_BYTES_MAX: u64 = 8 << 20;
/// Letters are read back in order, rarely: a small read cache.
const DEAD_CACHE_BYTES_MAX: usize = 1 << 20;
/// Most messages waiting to be written to the dead letters; delivery waits while it is full...
pub const DYING_MAX: usize = 4096;
/// ...or while the records kept for them (expired messages, read at delivery) pass this.
pub const DYING_BYTES_MAX: usize = 8 << 20;
/// One read of the dead-letter log takes at most this many records...
const DEAD_READ_RECORDS_MAX: usize = 256;
/// ...and this many bytes.
const DEAD_READ_BYTES_MAX: usize = 1 << 20;
/// Most letters one listing returns (`limit` is capped here).
pub const DEAD_LIST_LIMIT_MAX: usize = 1000;
/// A listing returns this many letters when no `limit` is given.
pub const DEAD_LIST_LIMIT_DEFAULT: usize = 100;
/// Requeueing every letter moves this many at a time (one park-log fsync and one state save each).
const REQUEUE_BATCH_MAX: usize = 1024;

const _: () = assert!(DEAD_LIST_LIMIT_DEFAULT <= DEAD_LIST_LIMIT_MAX);

/// Why a message went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Delivered `max_attempts` times, then requeued or timed out again.
    MaxAttempts,
    /// Older than the message TTL when it would have been delivered.
    Expired,
}

impl Reason {
    fn code(self) -> u8 {
        match self {
            Reason::MaxAttempts => 1,
            Reason::Expired => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Reason::MaxAttempts),
            2 => Some(Reason::Expired),
            _ => None,
        }
    }

    /// The word the HTTP API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MaxAttempts => "max_attempts",
            Reason::Expired => "expired",
        }
    }
}

/// One record of a dead-letter log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRecord {
    pub message: StoredMessage,
    pub attempts: u16,
    pub dead_at_ns: u64,
    pub reason: Reason,
    /// The outstanding entry it came from (restore drops that entry if a state still has it).
    pub source: Source,
    pub seq: u64,
}

impl DeadRecord {
    pub fn encode(&self) -> Bytes {
        let m = &self.message;
        let mut out =
            BytesMut::with_capacity(DEAD_HEADER_BYTES + MESSAGE_HEADER_BYTES + m.body.len());
        out.put_u8(DEAD_RECORD_VERSION);
        out.put_u16_le(self.attempts);
        out.put_u64_le(self.dead_at_ns);
        out.put_u8(self.reason.code());
        out.put_u8(match self.source {
            Source::Topic => 0,
            Source::Park => 1,
        });
        out.put_u64_le(self.seq);
        out.put_slice(&m.encode());
        out.freeze()
    }

    /// A record's letter (its body shares the record's buffer); `None` for any bytes that are
    /// not one. Never panics.
    pub fn decode(bytes: &Bytes) -> Option<Self> {
        let header: &[u8; DEAD_HEADER_BYTES] = bytes.first_chunk()?;
        if header[0] != DEAD_RECORD_VERSION {
            return None;
        }
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(*header.get(at..at + 8)?.first_chunk()?))
        };
        let source = match header[12] {
            0 => Source::Topic,
            1 => Source::Park,
            _ => return None,
        };
        let message = StoredMessage::decode(&bytes.slice(DEAD_HEADER_BYTES..)).ok()?;
        Some(Self {
            message,
            attempts: u16::from_le_bytes([header[1], header[2]]),
            dead_at_ns: u64_at(3)?,
            reason: Reason::from_code(header[11])?,
            source,
            seq: u64_at(13)?,
        })
    }

    fn key(&self) -> Key {
        (self.source, self.seq)
    }
}

/// A message waiting for its dead-letter record to be fsynced (still outstanding meanwhile).
#[derive(Debug, Clone)]
pub(super) struct Dying {
    pub(super) pending: Pending,
    reason: Reason,
    dead_at_ns: u64,
    /// The message's record when it was at hand (expiry); else it is read again.
    record: Option<Bytes>,
}

impl super::State {
    /// Keeps the dying messages `keep` says (and the count of bytes they hold right).
    pub(super) fn retain_dying(&mut self, keep: impl Fn(&Dying) -> bool) {
        self.dying.retain(keep);
        self.dying_bytes = self
            .dying
            .iter()
            .map(|d| d.record.as_ref().map_or(0, Bytes::len))
            .sum();
    }
}

/// A dead letter as the HTTP API lists it (sendable: it may cross shards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: MessageId,
    pub attempts: u16,
    pub timestamp_ns: i64,
    pub dead_at_ns: u64,
    pub reason: Reason,
    pub body: Bytes,
}

/// `GET /channel/dead`: how many letters there are, and the oldest ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadList {
    pub count: u64,
    pub letters: Vec<DeadLetter>,
}

/// The limits in effect for a channel (its own, or the flags').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// 0: unlimited.
    pub max_attempts: u16,
    /// Zero: never.
    pub message_ttl: Duration,
}

/// What a channel knows of its dead letters beyond the log itself.
#[derive(Debug, Default)]
pub(super) struct DeadBook {
    /// Every record below is fsynced and its message is no longer outstanding.
    end: Position,
    /// Every letter below is removed.
    floor: Position,
    /// Letters removed one by one above the floor: from seq → end of the run. Disjoint, not
    /// adjacent, none starting at the floor.
    removed: BTreeMap<u64, Position>,
    /// Letters in `removed`.
    removed_count: u64,
    /// Letters an ephemeral channel gave up on (it keeps none: no files).
    dropped: u64,
}

impl DeadBook {
    /// Dead letters listed (for an ephemeral channel: those it dropped).
    pub(super) fn count(&self) -> u64 {
        self.end
            .seq
            .saturating_sub(self.floor.seq)
            .saturating_sub(self.removed_count)
            .saturating_add(self.dropped)
    }

    fn is_removed(&self, seq: u64) -> bool {
        seq < self.floor.seq
            || self
                .removed
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, to)| seq < to.seq)
    }

    /// Removes the letter at `seq` (whose record ends at `next`).
    fn remove(&mut self, seq: u64, next: Position) {
        if self.is_removed(seq) {
            return;
        }
        let mut from = seq;
        let mut to = next;
        // Joins the run that ends at `seq` and the one that starts at `next`.
        if let Some((&before, &end)) = self.removed.range(..seq).next_back() {
            if end.seq == seq {
                from = before;
                self.removed.remove(&before);
            }
        }
        if let Some(after) = self.removed.remove(&next.seq) {
            to = after;
        }
        self.removed.insert(from, to);
        self.removed_count += 1;
        self.settle_floor();
    }

    /// Removes every letter below `to` (all of them when `to` is the end).
    fn remove_below(&mut self, to: Position) {
        self.dropped = 0;
        if to.seq <= self.floor.seq {
            return;
        }
        let above = self.removed.split_off(&to.seq);
        for (from, end) in std::mem::replace(&mut self.removed, above) {
            self.removed_count = self.removed_count.saturating_sub(end.seq - from);
            if end.seq > to.seq {
                // A run across `to`: its part above stays.
                self.removed.insert(to.seq, end);
                self.removed_count += end.seq - to.seq;
            }
        }
        self.floor = to;
        self.settle_floor();
    }

    /// Moves the floor past a run of removed letters that starts at it.
    fn settle_floor(&mut self) {
        while let Some(to) = self.removed.remove(&self.floor.seq) {
            self.removed_count = self.removed_count.saturating_sub(to.seq - self.floor.seq);
            self.floor = to;
        }
    }

    pub(super) fn snap(&self) -> SnapDead {
        SnapDead {
            end: self.end.into(),
            floor: self.floor.into(),
            removed: self
                .removed
                .iter()
                .map(|(&seq, &to)| SnapSkip { seq, to: to.into() })
                .collect(),
        }
    }

    /// From a saved state's book (`None`: no readable state) and the log as it is now.
    pub(super) fn restore(&mut self, saved: Option<&SnapDead>, since: &DeadSince) {
        *self = DeadBook {
            end: since.end,
            floor: since.first,
            ..DeadBook::default()
        };
        let Some(saved) = saved else {
            return;
        };
        let floor = Position::from(saved.floor);
        if floor.seq > self.floor.seq && floor.seq <= self.end.seq {
            self.floor = floor;
        }
        // Runs in order and apart, as saved (anything else a file holds is cut to that).
        let mut above = self.floor.seq;
        for r in &saved.removed {
            let to = Position::from(r.to);
            // A run the log's start cuts keeps its part above it.
            let from = r.seq.max(above);
            if from < to.seq && to.seq <= self.end.seq {
                self.removed.insert(from, to);
                self.removed_count += to.seq - from;
                above = to.seq;
            }
        }
        self.settle_floor();
    }
}

/// The dead-letter log as a restart finds it: where it starts and ends, and the keys of the
/// messages whose letters were written after the saved state was taken.
#[derive(Debug, Default)]
pub struct DeadSince {
    pub(super) first: Position,
    pub(super) end: Position,
    pub(super) keys: HashSet<Key>,
}

/// How requeue and empty pick letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    All,
    Id(MessageId),
}

impl<I: Io> Channel<I> {
    // ----- limits ----------------------------------------------------------------------------

    /// The channel's own limits (`None`: the flag's); they take effect at once.
    pub(super) fn set_overrides(&self, config: SnapConfig) {
        self.overrides.set(config);
        let limits = self.limits();
        self.max_attempts.set(limits.max_attempts);
        self.ttl_ns
            .set(u64::try_from(limits.message_ttl.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Sets the channel's own limits (`None` leaves one as it is); saved with its state.
    pub fn configure(&self, max_attempts: Option<u16>, message_ttl: Option<Duration>) {
        let mut config = self.overrides.get();
        if let Some(n) = max_attempts {
            config.max_attempts = Some(n);
        }
        if let Some(ttl) = message_ttl {
            config.message_ttl_ns = Some(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
        }
        self.set_overrides(config);
        self.mark_dirty();
        // Messages held back by nothing but the old limits may go now (or die).
        self.wake();
    }

    /// The limits in effect.
    pub fn limits(&self) -> ChannelLimits {
        let own = self.overrides.get();
        ChannelLimits {
            max_attempts: own.max_attempts.unwrap_or(self.cfg.max_attempts),
            message_ttl: own
                .message_ttl_ns
                .map_or(self.cfg.message_ttl, Duration::from_nanos),
        }
    }

    /// A message delivered `attempts` times that comes back is not delivered again.
    pub(super) fn attempts_spent(&self, attempts: u16) -> bool {
        let max = self.max_attempts.get();
        max != 0 && attempts >= max
    }

    /// A message published at `timestamp_ns` is too old to be delivered (only called with a
    /// TTL set: no clock is read otherwise).
    pub(super) fn expired(&self, timestamp_ns: i64, ttl_ns: u64) -> bool {
        let now = self.cfg.clock.now_ns();
        let published = u64::try_from(timestamp_ns).unwrap_or(0);
        now.saturating_sub(published) > ttl_ns
    }

    // ----- dying -----------------------------------------------------------------------------

    /// `p` goes to the dead letters: it stays outstanding until its letter is on disk. An
    /// ephemeral channel (no files) drops it and counts it.
    pub(super) fn die(&self, p: Pending, reason: Reason, record: Option<Bytes>) {
        if self.dead_dir.is_none() {
            self.dead.borrow_mut().dropped += 1;
            tracing::debug!(topic = %self.topic_name, channel = %self.name,
                "dropping a message ({}): an ephemeral channel keeps no dead letters", reason.as_str());
            return;
        }
        let dead_at_ns = self.cfg.clock.now_ns();
        let mut st = self.state.borrow_mut();
        st.dying_bytes += record.as_ref().map_or(0, Bytes::len);
        st.dying.push(Dying {
            pending: p,
            reason,
            dead_at_ns,
            record,
        });
        drop(st);
        self.mark_dirty();
        self.start_dead_task();
    }

    /// Starts the dead-letter task unless it runs.
    fn start_dead_task(&self) {
        use tracing::Instrument as _;
        if self.dead_task.get() || self.deleted.get() {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            self.dead_task.set(true);
            crate::broker::spawn(me.dead_loop().instrument(self.span()));
        }
    }

    /// Delivery waits while this many messages wait for their dead-letter records.
    pub(super) fn dying_full(&self) -> bool {
        let st = self.state.borrow();
        st.dying.len() >= DYING_MAX || st.dying_bytes >= DYING_BYTES_MAX
    }

    /// The dead-letter task: writes what died, batch by batch; ends when nothing waits (or
    /// the channel is deleted).
    pub(super) async fn dead_loop(self: Rc<Self>) {
        while !self.deleted.get() && !self.state.borrow().dying.is_empty() {
            if let Err(e) = self.commit_dying().await {
                tracing::error!(topic = %self.topic_name, channel = %self.name,
                    "writing dead letters: {e} (retrying)");
                // Back off instead of spinning on a failing disk.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        self.dead_task.set(false);
    }

    /// Appends a letter for every dying message, fsyncs once, then takes them out of the
    /// channel. A message that can no longer be read back is dropped (and said so).
    pub async fn commit_dying(&self) -> Result<(), Error> {
        let _one_writer = self.dead_write_lock.lock().await;
        let batch = self.state.borrow().dying.clone();
        if batch.is_empty() {
            return Ok(());
        }
        let log = self.dead_log().await?;
        let mut done = HashSet::with_capacity(batch.len());
        let mut unreadable = 0usize;
        for d in &batch {
            let message = match &d.record {
                Some(data) => StoredMessage::decode(data).ok(),
                None => self.read_message(d.pending).await?,
            };
            done.insert(d.pending.key());
            let Some(message) = message else {
                unreadable += 1;
                continue;
            };
            let letter = DeadRecord {
                message: StoredMessage {
                    deliver_at_ns: 0,
                    ..message
                },
                attempts: d.pending.attempts,
                dead_at_ns: d.dead_at_ns,
                reason: d.reason,
                source: d.pending.source,
                seq: d.pending.pos.seq,
            };
            log.append(letter.encode())?;
        }
        log.sync().await?;
        if unreadable > 0 {
            tracing::error!(topic = %self.topic_name, channel = %self.name,
                "{unreadable} message(s) that died cannot be read back: dropped");
        }
        self.state
            .borrow_mut()
            .retain_dying(|d| !done.contains(&d.pending.key()));
        // Only this task appends (under the lock): the log's end is this batch's.
        self.dead.borrow_mut().end = log.end();
        self.mark_dirty();
        self.wake();
        Ok(())
    }

    /// The message of an outstanding entry, read again from its log; `None` if it can never be.
    async fn read_message(&self, p: Pending) -> Result<Option<StoredMessage>, Error> {
        let read = match p.source {
            Source::Topic => self.store.read(p.pos, 1, 1).await,
            Source::Park => match self.park_log().await {
                Some(log) => log.read(p.pos, 1, 1).await,
                None => return Ok(None),
            },
        };
        match read {
            Ok(records) => Ok(records
                .first()
                .filter(|r| r.pos == p.pos)
                .and_then(|r| StoredMessage::decode(&r.data).ok())),
            Err(e) if super::dispatch::is_permanent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ----- the log -----------------------------------------------------------------------------

    /// The channel's dead-letter log, opened on first use.
    pub(super) async fn dead_log(&self) -> Result<Log<I>, Error> {
        if let Some(log) = self.dead_log.borrow().clone() {
            return Ok(log);
        }
        let Some(dir) = self.dead_dir.clone() else {
            return Err(Error::Closed);
        };
        let config = LogConfig {
            segment_size_bytes_max: DEAD_SEGMENT_BYTES_MAX,
            cache_bytes_max: DEAD_CACHE_BYTES_MAX,
            record_size_max: self
                .cfg
                .park_log
                .record_size_max
                .saturating_add(u32::try_from(DEAD_HEADER_BYTES).unwrap_or(u32::MAX)),
            ..self.cfg.park_log.clone()
        };
        let (log, report) = Log::open(self.io.clone(), &dir, config).await?;
        tracing::info!(topic = %self.topic_name, channel = %self.name, "dead letters: {report}");
        // Opened meanwhile by another task: keep the first.
        let mut slot = self.dead_log.borrow_mut();
        Ok(slot.get_or_insert(log).clone())
    }

    /// A new channel that finds dead letters left by an earlier one of its name (its state file
    /// lost) keeps them, all listed: letters are never deleted but on request.
    pub(crate) async fn adopt_dead(&self) -> Result<(), Error> {
        let since = self.read_dead_since(None).await?;
        if since.end.seq > since.first.seq {
            tracing::warn!(topic = %self.topic_name, channel = %self.name,
                "found {} dead letter(s) of an earlier channel of this name: kept", since.end.seq - since.first.seq);
        }
        self.dead.borrow_mut().restore(None, &since);
        Ok(())
    }

    /// At start: opens the dead-letter log if the channel has one and reads the letters written
    /// after the state `saved_end` describes (only those: at most what died between two saves).
    pub(crate) async fn read_dead_since(
        &self,
        saved_end: Option<Position>,
    ) -> Result<DeadSince, Error> {
        let Some(dir) = &self.dead_dir else {
            return Ok(DeadSince::default());
        };
        let exists = self
            .io
            .dir_exists(dir)
            .await
            .map_err(|e| Error::io("stat", dir, e))?;
        if !exists {
            return Ok(DeadSince::default());
        }
        let log = self.dead_log().await?;
        let (first, end) = (log.first(), log.end());
        let mut since = DeadSince {
            first,
            end,
            keys: HashSet::new(),
        };
        let from = saved_end.filter(|p| p.seq >= first.seq && p.seq <= end.seq);
        self.scan_dead(&log, from.unwrap_or(first), end.seq, |_, letter| {
            if let Some(letter) = letter {
                since.keys.insert(letter.key());
            }
            true
        })
        .await?;
        Ok(since)
    }

    /// At start, after the state is restored: topic records at or past the cursor whose
    /// messages are among the letters written since the saved state (a DPUB taken ahead that
    /// expired) are passed over, not delivered again.
    pub(super) fn pass_dead_ahead(&self, since: &DeadSince) {
        let end = self.store.end().seq;
        let mut st = self.state.borrow_mut();
        let cursor = st.cursor().seq;
        for &(source, seq) in &since.keys {
            if source == Source::Topic && seq >= cursor && seq < end {
                st.taken_ahead.insert(seq);
            }
        }
    }

    /// Calls `visit` with every record of `log` from `from` to `end_seq` (and its letter, `None`
    /// if it is not one), in order, until `visit` says stop. Damaged records are skipped (said
    /// in the log).
    async fn scan_dead(
        &self,
        log: &Log<I>,
        from: Position,
        end_seq: u64,
        mut visit: impl FnMut(&Record, Option<DeadRecord>) -> bool,
    ) -> Result<(), Error> {
        let mut pos = from;
        while pos.seq < end_seq {
            let records = match log
                .read(pos, DEAD_READ_RECORDS_MAX, DEAD_READ_BYTES_MAX)
                .await
            {
                Ok(records) => records,
                Err(e @ Error::Corrupt { .. }) => {
                    let next = log.skip_damaged(pos).await?;
                    tracing::error!(topic = %self.topic_name, channel = %self.name,
                        "skipping {} damaged dead letter(s) from seq {}: {e}", next.seq.saturating_sub(pos.seq), pos.seq);
                    if next.seq <= pos.seq {
                        return Ok(());
                    }
                    pos = next;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = records.last() else {
                return Ok(());
            };
            pos = last.next_pos();
            for r in records.iter().take_while(|r| r.pos.seq < end_seq) {
                if !visit(r, DeadRecord::decode(&r.data)) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Where the first letter not removed may be, and the end of those on disk.
    fn dead_range(&self, log: &Log<I>) -> (Position, Position) {
        let book = self.dead.borrow();
        (book.floor.max(log.first()), book.end)
    }

    // ----- listing, requeue, empty -----------------------------------------------------------

    /// The count and the `limit` oldest letters (reading only up to them).
    pub async fn list_dead(&self, limit: usize) -> Result<DeadList, Error> {
        let count = self.dead.borrow().count();
        let mut letters = Vec::new();
        let log = self.dead_log.borrow().clone();
        if let (Some(log), true) = (log, limit > 0) {
            let (from, end) = self.dead_range(&log);
            self.scan_dead(&log, from, end.seq, |r, letter| {
                if let (Some(l), false) = (letter, self.dead.borrow().is_removed(r.pos.seq)) {
                    letters.push(DeadLetter {
                        id: l.message.id,
                        attempts: l.attempts,
                        timestamp_ns: l.message.timestamp_ns,
                        dead_at_ns: l.dead_at_ns,
                        reason: l.reason,
                        body: l.message.body,
                    });
                }
                letters.len() < limit
            })
            .await?;
        }
        Ok(DeadList { count, letters })
    }

    /// Deletes the letters `pick` names; their removal is on disk (the state saved at `path`)
    /// when this returns. Returns how many went.
    pub async fn empty_dead(&self, pick: Pick, path: Option<&Path>) -> Result<u64, Error> {
        let _one_at_a_time = self.dead_op_lock.lock().await;
        let log = self.dead_log.borrow().clone();
        let removed = match (pick, log) {
            (Pick::All, _) => {
                let mut book = self.dead.borrow_mut();
                let n = book.count();
                let end = book.end;
                book.remove_below(end);
                drop(book);
                n
            }
            (Pick::Id(_), None) => 0,
            (Pick::Id(id), Some(log)) => {
                let (from, end) = self.dead_range(&log);
                let mut found = Vec::new();
                self.scan_dead(&log, from, end.seq, |r, letter| {
                    if letter.is_some_and(|l| l.message.id == id)
                        && !self.dead.borrow().is_removed(r.pos.seq)
                    {
                        found.push((r.pos.seq, r.next_pos()));
                    }
                    true
                })
                .await?;
                let mut book = self.dead.borrow_mut();
                for &(seq, next) in &found {
                    book.remove(seq, next);
                }
                found.len() as u64
            }
        };
        if removed > 0 {
            self.mark_dirty();
            self.save_removal(path).await?;
        }
        Ok(removed)
    }

    /// Moves the letters `pick` names back into the channel (requeued, attempts starting over),
    /// [`REQUEUE_BATCH_MAX`] at a time: their messages are appended to the park log and fsynced,
    /// then they are requeued and the letters removed in one change; the state is saved durably
    /// at `path` once all are. A crash before that save leaves every letter listed (and unused
    /// copies in the park log): a letter requeued and delivered meanwhile may be requeued and
    /// delivered again, never lost. Returns how many went back.
    pub async fn requeue_dead(&self, pick: Pick, path: Option<&Path>) -> Result<u64, Error> {
        let _one_at_a_time = self.dead_op_lock.lock().await;
        let Some(log) = self.dead_log.borrow().clone() else {
            return Ok(0);
        };
        let (mut from, end) = self.dead_range(&log);
        let mut requeued = 0u64;
        loop {
            let mut batch = Vec::new();
            let mut next = from;
            self.scan_dead(&log, from, end.seq, |r, letter| {
                next = r.next_pos();
                let wanted = letter.filter(|l| {
                    !self.dead.borrow().is_removed(r.pos.seq)
                        && (pick == Pick::All || Pick::Id(l.message.id) == pick)
                });
                if let Some(l) = wanted {
                    batch.push((r.pos.seq, r.next_pos(), l.message));
                }
                batch.len() < REQUEUE_BATCH_MAX
            })
            .await?;
            let last = next.seq >= end.seq || batch.is_empty();
            requeued += self.requeue_batch(batch).await?;
            if last {
                break;
            }
            from = next;
        }
        let mut changed = requeued > 0;
        if pick == Pick::All && self.dead.borrow().floor.seq < end.seq {
            // What is left below the end could not be read (damaged): it goes too.
            self.dead.borrow_mut().remove_below(end);
            self.mark_dirty();
            changed = true;
        }
        if changed {
            self.save_removal(path).await?;
        }
        Ok(requeued)
    }

    /// One batch of [`Channel::requeue_dead`]: `(letter seq, its next position, message)`.
    async fn requeue_batch(
        &self,
        batch: Vec<(u64, Position, StoredMessage)>,
    ) -> Result<u64, Error> {
        if batch.is_empty() {
            return Ok(0);
        }
        // Not while parking runs: it drops park segments no outstanding message refers to.
        let _no_parking = self.park_lock.lock().await;
        let Some(park) = self.park_log().await else {
            return Err(Error::Closed);
        };
        let now = self.cfg.clock.now_timestamp_ns();
        let mut copies = Vec::with_capacity(batch.len());
        for (seq, next, message) in batch {
            // Delivered as if published now: its attempts and its age (the TTL) start over.
            let copy = StoredMessage {
                timestamp_ns: now,
                deliver_at_ns: 0,
                ..message
            };
            copies.push((seq, next, park.append(copy.encode())?));
        }
        park.sync().await?;
        let n = copies.len() as u64;
        {
            let mut st = self.state.borrow_mut();
            let mut book = self.dead.borrow_mut();
            for (seq, next, pos) in copies {
                st.requeue_now(Pending {
                    source: Source::Park,
                    pos,
                    attempts: 0,
                });
                book.remove(seq, next);
            }
        }
        self.mark_dirty();
        self.wake();
        Ok(n)
    }

    /// Saves the state durably after letters were removed, then lets the log drop the
    /// segments below the floor (only now: a state saved before still reads from there).
    async fn save_removal(&self, path: Option<&Path>) -> Result<(), Error> {
        if let Some(path) = path {
            self.save_durable(path).await?;
        }
        if let Some(log) = self.dead_log.borrow().clone() {
            log.retain_from(self.dead.borrow().floor.seq);
        }
        Ok(())
    }

    /// Dead letters listed (for an ephemeral channel: those it dropped).
    pub fn dead_count(&self) -> u64 {
        self.dead.borrow().count()
    }

    /// The dead-letter log, for the owner to close or destroy with the channel.
    pub fn take_dead_log(&self) -> Option<Log<I>> {
        self.dead_log.borrow_mut().take()
    }

    pub fn dead_dir(&self) -> Option<&Path> {
        self.dead_dir.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadRecord {
        DeadRecord {
            message: StoredMessage {
                id: MessageId::from_u64(0x1234),
                timestamp_ns: 1_700_000_000_000_000_000,
                deliver_at_ns: 0,
                body: Bytes::from_static(b"poison"),
            },
            attempts: 5,
            dead_at_ns: 1_700_000_001_000_000_000,
            reason: Reason::MaxAttempts,
            source: Source::Park,
            seq: 42,
        }
    }

    #[test]
    fn round_trip() {
        let l = letter();
        let bytes = l.encode();
        assert_eq!(bytes.len(), DEAD_HEADER_BYTES + MESSAGE_HEADER_BYTES + 6);
        assert_eq!(bytes[0], DEAD_RECORD_VERSION);
        assert_eq!(DeadRecord::decode(&bytes), Some(l.clone()));
        let expired = DeadRecord {
            reason: Reason::Expired,
            source: Source::Topic,
            message: StoredMessage {
                body: Bytes::new(),
                ..l.message
            },
            ..l
        };
        assert_eq!(DeadRecord::decode(&expired.encode()), Some(expired));
    }

    #[test]
    fn the_layout_is_as_documented() {
        let bytes = letter().encode();
        assert_eq!(&bytes[1..3], &5u16.to_le_bytes());
        assert_eq!(&bytes[3..11], &1_700_000_001_000_000_000u64.to_le_bytes());
        assert_eq!((bytes[11], bytes[12]), (1, 1));
        assert_eq!(&bytes[13..21], &42u64.to_le_bytes());
        assert_eq!(
            StoredMessage::decode(&bytes.slice(DEAD_HEADER_BYTES..)).ok(),
            Some(letter().message)
        );
    }

    #[test]
    fn any_other_bytes_are_not_a_letter() {
        let bytes = letter().encode();
        for cut in 0..DEAD_HEADER_BYTES + MESSAGE_HEADER_BYTES {
            assert_eq!(
                DeadRecord::decode(&bytes.slice(..cut)),
                None,
                "cut at {cut}"
            );
        }
        for (at, bad) in [(0, 2u8), (11, 0), (11, 3), (12, 2), (21, 9)] {
            let mut b = bytes.to_vec();
            b[at] = bad;
            assert_eq!(
                DeadRecord::decode(&Bytes::from(b)),
                None,
                "byte {at} = {bad}"
            );
        }
        // Arbitrary bytes never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            let _ = DeadRecord::decode(&Bytes::from(noise));
        }
    }

    fn pos(seq: u64) -> Position {
        Position {
            seq,
            offset: seq * 100,
        }
    }

    fn book(end: u64) -> DeadBook {
        DeadBook {
            end: pos(end),
            ..DeadBook::default()
        }
    }

    #[test]
    fn removals_keep_runs_and_move_the_floor() {
        let mut b = book(10);
        assert_eq!(b.count(), 10);
        b.remove(5, pos(6));
        b.remove(7, pos(8));
        assert_eq!((b.count(), b.removed.len()), (8, 2));
        b.remove(6, pos(7));
        assert_eq!((b.count(), b.removed.len()), (7, 1), "5..8 is one run");
        assert!(b.is_removed(6) && !b.is_removed(8) && !b.is_removed(4));
        b.remove(6, pos(7));
        assert_eq!(b.count(), 7, "removing twice counts once");
        b.remove(0, pos(1));
        assert_eq!(b.floor, pos(1));
        for seq in 1..5 {
            b.remove(seq, pos(seq + 1));
        }
        assert_eq!((b.floor, b.removed.len(), b.count()), (pos(8), 0, 2));
        b.remove_below(pos(10));
        assert_eq!((b.floor, b.count()), (pos(10), 0));
    }

    #[test]
    fn remove_below_keeps_the_part_of_a_run_above() {
        let mut b = book(20);
        b.remove(12, pos(13));
        b.remove(13, pos(14));
        b.remove(16, pos(17));
        b.remove_below(pos(13));
        assert_eq!(b.floor, pos(14), "the run 13..14 joins the floor");
        assert_eq!((b.removed.len(), b.count()), (1, 5));
    }

    #[test]
    fn a_restored_book_keeps_only_what_the_log_still_has() {
        let mut b = book(30);
        b.remove(3, pos(4));
        b.remove(20, pos(21));
        b.remove_below(pos(2));
        let saved = b.snap();
        let mut again = DeadBook::default();
        let since = DeadSince {
            first: pos(0),
            end: pos(30),
            keys: HashSet::new(),
        };
        again.restore(Some(&saved), &since);
        assert_eq!(again.snap(), saved);
        assert_eq!(again.count(), b.count());
        // The log lost its tail (a new log after damage): nothing past its end is kept.
        let short = DeadSince {
            first: pos(0),
            end: pos(10),
            keys: HashSet::new(),
        };
        again.restore(Some(&saved), &short);
        assert_eq!((again.floor, again.count()), (pos(2), 7));
        // Runs that overlap (no state of ours has them) are cut apart, never counted twice.
        let overlapping = SnapDead {
            end: pos(30).into(),
            floor: pos(0).into(),
            removed: [(5, 10), (7, 12), (3, 4)]
                .map(|(seq, to)| SnapSkip {
                    seq,
                    to: pos(to).into(),
                })
                .to_vec(),
        };
        again.restore(Some(&overlapping), &since);
        assert_eq!(again.count(), 30 - 7, "5..12 removed");
    }
}
