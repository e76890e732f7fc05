use serde_json::json;

use super::*;
use crate::testutil::{k8s_time, node, pod, ts, view_with};

fn at(t: Option<Timestamp>) -> Option<MeasuredUsage> {
    t.map(|at| MeasuredUsage {
        at,
        ..MeasuredUsage::default()
    })
}

#[test]
fn scheduled_at_prefers_pod_scheduled_condition() {
    let mut p = pod("a", "ns", Some("n1"), json!({"cpu": "100m"}), json!({}));
    p.metadata.creation_timestamp = Some(k8s_time("2026-12-03T10:00:00Z"));
    assert_eq!(scheduled_at(&p), Some(ts("2026-12-03T10:00:00Z")));
    p.status = Some(
        serde_json::from_value(json!({"conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-03T10:09:00Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-03T10:00:05Z"},
        ]}))
        .unwrap(),
    );
    assert_eq!(scheduled_at(&p), Some(ts("2026-12-03T10:00:05Z")));
}

#[test]
fn totals_sum_requests_and_recent_estimates() {
    let sample_at = ts("2026-12-03T10:00:00Z");
    let mut old = pod(
        "old",
        "ns",
        Some("n1"),
        json!({"cpu": "1", "memory": "1Gi"}),
        json!({}),
    );
    old.metadata.creation_timestamp = Some(k8s_time("2026-12-03T09:00:00Z"));
    // Bound after the sample with no requests: counts with the default estimate.
    let mut fresh = pod("fresh", "ns", Some("n1"), json!({}), json!({}));
    fresh.metadata.creation_timestamp = Some(k8s_time("2026-12-03T10:00:30Z"));
    // Bound after the sample with limits only: the API server defaults its
    // requests to the limits, and common::resources does the same.
    let mut limited = pod("limited", "ns", Some("n1"), json!({}), json!({"cpu": "2"}));
    limited.metadata.creation_timestamp = fresh.metadata.creation_timestamp.clone();
    let mut done = pod("done", "ns", Some("n1"), json!({"cpu": "8"}), json!({}));
    done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
    let pending = pod("pending", "ns", None, json!({"cpu": "8"}), json!({}));
    let elsewhere = pod("other", "ns", Some("n9"), json!({"cpu": "8"}), json!({}));
    let me = pod("me", "ns", Some("n1"), json!({"cpu": "8"}), json!({}));

    let default = Resources::new(500, 256 << 20);
    let pods = [&old, &fresh, &limited, &done, &pending, &elsewhere, &me];
    let index = PodsByNode::from_pods(pods);
    let sample = at(Some(sample_at));
    let n1 = index.totals("n1", sample.as_ref(), default, Some(("ns", "me")));
    assert_eq!(n1.requested, Resources::new(1000 + 2000, 1 << 30));
    assert_eq!(n1.recent, Resources::new(500 + 2000, (256 << 20) * 2));
    assert_eq!(
        index.totals("n9", sample.as_ref(), default, None).requested,
        Resources::new(8000, 0),
        "each node counts only its own pods"
    );
    assert_eq!(index.len(), 5, "pending and terminal pods are not indexed");

    let without_sample = index.totals("n1", None, default, None);
    assert_eq!(
        without_sample.requested,
        Resources::new(1000 + 2000 + 8000, 1 << 30)
    );
    assert_eq!(without_sample.recent, Resources::ZERO);
}

#[test]
fn pods_missing_from_the_sample_count_as_recent() {
    let sample_at = ts("2026-12-03T10:00:00Z");
    let bound_before = Some(k8s_time("2026-12-03T09:59:00Z"));
    let mut seen_both = pod("seen", "ns", Some("n1"), json!({"cpu": "1"}), json!({}));
    seen_both.metadata.creation_timestamp = bound_before.clone();
    let mut memory_only = pod(
        "starting",
        "ns",
        Some("n1"),
        json!({"cpu": "2", "memory": "1Gi"}),
        json!({}),
    );
    memory_only.metadata.creation_timestamp = bound_before.clone();
    let mut absent = pod("absent", "ns", Some("n1"), json!({}), json!({}));
    absent.metadata.creation_timestamp = bound_before;

    let mut seen = PodsSeen::default();
    seen.insert(
        "ns",
        "seen",
        Reflected {
            cpu: true,
            memory: true,
        },
    );
    seen.insert(
        "ns",
        "starting",
        Reflected {
            cpu: false,
            memory: true,
        },
    );
    let sample = MeasuredUsage {
        at: sample_at,
        pods: Some(seen),
        ..MeasuredUsage::default()
    };
    let default = Resources::new(500, 256 << 20);
    let totals = PodsByNode::from_pods([&seen_both, &memory_only, &absent]).totals(
        "n1",
        Some(&sample),
        default,
        None,
    );
    assert_eq!(totals.requested, Resources::new(3000, 1 << 30));
    // "starting": its CPU (2 cores) is not in the rate yet; "absent": both defaults.
    assert_eq!(totals.recent, Resources::new(2000 + 500, 256 << 20));
}

#[test]
fn snapshots_come_from_the_stores() {
    let usage = Arc::new(StaticUsage::default());
    let now = ts("2026-12-03T10:01:00Z");
    usage.set(
        "node01",
        MeasuredUsage {
            at: ts("2026-12-03T10:00:50Z"),
            cpu_milli: Some(1200),
            memory_bytes: Some(2 << 30),
            pods: None,
        },
    );
    let mut n3 = node("node03", "4", "8Gi");
    n3.metadata.annotations =
        Some([("headroom.dev/cap-cpu-percent".to_string(), "40".to_string())].into());
    let view = view_with(
        vec![node("node01", "4", "8Gi"), n3],
        vec![pod(
            "a",
            "ns",
            Some("node01"),
            json!({"cpu": "1"}),
            json!({}),
        )],
        Some(usage as Arc<dyn UsageSource>),
    );
    let incoming = pod("new", "ns", None, json!({}), json!({}));
    let supplied_node = node("node07", "2", "4Gi");
    let supplied: HashMap<&str, &Node> = [("node07", &supplied_node)].into();
    let names: Vec<String> = ["node01", "node03", "ghost", "node07"]
        .map(String::from)
        .into();
    let snaps = view.snapshots(&names, &supplied, &incoming, now);
    assert_eq!(snaps.len(), 4);
    let n1 = snaps[0].as_ref().unwrap();
    assert_eq!(n1.allocatable, Resources::new(4000, 8 << 30));
    assert_eq!(n1.requested, Resources::new(1000, 0));
    assert_eq!(
        n1.usage,
        Usage::Sample(UsageSample {
            cpu_milli: Some(1200),
            memory_bytes: Some(2 << 30),
            age: Duration::from_secs(10),
        })
    );
    let n3 = snaps[1].as_ref().unwrap();
    assert_eq!(n3.usage, Usage::Missing);
    assert_eq!(n3.caps.cpu.hard.as_ref().unwrap().percent, 40.0);
    assert!(snaps[2].is_none(), "unknown node");
    assert_eq!(
        snaps[3].as_ref().unwrap().allocatable,
        Resources::new(2000, 4 << 30)
    );
}

#[test]
fn daemon_set_pods_are_recognised() {
    let mut p = pod("ds", "kube-system", None, json!({}), json!({}));
    assert!(!is_daemon_set_pod(&p));
    p.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "x", "uid": "u", "controller": true
        }))
        .unwrap(),
    ]);
    assert!(is_daemon_set_pod(&p));
}

fn node_usage(at: &str, cores: f64, pods: &[&str]) -> headroom_common::kubelet::NodeUsage {
    use headroom_common::kubelet::{NodeUsage, PodKey, PodUsage};
    NodeUsage {
        node: "n1".into(),
        at: ts(at),
        window: Duration::from_secs(15),
        cpu_cores: Some(cores),
        memory_working_set_bytes: Some(1e9),
        pods: pods
            .iter()
            .map(|name| {
                (
                    PodKey::new("ns", *name),
                    PodUsage {
                        cpu_cores: None,
                        memory_working_set_bytes: Some(1e8),
                        at: ts(at),
                        window: Duration::from_secs(15),
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn kubelet_usage_converts_each_sample_once() {
    let cache = headroom_common::kubelet::UsageCache::new();
    let usage = KubeletUsage::new(cache.clone());
    assert!(usage.sample("n1").is_none());
    cache.publish(node_usage("2026-12-03T10:00:00Z", 1.5, &["a"]));
    let first = usage.sample("n1").unwrap();
    assert_eq!(first.cpu_milli, Some(1500));
    assert_eq!(
        first.pods.as_ref().unwrap().get("ns", "a"),
        Some(Reflected {
            cpu: false,
            memory: true
        })
    );
    let again = usage.sample("n1").unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "same sample: shared, not rebuilt"
    );

    cache.publish(node_usage("2026-12-03T10:00:15Z", 2.0, &["a", "b"]));
    let newer = usage.sample("n1").unwrap();
    assert_eq!(newer.cpu_milli, Some(2000));
    assert!(newer.pods.as_ref().unwrap().get("ns", "b").is_some());

    // Expired from the cache: gone, even though a conversion was kept.
    cache.expire("n1", ts("2100-01-01T00:00:00Z"));
    assert!(usage.sample("n1").is_none());
    assert!(usage.sample_times().is_empty());
}
