//! The protocol's TLS layer (IDENTIFY `tls_v1`): a rustls server connection driven over the
//! connection's own buffers. rustls is sans-IO and tokio-uring's sockets have no
//! `AsyncRead`/`AsyncWrite`, so [`super::transport`] moves the bytes: the reader feeds what it
//! read ([`TlsLayer::feed`]) and takes plaintext out ([`TlsLayer::read_plain`]); the writer
//! puts plaintext in ([`TlsLayer::write_plain`]) and takes records out
//! ([`TlsLayer::take_records`]). Shared by the connection's reader and writer tasks; the
//! `RefCell` is never borrowed across an `.await`.
//!
//! Bounds: the reader feeds only when no plaintext is waiting, and rustls holds at most one
//! record of undecrypted input and 16 KiB of plaintext, so one feed decrypts at most one read's
//! worth before the connection's commands run.

use crate::tls::TlsInfo;
use rustls::{ServerConfig, ServerConnection};
use std::cell::RefCell;
use std::io::{self, Read as _, Write as _};
use std::sync::Arc;

/// What [`TlsLayer::read_plain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// This many plaintext bytes were appended.
    Bytes(usize),
    /// Nothing decrypted yet: feed more.
    None,
    /// The peer closed TLS cleanly (`close_notify`).
    Closed,
}

/// One connection's TLS state.
#[derive(Debug)]
pub struct TlsLayer {
    conn: RefCell<ServerConnection>,
}

impl TlsLayer {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // Plaintext written before the handshake ends (the `OK` that confirms the upgrade) is
        // kept until it can be sent; the writer's own limits bound it.
        conn.set_buffer_limit(None);
        Ok(Self {
            conn: RefCell::new(conn),
        })
    }

    /// Feeds bytes read from the socket; returns how many rustls took. An error is fatal for
    /// the connection (rustls has queued an alert for the writer to send).
    pub fn feed(&self, raw: &[u8]) -> io::Result<usize> {
        let mut conn = self.conn.borrow_mut();
        let mut input = raw;
        let n = conn.read_tls(&mut input)?;
        conn.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }

    /// Appends at most `max` bytes of decrypted plaintext to `out`.
    pub fn read_plain(&self, out: &mut Vec<u8>, max: usize) -> io::Result<Plain> {
        let mut conn = self.conn.borrow_mut();
        let start = out.len();
        out.resize(start + max, 0);
        let res = conn.reader().read(&mut out[start..]);
        match res {
            Ok(0) => {
                out.truncate(start);
                Ok(Plain::Closed)
            }
            Ok(n) => {
                out.truncate(start + n);
                Ok(Plain::Bytes(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                out.truncate(start);
                Ok(Plain::None)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Encrypts `plain` (kept until the handshake ends if it has not yet).
    pub fn write_plain(&self, plain: &[u8]) -> io::Result<()> {
        self.conn.borrow_mut().writer().write_all(plain)
    }

    /// Appends every record waiting to be sent (handshake, data, alerts) to `out`.
    pub fn take_records(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        while conn.wants_write() {
            conn.write_tls(out)?;
        }
        Ok(())
    }

    /// Whether records wait to be sent.
    pub fn wants_write(&self) -> bool {
        self.conn.borrow().wants_write()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.borrow().is_handshaking()
    }

    /// The connection's facts, once the handshake is done.
    pub fn info(&self) -> Option<TlsInfo> {
        let conn = self.conn.borrow();
        (!conn.is_handshaking()).then(|| TlsInfo::of(&conn))
    }
}
