//! Wiring of the shared kubelet scraper (`headroom_common::kubelet`) into the
//! extender: its client settings from the CLI, its results into metrics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use headroom_common::kubelet::{
    KubeletClient, KubeletClientConfig, ScrapeError, ScraperConfig, UsageCache,
    run_scraper_with_observer,
};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::config::ServeArgs;

/// Start scraping every node's kubelet into `cache` until `shutdown`.
pub fn start(
    args: &ServeArgs,
    nodes: Store<Node>,
    cache: UsageCache,
    state: Arc<State>,
    shutdown: CancellationToken,
) -> Result<(), ScrapeError> {
    if args.kubelet_insecure_tls {
        tracing::warn!("--kubelet-insecure-tls: kubelet serving certificates are not verified");
    }
    let client = KubeletClient::new(KubeletClientConfig {
        ca_file: args.kubelet_ca_file.clone(),
        insecure_skip_tls_verify: args.kubelet_insecure_tls,
        token_file: Some(args.kubelet_token_file.clone()),
        timeout: args.kubelet_timeout,
        ..KubeletClientConfig::default()
    })?;
    let cfg = ScraperConfig {
        interval: args.scrape_interval,
        concurrency: usize::from(args.scrape_concurrency),
        scheme: args.kubelet_scheme,
    };
    // Log when a node starts and stops failing, not on every interval.
    let failing = Mutex::new(HashSet::<String>::new());
    let observer = move |node: &str, result: Result<(), &ScrapeError>, took: Duration| {
        state.metrics.observe_scrape(took);
        let mut failing = failing.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Err(e) => {
                state.metrics.count_scrape_error(node);
                if failing.insert(node.to_string()) {
                    tracing::warn!(node, error = %e, "kubelet scrape failed");
                } else {
                    tracing::debug!(node, error = %e, "kubelet scrape failed again");
                }
            }
            Ok(()) => {
                if failing.remove(node) {
                    tracing::info!(node, "kubelet scrape works again");
                }
            }
        }
    };
    tokio::spawn(run_scraper_with_observer(
        nodes,
        client,
        cfg,
        cache,
        shutdown,
        Arc::new(observer),
    ));
    Ok(())
}
