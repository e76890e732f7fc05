//! Fake nodes managed by kwok.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use crate::kwok;

/// Label on the node that hosts FreeIPA in the users' cluster (node03).
pub const FREEIPA_LABEL: &str = "lab.headroom.dev/freeipa";
/// Annotation kwok selects the nodes it manages by.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// One fake node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    /// Allocatable CPU, a Quantity string ("20").
    pub cpu: String,
    /// Allocatable memory, a Quantity string ("64Gi").
    pub memory: String,
    pub labels: BTreeMap<String, String>,
}

impl NodeSpec {
    /// A worker with kubeadm-like labels.
    pub fn new(name: &str, cpu: &str, memory: &str) -> Self {
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
        ]);
        Self {
            name: name.to_string(),
            cpu: cpu.to_string(),
            memory: memory.to_string(),
            labels,
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// The users' cluster: node01–node03, 20 cores and 64Gi each, node03 the
    /// FreeIPA host.
    pub fn lab_default() -> Vec<Self> {
        vec![
            Self::new("node01", "20", "64Gi"),
            Self::new("node02", "20", "64Gi"),
            Self::new("node03", "20", "64Gi").label(FREEIPA_LABEL, "true"),
        ]
    }

    /// `count` nodes named node01.. (node001.. past 99) with the same size.
    pub fn uniform(count: usize, cpu: &str, memory: &str) -> Vec<Self> {
        let width = if count > 99 { 3 } else { 2 };
        (1..=count)
            .map(|i| Self::new(&format!("node{i:0width$}"), cpu, memory))
            .collect()
    }

    /// The Node object, with the status kwok keeps: allocatable, a loopback
    /// InternalIP and kwok's port as the kubelet port, so scrapers reach
    /// kwok's emulated kubelet directly.
    pub fn to_node(&self, kwok_port: u16) -> Node {
        let resources = json!({"cpu": self.cpu, "memory": self.memory, "pods": "110"});
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels,
                "annotations": {
                    KWOK_NODE_ANNOTATION: "fake",
                    kwok::RESOURCE_METRICS_PATH: kwok::resource_metrics_path(&self.name),
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "status": {
                "allocatable": resources,
                "capacity": resources,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kwok_port}},
            },
        }))
        .expect("node JSON matches the Node type")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_default_mirrors_the_users_cluster() {
        let nodes = NodeSpec::lab_default();
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node01", "node02", "node03"]);
        assert!(nodes[2].labels.contains_key(FREEIPA_LABEL));
        assert!(!nodes[0].labels.contains_key(FREEIPA_LABEL));
        let node = nodes[0].to_node(10250);
        let status = node.status.unwrap();
        assert_eq!(status.allocatable.unwrap()["cpu"].0, "20");
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
    }

    #[test]
    fn uniform_names_sort_in_order() {
        let nodes = NodeSpec::uniform(120, "8", "32Gi");
        assert_eq!(nodes[0].name, "node001");
        assert_eq!(nodes[119].name, "node120");
    }
}
