//! The queues between shards, and the per-thread context a job runs with.
//!
//! - [`Mesh`] (shared by every thread): one bounded inbox per shard, and per inbox a budget of
//!   bytes that publish jobs hold until they have run ([`INBOX_BYTES_MAX`]), so what waits in
//!   an inbox is bounded in jobs and in bytes whoever sends.
//! - [`Link`] (one per thread): this shard's place and the mesh; [`Link::send`] queues a job on
//!   another shard (waiting for room: back-pressure), [`Link::call`] runs a closure there and
//!   awaits its answer.
//! - [`Shard`] (one per thread, owned by it): what a job is run with — the shard's broker and
//!   its protocol front end.
//! - [`serve_inbox`]: runs the jobs that arrive, in order, on the shard's thread. A job runs to
//!   its end without waiting (one that has to wait spawns a task), so jobs from one sender take
//!   effect in the order they were sent (a publisher's batches stay in order).

use super::Place;
use crate::broker::{Broker, KnownChannels};
use crate::connection::Frontend;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

/// Jobs an inbox holds before senders wait.
pub const INBOX_JOBS_MAX: usize = 1024;
/// Bytes of message bodies queued for one shard before publishers wait. A batch larger than
/// this (one MPUB of up to `--max-body-size`) waits until it has the inbox to itself.
pub const INBOX_BYTES_MAX: usize = 8 << 20;
/// Jobs run back to back before the inbox lets the ring submit everyone's IO.
const INBOX_JOBS_PER_TURN: usize = 256;

/// The other shard has stopped (or is stopping): the job was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exiting")]
pub struct Gone;

/// Work for a shard, run on its thread with its context.
pub type Job = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// Every shard's inbox (shared by all threads).
#[derive(Debug)]
pub struct Mesh {
    inboxes: Vec<mpsc::Sender<Job>>,
    bytes: Vec<Arc<Semaphore>>,
}

impl Mesh {
    /// The mesh for `count` shards and each shard's receiving end, by index.
    pub fn new(count: usize) -> (Arc<Self>, Vec<mpsc::Receiver<Job>>) {
        let (inboxes, receivers) = (0..count.max(1))
            .map(|_| mpsc::channel(INBOX_JOBS_MAX))
            .unzip();
        let bytes = (0..count.max(1))
            .map(|_| Arc::new(Semaphore::new(INBOX_BYTES_MAX)))
            .collect();
        (Arc::new(Self { inboxes, bytes }), receivers)
    }

    pub fn count(&self) -> usize {
        self.inboxes.len()
    }

    /// Tells every shard to stop at once (a start that failed): each runs this as its next job
    /// (the inboxes are empty then).
    pub fn abort_all(&self) {
        for inbox in &self.inboxes {
            let job: Job = Box::new(|shard| shard.finish());
            // A shard whose thread already ended needs no telling.
            let _gone = inbox.try_send(job);
        }
    }
}

/// This thread's way to the other shards.
#[derive(Debug, Clone)]
pub struct Link {
    pub place: Place,
    mesh: Arc<Mesh>,
}

impl Link {
    pub fn new(index: usize, mesh: Arc<Mesh>) -> Self {
        let place = Place {
            index,
            count: mesh.count(),
        };
        Self { place, mesh }
    }

    /// A link for a broker that runs alone (no other shard; unit tests).
    pub fn sole() -> (Self, mpsc::Receiver<Job>) {
        let (mesh, mut receivers) = Mesh::new(1);
        let rx = receivers.remove(0);
        (Self::new(0, mesh), rx)
    }

    /// Queues `job` on `shard`, waiting while its inbox is full.
    pub async fn send(&self, shard: usize, job: Job) -> Result<(), Gone> {
        let inbox = self.mesh.inboxes.get(shard).ok_or(Gone)?;
        inbox.send(job).await.map_err(|_| Gone)
    }

    /// Queues a job that carries `bytes` of message bodies: it holds that much of the shard's
    /// [`INBOX_BYTES_MAX`] until it has run.
    pub async fn send_bytes(
        &self,
        shard: usize,
        bytes: usize,
        job: impl FnOnce(&Rc<Shard>) + Send + 'static,
    ) -> Result<(), Gone> {
        let budget = self.mesh.bytes.get(shard).ok_or(Gone)?;
        let want = u32::try_from(bytes.clamp(1, INBOX_BYTES_MAX)).unwrap_or(u32::MAX);
        let permit: OwnedSemaphorePermit = Arc::clone(budget)
            .acquire_many_owned(want)
            .await
            .map_err(|_| Gone)?;
        self.send(
            shard,
            Box::new(move |shard| {
                job(shard);
                drop(permit);
            }),
        )
        .await
    }

    /// Runs `f` on `shard`'s thread and returns what its future gives.
    pub async fn call<T, F, Fut>(&self, shard: usize, f: F) -> Result<T, Gone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let rx = self.start_call(shard, f).await?;
        rx.await.map_err(|_| Gone)
    }

    /// Runs `f` on every shard at once; the answers in shard order.
    pub async fn call_all<T, F, Fut>(&self, f: F) -> Vec<Result<T, Gone>>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let mut pending = Vec::with_capacity(self.place.count);
        for shard in 0..self.place.count {
            pending.push(self.start_call(shard, f.clone()).await);
        }
        let mut answers = Vec::with_capacity(pending.len());
        for rx in pending {
            answers.push(match rx {
                Ok(rx) => rx.await.map_err(|_| Gone),
                Err(gone) => Err(gone),
            });
        }
        answers
    }

    async fn start_call<T, F, Fut>(&self, shard: usize, f: F) -> Result<oneshot::Receiver<T>, Gone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |shard| {
            let fut = f(Rc::clone(shard));
            crate::broker::spawn(async move {
                // The caller may have given up waiting: nothing to do then.
                let _gone = tx.send(fut.await);
            });
        });
        self.send(shard, job).await?;
        Ok(rx)
    }
}

/// One shard's context, on its own thread: what jobs run with.
#[derive(Debug)]
pub struct Shard {
    pub place: Place,
    pub broker: Rc<Broker>,
    /// The way to the other shards.
    pub link: Rc<Link>,
    pub frontend: Rc<Frontend>,
    /// Shard 0: where new topics learn their channels (the nsqlookupd query), once the
    /// control plane runs; the other shards' new topics ask it.
    pub known_channels: RefCell<Option<Rc<dyn KnownChannels>>>,
    /// Topics being created for forwarded publishes, and what waits for each.
    pub(super) creating: super::forward::Creating,
    /// Set once the shard has closed: its inbox stops.
    finished: Cell<bool>,
    inbox_stop: Notify,
    /// Stops this shard's protocol listener (the stop's first phase).
    pub stop_accepting: Rc<Notify>,
    /// The next shard a connection accepted on the unix socket goes to (shard 0).
    pub next_unix: Cell<usize>,
}

impl Shard {
    pub fn new(broker: Rc<Broker>, frontend: Rc<Frontend>, link: Rc<Link>) -> Rc<Self> {
        Rc::new(Self {
            place: broker.place,
            broker,
            link,
            frontend,
            known_channels: RefCell::new(None),
            creating: super::forward::Creating::default(),
            finished: Cell::new(false),
            inbox_stop: Notify::new(),
            stop_accepting: Rc::new(Notify::new()),
            next_unix: Cell::new(0),
        })
    }

    pub fn known_channels(&self) -> Option<Rc<dyn KnownChannels>> {
        self.known_channels.borrow().clone()
    }

    /// The inbox stops after the job that calls this (the shard's thread then ends).
    pub fn finish(&self) {
        self.finished.set(true);
        self.inbox_stop.notify_one();
    }
}

/// Runs the jobs sent to this shard, in order, until [`Shard::finish`] (or every sender is
/// gone). After [`INBOX_JOBS_PER_TURN`] jobs in a row it waits for the ring, so the IO the
/// jobs queued (appends, socket writes) is submitted while more jobs keep coming.
pub async fn serve_inbox(mut rx: mpsc::Receiver<Job>, shard: Rc<Shard>) {
    loop {
        let job = tokio::select! {
            job = rx.recv() => job,
            () = shard.inbox_stop.notified() => None,
        };
        let Some(job) = job else {
            return;
        };
        job(&shard);
        let mut ran = 1;
        while ran < INBOX_JOBS_PER_TURN && !shard.finished.get() {
            let Ok(job) = rx.try_recv() else {
                break;
            };
            job(&shard);
            ran += 1;
        }
        if shard.finished.get() {
            return;
        }
        if ran >= INBOX_JOBS_PER_TURN {
            crate::connection::transport::yield_to_ring().await;
        }
    }
}
