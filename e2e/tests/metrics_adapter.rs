//! headroom-metrics-adapter behind the real aggregator and the real HPA
//! controller (issue 4): APIServices Available; Pods, Object and External
//! metrics through `kubectl get --raw` match kwok's emulated usage; a request
//! without the front-proxy certificate is refused; an autoscaling/v2 HPA on
//! z2jh's user-placeholder StatefulSet follows notebook activity up and down.

use std::time::Duration;

use base64::Engine;
use headroom_e2e::jupyterhub::{
    JupyterServerEmulator, Notebook, ServerStats, placeholder_hpa, user_placeholder,
};
use headroom_e2e::lab;
use headroom_e2e::{Cluster, ClusterConfig, wait};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;

const NS: &str = "jhub";
const USERS: [&str; 3] = ["alice", "bob", "carol"];

const ADAPTER_CONFIG: &str = r#"
notebooks:
  selector: component=singleuser-server
freshness:
  maxAge: 30s
activity:
  cpuCores: 0.2
  window: 5m
kubelet:
  interval: 1s
  timeout: 5s
jupyterServer:
  enabled: true
  interval: 1s
  timeout: 2s
  cacheTtl: 1s
"#;

async fn raw(cluster: &Cluster, path: &str) -> Result<serde_json::Value, String> {
    let out = cluster
        .kubectl(&["get", "--raw", path], None)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

/// A Quantity string (as the adapter emits it) as a number.
fn quantity(v: &serde_json::Value) -> f64 {
    let s = v.as_str().expect("quantity is a string");
    headroom_common::quantity::parse(s).expect("a valid Quantity")
}

async fn set_all_usage(cluster: &Cluster, cpu: &str) {
    for user in USERS {
        cluster
            .set_pod_usage(NS, &format!("jupyter-{user}"), cpu, "1Gi")
            .await
            .unwrap();
    }
}

async fn hpa_replicas(cluster: &Cluster) -> (i32, Option<i32>, String) {
    let sts: Api<StatefulSet> = Api::namespaced(cluster.client(), NS);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client(), NS);
    let replicas = sts
        .get("user-placeholder")
        .await
        .ok()
        .and_then(|s| s.spec?.replicas)
        .unwrap_or(-1);
    let hpa = hpas.get("user-placeholder").await.ok();
    let desired = hpa
        .as_ref()
        .and_then(|h| h.status.as_ref())
        .map(|s| s.desired_replicas);
    let conditions = hpa
        .and_then(|h| h.status?.conditions)
        .map(|cs| {
            cs.into_iter()
                .map(|c| format!("{}={} {}", c.type_, c.status, c.message.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    (replicas, desired, conditions)
}

async fn wait_replicas(cluster: &Cluster, want: i32, within: Duration) {
    let result = wait::until(
        &format!("user-placeholder at {want} replicas"),
        within,
        Duration::from_secs(1),
        || async {
            let (replicas, _, _) = hpa_replicas(cluster).await;
            (replicas == want).then_some(())
        },
    )
    .await;
    if let Err(e) = result {
        let (replicas, desired, conditions) = hpa_replicas(cluster).await;
        panic!(
            "{e}: replicas {replicas}, desired {desired:?}, HPA: {conditions}\nadapter log:\n{}",
            cluster.log_tail("headroom-metrics-adapter", 15)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_serves_the_aggregator_and_drives_an_hpa() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::start(ClusterConfig::default()).await.unwrap();
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();

    // Three users' notebooks (z2jh defaults: no CPU request, 1Gi memory),
    // busy at different levels; placeholders that keep room for new users.
    // alice's and bob's jupyter_server /metrics are reachable (emulated on
    // loopback); carol's server is not scraped.
    let jupyter = JupyterServerEmulator::start().await.unwrap();
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    jupyter.set(
        "alice",
        ServerStats {
            kernels: 2,
            last_activity: now - 100.0,
        },
    );
    jupyter.set(
        "bob",
        ServerStats {
            kernels: 0,
            last_activity: now - 3600.0,
        },
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for (user, cpu) in USERS.iter().zip(["1500m", "500m", "10m"]) {
        let mut nb = Notebook::z2jh_default(user, cpu, "1Gi");
        nb.cpu_limit = Some("2".into());
        if *user != "carol" {
            nb.jupyter_metrics_port = Some(jupyter.port);
        }
        pods.create(&PostParams::default(), &nb.to_pod("jhub"))
            .await
            .unwrap();
    }
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    sts.create(
        &PostParams::default(),
        &user_placeholder(1, "100m", "128Mi"),
    )
    .await
    .unwrap();

    let adapter = lab::start_adapter(&cluster, ADAPTER_CONFIG).await.unwrap();

    // Pods metric through the aggregator (client-go sends `*` as %2A).
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/notebook_cpu_usage_cores?labelSelector=component%3Dsingleuser-server";
    let list = wait::until(
        "Pods metric with all three notebooks measured",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || async {
            let v = raw(&cluster, path).await.ok()?;
            let items = v["items"].as_array()?;
            let alice = items
                .iter()
                .find(|i| i["describedObject"]["name"] == "jupyter-alice")?;
            (items.len() == 3 && (quantity(&alice["value"]) - 1.5).abs() < 0.1).then_some(v)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nadapter:\n{}",
            cluster.log_tail("headroom-metrics-adapter", 20)
        )
    });
    assert_eq!(list["kind"], "MetricValueList");
    assert_eq!(list["apiVersion"], "custom.metrics.k8s.io/v1beta2");
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["describedObject"]["kind"], "Pod");
        assert_eq!(item["metric"]["name"], "notebook_cpu_usage_cores");
        assert!(item["windowSeconds"].as_i64().unwrap() >= 1);
        let want = match item["describedObject"]["name"].as_str().unwrap() {
            "jupyter-alice" => 1.5,
            "jupyter-bob" => 0.5,
            "jupyter-carol" => 0.01,
            other => panic!("unexpected pod {other}"),
        };
        let got = quantity(&item["value"]);
        assert!((got - want).abs() < 0.1, "{item}: want {want}");
    }

    // The same through v1beta1 (metricName instead of metric{}).
    let v1 = raw(
        &cluster,
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/jhub/pods/%2A/notebook_memory_working_set_bytes?labelSelector=component%3Dsingleuser-server",
    )
    .await
    .unwrap();
    assert_eq!(v1["apiVersion"], "custom.metrics.k8s.io/v1beta1");
    let first = &v1["items"][0];
    assert_eq!(first["metricName"], "notebook_memory_working_set_bytes");
    assert_eq!(quantity(&first["value"]), 1073741824.0);

    // Kernels and idle time from the pod's own jupyter_server.
    let kernels = wait::until(
        "alice's kernels from her jupyter_server",
        Duration::from_secs(30),
        Duration::from_secs(1),
        || async {
            raw(
                &cluster,
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/jupyter-alice/notebook_kernels_running",
            )
            .await
            .ok()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nadapter:\n{}", cluster.log_tail("headroom-metrics-adapter", 20)));
    assert_eq!(quantity(&kernels["items"][0]["value"]), 2.0, "{kernels}");
    let idle = raw(
        &cluster,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/jupyter-bob/notebook_idle_seconds",
    )
    .await
    .unwrap();
    let bob_idle = quantity(&idle["items"][0]["value"]);
    assert!(
        (3590.0..3700.0).contains(&bob_idle),
        "bob idle about an hour: {idle}"
    );

    // Object metric on the namespace: users above 0.2 cores are active.
    let active = raw(
        &cluster,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_active_users",
    )
    .await
    .unwrap();
    assert_eq!(active["items"].as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active["items"][0]["describedObject"]["kind"], "Namespace");
    assert_eq!(quantity(&active["items"][0]["value"]), 2.0, "{active}");

    // External metric: one user's CPU selected by label.
    let ext = raw(
        &cluster,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/jhub/user_cpu_usage_cores?labelSelector=user%3Dalice",
    )
    .await
    .unwrap();
    assert_eq!(ext["kind"], "ExternalMetricValueList");
    let items = ext["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{ext}");
    assert_eq!(items[0]["metricLabels"]["user"], "alice");
    assert!((quantity(&items[0]["value"]) - 1.5).abs() < 0.1, "{ext}");

    // Straight to the adapter: only the aggregator's front-proxy certificate
    // makes X-Remote-User count.
    let url = format!("https://127.0.0.1:{}", adapter.port);
    let path =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_active_users";
    let call = |pem: Option<(String, String)>| {
        let url = url.clone();
        async move {
            let mut config = kube::Config::new(url.parse().unwrap());
            config.accept_invalid_certs = true;
            if let Some((cert, key)) = pem {
                let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
                config.auth_info.client_certificate_data = Some(b64(&cert));
                config.auth_info.client_key_data = Some(b64(&key).into());
            }
            let client = kube::Client::try_from(config).unwrap();
            let req = http::Request::get(path)
                .header("X-Remote-User", "headroom-lab-admin")
                .header("X-Remote-Group", "system:masters")
                .body(Vec::new())
                .unwrap();
            client.request_text(req).await
        }
    };
    let no_cert = call(None).await;
    assert!(
        no_cert.is_err(),
        "no client certificate must be refused: {no_cert:?}"
    );
    let admin = cluster.pki.admin.clone();
    let wrong_ca = call(Some((admin.cert, admin.key))).await;
    assert!(
        wrong_ca.is_err(),
        "cluster-CA certificate is not the front proxy: {wrong_ca:?}"
    );
    let fp = cluster.pki.front_proxy_client.clone();
    let ok = call(Some((fp.cert, fp.key))).await;
    assert!(
        ok.is_ok(),
        "front-proxy certificate with headers is served: {ok:?}"
    );

    // An HPA on user-placeholder: one placeholder per active user.
    let hpa = placeholder_hpa(NS, "1", 6, 0);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), NS);
    hpas.create(&PostParams::default(), &hpa).await.unwrap();
    // Two active users now (alice, bob).
    wait_replicas(&cluster, 2, Duration::from_secs(60)).await;
    // Everyone gets busy: three placeholders.
    set_all_usage(&cluster, "1").await;
    wait_replicas(&cluster, 3, Duration::from_secs(60)).await;
    // Everyone goes idle: back to the minimum.
    set_all_usage(&cluster, "5m").await;
    wait_replicas(&cluster, 1, Duration::from_secs(60)).await;

    cluster.stop().await;
}
