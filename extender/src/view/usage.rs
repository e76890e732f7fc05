//! Measured usage as the view sees it, and where it comes from.

use std::collections::HashMap;
use std::sync::RwLock;

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
/// binary, a fixed table in tests and benchmarks.
pub trait UsageSource: Send + Sync {
    fn sample(&self, node: &str) -> Option<MeasuredUsage>;
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
    samples: RwLock<HashMap<String, MeasuredUsage>>,
    errors: RwLock<HashMap<String, String>>,
}

impl StaticUsage {
    pub fn set(&self, node: &str, usage: MeasuredUsage) {
        write(&self.samples).insert(node.to_string(), usage);
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
    fn sample(&self, node: &str) -> Option<MeasuredUsage> {
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

impl UsageSource for headroom_common::kubelet::UsageCache {
    fn sample(&self, node: &str) -> Option<MeasuredUsage> {
        self.node(node).map(|u| MeasuredUsage {
            at: u.at,
            cpu_milli: u.cpu_cores.map(|c| (c * 1000.0).round() as i64),
            memory_bytes: u.memory_working_set_bytes.map(|b| b.round() as i64),
            pods: Some({
                let mut seen = PodsSeen::default();
                for (key, pod) in &u.pods {
                    let reflected = Reflected {
                        cpu: pod.cpu_cores.is_some(),
                        memory: pod.memory_working_set_bytes.is_some(),
                    };
                    seen.insert(&key.namespace, &key.name, reflected);
                }
                seen
            }),
        })
    }

    fn sample_times(&self) -> Vec<(String, Timestamp)> {
        self.all_nodes()
            .into_iter()
            .map(|u| (u.node, u.at))
            .collect()
    }
}
