use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::policy::{Cap, CapMode, NodeCaps, Policy, ResourceCaps, StalePolicy};

const GI: i64 = 1 << 30;

fn res(cpu_milli: i64, memory_bytes: i64) -> Resources {
    Resources {
        cpu_milli,
        memory_bytes,
    }
}

fn node(name: &str, alloc: Resources, requested: Resources) -> NodeSnapshot {
    NodeSnapshot {
        name: name.into(),
        allocatable: alloc,
        requested,
        usage: Usage::Disabled,
        recent: Resources::default(),
        caps: Arc::default(),
    }
}

fn sample(cpu_milli: i64, memory_bytes: i64, age_secs: u64) -> Usage {
    Usage::Sample(UsageSample {
        cpu_milli: Some(cpu_milli),
        memory_bytes: Some(memory_bytes),
        age: Duration::from_secs(age_secs),
    })
}

fn cpu_cap(percent: f64, mode: CapMode, reason: &str) -> Arc<NodeCaps> {
    Arc::new(NodeCaps {
        cpu: ResourceCaps {
            hard: (mode == CapMode::Hard).then(|| Cap {
                percent,
                mode,
                reason: reason.into(),
            }),
            soft: (mode == CapMode::Soft).then(|| Cap {
                percent,
                mode,
                reason: reason.into(),
            }),
        },
        ..NodeCaps::default()
    })
}

#[test]
fn estimate_prefers_requests_then_limits_then_default() {
    let default = res(500, 512 << 20);
    assert_eq!(
        pod_estimate(res(250, 0), res(1000, GI), default),
        res(250, GI)
    );
    assert_eq!(pod_estimate(res(0, 0), res(0, 0), default), default);
    assert_eq!(
        pod_estimate(res(0, 2 * GI), res(2000, 0), default),
        res(2000, 2 * GI)
    );
}

#[test]
fn percent_handles_zero_allocatable() {
    assert_eq!(percent(500, 1000), 50.0);
    assert_eq!(percent(0, 0), 0.0);
    assert!(percent(1, 0).is_infinite());
}

#[test]
fn freeipa_example_message_is_exact() {
    // 4 cores, FreeIPA measured at 1.34 cores, incoming 500m: 1840/4000 = 46%.
    let mut n = node("node03", res(4000, 8 * GI), res(0, 0));
    n.usage = sample(1340, GI, 5);
    n.caps = cpu_cap(40.0, CapMode::Hard, "FreeIPA host");
    let a = assess(&n, res(500, 0), false, &Policy::default());
    assert_eq!(a.verdict, Verdict::HardCap);
    assert_eq!(
        a.reason.as_deref(),
        Some("node03: cpu would reach 46% > cap 40% (FreeIPA host)")
    );
    assert_eq!(a.score, 0);
    assert_eq!(a.cpu.projected, 1840);
}

#[test]
fn cap_message_without_reason_and_both_resources() {
    let mut n = node("n1", res(1000, 10 * GI), res(900, 9 * GI));
    Arc::make_mut(&mut n.caps).cpu.hard = Some(Cap {
        percent: 50.0,
        mode: CapMode::Hard,
        reason: String::new(),
    });
    Arc::make_mut(&mut n.caps).memory.hard = Some(Cap {
        percent: 80.0,
        mode: CapMode::Hard,
        reason: "db".into(),
    });
    let a = assess(&n, res(100, GI), false, &Policy::default());
    assert_eq!(
        a.reason.as_deref(),
        Some("n1: cpu would reach 100% > cap 50%; memory would reach 100% > cap 80% (db)")
    );
}

#[test]
fn percent_just_above_cap_is_not_printed_as_equal() {
    assert_eq!(format_percent_above(40.3, 40.0), "40.3");
    assert_eq!(format_percent_above(40.04, 40.0), "40.04");
    assert_eq!(format_percent_above(45.6, 40.0), "46");
    assert_eq!(format_percent_above(f64::INFINITY, 40.0), "∞");
}

#[test]
fn load_uses_measured_plus_recent_when_above_requests() {
    let mut n = node("n", res(4000, 8 * GI), res(1000, GI));
    n.usage = sample(2000, 2 * GI, 1);
    n.recent = res(500, 0);
    let a = assess(&n, res(500, 0), false, &Policy::default());
    assert_eq!(a.cpu.load, 2500);
    assert_eq!(a.cpu.projected, 3000);
    assert_eq!(a.cpu.projected_percent, 75.0);
    assert_eq!(a.memory.load, 2 * GI);
}

#[test]
fn load_uses_requests_when_above_measured() {
    let mut n = node("n", res(4000, 8 * GI), res(3000, 4 * GI));
    n.usage = sample(1000, GI, 1);
    n.recent = res(500, 0);
    let a = assess(&n, res(0, 0), false, &Policy::default());
    assert_eq!(a.cpu.load, 3000);
    assert_eq!(a.memory.load, 4 * GI);
}

#[test]
fn stale_usage_falls_back_to_requests_by_default() {
    let mut n = node("n", res(4000, 8 * GI), res(1000, GI));
    n.usage = sample(3900, 7 * GI, 3600);
    n.recent = res(2000, 0);
    let a = assess(&n, res(0, 0), false, &Policy::default());
    assert!(a.usage_stale);
    assert_eq!(a.cpu.load, 1000);
    assert_eq!(a.cpu.recent, 0);
    assert_eq!(a.verdict, Verdict::Pass);
    assert!(a.score > 0);
}

#[test]
fn stale_usage_with_fail_cap_fails_capped_nodes_only() {
    let policy = Policy {
        stale_policy: StalePolicy::FailCap,
        ..Policy::default()
    };
    let mut capped = node("node03", res(4000, 8 * GI), res(0, 0));
    capped.usage = Usage::Missing;
    capped.caps = cpu_cap(40.0, CapMode::Hard, "FreeIPA host");
    let a = assess(&capped, res(100, 0), false, &policy);
    assert_eq!(a.verdict, Verdict::StaleUsage);
    assert!(a.reason.unwrap().starts_with("node03: usage data is stale"));
    assert_eq!(a.score, 0);

    let mut free = node("node01", res(4000, 8 * GI), res(0, 0));
    free.usage = sample(0, 0, 10_000);
    let a = assess(&free, res(100, 0), false, &policy);
    assert_eq!(a.verdict, Verdict::Pass);
    assert_eq!(a.score, 0, "stale nodes score 0 under fail-cap");
}

#[test]
fn soft_cap_lowers_score_but_passes_filter() {
    let mut n = node("n", res(1000, 10 * GI), res(600, 0));
    n.caps = cpu_cap(50.0, CapMode::Soft, "");
    let a = assess(&n, res(0, 0), false, &Policy::default());
    assert_eq!(a.verdict, Verdict::Pass);
    assert_eq!(a.reason, None);
    assert_eq!(a.score, 0);

    let mut under = node("n", res(1000, 10 * GI), res(200, 0));
    under.caps = cpu_cap(50.0, CapMode::Soft, "");
    let b = assess(&under, res(0, 0), false, &Policy::default());
    // cpu headroom (50-20)/50 = 0.6, memory 1.0 → 8.
    assert_eq!(b.score, 8);
}

#[test]
fn exempt_pods_pass_hard_caps() {
    let mut n = node("node03", res(1000, GI), res(900, 0));
    n.caps = cpu_cap(40.0, CapMode::Hard, "FreeIPA host");
    let a = assess(&n, res(100, 0), true, &Policy::default());
    assert_eq!(a.verdict, Verdict::Pass);
    assert_eq!(a.score, 0);
}

#[test]
fn empty_node_scores_ten_and_full_node_zero() {
    let empty = node("e", res(4000, 8 * GI), res(0, 0));
    assert_eq!(
        assess(&empty, res(0, 0), false, &Policy::default()).score,
        10
    );
    let full = node("f", res(4000, 8 * GI), res(4000, 8 * GI));
    assert_eq!(assess(&full, res(0, 0), false, &Policy::default()).score, 0);
}

#[test]
fn weights_shift_the_score() {
    let n = node("n", res(1000, 10 * GI), res(1000, 0));
    let cpu_only = Policy {
        weights: Weights {
            cpu: 1.0,
            memory: 0.0,
        },
        ..Policy::default()
    };
    let memory_only = Policy {
        weights: Weights {
            cpu: 0.0,
            memory: 1.0,
        },
        ..Policy::default()
    };
    assert_eq!(assess(&n, res(0, 0), false, &cpu_only).score, 0);
    assert_eq!(assess(&n, res(0, 0), false, &memory_only).score, 10);
}

fn arb_cap() -> impl Strategy<Value = Option<Cap>> {
    prop::option::of((1u32..=100, prop::bool::ANY).prop_map(|(p, hard)| Cap {
        percent: f64::from(p),
        mode: if hard { CapMode::Hard } else { CapMode::Soft },
        reason: String::new(),
    }))
}

fn arb_caps() -> impl Strategy<Value = NodeCaps> {
    (arb_cap(), arb_cap()).prop_map(|(cpu, memory)| {
        let slot = |c: Option<Cap>| match c {
            Some(c) if c.mode == CapMode::Hard => ResourceCaps {
                hard: Some(c),
                soft: None,
            },
            Some(c) => ResourceCaps {
                hard: None,
                soft: Some(c),
            },
            None => ResourceCaps::default(),
        };
        NodeCaps {
            cpu: slot(cpu),
            memory: slot(memory),
            warnings: Vec::new(),
        }
    })
}

fn arb_usage() -> impl Strategy<Value = Usage> {
    prop_oneof![
        Just(Usage::Disabled),
        Just(Usage::Missing),
        (
            prop::option::of(0i64..200_000),
            prop::option::of(0i64..(512 * GI)),
            0u64..600
        )
            .prop_map(|(cpu_milli, memory_bytes, age)| Usage::Sample(UsageSample {
                cpu_milli,
                memory_bytes,
                age: Duration::from_secs(age),
            })),
    ]
}

fn arb_node() -> impl Strategy<Value = NodeSnapshot> {
    (
        (0i64..128_000, 0i64..(512 * GI)),
        (0i64..200_000, 0i64..(512 * GI)),
        (0i64..10_000, 0i64..(16 * GI)),
        arb_usage(),
        arb_caps(),
    )
        .prop_map(|(alloc, req, recent, usage, caps)| NodeSnapshot {
            name: "n".into(),
            allocatable: res(alloc.0, alloc.1),
            requested: res(req.0, req.1),
            usage,
            recent: res(recent.0, recent.1),
            caps: Arc::new(caps),
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (0u32..=10, 0u32..=10, prop::bool::ANY).prop_map(|(c, m, fail)| Policy {
        weights: Weights {
            cpu: f64::from(c),
            // Validation forbids both 0.
            memory: f64::from(if c == 0 && m == 0 { 1 } else { m }),
        },
        stale_policy: if fail {
            StalePolicy::FailCap
        } else {
            StalePolicy::RequestsOnly
        },
        ..Policy::default()
    })
}

fn arb_pod() -> impl Strategy<Value = Resources> {
    (0i64..16_000, 0i64..(64 * GI)).prop_map(|(c, m)| res(c, m))
}

fn over_a_cap(a: &Assessment) -> bool {
    [&a.cpu, &a.memory]
        .iter()
        .any(|r| r.cap_percent.is_some_and(|cap| r.projected_percent > cap))
}

proptest! {
    #[test]
    fn score_is_within_extender_range(
        n in arb_node(), pod in arb_pod(), policy in arb_policy(), exempt in prop::bool::ANY
    ) {
        let a = assess(&n, pod, exempt, &policy);
        prop_assert!((MIN_EXTENDER_PRIORITY..=MAX_EXTENDER_PRIORITY).contains(&a.score));
    }

    #[test]
    fn score_is_monotone_in_free_capacity(
        n in arb_node(),
        pod in arb_pod(),
        policy in arb_policy(),
        extra_cpu in 0i64..64_000,
        extra_mem in 0i64..(256 * GI),
    ) {
        let mut roomier = n.clone();
        roomier.allocatable = res(n.allocatable.cpu_milli + extra_cpu, n.allocatable.memory_bytes + extra_mem);
        let before = assess(&n, pod, false, &policy).score;
        let after = assess(&roomier, pod, false, &policy).score;
        prop_assert!(after >= before, "more allocatable lowered the score: {before} -> {after}");

        let mut lighter = n.clone();
        lighter.requested = res(
            (n.requested.cpu_milli - extra_cpu).max(0),
            (n.requested.memory_bytes - extra_mem).max(0),
        );
        let lighter_score = assess(&lighter, pod, false, &policy).score;
        prop_assert!(lighter_score >= before, "less load lowered the score: {before} -> {lighter_score}");
    }

    #[test]
    fn node_over_its_cap_never_outscores_one_under(
        a in arb_node(), b in arb_node(), pod in arb_pod(), policy in arb_policy()
    ) {
        let aa = assess(&a, pod, false, &policy);
        let bb = assess(&b, pod, false, &policy);
        if over_a_cap(&aa) && !over_a_cap(&bb) {
            prop_assert!(aa.score <= bb.score);
        }
        if over_a_cap(&bb) && !over_a_cap(&aa) {
            prop_assert!(bb.score <= aa.score);
        }
    }

    #[test]
    fn hard_cap_failure_iff_projected_above_hard_cap(
        n in arb_node(), pod in arb_pod()
    ) {
        let policy = Policy::default();
        let a = assess(&n, pod, false, &policy);
        let over_hard = [(&a.cpu, &n.caps.cpu), (&a.memory, &n.caps.memory)]
            .iter()
            .any(|(r, c)| c.hard.as_ref().is_some_and(|h| r.projected_percent > h.percent));
        prop_assert_eq!(a.verdict == Verdict::HardCap, over_hard);
        prop_assert_eq!(a.reason.is_some(), over_hard);
    }
}
