//! Filter + prioritize over synthetic clusters of 100, 1,000 and 5,000
//! nodes, in process (no HTTP).
//!
//! - `filter_prioritize`: one filter pass and one prioritize pass over
//!   prepared snapshots (the arithmetic a scheduling cycle costs).
//! - `view_request`: what one `filter` costs before JSON: snapshots of every
//!   node from reflector stores, the per-node indexes and usage samples
//!   (20 pods per node, every pod in its node's sample), then assessment.
//! - `handler_500_nodes_230_names`: one filter / prioritize through the
//!   HTTP handler (body parsing to JSON reply), no network.
//! - `pods_by_node_build`: the pod index built from a full list (start-up,
//!   relist).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use headroom_common::resources::Resources;
use headroom_extender::policy::Policy;
use headroom_extender::scoring::{NodeSnapshot, Usage, UsageSample, Verdict, assess};
use headroom_extender::view::{
    ClusterIndex, ClusterView, MeasuredUsage, PodsByNode, PodsSeen, Reflected, StaticUsage,
};
use headroom_extender::{Settings, State, routes};
use http_body_util::Full;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;

const SIZES: [usize; 3] = [100, 1000, 5000];
const PODS_PER_NODE: usize = 20;

fn policy() -> Policy {
    Policy::from_yaml(
        r#"
caps:
  - nodeLabels: {pool: infra}
    cpuPercent: 40
    reason: FreeIPA host
  - nodeLabels: {pool: shared}
    memoryPercent: 80
    mode: soft
"#,
    )
    .expect("bench policy")
}

fn node_name(i: usize) -> String {
    format!("node{i:05}")
}

/// A deterministic spread of sizes, loads and caps.
fn snapshots(n: usize, policy: &Policy) -> Vec<NodeSnapshot> {
    (0..n)
        .map(|i| {
            let name = node_name(i);
            let pool = match i % 10 {
                0 => "infra",
                1..=3 => "shared",
                _ => "worker",
            };
            let labels = [("pool".to_string(), pool.to_string())].into();
            let cores = 4 + (i % 4) as i64 * 4;
            let alloc = Resources::new(cores * 1000, (cores * 4) << 30);
            NodeSnapshot {
                caps: Arc::new(policy.caps_for(&name, &labels, &Default::default())),
                name,
                allocatable: alloc,
                requested: Resources::new(
                    alloc.cpu_milli * (i % 7) as i64 / 10,
                    alloc.memory_bytes * (i % 9) as i64 / 10,
                ),
                usage: Usage::Sample(UsageSample {
                    cpu_milli: Some(alloc.cpu_milli * (i % 5) as i64 / 8),
                    memory_bytes: Some(alloc.memory_bytes * (i % 6) as i64 / 8),
                    age: Duration::from_secs((i % 30) as u64),
                }),
                recent: Resources::new(500 * (i % 3) as i64, 0),
            }
        })
        .collect()
}

fn filter_prioritize(c: &mut Criterion) {
    let policy = policy();
    let incoming = Resources::new(500, 1 << 30);
    let mut group = c.benchmark_group("filter_prioritize");
    for n in SIZES {
        let nodes = snapshots(n, &policy);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &nodes, |b, nodes| {
            b.iter(|| {
                let passed: Vec<&NodeSnapshot> = nodes
                    .iter()
                    .filter(|s| assess(s, incoming, false, &policy).verdict == Verdict::Pass)
                    .collect();
                let scores: Vec<i64> = passed
                    .iter()
                    .map(|s| assess(s, incoming, false, &policy).score)
                    .collect();
                black_box(scores)
            });
        });
    }
    group.finish();
}

fn pods(nodes: usize) -> Vec<Pod> {
    pods_per_node(nodes, PODS_PER_NODE)
}

fn pods_per_node(nodes: usize, per_node: usize) -> Vec<Pod> {
    (0..nodes * per_node)
        .map(|i| {
            let requests = if i % 3 == 0 {
                json!({})
            } else {
                json!({"cpu": "250m", "memory": "512Mi"})
            };
            serde_json::from_value(json!({
                "metadata": {"name": format!("p{i}"), "namespace": "bench",
                             "uid": format!("uid-{i}"), "resourceVersion": "1",
                             "creationTimestamp": "2026-12-03T10:00:00Z"},
                "spec": {
                    "nodeName": node_name(i % nodes),
                    "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1"}}}],
                    "containers": [
                        {"name": "app", "resources": {"requests": requests, "limits": {"memory": "1Gi"}}},
                        {"name": "sidecar", "resources": {"requests": {"cpu": "10m"}}}
                    ]
                },
                "status": {"phase": "Running"}
            }))
            .expect("bench pod")
        })
        .collect()
}

/// A ClusterView over stores and indexes filled as the watchers fill them,
/// and a usage sample per node that lists the node's pods (as the kubelet
/// source does).
fn view(n: usize, pods: &[Pod], sample_at: Timestamp) -> ClusterView {
    let index = Arc::new(ClusterIndex::new(Arc::new(policy())));
    let (node_store, mut node_writer) = reflector::store::<Node>();
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    let nodes: Vec<Node> = (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": node_name(i), "labels": {"pool": if i % 10 == 0 { "infra" } else { "worker" }}},
                "status": {"allocatable": {"cpu": "20", "memory": "64Gi", "pods": "110"}}
            }))
            .expect("bench node")
        })
        .collect();
    for event in list_events(nodes) {
        index.apply_node(&event);
        node_writer.apply_watcher_event(&event);
    }
    for event in list_events(pods.to_vec()) {
        index.apply_pod(&event);
        pod_writer.apply_watcher_event(&event);
    }
    let usage = StaticUsage::default();
    for i in 0..n {
        let mut seen = PodsSeen::default();
        for p in pods.iter().skip(i).step_by(n) {
            let reflected = Reflected {
                cpu: true,
                memory: true,
            };
            seen.insert(
                "bench",
                p.metadata.name.as_deref().unwrap_or_default(),
                reflected,
            );
        }
        usage.set(
            &node_name(i),
            MeasuredUsage {
                at: sample_at,
                cpu_milli: Some(3000 + (i as i64 % 7) * 1000),
                memory_bytes: Some(8 << 30),
                pods: Some(seen),
            },
        );
    }
    ClusterView::new(node_store, pod_store, index, Some(Arc::new(usage)))
}

fn list_events<K>(objects: Vec<K>) -> Vec<Event<K>> {
    std::iter::once(Event::Init)
        .chain(objects.into_iter().map(Event::InitApply))
        .chain(std::iter::once(Event::InitDone))
        .collect()
}

/// What one `filter` costs in process before JSON: snapshots of every
/// candidate node from the stores, indexes and usage, then assessment.
fn request(c: &mut Criterion) {
    let sample_at: Timestamp = "2026-12-03T09:59:00Z".parse().expect("timestamp");
    let now: Timestamp = "2026-12-03T10:00:00Z".parse().expect("timestamp");
    let policy = policy();
    let incoming: Pod = serde_json::from_value(json!({
        "metadata": {"name": "jupyter-new", "namespace": "bench"},
        "spec": {"containers": [{"name": "notebook", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}
    }))
    .expect("incoming pod");
    let mut group = c.benchmark_group("view_request");
    group.sample_size(30);
    for n in SIZES {
        let pods = pods(n);
        let view = view(n, &pods, sample_at);
        let names: Vec<String> = (0..n).map(node_name).collect();
        let supplied = HashMap::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &names, |b, names| {
            b.iter(|| {
                let assessed: Vec<Verdict> = view
                    .snapshots(names, &supplied, &incoming, now)
                    .into_iter()
                    .flatten()
                    .map(|s| assess(&s, Resources::new(500, 1 << 30), false, &policy).verdict)
                    .collect();
                black_box(assessed)
            });
        });
    }
    group.finish();
}

/// A notebook pod as kube-scheduler sends it: the z2jh shape after API
/// server defaulting (projected token volume, tolerations, security context).
fn scheduler_pod() -> serde_json::Value {
    json!({
        "metadata": {
            "name": "jupyter-user01234", "namespace": "jhub", "uid": "5d0c1c64-3f0e-4a43-9a55-0a4c1b1f2e11",
            "resourceVersion": "123456", "creationTimestamp": "2026-12-03T10:00:00Z",
            "labels": {"app": "jupyterhub", "chart": "jupyterhub-4.0.0", "component": "singleuser-server",
                       "heritage": "jupyterhub", "hub.jupyter.org/network-access-hub": "true",
                       "hub.jupyter.org/servername": "", "hub.jupyter.org/username": "user01234", "release": "jhub"},
            "annotations": {"hub.jupyter.org/username": "user01234", "hub.jupyter.org/servername": ""}
        },
        "spec": {
            "initContainers": [{"name": "block-cloud-metadata", "image": "quay.io/jupyterhub/k8s-network-tools:4.0.0",
                "command": ["iptables", "-A", "OUTPUT", "-d", "169.254.169.254", "-j", "DROP"],
                "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "privileged": true, "runAsUser": 0}}],
            "containers": [{"name": "notebook", "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.0.0",
                "args": ["jupyterhub-singleuser"],
                "ports": [{"name": "notebook-port", "containerPort": 8888, "protocol": "TCP"}],
                "env": [{"name": "JUPYTERHUB_API_URL", "value": "http://hub:8081/hub/api"},
                        {"name": "JUPYTERHUB_USER", "value": "user01234"},
                        {"name": "JUPYTERHUB_SERVICE_PREFIX", "value": "/user/user01234/"},
                        {"name": "MEM_GUARANTEE", "value": "1073741824"}],
                "resources": {"requests": {"memory": "1Gi"}},
                "volumeMounts": [{"name": "volume-user01234", "mountPath": "/home/jovyan"},
                                 {"name": "kube-api-access-x2b7k", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "lifecycle": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent", "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": false}}],
            "volumes": [{"name": "volume-user01234", "persistentVolumeClaim": {"claimName": "claim-user01234"}},
                        {"name": "kube-api-access-x2b7k", "projected": {"sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                            "defaultMode": 420}}],
            "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 1, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "automountServiceAccountToken": true,
            "securityContext": {"fsGroup": 100}, "schedulerName": "headroom-scheduler", "priority": 0,
            "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"},
                            {"key": "hub.jupyter.org_dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"},
                            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                "preference": {"matchExpressions": [{"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}}]}}
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"}
    })
}

/// One `filter` and one `prioritize` through the HTTP handler, without the
/// network: body parsing, the indexes, scoring and the JSON reply, as
/// kube-scheduler calls them (230 NodeNames: the nodes kube-scheduler
/// passes at 500 nodes with its default percentageOfNodesToScore).
fn handler(c: &mut Criterion) {
    let sample_at: Timestamp = "2026-12-03T09:59:00Z".parse().expect("timestamp");
    let n = 500;
    let pods = pods_per_node(n, 4);
    let state = Arc::new(State::new(view(n, &pods, sample_at), Settings::default()));
    state.set_ready(true);
    let names: Vec<String> = (0..230).map(|i| node_name(i * 2)).collect();
    let body = Bytes::from(
        serde_json::to_vec(&json!({"Pod": scheduler_pod(), "Nodes": null, "NodeNames": names}))
            .expect("body"),
    );
    let mut group = c.benchmark_group("handler_500_nodes_230_names");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for verb in ["filter", "prioritize"] {
        group.bench_function(verb, |b| {
            b.iter(|| {
                let req = http::Request::post(format!("/{verb}"))
                    .body(Full::new(body.clone()))
                    .expect("request");
                let reply = futures::executor::block_on(routes::handle(state.clone(), req));
                assert_eq!(reply.status(), http::StatusCode::OK);
                black_box(reply)
            });
        });
    }
    group.finish();
}

/// Building the pod index from a full list (start-up and every relist).
fn index_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("pods_by_node_build");
    group.sample_size(20);
    for n in SIZES {
        let pods = pods(n);
        group.throughput(Throughput::Elements(pods.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &pods, |b, pods| {
            b.iter(|| black_box(PodsByNode::from_pods(pods.iter()).len()));
        });
    }
    group.finish();
}

criterion_group!(benches, filter_prioritize, request, handler, index_build);
criterion_main!(benches);
