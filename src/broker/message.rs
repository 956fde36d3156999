//! A message as the broker stores it: the payload of one record in a topic's log.
//!
//! Layout (all integers big-endian, like NSQ's own message encoding):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, [`MESSAGE_FORMAT_V1`] |
//! | 8 | timestamp, ns since the Unix epoch (set at publish, sent to clients unchanged) |
//! | 16 | message ID, 16 lowercase hex ASCII chars (per-topic snowflake, see `guid`) |
//! | 8 | deliver-at, ns since the Unix epoch; 0 = deliver at once (DPUB stores its deadline here, so a deferral survives restarts — Go loses it, nsq #1375) |
//! | n | body |
//!
//! The log's record framing (length, CRC32C) is the storage crate's; this is only the payload.
//! Attempts are not stored here: they belong to a channel's delivery of the message.

use crate::protocol::MessageId;
use bytes::{BufMut, Bytes, BytesMut};

pub const MESSAGE_FORMAT_V1: u8 = 1;
pub const MESSAGE_HEADER_BYTES: usize = 1 + 8 + 16 + 8;
/// A topic encodes its messages into blocks of at most this size (see [`Arena`]).
pub const ARENA_BLOCK_BYTES: usize = 64 * 1024;
/// A topic's first block: a topic that takes a message now and then holds 512 bytes, not 64 KiB
/// (at 10 000 topics, the difference is 600 MiB of address space and tens of MiB resident).
const ARENA_FIRST_BLOCK_BYTES: usize = 512;

/// Where a topic encodes its records: one allocation per block of messages instead of one per
/// message, and clones that only count references. Each new block is twice the last, up to
/// [`ARENA_BLOCK_BYTES`]. A block is freed once every record in it is dropped (read by every
/// channel and out of the log's cache).
#[derive(Debug, Default)]
pub struct Arena {
    free: BytesMut,
    next_block: usize,
}

impl Arena {
    /// Room for `len` more bytes, in a new block if the current one has not.
    fn reserve(&mut self, len: usize) -> &mut BytesMut {
        if self.free.capacity() - self.free.len() < len {
            let block = self.next_block.max(ARENA_FIRST_BLOCK_BYTES);
            self.next_block = (block * 2).min(ARENA_BLOCK_BYTES);
            self.free = BytesMut::with_capacity(len.max(block));
        }
        &mut self.free
    }
}

/// One message, as read back from a log record (the body shares the record's buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub timestamp_ns: i64,
    pub deliver_at_ns: u64,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageDecodeError {
    #[error("message record too short: {len} bytes < {MESSAGE_HEADER_BYTES}")]
    TooShort { len: usize },
    #[error("unknown message format version {0}")]
    Version(u8),
    #[error("message id is not 16 hex chars")]
    BadId,
}

impl StoredMessage {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(MESSAGE_HEADER_BYTES + self.body.len());
        self.put(&mut out);
        out.freeze()
    }

    /// Encodes into the free end of `arena` and returns the record as a slice of the arena's
    /// block (see [`Arena`]).
    pub fn encode_into(&self, arena: &mut Arena) -> Bytes {
        let out = arena.reserve(MESSAGE_HEADER_BYTES + self.body.len());
        self.put(out);
        out.split().freeze()
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_u8(MESSAGE_FORMAT_V1);
        out.put_i64(self.timestamp_ns);
        out.put_slice(self.id.as_bytes());
        out.put_u64(self.deliver_at_ns);
        out.put_slice(&self.body);
    }

    /// The message of a record, its body sharing the record's buffer.
    pub fn decode(record: &Bytes) -> Result<Self, MessageDecodeError> {
        let v = MessageView::parse(record)?;
        Ok(Self {
            id: v.id,
            timestamp_ns: v.timestamp_ns,
            deliver_at_ns: v.deliver_at_ns,
            body: record.slice(MESSAGE_HEADER_BYTES..),
        })
    }
}

/// A message read in place from a record's bytes (delivery copies the body straight into the
/// client's output; nothing is allocated or reference-counted per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub id: MessageId,
    pub timestamp_ns: i64,
    pub deliver_at_ns: u64,
    pub body: &'a [u8],
}

impl<'a> MessageView<'a> {
    pub fn parse(record: &'a [u8]) -> Result<Self, MessageDecodeError> {
        if record.len() < MESSAGE_HEADER_BYTES {
            return Err(MessageDecodeError::TooShort { len: record.len() });
        }
        if record[0] != MESSAGE_FORMAT_V1 {
            return Err(MessageDecodeError::Version(record[0]));
        }
        let timestamp_ns = i64::from_be_bytes(fixed(&record[1..9]));
        let id = MessageId::from_wire(&record[9..25]).ok_or(MessageDecodeError::BadId)?;
        let deliver_at_ns = u64::from_be_bytes(fixed(&record[25..33]));
        Ok(Self {
            id,
            timestamp_ns,
            deliver_at_ns,
            body: &record[MESSAGE_HEADER_BYTES..],
        })
    }
}

fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = StoredMessage {
            id: MessageId::from_wire(b"0123456789abcdef").unwrap(),
            timestamp_ns: 1_700_000_000_000_000_000,
            deliver_at_ns: 42,
            body: Bytes::from_static(b"hello"),
        };
        assert_eq!(StoredMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn arena_records_are_separate_and_whole() {
        let mut arena = Arena::default();
        let msg = |n: u8, len: usize| StoredMessage {
            id: MessageId::from_u64(u64::from(n)),
            timestamp_ns: 1,
            deliver_at_ns: 0,
            body: Bytes::from(vec![n; len]),
        };
        let small: Vec<_> = (0..3u8).map(|n| msg(n, 10)).collect();
        let records: Vec<Bytes> = small.iter().map(|m| m.encode_into(&mut arena)).collect();
        let big = msg(9, ARENA_BLOCK_BYTES * 2);
        let big_record = big.encode_into(&mut arena);
        let after = msg(7, 5).encode_into(&mut arena);
        for (m, r) in small.iter().zip(&records) {
            assert_eq!(&StoredMessage::decode(r).unwrap(), m);
        }
        assert_eq!(StoredMessage::decode(&big_record).unwrap(), big);
        assert_eq!(StoredMessage::decode(&after).unwrap().body.len(), 5);
    }

    #[test]
    fn arena_blocks_grow_from_a_page_to_the_largest() {
        let mut arena = Arena::default();
        let mut blocks = Vec::new();
        for n in 0..20_000u64 {
            let before = arena.free.as_ptr();
            let msg = StoredMessage {
                id: MessageId::from_u64(n),
                timestamp_ns: 1,
                deliver_at_ns: 0,
                body: Bytes::from_static(b"0123456789"),
            };
            let record = msg.encode_into(&mut arena);
            if record.as_ptr() != before {
                // A new block: what is left of it, plus this record.
                blocks.push(arena.free.capacity() + record.len());
            }
        }
        assert_eq!(
            blocks[..9],
            [512, 1024, 2048, 4096, 8192, 16_384, 32_768, 65_536, 65_536],
            "{blocks:?}"
        );
        assert!(blocks[7..].iter().all(|&b| b == ARENA_BLOCK_BYTES));
    }

    #[test]
    fn rejects_short_and_unknown() {
        assert_eq!(
            StoredMessage::decode(&Bytes::from_static(b"x")),
            Err(MessageDecodeError::TooShort { len: 1 })
        );
        let mut v = vec![9u8; MESSAGE_HEADER_BYTES];
        v[0] = 9;
        assert_eq!(
            StoredMessage::decode(&Bytes::from(v)),
            Err(MessageDecodeError::Version(9))
        );
    }
}
