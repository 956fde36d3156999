//! The writer task: the one owner of a log's write position, current segment file and write
//! buffer.
//!
//! Each turn it picks one step (write a batch, fdatasync, roll, delete retained segments, write
//! the checkpoint, close) and runs it to completion. Exactly one `io_uring` operation is in flight
//! at a time and none is ever dropped before it completes (the only `select`-like wait is on a
//! `Notify` with a deadline, while no operation runs), so writes complete in order and an
//! fdatasync covers only completed writes.

use crate::error::{Error, Result};
use crate::files::{open_cached, Handle};
use crate::format::{self, Checkpoint, SegmentHeader, SEGMENT_HEADER_BYTES_U64};
use crate::io::{Io, IoFile, OpenMode};
use crate::log::Shared;
use crate::meta::atomic_write;
use crate::paths;
use crate::position::Position;
use crate::recovery::{Recovered, SegmentInfo};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tokio::time::Instant;

/// Most bytes gathered into one write (the write buffer, kept per log, grows to this).
const WRITE_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// How long kept records wait before a write that failed for want of space is tried again.
const WRITE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// The segment being appended to. Its file is opened through the backend's handle cache when
/// needed (an idle log holds no descriptor).
pub(crate) struct Current {
    path: PathBuf,
    file_pos: u64,
    base: Position,
    /// False until the segment file exists: a log with no segment creates it at its first
    /// write, so opening a log never needs free space.
    created: bool,
}

/// What `Log::open` hands the writer.
pub(crate) struct Opened {
    pub current: Current,
    pub segments: VecDeque<SegmentInfo>,
    /// The log's end (where the next append goes).
    pub end: Position,
    /// The durable end the checkpoint file already records, if it matches the log.
    pub checkpointed: Option<Position>,
}

/// Takes over the segment to append to (the last one), or plans the first one for an empty
/// directory. Writes nothing: after a clean close nothing is even opened; otherwise the last
/// segment is fdatasynced, as what recovery kept may sit in the page cache only (after a
/// process crash).
pub(crate) async fn open_current<I: Io>(
    io: &I,
    recovered: Recovered,
    dir: &Path,
) -> Result<Opened> {
    let mut segments: VecDeque<SegmentInfo> = recovered.segments.into();
    let checkpoint_end = recovered.checkpoint.map(|c| {
        (
            c.segment_base_offset,
            Position {
                seq: c.end_seq,
                offset: c.end_offset,
            },
        )
    });
    let Some(last) = segments.back() else {
        // Never reuse seqs: start where the checkpoint says the log ended.
        let base = checkpoint_end.map_or_else(Position::default, |(_, end)| end);
        let current = Current {
            path: paths::segment_path(dir, base.offset),
            file_pos: SEGMENT_HEADER_BYTES_U64,
            base,
            created: false,
        };
        // Listed already (empty), so `first()` and reads see where the log starts.
        segments.push_back(SegmentInfo {
            path: current.path.clone(),
            base,
            end: base,
            modified: io.now(),
        });
        return Ok(Opened {
            current,
            segments,
            end: base,
            checkpointed: Some(base),
        });
    };
    let clean = checkpoint_end == Some((last.base.offset, last.end));
    if !clean {
        let file = open_cached(io, &last.path, true)
            .await
            .map_err(|e| Error::io("open", &last.path, e))?;
        file.sync_data()
            .await
            .map_err(|e| Error::io("fdatasync", &last.path, e))?;
    }
    let current = Current {
        path: last.path.clone(),
        file_pos: last.file_len(),
        base: last.base,
        created: true,
    };
    let end = last.end;
    Ok(Opened {
        current,
        segments,
        end,
        checkpointed: clean.then_some(end),
    })
}

/// Creates a segment file with its header, durably (file data and directory entry), and leaves
/// it in the handle cache.
async fn create_segment<I: Io>(io: &I, dir: &Path, base: Position) -> Result<PathBuf> {
    let path = paths::segment_path(dir, base.offset);
    let file = io
        .open(&path, OpenMode::CreateNew)
        .await
        .map_err(|e| Error::io("create", &path, e))?;
    let header = SegmentHeader {
        base_seq: base.seq,
        base_offset: base.offset,
    };
    let (res, _) = file.write_all_at(header.encode().to_vec(), 0).await;
    let synced = match res {
        Ok(()) => file
            .sync_data()
            .await
            .map_err(|e| Error::io("fdatasync", &path, e)),
        Err(e) => Err(Error::io("write", &path, e)),
    };
    let done = match synced {
        Ok(()) => {
            // Cached (clean) before the directory fsync waits for a slot: closable meanwhile.
            drop(io.files().insert(&path, file, true));
            io.sync_dir(dir)
                .await
                .map_err(|e| Error::io("fsync directory", dir, e))
        }
        Err(e) => {
            drop(file);
            Err(e)
        }
    };
    if let Err(e) = done {
        io.files().forget(&path);
        if let Err(remove) = io.remove_file(&path).await {
            tracing::error!(
                "could not remove half-created segment {}: {remove}",
                path.display()
            );
        }
        return Err(e);
    }
    Ok(path)
}

/// One turn of the writer.
enum Step {
    Write,
    Roll,
    Sync,
    Checkpoint,
    Retain,
    Close,
    Wait(Option<Instant>),
}

pub(crate) struct Writer<I: Io> {
    shared: Rc<Shared<I>>,
    current: Current,
    /// Reused write buffer: handed to the kernel and back with each write.
    buf: Vec<u8>,
    unsynced_since: Option<Instant>,
    checkpointed: Option<Position>,
    checkpoint_due: Instant,
    /// After a write that failed for want of space, when to try the kept records again.
    retry_at: Option<Instant>,
}

impl<I: Io> Writer<I> {
    pub(crate) fn new(
        shared: Rc<Shared<I>>,
        current: Current,
        checkpointed: Option<Position>,
    ) -> Self {
        let checkpoint_due = Instant::now() + shared.config.sync_timeout;
        Writer {
            shared,
            current,
            buf: Vec::new(),
            unsynced_since: None,
            checkpointed,
            checkpoint_due,
            retry_at: None,
        }
    }

    /// The task body: one step at a time until closed.
    pub(crate) async fn run(mut self) {
        loop {
            match self.next_step() {
                Step::Write => self.write_batch().await,
                Step::Roll => self.roll().await,
                Step::Sync => {
                    if let Err(e) = self.sync().await {
                        self.poison(e);
                    }
                }
                Step::Checkpoint => self.checkpoint().await,
                Step::Retain => self.retain().await,
                Step::Close => {
                    self.close().await;
                    return;
                }
                Step::Wait(deadline) => self.wait(deadline).await,
            }
        }
    }

    fn next_step(&self) -> Step {
        let st = self.shared.state.borrow();
        let config = &self.shared.config;
        let now = Instant::now();
        if st.error.is_some() {
            return if st.closing {
                Step::Close
            } else {
                Step::Wait(None)
            };
        }
        // Kept records wait a moment after a write failed for want of space.
        let retry_at = self.retry_at.filter(|at| *at > now && !st.closing);
        if st.taken < st.end.seq && retry_at.is_none() {
            let front = st.cache.front().map_or(st.end.seq, |r| r.pos.seq);
            let next = usize::try_from(st.taken - front)
                .ok()
                .and_then(|i| st.cache.get(i));
            let needs_roll = next.is_some_and(|r| {
                let len = u32::try_from(r.data.len()).unwrap_or(u32::MAX);
                self.current.file_pos > SEGMENT_HEADER_BYTES_U64
                    && self.current.file_pos + format::record_encoded_len(len)
                        > config.segment_size_bytes_max
            });
            return if needs_roll { Step::Roll } else { Step::Write };
        }
        let sync_due = self.unsynced_since.map(|t| t + config.sync_timeout);
        let checkpoint_stale = self.current.created && self.checkpointed != Some(st.synced);
        let checkpoint_now = checkpoint_stale && now >= self.checkpoint_due;
        if st.written.seq > st.synced.seq
            && (st.sync_wanted > st.synced.seq
                || st.written.seq - st.synced.seq >= config.sync_every_records.max(1)
                || sync_due.is_some_and(|due| now >= due)
                || st.closing
                // A checkpoint is written over a clean file only (see `files`: nothing waits
                // for a descriptor while holding a dirty one).
                || checkpoint_now
                || self.shared.io.files().sync_asked(&self.current.path))
        {
            return Step::Sync;
        }
        if !st.doomed.is_empty() {
            return Step::Retain;
        }
        if st.closing {
            return Step::Close;
        }
        if checkpoint_now {
            return Step::Checkpoint;
        }
        let checkpoint_due = checkpoint_stale.then_some(self.checkpoint_due);
        Step::Wait(
            [sync_due, checkpoint_due, retry_at]
                .into_iter()
                .flatten()
                .min(),
        )
    }

    /// Encodes queued records into the write buffer, up to a roll or the batch limit, and marks
    /// them taken. Returns the position after the last one.
    fn encode_batch(&mut self) -> Result<Position> {
        self.buf.clear();
        let mut st = self.shared.state.borrow_mut();
        let front = st.cache.front().map_or(st.end.seq, |r| r.pos.seq);
        let skip = usize::try_from(st.taken - front).unwrap_or(usize::MAX);
        let mut end = st.written;
        let mut file_pos = self.current.file_pos;
        for record in st.cache.iter().skip(skip) {
            let len = u32::try_from(record.data.len()).unwrap_or(u32::MAX);
            let encoded = format::record_encoded_len(len);
            let full = file_pos + encoded > self.shared.config.segment_size_bytes_max;
            if (full && file_pos > SEGMENT_HEADER_BYTES_U64)
                || (!self.buf.is_empty()
                    && self.buf.len() + usize::try_from(encoded).unwrap_or(usize::MAX)
                        > WRITE_BATCH_BYTES_MAX)
            {
                break;
            }
            format::encode_record(&mut self.buf, record.pos.seq, &record.data).map_err(|_| {
                Error::RecordTooLarge {
                    len: record.data.len(),
                    max: self.shared.config.record_size_max,
                }
            })?;
            file_pos += encoded;
            end = Position {
                seq: record.pos.seq + 1,
                offset: record.pos.offset + encoded,
            };
        }
        st.taken = end.seq;
        Ok(end)
    }

    /// The current segment's file, from the handle cache or opened again.
    async fn file(&self) -> Result<Handle<I::File>> {
        open_cached(&self.shared.io, &self.current.path, true)
            .await
            .map_err(|e| Error::io("open", &self.current.path, e))
    }

    /// Creates the current segment's file if the log has none yet. False when it failed (the queued
    /// records were failed or the log poisoned).
    async fn ensure_created(&mut self) -> bool {
        if self.current.created {
            return true;
        }
        let base = self.current.base;
        match create_segment(&self.shared.io, &self.shared.dir, base).await {
            Ok(_) => {
                self.shared.io.health().record_ok();
                self.current.created = true;
                self.checkpointed = None;
                true
            }
            Err(e) => {
                self.fail_or_poison(e, false).await;
                false
            }
        }
    }

    async fn write_batch(&mut self) {
        if !self.ensure_created().await {
            return;
        }
        let end = match self.encode_batch() {
            Ok(end) => end,
            Err(e) => return self.poison(e),
        };
        let file = match self.file().await {
            Ok(file) => file,
            Err(e) => return self.fail_or_poison(e, false).await,
        };
        let buf = std::mem::take(&mut self.buf);
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let (res, buf) = file.write_all_at(buf, self.current.file_pos).await;
        drop(file);
        self.buf = buf;
        if let Err(e) = res {
            let error = Error::io("write", &self.current.path, e);
            return self.fail_or_poison(error, true).await;
        }
        let files = self.shared.io.files();
        files.set_dirty(&self.current.path, true, &self.shared.work);
        self.shared.io.health().record_ok();
        if self.retry_at.take().is_some() {
            tracing::info!("log {}: writing again", self.shared.dir.display());
        }
        self.current.file_pos += len;
        self.unsynced_since.get_or_insert_with(Instant::now);
        let mut st = self.shared.state.borrow_mut();
        st.written = end;
        if let Some(segment) = st.segments.back_mut() {
            segment.end = end;
            segment.modified = self.shared.io.now();
        }
        st.stats.writes += 1;
        st.stats.bytes_written += len;
        st.evict(self.shared.config.cache_bytes_max);
        drop(st);
        self.shared.progress.notify_waiters();
    }

    /// A failed write: ENOSPC (or no descriptor left) fails the records not yet written and
    /// keeps the log open; anything else poisons it. `truncate` cuts bytes a failed write may
    /// have left.
    async fn fail_or_poison(&mut self, error: Error, truncate: bool) {
        if error.is_no_space() || error.is_out_of_files() {
            self.roll_back(error, truncate).await;
        } else {
            self.poison(error);
        }
    }

    /// fdatasync of the current segment: everything written so far becomes `synced`.
    async fn sync(&mut self) -> Result<()> {
        let target = self.shared.state.borrow().written;
        let file = self.file().await?;
        let res = file.sync_data().await;
        drop(file);
        res.map_err(|e| Error::io("fdatasync", &self.current.path, e))?;
        let files = self.shared.io.files();
        files.set_dirty(&self.current.path, false, &self.shared.work);
        self.shared.io.health().record_ok();
        self.unsynced_since = None;
        let mut st = self.shared.state.borrow_mut();
        st.synced = target;
        st.stats.fsyncs += 1;
        drop(st);
        self.shared.progress.notify_waiters();
        Ok(())
    }

    /// Seals the current segment (fdatasync) and starts the next one at `written`.
    async fn roll(&mut self) {
        if let Err(e) = self.sync().await {
            return self.poison(e);
        }
        let base = self.shared.state.borrow().written;
        // The checkpoint on disk names the old segment until the new one is recorded.
        self.checkpointed = None;
        let created = create_segment(&self.shared.io, &self.shared.dir, base).await;
        let path = match created {
            Ok(path) => path,
            Err(e) => return self.fail_or_poison(e, false).await,
        };
        self.shared.io.health().record_ok();
        {
            let mut st = self.shared.state.borrow_mut();
            st.stats.writes += 1;
            st.stats.fsyncs += 1;
            st.stats.bytes_written += SEGMENT_HEADER_BYTES_U64;
            st.segments.push_back(SegmentInfo {
                path: path.clone(),
                base,
                end: base,
                modified: self.shared.io.now(),
            });
        }
        tracing::debug!("rolled to segment {}", path.display());
        self.current = Current {
            path,
            file_pos: SEGMENT_HEADER_BYTES_U64,
            base,
            created: true,
        };
        self.checkpoint().await;
    }

    /// Records the durable end in the checkpoint file (atomic replace).
    async fn checkpoint(&mut self) {
        let synced = self.shared.state.borrow().synced;
        let checkpoint = Checkpoint {
            segment_base_offset: self.current.base.offset,
            end_seq: synced.seq,
            end_offset: synced.offset,
        };
        let path = paths::checkpoint_path(&self.shared.dir);
        self.checkpoint_due = Instant::now() + self.shared.config.sync_timeout;
        match atomic_write(&self.shared.io, &path, &checkpoint.encode()).await {
            Ok(()) => self.checkpointed = Some(synced),
            // Only open time depends on the checkpoint; try again later.
            Err(e) if e.is_no_space() || e.is_out_of_files() => {
                tracing::warn!("checkpoint not written: {e}");
            }
            Err(e) => self.poison(e),
        }
    }

    /// Deletes the files of segments dropped by `retain_from`.
    async fn retain(&mut self) {
        let doomed = std::mem::take(&mut self.shared.state.borrow_mut().doomed);
        for segment in doomed {
            self.shared.io.files().forget(&segment.path);
            match self.shared.io.remove_file(&segment.path).await {
                Ok(()) => tracing::debug!("retention removed {}", segment.path.display()),
                // The file stays; the next open finds it again (its records come back, nothing is lost).
                Err(e) => {
                    tracing::error!("retention could not remove {}: {e}", segment.path.display());
                }
            }
        }
    }

    /// A write that could not be done for now (ENOSPC, or no descriptor): the records not yet
    /// written fail with `error` and `end` rolls back to `written` — except the oldest
    /// [`crate::Log::keep_unwritten`] ones, which stay queued and are written again after
    /// [`WRITE_RETRY_AFTER`] (unless the log is closing: then they are lost, with an error). With
    /// `truncate`, partial bytes are cut so that a later, shorter write cannot leave stale
    /// records.
    async fn roll_back(&mut self, error: Error, truncate: bool) {
        if self.retry_at.is_none() {
            tracing::warn!("{error}: failing the records not yet written");
        }
        self.shared.io.health().record_failure(&error);
        if truncate {
            let cut = match self.file().await {
                Ok(file) => file.set_len(self.current.file_pos).await,
                Err(e) => return self.poison(e),
            };
            if let Err(e) = cut {
                return self.poison(Error::io("truncate", &self.current.path, e));
            }
        }
        let mut st = self.shared.state.borrow_mut();
        let keep = if st.closing {
            st.written.seq
        } else {
            st.written
                .seq
                .saturating_add(st.unwritten_kept_max)
                .min(st.end.seq)
        };
        if st.closing && st.end.seq > keep {
            tracing::error!(
                "log {} closing on {error}: {} record(s) not written are lost",
                self.shared.dir.display(),
                st.end.seq - keep
            );
        }
        let mut dropped = false;
        while st.cache.back().is_some_and(|r| r.pos.seq >= keep) {
            if let Some(r) = st.cache.pop_back() {
                st.cache_bytes -= r.data.len();
                st.end = r.pos;
                dropped = true;
            }
        }
        st.taken = st.written.seq;
        if dropped {
            st.record_rollback(error);
        }
        let retry = st.end.seq > st.written.seq;
        drop(st);
        self.retry_at = retry.then(|| Instant::now() + WRITE_RETRY_AFTER);
        self.shared.progress.notify_waiters();
    }

    /// Stops all writing: keeps the first error; every waiter gets it.
    fn poison(&mut self, error: Error) {
        tracing::error!("log {} poisoned: {error}", self.shared.dir.display());
        self.shared
            .io
            .health()
            .log_poisoned(&self.shared.dir, &error);
        self.shared.state.borrow_mut().error.get_or_insert(error);
        self.shared.progress.notify_waiters();
    }

    async fn close(&mut self) {
        let poisoned = self.shared.state.borrow().error.clone();
        if poisoned.is_none()
            && self.current.created
            && self
                .checkpointed
                .is_none_or(|c| c != self.shared.state.borrow().synced)
        {
            self.checkpoint().await;
        }
        // A closed log holds no descriptor.
        let files = self.shared.io.files();
        for segment in &self.shared.state.borrow().segments {
            files.forget(&segment.path);
        }
        self.shared.io.health().log_closed(&self.shared.dir);
        let mut st = self.shared.state.borrow_mut();
        st.close_result = Some(match &st.error {
            Some(e) => Err(Error::Poisoned(Box::new(e.clone()))),
            None => Ok(()),
        });
        st.writer_done = true;
        drop(st);
        self.shared.progress.notify_waiters();
    }

    async fn wait(&self, deadline: Option<Instant>) {
        let work = self.shared.work.notified();
        match deadline {
            Some(at) => {
                if tokio::time::timeout_at(at, work).await.is_err() {
                    tracing::trace!("writer timer fired");
                }
            }
            None => work.await,
        }
    }
}
