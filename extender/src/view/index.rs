//! Per-node indexes kept beside the reflector stores, fed by the same watch
//! events (`reflect::store_observed`), so that a request reads what it needs
//! per candidate node instead of scanning every pod and re-parsing every
//! Node. The stores stay the source of truth; an index holds only what is
//! derived from them (parsed requests, allocatable, the node's caps under
//! the policy, which is fixed for the life of the process).
//!
//! Relists follow the reflector store's semantics: `Init` starts a new
//! index, `InitApply` fills it, `InitDone` replaces the old one, so objects
//! deleted while the watch was down disappear.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use headroom_common::resources::{self, Resources};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::Event;

use super::usage::{MeasuredUsage, Reflected};
use super::{NodeTotals, scheduled_at};
use crate::policy::{
    CAP_REASON_ANNOTATION, CPU_CAP_ANNOTATION, MEMORY_CAP_ANNOTATION, NodeCaps, Policy,
};
use crate::scoring::pod_estimate;

/// What a request needs of a pod bound to a node, parsed once per change.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundPod {
    pub namespace: String,
    pub name: String,
    pub requests: Resources,
    pub limits: Resources,
    /// When it was bound (see [`scheduled_at`]).
    pub bound_at: Option<Timestamp>,
}

impl BoundPod {
    /// `None` for a pod that holds nothing on a node: unbound or terminal.
    pub fn of(pod: &Pod) -> Option<(String, Self)> {
        let node = pod.spec.as_ref()?.node_name.clone()?;
        if resources::is_terminal(pod) {
            return None;
        }
        Some((
            node,
            Self {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                requests: resources::pod_requests(pod),
                limits: resources::pod_limits(pod),
                bound_at: scheduled_at(pod),
            },
        ))
    }
}

type PodRef = (String, String);

fn pod_ref(pod: &Pod) -> PodRef {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Non-terminal bound pods, grouped by node.
#[derive(Debug, Default)]
pub struct PodsByNode {
    by_node: HashMap<String, HashMap<PodRef, BoundPod>>,
    node_of: HashMap<PodRef, String>,
    relist: Option<Box<PodsByNode>>,
}

impl PodsByNode {
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        let mut index = Self::default();
        for pod in pods {
            index.upsert(pod);
        }
        index
    }

    pub fn apply(&mut self, event: &Event<Pod>) {
        match event {
            Event::Apply(pod) => self.upsert(pod),
            Event::Delete(pod) => self.remove(&pod_ref(pod)),
            Event::Init => self.relist = Some(Box::default()),
            Event::InitApply(pod) => match &mut self.relist {
                Some(fresh) => fresh.upsert(pod),
                None => self.upsert(pod),
            },
            Event::InitDone => {
                if let Some(fresh) = self.relist.take() {
                    *self = *fresh;
                }
            }
        }
    }

    fn upsert(&mut self, pod: &Pod) {
        let key = pod_ref(pod);
        self.remove(&key);
        if let Some((node, bound)) = BoundPod::of(pod) {
            self.node_of.insert(key.clone(), node.clone());
            self.by_node.entry(node).or_default().insert(key, bound);
        }
    }

    fn remove(&mut self, key: &PodRef) {
        let Some(node) = self.node_of.remove(key) else {
            return;
        };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.remove(key);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// Number of pods indexed.
    pub fn len(&self) -> usize {
        self.node_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }

    /// The pods bound to `node`, in no particular order.
    pub fn pods_on(&self, node: &str) -> impl Iterator<Item = &BoundPod> {
        self.by_node.get(node).into_iter().flat_map(|m| m.values())
    }

    /// Requests of the node's pods and the estimates of those its usage
    /// sample does not show yet: bound after the sample was taken, or (when
    /// the sample lists its pods) missing from it, per resource. Without a
    /// sample a node has no recent pods: its load is its requests.
    /// `exclude` (namespace, name) leaves one pod out.
    pub fn totals(
        &self,
        node: &str,
        sample: Option<&MeasuredUsage>,
        default_estimate: Resources,
        exclude: Option<(&str, &str)>,
    ) -> NodeTotals {
        let mut totals = NodeTotals::default();
        for pod in self.pods_on(node) {
            if exclude.is_some_and(|(ns, n)| n == pod.name && ns == pod.namespace) {
                continue;
            }
            totals.requested += pod.requests;
            let Some(sample) = sample else {
                continue;
            };
            let measured = if pod.bound_at.is_some_and(|t| t > sample.at) {
                Reflected::default()
            } else {
                match &sample.pods {
                    // A pod can be bound before the sample and still missing
                    // from it: not started yet, or started after the
                    // kubelet's read.
                    Some(seen) => seen.get(&pod.namespace, &pod.name).unwrap_or_default(),
                    None => Reflected {
                        cpu: true,
                        memory: true,
                    },
                }
            };
            if measured.cpu && measured.memory {
                continue;
            }
            let estimate = pod_estimate(pod.requests, pod.limits, default_estimate);
            if !measured.cpu {
                totals.recent.cpu_milli += estimate.cpu_milli;
            }
            if !measured.memory {
                totals.recent.memory_bytes += estimate.memory_bytes;
            }
        }
        totals
    }
}

/// What scoring needs of a Node object: its allocatable, parsed once, and
/// its caps under the policy, resolved once per Node change instead of per
/// request (label matching and annotation parsing showed up in profiles).
/// The caps are shared with every snapshot built from them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub allocatable: Resources,
    pub caps: Arc<NodeCaps>,
    /// What the caps were resolved from, kept so that a new policy can be
    /// applied without the Node objects: the labels and the cap annotations.
    labels: BTreeMap<String, String>,
    cap_annotations: BTreeMap<String, String>,
}

impl NodeFacts {
    pub fn of(node: &Node, policy: &Policy) -> Self {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let cap_annotations = node
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| CAP_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut facts = Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            allocatable: resources::node_allocatable(node),
            caps: Arc::default(),
            labels,
            cap_annotations,
        };
        facts.resolve_caps(policy);
        facts
    }

    /// Resolves the node's caps under `policy`.
    fn resolve_caps(&mut self, policy: &Policy) {
        let caps = policy.caps_for(&self.name, &self.labels, &self.cap_annotations);
        self.caps = Arc::new(caps);
    }
}

/// The annotations [`Policy::caps_for`] reads.
const CAP_ANNOTATIONS: [&str; 3] = [
    CPU_CAP_ANNOTATION,
    MEMORY_CAP_ANNOTATION,
    CAP_REASON_ANNOTATION,
];

/// [`NodeFacts`] by node name.
#[derive(Debug)]
pub struct NodesByName {
    policy: Arc<Policy>,
    facts: HashMap<String, NodeFacts>,
    relist: Option<HashMap<String, NodeFacts>>,
}

impl NodesByName {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            policy,
            facts: HashMap::new(),
            relist: None,
        }
    }

    pub fn from_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>, policy: Arc<Policy>) -> Self {
        let mut index = Self::new(policy);
        for n in nodes {
            let facts = NodeFacts::of(n, &index.policy);
            index.facts.insert(facts.name.clone(), facts);
        }
        index
    }

    pub fn apply(&mut self, event: &Event<Node>) {
        let policy = self.policy.clone();
        let insert = |map: &mut HashMap<String, NodeFacts>, node: &Node| {
            let facts = NodeFacts::of(node, &policy);
            map.insert(facts.name.clone(), facts);
        };
        match event {
            Event::Apply(node) => insert(&mut self.facts, node),
            Event::Delete(node) => {
                self.facts
                    .remove(node.metadata.name.as_deref().unwrap_or_default());
            }
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(node) => insert(self.relist.as_mut().unwrap_or(&mut self.facts), node),
            Event::InitDone => {
                if let Some(fresh) = self.relist.take() {
                    self.facts = fresh;
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&NodeFacts> {
        self.facts.get(name)
    }

    /// The policy the caps were resolved under.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Resolves every node's caps under `policy` (a reloaded policy file);
    /// a relist in progress gets it too.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        for facts in self
            .facts
            .values_mut()
            .chain(self.relist.iter_mut().flat_map(|m| m.values_mut()))
        {
            facts.resolve_caps(&policy);
        }
        self.policy = policy;
    }

    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }
}

/// Both indexes, shared between the watch tasks (writers) and requests.
/// The policy lives with the node index, so that caps and the policy they
/// were resolved under change together.
#[derive(Debug)]
pub struct ClusterIndex {
    pods: RwLock<PodsByNode>,
    nodes: RwLock<NodesByName>,
}

impl ClusterIndex {
    /// Empty indexes; node caps are resolved under `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            nodes: RwLock::new(NodesByName::new(policy)),
            pods: RwLock::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.nodes().policy().clone()
    }

    /// Puts `policy` in force: every node's caps are resolved again.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .set_policy(policy);
    }

    pub fn apply_pod(&self, event: &Event<Pod>) {
        self.pods
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(event);
    }

    pub fn apply_node(&self, event: &Event<Node>) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(event);
    }

    // A poisoned lock means a writer panicked inside `apply`, between two
    // map operations that each leave the maps usable.
    pub fn pods(&self) -> RwLockReadGuard<'_, PodsByNode> {
        self.pods.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn nodes(&self) -> RwLockReadGuard<'_, NodesByName> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
