//! Extender over HTTP on loopback (issue items 2 and 4): headroom-extender
//! and the TAS peer answer filter and prioritize for 100, 1,000 and 5,000
//! nodes of one kwok cluster, driven by the same load generator.
//!
//! Every node carries a CPU load outside pods: 85% on every fifth node,
//! 0–59% on the others. headroom-extender measures it through kwok's
//! emulated kubelets and caps every node at 80%; TAS reads the same
//! percentages from the custom metrics API and its policy refuses nodes
//! above 80. Both therefore reject the same fifth of the nodes and rank the
//! rest.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde_json::Value;

use super::loadgen::{self, ClientTls, LoadSpec, Outcome, Verb};
use super::payload::{self, NodesMode};
use super::{extender, tas};
use crate::{Cluster, ClusterConfig, Error, NodeSpec};

/// What to run.
#[derive(Clone, Debug)]
pub struct HttpBenchOptions {
    pub sizes: Vec<usize>,
    pub load: LoadSpec,
    pub scrape_interval: Duration,
    /// Also run headroom-extender with full Nodes over mutual TLS (the
    /// payload and transport TAS needs).
    pub full_nodes: bool,
    /// Run the TAS peer.
    pub peer: bool,
}

/// One measured cell.
#[derive(Clone, Debug)]
pub struct HttpRow {
    pub server: String,
    pub transport: &'static str,
    pub payload: NodesMode,
    pub nodes: usize,
    pub verb: Verb,
    pub concurrency: usize,
    pub outcome: Outcome,
}

/// Facts about the run besides the rows.
#[derive(Clone, Debug, Default)]
pub struct HttpBenchNotes {
    pub nodes: usize,
    pub cluster_start: Duration,
    pub load_annotations: Duration,
    pub peer: Option<String>,
    pub peer_error: Option<String>,
}

/// The emulated CPU load outside pods of the `i`-th node (0-based), percent.
pub fn load_percent(i: usize) -> i64 {
    if i.is_multiple_of(5) {
        85
    } else {
        ((i * 7) % 60) as i64
    }
}

/// headroom's policy for the run: every node capped at 80% CPU.
pub const POLICY: &str = r#"
weights: {cpu: 1, memory: 1}
defaultEstimate: {cpu: 500m, memory: 512Mi}
staleUsage: {maxAge: 5m, policy: requests-only}
caps:
- nodeLabels: {kubernetes.io/os: linux}
  cpuPercent: 80
  mode: hard
  reason: benchmark cap
"#;

const NODE_CPU: &str = "20";

pub async fn run(
    opts: &HttpBenchOptions,
    mut on_row: impl FnMut(&HttpRow),
) -> Result<(Vec<HttpRow>, HttpBenchNotes), Error> {
    let n = opts.sizes.iter().copied().max().unwrap_or(100);
    let mut notes = HttpBenchNotes {
        nodes: n,
        ..Default::default()
    };
    let specs = NodeSpec::uniform(n, NODE_CPU, "64Gi");
    let t = Instant::now();
    let cluster = Cluster::start(ClusterConfig {
        nodes: specs.clone(),
        scheduler_config: None,
        ..ClusterConfig::default()
    })
    .await?;
    notes.cluster_start = t.elapsed();
    eprintln!(
        "[bench] {n} nodes Ready after {:.0}s",
        notes.cluster_start.as_secs_f64()
    );

    let t = Instant::now();
    let values: Vec<(String, i64)> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), load_percent(i)))
        .collect();
    futures::stream::iter(values.iter().map(|(name, pct)| {
        let cluster = &cluster;
        async move {
            let cores = *pct as f64 * 20.0 / 100.0;
            cluster.set_system_load(name, cores, 0).await
        }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    notes.load_annotations = t.elapsed();

    // The cluster's own Node objects, as the scheduler's cache holds them
    // (it drops managedFields), in node order.
    let listed = Api::<Node>::all(cluster.client())
        .list(&Default::default())
        .await?;
    let mut by_name: std::collections::HashMap<String, Value> = listed
        .items
        .into_iter()
        .map(|mut node| {
            node.metadata.managed_fields = None;
            let name = node.metadata.name.clone().unwrap_or_default();
            (name, serde_json::to_value(node).expect("a Node serialises"))
        })
        .collect();
    let nodes: Vec<Value> = specs
        .iter()
        .map(|s| {
            by_name
                .remove(&s.name)
                .ok_or_else(|| Error::Other(format!("node {} missing", s.name)))
        })
        .collect::<Result<_, _>>()?;
    let pod = payload::notebook_pod("bench", &[("telemetry-policy", tas::POLICY)]);
    let body = |count: usize, mode: NodesMode| -> Bytes {
        Bytes::from(
            serde_json::to_vec(&payload::extender_args(&pod, &nodes, count, mode)).expect("JSON"),
        )
    };

    let identity = cluster.pki.client_cert("headroom-bench-loadgen", None)?;
    let tls = ClientTls {
        ca_pem: cluster.pki.ca.cert.clone(),
        cert_pem: Some(identity.cert),
        key_pem: Some(identity.key),
    };
    let plain_client = loadgen::client(None).map_err(Error::Other)?;
    let tls_client = loadgen::client(Some(&tls)).map_err(Error::Other)?;
    let mut rows = Vec::new();
    let measure_wait = opts.scrape_interval * 3 + Duration::from_secs(60);

    // headroom-extender, NodeNames over plain HTTP: how the scheduler is
    // configured with it.
    let mut ours =
        extender::start(&cluster, &plain_client, POLICY, opts.scrape_interval, false).await?;
    extender::wait_measured(&mut ours, &plain_client, n, measure_wait).await?;
    let target = Target {
        server: "headroom-extender",
        url: &ours.url,
        transport: "HTTP",
        payload: NodesMode::Names,
    };
    rows.extend(cells(&plain_client, &target, opts, &body, &mut on_row).await?);
    ours.proc.stop(Duration::from_secs(5)).await;

    if opts.full_nodes {
        let mut ours =
            extender::start(&cluster, &tls_client, POLICY, opts.scrape_interval, true).await?;
        extender::wait_measured(&mut ours, &tls_client, n, measure_wait).await?;
        let target = Target {
            server: "headroom-extender",
            url: &ours.url,
            transport: "mTLS",
            payload: NodesMode::Full,
        };
        rows.extend(cells(&tls_client, &target, opts, &body, &mut on_row).await?);
        ours.proc.stop(Duration::from_secs(5)).await;
    }

    if opts.peer {
        match run_peer(&cluster, &tls_client, &values, &body, opts, &mut on_row).await {
            Ok((name, peer_rows)) => {
                notes.peer = Some(name);
                rows.extend(peer_rows);
            }
            Err(e) => {
                eprintln!("[bench] TAS peer failed: {e}");
                notes.peer_error = Some(e.to_string());
            }
        }
    }
    cluster.stop().await;
    Ok((rows, notes))
}

/// A server under load and how it is reached.
struct Target<'a> {
    server: &'a str,
    url: &'a str,
    transport: &'static str,
    payload: NodesMode,
}

/// One row per size and verb: a load run each, in order.
async fn cells(
    client: &loadgen::HttpClientHandle,
    target: &Target<'_>,
    opts: &HttpBenchOptions,
    body: &impl Fn(usize, NodesMode) -> Bytes,
    on_row: &mut impl FnMut(&HttpRow),
) -> Result<Vec<HttpRow>, Error> {
    let mut rows = Vec::new();
    for &size in &opts.sizes {
        for verb in [Verb::Filter, Verb::Prioritize] {
            let outcome = loadgen::run(
                client,
                target.url,
                verb,
                body(size, target.payload),
                opts.load,
            )
            .await
            .map_err(Error::Other)?;
            let row = HttpRow {
                server: target.server.to_string(),
                transport: target.transport,
                payload: target.payload,
                nodes: size,
                verb,
                concurrency: opts.load.concurrency,
                outcome,
            };
            on_row(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn run_peer(
    cluster: &Cluster,
    client: &loadgen::HttpClientHandle,
    values: &[(String, i64)],
    body: &impl Fn(usize, NodesMode) -> Bytes,
    opts: &HttpBenchOptions,
    on_row: &mut impl FnMut(&HttpRow),
) -> Result<(String, Vec<HttpRow>), Error> {
    let binary = tokio::task::spawn_blocking(tas::binary)
        .await
        .map_err(|e| Error::Other(e.to_string()))??;
    let name = format!("TAS {}", tas::version()?);
    tas::install_policy(cluster, "default").await?;
    let _metrics = tas::CustomMetricsServer::start(cluster, values.to_vec()).await?;
    let mut peer = tas::start(cluster, &binary)?;
    let n = values.len();
    tas::wait_warm(&mut peer, client, body(n, NodesMode::Full), n).await?;
    let target = Target {
        server: &name,
        url: &peer.url,
        transport: "mTLS",
        payload: NodesMode::Full,
    };
    let rows = cells(client, &target, opts, body, on_row).await?;
    peer.proc.stop(Duration::from_secs(5)).await;
    Ok((name, rows))
}
