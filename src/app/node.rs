//! This nsqd instance as its HTTP API and loops see it (on shard 0): its shard (the broker, the
//! way to the other shards), the configuration, `nsqd.dat`, the addresses it really listens
//! on, and the two options that can change at run time through `PUT /config/:opt`
//! (`nsqlookupd_tcp_addresses`, `log_level`). Single-threaded: `Cell`/`RefCell`, no borrow
//! held across an `.await`.

use super::config::Config;
use super::loops::lookupd_channels::LookupdChannels;
use super::metadata::Metadata;
use crate::broker::Broker;
use crate::options::{LogLevel, Options};
use crate::shard::{Link, Shard};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use tokio::sync::Notify;

/// Applies a new log level to the process's logger (installed by `main`; tests run without).
pub type LogLevelHook = Box<dyn Fn(LogLevel) + Send + Sync>;

static LOG_LEVEL_HOOK: OnceLock<LogLevelHook> = OnceLock::new();

/// Lets `PUT /config/log_level` change what the logger prints. Only the first call counts.
pub fn set_log_level_hook(hook: LogLevelHook) {
    let _already_set = LOG_LEVEL_HOOK.set(hook);
}

#[derive(Debug)]
pub struct Node {
    /// Shard 0, where the node runs.
    pub shard: Rc<Shard>,
    /// Shard 0's broker.
    pub broker: Rc<Broker>,
    /// The way to every shard.
    pub link: Rc<Link>,
    pub config: Rc<Config>,
    /// The `nsqd.dat` writer.
    pub metadata: Rc<Metadata>,
    /// When the process started (Unix seconds).
    pub start_unix_s: u64,
    /// The protocol listener's address (`None` on a unix socket).
    pub tcp_addr: Option<SocketAddr>,
    /// The HTTP listener's address (`None` when disabled or on a unix socket).
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS listener's address (`None` when there is none or it is a unix socket).
    pub https_addr: Option<SocketAddr>,
    lookupd_tcp_addresses: RefCell<Vec<String>>,
    /// Wakes the lookup manager when the peer list changes.
    pub lookupd_changed: Notify,
    /// The lookupds' HTTP addresses, queried for a new topic's channels.
    pub lookupd_http: Rc<LookupdChannels>,
    log_level: Cell<LogLevel>,
    /// `GET /snapshot`: one at a time.
    pub snapshots: super::snapshot::Snapshots,
}

impl Node {
    #[allow(clippy::similar_names)] // http and https are the flags' own names
    pub fn new(
        shard: Rc<Shard>,
        config: Rc<Config>,
        metadata: Rc<Metadata>,
        tcp_addr: Option<SocketAddr>,
        http_addr: Option<SocketAddr>,
        https_addr: Option<SocketAddr>,
    ) -> Rc<Self> {
        let o = &config.options;
        let lookupd = o.lookupd_tcp_addresses.clone();
        let log_level = o.log_level;
        let lookupd_http = Rc::new(LookupdChannels::new(
            o.http_client_connect_timeout,
            o.http_client_request_timeout,
        ));
        // New topics of every shard ask the nsqlookupds (the others through shard 0).
        shard
            .broker
            .set_known_channels(Rc::clone(&lookupd_http) as _);
        *shard.known_channels.borrow_mut() = Some(Rc::clone(&lookupd_http) as _);
        Rc::new(Self {
            broker: Rc::clone(&shard.broker),
            link: Rc::clone(&shard.link),
            start_unix_s: shard.frontend.start_unix_s,
            shard,
            config,
            metadata,
            tcp_addr,
            http_addr,
            https_addr,
            lookupd_tcp_addresses: RefCell::new(lookupd),
            lookupd_changed: Notify::new(),
            lookupd_http,
            log_level: Cell::new(log_level),
            snapshots: super::snapshot::Snapshots::default(),
        })
    }

    /// The TCP port announced to nsqlookupd (`--broadcast-tcp-port`, else the real one, else 0).
    pub fn broadcast_tcp_port(&self) -> u16 {
        match self.options().broadcast_tcp_port {
            0 => self.tcp_addr.map_or(0, |a| a.port()),
            p => p,
        }
    }

    /// The HTTP port announced to nsqlookupd (`--broadcast-http-port`, else the real one, else 0).
    pub fn broadcast_http_port(&self) -> u16 {
        match self.options().broadcast_http_port {
            0 => self.http_addr.map_or(0, |a| a.port()),
            p => p,
        }
    }

    /// The options as given.
    pub fn options(&self) -> &Options {
        &self.config.options
    }

    pub fn lookupd_tcp_addresses(&self) -> Vec<String> {
        self.lookupd_tcp_addresses.borrow().clone()
    }

    pub fn set_lookupd_tcp_addresses(&self, addresses: Vec<String>) {
        *self.lookupd_tcp_addresses.borrow_mut() = addresses;
        self.lookupd_changed.notify_one();
    }

    pub fn log_level(&self) -> LogLevel {
        self.log_level.get()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        self.log_level.set(level);
        if let Some(hook) = LOG_LEVEL_HOOK.get() {
            hook(level);
        }
    }
}
