//! ringsq: NSQ's `nsqd` on `io_uring`, with a durable log at its centre.
//!
//! The layers, each depending only on those below it (`tests/layering.rs` checks it):
//!
//! | layer | what |
//! | --- | --- |
//! | [`app`] | the process: start and stop, listeners, the HTTP API, nsqlookupd and statsd loops, `/stats`, configuration, the offline tools |
//! | [`shard`] | one `io_uring` runtime per core: the queues between them, forwarded publishes, connections moving |
//! | [`connection`] | one NSQ V2 client connection: reader, session (the commands), writer, TLS, compression |
//! | [`broker`] | topics, channels (cursors, in flight, deferred, parked, dead letters), messages; no sockets, no threads; generic over the storage's `Io` |
//! | [`protocol`], [`options`] | the NSQ V2 codec (pure, fuzzed); nsqd's flags |
//! | `ringsq-storage` | the log: segments, records, fsync policy, recovery (its own crate) |
//!
//! Where a publish goes, socket to disk: `connection::reader` (read a frame) → `protocol`
//! (decode it into a `Command`) → `connection::session` (run it) →
//! `broker::topic::Topic::publish` (append to the topic's `ringsq_storage::Log`) → the log's
//! writer task (one batched `io_uring` write, then fdatasync per policy); the `OK` goes out
//! through `connection::writer` once the ack policy is met. Channels are cursors over that log
//! (`broker::channel`).

pub mod app;
pub mod broker;
pub mod connection;
pub mod options;
pub mod protocol;
pub mod shard;
