//! The `--auth-http-address` servers (nsqd 1.3.0's `internal/auth`, NSQ.md §1.4), reached over
//! HTTP: [`AuthServers`] implements the connection layer's [`AuthServer`].
//!
//! - `GET http://<addr>/auth?common_name=&remote_ip=&secret=&tls=` (an address containing
//!   `://` is used as the whole URL, `https://` over TLS with `--tls-root-ca-file`), trying
//!   every address once from a random one; each bounded by `--http-client-connect-timeout` and
//!   `--http-client-request-timeout`. Any status but 200, an answer that is not valid
//!   ([`AuthState::from_answer`]), or no answer in time is an error.

use crate::app::http::getv1;
use crate::connection::auth::{AuthServer, AuthState, Query};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Largest auth server answer read.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// The `--auth-http-address` servers and how to reach them.
#[derive(Debug)]
pub struct AuthServers {
    addresses: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
}

impl AuthServers {
    pub fn new(
        addresses: Vec<String>,
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        Self {
            addresses,
            connect_timeout,
            request_timeout,
            tls,
        }
    }

    /// nsqd's `QueryAnyAuthd`: the first server that answers well, starting at a random one;
    /// else every failure, joined with `; `.
    pub async fn query_any(&self, q: &Query<'_>) -> Result<AuthState, String> {
        let n = self.addresses.len();
        let start = if n == 0 {
            0
        } else {
            rand::random::<usize>() % n
        };
        let mut failures = Vec::new();
        for i in 0..n {
            let addr = &self.addresses[(start + i) % n];
            match self.query_one(addr, q).await {
                Ok(state) => return Ok(state),
                Err(e) => failures.push(format!("failed to auth against {addr} - {e}")),
            }
        }
        Err(failures.join("; "))
    }

    async fn query_one(&self, addr: &str, q: &Query<'_>) -> Result<AuthState, String> {
        let params = form_urlencoded::Serializer::new(String::new())
            .append_pair("common_name", q.common_name)
            .append_pair("remote_ip", q.remote_ip)
            .append_pair("secret", q.secret)
            .append_pair("tls", if q.tls { "true" } else { "false" })
            .finish();
        let url = if addr.contains("://") {
            format!("{addr}?{params}")
        } else {
            format!("http://{addr}/auth?{params}")
        };
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad address: {e}"))?;
        let body = tokio::time::timeout(self.request_timeout, self.get(&uri))
            .await
            .map_err(|_| format!("no answer within {:?}", self.request_timeout))??;
        AuthState::from_answer(&body)
    }

    /// `GET uri`, nsqd's `GETV1`: the body of a 200, anything else an error.
    async fn get(&self, uri: &hyper::Uri) -> Result<Bytes, String> {
        let host = uri.host().ok_or("no host in the address")?;
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect = tokio::net::TcpStream::connect((host, port));
        let tcp = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))?
            .map_err(|e| format!("connect: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host, |a| a.as_str());
        if https {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| format!("bad host name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            getv1::get(TokioIo::new(tls), authority, path, RESPONSE_BYTES_MAX).await
        } else {
            getv1::get(TokioIo::new(tcp), authority, path, RESPONSE_BYTES_MAX).await
        }
    }
}

impl AuthServer for AuthServers {
    fn query<'a>(
        &'a self,
        q: &'a Query<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<AuthState, String>> + 'a>> {
        Box::pin(self.query_any(q))
    }
}
