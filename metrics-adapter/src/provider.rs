//! Notebook pods → users → values. Pure: the observations (kubelet usage,
//! jupyter_server statistics, node allocatable) come in through the
//! [`Observations`] trait and the clock through [`EvalContext`].
//!
//! Rules, stated once:
//! - A notebook pod is a non-terminal pod matching the configured selector;
//!   its user is the raw `hub.jupyter.org/username` annotation.
//! - Series labels: `user` (raw name) and `user_label` (the pod's
//!   `hub.jupyter.org/username` label, a valid label value even when the raw
//!   name is not, e.g. `user@example.com`); `metricLabelSelector` and the
//!   external `labelSelector` match against them.
//! - A Pending pod uses nothing: 0 CPU, 0 memory, 0 kernels, timestamp now.
//!   An idle notebook reports 0, never nothing.
//! - A sample older than `max_age` is an error, never a stale number; so is a
//!   Running pod the kubelet has no sample for (except a pod that started
//!   within [`NEW_POD_GRACE`] of the node's latest sample, which reports 0).
//! - Lists of pods (HPA `Pods` metrics) leave out pods whose value is in
//!   error, which the HPA treats conservatively as missing pods; if every
//!   selected pod is in error the request fails. Sums (user and namespace
//!   values, external series) fail if any contributing pod is in error,
//!   since a partial sum would look like a real, lower number.
//! - Aggregates carry the oldest contributing timestamp and the longest
//!   contributing rate window.

use std::collections::BTreeMap;
use std::time::Duration;

use headroom_common::resources::{self, Resources};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use crate::selector::{Labels, Selector};

pub const USERNAME_ANNOTATION: &str = "hub.jupyter.org/username";
pub const USERNAME_LABEL: &str = "hub.jupyter.org/username";
pub const USER_SERIES_LABEL: &str = "user";
pub const USER_LABEL_SERIES_LABEL: &str = "user_label";

/// A per-notebook measurement; per pod (`notebook_*`) and summed per user (`user_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    CpuUsageCores,
    MemoryWorkingSetBytes,
    CpuLimitFraction,
    MemoryLimitFraction,
    KernelsRunning,
    IdleSeconds,
}

impl Measure {
    pub const ALL: [Measure; 6] = [
        Measure::CpuUsageCores,
        Measure::MemoryWorkingSetBytes,
        Measure::CpuLimitFraction,
        Measure::MemoryLimitFraction,
        Measure::KernelsRunning,
        Measure::IdleSeconds,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Measure::CpuUsageCores => "cpu_usage_cores",
            Measure::MemoryWorkingSetBytes => "memory_working_set_bytes",
            Measure::CpuLimitFraction => "cpu_limit_fraction",
            Measure::MemoryLimitFraction => "memory_limit_fraction",
            Measure::KernelsRunning => "kernels_running",
            Measure::IdleSeconds => "idle_seconds",
        }
    }

    /// Whether the value comes from the pod's own jupyter_server.
    pub fn needs_server_stats(self) -> bool {
        matches!(self, Measure::KernelsRunning | Measure::IdleSeconds)
    }
}

/// Per-namespace values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NamespaceMeasure {
    ActiveUsers,
    RunningServers,
    CpuUsageCores,
    MemoryWorkingSetBytes,
}

impl NamespaceMeasure {
    pub const ALL: [NamespaceMeasure; 4] = [
        NamespaceMeasure::ActiveUsers,
        NamespaceMeasure::RunningServers,
        NamespaceMeasure::CpuUsageCores,
        NamespaceMeasure::MemoryWorkingSetBytes,
    ];
}

/// Every metric served, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `notebook_*`: one value per notebook pod.
    Pod(Measure),
    /// `user_*`: summed over a user's notebook pods.
    User(Measure),
    /// `user_running_servers`: a user's Running notebook pods.
    UserRunningServers,
    /// `jupyterhub_*`: one value per namespace.
    Namespace(NamespaceMeasure),
}

impl Metric {
    pub fn all() -> Vec<Metric> {
        let mut all: Vec<Metric> = Measure::ALL.iter().map(|m| Metric::Pod(*m)).collect();
        all.extend(Measure::ALL.iter().map(|m| Metric::User(*m)));
        all.push(Metric::UserRunningServers);
        all.extend(NamespaceMeasure::ALL.iter().map(|m| Metric::Namespace(*m)));
        all
    }

    pub fn name(self) -> String {
        match self {
            Metric::Pod(m) => format!("notebook_{}", m.suffix()),
            Metric::User(m) => format!("user_{}", m.suffix()),
            Metric::UserRunningServers => "user_running_servers".to_string(),
            Metric::Namespace(NamespaceMeasure::ActiveUsers) => {
                "jupyterhub_active_users".to_string()
            }
            Metric::Namespace(NamespaceMeasure::RunningServers) => {
                "jupyterhub_running_servers".to_string()
            }
            Metric::Namespace(NamespaceMeasure::CpuUsageCores) => {
                "jupyterhub_cpu_usage_cores".to_string()
            }
            Metric::Namespace(NamespaceMeasure::MemoryWorkingSetBytes) => {
                "jupyterhub_memory_working_set_bytes".to_string()
            }
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::all().into_iter().find(|m| m.name() == name)
    }

    /// Per-pod metrics are served on pods; the others on the namespace (and
    /// through the external API).
    pub fn is_pod_metric(self) -> bool {
        matches!(self, Metric::Pod(_))
    }

    pub fn needs_server_stats(self) -> bool {
        match self {
            Metric::Pod(m) | Metric::User(m) => m.needs_server_stats(),
            Metric::Namespace(NamespaceMeasure::ActiveUsers) => true,
            _ => false,
        }
    }
}

/// How the clock and thresholds are set for one evaluation.
#[derive(Clone, Debug)]
pub struct EvalContext {
    pub now: Timestamp,
    /// Samples older than this are errors.
    pub max_age: Duration,
    /// A user is active if any Running notebook uses at least this many cores…
    pub active_cpu_cores: f64,
    /// …or its jupyter_server saw activity at most this long ago.
    pub active_within: Duration,
}

/// Which pods count as notebooks.
#[derive(Clone, Debug)]
pub struct NotebookSelector {
    pub selector: Selector,
    pub username_annotation: String,
}

impl Default for NotebookSelector {
    fn default() -> Self {
        Self {
            selector: crate::selector::parse("component=singleuser-server").expect("valid default"),
            username_annotation: USERNAME_ANNOTATION.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    /// Unknown or missing phase: treated like Running (data expected).
    Other,
}

/// A borrowed view of a notebook pod.
#[derive(Clone, Debug)]
pub struct NotebookPod<'a> {
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub name: &'a str,
    pub user: Option<&'a str>,
    pub user_label: Option<&'a str>,
    pub node: Option<&'a str>,
    pub phase: Phase,
    pub started_at: Option<Timestamp>,
}

fn to_timestamp(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<Timestamp> {
    Timestamp::new(t.0.as_second(), t.0.subsec_nanosecond()).ok()
}

impl<'a> NotebookPod<'a> {
    /// The view of `pod` if it is a live notebook pod.
    pub fn from_pod(pod: &'a Pod, notebooks: &NotebookSelector) -> Option<Self> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let meta = &pod.metadata;
        let labels = meta.labels.as_ref().unwrap_or(&EMPTY);
        if !notebooks.selector.matches(labels) || resources::is_terminal(pod) {
            return None;
        }
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Pending") => Phase::Pending,
            Some("Running") => Phase::Running,
            _ => Phase::Other,
        };
        Some(Self {
            pod,
            namespace: meta.namespace.as_deref()?,
            name: meta.name.as_deref()?,
            user: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(&notebooks.username_annotation))
                .map(String::as_str),
            user_label: labels.get(USERNAME_LABEL).map(String::as_str),
            node: pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            phase,
            started_at: status
                .and_then(|s| s.start_time.as_ref())
                .and_then(to_timestamp),
        })
    }

    pub fn labels(&self) -> &'a BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// The series labels of this pod's values.
    pub fn series_labels(&self) -> SeriesLabels<'a> {
        SeriesLabels {
            user: self.user,
            user_label: self.user_label,
        }
    }
}

/// `user` / `user_label`, as matched by metric label selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesLabels<'a> {
    pub user: Option<&'a str>,
    pub user_label: Option<&'a str>,
}

impl Labels for SeriesLabels<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            USER_SERIES_LABEL => self.user,
            USER_LABEL_SERIES_LABEL => self.user_label,
            _ => None,
        }
    }
}

impl SeriesLabels<'_> {
    pub fn to_map(self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(u) = self.user {
            map.insert(USER_SERIES_LABEL.to_string(), u.to_string());
        }
        if let Some(l) = self.user_label {
            map.insert(USER_LABEL_SERIES_LABEL.to_string(), l.to_string());
        }
        map
    }
}

/// A pod that started at most this long (or the node's rate window, if
/// longer) before its node's latest sample may be missing from it: the
/// kubelet's stats lag container start by a housekeeping period.
pub const NEW_POD_GRACE: Duration = Duration::from_secs(60);

/// A kubelet rate sample for one pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UsageSample {
    pub cpu_cores: Option<f64>,
    pub memory_working_set_bytes: Option<f64>,
    pub at: Timestamp,
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UsageLookup {
    Sample(UsageSample),
    /// The node was scraped (latest sample at `node_at`, covering `window`)
    /// but has no sample for the pod.
    NodeWithoutPod {
        node_at: Timestamp,
        window: Duration,
    },
    /// Nothing known about the node (never scraped, or every scrape failed).
    NoNodeData {
        error: Option<String>,
    },
}

/// What a notebook's jupyter_server reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerStats {
    pub at: Timestamp,
    pub kernels_running: Option<f64>,
    pub last_activity: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServerLookup {
    /// The pod is not annotated for scraping.
    NotScraped,
    Stats(ServerStats),
    Failed {
        error: String,
    },
}

/// Where values come from.
pub trait Observations {
    fn usage(&self, pod: &NotebookPod<'_>) -> UsageLookup;
    fn server(&self, pod: &NotebookPod<'_>) -> ServerLookup;
    fn node_allocatable(&self, node: &str) -> Option<Resources>;
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The data exists but is too old. HTTP 503.
    #[error("{subject}: newest sample is {}s old (max age {}s)", age.as_secs(), max_age.as_secs())]
    Stale {
        subject: String,
        age: Duration,
        max_age: Duration,
    },
    /// Data that should exist does not (scrape failing, pod not reported). HTTP 503.
    #[error("{subject}: {reason}")]
    Missing { subject: String, reason: String },
    /// The metric does not apply (no jupyter_server scraping for the pod,
    /// no pod to take a minimum over, no series matches). HTTP 404.
    #[error("{subject}: {reason}")]
    NotAvailable { subject: String, reason: String },
}

/// A value with its sample time and, for rates, the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub value: f64,
    pub timestamp: Timestamp,
    pub window: Option<Duration>,
}

fn subject(pod: &NotebookPod<'_>) -> String {
    format!("pod {}/{}", pod.namespace, pod.name)
}

fn check_age(
    at: Timestamp,
    ctx: &EvalContext,
    what: impl FnOnce() -> String,
) -> Result<(), ValueError> {
    let age = ctx.now.duration_since(at);
    let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
    if age > ctx.max_age {
        return Err(ValueError::Stale {
            subject: what(),
            age,
            max_age: ctx.max_age,
        });
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resource {
    Cpu,
    Memory,
}

/// Usage of one resource: value (cores or bytes), sample time, rate window.
fn usage(
    resource: Resource,
    pod: &NotebookPod<'_>,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<Point, ValueError> {
    if pod.phase == Phase::Pending {
        return Ok(Point {
            value: 0.0,
            timestamp: ctx.now,
            window: None,
        });
    }
    match obs.usage(pod) {
        UsageLookup::Sample(s) => {
            check_age(s.at, ctx, || format!("{} usage", subject(pod)))?;
            let (value, window) = match resource {
                Resource::Cpu => (s.cpu_cores, Some(s.window)),
                Resource::Memory => (s.memory_working_set_bytes, None),
            };
            let value = value.ok_or_else(|| ValueError::Missing {
                subject: subject(pod),
                reason: if resource == Resource::Cpu {
                    "no CPU rate yet (it needs two kubelet readings) or no CPU series for the pod"
                        .to_string()
                } else {
                    "the kubelet reported no memory series for the pod".to_string()
                },
            })?;
            if !value.is_finite() {
                return Err(ValueError::Missing {
                    subject: subject(pod),
                    reason: "the kubelet reported a non-finite value".to_string(),
                });
            }
            Ok(Point {
                value,
                timestamp: s.at,
                window,
            })
        }
        UsageLookup::NodeWithoutPod { node_at, window } => {
            check_age(node_at, ctx, || format!("{} usage", subject(pod)))?;
            let grace = window.max(NEW_POD_GRACE);
            let cutoff = node_at.checked_sub(grace).unwrap_or(node_at);
            let new_pod = pod.started_at.is_none_or(|started| started >= cutoff);
            if new_pod {
                Ok(Point {
                    value: 0.0,
                    timestamp: node_at,
                    window: None,
                })
            } else {
                Err(ValueError::Missing {
                    subject: subject(pod),
                    reason: format!(
                        "node {} was scraped but reported no sample for the pod",
                        pod.node.unwrap_or("?")
                    ),
                })
            }
        }
        UsageLookup::NoNodeData { error } => Err(ValueError::Missing {
            subject: subject(pod),
            reason: match (pod.node, error) {
                (None, _) => "the pod is not bound to a node".to_string(),
                (Some(node), Some(e)) => format!("no kubelet data for node {node}: {e}"),
                (Some(node), None) => format!("no kubelet data for node {node} yet"),
            },
        }),
    }
}

/// What a fraction divides by: the limit, else the request, else the node's
/// allocatable (a pod without either can use the whole node). `None` when
/// none is known (an unscheduled pod without requests).
fn capacity(resource: Resource, pod: &NotebookPod<'_>, obs: &impl Observations) -> Option<f64> {
    let pick = |r: Resources| match resource {
        Resource::Cpu => r.cpu_milli as f64 / 1000.0,
        Resource::Memory => r.memory_bytes as f64,
    };
    let limit = pick(resources::pod_limits(pod.pod));
    if limit > 0.0 {
        return Some(limit);
    }
    let request = pick(resources::pod_requests(pod.pod));
    if request > 0.0 {
        return Some(request);
    }
    let node = pod.node.and_then(|n| obs.node_allocatable(n)).map(pick)?;
    (node > 0.0).then_some(node)
}

fn server_stats(
    pod: &NotebookPod<'_>,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<ServerStats, ValueError> {
    match obs.server(pod) {
        ServerLookup::Stats(stats) => {
            check_age(stats.at, ctx, || format!("{} jupyter_server metrics", subject(pod)))?;
            Ok(stats)
        }
        ServerLookup::NotScraped => Err(ValueError::NotAvailable {
            subject: subject(pod),
            reason: "the pod is not annotated prometheus.io/scrape: \"true\", so its jupyter_server metrics are not read"
                .to_string(),
        }),
        ServerLookup::Failed { error } => Err(ValueError::Missing {
            subject: subject(pod),
            reason: format!("scraping its jupyter_server failed: {error}"),
        }),
    }
}

/// The value of one per-notebook measure for one pod.
pub fn notebook_value(
    measure: Measure,
    pod: &NotebookPod<'_>,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<Point, ValueError> {
    match measure {
        Measure::CpuUsageCores => usage(Resource::Cpu, pod, obs, ctx),
        Measure::MemoryWorkingSetBytes => usage(Resource::Memory, pod, obs, ctx),
        Measure::CpuLimitFraction | Measure::MemoryLimitFraction => {
            let resource = if measure == Measure::CpuLimitFraction {
                Resource::Cpu
            } else {
                Resource::Memory
            };
            let used = usage(resource, pod, obs, ctx)?;
            let value = match capacity(resource, pod, obs) {
                Some(cap) => used.value / cap,
                None if used.value == 0.0 => 0.0,
                None => {
                    return Err(ValueError::NotAvailable {
                        subject: subject(pod),
                        reason: "no limit, request or node allocatable to divide by".to_string(),
                    });
                }
            };
            Ok(Point { value, ..used })
        }
        Measure::KernelsRunning => {
            if pod.phase == Phase::Pending {
                return Ok(Point {
                    value: 0.0,
                    timestamp: ctx.now,
                    window: None,
                });
            }
            let stats = server_stats(pod, obs, ctx)?;
            Ok(Point {
                value: stats.kernels_running.unwrap_or(0.0),
                timestamp: stats.at,
                window: None,
            })
        }
        Measure::IdleSeconds => {
            if pod.phase == Phase::Pending {
                return Err(ValueError::NotAvailable {
                    subject: subject(pod),
                    reason: "the notebook server has not started".to_string(),
                });
            }
            let stats = server_stats(pod, obs, ctx)?;
            let last = stats.last_activity.ok_or_else(|| ValueError::Missing {
                subject: subject(pod),
                reason: "its jupyter_server does not export jupyter_server_last_activity_timestamp_seconds (jupyter_server ≥ 2.15)"
                    .to_string(),
            })?;
            let idle = stats.at.duration_since(last).as_secs_f64().max(0.0);
            Ok(Point {
                value: idle,
                timestamp: stats.at,
                window: None,
            })
        }
    }
}

/// Notebook pods of `namespace` that match `label_selector`.
pub fn select_pods<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    notebooks: &NotebookSelector,
    namespace: &str,
    label_selector: &Selector,
) -> Vec<NotebookPod<'a>> {
    pods.into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|p| NotebookPod::from_pod(p, notebooks))
        .filter(|p| label_selector.matches(p.labels()))
        .collect()
}

/// One pod's value in a list.
#[derive(Clone, Debug)]
pub struct PodPoint<'a> {
    pub pod: NotebookPod<'a>,
    pub point: Point,
}

/// HPA `Pods` semantics: a value for every selected pod whose series labels
/// match `metric_selector`, pods in error left out (and logged by the
/// caller through the returned errors). Fails only when pods were selected
/// and all of them are in error; an empty selection is an empty list.
pub fn pods_values<'a>(
    measure: Measure,
    pods: &[NotebookPod<'a>],
    metric_selector: &Selector,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<(Vec<PodPoint<'a>>, Vec<ValueError>), ValueError> {
    let mut points = Vec::with_capacity(pods.len());
    let mut errors = Vec::new();
    for pod in pods
        .iter()
        .filter(|p| metric_selector.matches(&p.series_labels()))
    {
        match notebook_value(measure, pod, obs, ctx) {
            Ok(point) => points.push(PodPoint {
                pod: pod.clone(),
                point,
            }),
            Err(e) => errors.push(e),
        }
    }
    if points.is_empty()
        && let Some(first) = errors.first()
    {
        return Err(first.clone());
    }
    Ok((points, errors))
}

/// Sum/min accumulator keeping the oldest timestamp and longest window.
#[derive(Clone, Copy, Debug)]
struct Agg {
    sum: f64,
    min: Option<f64>,
    capacity: f64,
    count: usize,
    oldest: Option<Timestamp>,
    window: Option<Duration>,
}

impl Agg {
    fn new() -> Self {
        Self {
            sum: 0.0,
            min: None,
            capacity: 0.0,
            count: 0,
            oldest: None,
            window: None,
        }
    }

    fn add(&mut self, p: Point) {
        self.sum += p.value;
        self.min = Some(self.min.map_or(p.value, |m| m.min(p.value)));
        self.count += 1;
        self.oldest = Some(self.oldest.map_or(p.timestamp, |o| o.min(p.timestamp)));
        self.window = match (self.window, p.window) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn point(&self, value: f64, ctx: &EvalContext) -> Point {
        Point {
            value,
            timestamp: self.oldest.unwrap_or(ctx.now),
            window: self.window,
        }
    }
}

/// A user-level measure over a set of pods (one user's, or all pods matching
/// a metric selector): sums; fractions are Σusage / Σcapacity; idle seconds
/// is the minimum (the most recently active server). Any pod in error fails
/// the whole value.
pub fn aggregate_value(
    measure: Measure,
    pods: &[&NotebookPod<'_>],
    obs: &impl Observations,
    ctx: &EvalContext,
    what: impl Fn() -> String,
) -> Result<Point, ValueError> {
    let mut agg = Agg::new();
    match measure {
        Measure::CpuLimitFraction | Measure::MemoryLimitFraction => {
            let resource = if measure == Measure::CpuLimitFraction {
                Resource::Cpu
            } else {
                Resource::Memory
            };
            for pod in pods {
                let used = usage(resource, pod, obs, ctx)?;
                if let Some(cap) = capacity(resource, pod, obs) {
                    agg.capacity += cap;
                } else if used.value > 0.0 {
                    return Err(ValueError::NotAvailable {
                        subject: subject(pod),
                        reason: "no limit, request or node allocatable to divide by".to_string(),
                    });
                }
                agg.add(used);
            }
            let value = if agg.capacity > 0.0 {
                agg.sum / agg.capacity
            } else {
                0.0
            };
            Ok(agg.point(value, ctx))
        }
        Measure::IdleSeconds => {
            for pod in pods.iter().filter(|p| p.phase != Phase::Pending) {
                agg.add(notebook_value(measure, pod, obs, ctx)?);
            }
            let min = agg.min.ok_or_else(|| ValueError::NotAvailable {
                subject: what(),
                reason: "no running notebook server to measure idle time on".to_string(),
            })?;
            Ok(agg.point(min, ctx))
        }
        _ => {
            for pod in pods {
                agg.add(notebook_value(measure, pod, obs, ctx)?);
            }
            Ok(agg.point(agg.sum, ctx))
        }
    }
}

fn running(pod: &NotebookPod<'_>) -> bool {
    pod.phase != Phase::Pending
}

/// `user_running_servers` over a set of pods.
pub fn running_servers(pods: &[&NotebookPod<'_>], ctx: &EvalContext) -> Point {
    Point {
        value: pods.iter().filter(|p| running(p)).count() as f64,
        timestamp: ctx.now,
        window: None,
    }
}

/// Whether a pod shows user activity: CPU at or above the threshold, or
/// jupyter_server activity within the window. Server statistics are
/// optional here (CPU alone decides when they are absent or failing); a CPU
/// value in error is an error.
fn pod_active(
    pod: &NotebookPod<'_>,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<(bool, Point), ValueError> {
    let cpu = usage(Resource::Cpu, pod, obs, ctx)?;
    if cpu.value >= ctx.active_cpu_cores {
        return Ok((true, cpu));
    }
    if let ServerLookup::Stats(stats) = obs.server(pod)
        && let Some(last) = stats.last_activity
        && check_age(stats.at, ctx, String::new).is_ok()
    {
        let since = ctx.now.duration_since(last);
        let since = Duration::try_from(since).unwrap_or(Duration::ZERO);
        if since <= ctx.active_within {
            return Ok((true, cpu));
        }
    }
    Ok((false, cpu))
}

/// A `jupyterhub_*` value over the notebook pods of one namespace.
pub fn namespace_value(
    measure: NamespaceMeasure,
    pods: &[&NotebookPod<'_>],
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<Point, ValueError> {
    match measure {
        NamespaceMeasure::RunningServers => Ok(running_servers(pods, ctx)),
        NamespaceMeasure::CpuUsageCores => {
            aggregate_value(Measure::CpuUsageCores, pods, obs, ctx, String::new)
        }
        NamespaceMeasure::MemoryWorkingSetBytes => {
            aggregate_value(Measure::MemoryWorkingSetBytes, pods, obs, ctx, String::new)
        }
        NamespaceMeasure::ActiveUsers => {
            let mut agg = Agg::new();
            let mut active: Vec<&str> = Vec::new();
            for pod in pods.iter().filter(|p| running(p)) {
                let (is_active, cpu) = pod_active(pod, obs, ctx)?;
                agg.add(cpu);
                if is_active && let Some(user) = pod.user {
                    active.push(user);
                }
            }
            active.sort_unstable();
            active.dedup();
            Ok(agg.point(active.len() as f64, ctx))
        }
    }
}

/// The value of a namespace-level metric (`user_*` restricted to the series
/// matching `metric_selector`, or `jupyterhub_*`) for the notebook pods of a
/// namespace. `jupyterhub_*` series carry no labels, so a metric selector
/// that needs labels matches nothing (NotAvailable).
pub fn object_value(
    metric: Metric,
    pods: &[NotebookPod<'_>],
    metric_selector: &Selector,
    namespace: &str,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<Point, ValueError> {
    let what = || format!("namespace {namespace}");
    match metric {
        Metric::Pod(_) => Err(ValueError::NotAvailable {
            subject: what(),
            reason: format!("{} is a per-pod metric", metric.name()),
        }),
        Metric::Namespace(measure) => {
            if !metric_selector.matches(&crate::selector::NoLabels) {
                return Err(ValueError::NotAvailable {
                    subject: what(),
                    reason: format!(
                        "{} has no labels, so metricLabelSelector {metric_selector} matches nothing",
                        metric.name()
                    ),
                });
            }
            let all: Vec<&NotebookPod<'_>> = pods.iter().collect();
            namespace_value(measure, &all, obs, ctx)
        }
        Metric::User(measure) => {
            let matching: Vec<&NotebookPod<'_>> = pods
                .iter()
                .filter(|p| metric_selector.matches(&p.series_labels()))
                .collect();
            aggregate_value(measure, &matching, obs, ctx, what)
        }
        Metric::UserRunningServers => {
            let matching: Vec<&NotebookPod<'_>> = pods
                .iter()
                .filter(|p| metric_selector.matches(&p.series_labels()))
                .collect();
            Ok(running_servers(&matching, ctx))
        }
    }
}

/// One external series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub point: Point,
}

/// External metrics for one namespace. `user_*`: one series per user whose
/// labels match `selector`; a user pinned by the selector (`user=alice`)
/// without any notebook pod gets a 0 series (not for idle seconds, which has
/// no value without a server). `jupyterhub_*`: one unlabelled series if the
/// selector matches the empty label set. Any error fails the request.
pub fn external_series(
    metric: Metric,
    pods: &[NotebookPod<'_>],
    selector: &Selector,
    namespace: &str,
    obs: &impl Observations,
    ctx: &EvalContext,
) -> Result<Vec<Series>, ValueError> {
    match metric {
        Metric::Pod(_) => Err(ValueError::NotAvailable {
            subject: format!("namespace {namespace}"),
            reason: format!(
                "{} is a per-pod metric; use the custom metrics API",
                metric.name()
            ),
        }),
        Metric::Namespace(measure) => {
            if !selector.matches(&crate::selector::NoLabels) {
                return Ok(Vec::new());
            }
            let all: Vec<&NotebookPod<'_>> = pods.iter().collect();
            Ok(vec![Series {
                labels: BTreeMap::new(),
                point: namespace_value(measure, &all, obs, ctx)?,
            }])
        }
        Metric::User(_) | Metric::UserRunningServers => {
            let mut by_user: BTreeMap<SeriesLabels<'_>, Vec<&NotebookPod<'_>>> = BTreeMap::new();
            for pod in pods.iter().filter(|p| p.user.is_some()) {
                let labels = pod.series_labels();
                if selector.matches(&labels) {
                    by_user.entry(labels).or_default().push(pod);
                }
            }
            let mut out = Vec::with_capacity(by_user.len() + 1);
            for (labels, user_pods) in &by_user {
                let user = labels.user.unwrap_or_default();
                let point = match metric {
                    Metric::User(measure) => aggregate_value(measure, user_pods, obs, ctx, || {
                        format!("user {user:?} in namespace {namespace}")
                    })?,
                    _ => running_servers(user_pods, ctx),
                };
                out.push(Series {
                    labels: labels.to_map(),
                    point,
                });
            }
            let idle = metric == Metric::User(Measure::IdleSeconds);
            if let Some(pinned) = selector.pinned_value(USER_SERIES_LABEL)
                && !idle
                && !by_user.keys().any(|l| l.user == Some(pinned))
            {
                let labels = SeriesLabels {
                    user: Some(pinned),
                    user_label: None,
                };
                if selector.matches(&labels) {
                    out.push(Series {
                        labels: labels.to_map(),
                        point: Point {
                            value: 0.0,
                            timestamp: ctx.now,
                            window: None,
                        },
                    });
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::parse;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::HashMap;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().unwrap()
    }

    fn ctx() -> EvalContext {
        EvalContext {
            now: now(),
            max_age: Duration::from_secs(60),
            active_cpu_cores: 0.05,
            active_within: Duration::from_secs(300),
        }
    }

    fn secs_ago(s: i64) -> Timestamp {
        now() - jiff::SignedDuration::from_secs(s)
    }

    struct PodSpecArgs<'a> {
        name: &'a str,
        user: Option<&'a str>,
        phase: &'a str,
        cpu_request: Option<&'a str>,
        cpu_limit: Option<&'a str>,
        mem_request: Option<&'a str>,
        mem_limit: Option<&'a str>,
    }

    fn pod(args: PodSpecArgs<'_>) -> Pod {
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        if let Some(c) = args.cpu_request {
            requests.insert("cpu".to_string(), Quantity(c.into()));
        }
        if let Some(m) = args.mem_request {
            requests.insert("memory".to_string(), Quantity(m.into()));
        }
        if let Some(c) = args.cpu_limit {
            limits.insert("cpu".to_string(), Quantity(c.into()));
        }
        if let Some(m) = args.mem_limit {
            limits.insert("memory".to_string(), Quantity(m.into()));
        }
        let mut labels =
            BTreeMap::from([("component".to_string(), "singleuser-server".to_string())]);
        let mut annotations = BTreeMap::new();
        if let Some(u) = args.user {
            labels.insert(USERNAME_LABEL.to_string(), u.replace('@', "-"));
            annotations.insert(USERNAME_ANNOTATION.to_string(), u.to_string());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(args.name.to_string()),
                namespace: Some("jhub".to_string()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (args.phase != "Pending").then(|| "node-a".to_string()),
                containers: vec![Container {
                    name: "notebook".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        limits: Some(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(args.phase.to_string()),
                start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2025-01-01T10:00:00Z".parse().unwrap(),
                )),
                ..Default::default()
            }),
        }
    }

    fn simple(name: &str, user: &str) -> Pod {
        pod(PodSpecArgs {
            name,
            user: Some(user),
            phase: "Running",
            cpu_request: None,
            cpu_limit: Some("2"),
            mem_request: Some("1Gi"),
            mem_limit: None,
        })
    }

    #[derive(Default)]
    struct Fake {
        usage: HashMap<String, UsageLookup>,
        server: HashMap<String, ServerLookup>,
        allocatable: Option<Resources>,
    }

    impl Fake {
        fn cpu(mut self, pod: &str, cores: f64, mem: f64, age: i64) -> Self {
            self.usage.insert(
                pod.to_string(),
                UsageLookup::Sample(UsageSample {
                    cpu_cores: Some(cores),
                    memory_working_set_bytes: Some(mem),
                    at: secs_ago(age),
                    window: Duration::from_secs(15),
                }),
            );
            self
        }

        fn stats(mut self, pod: &str, kernels: f64, idle: i64, age: i64) -> Self {
            self.server.insert(
                pod.to_string(),
                ServerLookup::Stats(ServerStats {
                    at: secs_ago(age),
                    kernels_running: Some(kernels),
                    last_activity: Some(secs_ago(age + idle)),
                }),
            );
            self
        }
    }

    impl Observations for Fake {
        fn usage(&self, pod: &NotebookPod<'_>) -> UsageLookup {
            self.usage
                .get(pod.name)
                .cloned()
                .unwrap_or(UsageLookup::NoNodeData {
                    error: Some("connection refused".into()),
                })
        }
        fn server(&self, pod: &NotebookPod<'_>) -> ServerLookup {
            self.server
                .get(pod.name)
                .cloned()
                .unwrap_or(ServerLookup::NotScraped)
        }
        fn node_allocatable(&self, _node: &str) -> Option<Resources> {
            self.allocatable
        }
    }

    fn views(pods: &[Pod]) -> Vec<NotebookPod<'_>> {
        select_pods(
            pods,
            &NotebookSelector::default(),
            "jhub",
            &Selector::everything(),
        )
    }

    #[test]
    fn metric_names_round_trip_and_are_unique() {
        let all = Metric::all();
        assert_eq!(all.len(), 17);
        let names: std::collections::HashSet<String> = all.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), all.len());
        for m in all {
            assert_eq!(Metric::parse(&m.name()), Some(m));
        }
        assert_eq!(
            Metric::parse("notebook_cpu_usage_cores"),
            Some(Metric::Pod(Measure::CpuUsageCores))
        );
        assert_eq!(
            Metric::parse("jupyterhub_active_users"),
            Some(Metric::Namespace(NamespaceMeasure::ActiveUsers))
        );
        assert_eq!(Metric::parse("cpu"), None);
    }

    #[test]
    fn selection_keeps_live_notebooks_of_the_namespace() {
        let mut other_ns = simple("jupyter-x", "x");
        other_ns.metadata.namespace = Some("other".into());
        let mut not_notebook = simple("hub", "x");
        not_notebook.metadata.labels = Some(BTreeMap::from([("component".into(), "hub".into())]));
        let mut done = simple("jupyter-done", "d");
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pods = vec![
            simple("jupyter-alice", "alice"),
            other_ns,
            not_notebook,
            done,
        ];
        let selected = views(&pods);
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].name, "jupyter-alice");
        assert_eq!(selected[0].user, Some("alice"));
        let by_label = select_pods(
            &pods,
            &NotebookSelector::default(),
            "jhub",
            &parse("hub.jupyter.org/username=bob").unwrap(),
        );
        assert!(by_label.is_empty());
    }

    #[test]
    fn per_pod_values() {
        let pods = vec![simple("jupyter-alice", "alice")];
        let v = views(&pods);
        let obs = Fake::default()
            .cpu("jupyter-alice", 0.5, 536_870_912.0, 10)
            .stats("jupyter-alice", 2.0, 42, 5);
        let c = ctx();
        let cpu = notebook_value(Measure::CpuUsageCores, &v[0], &obs, &c).unwrap();
        assert_eq!(cpu.value, 0.5);
        assert_eq!(cpu.timestamp, secs_ago(10));
        assert_eq!(cpu.window, Some(Duration::from_secs(15)));
        let mem = notebook_value(Measure::MemoryWorkingSetBytes, &v[0], &obs, &c).unwrap();
        assert_eq!(mem.value, 536_870_912.0);
        assert_eq!(mem.window, None);
        // CPU limit 2 cores.
        assert_eq!(
            notebook_value(Measure::CpuLimitFraction, &v[0], &obs, &c)
                .unwrap()
                .value,
            0.25
        );
        // No memory limit: divided by the 1Gi request.
        assert_eq!(
            notebook_value(Measure::MemoryLimitFraction, &v[0], &obs, &c)
                .unwrap()
                .value,
            0.5
        );
        let kernels = notebook_value(Measure::KernelsRunning, &v[0], &obs, &c).unwrap();
        assert_eq!(kernels.value, 2.0);
        assert_eq!(kernels.timestamp, secs_ago(5));
        assert_eq!(
            notebook_value(Measure::IdleSeconds, &v[0], &obs, &c)
                .unwrap()
                .value,
            42.0
        );
    }

    #[test]
    fn fraction_falls_back_to_node_allocatable() {
        // The z2jh default: no CPU request or limit.
        let pods = vec![pod(PodSpecArgs {
            name: "jupyter-alice",
            user: Some("alice"),
            phase: "Running",
            cpu_request: None,
            cpu_limit: None,
            mem_request: Some("1Gi"),
            mem_limit: None,
        })];
        let v = views(&pods);
        let mut obs = Fake::default().cpu("jupyter-alice", 1.0, 0.0, 1);
        assert!(matches!(
            notebook_value(Measure::CpuLimitFraction, &v[0], &obs, &ctx()),
            Err(ValueError::NotAvailable { .. })
        ));
        obs.allocatable = Some(Resources::new(4000, 16 << 30));
        assert_eq!(
            notebook_value(Measure::CpuLimitFraction, &v[0], &obs, &ctx())
                .unwrap()
                .value,
            0.25
        );
    }

    #[test]
    fn idle_notebook_reports_zero() {
        let pods = vec![simple("jupyter-alice", "alice")];
        let v = views(&pods);
        let obs = Fake::default().cpu("jupyter-alice", 0.0, 0.0, 10).stats(
            "jupyter-alice",
            0.0,
            3600,
            10,
        );
        let (points, errors) = pods_values(
            Measure::CpuUsageCores,
            &v,
            &Selector::everything(),
            &obs,
            &ctx(),
        )
        .unwrap();
        assert!(errors.is_empty());
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].point.value, 0.0);
        assert_eq!(
            notebook_value(Measure::KernelsRunning, &v[0], &obs, &ctx())
                .unwrap()
                .value,
            0.0
        );
        let ext = external_series(
            Metric::User(Measure::CpuUsageCores),
            &v,
            &parse("user=alice").unwrap(),
            "jhub",
            &obs,
            &ctx(),
        )
        .unwrap();
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].point.value, 0.0);
    }

    #[test]
    fn pending_pod_reports_zero_now() {
        let pods = vec![pod(PodSpecArgs {
            name: "jupyter-new",
            user: Some("new"),
            phase: "Pending",
            cpu_request: None,
            cpu_limit: None,
            mem_request: None,
            mem_limit: None,
        })];
        let v = views(&pods);
        let obs = Fake::default();
        for m in [
            Measure::CpuUsageCores,
            Measure::MemoryWorkingSetBytes,
            Measure::CpuLimitFraction,
            Measure::KernelsRunning,
        ] {
            let p = notebook_value(m, &v[0], &obs, &ctx()).unwrap();
            assert_eq!(p.value, 0.0, "{m:?}");
            assert_eq!(p.timestamp, now());
        }
    }

    #[test]
    fn new_pod_missing_from_node_reports_zero_old_pod_is_an_error() {
        let mut young = simple("jupyter-young", "y");
        young.status.as_mut().unwrap().start_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2025-01-01T11:59:55Z".parse().unwrap(),
            ));
        let pods = vec![young, simple("jupyter-old", "o")];
        let v = views(&pods);
        let mut obs = Fake::default();
        for name in ["jupyter-young", "jupyter-old"] {
            obs.usage.insert(
                name.into(),
                UsageLookup::NodeWithoutPod {
                    node_at: secs_ago(2),
                    window: Duration::from_secs(15),
                },
            );
        }
        assert_eq!(
            notebook_value(Measure::CpuUsageCores, &v[0], &obs, &ctx())
                .unwrap()
                .value,
            0.0
        );
        let err = notebook_value(Measure::CpuUsageCores, &v[1], &obs, &ctx()).unwrap_err();
        assert!(matches!(err, ValueError::Missing { .. }), "{err}");
    }

    #[test]
    fn stale_is_an_error() {
        let pods = vec![
            simple("jupyter-alice", "alice"),
            simple("jupyter-bob", "bob"),
        ];
        let v = views(&pods);
        let obs =
            Fake::default()
                .cpu("jupyter-alice", 0.5, 1.0, 10)
                .cpu("jupyter-bob", 0.7, 1.0, 61);
        let err = notebook_value(Measure::CpuUsageCores, &v[1], &obs, &ctx()).unwrap_err();
        assert_eq!(
            err,
            ValueError::Stale {
                subject: "pod jhub/jupyter-bob usage".into(),
                age: Duration::from_secs(61),
                max_age: Duration::from_secs(60)
            }
        );
        assert_eq!(
            err.to_string(),
            "pod jhub/jupyter-bob usage: newest sample is 61s old (max age 60s)"
        );
        // Pods list: the stale pod is left out, the other served.
        let (points, errors) = pods_values(
            Measure::CpuUsageCores,
            &v,
            &Selector::everything(),
            &obs,
            &ctx(),
        )
        .unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].pod.name, "jupyter-alice");
        assert_eq!(errors.len(), 1);
        // All stale: the request fails.
        let only_bob = &v[1..];
        assert!(
            pods_values(
                Measure::CpuUsageCores,
                only_bob,
                &Selector::everything(),
                &obs,
                &ctx()
            )
            .is_err()
        );
        // Sums fail.
        assert!(matches!(
            object_value(
                Metric::Namespace(NamespaceMeasure::CpuUsageCores),
                &v,
                &Selector::everything(),
                "jhub",
                &obs,
                &ctx()
            ),
            Err(ValueError::Stale { .. })
        ));
        assert!(
            external_series(
                Metric::User(Measure::CpuUsageCores),
                &v,
                &Selector::everything(),
                "jhub",
                &obs,
                &ctx()
            )
            .is_err()
        );
        // A stale jupyter_server scrape too.
        let obs = obs.stats("jupyter-alice", 1.0, 0, 120);
        assert!(matches!(
            notebook_value(Measure::KernelsRunning, &v[0], &obs, &ctx()),
            Err(ValueError::Stale { .. })
        ));
    }

    #[test]
    fn missing_node_data_is_an_error_naming_the_node() {
        let pods = vec![simple("jupyter-alice", "alice")];
        let v = views(&pods);
        let err =
            notebook_value(Measure::CpuUsageCores, &v[0], &Fake::default(), &ctx()).unwrap_err();
        assert!(
            err.to_string().contains("node-a: connection refused"),
            "{err}"
        );
    }

    #[test]
    fn not_scraped_server_is_not_available() {
        let pods = vec![simple("jupyter-alice", "alice")];
        let v = views(&pods);
        let obs = Fake::default().cpu("jupyter-alice", 0.5, 1.0, 1);
        assert!(matches!(
            notebook_value(Measure::KernelsRunning, &v[0], &obs, &ctx()),
            Err(ValueError::NotAvailable { .. })
        ));
    }

    fn three_users() -> Vec<Pod> {
        let mut alice2 = simple("jupyter-alice--gpu", "alice");
        alice2
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("hub.jupyter.org/servername".into(), "gpu".into());
        vec![
            simple("jupyter-alice", "alice"),
            alice2,
            simple("jupyter-bob", "bob"),
            simple("jupyter-carol", "carol@example.com"),
        ]
    }

    fn busy_obs() -> Fake {
        Fake::default()
            .cpu("jupyter-alice", 0.5, 100.0, 10)
            .cpu("jupyter-alice--gpu", 1.0, 200.0, 20)
            .cpu("jupyter-bob", 0.01, 50.0, 5)
            .cpu("jupyter-carol", 0.0, 10.0, 5)
            .stats("jupyter-alice", 1.0, 30, 1)
            .stats("jupyter-alice--gpu", 2.0, 10, 1)
            .stats("jupyter-bob", 1.0, 100, 1)
            .stats("jupyter-carol", 0.0, 7200, 1)
    }

    #[test]
    fn per_user_values() {
        let pods = three_users();
        let v = views(&pods);
        let obs = busy_obs();
        let c = ctx();
        let series = external_series(
            Metric::User(Measure::CpuUsageCores),
            &v,
            &Selector::everything(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        let by_user: BTreeMap<String, f64> = series
            .iter()
            .map(|s| (s.labels["user"].clone(), s.point.value))
            .collect();
        assert_eq!(
            by_user,
            BTreeMap::from([
                ("alice".into(), 1.5),
                ("bob".into(), 0.01),
                ("carol@example.com".into(), 0.0)
            ])
        );
        let alice = series.iter().find(|s| s.labels["user"] == "alice").unwrap();
        assert_eq!(
            alice.point.timestamp,
            secs_ago(20),
            "oldest contributing sample"
        );
        assert_eq!(alice.labels["user_label"], "alice");
        let carol = series
            .iter()
            .find(|s| s.labels["user"] == "carol@example.com")
            .unwrap();
        assert_eq!(carol.labels["user_label"], "carol-example.com");

        // Selecting one user by raw name or by label value.
        let one = external_series(
            Metric::User(Measure::KernelsRunning),
            &v,
            &parse("user=alice").unwrap(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].point.value, 3.0);
        let by_label = external_series(
            Metric::User(Measure::MemoryWorkingSetBytes),
            &v,
            &parse("user_label=carol-example.com").unwrap(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(by_label[0].point.value, 10.0);
        // Idle: the most recently active of alice's two servers.
        let idle = external_series(
            Metric::User(Measure::IdleSeconds),
            &v,
            &parse("user=alice").unwrap(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(idle[0].point.value, 10.0);
        // Fraction: Σusage / Σlimit = 1.5 / 4.
        let frac = object_value(
            Metric::User(Measure::CpuLimitFraction),
            &v,
            &parse("user=alice").unwrap(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(frac.value, 0.375);
        let servers = object_value(
            Metric::UserRunningServers,
            &v,
            &parse("user=alice").unwrap(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(servers.value, 2.0);
        // A user without servers: 0, not nothing (but idle has no value).
        let dave = external_series(
            Metric::User(Measure::CpuUsageCores),
            &v,
            &parse("user=dave").unwrap(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(dave.len(), 1);
        assert_eq!(dave[0].point.value, 0.0);
        assert_eq!(
            dave[0].labels,
            BTreeMap::from([("user".into(), "dave".into())])
        );
        assert!(
            external_series(
                Metric::User(Measure::IdleSeconds),
                &v,
                &parse("user=dave").unwrap(),
                "jhub",
                &obs,
                &c
            )
            .unwrap()
            .is_empty()
        );
        assert!(matches!(
            object_value(
                Metric::User(Measure::IdleSeconds),
                &v,
                &parse("user=dave").unwrap(),
                "jhub",
                &obs,
                &c
            ),
            Err(ValueError::NotAvailable { .. })
        ));
        assert_eq!(
            object_value(
                Metric::User(Measure::CpuUsageCores),
                &v,
                &parse("user=dave").unwrap(),
                "jhub",
                &obs,
                &c
            )
            .unwrap()
            .value,
            0.0
        );
    }

    #[test]
    fn per_namespace_values() {
        let mut pods = three_users();
        pods.push(pod(PodSpecArgs {
            name: "jupyter-erin",
            user: Some("erin"),
            phase: "Pending",
            cpu_request: None,
            cpu_limit: None,
            mem_request: None,
            mem_limit: None,
        }));
        let v = views(&pods);
        let obs = busy_obs();
        let c = ctx();
        let ns = |m| {
            object_value(
                Metric::Namespace(m),
                &v,
                &Selector::everything(),
                "jhub",
                &obs,
                &c,
            )
            .unwrap()
        };
        assert_eq!(ns(NamespaceMeasure::RunningServers).value, 4.0);
        assert_eq!(ns(NamespaceMeasure::CpuUsageCores).value, 1.51);
        assert_eq!(ns(NamespaceMeasure::MemoryWorkingSetBytes).value, 360.0);
        // alice by CPU, bob by recent activity (100 s ago < 300 s), carol idle for 2 h
        // with no CPU, erin pending.
        let active = ns(NamespaceMeasure::ActiveUsers);
        assert_eq!(active.value, 2.0);
        assert_eq!(active.timestamp, secs_ago(20));
        assert_eq!(active.window, Some(Duration::from_secs(15)));
        // Bob goes quiet: one active user.
        let mut quiet = busy_obs();
        quiet = quiet.stats("jupyter-bob", 1.0, 1000, 1);
        let active = object_value(
            Metric::Namespace(NamespaceMeasure::ActiveUsers),
            &v,
            &Selector::everything(),
            "jhub",
            &quiet,
            &c,
        )
        .unwrap();
        assert_eq!(active.value, 1.0);
        // No notebooks at all: zeros.
        let none: Vec<NotebookPod<'_>> = Vec::new();
        let zero = object_value(
            Metric::Namespace(NamespaceMeasure::ActiveUsers),
            &none,
            &Selector::everything(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!((zero.value, zero.timestamp), (0.0, now()));
        // Unlabelled series and a selector needing labels.
        assert!(matches!(
            object_value(
                Metric::Namespace(NamespaceMeasure::RunningServers),
                &v,
                &parse("user=alice").unwrap(),
                "jhub",
                &obs,
                &c
            ),
            Err(ValueError::NotAvailable { .. })
        ));
        let ext = external_series(
            Metric::Namespace(NamespaceMeasure::RunningServers),
            &v,
            &Selector::everything(),
            "jhub",
            &obs,
            &c,
        )
        .unwrap();
        assert_eq!(ext.len(), 1);
        assert!(ext[0].labels.is_empty());
        assert_eq!(ext[0].point.value, 4.0);
    }

    #[test]
    fn metric_label_selector_filters_pod_lists() {
        let pods = three_users();
        let v = views(&pods);
        let (points, _) = pods_values(
            Measure::CpuUsageCores,
            &v,
            &parse("user in (bob,carol@example.com)").unwrap(),
            &busy_obs(),
            &ctx(),
        )
        .unwrap();
        let names: Vec<&str> = points.iter().map(|p| p.pod.name).collect();
        assert_eq!(names, vec!["jupyter-bob", "jupyter-carol"]);
    }
}
