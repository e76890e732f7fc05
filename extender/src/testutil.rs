//! Builders for tests: Nodes, Pods, and a [`ClusterView`] over in-memory
//! reflector stores fed through `apply_watcher_event`.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use crate::view::{ClusterIndex, ClusterView, UsageSource};

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

pub fn node(name: &str, cpu: &str, memory: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}},
    }))
    .expect("valid node")
}

/// A pod with one container; `node` sets `spec.nodeName`.
pub fn pod(name: &str, namespace: &str, node: Option<&str>, requests: Value, limits: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "x",
        "resources": {"requests": requests, "limits": limits}}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "spec": spec,
        "status": {"phase": if node.is_some() { "Running" } else { "Pending" }},
    }))
    .expect("valid pod")
}

/// A store filled by a list, as the watcher delivers one; every event also
/// goes to `observe`, as `reflect::store_observed` does.
fn filled<K>(objects: Vec<K>, mut observe: impl FnMut(&Event<K>)) -> reflector::Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store::<K>();
    let events = std::iter::once(Event::Init)
        .chain(objects.into_iter().map(Event::InitApply))
        .chain(std::iter::once(Event::InitDone));
    for event in events {
        observe(&event);
        writer.apply_watcher_event(&event);
    }
    store
}

/// A view over filled stores and indexes, with the default policy.
pub fn view_with(
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    usage: Option<Arc<dyn UsageSource>>,
) -> ClusterView {
    view_with_policy(nodes, pods, usage, crate::policy::Policy::default())
}

pub fn view_with_policy(
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    usage: Option<Arc<dyn UsageSource>>,
    policy: crate::policy::Policy,
) -> ClusterView {
    let index = Arc::new(ClusterIndex::new(Arc::new(policy)));
    let nodes = filled(nodes, |e| index.apply_node(e));
    let pods = filled(pods, |e| index.apply_pod(e));
    ClusterView::new(nodes, pods, index, usage)
}

/// Three nodes like the e2e cluster: node01 and node02 free-ish, node03 a
/// 4-core FreeIPA host capped at 40% CPU (example policy) measured at 1.34
/// cores, so a 500m pod would take it to 46%.
pub fn three_node_state() -> crate::State {
    use crate::view::{MeasuredUsage, StaticUsage};

    let now = Timestamp::now();
    let usage = Arc::new(StaticUsage::default());
    for (name, cpu) in [("node01", 400), ("node02", 200), ("node03", 1340)] {
        usage.set(
            name,
            MeasuredUsage {
                at: now,
                cpu_milli: Some(cpu),
                memory_bytes: Some(1 << 30),
                pods: None,
            },
        );
    }
    let policy = crate::policy::Policy::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policy.yaml"
    )))
    .expect("example policy");
    let view = view_with_policy(
        vec![
            node("node01", "4", "8Gi"),
            node("node02", "4", "8Gi"),
            node("node03", "4", "8Gi"),
        ],
        vec![
            pod(
                "busy",
                "jhub",
                Some("node02"),
                json!({"cpu": "2"}),
                json!({}),
            ),
            pod("jupyter-alice", "jhub", None, json!({}), json!({})),
        ],
        Some(usage.clone()),
        policy,
    );
    usage.set_error(
        "node02",
        "GET http://192.0.2.2:10250/metrics/resource: timed out",
    );
    let state = crate::State::new(view, crate::Settings::default());
    state.set_ready(true);
    state
}

/// An ExtenderArgs body in `nodeCacheCapable: true` form.
pub fn args_json(pod: &Pod, names: &[&str]) -> Value {
    json!({"Pod": pod, "Nodes": null, "NodeNames": names})
}

/// A Kubernetes `Time` (k8s-openapi's own jiff version).
pub fn k8s_time(s: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().expect("valid timestamp"))
}
