//! TLS for the black-box tests: certificates generated per test (`rcgen`), a blocking TLS
//! client for the V2 protocol (IDENTIFY `tls_v1`, then the handshake on the same socket) and
//! for HTTPS, on rustls.
//!
//! [`Pki`] writes, in a temporary directory: a CA, a server certificate for `127.0.0.1` and
//! `localhost` signed by it, a client certificate signed by it (common name
//! [`CLIENT_CN`]), and a self-signed client certificate no CA vouches for.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The common name of the CA-signed client certificate.
pub const CLIENT_CN: &str = "ringsq-test-client";
/// How long a test TLS read may block.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate and its key, DER and PEM.
pub struct Issued {
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// Every certificate a TLS test needs, as files.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: Issued,
    pub server: Issued,
    pub client: Issued,
    pub rogue_client: Issued,
}

fn write(dir: &tempfile::TempDir, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Issued {
    let cert_pem = dir.path().join(format!("{name}.pem"));
    let key_pem = dir.path().join(format!("{name}.key"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    Issued {
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        cert_pem,
        key_pem,
    }
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ringsq-pki-")
            .tempdir()
            .unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ringsq test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, CLIENT_CN);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();

        let rogue_key = KeyPair::generate().unwrap();
        let mut rogue = CertificateParams::new(Vec::<String>::new()).unwrap();
        rogue.distinguished_name.push(DnType::CommonName, "rogue");
        rogue.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let rogue_cert = rogue.self_signed(&rogue_key).unwrap();

        Pki {
            ca: write(&dir, "ca", &ca_cert, &ca_key),
            server: write(&dir, "server", &server_cert, &server_key),
            client: write(&dir, "client", &client_cert, &client_key),
            rogue_client: write(&dir, "rogue", &rogue_cert, &rogue_key),
            _dir: dir,
        }
    }

    /// The broker flags that serve this PKI's server certificate.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.server.cert_pem.display()),
            format!("--tls-key={}", self.server.key_pem.display()),
        ]
    }

    /// A client configuration that trusts the CA, with `cert` as its client certificate.
    pub fn client_config(&self, cert: Option<&Issued>, versions: Versions) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions.list())
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![c.cert_der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone())),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// Which TLS versions a test client offers.
#[derive(Debug, Clone, Copy)]
pub enum Versions {
    Any,
    Only12,
}

impl Versions {
    fn list(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        match self {
            Versions::Any => rustls::DEFAULT_VERSIONS,
            Versions::Only12 => ONLY_12,
        }
    }
}

/// A TLS stream to the broker.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Runs the client side of a TLS handshake on `tcp` (which the broker expects to upgrade now).
pub fn handshake(tcp: TcpStream, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
    let conn = ClientConnection::new(config, name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    // A refused client certificate shows up on the first read after the handshake (TLS 1.3).
    Ok(tls)
}

/// `<line>\n` + int32 BE size + body.
pub fn with_body(line: &str, body: &[u8]) -> Vec<u8> {
    let mut b = line.as_bytes().to_vec();
    b.push(b'\n');
    b.extend_from_slice(&i32::try_from(body.len()).unwrap().to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// One frame `(type, data)`.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<(i32, Vec<u8>)> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let size = i32::from_be_bytes(head[..4].try_into().unwrap());
    let kind = i32::from_be_bytes(head[4..].try_into().unwrap());
    let mut data = vec![0u8; usize::try_from(size - 4).unwrap()];
    r.read_exact(&mut data)?;
    Ok((kind, data))
}

/// The next frame that is not a heartbeat.
pub fn read_reply(r: &mut impl Read) -> (i32, Vec<u8>) {
    loop {
        let frame = read_frame(r).expect("a frame");
        if frame != (0, b"_heartbeat_".to_vec()) {
            return frame;
        }
    }
}

/// Connects, sends the magic and IDENTIFY `json`, returns the socket and the JSON response.
pub fn identify(addr: SocketAddr, json: &str) -> (TcpStream, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(b"  V2").unwrap();
    s.write_all(&with_body("IDENTIFY", json.as_bytes()))
        .unwrap();
    let (kind, data) = read_frame(&mut s).unwrap();
    assert_eq!(kind, 0, "{}", String::from_utf8_lossy(&data));
    (s, serde_json::from_slice(&data).unwrap())
}

/// A protocol connection upgraded to TLS (and past the upgrade's `OK`).
pub fn tls_conn(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    let (s, v) = identify(addr, r#"{"feature_negotiation":true,"tls_v1":true}"#);
    assert_eq!(v["tls_v1"], serde_json::json!(true), "{v}");
    let mut tls = handshake(s, config).expect("TLS handshake");
    assert_eq!(read_frame(&mut tls).unwrap(), (0, b"OK".to_vec()));
    tls
}

/// One HTTPS request (HTTP/1.1, `Connection: close`): the status and the body.
pub fn https_request(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut tls = handshake(tcp, config)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    tls.flush()?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Some servers close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(parse_http(&raw))
}

/// The status and body of a whole HTTP/1.1 response (`Content-Length` or to the end).
pub fn parse_http(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// A stream shared by a reader and a writer (a compressing encoder and decoder over one TLS
/// connection, which cannot be split like a socket).
#[derive(Clone)]
pub struct Shared(pub std::rc::Rc<std::cell::RefCell<Tls>>);

impl Shared {
    pub fn new(tls: Tls) -> Self {
        Shared(std::rc::Rc::new(std::cell::RefCell::new(tls)))
    }
}

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// A raw-DEFLATE reader that hands out whatever each read inflates to (flate2's own reader
/// waits for more input than a sync-flushed block needs).
pub struct Inflater<R> {
    inner: R,
    d: flate2::Decompress,
    out: Vec<u8>,
}

impl<R: Read> Inflater<R> {
    pub fn new(inner: R) -> Self {
        Inflater {
            inner,
            d: flate2::Decompress::new(false),
            out: Vec::new(),
        }
    }
}

impl<R: Read> Read for Inflater<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out.is_empty() {
            let mut raw = [0u8; 4096];
            let n = self.inner.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            let mut at = 0;
            while at < n {
                self.out.reserve(64 * 1024);
                let before = self.d.total_in();
                self.d
                    .decompress_vec(&raw[at..n], &mut self.out, flate2::FlushDecompress::Sync)
                    .map_err(std::io::Error::other)?;
                at += usize::try_from(self.d.total_in() - before).unwrap();
            }
        }
        let k = buf.len().min(self.out.len());
        buf[..k].copy_from_slice(&self.out[..k]);
        self.out.drain(..k);
        Ok(k)
    }
}
