//! Keeping `nsqd.dat` up to date (shard 0): written at start, after every persistent create or
//! delete (coalesced), while writes fail (as a probe), and at a clean stop — always from every
//! shard's current picture ([`gather::metadata`]), never from a partial one (a shard that does
//! not answer fails the write). The file's model is `broker::metadata`.

use super::gather;
use crate::broker::{metadata, Broker, BrokerError};
use crate::shard::Link;
use ringsq_storage::Io as _;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// How often a failed `nsqd.dat` write is tried again (and, while writes fail, a probe write).
pub const METADATA_RETRY: Duration = Duration::from_secs(1);
/// Least time between two background rewrites of `nsqd.dat`.
pub const METADATA_WRITE_INTERVAL_MIN: Duration = Duration::from_millis(200);
/// After a background rewrite that took `t`, the next waits at least this many times `t`.
pub const METADATA_WRITE_PAUSE_FACTOR: u32 = 9;

/// The `nsqd.dat` writer (one, on shard 0).
#[derive(Debug)]
pub struct Metadata {
    /// Shard 0's broker: its storage backend, data path and lifecycle events.
    broker: Rc<Broker>,
    link: Rc<Link>,
    /// One write at a time.
    lock: tokio::sync::Mutex<()>,
    /// The file is behind the brokers' state (a write failed, or changes wait to be written).
    dirty: Cell<bool>,
}

impl Metadata {
    pub fn new(broker: Rc<Broker>, link: Rc<Link>) -> Rc<Self> {
        Rc::new(Self {
            broker,
            link,
            lock: tokio::sync::Mutex::new(()),
            dirty: Cell::new(false),
        })
    }

    /// Rewrites `nsqd.dat` from the current state of every shard (no-op without a data
    /// directory).
    pub async fn persist(&self) -> Result<(), BrokerError> {
        let Some(data) = self.broker.cfg().data_path.clone() else {
            return Ok(());
        };
        let _one_writer = self.lock.lock().await;
        // Taken after the lock: a writer that waited writes the newest picture.
        let Ok(topics) = gather::metadata(&self.link).await else {
            self.dirty.set(true);
            return Err(BrokerError::Exiting);
        };
        let written = metadata::write(self.broker.io(), &data, topics).await;
        // Behind until a write of the newest picture succeeds (the loop retries).
        self.dirty.set(written.is_err());
        Ok(written?)
    }

    /// As nsqd at start: writes `nsqd.dat` back at once (a Go-written one becomes ours). Unlike
    /// nsqd, a failure (a full disk) does not stop the start: the loop writes it later.
    pub async fn persist_at_start(&self) {
        if let Err(e) = self.persist().await {
            tracing::error!("failed to persist metadata - {e} (retrying in the background)");
            self.dirty.set(true);
        }
    }

    /// Subscribes now, then (when polled) rewrites `nsqd.dat` after every persistent create or
    /// delete, coalescing bursts into one write. A failed write is tried again every
    /// [`METADATA_RETRY`]; so is one while the latest write anywhere failed (a full disk): its
    /// success is what tells that writes work again when nothing else is written. Ends when the
    /// broker exits.
    pub fn run(self: Rc<Self>) -> impl std::future::Future<Output = ()> {
        let mut rx = self.broker.env.events.subscribe();
        async move {
            loop {
                let retry = self.dirty.get() || self.broker.io().health().latest_write_failed();
                let event = if retry {
                    tokio::time::timeout(METADATA_RETRY, rx.recv()).await.ok()
                } else {
                    Some(rx.recv().await)
                };
                let mut changed = match event {
                    None | Some(Err(RecvError::Lagged(_))) => true,
                    Some(Ok(event)) => event.is_persistent(),
                    Some(Err(RecvError::Closed)) => return,
                };
                loop {
                    match rx.try_recv() {
                        Ok(event) => changed |= event.is_persistent(),
                        Err(TryRecvError::Lagged(_)) => changed = true,
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                if self.broker.exiting.get() {
                    return;
                }
                if changed || self.dirty.get() {
                    let started = tokio::time::Instant::now();
                    if let Err(e) = self.persist().await {
                        tracing::error!("failed to persist metadata - {e}");
                    }
                    // The file grows with the topics: rewritten per create, creating N topics
                    // would cost N². So a burst of creates gets one rewrite per interval, and
                    // rewriting takes at most a tenth of the time, however large the file. (A
                    // create does not wait for it: the topic's directory and the channel's
                    // state file are on disk before its `200`, and start-up finds them.)
                    let spent = started.elapsed();
                    let pause = METADATA_WRITE_INTERVAL_MIN
                        .max(spent.saturating_mul(METADATA_WRITE_PAUSE_FACTOR));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}
