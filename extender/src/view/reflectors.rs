//! Reflector stores of Nodes and non-terminal Pods, fed from the API server.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
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
        let (nodes, node_writer) = reflector::store::<Node>();
        let (pods, pod_writer) = reflector::store::<Pod>();
        let node_stream = watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .modify(|node| node.managed_fields_mut().clear())
        .default_backoff()
        .reflect(node_writer)
        .applied_objects();
        let pod_stream = watcher(
            Api::<Pod>::all(client),
            watcher::Config::default()
                .any_semantic()
                .fields("status.phase!=Succeeded,status.phase!=Failed"),
        )
        .modify(|pod| pod.managed_fields_mut().clear())
        .default_backoff()
        .reflect(pod_writer)
        .applied_objects();
        tokio::spawn(drive("nodes", node_stream, shutdown.clone()));
        tokio::spawn(drive("pods", pod_stream, shutdown));
        Self { nodes, pods }
    }
}

async fn drive<S, K>(what: &'static str, stream: S, shutdown: CancellationToken)
where
    S: futures::Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            item = stream.next() => match item {
                Some(Ok(_)) => {}
                // The stream retries with backoff by itself; just report.
                Some(Err(e)) => tracing::warn!(watch = what, error = %e, "watch error"),
                None => {
                    tracing::error!(watch = what, "watch stream ended");
                    return;
                }
            },
        }
    }
}
