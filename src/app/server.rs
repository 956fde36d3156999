//! Starting and stopping the broker: raise the descriptor limit, build the configuration
//! ([`Config`]), the TLS configuration and the auth servers' client, lock the data directory,
//! start the shards ([`crate::shard`]: each opens the topics it owns), bind the listeners (TCP
//! or unix protocol listener, HTTP, HTTPS: [`super::listen`]), serve until shutdown, then
//! drain: stop accepting, close clients, write `nsqd.dat`, flush and fsync every log and save
//! every channel's state on every shard, release the lock.

use super::auth::AuthServers;
use super::config::Config;
use super::http::{HttpListener, HttpServer};
use super::listen;
use super::metadata::Metadata;
use super::node::Node;
use crate::broker::events::Events;
use crate::broker::Clock;
use crate::connection::admission::Admission;
use crate::connection::auth::AuthServer;
use crate::options::{Options, TlsRequired};
use crate::shard::runner::{self, AuthFactory, Start};
use crate::shard::{Job, Link, Mesh, Shard};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("--data-path={path} in use (possibly by another instance of nsqd)")]
    DataPathInUse { path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to listen on {flag}={addr}: {reason}")]
    Listen {
        flag: &'static str,
        addr: String,
        reason: String,
    },
    #[error("{0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// Another shard failed to open (its error, as text: it came from another thread).
    #[error("{reason}")]
    Shard { reason: String },
    #[error("failed to build TLS config - {0}")]
    Tls(#[from] super::tls::TlsError),
    #[error("starting shard {shard}: {source}")]
    Thread {
        shard: usize,
        source: std::io::Error,
    },
}

/// Takes the data directory's lock (held until the returned file is dropped).
pub fn lock_data_path(path: &Path) -> Result<File, ServerError> {
    std::fs::create_dir_all(path).map_err(|source| ServerError::Io {
        op: "create_dir_all",
        path: path.to_owned(),
        source,
    })?;
    let dir = File::open(path).map_err(|source| ServerError::Io {
        op: "open",
        path: path.to_owned(),
        source,
    })?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::DataPathInUse {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(ServerError::Io {
            op: "flock",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Runs the broker until `shutdown` resolves, then stops it cleanly: every shard on its own
/// thread, shard 0 (the control plane) on this one.
pub fn run(
    mut options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    if options.data_path.as_os_str().is_empty() {
        // nsqd: no --data-path means the current directory.
        options.data_path = std::env::current_dir().map_err(|source| ServerError::Io {
            op: "getcwd",
            path: PathBuf::new(),
            source,
        })?;
    }
    raise_descriptor_limit();
    let config = Config::from(&options);
    let tls = super::tls::server_config(&options)?;
    let auth = auth_servers(&options)?;
    let lock = lock_data_path(&options.data_path)?;
    let config = Arc::new(check_shards(config, &lock));
    log_budget(&config);
    let (mesh, inboxes) = Mesh::new(config.shards);
    let events = Events::default();
    let admission = Admission::new("TCP", config.budget.protocol_connections_max);
    let start_unix_s = Clock::System.now_ns() / 1_000_000_000;
    let start = |index| Start {
        index,
        broker: config.broker.clone(),
        connection: config.connection.clone(),
        mesh: Arc::clone(&mesh),
        events: events.clone(),
        tls: tls.clone(),
        auth: Arc::clone(&auth),
        admission: Arc::clone(&admission),
        start_unix_s,
    };
    let mut inboxes = inboxes.into_iter();
    let first_inbox = inboxes.next();
    let mut threads = Vec::new();
    let mut readies = Vec::new();
    let mut spawned = Ok(());
    for (i, inbox) in inboxes.enumerate() {
        let (ready, is_ready) = oneshot::channel();
        match runner::spawn(start(i + 1), inbox, ready) {
            Ok(thread) => threads.push(thread),
            Err(source) => {
                spawned = Err(ServerError::Thread {
                    shard: i + 1,
                    source,
                });
                break;
            }
        }
        readies.push(is_ready);
    }
    let result = match (spawned, first_inbox) {
        (Ok(()), Some(inbox)) => {
            let config = Rc::new(Config::clone(&config));
            runner::run_first(first(config, start(0), inbox, readies, shutdown)).unwrap_or_else(
                |source| {
                    Err(ServerError::Io {
                        op: "io_uring_setup",
                        path: PathBuf::new(),
                        source,
                    })
                },
            )
        }
        (Err(e), _) => Err(e),
        (Ok(()), None) => Ok(()),
    };
    if result.is_err() {
        mesh.abort_all();
    }
    for thread in threads {
        if thread.join().is_err() {
            tracing::error!("a shard's thread panicked");
        }
    }
    drop(lock);
    result
}

/// The configuration for one shard if connections cannot move between shards here
/// ([`crate::connection::handoff::probe`]).
fn check_shards(config: Config, lock: &File) -> Config {
    let count = config.shards;
    if count > 1 {
        if let Err(e) = crate::connection::handoff::probe(lock) {
            tracing::warn!(
                "--shards: connections cannot move between threads here (pidfd_getfd: {e}); running one shard"
            );
            return config.with_shards(1);
        }
    }
    tracing::info!("shards: {count} (topics spread over {count} io_uring runtime(s))");
    config
}

/// Shard 0: opens its topics, waits for the other shards, writes `nsqd.dat`, binds the
/// listeners and runs the control plane until `shutdown`; then stops every shard.
async fn first(
    config: Rc<Config>,
    start: Start,
    inbox: mpsc::Receiver<Job>,
    readies: Vec<oneshot::Receiver<Result<(), String>>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let opened = runner::open(start).await;
    let mut failed = opened.as_ref().err().map(ToString::to_string);
    for (i, ready) in readies.into_iter().enumerate() {
        let reason = match ready.await {
            Ok(Ok(())) => continue,
            Ok(Err(reason)) => reason,
            Err(_) => format!("shard {} ended", i + 1),
        };
        failed.get_or_insert(reason);
    }
    let shard = match (opened, failed) {
        (Ok(shard), None) => shard,
        (Err(e), _) => return Err(e.into()),
        (Ok(_), Some(reason)) => return Err(ServerError::Shard { reason }),
    };
    runner::serve_first_inbox(inbox, &shard);
    runner::start_loops(&shard);
    let metadata = Metadata::new(Rc::clone(&shard.broker), Rc::clone(&shard.link));
    metadata.persist_at_start().await;
    serve(&shard, config, &metadata, shutdown).await?;
    stop(&shard, &metadata).await;
    Ok(())
}

/// Binds the listeners and serves until `shutdown` resolves (shard 0).
async fn serve(
    shard: &Rc<Shard>,
    config: Rc<Config>,
    metadata: &Rc<Metadata>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let tls = shard.frontend.tls.clone();
    let listeners = Listeners::bind(&shard.link, &config.options, tls.is_some()).await?;
    let http_connections_max = config.budget.http_connections_max;
    let plain_tls_required = config.options.tls_required == TlsRequired::Required;
    let node = Node::new(
        Rc::clone(shard),
        config,
        Rc::clone(metadata),
        listeners.tcp_addr,
        listeners.http.as_ref().and_then(|(_, a)| *a),
        listeners.https.as_ref().and_then(|(_, a)| *a),
    );
    crate::broker::spawn(Rc::clone(metadata).run());
    crate::broker::spawn(super::loops::lookup::manager(Rc::clone(&node)));
    crate::broker::spawn(super::loops::statsd::run(Rc::clone(&node)));
    let http_admission = Admission::new("HTTP", http_connections_max);
    let http_stop = Rc::new(tokio::sync::Notify::new());
    for (listener, https) in [(listeners.http, false), (listeners.https, true)] {
        let Some((listener, _)) = listener else {
            continue;
        };
        let server = Rc::new(HttpServer {
            node: Rc::clone(&node),
            admission: Arc::clone(&http_admission),
            tls: https
                .then(|| tls.clone().map(tokio_rustls::TlsAcceptor::from))
                .flatten(),
            tls_required: !https && plain_tls_required,
        });
        let stop = Rc::clone(&http_stop);
        crate::broker::spawn(async move {
            super::http::serve(listener, server, async move { stop.notified().await }).await;
        });
    }
    let frontend = Rc::clone(&shard.frontend);
    let admission = Arc::clone(&frontend.admission);
    crate::connection::accept::serve(listeners.tcp, frontend, admission, shutdown).await;
    tracing::info!("TCP: closing");
    http_stop.notify_waiters();
    Ok(())
}

/// The three listeners, bound.
struct Listeners {
    tcp: crate::connection::accept::Listener,
    tcp_addr: Option<SocketAddr>,
    http: Option<(HttpListener, Option<SocketAddr>)>,
    https: Option<(HttpListener, Option<SocketAddr>)>,
}

impl Listeners {
    /// Binds `--tcp-address` (on every shard: shard 0 first, the others on its port),
    /// `--http-address` and (with a certificate) `--https-address`, and logs where each listens
    /// (`<KIND>: listening on <addr or path>`, as nsqd) once every shard listens.
    async fn bind(link: &Link, o: &Options, tls: bool) -> Result<Self, ServerError> {
        let (tcp, tcp_addr) = listen::bind_protocol(&o.tcp_address)?;
        if let Some(addr) = tcp_addr {
            for shard in 1..link.place.count {
                let bound = link
                    .call(shard, move |s| async move { runner::listen(&s, addr) })
                    .await
                    .unwrap_or_else(|gone| Err(gone.to_string()));
                bound.map_err(|reason| ServerError::Listen {
                    flag: "--tcp-address",
                    addr: addr.to_string(),
                    reason,
                })?;
            }
        }
        let http = listen::bind_http("--http-address", &o.http_address).await?;
        let https = if tls {
            listen::bind_http("--https-address", &o.https_address).await?
        } else {
            None
        };
        for (name, bound, flag) in [
            ("HTTP", http.as_ref().map(|(_, a)| *a), &o.http_address),
            ("HTTPS", https.as_ref().map(|(_, a)| *a), &o.https_address),
        ] {
            if let Some(addr) = bound {
                tracing::info!("{name}: listening on {}", listen::describe(addr, flag));
            }
        }
        tracing::info!(
            "TCP: listening on {}",
            listen::describe(tcp_addr, &o.tcp_address)
        );
        Ok(Self {
            tcp,
            tcp_addr,
            http,
            https,
        })
    }
}

/// The TLS client for the `--auth-http-address` servers, if any: `--tls-root-ca-file`, or the
/// system's roots; without either, only `http://` auth servers can be used.
fn auth_client(o: &Options) -> Result<Option<Arc<rustls::ClientConfig>>, ServerError> {
    if o.auth_http_addresses.is_empty() {
        return Ok(None);
    }
    let tls = match super::tls::client_config(o) {
        Ok(config) => config,
        Err(e)
            if o.auth_http_addresses
                .iter()
                .all(|a| !a.starts_with("https://")) =>
        {
            tracing::warn!("auth servers: no TLS client ({e}); plain HTTP only");
            Arc::new(
                rustls::ClientConfig::builder_with_provider(super::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(super::tls::TlsError::from)?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(tls))
}

/// What builds each shard's auth servers (none without `--auth-http-address`).
fn auth_servers(o: &Options) -> Result<AuthFactory, ServerError> {
    let client = auth_client(o)?;
    let (addresses, connect, request) = (
        o.auth_http_addresses.clone(),
        o.http_client_connect_timeout,
        o.http_client_request_timeout,
    );
    Ok(Arc::new(move || {
        client.clone().map(|tls| {
            Rc::new(AuthServers::new(addresses.clone(), connect, request, tls))
                as Rc<dyn AuthServer>
        })
    }))
}

/// Raises the descriptor limit to the hard limit, as Go does for nsqd (logged).
fn raise_descriptor_limit() {
    match super::fds::raise_nofile_limit() {
        Ok(l) => {
            let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
            tracing::info!(
                "file descriptor limit (RLIMIT_NOFILE): soft {} raised to {} (hard {})",
                show(l.soft_before),
                show(l.soft),
                show(l.hard)
            );
        }
        Err(e) => {
            let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            tracing::warn!(
                "cannot raise the file descriptor limit: {e}; soft limit {:?}",
                l.current
            );
        }
    }
}

/// Says how the descriptor limit is shared.
fn log_budget(config: &Config) {
    let budget = &config.budget;
    tracing::info!(
        "client connections: at most {} protocol and {} HTTP at once (the rest of the descriptor limit is kept for topic files and peers)",
        budget.protocol_connections_max,
        budget.http_connections_max
    );
    tracing::info!(
        "file descriptors: limit {}, storage keeps at most {} files open ({} per shard)",
        budget
            .limit
            .map_or_else(|| "unlimited".to_owned(), |l| l.to_string()),
        config.broker.files_open_max * config.shards,
        config.broker.files_open_max
    );
}

/// The clean stop, from shard 0 (see [`crate::shard::runner`]): every shard's connections
/// closed, `nsqd.dat` written while every shard answers, every other shard closed, then ours.
async fn stop(shard: &Rc<Shard>, metadata: &Metadata) {
    let link = &shard.link;
    link.call_all(runner::stop_clients).await;
    if let Err(e) = metadata.persist().await {
        tracing::error!("failed to persist metadata - {e}");
    }
    let mut closing = Vec::new();
    for other in 1..link.place.count {
        closing.push(runner::start_close(link, other).await);
    }
    for closed in closing {
        let closed = match closed {
            Ok(rx) => rx.await.map_err(|_| crate::shard::Gone),
            Err(gone) => Err(gone),
        };
        if closed.is_err() {
            tracing::error!("a shard stopped before closing its topics");
        }
    }
    shard.broker.close().await;
    tracing::info!("ringsq: exited cleanly");
}
