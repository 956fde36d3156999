//! `Position` (where a record is) and `Record` (a record read back).

use bytes::Bytes;
use std::cmp::Ordering;

/// Where a record is in a log.
///
/// `seq` is the record's index (0-based, increasing, never reused for a stored record);
/// `offset` is the logical byte offset of its first byte (segment headers not counted), so the
/// next record is at `offset + encoded length`. Ordered by `seq` only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// Index of the record in the log.
    pub seq: u64,
    /// Logical byte offset of the record's first byte.
    pub offset: u64,
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        self.seq.cmp(&other.seq)
    }
}

/// A record read from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where it is.
    pub pos: Position,
    /// Its bytes, as appended.
    pub data: Bytes,
}

impl Record {
    /// The position of the record that follows this one in its log.
    pub fn next_pos(&self) -> Position {
        let len = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        Position {
            seq: self.pos.seq.saturating_add(1),
            offset: self
                .pos
                .offset
                .saturating_add(crate::format::record_encoded_len(len)),
        }
    }
}
