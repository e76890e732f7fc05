//! The latest usage per node and pod, written by the scraper and read by
//! request handlers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;

use super::snapshot::PodKey;
use super::usage::{NodeUsage, PodUsage};

/// Cheap to clone; all clones share one store. Locks are held only for map
/// operations, never across an await.
#[derive(Clone, Debug, Default)]
pub struct UsageCache {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<String, Published>,
    /// Which node last reported each pod.
    pod_node: HashMap<PodKey, String>,
    errors: HashMap<String, String>,
}

#[derive(Debug)]
struct Published {
    usage: NodeUsage,
    published_at: Timestamp,
}

impl UsageCache {
    pub fn new() -> Self {
        Self::default()
    }

    // A poisoned lock only means a writer panicked between two complete map
    // operations; the maps are still consistent enough to serve.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn node(&self, node: &str) -> Option<NodeUsage> {
        self.read().nodes.get(node).map(|p| p.usage.clone())
    }

    /// `f` of the node's usage, borrowed under the read lock (no copy of
    /// its per-pod map). `f` must be quick: the scraper waits for it.
    pub fn with_node<R>(&self, node: &str, f: impl FnOnce(&NodeUsage) -> R) -> Option<R> {
        self.read().nodes.get(node).map(|p| f(&p.usage))
    }

    pub fn pod(&self, pod: &PodKey) -> Option<PodUsage> {
        let inner = self.read();
        let node = inner.pod_node.get(pod)?;
        inner.nodes.get(node)?.usage.pods.get(pod).cloned()
    }

    /// Every node's usage, sorted by node name.
    pub fn all_nodes(&self) -> Vec<NodeUsage> {
        let mut all: Vec<NodeUsage> = self
            .read()
            .nodes
            .values()
            .map(|p| p.usage.clone())
            .collect();
        all.sort_by(|a, b| a.node.cmp(&b.node));
        all
    }

    /// Every node's sample time, without copying the samples.
    pub fn sample_times(&self) -> Vec<(String, Timestamp)> {
        self.read()
            .nodes
            .iter()
            .map(|(node, p)| (node.clone(), p.usage.at))
            .collect()
    }

    /// Every pod's usage, sorted by key.
    pub fn all_pods(&self) -> Vec<(PodKey, PodUsage)> {
        let inner = self.read();
        let mut all: Vec<(PodKey, PodUsage)> = inner
            .nodes
            .values()
            .flat_map(|p| p.usage.pods.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The error of the node's most recent scrape, if it failed.
    pub fn last_error(&self, node: &str) -> Option<String> {
        self.read().errors.get(node).cloned()
    }

    /// When the node's usage was last published.
    pub fn published_at(&self, node: &str) -> Option<Timestamp> {
        self.read().nodes.get(node).map(|p| p.published_at)
    }

    /// Replaces a node's usage (and the pods it reports) and clears its error.
    pub fn publish(&self, usage: NodeUsage) {
        self.publish_at(usage, Timestamp::now());
    }

    pub(crate) fn publish_at(&self, usage: NodeUsage, now: Timestamp) {
        let mut inner = self.write();
        let node = usage.node.clone();
        if let Some(old) = inner.nodes.remove(&node) {
            for key in old.usage.pods.keys() {
                if inner.pod_node.get(key) == Some(&node) {
                    inner.pod_node.remove(key);
                }
            }
        }
        for key in usage.pods.keys() {
            // A pod moves only by being recreated; the newest report wins.
            inner.pod_node.insert(key.clone(), node.clone());
        }
        inner.errors.remove(&node);
        inner.nodes.insert(
            node,
            Published {
                usage,
                published_at: now,
            },
        );
    }

    /// Records a failed scrape; the last good usage stays until it expires.
    pub fn record_error(&self, node: &str, error: impl ToString) {
        self.write()
            .errors
            .insert(node.to_owned(), error.to_string());
    }

    /// Drops a node's usage (not its error) if published before `cutoff`.
    pub fn expire(&self, node: &str, cutoff: Timestamp) {
        let mut inner = self.write();
        if inner
            .nodes
            .get(node)
            .is_some_and(|p| p.published_at < cutoff)
        {
            Self::remove_node(&mut inner, node);
        }
    }

    /// Forgets every node not in `keep`, with its pods and error.
    pub fn retain_nodes(&self, keep: &HashSet<String>) {
        let mut inner = self.write();
        let gone: Vec<String> = inner
            .nodes
            .keys()
            .chain(inner.errors.keys())
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        for node in gone {
            Self::remove_node(&mut inner, &node);
            inner.errors.remove(&node);
        }
    }

    fn remove_node(inner: &mut Inner, node: &str) {
        if let Some(old) = inner.nodes.remove(node) {
            for key in old.usage.pods.keys() {
                if inner.pod_node.get(key).map(String::as_str) == Some(node) {
                    inner.pod_node.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn usage(node: &str, pods: &[&str]) -> NodeUsage {
        let at = Timestamp::from_second(1000).unwrap();
        NodeUsage {
            node: node.into(),
            at,
            window: Duration::from_secs(15),
            cpu_cores: Some(1.0),
            memory_working_set_bytes: Some(2.0),
            pods: pods
                .iter()
                .map(|p| {
                    (
                        PodKey::new("ns", *p),
                        PodUsage {
                            cpu_cores: Some(0.5),
                            memory_working_set_bytes: Some(1.0),
                            at,
                            window: Duration::from_secs(15),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn sample_times_lists_each_node_at_its_sample() {
        let cache = UsageCache::new();
        assert!(cache.sample_times().is_empty());
        cache.publish(usage("n1", &["a"]));
        cache.publish(usage("n2", &[]));
        let mut times = cache.sample_times();
        times.sort();
        let expected: Vec<(String, Timestamp)> = cache
            .all_nodes()
            .into_iter()
            .map(|u| (u.node, u.at))
            .collect();
        assert_eq!(times, expected);
        assert_eq!(times.len(), 2);
    }

    #[test]
    fn publish_replaces_node_and_its_pods() {
        let cache = UsageCache::new();
        let clone = cache.clone();
        cache.publish(usage("n1", &["a", "b"]));
        cache.publish(usage("n2", &["c"]));
        assert!(
            clone.pod(&PodKey::new("ns", "a")).is_some(),
            "clones share state"
        );
        cache.publish(usage("n1", &["b"]));
        assert!(
            cache.pod(&PodKey::new("ns", "a")).is_none(),
            "pod gone from n1's report"
        );
        assert!(cache.pod(&PodKey::new("ns", "b")).is_some());
        assert_eq!(
            cache
                .all_nodes()
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        assert_eq!(cache.all_pods().len(), 2);
    }

    #[test]
    fn errors_are_cleared_by_success_and_nodes_retained() {
        let cache = UsageCache::new();
        cache.publish(usage("n1", &["a"]));
        cache.record_error("n1", "connection refused");
        assert_eq!(
            cache.last_error("n1").as_deref(),
            Some("connection refused")
        );
        assert!(cache.node("n1").is_some(), "last good usage kept");
        cache.publish(usage("n1", &["a"]));
        assert_eq!(cache.last_error("n1"), None);

        cache.publish(usage("n2", &["b"]));
        cache.record_error("n3", "timeout");
        cache.retain_nodes(&HashSet::from(["n2".to_owned()]));
        assert!(cache.node("n1").is_none());
        assert!(cache.pod(&PodKey::new("ns", "a")).is_none());
        assert!(cache.node("n2").is_some());
        assert_eq!(cache.last_error("n3"), None);
    }

    #[test]
    fn expire_drops_only_old_usage() {
        let cache = UsageCache::new();
        let t = |s| Timestamp::from_second(s).unwrap();
        cache.publish_at(usage("n1", &["a"]), t(100));
        cache.expire("n1", t(50));
        assert!(cache.node("n1").is_some());
        cache.expire("n1", t(150));
        assert!(cache.node("n1").is_none());
        assert!(cache.pod(&PodKey::new("ns", "a")).is_none());
    }
}
