//! A connection moving to the shard that owns the topic it subscribes to.
//!
//! The order, on the shard the connection leaves (the reader, then [`move_away`]):
//! 1. the reader stops at the `SUB` (a command boundary: nothing half-read, no read in flight);
//!    what followed the `SUB` in its buffers stays there, undecoded;
//! 2. publishes it queued for other shards are sent;
//! 3. the writer writes every reply queued before the `SUB` — waiting for the disk, or for
//!    other shards' answers, as it would have — and any TLS records, then stops (no write in
//!    flight) and hands back its output state; a connection that closed meanwhile (a fatal
//!    error) stays closed;
//! 4. the socket's descriptor is duplicated ([`dup_own_fd`]) and the original closed on this
//!    thread's ring; the duplicate and the state ([`Handoff`]) go to the owner in one job.
//!
//! On the owner ([`resume`]) the socket joins that thread's ring, the state is rebuilt
//! and the `SUB` runs (its AUTH check, the topic and channel, `OK` or `E_SUB_FAILED`), then the
//! connection is served as if accepted there. Bytes the client sent after the `SUB` are
//! decoded there, in order. A connection moves at most once (only one `SUB` is allowed).
//!
//! Why the descriptor is taken by number: tokio-uring's streams give their raw descriptor but
//! no `AsFd`, and borrowing a raw descriptor needs `unsafe` (denied). `pidfd_getfd(2)` on our
//! own process (Linux 5.6+; a thread of the same process needs no ptrace permission) returns a
//! new owned descriptor for a number, safely. [`probe`] checks it works at start (a seccomp
//! filter may refuse it): without it ringsq runs one shard.

use super::admission::Admitted;
use super::client::{Client, ClientParts};
use super::compress::Encoder;
use super::reader::{self, Conn};
use super::session::{Session, SessionParts};
use super::transport::{Input, InputParts, MovingSocket, Output, Socket};
use super::writer::TlsSlot;
use super::Frontend;
use crate::protocol::Command;
use std::cell::RefCell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::OnceLock;

/// Everything a connection is, in sendable form, on its way to another shard. Opaque to the
/// shard layer, which only carries it.
#[derive(Debug)]
pub struct Handoff {
    socket: MovingSocket,
    peer: Option<SocketAddr>,
    /// Its place in the protocol connections' descriptor budget (process-wide).
    admitted: Admitted,
    client: ClientParts,
    session: SessionParts,
    /// TLS, decompression, and bytes read but not yet decoded.
    input: InputParts,
    /// The compression of its output.
    encoder: Option<Encoder>,
    /// Plain input after the `SUB`, not yet decoded.
    buf: Vec<u8>,
    /// The `SUB` it moves for: (topic, channel).
    sub: (String, String),
}

/// What is left of a connection whose reader and writer have stopped, to move.
pub(super) struct Moving {
    pub socket: Rc<Socket>,
    pub input: Input,
    pub tls: TlsSlot,
    pub buf: Vec<u8>,
    pub session: Session,
    pub admitted: Admitted,
    pub peer: Option<SocketAddr>,
}

/// Sends the connection to the shard its `SUB` names. If it cannot go (its state is still
/// shared, the descriptor cannot be taken, the shard is gone) it is closed.
pub(super) async fn move_away(m: Moving, output: Output) {
    let Moving {
        socket,
        input,
        tls,
        buf,
        mut session,
        admitted,
        peer,
    } = m;
    let Some((shard, topic, channel)) = session.move_to.take() else {
        socket.shutdown(Shutdown::Both);
        return;
    };
    let peers = Rc::clone(&session.frontend.peers);
    tracing::debug!("SUB {topic}: moving the connection to shard {shard}");
    let encoder = output.into_encoder();
    drop(tls.borrow_mut().take());
    let client = session.client.to_parts();
    let parts = input.into_parts();
    let socket = match (parts, Rc::try_unwrap(socket)) {
        (Some(parts), Ok(socket)) => match socket.into_moving() {
            Ok(moving) => Some((parts, moving)),
            Err(e) => {
                tracing::error!("cannot move the connection to shard {shard}: {e}");
                None
            }
        },
        (_, Err(socket)) => {
            socket.shutdown(Shutdown::Both);
            None
        }
        (None, Ok(socket)) => {
            socket.shutdown(Shutdown::Both);
            None
        }
    };
    let Some((input, socket)) = socket else {
        return;
    };
    let handoff = Handoff {
        socket,
        peer,
        admitted,
        client,
        session: session.into_parts(),
        input,
        encoder,
        buf,
        sub: (topic, channel),
    };
    // A shard that is gone drops it: the connection closes with it.
    peers.hand_off(shard, handoff).await;
}

/// Takes over a connection that moved here from another shard (a `SUB` for one of our
/// topics): its socket, TLS and compression state, client and session, then runs the `SUB`
/// and serves it as if it had been accepted here.
pub fn resume(frontend: &Rc<Frontend>, h: Handoff) {
    if frontend.broker.exiting.get() {
        // Stopping: the connection closes with its socket (dropped here).
        return;
    }
    let frontend = Rc::clone(frontend);
    crate::broker::spawn(async move {
        let Handoff {
            socket,
            peer,
            admitted,
            client,
            session,
            mut input,
            encoder,
            buf,
            sub: (topic, channel),
        } = h;
        let socket = Rc::new(Socket::from_moving(socket));
        let tls = input.tls.take().map(Rc::new);
        let client = Rc::new(Client::from_parts(client));
        let conn = Conn {
            input: Input::from_parts(Rc::clone(&socket), tls.clone(), input),
            output: Output::from_parts(encoder, tls.clone()),
            tls: Rc::new(RefCell::new(tls)),
            socket,
            buf,
            session: Session::from_parts(frontend, client, peer, session),
            admitted,
            peer,
        };
        let span = reader::client_span(conn.session.client.id, peer);
        tracing::Instrument::instrument(
            reader::serve(conn, Some(Command::Sub { topic, channel })),
            span,
        )
        .await;
    });
}

/// A descriptor for this process itself (opened once).
fn own_pidfd() -> io::Result<&'static OwnedFd> {
    static PIDFD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PIDFD
        .get_or_init(|| {
            rustix::process::pidfd_open(
                rustix::process::getpid(),
                rustix::process::PidfdFlags::empty(),
            )
            .ok()
        })
        .as_ref()
        .ok_or_else(|| io::Error::other("pidfd_open on this process failed"))
}

/// A new descriptor (close-on-exec) for the open file this process has at number `raw`.
pub fn dup_own_fd(raw: RawFd) -> io::Result<OwnedFd> {
    let pidfd = own_pidfd()?;
    rustix::process::pidfd_getfd(pidfd, raw, rustix::process::PidfdGetfdFlags::empty())
        .map_err(io::Error::from)
}

/// Whether connections can move between shards here: duplicates `fd` by number and drops it.
pub fn probe(fd: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    dup_own_fd(fd.as_raw_fd()).map(drop)
}
