//! A channel's saved state: its format on disk, how it is taken, saved and restored.
//!
//! The state is the read cursor, every outstanding message (where its record is, how often it
//! was delivered, when a deferred one is due) and the ranges the cursor skips. Two files hold it:
//!
//! | file | written | survives |
//! | --- | --- | --- |
//! | `<channel>.channel` | at each sync point (`--sync-timeout`), at create and close: temp file, fdatasync, rename, directory fsync | power cuts |
//! | `<channel>.channel.recent` | every ~100 ms while the state changes: temp file and rename, no fsync | `kill -9` |
//!
//! At start the newest readable of the two (by `generation`) is restored, so a `kill -9`
//! delivers again only what was finished in the last ~100 ms, and a power cut what was finished
//! since the last sync point. Neither ever loses a message:
//!
//! - a saved cursor may point past what the topic's log kept after a crash (the log is written
//!   and synced on its own schedule): restore resumes at the log's end, so the records that take
//!   those seqs are read, and outstanding entries past the end (lost with the log's tail) go;
//! - the topic's log keeps every record the last *durable* state needs
//!   ([`Channel::retention_floor`]), whatever the newer recent state says;
//! - a parked copy is fsynced before any state refers to it.
//!
//! - a message moving to the dead letters (`dead.rs`) stays outstanding until its dead-letter
//!   record is fsynced; a state saved after that says how far the dead letters went (dead end),
//!   and restore reads the few dead-letter records written since: their messages are no longer
//!   outstanding (never both in the channel and in the dead letters).
//!
//! # Format (version 3; all integers little-endian)
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `RINGSQCH` |
//! | 8..12 | version u32 = 3 |
//! | 12..20 | generation u64 (higher is newer) |
//! | 20..28 | cursor seq u64 |
//! | 28..36 | cursor offset u64 |
//! | 36..40 | outstanding count u32 `n` |
//! | 40..44 | skip count u32 `k` |
//! | 44.. | `n` × 27 bytes: source u8 (0 topic log, 1 park log), attempts u16, seq u64, offset u64, deliver-at u64 (Unix ns; 0 = due now) |
//! | .. | `k` × 24 bytes: from seq u64, to seq u64, to offset u64 |
//! | .. (52 bytes) | dead end seq u64 + offset u64 (the dead-letter log's end as of this state), dead floor seq u64 + offset u64 (every dead letter below it is removed), max-attempts override: present u8 (0/1) + u16, message-TTL override: present u8 (0/1) + ns u64, removed range count u32 `r`, taken-ahead count u32 `t` |
//! | .. | `r` × 24 bytes: dead letters removed one by one (requeued or emptied), `[from seq u64, to)` with to seq u64, to offset u64 |
//! | .. | `t` × 8 bytes: seq u64 of a topic record at or past the cursor this channel already took (the cursor passes over it) |
//! | last 4 | CRC32C of every byte before |
//!
//! A topic-log entry at or past the cursor is a message taken ahead of it (a DPUB deferred at
//! publish): the cursor passes over its record, as over each taken-ahead seq (which also covers
//! a taken-ahead message finished or dead before the cursor got there). Version 2 files (the
//! same without the version 3 part) and version 1 files (JSON, written by earlier ringsq) are
//! still read.

use super::dead::DeadSince;
use super::{Channel, Key, Pending, Source, State};
use ringsq_storage::{Io, Position};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

pub const CHANNEL_SNAPSHOT_VERSION: u32 = 3;
/// The version before dead letters (no version 3 part).
const VERSION_2: u32 = 2;
const MAGIC: &[u8; 8] = b"RINGSQCH";
const HEADER_BYTES: usize = 44;
const OUTSTANDING_BYTES: usize = 27;
const SKIP_BYTES: usize = 24;
/// The fixed part of version 3 (dead end, floor, the two overrides, the two counts).
const V3_FIXED_BYTES: usize = 16 + 16 + 1 + 2 + 1 + 8 + 4 + 4;
const REMOVED_BYTES: usize = 24;
const AHEAD_BYTES: usize = 8;
const CRC_BYTES: usize = 4;
/// The recent state is saved at most this often...
const RECENT_SAVE_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// ...and, for a large state, no faster than this many bytes per second.
const RECENT_SAVE_BYTES_PER_S: u64 = 8 << 20;

/// What a channel saves: enough to resume after a crash without losing anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub version: u32,
    /// Higher is newer (absent in version 1 files: 0).
    #[serde(default)]
    pub generation: u64,
    pub cursor: SnapPos,
    pub outstanding: Vec<SnapOutstanding>,
    /// Ranges of the topic's log ahead of the cursor that this channel skips (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<SnapSkip>,
    /// Topic records at or past the cursor this channel already took (version 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ahead: Vec<u64>,
    /// Where the dead letters stood (version 3).
    #[serde(default)]
    pub dead: SnapDead,
    /// The channel's own limits (`POST /channel/config`, version 3).
    #[serde(default)]
    pub config: SnapConfig,
}

/// A channel's dead letters as its state records them (the letters are in the dead-letter log).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapDead {
    /// The dead-letter log's end when the state was taken: records from here on were written
    /// after it (their messages may still be outstanding in this state).
    pub end: SnapPos,
    /// Every dead letter below it is removed.
    pub floor: SnapPos,
    /// Dead letters `[seq, to)` removed one by one above the floor, in order.
    pub removed: Vec<SnapSkip>,
}

/// A channel's own limits; `None`: the flag's value.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapConfig {
    pub max_attempts: Option<u16>,
    pub message_ttl_ns: Option<u64>,
}

/// Records `[seq, to)` of the topic's log that are not this channel's: what a paused topic held
/// back when it was emptied, or another channel's messages taken over from Go nsqd's disk queues.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapSkip {
    pub seq: u64,
    pub to: SnapPos,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapPos {
    pub seq: u64,
    pub offset: u64,
}

impl From<SnapPos> for Position {
    fn from(p: SnapPos) -> Self {
        Position {
            seq: p.seq,
            offset: p.offset,
        }
    }
}

impl From<Position> for SnapPos {
    fn from(p: Position) -> Self {
        SnapPos {
            seq: p.seq,
            offset: p.offset,
        }
    }
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

impl ChannelSnapshot {
    /// A state that starts at `cursor` with nothing outstanding.
    pub fn at(cursor: Position) -> Self {
        Self {
            version: CHANNEL_SNAPSHOT_VERSION,
            generation: 0,
            cursor: cursor.into(),
            outstanding: Vec::new(),
            skip: Vec::new(),
            ahead: Vec::new(),
            dead: SnapDead::default(),
            config: SnapConfig::default(),
        }
    }

    /// The oldest record of the topic's log this state needs.
    pub fn low_water_mark(&self) -> Position {
        let cursor = Position::from(self.cursor);
        self.outstanding
            .iter()
            .filter(|o| o.source == Source::Topic && o.seq < cursor.seq)
            .map(|o| Position {
                seq: o.seq,
                offset: o.offset,
            })
            .min()
            .unwrap_or(cursor)
    }

    /// This state as a copy of the topic's log ending at `end` sees it (`GET /snapshot`):
    /// records from `end` on are not in the copy, so the cursor stops there and nothing past it
    /// is outstanding or skipped — as a restart on that copy would take it, without reporting
    /// those records as lost in a crash.
    pub fn cut_at(&mut self, end: Position) {
        if self.cursor.seq > end.seq {
            self.cursor = end.into();
        }
        self.outstanding
            .retain(|o| o.source != Source::Topic || o.seq < end.seq);
        self.ahead.retain(|&seq| seq < end.seq);
        self.skip.retain(|s| s.seq < end.seq);
        for s in &mut self.skip {
            if s.to.seq > end.seq {
                s.to = end.into();
            }
        }
    }

    /// The version 3 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_BYTES
                + OUTSTANDING_BYTES * self.outstanding.len()
                + SKIP_BYTES * self.skip.len()
                + V3_FIXED_BYTES
                + REMOVED_BYTES * self.dead.removed.len()
                + AHEAD_BYTES * self.ahead.len()
                + CRC_BYTES,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&CHANNEL_SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.cursor.seq.to_le_bytes());
        out.extend_from_slice(&self.cursor.offset.to_le_bytes());
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        out.extend_from_slice(&count(self.outstanding.len()));
        out.extend_from_slice(&count(self.skip.len()));
        for o in &self.outstanding {
            out.push(match o.source {
                Source::Topic => 0,
                Source::Park => 1,
            });
            out.extend_from_slice(&o.attempts.to_le_bytes());
            out.extend_from_slice(&o.seq.to_le_bytes());
            out.extend_from_slice(&o.offset.to_le_bytes());
            out.extend_from_slice(&o.deliver_at_ns.to_le_bytes());
        }
        for s in &self.skip {
            out.extend_from_slice(&s.seq.to_le_bytes());
            out.extend_from_slice(&s.to.seq.to_le_bytes());
            out.extend_from_slice(&s.to.offset.to_le_bytes());
        }
        for p in [self.dead.end, self.dead.floor] {
            out.extend_from_slice(&p.seq.to_le_bytes());
            out.extend_from_slice(&p.offset.to_le_bytes());
        }
        out.push(u8::from(self.config.max_attempts.is_some()));
        out.extend_from_slice(&self.config.max_attempts.unwrap_or(0).to_le_bytes());
        out.push(u8::from(self.config.message_ttl_ns.is_some()));
        out.extend_from_slice(&self.config.message_ttl_ns.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&count(self.dead.removed.len()));
        out.extend_from_slice(&count(self.ahead.len()));
        for s in &self.dead.removed {
            out.extend_from_slice(&s.seq.to_le_bytes());
            out.extend_from_slice(&s.to.seq.to_le_bytes());
            out.extend_from_slice(&s.to.offset.to_le_bytes());
        }
        for seq in &self.ahead {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a saved state: version 3 or 2 bytes, or a version 1 JSON file. `None` if the
    /// bytes are none of these (torn, damaged, foreign): never a panic, never an allocation the
    /// input's size does not bound.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.starts_with(MAGIC) {
            return serde_json::from_slice::<Self>(bytes)
                .ok()
                .filter(|s| s.version == 1);
        }
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(CRC_BYTES)?)?;
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body.get(MAGIC.len()..)?);
        let version = r.u32()?;
        if version != CHANNEL_SNAPSHOT_VERSION && version != VERSION_2 {
            return None;
        }
        let generation = r.u64()?;
        let cursor = r.pos()?;
        let n = usize::try_from(r.u32()?).ok()?;
        let k = usize::try_from(r.u32()?).ok()?;
        let v2_bytes = n
            .checked_mul(OUTSTANDING_BYTES)?
            .checked_add(k.checked_mul(SKIP_BYTES)?)?;
        let fits = if version == VERSION_2 {
            r.0.len() == v2_bytes
        } else {
            r.0.len() >= v2_bytes.checked_add(V3_FIXED_BYTES)?
        };
        if !fits {
            return None;
        }
        let outstanding = (0..n)
            .map(|_| r.outstanding())
            .collect::<Option<Vec<_>>>()?;
        let skip = (0..k).map(|_| r.range()).collect::<Option<Vec<_>>>()?;
        let mut snap = Self {
            version: CHANNEL_SNAPSHOT_VERSION,
            generation,
            cursor,
            outstanding,
            skip,
            ahead: Vec::new(),
            dead: SnapDead::default(),
            config: SnapConfig::default(),
        };
        if version == CHANNEL_SNAPSHOT_VERSION {
            r.version_3(&mut snap)?;
        }
        Some(snap)
    }
}

/// Little-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn pos(&mut self) -> Option<SnapPos> {
        Some(SnapPos {
            seq: self.u64()?,
            offset: self.u64()?,
        })
    }

    fn range(&mut self) -> Option<SnapSkip> {
        Some(SnapSkip {
            seq: self.u64()?,
            to: self.pos()?,
        })
    }

    fn outstanding(&mut self) -> Option<SnapOutstanding> {
        let source = match self.u8()? {
            0 => Source::Topic,
            1 => Source::Park,
            _ => return None,
        };
        Some(SnapOutstanding {
            source,
            attempts: self.u16()?,
            seq: self.u64()?,
            offset: self.u64()?,
            deliver_at_ns: self.u64()?,
        })
    }

    /// A presence byte: 0 or 1.
    fn present(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// The version 3 part (its fixed size already checked), which must end the bytes.
    fn version_3(&mut self, snap: &mut ChannelSnapshot) -> Option<()> {
        snap.dead.end = self.pos()?;
        snap.dead.floor = self.pos()?;
        let (present, n) = (self.present()?, self.u16()?);
        snap.config.max_attempts = present.then_some(n);
        let (present, ns) = (self.present()?, self.u64()?);
        snap.config.message_ttl_ns = present.then_some(ns);
        let r = usize::try_from(self.u32()?).ok()?;
        let t = usize::try_from(self.u32()?).ok()?;
        let rest = r
            .checked_mul(REMOVED_BYTES)?
            .checked_add(t.checked_mul(AHEAD_BYTES)?)?;
        if self.0.len() != rest {
            return None;
        }
        snap.dead.removed = (0..r).map(|_| self.range()).collect::<Option<Vec<_>>>()?;
        snap.ahead = (0..t).map(|_| self.u64()).collect::<Option<Vec<_>>>()?;
        Some(())
    }
}

/// The two saved states of a channel, as read at start (each `None` if missing or unreadable).
#[derive(Debug, Default)]
pub struct Saved {
    pub durable: Option<ChannelSnapshot>,
    pub recent: Option<ChannelSnapshot>,
}

impl Saved {
    /// Reads `<path>` and `<path>.recent`. A missing or unreadable file is `None` (said in the
    /// log); only an IO error other than "not found" fails.
    pub async fn read<I: Io>(io: &I, path: &Path) -> Result<Self, ringsq_storage::Error> {
        let recent_path = recent_path(path);
        let mut saved = Saved::default();
        for (file, slot) in [
            (path, &mut saved.durable),
            (&recent_path, &mut saved.recent),
        ] {
            if let Some(bytes) = ringsq_storage::read_small_file(io, file).await? {
                *slot = ChannelSnapshot::decode(&bytes);
                if slot.is_none() {
                    tracing::warn!("channel state {} is unreadable: ignored", file.display());
                }
            }
        }
        Ok(saved)
    }

    /// The newest readable state (the recent one on a tie).
    pub fn newest(&self) -> Option<&ChannelSnapshot> {
        match (&self.durable, &self.recent) {
            (Some(d), Some(r)) if d.generation > r.generation => Some(d),
            (_, Some(r)) => Some(r),
            (d, None) => d.as_ref(),
        }
    }

    /// What the topic's log must keep so that either state can be resumed from.
    pub fn low_water_mark(&self) -> Option<Position> {
        [&self.durable, &self.recent]
            .into_iter()
            .flatten()
            .map(ChannelSnapshot::low_water_mark)
            .min()
    }
}

/// Where the recent (unsynced) state of the channel whose durable state is `path` lives.
pub fn recent_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".recent");
    name.into()
}

impl<I: Io> Channel<I> {
    /// The state to save: everything as it is now. A cursor past the log's synced end is fine
    /// (see the module docs: restore resumes at the log's end).
    pub fn snapshot(&self) -> ChannelSnapshot {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.state_at(generation)
    }

    /// The state as it is now, for a copy of the data directory (`GET /snapshot`): the
    /// channel's own saves are left as they are (no new generation, nothing marked saved).
    pub fn state_for_copy(&self) -> ChannelSnapshot {
        self.state_at(self.generation.get())
    }

    fn state_at(&self, generation: u64) -> ChannelSnapshot {
        let st = self.state.borrow();
        ChannelSnapshot {
            version: CHANNEL_SNAPSHOT_VERSION,
            generation,
            cursor: st.cursor().into(),
            outstanding: st
                .outstanding()
                .map(|(p, deliver_at_ns)| SnapOutstanding {
                    source: p.source,
                    seq: p.pos.seq,
                    offset: p.pos.offset,
                    attempts: p.attempts,
                    deliver_at_ns,
                })
                .collect(),
            skip: st
                .skip
                .iter()
                .map(|&(seq, to)| SnapSkip { seq, to: to.into() })
                .collect(),
            ahead: st.taken_ahead.iter().copied().collect(),
            dead: self.dead.borrow().snap(),
            config: self.overrides.get(),
        }
    }

    /// Saves the state to `path` durably (fsynced); the topic's log may then drop what the state
    /// no longer needs.
    pub async fn save_durable(&self, path: &Path) -> Result<(), ringsq_storage::Error> {
        let _one_at_a_time = self.save_lock.lock().await;
        if self.deleted.get() {
            return Ok(());
        }
        self.dirty.set(false);
        self.dirty_recent.set(false);
        let snap = self.snapshot();
        let result = ringsq_storage::atomic_write(&self.io, path, &snap.encode()).await;
        match &result {
            Ok(()) => self.persisted_lwm.set(Some(snap.low_water_mark())),
            Err(_) => self.mark_dirty(),
        }
        result
    }

    /// Saves the state next to `path` without an fsync (what a `kill -9` would otherwise make a
    /// restart repeat), if it changed and its last save is not too recent for its size.
    pub async fn save_recent(&self, path: &Path) -> Result<(), ringsq_storage::Error> {
        let now = Instant::now();
        if !self.dirty_recent.get() || self.recent_due.get().is_some_and(|due| now < due) {
            return Ok(());
        }
        let _one_at_a_time = self.save_lock.lock().await;
        if self.deleted.get() {
            // Deleted while waiting for the lock: its files are gone and must stay gone.
            return Ok(());
        }
        self.dirty_recent.set(false);
        let bytes = self.snapshot().encode();
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let pace =
            Duration::from_nanos(len.saturating_mul(1_000_000_000) / RECENT_SAVE_BYTES_PER_S);
        self.recent_due
            .set(Some(now + pace.max(RECENT_SAVE_INTERVAL_MIN)));
        let result = ringsq_storage::replace_unsynced(&self.io, &recent_path(path), &bytes).await;
        if result.is_err() {
            self.dirty_recent.set(true);
        }
        result
    }

    /// Restores a saved state: the cursor (at most the log's end, which a crash may have moved
    /// back), and every outstanding message, by position only — due ones requeued, deferred ones
    /// deferred again; their records are read when they are delivered. Entries whose records the
    /// log no longer has are reported and dropped, and so are those that `dead` (the dead
    /// letters written after the state was saved) shows went to the dead letters.
    ///
    /// Returns whether the saved state (or a dead letter written since) refers past the log's
    /// end (records lost in a crash). It must then be saved again before the log takes new
    /// records: they take those seqs, and a later restart from the stale state would take them
    /// for the lost ones (skip them, or redeliver an outstanding entry from a record that is not
    /// its own).
    pub(crate) fn restore(&self, saved: &Saved, dead: &DeadSince) -> bool {
        let end = self.store.end();
        let dead_past_end = dead
            .keys
            .iter()
            .any(|&(source, seq)| source == Source::Topic && seq >= end.seq);
        let Some(snap) = saved.newest() else {
            self.dead.borrow_mut().restore(None, dead);
            self.pass_dead_ahead(dead);
            return dead_past_end;
        };
        self.set_overrides(snap.config);
        self.dead.borrow_mut().restore(Some(&snap.dead), dead);
        let first = self.store.first();
        let past_end = dead_past_end
            || snap.cursor.seq > end.seq
            || snap
                .outstanding
                .iter()
                .any(|o| o.source == Source::Topic && o.seq >= end.seq)
            || snap.skip.iter().any(|s| s.to.seq > end.seq)
            || snap.ahead.iter().any(|&seq| seq >= end.seq);
        self.generation.set(
            [&saved.durable, &saved.recent]
                .into_iter()
                .flatten()
                .map(|s| s.generation)
                .max()
                .unwrap_or(0),
        );
        self.persisted_lwm.set(saved.low_water_mark());
        let mut cursor = Position::from(snap.cursor);
        if cursor.seq > end.seq {
            tracing::warn!(topic = %self.topic_name, channel = %self.name,
                "resuming at seq {} (the log's end): records from there to seq {} were lost in a crash", end.seq, cursor.seq);
            cursor = end;
        } else if cursor.seq < first.seq {
            cursor = first;
        }
        let mut st = self.state.borrow_mut();
        st.read_pos = cursor;
        st.skip = snap
            .skip
            .iter()
            .map(|s| (s.seq, Position::from(s.to)))
            .filter(|&(seq, to)| seq < to.seq && seq < end.seq)
            .map(|(seq, to)| (seq, if to.seq > end.seq { end } else { to }))
            .collect();
        st.skip.make_contiguous().sort_by_key(|&(seq, _)| seq);
        st.taken_ahead = snap
            .ahead
            .iter()
            .copied()
            .filter(|&seq| seq >= cursor.seq && seq < end.seq)
            .collect();
        let now_ns = self.cfg.clock.now_ns();
        let lost = restore_outstanding(&mut st, snap, &dead.keys, (first, end, cursor), now_ns);
        drop(st);
        self.pass_dead_ahead(dead);
        if lost > 0 {
            tracing::warn!(topic = %self.topic_name, channel = %self.name,
                "{lost} outstanding message(s) are no longer in the log (lost in a crash before they were written)");
        }
        self.pass_skipped();
        self.low_water_mark();
        self.wake_timer.notify_one();
        self.wake();
        past_end
    }
}

/// Puts each outstanding entry of `snap` back (requeued or deferred), but those whose message
/// is among the dead letters (`dead`); returns how many refer to records the topic's log no
/// longer has. `(first, end, cursor)`: the topic log's first and end positions, the cursor.
fn restore_outstanding(
    st: &mut State,
    snap: &ChannelSnapshot,
    dead: &HashSet<Key>,
    (first, end, cursor): (Position, Position, Position),
    now_ns: u64,
) -> usize {
    let now = Instant::now();
    let mut lost = 0;
    for o in &snap.outstanding {
        let p = Pending {
            source: o.source,
            pos: Position {
                seq: o.seq,
                offset: o.offset,
            },
            attempts: o.attempts,
        };
        if dead.contains(&p.key()) {
            continue;
        }
        if o.source == Source::Topic {
            if o.seq < first.seq || o.seq >= end.seq {
                lost += 1;
                continue;
            }
            if o.seq >= cursor.seq {
                st.taken_ahead.insert(o.seq);
            }
        }
        if o.deliver_at_ns > now_ns {
            let due = now + Duration::from_nanos(o.deliver_at_ns - now_ns);
            st.defer(p, due, o.deliver_at_ns);
        } else {
            st.requeue_now(p);
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChannelSnapshot {
        ChannelSnapshot {
            version: CHANNEL_SNAPSHOT_VERSION,
            generation: 7,
            cursor: SnapPos {
                seq: 100,
                offset: 5000,
            },
            outstanding: vec![
                SnapOutstanding {
                    source: Source::Topic,
                    seq: 90,
                    offset: 4500,
                    attempts: 2,
                    deliver_at_ns: 0,
                },
                SnapOutstanding {
                    source: Source::Park,
                    seq: 3,
                    offset: 120,
                    attempts: 5,
                    deliver_at_ns: 1_700_000_000_000_000_000,
                },
            ],
            skip: vec![SnapSkip {
                seq: 120,
                to: SnapPos {
                    seq: 130,
                    offset: 6000,
                },
            }],
            ahead: vec![140, 150],
            dead: SnapDead {
                end: SnapPos {
                    seq: 9,
                    offset: 900,
                },
                floor: SnapPos {
                    seq: 2,
                    offset: 200,
                },
                removed: vec![SnapSkip {
                    seq: 4,
                    to: SnapPos {
                        seq: 6,
                        offset: 600,
                    },
                }],
            },
            config: SnapConfig {
                max_attempts: Some(0),
                message_ttl_ns: Some(3_000_000_000),
            },
        }
    }

    /// A state as version 2 wrote it: the version 3 bytes without their part, version 2.
    fn as_version_2(s: &ChannelSnapshot) -> Vec<u8> {
        let v3 = ChannelSnapshot {
            ahead: Vec::new(),
            dead: SnapDead::default(),
            ..s.clone()
        }
        .encode();
        let mut v2 = v3[..v3.len() - CRC_BYTES - V3_FIXED_BYTES].to_vec();
        v2[8..12].copy_from_slice(&VERSION_2.to_le_bytes());
        let crc = crc32c::crc32c(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        v2
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(ChannelSnapshot::decode(&s.encode()), Some(s));
        let empty = ChannelSnapshot::at(Position::default());
        assert_eq!(ChannelSnapshot::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn reads_version_2() {
        let s = sample();
        let old = ChannelSnapshot::decode(&as_version_2(&s)).unwrap();
        assert_eq!(
            old,
            ChannelSnapshot {
                ahead: Vec::new(),
                dead: SnapDead::default(),
                config: SnapConfig::default(),
                ..s
            }
        );
        // A version 2 file with version 3 bytes after it is not one.
        let mut bad = sample().encode();
        bad[8..12].copy_from_slice(&VERSION_2.to_le_bytes());
        let body = bad.len() - CRC_BYTES;
        let crc = crc32c::crc32c(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(ChannelSnapshot::decode(&bad), None);
    }

    #[test]
    fn an_override_of_zero_is_not_no_override() {
        let mut s = sample();
        s.config.max_attempts = None;
        let back = ChannelSnapshot::decode(&s.encode()).unwrap();
        assert_eq!(back.config.max_attempts, None);
        assert_eq!(back.config.message_ttl_ns, Some(3_000_000_000));
        assert_eq!(sample().config.max_attempts, Some(0));
    }

    #[test]
    fn a_cut_keeps_only_what_the_copy_holds() {
        let end = Position {
            seq: 95,
            offset: 4750,
        };
        let mut s = sample();
        s.cut_at(end);
        assert_eq!(Position::from(s.cursor), end);
        // The topic entry below the end stays; the parked one is not in the topic's log.
        assert_eq!(s.outstanding, sample().outstanding);
        assert!(s.skip.is_empty());
        let mut s = sample();
        s.cut_at(Position {
            seq: 125,
            offset: 6250,
        });
        assert_eq!(s.cursor, sample().cursor);
        assert_eq!(s.skip[0].to.seq, 125);
        let mut s = sample();
        s.cut_at(Position {
            seq: 80,
            offset: 4000,
        });
        assert_eq!(s.outstanding.len(), 1);
        assert_eq!(s.outstanding[0].source, Source::Park);
        // A state within the copy is left as it is.
        let mut s = sample();
        s.cut_at(Position {
            seq: 200,
            offset: 9000,
        });
        assert_eq!(s, sample());
    }

    #[test]
    fn any_damage_is_unreadable() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert_eq!(ChannelSnapshot::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert_eq!(ChannelSnapshot::decode(&b), None, "flip at {i}");
        }
        assert_eq!(ChannelSnapshot::decode(&[0u8; 64]), None);
    }

    #[test]
    fn reads_version_1_json() {
        let json = br#"{"version":1,"cursor":{"seq":10,"offset":400},"outstanding":[{"seq":4,"offset":160,"attempts":1,"deliver_at_ns":0}]}"#;
        let s = ChannelSnapshot::decode(json).unwrap();
        assert_eq!(s.generation, 0);
        assert_eq!(s.outstanding[0].source, Source::Topic);
        assert_eq!(s.low_water_mark().seq, 4);
    }

    #[test]
    fn the_newest_state_wins_and_both_are_kept() {
        let mut older = sample();
        older.generation = 3;
        older.cursor.seq = 50;
        older.outstanding.clear();
        let saved = Saved {
            durable: Some(older.clone()),
            recent: Some(sample()),
        };
        assert_eq!(saved.newest().map(|s| s.generation), Some(7));
        assert_eq!(saved.low_water_mark().map(|p| p.seq), Some(50));
        let saved = Saved {
            durable: Some(sample()),
            recent: Some(older),
        };
        assert_eq!(saved.newest().map(|s| s.generation), Some(7));
    }
}
