//! Reflector stores of Nodes and non-terminal Pods, fed from the API server.

use std::sync::Arc;

use headroom_common::reflect;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::ClusterIndex;
use crate::policy::Policy;

/// Reflector stores fed from the API server, the indexes fed by the same
/// events, and the tasks that feed them.
pub struct Reflectors {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub index: Arc<ClusterIndex>,
}

impl Reflectors {
    /// Start watching Nodes and non-terminal Pods. The tasks stop on
    /// `shutdown`. The stores fill only while those tasks run.
    /// `policy` resolves node caps in the index.
    pub fn start(client: Client, policy: Arc<Policy>, shutdown: CancellationToken) -> Self {
        let index = Arc::new(ClusterIndex::new(policy));
        let node_index = index.clone();
        let (nodes, node_task) = reflect::store_observed(
            "nodes",
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            |_| {},
            move |event| node_index.apply_node(event),
            shutdown.clone(),
        );
        let pod_index = index.clone();
        let (pods, pod_task) = reflect::store_observed(
            "pods",
            Api::<Pod>::all(client),
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
            |_| {},
            move |event| pod_index.apply_pod(event),
            shutdown,
        );
        tokio::spawn(node_task);
        tokio::spawn(pod_task);
        Self { nodes, pods, index }
    }
}
