//! `explain`: the whole cluster in percent for one pod, as a text table for
//! admins and as JSON.

use std::fmt::Write as _;

use headroom_common::quantity::format_milli;
use headroom_common::resources::Resources;
use serde::Serialize;

use crate::scoring::{Assessment, ResourceAssessment};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `namespace/name`.
    pub pod: String,
    pub estimate: Estimate,
    /// DaemonSet pod let through hard caps.
    pub exempt: bool,
    pub usage_source: bool,
    pub nodes: Vec<NodeRow>,
}

/// One node's assessment plus what `explain` adds for the admin.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    #[serde(flatten)]
    pub assessment: Assessment,
    /// Why the last usage measurement of the node failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    pub cpu: String,
    pub memory: String,
}

impl From<Resources> for Estimate {
    fn from(r: Resources) -> Self {
        Self {
            cpu_milli: r.cpu_milli,
            memory_bytes: r.memory_bytes,
            cpu: format_milli(r.cpu_milli),
            memory: format_bytes(r.memory_bytes),
        }
    }
}

const HEADER: [&str; 9] = [
    "NODE",
    "RESOURCE",
    "ALLOCATABLE",
    "REQUESTED",
    "MEASURED",
    "PROJECTED",
    "CAP",
    "VERDICT",
    "SCORE",
];

impl Explanation {
    /// A fixed-width table, two lines per node (cpu, memory), then the
    /// filter reasons and warnings.
    pub fn to_text(&self) -> String {
        let mut rows: Vec<[String; 9]> = Vec::with_capacity(self.nodes.len() * 2 + 1);
        rows.push(HEADER.map(String::from));
        for row in &self.nodes {
            let a = &row.assessment;
            rows.push(resource_row(
                &a.node,
                "cpu",
                &a.cpu,
                format_milli(a.cpu.allocatable),
                a.usage_stale,
                a.verdict.as_str(),
                &a.score.to_string(),
            ));
            rows.push(resource_row(
                "",
                "memory",
                &a.memory,
                format_bytes(a.memory.allocatable),
                a.usage_stale,
                "",
                "",
            ));
        }
        let mut widths = [0usize; 9];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }

        let mut out = String::new();
        let _ = writeln!(
            out,
            "pod {}: estimate cpu {}, memory {}{}",
            self.pod,
            self.estimate.cpu,
            self.estimate.memory,
            if self.exempt {
                " (DaemonSet pod: hard caps not applied)"
            } else {
                ""
            }
        );
        if !self.usage_source {
            out.push_str("usage source: none (requests only)\n");
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = w.saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for row in &self.nodes {
            let a = &row.assessment;
            if let Some(reason) = &a.reason {
                let _ = writeln!(out, "{reason}");
            }
            for warning in &a.warnings {
                let _ = writeln!(out, "{}: warning: {warning}", a.node);
            }
            if let Some(error) = &row.usage_error {
                let _ = writeln!(out, "{}: last usage measurement failed: {error}", a.node);
            }
        }
        out
    }
}

fn resource_row(
    node: &str,
    resource: &str,
    r: &ResourceAssessment,
    allocatable: String,
    stale: bool,
    verdict: &str,
    score: &str,
) -> [String; 9] {
    let measured = match r.measured_percent {
        Some(p) => format_pct(p),
        None if stale => "stale".into(),
        None => "-".into(),
    };
    let cap = match (r.cap_percent, r.cap_mode) {
        (Some(p), Some(mode)) => format!("{p}% {}", mode_name(mode)),
        _ => "-".into(),
    };
    [
        node.into(),
        resource.into(),
        allocatable,
        format_pct(r.requested_percent),
        measured,
        format_pct(r.projected_percent),
        cap,
        verdict.into(),
        score.into(),
    ]
}

fn mode_name(mode: crate::policy::CapMode) -> &'static str {
    match mode {
        crate::policy::CapMode::Hard => "hard",
        crate::policy::CapMode::Soft => "soft",
    }
}

fn format_pct(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.1}%")
    } else {
        "∞".into()
    }
}

/// Bytes with a binary suffix, one decimal (`7.7Gi`, `512Mi`, `0`).
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit.is_empty() || value.fract() == 0.0 {
        format!("{value}{unit}")
    } else {
        format!("{value:.1}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_formatted_with_binary_suffixes() {
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(512 << 20), "512Mi");
        assert_eq!(format_bytes(8_045_944 * 1024), "7.7Gi");
        assert_eq!(format_bytes(1000), "1000");
    }
}
