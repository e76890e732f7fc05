//! headroom-extender as the benchmarks run it: the release binary with its
//! manifest RBAC, plain HTTP or mutual TLS (the transport TAS insists on).

use std::time::Duration;

use bytes::Bytes;

use super::loadgen::{self, HttpClientHandle};
use super::payload;
use crate::lab::grant_manifest_roles;
use crate::process::{Proc, tail};
use crate::{Cluster, Error, ports, services};

/// A running extender.
pub struct Running {
    pub proc: Proc,
    /// `http://127.0.0.1:<port>` or `https://…`.
    pub url: String,
}

/// Starts `headroom-extender serve` with `policy`. With `tls`, it serves the
/// apiserver's loopback certificate and verifies client certificates
/// against the cluster CA. Returns once `/readyz` answers 200.
pub async fn start(
    cluster: &Cluster,
    client: &HttpClientHandle,
    policy: &str,
    scrape_interval: Duration,
    tls: bool,
) -> Result<Running, Error> {
    let user = "headroom-extender";
    grant_manifest_roles(cluster, "base/extender/rbac.yaml", user).await?;
    let kubeconfig = cluster.kubeconfig_for("extender.kubeconfig", user, None)?;
    let policy_path = cluster.dir.join("extender-policy.yaml");
    std::fs::write(&policy_path, policy)?;
    let token = cluster.dir.join("extender-token");
    std::fs::write(&token, "not-checked-by-kwok")?;
    let port = ports::free_port()?;
    let mut args = vec![
        "serve".to_string(),
        format!("--policy={}", policy_path.display()),
        format!("--listen=127.0.0.1:{port}"),
        "--kubelet-scheme=http".into(),
        format!("--kubelet-token-file={}", token.display()),
        format!("--scrape-interval={}ms", scrape_interval.as_millis()),
        // 5,000 full Node objects are about 4 MiB; leave room.
        format!("--max-body-bytes={}", 64 << 20),
    ];
    let f = &cluster.pki.files;
    if tls {
        args.push(format!("--tls-cert-file={}", f.apiserver_cert.display()));
        args.push(format!("--tls-key-file={}", f.apiserver_key.display()));
        args.push(format!("--tls-client-ca-file={}", f.ca_cert.display()));
    }
    let name = if tls {
        "headroom-extender-tls"
    } else {
        "headroom-extender"
    };
    let mut proc = services::spawn(cluster, name, "headroom-extender", &args, &kubeconfig)?;
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        proc.check_running()?;
        let ready = loadgen::exchange(
            client,
            http::Method::GET,
            &format!("{url}/readyz"),
            Bytes::new(),
        )
        .await;
        if matches!(ready, Ok((s, _)) if s.is_success()) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{name} /readyz; log:\n{}", tail(&proc.log, 20)),
                seconds: 120,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(Running { proc, url })
}

/// Waits until the extender has a CPU measurement for at least `count`
/// nodes (two kubelet scrapes each), so that filter and prioritize work on
/// measured usage and not on requests alone.
pub async fn wait_measured(
    running: &mut Running,
    client: &HttpClientHandle,
    count: usize,
    timeout: Duration,
) -> Result<(), Error> {
    let probe = payload::notebook_pod("probe", &[]);
    let body = Bytes::from(serde_json::to_vec(&probe)?);
    let url = format!("{}/explain?format=json", running.url);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut measured = 0;
    loop {
        running.proc.check_running()?;
        if let Ok((status, reply)) =
            loadgen::exchange(client, http::Method::POST, &url, body.clone()).await
            && status.is_success()
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&reply)
        {
            measured = v["nodes"].as_array().map_or(0, |nodes| {
                nodes
                    .iter()
                    .filter(|n| n["cpu"]["measuredPercent"].is_number())
                    .count()
            });
            if measured >= count {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "extender to measure {count} nodes (has {measured}); log:\n{}",
                    tail(&running.proc.log, 20)
                ),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `headroom_extender_request_duration_seconds_count` by verb, from the
/// extender's `/metrics`: proof the scheduler called it, and how often.
pub async fn request_counts(
    running: &Running,
    client: &HttpClientHandle,
) -> Result<Vec<(String, u64)>, Error> {
    let (_, body) = loadgen::exchange(
        client,
        http::Method::GET,
        &format!("{}/metrics", running.url),
        Bytes::new(),
    )
    .await
    .map_err(Error::Other)?;
    let text = String::from_utf8_lossy(&body);
    let exposition = headroom_common::prom::parse(&text)
        .map_err(|e| Error::Other(format!("extender /metrics: {e}")))?;
    Ok(exposition
        .samples
        .iter()
        .filter(|s| s.name == "headroom_extender_request_duration_seconds_count")
        .filter_map(|s| Some((s.label("verb")?.to_string(), s.value as u64)))
        .collect())
}
