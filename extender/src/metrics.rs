//! Prometheus metrics of the extender (`/metrics`, OpenMetrics text).

use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::view::age;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

type HistogramFamily = Family<VerbLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    request_duration: HistogramFamily,
    decisions: Family<VerdictLabels, Counter>,
    scrape_errors: Family<NodeLabels, Counter>,
    scrape_duration: Histogram,
    usage_staleness: Family<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    policy_reloads: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s: kube-scheduler's default extender timeout is 5 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("headroom_extender");
        let request_duration: HistogramFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let decisions = Family::<VerdictLabels, Counter>::default();
        let scrape_errors = Family::<NodeLabels, Counter>::default();
        let usage_staleness = Family::default();
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Changes of the policy file seen, by result (applied, invalid)",
            policy_reloads.clone(),
        );
        let scrape_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "request_duration",
            "Time to answer an extender or explain request, by verb",
            prometheus_client::registry::Unit::Seconds,
            request_duration.clone(),
        );
        registry.register(
            "decisions",
            "Per-node filter verdicts (pass, hard-cap, stale-usage, unknown-node)",
            decisions.clone(),
        );
        registry.register(
            "scrape_errors",
            "Failed kubelet resource-metrics scrapes, by node",
            scrape_errors.clone(),
        );
        registry.register_with_unit(
            "kubelet_scrape_duration",
            "Time of one kubelet resource-metrics scrape, successful or not",
            prometheus_client::registry::Unit::Seconds,
            scrape_duration.clone(),
        );
        registry.register_with_unit(
            "usage_staleness",
            "Age of the newest usage sample, by node",
            prometheus_client::registry::Unit::Seconds,
            usage_staleness.clone(),
        );
        Self {
            registry,
            request_duration,
            decisions,
            scrape_errors,
            scrape_duration,
            usage_staleness,
            policy_reloads,
        }
    }

    /// A changed policy file was `applied` or found `invalid`.
    pub fn count_policy_reload(&self, result: &str) {
        self.policy_reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn observe_request(&self, verb: &str, took: Duration) {
        self.request_duration
            .get_or_create(&VerbLabels { verb: verb.into() })
            .observe(took.as_secs_f64());
    }

    /// Adds `n` decisions of one verdict. Callers tally per request first:
    /// a label lookup per node would cost an allocation and a lock each.
    pub fn count_decisions(&self, verdict: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.decisions
            .get_or_create(&VerdictLabels {
                verdict: verdict.into(),
            })
            .inc_by(n);
    }

    pub fn count_scrape_error(&self, node: &str) {
        self.scrape_errors
            .get_or_create(&NodeLabels { node: node.into() })
            .inc();
    }

    pub fn observe_scrape(&self, took: Duration) {
        self.scrape_duration.observe(took.as_secs_f64());
    }

    /// Replace the staleness gauges with the current sample ages, so nodes
    /// that left the cluster disappear from the output.
    pub fn set_staleness(&self, samples: &[(String, Timestamp)], now: Timestamp) {
        self.usage_staleness.clear();
        for (node, at) in samples {
            self.usage_staleness
                .get_or_create(&NodeLabels { node: node.clone() })
                .set(age(*at, now).as_secs_f64());
        }
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
