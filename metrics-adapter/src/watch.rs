//! Watches: notebook pods and (scraped) nodes into reflector stores, the only
//! caches requests read (never a LIST per request), and the requestheader
//! ConfigMap, re-applied to authentication and TLS whenever it changes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use headroom_common::reflect;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::app::State;
use crate::auth::RequestHeaderConfig;
use crate::selector::Selector;

async fn until_cancelled(shutdown: CancellationToken, task: impl Future<Output = ()>) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = task => {}
    }
}

/// A reflector over notebook pods (label selector applied by the API
/// server), optionally in one namespace. Poll the returned future to keep the
/// store filled.
pub fn pods(
    client: Client,
    namespace: Option<&str>,
    selector: &Selector,
    shutdown: CancellationToken,
) -> (Store<Pod>, impl Future<Output = ()> + Send + 'static) {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let config = watcher::Config::default().labels(&selector.to_string());
    reflect::store("pods", api, config, |_| {}, shutdown)
}

/// A reflector over the nodes to scrape (all nodes, or those matching the
/// configured node selector).
pub fn nodes(
    client: Client,
    selector: &Selector,
    shutdown: CancellationToken,
) -> (Store<Node>, impl Future<Output = ()> + Send + 'static) {
    let api: Api<Node> = Api::all(client);
    let mut config = watcher::Config::default();
    if !selector.is_empty() {
        config = config.labels(&selector.to_string());
    }
    // Images are the bulk of a Node object and never read here.
    let strip_images = |node: &mut Node| {
        if let Some(status) = node.status.as_mut() {
            status.images = None;
        }
    };
    reflect::store("nodes", api, config, strip_images, shutdown)
}

/// Marks the stores as synced in `state.readiness` once their first list
/// has arrived.
pub async fn mark_synced(state: Arc<State>) {
    if state.pods.wait_until_ready().await.is_ok() {
        state.readiness.pods_synced.store(true, Ordering::Relaxed);
        tracing::info!(pods = state.pods.state().len(), "notebook pod cache synced");
    }
    if state.nodes.wait_until_ready().await.is_ok() {
        state.readiness.nodes_synced.store(true, Ordering::Relaxed);
        tracing::info!(nodes = state.nodes.state().len(), "node cache synced");
    }
}

/// Watches `namespace/name` (the `extension-apiserver-authentication`
/// ConfigMap) and applies every version of it to `state`. A version that
/// does not parse is logged and the previous configuration kept.
pub async fn request_header_config(
    client: Client,
    namespace: String,
    name: String,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff().applied_objects();
    let apply = stream.for_each(|event| {
        let state = state.clone();
        let (namespace, name) = (namespace.clone(), name.clone());
        async move {
            let cm = match event {
                Ok(cm) => cm,
                Err(e) => {
                    tracing::warn!(error = %e, "ConfigMap {namespace}/{name} watch error");
                    return;
                }
            };
            let data = cm.data.unwrap_or_default();
            match RequestHeaderConfig::from_config_map(&data) {
                Ok(cfg) => {
                    let names = cfg.allowed_names.clone();
                    match state.apply_request_header_config(cfg) {
                        Ok(()) => tracing::info!(allowed_names = ?names, "requestheader configuration applied"),
                        Err(e) => tracing::error!(error = %e, "requestheader CA rejected by TLS"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "ConfigMap {namespace}/{name}: keeping the previous configuration"),
            }
        }
    });
    until_cancelled(shutdown, apply).await;
}
