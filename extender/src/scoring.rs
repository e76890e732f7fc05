//! Headroom arithmetic: pure functions from a [`NodeSnapshot`] and the
//! incoming pod's estimate to a verdict and a score. No I/O here.
//!
//! Per resource (CPU in millicores, memory in bytes):
//! - load = max(requested, measured + recent): `measured` is the whole host's
//!   usage at the last sample (it covers load outside Kubernetes), `recent` the
//!   estimates of pods bound after that sample, which the sample cannot show
//!   yet. Requests of those pods are already in `requested`, so `recent` is
//!   added to the measurement rather than to the maximum; that keeps a pod
//!   with requests from being counted twice while still stopping a burst of
//!   request-less pods from piling onto one node.
//! - without a usable sample (no source, or stale under `requests-only`):
//!   load = requested.
//! - projected = load + the incoming pod's estimate; percent = projected /
//!   allocatable × 100.
//! - a hard cap passed by the projected percent fails `filter`; the score is
//!   the weighted mean of the headroom left under each resource's cap (100%
//!   when none) scaled to 0..=10, and 0 once any cap, hard or soft, is passed.

use std::sync::Arc;
use std::time::Duration;

use headroom_common::resources::Resources;
use serde::Serialize;

use crate::policy::{Cap, CapMode, NodeCaps, Policy, StalePolicy, Weights};
use crate::wire::{MAX_EXTENDER_PRIORITY, MIN_EXTENDER_PRIORITY};

/// Everything scoring needs to know about one node, gathered by `view`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSnapshot {
    pub name: String,
    pub allocatable: Resources,
    /// Sum of the requests of non-terminal pods bound to the node.
    pub requested: Resources,
    pub usage: Usage,
    /// Sum of the estimates of pods bound after the usage sample was taken.
    pub recent: Resources,
    /// Shared with the node index (resolved once per Node change).
    pub caps: Arc<NodeCaps>,
}

/// Measured usage of a node as known to the extender.
#[derive(Clone, Debug, PartialEq)]
pub enum Usage {
    /// No usage source configured (`--usage-source none`).
    Disabled,
    /// A source is configured but has no sample for this node yet.
    Missing,
    Sample(UsageSample),
}

#[derive(Clone, Debug, PartialEq)]
pub struct UsageSample {
    /// `None` until two CPU samples exist (the rate needs two).
    pub cpu_milli: Option<i64>,
    pub memory_bytes: Option<i64>,
    /// How long ago the sample was taken.
    pub age: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// The projected percent would pass a hard cap.
    HardCap,
    /// Usage is stale and the policy is `fail-cap`.
    StaleUsage,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::HardCap => "hard-cap",
            Verdict::StaleUsage => "stale-usage",
        }
    }
}

/// One resource of one node, in absolute units and in percent.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAssessment {
    pub allocatable: i64,
    pub requested: i64,
    pub measured: Option<i64>,
    pub recent: i64,
    pub load: i64,
    pub projected: i64,
    pub requested_percent: f64,
    pub measured_percent: Option<f64>,
    pub projected_percent: f64,
    /// The cap the score is measured against (the lower of hard and soft).
    pub cap_percent: Option<f64>,
    pub cap_mode: Option<CapMode>,
    pub cap_reason: Option<String>,
    /// Headroom left under the cap, 0..=1.
    pub headroom: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    pub node: String,
    pub cpu: ResourceAssessment,
    pub memory: ResourceAssessment,
    /// Usage was stale or missing, so requests alone were used.
    pub usage_stale: bool,
    pub verdict: Verdict,
    /// Filter failure text, e.g. `node03: cpu would reach 46% > cap 40% (FreeIPA host)`.
    pub reason: Option<String>,
    pub score: i64,
    /// Ignored cap annotations and the like, for `explain`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Estimate of a pod's load per resource: its requests, else its limits,
/// else the policy default (notebook pods often request nothing).
pub fn pod_estimate(requests: Resources, limits: Resources, default: Resources) -> Resources {
    let pick = |req: i64, lim: i64, def: i64| {
        if req > 0 {
            req
        } else if lim > 0 {
            lim
        } else {
            def
        }
    };
    Resources {
        cpu_milli: pick(requests.cpu_milli, limits.cpu_milli, default.cpu_milli),
        memory_bytes: pick(
            requests.memory_bytes,
            limits.memory_bytes,
            default.memory_bytes,
        ),
    }
}

/// `part` as a percent of `whole`; a node with no allocatable amount of a
/// resource is infinitely full as soon as anything needs it.
pub fn percent(part: i64, whole: i64) -> f64 {
    if whole > 0 {
        part as f64 * 100.0 / whole as f64
    } else if part > 0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// Judge one node for an incoming pod with the given estimate. `exempt`
/// skips the hard-cap filter (DaemonSet pods) but not the score.
pub fn assess(
    node: &NodeSnapshot,
    incoming: Resources,
    exempt: bool,
    policy: &Policy,
) -> Assessment {
    let sample = match &node.usage {
        Usage::Sample(s) if s.age <= policy.stale_max_age => Some(s),
        _ => None,
    };
    let usage_stale = matches!(node.usage, Usage::Missing)
        || matches!(&node.usage, Usage::Sample(s) if s.age > policy.stale_max_age);

    let cpu = assess_resource(
        node.allocatable.cpu_milli,
        node.requested.cpu_milli,
        sample.and_then(|s| s.cpu_milli),
        node.recent.cpu_milli,
        incoming.cpu_milli,
        node.caps.cpu.effective(),
    );
    let memory = assess_resource(
        node.allocatable.memory_bytes,
        node.requested.memory_bytes,
        sample.and_then(|s| s.memory_bytes),
        node.recent.memory_bytes,
        incoming.memory_bytes,
        node.caps.memory.effective(),
    );

    let fail_stale = usage_stale && policy.stale_policy == StalePolicy::FailCap;
    let mut failures = Vec::new();
    for (label, res, caps) in [
        ("cpu", &cpu, &node.caps.cpu),
        ("memory", &memory, &node.caps.memory),
    ] {
        if let Some(hard) = &caps.hard
            && res.projected_percent > hard.percent
        {
            failures.push(cap_failure(label, res.projected_percent, hard));
        }
    }
    let has_hard_cap = node.caps.cpu.hard.is_some() || node.caps.memory.hard.is_some();

    let (verdict, reason) = if exempt {
        (Verdict::Pass, None)
    } else if fail_stale && has_hard_cap {
        let age = match &node.usage {
            Usage::Sample(s) => format!("last sample {}s ago", s.age.as_secs()),
            _ => "no sample yet".to_string(),
        };
        let text = format!(
            "{}: usage data is stale ({age}, max age {}s), cannot check its cap",
            node.name,
            policy.stale_max_age.as_secs()
        );
        (Verdict::StaleUsage, Some(text))
    } else if !failures.is_empty() {
        let text = format!("{}: {}", node.name, failures.join("; "));
        (Verdict::HardCap, Some(text))
    } else {
        (Verdict::Pass, None)
    };

    let over_any_cap = [&cpu, &memory]
        .iter()
        .any(|r| r.cap_percent.is_some_and(|cap| r.projected_percent > cap));
    let score = if over_any_cap || fail_stale {
        MIN_EXTENDER_PRIORITY
    } else {
        weighted_score(cpu.headroom, memory.headroom, policy.weights)
    };

    Assessment {
        node: node.name.clone(),
        cpu,
        memory,
        usage_stale,
        verdict,
        reason,
        score,
        warnings: node.caps.warnings.clone(),
    }
}

fn assess_resource(
    allocatable: i64,
    requested: i64,
    measured: Option<i64>,
    recent: i64,
    incoming: i64,
    cap: Option<&Cap>,
) -> ResourceAssessment {
    let (load, recent) = match measured {
        Some(m) => (requested.max(m.saturating_add(recent)), recent),
        // Without a sample, `requested` already holds every bound pod's requests.
        None => (requested, 0),
    };
    let projected = load.saturating_add(incoming);
    let projected_percent = percent(projected, allocatable);
    let cap_percent = cap.map(|c| c.percent);
    let limit = cap_percent.unwrap_or(100.0);
    let headroom = if projected_percent.is_finite() {
        ((limit - projected_percent) / limit).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ResourceAssessment {
        allocatable,
        requested,
        measured,
        recent,
        load,
        projected,
        requested_percent: percent(requested, allocatable),
        measured_percent: measured.map(|m| percent(m, allocatable)),
        projected_percent,
        cap_percent,
        cap_mode: cap.map(|c| c.mode),
        cap_reason: cap.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
        headroom,
    }
}

/// Weighted mean of per-resource headroom (0..=1), scaled to 0..=10.
pub fn weighted_score(cpu_headroom: f64, memory_headroom: f64, weights: Weights) -> i64 {
    let total = weights.cpu + weights.memory;
    if total <= 0.0 || !total.is_finite() {
        return MIN_EXTENDER_PRIORITY;
    }
    let mean = (weights.cpu * cpu_headroom + weights.memory * memory_headroom) / total;
    let scaled = (mean * MAX_EXTENDER_PRIORITY as f64).round();
    if scaled.is_nan() {
        return MIN_EXTENDER_PRIORITY;
    }
    (scaled as i64).clamp(MIN_EXTENDER_PRIORITY, MAX_EXTENDER_PRIORITY)
}

/// `cpu would reach 46% > cap 40% (FreeIPA host)`.
fn cap_failure(resource: &str, projected_percent: f64, cap: &Cap) -> String {
    let mut text = format!(
        "{resource} would reach {}% > cap {}%",
        format_percent_above(projected_percent, cap.percent),
        cap.percent
    );
    if !cap.reason.is_empty() {
        text.push_str(&format!(" ({})", cap.reason));
    }
    text
}

/// Round for humans, but never so far that a value above the cap prints as
/// equal to it (40.3 against a cap of 40 prints as `40.3`, not `40`).
pub fn format_percent_above(value: f64, cap: f64) -> String {
    if !value.is_finite() {
        return "∞".into();
    }
    let whole = value.round();
    if whole > cap {
        return format!("{whole}");
    }
    for decimals in 1..=3 {
        let text = format!("{value:.decimals$}");
        if text.parse::<f64>().is_ok_and(|v| v > cap) {
            return text;
        }
    }
    format!("{value}")
}

#[cfg(test)]
mod tests;
