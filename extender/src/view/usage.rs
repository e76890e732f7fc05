//! Measured usage as the view sees it, and where it comes from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use headroom_common::kubelet::{NodeUsage, UsageCache};
use jiff::Timestamp;

/// Measured usage of one node at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeasuredUsage {
    pub at: Timestamp,
    pub cpu_milli: Option<i64>,
    pub memory_bytes: Option<i64>,
    /// Pods whose usage the sample includes, by (namespace, name); `None`
    /// when the source cannot tell, and then only pods bound after `at`
    /// count as not yet measured.
    pub pods: Option<PodsSeen>,
}

/// Pods a usage sample includes, by namespace then name (nested so that a
/// lookup borrows instead of building a key).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodsSeen(HashMap<String, HashMap<String, Reflected>>);

impl PodsSeen {
    pub fn insert(&mut self, namespace: &str, name: &str, reflected: Reflected) {
        self.0
            .entry(namespace.to_string())
            .or_default()
            .insert(name.to_string(), reflected);
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Reflected> {
        self.0.get(namespace)?.get(name).copied()
    }
}

/// Which of a pod's resources a usage sample already includes. The CPU
/// rate needs two samples of the pod, so a pod that just started shows
/// memory before CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reflected {
    pub cpu: bool,
    pub memory: bool,
}

/// Where measured usage comes from: the kubelet scraper's cache in the
/// binary, a fixed table in tests and benchmarks. Samples are shared, not
/// copied: a request asks for one per candidate node.
pub trait UsageSource: Send + Sync {
    fn sample(&self, node: &str) -> Option<Arc<MeasuredUsage>>;
    /// Sample time of every node that has one (for the staleness gauge).
    fn sample_times(&self) -> Vec<(String, Timestamp)>;
    /// Why the node's latest measurement failed, if it did.
    fn last_error(&self, _node: &str) -> Option<String> {
        None
    }
}

/// A usage table set by hand.
#[derive(Debug, Default)]
pub struct StaticUsage {
    samples: RwLock<HashMap<String, Arc<MeasuredUsage>>>,
    errors: RwLock<HashMap<String, String>>,
}

impl StaticUsage {
    pub fn set(&self, node: &str, usage: MeasuredUsage) {
        write(&self.samples).insert(node.to_string(), Arc::new(usage));
    }

    pub fn set_error(&self, node: &str, error: &str) {
        write(&self.errors).insert(node.to_string(), error.to_string());
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UsageSource for StaticUsage {
    fn sample(&self, node: &str) -> Option<Arc<MeasuredUsage>> {
        read(&self.samples).get(node).cloned()
    }

    fn sample_times(&self) -> Vec<(String, Timestamp)> {
        read(&self.samples)
            .iter()
            .map(|(k, v)| (k.clone(), v.at))
            .collect()
    }

    fn last_error(&self, node: &str) -> Option<String> {
        read(&self.errors).get(node).cloned()
    }
}

/// The kubelet scraper's [`UsageCache`] as a [`UsageSource`]. Converting a
/// node's usage (its per-pod map included) costs allocations, so each node's
/// conversion is kept until the scraper publishes a newer sample: between
/// scrapes (15 s by default) every request shares one.
#[derive(Debug, Default)]
pub struct KubeletUsage {
    cache: UsageCache,
    converted: RwLock<HashMap<String, Arc<MeasuredUsage>>>,
}

impl KubeletUsage {
    pub fn new(cache: UsageCache) -> Self {
        Self {
            cache,
            converted: RwLock::default(),
        }
    }
}

/// The extender's view of a node's usage: millicores and bytes, and which
/// pods the sample includes.
pub fn measured_usage(u: &NodeUsage) -> MeasuredUsage {
    let mut seen = PodsSeen::default();
    for (key, pod) in &u.pods {
        let reflected = Reflected {
            cpu: pod.cpu_cores.is_some(),
            memory: pod.memory_working_set_bytes.is_some(),
        };
        seen.insert(&key.namespace, &key.name, reflected);
    }
    MeasuredUsage {
        at: u.at,
        cpu_milli: u.cpu_cores.map(|c| (c * 1000.0).round() as i64),
        memory_bytes: u.memory_working_set_bytes.map(|b| b.round() as i64),
        pods: Some(seen),
    }
}

impl UsageSource for KubeletUsage {
    fn sample(&self, node: &str) -> Option<Arc<MeasuredUsage>> {
        // The cache decides whether there is a sample (it expires them); the
        // conversion is reused only while it is of the same instant.
        let at = self.cache.with_node(node, |u| u.at)?;
        if let Some(converted) = read(&self.converted).get(node)
            && converted.at == at
        {
            return Some(converted.clone());
        }
        let converted = Arc::new(self.cache.with_node(node, measured_usage)?);
        write(&self.converted).insert(node.to_string(), converted.clone());
        Some(converted)
    }

    fn sample_times(&self) -> Vec<(String, Timestamp)> {
        let times = self.cache.sample_times();
        // Called periodically (staleness gauge): forget conversions of nodes
        // the cache no longer has, so removed nodes do not stay in memory.
        let present: HashSet<&str> = times.iter().map(|(n, _)| n.as_str()).collect();
        write(&self.converted).retain(|node, _| present.contains(node.as_str()));
        times
    }

    fn last_error(&self, node: &str) -> Option<String> {
        self.cache.last_error(node)
    }
}
