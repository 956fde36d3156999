//! A channel's consumers, as the broker sees them: whatever takes the messages a channel hands
//! out. A client connection is one (`connection::client::Client`); the simulation has its own.
//!
//! The consumer keeps its RDY window (how many it may have in flight) and its count of
//! messages in flight; the channel keeps which messages those are. So a channel tells the
//! consumer each time one is handed out ([`Consumer::deliver`]) and each time one no longer
//! counts ([`Consumer::release`]).

use crate::protocol::MessageId;
use std::time::Duration;

/// Something that consumes a channel (nsqd's client, as its channel sees it).
pub trait Consumer: std::fmt::Debug {
    /// Unique among the process's consumers (a connection keeps its id when it moves).
    fn id(&self) -> u64;

    /// nsqd's `IsReadyForMessages`: subscribed, not closing or closed, and fewer messages in
    /// flight than its RDY count.
    fn is_ready(&self) -> bool;

    /// IDENTIFY's `sample_rate` (0: every message; else the percentage delivered).
    fn sample_rate(&self) -> u8;

    /// How long a message handed to it stays in flight before it times out (IDENTIFY's
    /// `msg_timeout`, or `--msg-timeout`).
    fn msg_timeout(&self) -> Duration;

    /// A message handed to it: one more in flight. The message's `attempts` count this
    /// delivery.
    fn deliver(&self, timestamp_ns: i64, attempts: u16, id: &MessageId, body: &[u8]);

    /// One of its messages no longer counts as in flight (finished, requeued, timed out,
    /// dropped). True if that reopened its RDY window (it was full and is ready now): the
    /// consumer has been woken, and the channel should hand out more.
    fn release(&self) -> bool;

    /// None of its messages is in flight any more (the channel was emptied).
    fn release_all(&self);

    /// Its channel is gone (deleted): the consumer must stop (a connection closes).
    fn close(&self);
}
