//! Code both headroom services share: a Prometheus text-format parser,
//! Kubernetes quantity and pod-resource arithmetic, least-privilege kubelet
//! resource-metrics scraping, tracing setup, TLS/HTTP serving and token
//! files.

pub mod kubelet;
pub mod prom;
pub mod quantity;
pub mod reflect;
pub mod resources;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod token;
