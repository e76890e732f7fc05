//! Scheduling throughput with the real kube-scheduler (issue item 3):
//! 500 kwok nodes, 2,000 notebook pods, (a) default plugins only, (b) with
//! headroom-extender (filter + prioritize, nodeCacheCapable, weight 5), in
//! one run on one cluster.
//!
//! The pods of a round are created while no scheduler runs, then the
//! scheduler starts and a watch records when each pod gets its node. So the
//! figure is the scheduler's own rate (first binding to last binding) and
//! not the rate at which this machine can create pods, which on two cores
//! is of the same order and would flatten the ratio.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::extender;
use super::loadgen;
use super::scheduler;
use crate::jupyterhub::Notebook;
use crate::lab::scheduler_config_with_extender;
use crate::{Cluster, ClusterConfig, Error, NodeSpec};

#[derive(Clone, Debug)]
pub struct SchedulingOptions {
    pub nodes: usize,
    pub pods: usize,
    pub weight: i64,
    pub scrape_interval: Duration,
    /// Rounds of (a) then (b).
    pub rounds: usize,
    /// Also run (a′): default plugins while the extender runs beside.
    pub beside: bool,
    pub timeout: Duration,
}

/// One round of one configuration.
#[derive(Clone, Debug)]
pub struct Round {
    pub config: &'static str,
    pub round: usize,
    pub pods: usize,
    /// Pod creation rate while no scheduler ran (for context).
    pub created_per_second: f64,
    /// Scheduler process start to first binding (informer sync etc.).
    pub start_to_first: Duration,
    /// First binding to last binding.
    pub first_to_last: Duration,
    /// (filter, prioritize) calls the extender answered, for (b).
    pub extender_calls: Option<(u64, u64)>,
    /// CPU time used between the first and the last binding.
    pub cpu: WindowCpu,
    /// First binding to the last pod Running (kwok has started it), and
    /// the CPU used over that longer window.
    pub first_to_all_running: Duration,
    pub cpu_to_all_running: WindowCpu,
    /// CPU each process used while the pods waited and no scheduler ran
    /// (the harness's background: kwok's node heartbeats, controllers, the
    /// extender's scrapes and watches), and over how long.
    pub idle: WindowCpu,
    pub idle_window: Duration,
}

/// CPU time (user + system) each process used over the first → last
/// binding window, by process name (kube-scheduler, headroom-extender and
/// the cluster's etcd, kube-apiserver, kube-controller-manager, kwok).
/// Processes whose `/proc` entry could not be read are left out.
#[derive(Clone, Debug, Default)]
pub struct WindowCpu {
    pub per_process: Vec<(String, Duration)>,
}

impl WindowCpu {
    pub fn of(&self, name: &str) -> Option<Duration> {
        self.per_process
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
    }

    pub fn total(&self) -> Duration {
        self.per_process.iter().map(|(_, d)| *d).sum()
    }
}

/// User + system CPU time of a process so far, from `/proc/PID/stat`.
/// Assumes the kernel's USER_HZ of 100 (every Linux architecture we run on).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (comm) may contain spaces; fields after its ')' are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, i.e. 12 and 13
    // after the state field that follows comm.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

impl Round {
    /// Bindings per second between the first and the last binding.
    pub fn pods_per_second(&self) -> f64 {
        (self.pods.saturating_sub(1)) as f64 / self.first_to_last.as_secs_f64().max(1e-9)
    }

    /// Pods Running per second, first binding → last pod Running.
    pub fn running_per_second(&self) -> f64 {
        self.pods.saturating_sub(1) as f64 / self.first_to_all_running.as_secs_f64().max(1e-9)
    }

    /// Cores the processes used while idle (no scheduler running).
    pub fn idle_cores(&self) -> f64 {
        self.idle.total().as_secs_f64() / self.idle_window.as_secs_f64().max(1e-9)
    }

    /// CPU per binding above what the idle background would have used over
    /// the same first → last window: the work scheduling itself caused.
    /// The background runs on while the pods are scheduled, so a slower
    /// configuration pays more of it per pod; this separates the two.
    pub fn cpu_per_binding_above_idle(&self) -> Duration {
        let background = self.idle_cores() * self.first_to_last.as_secs_f64();
        let above = (self.cpu.total().as_secs_f64() - background).max(0.0);
        Duration::from_secs_f64(above / self.pods.saturating_sub(1).max(1) as f64)
    }
}

/// How long the background CPU is sampled before the scheduler starts.
const IDLE_SAMPLE: Duration = Duration::from_secs(10);

/// Each of `pids`' CPU time so far (`None` where `/proc` could not be read).
fn cpu_readings(pids: &[(String, u32)]) -> Vec<Option<Duration>> {
    pids.iter().map(|(_, pid)| process_cpu(*pid)).collect()
}

/// CPU used by `pids` over `window`, from `/proc`.
async fn cpu_over(pids: &[(String, u32)], window: Duration) -> WindowCpu {
    let before = cpu_readings(pids);
    tokio::time::sleep(window).await;
    WindowCpu::between(pids, &before, &cpu_readings(pids))
}

impl WindowCpu {
    /// Per-process differences of two `/proc` readings of `pids`.
    fn between(
        pids: &[(String, u32)],
        before: &[Option<Duration>],
        after: &[Option<Duration>],
    ) -> Self {
        Self {
            per_process: pids
                .iter()
                .zip(before.iter().zip(after))
                .filter_map(|((name, _), (a, b))| {
                    Some((name.clone(), b.as_ref()?.saturating_sub(*a.as_ref()?)))
                })
                .collect(),
        }
    }
}

/// kube-scheduler's defaults: no extender.
const DEFAULT_SCHEDULER: &str =
    "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

pub const DEFAULT_CONFIG: &str = "(a) default plugins";
pub const BESIDE_CONFIG: &str = "(a′) default plugins, extender running, not called";
pub const EXTENDER_CONFIG: &str = "(b) + headroom-extender";

pub async fn run(
    opts: &SchedulingOptions,
    mut on_round: impl FnMut(&Round),
) -> Result<Vec<Round>, Error> {
    let cluster = Cluster::start(ClusterConfig {
        nodes: NodeSpec::uniform(opts.nodes, "20", "64Gi"),
        scheduler_config: None,
        ..ClusterConfig::default()
    })
    .await?;
    let client = loadgen::client(None).map_err(Error::Other)?;
    let mut rounds = Vec::new();
    for round in 1..=opts.rounds {
        // (a): default plugins, no extender process at all.
        let ns = format!("bench-a{round}");
        let r = default_round(&cluster, opts, &ns, DEFAULT_CONFIG, round, None).await?;
        on_round(&r);
        rounds.push(r);

        // (b): the extender as the manifests deploy it.
        let mut ext = extender::start(
            &cluster,
            &client,
            super::http_bench::POLICY,
            opts.scrape_interval,
            false,
        )
        .await?;
        extender::wait_measured(
            &mut ext,
            &client,
            opts.nodes,
            opts.scrape_interval * 3 + Duration::from_secs(60),
        )
        .await?;
        if opts.beside {
            // (a′): the same default scheduler while the extender watches and
            // scrapes as in (b): what its presence costs, apart from its calls.
            let ns = format!("bench-a2{round}");
            let pid = ext.proc.pid();
            let r = default_round(&cluster, opts, &ns, BESIDE_CONFIG, round, pid).await?;
            on_round(&r);
            rounds.push(r);
        }
        let before = calls(&extender::request_counts(&ext, &client).await?);
        let ns = format!("bench-b{round}");
        let created = create_pods(&cluster, &ns, opts.pods).await?;
        let cfg = scheduler_config_with_extender(&ext.url, opts.weight, false);
        let measured =
            schedule(&cluster, &ns, opts.pods, &cfg, ext.proc.pid(), opts.timeout).await?;
        let after = calls(&extender::request_counts(&ext, &client).await?);
        let r = measured.into_round(
            EXTENDER_CONFIG,
            round,
            opts.pods,
            created,
            Some((after.0 - before.0, after.1 - before.1)),
        );
        on_round(&r);
        rounds.push(r);
        ext.proc.stop(Duration::from_secs(5)).await;
        delete_pods(&cluster, &ns).await?;
    }
    cluster.stop().await;
    Ok(rounds)
}

/// One round of the default scheduler on fresh pods in namespace `ns`,
/// deleted afterwards; `extender_pid` only for its CPU.
async fn default_round(
    cluster: &Cluster,
    opts: &SchedulingOptions,
    ns: &str,
    config: &'static str,
    round: usize,
    extender_pid: Option<u32>,
) -> Result<Round, Error> {
    let created = create_pods(cluster, ns, opts.pods).await?;
    let r = schedule(
        cluster,
        ns,
        opts.pods,
        DEFAULT_SCHEDULER,
        extender_pid,
        opts.timeout,
    )
    .await?
    .into_round(config, round, opts.pods, created, None);
    delete_pods(cluster, ns).await?;
    Ok(r)
}

fn calls(counts: &[(String, u64)]) -> (u64, u64) {
    let get = |verb: &str| {
        counts
            .iter()
            .filter(|(v, _)| v == verb)
            .map(|(_, c)| c)
            .sum()
    };
    (get("filter"), get("prioritize"))
}

/// Creates `count` z2jh notebook pods in a new namespace; returns pods/s.
async fn create_pods(cluster: &Cluster, ns: &str, count: usize) -> Result<f64, Error> {
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    namespaces
        .patch(
            ns,
            &PatchParams::apply("headroom-bench"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            ),
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let t = Instant::now();
    futures::stream::iter((0..count).map(|i| {
        let pods = pods.clone();
        async move {
            let pod =
                Notebook::z2jh_default(&format!("user{i:05}"), "100m", "512Mi").to_pod("jhub");
            pods.create(&PostParams::default(), &pod).await.map(|_| ())
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

/// Starts kube-scheduler with `config` and watches until `count` pods of
/// `ns` are bound; returns (start → first binding, first → last binding) and
/// the CPU the scheduler and the extender (`extender_pid`) used in between.
async fn schedule(
    cluster: &Cluster,
    ns: &str,
    count: usize,
    config: &str,
    extender_pid: Option<u32>,
    timeout: Duration,
) -> Result<Scheduled, Error> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let stream = watcher(pods, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    // Prime the watch (its initial list) before the scheduler starts.
    let mut bound: HashSet<String> = HashSet::new();
    let mut seen = 0usize;
    while seen < count {
        match stream
            .try_next()
            .await
            .map_err(|e| Error::Other(e.to_string()))?
        {
            Some(pod) => {
                seen += 1;
                if is_bound(&pod) {
                    bound.insert(pod.metadata.name.unwrap_or_default());
                }
            }
            None => return Err(Error::Other("pod watch ended".into())),
        }
    }
    if !bound.is_empty() {
        return Err(Error::Other(format!(
            "{} pods were bound before any scheduler ran",
            bound.len()
        )));
    }
    let mut pids: Vec<(String, u32)> = cluster.component_pids();
    pids.extend(extender_pid.map(|p| ("headroom-extender".to_string(), p)));
    let idle = cpu_over(&pids, IDLE_SAMPLE).await;
    let started = Instant::now();
    let mut proc = scheduler::start(cluster, config, &format!("kube-scheduler-{ns}")).await?;
    let mut first = None;
    let mut last = started;
    pids.extend(proc.pid().map(|p| ("kube-scheduler".to_string(), p)));
    let cpu_now = || cpu_readings(&pids);
    let mut cpu_at_first = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    // Past the last binding the cluster is still catching up (kwok marks
    // the pods Running, the API server and etcd write that): followed to
    // the last pod Running, so that work is counted in every configuration,
    // not only in one slow enough for it to happen inside its window.
    let mut running: HashSet<String> = HashSet::new();
    let mut cpu_at_last = None;
    let mut all_running = None;
    while bound.len() < count || running.len() < count {
        let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
        let pod = match next {
            Err(_) => {
                let log = crate::process::tail(&proc.log, 15);
                proc.stop(Duration::from_secs(5)).await;
                return Err(Error::Timeout {
                    what: format!(
                        "{count} pods of {ns} bound and Running ({} bound, {} Running); scheduler log:\n{log}",
                        bound.len(),
                        running.len()
                    ),
                    seconds: timeout.as_secs(),
                });
            }
            Ok(Err(e)) => return Err(Error::Other(e.to_string())),
            Ok(Ok(None)) => return Err(Error::Other("pod watch ended".into())),
            Ok(Ok(Some(pod))) => pod,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if is_running(&pod) && running.insert(name.clone()) && running.len() == count {
            all_running = Some((Instant::now(), cpu_now()));
        }
        if is_bound(&pod) && bound.insert(name) {
            let now = Instant::now();
            if first.is_none() {
                first = Some(now);
                cpu_at_first = cpu_now();
            }
            last = now;
            if bound.len() == count {
                cpu_at_last = Some(cpu_now());
            }
        }
    }
    proc.stop(Duration::from_secs(5)).await;
    let first = first.unwrap_or(started);
    let cpu_at_last = cpu_at_last.unwrap_or_default();
    let (running_at, cpu_at_running) = all_running.unwrap_or((last, cpu_at_last.clone()));
    Ok(Scheduled {
        start_to_first: first - started,
        first_to_last: last - first,
        cpu: WindowCpu::between(&pids, &cpu_at_first, &cpu_at_last),
        first_to_all_running: running_at.saturating_duration_since(first),
        cpu_to_all_running: WindowCpu::between(&pids, &cpu_at_first, &cpu_at_running),
        idle,
    })
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// What [`schedule`] measured.
struct Scheduled {
    start_to_first: Duration,
    first_to_last: Duration,
    cpu: WindowCpu,
    first_to_all_running: Duration,
    cpu_to_all_running: WindowCpu,
    idle: WindowCpu,
}

impl Scheduled {
    fn into_round(
        self,
        config: &'static str,
        round: usize,
        pods: usize,
        created_per_second: f64,
        extender_calls: Option<(u64, u64)>,
    ) -> Round {
        Round {
            config,
            round,
            pods,
            created_per_second,
            start_to_first: self.start_to_first,
            first_to_last: self.first_to_last,
            extender_calls,
            cpu: self.cpu,
            first_to_all_running: self.first_to_all_running,
            cpu_to_all_running: self.cpu_to_all_running,
            idle: self.idle,
            idle_window: IDLE_SAMPLE,
        }
    }
}

async fn delete_pods(cluster: &Cluster, ns: &str) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await?;
    crate::wait::until(
        &format!("pods of {ns} deleted"),
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list_metadata(&ListParams::default()).await.ok()?;
                list.items.is_empty().then_some(())
            }
        },
    )
    .await
}

fn is_bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(parts: &[(&str, u64)]) -> WindowCpu {
        WindowCpu {
            per_process: parts
                .iter()
                .map(|(n, ms)| (n.to_string(), Duration::from_millis(*ms)))
                .collect(),
        }
    }

    #[test]
    fn rates_and_cpu_above_the_idle_background() {
        let round = Round {
            config: EXTENDER_CONFIG,
            round: 1,
            pods: 101,
            created_per_second: 0.0,
            start_to_first: Duration::from_millis(300),
            first_to_last: Duration::from_secs(10),
            extender_calls: None,
            // 2,000 ms over the window, of which 0.1 cores × 10 s = 1,000 ms
            // is background.
            cpu: cpu(&[("kube-apiserver", 1_500), ("kube-scheduler", 500)]),
            first_to_all_running: Duration::from_secs(20),
            cpu_to_all_running: cpu(&[("kube-apiserver", 3_000)]),
            idle: cpu(&[("kube-apiserver", 800), ("kwok", 200)]),
            idle_window: Duration::from_secs(10),
        };
        assert!((round.pods_per_second() - 10.0).abs() < 1e-9);
        assert!((round.running_per_second() - 5.0).abs() < 1e-9);
        assert!((round.idle_cores() - 0.1).abs() < 1e-9);
        // (2,000 − 1,000) ms over 100 bindings.
        let above = round.cpu_per_binding_above_idle();
        assert!(
            (above.as_secs_f64() * 1000.0 - 10.0).abs() < 1e-6,
            "{above:?}"
        );
        // Never negative when the background estimate exceeds the window's CPU.
        let quiet = Round {
            cpu: cpu(&[("kube-apiserver", 100)]),
            ..round
        };
        assert_eq!(quiet.cpu_per_binding_above_idle(), Duration::ZERO);
    }

    #[test]
    fn process_cpu_reads_this_process_and_grows() {
        let before = process_cpu(std::process::id()).expect("own /proc/PID/stat");
        // Burn CPU until the 10 ms ticks move (bounded, for a loaded machine).
        let t = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after <= before && t.elapsed() < Duration::from_secs(20) {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = process_cpu(std::process::id()).expect("own /proc/PID/stat");
        }
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(process_cpu(u32::MAX).is_none());
    }
}
