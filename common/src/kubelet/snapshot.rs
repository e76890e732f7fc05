//! One kubelet scrape reduced to the series headroom uses (pure).
//!
//! The kubelet's `/metrics/resource` (`resource_metrics.go`) reports, each
//! with a millisecond timestamp of when the stats were collected:
//! `node_cpu_usage_seconds_total`, `node_memory_working_set_bytes`,
//! `pod_cpu_usage_seconds_total{namespace,pod}`,
//! `pod_memory_working_set_bytes{namespace,pod}` and the `container_*`
//! equivalents with a `container` label.

use std::collections::HashMap;
use std::fmt;

use jiff::Timestamp;

use crate::prom::{Exposition, Sample};

pub const NODE_CPU: &str = "node_cpu_usage_seconds_total";
pub const NODE_MEMORY: &str = "node_memory_working_set_bytes";
pub const POD_CPU: &str = "pod_cpu_usage_seconds_total";
pub const POD_MEMORY: &str = "pod_memory_working_set_bytes";
pub const CONTAINER_CPU: &str = "container_cpu_usage_seconds_total";
pub const CONTAINER_MEMORY: &str = "container_memory_working_set_bytes";

/// A pod's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl PodKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A cumulative counter reading and when it was taken: the sample's own
/// timestamp when the kubelet gave one, else the scrape time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counter {
    pub value: f64,
    pub at: Timestamp,
}

/// A pod's series in one scrape: the `pod_*` series, or where the kubelet
/// gave none, the sum of the pod's `container_*` series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSample {
    pub cpu_seconds: Option<Counter>,
    pub memory_working_set_bytes: Option<f64>,
}

/// One node's scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceSnapshot {
    pub node: String,
    pub taken_at: Timestamp,
    pub node_cpu_seconds: Option<Counter>,
    pub node_memory_working_set_bytes: Option<f64>,
    pub pods: HashMap<PodKey, PodSample>,
}

#[derive(Default)]
struct PodSeries {
    pod_cpu: Option<Counter>,
    pod_memory: Option<f64>,
    container_cpu: Option<Counter>,
    container_memory: Option<f64>,
}

fn sample_time(sample: &Sample<'_>, taken_at: Timestamp) -> Timestamp {
    sample
        .timestamp_ms
        .filter(|&ms| ms > 0)
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(taken_at)
}

fn pod_key(sample: &Sample<'_>) -> Option<PodKey> {
    let namespace = sample.label("namespace").filter(|s| !s.is_empty())?;
    let name = sample.label("pod").filter(|s| !s.is_empty())?;
    Some(PodKey::new(namespace, name))
}

/// Builds a snapshot from a parsed `/metrics/resource` exposition. Samples
/// without namespace/pod labels, or with non-finite values, are ignored; for
/// each series the first sample wins.
pub fn snapshot_from_exposition(
    node: &str,
    exposition: &Exposition<'_>,
    taken_at: Timestamp,
) -> ResourceSnapshot {
    let mut node_cpu = None;
    let mut node_memory = None;
    let mut pods: HashMap<PodKey, PodSeries> = HashMap::new();
    for sample in &exposition.samples {
        if !sample.value.is_finite() {
            continue;
        }
        let counter = || Counter {
            value: sample.value,
            at: sample_time(sample, taken_at),
        };
        match sample.name {
            NODE_CPU => {
                node_cpu.get_or_insert_with(counter);
            }
            NODE_MEMORY => {
                node_memory.get_or_insert(sample.value);
            }
            POD_CPU | POD_MEMORY | CONTAINER_CPU | CONTAINER_MEMORY => {
                let Some(key) = pod_key(sample) else { continue };
                let series = pods.entry(key).or_default();
                match sample.name {
                    POD_CPU => {
                        series.pod_cpu.get_or_insert_with(counter);
                    }
                    POD_MEMORY => {
                        series.pod_memory.get_or_insert(sample.value);
                    }
                    CONTAINER_CPU => {
                        let c = counter();
                        series.container_cpu = Some(match series.container_cpu {
                            // The sum is as fresh as its newest part.
                            Some(sum) => Counter {
                                value: sum.value + c.value,
                                at: sum.at.max(c.at),
                            },
                            None => c,
                        });
                    }
                    _ => {
                        *series.container_memory.get_or_insert(0.0) += sample.value;
                    }
                }
            }
            _ => {}
        }
    }
    let pods = pods
        .into_iter()
        .map(|(key, s)| {
            let sample = PodSample {
                cpu_seconds: s.pod_cpu.or(s.container_cpu),
                memory_working_set_bytes: s.pod_memory.or(s.container_memory),
            };
            (key, sample)
        })
        .collect();
    ResourceSnapshot {
        node: node.to_owned(),
        taken_at,
        node_cpu_seconds: node_cpu,
        node_memory_working_set_bytes: node_memory,
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom;

    /// Shaped like a real kubelet's `/metrics/resource` (v1.3x).
    const KUBELET: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="coredns",namespace="kube-system",pod="coredns-7db6d8ff4d-abcde"} 41.123456 1733234560123
container_cpu_usage_seconds_total{container="notebook",namespace="jhub",pod="jupyter-alice"} 10.5 1733234561000
container_cpu_usage_seconds_total{container="sidecar",namespace="jhub",pod="jupyter-alice"} 1.5 1733234562000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="coredns",namespace="kube-system",pod="coredns-7db6d8ff4d-abcde"} 1.6830464e+07 1733234560123
container_memory_working_set_bytes{container="notebook",namespace="jhub",pod="jupyter-alice"} 2.68435456e+08 1733234561000
container_memory_working_set_bytes{container="sidecar",namespace="jhub",pod="jupyter-alice"} 1.048576e+06 1733234562000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="coredns",namespace="kube-system",pod="coredns-7db6d8ff4d-abcde"} 1.7332e+09 1733234560123
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1733234563456
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.23456789e+09 1733234563456
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="kube-system",pod="coredns-7db6d8ff4d-abcde"} 42.5 1733234560500
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="kube-system",pod="coredns-7db6d8ff4d-abcde"} 1.7e+07 1733234560500
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
"#;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    #[test]
    fn node_and_pod_series_from_a_kubelet_exposition() {
        let e = prom::parse(KUBELET).unwrap();
        let taken = ts(1_733_234_570_000);
        let s = snapshot_from_exposition("node-a", &e, taken);
        assert_eq!(s.node, "node-a");
        assert_eq!(s.taken_at, taken);
        assert_eq!(
            s.node_cpu_seconds,
            Some(Counter {
                value: 357.35491,
                at: ts(1_733_234_563_456)
            })
        );
        assert_eq!(s.node_memory_working_set_bytes, Some(1.23456789e9));
        assert_eq!(s.pods.len(), 2);

        // pod_* series win over container_* ones.
        let coredns = &s.pods[&PodKey::new("kube-system", "coredns-7db6d8ff4d-abcde")];
        assert_eq!(
            coredns.cpu_seconds,
            Some(Counter {
                value: 42.5,
                at: ts(1_733_234_560_500)
            })
        );
        assert_eq!(coredns.memory_working_set_bytes, Some(1.7e7));

        // No pod_* series: containers summed, newest container timestamp.
        let alice = &s.pods[&PodKey::new("jhub", "jupyter-alice")];
        assert_eq!(
            alice.cpu_seconds,
            Some(Counter {
                value: 12.0,
                at: ts(1_733_234_562_000)
            })
        );
        assert_eq!(
            alice.memory_working_set_bytes,
            Some(268_435_456.0 + 1_048_576.0)
        );
    }

    #[test]
    fn missing_series_and_timestamps() {
        let text = "node_memory_working_set_bytes 100\n\
                    pod_memory_working_set_bytes{namespace=\"ns\",pod=\"only-mem\"} 5\n\
                    pod_cpu_usage_seconds_total{namespace=\"ns\"} 1 1000\n\
                    pod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"nan\"} NaN 1000\n";
        let e = prom::parse(text).unwrap();
        let taken = ts(5_000);
        let s = snapshot_from_exposition("n", &e, taken);
        assert_eq!(s.node_cpu_seconds, None);
        assert_eq!(s.node_memory_working_set_bytes, Some(100.0));
        assert_eq!(s.pods.len(), 1, "pod label missing or value NaN: ignored");
        let p = &s.pods[&PodKey::new("ns", "only-mem")];
        assert_eq!(p.cpu_seconds, None);
        assert_eq!(p.memory_working_set_bytes, Some(5.0));

        // Without a sample timestamp the scrape time is used.
        let e = prom::parse("node_cpu_usage_seconds_total 7\n").unwrap();
        let s = snapshot_from_exposition("n", &e, taken);
        assert_eq!(
            s.node_cpu_seconds,
            Some(Counter {
                value: 7.0,
                at: taken
            })
        );
    }

    #[test]
    fn empty_exposition_gives_an_empty_snapshot() {
        let e = prom::parse("").unwrap();
        let s = snapshot_from_exposition("n", &e, ts(1));
        assert!(
            s.pods.is_empty()
                && s.node_cpu_seconds.is_none()
                && s.node_memory_working_set_bytes.is_none()
        );
    }
}
