//! Starting and stopping the broker: raise the descriptor limit, build the TLS configuration
//! and the auth servers, lock the data directory, open every topic, bind the listeners (TCP or
//! unix protocol listener, HTTP, HTTPS: [`crate::listen`]), serve until shutdown, then drain:
//! stop accepting, close clients, flush and fsync every log, save every channel's state,
//! release the lock.

use crate::auth::AuthServers;
use crate::broker::Broker;
use crate::fds::Admission;
use crate::http::{HttpListener, HttpServer};
use crate::listen;
use crate::options::{Options, TlsRequired};
use crate::protocol::Limits;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
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
    #[error("failed to build TLS config - {0}")]
    Tls(#[from] crate::tls::TlsError),
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
    let tls = crate::tls::server_config(&options)?;
    let auth = auth_servers(&options)?;
    let _lock = lock_data_path(&options.data_path)?;
    let broker = Broker::open(options).await?;
    let listeners = Listeners::bind(&broker.options, tls.is_some()).await?;
    let node = crate::node::Node::new(
        Rc::clone(&broker),
        listeners.tcp_addr,
        listeners.http.as_ref().and_then(|(_, a)| *a),
        listeners.https.as_ref().and_then(|(_, a)| *a),
    );
    tokio::task::spawn_local(Rc::clone(&broker).checkpoint_loop());
    tokio::task::spawn_local(Rc::clone(&broker).recent_save_loop());
    tokio::task::spawn_local(Rc::clone(&broker).metadata_loop());
    tokio::task::spawn_local(crate::loops::lookup::manager(Rc::clone(&node)));
    tokio::task::spawn_local(crate::loops::statsd::run(Rc::clone(&node)));
    let http_admission = Admission::new("HTTP", budget.http_connections_max);
    let http_stop = Rc::new(tokio::sync::Notify::new());
    let o = &broker.options;
    let plain_tls_required = o.tls_required == TlsRequired::Required;
    for (listener, https) in [(listeners.http, false), (listeners.https, true)] {
        let Some((listener, _)) = listener else {
            continue;
        };
        let server = Rc::new(HttpServer {
            node: Rc::clone(&node),
            admission: Rc::clone(&http_admission),
            tls: https
                .then(|| tls.clone().map(tokio_rustls::TlsAcceptor::from))
                .flatten(),
            tls_required: !https && plain_tls_required,
        });
        let stop = Rc::clone(&http_stop);
        tokio::task::spawn_local(async move {
            crate::http::serve(listener, server, async move { stop.notified().await }).await;
        });
    }
    let frontend = Rc::new(crate::tcp::Frontend::new(Rc::clone(&broker), tls, auth));
    let admission = Admission::new("TCP", budget.protocol_connections_max);
    crate::tcp::serve(listeners.tcp, frontend, admission, shutdown).await;
    tracing::info!("TCP: closing");
    http_stop.notify_waiters();
    stop(&broker).await;
    Ok(())
}

/// The three listeners, bound.
struct Listeners {
    tcp: crate::tcp::Listener,
    tcp_addr: Option<SocketAddr>,
    http: Option<(HttpListener, Option<SocketAddr>)>,
    https: Option<(HttpListener, Option<SocketAddr>)>,
}

impl Listeners {
    /// Binds `--tcp-address`, `--http-address` and (with a certificate) `--https-address`,
    /// and logs where each listens (`<KIND>: listening on <addr or path>`, as nsqd).
    async fn bind(o: &Options, tls: bool) -> Result<Self, ServerError> {
        let (tcp, tcp_addr) = listen::bind_protocol(&o.tcp_address)?;
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

/// The `--auth-http-address` servers, if any. Their TLS client uses `--tls-root-ca-file`, or
/// the system's roots; without either, only `http://` auth servers can be used.
fn auth_servers(o: &Options) -> Result<Option<Rc<AuthServers>>, ServerError> {
    if o.auth_http_addresses.is_empty() {
        return Ok(None);
    }
    let tls = match crate::tls::client_config(o) {
        Ok(config) => config,
        Err(e)
            if o.auth_http_addresses
                .iter()
                .all(|a| !a.starts_with("https://")) =>
        {
            tracing::warn!("auth servers: no TLS client ({e}); plain HTTP only");
            Arc::new(
                rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(crate::tls::TlsError::from)?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Rc::new(AuthServers::new(
        o.auth_http_addresses.clone(),
        o.http_client_connect_timeout,
        o.http_client_request_timeout,
        tls,
    ))))
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
