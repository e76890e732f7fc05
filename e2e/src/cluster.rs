//! Start, use and stop a loopback cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::nodes::NodeSpec;
use crate::pki::{FRONT_PROXY_CLIENT_CN, Pki};
use crate::ports::free_port;
use crate::process::{Proc, tail};
use crate::{Error, binaries, kubeconfig, kwok, wait};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: Vec<NodeSpec>,
    /// Where certificates, configs, data and logs go; a temporary directory
    /// (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    /// `--horizontal-pod-autoscaler-sync-period` (15 s upstream; short here so
    /// tests see decisions quickly).
    pub hpa_sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5 min upstream).
    pub hpa_downscale_stabilization: Duration,
    /// A `KubeSchedulerConfiguration` to start kube-scheduler with right
    /// away; `None` leaves it to [`Cluster::start_scheduler`] (tests that need
    /// an extender running first).
    pub scheduler_config: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nodes: NodeSpec::lab_default(),
            dir: None,
            hpa_sync_period: Duration::from_secs(3),
            hpa_downscale_stabilization: Duration::from_secs(15),
            scheduler_config: Some(default_scheduler_config()),
        }
    }
}

/// A scheduler configuration with the default plugins and no extender.
pub fn default_scheduler_config() -> String {
    "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n".to_string()
}

/// A running cluster. Dropping it kills every process.
pub struct Cluster {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub pki: Pki,
    /// `https://127.0.0.1:<port>`.
    pub apiserver_url: String,
    /// Admin kubeconfig (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// kwok's port: its emulated kubelet endpoints and every node's kubelet port.
    pub kwok_port: u16,
    client: kube::Client,
    procs: Vec<Proc>,
    scheduler: Option<Proc>,
    _tmp: Option<tempfile::TempDir>,
}

const START_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);

impl Cluster {
    /// Builds (or reuses) the binaries and starts the control plane, kwok and
    /// the nodes; returns when the apiserver is ready and every node is Ready.
    /// PIDs of the processes the cluster runs (etcd, kube-apiserver,
    /// kube-controller-manager, kwok and the scheduler if started), by name.
    pub fn component_pids(&self) -> Vec<(String, u32)> {
        self.procs
            .iter()
            .chain(self.scheduler.iter())
            .filter_map(|p| Some((p.name.clone(), p.pid()?)))
            .collect()
    }

    pub async fn start(config: ClusterConfig) -> Result<Self, Error> {
        let bin_dir = tokio::task::spawn_blocking(binaries::control_plane_dir)
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        let (dir, tmp) = match &config.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("headroom-lab-").tempdir()?;
                if std::env::var_os("HEADROOM_KEEP_LOGS").is_some() {
                    // Keep logs and configs for a post-mortem.
                    let path = t.keep();
                    progress(&format!("keeping {}", path.display()));
                    (path, None)
                } else {
                    (t.path().to_path_buf(), Some(t))
                }
            }
        };
        progress("generating certificates");
        let pki = Pki::generate(&dir.join("pki"))?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let apiserver_port = free_port()?;
        let kwok_port = free_port()?;
        let apiserver_url = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = kubeconfig::write(
            &dir.join("admin.kubeconfig"),
            &apiserver_url,
            &pki.ca.cert,
            &pki.admin,
            "admin",
        )?;

        let mut procs = Vec::new();
        progress("starting etcd");
        procs.push(start_etcd(&bin_dir, &dir, etcd_port, etcd_peer_port)?);
        progress("starting kube-apiserver");
        procs.push(start_apiserver(
            &bin_dir,
            &dir,
            &pki,
            apiserver_port,
            etcd_port,
        )?);
        let client = kubeconfig::client(&kubeconfig).await?;
        let mut cluster = Self {
            dir,
            bin_dir,
            pki,
            apiserver_url,
            kubeconfig,
            kwok_port,
            client,
            procs,
            scheduler: None,
            _tmp: tmp,
        };
        cluster.wait_apiserver_ready().await?;

        progress("starting kube-controller-manager and kwok");
        let kcm = start_controller_manager(&cluster, &config)?;
        cluster.procs.push(kcm);
        let kwok = start_kwok(&cluster)?;
        cluster.procs.push(kwok);

        progress(&format!("creating {} nodes", config.nodes.len()));
        cluster.create_nodes(&config.nodes).await?;
        cluster.wait_nodes_ready(config.nodes.len()).await?;
        if let Some(sched) = &config.scheduler_config {
            cluster.start_scheduler(sched).await?;
        }
        progress("cluster ready");
        Ok(cluster)
    }

    /// A client with the admin identity.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// (Re)starts kube-scheduler with `config_yaml`, a
    /// `KubeSchedulerConfiguration`; the harness fills in
    /// `clientConnection.kubeconfig` and turns leader election off.
    pub async fn start_scheduler(&mut self, config_yaml: &str) -> Result<(), Error> {
        self.stop_scheduler().await;
        let mut doc: serde_yaml::Value = serde_yaml::from_str(config_yaml)?;
        let map = doc
            .as_mapping_mut()
            .ok_or_else(|| Error::Other("scheduler config is not a YAML mapping".into()))?;
        let sched_kubeconfig = kubeconfig::write(
            &self.dir.join("scheduler.kubeconfig"),
            &self.apiserver_url,
            &self.pki.ca.cert,
            &self.pki.scheduler,
            "system:kube-scheduler",
        )?;
        // Keep the caller's clientConnection settings (qps, burst) and only
        // point it at this cluster.
        let mut connection = map
            .get("clientConnection")
            .and_then(|v| v.as_mapping())
            .cloned()
            .unwrap_or_default();
        connection.insert(
            "kubeconfig".into(),
            sched_kubeconfig.display().to_string().into(),
        );
        map.insert("clientConnection".into(), connection.into());
        map.insert(
            "leaderElection".into(),
            serde_yaml::to_value(BTreeMap::from([("leaderElect", false)]))?,
        );
        let path = self.dir.join("scheduler-config.yaml");
        std::fs::write(&path, serde_yaml::to_string(&doc)?)?;
        let port = free_port()?;
        let args = vec![
            format!("--config={}", path.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", self.dir.join("scheduler-certs").display()),
            "--v=2".into(),
        ];
        let mut proc = Proc::spawn(
            "kube-scheduler",
            &self.bin_dir.join("kube-scheduler"),
            &args,
            &[],
            &self.dir,
        )?;
        let url = format!("https://127.0.0.1:{port}");
        wait_healthz(&url, &mut proc).await?;
        self.scheduler = Some(proc);
        Ok(())
    }

    pub async fn stop_scheduler(&mut self) {
        if let Some(mut p) = self.scheduler.take() {
            p.stop(Duration::from_secs(5)).await;
        }
    }

    /// Sets a node's emulated load outside pods (the FreeIPA services).
    pub async fn set_system_load(
        &self,
        node: &str,
        cpu_cores: f64,
        memory_bytes: u64,
    ) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client());
        let current = nodes
            .get(node)
            .await?
            .metadata
            .annotations
            .unwrap_or_default();
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let annotations = kwok::system_load_annotations(&current, cpu_cores, memory_bytes, now);
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Sets a pod's emulated usage (kwok's usage annotations).
    pub async fn set_pod_usage(
        &self,
        namespace: &str,
        pod: &str,
        cpu: &str,
        memory: &str,
    ) -> Result<(), Error> {
        let pods: Api<Pod> = Api::namespaced(self.client(), namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {
            kwok::POD_USAGE_CPU: cpu,
            kwok::POD_USAGE_MEMORY: memory,
        }}});
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// The emulated kubelet `/metrics/resource` text of `node`, read the way
    /// our scrapers read it (directly from kwok, not through the apiserver).
    pub async fn node_resource_metrics(&self, node: &str) -> Result<String, Error> {
        http_get_loopback(self.kwok_port, &kwok::resource_metrics_path(node)).await
    }

    /// Runs the kubectl built with the control plane against this cluster
    /// (admin identity), feeding `stdin`; returns stdout, or an error with
    /// stderr when it exits non-zero.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
        let mut cmd = tokio::process::Command::new(self.bin_dir.join("kubectl"));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Spawn {
            program: "kubectl".into(),
            source: e,
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).await?;
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .map_err(|_| Error::Timeout {
                what: format!("kubectl {}", args.join(" ")),
                seconds: 60,
            })??;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Other(format!(
                "kubectl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )))
        }
    }

    /// The last `lines` lines of a component's log.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        tail(&self.dir.join(format!("{component}.log")), lines)
    }

    /// Fails with the component's log if any process has died.
    pub fn check_running(&mut self) -> Result<(), Error> {
        for p in self.procs.iter_mut().chain(self.scheduler.iter_mut()) {
            p.check_running()?;
        }
        Ok(())
    }

    /// Stops everything, newest first.
    pub async fn stop(mut self) {
        self.stop_scheduler().await;
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5)).await;
        }
    }

    /// Writes a kubeconfig for another client-certificate identity.
    pub fn kubeconfig_for(
        &self,
        file: &str,
        user: &str,
        group: Option<&str>,
    ) -> Result<PathBuf, Error> {
        let pem = self.pki.client_cert(user, group)?;
        kubeconfig::write(
            &self.dir.join(file),
            &self.apiserver_url,
            &self.pki.ca.cert,
            &pem,
            user,
        )
    }

    async fn wait_apiserver_ready(&mut self) -> Result<(), Error> {
        let client = self.client();
        let proc = self.procs.last_mut().expect("apiserver started");
        wait_ok(&client, "/readyz", proc).await
    }

    async fn create_nodes(&self, nodes: &[NodeSpec]) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client());
        for spec in nodes {
            let node = spec.to_node(self.kwok_port);
            api.create(&PostParams::default(), &node).await?;
            // Status is a subresource: set it explicitly so the addresses and
            // kubelet port are there whatever the create strategy keeps.
            let status = serde_json::json!({"status": node.status});
            api.patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        Ok(())
    }

    async fn wait_nodes_ready(&mut self, count: usize) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client());
        let timeout = START_TIMEOUT + Duration::from_millis(50 * count as u64);
        let result = wait::until("nodes Ready", timeout, POLL, || {
            let api = api.clone();
            async move {
                let list = api.list(&Default::default()).await.ok()?;
                let ready = list.items.iter().filter(|n| is_ready(n)).count();
                (ready >= count).then_some(())
            }
        })
        .await;
        if result.is_err() {
            self.check_running()?;
        }
        result
    }
}

/// Whether a node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn progress(msg: &str) {
    eprintln!("[headroom-lab] {msg}");
}

fn start_etcd(bin: &Path, dir: &Path, port: u16, peer_port: u16) -> Result<Proc, Error> {
    let data = dir.join("etcd");
    let client_url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let args = vec![
        format!("--data-dir={}", data.display()),
        "--name=headroom-lab".into(),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=headroom-lab={peer_url}"),
        "--log-level=warn".into(),
        "--quota-backend-bytes=4294967296".into(),
        // A throwaway cluster: fsync buys nothing and dominates etcd latency.
        "--unsafe-no-fsync=true".into(),
    ];
    Proc::spawn("etcd", &bin.join("etcd"), &args, &[], dir)
}

fn start_apiserver(
    bin: &Path,
    dir: &Path,
    pki: &Pki,
    port: u16,
    etcd_port: u16,
) -> Result<Proc, Error> {
    let f = &pki.files;
    let p = |p: &Path| p.display().to_string();
    let args = vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", p(&f.apiserver_cert)),
        format!("--tls-private-key-file={}", p(&f.apiserver_key)),
        format!("--client-ca-file={}", p(&f.ca_cert)),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p(&f.service_account_pub)),
        format!(
            "--service-account-signing-key-file={}",
            p(&f.service_account_key)
        ),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        // Endpoints reject loopback addresses; nothing here needs the
        // kubernetes Service's endpoints.
        "--endpoint-reconciler-type=none".into(),
        // Fake nodes' pods never get service-account tokens mounted; and with
        // no node-lifecycle controller nobody would lift the not-ready taint
        // TaintNodesByCondition puts on new nodes.
        "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition".into(),
        // Aggregation layer: a separate front-proxy CA and client cert.
        format!(
            "--requestheader-client-ca-file={}",
            p(&f.front_proxy_ca_cert)
        ),
        format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT_CN}"),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", p(&f.front_proxy_client_cert)),
        format!("--proxy-client-key-file={}", p(&f.front_proxy_client_key)),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ];
    Proc::spawn(
        "kube-apiserver",
        &bin.join("kube-apiserver"),
        &args,
        &[],
        dir,
    )
}

fn start_controller_manager(cluster: &Cluster, config: &ClusterConfig) -> Result<Proc, Error> {
    let kc = cluster.kubeconfig.display().to_string();
    let port = free_port()?;
    let args = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--controllers=deployment-controller,replicaset-controller,statefulset-controller,garbage-collector-controller,horizontal-pod-autoscaler-controller,namespace-controller,serviceaccount-controller,disruption-controller".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", cluster.dir.join("kcm-certs").display()),
        format!(
            "--horizontal-pod-autoscaler-sync-period={}s",
            config.hpa_sync_period.as_secs().max(1)
        ),
        format!(
            "--horizontal-pod-autoscaler-downscale-stabilization={}s",
            config.hpa_downscale_stabilization.as_secs()
        ),
        "--kube-api-qps=100".into(),
        "--kube-api-burst=200".into(),
        "--v=2".into(),
    ];
    Proc::spawn(
        "kube-controller-manager",
        &cluster.bin_dir.join("kube-controller-manager"),
        &args,
        &[],
        &cluster.dir,
    )
}

fn start_kwok(cluster: &Cluster) -> Result<Proc, Error> {
    let config = cluster.dir.join("kwok.yaml");
    std::fs::write(&config, kwok::config_yaml())?;
    let args = vec![
        format!("--kubeconfig={}", cluster.kubeconfig.display()),
        format!("--config={}", config.display()),
        format!(
            "--manage-nodes-with-annotation-selector={}=fake",
            crate::nodes::KWOK_NODE_ANNOTATION
        ),
        "--node-ip=127.0.0.1".into(),
        format!("--node-port={}", cluster.kwok_port),
        format!("--server-address=127.0.0.1:{}", cluster.kwok_port),
        "--cidr=10.244.0.0/16".into(),
        "--node-lease-duration-seconds=0".into(),
    ];
    Proc::spawn(
        "kwok",
        &cluster.bin_dir.join("kwok"),
        &args,
        &[],
        &cluster.dir,
    )
}

async fn wait_healthz(url: &str, proc: &mut Proc) -> Result<(), Error> {
    let mut config = kube::Config::new(url.parse().map_err(|e| Error::Other(format!("{e}")))?);
    // The component serves a self-signed certificate it made at start.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config)?;
    wait_ok(&client, "/healthz", proc).await
}

/// Polls `path` until it answers `ok`, failing early (with the log) if the
/// process exits.
async fn wait_ok(client: &kube::Client, path: &str, proc: &mut Proc) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        proc.check_running()?;
        let req = http::Request::get(path).body(Vec::new()).expect("request");
        if let Ok(body) = client.request_text(req).await
            && body.trim() == "ok"
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{} {path}; log:\n{}", proc.name, tail(&proc.log, 20)),
                seconds: START_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A plain-HTTP GET on 127.0.0.1 (kwok serves its emulated kubelet endpoints
/// in plain HTTP as well as TLS on one port); the body of a 200.
pub async fn http_get_loopback(port: u16, path: &str) -> Result<String, Error> {
    http_loopback(port, "GET", path, None).await
}

/// A plain-HTTP/1.0 request on 127.0.0.1 with an optional JSON body; returns
/// the body of a 200, an error naming the status line otherwise.
pub async fn http_loopback(
    port: u16,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> Result<String, Error> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut req =
            format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(body) = json_body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| Error::Timeout {
            what: format!("{method} 127.0.0.1:{port}{path}"),
            seconds: 10,
        })??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| Error::Other(format!("malformed HTTP response from {path}")))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(Error::Other(format!(
            "{method} {path}: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_string())
}
