//! HTTP(S) client for kubelet resource metrics.

use crate::token::TokenError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::snapshot::{ResourceSnapshot, snapshot_from_exposition};
use super::target::{KubeletTarget, TargetError};
use crate::prom;

/// How to reach and authenticate to kubelets.
#[derive(Clone, Debug)]
pub struct KubeletClientConfig {
    /// CA bundle (PEM) that signed the kubelets' serving certificates.
    pub ca_file: Option<PathBuf>,
    /// Accept any kubelet certificate. kubeadm kubelets serve self-signed
    /// certificates unless `serverTLSBootstrap` is on, so there is no CA to
    /// verify against; metrics-server offers the same trade-off as
    /// `--kubelet-insecure-tls`. The connection is still encrypted and the
    /// handshake signature still checked against the presented certificate,
    /// but the kubelet's identity is not verified.
    pub insecure_skip_tls_verify: bool,
    /// Bearer token file, re-read on every scrape so projected
    /// service-account token rotation needs no restart.
    pub token_file: Option<PathBuf>,
    /// Limit for the whole request: connect, TLS, headers and body.
    pub timeout: Duration,
    /// Largest accepted response body.
    pub max_body_bytes: usize,
}

impl Default for KubeletClientConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            insecure_skip_tls_verify: false,
            token_file: None,
            timeout: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("kubelet client configuration: {0}")]
    Config(String),
    #[error("reading CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("https target but no CA file configured and insecure_skip_tls_verify is off")]
    NoTrustAnchors,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("invalid URL {url:?}")]
    InvalidUrl { url: String },
    #[error("reading token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is empty or not a valid header value")]
    InvalidToken { path: PathBuf },
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("kubelet answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading response body: {0}")]
    Body(String),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("response is not UTF-8")]
    NotUtf8,
    #[error("parsing exposition: {0}")]
    Parse(#[from] prom::ParseError),
}

/// Scrapes kubelets. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct KubeletClient {
    http: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    token_file: Option<PathBuf>,
    timeout: Duration,
    max_body_bytes: usize,
    /// False when neither a CA nor insecure mode was given: http only.
    https_enabled: bool,
}

/// Accepts any server certificate but still checks that the handshake was
/// signed by the key in the certificate presented. See
/// [`KubeletClientConfig::insecure_skip_tls_verify`] for why this exists.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(cfg: &KubeletClientConfig) -> Result<(ClientConfig, bool), ScrapeError> {
    // The ring provider explicitly, so the client works whether or not the
    // process-wide default has been installed yet.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    match (&cfg.ca_file, cfg.insecure_skip_tls_verify) {
        (Some(_), true) => Err(ScrapeError::Config(
            "a CA file and insecure_skip_tls_verify are mutually exclusive".into(),
        )),
        (None, true) => Ok((
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
                .with_no_client_auth(),
            true,
        )),
        (Some(path), false) => {
            let ca_err = |message: String| ScrapeError::CaFile {
                path: path.clone(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))? {
                let cert = cert.map_err(|e| ca_err(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_err("no certificates found".into()));
            }
            Ok((
                builder.with_root_certificates(roots).with_no_client_auth(),
                true,
            ))
        }
        (None, false) => Ok((
            builder
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
            false,
        )),
    }
}

impl KubeletClient {
    pub fn new(cfg: KubeletClientConfig) -> Result<Self, ScrapeError> {
        if cfg.timeout.is_zero() {
            return Err(ScrapeError::Config("timeout must be positive".into()));
        }
        if cfg.max_body_bytes == 0 {
            return Err(ScrapeError::Config(
                "max_body_bytes must be positive".into(),
            ));
        }
        let (tls, https_enabled) = tls_config(&cfg)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            http,
            token_file: cfg.token_file,
            timeout: cfg.timeout,
            max_body_bytes: cfg.max_body_bytes,
            https_enabled,
        })
    }

    /// Fetches and parses one kubelet's resource metrics.
    #[tracing::instrument(level = "debug", skip(self), fields(node = %target.node, url = %target.url), err(Display))]
    pub async fn scrape(&self, target: &KubeletTarget) -> Result<ResourceSnapshot, ScrapeError> {
        let body = tokio::time::timeout(self.timeout, self.fetch(&target.url))
            .await
            .map_err(|_| ScrapeError::Timeout(self.timeout))??;
        let taken_at = Timestamp::now();
        let text = std::str::from_utf8(&body).map_err(|_| ScrapeError::NotUtf8)?;
        let exposition = prom::parse(text)?;
        Ok(snapshot_from_exposition(
            &target.node,
            &exposition,
            taken_at,
        ))
    }

    async fn bearer(&self) -> Result<Option<HeaderValue>, ScrapeError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        match crate::token::authorization(path, "Bearer").await {
            Ok(value) => Ok(Some(value)),
            Err(TokenError::Read { path, source }) => Err(ScrapeError::Token { path, source }),
            Err(TokenError::Invalid { path }) => Err(ScrapeError::InvalidToken { path }),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Bytes, ScrapeError> {
        let invalid_url = || ScrapeError::InvalidUrl {
            url: url.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| invalid_url())?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if self.https_enabled => {}
            Some("https") => return Err(ScrapeError::NoTrustAnchors),
            _ => return Err(invalid_url()),
        }
        let mut request = Request::get(uri)
            // The text format first, anything else as a fallback: kwok's
            // promhttp answers 406 to a bare `text/plain;version=0.0.4`.
            .header(ACCEPT, "text/plain;version=0.0.4;q=1,*/*;q=0.1")
            .body(Empty::new())
            .map_err(|_| invalid_url())?;
        if let Some(bearer) = self.bearer().await? {
            request.headers_mut().insert(AUTHORIZATION, bearer);
        }
        let response = self.http.request(request).await?;
        let status = response.status();
        let declared_len = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if status != StatusCode::OK {
            // A little of the body says why (e.g. "Forbidden (user=..., verb=get, resource=nodes, subresource=metrics)").
            let body = Limited::new(response.into_body(), 512)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
                .unwrap_or_default();
            return Err(ScrapeError::Status { status, body });
        }
        if declared_len.is_some_and(|len| len > self.max_body_bytes as u64) {
            return Err(ScrapeError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let collected = Limited::new(response.into_body(), self.max_body_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ScrapeError::BodyTooLarge {
                        limit: self.max_body_bytes,
                    }
                } else {
                    ScrapeError::Body(e.to_string())
                }
            })?;
        Ok(collected.to_bytes())
    }
}
