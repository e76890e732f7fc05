//! The scrape loop: every interval, every node in the reflector store, with
//! bounded concurrency; the previous snapshot per node kept for rates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::Store;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::cache::UsageCache;
use super::client::{KubeletClient, ScrapeError};
use super::snapshot::ResourceSnapshot;
use super::target::{Scheme, target_for_node};
use super::usage::{carry_forward, usage_between, usage_from_snapshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScraperConfig {
    pub interval: Duration,
    /// Scrapes in flight at once (at least one).
    pub concurrency: usize,
    pub scheme: Scheme,
}

impl Default for ScraperConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            concurrency: 16,
            scheme: Scheme::Https,
        }
    }
}

impl ScraperConfig {
    /// A CPU rate or a node's usage older than this is not served.
    fn max_age(&self) -> Duration {
        self.interval.max(MIN_INTERVAL) * 3
    }
}

const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Told about every scrape, e.g. to count successes and errors and observe
/// durations in Prometheus metrics. Closures of the same shape implement it.
pub trait ScrapeObserver: Send + Sync {
    fn scraped(&self, node: &str, result: Result<(), &ScrapeError>, duration: Duration);
}

impl<F> ScrapeObserver for F
where
    F: Fn(&str, Result<(), &ScrapeError>, Duration) + Send + Sync,
{
    fn scraped(&self, node: &str, result: Result<(), &ScrapeError>, duration: Duration) {
        self(node, result, duration)
    }
}

struct NoObserver;

impl ScrapeObserver for NoObserver {
    fn scraped(&self, _: &str, _: Result<(), &ScrapeError>, _: Duration) {}
}

/// Runs until `shutdown` is cancelled. See [`run_scraper_with_observer`].
pub async fn run_scraper(
    nodes: Store<Node>,
    client: KubeletClient,
    cfg: ScraperConfig,
    cache: UsageCache,
    shutdown: CancellationToken,
) {
    run_scraper_with_observer(nodes, client, cfg, cache, shutdown, Arc::new(NoObserver)).await
}

/// Scrapes every node in `nodes` each `cfg.interval` (first round at once),
/// at most `cfg.concurrency` at a time, and publishes usage to `cache`:
/// memory after the first scrape of a node, CPU rates from the second.
/// Nodes that left the store are forgotten; a node whose scrapes keep failing
/// loses its usage after three intervals, with the error in
/// [`UsageCache::last_error`].
pub async fn run_scraper_with_observer(
    nodes: Store<Node>,
    client: KubeletClient,
    cfg: ScraperConfig,
    cache: UsageCache,
    shutdown: CancellationToken,
    observer: Arc<dyn ScrapeObserver>,
) {
    let mut ticker = tokio::time::interval(cfg.interval.max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut state = ScrapeState::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let current: Vec<Arc<Node>> = nodes.state();
        let round = scrape_round(&current, &client, &cfg, &observer);
        let results = tokio::select! {
            _ = shutdown.cancelled() => break,
            results = round => results,
        };
        let present: HashSet<String> = current
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        state.apply(results, &present, &cache, cfg.max_age(), Timestamp::now());
    }
    tracing::debug!("kubelet scraper stopped");
}

#[tracing::instrument(level = "debug", skip_all, fields(nodes = nodes.len()))]
async fn scrape_round(
    nodes: &[Arc<Node>],
    client: &KubeletClient,
    cfg: &ScraperConfig,
    observer: &Arc<dyn ScrapeObserver>,
) -> Vec<(String, Result<ResourceSnapshot, ScrapeError>)> {
    // Each future owns what it uses (the client is a cheap handle), and they
    // are collected before polling: a stream over a borrowing iterator
    // adaptor makes the whole loop future non-`Send`.
    let scrapes: Vec<_> = nodes
        .iter()
        .filter_map(|node| {
            let name = node.metadata.name.clone()?;
            let target = target_for_node(node, cfg.scheme);
            let (client, observer) = (client.clone(), observer.clone());
            Some(async move {
                let started = Instant::now();
                let result = match target {
                    Ok(target) => client.scrape(&target).await,
                    Err(e) => Err(ScrapeError::from(e)),
                };
                observer.scraped(&name, result.as_ref().map(|_| ()), started.elapsed());
                (name, result)
            })
        })
        .collect();
    futures::stream::iter(scrapes)
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await
}

/// What the loop remembers between rounds (pure; tested without a network).
#[derive(Default)]
struct ScrapeState {
    previous: HashMap<String, ResourceSnapshot>,
}

impl ScrapeState {
    fn apply(
        &mut self,
        results: Vec<(String, Result<ResourceSnapshot, ScrapeError>)>,
        present: &HashSet<String>,
        cache: &UsageCache,
        max_age: Duration,
        now: Timestamp,
    ) {
        for (node, result) in results {
            match result {
                Ok(snapshot) => {
                    let mut usage = match self.previous.get(&node) {
                        Some(prev) => usage_between(prev, &snapshot),
                        None => usage_from_snapshot(&snapshot),
                    };
                    if let Some(last) = cache.node(&node) {
                        carry_forward(&mut usage, &last, max_age);
                    }
                    cache.publish_at(usage, now);
                    self.previous.insert(node, snapshot);
                }
                Err(error) => {
                    tracing::warn!(%node, %error, "kubelet scrape failed");
                    cache.record_error(&node, &error);
                    let cutoff = now.checked_sub(max_age).unwrap_or(now);
                    cache.expire(&node, cutoff);
                }
            }
        }
        self.previous.retain(|node, _| present.contains(node));
        cache.retain_nodes(present);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::snapshot::{Counter, PodKey, PodSample};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn snap(node: &str, at: i64, cpu: f64, mem: f64) -> ResourceSnapshot {
        ResourceSnapshot {
            node: node.into(),
            taken_at: ts(at),
            node_cpu_seconds: Some(Counter {
                value: cpu,
                at: ts(at),
            }),
            node_memory_working_set_bytes: Some(mem),
            pods: HashMap::from([(
                PodKey::new("ns", "p"),
                PodSample {
                    cpu_seconds: Some(Counter {
                        value: cpu / 2.0,
                        at: ts(at),
                    }),
                    memory_working_set_bytes: Some(mem / 2.0),
                },
            )]),
        }
    }

    #[test]
    fn first_round_memory_then_rates_then_expiry_and_removal() {
        let cache = UsageCache::new();
        let mut state = ScrapeState::default();
        let both = HashSet::from(["a".to_owned(), "b".to_owned()]);
        let max_age = Duration::from_secs(45);

        state.apply(
            vec![
                ("a".into(), Ok(snap("a", 100, 10.0, 1000.0))),
                ("b".into(), Ok(snap("b", 100, 0.0, 5.0))),
            ],
            &both,
            &cache,
            max_age,
            ts(100),
        );
        let a = cache.node("a").unwrap();
        assert_eq!(
            (a.cpu_cores, a.memory_working_set_bytes),
            (None, Some(1000.0))
        );

        state.apply(
            vec![
                ("a".into(), Ok(snap("a", 110, 30.0, 2000.0))),
                (
                    "b".into(),
                    Err(ScrapeError::Timeout(Duration::from_secs(1))),
                ),
            ],
            &both,
            &cache,
            max_age,
            ts(110),
        );
        let a = cache.node("a").unwrap();
        assert_eq!(a.cpu_cores, Some(2.0));
        assert_eq!(a.memory_working_set_bytes, Some(2000.0));
        assert_eq!(
            cache.pod(&PodKey::new("ns", "p")).unwrap().cpu_cores,
            Some(1.0)
        );
        assert!(
            cache
                .last_error("b")
                .unwrap()
                .contains("no complete response")
        );
        assert!(
            cache.node("b").is_some(),
            "recent usage survives one failure"
        );

        // b keeps failing past max_age: its usage goes; a leaves the store.
        let only_b = HashSet::from(["b".to_owned()]);
        state.apply(
            vec![("b".into(), Err(ScrapeError::NoTrustAnchors))],
            &only_b,
            &cache,
            max_age,
            ts(200),
        );
        assert!(cache.node("b").is_none());
        assert!(cache.last_error("b").is_some());
        assert!(cache.node("a").is_none());
        assert!(!state.previous.contains_key("a"));
    }
}

#[cfg(test)]
mod send_check {
    use super::*;

    /// Binaries `tokio::spawn` the loop, which needs a `Send` future.
    #[test]
    fn scraper_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let (store, _writer) = kube::runtime::reflector::store::<Node>();
        let client = KubeletClient::new(Default::default()).unwrap();
        let fut = run_scraper(
            store,
            client,
            ScraperConfig::default(),
            UsageCache::new(),
            CancellationToken::new(),
        );
        assert_send(&fut);
    }
}
