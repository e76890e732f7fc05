//! What `filter`, `prioritize` and `explain` decide, given the [`State`];
//! the HTTP side lives in `routes`.

use std::collections::HashMap;

use headroom_common::resources::{Resources, pod_limits, pod_requests};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::State;
use crate::explain::{Explanation, NodeRow};
use crate::policy::Policy;
use crate::scoring::{Assessment, Verdict, assess, pod_estimate};
use crate::view::is_daemon_set_pod;
use crate::wire::{
    ExtenderArgs, ExtenderFilterResult, HostPriority, HostPriorityList, MIN_EXTENDER_PRIORITY,
    NodeList,
};

/// Verdict label for a node the extender does not know.
pub const UNKNOWN_NODE: &str = "unknown-node";

/// kube-scheduler passes the joined failure reasons to `Eventf` as the
/// *format string* (schedule_one.go, handleSchedulingFailure), so a bare `%`
/// turns into `%!>(MISSING)` in the FailedScheduling event that `kubectl
/// describe pod` shows. Doubling it makes the event read as written; the
/// PodScheduled condition message, which is not formatted, keeps `%%`.
pub fn escape_for_event(reason: &str) -> String {
    reason.replace('%', "%%")
}

/// The incoming pod's estimate: requests, else limits, else the default.
pub fn incoming_estimate(policy: &Policy, pod: &Pod) -> Resources {
    pod_estimate(pod_requests(pod), pod_limits(pod), policy.default_estimate)
}

fn exempt(policy: &Policy, pod: &Pod) -> bool {
    policy.daemon_sets_exempt && is_daemon_set_pod(pod)
}

/// Assess each named node; `None` for a node neither the store nor the
/// request's `Nodes` knows.
fn assess_names(
    state: &State,
    policy: &Policy,
    pod: &Pod,
    names: &[String],
    supplied: &HashMap<&str, &Node>,
    now: Timestamp,
) -> Vec<Option<Assessment>> {
    let incoming = incoming_estimate(policy, pod);
    let exempt = exempt(policy, pod);
    state
        .view
        .snapshots(names, supplied, pod, now)
        .into_iter()
        .map(|snap| snap.map(|s| assess(&s, incoming, exempt, policy)))
        .collect()
}

fn supplied_nodes(args: &ExtenderArgs) -> HashMap<&str, &Node> {
    args.nodes
        .iter()
        .flat_map(|list| &list.items)
        .filter_map(|n| n.metadata.name.as_deref().map(|name| (name, n)))
        .collect()
}

/// The `filter` verb. Replies in the mode it was asked in: `NodeNames` for
/// `NodeNames`, otherwise the subset of the given `Nodes`. Every name
/// returned was given. Hard-cap and stale-usage failures are unresolvable
/// (the load behind them is largely outside Kubernetes, so preempting pods
/// there would evict them for nothing); an unknown node is a plain failure.
/// Reasons are escaped with [`escape_for_event`].
pub fn filter(state: &State, args: &ExtenderArgs, now: Timestamp) -> ExtenderFilterResult {
    let Some(names) = args.candidate_names() else {
        return ExtenderFilterResult {
            error: "request has neither NodeNames nor Nodes".into(),
            ..Default::default()
        };
    };
    if !state.is_ready() {
        return ExtenderFilterResult {
            error: "headroom-extender: node and pod caches have not synced yet".into(),
            ..Default::default()
        };
    }
    let supplied = supplied_nodes(args);
    // One policy for the whole request (a reload may swap it meanwhile).
    let assessments = assess_names(state, &state.policy(), &args.pod, &names, &supplied, now);
    let mut result = ExtenderFilterResult::default();
    let mut passed: Vec<&str> = Vec::with_capacity(names.len());
    let mut tally: HashMap<&'static str, u64> = HashMap::new();
    for (name, assessment) in names.iter().zip(&assessments) {
        match assessment {
            None => {
                *tally.entry(UNKNOWN_NODE).or_default() += 1;
                let reason = format!("{name}: node is not in headroom-extender's node cache");
                result
                    .failed_nodes
                    .insert(name.clone(), escape_for_event(&reason));
            }
            Some(a) => {
                *tally.entry(a.verdict.as_str()).or_default() += 1;
                match (a.verdict, &a.reason) {
                    (Verdict::Pass, _) => passed.push(name),
                    (_, reason) => {
                        let reason = reason
                            .clone()
                            .unwrap_or_else(|| format!("{name}: {}", a.verdict.as_str()));
                        result
                            .failed_and_unresolvable_nodes
                            .insert(name.clone(), escape_for_event(&reason));
                    }
                }
            }
        }
    }
    for (verdict, n) in tally {
        state.metrics.count_decisions(verdict, n);
    }
    if args.node_names.is_some() {
        result.node_names = Some(passed.iter().map(|n| n.to_string()).collect());
    } else if let Some(list) = &args.nodes {
        let keep: std::collections::HashSet<&str> = passed.into_iter().collect();
        result.nodes = Some(NodeList {
            items: list
                .items
                .iter()
                .filter(|n| n.metadata.name.as_deref().is_some_and(|n| keep.contains(n)))
                .cloned()
                .collect(),
            ..NodeList::default()
        });
    }
    result
}

/// The `prioritize` verb: one entry per given node, 0 for unknown nodes.
pub fn prioritize(state: &State, args: &ExtenderArgs, now: Timestamp) -> HostPriorityList {
    let names = args.candidate_names().unwrap_or_default();
    let supplied = supplied_nodes(args);
    // One policy for the whole request (a reload may swap it meanwhile).
    let assessments = assess_names(state, &state.policy(), &args.pod, &names, &supplied, now);
    names
        .into_iter()
        .zip(assessments)
        .map(|(host, a)| HostPriority {
            host,
            score: a.map_or(MIN_EXTENDER_PRIORITY, |a| a.score),
        })
        .collect()
}

/// Every node in the store, by name, judged for `pod`.
pub fn explain(state: &State, pod: &Pod, now: Timestamp) -> Explanation {
    let mut names: Vec<String> = state
        .view
        .nodes
        .state()
        .iter()
        .map(|n| n.name_any())
        .collect();
    names.sort();
    let policy = state.policy();
    let rows = assess_names(state, &policy, pod, &names, &HashMap::new(), now)
        .into_iter()
        .flatten()
        .map(|assessment| NodeRow {
            usage_error: state
                .view
                .usage
                .as_ref()
                .and_then(|u| u.last_error(&assessment.node)),
            assessment,
        })
        .collect();
    Explanation {
        pod: format!(
            "{}/{}",
            pod.namespace().unwrap_or_else(|| "default".into()),
            pod.name_any()
        ),
        estimate: incoming_estimate(&policy, pod).into(),
        exempt: exempt(&policy, pod),
        usage_source: state.view.usage.is_some(),
        nodes: rows,
    }
}

#[cfg(test)]
mod tests;
