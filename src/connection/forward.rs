//! Publishing to a topic another shard owns, connection side: batches out, one answer per batch
//! back (the owner's side is `shard::forward`).
//!
//! Each PUB/MPUB/DPUB for a remote topic becomes one [`Item`] (all its bodies) in the batch for
//! its owner ([`Outgoing`]), and one `Reply::Remote` in the connection's ordered reply queue
//! that points at the batch's [`Answer`]. The connection sends its batches once it has run the
//! commands of one read (or when a batch reaches [`BATCH_ITEMS_MAX`] or [`BATCH_BYTES_MAX`]),
//! so a pipelining publisher costs one cross-thread wake per read, not per message. The writer
//! task sends each `OK` (or error frame) when the answer is in.

use super::Peers;
use crate::broker::topic::PublishError;
use bytes::Bytes;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::oneshot;

/// Most publish commands in one batch.
pub const BATCH_ITEMS_MAX: usize = 256;
/// A batch is sent once its bodies reach this many bytes.
pub const BATCH_BYTES_MAX: usize = 256 * 1024;

/// One publish command for the owner: every body of one PUB, MPUB or DPUB.
#[derive(Debug)]
pub struct Item {
    pub topic: String,
    pub bodies: Vec<Bytes>,
    pub defer: Option<Duration>,
}

impl Item {
    pub fn bytes(&self) -> usize {
        self.bodies.iter().map(Bytes::len).sum()
    }
}

/// Why the owner did not store an item (its text follows `<command> failed `). Sendable: it
/// comes back from another shard's thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// `--max-topic-bytes` refused it (HTTP 507 rather than 503).
    #[error("topic {topic} is full ({bytes} bytes)")]
    Full { topic: String, bytes: u64 },
    /// The owner could not store it (a disk error, or its topic could not be created).
    #[error("{0}")]
    Failed(String),
    /// The owner is stopping (or gone): nsqd's text for a publish refused at exit.
    #[error("exiting")]
    Exiting,
    /// An earlier item of its batch was refused, so it was not run.
    #[error("not run after an earlier failure")]
    NotRun,
}

impl From<&PublishError> for Failure {
    fn from(e: &PublishError) -> Self {
        match e {
            PublishError::Full { topic, bytes } => Self::Full {
                topic: topic.clone(),
                bytes: *bytes,
            },
            e @ (PublishError::Storage(_) | PublishError::Recovering { .. }) => {
                Self::Failed(e.to_string())
            }
        }
    }
}

/// What became of one item.
pub type Outcome = Result<(), Failure>;

/// The owner's answer to one batch, as the connection's writer waits for it.
#[derive(Debug)]
pub struct Answer {
    rx: RefCell<Option<oneshot::Receiver<Vec<Outcome>>>>,
    /// Once in: one outcome per item (empty if the owner went away: every item failed).
    outcomes: RefCell<Option<Vec<Outcome>>>,
}

impl Answer {
    fn new(rx: oneshot::Receiver<Vec<Outcome>>) -> Self {
        Self {
            rx: RefCell::new(Some(rx)),
            outcomes: RefCell::new(None),
        }
    }

    /// Item `index`'s outcome, if the answer is in.
    pub fn outcome(&self, index: usize) -> Option<Outcome> {
        let taken = {
            let mut rx = self.rx.borrow_mut();
            match rx.as_mut().map(oneshot::Receiver::try_recv) {
                Some(Err(oneshot::error::TryRecvError::Empty)) => return None,
                Some(done) => {
                    *rx = None;
                    Some(done.unwrap_or_default())
                }
                None => None,
            }
        };
        if let Some(outcomes) = taken {
            *self.outcomes.borrow_mut() = Some(outcomes);
        }
        let outcomes = self.outcomes.borrow();
        let all = outcomes.as_ref()?;
        Some(all.get(index).cloned().unwrap_or(Err(Failure::Exiting)))
    }

    /// Resolves once the answer is in (no borrow is held while waiting).
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            let mut rx = self.rx.borrow_mut();
            let Some(pending) = rx.as_mut() else {
                return Poll::Ready(());
            };
            match Pin::new(pending).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(done) => {
                    *rx = None;
                    *self.outcomes.borrow_mut() = Some(done.unwrap_or_default());
                    Poll::Ready(())
                }
            }
        })
        .await;
    }
}

/// A batch being built for one shard.
#[derive(Debug)]
struct Batch {
    items: Vec<Item>,
    bytes: usize,
    answer: Rc<Answer>,
    tx: oneshot::Sender<Vec<Outcome>>,
}

/// One connection's batches, one per target shard.
#[derive(Debug)]
pub struct Outgoing {
    batches: Vec<Option<Batch>>,
    waiting: usize,
}

impl Outgoing {
    pub fn new(shards: usize) -> Self {
        Self {
            batches: (0..shards).map(|_| None).collect(),
            waiting: 0,
        }
    }

    /// Adds `item` to `shard`'s batch: the answer it will be in, at which index, and whether
    /// the batch is now full (send it).
    pub fn push(&mut self, shard: usize, item: Item) -> (Rc<Answer>, usize, bool) {
        let Some(slot) = self.batches.get_mut(shard) else {
            // Not a shard: answered at once as a failure (cannot happen: owner() < count).
            let (tx, rx) = oneshot::channel();
            drop(tx);
            return (Rc::new(Answer::new(rx)), 0, false);
        };
        let batch = slot.get_or_insert_with(|| {
            let (tx, rx) = oneshot::channel();
            Batch {
                items: Vec::new(),
                bytes: 0,
                answer: Rc::new(Answer::new(rx)),
                tx,
            }
        });
        batch.bytes += item.bytes();
        batch.items.push(item);
        self.waiting += 1;
        let full = batch.items.len() >= BATCH_ITEMS_MAX || batch.bytes >= BATCH_BYTES_MAX;
        (Rc::clone(&batch.answer), batch.items.len() - 1, full)
    }

    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Sends every batch (waiting while an owner's inbox is full).
    pub async fn flush(&mut self, peers: &dyn Peers) {
        if self.is_empty() {
            return;
        }
        for shard in 0..self.batches.len() {
            self.flush_one(peers, shard).await;
        }
    }

    /// Sends `shard`'s batch, if any.
    pub async fn flush_one(&mut self, peers: &dyn Peers, shard: usize) {
        let Some(batch) = self.batches.get_mut(shard).and_then(Option::take) else {
            return;
        };
        self.waiting -= batch.items.len();
        let Batch {
            items, bytes, tx, ..
        } = batch;
        // A shard that is gone drops the batch, and with it `tx`: every item reads "exiting".
        peers.forward(shard, items, bytes, tx).await;
    }
}
