//! The adapter benchmark peer: prometheus-adapter (`sigs.k8s.io/prometheus-adapter`,
//! pinned by the wrapper module `e2e/go/peers/prometheus-adapter`, built
//! unchanged from the Go module proxy) in front of a Prometheus server
//! (Debian's `prometheus` package, our own process and configuration).
//!
//! Prometheus scrapes exactly what headroom-metrics-adapter scrapes: every
//! kwok node's emulated kubelet `/metrics/resource`, in plain HTTP on kwok's
//! port, at the same interval. prometheus-adapter turns
//! `container_cpu_usage_seconds_total` into the Pods metric
//! `notebook_cpu_usage_cores` (the name our adapter serves, so the load
//! generator sends the very same request to both) as a `rate` over four
//! scrape intervals, Prometheus' usual advice; and, for the freshness
//! comparison only, `notebook_cpu_usage_cores_irate`, an `irate` that like
//! our adapter uses just the last two samples.
//!
//! It is registered behind the aggregator the same way as ours (an
//! ExternalName Service to 127.0.0.1 and the APIService objects of
//! `custom.metrics.k8s.io`), so requests take the same path; the benchmark
//! switches the APIServices between the two servers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Proc, tail};
use crate::{Cluster, Error, aggregation, binaries, ports, wait};

/// The module the wrapper pins.
pub const MODULE: &str = "sigs.k8s.io/prometheus-adapter";
/// The Prometheus binary Debian's `prometheus` package installs.
pub const DEBIAN_PROMETHEUS: &str = "/usr/bin/prometheus";
/// Where the peer is registered (its serving certificate names
/// `<service>.<namespace>.svc`).
pub const NAMESPACE: &str = "prometheus-adapter";
pub const SERVICE: &str = "prometheus-adapter";
/// The metric both adapters serve.
pub const METRIC: &str = "notebook_cpu_usage_cores";
/// The peer's two-sample variant (freshness only).
pub const METRIC_IRATE: &str = "notebook_cpu_usage_cores_irate";
/// Only the custom metrics API is switched between the two servers;
/// external metrics stay with ours (the peer has no external rules here).
pub const CUSTOM_VERSIONS: [(&str, &str, i32); 2] = [
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("custom.metrics.k8s.io", "v1beta1", 100),
];

/// A cold build of the peer and its Kubernetes libraries takes ~10 minutes
/// on 2 cores; anything far beyond that is stuck (e.g. the module proxy).
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// The peer's client-side rate limit towards kube-apiserver (see
/// [`start_adapter`]).
pub const CLIENT_QPS: u32 = 1000;

fn wrapper_dir() -> PathBuf {
    binaries::repo_root().join("e2e/go/peers/prometheus-adapter")
}

/// Runs `go args` in `dir`, with a deadline; stdout, trimmed.
async fn go(args: &[&str], dir: &Path, timeout: Duration) -> Result<String, Error> {
    let what = format!("(cd {} && go {})", dir.display(), args.join(" "));
    let child = tokio::process::Command::new("go")
        .args(args)
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Build(format!("{what}: {e}")))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| Error::Timeout {
            what: what.clone(),
            seconds: timeout.as_secs(),
        })??;
    if !out.status.success() {
        return Err(Error::Build(format!(
            "{what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The pinned prometheus-adapter version (from the wrapper's go.mod).
pub async fn version() -> Result<String, Error> {
    let args = ["list", "-m", "-f", "{{.Version}}", MODULE];
    go(&args, &wrapper_dir(), Duration::from_secs(120)).await
}

fn cache_root() -> PathBuf {
    std::env::var("HEADROOM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
                .join(".cache/headroom")
        })
}

/// The prometheus-adapter binary: `HEADROOM_PROMETHEUS_ADAPTER_BIN`, else
/// built from the wrapper module into the cache (`HEADROOM_CACHE`, default
/// ~/.cache/headroom) once, keyed by its version and the Go version.
pub async fn adapter_binary() -> Result<PathBuf, Error> {
    if let Ok(p) = std::env::var("HEADROOM_PROMETHEUS_ADAPTER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let dir = wrapper_dir();
    let goversion = go(&["env", "GOVERSION"], &dir, Duration::from_secs(60)).await?;
    let bin = cache_root()
        .join("bin")
        .join(format!(
            "prometheus-adapter-{}_{goversion}",
            version().await?
        ))
        .join("prometheus-adapter");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(bin.parent().expect("has a parent"))?;
    eprintln!("[bench] building the prometheus-adapter peer (up to ~10 minutes the first time)");
    let tmp = bin.with_extension("tmp");
    let out = format!("-o={}", tmp.display());
    let package = format!("{MODULE}/cmd/adapter");
    let args = [
        "build",
        "-mod=readonly",
        "-trimpath",
        "-ldflags=-s -w",
        &out,
        &package,
    ];
    go(&args, &dir, BUILD_TIMEOUT).await?;
    std::fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// The Prometheus binary: `HEADROOM_PROMETHEUS_BIN`, else Debian's.
pub fn prometheus_binary() -> Result<PathBuf, Error> {
    let path = std::env::var("HEADROOM_PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(DEBIAN_PROMETHEUS));
    if !path.is_file() {
        return Err(Error::Other(format!(
            "{} not found: install Debian's prometheus package (scripts/bench adapter does) \
             or set HEADROOM_PROMETHEUS_BIN",
            path.display()
        )));
    }
    Ok(path)
}

/// `prometheus --version`'s version, e.g. `2.42.0+ds`.
pub async fn prometheus_version(binary: &Path) -> Result<String, Error> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(binary)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: format!("{} --version", binary.display()),
        seconds: 30,
    })??;
    // Older releases print the version on stderr, newer on stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("unknown")
        .to_string())
}

/// The Prometheus configuration: one target per node, each with its own
/// `__metrics_path__` (kwok serves every node on one port under a per-node
/// path, as the node's `metrics.k8s.io/resource-metrics-path` annotation
/// tells our scraper).
pub fn prometheus_config(kwok_port: u16, nodes: &[String], interval: Duration) -> String {
    let seconds = interval.as_secs().max(1);
    // Our adapter's kubelet timeout is 5 s; Prometheus needs timeout <= interval.
    let timeout = seconds.min(5);
    let mut s = format!(
        "global:\n  scrape_interval: {seconds}s\n  scrape_timeout: {timeout}s\n\
         scrape_configs:\n- job_name: kubelet-resource\n  scheme: http\n  static_configs:\n"
    );
    for node in nodes {
        s.push_str(&format!(
            "  - targets: ['127.0.0.1:{kwok_port}']\n    labels: {{node: '{node}', __metrics_path__: '{}'}}\n",
            crate::kwok::resource_metrics_path(node)
        ));
    }
    s
}

/// prometheus-adapter's rules: the Pods metric from the kubelet's container
/// CPU counter, summed per pod (a notebook pod has one container).
pub fn adapter_rules(rate_window: Duration) -> String {
    let window = rate_window.as_secs().max(1);
    let rule = |name: &str, function: &str| {
        format!(
            r#"- seriesQuery: 'container_cpu_usage_seconds_total{{namespace!="",pod!=""}}'
  resources:
    overrides:
      namespace: {{resource: namespace}}
      pod: {{resource: pod}}
  name:
    matches: ^container_cpu_usage_seconds_total$
    as: {name}
  metricsQuery: 'sum({function}(<<.Series>>{{<<.LabelMatchers>>}}[{window}s])) by (<<.GroupBy>>)'
"#
        )
    };
    format!(
        "rules:\n{}{}",
        rule(METRIC, "rate"),
        rule(METRIC_IRATE, "irate")
    )
}

/// A running Prometheus.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
}

/// Starts Prometheus scraping every node's emulated kubelet every `interval`,
/// with its storage in the cluster directory, and waits until it is ready.
pub async fn start_prometheus(
    cluster: &Cluster,
    binary: &Path,
    nodes: &[String],
    interval: Duration,
) -> Result<Prometheus, Error> {
    let config = cluster.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        prometheus_config(cluster.kwok_port, nodes, interval),
    )?;
    let port = ports::free_port()?;
    let args = vec![
        format!("--config.file={}", config.display()),
        format!(
            "--storage.tsdb.path={}",
            cluster.dir.join("prometheus-data").display()
        ),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--log.level=warn".into(),
    ];
    let mut proc = Proc::spawn("prometheus", binary, &args, &[], &cluster.dir)?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        proc.check_running()?;
        if crate::cluster::http_get_loopback(port, "/-/ready")
            .await
            .is_ok()
        {
            return Ok(Prometheus { proc, port });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("prometheus /-/ready; log:\n{}", tail(&proc.log, 20)),
                seconds: START_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Prometheus {
    /// Waits until every scrape target is up, so the peer's first metric
    /// discovery finds the series.
    pub async fn wait_targets_up(&self, count: usize, within: Duration) -> Result<(), Error> {
        let path = "/api/v1/query?query=count(up%3D%3D1)";
        wait::until(
            &format!("Prometheus to scrape {count} targets"),
            within,
            Duration::from_millis(500),
            || async {
                let body = crate::cluster::http_get_loopback(self.port, path)
                    .await
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let up: usize = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
                (up >= count).then_some(())
            },
        )
        .await
    }
}

/// Prometheus' own count and total time of `/api/v1/query` requests
/// (its `prometheus_http_request_duration_seconds` histogram).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueryTotals {
    pub count: f64,
    pub seconds: f64,
}

impl QueryTotals {
    /// Mean time per query between `earlier` and `self`, ms.
    pub fn mean_ms_since(&self, earlier: &QueryTotals) -> Option<f64> {
        let n = self.count - earlier.count;
        (n > 0.0).then(|| (self.seconds - earlier.seconds) / n * 1000.0)
    }
}

/// The query totals of the Prometheus on `port` now. The peer is its only
/// query client, so the difference over a load run splits the peer's answer
/// time into Prometheus' part (parsing, evaluation, encoding) and the rest.
pub async fn prometheus_query_totals(port: u16) -> Option<QueryTotals> {
    let text = crate::cluster::http_get_loopback(port, "/metrics")
        .await
        .ok()?;
    Some(query_totals(&text))
}

fn query_totals(metrics_text: &str) -> QueryTotals {
    let value = |name: &str| {
        metrics_text
            .lines()
            .find(|l| l.starts_with(name) && l.contains(r#"handler="/api/v1/query""#))
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    QueryTotals {
        count: value("prometheus_http_request_duration_seconds_count{"),
        seconds: value("prometheus_http_request_duration_seconds_sum{"),
    }
}

/// A running prometheus-adapter.
pub struct PeerAdapter {
    pub proc: Proc,
    pub port: u16,
    /// Its serving certificate, the APIService's caBundle.
    pub ca_pem: String,
}

/// What the peer is started with.
pub struct PeerOptions {
    /// The rate window of [`METRIC`].
    pub rate_window: Duration,
    /// `--metrics-relist-interval`: how often it rediscovers metric names.
    pub relist_interval: Duration,
}

/// Starts prometheus-adapter against `prometheus` with a serving certificate
/// for its Service name; the admin kubeconfig for listing pods and for
/// delegated authentication (front-proxy CA from the
/// `extension-apiserver-authentication` ConfigMap) and authorization. Returns
/// once it serves `/readyz`; it is not registered yet.
pub async fn start_adapter(
    cluster: &Cluster,
    binary: &Path,
    prometheus: &Prometheus,
    opts: &PeerOptions,
) -> Result<PeerAdapter, Error> {
    let host = format!("{SERVICE}.{NAMESPACE}.svc");
    let cert = rcgen::generate_simple_self_signed(vec![host, "localhost".into()])?;
    let ca_pem = cert.cert.pem();
    let cert_file = cluster.dir.join("prometheus-adapter.crt");
    let key_file = cluster.dir.join("prometheus-adapter.key");
    std::fs::write(&cert_file, &ca_pem)?;
    std::fs::write(&key_file, cert.signing_key.serialize_pem())?;
    let rules = cluster.dir.join("prometheus-adapter-rules.yaml");
    std::fs::write(&rules, adapter_rules(opts.rate_window))?;
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let port = ports::free_port()?;
    let args = vec![
        format!("--prometheus-url=http://127.0.0.1:{}/", prometheus.port),
        format!("--config={}", rules.display()),
        format!(
            "--metrics-relist-interval={}s",
            opts.relist_interval.as_secs().max(1)
        ),
        format!("--lister-kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", cert_file.display()),
        format!("--tls-private-key-file={}", key_file.display()),
        // It lists the selected pods from kube-apiserver on every Pods
        // query; client-go's default 5 requests/s (burst 10) would cap it
        // at ~5 queries/s and measure the limiter instead of the server.
        format!("--client-qps={CLIENT_QPS}"),
        format!("--client-burst={}", CLIENT_QPS * 2),
        "--v=1".into(),
    ];
    let mut proc = Proc::spawn("prometheus-adapter", binary, &args, &[], &cluster.dir)?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let client = super::loadgen::client(Some(&super::loadgen::ClientTls {
        ca_pem: ca_pem.clone(),
        cert_pem: None,
        key_pem: None,
    }))
    .map_err(Error::Other)?;
    // /readyz is always allowed without credentials (its default
    // --authorization-always-allow-paths).
    let readyz = format!("https://localhost:{port}/readyz");
    loop {
        proc.check_running()?;
        let ready =
            super::loadgen::exchange(&client, http::Method::GET, &readyz, Default::default())
                .await
                .is_ok_and(|(s, _)| s.is_success());
        if ready {
            return Ok(PeerAdapter { proc, port, ca_pem });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("prometheus-adapter /readyz; log:\n{}", tail(&proc.log, 20)),
                seconds: START_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Points the custom metrics APIServices at one server and waits until the
/// aggregator reports them Available.
pub async fn route_custom_metrics(
    cluster: &Cluster,
    namespace: &str,
    service: &str,
    port: u16,
    ca_pem: &str,
) -> Result<(), Error> {
    let client = cluster.client();
    aggregation::register_loopback(&client, namespace, service, port, ca_pem, &CUSTOM_VERSIONS)
        .await?;
    for (group, version, _) in CUSTOM_VERSIONS {
        let name = format!("{version}.{group}");
        wait::until(
            &format!("APIService {name} Available"),
            Duration::from_secs(90),
            Duration::from_millis(250),
            || {
                let client = client.clone();
                let name = name.clone();
                async move {
                    let (ok, _) = aggregation::availability(&client, &name).await.ok()?;
                    ok.then_some(())
                }
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_config_has_one_target_per_node_path() {
        let nodes = vec!["node001".to_string(), "node002".to_string()];
        let text = prometheus_config(4242, &nodes, Duration::from_secs(15));
        let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        assert_eq!(v["global"]["scrape_interval"].as_str(), Some("15s"));
        let groups = v["scrape_configs"][0]["static_configs"]
            .as_sequence()
            .expect("static_configs");
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[1]["labels"]["__metrics_path__"].as_str(),
            Some("/metrics/nodes/node002/metrics/resource")
        );
        assert_eq!(groups[0]["targets"][0].as_str(), Some("127.0.0.1:4242"));
    }

    #[test]
    fn query_totals_come_from_the_query_handler() {
        let text = r#"prometheus_http_request_duration_seconds_sum{handler="/api/v1/series"} 50
prometheus_http_request_duration_seconds_sum{handler="/api/v1/query"} 2.5
prometheus_http_request_duration_seconds_count{handler="/api/v1/query"} 10
prometheus_http_request_duration_seconds_count{handler="/api/v1/series"} 3"#;
        let now = query_totals(text);
        assert_eq!(
            now,
            QueryTotals {
                count: 10.0,
                seconds: 2.5
            }
        );
        let before = QueryTotals {
            count: 5.0,
            seconds: 2.0,
        };
        assert_eq!(now.mean_ms_since(&before), Some(100.0));
        assert_eq!(now.mean_ms_since(&now), None);
    }

    #[test]
    fn short_intervals_keep_the_timeout_within_the_interval() {
        let text = prometheus_config(1, &[], Duration::from_secs(2));
        assert!(text.contains("scrape_timeout: 2s"), "{text}");
    }

    #[test]
    fn rules_name_both_metrics_with_the_window() {
        let text = adapter_rules(Duration::from_secs(60));
        let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        let rules = v["rules"].as_sequence().expect("rules");
        assert_eq!(rules[0]["name"]["as"].as_str(), Some(METRIC));
        assert_eq!(rules[1]["name"]["as"].as_str(), Some(METRIC_IRATE));
        let q = rules[0]["metricsQuery"].as_str().expect("query");
        assert!(
            q.starts_with("sum(rate(<<.Series>>{<<.LabelMatchers>>}[60s]))"),
            "{q}"
        );
    }
}
