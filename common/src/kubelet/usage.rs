//! CPU rates and memory from two snapshots of one node (pure).
//!
//! As metrics-server: CPU is Δcumulative / Δt over the window between the two
//! counter readings, memory is the latest working set. `at` and `window`
//! describe the CPU window (the Metrics API's `timestamp` and `window`).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use super::snapshot::{Counter, PodKey, ResourceSnapshot};

/// A node's usage and the usage of the pods its kubelet reported.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeUsage {
    pub node: String,
    pub at: Timestamp,
    pub window: Duration,
    /// `None` until two readings exist, and after a counter reset.
    pub cpu_cores: Option<f64>,
    pub memory_working_set_bytes: Option<f64>,
    pub pods: HashMap<PodKey, PodUsage>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    pub cpu_cores: Option<f64>,
    pub memory_working_set_bytes: Option<f64>,
    pub at: Timestamp,
    pub window: Duration,
}

/// The rate between two readings, or `None` when it is unknown:
/// - the timestamp did not advance (the kubelet caches stats for ~10 s, so
///   two scrapes can return the same reading);
/// - the counter went down. For `pod_*` series that is a restart of the pod
///   cgroup; for summed `container_*` series one container restarted while
///   others kept counting, and treating the whole sum as new (Prometheus
///   `rate()` style) would report a huge spike. metrics-server drops the
///   point too.
fn rate(prev: Option<&Counter>, cur: Option<&Counter>) -> Option<(f64, Duration)> {
    let (prev, cur) = (prev?, cur?);
    let seconds = cur.at.duration_since(prev.at).as_secs_f64();
    if seconds <= 0.0 || cur.value < prev.value {
        return None;
    }
    Some((
        (cur.value - prev.value) / seconds,
        Duration::from_secs_f64(seconds),
    ))
}

/// Usage between two snapshots of the same node; pods are those in `cur`.
pub fn usage_between(prev: &ResourceSnapshot, cur: &ResourceSnapshot) -> NodeUsage {
    let node_rate = rate(
        prev.node_cpu_seconds.as_ref(),
        cur.node_cpu_seconds.as_ref(),
    );
    let pods = cur
        .pods
        .iter()
        .map(|(key, sample)| {
            let before = prev.pods.get(key).and_then(|p| p.cpu_seconds.as_ref());
            let pod_rate = rate(before, sample.cpu_seconds.as_ref());
            let usage = PodUsage {
                cpu_cores: pod_rate.map(|(r, _)| r),
                memory_working_set_bytes: sample.memory_working_set_bytes,
                at: sample.cpu_seconds.map_or(cur.taken_at, |c| c.at),
                window: pod_rate.map_or(Duration::ZERO, |(_, w)| w),
            };
            (key.clone(), usage)
        })
        .collect();
    NodeUsage {
        node: cur.node.clone(),
        at: cur.node_cpu_seconds.map_or(cur.taken_at, |c| c.at),
        window: node_rate.map_or(Duration::ZERO, |(_, w)| w),
        cpu_cores: node_rate.map(|(r, _)| r),
        memory_working_set_bytes: cur.node_memory_working_set_bytes,
        pods,
    }
}

/// Usage from a node's first snapshot: memory only, no CPU rate yet.
pub fn usage_from_snapshot(cur: &ResourceSnapshot) -> NodeUsage {
    let mut empty = cur.clone();
    empty.node_cpu_seconds = None;
    empty.pods.values_mut().for_each(|p| p.cpu_seconds = None);
    let mut usage = usage_between(&empty, cur);
    usage.at = cur.taken_at;
    usage
}

/// Keeps the previous CPU rate where the new window has none (the kubelet had
/// no newer reading, or a counter reset), as long as that rate is at most
/// `max_age` older than the new usage. Memory is always the newest reading.
pub fn carry_forward(new: &mut NodeUsage, last: &NodeUsage, max_age: Duration) {
    let fresh_enough = |then: Timestamp, now: Timestamp| {
        now.duration_since(then).as_secs_f64() <= max_age.as_secs_f64()
    };
    if new.cpu_cores.is_none() && last.cpu_cores.is_some() && fresh_enough(last.at, new.at) {
        new.cpu_cores = last.cpu_cores;
        new.at = last.at;
        new.window = last.window;
    }
    for (key, pod) in &mut new.pods {
        if pod.cpu_cores.is_some() {
            continue;
        }
        if let Some(old) = last.pods.get(key)
            && old.cpu_cores.is_some()
            && fresh_enough(old.at, pod.at)
        {
            pod.cpu_cores = old.cpu_cores;
            pod.at = old.at;
            pod.window = old.window;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::snapshot::PodSample;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn counter(value: f64, at: i64) -> Option<Counter> {
        Some(Counter { value, at: ts(at) })
    }

    fn snapshot(at: i64, node_cpu: f64, pods: &[(&str, Option<Counter>, f64)]) -> ResourceSnapshot {
        ResourceSnapshot {
            node: "n".into(),
            taken_at: ts(at),
            node_cpu_seconds: counter(node_cpu, at),
            node_memory_working_set_bytes: Some(at as f64),
            pods: pods
                .iter()
                .map(|(name, cpu, mem)| {
                    (
                        PodKey::new("ns", *name),
                        PodSample {
                            cpu_seconds: *cpu,
                            memory_working_set_bytes: Some(*mem),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn rates_over_the_window_and_latest_memory() {
        let prev = snapshot(
            100,
            50.0,
            &[
                ("a", counter(10.0, 100), 1.0),
                ("gone", counter(1.0, 100), 1.0),
            ],
        );
        let cur = snapshot(
            115,
            80.0,
            &[
                ("a", counter(13.0, 110), 2.0),
                ("new", counter(5.0, 115), 3.0),
            ],
        );
        let u = usage_between(&prev, &cur);
        assert_eq!(u.node, "n");
        assert_eq!(u.cpu_cores, Some(2.0)); // 30 s of CPU in 15 s
        assert_eq!(u.window, Duration::from_secs(15));
        assert_eq!(u.at, ts(115));
        assert_eq!(u.memory_working_set_bytes, Some(115.0));
        assert_eq!(u.pods.len(), 2, "pods come from the current snapshot only");
        let a = &u.pods[&PodKey::new("ns", "a")];
        assert_eq!(a.cpu_cores, Some(0.3)); // 3 s in 10 s
        assert_eq!(a.window, Duration::from_secs(10));
        assert_eq!(a.at, ts(110));
        assert_eq!(a.memory_working_set_bytes, Some(2.0));
        let new = &u.pods[&PodKey::new("ns", "new")];
        assert_eq!(new.cpu_cores, None, "no previous reading");
        assert_eq!(new.memory_working_set_bytes, Some(3.0));
    }

    #[test]
    fn counter_reset_gives_no_rate() {
        let prev = snapshot(100, 500.0, &[("a", counter(10.0, 100), 1.0)]);
        let cur = snapshot(115, 20.0, &[("a", counter(0.5, 115), 1.0)]);
        let u = usage_between(&prev, &cur);
        assert_eq!(u.cpu_cores, None);
        assert_eq!(u.window, Duration::ZERO);
        assert_eq!(u.pods[&PodKey::new("ns", "a")].cpu_cores, None);
    }

    #[test]
    fn stale_timestamp_gives_no_rate() {
        let prev = snapshot(100, 50.0, &[("a", counter(10.0, 100), 1.0)]);
        let mut cur = snapshot(115, 50.0, &[("a", counter(10.0, 100), 1.0)]);
        cur.node_cpu_seconds = counter(50.0, 100);
        let u = usage_between(&prev, &cur);
        assert_eq!(u.cpu_cores, None);
        assert_eq!(u.pods[&PodKey::new("ns", "a")].cpu_cores, None);
    }

    #[test]
    fn missing_cpu_series_gives_memory_only() {
        let prev = snapshot(100, 50.0, &[("a", None, 1.0)]);
        let mut cur = snapshot(115, 60.0, &[("a", None, 4.0)]);
        cur.node_cpu_seconds = None;
        let u = usage_between(&prev, &cur);
        assert_eq!(u.cpu_cores, None);
        assert_eq!(u.at, ts(115), "scrape time when there is no counter");
        let a = &u.pods[&PodKey::new("ns", "a")];
        assert_eq!((a.cpu_cores, a.memory_working_set_bytes), (None, Some(4.0)));
    }

    #[test]
    fn first_snapshot_is_memory_only() {
        let cur = snapshot(100, 50.0, &[("a", counter(10.0, 100), 7.0)]);
        let u = usage_from_snapshot(&cur);
        assert_eq!(u.cpu_cores, None);
        assert_eq!(u.memory_working_set_bytes, Some(100.0));
        let a = &u.pods[&PodKey::new("ns", "a")];
        assert_eq!((a.cpu_cores, a.memory_working_set_bytes), (None, Some(7.0)));
    }

    #[test]
    fn carry_forward_keeps_recent_rates_only() {
        let s0 = snapshot(100, 50.0, &[("a", counter(10.0, 100), 1.0)]);
        let s1 = snapshot(115, 80.0, &[("a", counter(13.0, 115), 2.0)]);
        let last = usage_between(&s0, &s1);
        // The kubelet had no newer readings: nothing to compute a rate from.
        let mut s2 = snapshot(130, 80.0, &[("a", counter(13.0, 115), 3.0)]);
        s2.node_cpu_seconds = counter(80.0, 115);
        let mut new = usage_between(&s1, &s2);
        assert_eq!(new.cpu_cores, None);
        carry_forward(&mut new, &last, Duration::from_secs(45));
        assert_eq!(new.cpu_cores, Some(2.0));
        assert_eq!((new.at, new.window), (ts(115), Duration::from_secs(15)));
        let a = &new.pods[&PodKey::new("ns", "a")];
        assert_eq!(a.cpu_cores, Some(0.2));
        assert_eq!(a.memory_working_set_bytes, Some(3.0), "memory stays fresh");

        // Too old: not carried.
        let mut later = usage_from_snapshot(&snapshot(200, 0.0, &[("a", None, 1.0)]));
        carry_forward(&mut later, &last, Duration::from_secs(45));
        assert_eq!(later.cpu_cores, None);
        assert_eq!(later.pods[&PodKey::new("ns", "a")].cpu_cores, None);
    }
}
