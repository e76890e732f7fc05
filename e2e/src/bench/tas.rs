//! The benchmark peer: Intel's Telemetry Aware Scheduling (TAS) extender,
//! `github.com/intel/platform-aware-scheduling/telemetry-aware-scheduling`
//! v0.7.0, built unchanged from the Go module proxy through the wrapper
//! module `e2e/go/peers/tas` (TopoLVM, the first choice, is not served by
//! the proxy this project can reach).
//!
//! TAS needs what our payload lacks, so that it does real work:
//! - full `Nodes` in `ExtenderArgs` (it rejects `NodeNames`-only requests);
//! - a `TASPolicy` (its CRD ships in the module) named by the pod label
//!   `telemetry-policy`, here `dontschedule` when the node metric is above
//!   80 and `scheduleonmetric` preferring the lowest value;
//! - that metric for every node from the `custom.metrics.k8s.io` API, which
//!   [`CustomMetricsServer`] serves behind the aggregation layer with the
//!   same per-node CPU percentages the headroom extender measures.
//!
//! It serves HTTPS with mandatory client certificates only (its `main`
//! passes `unsafe=false`), so the load generator talks mutual TLS to it.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::process::{Proc, tail};
use crate::{Cluster, Error, aggregation, binaries, ports, wait};

/// The TAS module and version the wrapper pins.
pub const MODULE: &str = "github.com/intel/platform-aware-scheduling/telemetry-aware-scheduling";
/// The node metric the policy uses.
pub const METRIC: &str = "node_cpu_percent";
/// The policy name pods carry in their `telemetry-policy` label.
pub const POLICY: &str = "headroom-bench";
/// Where the fake custom-metrics API is registered.
const METRICS_NAMESPACE: &str = "bench-metrics";
const METRICS_SERVICE: &str = "bench-custom-metrics";

fn wrapper_dir() -> PathBuf {
    binaries::repo_root().join("e2e/go/peers/tas")
}

fn go(args: &[&str], dir: &Path) -> Result<String, Error> {
    let out = std::process::Command::new("go")
        .args(args)
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .output()
        .map_err(|e| Error::Build(format!("go {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(Error::Build(format!(
            "(cd {} && go {}) failed:\n{}",
            dir.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The pinned TAS version (from the wrapper's go.mod).
pub fn version() -> Result<String, Error> {
    go(
        &["list", "-m", "-f", "{{.Version}}", MODULE],
        &wrapper_dir(),
    )
}

/// The TAS extender binary: `HEADROOM_TAS_BIN`, else built from the wrapper
/// module into the cache (`HEADROOM_CACHE`, default ~/.cache/headroom) once.
pub fn binary() -> Result<PathBuf, Error> {
    if let Ok(p) = std::env::var("HEADROOM_TAS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var("HEADROOM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
                .join(".cache/headroom")
        });
    let goversion = go(&["env", "GOVERSION"], &wrapper_dir())?;
    let bin = cache
        .join("bin")
        .join(format!("tas-{}_{goversion}", version()?))
        .join("tas-extender");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(bin.parent().expect("has a parent"))?;
    eprintln!("[bench] building the TAS peer (a minute or two the first time)");
    let tmp = bin.with_extension("tmp");
    go(
        &[
            "build",
            "-mod=readonly",
            "-trimpath",
            "-ldflags=-s -w",
            "-o",
            &tmp.display().to_string(),
            &format!("{MODULE}/cmd"),
        ],
        &wrapper_dir(),
    )?;
    std::fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// Applies the TASPolicy CRD shipped in the module and waits until it is
/// served, then creates the policy in `namespace`.
pub async fn install_policy(cluster: &Cluster, namespace: &str) -> Result<(), Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let dir = go(&["list", "-m", "-f", "{{.Dir}}", MODULE], &wrapper_dir())?;
    let crd_path = Path::new(&dir).join("deploy/tas-policy-crd.yaml");
    let crd: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(&crd_path)?)?;
    let client = cluster.client();
    let pp = PatchParams::apply("headroom-bench").force();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("taspolicies.telemetry.intel.com", &pp, &Patch::Apply(&crd))
        .await?;
    wait::until(
        "TASPolicy CRD established",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let crds = crds.clone();
            async move {
                let crd = crds.get("taspolicies.telemetry.intel.com").await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await?;
    let resource = ApiResource {
        group: "telemetry.intel.com".into(),
        version: "v1alpha1".into(),
        api_version: "telemetry.intel.com/v1alpha1".into(),
        kind: "TASPolicy".into(),
        plural: "taspolicies".into(),
    };
    let policies: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let policy = json!({
        "apiVersion": "telemetry.intel.com/v1alpha1",
        "kind": "TASPolicy",
        "metadata": {"name": POLICY, "namespace": namespace},
        "spec": {"strategies": {
            "dontschedule": {"rules": [
                {"metricname": METRIC, "operator": "GreaterThan", "target": 80},
            ]},
            "scheduleonmetric": {"rules": [
                {"metricname": METRIC, "operator": "LessThan"},
            ]},
        }},
    });
    policies.patch(POLICY, &pp, &Patch::Apply(&policy)).await?;
    Ok(())
}

/// A running TAS extender.
pub struct Peer {
    pub proc: Proc,
    /// `https://127.0.0.1:<port>/scheduler` (its verbs are under /scheduler).
    pub url: String,
}

/// Starts TAS with the admin kubeconfig, serving with the apiserver's
/// loopback certificate and requiring client certificates from the cluster CA.
pub fn start(cluster: &Cluster, binary: &Path) -> Result<Peer, Error> {
    let port = ports::free_port()?;
    let f = &cluster.pki.files;
    let args = vec![
        format!("-kubeConfig={}", cluster.kubeconfig.display()),
        format!("-port={port}"),
        format!("-cert={}", f.apiserver_cert.display()),
        format!("-key={}", f.apiserver_key.display()),
        format!("-cacert={}", f.ca_cert.display()),
        "-syncPeriod=5s".into(),
        "-v=0".into(),
    ];
    let proc = Proc::spawn("tas-extender", binary, &args, &[], &cluster.dir)?;
    Ok(Peer {
        proc,
        url: format!("https://127.0.0.1:{port}/scheduler"),
    })
}

/// Per-node values of [`METRIC`], served as `custom.metrics.k8s.io/v1beta2`.
pub struct CustomMetricsServer {
    pub port: u16,
    stop: CancellationToken,
}

impl Drop for CustomMetricsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl CustomMetricsServer {
    /// Serves `values` (node name, percent) over TLS on loopback and
    /// registers it with the aggregator; returns once the APIService is
    /// Available.
    pub async fn start(cluster: &Cluster, values: Vec<(String, i64)>) -> Result<Self, Error> {
        let host = format!("{METRICS_SERVICE}.{METRICS_NAMESPACE}.svc");
        let cert = rcgen::generate_simple_self_signed(vec![host])?;
        let cert_pem = cert.cert.pem();
        let chain = vec![cert.cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Other(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| Error::Other(e.to_string()))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let body = Bytes::from(serde_json::to_vec(&metric_value_list(&values))?);
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, acceptor, body, stop.clone()));

        let client = cluster.client();
        let versions = [("custom.metrics.k8s.io", "v1beta2", 200)];
        aggregation::register_loopback(
            &client,
            METRICS_NAMESPACE,
            METRICS_SERVICE,
            port,
            &cert_pem,
            &versions,
        )
        .await?;
        let name = "v1beta2.custom.metrics.k8s.io";
        wait::until(
            "fake custom metrics APIService Available",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || {
                let client = client.clone();
                async move {
                    let (ok, _) = aggregation::availability(&client, name).await.ok()?;
                    ok.then_some(())
                }
            },
        )
        .await?;
        Ok(Self { port, stop })
    }
}

fn metric_value_list(values: &[(String, i64)]) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let items: Vec<_> = values
        .iter()
        .map(|(node, v)| {
            json!({
                "describedObject": {"kind": "Node", "name": node, "apiVersion": "/v1"},
                "metric": {"name": METRIC},
                "timestamp": now,
                "windowSeconds": 60,
                "value": v.to_string(),
            })
        })
        .collect();
    json!({
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta2",
        "metadata": {},
        "items": items,
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    list: Bytes,
    stop: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let list = list.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let list = list.clone();
                async move { Ok::<_, Infallible>(route(req.uri().path(), list)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn route(path: &str, list: Bytes) -> Response<Full<Bytes>> {
    let json = |status: StatusCode, body: Bytes| {
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("static response")
    };
    let base = "/apis/custom.metrics.k8s.io/v1beta2";
    if path == base {
        let resources = json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "custom.metrics.k8s.io/v1beta2",
            "resources": [{"name": format!("nodes/{METRIC}"), "singularName": "",
                           "namespaced": false, "kind": "MetricValueList", "verbs": ["get"]}],
        });
        return json(StatusCode::OK, Bytes::from(resources.to_string()));
    }
    let metric_paths = [
        format!("{base}/nodes/*/{METRIC}"),
        format!("{base}/nodes/%2A/{METRIC}"),
    ];
    if metric_paths.iter().any(|p| p == path) {
        return json(StatusCode::OK, list);
    }
    json(
        StatusCode::NOT_FOUND,
        Bytes::from_static(br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#),
    )
}

/// Waits until TAS answers prioritize for `pod` with `expect` nodes, i.e.
/// its policy controller and metrics cache have caught up.
pub async fn wait_warm(
    peer: &mut Peer,
    client: &super::loadgen::HttpClientHandle,
    body: Bytes,
    expect: usize,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut last: String;
    loop {
        peer.proc.check_running()?;
        match super::loadgen::post_once(
            client,
            &peer.url,
            super::loadgen::Verb::Prioritize,
            body.clone(),
        )
        .await
        {
            Ok(s) if s.passed >= expect => return Ok(()),
            Ok(s) => last = format!("prioritize listed {} of {expect} nodes", s.passed),
            Err(e) => last = e,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "TAS to load its policy and metrics ({last}); log:\n{}",
                    tail(&peer.proc.log, 20)
                ),
                seconds: 90,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
