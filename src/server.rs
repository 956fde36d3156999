//! Starting and stopping the broker: lock the data directory, open every topic, bind the
//! listeners, serve until shutdown, then drain: stop accepting, close clients, flush and fsync
//! every log, save every channel's state, release the lock.

use crate::broker::Broker;
use crate::options::Options;
use crate::protocol::Limits;
use std::fs::File;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// How long a clean shutdown waits for connections to flush before it goes on regardless.
const SHUTDOWN_CLIENT_WAIT: Duration = Duration::from_secs(5);

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
}

/// nsqd's limits, as the protocol decoder wants them.
pub fn limits(o: &Options) -> Limits {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Limits {
        max_msg_size: o.max_msg_size,
        max_body_size: o.max_body_size,
        max_rdy_count: o.max_rdy_count,
        max_req_timeout_ms: ms(o.max_req_timeout),
        max_msg_timeout_ms: ms(o.max_msg_timeout),
        max_heartbeat_interval_ms: ms(o.max_heartbeat_interval),
        max_output_buffer_size: o.max_output_buffer_size,
        min_output_buffer_timeout_ms: ms(o.min_output_buffer_timeout),
        max_output_buffer_timeout_ms: ms(o.max_output_buffer_timeout),
        max_deflate_level: o.max_deflate_level,
        msg_timeout_ms: ms(o.msg_timeout),
        ..Limits::default()
    }
}

/// Resolves nsqd-style addresses (`:4150` means every interface).
pub fn resolve(flag: &'static str, addr: &str) -> Result<SocketAddr, ServerError> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    let err = |reason: String| ServerError::Listen {
        flag,
        addr: addr.to_owned(),
        reason,
    };
    full.to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".to_owned()))
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

/// Runs the broker until `shutdown` resolves, then stops it cleanly.
pub async fn run(
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
    let budget = descriptor_budget();
    let admission = crate::fds::Admission::new("TCP", budget.protocol_connections_max);
    let http_admission = crate::fds::Admission::new("HTTP", budget.http_connections_max);
    let _lock = lock_data_path(&options.data_path)?;
    let tcp_addr = resolve("--tcp-address", &options.tcp_address)?;
    let broker = Broker::open(options).await?;
    let listener =
        tokio_uring::net::TcpListener::bind(tcp_addr).map_err(|e| ServerError::Listen {
            flag: "--tcp-address",
            addr: tcp_addr.to_string(),
            reason: e.to_string(),
        })?;
    let bound = listener.local_addr().map_err(|e| ServerError::Listen {
        flag: "--tcp-address",
        addr: tcp_addr.to_string(),
        reason: e.to_string(),
    })?;
    let http = bind_http(&broker.options.http_address).await?;
    let http_addr = http.as_ref().map(|(_, a)| *a);
    if let Some(a) = http_addr {
        tracing::info!("HTTP: listening on {a}");
    }
    tracing::info!("TCP: listening on {bound}");
    let node = crate::node::Node::new(Rc::clone(&broker), bound, http_addr);
    tokio::task::spawn_local(Rc::clone(&broker).checkpoint_loop());
    tokio::task::spawn_local(Rc::clone(&broker).metadata_loop());
    tokio::task::spawn_local(crate::loops::lookup::manager(Rc::clone(&node)));
    tokio::task::spawn_local(crate::loops::statsd::run(Rc::clone(&node)));
    let http_stop = Rc::new(tokio::sync::Notify::new());
    if let Some((listener, _)) = http {
        let stop = Rc::clone(&http_stop);
        let node = Rc::clone(&node);
        let admission = Rc::clone(&http_admission);
        tokio::task::spawn_local(async move {
            crate::http::serve(listener, node, admission, async move {
                stop.notified().await;
            })
            .await;
        });
    }
    crate::tcp::serve(listener, Rc::clone(&broker), admission, shutdown).await;
    tracing::info!("TCP: closing {bound}");
    http_stop.notify_one();
    if let Some(a) = http_addr {
        tracing::info!("HTTP: closing {a}");
    }
    stop(&broker).await;
    Ok(())
}

/// Raises the descriptor limit (logging it) and returns how many client connections it leaves
/// room for.
fn descriptor_budget() -> crate::fds::Budget {
    let soft = match crate::fds::raise_nofile_limit() {
        Ok(l) => {
            let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
            tracing::info!(
                "file descriptor limit (RLIMIT_NOFILE): soft {} raised to {} (hard {})",
                show(l.soft_before),
                show(l.soft),
                show(l.hard)
            );
            l.soft
        }
        Err(e) => {
            let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            tracing::warn!(
                "cannot raise the file descriptor limit: {e}; soft limit {:?}",
                l.current
            );
            l.current
        }
    };
    let budget = crate::fds::Budget::for_limit(soft);
    tracing::info!(
        "client connections: at most {} protocol and {} HTTP at once (the rest of the descriptor limit is kept for topic files and peers)",
        budget.protocol_connections_max,
        budget.http_connections_max
    );
    budget
}

/// Binds `--http-address` (empty disables HTTP, as nsqd 1.3.0).
async fn bind_http(
    addr: &str,
) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, ServerError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let resolved = resolve("--http-address", addr)?;
    let err = |e: std::io::Error| ServerError::Listen {
        flag: "--http-address",
        addr: resolved.to_string(),
        reason: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(resolved).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok(Some((listener, bound)))
}

async fn stop(broker: &Rc<Broker>) {
    broker.exiting.set(true);
    let clients: Vec<_> = broker.clients.borrow().values().cloned().collect();
    for c in &clients {
        c.closed.set(true);
        c.wake.notify_one();
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_CLIENT_WAIT;
    while !broker.clients.borrow().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.close().await;
    tracing::info!("ringsq: exited cleanly");
}
