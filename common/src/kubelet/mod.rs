//! Least-privilege kubelet resource-metrics scraping, as metrics-server does
//! it: each kubelet's `/metrics/resource` (or the path in the node annotation
//! `metrics.k8s.io/resource-metrics-path`, which is how kwok's emulated
//! kubelets are found) is fetched directly at the node's InternalIP and kubelet
//! port with a service-account token. The kubelet authorizes that as
//! `nodes/metrics`; nothing here needs `nodes/proxy`, which also reaches
//! `/exec` and `/attach`.
//!
//! - [`target`]: where to scrape a node.
//! - [`client`]: the HTTP(S) client with timeouts, a body limit and token
//!   rotation.
//! - [`snapshot`]: one scrape reduced to node and pod counters (pure).
//! - [`usage`]: CPU rates and memory from two snapshots (pure).
//! - [`cache`]: the latest usage per node and pod, shared with request handlers.
//! - [`scraper`]: the loop that ties them together.

pub mod cache;
pub mod client;
pub mod scraper;
pub mod snapshot;
pub mod target;
pub mod usage;

pub use cache::UsageCache;
pub use client::{KubeletClient, KubeletClientConfig, ScrapeError};
pub use scraper::{ScrapeObserver, ScraperConfig, run_scraper, run_scraper_with_observer};
pub use snapshot::{Counter, PodKey, PodSample, ResourceSnapshot, snapshot_from_exposition};
pub use target::{KubeletTarget, Scheme, TargetError, target_for_node};
pub use usage::{NodeUsage, PodUsage, carry_forward, usage_between, usage_from_snapshot};
