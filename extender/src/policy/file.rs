//! The policy file as written (serde, unknown keys rejected) and its defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CapMode, StalePolicy};

/// The policy file as written. Every field is optional; defaults are those of
/// [`PolicyFile::default`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    #[serde(default)]
    pub weights: WeightsFile,
    #[serde(default)]
    pub default_estimate: EstimateFile,
    #[serde(default)]
    pub stale_usage: StaleUsageFile,
    /// Let DaemonSet pods through the hard-cap filter: they are pinned to
    /// their node and rejecting them only leaves them Pending there.
    #[serde(default = "default_true")]
    pub daemon_sets_exempt: bool,
    #[serde(default)]
    pub caps: Vec<CapRuleFile>,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            weights: WeightsFile::default(),
            default_estimate: EstimateFile::default(),
            stale_usage: StaleUsageFile::default(),
            daemon_sets_exempt: true,
            caps: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsFile {
    #[serde(default = "one")]
    pub cpu: f64,
    #[serde(default = "one")]
    pub memory: f64,
}

impl Default for WeightsFile {
    fn default() -> Self {
        Self {
            cpu: 1.0,
            memory: 1.0,
        }
    }
}

/// Quantities as Kubernetes writes them (`500m`, `512Mi`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateFile {
    #[serde(default = "default_cpu_estimate")]
    pub cpu: String,
    #[serde(default = "default_memory_estimate")]
    pub memory: String,
}

impl Default for EstimateFile {
    fn default() -> Self {
        Self {
            cpu: default_cpu_estimate(),
            memory: default_memory_estimate(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StaleUsageFile {
    /// A duration such as `90s` or `2m`.
    #[serde(default = "default_max_age")]
    pub max_age: String,
    #[serde(default)]
    pub policy: StalePolicy,
}

impl Default for StaleUsageFile {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            policy: StalePolicy::default(),
        }
    }
}

/// One cap rule. A node matches when it satisfies every selector given:
/// its name is in `nodeNames` (if given) and it carries all `nodeLabels`
/// (if given).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CapRuleFile {
    #[serde(default)]
    pub node_names: Vec<String>,
    #[serde(default)]
    pub node_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    #[serde(default)]
    pub memory_percent: Option<f64>,
    #[serde(default)]
    pub mode: CapMode,
    #[serde(default)]
    pub reason: String,
}

fn default_true() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn default_cpu_estimate() -> String {
    "500m".into()
}
fn default_memory_estimate() -> String {
    "512Mi".into()
}
fn default_max_age() -> String {
    "2m".into()
}
