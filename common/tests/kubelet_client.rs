//! KubeletClient against local HTTP and HTTPS servers on 127.0.0.1.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use headroom_common::kubelet::{
    KubeletClient, KubeletClientConfig, KubeletTarget, PodKey, ScrapeError,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const EXPOSITION: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="notebook",namespace="jhub",pod="jupyter-alice"} 12.25 1733234561000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="notebook",namespace="jhub",pod="jupyter-alice"} 2.68435456e+08 1733234561000
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.5 1733234563456
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.5e+09 1733234563456
"#;

#[derive(Clone)]
struct Canned {
    status: StatusCode,
    body: String,
    delay: Duration,
    /// Send the body in chunks without a Content-Length.
    chunked: bool,
}

impl Canned {
    fn ok(body: &str) -> Self {
        Self {
            status: StatusCode::OK,
            body: body.to_owned(),
            delay: Duration::ZERO,
            chunked: false,
        }
    }
}

/// Answers the n-th request (from 0).
type Responder = Arc<dyn Fn(usize) -> Canned + Send + Sync>;
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;
type Body = BoxBody<Bytes, Infallible>;

fn always(canned: Canned) -> Responder {
    Arc::new(move |_| canned.clone())
}

async fn handle(
    req: Request<Incoming>,
    responder: Responder,
    seen: Seen,
) -> Result<Response<Body>, Infallible> {
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push((req.uri().path().to_owned(), req.headers().clone()));
        seen.len() - 1
    };
    let canned = responder(n);
    tokio::time::sleep(canned.delay).await;
    let body: Body = if canned.chunked {
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> = canned
            .body
            .into_bytes()
            .chunks(16)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        StreamBody::new(futures::stream::iter(chunks)).boxed()
    } else {
        Full::new(Bytes::from(canned.body)).boxed()
    };
    Ok(Response::builder()
        .status(canned.status)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(body)
        .unwrap())
}

/// A plain-HTTP server answering requests through `responder`.
async fn serve_http(responder: Responder) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (responder, seen) = (responder.clone(), seen2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, responder.clone(), seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// An HTTPS server whose certificate for 127.0.0.1 is signed by a fresh CA;
/// returns the CA certificate PEM.
async fn serve_https(canned: Canned) -> (SocketAddr, Seen, String) {
    let responder = always(canned);
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (responder, seen, acceptor) = (responder.clone(), seen2.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |req| handle(req, responder.clone(), seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen, ca.pem())
}

fn target(scheme: &str, addr: SocketAddr) -> KubeletTarget {
    KubeletTarget {
        node: "node-a".into(),
        url: format!("{scheme}://{addr}/metrics/resource"),
    }
}

fn temp_file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

fn config() -> KubeletClientConfig {
    KubeletClientConfig {
        timeout: Duration::from_secs(5),
        ..KubeletClientConfig::default()
    }
}

#[tokio::test]
async fn scrapes_over_http_with_bearer_token_from_file() {
    let (addr, seen) = serve_http(always(Canned::ok(EXPOSITION))).await;
    let token = temp_file("first-token\n");
    let client = KubeletClient::new(KubeletClientConfig {
        token_file: Some(token.path().to_owned()),
        ..config()
    })
    .unwrap();

    let snap = client.scrape(&target("http", addr)).await.unwrap();
    assert_eq!(snap.node, "node-a");
    assert_eq!(snap.node_cpu_seconds.unwrap().value, 357.5);
    assert_eq!(
        snap.node_cpu_seconds.unwrap().at.as_millisecond(),
        1_733_234_563_456
    );
    assert_eq!(snap.node_memory_working_set_bytes, Some(1.5e9));
    let alice = &snap.pods[&PodKey::new("jhub", "jupyter-alice")];
    assert_eq!(alice.cpu_seconds.unwrap().value, 12.25);
    assert_eq!(alice.memory_working_set_bytes, Some(268_435_456.0));

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "/metrics/resource");
        assert_eq!(seen[0].1["authorization"], "Bearer first-token");
        assert!(
            seen[0].1["accept"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }

    // Rotation: the file is re-read on every scrape.
    std::fs::write(token.path(), "second-token").unwrap();
    client.scrape(&target("http", addr)).await.unwrap();
    assert_eq!(
        seen.lock().unwrap()[1].1["authorization"],
        "Bearer second-token"
    );
}

#[tokio::test]
async fn no_token_file_sends_no_authorization() {
    let (addr, seen) = serve_http(always(Canned::ok(EXPOSITION))).await;
    let client = KubeletClient::new(config()).unwrap();
    client.scrape(&target("http", addr)).await.unwrap();
    assert!(seen.lock().unwrap()[0].1.get("authorization").is_none());
}

#[tokio::test]
async fn slow_kubelet_hits_the_timeout() {
    let (addr, _) = serve_http(always(Canned {
        delay: Duration::from_secs(30),
        ..Canned::ok(EXPOSITION)
    }))
    .await;
    let client = KubeletClient::new(KubeletClientConfig {
        timeout: Duration::from_millis(200),
        ..config()
    })
    .unwrap();
    match client.scrape(&target("http", addr)).await {
        Err(ScrapeError::Timeout(d)) => assert_eq!(d, Duration::from_millis(200)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_body_is_rejected_with_and_without_content_length() {
    for chunked in [false, true] {
        let (addr, _) = serve_http(always(Canned {
            chunked,
            ..Canned::ok(EXPOSITION)
        }))
        .await;
        let client = KubeletClient::new(KubeletClientConfig {
            max_body_bytes: 100,
            ..config()
        })
        .unwrap();
        let err = client.scrape(&target("http", addr)).await.unwrap_err();
        assert!(
            matches!(err, ScrapeError::BodyTooLarge { limit: 100 }),
            "chunked={chunked}: {err:?}"
        );
        // Under the limit, a chunked body is read whole.
        let roomy = KubeletClient::new(config()).unwrap();
        let snap = roomy.scrape(&target("http", addr)).await.unwrap();
        assert_eq!(
            snap.node_memory_working_set_bytes,
            Some(1.5e9),
            "chunked={chunked}"
        );
    }
}

#[tokio::test]
async fn error_status_carries_the_kubelet_message() {
    let (addr, _) = serve_http(always(Canned {
        status: StatusCode::FORBIDDEN,
        ..Canned::ok("Forbidden (user=system:serviceaccount:x:y, verb=get, resource=nodes, subresource=metrics)")
    }))
    .await;
    let client = KubeletClient::new(config()).unwrap();
    match client.scrape(&target("http", addr)).await {
        Err(ScrapeError::Status { status, body }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(body.contains("subresource=metrics"), "{body}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_exposition_reports_the_line() {
    let (addr, _) = serve_http(always(Canned::ok(
        "node_cpu_usage_seconds_total 1\nnot valid at all\n",
    )))
    .await;
    let client = KubeletClient::new(config()).unwrap();
    match client.scrape(&target("http", addr)).await {
        Err(ScrapeError::Parse(e)) => assert_eq!(e.line, 2),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[tokio::test]
async fn empty_token_file_is_an_error() {
    let (addr, seen) = serve_http(always(Canned::ok(EXPOSITION))).await;
    let token = temp_file("  \n");
    let client = KubeletClient::new(KubeletClientConfig {
        token_file: Some(token.path().to_owned()),
        ..config()
    })
    .unwrap();
    let err = client.scrape(&target("http", addr)).await.unwrap_err();
    assert!(matches!(err, ScrapeError::InvalidToken { .. }), "{err:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request without a token"
    );
}

#[tokio::test]
async fn https_verified_by_ca_file() {
    let (addr, seen, ca_pem) = serve_https(Canned::ok(EXPOSITION)).await;
    let ca = temp_file(&ca_pem);
    let client = KubeletClient::new(KubeletClientConfig {
        ca_file: Some(ca.path().to_owned()),
        ..config()
    })
    .unwrap();
    let snap = client.scrape(&target("https", addr)).await.unwrap();
    assert_eq!(snap.node_memory_working_set_bytes, Some(1.5e9));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn https_with_wrong_ca_fails_and_insecure_mode_accepts_it() {
    let (addr, _, _) = serve_https(Canned::ok(EXPOSITION)).await;
    let (_, _, other_ca) = serve_https(Canned::ok("")).await;
    let wrong = temp_file(&other_ca);
    let verifying = KubeletClient::new(KubeletClientConfig {
        ca_file: Some(wrong.path().to_owned()),
        ..config()
    })
    .unwrap();
    let err = verifying.scrape(&target("https", addr)).await.unwrap_err();
    assert!(matches!(err, ScrapeError::Request(_)), "{err:?}");

    let insecure = KubeletClient::new(KubeletClientConfig {
        insecure_skip_tls_verify: true,
        ..config()
    })
    .unwrap();
    let snap = insecure.scrape(&target("https", addr)).await.unwrap();
    assert_eq!(snap.node_cpu_seconds.unwrap().value, 357.5);
}

#[tokio::test]
async fn https_without_trust_configuration_is_refused_before_connecting() {
    let (addr, seen, _) = serve_https(Canned::ok(EXPOSITION)).await;
    let client = KubeletClient::new(config()).unwrap();
    let err = client.scrape(&target("https", addr)).await.unwrap_err();
    assert!(matches!(err, ScrapeError::NoTrustAnchors), "{err:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn invalid_configurations_are_rejected() {
    let ca = temp_file("not a certificate");
    for cfg in [
        KubeletClientConfig {
            ca_file: Some(ca.path().to_owned()),
            ..config()
        },
        KubeletClientConfig {
            ca_file: Some("/nonexistent/ca.crt".into()),
            ..config()
        },
        KubeletClientConfig {
            ca_file: Some(ca.path().to_owned()),
            insecure_skip_tls_verify: true,
            ..config()
        },
        KubeletClientConfig {
            timeout: Duration::ZERO,
            ..config()
        },
        KubeletClientConfig {
            max_body_bytes: 0,
            ..config()
        },
    ] {
        assert!(KubeletClient::new(cfg.clone()).is_err(), "{cfg:?}");
    }
}

fn node(name: &str, addr: SocketAddr, path: &str) -> k8s_openapi::api::core::v1::Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {"metrics.k8s.io/resource-metrics-path": path}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": addr.ip().to_string()}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}},
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn scraper_loop_publishes_rates_and_forgets_removed_nodes() {
    use headroom_common::kubelet::{
        Scheme, ScrapeObserver, ScraperConfig, UsageCache, run_scraper_with_observer,
    };
    use kube::runtime::{reflector, watcher};
    use std::sync::atomic::{AtomicUsize, Ordering};

    // CPU counters grow by 1 core-second per request; no sample timestamps,
    // so the scrape time is the reading time.
    let (addr, seen) = serve_http(Arc::new(|n| {
        Canned::ok(&format!(
            "node_cpu_usage_seconds_total {n}\nnode_memory_working_set_bytes 1000\n\
             pod_cpu_usage_seconds_total{{namespace=\"jhub\",pod=\"jupyter-bob\"}} {n}\n\
             pod_memory_working_set_bytes{{namespace=\"jhub\",pod=\"jupyter-bob\"}} 500\n"
        ))
    }))
    .await;
    let (store, mut writer) = reflector::store();
    let kwok_like = node("kwok-0", addr, "/metrics/nodes/kwok-0/metrics/resource");
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(kwok_like.clone()));
    writer.apply_watcher_event(&watcher::Event::InitDone);

    let successes = Arc::new(AtomicUsize::new(0));
    let counted = successes.clone();
    let observer: Arc<dyn ScrapeObserver> = Arc::new(
        move |node: &str, result: Result<(), &ScrapeError>, _d: Duration| {
            assert_eq!(node, "kwok-0");
            if result.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        },
    );
    let cache = UsageCache::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(run_scraper_with_observer(
        store,
        KubeletClient::new(config()).unwrap(),
        ScraperConfig {
            interval: Duration::from_millis(150),
            concurrency: 4,
            scheme: Scheme::Http,
        },
        cache.clone(),
        shutdown.clone(),
        observer,
    ));

    let bob = PodKey::new("jhub", "jupyter-bob");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.pod(&bob).and_then(|p| p.cpu_cores).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no CPU rate published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node_usage = cache.node("kwok-0").unwrap();
    assert_eq!(node_usage.memory_working_set_bytes, Some(1000.0));
    let cores = node_usage.cpu_cores.unwrap();
    // 1 core-second per ~150 ms interval: several cores, certainly positive.
    assert!(cores > 0.0, "{cores}");
    assert_eq!(
        cache.pod(&bob).unwrap().memory_working_set_bytes,
        Some(500.0)
    );
    assert!(successes.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        seen.lock().unwrap()[0].0,
        "/metrics/nodes/kwok-0/metrics/resource"
    );

    // The node leaves the store: its usage is dropped on the next round.
    writer.apply_watcher_event(&watcher::Event::Delete(kwok_like));
    while cache.node("kwok-0").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "removed node still served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.pod(&bob).is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("scraper stops on cancellation")
        .unwrap();
}
