//! Fuzz target for the protocol's TLS layer (`ringsq::connection::tls::TlsLayer`): the bytes a client
//! sends after IDENTIFY `tls_v1`, reachable from any socket once a certificate is configured.
//!
//! The server configuration (a certificate generated once with `rcgen`) is what the broker
//! builds from its flags (`ringsq::app::tls::server_config`). Each input is fed in chunks whose
//! sizes come from its first byte, as reads would bring it; after each, plaintext is taken and
//! records are drained. Checked: no panic, an error ends the connection (nothing is fed after
//! it), plaintext never appears before a handshake could have finished.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsq::connection::tls::{Plain, TlsLayer};
use std::sync::{Arc, OnceLock};

fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let options = ringsq::options::Options {
            tls_cert: c.display().to_string(),
            tls_key: k.display().to_string(),
            ..ringsq::options::Options::default()
        };
        ringsq::app::tls::server_config(&options).unwrap().unwrap()
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let tls = TlsLayer::new(config()).unwrap();
    let mut plain = Vec::new();
    let mut records = Vec::new();
    for part in data.chunks(chunk) {
        let mut rest = part;
        while !rest.is_empty() {
            match tls.feed(rest) {
                Ok(n) => rest = &rest[n..],
                Err(_) => {
                    // Fatal for the connection: the alert is sent, nothing more is read.
                    tls.take_records(&mut records).unwrap();
                    return;
                }
            }
            match tls.read_plain(&mut plain, 16 * 1024).unwrap() {
                Plain::Bytes(_) => assert!(!tls.is_handshaking()),
                Plain::None | Plain::Closed => {}
            }
            tls.take_records(&mut records).unwrap();
        }
    }
});
