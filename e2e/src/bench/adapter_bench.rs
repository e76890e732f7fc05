//! Metrics adapter (issue 6, items 5 and 6): a Pods-metric query over
//! 1,000 and 10,000 notebook pods and API discovery, both through the real
//! aggregator as the HPA controller sends them, at a fixed concurrency; the
//! resident memory at each size; and freshness (a pod's emulated usage
//! changes → the new value in the API). The same for the peer,
//! prometheus-adapter with Prometheus ([`super::prometheus_adapter`]), on the
//! same cluster, pods and metric in the same run: the custom metrics
//! APIServices are pointed at one server, then the other, so both answer
//! the identical request through the identical path.
//!
//! Pods are created already bound (`spec.nodeName`, spread over the nodes)
//! so no scheduler is involved; kwok runs them and emulates their usage.
//! Both servers scrape the same emulated kubelets at the same interval and
//! run side by side throughout (each measured while the other idles).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::freshness::{self, FreshnessRound};
use super::loadgen::{self, ClientTls, HttpClientHandle, LoadSpec, Outcome, ReplySummary};
use super::prometheus_adapter as peer;
use crate::jupyterhub::Notebook;
use crate::{Cluster, ClusterConfig, Error, NodeSpec, lab};

#[derive(Clone, Debug)]
pub struct AdapterBenchOptions {
    pub sizes: Vec<usize>,
    pub nodes: usize,
    pub load: LoadSpec,
    /// Our adapter's kubelet scrape interval, and Prometheus' scrape interval.
    pub scrape_interval: Duration,
    /// Also measure prometheus-adapter + Prometheus.
    pub peer: bool,
    /// Freshness rounds per server (at the smallest size); 0 skips them.
    pub freshness_rounds: usize,
}

/// One measured size of one server.
#[derive(Clone, Debug)]
pub struct AdapterRow {
    pub server: String,
    pub pods: usize,
    pub query: Outcome,
    pub discovery: Outcome,
    /// The adapter's VmRSS after the query run, KiB.
    pub rss_kib: u64,
    /// Prometheus' VmRSS at the same moment (the peer only), KiB.
    pub prometheus_rss_kib: Option<u64>,
    /// Prometheus' own mean time per `/api/v1/query` during the query run
    /// (the peer only), ms.
    pub prometheus_query_ms: Option<f64>,
    /// Time from the last pod created to the query listing every pod (ours
    /// only: the peer is measured after ours, so its figure would mean
    /// nothing).
    pub ready_after: Option<Duration>,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct AdapterReport {
    pub rows: Vec<AdapterRow>,
    /// (server, adapter RSS KiB, Prometheus RSS KiB) before any notebook pod.
    pub idle_rss: Vec<(String, u64, Option<u64>)>,
    pub freshness: Vec<FreshnessRound>,
    /// The peer's versions, when it ran.
    pub peer: Option<String>,
    /// Why the peer did not run or stopped, if it did not finish.
    pub peer_error: Option<String>,
}

/// Our adapter's label in the tables.
pub const OURS: &str = "headroom-metrics-adapter";
pub const NAMESPACE: &str = "jhub";
pub const QUERY: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/notebook_cpu_usage_cores?labelSelector=component%3Dsingleuser-server";
pub const DISCOVERY: &str = "/apis/custom.metrics.k8s.io/v1beta2";

fn config(scrape: Duration) -> String {
    format!(
        r#"
notebooks:
  selector: component=singleuser-server
freshness:
  maxAge: 5m
kubelet:
  interval: {}ms
  timeout: 5s
jupyterServer:
  enabled: false
"#,
        scrape.as_millis()
    )
}

#[derive(Deserialize)]
struct ItemList {
    items: Vec<IgnoredAny>,
}

fn count_items(body: &[u8]) -> Result<ReplySummary, String> {
    let list: ItemList = serde_json::from_slice(body).map_err(|e| format!("metric list: {e}"))?;
    Ok(ReplySummary {
        passed: list.items.len(),
        ..ReplySummary::default()
    })
}

#[derive(Deserialize)]
struct ResourceList {
    resources: Vec<IgnoredAny>,
}

fn count_resources(body: &[u8]) -> Result<ReplySummary, String> {
    let list: ResourceList =
        serde_json::from_slice(body).map_err(|e| format!("APIResourceList: {e}"))?;
    Ok(ReplySummary {
        passed: list.resources.len(),
        ..ReplySummary::default()
    })
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One of the two servers the custom metrics APIServices can point at.
struct Backend {
    label: String,
    namespace: &'static str,
    service: &'static str,
    port: u16,
    ca_pem: String,
    pid: u32,
    prometheus_pid: Option<u32>,
    prometheus_port: Option<u16>,
    /// The peer's discovery lists [`peer::METRIC_IRATE`]; ours does not.
    is_peer: bool,
}

/// prometheus-adapter and its Prometheus, running.
struct RunningPeer {
    prometheus: peer::Prometheus,
    adapter: peer::PeerAdapter,
    backend: Backend,
}

impl RunningPeer {
    fn log_tails(&self) -> String {
        format!(
            "prometheus-adapter log:\n{}\nprometheus log:\n{}",
            crate::process::tail(&self.adapter.proc.log, 15),
            crate::process::tail(&self.prometheus.proc.log, 5)
        )
    }
}

/// The peer's binaries and versions, found or built before the cluster
/// starts (a cold build takes minutes).
struct PeerBinaries {
    adapter: std::path::PathBuf,
    prometheus: std::path::PathBuf,
    label: String,
}

async fn peer_binaries() -> Result<PeerBinaries, Error> {
    let prometheus = peer::prometheus_binary()?;
    let adapter = peer::adapter_binary().await?;
    let label = format!(
        "prometheus-adapter {} + Prometheus {}",
        peer::version().await?,
        peer::prometheus_version(&prometheus).await?
    );
    Ok(PeerBinaries {
        adapter,
        prometheus,
        label,
    })
}

async fn start_peer(
    cluster: &Cluster,
    bins: PeerBinaries,
    nodes: &[String],
    scrape: Duration,
) -> Result<RunningPeer, Error> {
    let prometheus = peer::start_prometheus(cluster, &bins.prometheus, nodes, scrape).await?;
    prometheus
        .wait_targets_up(nodes.len(), scrape * 2 + Duration::from_secs(30))
        .await?;
    let opts = peer::PeerOptions {
        rate_window: scrape * 4,
        // Rediscover metric names soon after the notebook pods appear.
        relist_interval: scrape * 2,
    };
    let adapter = peer::start_adapter(cluster, &bins.adapter, &prometheus, &opts).await?;
    let backend = Backend {
        label: bins.label,
        namespace: peer::NAMESPACE,
        service: peer::SERVICE,
        port: adapter.port,
        ca_pem: adapter.ca_pem.clone(),
        pid: adapter.proc.pid().unwrap_or(0),
        prometheus_pid: prometheus.proc.pid(),
        prometheus_port: Some(prometheus.port),
        is_peer: true,
    };
    Ok(RunningPeer {
        prometheus,
        adapter,
        backend,
    })
}

/// The request URLs, through kube-apiserver.
struct Urls {
    query: String,
    discovery: String,
}

/// Points the custom metrics API at `backend` and waits until discovery
/// through the aggregator has answered from it without a failure for
/// [`ROUTE_STABLE`]: the aggregator picks up the new endpoint
/// asynchronously and re-probes its availability, answering 503 meanwhile.
async fn route(
    cluster: &Cluster,
    client: &HttpClientHandle,
    urls: &Urls,
    backend: &Backend,
    within: Duration,
) -> Result<(), Error> {
    peer::route_custom_metrics(
        cluster,
        backend.namespace,
        backend.service,
        backend.port,
        &backend.ca_pem,
    )
    .await?;
    let start = Instant::now();
    let mut stable_since: Option<Instant> = None;
    while start.elapsed() < within {
        let served = loadgen::exchange(
            client,
            http::Method::GET,
            &urls.discovery,
            Default::default(),
        )
        .await
        .is_ok_and(|(status, body)| {
            let irate = String::from_utf8_lossy(&body).contains(peer::METRIC_IRATE);
            status.is_success() && irate == backend.is_peer
        });
        if !served {
            stable_since = None;
        } else if stable_since.get_or_insert_with(Instant::now).elapsed() >= ROUTE_STABLE {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Timeout {
        what: format!("custom metrics API served by {}", backend.label),
        seconds: within.as_secs(),
    })
}

/// How long the aggregator must answer from the new backend without a
/// failure before a measurement starts.
const ROUTE_STABLE: Duration = Duration::from_secs(5);

/// Waits until the query lists `size` pods, each with a measured CPU rate
/// (every notebook uses 100m or more). Our adapter lists a pod created
/// since its last scrape with 0 for a grace period and leaves it out (503
/// if that is every pod) until it has two kubelet readings; a run started
/// in between would measure that transition, not the steady state.
async fn wait_measured(
    client: &HttpClientHandle,
    url: &str,
    size: usize,
    within: Duration,
) -> Result<(), Error> {
    let t = Instant::now();
    let mut measured = 0;
    while t.elapsed() < within {
        measured = loadgen::exchange(client, http::Method::GET, url, bytes::Bytes::new())
            .await
            .ok()
            .filter(|(s, _)| s.is_success())
            .and_then(|(_, b)| count_measured(&b))
            .unwrap_or(0);
        if measured >= size {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Error::Timeout {
        what: format!("the adapter to list {size} pods with a CPU rate (lists {measured})"),
        seconds: within.as_secs(),
    })
}

#[derive(Deserialize)]
struct ValueList {
    items: Vec<ValueItem>,
}

#[derive(Deserialize)]
struct ValueItem {
    value: String,
}

/// Items of a `MetricValueList` with a value above zero.
fn count_measured(body: &[u8]) -> Option<usize> {
    let list: ValueList = serde_json::from_slice(body).ok()?;
    Some(
        list.items
            .iter()
            .filter(|i| freshness::parse_quantity(&i.value).is_some_and(|v| v > 0.0))
            .count(),
    )
}

/// With the custom metrics API routed to `backend`: waits until it lists
/// every pod with a rate, then runs the query and discovery loads and reads
/// its memory (and, for the peer, Prometheus' own time per query during the
/// query run).
async fn measure(
    client: &HttpClientHandle,
    urls: &Urls,
    backend: &Backend,
    size: usize,
    opts: &AdapterBenchOptions,
    created: Option<Instant>,
) -> Result<AdapterRow, Error> {
    let within = settle_time(opts);
    wait_measured(client, &urls.query, size, within).await?;
    let ready_after = created.map(|t| t.elapsed());
    let before = match backend.prometheus_port {
        Some(port) => peer::prometheus_query_totals(port).await,
        None => None,
    };
    let load = stretched(client, &urls.query, opts.load).await;
    let query = loadgen::run_get(client, &urls.query, load, Arc::new(count_items))
        .await
        .map_err(Error::Other)?;
    let prometheus_query_ms = match (backend.prometheus_port, before) {
        (Some(port), Some(before)) => peer::prometheus_query_totals(port)
            .await
            .and_then(|after| after.mean_ms_since(&before)),
        _ => None,
    };
    let discovery = loadgen::run_get(
        client,
        &urls.discovery,
        opts.load,
        Arc::new(count_resources),
    )
    .await
    .map_err(Error::Other)?;
    Ok(AdapterRow {
        server: backend.label.clone(),
        pods: size,
        query,
        discovery,
        rss_kib: rss_kib(backend.pid),
        prometheus_rss_kib: backend.prometheus_pid.map(rss_kib),
        prometheus_query_ms,
        ready_after,
    })
}

/// How long a server may take to list new pods (two scrapes for a rate, the
/// peer's metric relist) or to take over the custom metrics API.
fn settle_time(opts: &AdapterBenchOptions) -> Duration {
    opts.scrape_interval * 4 + Duration::from_secs(120)
}

/// `load`, with the warm-up and the measured window stretched for a slow
/// server: only requests that start and end inside the window count, so a
/// window shorter than a few answers would count none. One timed request
/// alone sets the scale; with `concurrency` in flight on a busy server each
/// takes up to that many times longer, so the warm-up is one such answer
/// and the window at least five.
async fn stretched(client: &HttpClientHandle, url: &str, load: LoadSpec) -> LoadSpec {
    let t = Instant::now();
    let _ = loadgen::exchange(client, http::Method::GET, url, bytes::Bytes::new()).await;
    let loaded = t.elapsed() * load.concurrency.max(1) as u32;
    LoadSpec {
        warmup: load.warmup.max(loaded),
        duration: load.duration.max(loaded * 5),
        ..load
    }
}

/// Routes to `backend` and measures its freshness on one notebook pod.
async fn measure_freshness(
    cluster: &Cluster,
    client: &HttpClientHandle,
    urls: &Urls,
    backend: &Backend,
    opts: &AdapterBenchOptions,
    on_round: &mut impl FnMut(&FreshnessRound),
) -> Result<Vec<FreshnessRound>, Error> {
    route(cluster, client, urls, backend, settle_time(opts)).await?;
    let metrics: &[&str] = if backend.is_peer {
        &[peer::METRIC, peer::METRIC_IRATE]
    } else {
        &[peer::METRIC]
    };
    let pod = Notebook::z2jh_default(&user(0), "100m", "512Mi").pod_name();
    let spec = freshness::FreshnessSpec {
        server: &backend.label,
        namespace: NAMESPACE,
        pod: &pod,
        metrics,
        rounds: opts.freshness_rounds,
        // The peer's rate window plus a few scrapes, with room to spare.
        timeout: opts.scrape_interval * 8 + Duration::from_secs(60),
    };
    freshness::measure(cluster, client, &spec, on_round).await
}

fn user(i: usize) -> String {
    format!("user{i:05}")
}

/// Creates notebook pods `from..to`, bound round-robin to `nodes`.
async fn create_pods(
    pods: &Api<Pod>,
    nodes: &[String],
    from: usize,
    to: usize,
) -> Result<(), Error> {
    futures::stream::iter((from..to).map(|i| {
        let pods = pods.clone();
        let node = nodes[i % nodes.len()].clone();
        async move {
            let mut pod = Notebook::z2jh_default(&user(i), "100m", "512Mi").to_pod(NAMESPACE);
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = Some(node);
            }
            pods.create(&PostParams::default(), &pod).await.map(|_| ())
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

async fn create_namespace(cluster: &Cluster) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply("headroom-bench"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            ),
        )
        .await?;
    Ok(())
}

pub async fn run(
    opts: &AdapterBenchOptions,
    mut on_row: impl FnMut(&AdapterRow),
    mut on_round: impl FnMut(&FreshnessRound),
) -> Result<AdapterReport, Error> {
    let mut report = AdapterReport::default();
    let mut bins = None;
    if opts.peer {
        match peer_binaries().await {
            Ok(b) => bins = Some(b),
            Err(e) => report.peer_error = Some(e.to_string()),
        }
    }
    let specs = NodeSpec::uniform(opts.nodes, "20", "64Gi");
    let nodes: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let cluster = Cluster::start(ClusterConfig {
        nodes: specs,
        scheduler_config: None,
        ..ClusterConfig::default()
    })
    .await?;
    create_namespace(&cluster).await?;
    let adapter = lab::start_adapter(&cluster, &config(opts.scrape_interval)).await?;
    let ours = Backend {
        label: OURS.to_string(),
        namespace: lab::ADAPTER_NAMESPACE,
        service: lab::ADAPTER_SERVICE,
        port: adapter.port,
        ca_pem: std::fs::read_to_string(&adapter.ca_bundle)?,
        pid: adapter.proc.pid().unwrap_or(0),
        prometheus_pid: None,
        prometheus_port: None,
        is_peer: false,
    };
    report.idle_rss.push((OURS.into(), rss_kib(ours.pid), None));
    let mut running = None;
    if let Some(b) = bins {
        match start_peer(&cluster, b, &nodes, opts.scrape_interval).await {
            Ok(p) => running = Some(p),
            Err(e) => report.peer_error = Some(e.to_string()),
        }
    }
    if let Some(p) = &running {
        let b = &p.backend;
        report.peer = Some(b.label.clone());
        let prometheus = b.prometheus_pid.map(rss_kib);
        report
            .idle_rss
            .push((b.label.clone(), rss_kib(b.pid), prometheus));
    }
    let tls = ClientTls {
        ca_pem: cluster.pki.ca.cert.clone(),
        cert_pem: Some(cluster.pki.admin.cert.clone()),
        key_pem: Some(cluster.pki.admin.key.clone()),
    };
    let client = loadgen::client(Some(&tls)).map_err(Error::Other)?;
    let urls = Urls {
        query: format!("{}{QUERY}", cluster.apiserver_url),
        discovery: format!("{}{DISCOVERY}", cluster.apiserver_url),
    };

    let pods: Api<Pod> = Api::namespaced(cluster.client(), NAMESPACE);
    let mut sizes = opts.sizes.clone();
    sizes.sort_unstable();
    let mut created = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        // Ours serves while the pods appear, so "listed all pods after" is
        // its own catching up.
        route(&cluster, &client, &urls, &ours, settle_time(opts)).await?;
        create_pods(&pods, &nodes, created, size).await?;
        created = size;
        let t = Instant::now();
        let row = measure(&client, &urls, &ours, size, opts, Some(t)).await?;
        on_row(&row);
        report.rows.push(row);
        if let Some(p) = &running {
            let measured =
                match route(&cluster, &client, &urls, &p.backend, settle_time(opts)).await {
                    Ok(()) => measure(&client, &urls, &p.backend, size, opts, None).await,
                    Err(e) => Err(e),
                };
            match measured {
                Ok(row) => {
                    on_row(&row);
                    report.rows.push(row);
                }
                Err(e) => {
                    report.peer_error = Some(format!("{e}\n{}", p.log_tails()));
                    running = None;
                }
            }
        }
        if i == 0 && opts.freshness_rounds > 0 {
            let rounds =
                measure_freshness(&cluster, &client, &urls, &ours, opts, &mut on_round).await?;
            report.freshness.extend(rounds);
            if let Some(p) = &running {
                match measure_freshness(&cluster, &client, &urls, &p.backend, opts, &mut on_round)
                    .await
                {
                    Ok(rounds) => report.freshness.extend(rounds),
                    Err(e) => report.peer_error = Some(format!("{e}\n{}", p.log_tails())),
                }
            }
        }
    }
    drop(running);
    drop(adapter);
    cluster.stop().await;
    Ok(report)
}
