//! A connection moving to the shard that owns the topic it subscribes to.
//!
//! The order, on the shard the connection leaves (`tcp::conn`):
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
//! On the owner (`tcp::conn::resume`) the socket joins that thread's ring, the state is rebuilt
//! and the `SUB` runs (its AUTH check, the topic and channel, `OK` or `E_SUB_FAILED`), then the
//! connection is served as if accepted there. Bytes the client sent after the `SUB` are
//! decoded there, in order. A connection moves at most once (only one `SUB` is allowed).
//!
//! Why the descriptor is taken by number: tokio-uring's streams give their raw descriptor but
//! no `AsFd`, and borrowing a raw descriptor needs `unsafe` (denied). `pidfd_getfd(2)` on our
//! own process (Linux 5.6+; a thread of the same process needs no ptrace permission) returns a
//! new owned descriptor for a number, safely. [`probe`] checks it works at start (a seccomp
//! filter may refuse it): without it ringsq runs one shard.

use crate::broker::client::ClientParts;
use crate::fds::Admitted;
use crate::tcp::compress::Encoder;
use crate::tcp::exec::SessionParts;
use crate::tcp::transport::{InputParts, MovingSocket};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::OnceLock;

/// Everything a connection is, in sendable form, on its way to another shard.
#[derive(Debug)]
pub struct Handoff {
    pub socket: MovingSocket,
    pub peer: Option<SocketAddr>,
    /// Its place in the protocol connections' descriptor budget (process-wide).
    pub admitted: Admitted,
    pub client: ClientParts,
    pub session: SessionParts,
    /// TLS, decompression, and bytes read but not yet decoded.
    pub input: InputParts,
    /// The compression of its output.
    pub encoder: Option<Encoder>,
    /// Plain input after the `SUB`, not yet decoded.
    pub buf: Vec<u8>,
    /// The `SUB` it moves for: (topic, channel).
    pub sub: (String, String),
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
