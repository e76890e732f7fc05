//! Where values come from, without Prometheus:
//!
//! - kubelet `/metrics/resource` usage through `headroom_common::kubelet`
//!   (`run_scraper` feeds a [`UsageCache`]; started in `main`);
//! - each notebook's own jupyter_server `/metrics`, when the pod is annotated
//!   `prometheus.io/scrape: "true"` (port from `prometheus.io/port`, default
//!   8888; path from `prometheus.io/path`, default `$JUPYTERHUB_SERVICE_PREFIX`
//!   followed by `metrics` from the pod's environment, else `/metrics`), parsed with
//!   `headroom_common::prom` for `kernel_currently_running_total` and
//!   `jupyter_server_last_activity_timestamp_seconds`. A background loop
//!   refreshes every pod each interval with bounded concurrency and a
//!   per-target timeout; results (failures too) live in a moka cache with a
//!   TTL, and a request that finds a pod cold fetches it through `get_with`,
//!   so concurrent requests share one scrape.
//!
//! jupyter_server protects `/metrics` unless
//! `c.ServerApp.authenticate_prometheus = False`; with
//! `jupyterServer.tokenFile` a JupyterHub API token (`access:servers`) is
//! sent instead. A 401/403 is reported with the way out that applies.
//!
//! [`LiveObservations`] combines these with the node store for the provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use headroom_common::kubelet::{PodKey, UsageCache};
use headroom_common::prom;
use headroom_common::resources::{self, Resources};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::provider::{
    NotebookPod, NotebookSelector, Observations, Phase, ServerLookup, ServerStats, UsageLookup,
    UsageSample,
};

pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
pub const PORT_ANNOTATION: &str = "prometheus.io/port";
pub const PATH_ANNOTATION: &str = "prometheus.io/path";
pub const DEFAULT_NOTEBOOK_PORT: u16 = 8888;
pub const KERNELS_METRIC: &str = "kernel_currently_running_total";
pub const LAST_ACTIVITY_METRIC: &str = "jupyter_server_last_activity_timestamp_seconds";

/// Where a pod's jupyter_server metrics are, if anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerTarget {
    NotAnnotated,
    /// Annotated, but no URL can be built yet (no pod IP) or the annotations
    /// are wrong.
    Invalid(String),
    Url(String),
}

fn service_prefix(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "JUPYTERHUB_SERVICE_PREFIX")
        .and_then(|e| e.value.as_deref())
}

/// The scrape URL from the pod's annotations and IP (pure).
pub fn server_target(pod: &Pod) -> ServerTarget {
    let annotations = pod.metadata.annotations.as_ref();
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    if get(SCRAPE_ANNOTATION) != Some("true") {
        return ServerTarget::NotAnnotated;
    }
    let port = match get(PORT_ANNOTATION) {
        None => DEFAULT_NOTEBOOK_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return ServerTarget::Invalid(format!(
                    "{PORT_ANNOTATION} {p:?} is not a port number"
                ));
            }
        },
    };
    let path = match get(PATH_ANNOTATION) {
        Some(p) => p.to_string(),
        None => match service_prefix(pod) {
            Some(prefix) => format!("{}/metrics", prefix.trim_end_matches('/')),
            None => "/metrics".to_string(),
        },
    };
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return ServerTarget::Invalid(format!(
            "{PATH_ANNOTATION} {path:?} is not an absolute path"
        ));
    }
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) else {
        return ServerTarget::Invalid("the pod has no IP yet".to_string());
    };
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    ServerTarget::Url(format!("http://{host}:{port}{path}"))
}

/// The two values read from a jupyter_server exposition (pure). Kernels are
/// summed over the `type` label; `None` when a series is absent.
pub fn stats_from_exposition(exposition: &prom::Exposition<'_>, at: Timestamp) -> ServerStats {
    let mut kernels: Option<f64> = None;
    let mut last: Option<f64> = None;
    for s in &exposition.samples {
        if s.name == KERNELS_METRIC && s.value.is_finite() {
            *kernels.get_or_insert(0.0) += s.value;
        } else if s.name == LAST_ACTIVITY_METRIC && s.value.is_finite() {
            last = Some(last.map_or(s.value, |l: f64| l.max(s.value)));
        }
    }
    ServerStats {
        at,
        kernels_running: kernels,
        last_activity: last
            .and_then(|secs| Timestamp::from_millisecond((secs * 1000.0) as i64).ok()),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServerKey {
    namespace: String,
    name: String,
    url: String,
}

/// Called after each jupyter_server scrape with its outcome and duration.
pub type ScrapeHook = Arc<dyn Fn(Result<(), &str>, Duration) + Send + Sync>;

#[derive(Clone, Debug)]
pub struct ServerScraperConfig {
    pub timeout: Duration,
    pub concurrency: usize,
    pub cache_ttl: Duration,
    pub max_body_bytes: usize,
    /// A JupyterHub API token (`access:servers` scope) sent as
    /// `Authorization: token …`, so servers may keep
    /// `authenticate_prometheus` on. Re-read on every scrape.
    pub token_file: Option<std::path::PathBuf>,
}

/// jupyter_server scraping with a TTL cache. Cheap to clone.
#[derive(Clone)]
pub struct ServerScraper {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Empty<Bytes>>,
    cache: moka::future::Cache<ServerKey, Arc<Result<ServerStats, String>>>,
    permits: Semaphore,
    cfg: ServerScraperConfig,
    hook: Option<ScrapeHook>,
}

impl ServerScraper {
    pub fn new(cfg: ServerScraperConfig, hook: Option<ScrapeHook>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self {
            inner: Arc::new(Inner {
                client,
                cache: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(cfg.cache_ttl)
                    .build(),
                permits: Semaphore::new(cfg.concurrency.max(1)),
                cfg,
                hook,
            }),
        }
    }

    async fn fetch(&self, url: &str) -> Result<ServerStats, String> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(self.inner.cfg.timeout, self.fetch_inner(url))
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {:?}", self.inner.cfg.timeout)));
        if let Some(hook) = &self.inner.hook {
            hook(
                result.as_ref().map(|_| ()).map_err(String::as_str),
                started.elapsed(),
            );
        }
        result
    }

    async fn fetch_inner(&self, url: &str) -> Result<ServerStats, String> {
        let mut req = http::Request::get(url)
            .header(http::header::ACCEPT, "text/plain;version=0.0.4")
            .body(Empty::new())
            .map_err(|e| format!("bad URL {url}: {e}"))?;
        if let Some(path) = &self.inner.cfg.token_file {
            // jupyter_server and JupyterHub accept `token` and `bearer`.
            let value = headroom_common::token::authorization(path, "token")
                .await
                .map_err(|e| e.to_string())?;
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        let response = self
            .inner
            .client
            .request(req)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if status == http::StatusCode::FORBIDDEN || status == http::StatusCode::UNAUTHORIZED {
            let hint = if self.inner.cfg.token_file.is_some() {
                "the token in jupyterServer.tokenFile was refused: it needs the access:servers scope"
            } else {
                "jupyter_server protects /metrics unless c.ServerApp.authenticate_prometheus = False, or set jupyterServer.tokenFile"
            };
            return Err(format!("GET {url}: HTTP {status} ({hint})"));
        }
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let limit = self.inner.cfg.max_body_bytes;
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading the body (limit {limit} bytes): {e}"))?
            .to_bytes();
        let at = Timestamp::now();
        let text =
            std::str::from_utf8(&body).map_err(|_| format!("GET {url}: body is not UTF-8"))?;
        let exposition = prom::parse(text).map_err(|e| format!("GET {url}: {e}"))?;
        Ok(stats_from_exposition(&exposition, at))
    }

    /// Looks up (fetching cold entries, coalesced) every pod's statistics.
    /// Keyed by (namespace, name).
    pub async fn lookup_many(
        &self,
        pods: &[NotebookPod<'_>],
    ) -> HashMap<(String, String), ServerLookup> {
        // Owned work items first: futures that borrow through iterator
        // closures trip the compiler's Send analysis (rust-lang/rust#64552).
        let mut work: Vec<(String, String, ServerTarget)> = Vec::with_capacity(pods.len());
        for pod in pods {
            if pod.phase != Phase::Pending {
                work.push((
                    pod.namespace.to_string(),
                    pod.name.to_string(),
                    server_target(pod.pod),
                ));
            }
        }
        let this = self.clone();
        futures::stream::iter(work)
            .map(move |(ns, name, target)| {
                let this = this.clone();
                async move {
                    let lookup = this.lookup(ns.clone(), name.clone(), target).await;
                    ((ns, name), lookup)
                }
            })
            .buffer_unordered(self.inner.cfg.concurrency.max(1) * 2)
            .collect()
            .await
    }

    async fn lookup(&self, namespace: String, name: String, target: ServerTarget) -> ServerLookup {
        match target {
            ServerTarget::NotAnnotated => ServerLookup::NotScraped,
            ServerTarget::Invalid(reason) => ServerLookup::Failed { error: reason },
            ServerTarget::Url(url) => {
                let key = ServerKey {
                    namespace,
                    name,
                    url: url.clone(),
                };
                let outcome = self
                    .inner
                    .cache
                    .get_with(key, async { Arc::new(self.fetch(&url).await) })
                    .await;
                match outcome.as_ref() {
                    Ok(stats) => ServerLookup::Stats(*stats),
                    Err(e) => ServerLookup::Failed { error: e.clone() },
                }
            }
        }
    }

    /// Refreshes every annotated notebook pod each `interval` until
    /// `shutdown`, so requests normally find warm entries.
    pub async fn run_refresher(
        self,
        pods: Store<Pod>,
        notebooks: NotebookSelector,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let current = pods.state();
            let targets: Vec<ServerKey> = current
                .iter()
                .filter_map(|p| NotebookPod::from_pod(p, &notebooks))
                .filter(|p| p.phase == Phase::Running)
                .filter_map(|p| match server_target(p.pod) {
                    ServerTarget::Url(url) => Some(ServerKey {
                        namespace: p.namespace.to_string(),
                        name: p.name.to_string(),
                        url,
                    }),
                    _ => None,
                })
                .collect();
            let this = &self;
            let round = futures::stream::iter(targets)
                .map(|key| async move {
                    let outcome = this.fetch(&key.url).await;
                    this.inner.cache.insert(key, Arc::new(outcome)).await;
                })
                .buffer_unordered(self.inner.cfg.concurrency.max(1))
                .collect::<Vec<()>>();
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = round => {}
            }
        }
    }
}

/// The provider's view of the live sources for one request.
pub struct LiveObservations<'a> {
    pub usage: &'a UsageCache,
    pub nodes: &'a Store<Node>,
    pub servers: &'a HashMap<(String, String), ServerLookup>,
}

impl Observations for LiveObservations<'_> {
    fn usage(&self, pod: &NotebookPod<'_>) -> UsageLookup {
        if let Some(u) = self.usage.pod(&PodKey::new(pod.namespace, pod.name)) {
            return UsageLookup::Sample(UsageSample {
                cpu_cores: u.cpu_cores,
                memory_working_set_bytes: u.memory_working_set_bytes,
                at: u.at,
                window: u.window,
            });
        }
        let Some(node) = pod.node else {
            return UsageLookup::NoNodeData { error: None };
        };
        match self.usage.node(node) {
            Some(n) => UsageLookup::NodeWithoutPod {
                node_at: n.at,
                window: n.window,
            },
            None => UsageLookup::NoNodeData {
                error: self.usage.last_error(node),
            },
        }
    }

    fn server(&self, pod: &NotebookPod<'_>) -> ServerLookup {
        self.servers
            .get(&(pod.namespace.to_string(), pod.name.to_string()))
            .cloned()
            .unwrap_or(ServerLookup::NotScraped)
    }

    fn node_allocatable(&self, node: &str) -> Option<Resources> {
        self.nodes
            .get(&ObjectRef::new(node))
            .map(|n| resources::node_allocatable(&n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn pod(annotations: &[(&str, &str)], ip: Option<&str>, prefix: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("jupyter-alice".into()),
                namespace: Some("jhub".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "notebook".into(),
                    env: prefix.map(|p| {
                        vec![EnvVar {
                            name: "JUPYTERHUB_SERVICE_PREFIX".into(),
                            value: Some(p.into()),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_string),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn scrape_targets_from_annotations() {
        assert_eq!(
            server_target(&pod(&[], Some("10.0.0.5"), None)),
            ServerTarget::NotAnnotated
        );
        assert_eq!(
            server_target(&pod(
                &[(SCRAPE_ANNOTATION, "false")],
                Some("10.0.0.5"),
                None
            )),
            ServerTarget::NotAnnotated
        );
        assert_eq!(
            server_target(&pod(&[(SCRAPE_ANNOTATION, "true")], Some("10.0.0.5"), None)),
            ServerTarget::Url("http://10.0.0.5:8888/metrics".into())
        );
        assert_eq!(
            server_target(&pod(
                &[(SCRAPE_ANNOTATION, "true")],
                Some("10.0.0.5"),
                Some("/user/alice/")
            )),
            ServerTarget::Url("http://10.0.0.5:8888/user/alice/metrics".into())
        );
        assert_eq!(
            server_target(&pod(
                &[
                    (SCRAPE_ANNOTATION, "true"),
                    (PORT_ANNOTATION, "9000"),
                    (PATH_ANNOTATION, "/x/metrics")
                ],
                Some("fd00::5"),
                Some("/user/alice/")
            )),
            ServerTarget::Url("http://[fd00::5]:9000/x/metrics".into())
        );
        assert!(matches!(
            server_target(&pod(
                &[(SCRAPE_ANNOTATION, "true"), (PORT_ANNOTATION, "http")],
                Some("10.0.0.5"),
                None
            )),
            ServerTarget::Invalid(_)
        ));
        assert!(matches!(
            server_target(&pod(&[(SCRAPE_ANNOTATION, "true")], None, None)),
            ServerTarget::Invalid(_)
        ));
    }

    #[test]
    fn stats_from_jupyter_server_exposition() {
        let text = r#"# HELP kernel_currently_running_total counts the number of kernels currently running
# TYPE kernel_currently_running_total gauge
kernel_currently_running_total{type="python3"} 2.0
kernel_currently_running_total{type="ir"} 1.0
# HELP jupyter_server_last_activity_timestamp_seconds Timestamp of last seen activity on this Jupyter Server
# TYPE jupyter_server_last_activity_timestamp_seconds gauge
jupyter_server_last_activity_timestamp_seconds 1.7356896e+09
http_request_duration_seconds_bucket{handler="/api/kernels/(?P<kernel_id>\\w+-\\w+-\\w+-\\w+-\\w+)",le="0.005",method="GET",status_code="200"} 3.0
"#;
        let exposition = prom::parse(text).unwrap();
        let at: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
        let stats = stats_from_exposition(&exposition, at);
        assert_eq!(stats.kernels_running, Some(3.0));
        assert_eq!(
            stats.last_activity,
            Some("2025-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(stats.at, at);
        let empty = stats_from_exposition(&prom::parse("up 1\n").unwrap(), at);
        assert_eq!((empty.kernels_running, empty.last_activity), (None, None));
    }

    /// Serves `handler` over plain HTTP on a free loopback port until
    /// `shutdown`.
    async fn serve_loopback<H, F>(handler: H, shutdown: &CancellationToken) -> std::net::SocketAddr
    where
        H: Fn(http::Request<hyper::body::Incoming>, headroom_common::server::ConnInfo) -> F
            + Clone
            + Send
            + Sync
            + 'static,
        F: std::future::Future<Output = http::Response<http_body_util::Full<Bytes>>>
            + Send
            + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(headroom_common::server::serve(
            listener,
            headroom_common::server::Transport::Plain,
            handler,
            Default::default(),
            shutdown.clone(),
        ));
        addr
    }

    /// alice's Running notebook pod, its jupyter_server at `addr`.
    fn running_notebook_on(addr: std::net::SocketAddr) -> Pod {
        let mut notebook = pod(
            &[
                (SCRAPE_ANNOTATION, "true"),
                (PORT_ANNOTATION, &addr.port().to_string()),
            ],
            Some("127.0.0.1"),
            Some("/user/alice/"),
        );
        notebook.status.as_mut().unwrap().phase = Some("Running".into());
        notebook.metadata.labels = Some(BTreeMap::from([(
            "component".into(),
            "singleuser-server".into(),
        )]));
        notebook
    }

    #[tokio::test]
    async fn scrapes_a_server_and_coalesces_through_the_cache() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counter = hits.clone();
        let addr = serve_loopback(
            move |req: http::Request<hyper::body::Incoming>, _| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if req.uri().path() == "/user/alice/metrics" {
                        headroom_common::server::text_response(
                            http::StatusCode::OK,
                            "kernel_currently_running_total{type=\"python3\"} 4\n",
                        )
                    } else {
                        headroom_common::server::text_response(http::StatusCode::FORBIDDEN, "no")
                    }
                }
            },
            &shutdown,
        )
        .await;
        let scraper = ServerScraper::new(
            ServerScraperConfig {
                timeout: Duration::from_secs(2),
                concurrency: 4,
                cache_ttl: Duration::from_secs(30),
                max_body_bytes: 1 << 20,
                token_file: None,
            },
            None,
        );
        let good = running_notebook_on(addr);
        let mut denied = good.clone();
        denied.metadata.name = Some("jupyter-bob".into());
        denied
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(PATH_ANNOTATION.into(), "/user/bob/metrics".into());
        let notebooks = NotebookSelector::default();
        let pods = [good, denied];
        let views: Vec<NotebookPod<'_>> = pods
            .iter()
            .filter_map(|p| NotebookPod::from_pod(p, &notebooks))
            .collect();
        // Two concurrent cold lookups: one scrape per pod.
        let (a, b) = tokio::join!(scraper.lookup_many(&views), scraper.lookup_many(&views));
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        for result in [a, b] {
            match &result[&("jhub".to_string(), "jupyter-alice".to_string())] {
                ServerLookup::Stats(s) => assert_eq!(s.kernels_running, Some(4.0)),
                other => panic!("{other:?}"),
            }
            match &result[&("jhub".to_string(), "jupyter-bob".to_string())] {
                ServerLookup::Failed { error } => {
                    assert!(error.contains("authenticate_prometheus"), "{error}")
                }
                other => panic!("{other:?}"),
            }
        }
        shutdown.cancel();
    }

    /// A jupyter_server whose `/metrics` answers only `Authorization: token s3cret`.
    async fn protected_server(shutdown: &CancellationToken) -> std::net::SocketAddr {
        serve_loopback(
            |req: http::Request<hyper::body::Incoming>, _| async move {
                let auth = req.headers().get(http::header::AUTHORIZATION);
                if auth.is_some_and(|v| v == "token s3cret") {
                    headroom_common::server::text_response(
                        http::StatusCode::OK,
                        "kernel_currently_running_total{type=\"python3\"} 2\n",
                    )
                } else {
                    headroom_common::server::text_response(http::StatusCode::FORBIDDEN, "no")
                }
            },
            shutdown,
        )
        .await
    }

    fn scraper_with_token(token_file: Option<std::path::PathBuf>) -> ServerScraper {
        ServerScraper::new(
            ServerScraperConfig {
                timeout: Duration::from_secs(2),
                concurrency: 2,
                // No caching between the lookups of one test.
                cache_ttl: Duration::from_millis(1),
                max_body_bytes: 1 << 20,
                token_file,
            },
            None,
        )
    }

    #[tokio::test]
    async fn sends_the_hub_token_from_the_file_and_names_a_refused_one() {
        let shutdown = CancellationToken::new();
        let addr = protected_server(&shutdown).await;
        let server = running_notebook_on(addr);
        let notebooks = NotebookSelector::default();
        let pods = [server];
        let views: Vec<NotebookPod<'_>> = pods
            .iter()
            .filter_map(|p| NotebookPod::from_pod(p, &notebooks))
            .collect();
        let key = ("jhub".to_string(), "jupyter-alice".to_string());
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");

        std::fs::write(&token, "s3cret\n").unwrap();
        let scraper = scraper_with_token(Some(token.clone()));
        match &scraper.lookup_many(&views).await[&key] {
            ServerLookup::Stats(s) => assert_eq!(s.kernels_running, Some(2.0)),
            other => panic!("{other:?}"),
        }

        // Rotated to a token the server refuses: read again, and said so.
        std::fs::write(&token, "stale").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        match &scraper.lookup_many(&views).await[&key] {
            ServerLookup::Failed { error } => {
                assert!(error.contains("tokenFile was refused"), "{error}")
            }
            other => panic!("{other:?}"),
        }

        // No token configured: the hint names both ways out.
        match &scraper_with_token(None).lookup_many(&views).await[&key] {
            ServerLookup::Failed { error } => {
                assert!(error.contains("authenticate_prometheus"), "{error}");
                assert!(error.contains("jupyterServer.tokenFile"), "{error}");
            }
            other => panic!("{other:?}"),
        }

        // A missing token file is an error of that pod's scrape, not a panic.
        let missing = scraper_with_token(Some(dir.path().join("absent")));
        match &missing.lookup_many(&views).await[&key] {
            ServerLookup::Failed { error } => assert!(error.contains("absent"), "{error}"),
            other => panic!("{other:?}"),
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn unreachable_server_times_out() {
        // A listener that accepts but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let scraper = ServerScraper::new(
            ServerScraperConfig {
                timeout: Duration::from_millis(200),
                concurrency: 1,
                cache_ttl: Duration::from_secs(30),
                max_body_bytes: 1024,
                token_file: None,
            },
            None,
        );
        let err = scraper
            .fetch(&format!("http://{addr}/metrics"))
            .await
            .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
