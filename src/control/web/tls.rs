//! TLS on the web app's listener: rustls (ring) with the certificate and
//! key read from PEM files, read again when either file changes (a stat of
//! both per handshake), so a renewed certificate is served from the next
//! connection without a restart. A renewal caught half-written (a new
//! certificate beside the old key) keeps the pair in use until the files
//! agree again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::shared::file_version::{FileVersion, file_version};

/// The certificate chain and key files, and the pair in use.
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Loaded>,
}

struct Loaded {
    /// The file versions last looked at (loaded or refused).
    seen: (Option<FileVersion>, Option<FileVersion>),
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

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "--tls-cert {} and --tls-key {} do not belong together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(certified)
}

impl CertificateFiles {
    /// Reads both files; fails if they do not make a usable pair.
    pub fn open(cert: &Path, key: &Path) -> Result<CertificateFiles, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = (file_version(cert), file_version(key));
        let loaded = load(cert, key, &provider)?;
        Ok(CertificateFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            state: Mutex::new(Loaded {
                seen,
                key: Arc::new(loaded),
            }),
        })
    }

    /// The pair to present, read again first if a file changed.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().ok()?;
        let now = (file_version(&self.cert), file_version(&self.key));
        if now != state.seen {
            state.seen = now;
            match load(&self.cert, &self.key, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    state.key = Arc::new(key);
                }
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays")
                }
            }
        }
        Some(state.key.clone())
    }

    /// A rustls server configuration presenting these files (HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
