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
}

pub const DEFAULT_CONFIG: &str = "(a) default plugins";
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
        let created = create_pods(&cluster, &ns, opts.pods).await?;
        let cfg = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";
        let (start_to_first, first_to_last, cpu) =
            schedule(&cluster, &ns, opts.pods, cfg, None, opts.timeout).await?;
        let r = Round {
            config: DEFAULT_CONFIG,
            round,
            pods: opts.pods,
            created_per_second: created,
            start_to_first,
            first_to_last,
            extender_calls: None,
            cpu,
        };
        on_round(&r);
        rounds.push(r);
        delete_pods(&cluster, &ns).await?;

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
        let before = calls(&extender::request_counts(&ext, &client).await?);
        let ns = format!("bench-b{round}");
        let created = create_pods(&cluster, &ns, opts.pods).await?;
        let cfg = scheduler_config_with_extender(&ext.url, opts.weight, false);
        let (start_to_first, first_to_last, cpu) =
            schedule(&cluster, &ns, opts.pods, &cfg, ext.proc.pid(), opts.timeout).await?;
        let after = calls(&extender::request_counts(&ext, &client).await?);
        let r = Round {
            config: EXTENDER_CONFIG,
            round,
            pods: opts.pods,
            created_per_second: created,
            start_to_first,
            first_to_last,
            extender_calls: Some((after.0 - before.0, after.1 - before.1)),
            cpu,
        };
        on_round(&r);
        rounds.push(r);
        ext.proc.stop(Duration::from_secs(5)).await;
        delete_pods(&cluster, &ns).await?;
    }
    cluster.stop().await;
    Ok(rounds)
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
) -> Result<(Duration, Duration, WindowCpu), Error> {
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
    let started = Instant::now();
    let mut proc = scheduler::start(cluster, config, &format!("kube-scheduler-{ns}")).await?;
    let mut first = None;
    let mut last = started;
    let mut pids: Vec<(String, u32)> = cluster.component_pids();
    pids.extend(proc.pid().map(|p| ("kube-scheduler".to_string(), p)));
    pids.extend(extender_pid.map(|p| ("headroom-extender".to_string(), p)));
    let cpu_now =
        || -> Vec<Option<Duration>> { pids.iter().map(|(_, pid)| process_cpu(*pid)).collect() };
    let mut cpu_at_first = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while bound.len() < count {
        let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
        let pod = match next {
            Err(_) => {
                let log = crate::process::tail(&proc.log, 15);
                proc.stop(Duration::from_secs(5)).await;
                return Err(Error::Timeout {
                    what: format!(
                        "{count} pods of {ns} bound ({} were); scheduler log:\n{log}",
                        bound.len()
                    ),
                    seconds: timeout.as_secs(),
                });
            }
            Ok(Err(e)) => return Err(Error::Other(e.to_string())),
            Ok(Ok(None)) => return Err(Error::Other("pod watch ended".into())),
            Ok(Ok(Some(pod))) => pod,
        };
        if is_bound(&pod) && bound.insert(pod.metadata.name.unwrap_or_default()) {
            let now = Instant::now();
            if first.is_none() {
                first = Some(now);
                cpu_at_first = cpu_now();
            }
            last = now;
        }
    }
    let cpu_at_last = cpu_now();
    proc.stop(Duration::from_secs(5)).await;
    let first = first.unwrap_or(started);
    let cpu = WindowCpu {
        per_process: pids
            .iter()
            .zip(cpu_at_first.iter().zip(&cpu_at_last))
            .filter_map(|((name, _), (a, b))| {
                Some((name.clone(), b.as_ref()?.saturating_sub(*a.as_ref()?)))
            })
            .collect(),
    };
    Ok((first - started, last - first, cpu))
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
