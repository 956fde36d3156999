//! nsqd's HTTP API (NSQ.md §1.5) on hyper 1, served from `tokio::net` inside shard 0's
//! tokio-uring runtime: one `spawn_local` task per connection, `Rc` state, nothing `Send`.
//! What concerns a topic runs on the shard that owns it; `/stats`, `/metrics` and `/ping` are
//! gathered from every shard ([`crate::app::gather`]).
//!
//! - `mod.rs`: accept loop and router (httprouter's rules: an unknown path is
//!   `404 NOT_FOUND`, a known path with another method `405 METHOD_NOT_ALLOWED` with an `Allow`
//!   header, `OPTIONS` on a known path `200` with `Allow`, a route plus a trailing `/` is
//!   redirected to the route). Not reproduced: httprouter's case-insensitive path fixing, and
//!   the `/debug/pprof` routes.
//! - [`response`]: the V1 / plain-text conventions. [`query`]: Go's query-string rules.
//! - [`publish`]: `/pub`, `/mpub`. [`admin`]: `/topic/*`, `/channel/*`, `/info`, `/ping`.
//!   [`dead`]: ringsq's `/channel/config` and `/channel/dead*` (poison messages).
//! - [`stats`]: `/stats` (JSON and text). [`metrics`]: `/metrics` (Prometheus text).
//! - [`config`]: `GET/PUT /config/:opt`.
//! - [`snapshot`]: `GET /snapshot` (ringsq's: a tar of a consistent copy of the data directory).

pub mod admin;
pub mod config;
pub mod dead;
pub mod getv1;
pub mod metrics;
pub mod publish;
pub mod query;
pub mod response;
pub mod snapshot;
pub mod stats;

use crate::app::node::Node;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use query::Query;
use response::{ApiError, ApiResult, Resp};
use std::path::PathBuf;
use std::rc::Rc;

/// How long a client may take to send a request's headers (beyond nsqd, whose HTTP server
/// has no deadline: a client that dribbles headers would hold its connection for ever).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One request as the handlers see it: the query already parsed (or refused), the body unread.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Result<Query, query::QueryError>,
    pub content_length: Option<u64>,
    pub body: Incoming,
}

impl Req {
    /// The query, or nsqd's `400 INVALID_REQUEST`.
    pub fn params(&self) -> Result<&Query, ApiError> {
        self.query
            .as_ref()
            .map_err(|_| ApiError::bad_request("INVALID_REQUEST"))
    }

    /// Reads the body whole, up to `limit_bytes`; `Ok(None)` when it is longer.
    pub async fn read_body(self, limit_bytes: u64) -> Result<Option<Bytes>, ApiError> {
        let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
        match Limited::new(self.body, limit).collect().await {
            Ok(collected) => Ok(Some(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(None),
            Err(_) => Err(ApiError::new(500, "INTERNAL_ERROR")),
        }
    }
}

/// A bound HTTP or HTTPS listener: TCP, or a unix socket (`--http-address=/path`).
#[derive(Debug)]
pub enum HttpListener {
    Tcp(tokio::net::TcpListener),
    /// A unix socket and its path (removed when the listener is closed).
    Unix(tokio::net::UnixListener, PathBuf),
}

/// Any accepted HTTP byte stream (TCP or unix, plain or TLS).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

impl HttpListener {
    async fn accept(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            Self::Tcp(l) => Box::new(l.accept().await?.0),
            Self::Unix(l, _) => Box::new(l.accept().await?.0),
        })
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            // As Go's UnixListener.Close: the socket file goes with the listener.
            if let Err(e) = std::fs::remove_file(&*path) {
                tracing::debug!("removing {}: {e}", path.display());
            }
        }
    }
}

/// How one listener serves: plain HTTP or HTTPS.
pub struct HttpServer {
    pub node: Rc<Node>,
    pub admission: std::sync::Arc<crate::connection::admission::Admission>,
    /// HTTPS: every connection starts with a TLS handshake.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Plain HTTP with `--tls-required=true`: every request is `403 TLS_REQUIRED`.
    pub tls_required: bool,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("https", &self.tls.is_some())
            .field("tls_required", &self.tls_required)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    fn name(&self) -> &'static str {
        if self.tls.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        }
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves (connections already open are dropped
/// with the runtime, as nsqd closes its listeners at exit).
pub async fn serve(
    listener: HttpListener,
    server: Rc<HttpServer>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE: accept-and-close with the spare descriptor; never spin.
                server
                    .admission
                    .refuse_one(&e, || async { listener.accept().await.map(drop) })
                    .await;
                continue;
            }
        };
        let Some(admitted) = server.admission.admit() else {
            drop(stream);
            continue;
        };
        let server = Rc::clone(&server);
        crate::broker::spawn(async move {
            serve_connection(&server, stream).await;
            drop(admitted);
        });
    }
}

/// One connection: the TLS handshake for HTTPS, then hyper.
async fn serve_connection(server: &Rc<HttpServer>, stream: Box<dyn Io>) {
    let stream: Box<dyn Io> = match &server.tls {
        Some(acceptor) => {
            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    tracing::debug!("HTTPS: TLS handshake failed - {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("HTTPS: TLS handshake timed out");
                    return;
                }
            }
        }
        None => stream,
    };
    let service_server = Rc::clone(server);
    let service = hyper::service::service_fn(move |req| {
        let server = Rc::clone(&service_server);
        async move {
            let resp = if server.tls_required {
                tls_required(&server.node)
            } else {
                handle(&server.node, req).await
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("{}: connection error - {e}", server.name());
    }
}

/// nsqd's answer to plain HTTP when `--tls-required=true`, byte for byte.
fn tls_required(node: &Node) -> Resp {
    let port = node.https_addr.map_or(0, |a| a.port());
    let body = format!(r#"{{"message": "TLS_REQUIRED", "https_port": {port}}}"#);
    response::status_json(hyper::StatusCode::FORBIDDEN, body)
}

async fn handle(node: &Rc<Node>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let content_length = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: Query::parse(parts.uri.query().unwrap_or("")),
        content_length,
        body,
    };
    let path = req.path.clone();
    let method = req.method.clone();
    let result = match trailing_slash_redirect(&method, &path, parts.uri.query()) {
        Some(resp) => Ok(resp),
        None => route(node, req).await,
    };
    let resp = result.unwrap_or_else(|e| response::error(&e));
    if path != "/pub" && path != "/mpub" {
        // nsqd access-logs everything but publishes.
        tracing::info!("{} {} {}", resp.status().as_u16(), method, path);
    }
    resp
}

/// The methods each known path answers.
fn allowed(path: &str) -> Option<&'static [Method]> {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
    const GET_POST: &[Method] = &[Method::GET, Method::POST];
    match path {
        "/ping" | "/info" | "/stats" | "/metrics" | "/channel/dead" | "/snapshot" => Some(GET),
        "/channel/config" => Some(GET_POST),
        "/pub"
        | "/mpub"
        | "/topic/create"
        | "/topic/delete"
        | "/topic/empty"
        | "/topic/pause"
        | "/topic/unpause"
        | "/channel/create"
        | "/channel/delete"
        | "/channel/empty"
        | "/channel/pause"
        | "/channel/unpause"
        | "/channel/rewind"
        | "/channel/dead/requeue"
        | "/channel/dead/empty" => Some(POST),
        p if config_opt(p).is_some() => Some(GET_PUT),
        _ => None,
    }
}

/// `/config/:opt` → `opt` (one non-empty path segment).
fn config_opt(path: &str) -> Option<&str> {
    path.strip_prefix("/config/")
        .filter(|opt| !opt.is_empty() && !opt.contains('/'))
}

/// httprouter's `Allow` value: the path's methods and `OPTIONS`, sorted.
fn allow_header(methods: &[Method]) -> hyper::header::HeaderValue {
    let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    names.push("OPTIONS");
    names.sort_unstable();
    hyper::header::HeaderValue::from_str(&names.join(", "))
        .unwrap_or(hyper::header::HeaderValue::from_static("OPTIONS"))
}

/// httprouter's `RedirectTrailingSlash`: a path that is a route of its method once its
/// trailing `/` is dropped is redirected there (GET 301 with a small HTML body, others 307),
/// query kept.
fn trailing_slash_redirect(method: &Method, path: &str, query: Option<&str>) -> Option<Resp> {
    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty())?;
    if !allowed(trimmed).is_some_and(|m| m.contains(method)) {
        return None;
    }
    let location = match query {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    Some(response::redirect(method == Method::GET, &location))
}

async fn route(node: &Rc<Node>, req: Req) -> ApiResult {
    let Some(methods) = allowed(&req.path) else {
        return Err(ApiError::new(404, "NOT_FOUND"));
    };
    if !methods.contains(&req.method) {
        // httprouter answers OPTIONS itself (200, empty) and adds `Allow` to a 405.
        let mut resp = if req.method == Method::OPTIONS {
            response::plain(hyper::StatusCode::OK, "")
        } else {
            response::error(&ApiError::new(405, "METHOD_NOT_ALLOWED"))
        };
        resp.headers_mut()
            .insert(hyper::header::ALLOW, allow_header(methods));
        return Ok(resp);
    }
    match req.path.as_str() {
        "/ping" => Ok(admin::ping(node).await),
        "/info" => Ok(admin::info(node)),
        "/stats" => stats::stats(node, &req).await,
        "/metrics" => Ok(metrics::metrics(node).await),
        "/snapshot" => snapshot::snapshot(node).await,
        "/pub" => publish::pub_one(node, req).await,
        "/mpub" => publish::pub_many(node, req).await,
        "/topic/create" => admin::topic_create(node, &req).await,
        "/topic/delete" => admin::topic_delete(node, &req).await,
        "/topic/empty" => admin::topic_empty(node, &req).await,
        "/topic/pause" => admin::topic_pause(node, &req, true).await,
        "/topic/unpause" => admin::topic_pause(node, &req, false).await,
        "/channel/create" => admin::channel_create(node, &req).await,
        "/channel/delete" => admin::channel_delete(node, &req).await,
        "/channel/empty" => admin::channel_empty(node, &req).await,
        "/channel/pause" => admin::channel_pause(node, &req, true).await,
        "/channel/unpause" => admin::channel_pause(node, &req, false).await,
        "/channel/rewind" => admin::channel_rewind(node, &req).await,
        "/channel/config" => dead::channel_config(node, &req).await,
        "/channel/dead" => dead::dead_list(node, &req).await,
        "/channel/dead/requeue" => dead::dead_requeue(node, &req).await,
        "/channel/dead/empty" => dead::dead_empty(node, &req).await,
        path => {
            let opt = config_opt(path).unwrap_or_default().to_owned();
            config::config(node, &opt, req).await
        }
    }
}
