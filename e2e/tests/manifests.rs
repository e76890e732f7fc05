//! The manifests against the real apiserver (issue 5): every object passes a
//! server-side dry run; RBAC, APIServices, ConfigMaps and HPAs are really
//! applied; the scheduler configurations start the real kube-scheduler; the
//! policy and adapter configs pass our own validators; RBAC is least
//! privilege. Container images cannot run here; everything else is checked.

use std::time::Duration;

use headroom_e2e::binaries::{headroom_binary, repo_root};
use headroom_e2e::{Cluster, ClusterConfig};

fn manifests(rel: &str) -> String {
    repo_root()
        .join("manifests")
        .join(rel)
        .display()
        .to_string()
}

/// Splits rendered YAML into documents and keeps those whose kind passes.
fn docs_where(yaml: &str, keep: impl Fn(&str) -> bool) -> String {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|v| keep(v["kind"].as_str().unwrap_or_default()))
        .map(|v| serde_yaml::to_string(&v).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn kinds(yaml: &str) -> Vec<String> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_apply_to_the_real_apiserver() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cluster = Cluster::start(ClusterConfig::default()).await.unwrap();
    let k = |args: Vec<String>| {
        let cluster = &cluster;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            cluster.kubectl(&refs, None).await
        }
    };

    // Render every kustomization; they must build.
    let base = k(vec!["kustomize".into(), manifests("base")])
        .await
        .unwrap();
    let hostnet = k(vec![
        "kustomize".into(),
        manifests("overlays/kubeadm-hostnetwork"),
    ])
    .await
    .unwrap();
    let certmgr = k(vec!["kustomize".into(), manifests("overlays/cert-manager")])
        .await
        .unwrap();
    let base_kinds = kinds(&base);
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "APIService",
    ] {
        assert!(base_kinds.iter().any(|k| k == want), "base lacks a {want}");
    }
    assert!(kinds(&hostnet).iter().any(|k| k == "DaemonSet"));
    assert!(!kinds(&hostnet).iter().any(|k| k == "Deployment"));
    assert!(certmgr.contains("cert-manager.io/inject-ca-from"));

    // Server-side dry run of every object (the namespace first, for real, so
    // namespaced objects can be dry-run into it). cert-manager's own kinds
    // need its CRDs, which this cluster does not have.
    cluster
        .kubectl(&["create", "namespace", "headroom"], None)
        .await
        .unwrap();
    cluster
        .kubectl(&["create", "namespace", "jhub"], None)
        .await
        .unwrap();
    for (name, yaml) in [
        ("base", base.clone()),
        ("kubeadm-hostnetwork", hostnet.clone()),
        (
            "cert-manager",
            docs_where(&certmgr, |k| k != "Certificate" && k != "Issuer"),
        ),
    ] {
        let out = cluster
            .kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml))
            .await
            .unwrap_or_else(|e| panic!("dry run of {name}: {e}"));
        assert!(out.contains("(server dry run)"), "{name}: {out}");
    }
    for example in ["hpa-user-placeholder.yaml", "hpa-per-user.yaml"] {
        let path = manifests(&format!("examples/{example}"));
        cluster
            .kubectl(&["apply", "--dry-run=server", "-f", &path], None)
            .await
            .unwrap_or_else(|e| panic!("{example}: {e}"));
    }

    // Real apply of RBAC, ConfigMaps, APIServices and the HPAs.
    let real = docs_where(&base, |k| {
        matches!(
            k,
            "ServiceAccount"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "Role"
                | "RoleBinding"
                | "ConfigMap"
                | "APIService"
        )
    });
    cluster
        .kubectl(&["apply", "--server-side", "-f", "-"], Some(&real))
        .await
        .unwrap();
    for example in ["hpa-user-placeholder.yaml", "hpa-per-user.yaml"] {
        cluster
            .kubectl(
                &[
                    "apply",
                    "--server-side",
                    "-f",
                    &manifests(&format!("examples/{example}")),
                ],
                None,
            )
            .await
            .unwrap();
    }
    let apiservices = cluster
        .kubectl(&["get", "apiservices", "-o", "name"], None)
        .await
        .unwrap();
    for name in [
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    ] {
        assert!(apiservices.contains(name), "{name} in {apiservices}");
    }
    // Without an adapter behind them these APIServices would break discovery
    // for every later kubectl call (kedacore/keda#4772): remove them.
    cluster
        .kubectl(
            &[
                "delete",
                "apiservice",
                "v1beta2.custom.metrics.k8s.io",
                "v1beta1.custom.metrics.k8s.io",
                "v1beta1.external.metrics.k8s.io",
            ],
            None,
        )
        .await
        .unwrap();

    // Least privilege, as the apiserver's authorizer sees it.
    let can = |sa: &'static str, verb: &'static str, resource: &'static str| {
        let cluster = &cluster;
        async move {
            let who = format!("--as=system:serviceaccount:headroom:{sa}");
            // kubectl reads `nodes/proxy` as TYPE/NAME: a subresource needs
            // its own flag.
            let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
            let sub = format!("--subresource={sub}");
            let mut args = vec!["auth", "can-i", verb, res, who.as_str()];
            if resource.contains('/') {
                args.push(&sub);
            }
            // `auth can-i` exits 1 for "no".
            match cluster.kubectl(&args, None).await {
                Ok(out) => out.trim() == "yes",
                Err(_) => false,
            }
        }
    };
    for sa in ["headroom-extender", "headroom-metrics-adapter"] {
        assert!(
            can(sa, "get", "nodes/metrics").await,
            "{sa} reads kubelet metrics"
        );
        assert!(can(sa, "watch", "pods").await, "{sa} watches pods");
        assert!(
            !can(sa, "get", "nodes/proxy").await,
            "{sa} must not get nodes/proxy"
        );
        assert!(
            !can(sa, "get", "nodes/stats").await,
            "{sa} needs no nodes/stats"
        );
        assert!(
            !can(sa, "create", "pods").await,
            "{sa} must not create pods"
        );
        assert!(
            !can(sa, "get", "secrets").await,
            "{sa} must not read secrets"
        );
    }
    assert!(
        can(
            "headroom-metrics-adapter",
            "create",
            "subjectaccessreviews.authorization.k8s.io"
        )
        .await
    );
    assert!(
        !can(
            "headroom-extender",
            "create",
            "subjectaccessreviews.authorization.k8s.io"
        )
        .await
    );

    // The applied scheduler configuration runs the real kube-scheduler (it
    // validates the extenders block at start); so does the kubeadm one.
    let list = cluster
        .kubectl(&["-n", "headroom", "get", "configmaps", "-o", "json"], None)
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let config = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("headroom-scheduler-config"))
        })
        .and_then(|cm| cm["data"]["config.yaml"].as_str())
        .expect("scheduler ConfigMap applied")
        .to_string();
    assert!(config.contains("extenders:"), "scheduler config: {config}");
    cluster.start_scheduler(&config).await.unwrap();
    let kubeadm = std::fs::read_to_string(manifests("kubeadm/scheduler-config.yaml")).unwrap();
    cluster.start_scheduler(&kubeadm).await.unwrap();
    let kind =
        std::fs::read_to_string(repo_root().join("e2e/kind/scheduler/scheduler-config.yaml"))
            .unwrap();
    cluster.start_scheduler(&kind).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.check_running().unwrap();

    // The policy and adapter configuration pass our validators.
    let policy = std::process::Command::new(headroom_binary("headroom-extender").unwrap())
        .args(["check-policy", &manifests("base/extender/policy.yaml")])
        .output()
        .unwrap();
    assert!(
        policy.status.success(),
        "{}",
        String::from_utf8_lossy(&policy.stderr)
    );
    let adapter = std::process::Command::new(headroom_binary("headroom-metrics-adapter").unwrap())
        .args([
            "check-config",
            "--config",
            &manifests("base/metrics-adapter/config.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        adapter.status.success(),
        "{}",
        String::from_utf8_lossy(&adapter.stderr)
    );

    cluster.stop().await;
}
