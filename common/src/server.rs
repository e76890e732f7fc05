//! One HTTP accept loop for plain TCP or TLS.
//!
//! Each connection is served by hyper-util's auto builder (HTTP/1.1 and
//! HTTP/2: the aggregation layer talks HTTP/2). The handler gets every
//! request together with [`ConnInfo`] (peer address and, over TLS, the CN
//! of a verified client certificate). Connection-level limits: TLS handshake
//! timeout, HTTP/1 header read timeout, HTTP/2 keep-alive. On the shutdown
//! token the loop stops accepting, asks every connection to finish its
//! in-flight requests, and waits up to a grace period.
//!
//! Helpers: [`read_body_limited`] (413 / 400 via [`BodyError`]),
//! [`json_response`], [`text_response`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the handler knows about the connection a request came on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// Subject CN of the client certificate, present only when the client
    /// sent one and it verified against the configured client CA set.
    pub client_cn: Option<String>,
    /// The client presented a certificate that verified against the
    /// configured client CA set (with or without a CN).
    pub client_verified: bool,
}

/// Plain HTTP, or TLS with the config currently in the watch channel (read
/// anew for each connection, so a swapped config applies to new connections).
#[derive(Clone, Debug)]
pub enum Transport {
    Plain,
    Tls(watch::Receiver<Arc<ServerConfig>>),
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Time a client gets to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time an HTTP/1 client gets to send a request's headers (also bounds
    /// idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// HTTP/2 ping interval; a peer that does not answer within the same
    /// time is dropped.
    pub http2_keep_alive: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            http2_keep_alive: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` until `shutdown` is cancelled, then drains connections
/// for at most `opts.shutdown_grace`. A panicking handler yields a 500 for
/// that request instead of killing the connection.
pub async fn serve<H, F>(
    listener: TcpListener,
    transport: Transport,
    handler: H,
    opts: ServeOptions,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let transport = transport.clone();
        let handler = handler.clone();
        let opts = opts.clone();
        let shutdown = shutdown.clone();
        let span = tracing::debug_span!("conn", %remote);
        connections.spawn(
            async move {
                serve_connection(tcp, remote, transport, handler, &opts, shutdown).await;
            }
            .instrument(span),
        );
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown grace period over; closing remaining connections"
        );
        connections.abort_all();
    }
}

async fn serve_connection<H, F>(
    tcp: TcpStream,
    remote: SocketAddr,
    transport: Transport,
    handler: H,
    opts: &ServeOptions,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    match transport {
        Transport::Plain => {
            let info = ConnInfo {
                remote,
                client_cn: None,
                client_verified: false,
            };
            run_http(tcp, info, handler, opts, shutdown).await;
        }
        Transport::Tls(config) => {
            let acceptor = TlsAcceptor::from(config.borrow().clone());
            let handshake = tokio::select! {
                () = shutdown.cancelled() => return,
                r = tokio::time::timeout(opts.tls_handshake_timeout, acceptor.accept(tcp)) => r,
            };
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let session = tls.get_ref().1;
            let info = ConnInfo {
                remote,
                client_cn: crate::tls::peer_common_name(session),
                // The verifier only lets a certificate through that chains
                // to the client CA set.
                client_verified: session.peer_certificates().is_some_and(|c| !c.is_empty()),
            };
            run_http(tls, info, handler, opts, shutdown).await;
        }
    }
}

async fn run_http<IO, H, F>(
    io: IO,
    info: ConnInfo,
    handler: H,
    opts: &ServeOptions,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = handler(req, info.clone());
        async move {
            Ok::<_, Infallible>(match AssertUnwindSafe(response).catch_unwind().await {
                Ok(response) => response,
                Err(_) => {
                    tracing::error!("request handler panicked");
                    text_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            })
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.http2_keep_alive)
        .keep_alive_timeout(opts.http2_keep_alive);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error during shutdown");
            }
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the request body: {0}")]
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A plain-text error response with [`BodyError::status`].
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        text_response(self.status(), format!("{self}\n"))
    }
}

/// Reads the whole body, refusing more than `max` bytes: a declared
/// `Content-Length` above the limit is refused before reading anything.
pub async fn read_body_limited<B>(req: Request<B>, max: usize) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(BodyError::TooLarge { limit: max });
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit: max })
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// `application/json` response; a serialization failure becomes a 500.
pub fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_type(status, Bytes::from(bytes), "application/json"),
        Err(e) => {
            tracing::error!(error = %e, "serializing a response failed");
            text_response(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed\n")
        }
    }
}

/// `text/plain; charset=utf-8` response.
pub fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    with_type(
        status,
        Bytes::from(body.into()),
        "text/plain; charset=utf-8",
    )
}

/// A response with the given body and content type.
pub fn with_type(
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{self, CertFiles, FixedCert, ReloadingCertResolver, TlsConfigHandle};
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore};
    use tokio_rustls::TlsConnector;

    fn install_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    struct Ca {
        cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf signed by `ca`: (cert DER, key DER).
    fn leaf(
        ca: &Ca,
        cn: &str,
        sans: &[&str],
        eku: ExtendedKeyUsagePurpose,
    ) -> (
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
        String,
        String,
    ) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            cert.pem(),
            key.serialize_pem(),
        )
    }

    async fn echo_cn(req: Request<Incoming>, info: ConnInfo) -> Response<Full<Bytes>> {
        let version = format!("{:?}", req.version());
        text_response(
            StatusCode::OK,
            format!(
                "{} {}",
                info.client_cn.as_deref().unwrap_or("<none>"),
                version
            ),
        )
    }

    struct Running {
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(transport: Transport) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            transport,
            echo_cn,
            ServeOptions {
                tls_handshake_timeout: Duration::from_secs(2),
                shutdown_grace: Duration::from_secs(2),
                ..ServeOptions::default()
            },
            shutdown.clone(),
        ));
        Running {
            addr,
            shutdown,
            task,
        }
    }

    fn client_config(
        server_ca: &CertificateDer<'static>,
        identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(server_ca.clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// One HTTP/1.1 GET over TLS; returns the body or the error text.
    async fn get_tls(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<String, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let req = Request::get("/")
            .header("host", server_name)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await
        }
        .map_err(|e| {
            let mut text = format!("request: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                text.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            text
        })?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }

    fn server_handle(server_ca: &Ca, client_ca: Vec<CertificateDer<'static>>) -> TlsConfigHandle {
        let (cert, key, _, _) = leaf(
            server_ca,
            "server",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let key = rustls::sign::CertifiedKey::from_der(vec![cert], key, &tls::provider()).unwrap();
        TlsConfigHandle::new(Arc::new(FixedCert(Arc::new(key))), client_ca).unwrap()
    }

    #[tokio::test]
    async fn client_certificates_verified_and_cn_extracted() {
        install_provider();
        let server_ca = ca("server-ca");
        let front_proxy_ca = ca("front-proxy-ca");
        let stranger_ca = ca("stranger-ca");
        let handle = server_handle(&server_ca, vec![front_proxy_ca.cert.clone()]);
        let running = start(Transport::Tls(handle.subscribe())).await;

        // No client certificate: allowed, no CN.
        let anon = client_config(&server_ca.cert, None, &[b"http/1.1"]);
        assert_eq!(
            get_tls(running.addr, anon, "localhost").await.unwrap(),
            "<none> HTTP/1.1"
        );

        // A certificate from the configured CA: CN visible, over HTTP/2 too.
        let (c, k, _, _) = leaf(
            &front_proxy_ca,
            "front-proxy-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let trusted = client_config(&server_ca.cert, Some((c, k)), &[b"h2", b"http/1.1"]);
        assert_eq!(
            get_tls(running.addr, trusted, "localhost").await.unwrap(),
            "front-proxy-client HTTP/2.0"
        );

        // A certificate from an unknown CA: refused (seen at the first request
        // under TLS 1.3, where the client's handshake completes first).
        let (c, k, _, _) = leaf(
            &stranger_ca,
            "front-proxy-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let untrusted = client_config(&server_ca.cert, Some((c, k)), &[b"http/1.1"]);
        let err = get_tls(running.addr, untrusted, "localhost")
            .await
            .unwrap_err();
        assert!(err.contains("UnknownCA"), "{err}");

        // Swap the client CA set: the stranger CA is now trusted, the old one not.
        handle
            .set_client_ca(vec![stranger_ca.cert.clone()])
            .unwrap();
        let (c, k, _, _) = leaf(
            &stranger_ca,
            "new-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let now_trusted = client_config(&server_ca.cert, Some((c, k)), &[b"http/1.1"]);
        assert_eq!(
            get_tls(running.addr, now_trusted, "localhost")
                .await
                .unwrap(),
            "new-client HTTP/1.1"
        );
        let (c, k, _, _) = leaf(
            &front_proxy_ca,
            "front-proxy-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let formerly_trusted = client_config(&server_ca.cert, Some((c, k)), &[b"http/1.1"]);
        let err = get_tls(running.addr, formerly_trusted, "localhost")
            .await
            .unwrap_err();
        assert!(err.contains("UnknownCA"), "{err}");

        running.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn without_client_ca_no_certificate_is_requested() {
        install_provider();
        let server_ca = ca("server-ca");
        let other = ca("other");
        let handle = server_handle(&server_ca, vec![]);
        let running = start(Transport::Tls(handle.subscribe())).await;
        let (c, k, _, _) = leaf(&other, "someone", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let config = client_config(&server_ca.cert, Some((c, k)), &[b"http/1.1"]);
        // The server never asks, so the client sends no certificate: no CN.
        assert_eq!(
            get_tls(running.addr, config, "localhost").await.unwrap(),
            "<none> HTTP/1.1"
        );
        running.shutdown.cancel();
    }

    #[tokio::test]
    async fn serving_certificate_file_reload_reaches_new_connections() {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let ca_one = ca("one");
        let ca_two = ca("two");
        let (_, _, cert_pem, key_pem) = leaf(
            &ca_one,
            "v1",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(&files.cert, cert_pem).unwrap();
        std::fs::write(&files.key, key_pem).unwrap();
        let resolver = Arc::new(ReloadingCertResolver::new(files.clone(), Duration::ZERO).unwrap());
        let handle = TlsConfigHandle::new(resolver.clone(), vec![]).unwrap();
        let running = start(Transport::Tls(handle.subscribe())).await;

        let trusts_one = client_config(&ca_one.cert, None, &[b"http/1.1"]);
        let trusts_two = client_config(&ca_two.cert, None, &[b"http/1.1"]);
        assert!(
            get_tls(running.addr, trusts_one.clone(), "localhost")
                .await
                .is_ok()
        );
        assert!(
            get_tls(running.addr, trusts_two.clone(), "localhost")
                .await
                .is_err()
        );

        // Rotation as a Secret volume does it: new files swapped in.
        let (_, _, cert_pem, key_pem) = leaf(
            &ca_two,
            "v2",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let tmp_cert = dir.path().join("tls.crt.new");
        let tmp_key = dir.path().join("tls.key.new");
        std::fs::write(&tmp_cert, cert_pem).unwrap();
        std::fs::write(&tmp_key, key_pem).unwrap();
        std::fs::rename(&tmp_key, &files.key).unwrap();
        std::fs::rename(&tmp_cert, &files.cert).unwrap();

        // Fresh client configs: a client resuming its earlier TLS 1.3 session
        // is (correctly) not shown a certificate again.
        let trusts_one = client_config(&ca_one.cert, None, &[b"http/1.1"]);
        let trusts_two = client_config(&ca_two.cert, None, &[b"http/1.1"]);
        assert!(get_tls(running.addr, trusts_two, "localhost").await.is_ok());
        assert!(
            get_tls(running.addr, trusts_one, "localhost")
                .await
                .is_err()
        );
        let served = resolver.current();
        assert_eq!(
            tls::common_name(served.cert[0].as_ref()).as_deref(),
            Some("v2")
        );
        running.shutdown.cancel();
    }

    #[test]
    fn broken_replacement_keeps_previous_certificate() {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let one = ca("one");
        let (_, _, cert_pem, key_pem) = leaf(
            &one,
            "v1",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(&files.cert, &cert_pem).unwrap();
        std::fs::write(&files.key, key_pem).unwrap();
        let resolver = ReloadingCertResolver::new(files.clone(), Duration::ZERO).unwrap();
        // Half-rotated: a new certificate whose key has not arrived yet.
        let (_, _, new_cert, _) = leaf(
            &one,
            "v2",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(&files.cert, new_cert).unwrap();
        assert!(resolver.reload_if_changed().is_err());
        assert_eq!(
            tls::common_name(resolver.current().cert[0].as_ref()).as_deref(),
            Some("v1")
        );
    }

    #[tokio::test]
    async fn self_signed_bundle_verifies_the_served_certificate() {
        install_provider();
        let ss = tls::self_signed(&["localhost".into()], &["127.0.0.1".parse().unwrap()]).unwrap();
        let ca = tls::parse_pem_certs(ss.ca_pem.as_bytes(), "ca").unwrap();
        let handle = TlsConfigHandle::new(Arc::new(FixedCert(ss.key.clone())), vec![]).unwrap();
        let running = start(Transport::Tls(handle.subscribe())).await;
        let config = client_config(&ca[0], None, &[b"http/1.1"]);
        assert!(
            get_tls(running.addr, config.clone(), "localhost")
                .await
                .is_ok()
        );
        assert!(get_tls(running.addr, config, "127.0.0.1").await.is_ok());
        running.shutdown.cancel();
    }

    #[tokio::test]
    async fn plain_transport_and_graceful_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let slow = |_req: Request<Incoming>, _info: ConnInfo| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            text_response(StatusCode::OK, "done")
        };
        let task = tokio::spawn(serve(
            listener,
            Transport::Plain,
            slow,
            ServeOptions::default(),
            shutdown.clone(),
        ));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let in_flight = tokio::spawn(async move {
            sender
                .send_request(Request::get("/").body(Full::new(Bytes::new())).unwrap())
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        // The in-flight request still completes.
        let response = in_flight.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"done");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        // And nothing accepts any more.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn panicking_handler_gives_500() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let boom = |_req: Request<Incoming>, _info: ConnInfo| async {
            if true {
                panic!("boom");
            }
            text_response(StatusCode::OK, "unreachable")
        };
        tokio::spawn(serve(
            listener,
            Transport::Plain,
            boom,
            ServeOptions::default(),
            shutdown.clone(),
        ));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let response = sender
            .send_request(Request::get("/").body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn body_limit() {
        let ok = Request::post("/")
            .body(Full::new(Bytes::from_static(b"0123456789")))
            .unwrap();
        assert_eq!(&read_body_limited(ok, 10).await.unwrap()[..], b"0123456789");

        let big = Request::post("/")
            .body(Full::new(Bytes::from_static(b"0123456789A")))
            .unwrap();
        let err = read_body_limited(big, 10).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 10 }));
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // A declared length above the limit is refused without reading.
        let declared = Request::post("/")
            .header(CONTENT_LENGTH, "1000000")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        assert!(matches!(
            read_body_limited(declared, 10).await,
            Err(BodyError::TooLarge { .. })
        ));

        let failing = Request::post("/")
            .body(http_body_util::StreamBody::new(futures::stream::iter(
                vec![
                    Ok(hyper::body::Frame::data(Bytes::from_static(b"ab"))),
                    Err(std::io::Error::other("connection reset")),
                ],
            )))
            .unwrap();
        let err = read_body_limited(failing, 10).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("connection reset"), "{err}");
    }

    #[test]
    fn response_helpers_set_type_and_status() {
        let r = json_response(StatusCode::CREATED, &serde_json::json!({"a": 1}));
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let r = text_response(StatusCode::NOT_FOUND, "nope");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    }
}
