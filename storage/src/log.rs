//! The `Log` handle: the public API, the state shared with the writer task, and the waiters.
//!
//! Ownership: the writer task (`writer.rs`) owns the write position, the current segment file
//! and the write buffer; it alone changes `written`, `synced` and the segment table. `append` only
//! reserves a `Position` and queues the record (in the cache), synchronously, so the order of
//! `append` calls is the order in the log. Invariants (checked by tests):
//! `first <= synced <= written <= end`; every record with seq in `[cache front, end)` is in the
//! cache (records not yet written are never evicted); every record below `written` is in a
//! segment file.

use crate::error::{Error, Result};
use crate::files::{open_cached, Handle as FileHandle};
use crate::format::record_encoded_len;
use crate::io::Io;
use crate::position::{Position, Record};
use crate::recovery::{self, RecoveryReport, SegmentInfo};
use crate::{reader, writer};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// How many past ENOSPC roll-backs waiters can be checked against.
const ROLLBACKS_KEPT_MAX: usize = 64;

/// Tuning of a log; the defaults are nsqd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// nsqd `--max-bytes-per-file`: a segment rolls before a record would pass this size
    /// (header included). A larger record goes alone in its own segment.
    pub segment_size_bytes_max: u64,
    /// nsqd `--sync-every`: fdatasync once this many records were written since the last
    /// fdatasync (0 or 1: after every write).
    pub sync_every_records: u64,
    /// nsqd `--sync-timeout`: fdatasync at least this often while anything is unsynced.
    pub sync_timeout: Duration,
    /// Appends above this many bytes are refused; on disk a larger length is corruption.
    pub record_size_max: u32,
    /// Bytes of recently appended records kept in memory for tail readers.
    pub cache_bytes_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size_bytes_max: 100 * 1024 * 1024,
            sync_every_records: 2500,
            sync_timeout: Duration::from_secs(2),
            record_size_max: 1024 * 1024 + 64,
            cache_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// Counters of a log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Segment files.
    pub segments: usize,
    /// Bytes in segment files.
    pub bytes_on_disk: u64,
    /// Records stored or queued (`end - first`).
    pub records: u64,
    /// fdatasync calls on segment files.
    pub fsyncs: u64,
    /// Write calls on segment files (one per batch).
    pub writes: u64,
    /// Bytes written to segment files (headers included).
    pub bytes_written: u64,
    /// Bytes of records held in memory: the tail cache, and every record not yet written.
    pub cache_bytes: usize,
}

/// State shared by the handles and the writer task. Never borrowed across an `.await`.
#[derive(Debug)]
pub(crate) struct State {
    pub end: Position,
    pub written: Position,
    pub synced: Position,
    /// Records with seq below this were taken by the writer (written or being written).
    pub taken: u64,
    pub cache: VecDeque<Record>,
    pub cache_bytes: usize,
    /// Written records below this seq need not stay cached (see [`Log::uncache_below`]).
    pub cache_floor: u64,
    /// Oldest first; the last one is being written.
    pub segments: VecDeque<SegmentInfo>,
    pub error: Option<Error>,
    pub closing: bool,
    pub writer_done: bool,
    pub close_result: Option<Result<()>>,
    /// Highest seq a `wait_synced` caller is waiting for.
    pub sync_wanted: u64,
    /// Unwritten records a write failing for want of space keeps (`Log::keep_unwritten`).
    pub unwritten_kept_max: u64,
    /// Segments dropped by `retain_from` whose files the writer has yet to delete.
    pub doomed: Vec<SegmentInfo>,
    pub rollback_gen: u64,
    /// (generation, position rolled back to, error) of recent ENOSPC roll-backs.
    pub rollbacks: VecDeque<(u64, Position, Error)>,
    pub stats: LogStats,
}

impl State {
    /// Drops cached records that are written, oldest first, while over the budget or below the
    /// readers' floor.
    pub fn evict(&mut self, cache_bytes_max: usize) {
        while self.cache_bytes > cache_bytes_max
            || self
                .cache
                .front()
                .is_some_and(|r| r.pos.seq < self.cache_floor)
        {
            match self.cache.front() {
                Some(r) if r.pos.seq < self.written.seq => {
                    self.cache_bytes -= r.data.len();
                    self.cache.pop_front();
                }
                Some(_) | None => break,
            }
        }
    }

    /// The error for a waiter whose records were failed by an ENOSPC roll-back since `entry_gen`.
    fn rolled_back(&self, seq_end: u64, entry_gen: u64) -> Option<Error> {
        if entry_gen == self.rollback_gen {
            return None;
        }
        let oldest_kept = self.rollbacks.front().map_or(u64::MAX, |r| r.0);
        if entry_gen + 1 < oldest_kept {
            // History trimmed: fail rather than risk acknowledging a lost record.
            return self.rollbacks.back().map(|r| r.2.clone());
        }
        self.rollbacks
            .iter()
            .filter(|(gen, _, _)| *gen > entry_gen)
            .find(|(_, pos, _)| seq_end > pos.seq)
            .map(|r| r.2.clone())
    }

    /// Records that the records from `end` on were failed by `error` (call it after moving
    /// `end` back).
    pub fn record_rollback(&mut self, error: Error) {
        self.rollback_gen += 1;
        self.rollbacks
            .push_back((self.rollback_gen, self.end, error));
        if self.rollbacks.len() > ROLLBACKS_KEPT_MAX {
            self.rollbacks.pop_front();
        }
    }

    pub fn first(&self) -> Position {
        self.segments.front().map_or(self.end, |s| s.base)
    }
}

/// What the writer task and the handles share.
#[derive(Debug)]
pub(crate) struct Shared<I: Io> {
    pub io: I,
    pub dir: PathBuf,
    pub config: LogConfig,
    pub state: RefCell<State>,
    /// Wakes the writer task (a stored permit: no lost wake-ups). Shared with the handle cache,
    /// which wakes the writer when it needs the log's dirty file back.
    pub work: Rc<Notify>,
    /// Wakes every waiter when `written`, `synced`, the error or the closed flag change.
    pub progress: Notify,
    /// Retention pins (`copy::RetainPin`): id → the lowest seq retention must keep.
    pub pins: RefCell<BTreeMap<u64, u64>>,
    pub next_pin: Cell<u64>,
}

impl<I: Io> Shared<I> {
    /// A segment's file for reading, from the backend's handle cache or opened now.
    pub async fn segment_file(&self, path: &Path) -> Result<FileHandle<I::File>> {
        open_cached(&self.io, path, false)
            .await
            .map_err(|e| Error::io("open", path, e))
    }
}

/// Stops the writer task when the last handle goes away.
#[derive(Debug)]
struct Handle<I: Io> {
    shared: Rc<Shared<I>>,
}

impl<I: Io> Drop for Handle<I> {
    fn drop(&mut self) {
        self.shared.state.borrow_mut().closing = true;
        self.shared.work.notify_one();
    }
}

/// A segmented, checksummed append-only log. Cheap to clone; single-threaded.
#[derive(Debug)]
pub struct Log<I: Io> {
    handle: Rc<Handle<I>>,
}

impl<I: Io> Clone for Log<I> {
    fn clone(&self) -> Self {
        Log {
            handle: Rc::clone(&self.handle),
        }
    }
}

/// A segment as [`Log::segments`] describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Its first record's position.
    pub base: Position,
    /// One past its last record.
    pub end: Position,
    /// When it was last written.
    pub modified: SystemTime,
}

/// See [`Log::ticket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    seq_end: u64,
    /// A roll-back below this fails the ticket (its caller's records are gone).
    claim_end: u64,
    gen: u64,
}

impl Ticket {
    /// The records this ticket waits for are those with seq below this.
    pub fn seq_end(&self) -> u64 {
        self.seq_end
    }
}

impl<I: Io> Log<I> {
    /// Opens (creating the directory if needed) and recovers the log in `dir`, then spawns its
    /// writer task with `tokio::task::spawn_local` (so it must run inside a `LocalSet`, as
    /// `tokio_uring::start` provides).
    pub async fn open(io: I, dir: &Path, config: LogConfig) -> Result<(Self, RecoveryReport)> {
        config.validate()?;
        create_dir_durably(&io, dir).await?;
        let (recovered, report) = recovery::recover(&io, dir, config.record_size_max).await?;
        // The caller reports the open; what recovery changed is worth a line of its own.
        if report.is_clean() {
            tracing::debug!(dir = %dir.display(), "{report}");
        } else {
            tracing::info!(dir = %dir.display(), "{report}");
        }
        let mut opened = writer::open_current(&io, recovered, dir).await?;
        for segment in &mut opened.segments {
            // Unknown (or unreadable) counts as written now: retention keeps it longer, never less.
            if let Ok(Some(modified)) = io.modified(&segment.path).await {
                segment.modified = modified;
            }
        }
        let end = opened.end;
        let state = State {
            end,
            written: end,
            synced: end,
            taken: end.seq,
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_floor: 0,
            segments: opened.segments,
            error: None,
            closing: false,
            writer_done: false,
            close_result: None,
            sync_wanted: 0,
            unwritten_kept_max: 0,
            doomed: Vec::new(),
            rollback_gen: 0,
            rollbacks: VecDeque::new(),
            stats: LogStats::default(),
        };
        let shared = Rc::new(Shared {
            io,
            dir: dir.to_path_buf(),
            config,
            state: RefCell::new(state),
            work: Rc::new(Notify::new()),
            progress: Notify::new(),
            pins: RefCell::new(BTreeMap::new()),
            next_pin: Cell::new(0),
        });
        let writer = writer::Writer::new(Rc::clone(&shared), opened.current, opened.checkpointed);
        tokio::task::spawn_local(writer.run());
        let log = Log {
            handle: Rc::new(Handle { shared }),
        };
        Ok((log, report))
    }

    fn shared(&self) -> &Shared<I> {
        &self.handle.shared
    }

    pub(crate) fn shared_rc(&self) -> &Rc<Shared<I>> {
        &self.handle.shared
    }

    /// Reserves the next position and queues `data` for the writer task. No `.await`: the order
    /// of `append` calls is the order of the log.
    pub fn append(&self, data: Bytes) -> Result<Position> {
        let shared = self.shared();
        let max = shared.config.record_size_max;
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&len| len <= max)
            .ok_or(Error::RecordTooLarge {
                len: data.len(),
                max,
            })?;
        let mut st = shared.state.borrow_mut();
        if let Some(e) = &st.error {
            return Err(Error::Poisoned(Box::new(e.clone())));
        }
        if st.closing {
            return Err(Error::Closed);
        }
        let pos = st.end;
        let next = pos
            .seq
            .checked_add(1)
            .zip(pos.offset.checked_add(record_encoded_len(len)));
        let Some((seq, offset)) = next else {
            return Err(Error::Exhausted { end: pos });
        };
        st.end = Position { seq, offset };
        st.cache_bytes += data.len();
        st.cache.push_back(Record { pos, data });
        drop(st);
        shared.work.notify_one();
        Ok(pos)
    }

    /// Readers are past `seq`: written records below it leave the cache now (and later ones as
    /// they are written), so memory holds what readers near the tail still need, not a full
    /// budget of what they already read. A reader asking for them again reads the disk.
    pub fn uncache_below(&self, seq: u64) {
        let shared = self.shared();
        let mut st = shared.state.borrow_mut();
        st.cache_floor = seq;
        st.evict(shared.config.cache_bytes_max);
    }

    /// For a caller that reports records as stored before they are written (at most `records`
    /// ahead of the log's written end): a write failing for want of space (ENOSPC, no
    /// descriptor) keeps that many unwritten records, oldest first, queued in memory, and the
    /// writer tries them again until they are written; only records past them are failed. (By
    /// default none is kept: every unwritten record fails.) Closing the log gives up on them.
    pub fn keep_unwritten(&self, records: u64) {
        self.shared().state.borrow_mut().unwritten_kept_max = records;
    }

    /// The position the next append will get.
    pub fn end(&self) -> Position {
        self.shared().state.borrow().end
    }

    /// The oldest record still stored (`end()` when the log is empty).
    pub fn first(&self) -> Position {
        self.shared().state.borrow().first()
    }

    /// Every record with seq below `written().seq` is written to its segment file.
    pub fn written(&self) -> Position {
        self.shared().state.borrow().written
    }

    /// Every record with seq below `synced().seq` is covered by an fdatasync.
    pub fn synced(&self) -> Position {
        self.shared().state.borrow().synced
    }

    /// A claim on the records appended so far below `seq_end`, taken right after the `append`s:
    /// it remembers the ENOSPC roll-back generation, so records failed by a roll-back are never
    /// mistaken for later records that reuse their sequence numbers.
    pub fn ticket(&self, seq_end: u64) -> Ticket {
        self.ticket_within(seq_end, seq_end)
    }

    /// A ticket that is done once the records below `seq_end` are written (or fdatasynced),
    /// and fails if a roll-back takes any record below `claim_end` (`>= seq_end`): for a caller
    /// that may answer before its own records are written (they may wait in memory) but must
    /// never answer for records that were failed.
    pub fn ticket_within(&self, seq_end: u64, claim_end: u64) -> Ticket {
        Ticket {
            seq_end,
            claim_end: claim_end.max(seq_end),
            gen: self.shared().state.borrow().rollback_gen,
        }
    }

    /// Where a ticket stands, without waiting: `Some(Ok)` once its records are written (or, with
    /// `synced`, fdatasynced), `Some(Err)` if they failed, `None` while pending.
    pub fn ticket_state(&self, ticket: Ticket, synced: bool) -> Option<Result<()>> {
        let st = self.shared().state.borrow();
        if let Some(e) = st.rolled_back(ticket.claim_end, ticket.gen) {
            return Some(Err(e));
        }
        let reached = if synced {
            st.synced.seq
        } else {
            st.written.seq
        };
        if reached >= ticket.seq_end {
            return Some(Ok(()));
        }
        if let Some(e) = &st.error {
            return Some(Err(e.clone()));
        }
        if st.writer_done {
            return Some(Err(Error::Closed));
        }
        None
    }

    /// Waits for a ticket; with `synced`, asks for an fdatasync at once (group commit: every
    /// waiter arriving while an fdatasync runs is released by the next single one).
    pub async fn wait_ticket(&self, ticket: Ticket, synced: bool) -> Result<()> {
        let shared = self.shared();
        if synced {
            let mut st = shared.state.borrow_mut();
            st.sync_wanted = st.sync_wanted.max(ticket.seq_end);
            drop(st);
            shared.work.notify_one();
        }
        loop {
            let notified = shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.ticket_state(ticket, synced) {
                return result;
            }
            notified.await;
        }
    }

    /// Resolves once `written()` (with `synced`, `synced()`) reaches `seq_end`, or once that can
    /// no longer happen by waiting: `true` when it got there or was rolled back below `seq_end`
    /// (look again), `false` when the log failed or closed (it never will: waiting again would
    /// spin). Unlike [`Log::wait_synced`] it asks for no fdatasync: readers that may only see
    /// durable records wait here for the writers' policy to get there.
    pub async fn wait_reached(&self, seq_end: u64, synced: bool) -> bool {
        let shared = self.shared();
        loop {
            let notified = shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = shared.state.borrow();
                if st.error.is_some() || st.writer_done {
                    return false;
                }
                let reached = if synced { st.synced } else { st.written };
                if reached.seq >= seq_end || st.end.seq < seq_end {
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Counts ENOSPC roll-backs so far (see [`Log::rolled_back_since`]).
    pub fn rollback_gen(&self) -> u64 {
        self.shared().state.borrow().rollback_gen
    }

    /// After roll-backs newer than generation `gen`: the lowest position rolled back to. Records
    /// at or above it that a reader saw before (appended, never written) are gone, and their
    /// seqs are given to later appends. `None` when nothing was rolled back since `gen`.
    pub fn rolled_back_since(&self, gen: u64) -> Option<Position> {
        let st = self.shared().state.borrow();
        if st.rollback_gen == gen {
            return None;
        }
        let kept = st.rollbacks.iter().filter(|(g, _, _)| *g > gen);
        // History trimmed past `gen`: the oldest kept roll-back is the best bound there is.
        kept.map(|(_, pos, _)| *pos)
            .min()
            .or_else(|| st.rollbacks.front().map(|r| r.1))
    }

    /// Resolves when `written().seq >= seq_end`, or with the error that failed those records.
    /// Call it right after the `append`s it waits for (or take a [`Ticket`] then and wait later).
    pub async fn wait_written(&self, seq_end: u64) -> Result<()> {
        self.wait_ticket(self.ticket(seq_end), false).await
    }

    /// Group commit: asks for an fdatasync as soon as possible and resolves when
    /// `synced().seq >= seq_end`.
    pub async fn wait_synced(&self, seq_end: u64) -> Result<()> {
        self.wait_ticket(self.ticket(seq_end), true).await
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> Result<()> {
        let end = self.end().seq;
        self.wait_synced(end).await
    }

    /// Records with seq >= `from.seq`, in order, up to `max_records` and `max_bytes` of data
    /// (at least one if any exists). Recent records come from memory, older ones from disk.
    pub async fn read(
        &self,
        from: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        reader::read(self.shared(), from, max_records.max(1), max_bytes).await
    }

    /// Where reading can go on after `read(from)` returned [`Error::Corrupt`] (a record that
    /// fails its check, or a segment file shorter than its records): the first record after
    /// `from` in the same segment that verifies (CRC, a seq in the segment's range, and the next
    /// record chained to it), else the start of the next segment. The records in between are
    /// lost; the caller reports how many. Nothing on disk is changed: the damaged bytes stay in
    /// the segment until retention deletes it. Any other error is returned as it is.
    pub async fn skip_damaged(&self, from: Position) -> Result<Position> {
        reader::resync(self.shared(), from).await
    }

    /// Drops whole segments all of whose records have seq < `seq` (never the segment being
    /// written): `first()` moves at once; the writer task deletes the files.
    pub fn retain_from(&self, seq: u64) {
        self.retain(seq, None);
    }

    /// As [`Log::retain_from`], keeping too every segment last written at or after
    /// `written_before` (retention by age: a segment goes once its newest record is older).
    /// A [`RetainPin`](crate::RetainPin) lowers `seq` to its own while it is held.
    pub fn retain(&self, seq: u64, written_before: Option<SystemTime>) {
        let shared = self.shared();
        let pinned = shared.pins.borrow().values().copied().min();
        let seq = pinned.map_or(seq, |pin| pin.min(seq));
        let mut st = shared.state.borrow_mut();
        let expired = |s: &SegmentInfo| {
            s.end.seq <= seq && written_before.is_none_or(|limit| s.modified < limit)
        };
        while st.segments.len() > 1 && st.segments.front().is_some_and(expired) {
            if let Some(segment) = st.segments.pop_front() {
                st.doomed.push(segment);
            }
        }
        let wake = !st.doomed.is_empty();
        drop(st);
        if wake {
            shared.work.notify_one();
        }
    }

    /// The segments, oldest first: where each starts and ends, and when it was last written.
    pub fn segments(&self) -> Vec<SegmentSummary> {
        self.shared()
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| SegmentSummary {
                base: s.base,
                end: s.end,
                modified: s.modified,
            })
            .collect()
    }

    /// The original error while the log is poisoned.
    pub fn error(&self) -> Option<Error> {
        self.shared().state.borrow().error.clone()
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        let st = self.shared().state.borrow();
        LogStats {
            segments: st.segments.len(),
            bytes_on_disk: st.segments.iter().map(SegmentInfo::file_len).sum(),
            records: st.end.seq - st.first().seq,
            cache_bytes: st.cache_bytes,
            ..st.stats
        }
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// Writes everything pending, fdatasyncs, writes the checkpoint and stops the writer task.
    /// Idempotent: later calls return the first call's result.
    pub async fn close(&self) -> Result<()> {
        let shared = self.shared();
        shared.state.borrow_mut().closing = true;
        shared.work.notify_one();
        loop {
            let notified = shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = shared.state.borrow().close_result.clone() {
                return result;
            }
            notified.await;
        }
    }

    /// Closes the log and removes its directory (topic delete).
    pub async fn destroy(self) -> Result<()> {
        // A poisoned log is still removed: its data is being thrown away.
        let closed = self.close().await;
        if let Err(e) = &closed {
            tracing::warn!("destroying a log that failed to close: {e}");
        }
        let shared = self.shared();
        shared.io.files().forget_under(&shared.dir);
        shared
            .io
            .remove_dir_all(&shared.dir)
            .await
            .map_err(|e| Error::io("remove directory", &shared.dir, e))?;
        let parent = crate::paths::parent_dir(&shared.dir);
        shared
            .io
            .sync_dir(&parent)
            .await
            .map_err(|e| Error::io("fsync directory", &parent, e))
    }
}

/// Creates `dir` and the parents it lacks, each made durable in its parent (directory fsync).
/// An existing directory costs a stat and writes nothing (a log opens on a full disk).
async fn create_dir_durably<I: Io>(io: &I, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        let exists = io
            .dir_exists(at)
            .await
            .map_err(|e| Error::io("stat", at, e))?;
        if exists {
            break;
        }
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            Some(_) | None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    io.create_dir_all(dir)
        .await
        .map_err(|e| Error::io("create directory", dir, e))?;
    for created in missing {
        let parent = crate::paths::parent_dir(created);
        io.sync_dir(&parent)
            .await
            .map_err(|e| Error::io("fsync directory", &parent, e))?;
    }
    Ok(())
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        if self.segment_size_bytes_max <= crate::format::SEGMENT_HEADER_BYTES_U64 {
            return Err(Error::Config(
                "segment_size_bytes_max must exceed the segment header",
            ));
        }
        if self.sync_timeout.is_zero() {
            return Err(Error::Config("sync_timeout must not be zero"));
        }
        Ok(())
    }
}
