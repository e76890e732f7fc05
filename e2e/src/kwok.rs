//! kwok configuration: node and pod lifecycle stages, emulated kubelet
//! resource metrics, and usage driven by annotations.
//!
//! Pod usage comes from the pod annotations `kwok.x-k8s.io/usage-cpu` (cores,
//! a Quantity such as `1500m`) and `kwok.x-k8s.io/usage-memory` (bytes, a
//! Quantity such as `2Gi`), re-read on every scrape, so changing an annotation
//! changes the emulated usage.
//!
//! Load that belongs to no pod (the FreeIPA services on node03) comes from
//! node annotations. A CPU counter must stay continuous when the load
//! changes, so the harness keeps three annotations: the current rate, the
//! time it took effect, and the core-seconds accumulated before that
//! ([`system_load_annotations`]). The emulated `node_cpu_usage_seconds_total`
//! is kwok's sum over pods plus that integral.

use std::collections::BTreeMap;

/// Node annotation: CPU cores used outside any pod.
pub const SYSTEM_CPU: &str = "lab.headroom.dev/system-cpu";
/// Node annotation: unix seconds at which [`SYSTEM_CPU`] took effect.
pub const SYSTEM_CPU_SINCE: &str = "lab.headroom.dev/system-cpu-since";
/// Node annotation: core-seconds used outside pods before [`SYSTEM_CPU_SINCE`].
pub const SYSTEM_CPU_BASE: &str = "lab.headroom.dev/system-cpu-base";
/// Node annotation: memory bytes used outside any pod.
pub const SYSTEM_MEMORY: &str = "lab.headroom.dev/system-memory";
/// Pod annotations kwok's usage rule reads.
pub const POD_USAGE_CPU: &str = "kwok.x-k8s.io/usage-cpu";
pub const POD_USAGE_MEMORY: &str = "kwok.x-k8s.io/usage-memory";
/// Node annotation that tells kubelet scrapers (ours, metrics-server) where
/// kwok serves a node's emulated `/metrics/resource`.
pub const RESOURCE_METRICS_PATH: &str = "metrics.k8s.io/resource-metrics-path";

/// The path kwok serves a node's emulated kubelet resource metrics on.
pub fn resource_metrics_path(node: &str) -> String {
    format!("/metrics/nodes/{node}/metrics/resource")
}

/// Annotations that set a node's load outside pods to `cpu_cores` and
/// `memory_bytes` from `now_unix` on, continuing the CPU counter from the
/// node's current annotations.
pub fn system_load_annotations(
    current: &BTreeMap<String, String>,
    cpu_cores: f64,
    memory_bytes: u64,
    now_unix: f64,
) -> BTreeMap<String, String> {
    let get = |k: &str| {
        current
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (rate, since, base) = (get(SYSTEM_CPU), get(SYSTEM_CPU_SINCE), get(SYSTEM_CPU_BASE));
    let accumulated = if since > 0.0 {
        base + rate * (now_unix - since).max(0.0)
    } else {
        base
    };
    BTreeMap::from([
        (SYSTEM_CPU.to_string(), format!("{cpu_cores}")),
        (SYSTEM_CPU_SINCE.to_string(), format!("{now_unix:.3}")),
        (SYSTEM_CPU_BASE.to_string(), format!("{accumulated:.3}")),
        (SYSTEM_MEMORY.to_string(), format!("{memory_bytes}")),
    ])
}

fn annotation_number(key: &str) -> String {
    format!(
        r#"("{key}" in node.metadata.annotations ? double(node.metadata.annotations["{key}"]) : 0.0)"#
    )
}

/// The kwok configuration file (several YAML documents).
pub fn config_yaml() -> String {
    let system_cpu_seconds = format!(
        "{base} + {rate} * ({since} > 0.0 ? UnixSecond(Now()) - {since} : 0.0)",
        base = annotation_number(SYSTEM_CPU_BASE),
        rate = annotation_number(SYSTEM_CPU),
        since = annotation_number(SYSTEM_CPU_SINCE),
    );
    let system_memory = annotation_number(SYSTEM_MEMORY);
    format!(
        r#"{STAGES}
---
kind: Metric
apiVersion: kwok.x-k8s.io/v1alpha1
metadata:
  name: metrics-resource
spec:
  path: "/metrics/nodes/{{nodeName}}/metrics/resource"
  metrics:
  - name: container_cpu_usage_seconds_total
    dimension: container
    help: Cumulative cpu time consumed by the container in core-seconds
    kind: counter
    labels:
    - {{name: container, value: 'container.name'}}
    - {{name: namespace, value: 'pod.metadata.namespace'}}
    - {{name: pod, value: 'pod.metadata.name'}}
    value: 'pod.CumulativeUsage("cpu", container.name)'
  - name: container_memory_working_set_bytes
    dimension: container
    help: Current working set of the container in bytes
    kind: gauge
    labels:
    - {{name: container, value: 'container.name'}}
    - {{name: namespace, value: 'pod.metadata.namespace'}}
    - {{name: pod, value: 'pod.metadata.name'}}
    value: 'pod.Usage("memory", container.name)'
  - name: pod_cpu_usage_seconds_total
    dimension: pod
    help: Cumulative cpu time consumed by the pod in core-seconds
    kind: counter
    labels:
    - {{name: namespace, value: 'pod.metadata.namespace'}}
    - {{name: pod, value: 'pod.metadata.name'}}
    value: 'pod.CumulativeUsage("cpu")'
  - name: pod_memory_working_set_bytes
    dimension: pod
    help: Current working set of the pod in bytes
    kind: gauge
    labels:
    - {{name: namespace, value: 'pod.metadata.namespace'}}
    - {{name: pod, value: 'pod.metadata.name'}}
    value: 'pod.Usage("memory")'
  - name: node_cpu_usage_seconds_total
    dimension: node
    help: Cumulative cpu time consumed by the node in core-seconds (pods plus emulated system load)
    kind: counter
    value: 'node.CumulativeUsage("cpu") + {system_cpu_seconds}'
  - name: node_memory_working_set_bytes
    dimension: node
    help: Current working set of the node in bytes (pods plus emulated system load)
    kind: gauge
    value: 'node.Usage("memory") + {system_memory}'
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterResourceUsage
metadata:
  name: usage-from-annotation
spec:
  usages:
  - usage:
      cpu:
        expression: |
          "{POD_USAGE_CPU}" in pod.metadata.annotations
          ? Quantity(pod.metadata.annotations["{POD_USAGE_CPU}"])
          : Quantity("0")
      memory:
        expression: |
          "{POD_USAGE_MEMORY}" in pod.metadata.annotations
          ? Quantity(pod.metadata.annotations["{POD_USAGE_MEMORY}"])
          : Quantity("0")
"#
    )
}

/// Lifecycle stages: nodes become Ready keeping the status the harness gave
/// them; pending pods on managed nodes become Running; deleted pods go away.
const STAGES: &str = r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: {{ printf "kwok-%s" Version }}
        containerRuntimeVersion: {{ printf "kwok-%s" Version }}
        kernelVersion: {{ printf "kwok-%s" Version }}
        kubeProxyVersion: {{ printf "kwok-%s" Version }}
        bootID: ""
        machineID: ""
        osImage: ""
        systemUUID: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: ContainersReady}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_cpu_counter_continues_across_changes() {
        let first = system_load_annotations(&BTreeMap::new(), 6.0, 1 << 30, 1000.0);
        assert_eq!(first[SYSTEM_CPU_BASE], "0.000");
        // 10 s at 6 cores = 60 core-seconds carried into the base.
        let second = system_load_annotations(&first, 2.0, 0, 1010.0);
        assert_eq!(second[SYSTEM_CPU_BASE], "60.000");
        assert_eq!(second[SYSTEM_CPU], "2");
        assert_eq!(second[SYSTEM_CPU_SINCE], "1010.000");
    }

    #[test]
    fn config_is_valid_yaml_documents() {
        let text = config_yaml();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()
            .expect("every document parses");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["Stage", "Stage", "Stage", "Metric", "ClusterResourceUsage"]
        );
    }

    use serde::Deserialize;
}
