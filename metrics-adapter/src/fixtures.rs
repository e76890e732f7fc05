//! Builders for notebook pods and nodes, shared by tests and benchmarks.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::provider::{USERNAME_ANNOTATION, USERNAME_LABEL};

/// A Running z2jh-style notebook pod `jupyter-<user>` on `node`: labels
/// `component=singleuser-server`, `app=jupyterhub`, the username label and
/// annotation, a 2-core CPU limit and a 1Gi memory request, started at
/// `started` (RFC 3339).
pub fn notebook_pod(namespace: &str, user: &str, node: &str, started: &str) -> Pod {
    let label_user: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("jupyter-{}", label_user.to_lowercase())),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                ("component".to_string(), "singleuser-server".to_string()),
                ("app".to_string(), "jupyterhub".to_string()),
                (USERNAME_LABEL.to_string(), label_user),
                ("hub.jupyter.org/servername".to_string(), String::new()),
            ])),
            annotations: Some(BTreeMap::from([(
                USERNAME_ANNOTATION.to_string(),
                user.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            containers: vec![Container {
                name: "notebook".to_string(),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "memory".to_string(),
                        Quantity("1Gi".to_string()),
                    )])),
                    limits: Some(BTreeMap::from([(
                        "cpu".to_string(),
                        Quantity("2".to_string()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_string()),
            pod_ip: Some("10.0.0.10".to_string()),
            start_time: Some(Time(started.parse().expect("RFC 3339 start time"))),
            ..Default::default()
        }),
    }
}

/// A node with the given allocatable CPU (cores) and memory (bytes).
pub fn node(name: &str, cpu_cores: u32, memory_bytes: u64) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu_cores.to_string())),
                ("memory".to_string(), Quantity(memory_bytes.to_string())),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }
}
