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

/// Nodes whose CPU is not measured yet (a rate needs two scrapes) and whose
/// kubelet has not failed either: what readiness waits for. A failing
/// kubelet does not hold readiness back; its node is scored on requests and
/// `explain` shows the error.
pub fn awaiting_usage<'a>(
    nodes: impl IntoIterator<Item = &'a str>,
    cache: &UsageCache,
) -> Vec<String> {
    nodes
        .into_iter()
        .filter(|node| {
            let measured = cache
                .with_node(node, |u| u.cpu_cores.is_some())
                .unwrap_or(false);
            !measured && cache.last_error(node).is_none()
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use headroom_common::kubelet::NodeUsage;

    use super::*;

    fn usage(node: &str, cpu: Option<f64>) -> NodeUsage {
        NodeUsage {
            node: node.into(),
            at: jiff::Timestamp::now(),
            window: Duration::from_secs(15),
            cpu_cores: cpu,
            memory_working_set_bytes: Some(1e9),
            pods: HashMap::new(),
        }
    }

    #[test]
    fn readiness_waits_for_measured_cpu_or_a_failed_kubelet() {
        let cache = UsageCache::new();
        let nodes = ["node01", "node02", "node03"];
        assert_eq!(awaiting_usage(nodes, &cache), nodes);
        // One scrape: memory, but no CPU rate yet.
        cache.publish(usage("node01", None));
        cache.publish(usage("node02", Some(2.0)));
        assert_eq!(awaiting_usage(nodes, &cache), ["node01", "node03"]);
        cache.record_error("node03", "connection refused");
        cache.publish(usage("node01", Some(1.0)));
        assert!(awaiting_usage(nodes, &cache).is_empty());
    }
}
