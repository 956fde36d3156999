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

use rustls::pki_types::CertificateDer;
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

/// What `/stats` shows of a TLS connection (nsqd's `prettyConnectionState`), and the peer's
/// certificate common name (sent to the auth server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLS1.2`, `TLS1.3`.
    pub version: String,
    /// nsqd's names for the suites it names, `Unknown <n>` for the others (TLS 1.3's too).
    pub cipher_suite: String,
    /// The ALPN protocol ("" — nsqd offers none).
    pub negotiated_protocol: String,
    /// The subject common name of the client's certificate, "" without one.
    pub common_name: String,
}

impl TlsInfo {
    /// The facts of an established connection.
    pub fn of(conn: &rustls::CommonState) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3".to_owned(),
            Some(v) => format!("Unknown {}", u16::from(v)),
            None => String::new(),
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|s| cipher_suite_name(s.suite()))
            .unwrap_or_default();
        let negotiated_protocol = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let common_name = conn
            .peer_certificates()
            .and_then(<[_]>::first)
            .map(|c| common_name(c))
            .unwrap_or_default();
        Self {
            version,
            cipher_suite,
            negotiated_protocol,
            common_name,
        }
    }
}

/// nsqd's `GetCipherSuite`: names for the suites in its table that rustls offers, else
/// `Unknown <decimal>` (as nsqd reports every TLS 1.3 suite).
fn cipher_suite_name(suite: rustls::CipherSuite) -> String {
    use rustls::CipherSuite as C;
    match suite {
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => {
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()
        }
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => {
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned()
        }
        other => format!("Unknown {}", u16::from(other)),
    }
}

/// The subject common name of a DER certificate ("" if it has none or does not parse).
fn common_name(cert: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_owned))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suite_names_as_nsqd() {
        assert_eq!(
            cipher_suite_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_suite_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "Unknown 4865"
        );
    }
}
