//! Accepting protocol connections (`--tcp-address`: a TCP address or a unix socket path): the
//! accept loop on tokio-uring, one connection task each.
//!
//! Connections are admitted against the descriptor budget ([`Admission`], shared by every
//! shard). Every shard accepts on its own `SO_REUSEPORT` TCP listener (the kernel spreads
//! connections). A unix socket is accepted by shard 0 only, which deals its connections to the
//! shards in turn ([`Peers::deal`]).

use super::admission::{Admission, Admitted};
use super::transport::{MovingSocket, Socket};
use super::{reader, Frontend};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use tokio_uring::net::TcpListener;

/// A bound protocol listener.
pub enum Listener {
    Tcp(TcpListener),
    /// A unix socket, and its path (removed when the listener is closed). Accepted on tokio
    /// (tokio-uring's own unix listener sets `SO_REUSEPORT`, which unix sockets refuse); each
    /// connection is then served on tokio-uring like a TCP one.
    Unix(tokio::net::UnixListener, PathBuf),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(_) => f.write_str("Listener::Tcp"),
            Self::Unix(_, path) => write!(f, "Listener::Unix({})", path.display()),
        }
    }
}

impl Listener {
    pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<Self> {
        TcpListener::bind(addr).map(Self::Tcp)
    }

    pub fn bind_unix(path: &Path) -> std::io::Result<Self> {
        tokio::net::UnixListener::bind(path).map(|l| Self::Unix(l, path.to_owned()))
    }

    /// The TCP address bound (`None` for a unix socket).
    pub fn local_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        match self {
            Self::Tcp(l) => l.local_addr().map(Some),
            Self::Unix(..) => Ok(None),
        }
    }

    /// The next connection and its peer address (`None` on a unix socket, which comes as a
    /// plain descriptor: it may be served on another shard).
    async fn accept(&self) -> std::io::Result<(Accepted, Option<SocketAddr>)> {
        match self {
            Self::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Accepted::Here(Socket::Tcp(s)), Some(peer)))
            }
            Self::Unix(l, _) => {
                let std = l.accept().await?.0.into_std()?;
                // io_uring honours O_NONBLOCK (EAGAIN instead of waiting): clear it.
                std.set_nonblocking(false)?;
                Ok((Accepted::Anywhere(MovingSocket::Unix(std)), None))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            // As Go's UnixListener.Close: the socket file goes with the listener.
            if let Err(e) = std::fs::remove_file(&*path) {
                tracing::debug!("removing {}: {e}", path.display());
            }
        }
    }
}

/// A connection just accepted.
enum Accepted {
    /// On this thread's ring.
    Here(Socket),
    /// A plain descriptor, to be served by whichever shard's turn it is.
    Anywhere(MovingSocket),
}

impl Accepted {
    /// Refused: closed at once.
    fn close(self) {
        match self {
            Self::Here(socket) => socket.shutdown(std::net::Shutdown::Both),
            Self::Anywhere(MovingSocket::Unix(s)) => {
                let _closing = s.shutdown(std::net::Shutdown::Both);
            }
            Self::Anywhere(MovingSocket::Tcp(s)) => {
                let _closing = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Accepts connections until `shutdown` resolves; each connection runs on its own task.
pub async fn serve(
    listener: Listener,
    frontend: Rc<Frontend>,
    admission: Arc<Admission>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut turn = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((accepted, peer)) => {
                let Some(admitted) = admission.admit() else {
                    accepted.close();
                    continue;
                };
                let socket = match accepted {
                    Accepted::Here(socket) => socket,
                    Accepted::Anywhere(moving) => {
                        let place = frontend.peers.place();
                        turn = (turn + 1) % place.count;
                        if turn != place.index {
                            frontend.peers.deal(turn, moving, admitted).await;
                            continue;
                        }
                        Socket::from_moving(moving)
                    }
                };
                let frontend = Rc::clone(&frontend);
                crate::broker::spawn(reader::handle(socket, peer, frontend, admitted));
            }
            Err(e) => {
                admission
                    .refuse_one(&e, || async {
                        let (accepted, _) = listener.accept().await?;
                        accepted.close();
                        Ok(())
                    })
                    .await;
            }
        }
    }
}

/// Serves a connection dealt to this shard by the one that accepted it on the unix socket.
pub fn serve_dealt(frontend: &Rc<Frontend>, socket: MovingSocket, admitted: Admitted) {
    if frontend.broker.exiting.get() {
        return;
    }
    let frontend = Rc::clone(frontend);
    crate::broker::spawn(async move {
        let socket = Socket::from_moving(socket);
        reader::handle(socket, None, frontend, admitted).await;
    });
}
