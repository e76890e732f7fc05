use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::policy::{CAP_REASON_ANNOTATION, CPU_CAP_ANNOTATION};
use crate::testutil::{k8s_time, node, pod, ts};

fn applied(events: &[Event<Pod>]) -> PodsByNode {
    let mut index = PodsByNode::default();
    for event in events {
        index.apply(event);
    }
    index
}

fn names_on(index: &PodsByNode, node: &str) -> Vec<String> {
    let mut names: Vec<String> = index.pods_on(node).map(|p| p.name.clone()).collect();
    names.sort();
    names
}

#[test]
fn follows_a_pod_from_pending_to_bound_to_succeeded() {
    let pending = pod("a", "ns", None, json!({"cpu": "1"}), json!({}));
    let bound = pod("a", "ns", Some("n1"), json!({"cpu": "1"}), json!({}));
    let mut done = bound.clone();
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());

    let mut index = applied(&[Event::Apply(pending)]);
    assert!(index.is_empty(), "an unbound pod holds nothing");
    index.apply(&Event::Apply(bound.clone()));
    assert_eq!(names_on(&index, "n1"), ["a"]);
    assert_eq!(
        index.totals("n1", None, Resources::ZERO, None).requested,
        Resources::new(1000, 0)
    );
    index.apply(&Event::Apply(done));
    assert!(index.is_empty(), "a terminal pod holds nothing");
    index.apply(&Event::Apply(bound.clone()));
    index.apply(&Event::Delete(bound));
    assert!(index.is_empty());
    assert_eq!(names_on(&index, "n1"), Vec::<String>::new());
}

#[test]
fn a_resized_pod_counts_its_new_requests_once() {
    let small = pod("a", "ns", Some("n1"), json!({"cpu": "1"}), json!({}));
    let big = pod("a", "ns", Some("n1"), json!({"cpu": "3"}), json!({}));
    let index = applied(&[Event::Apply(small), Event::Apply(big)]);
    assert_eq!(
        index.totals("n1", None, Resources::ZERO, None).requested,
        Resources::new(3000, 0)
    );
}

#[test]
fn a_relist_forgets_pods_deleted_while_the_watch_was_down() {
    let a = pod("a", "ns", Some("n1"), json!({"cpu": "1"}), json!({}));
    let b = pod("b", "ns", Some("n1"), json!({"cpu": "2"}), json!({}));
    let mut index = applied(&[Event::Apply(a.clone()), Event::Apply(b.clone())]);
    index.apply(&Event::Init);
    index.apply(&Event::InitApply(b));
    // Until InitDone the old index still answers, as the store does.
    assert_eq!(names_on(&index, "n1"), ["a", "b"]);
    index.apply(&Event::InitDone);
    assert_eq!(names_on(&index, "n1"), ["b"]);
    assert_eq!(index.len(), 1);
}

#[test]
fn same_name_in_two_namespaces_are_two_pods() {
    let a = pod(
        "jupyter-x",
        "one",
        Some("n1"),
        json!({"cpu": "1"}),
        json!({}),
    );
    let b = pod(
        "jupyter-x",
        "two",
        Some("n1"),
        json!({"cpu": "1"}),
        json!({}),
    );
    let index = applied(&[Event::Apply(a), Event::Apply(b)]);
    let totals = index.totals("n1", None, Resources::ZERO, Some(("one", "jupyter-x")));
    assert_eq!(totals.requested, Resources::new(1000, 0));
}

#[test]
fn bound_at_comes_from_the_pod_scheduled_condition() {
    let mut p = pod("a", "ns", Some("n1"), json!({}), json!({}));
    p.metadata.creation_timestamp = Some(k8s_time("2026-12-03T10:00:00Z"));
    let (node, bound) = BoundPod::of(&p).unwrap();
    assert_eq!(node, "n1");
    assert_eq!(bound.bound_at, Some(ts("2026-12-03T10:00:00Z")));
}

fn infra_policy() -> Arc<Policy> {
    Arc::new(
        Policy::from_yaml(
            "caps:\n  - nodeLabels: {role: infra}\n    cpuPercent: 50\n    reason: infra rule\n",
        )
        .expect("policy"),
    )
}

#[test]
fn node_facts_resolve_caps_from_labels_and_annotations() {
    let policy = infra_policy();
    let plain = NodeFacts::of(&node("node01", "4", "8Gi"), &policy);
    assert_eq!(plain.name, "node01");
    assert_eq!(plain.allocatable, Resources::new(4000, 8 << 30));
    assert_eq!(
        *plain.caps,
        policy.caps_for("node01", &BTreeMap::new(), &BTreeMap::new())
    );
    assert!(plain.caps.cpu.hard.is_none());

    let mut n = node("node03", "4", "8Gi");
    n.metadata
        .labels
        .get_or_insert_default()
        .insert("role".into(), "infra".into());
    let by_label = NodeFacts::of(&n, &policy);
    let cap = by_label.caps.cpu.hard.as_ref().expect("label rule applies");
    assert_eq!((cap.percent, cap.reason.as_str()), (50.0, "infra rule"));

    // The annotation overrides the rule; other annotations are ignored.
    n.metadata.annotations = Some(BTreeMap::from([
        (CPU_CAP_ANNOTATION.to_string(), "40".to_string()),
        (CAP_REASON_ANNOTATION.to_string(), "FreeIPA".to_string()),
        (
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{...}".to_string(),
        ),
    ]));
    let annotated = NodeFacts::of(&n, &policy);
    let cap = annotated.caps.cpu.hard.as_ref().expect("annotation cap");
    assert_eq!((cap.percent, cap.reason.as_str()), (40.0, "FreeIPA"));
    assert!(annotated.caps.warnings.is_empty());
}

#[test]
fn node_caps_follow_node_updates() {
    let mut index = NodesByName::new(infra_policy());
    let mut n = node("n1", "4", "8Gi");
    index.apply(&Event::Apply(n.clone()));
    assert!(index.get("n1").unwrap().caps.cpu.hard.is_none());
    n.metadata
        .labels
        .get_or_insert_default()
        .insert("role".into(), "infra".into());
    index.apply(&Event::Apply(n));
    assert_eq!(
        index
            .get("n1")
            .unwrap()
            .caps
            .cpu
            .hard
            .as_ref()
            .map(|c| c.percent),
        Some(50.0)
    );
}

fn cpu_cap(index: &ClusterIndex, node: &str) -> Option<(f64, String)> {
    let nodes = index.nodes();
    let cap = nodes.get(node)?.caps.cpu.hard.clone()?;
    Some((cap.percent, cap.reason))
}

#[test]
fn a_new_policy_resolves_every_nodes_caps_again_and_annotations_still_win() {
    let index = ClusterIndex::new(infra_policy());
    let mut infra = node("node03", "20", "64Gi");
    infra
        .metadata
        .labels
        .get_or_insert_default()
        .insert("role".into(), "infra".into());
    let mut annotated = node("node02", "20", "64Gi");
    annotated.metadata.annotations = Some(BTreeMap::from([(
        CPU_CAP_ANNOTATION.to_string(),
        "30".to_string(),
    )]));
    index.apply_node(&Event::Apply(infra));
    index.apply_node(&Event::Apply(annotated));
    index.apply_node(&Event::Apply(node("node01", "20", "64Gi")));
    assert_eq!(cpu_cap(&index, "node03"), Some((50.0, "infra rule".into())));
    assert_eq!(cpu_cap(&index, "node01"), None);

    let tighter = Policy::from_yaml(
        "caps:\n  - nodeLabels: {role: infra}\n    cpuPercent: 40\n    reason: FreeIPA host\n  - nodeNames: [node01, node02]\n    cpuPercent: 90\n",
    )
    .unwrap();
    index.set_policy(Arc::new(tighter.clone()));
    assert_eq!(*index.policy(), tighter);
    assert_eq!(
        cpu_cap(&index, "node03"),
        Some((40.0, "FreeIPA host".into()))
    );
    assert_eq!(cpu_cap(&index, "node01").map(|c| c.0), Some(90.0));
    // The node's own annotation still overrides the policy's rule.
    assert_eq!(cpu_cap(&index, "node02").map(|c| c.0), Some(30.0));
    // Nodes that arrive later get the new policy too.
    index.apply_node(&Event::Apply(node("node01", "20", "64Gi")));
    assert_eq!(cpu_cap(&index, "node01").map(|c| c.0), Some(90.0));
    // Equal to facts resolved from scratch under the new policy.
    assert_eq!(
        index.nodes().get("node01").cloned(),
        Some(NodeFacts::of(&node("node01", "20", "64Gi"), &tighter))
    );
}

#[test]
fn nodes_follow_updates_deletes_and_relists() {
    let mut index = NodesByName::new(Arc::new(Policy::default()));
    index.apply(&Event::Apply(node("n1", "4", "8Gi")));
    index.apply(&Event::Apply(node("n2", "4", "8Gi")));
    index.apply(&Event::Apply(node("n1", "8", "8Gi")));
    assert_eq!(index.get("n1").unwrap().allocatable.cpu_milli, 8000);
    index.apply(&Event::Delete(node("n2", "4", "8Gi")));
    assert!(index.get("n2").is_none());
    index.apply(&Event::Init);
    index.apply(&Event::InitApply(node("n3", "2", "1Gi")));
    assert!(
        index.get("n1").is_some(),
        "old index answers until InitDone"
    );
    index.apply(&Event::InitDone);
    assert!(index.get("n1").is_none());
    assert_eq!(index.len(), 1);
}

/// One step of a watch stream over a few pods.
#[derive(Clone, Debug)]
enum Step {
    /// Pod `i` now is: unbound, bound to node `n`, or terminal on node `n`.
    Apply {
        i: usize,
        node: Option<usize>,
        terminal: bool,
        cpu: u32,
    },
    Delete(usize),
    /// The watch restarted and listed every live pod again.
    Relist,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..8usize, proptest::option::of(0..3usize), any::<bool>(), 0..4000u32)
            .prop_map(|(i, node, terminal, cpu)| Step::Apply { i, node, terminal, cpu }),
        2 => (0..8usize).prop_map(Step::Delete),
        1 => Just(Step::Relist),
    ]
}

fn make_pod(i: usize, node: Option<usize>, terminal: bool, cpu: u32) -> Pod {
    let node = node.map(|n| format!("n{n}"));
    let mut p = pod(
        &format!("p{i}"),
        "ns",
        node.as_deref(),
        json!({"cpu": format!("{cpu}m")}),
        json!({}),
    );
    if terminal {
        p.status = Some(serde_json::from_value(json!({"phase": "Failed"})).unwrap());
    }
    p
}

proptest! {
    /// Whatever the order of events, the index kept from them answers as
    /// one built from scratch over the pods that exist at the end.
    #[test]
    fn incremental_index_equals_one_built_from_the_live_pods(steps in proptest::collection::vec(step(), 0..60)) {
        let mut live: BTreeMap<usize, Pod> = BTreeMap::new();
        let mut index = PodsByNode::default();
        for step in steps {
            match step {
                Step::Apply { i, node, terminal, cpu } => {
                    let p = make_pod(i, node, terminal, cpu);
                    live.insert(i, p.clone());
                    index.apply(&Event::Apply(p));
                }
                Step::Delete(i) => {
                    if let Some(p) = live.remove(&i) {
                        index.apply(&Event::Delete(p));
                    }
                }
                Step::Relist => {
                    index.apply(&Event::Init);
                    for p in live.values() {
                        index.apply(&Event::InitApply(p.clone()));
                    }
                    index.apply(&Event::InitDone);
                }
            }
        }
        let scratch = PodsByNode::from_pods(live.values());
        prop_assert_eq!(index.len(), scratch.len());
        for n in ["n0", "n1", "n2"] {
            prop_assert_eq!(
                index.totals(n, None, Resources::ZERO, None),
                scratch.totals(n, None, Resources::ZERO, None)
            );
            prop_assert_eq!(names_on(&index, n), names_on(&scratch, n));
        }
    }
}
