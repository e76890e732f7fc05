//! Filter + prioritize scoring over synthetic clusters of 100, 1,000 and
//! 5,000 nodes: pure functions only, no HTTP, no stores.
//!
//! - `filter_prioritize`: one filter pass and one prioritize pass over
//!   prepared snapshots (the arithmetic a scheduling cycle costs).
//! - `node_totals`: the per-request pass over all pods that sums requests and
//!   recent-pod estimates per node (20 pods per node).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use headroom_common::resources::Resources;
use headroom_extender::podcache::PodResourceCache;
use headroom_extender::policy::Policy;
use headroom_extender::scoring::{NodeSnapshot, Usage, UsageSample, Verdict, assess};
use headroom_extender::view::{MeasuredUsage, node_totals};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
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
                caps: policy.caps_for(&name, &labels, &Default::default()),
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
    (0..nodes * PODS_PER_NODE)
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

fn totals(c: &mut Criterion) {
    let sample_at: Timestamp = "2026-12-03T09:59:00Z".parse().expect("timestamp");
    let default = Resources::new(500, 512 << 20);
    let mut group = c.benchmark_group("node_totals");
    group.sample_size(20);
    for n in SIZES {
        let pods = pods(n);
        let names: Vec<String> = (0..n).map(node_name).collect();
        let samples: HashMap<&str, Option<MeasuredUsage>> = names
            .iter()
            .map(|n| {
                let usage = MeasuredUsage {
                    at: sample_at,
                    ..MeasuredUsage::default()
                };
                (n.as_str(), Some(usage))
            })
            .collect();
        group.throughput(Throughput::Elements(pods.len() as u64));
        // Warm: every pod's requests remembered from an earlier request.
        let mut cache = PodResourceCache::default();
        group.bench_with_input(BenchmarkId::new("warm", n), &pods, |b, pods| {
            b.iter(|| {
                black_box(node_totals(
                    pods.iter(),
                    &samples,
                    default,
                    None,
                    &mut cache,
                ))
            });
        });
        // Cold: the first request after start (or a pass with no cache).
        group.bench_with_input(BenchmarkId::new("cold", n), &pods, |b, pods| {
            b.iter(|| {
                let mut cache = PodResourceCache::default();
                black_box(node_totals(
                    pods.iter(),
                    &samples,
                    default,
                    None,
                    &mut cache,
                ))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, filter_prioritize, totals);
criterion_main!(benches);
