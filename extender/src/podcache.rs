//! Requests and limits per pod, remembered between requests.
//!
//! Summing requests parses every container's quantity strings; over 100,000
//! pods that is a quarter of a second per extender call (see the
//! `node_totals` benchmark). A pod's resources only change with its
//! `resourceVersion` (in-place resize), so they are kept per UID and
//! recomputed when the version moves. Entries of pods not seen in a pass are
//! dropped once they make up half the table.

use std::collections::HashMap;

use headroom_common::resources::{self, Resources};
use k8s_openapi::api::core::v1::Pod;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodResources {
    pub requests: Resources,
    pub limits: Resources,
}

impl PodResources {
    pub fn of(pod: &Pod) -> Self {
        Self {
            requests: resources::pod_requests(pod),
            limits: resources::pod_limits(pod),
        }
    }
}

#[derive(Debug)]
struct Entry {
    resource_version: String,
    resources: PodResources,
    pass: u64,
}

#[derive(Debug, Default)]
pub struct PodResourceCache {
    entries: HashMap<String, Entry>,
    pass: u64,
    seen_this_pass: usize,
}

impl PodResourceCache {
    /// Start a pass over all pods (call [`PodResourceCache::end_pass`] after).
    pub fn begin_pass(&mut self) {
        self.pass += 1;
        self.seen_this_pass = 0;
    }

    /// Drop pods that were not seen in this pass, when they are many.
    pub fn end_pass(&mut self) {
        if self.entries.len() > 2 * self.seen_this_pass.max(64) {
            let pass = self.pass;
            self.entries.retain(|_, e| e.pass == pass);
        }
    }

    pub fn get(&mut self, pod: &Pod) -> PodResources {
        let (Some(uid), Some(rv)) = (
            pod.metadata.uid.as_deref(),
            pod.metadata.resource_version.as_deref(),
        ) else {
            return PodResources::of(pod);
        };
        self.seen_this_pass += 1;
        let pass = self.pass;
        if let Some(entry) = self.entries.get_mut(uid)
            && entry.resource_version == rv
        {
            entry.pass = pass;
            return entry.resources;
        }
        let resources = PodResources::of(pod);
        self.entries.insert(
            uid.to_string(),
            Entry {
                resource_version: rv.to_string(),
                resources,
                pass,
            },
        );
        resources
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(uid: &str, rv: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "uid": uid, "resourceVersion": rv},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn remembers_until_the_resource_version_changes() {
        let mut cache = PodResourceCache::default();
        cache.begin_pass();
        assert_eq!(cache.get(&pod("a", "1", "1")).requests.cpu_milli, 1000);
        // Same version: the remembered value, even if the object differs.
        assert_eq!(cache.get(&pod("a", "1", "2")).requests.cpu_milli, 1000);
        // Resized in place: a new version is recomputed.
        assert_eq!(cache.get(&pod("a", "2", "2")).requests.cpu_milli, 2000);
        cache.end_pass();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn pods_without_uid_are_computed_each_time() {
        let mut cache = PodResourceCache::default();
        let mut p = pod("a", "1", "1");
        p.metadata.uid = None;
        assert_eq!(cache.get(&p).requests.cpu_milli, 1000);
        assert!(cache.is_empty());
    }

    #[test]
    fn gone_pods_are_swept() {
        let mut cache = PodResourceCache::default();
        cache.begin_pass();
        for i in 0..200 {
            cache.get(&pod(&format!("p{i}"), "1", "1"));
        }
        cache.end_pass();
        assert_eq!(cache.len(), 200);
        cache.begin_pass();
        for i in 0..10 {
            cache.get(&pod(&format!("p{i}"), "1", "1"));
        }
        cache.end_pass();
        assert_eq!(cache.len(), 10);
    }
}
