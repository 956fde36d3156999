//! The shards' threads: one tokio-uring runtime each (shard 0's on the thread that calls
//! [`run_first`]), what each runs at start, and the two phases of a clean stop.
//!
//! Start: every shard opens its broker at once (its topics' recovery runs in parallel with the
//! others'), starts its inbox and its checkpoint and recent-save loops, and says it is ready;
//! shard 0 waits for all before it writes `nsqd.dat` and binds the listeners ([`listen`] binds
//! the others' TCP listeners on shard 0's port). A shard that fails to open fails the start:
//! the others are told to stop ([`Mesh::abort_all`]).
//!
//! Stop (driven by shard 0, `server::stop`): [`stop_clients`] on every shard (stop accepting,
//! close every connection, wait for them), then `nsqd.dat` is written while every shard still
//! answers, then [`close`] on every other shard (flush, fsync, save every channel; its thread
//! then ends), then shard 0 closes its own topics.

use super::mesh::serve_inbox;
use super::{Job, Link, Mesh, Shard};
use crate::broker::events::Events;
use crate::broker::{Broker, BrokerConfig, BrokerError, KnownChannels};
use crate::connection::admission::Admission;
use crate::connection::auth::AuthServer;
use crate::connection::{accept, ConnConfig, Frontend};
use ringsq_storage::UringIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a clean stop waits for a shard's connections to flush before it goes on regardless.
pub const SHUTDOWN_CLIENT_WAIT: Duration = Duration::from_secs(5);

/// Builds a shard's auth servers on its own thread (they hold thread-local state).
pub type AuthFactory = Arc<dyn Fn() -> Option<Rc<dyn AuthServer>> + Send + Sync>;

/// What a shard needs to open (sendable: built on the main thread).
pub struct Start {
    pub index: usize,
    pub broker: BrokerConfig,
    pub connection: ConnConfig,
    pub mesh: Arc<Mesh>,
    pub events: Events,
    /// The certificate IDENTIFY `tls_v1` upgrades with.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The `--auth-http-address` servers (`None` gives none: AUTH is disabled).
    pub auth: AuthFactory,
    /// The protocol connections' share of the descriptor budget (one for every shard).
    pub admission: Arc<Admission>,
    /// When the process started (Unix seconds).
    pub start_unix_s: u64,
}

impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Runs `main` as shard 0, on this thread's tokio-uring runtime.
pub fn run_first<T>(main: impl Future<Output = T>) -> std::io::Result<T> {
    block_on_kept(tracing::Instrument::instrument(main, shard_span(0)))
}

/// The span of everything a shard's thread does: every line it logs names the shard.
fn shard_span(index: usize) -> tracing::Span {
    tracing::info_span!("shard", shard = index)
}

/// Runs `main` on a new tokio-uring runtime on this thread, then leaves the runtime undropped.
///
/// Why not drop it: tokio-uring 0.5's driver, when dropped, frees the buffers of operations
/// whose futures were dropped earlier (a read or accept abandoned at a deadline or a stop)
/// before their cancellation has completed, so the kernel may write into freed memory. It was
/// seen as heap corruption at exit (`malloc_consolidate(): unaligned fastbin chunk`, about one
/// stop in three of the 20 000-topic test). A runtime ends only when its shard has flushed,
/// fsynced and saved everything and the process is about to exit, so keeping its memory and
/// its ring until then costs nothing.
fn block_on_kept<T>(main: impl Future<Output = T>) -> std::io::Result<T> {
    let runtime = tokio_uring::Runtime::new(&tokio_uring::builder())?;
    let out = runtime.block_on(main);
    std::mem::forget(runtime);
    Ok(out)
}

/// Starts shard `start.index` on its own thread: it opens its broker, says so on `ready`
/// (`Err` with the reason if it could not), then runs the jobs sent to it until it is closed.
pub fn spawn(
    start: Start,
    inbox: mpsc::Receiver<Job>,
    ready: oneshot::Sender<Result<(), String>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let start_index = start.index;
    std::thread::Builder::new()
        .name(format!("ringsq-shard-{start_index}"))
        .spawn(move || {
            let span = shard_span(start_index);
            let ran = block_on_kept(tracing::Instrument::instrument(
                async move {
                    match open(start).await {
                        Err(e) => {
                            let _shard_0_gone = ready.send(Err(e.to_string()));
                        }
                        Ok(shard) => {
                            start_loops(&shard);
                            shard.broker.set_known_channels(Rc::new(AskShardZero {
                                link: Rc::clone(&shard.link),
                            }));
                            let _shard_0_gone = ready.send(Ok(()));
                            serve_inbox(inbox, shard).await;
                        }
                    }
                },
                span,
            ));
            if let Err(e) = ran {
                // `ready` went with the future: shard 0 sees this shard gone and fails the start.
                tracing::error!(
                    "shard {}: cannot start an io_uring runtime: {e}",
                    start_index
                );
            }
        })
}

/// Opens a shard's broker (the topics it owns) and builds its context.
pub async fn open(start: Start) -> Result<Rc<Shard>, BrokerError> {
    let Start {
        index,
        broker,
        connection,
        mesh,
        events,
        tls,
        auth,
        admission,
        start_unix_s,
    } = start;
    let link = Rc::new(Link::new(index, mesh));
    let broker = Broker::open(broker, UringIo, link.place, events).await?;
    let frontend = Rc::new(Frontend {
        broker: Rc::clone(&broker),
        config: Rc::new(connection),
        tls,
        auth: auth(),
        admission,
        peers: Rc::clone(&link) as _,
        clients: RefCell::new(HashMap::new()),
        start_unix_s,
    });
    Ok(Shard::new(broker, frontend, link))
}

/// The shard's inbox and its periodic loops (channel states saved, retention).
pub fn start_loops(shard: &Rc<Shard>) {
    crate::broker::spawn(Rc::clone(&shard.broker).checkpoint_loop());
    crate::broker::spawn(Rc::clone(&shard.broker).recent_save_loop());
}

/// Serves shard 0's inbox (the others' is their thread's main task).
pub fn serve_first_inbox(inbox: mpsc::Receiver<Job>, shard: &Rc<Shard>) {
    crate::broker::spawn(serve_inbox(inbox, Rc::clone(shard)));
}

/// Binds this shard's protocol listener on `addr` (shard 0's address: `SO_REUSEPORT`) and
/// serves it until the stop.
pub fn listen(shard: &Rc<Shard>, addr: SocketAddr) -> Result<(), String> {
    let listener = accept::Listener::bind_tcp(addr).map_err(|e| e.to_string())?;
    serve_protocol(shard, listener);
    Ok(())
}

/// Serves `listener` on this shard until its first stop phase.
pub fn serve_protocol(shard: &Rc<Shard>, listener: accept::Listener) {
    let frontend = Rc::clone(&shard.frontend);
    let admission = Arc::clone(&frontend.admission);
    let stop = Rc::clone(&shard.stop_accepting);
    crate::broker::spawn(async move {
        accept::serve(listener, frontend, admission, async move {
            stop.notified().await;
        })
        .await;
    });
}

/// The stop's first phase on one shard: no new connections, every connection closed (after
/// flushing, at most [`SHUTDOWN_CLIENT_WAIT`]).
pub async fn stop_clients(shard: Rc<Shard>) {
    shard.broker.exiting.set(true);
    shard.stop_accepting.notify_one();
    let frontend = &shard.frontend;
    for c in frontend.clients() {
        c.closed.set(true);
        c.wake.notify_one();
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_CLIENT_WAIT;
    while !frontend.clients.borrow().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts the stop's second phase on another shard: its topics closed, then its thread ends.
/// The receiver resolves once its topics are closed.
pub async fn start_close(link: &Link, shard: usize) -> Result<oneshot::Receiver<()>, super::Gone> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |shard| {
        let shard = Rc::clone(shard);
        crate::broker::spawn(async move {
            shard.broker.close().await;
            let _caller_gone = tx.send(());
            shard.finish();
        });
    });
    link.send(shard, job).await?;
    Ok(rx)
}

/// A new topic on shard k asks shard 0 (which holds the nsqlookupd peers) for its channels.
#[derive(Debug)]
struct AskShardZero {
    link: Rc<Link>,
}

impl KnownChannels for AskShardZero {
    fn channels_of<'a>(
        &'a self,
        topic: &'a str,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + 'a>> {
        let topic = topic.to_owned();
        Box::pin(async move {
            self.link
                .call(0, move |s| async move {
                    match s.known_channels() {
                        Some(source) => source.channels_of(&topic).await,
                        None => Vec::new(),
                    }
                })
                .await
                .unwrap_or_default()
        })
    }
}
