//! The load generator: a fixed number of workers POST one prepared body to
//! an extender verb back to back for a fixed time over kept-alive
//! connections (as kube-scheduler's HTTP client does), timing each request
//! and checking each answer (HTTP 200, JSON of the verb's reply type).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// An extender verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Verb {
    Filter,
    Prioritize,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Prioritize => "prioritize",
        }
    }
}

/// Client-side TLS: the CA to trust and, for mutual TLS, a client identity.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca_pem: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

/// How hard and how long.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    /// Requests in flight at once (one connection each).
    pub concurrency: usize,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring (connections, caches, allocator warm).
    pub warmup: Duration,
    /// Per-request timeout (kube-scheduler's `httpTimeout`).
    pub timeout: Duration,
}

/// What a reply said, for the report: a filter's passed and failed counts, a
/// prioritize list's length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplySummary {
    pub passed: usize,
    pub failed: usize,
    pub error: String,
}

/// The outcome of one run.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Successful requests in the measured window.
    pub ok: u64,
    /// Failed requests (status, transport, timeout or JSON) in the window.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latencies of successful requests in the window, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    pub window: Duration,
    pub reply: ReplySummary,
    /// Request body size; for GETs, the first reply's size.
    pub body_bytes: usize,
}

impl Outcome {
    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    /// The `q`-quantile (0..=1) latency in milliseconds, nearest rank.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies_us, q) as f64 / 1000.0
    }
}

/// Nearest-rank quantile of sorted values; 0 for none.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The pooled client [`client`] builds.
pub type HttpClientHandle = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
type HttpClient = HttpClientHandle;

/// A pooled HTTP/1.1 client for http:// and https:// URLs.
pub fn client(tls: Option<&ClientTls>) -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match tls {
        None => builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        Some(tls) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| format!("CA PEM: {e}"))?)
                    .map_err(|e| e.to_string())?;
            }
            let builder = builder.with_root_certificates(roots);
            match (&tls.cert_pem, &tls.key_pem) {
                (Some(cert), Some(key)) => {
                    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("client certificate PEM: {e}"))?;
                    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                        .map_err(|e| format!("client key PEM: {e}"))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| e.to_string())?
                }
                _ => builder.with_no_client_auth(),
            }
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

#[derive(Deserialize)]
struct FilterReply {
    #[serde(rename = "NodeNames")]
    node_names: Option<Vec<String>>,
    #[serde(rename = "Nodes")]
    nodes: Option<NodeItems>,
    #[serde(rename = "FailedNodes")]
    failed: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "FailedAndUnresolvableNodes")]
    unresolvable: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "Error", default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct NodeItems {
    #[serde(default)]
    items: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
struct HostPriority {
    #[serde(rename = "Host")]
    _host: String,
    #[serde(rename = "Score")]
    _score: i64,
}

/// Checks a reply body is the verb's JSON type and summarises it.
pub fn check_reply(verb: Verb, body: &[u8]) -> Result<ReplySummary, String> {
    match verb {
        Verb::Filter => {
            let r: FilterReply =
                serde_json::from_slice(body).map_err(|e| format!("filter reply: {e}"))?;
            // Names win when both are set (kube-scheduler's order in
            // nodeCacheCapable mode); empty names (a trailing separator in
            // some Go extenders) are not nodes.
            let passed = match (&r.node_names, &r.nodes) {
                (Some(names), _) => names.iter().filter(|n| !n.is_empty()).count(),
                (None, Some(nodes)) => nodes.items.as_ref().map_or(0, Vec::len),
                (None, None) => 0,
            };
            let mut failed: std::collections::BTreeSet<&String> = Default::default();
            failed.extend(r.failed.iter().flat_map(|m| m.keys()));
            failed.extend(r.unresolvable.iter().flat_map(|m| m.keys()));
            Ok(ReplySummary {
                passed,
                failed: failed.len(),
                error: r.error.unwrap_or_default(),
            })
        }
        Verb::Prioritize => {
            let r: Vec<HostPriority> =
                serde_json::from_slice(body).map_err(|e| format!("prioritize reply: {e}"))?;
            Ok(ReplySummary {
                passed: r.len(),
                ..ReplySummary::default()
            })
        }
    }
}

fn verb_uri(base: &str, verb: Verb) -> Result<Uri, String> {
    format!("{}/{}", base.trim_end_matches('/'), verb.as_str())
        .parse()
        .map_err(|e| format!("URL {base}: {e}"))
}

/// One request; the reply's summary if it was 200 with the verb's JSON.
pub async fn post_once(
    client: &HttpClient,
    base: &str,
    verb: Verb,
    body: Bytes,
) -> Result<ReplySummary, String> {
    let uri = verb_uri(base, verb)?;
    let (status, reply) = post(client, &uri, body, Duration::from_secs(10)).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "POST {uri}: {status}: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(300)])
        ));
    }
    check_reply(verb, &reply)
}

/// POSTs `body` to `base/verb` as specified and returns what happened.
/// Bounded: it stops after `warmup + duration` (plus one request timeout).
pub async fn run(
    client: &HttpClient,
    base: &str,
    verb: Verb,
    body: Bytes,
    spec: LoadSpec,
) -> Result<Outcome, String> {
    let uri = verb_uri(base, verb)?;
    drive(
        client,
        http::Method::POST,
        uri,
        body,
        spec,
        Arc::new(move |reply: &[u8]| check_reply(verb, reply)),
    )
    .await
}

/// Checks one reply body and summarises it.
pub type Check = Arc<dyn Fn(&[u8]) -> Result<ReplySummary, String> + Send + Sync>;

/// GETs `url` as specified, checking each 200 reply with `check`.
pub async fn run_get(
    client: &HttpClient,
    url: &str,
    spec: LoadSpec,
    check: Check,
) -> Result<Outcome, String> {
    let uri: Uri = url.parse().map_err(|e| format!("URL {url}: {e}"))?;
    drive(client, http::Method::GET, uri, Bytes::new(), spec, check).await
}

async fn drive(
    client: &HttpClient,
    method: http::Method,
    uri: Uri,
    body: Bytes,
    spec: LoadSpec,
    check: Check,
) -> Result<Outcome, String> {
    // One request first: a wrong URL or payload fails loudly, not as N errors.
    let (status, reply) = send(client, request(&method, &uri, body.clone())?, spec.timeout).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "{method} {uri}: {status}: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(300)])
        ));
    }
    let summary = check(&reply)?;

    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let stop_at = measure_from + spec.duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let client = client.clone();
        let uri = uri.clone();
        let body = body.clone();
        let method = method.clone();
        let check = check.clone();
        workers.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= stop_at {
                    break;
                }
                let result = match request(&method, &uri, body.clone()) {
                    Ok(req) => send(&client, req, spec.timeout).await,
                    Err(e) => Err(e),
                }
                .and_then(|(status, reply)| {
                    if status != StatusCode::OK {
                        return Err(format!("HTTP {status}"));
                    }
                    check(&reply).map(|_| ())
                });
                let t1 = Instant::now();
                // Count only requests that started and ended in the window.
                if t0 < measure_from || t1 > stop_at {
                    continue;
                }
                match result {
                    Ok(()) => lat.push((t1 - t0).as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, errors, first_error)
        });
    }
    let mut outcome = Outcome {
        window: spec.duration,
        reply: summary,
        body_bytes: if body.is_empty() {
            reply.len()
        } else {
            body.len()
        },
        ..Outcome::default()
    };
    while let Some(done) = workers.join_next().await {
        let (lat, errors, first_error) = done.map_err(|e| e.to_string())?;
        outcome.ok += lat.len() as u64;
        outcome.latencies_us.extend(lat);
        outcome.errors += errors;
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.latencies_us.sort_unstable();
    Ok(outcome)
}

fn request(method: &http::Method, uri: &Uri, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
    Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())
}

/// A GET or POST to a full URL: status and body.
pub async fn exchange(
    client: &HttpClient,
    method: http::Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let uri: Uri = url.parse().map_err(|e| format!("URL {url}: {e}"))?;
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    send(client, req, Duration::from_secs(30)).await
}

async fn post(
    client: &HttpClient,
    uri: &Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    send(client, request(&http::Method::POST, uri, body)?, timeout).await
}

async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn filter_replies_are_counted_in_both_modes() {
        let names = br#"{"NodeNames":["a","b"],"Nodes":null,"FailedNodes":{"c":"x"},"FailedAndUnresolvableNodes":{"c":"x","d":"y"},"Error":""}"#;
        let s = check_reply(Verb::Filter, names).unwrap();
        assert_eq!((s.passed, s.failed), (2, 2));
        // A Go extender's reply: full Nodes plus names with a trailing "".
        let nodes = br#"{"Nodes":{"metadata":{},"items":[{},{}]},"NodeNames":["a","b",""],"FailedNodes":{},"Error":""}"#;
        let s = check_reply(Verb::Filter, nodes).unwrap();
        assert_eq!((s.passed, s.failed), (2, 0));
    }

    #[test]
    fn bad_replies_are_errors() {
        assert!(check_reply(Verb::Filter, b"null").is_err());
        assert!(
            check_reply(Verb::Filter, b"{}").is_ok(),
            "absent fields are allowed"
        );
        assert!(check_reply(Verb::Filter, b"<html>").is_err());
        assert!(check_reply(Verb::Prioritize, br#"{"Host":"a"}"#).is_err());
        let list = check_reply(Verb::Prioritize, br#"[{"Host":"a","Score":3}]"#).unwrap();
        assert_eq!(list.passed, 1);
    }
}
