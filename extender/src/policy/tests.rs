use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn invalid(yaml: &str) -> Vec<String> {
    match Policy::from_yaml(yaml) {
        Err(PolicyError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn example_policy_file_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.yaml");
    let policy = Policy::load(Path::new(path)).expect("example policy is valid");
    let caps = policy.caps_for("node03", &BTreeMap::new(), &BTreeMap::new());
    let cpu = caps.cpu.hard.expect("node03 has a hard cpu cap");
    assert_eq!(cpu.percent, 40.0);
    assert_eq!(cpu.reason, "FreeIPA host");
    assert_eq!(
        policy
            .caps_for("node01", &BTreeMap::new(), &BTreeMap::new())
            .cpu,
        ResourceCaps::default()
    );
}

#[test]
fn empty_file_is_the_default_policy() {
    let policy = Policy::from_yaml("# nothing here\n").unwrap();
    assert_eq!(policy, Policy::default());
    assert_eq!(policy.default_estimate.cpu_milli, 500);
    assert_eq!(policy.default_estimate.memory_bytes, 512 << 20);
    assert_eq!(policy.stale_max_age, Duration::from_secs(120));
    assert_eq!(policy.stale_policy, StalePolicy::RequestsOnly);
    assert!(policy.daemon_sets_exempt);
}

#[test]
fn full_policy_parses_every_field() {
    let policy = Policy::from_yaml(
        r#"
weights: {cpu: 2, memory: 0.5}
defaultEstimate: {cpu: 250m, memory: 1Gi}
staleUsage: {maxAge: 90s, policy: fail-cap}
daemonSetsExempt: false
caps:
  - nodeNames: [node03]
    cpuPercent: 40
    mode: hard
    reason: FreeIPA host
  - nodeLabels: {tier: shared}
    memoryPercent: 70.5
    mode: soft
"#,
    )
    .unwrap();
    assert_eq!(
        policy.weights,
        Weights {
            cpu: 2.0,
            memory: 0.5
        }
    );
    assert_eq!(policy.default_estimate.cpu_milli, 250);
    assert_eq!(policy.default_estimate.memory_bytes, 1 << 30);
    assert_eq!(policy.stale_max_age, Duration::from_secs(90));
    assert_eq!(policy.stale_policy, StalePolicy::FailCap);
    assert!(!policy.daemon_sets_exempt);
    assert_eq!(policy.caps.len(), 2);
    assert_eq!(policy.caps[1].mode, CapMode::Soft);
    assert_eq!(policy.caps[1].memory_percent, Some(70.5));
}

#[test]
fn out_of_range_percent_names_the_field() {
    let errors = invalid(
        "caps:\n  - nodeNames: [a]\n    cpuPercent: 40\n  - nodeNames: [b]\n    cpuPercent: 140\n",
    );
    assert_eq!(
        errors,
        vec!["caps[1].cpuPercent: must be within 1..=100, got 140"]
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let errors = invalid(
        r#"
weights: {cpu: -1, memory: 1}
defaultEstimate: {cpu: lots}
staleUsage: {maxAge: soon}
caps:
  - cpuPercent: 0
  - nodeNames: [""]
"#,
    );
    let joined = errors.join("\n");
    for needle in [
        "weights.cpu: must be a number >= 0",
        "defaultEstimate.cpu: invalid quantity \"lots\"",
        "staleUsage.maxAge: invalid duration \"soon\"",
        "caps[0]: must select nodes with nodeNames or nodeLabels",
        "caps[0].cpuPercent: must be within 1..=100, got 0",
        "caps[1].nodeNames[0]: must not be empty",
        "caps[1]: must set cpuPercent or memoryPercent",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
    }
}

#[test]
fn both_weights_zero_is_rejected() {
    assert_eq!(
        invalid("weights: {cpu: 0, memory: 0}"),
        vec!["weights: cpu and memory must not both be 0"]
    );
}

#[test]
fn zero_max_age_is_rejected() {
    let errors = invalid("staleUsage: {maxAge: 0s}");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("staleUsage.maxAge: must be greater than 0"));
}

#[test]
fn unknown_keys_and_bad_enums_name_the_path() {
    let err = Policy::from_yaml("caps:\n  - nodeNames: [a]\n    cpuPercnt: 40\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("caps[0]"), "{err}");
    assert!(err.contains("cpuPercnt"), "{err}");

    let err = Policy::from_yaml("staleUsage: {policy: fail-open}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("staleUsage.policy"), "{err}");
    assert!(err.contains("fail-open"), "{err}");
}

#[test]
fn strictest_matching_rule_wins_per_mode() {
    let policy = Policy::from_yaml(
        r#"
caps:
  - nodeLabels: {role: infra}
    cpuPercent: 60
    reason: infra
  - nodeNames: [node03]
    cpuPercent: 40
    reason: FreeIPA host
  - nodeNames: [node03]
    cpuPercent: 30
    mode: soft
  - nodeNames: [node03]
    nodeLabels: {role: other}
    cpuPercent: 5
"#,
    )
    .unwrap();
    let caps = policy.caps_for("node03", &labels(&[("role", "infra")]), &BTreeMap::new());
    assert_eq!(caps.cpu.hard.as_ref().unwrap().percent, 40.0);
    assert_eq!(caps.cpu.hard.as_ref().unwrap().reason, "FreeIPA host");
    assert_eq!(caps.cpu.soft.as_ref().unwrap().percent, 30.0);
    assert_eq!(caps.cpu.effective().unwrap().percent, 30.0);
    assert_eq!(caps.memory, ResourceCaps::default());

    let other = policy.caps_for("node01", &labels(&[("role", "infra")]), &BTreeMap::new());
    assert_eq!(other.cpu.hard.unwrap().percent, 60.0);
    let none = policy.caps_for("node01", &labels(&[("role", "worker")]), &BTreeMap::new());
    assert_eq!(none.cpu, ResourceCaps::default());
}

#[test]
fn annotation_overrides_policy_cap() {
    let policy = Policy::from_yaml(
        "caps:\n  - nodeNames: [node03]\n    cpuPercent: 40\n    mode: soft\n    reason: FreeIPA host\n",
    )
    .unwrap();
    let caps = policy.caps_for(
        "node03",
        &BTreeMap::new(),
        &labels(&[(CPU_CAP_ANNOTATION, "25%"), (MEMORY_CAP_ANNOTATION, "70")]),
    );
    let cpu = caps.cpu.hard.as_ref().unwrap();
    assert_eq!(cpu.percent, 25.0);
    assert_eq!(cpu.mode, CapMode::Hard);
    assert_eq!(caps.cpu.soft, None, "annotation replaces the policy caps");
    assert_eq!(
        caps.memory.hard.as_ref().unwrap().reason,
        format!("annotation {MEMORY_CAP_ANNOTATION}")
    );

    let with_reason = policy.caps_for(
        "node09",
        &BTreeMap::new(),
        &labels(&[
            (CPU_CAP_ANNOTATION, "50"),
            (CAP_REASON_ANNOTATION, "backup window"),
        ]),
    );
    assert_eq!(with_reason.cpu.hard.unwrap().reason, "backup window");
}

#[test]
fn bad_annotation_is_ignored_with_a_warning() {
    let policy = Policy::from_yaml("caps:\n  - nodeNames: [node03]\n    cpuPercent: 40\n").unwrap();
    for bad in ["abc", "0", "250", "NaN"] {
        let caps = policy.caps_for(
            "node03",
            &BTreeMap::new(),
            &labels(&[(CPU_CAP_ANNOTATION, bad)]),
        );
        assert_eq!(caps.cpu.hard.as_ref().unwrap().percent, 40.0, "{bad}");
        assert_eq!(caps.warnings.len(), 1, "{bad}");
        assert!(caps.warnings[0].contains(CPU_CAP_ANNOTATION));
    }
}
