//! TLS for the listeners: PEM certificate chain and key, reloaded when the files change, so a
//! renewed certificate takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// How often the certificate files are checked for changes.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("invalid TLS certificate or key: {0}")]
    Invalid(String),
}

/// The acceptor in use, swapped when the files change.
pub struct TlsAcceptorCell {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<(TlsAcceptor, Option<SystemTime>)>,
}

fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some(m(cert)?.max(m(key)?))
}

fn load(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| read_err(cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(cert_file, &e))?;
    if chain.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{} holds no certificate",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| read_err(key_file, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Invalid(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| TlsError::Invalid(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl TlsAcceptorCell {
    /// Loads the files; an error here is a startup error.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, TlsError> {
        let acceptor = load(cert_file, key_file)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new((acceptor, modified(cert_file, key_file))),
        }))
    }

    pub fn current(&self) -> TlsAcceptor {
        self.current.read().expect("tls acceptor").0.clone()
    }

    /// Reloads when the files changed since the last load; a broken new pair is logged and the
    /// old one kept, so a half-written renewal never takes the listener down.
    pub fn reload_if_changed(&self) {
        let now = modified(&self.cert_file, &self.key_file);
        if now == self.current.read().expect("tls acceptor").1 {
            return;
        }
        match load(&self.cert_file, &self.key_file) {
            Ok(acceptor) => {
                *self.current.write().expect("tls acceptor") = (acceptor, now);
                info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                warn!(error = %e, "TLS files changed but do not load; keeping the previous certificate")
            }
        }
    }
}
