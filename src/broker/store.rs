//! Where a topic's messages live: its durable log, or (for `#ephemeral` topics, which are never
//! persisted) a bounded queue in memory. Channels read both the same way, as cursors, and see
//! only what the ack policy has made safe ([`Visible`]).

use bytes::Bytes;
use ringsq_storage::{Io, Log, Position, Record, UringIo};
use std::cell::RefCell;
use std::collections::VecDeque;

/// How far consumers may read a topic's log: what the ack policy has made safe, so that a crash
/// never takes back a message a consumer already processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// Every appended record, written or not (nsqd's defaults: the memory tail is served).
    Appended,
    /// Records written to the log (`--mem-queue-size 0`: survive `kill -9`).
    Written,
    /// Records covered by an fdatasync (`--ack-after-sync`: survive a power cut).
    Synced,
}

#[derive(Debug)]
pub enum Store<I: Io = UringIo> {
    Durable(Log<I>),
    Memory(RefCell<MemQueue>),
}

/// An ephemeral topic's queue: at most `capacity` messages; a publish beyond that is dropped
/// (nsqd's ephemeral topics discard overflow). `offset` is unused and kept 0.
#[derive(Debug)]
pub struct MemQueue {
    records: VecDeque<Bytes>,
    first_seq: u64,
    capacity: usize,
    pub dropped: u64,
}

impl MemQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            first_seq: 0,
            capacity,
            dropped: 0,
        }
    }

    fn end(&self) -> Position {
        Position {
            seq: self.first_seq + self.records.len() as u64,
            offset: 0,
        }
    }
}

/// What a publish into a store became.
#[derive(Debug, Clone, Copy)]
pub enum Appended {
    /// In the log at this position (the ack policy decides how long to wait for it).
    Log(Position),
    /// In memory at this position (ephemeral topic).
    Memory(Position),
    /// Dropped: an ephemeral topic's queue is full.
    Dropped,
}

impl<I: Io> Store<I> {
    pub fn append(&self, data: Bytes) -> Result<Appended, ringsq_storage::Error> {
        match self {
            Store::Durable(log) => log.append(data).map(Appended::Log),
            Store::Memory(q) => {
                let mut q = q.borrow_mut();
                if q.records.len() >= q.capacity.max(1) {
                    q.dropped += 1;
                    return Ok(Appended::Dropped);
                }
                let pos = q.end();
                q.records.push_back(data);
                Ok(Appended::Memory(pos))
            }
        }
    }

    pub fn first(&self) -> Position {
        match self {
            Store::Durable(log) => log.first(),
            Store::Memory(q) => Position {
                seq: q.borrow().first_seq,
                offset: 0,
            },
        }
    }

    pub fn end(&self) -> Position {
        match self {
            Store::Durable(log) => log.end(),
            Store::Memory(q) => q.borrow().end(),
        }
    }

    /// The end of what consumers may see (a memory queue has nothing to wait for).
    pub fn visible_end(&self, visible: Visible) -> Position {
        match (self, visible) {
            (Store::Durable(log), Visible::Written) => log.written(),
            (Store::Durable(log), Visible::Synced) => log.synced(),
            (Store::Durable(log), Visible::Appended) => log.end(),
            (Store::Memory(q), _) => q.borrow().end(),
        }
    }

    /// Waits until records below `seq_end` are visible, or were rolled back (`true`: look
    /// again), or never can be (`false`: the log failed or closed; they stay unreadable until
    /// the broker restarts).
    pub async fn wait_visible(&self, visible: Visible, seq_end: u64) -> bool {
        match (self, visible) {
            (Store::Durable(log), Visible::Written) => log.wait_reached(seq_end, false).await,
            (Store::Durable(log), Visible::Synced) => log.wait_reached(seq_end, true).await,
            (Store::Durable(_), Visible::Appended) | (Store::Memory(_), _) => true,
        }
    }

    /// The log's roll-back generation (0 for a memory queue, which never rolls back).
    pub fn rollback_gen(&self) -> u64 {
        self.log().map_or(0, Log::rollback_gen)
    }

    /// See [`Log::rolled_back_since`].
    pub fn rolled_back_since(&self, gen: u64) -> Option<Position> {
        self.log().and_then(|log| log.rolled_back_since(gen))
    }

    /// Where reading can go on after `read(from)` failed with `Error::Corrupt` (see
    /// `Log::skip_damaged`); the memory queue is never damaged.
    pub async fn skip_damaged(&self, from: Position) -> Result<Position, ringsq_storage::Error> {
        match self {
            Store::Durable(log) => log.skip_damaged(from).await,
            Store::Memory(_) => Ok(from),
        }
    }

    /// Records from `from` on (at most `max_records`, about `max_bytes` of data; at least one if
    /// any). A cursor below the first retained record (possible only for memory queues after a
    /// drop) restarts at the first one.
    pub async fn read(
        &self,
        from: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, ringsq_storage::Error> {
        match self {
            Store::Durable(log) => log.read(from, max_records, max_bytes).await,
            Store::Memory(q) => {
                let q = q.borrow();
                let start = from.seq.max(q.first_seq);
                let skip = usize::try_from(start - q.first_seq).unwrap_or(usize::MAX);
                Ok(q.records
                    .iter()
                    .skip(skip)
                    .take(max_records)
                    .zip(start..)
                    .map(|(data, seq)| Record {
                        pos: Position { seq, offset: 0 },
                        data: data.clone(),
                    })
                    .collect())
            }
        }
    }

    /// Everything below `seq` is no longer needed by any channel; a log keeps too what was
    /// written at or after `written_before` (`--retention`).
    pub fn retain_from(&self, seq: u64, written_before: Option<std::time::SystemTime>) {
        match self {
            Store::Durable(log) => log.retain(seq, written_before),
            Store::Memory(q) => {
                let mut q = q.borrow_mut();
                while q.first_seq < seq && q.records.pop_front().is_some() {
                    q.first_seq += 1;
                }
            }
        }
    }

    pub fn log(&self) -> Option<&Log<I>> {
        match self {
            Store::Durable(log) => Some(log),
            Store::Memory(_) => None,
        }
    }
}
