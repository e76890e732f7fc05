//! A Pods-metric query (`pods/*/<metric>?labelSelector=...`) over 1,000 and
//! 10,000 notebook pods: selector evaluation and value computation against
//! the live usage cache, without HTTP.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use headroom_common::kubelet::{NodeUsage, PodKey, PodUsage, UsageCache};
use headroom_metrics_adapter::fixtures;
use headroom_metrics_adapter::provider::{self, EvalContext, Measure, NotebookSelector};
use headroom_metrics_adapter::selector;
use headroom_metrics_adapter::sources::LiveObservations;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

const PODS_PER_NODE: usize = 50;

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    reader
}

struct World {
    pods: Store<Pod>,
    nodes: Store<Node>,
    usage: UsageCache,
    now: Timestamp,
}

fn world(n: usize) -> World {
    let now = Timestamp::now();
    let nodes_count = n.div_ceil(PODS_PER_NODE);
    let mut pods = Vec::with_capacity(n + n / 10);
    let mut per_node: Vec<HashMap<PodKey, PodUsage>> = vec![HashMap::new(); nodes_count];
    for i in 0..n {
        let node = i % nodes_count;
        let pod = fixtures::notebook_pod(
            "jhub",
            &format!("user{i}"),
            &format!("node-{node}"),
            "2025-01-01T00:00:00Z",
        );
        per_node[node].insert(
            PodKey::new("jhub", pod.metadata.name.clone().unwrap()),
            PodUsage {
                cpu_cores: Some((i % 7) as f64 * 0.1),
                memory_working_set_bytes: Some(1e8 + i as f64),
                at: now,
                window: Duration::from_secs(15),
            },
        );
        pods.push(pod);
    }
    // Notebooks of another hub in another namespace, which the query skips.
    for i in 0..n / 10 {
        pods.push(fixtures::notebook_pod(
            "other",
            &format!("x{i}"),
            "node-0",
            "2025-01-01T00:00:00Z",
        ));
    }
    let usage = UsageCache::new();
    for (i, pods) in per_node.into_iter().enumerate() {
        usage.publish(NodeUsage {
            node: format!("node-{i}"),
            at: now,
            window: Duration::from_secs(15),
            cpu_cores: Some(1.0),
            memory_working_set_bytes: Some(1e9),
            pods,
        });
    }
    let nodes = (0..nodes_count)
        .map(|i| fixtures::node(&format!("node-{i}"), 16, 64 << 30))
        .collect();
    World {
        pods: store(pods),
        nodes: store(nodes),
        usage,
        now,
    }
}

fn query(
    w: &World,
    measure: Measure,
    label_selector: &selector::Selector,
    notebooks: &NotebookSelector,
) -> usize {
    let all: Vec<Arc<Pod>> = w.pods.state();
    let selected = provider::select_pods(
        all.iter().map(|p| p.as_ref()),
        notebooks,
        "jhub",
        label_selector,
    );
    let servers = HashMap::new();
    let obs = LiveObservations {
        usage: &w.usage,
        nodes: &w.nodes,
        servers: &servers,
    };
    let ctx = EvalContext {
        now: w.now,
        max_age: Duration::from_secs(60),
        active_cpu_cores: 0.05,
        active_within: Duration::from_secs(300),
    };
    let (points, errors) = provider::pods_values(
        measure,
        &selected,
        &selector::Selector::everything(),
        &obs,
        &ctx,
    )
    .expect("values");
    assert!(errors.is_empty());
    points.len()
}

fn bench(c: &mut Criterion) {
    let notebooks = NotebookSelector::default();
    let label_selector =
        selector::parse("component=singleuser-server,app=jupyterhub,hub.jupyter.org/username")
            .unwrap();
    let mut group = c.benchmark_group("pods_metric_query");
    for n in [1_000usize, 10_000] {
        let w = world(n);
        assert_eq!(
            query(&w, Measure::CpuUsageCores, &label_selector, &notebooks),
            n
        );
        for measure in [Measure::CpuUsageCores, Measure::CpuLimitFraction] {
            group.bench_with_input(BenchmarkId::new(format!("{measure:?}"), n), &w, |b, w| {
                b.iter(|| black_box(query(w, measure, &label_selector, &notebooks)))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
