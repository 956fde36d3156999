//! Binding nsqd's three listeners from their address flags (`--tcp-address`,
//! `--http-address`, `--https-address`), as nsqd 1.3.0 reads them: an address Go's
//! `net.SplitHostPort` accepts is TCP (`:4150` = every interface), anything else is a unix
//! socket path (nsqd's `util.TypeOfAddr`); an empty HTTP or HTTPS address disables that
//! listener; HTTPS listens only when a certificate is configured.
//!
//! Beyond nsqd: a socket file left by a process that died (nobody accepts on it) is removed
//! before binding, instead of failing with "address in use"; one that still answers is an
//! error. Each listener removes its socket file when it is closed (as Go's does).

use crate::app::http::HttpListener;
use crate::app::server::ServerError;
use crate::connection::accept;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// What an address flag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// `host:port`, as given.
    Tcp(String),
    Unix(PathBuf),
}

/// nsqd's `util.TypeOfAddr`: TCP when Go's `net.SplitHostPort` accepts the address.
pub fn kind(addr: &str) -> Addr {
    if split_host_port(addr).is_some() {
        Addr::Tcp(addr.to_owned())
    } else {
        Addr::Unix(PathBuf::from(addr))
    }
}

/// Go's `net.SplitHostPort`: `host:port` with exactly one colon outside `[...]`.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    let colon = addr.rfind(':')?;
    let host = if let Some(rest) = addr.strip_prefix('[') {
        let end = rest.find(']')? + 1;
        if end + 1 != colon || rest[..end - 1].contains('[') || addr[end + 1..].contains(']') {
            return None;
        }
        &addr[1..end]
    } else {
        let host = &addr[..colon];
        if host.contains(':') || addr.contains('[') || addr.contains(']') {
            return None;
        }
        host
    };
    Some((host, &addr[colon + 1..]))
}

/// Resolves nsqd-style TCP addresses (`:4150` means every interface).
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

/// Makes way for a unix socket at `path`: a stale socket file (nobody accepts) is removed.
fn clear_stale_socket(flag: &'static str, path: &Path) -> Result<(), ServerError> {
    if !path.exists() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServerError::Listen {
            flag,
            addr: path.display().to_string(),
            reason: "a server is already listening on this socket".to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::warn!("{flag}: removing stale socket {}", path.display());
            std::fs::remove_file(path).map_err(|e| ServerError::Listen {
                flag,
                addr: path.display().to_string(),
                reason: format!("removing the stale socket: {e}"),
            })
        }
        // Not a socket, or not ours to judge: let bind say what is wrong.
        Err(_) => Ok(()),
    }
}

fn listen_error(flag: &'static str, addr: String) -> impl FnOnce(std::io::Error) -> ServerError {
    move |e| ServerError::Listen {
        flag,
        addr,
        reason: e.to_string(),
    }
}

/// Binds `--tcp-address`; returns the listener and its TCP address (`None` for a socket).
pub fn bind_protocol(addr: &str) -> Result<(accept::Listener, Option<SocketAddr>), ServerError> {
    const FLAG: &str = "--tcp-address";
    let listener = match kind(addr) {
        Addr::Tcp(a) => {
            let resolved = resolve(FLAG, &a)?;
            accept::Listener::bind_tcp(resolved)
                .map_err(listen_error(FLAG, resolved.to_string()))?
        }
        Addr::Unix(path) => {
            clear_stale_socket(FLAG, &path)?;
            accept::Listener::bind_unix(&path)
                .map_err(listen_error(FLAG, path.display().to_string()))?
        }
    };
    let local = listener
        .local_addr()
        .map_err(listen_error(FLAG, addr.to_owned()))?;
    Ok((listener, local))
}

/// Binds an HTTP or HTTPS address (empty: `None`); the listener and its TCP address.
pub async fn bind_http(
    flag: &'static str,
    addr: &str,
) -> Result<Option<(HttpListener, Option<SocketAddr>)>, ServerError> {
    if addr.is_empty() {
        return Ok(None);
    }
    match kind(addr) {
        Addr::Tcp(a) => {
            let resolved = resolve(flag, &a)?;
            let err = || listen_error(flag, resolved.to_string());
            let listener = tokio::net::TcpListener::bind(resolved)
                .await
                .map_err(err())?;
            let bound = listener.local_addr().map_err(err())?;
            Ok(Some((HttpListener::Tcp(listener), Some(bound))))
        }
        Addr::Unix(path) => {
            clear_stale_socket(flag, &path)?;
            let listener = tokio::net::UnixListener::bind(&path)
                .map_err(listen_error(flag, path.display().to_string()))?;
            Ok(Some((HttpListener::Unix(listener, path), None)))
        }
    }
}

/// How a listener is named in log lines: its TCP address, or its socket path.
pub fn describe(addr: Option<SocketAddr>, flag_value: &str) -> String {
    addr.map_or_else(|| flag_value.to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_or_unix_as_nsqd() {
        for tcp in [
            "0.0.0.0:4150",
            ":4150",
            "[::1]:4150",
            "localhost:0",
            "/tmp/a:b",
        ] {
            assert_eq!(kind(tcp), Addr::Tcp(tcp.to_owned()), "{tcp}");
        }
        for unix in ["/run/nsqd.sock", "nsqd.sock", "::1", "[::1]", "a:b:c"] {
            assert_eq!(kind(unix), Addr::Unix(PathBuf::from(unix)), "{unix}");
        }
    }

    #[test]
    fn go_split_host_port() {
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port(":80"), Some(("", "80")));
        assert_eq!(split_host_port("[::1]x:80"), None);
        assert_eq!(split_host_port("h:80]"), None);
    }
}
