//! The connection layer: one NSQ V2 client connection, from the bytes on its socket to the
//! broker's topics and channels, and back.
//!
//! - [`accept`]: the accept loop (TCP or unix socket), admitting connections against the
//!   descriptor budget ([`admission`]).
//! - [`reader`]: the connection's reader loop (magic, deadlines, bounded work per turn):
//!   bytes → `protocol::decode` → [`session`], which runs each command against the broker
//!   (IDENTIFY's upgrades, AUTH ([`auth`]), publish, subscribe, FIN/REQ/TOUCH).
//! - [`writer`]: the outbox (ordered replies, message frames) and the task that writes it
//!   with nsqd's flush rules and heartbeats. [`client`]: the connection's state as `/stats`
//!   and the channels see it (to a channel it is a `broker::consumer::Consumer`).
//! - [`transport`]: bytes in and out through the socket, TLS ([`tls`]) and compression
//!   ([`compress`]).
//! - Other shards, seen from here ([`Peers`]): a publish for a topic another shard owns is
//!   batched to it ([`forward`]), and a `SUB` for such a topic moves the whole connection there
//!   ([`handoff`]). The shard layer carries both across threads without looking inside.
//!
//! `tokio_uring` is imported here (accept, transport) and in the storage IO layer only.

pub mod accept;
pub mod admission;
pub mod auth;
pub mod client;
pub mod compress;
pub mod forward;
pub mod handoff;
mod reader;
pub mod session;
pub mod tls;
pub mod transport;
pub mod writer;

use crate::broker::{Broker, Place};
use crate::protocol::Limits;
use admission::{Admission, Admitted};
use auth::AuthServer;
use client::Client;
use forward::{Item, Outcome};
use handoff::Handoff;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::oneshot;
use transport::MovingSocket;

/// What every protocol connection is configured with (built once from the options).
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// nsqd's limits and per-client defaults.
    pub limits: Limits,
    /// `--tls-required` is `true` or `tcp-https`: nothing but IDENTIFY before the upgrade.
    pub tls_required: bool,
    /// `--snappy`, `--deflate`: the compressions IDENTIFY may negotiate.
    pub snappy: bool,
    pub deflate: bool,
}

/// A future that stays on its thread.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The other shards, as a connection sees them (the shard layer implements it). Every call
/// crosses to another thread and carries a batch or a whole connection, never one message.
pub trait Peers: std::fmt::Debug {
    /// This shard among the others: which topics are local.
    fn place(&self) -> Place;

    /// Sends a batch of publishes (`bytes` of bodies) to `shard`, which owns their topics; it
    /// answers on `reply` once every item's ack policy is met. Waits while that shard's inbox
    /// is full. A shard that is gone drops `reply` (every item then reads `exiting`).
    fn forward(
        &self,
        shard: usize,
        items: Vec<Item>,
        bytes: usize,
        reply: oneshot::Sender<Vec<Outcome>>,
    ) -> LocalFuture<'_, ()>;

    /// Moves a connection to `shard`, which runs its `SUB` and serves it from then on (a shard
    /// that is gone drops it: the connection closes).
    fn hand_off(&self, shard: usize, connection: Handoff) -> LocalFuture<'_, ()>;

    /// Sends a connection accepted on the unix socket to `shard`, which serves it.
    fn deal(&self, shard: usize, socket: MovingSocket, admitted: Admitted) -> LocalFuture<'_, ()>;
}

/// What every protocol connection of one shard shares.
#[derive(Debug)]
pub struct Frontend {
    pub broker: Rc<Broker>,
    pub config: Rc<ConnConfig>,
    /// The TLS configuration IDENTIFY `tls_v1` upgrades with (none without a certificate).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The `--auth-http-address` servers (none: AUTH is disabled).
    pub auth: Option<Rc<dyn AuthServer>>,
    /// The protocol connections' share of the descriptor budget (shared by every shard).
    pub admission: Arc<Admission>,
    /// The other shards.
    pub peers: Rc<dyn Peers>,
    /// The connections this shard serves, by client id (`/stats`, the clean stop).
    pub clients: RefCell<HashMap<u64, Rc<Client>>>,
    /// When this process started (Unix seconds): no client connected before.
    pub start_unix_s: u64,
}

impl Frontend {
    /// A client id no other connection of this process has (connections move between shards).
    pub fn next_client_id() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn clients(&self) -> Vec<Rc<Client>> {
        self.clients.borrow().values().cloned().collect()
    }
}
