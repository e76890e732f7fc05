//! The adapter's own Prometheus metrics (served on `/metrics`).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct AdapterMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<KindLabels, Histogram>,
    pub kubelet_scrapes: Family<ResultLabels, Counter>,
    pub kubelet_scrape_seconds: Histogram,
    pub server_scrapes: Family<ResultLabels, Counter>,
    pub server_scrape_seconds: Histogram,
    pub authorizations: Family<ResultLabels, Counter>,
    pub omitted_pods: Family<ReasonLabels, Counter<u64, AtomicU64>>,
}

impl Default for AdapterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AdapterMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("headroom_adapter");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by kind and status code",
            requests.clone(),
        );
        let request_seconds = Family::<KindLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            request_seconds.clone(),
        );
        let kubelet_scrapes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "kubelet_scrapes",
            "Kubelet /metrics/resource scrapes by result",
            kubelet_scrapes.clone(),
        );
        let kubelet_scrape_seconds = duration_histogram();
        registry.register(
            "kubelet_scrape_duration_seconds",
            "Time per kubelet scrape",
            kubelet_scrape_seconds.clone(),
        );
        let server_scrapes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "jupyter_server_scrapes",
            "jupyter_server /metrics scrapes by result",
            server_scrapes.clone(),
        );
        let server_scrape_seconds = duration_histogram();
        registry.register(
            "jupyter_server_scrape_duration_seconds",
            "Time per jupyter_server scrape",
            server_scrape_seconds.clone(),
        );
        let authorizations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "authorizations",
            "Authorization decisions (allowed, denied, error, always_allowed)",
            authorizations.clone(),
        );
        let omitted_pods = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "omitted_pods",
            "Pods left out of Pods-metric lists because their value was stale, missing or not available",
            omitted_pods.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            kubelet_scrapes,
            kubelet_scrape_seconds,
            server_scrapes,
            server_scrape_seconds,
            authorizations,
            omitted_pods,
        }
    }

    pub fn observe_request(&self, kind: &'static str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { kind, code })
            .inc();
        self.request_seconds
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
