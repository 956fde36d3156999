//! Where a topic's messages live: its durable log, or (for `#ephemeral` topics, which are never
//! persisted) a bounded queue in memory. Channels read both the same way, as cursors.

use bytes::Bytes;
use ringsq_storage::{Log, Position, Record, UringIo};
use std::cell::RefCell;
use std::collections::VecDeque;

#[derive(Debug)]
pub enum Store {
    Durable(Log<UringIo>),
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
    /// In memory (ephemeral topic).
    Memory,
    /// Dropped: an ephemeral topic's queue is full.
    Dropped,
}

impl Store {
    pub fn append(&self, data: Bytes) -> Result<Appended, ringsq_storage::Error> {
        match self {
            Store::Durable(log) => log.append(data).map(Appended::Log),
            Store::Memory(q) => {
                let mut q = q.borrow_mut();
                if q.records.len() >= q.capacity.max(1) {
                    q.dropped += 1;
                    return Ok(Appended::Dropped);
                }
                q.records.push_back(data);
                Ok(Appended::Memory)
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

    /// Records from `from` on (at most `max_records`). A cursor below the first retained
    /// record (possible only for memory queues after a drop) restarts at the first one.
    /// Where reading can go on after `read(from)` failed with `Error::Corrupt` (see
    /// `Log::skip_damaged`); the memory queue is never damaged.
    pub async fn skip_damaged(&self, from: Position) -> Result<Position, ringsq_storage::Error> {
        match self {
            Store::Durable(log) => log.skip_damaged(from).await,
            Store::Memory(_) => Ok(from),
        }
    }

    pub async fn read(
        &self,
        from: Position,
        max_records: usize,
    ) -> Result<Vec<Record>, ringsq_storage::Error> {
        const READ_BYTES_MAX: usize = 4 << 20;
        match self {
            Store::Durable(log) => log.read(from, max_records, READ_BYTES_MAX).await,
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

    /// Everything below `seq` is no longer needed by any channel.
    pub fn retain_from(&self, seq: u64) {
        match self {
            Store::Durable(log) => log.retain_from(seq),
            Store::Memory(q) => {
                let mut q = q.borrow_mut();
                while q.first_seq < seq && q.records.pop_front().is_some() {
                    q.first_seq += 1;
                }
            }
        }
    }

    pub fn log(&self) -> Option<&Log<UringIo>> {
        match self {
            Store::Durable(log) => Some(log),
            Store::Memory(_) => None,
        }
    }
}
