//! A real Kubernetes control plane on loopback, for tests and the demo.
//!
//! [`Cluster::start`] runs etcd, kube-apiserver (RBAC, aggregation layer with a
//! separate front-proxy CA), kube-controller-manager, kwok (fake nodes that
//! emulate kubelet resource metrics) and, when asked, kube-scheduler with a
//! caller-supplied `KubeSchedulerConfiguration`. The binaries are built from
//! the Go modules pinned in `e2e/go/` (see `scripts/build-control-plane.sh`).
//! Every process is stopped when the [`Cluster`] is dropped.

pub mod aggregation;
pub mod bench;
pub mod binaries;
pub mod cluster;
pub mod demo;
pub mod jupyterhub;
pub mod kubeconfig;
pub mod kwok;
pub mod lab;
pub mod nodes;
pub mod pki;
pub mod ports;
pub mod process;
pub mod services;
pub mod wait;

pub use cluster::{Cluster, ClusterConfig};
pub use nodes::NodeSpec;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{name} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("building the control plane failed: {0}")]
    Build(String),
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
