//! The demo: the lab's three hosts with both services wired in, a simulated
//! JupyterHub whose users come and go between busy and idle, and an HPA on
//! user-placeholder; a table refreshed in place shows it all in percent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::jupyterhub::{Notebook, user_placeholder};
use crate::lab::{self, Adapter, Extender, ExtenderOptions};
use crate::{Cluster, Error, binaries};

pub const NAMESPACE: &str = "jhub";

/// Adapter settings for the demo: scrapes every 2 s so changes show quickly.
const ADAPTER_CONFIG: &str = r#"
notebooks:
  selector: component=singleuser-server
freshness:
  maxAge: 30s
activity:
  cpuCores: 0.2
  window: 5m
kubelet:
  interval: 2s
  timeout: 5s
jupyterServer:
  enabled: false
"#;

/// Both services running against a cluster, wired as in a real one.
pub struct Services {
    pub extender: Extender,
    pub adapter: Adapter,
}

/// Emulated FreeIPA load on node03 (when it exists), the extender with the
/// policy shipped in manifests/ (node03 capped at 40% CPU), kube-scheduler
/// using it, and the metrics adapter registered with the aggregator.
pub async fn start_services(cluster: &mut Cluster) -> Result<Services, Error> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cluster.client());
    if nodes.get_opt("node03").await?.is_some() {
        cluster.set_system_load("node03", 6.0, 8 << 30).await?;
    }
    let policy_path = binaries::repo_root().join("manifests/base/extender/policy.yaml");
    let policy = std::fs::read_to_string(&policy_path)
        .map_err(|e| Error::Other(format!("{}: {e}", policy_path.display())))?;
    let extender = lab::start_extender(
        cluster,
        &ExtenderOptions {
            policy,
            scrape_interval: Duration::from_secs(2),
            policy_reload_interval: Duration::from_secs(10),
        },
    )
    .await?;
    extender.wait_measured_all().await?;
    cluster
        .start_scheduler(&lab::scheduler_config_with_extender(&extender.url, 5, true))
        .await?;
    let adapter = lab::start_adapter(cluster, ADAPTER_CONFIG).await?;
    Ok(Services { extender, adapter })
}

/// How busy user `i` is at `t` seconds: a slow wave per user, so the demo
/// has users going busy and idle at different times (0 to ~2 cores).
fn cpu_at(i: usize, t: f64) -> f64 {
    let period = 40.0 + 7.0 * i as f64;
    let phase = i as f64 * 1.3;
    let wave = (t * std::f64::consts::TAU / period + phase).sin();
    // Below zero the user is idle (a few millicores).
    if wave <= 0.0 { 0.005 } else { 2.0 * wave }
}

fn user_name(i: usize) -> String {
    const NAMES: [&str; 12] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj",
    ];
    NAMES
        .get(i)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("user{i:02}"))
}

/// Runs the simulated hub until `stop` resolves.
pub async fn run(
    cluster: &mut Cluster,
    users: usize,
    refresh: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let services = start_services(cluster).await?;
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply("headroom-lab"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            ),
        )
        .await?;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    sts.create(&PostParams::default(), &user_placeholder(1, "500m", "1Gi"))
        .await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), NAMESPACE);
    hpas.create(
        &PostParams::default(),
        &crate::jupyterhub::placeholder_hpa(NAMESPACE, "3", 6, 10),
    )
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let start = Instant::now();
    let mut arrived = 0;
    tokio::pin!(stop);
    loop {
        let t = start.elapsed().as_secs_f64();
        // Users log in one per refresh until all are there.
        if arrived < users {
            let cpu = format!("{}m", (cpu_at(arrived, t) * 1000.0).round() as i64);
            let nb = Notebook::z2jh_default(&user_name(arrived), &cpu, "2Gi");
            pods.create(&PostParams::default(), &nb.to_pod("jhub"))
                .await?;
            arrived += 1;
        }
        for i in 0..arrived {
            let cpu = format!("{}m", (cpu_at(i, t) * 1000.0).round() as i64);
            let pod = format!("jupyter-{}", user_name(i));
            cluster.set_pod_usage(NAMESPACE, &pod, &cpu, "2Gi").await?;
        }
        let table = render(cluster, &services, &pods, &hpas).await;
        // Clear the screen and redraw.
        print!("\x1b[2J\x1b[H{table}");
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
    Ok(())
}

async fn render(
    cluster: &Cluster,
    services: &Services,
    pods: &Api<Pod>,
    hpas: &Api<HorizontalPodAutoscaler>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "headroom demo: 3 hosts, node03 runs FreeIPA (6 cores outside Kubernetes), capped at 40% CPU"
    );
    let _ = writeln!(
        out,
        "kubeconfig: {}   (Ctrl-C stops everything)\n",
        cluster.kubeconfig.display()
    );
    // The cluster in percent, for one more default notebook.
    let probe = Notebook::z2jh_default("next-user", "0", "0").to_pod("jhub");
    match services.extender.explain(&probe).await {
        Ok(v) => {
            let _ = writeln!(
                out,
                "{:<8} {:>9} {:>9} {:>10} {:>12} {:>9} {:>8} {:>6}",
                "NODE", "CPU req", "measured", "projected", "cap", "MEM meas", "verdict", "score"
            );
            for n in v["nodes"].as_array().into_iter().flatten() {
                let pct = |x: &serde_json::Value| {
                    x.as_f64().map_or("-".to_string(), |p| format!("{p:.1}%"))
                };
                let cap = match (
                    n["cpu"]["capPercent"].as_f64(),
                    n["cpu"]["capMode"].as_str(),
                ) {
                    (Some(c), Some(m)) => format!("{c:.0}% {m}"),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "{:<8} {:>9} {:>9} {:>10} {:>12} {:>9} {:>8} {:>6}",
                    n["node"].as_str().unwrap_or("?"),
                    pct(&n["cpu"]["requestedPercent"]),
                    pct(&n["cpu"]["measuredPercent"]),
                    pct(&n["cpu"]["projectedPercent"]),
                    cap,
                    pct(&n["memory"]["measuredPercent"]),
                    n["verdict"].as_str().unwrap_or("?"),
                    n["score"].as_i64().unwrap_or(0),
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(extender explain unavailable: {e})");
        }
    }
    // Where each user's notebook went.
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(list) = pods
        .list(&ListParams::default().labels(crate::jupyterhub::SINGLEUSER_SELECTOR))
        .await
    {
        for p in list.items {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "(pending)".into());
            let user = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::jupyterhub::USERNAME_ANNOTATION).cloned())
                .unwrap_or_default();
            let cpu = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::kwok::POD_USAGE_CPU).cloned())
                .unwrap_or_default();
            by_node
                .entry(node)
                .or_default()
                .push(format!("{user}({cpu})"));
        }
    }
    let _ = writeln!(out, "\nNOTEBOOKS (user(cpu now))");
    for (node, users) in &by_node {
        let _ = writeln!(out, "{node:<10} {}", users.join(" "));
    }
    if let Ok(h) = hpas.get("user-placeholder").await {
        let status = h.status.unwrap_or_default();
        let metric = status
            .current_metrics
            .as_ref()
            .and_then(|m| m.first())
            .and_then(|m| m.object.as_ref())
            .and_then(|o| {
                o.current
                    .average_value
                    .as_ref()
                    .or(o.current.value.as_ref())
            })
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "\nHPA user-placeholder (target: 3 active users per placeholder): now {metric} per placeholder, replicas {} -> desired {}",
            status.current_replicas.unwrap_or(0),
            status.desired_replicas
        );
    }
    let _ = writeln!(
        out,
        "\nexplore: KUBECONFIG={} kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_active_users",
        cluster.kubeconfig.display()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_go_busy_and_idle() {
        let samples: Vec<f64> = (0..120).map(|t| cpu_at(3, t as f64)).collect();
        assert!(samples.iter().any(|&c| c > 1.0));
        assert!(samples.iter().any(|&c| c < 0.01));
        assert!(samples.iter().all(|&c| (0.0..=2.0).contains(&c)));
    }
}
