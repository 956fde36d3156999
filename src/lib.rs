//! ringsq: NSQ's `nsqd` on `io_uring`, with a durable log at its centre.
//!
//! Where a publish goes, socket to disk:
//! `tcp::conn` (read a frame) → `protocol` (decode it into a `Command`) →
//! `broker::topic::Topic::publish` (append to the topic's `ringsq_storage::Log`) →
//! the log's writer task (one batched `io_uring` write, then fdatasync per policy).
//! Channels are cursors over that log (`broker::channel`).
//!
//! Topics are spread over one `io_uring` runtime per core (`--shards`): `shard` is the
//! boundary, and the only way from one shard's thread to another's.

pub mod auth;
pub mod broker;
pub mod fds;
pub mod http;
pub mod listen;
pub mod log_json;
pub mod loops;
pub mod node;
pub mod options;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod tools;

pub use server::limits as options_limits;
