//! kube-scheduler for throughput runs. The harness's
//! `Cluster::start_scheduler` keeps client-go's default client rate limit
//! (`clientConnection.qps` 50, burst 100), which would cap both runs at about
//! 50 bindings/s and hide any difference; scheduler_perf lifts it the same
//! way, so this starts the scheduler with the limit raised.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::process::{Proc, tail};
use crate::{Cluster, Error, kubeconfig, ports};

/// Client QPS and burst given to kube-scheduler (scheduler_perf uses 5000).
pub const CLIENT_QPS: u32 = 5000;

/// Starts kube-scheduler with `config_yaml` (a KubeSchedulerConfiguration
/// without `clientConnection`/`leaderElection`, which this fills in) and
/// waits for `/healthz`.
pub async fn start(cluster: &Cluster, config_yaml: &str, log_name: &str) -> Result<Proc, Error> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(config_yaml)?;
    let map = doc
        .as_mapping_mut()
        .ok_or_else(|| Error::Other("scheduler config is not a YAML mapping".into()))?;
    let kc = kubeconfig::write(
        &cluster.dir.join("bench-scheduler.kubeconfig"),
        &cluster.apiserver_url,
        &cluster.pki.ca.cert,
        &cluster.pki.scheduler,
        "system:kube-scheduler",
    )?;
    map.insert(
        "clientConnection".into(),
        serde_yaml::to_value(serde_json::json!({
            "kubeconfig": kc.display().to_string(),
            "qps": CLIENT_QPS,
            "burst": CLIENT_QPS,
        }))?,
    );
    map.insert(
        "leaderElection".into(),
        serde_yaml::to_value(BTreeMap::from([("leaderElect", false)]))?,
    );
    let path = cluster.dir.join(format!("{log_name}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&doc)?)?;
    let port = ports::free_port()?;
    let args = vec![
        format!("--config={}", path.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!(
            "--cert-dir={}",
            cluster.dir.join("bench-scheduler-certs").display()
        ),
        "--v=1".into(),
    ];
    let mut proc = Proc::spawn(
        log_name,
        &cluster.bin_dir.join("kube-scheduler"),
        &args,
        &[],
        &cluster.dir,
    )?;
    let mut config = kube::Config::new(
        format!("https://127.0.0.1:{port}")
            .parse()
            .map_err(|e| Error::Other(format!("{e}")))?,
    );
    // It serves a self-signed certificate made at start.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_running()?;
        let req = http::Request::get("/healthz")
            .body(Vec::new())
            .expect("request");
        if let Ok(body) = client.request_text(req).await
            && body.trim() == "ok"
        {
            return Ok(proc);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("kube-scheduler /healthz; log:\n{}", tail(&proc.log, 20)),
                seconds: 60,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
