//! Reflector stores of Nodes and non-terminal Pods, fed from the API server.

use headroom_common::reflect;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Reflector stores fed from the API server, and the tasks that feed them.
pub struct Reflectors {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
}

impl Reflectors {
    /// Start watching Nodes and non-terminal Pods. The tasks stop on
    /// `shutdown`. The stores fill only while those tasks run.
    pub fn start(client: Client, shutdown: CancellationToken) -> Self {
        let (nodes, node_task) = reflect::store(
            "nodes",
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            |_| {},
            shutdown.clone(),
        );
        let (pods, pod_task) = reflect::store(
            "pods",
            Api::<Pod>::all(client),
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
            |_| {},
            shutdown,
        );
        tokio::spawn(node_task);
        tokio::spawn(pod_task);
        Self { nodes, pods }
    }
}
