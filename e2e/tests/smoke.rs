//! Smoke test of the loopback control plane: real kube-apiserver,
//! kube-controller-manager and kube-scheduler with kwok nodes.

use std::time::Duration;

use headroom_e2e::cluster::is_ready;
use headroom_e2e::{Cluster, ClusterConfig, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The value of the first sample of `metric` whose line contains every one of
/// `labels` (a deliberately simple reader: the parser proper lives in
/// headroom-common and has its own conformance tests).
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(metric))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| {
            let after = l
                .rsplit_once('}')
                .map(|(_, v)| v)
                .unwrap_or_else(|| l.split_once(' ').map(|(_, v)| v).unwrap_or(""));
            after.split_whitespace().next()?.parse().ok()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_schedules_and_kwok_emulates_metrics() {
    install_crypto();
    let cluster = Cluster::start(ClusterConfig::default())
        .await
        .expect("cluster starts");
    let client = cluster.client();

    // Three nodes Ready, as the users' cluster.
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<_> = list
        .items
        .iter()
        .filter(|n| is_ready(n))
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["node01", "node02", "node03"]);

    // A Deployment of 6 pods placed by the real kube-scheduler, Running via kwok.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smoke"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "smoke"}},
            "template": {
                "metadata": {
                    "labels": {"app": "smoke"},
                    "annotations": {
                        "kwok.x-k8s.io/usage-cpu": "500m",
                        "kwok.x-k8s.io/usage-memory": "256Mi",
                    },
                },
                "spec": {"containers": [{
                    "name": "main",
                    "image": "smoke:1",
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                }]},
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = wait::until(
        "6 smoke pods Running",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=smoke"))
                    .await
                    .ok()?;
                let running: Vec<Pod> = list
                    .items
                    .into_iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .collect();
                (running.len() == 6).then_some(running)
            }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nscheduler log:\n{}\nkcm log:\n{}",
            cluster.log_tail("kube-scheduler", 20),
            cluster.log_tail("kube-controller-manager", 20)
        )
    });
    for pod in &running {
        let node = pod.spec.as_ref().unwrap().node_name.clone();
        assert!(
            matches!(node.as_deref(), Some("node01" | "node02" | "node03")),
            "pod placed on a lab node, got {node:?}"
        );
    }

    // The emulated kubelet metrics of the first pod's node are readable...
    let pod = &running[0];
    let pod_name = pod.metadata.name.clone().unwrap();
    let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    let pod_label = format!("pod=\"{pod_name}\"");
    // (kwok registers a pod's series shortly after it starts running.)
    let text = wait::until(
        "the pod's emulated series",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let text = cluster.node_resource_metrics(&node).await.ok()?;
            sample(&text, "pod_memory_working_set_bytes", &[&pod_label]).map(|_| text)
        },
    )
    .await
    .unwrap();
    let memory_before = sample(&text, "pod_memory_working_set_bytes", &[&pod_label]).unwrap();
    assert_eq!(memory_before, 256.0 * 1024.0 * 1024.0);
    let node_memory_before = sample(&text, "node_memory_working_set_bytes", &[]).unwrap();
    assert!(node_memory_before >= memory_before);
    let cpu_counter_before = sample(&text, "pod_cpu_usage_seconds_total", &[&pod_label]).unwrap();

    // ...and change when the pod's emulated usage changes.
    cluster
        .set_pod_usage("default", &pod_name, "2", "1Gi")
        .await
        .unwrap();
    let after = wait::until(
        "pod memory sample to follow its annotation",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let text = cluster.node_resource_metrics(&node).await.ok()?;
            let v = sample(&text, "pod_memory_working_set_bytes", &[&pod_label])?;
            (v == 1024.0 * 1024.0 * 1024.0).then_some(text)
        },
    )
    .await
    .unwrap();
    let cpu_counter_after = sample(&after, "pod_cpu_usage_seconds_total", &[&pod_label]).unwrap();
    assert!(
        cpu_counter_after > cpu_counter_before,
        "cumulative CPU grows: {cpu_counter_before} -> {cpu_counter_after}"
    );

    // Load outside pods (FreeIPA on node03) shows in the node series only.
    let before = cluster.node_resource_metrics("node03").await.unwrap();
    let node03_memory = sample(&before, "node_memory_working_set_bytes", &[]).unwrap();
    cluster
        .set_system_load("node03", 6.0, 8 << 30)
        .await
        .unwrap();
    let with_load = wait::until(
        "node03 system load in its node series",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let text = cluster.node_resource_metrics("node03").await.ok()?;
            let v = sample(&text, "node_memory_working_set_bytes", &[])?;
            (v >= node03_memory + (8u64 << 30) as f64).then_some(text)
        },
    )
    .await
    .unwrap();
    let c1 = sample(&with_load, "node_cpu_usage_seconds_total", &[]).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = cluster.node_resource_metrics("node03").await.unwrap();
    let c2 = sample(&later, "node_cpu_usage_seconds_total", &[]).unwrap();
    // At least 6 cores of system load for ~2 s.
    assert!(c2 - c1 >= 6.0 * 1.5, "node03 CPU counter {c1} -> {c2}");

    cluster.stop().await;
}
