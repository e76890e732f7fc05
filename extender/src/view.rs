//! The extender's picture of the cluster: reflector stores of Nodes and
//! non-terminal Pods (no LIST per request), per-node indexes fed by the same
//! watch events, plus measured usage per node. Turns them into pure
//! [`NodeSnapshot`]s for `scoring`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use headroom_common::resources::Resources;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::policy::Policy;
use crate::scoring::{NodeSnapshot, Usage, UsageSample};

/// Requests and recent-pod estimates of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeTotals {
    pub requested: Resources,
    pub recent: Resources,
}

/// The reflector stores, the indexes kept beside them, and the usage source.
#[derive(Clone)]
pub struct ClusterView {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    index: Arc<ClusterIndex>,
    /// `None` with `--usage-source none`: requests only.
    pub usage: Option<Arc<dyn UsageSource>>,
}

impl ClusterView {
    /// `index` must be fed the same watch events as the stores (see
    /// [`Reflectors::start`]).
    pub fn new(
        nodes: Store<Node>,
        pods: Store<Pod>,
        index: Arc<ClusterIndex>,
        usage: Option<Arc<dyn UsageSource>>,
    ) -> Self {
        Self {
            nodes,
            pods,
            index,
            usage,
        }
    }

    /// The per-node indexes (and the policy in force).
    pub fn index(&self) -> &Arc<ClusterIndex> {
        &self.index
    }

    /// The policy node caps are resolved under (the index's).
    pub fn policy(&self) -> Arc<Policy> {
        self.index.policy()
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Snapshots for the given nodes, in order. A name missing from the node
    /// index falls back to a Node object supplied with the request (full
    /// `Nodes` mode); `None` when neither knows it. `incoming` is left out of
    /// the totals so that explaining an already bound pod does not count it
    /// twice. Reads only the indexes and the usage source: O(candidate nodes
    /// + their pods), no pass over the whole cluster.
    pub fn snapshots(
        &self,
        names: &[String],
        supplied: &HashMap<&str, &Node>,
        incoming: &Pod,
        now: Timestamp,
    ) -> Vec<Option<NodeSnapshot>> {
        // Only the node the incoming pod is bound to (explain) can hold it.
        let bound_to = incoming.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let exclude = (
            incoming.metadata.namespace.as_deref().unwrap_or_default(),
            incoming.metadata.name.as_deref().unwrap_or_default(),
        );
        let nodes = self.index.nodes();
        let policy = nodes.policy();
        let pods = self.index.pods();
        names
            .iter()
            .map(|name| {
                let supplied_facts;
                let facts = match nodes.get(name) {
                    Some(facts) => facts,
                    None => {
                        supplied_facts = NodeFacts::of(supplied.get(name.as_str())?, policy);
                        &supplied_facts
                    }
                };
                let sample = self.usage.as_ref().and_then(|u| u.sample(name));
                let usage = match (&self.usage, &sample) {
                    (None, _) => Usage::Disabled,
                    (Some(_), None) => Usage::Missing,
                    (Some(_), Some(m)) => Usage::Sample(UsageSample {
                        cpu_milli: m.cpu_milli,
                        memory_bytes: m.memory_bytes,
                        age: age(m.at, now),
                    }),
                };
                let totals = pods.totals(
                    name,
                    sample.as_deref(),
                    policy.default_estimate,
                    (bound_to == Some(name.as_str())).then_some(exclude),
                );
                Some(snapshot(facts, totals, usage))
            })
            .collect()
    }
}

/// Build a snapshot from a node's facts and totals (pure).
pub fn snapshot(facts: &NodeFacts, totals: NodeTotals, usage: Usage) -> NodeSnapshot {
    NodeSnapshot {
        caps: facts.caps.clone(),
        name: facts.name.clone(),
        allocatable: facts.allocatable,
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

/// Whether a pod is owned by a DaemonSet (exempt from hard caps by default).
pub fn is_daemon_set_pod(pod: &Pod) -> bool {
    pod.metadata.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.kind == "DaemonSet" && r.controller == Some(true))
    })
}

mod index;
mod reflectors;
mod usage;

pub use index::{BoundPod, ClusterIndex, NodeFacts, NodesByName, PodsByNode};
pub use reflectors::Reflectors;
pub use usage::{KubeletUsage, MeasuredUsage, PodsSeen, Reflected, StaticUsage, UsageSource};

#[cfg(test)]
mod tests;
