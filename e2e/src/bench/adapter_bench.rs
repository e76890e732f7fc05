//! Metrics adapter (issue item 5, partly): a Pods-metric query over 1,000
//! and 10,000 notebook pods and API discovery, both through the real
//! aggregator as the HPA controller sends them, at a fixed concurrency; and
//! the adapter's resident memory at each size.
//!
//! Pods are created already bound (`spec.nodeName`, spread over the nodes)
//! so no scheduler is involved; kwok runs them and emulates their usage.
//! The adapter scrapes the emulated kubelets; the query is answered once it
//! has a CPU rate for every pod.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::loadgen::{self, ClientTls, LoadSpec, Outcome, ReplySummary};
use crate::jupyterhub::Notebook;
use crate::{Cluster, ClusterConfig, Error, NodeSpec, lab};

#[derive(Clone, Debug)]
pub struct AdapterBenchOptions {
    pub sizes: Vec<usize>,
    pub nodes: usize,
    pub load: LoadSpec,
    pub scrape_interval: Duration,
}

/// One measured size.
#[derive(Clone, Debug)]
pub struct AdapterRow {
    pub pods: usize,
    pub query: Outcome,
    pub discovery: Outcome,
    /// Adapter VmRSS after the query run, KiB.
    pub rss_kib: u64,
    /// Time from the last pod created to the query listing every pod.
    pub ready_after: Duration,
}

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

pub async fn run(
    opts: &AdapterBenchOptions,
    mut on_row: impl FnMut(&AdapterRow),
) -> Result<(Vec<AdapterRow>, u64), Error> {
    let specs = NodeSpec::uniform(opts.nodes, "20", "64Gi");
    let cluster = Cluster::start(ClusterConfig {
        nodes: specs.clone(),
        scheduler_config: None,
        ..ClusterConfig::default()
    })
    .await?;
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
    let adapter = lab::start_adapter(&cluster, &config(opts.scrape_interval)).await?;
    let pid = adapter.proc.pid().unwrap_or(0);
    let idle_rss = rss_kib(pid);
    let tls = ClientTls {
        ca_pem: cluster.pki.ca.cert.clone(),
        cert_pem: Some(cluster.pki.admin.cert.clone()),
        key_pem: Some(cluster.pki.admin.key.clone()),
    };
    let client = loadgen::client(Some(&tls)).map_err(Error::Other)?;
    let query_url = format!("{}{QUERY}", cluster.apiserver_url);
    let discovery_url = format!("{}{DISCOVERY}", cluster.apiserver_url);

    let pods: Api<Pod> = Api::namespaced(cluster.client(), NAMESPACE);
    let mut created = 0usize;
    let mut rows = Vec::new();
    let mut sizes = opts.sizes.clone();
    sizes.sort_unstable();
    for &size in &sizes {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        futures::stream::iter((created..size).map(|i| {
            let pods = pods.clone();
            let node = names[i % names.len()].clone();
            async move {
                let mut pod =
                    Notebook::z2jh_default(&format!("user{i:05}"), "100m", "512Mi").to_pod("jhub");
                if let Some(spec) = pod.spec.as_mut() {
                    spec.node_name = Some(node);
                }
                pods.create(&PostParams::default(), &pod).await.map(|_| ())
            }
        }))
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
        created = size;
        let t = Instant::now();
        let deadline = t + opts.scrape_interval * 4 + Duration::from_secs(120);
        loop {
            let listed =
                loadgen::exchange(&client, http::Method::GET, &query_url, bytes::Bytes::new())
                    .await
                    .ok()
                    .filter(|(s, _)| s.is_success())
                    .and_then(|(_, b)| count_items(&b).ok())
                    .map_or(0, |s| s.passed);
            if listed >= size {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("adapter to list {size} pods (lists {listed})"),
                    seconds: (deadline - t).as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let ready_after = t.elapsed();
        let query = loadgen::run_get(&client, &query_url, opts.load, Arc::new(count_items))
            .await
            .map_err(Error::Other)?;
        let discovery = loadgen::run_get(
            &client,
            &discovery_url,
            opts.load,
            Arc::new(count_resources),
        )
        .await
        .map_err(Error::Other)?;
        let row = AdapterRow {
            pods: size,
            query,
            discovery,
            rss_kib: rss_kib(pid),
            ready_after,
        };
        on_row(&row);
        rows.push(row);
    }
    drop(adapter);
    cluster.stop().await;
    Ok((rows, idle_rss))
}
