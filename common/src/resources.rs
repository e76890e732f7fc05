//! CPU and memory arithmetic over pods and nodes, with the semantics of
//! kube-scheduler and the kubelet (`k8s.io/component-helpers/resource`
//! `PodRequests` / `PodLimits`):
//!
//! - app containers and restartable init containers (sidecars) are summed;
//! - each ordinary init container needs its own request plus the sidecars
//!   started before it; the pod needs the maximum of that and the sum above;
//! - resized containers count as `max(spec, actuated, allocated)` (in-place
//!   resize, GA since 1.35), or `max(actuated, allocated)` while the resize is
//!   infeasible;
//! - pod-level `spec.resources` replaces the container aggregate for cpu and
//!   memory when set;
//! - `spec.overhead` is added to requests, and to limits that are set.
//!
//! A zero limit means "no limit set" (as in the Go `ResourceList`, where
//! unset limits are simply absent).

use std::collections::BTreeMap;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// CPU in millicores and memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_milli: i64,
    pub memory_bytes: i64,
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu_milli: 0,
        memory_bytes: 0,
    };

    pub fn new(cpu_milli: i64, memory_bytes: i64) -> Self {
        Self {
            cpu_milli,
            memory_bytes,
        }
    }

    /// Per-resource maximum.
    pub fn max(self, other: Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli.max(other.cpu_milli),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }

    /// cpu and memory from a `ResourceList`; absent keys count as zero.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        Self {
            cpu_milli: list.get("cpu").map(quantity::cpu_millis).unwrap_or(0),
            memory_bytes: list.get("memory").map(quantity::bytes).unwrap_or(0),
        }
    }

    fn from_opt_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        list.map(Self::from_list).unwrap_or_default()
    }
}

// Saturating: corrupt or absurd quantities must not panic in debug builds or
// wrap around in release builds.
impl Add for Resources {
    type Output = Resources;
    fn add(self, rhs: Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli.saturating_add(rhs.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_add(rhs.memory_bytes),
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl Sub for Resources {
    type Output = Resources;
    fn sub(self, rhs: Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli.saturating_sub(rhs.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_sub(rhs.memory_bytes),
        }
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl std::iter::Sum for Resources {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, Add::add)
    }
}

/// Which side of `ResourceRequirements` to aggregate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requests,
    Limits,
}

/// Which view of a container's resources to read.
#[derive(Clone, Copy)]
enum View {
    Spec,
    Allocated,
    Actuated,
}

fn spec_resources(c: &Container, kind: Kind) -> Resources {
    let reqs = c.resources.as_ref();
    match kind {
        Kind::Limits => Resources::from_opt_list(reqs.and_then(|r| r.limits.as_ref())),
        Kind::Requests => {
            // API defaulting sets a missing request to the limit; objects read
            // from the API server already carry it, hand-built ones may not.
            let requests = Resources::from_opt_list(reqs.and_then(|r| r.requests.as_ref()));
            let limits = Resources::from_opt_list(reqs.and_then(|r| r.limits.as_ref()));
            let has = |name: &str| {
                reqs.and_then(|r| r.requests.as_ref())
                    .is_some_and(|m| m.contains_key(name))
            };
            Resources {
                cpu_milli: if has("cpu") {
                    requests.cpu_milli
                } else {
                    limits.cpu_milli
                },
                memory_bytes: if has("memory") {
                    requests.memory_bytes
                } else {
                    limits.memory_bytes
                },
            }
        }
    }
}

/// One container's resources for a view, mirroring `containerAllocatedRequests`,
/// `containerActuatedRequests` and `containerActuatedLimits`.
fn container_resources(
    c: &Container,
    status: Option<&ContainerStatus>,
    view: View,
    kind: Kind,
    resize_infeasible: bool,
) -> Resources {
    let fallback = || {
        if resize_infeasible {
            Resources::ZERO
        } else {
            spec_resources(c, kind)
        }
    };
    match (view, kind) {
        (View::Spec, _) => spec_resources(c, kind),
        (View::Allocated, Kind::Requests) => {
            match status.and_then(|s| s.allocated_resources.as_ref()) {
                Some(allocated) => Resources::from_list(allocated),
                None => fallback(),
            }
        }
        (View::Allocated, Kind::Limits) => spec_resources(c, kind),
        (View::Actuated, Kind::Requests) => {
            if let Some(req) = status
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
            {
                Resources::from_list(req)
            } else if let Some(allocated) = status.and_then(|s| s.allocated_resources.as_ref()) {
                Resources::from_list(allocated)
            } else {
                fallback()
            }
        }
        (View::Actuated, Kind::Limits) => match status
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
        {
            Some(lim) => Resources::from_list(lim),
            None => fallback(),
        },
    }
}

fn find_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
}

/// `IsPodResizeInfeasible`: the first `PodResizePending` condition has reason
/// `Infeasible`.
fn resize_infeasible(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodResizePending"))
        .is_some_and(|c| c.reason.as_deref() == Some("Infeasible"))
}

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// `aggregateContainerResourcesByFn`: the sidecar-aware aggregation.
fn aggregate(pod: &Pod, view: View, kind: Kind, infeasible: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::ZERO;
    };
    let get =
        |c: &Container| container_resources(c, find_status(pod, &c.name), view, kind, infeasible);
    let mut total: Resources = spec.containers.iter().map(get).sum();
    let mut sidecars = Resources::ZERO;
    let mut init_peak = Resources::ZERO;
    for c in spec.init_containers.iter().flatten() {
        let own = get(c);
        let during_init = if is_restartable_init(c) {
            total += own;
            sidecars += own;
            sidecars
        } else {
            own + sidecars
        };
        init_peak = init_peak.max(during_init);
    }
    total.max(init_peak)
}

/// `AggregateContainerRequests` / `AggregateContainerLimits` with status
/// resources considered (in-place resize is GA, so kube-scheduler always does).
fn aggregate_containers(pod: &Pod, kind: Kind) -> Resources {
    let infeasible = resize_infeasible(pod);
    let actuated = aggregate(pod, View::Actuated, kind, infeasible);
    let running = match kind {
        Kind::Requests => actuated.max(aggregate(pod, View::Allocated, kind, infeasible)),
        // Limits have no allocated view.
        Kind::Limits => actuated,
    };
    if infeasible {
        running
    } else {
        aggregate(pod, View::Spec, kind, false).max(running)
    }
}

/// Pod-level `spec.resources` replaces the aggregate per resource it sets.
fn apply_pod_level(pod: &Pod, kind: Kind, mut aggregate: Resources) -> Resources {
    let list = pod
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| match kind {
            Kind::Requests => r.requests.as_ref(),
            Kind::Limits => r.limits.as_ref(),
        });
    if let Some(list) = list {
        if let Some(cpu) = list.get("cpu") {
            aggregate.cpu_milli = quantity::cpu_millis(cpu);
        }
        if let Some(mem) = list.get("memory") {
            aggregate.memory_bytes = quantity::bytes(mem);
        }
    }
    aggregate
}

fn overhead(pod: &Pod) -> Resources {
    Resources::from_opt_list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()))
}

/// The pod's effective requests as kube-scheduler accounts them (`PodRequests`
/// with default options): what the pod reserves on its node.
pub fn pod_requests(pod: &Pod) -> Resources {
    let reqs = apply_pod_level(
        pod,
        Kind::Requests,
        aggregate_containers(pod, Kind::Requests),
    );
    reqs + overhead(pod)
}

/// The pod's effective limits (`PodLimits`); zero means no limit was set for
/// that resource. Overhead is added only to limits that are set.
pub fn pod_limits(pod: &Pod) -> Resources {
    let mut limits = apply_pod_level(pod, Kind::Limits, aggregate_containers(pod, Kind::Limits));
    let overhead = overhead(pod);
    if limits.cpu_milli != 0 {
        limits.cpu_milli = limits.cpu_milli.saturating_add(overhead.cpu_milli);
    }
    if limits.memory_bytes != 0 {
        limits.memory_bytes = limits.memory_bytes.saturating_add(overhead.memory_bytes);
    }
    limits
}

/// The node's `status.allocatable` cpu and memory: what kube-scheduler lets
/// pods request in total. Missing entries count as zero, as in the scheduler.
pub fn node_allocatable(node: &Node) -> Resources {
    Resources::from_opt_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
}

/// Succeeded or Failed: the pod no longer holds resources on its node.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("valid pod json")
    }

    fn c(name: &str, requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "resources": {"requests": requests, "limits": limits}})
    }

    const MI: i64 = 1 << 20;

    #[test]
    fn sums_app_containers() {
        let p = pod(json!({"spec": {"containers": [
            c("a", json!({"cpu": "250m", "memory": "64Mi"}), json!({})),
            c("b", json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "2"})),
        ]}}));
        assert_eq!(pod_requests(&p), Resources::new(1250, 64 * MI + 1024 * MI));
        assert_eq!(pod_limits(&p), Resources::new(2000, 0));
    }

    #[test]
    fn init_containers_take_max_not_sum() {
        let p = pod(json!({"spec": {
            "initContainers": [
                c("i1", json!({"cpu": "2", "memory": "100Mi"}), json!({})),
                c("i2", json!({"cpu": "500m", "memory": "900Mi"}), json!({})),
            ],
            "containers": [c("a", json!({"cpu": "1", "memory": "200Mi"}), json!({}))],
        }}));
        assert_eq!(pod_requests(&p), Resources::new(2000, 900 * MI));
    }

    #[test]
    fn sidecars_are_summed_and_reserved_for_later_init_containers() {
        // KEP-753 example shape: sidecar started before an init container adds to
        // that init container's peak and to the steady-state sum.
        let mut sidecar = c(
            "sidecar",
            json!({"cpu": "300m", "memory": "50Mi"}),
            json!({}),
        );
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({"spec": {
            "initContainers": [
                c("before", json!({"cpu": "1500m"}), json!({})),
                sidecar,
                c("after", json!({"cpu": "1", "memory": "10Mi"}), json!({})),
            ],
            "containers": [c("app", json!({"cpu": "500m", "memory": "100Mi"}), json!({}))],
        }}));
        // steady: app 500m + sidecar 300m = 800m; init peaks: before 1500m,
        // sidecar alone 300m, after 1000m + 300m = 1300m → 1500m.
        // memory: steady 150Mi; peaks 0, 50Mi, 60Mi → 150Mi.
        assert_eq!(pod_requests(&p), Resources::new(1500, 150 * MI));
    }

    #[test]
    fn overhead_added_to_requests_and_only_to_set_limits() {
        let p = pod(json!({"spec": {
            "overhead": {"cpu": "100m", "memory": "20Mi"},
            "containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}), json!({"memory": "2Gi"}))],
        }}));
        assert_eq!(pod_requests(&p), Resources::new(1100, 1024 * MI + 20 * MI));
        assert_eq!(pod_limits(&p), Resources::new(0, 2048 * MI + 20 * MI));
    }

    #[test]
    fn pod_level_resources_replace_container_aggregate_per_resource() {
        let p = pod(json!({"spec": {
            "resources": {"requests": {"cpu": "3"}, "limits": {"memory": "4Gi"}},
            "overhead": {"cpu": "100m"},
            "containers": [c("a", json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "2"}))],
        }}));
        assert_eq!(pod_requests(&p), Resources::new(3100, 1024 * MI));
        assert_eq!(pod_limits(&p), Resources::new(2100, 4096 * MI));
    }

    #[test]
    fn missing_request_defaults_to_limit() {
        let p = pod(
            json!({"spec": {"containers": [c("a", json!({}), json!({"cpu": "2", "memory": "1Gi"}))]}}),
        );
        assert_eq!(pod_requests(&p), Resources::new(2000, 1024 * MI));
        let p = pod(
            json!({"spec": {"containers": [c("a", json!({"cpu": "0"}), json!({"cpu": "2"}))]}}),
        );
        assert_eq!(
            pod_requests(&p).cpu_milli,
            0,
            "an explicit zero request stays zero"
        );
    }

    #[test]
    fn in_place_resize_counts_the_larger_of_spec_and_status() {
        let status = |reason: Option<&str>| {
            let mut s = json!({"containerStatuses": [{
                "name": "a", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                "allocatedResources": {"cpu": "2", "memory": "1Gi"},
                "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "4"}},
            }]});
            if let Some(r) = reason {
                s["conditions"] =
                    json!([{"type": "PodResizePending", "status": "True", "reason": r}]);
            }
            s
        };
        // Spec shrunk to 1 CPU but the kubelet still runs it at 2: count 2.
        let spec = json!({"containers": [c("a", json!({"cpu": "1", "memory": "2Gi"}), json!({"cpu": "3"}))]});
        let p = pod(json!({"spec": spec, "status": status(Some("Deferred"))}));
        assert_eq!(pod_requests(&p), Resources::new(2000, 2048 * MI));
        assert_eq!(pod_limits(&p).cpu_milli, 4000);
        // Infeasible resize: the spec is ignored, only what runs counts.
        let p = pod(json!({"spec": spec, "status": status(Some("Infeasible"))}));
        assert_eq!(pod_requests(&p), Resources::new(2000, 1024 * MI));
        assert_eq!(pod_limits(&p).cpu_milli, 4000);
    }

    #[test]
    fn empty_pod_and_arithmetic() {
        assert_eq!(pod_requests(&Pod::default()), Resources::ZERO);
        let a = Resources::new(100, 10);
        let mut b = Resources::new(50, 30);
        assert_eq!(a + b, Resources::new(150, 40));
        assert_eq!(a - b, Resources::new(50, -20));
        b += a;
        assert_eq!(b, Resources::new(150, 40));
        b -= a;
        assert_eq!(b, Resources::new(50, 30));
        assert_eq!(
            Resources::new(i64::MAX, 0) + a,
            Resources::new(i64::MAX, 10)
        );
    }

    #[test]
    fn node_allocatable_and_terminal_phase() {
        let node: Node = serde_json::from_value(json!({"status": {
            "capacity": {"cpu": "8", "memory": "32Gi"},
            "allocatable": {"cpu": "7800m", "memory": "31Gi", "pods": "110"},
        }}))
        .unwrap();
        assert_eq!(
            node_allocatable(&node),
            Resources::new(7800, 31 * 1024 * MI)
        );
        assert_eq!(node_allocatable(&Node::default()), Resources::ZERO);
        for (phase, terminal) in [
            ("Running", false),
            ("Pending", false),
            ("Succeeded", true),
            ("Failed", true),
        ] {
            let p = pod(json!({"status": {"phase": phase}}));
            assert_eq!(is_terminal(&p), terminal, "{phase}");
        }
        assert!(!is_terminal(&Pod::default()));
    }
}
