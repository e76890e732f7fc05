//! The extender's picture of the cluster: reflector stores of Nodes and
//! non-terminal Pods (the only cache; no LIST per request) plus measured usage
//! per node. Turns them into pure [`NodeSnapshot`]s for `scoring`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headroom_common::resources::{self, Resources};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::podcache::{PodResourceCache, PodResources};
use crate::policy::Policy;
use crate::scoring::{NodeSnapshot, Usage, UsageSample, pod_estimate};

/// Requests and recent-pod estimates of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeTotals {
    pub requested: Resources,
    pub recent: Resources,
}

/// The reflector stores plus the usage source.
#[derive(Clone)]
pub struct ClusterView {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    /// `None` with `--usage-source none`: requests only.
    pub usage: Option<Arc<dyn UsageSource>>,
    pod_resources: Arc<Mutex<PodResourceCache>>,
}

impl ClusterView {
    pub fn new(nodes: Store<Node>, pods: Store<Pod>, usage: Option<Arc<dyn UsageSource>>) -> Self {
        Self {
            nodes,
            pods,
            usage,
            pod_resources: Arc::default(),
        }
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Snapshots for the given nodes, in order. A name missing from the node
    /// store falls back to a Node object supplied with the request (full
    /// `Nodes` mode); `None` when neither knows it. `incoming` is left out of
    /// the totals so that explaining an already bound pod does not count it twice.
    pub fn snapshots(
        &self,
        names: &[String],
        supplied: &HashMap<&str, &Node>,
        incoming: &Pod,
        policy: &Policy,
        now: Timestamp,
    ) -> Vec<Option<NodeSnapshot>> {
        let nodes: Vec<Option<Arc<Node>>> = names
            .iter()
            .map(|n| {
                self.node(n).or_else(|| {
                    supplied
                        .get(n.as_str())
                        .map(|node| Arc::new((*node).clone()))
                })
            })
            .collect();
        let samples: HashMap<&str, Option<MeasuredUsage>> = names
            .iter()
            .map(|n| (n.as_str(), self.usage.as_ref().and_then(|u| u.sample(n))))
            .collect();
        let exclude = (
            incoming.namespace().unwrap_or_default(),
            incoming.name_any(),
        );
        let pods = self.pods.state();
        let totals = node_totals(
            pods.iter().map(|p| p.as_ref()),
            &samples,
            policy.default_estimate,
            Some((&exclude.0, &exclude.1)),
            &mut self
                .pod_resources
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        names
            .iter()
            .zip(nodes)
            .map(|(name, node)| {
                let node = node?;
                let usage = match &self.usage {
                    None => Usage::Disabled,
                    Some(_) => match samples.get(name.as_str()).cloned().flatten() {
                        None => Usage::Missing,
                        Some(m) => Usage::Sample(UsageSample {
                            cpu_milli: m.cpu_milli,
                            memory_bytes: m.memory_bytes,
                            age: age(m.at, now),
                        }),
                    },
                };
                let totals = totals.get(name.as_str()).copied().unwrap_or_default();
                Some(snapshot(&node, totals, usage, policy))
            })
            .collect()
    }
}

/// Build a snapshot from a Node and its totals (pure).
pub fn snapshot(node: &Node, totals: NodeTotals, usage: Usage, policy: &Policy) -> NodeSnapshot {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
    let name = node.name_any();
    NodeSnapshot {
        caps: policy.caps_for(&name, labels, annotations),
        name,
        allocatable: resources::node_allocatable(node),
        requested: totals.requested,
        usage,
        recent: totals.recent,
    }
}

/// Time since `at`, zero when `at` lies in the future (clock skew).
pub fn age(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO)
}

/// When the pod was bound: the PodScheduled condition's last transition to
/// True, else its creation (pods created with `spec.nodeName` set never get
/// that condition from the scheduler).
pub fn scheduled_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| from_k8s_time(&t.0))
        .or_else(|| {
            pod.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| from_k8s_time(&t.0))
        })
}

/// k8s-openapi uses jiff 0.2, the workspace jiff 1: convert through seconds.
fn from_k8s_time(t: &k8s_openapi::jiff::Timestamp) -> Timestamp {
    Timestamp::new(t.as_second(), t.subsec_nanosecond()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One pass over the pods: per wanted node (the keys of `samples`), the sum
/// of requests of its non-terminal pods, and the estimates of those its usage
/// sample does not show yet: bound after the sample was taken, or (when the
/// sample lists its pods) missing from it, per resource. A node without a
/// sample has no recent pods: its load is its requests. `exclude`
/// (namespace, name) leaves one pod out.
pub fn node_totals<'a>(
    pods: impl Iterator<Item = &'a Pod>,
    samples: &HashMap<&str, Option<MeasuredUsage>>,
    default_estimate: Resources,
    exclude: Option<(&str, &str)>,
    cache: &mut PodResourceCache,
) -> HashMap<String, NodeTotals> {
    let mut totals: HashMap<String, NodeTotals> = HashMap::with_capacity(samples.len());
    cache.begin_pass();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let Some(sample) = samples.get(node) else {
            continue;
        };
        if resources::is_terminal(pod) {
            continue;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if exclude.is_some_and(|(ns, n)| ns == namespace && n == name) {
            continue;
        }
        let PodResources { requests, limits } = cache.get(pod);
        // get_mut first: no key allocation for every pod of a known node.
        let entry = match totals.get_mut(node) {
            Some(entry) => entry,
            None => totals.entry(node.to_string()).or_default(),
        };
        entry.requested += requests;
        let Some(sample) = sample else {
            continue;
        };
        let measured = if scheduled_at(pod).is_some_and(|t| t > sample.at) {
            Reflected::default()
        } else {
            match &sample.pods {
                // A pod can be bound before the sample and still missing from
                // it: not started yet, or started after the kubelet's read.
                Some(pods) => pods.get(namespace, name).unwrap_or_default(),
                None => Reflected {
                    cpu: true,
                    memory: true,
                },
            }
        };
        if measured.cpu && measured.memory {
            continue;
        }
        let estimate = pod_estimate(requests, limits, default_estimate);
        if !measured.cpu {
            entry.recent.cpu_milli += estimate.cpu_milli;
        }
        if !measured.memory {
            entry.recent.memory_bytes += estimate.memory_bytes;
        }
    }
    cache.end_pass();
    totals
}

/// Whether a pod is owned by a DaemonSet (exempt from hard caps by default).
pub fn is_daemon_set_pod(pod: &Pod) -> bool {
    pod.metadata.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.kind == "DaemonSet" && r.controller == Some(true))
    })
}

mod reflectors;
mod usage;

pub use reflectors::Reflectors;
pub use usage::{MeasuredUsage, PodsSeen, Reflected, StaticUsage, UsageSource};

#[cfg(test)]
mod tests;
