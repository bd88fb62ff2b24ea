//! HTTPS: the server certificate and key from PEM files (`--tls-cert`, `--tls-key`),
//! read again when either file changes on disk, so a renewed certificate is served from
//! the next connection on without a restart and without dropping open connections.
//!
//! Each handshake compares the files' size and modification time with what was loaded
//! (two `stat` calls, nothing against the handshake's own cost); a changed pair is read
//! and checked, and one that does not load (half-written, a key that does not match) is
//! reported once and the previous certificate kept.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// What a file looked like when read: its size and modification time.
type Stamp = Option<(u64, SystemTime)>;

/// The certificate files and the certificate last loaded from them.
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    /// The files' stamps the last time they were read (successfully or not).
    seen: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl CertificateFiles {
    /// Loads the pair now: a server must not start with a certificate it cannot serve.
    pub fn open(cert: &Path, key: &Path) -> io::Result<Arc<CertificateFiles>> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let seen = (stamp(cert), stamp(key));
        let certified = load(&provider, cert, key)?;
        Ok(Arc::new(CertificateFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            loaded: Mutex::new(Loaded {
                seen,
                key: certified,
            }),
        }))
    }

    /// An acceptor offering HTTP/2 and HTTP/1.1 (ALPN) with this certificate.
    pub fn acceptor(self: &Arc<Self>) -> io::Result<TlsAcceptor> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The certificate to serve: the files' current one, or the last that loaded.
    fn current(&self) -> Arc<CertifiedKey> {
        let now = (stamp(&self.cert), stamp(&self.key));
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if now != loaded.seen {
            loaded.seen = now;
            match load(&self.provider, &self.cert, &self.key) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    loaded.key = key;
                }
                Err(e) => tracing::warn!(
                    cert = %self.cert.display(),
                    error = %e,
                    "the changed TLS certificate does not load; serving the previous one"
                ),
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reads a certificate chain and its private key, and checks that they belong together.
fn load(provider: &CryptoProvider, cert: &Path, key: &Path) -> io::Result<Arc<CertifiedKey>> {
    let invalid = |path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(cert, &"no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let certified = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e: rustls::Error| invalid(key, &e))?;
    Ok(Arc::new(certified))
}
