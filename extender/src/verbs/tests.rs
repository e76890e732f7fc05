use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::testutil::{args_json, node, pod, three_node_state};
use crate::wire::MAX_EXTENDER_PRIORITY;

fn notebook() -> Pod {
    pod("jupyter-alice", "jhub", None, json!({}), json!({}))
}

fn args(names: &[&str]) -> ExtenderArgs {
    serde_json::from_value(args_json(&notebook(), names)).unwrap()
}

#[test]
fn filter_rejects_capped_node_with_readable_reason() {
    let state = three_node_state();
    let result = filter(
        &state,
        &args(&["node01", "node02", "node03"]),
        Timestamp::now(),
    );
    assert_eq!(
        result.node_names,
        Some(vec!["node01".to_string(), "node02".into()])
    );
    assert!(result.nodes.is_none());
    // Doubled for kube-scheduler's Eventf; the event reads
    // "node03: cpu would reach 46% > cap 40% (FreeIPA host)".
    assert_eq!(
        result.failed_and_unresolvable_nodes["node03"],
        "node03: cpu would reach 46%% > cap 40%% (FreeIPA host)"
    );
    assert!(result.failed_nodes.is_empty());
    assert_eq!(result.error, "");
}

#[test]
fn percent_signs_are_doubled_for_go_format_strings() {
    assert_eq!(
        escape_for_event("a 46% b 40% (x%y)"),
        "a 46%% b 40%% (x%%y)"
    );
    assert_eq!(escape_for_event("none"), "none");
}

#[test]
fn unknown_node_goes_to_failed_nodes() {
    let state = three_node_state();
    let result = filter(&state, &args(&["node01", "ghost"]), Timestamp::now());
    assert_eq!(result.node_names, Some(vec!["node01".to_string()]));
    assert!(result.failed_nodes["ghost"].contains("not in headroom-extender's node cache"));
}

#[test]
fn full_nodes_mode_returns_the_given_node_objects() {
    let state = three_node_state();
    let given: Vec<Node> = ["node01", "node03", "node09"]
        .iter()
        .map(|n| node(n, "4", "8Gi"))
        .collect();
    let args: ExtenderArgs = serde_json::from_value(json!({
        "Pod": notebook(),
        "Nodes": {"metadata": {}, "items": given},
        "NodeNames": null,
    }))
    .unwrap();
    let result = filter(&state, &args, Timestamp::now());
    assert!(result.node_names.is_none());
    let kept: Vec<_> = result
        .nodes
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    // node09 is not in the store but was supplied in full, so it is judged.
    assert_eq!(kept, vec!["node01", "node09"]);
    assert!(result.failed_and_unresolvable_nodes.contains_key("node03"));
}

#[test]
fn not_ready_filter_reports_an_error() {
    let state = three_node_state();
    state.set_ready(false);
    let result = filter(&state, &args(&["node01"]), Timestamp::now());
    assert!(result.error.contains("not synced"), "{}", result.error);
    assert_eq!(result.node_names, None);
}

#[test]
fn neither_names_nor_nodes_is_an_error() {
    let state = three_node_state();
    let args: ExtenderArgs =
        serde_json::from_value(json!({"Pod": notebook(), "Nodes": null, "NodeNames": null}))
            .unwrap();
    assert!(
        filter(&state, &args, Timestamp::now())
            .error
            .contains("neither")
    );
    assert!(prioritize(&state, &args, Timestamp::now()).is_empty());
}

#[test]
fn daemon_set_pods_pass_the_cap() {
    let state = three_node_state();
    let mut ds = notebook();
    ds.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "x", "uid": "u", "controller": true
        }))
        .unwrap(),
    ]);
    let args: ExtenderArgs = serde_json::from_value(args_json(&ds, &["node03"])).unwrap();
    let result = filter(&state, &args, Timestamp::now());
    assert_eq!(result.node_names, Some(vec!["node03".to_string()]));
}

#[test]
fn prioritize_orders_by_headroom() {
    let state = three_node_state();
    let scores = prioritize(
        &state,
        &args(&["node03", "node02", "node01", "ghost"]),
        Timestamp::now(),
    );
    let by_host: HashMap<_, _> = scores.iter().map(|h| (h.host.as_str(), h.score)).collect();
    assert_eq!(by_host.len(), 4);
    assert_eq!(by_host["node03"], 0, "over its cap");
    assert_eq!(by_host["ghost"], 0, "unknown");
    assert!(
        by_host["node01"] > by_host["node02"],
        "node02 has 2 cores requested: {by_host:?}"
    );
    assert_eq!(by_host["node01"], 8);
    assert_eq!(by_host["node02"], 6);
}

#[test]
fn explain_lists_every_node_with_verdicts() {
    let state = three_node_state();
    let e = explain(&state, &notebook(), Timestamp::now());
    assert_eq!(e.pod, "jhub/jupyter-alice");
    assert_eq!(e.estimate.cpu, "500m");
    let names: Vec<_> = e.nodes.iter().map(|r| r.assessment.node.as_str()).collect();
    assert_eq!(names, vec!["node01", "node02", "node03"]);
    assert_eq!(e.nodes[2].assessment.verdict, Verdict::HardCap);
    assert_eq!(e.nodes[2].usage_error, None);
    assert!(
        e.nodes[1]
            .usage_error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
    let text = e.to_text();
    assert!(text.contains("NODE"), "{text}");
    assert!(text.contains("40% hard"), "{text}");
    assert!(
        text.contains("node03: cpu would reach 46% > cap 40% (FreeIPA host)"),
        "{text}"
    );
    assert!(
        text.contains("node02: last usage measurement failed: GET"),
        "{text}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert!(json["nodes"][1]["usageError"].is_string());
    assert!(json["nodes"][0].get("usageError").is_none());
    assert_eq!(json["nodes"][2]["verdict"], "hard-cap");
    assert_eq!(json["nodes"][2]["cpu"]["capPercent"], 40.0);
    assert_eq!(json["nodes"][0]["score"], 8);
}

proptest! {
    #[test]
    fn replies_only_name_given_nodes(
        picks in prop::collection::vec(
            prop::sample::select(vec!["node01", "node02", "node03", "ghost", "other", ""]),
            0..8,
        ),
    ) {
        let state = three_node_state();
        let args = args(&picks);
        let given: HashSet<&str> = picks.iter().copied().collect();
        let result = filter(&state, &args, Timestamp::now());
        let names = result.node_names.clone().unwrap_or_default();
        for n in names.iter().chain(result.failed_nodes.keys()).chain(result.failed_and_unresolvable_nodes.keys()) {
            prop_assert!(given.contains(n.as_str()), "{n} was not given");
        }
        for n in &names {
            prop_assert!(!result.failed_nodes.contains_key(n));
            prop_assert!(!result.failed_and_unresolvable_nodes.contains_key(n));
        }
        let scores = prioritize(&state, &args, Timestamp::now());
        prop_assert_eq!(scores.len(), picks.len());
        for h in &scores {
            prop_assert!(given.contains(h.host.as_str()));
            prop_assert!((0..=MAX_EXTENDER_PRIORITY).contains(&h.score));
        }
    }
}
