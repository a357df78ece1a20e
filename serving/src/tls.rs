//! TLS 1.2/1.3 serving whose certificate and key are re-read from files
//! while the server runs.
//!
//! Kubernetes updates a Secret volume by swapping a `..data` symlink, which a
//! watch on the file path misses, so the files are polled: their contents
//! are read through the path (following links) and compared by hash. A pair
//! that fails to load keeps the last good one in service.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where a serving certificate chain and its key live.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Outcome of one reload attempt, for the `*_cert_reloads_total{result}` metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Failure,
}

impl ReloadResult {
    pub fn as_label(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Failure => "failure",
        }
    }
}

/// Serves whichever certificate was loaded last.
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    fingerprint: u64,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read_current().key.clone())
    }
}

impl ReloadingCert {
    /// Loads the pair once; an error here means the server cannot start.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let (cert_pem, key_pem) = read_pair(&files)?;
        let key = certified_key(&files, &cert_pem, &key_pem)?;
        let fingerprint = fingerprint(&cert_pem, &key_pem);
        Ok(Arc::new(ReloadingCert {
            files,
            current: RwLock::new(Loaded {
                key: Arc::new(key),
                fingerprint,
            }),
        }))
    }

    /// Re-reads the files; `None` when nothing changed.
    pub fn reload(&self) -> Option<Result<(), TlsError>> {
        let (cert_pem, key_pem) = match read_pair(&self.files) {
            Ok(pair) => pair,
            Err(err) => return Some(Err(err)),
        };
        let fingerprint = fingerprint(&cert_pem, &key_pem);
        if fingerprint == self.read_current().fingerprint {
            return None;
        }
        match certified_key(&self.files, &cert_pem, &key_pem) {
            Ok(key) => {
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                *current = Loaded {
                    key: Arc::new(key),
                    fingerprint,
                };
                Some(Ok(()))
            }
            Err(err) => Some(Err(err)),
        }
    }

    /// The DER of the leaf certificate now in service.
    pub fn current_leaf(&self) -> Option<CertificateDer<'static>> {
        self.read_current().key.cert.first().cloned()
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls the files every `interval` until shutdown, reporting each change.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: Shutdown,
        on_reload: impl Fn(ReloadResult) + Send + 'static,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The files just loaded count as the first tick.
        ticker.tick().await;
        // A failure is reported once per broken content, not on every poll.
        let mut last_failure: Option<String> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait() => return,
            }
            let this = self.clone();
            let outcome = match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(outcome) => outcome,
                Err(err) => Some(Err(TlsError::Read {
                    path: self.files.cert.clone(),
                    source: std::io::Error::other(err),
                })),
            };
            match outcome {
                None => {}
                Some(Ok(())) => {
                    last_failure = None;
                    tracing::info!(cert = %self.files.cert.display(), "serving certificate reloaded");
                    on_reload(ReloadResult::Success);
                }
                Some(Err(err)) => {
                    let message = err.to_string();
                    if last_failure.as_deref() != Some(message.as_str()) {
                        tracing::error!(error = %message, "serving certificate reload failed; keeping the last good pair");
                        on_reload(ReloadResult::Failure);
                        last_failure = Some(message);
                    }
                }
            }
        }
    }
}

/// A TLS acceptor speaking TLS 1.3 and 1.2 only, with ALPN for h2 and http/1.1.
pub fn acceptor(resolver: Arc<dyn ResolvesServerCert>) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_pair(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    cert_pem.hash(&mut hasher);
    key_pem.hash(&mut hasher);
    hasher.finish()
}

fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: files.cert.clone(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| TlsError::BadKey {
        path: files.key.clone(),
        reason: err.to_string(),
    })?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|err| TlsError::BadKey {
            path: files.key.clone(),
            reason: err.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|err| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: err.to_string(),
    })?;
    Ok(certified)
}
