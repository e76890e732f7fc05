//! Server-side TLS for the headroom services.
//!
//! - The serving certificate comes from PEM files that are re-read when they
//!   change ([`ReloadingCertResolver`], checked at most every few seconds on a
//!   new handshake, so no background task is needed), or is generated at start
//!   ([`self_signed`]) with its CA certificate returned as PEM for an
//!   APIService `caBundle`.
//! - Client certificates are optional: when a client CA set is configured,
//!   a certificate is requested and verified against it, but clients without
//!   one are still let in (health probes); a certificate from an unknown CA is
//!   rejected. The CA set lives inside the `ServerConfig`, so changing it means
//!   building a new config and swapping the whole `Arc<ServerConfig>` through
//!   a `watch` channel ([`TlsConfigHandle`]); new connections pick it up.
//! - [`common_name`] reads the subject CN of a verified peer certificate.
//!
//! Only the `ring` provider is used (never aws-lc-rs: kube's client panics
//! when two providers are compiled in).

use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

/// How often [`ReloadingCertResolver`] looks at the files by default.
pub const DEFAULT_RELOAD_CHECK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: invalid PEM: {message}")]
    Pem { what: String, message: String },
    #[error("{what}: no private key found")]
    NoKey { what: String },
    #[error("{what}: certificate and key do not fit together: {source}")]
    CertifiedKey {
        what: String,
        #[source]
        source: rustls::Error,
    },
    #[error("client CA set: {0}")]
    ClientVerifier(String),
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The ring provider, the only one this workspace uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM bundle (other PEM sections are skipped).
/// `what` names the source in errors.
pub fn parse_pem_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_string(),
        });
    }
    Ok(certs)
}

/// A certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or
/// SEC1 PEM), checked to belong together.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_pem_certs(cert_pem, what)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            what: what.to_string(),
        },
        other => TlsError::Pem {
            what: what.to_string(),
            message: other.to_string(),
        },
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::CertifiedKey {
        what: what.to_string(),
        source,
    })
}

/// The subject common name of a DER certificate, if it has one.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The CN of the client certificate a server connection verified, if any.
/// Only meaningful after the handshake; with [`server_config`] a certificate
/// is only present when it chained to the configured client CA set.
pub fn peer_common_name(conn: &ServerConnection) -> Option<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| common_name(leaf.as_ref()))
}

/// Paths of a PEM certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Identity of a file version: a Secret volume update swaps a symlink, so the
/// inode changes as well as mtime; a rewrite in place changes mtime or size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Result<FileStamp, TlsError> {
    let meta = fs::metadata(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

struct ResolverState {
    stamps: (FileStamp, FileStamp),
    key: Arc<CertifiedKey>,
    next_check: Instant,
}

/// Serves the certificate in [`CertFiles`] and re-reads the files when their
/// stamps change. The check runs inside `resolve` (a new handshake) at most
/// once per `check_every`; a failed reload (for instance a certificate already
/// replaced while its key is not yet) keeps the previous pair and is retried
/// at the next check.
pub struct ReloadingCertResolver {
    files: CertFiles,
    check_every: Duration,
    state: Mutex<ResolverState>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertResolver")
            .field("files", &self.files)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertResolver {
    /// Loads the files now; an error here is a start-up error.
    pub fn new(files: CertFiles, check_every: Duration) -> Result<Self, TlsError> {
        let (stamps, key) = Self::load(&files)?;
        Ok(Self {
            state: Mutex::new(ResolverState {
                stamps,
                key: Arc::new(key),
                next_check: Instant::now() + check_every,
            }),
            files,
            check_every,
        })
    }

    fn load(files: &CertFiles) -> Result<((FileStamp, FileStamp), CertifiedKey), TlsError> {
        // Stamps first: a change after this point is seen at the next check.
        let stamps = (stamp(&files.cert)?, stamp(&files.key)?);
        let what = format!("{} / {}", files.cert.display(), files.key.display());
        let key = certified_key_from_pem(&read(&files.cert)?, &read(&files.key)?, &what)?;
        Ok((stamps, key))
    }

    /// The pair currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.lock().key.clone()
    }

    /// Reloads now if the files changed. `Ok(true)` when a new pair was loaded.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let mut state = self.lock();
        state.next_check = Instant::now() + self.check_every;
        let now = (stamp(&self.files.cert)?, stamp(&self.files.key)?);
        if now == state.stamps {
            return Ok(false);
        }
        let (stamps, key) = Self::load(&self.files)?;
        state.stamps = stamps;
        state.key = Arc::new(key);
        tracing::info!(cert = %self.files.cert.display(), "serving certificate reloaded");
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ResolverState> {
        // The state is always consistent (a single assignment), so a panic
        // elsewhere while holding the lock does not invalidate it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let due = Instant::now() >= self.lock().next_check;
        if due && let Err(e) = self.reload_if_changed() {
            tracing::warn!(error = %e, "serving certificate reload failed; keeping the previous one");
        }
        Some(self.current())
    }
}

/// Always the same certificate (self-signed, or fixed in tests).
#[derive(Debug)]
pub struct FixedCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A serving certificate generated at start: a throw-away CA and a leaf
/// signed by it. Publish `ca_pem` as the APIService `caBundle` (a CA rather
/// than the leaf itself, since verifiers reject a CA certificate used as an
/// end-entity certificate).
pub struct SelfSigned {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key: Arc<CertifiedKey>,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// Generates [`SelfSigned`] for the given DNS names and IP addresses (SANs).
pub fn self_signed(dns_names: &[String], ips: &[IpAddr]) -> Result<SelfSigned, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    // rcgen's default validity (1975 to 4096) is kept: the certificate lives
    // only as long as the process, and an expiry would silently break the
    // APIService of a long-running adapter.
    let mut ca_params = CertificateParams::default();
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "headroom self-signed CA");
    ca_params.distinguished_name = ca_dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        dns_names.first().map(String::as_str).unwrap_or("headroom"),
    );
    leaf.distinguished_name = dn;
    for name in dns_names {
        leaf.subject_alt_names
            .push(SanType::DnsName(name.clone().try_into()?));
    }
    for ip in ips {
        leaf.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    let key_der = PrivateKeyDer::try_from(leaf_key.serialize_der()).map_err(|m| TlsError::Pem {
        what: "generated key".to_string(),
        message: m.to_string(),
    })?;
    let key = CertifiedKey::from_der(vec![leaf_cert.der().clone()], key_der, &provider()).map_err(
        |source| TlsError::CertifiedKey {
            what: "generated certificate".to_string(),
            source,
        },
    )?;
    Ok(SelfSigned {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key: Arc::new(key),
    })
}

/// Builds a server configuration: ALPN h2 and http/1.1, the given
/// certificate resolver, and, when `client_ca` is non-empty, optional client
/// certificates verified against it.
pub fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    client_ca: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for cert in client_ca {
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Owner of the live server configuration. The accept loop holds a
/// [`watch::Receiver`] from [`TlsConfigHandle::subscribe`] and reads the
/// current config for each new connection; [`TlsConfigHandle::set_client_ca`]
/// replaces it. Connections already established keep their config.
pub struct TlsConfigHandle {
    cert: Arc<dyn ResolvesServerCert>,
    client_ca: Mutex<Vec<CertificateDer<'static>>>,
    tx: watch::Sender<Arc<ServerConfig>>,
}

impl fmt::Debug for TlsConfigHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigHandle")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl TlsConfigHandle {
    pub fn new(
        cert: Arc<dyn ResolvesServerCert>,
        client_ca: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let config = server_config(cert.clone(), &client_ca)?;
        let (tx, _rx) = watch::channel(config);
        Ok(Self {
            cert,
            client_ca: Mutex::new(client_ca),
            tx,
        })
    }

    /// Replaces the client CA set (empty: no client certificates requested).
    /// Returns `Ok(false)` without rebuilding when the set is unchanged.
    pub fn set_client_ca(&self, client_ca: Vec<CertificateDer<'static>>) -> Result<bool, TlsError> {
        let mut current = self
            .client_ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == client_ca {
            return Ok(false);
        }
        let config = server_config(self.cert.clone(), &client_ca)?;
        *current = client_ca;
        self.tx.send_replace(config);
        tracing::info!(certs = current.len(), "client CA set replaced");
        Ok(true)
    }

    /// The client CA set in force.
    pub fn client_ca(&self) -> Vec<CertificateDer<'static>> {
        self.client_ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ServerConfig>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.tx.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_leaf_chains_to_returned_ca_and_names_sans() {
        let ss = self_signed(
            &["svc.ns.svc".to_string(), "localhost".to_string()],
            &["127.0.0.1".parse().unwrap()],
        )
        .unwrap();
        let ca = parse_pem_certs(ss.ca_pem.as_bytes(), "ca").unwrap();
        let leaf = parse_pem_certs(ss.cert_pem.as_bytes(), "leaf").unwrap();
        assert_eq!(common_name(leaf[0].as_ref()).as_deref(), Some("svc.ns.svc"));
        assert_eq!(
            common_name(ca[0].as_ref()).as_deref(),
            Some("headroom self-signed CA")
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf[0].as_ref()).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(names.iter().any(|n| n.contains("svc.ns.svc")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(ca[0].as_ref()).unwrap();
        assert_eq!(parsed.issuer().as_raw(), ca_parsed.subject().as_raw());
        assert!(ca_parsed.is_ca());
    }

    #[test]
    fn pem_errors_name_the_source() {
        let err = parse_pem_certs(b"not pem", "my-ca.pem").unwrap_err();
        assert!(err.to_string().contains("my-ca.pem"), "{err}");
        let ss = self_signed(&["a".into()], &[]).unwrap();
        let err = certified_key_from_pem(ss.cert_pem.as_bytes(), b"", "pair").unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = self_signed(&["a".into()], &[]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let err =
            certified_key_from_pem(a.cert_pem.as_bytes(), other.serialize_pem().as_bytes(), "x")
                .unwrap_err();
        assert!(matches!(err, TlsError::CertifiedKey { .. }), "{err}");
    }

    #[test]
    fn set_client_ca_swaps_config_only_on_change() {
        let ss = self_signed(&["a".into()], &[]).unwrap();
        let handle = TlsConfigHandle::new(Arc::new(FixedCert(ss.key.clone())), vec![]).unwrap();
        let rx = handle.subscribe();
        let before = handle.current();
        let ca = parse_pem_certs(ss.ca_pem.as_bytes(), "ca").unwrap();
        assert!(handle.set_client_ca(ca.clone()).unwrap());
        assert!(rx.has_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &handle.current()));
        let second = handle.current();
        assert!(!handle.set_client_ca(ca).unwrap());
        assert!(Arc::ptr_eq(&second, &handle.current()));
    }
}
