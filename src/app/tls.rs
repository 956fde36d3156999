//! TLS from nsqd's flags: the server configuration (`--tls-cert`, `--tls-key`,
//! `--tls-client-auth-policy`, `--tls-root-ca-file`, `--tls-min-version`) shared by the
//! protocol's IDENTIFY `tls_v1` upgrade and by HTTPS; the client configuration used to reach an
//! auth server over HTTPS; and what `/stats` shows of a TLS connection.
//!
//! The TLS library is rustls with the ring provider; nothing here parses certificates or does
//! cryptography by hand (PEM by `rustls-pki-types`, chains by webpki, a client certificate's
//! common name by `x509-parser`).
//!
//! nsqd's semantics (`buildTLSConfig`): no policy → no client certificate is asked for;
//! `require` → a certificate is required but not verified (Go `RequireAnyClientCert`);
//! `require-verify` → required and verified against `--tls-root-ca-file`, or the system's roots
//! when that is not given (Go `RequireAndVerifyClientCert`). rustls offers TLS 1.2 and 1.3
//! only, so `--tls-min-version=tls1.0` or `tls1.1` mean TLS 1.2 and up.

use crate::options::{Options, TLS_VERSION_1_3};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the TLS configuration could not be built (the broker then refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the system's CA roots: {0}")]
    NativeRoots(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The crypto provider every TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions `--tls-min-version` allows (see the module docs for 1.0 and 1.1).
fn versions(min_version: u16) -> &'static [&'static SupportedProtocolVersion] {
    static TLS12_UP: &[&SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    if min_version >= TLS_VERSION_1_3 {
        TLS13
    } else {
        TLS12_UP
    }
}

fn pem_error(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.to_owned();
    move |source| TlsError::Pem { what, path, source }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error("certificate", path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificate", path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// `--tls-root-ca-file`'s certificates, or the system's when it is empty.
fn root_store(root_ca_file: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    if root_ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        if native.certs.is_empty() {
            let why = native
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(TlsError::NativeRoots(why));
        }
        let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    } else {
        for cert in load_certs(Path::new(root_ca_file))? {
            roots.add(cert)?;
        }
    }
    Ok(roots)
}

/// The server configuration, or `None` when no certificate is configured.
pub fn server_config(o: &Options) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    if o.tls_cert.is_empty() && o.tls_key.is_empty() {
        return Ok(None);
    }
    let certs = load_certs(Path::new(&o.tls_cert))?;
    let key = PrivateKeyDer::from_pem_file(&o.tls_key)
        .map_err(pem_error("key", Path::new(&o.tls_key)))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(o.tls_min_version))?;
    let builder = match o.tls_client_auth_policy.as_str() {
        "require" => builder.with_client_cert_verifier(Arc::new(AnyClientCert::new())),
        "require-verify" => {
            let roots = Arc::new(root_store(&o.tls_root_ca_file)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(builder.with_single_cert(certs, key)?)))
}

/// The client configuration for an auth server reached over HTTPS: `--tls-root-ca-file`'s
/// roots, or the system's (nsqd 1.3.0's `buildClientTLSConfig`).
pub fn client_config(o: &Options) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(&o.tls_root_ca_file)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(o.tls_min_version))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Go's `RequireAnyClientCert`: a client certificate is required, its chain is not verified
/// (its signature over the handshake still is).
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    fn new() -> Self {
        Self {
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_versions() {
        for v in [0x0301, 0x0302, 0x0303] {
            assert_eq!(versions(v).len(), 2);
        }
        assert_eq!(versions(TLS_VERSION_1_3).len(), 1);
    }

    #[test]
    fn no_certificate_means_no_tls() {
        assert!(matches!(server_config(&Options::default()), Ok(None)));
        let missing = Options {
            tls_cert: "/nonexistent/cert.pem".to_owned(),
            tls_key: "/nonexistent/key.pem".to_owned(),
            ..Options::default()
        };
        assert!(server_config(&missing).is_err());
    }
}
