//! The policy file: resource weights, the estimate for pods that request
//! nothing, what to do with stale usage, and per-node caps in percent.
//!
//! The YAML is read into [`PolicyFile`] (plain serde, unknown keys rejected),
//! then [`PolicyFile::validate`] checks every field and reports all problems at
//! once, each naming its field path (`caps[1].cpuPercent: ...`). The result,
//! [`Policy`], is what the rest of the crate uses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use headroom_common::resources::Resources;
use serde::{Deserialize, Serialize};

/// Node annotation that overrides the CPU cap percent for that node.
pub const CPU_CAP_ANNOTATION: &str = "headroom.dev/cap-cpu-percent";
/// Node annotation that overrides the memory cap percent for that node.
pub const MEMORY_CAP_ANNOTATION: &str = "headroom.dev/cap-memory-percent";
/// Node annotation giving the reason text shown for an annotation cap.
pub const CAP_REASON_ANNOTATION: &str = "headroom.dev/cap-reason";

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// serde_yaml's message already starts with the field path.
    #[error("policy is not valid YAML for this format: {0}")]
    Syntax(String),
    #[error("policy is invalid:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// One validation problem, with the path of the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What to do with a node whose usage sample is older than `maxAge`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StalePolicy {
    /// Score and filter on requests alone, as if there were no usage source.
    #[default]
    RequestsOnly,
    /// A node with a hard cap fails it (cannot prove it is under); every
    /// stale node scores 0.
    FailCap,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapMode {
    /// Filter rejects a node whose projected percent would pass the cap.
    #[default]
    Hard,
    /// Only lowers the score (to 0 once passed).
    Soft,
}

/// Validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub weights: Weights,
    /// Estimate per resource for a pod that neither requests nor limits it.
    pub default_estimate: Resources,
    pub stale_max_age: Duration,
    pub stale_policy: StalePolicy,
    pub daemon_sets_exempt: bool,
    pub caps: Vec<CapRule>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub cpu: f64,
    pub memory: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CapRule {
    pub node_names: Vec<String>,
    pub node_labels: BTreeMap<String, String>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub mode: CapMode,
    pub reason: String,
}

/// A cap on one resource of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Cap {
    pub percent: f64,
    pub mode: CapMode,
    /// Human text shown in parentheses after the cap; may be empty.
    pub reason: String,
}

/// The caps that apply to one node, per resource: the strictest hard and the
/// strictest soft cap among the matching rules, or the annotation's cap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeCaps {
    pub cpu: ResourceCaps,
    pub memory: ResourceCaps,
    /// Annotation values that were ignored, to show in `explain`.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceCaps {
    pub hard: Option<Cap>,
    pub soft: Option<Cap>,
}

impl ResourceCaps {
    /// The cap the score is measured against: the lower of hard and soft.
    pub fn effective(&self) -> Option<&Cap> {
        match (&self.hard, &self.soft) {
            (Some(h), Some(s)) => Some(if s.percent < h.percent { s } else { h }),
            (Some(c), None) | (None, Some(c)) => Some(c),
            (None, None) => None,
        }
    }

    fn tighten(&mut self, cap: Cap) {
        let slot = match cap.mode {
            CapMode::Hard => &mut self.hard,
            CapMode::Soft => &mut self.soft,
        };
        if slot.as_ref().is_none_or(|old| cap.percent < old.percent) {
            *slot = Some(cap);
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        PolicyFile::default()
            .validate()
            .expect("the default policy is valid")
    }
}

impl Policy {
    /// Read, parse and validate a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Self::from_yaml(&read_text(path)?)
    }

    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        // A file that is empty or only comments is the default policy.
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let file: PolicyFile = if value.is_null() {
            PolicyFile::default()
        } else {
            // Parse the text again (not the Value) so errors carry the field path.
            serde_yaml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
        };
        file.validate().map_err(PolicyError::Invalid)
    }

    /// Caps for a node from the matching rules, then the node's annotations
    /// (which replace the policy's caps for that resource).
    pub fn caps_for(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> NodeCaps {
        let mut caps = NodeCaps::default();
        for rule in self.caps.iter().filter(|r| r.matches(name, labels)) {
            if let Some(percent) = rule.cpu_percent {
                caps.cpu.tighten(rule.cap(percent));
            }
            if let Some(percent) = rule.memory_percent {
                caps.memory.tighten(rule.cap(percent));
            }
        }
        let reason = annotations.get(CAP_REASON_ANNOTATION);
        for (key, slot) in [
            (CPU_CAP_ANNOTATION, &mut caps.cpu),
            (MEMORY_CAP_ANNOTATION, &mut caps.memory),
        ] {
            let Some(raw) = annotations.get(key) else {
                continue;
            };
            match parse_percent(raw) {
                Ok(percent) => {
                    let reason = reason
                        .cloned()
                        .or_else(|| slot.hard.as_ref().map(|c| c.reason.clone()))
                        .unwrap_or_else(|| format!("annotation {key}"));
                    *slot = ResourceCaps {
                        hard: Some(Cap {
                            percent,
                            mode: CapMode::Hard,
                            reason,
                        }),
                        soft: None,
                    };
                }
                Err(problem) => caps
                    .warnings
                    .push(format!("ignored annotation {key}={raw:?}: {problem}")),
            }
        }
        caps
    }
}

impl CapRule {
    fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.node_names.is_empty() || self.node_names.iter().any(|n| n == name))
            && self
                .node_labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }

    fn cap(&self, percent: f64) -> Cap {
        Cap {
            percent,
            mode: self.mode,
            reason: self.reason.clone(),
        }
    }
}

/// Annotation values: a number, optionally followed by `%`.
fn parse_percent(raw: &str) -> Result<f64, String> {
    let text = raw.trim();
    let text = text.strip_suffix('%').unwrap_or(text).trim();
    let v: f64 = text
        .parse()
        .map_err(|_| "not a number (write e.g. 40)".to_string())?;
    check_percent(v)
}

/// The policy file's text (for [`Policy::load`] and reloading).
fn read_text(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.display().to_string(),
        source,
    })
}

mod file;
pub mod reload;
mod validate;

use validate::check_percent;

pub use file::{CapRuleFile, EstimateFile, PolicyFile, StaleUsageFile, WeightsFile};

#[cfg(test)]
mod tests;
