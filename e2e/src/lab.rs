//! Our services wired into a loopback cluster the way the manifests wire
//! them into a real one: each with its own least-privilege identity (the
//! ClusterRoles from `manifests/`), the extender in the scheduler's
//! `extenders` block, the adapter behind APIService objects.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::process::{Proc, tail};
use crate::{Cluster, Error, aggregation, binaries, ports, services, wait};

/// A running `headroom-extender`.
pub struct Extender {
    pub proc: Proc,
    pub port: u16,
    pub url: String,
    /// The policy file it reads (and re-reads every
    /// [`ExtenderOptions::policy_reload_interval`]).
    pub policy_file: PathBuf,
}

/// Options for [`start_extender`].
pub struct ExtenderOptions {
    /// The policy YAML.
    pub policy: String,
    pub scrape_interval: Duration,
    /// How often the extender re-reads its policy file.
    pub policy_reload_interval: Duration,
}

/// A `KubeSchedulerConfiguration` with our extender in its `extenders` block.
pub fn scheduler_config_with_extender(url: &str, weight: i64, ignorable: bool) -> String {
    format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
extenders:
- urlPrefix: "{url}"
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: {weight}
  nodeCacheCapable: true
  ignorable: {ignorable}
  httpTimeout: 2s
"#
    )
}

/// The objects of a multi-document YAML file under `manifests/`.
pub fn manifest_objects(relative: &str) -> Result<Vec<serde_json::Value>, Error> {
    use serde::Deserialize;
    let path = binaries::repo_root().join("manifests").join(relative);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).map_err(Error::from))
        .filter(|v| !matches!(v, Ok(serde_json::Value::Null)))
        .collect()
}

/// Applies the ClusterRoles (and kube-system RoleBindings' roles) of a
/// manifest file and binds them to the client-certificate user `user`
/// instead of the manifest's ServiceAccount, so the service runs here with
/// exactly the permissions it gets in a cluster.
pub async fn grant_manifest_roles(
    cluster: &Cluster,
    rbac_file: &str,
    user: &str,
) -> Result<(), Error> {
    let client = cluster.client();
    let pp = PatchParams::apply("headroom-lab").force();
    for obj in manifest_objects(rbac_file)? {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match kind {
            "ClusterRole" => {
                let api: Api<ClusterRole> = Api::all(client.clone());
                api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
            }
            "ClusterRoleBinding" => {
                let mut obj = obj.clone();
                obj["subjects"] = json!([{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]);
                let api: Api<ClusterRoleBinding> = Api::all(client.clone());
                api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
            }
            "RoleBinding" => {
                let mut obj = obj.clone();
                let ns = obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string();
                obj["subjects"] = json!([{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]);
                let api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
                api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Starts `headroom-extender` on a free loopback port with its manifest
/// RBAC, scraping kwok's emulated kubelets, and waits until it is ready.
pub async fn start_extender(cluster: &Cluster, opts: &ExtenderOptions) -> Result<Extender, Error> {
    let user = "headroom-extender";
    grant_manifest_roles(cluster, "base/extender/rbac.yaml", user).await?;
    let kubeconfig = cluster.kubeconfig_for("extender.kubeconfig", user, None)?;
    let policy = cluster.dir.join("extender-policy.yaml");
    std::fs::write(&policy, &opts.policy)?;
    // kwok ignores the token; a real kubelet gets the projected SA token.
    let token = cluster.dir.join("extender-token");
    std::fs::write(&token, "not-checked-by-kwok")?;
    let port = ports::free_port()?;
    let args = vec![
        "serve".to_string(),
        format!("--policy={}", policy.display()),
        format!("--listen=127.0.0.1:{port}"),
        "--kubelet-scheme=http".into(),
        format!("--kubelet-token-file={}", token.display()),
        format!("--scrape-interval={}ms", opts.scrape_interval.as_millis()),
        format!(
            "--policy-reload-interval={}ms",
            opts.policy_reload_interval.as_millis()
        ),
    ];
    let mut proc = services::spawn(
        cluster,
        "headroom-extender",
        "headroom-extender",
        &args,
        &kubeconfig,
    )?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready_http("headroom-extender", port, &mut proc).await?;
    Ok(Extender {
        proc,
        port,
        url,
        policy_file: policy,
    })
}

impl Extender {
    /// Waits until the extender has measured usage (two kubelet samples) for
    /// every node, so the first pods are placed on measured load.
    pub async fn wait_measured_all(&self) -> Result<(), Error> {
        let probe: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "probe", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        }))?;
        wait::until(
            "extender to measure every node",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || async {
                let v = self.explain(&probe).await.ok()?;
                let nodes = v["nodes"].as_array()?;
                (!nodes.is_empty()
                    && nodes
                        .iter()
                        .all(|n| n["cpu"]["measuredPercent"].is_number()))
                .then_some(())
            },
        )
        .await
    }

    /// `node`'s row of the extender's `explain` for `pod` (`None` when the
    /// extender does not answer or does not list the node).
    pub async fn explain_node(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
        node: &str,
    ) -> Option<serde_json::Value> {
        let v = self.explain(pod).await.ok()?;
        v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == node)
            .cloned()
    }

    /// The extender's `explain` for `pod` as JSON (every node in percent).
    pub async fn explain(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::to_string(pod)?;
        let text =
            crate::cluster::http_loopback(self.port, "POST", "/explain?format=json", Some(&body))
                .await?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Polls `GET /readyz` over plain HTTP until 200.
pub async fn wait_ready_http(name: &str, port: u16, proc: &mut Proc) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_running()?;
        if crate::cluster::http_get_loopback(port, "/readyz")
            .await
            .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{name} /readyz; log:\n{}", tail(&proc.log, 20)),
                seconds: 60,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A running `headroom-metrics-adapter`.
pub struct Adapter {
    pub proc: Proc,
    pub port: u16,
    pub ca_bundle: PathBuf,
}

/// Namespace and Service the adapter is registered under (as in manifests/).
pub const ADAPTER_NAMESPACE: &str = "headroom";
pub const ADAPTER_SERVICE: &str = "headroom-metrics-adapter";

/// Starts `headroom-metrics-adapter` with its manifest RBAC and a
/// self-signed serving certificate for its Service name, registers the
/// APIServices (ExternalName Service to 127.0.0.1) and waits until the
/// aggregator reports them Available.
pub async fn start_adapter(cluster: &Cluster, config_yaml: &str) -> Result<Adapter, Error> {
    let user = "headroom-metrics-adapter";
    grant_manifest_roles(cluster, "base/metrics-adapter/rbac.yaml", user).await?;
    let kubeconfig = cluster.kubeconfig_for("adapter.kubeconfig", user, None)?;
    let config = cluster.dir.join("adapter-config.yaml");
    std::fs::write(&config, config_yaml)?;
    let token = cluster.dir.join("adapter-token");
    std::fs::write(&token, "not-checked-by-kwok")?;
    let ca_bundle = cluster.dir.join("adapter-ca.crt");
    let port = ports::free_port()?;
    let args = vec![
        "serve".to_string(),
        format!("--config={}", config.display()),
        format!("--listen=127.0.0.1:{port}"),
        format!("--write-ca-bundle={}", ca_bundle.display()),
        format!("--tls-san={ADAPTER_SERVICE}.{ADAPTER_NAMESPACE}.svc"),
        "--kubelet-scheme=http".into(),
        format!("--kubelet-token-file={}", token.display()),
    ];
    let mut proc = services::spawn(
        cluster,
        "headroom-metrics-adapter",
        "headroom-metrics-adapter",
        &args,
        &kubeconfig,
    )?;
    let ca = wait::until(
        "adapter CA bundle",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            std::fs::read_to_string(&ca_bundle)
                .ok()
                .filter(|s| s.contains("BEGIN CERTIFICATE"))
        },
    )
    .await
    .map_err(|e| Error::Other(format!("{e}; log:\n{}", tail(&proc.log, 20))))?;
    proc.check_running()?;
    let client = cluster.client();
    aggregation::register_loopback(
        &client,
        ADAPTER_NAMESPACE,
        ADAPTER_SERVICE,
        port,
        &ca,
        &aggregation::METRICS_API_VERSIONS,
    )
    .await?;
    for (group, version, _) in aggregation::METRICS_API_VERSIONS {
        let name = format!("{version}.{group}");
        let res = wait::until(
            &format!("APIService {name} Available"),
            Duration::from_secs(90),
            Duration::from_millis(500),
            || {
                let client = client.clone();
                let name = name.clone();
                async move {
                    let (ok, _) = aggregation::availability(&client, &name).await.ok()?;
                    ok.then_some(())
                }
            },
        )
        .await;
        if let Err(e) = res {
            let (_, msg) = aggregation::availability(&client, &name).await?;
            return Err(Error::Other(format!(
                "{e}: {msg}; adapter log:\n{}",
                tail(&proc.log, 30)
            )));
        }
    }
    Ok(Adapter {
        proc,
        port,
        ca_bundle,
    })
}
