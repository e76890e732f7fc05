//! `headroom-extender explain` against an extender that serves TLS and
//! checks client certificates (`serve --tls-client-ca-file`), as an admin
//! runs it: with `--cert-file`/`--key-file` it gets the explanation; without
//! a client certificate the extender answers 401 (its probes stay open), and
//! the CLI says so instead of printing anything.

use std::process::{Command, Output};
use std::time::Duration;

use headroom_e2e::bench::extender;
use headroom_e2e::bench::loadgen::{self, ClientTls};
use headroom_e2e::jupyterhub::Notebook;
use headroom_e2e::{Cluster, ClusterConfig, binaries};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

const POLICY: &str = "caps:\n- nodeNames: [node03]\n  cpuPercent: 40\n  reason: FreeIPA host\n";

fn explain(args: &[&str]) -> Output {
    let bin = binaries::headroom_binary("headroom-extender").expect("headroom-extender built");
    Command::new(bin)
        .arg("explain")
        .args(args)
        .output()
        .expect("run headroom-extender explain")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_cli_presents_a_client_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::start(ClusterConfig {
        scheduler_config: None,
        ..ClusterConfig::default()
    })
    .await
    .unwrap();
    // A notebook pod waiting for a scheduler (none runs here).
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let notebook = Notebook::z2jh_default("alice", "1", "1Gi");
    pods.create(&PostParams::default(), &notebook.to_pod("jhub"))
        .await
        .unwrap();

    let pki = &cluster.pki;
    let client = loadgen::client(Some(&ClientTls {
        ca_pem: pki.ca.cert.clone(),
        cert_pem: Some(pki.admin.cert.clone()),
        key_pem: Some(pki.admin.key.clone()),
    }))
    .unwrap();
    let mut running = extender::start(&cluster, &client, POLICY, Duration::from_secs(1), true)
        .await
        .unwrap();
    let cert = cluster.dir.join("admin.crt");
    let key = cluster.dir.join("admin.key");
    std::fs::write(&cert, &pki.admin.cert).unwrap();
    std::fs::write(&key, &pki.admin.key).unwrap();
    let ca = pki.files.ca_cert.display().to_string();
    let pod = format!("default/{}", notebook.pod_name());
    let base = [
        "--server",
        running.url.as_str(),
        "--pod",
        pod.as_str(),
        "--ca-file",
        ca.as_str(),
        "--json",
    ];

    // With the admin's client certificate: the explanation, every node.
    let cert_arg = cert.display().to_string();
    let key_arg = key.display().to_string();
    let mut with_cert = base.to_vec();
    with_cert.extend([
        "--cert-file",
        cert_arg.as_str(),
        "--key-file",
        key_arg.as_str(),
    ]);
    let out = explain(&with_cert);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "explain failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(nodes.len(), 3, "{v}");
    let node03 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "node03")
        .unwrap();
    assert_eq!(node03["cpu"]["capPercent"].as_f64(), Some(40.0), "{node03}");

    // Without one: 401, an error, no output.
    let out = explain(&base);
    assert!(
        !out.status.success(),
        "must fail without a client certificate"
    );
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("client certificate required"),
        "{stderr}"
    );
    // Health stays open to probes that have no certificate.
    let probe = loadgen::client(Some(&ClientTls {
        ca_pem: pki.ca.cert.clone(),
        cert_pem: None,
        key_pem: None,
    }))
    .unwrap();
    let (status, _) = loadgen::exchange(
        &probe,
        http::Method::GET,
        &format!("{}/readyz", running.url),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(status, http::StatusCode::OK);

    // A certificate without its key is a usage error, not a connection.
    let mut half = base.to_vec();
    half.extend(["--cert-file", cert_arg.as_str()]);
    let out = explain(&half);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--key-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    running.proc.stop(Duration::from_secs(5)).await;
    cluster.stop().await;
}
