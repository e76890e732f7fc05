//! Checks every field of a [`PolicyFile`] and builds the [`Policy`],
//! reporting all problems at once, each with its field path.

use std::fmt;
use std::time::Duration;

use headroom_common::resources::Resources;

use super::{CapRule, FieldError, Policy, PolicyFile, Weights};

impl PolicyFile {
    /// Check every field; collect all problems rather than stopping at the first.
    pub fn validate(&self) -> Result<Policy, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(FieldError { path, message });

        for (path, weight) in [
            ("weights.cpu", self.weights.cpu),
            ("weights.memory", self.weights.memory),
        ] {
            if !weight.is_finite() || weight < 0.0 {
                err(path.into(), format!("must be a number >= 0, got {weight}"));
            }
        }
        if self.weights.cpu == 0.0 && self.weights.memory == 0.0 {
            err("weights".into(), "cpu and memory must not both be 0".into());
        }

        let cpu = parse_quantity(
            "defaultEstimate.cpu",
            &self.default_estimate.cpu,
            headroom_common::quantity::parse_milli,
            &mut err,
        );
        let memory = parse_quantity(
            "defaultEstimate.memory",
            &self.default_estimate.memory,
            headroom_common::quantity::parse_value,
            &mut err,
        );

        let max_age = match self.stale_usage.max_age.parse::<jiff::SignedDuration>() {
            Ok(d) if d.is_positive() => Duration::try_from(d).ok(),
            Ok(d) => {
                err(
                    "staleUsage.maxAge".into(),
                    format!("must be greater than 0, got {d:#}"),
                );
                None
            }
            Err(e) => {
                err(
                    "staleUsage.maxAge".into(),
                    format!(
                        "invalid duration {:?} (write e.g. 90s or 2m): {e}",
                        self.stale_usage.max_age
                    ),
                );
                None
            }
        };

        let mut caps = Vec::with_capacity(self.caps.len());
        for (i, rule) in self.caps.iter().enumerate() {
            let at = |field: &str| format!("caps[{i}].{field}");
            if rule.node_names.is_empty() && rule.node_labels.is_empty() {
                err(
                    format!("caps[{i}]"),
                    "must select nodes with nodeNames or nodeLabels".into(),
                );
            }
            for (j, name) in rule.node_names.iter().enumerate() {
                if name.trim().is_empty() {
                    err(
                        format!("caps[{i}].nodeNames[{j}]"),
                        "must not be empty".into(),
                    );
                }
            }
            for key in rule.node_labels.keys() {
                if key.trim().is_empty() {
                    err(at("nodeLabels"), "label keys must not be empty".into());
                }
            }
            if rule.cpu_percent.is_none() && rule.memory_percent.is_none() {
                err(
                    format!("caps[{i}]"),
                    "must set cpuPercent or memoryPercent".into(),
                );
            }
            for (field, value) in [
                ("cpuPercent", rule.cpu_percent),
                ("memoryPercent", rule.memory_percent),
            ] {
                if let Some(v) = value
                    && let Err(problem) = check_percent(v)
                {
                    err(at(field), problem);
                }
            }
            if rule.reason.contains('\n') {
                err(at("reason"), "must be a single line".into());
            }
            caps.push(CapRule {
                node_names: rule.node_names.clone(),
                node_labels: rule.node_labels.clone(),
                cpu_percent: rule.cpu_percent,
                memory_percent: rule.memory_percent,
                mode: rule.mode,
                reason: rule.reason.trim().to_string(),
            });
        }

        match (cpu, memory, max_age) {
            (Some(cpu_milli), Some(memory_bytes), Some(stale_max_age)) if errors.is_empty() => {
                Ok(Policy {
                    weights: Weights {
                        cpu: self.weights.cpu,
                        memory: self.weights.memory,
                    },
                    default_estimate: Resources {
                        cpu_milli,
                        memory_bytes,
                    },
                    stale_max_age,
                    stale_policy: self.stale_usage.policy,
                    daemon_sets_exempt: self.daemon_sets_exempt,
                    caps,
                })
            }
            _ => Err(errors),
        }
    }
}

fn parse_quantity<E: fmt::Display>(
    path: &str,
    text: &str,
    parse: impl Fn(&str) -> Result<i64, E>,
    err: &mut impl FnMut(String, String),
) -> Option<i64> {
    match parse(text) {
        Ok(v) if v >= 0 => Some(v),
        Ok(_) => {
            err(path.into(), format!("must be >= 0, got {text:?}"));
            None
        }
        Err(e) => {
            err(path.into(), format!("invalid quantity {text:?}: {e}"));
            None
        }
    }
}

pub(super) fn check_percent(v: f64) -> Result<f64, String> {
    if v.is_finite() && (1.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be within 1..=100, got {v}"))
    }
}
