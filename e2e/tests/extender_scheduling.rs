//! headroom-extender with the real kube-scheduler (issue 3): node03 capped at
//! 40% CPU while carrying emulated FreeIPA load; notebook pods placed by
//! headroom; everything over its cap leaves a pod Pending with our reasons;
//! a raised cap in the policy file takes effect without a restart (a broken
//! edit does not); a stopped extender with `ignorable: true` does not stop
//! scheduling.

use std::collections::BTreeMap;
use std::time::Duration;

use headroom_e2e::jupyterhub::Notebook;
use headroom_e2e::lab::{self, ExtenderOptions};
use headroom_e2e::{Cluster, ClusterConfig, wait};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

const POLICY: &str = r#"
weights: {cpu: 1, memory: 1}
defaultEstimate: {cpu: "1", memory: 512Mi}
staleUsage: {maxAge: 30s, policy: requests-only}
caps:
- nodeNames: [node03]
  cpuPercent: 40
  mode: hard
  reason: FreeIPA host
- nodeNames: [node01, node02]
  cpuPercent: 90
  mode: hard
  reason: shared host
"#;

const NS: &str = "default";

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

async fn create_and_wait_bound(cluster: &Cluster, nb: &Notebook) -> String {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    pods.create(&PostParams::default(), &nb.to_pod("jhub"))
        .await
        .unwrap();
    let name = nb.pod_name();
    wait::until(
        &format!("{name} bound"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let pods = pods.clone();
            let name = name.clone();
            async move { node_of(&pods.get(&name).await.ok()?) }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nscheduler:\n{}\nextender:\n{}",
            cluster.log_tail("kube-scheduler", 15),
            cluster.log_tail("headroom-extender", 15)
        )
    })
}

/// Polls the extender's explain for a probe pod until `node`'s measured CPU
/// shows its emulated load, i.e. the extender has two kubelet samples.
async fn wait_measured(extender: &lab::Extender, node: &str, at_least_percent: f64) {
    let probe = Notebook::z2jh_default("probe", "0", "0").to_pod("jhub");
    wait::until(
        "extender to measure node load",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let n = extender.explain_node(&probe, node).await?;
            let measured = n["cpu"]["measuredPercent"].as_f64()?;
            (measured >= at_least_percent).then_some(())
        },
    )
    .await
    .unwrap();
}

fn last_scheduler_line_about_blocked(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.dir.join("kube-scheduler.log"))
        .unwrap_or_default()
        .lines()
        .rfind(|l| l.contains("jupyter-blocked"))
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extender_keeps_node03_under_its_cap() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cluster = Cluster::start(ClusterConfig {
        scheduler_config: None,
        ..ClusterConfig::default()
    })
    .await
    .unwrap();

    // FreeIPA on node03: 6 of 20 cores (30%) outside any pod. node02 runs
    // host load too (8 cores, 40%), so node01 has the most headroom.
    cluster
        .set_system_load("node03", 6.0, 4 << 30)
        .await
        .unwrap();
    cluster.set_system_load("node02", 8.0, 0).await.unwrap();
    cluster.set_system_load("node01", 0.0, 0).await.unwrap();

    let mut extender = lab::start_extender(
        &cluster,
        &ExtenderOptions {
            policy: POLICY.into(),
            scrape_interval: Duration::from_secs(1),
            policy_reload_interval: Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    // Ready means measured: the first answer after /readyz already has
    // every node's CPU, node03's load outside Kubernetes included.
    let probe = Notebook::z2jh_default("probe", "0", "0").to_pod("jhub");
    for node in ["node01", "node02", "node03"] {
        let row = extender.explain_node(&probe, node).await.unwrap();
        assert!(row["cpu"]["measuredPercent"].is_number(), "{node}: {row}");
    }
    cluster
        .start_scheduler(&lab::scheduler_config_with_extender(&extender.url, 5, true))
        .await
        .unwrap();
    wait_measured(&extender, "node03", 29.0).await;
    wait_measured(&extender, "node02", 39.0).await;

    // 12 notebook-like pods arriving one after another, as users log in:
    // every other one with no CPU request (the policy's 1-core estimate
    // applies), all using one core.
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..12 {
        let mut nb = Notebook::z2jh_default(&format!("user{i:02}"), "1", "1Gi");
        if i % 2 == 0 {
            nb.cpu_request = Some("1".into());
        }
        let node = create_and_wait_bound(&cluster, &nb).await;
        placed.entry(node).or_default().push(nb.pod_name());
    }
    let count = |n: &str| placed.get(n).map_or(0, Vec::len);
    eprintln!("placement: {placed:?}");
    // node03 at 30% can take at most two 1-core pods (5% each) before its
    // projected CPU would pass 40%.
    assert!(count("node03") <= 2, "node03 passed its cap: {placed:?}");
    assert_eq!(count("node01") + count("node02") + count("node03"), 12);
    // node01 (0% host load) has more headroom than node02 (40%).
    assert!(
        count("node01") > count("node02"),
        "node01 should take more than node02: {placed:?}"
    );
    assert!(count("node02") > 0, "node02 still takes some: {placed:?}");

    // Every node over its cap (node01/node02 at 92.5% of a 90% cap, node03
    // at 37.5% where one more core passes 40%): the next pod stays Pending,
    // and its events carry the extender's reasons.
    cluster.set_system_load("node01", 18.5, 0).await.unwrap();
    cluster.set_system_load("node02", 18.5, 0).await.unwrap();
    cluster
        .set_system_load("node03", 7.5, 4 << 30)
        .await
        .unwrap();
    wait_measured(&extender, "node03", 37.0).await;
    wait_measured(&extender, "node01", 90.0).await;
    wait_measured(&extender, "node02", 90.0).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    let blocked = Notebook::z2jh_default("blocked", "1", "1Gi");
    pods.create(&PostParams::default(), &blocked.to_pod("jhub"))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(cluster.client(), NS);
    let message = wait::until(
        "FailedScheduling event with the extender's reasons",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let events = events.clone();
            async move {
                let list = events
                    .list(&ListParams::default().fields("involvedObject.name=jupyter-blocked"))
                    .await
                    .ok()?;
                list.items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                    .filter_map(|e| e.message)
                    .find(|m| m.contains("node03"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nlast scheduler line about the pod: {:?}\nscheduler:\n{}",
            last_scheduler_line_about_blocked(&cluster),
            cluster.log_tail("kube-scheduler", 10)
        )
    });
    eprintln!("event: {message}");
    assert!(
        message.contains("cap 40% (FreeIPA host)"),
        "reason names node03's cap: {message}"
    );
    assert!(message.contains("cap 90% (shared host)"), "{message}");
    let still = pods.get("jupyter-blocked").await.unwrap();
    assert_eq!(node_of(&still), None, "over-cap pod must stay Pending");

    // The admin raises node03's cap in the policy file (a ConfigMap edit):
    // the running extender picks it up, and the next pod fits on node03, the
    // only node under its cap now, without a restart.
    std::fs::write(
        &extender.policy_file,
        POLICY.replace("cpuPercent: 40", "cpuPercent: 80"),
    )
    .unwrap();
    let probe = blocked.to_pod("jhub");
    wait::until(
        "the extender to apply the raised cap",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let n = extender.explain_node(&probe, "node03").await?;
            (n["cpu"]["capPercent"].as_f64()? == 80.0 && n["verdict"] == "pass").then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nextender:\n{}",
            cluster.log_tail("headroom-extender", 10)
        )
    });
    let raised = Notebook::z2jh_default("after-raise", "1", "1Gi");
    assert_eq!(create_and_wait_bound(&cluster, &raised).await, "node03");

    // A broken edit is refused and the raised policy stays in force.
    std::fs::write(
        &extender.policy_file,
        "caps:\n- nodeNames: [node03]\n  cpuPercent: 400\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = extender.explain_node(&probe, "node03").await.unwrap();
    assert_eq!(n["cpu"]["capPercent"].as_f64(), Some(80.0), "{n}");
    assert!(
        cluster
            .log_tail("headroom-extender", 20)
            .contains("policy file not applied"),
        "the refusal is logged"
    );

    // The extender stops; with ignorable: true the scheduler goes on without it.
    extender.proc.stop(Duration::from_secs(5)).await;
    let after = Notebook::z2jh_default("after-stop", "1", "1Gi");
    let node = create_and_wait_bound(&cluster, &after).await;
    assert!(node.starts_with("node0"));

    cluster.stop().await;
}
