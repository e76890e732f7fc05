//! The adapter served in process over HTTPS: front-proxy authentication with
//! real client certificates, authorization through an injected
//! [`Authorizer`], and the metric endpoints end to end (reflector stores and
//! usage cache filled by hand, no API server).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use headroom_common::kubelet::{NodeUsage, PodKey, PodUsage, UsageCache};
use headroom_common::server::{ServeOptions, Transport, serve};
use headroom_common::tls::{self, FixedCert, TlsConfigHandle};
use headroom_metrics_adapter::app::{self, State};
use headroom_metrics_adapter::auth::{
    Attributes, Authorizer, AuthzError, Decision, RequestHeaderConfig, ResourceAttributes, UserInfo,
};
use headroom_metrics_adapter::config::Config;
use headroom_metrics_adapter::fixtures;
use headroom_metrics_adapter::telemetry::AdapterMetrics;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

fn client_cert(ca: &Ca, cn: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
}

/// Allows everything except users named `mallory`; records every call.
#[derive(Default)]
struct FakeAuthorizer {
    calls: Mutex<Vec<(String, Attributes)>>,
}

impl Authorizer for FakeAuthorizer {
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, AuthzError>> {
        self.calls
            .lock()
            .unwrap()
            .push((user.name.clone(), attrs.clone()));
        let allowed = user.name != "mallory";
        Box::pin(async move {
            Ok(Decision {
                allowed,
                reason: if allowed {
                    String::new()
                } else {
                    "no RBAC policy matched".to_string()
                },
            })
        })
    }
}

struct Harness {
    addr: SocketAddr,
    server_ca: CertificateDer<'static>,
    front_proxy: Ca,
    authorizer: Arc<FakeAuthorizer>,
    usage: UsageCache,
    state: Arc<State>,
    shutdown: CancellationToken,
}

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn publish(usage: &UsageCache, at: Timestamp, pods: &[(&str, f64, f64)]) {
    usage.publish(NodeUsage {
        node: "node-a".into(),
        at,
        window: Duration::from_secs(15),
        cpu_cores: Some(3.0),
        memory_working_set_bytes: Some(8e9),
        pods: pods
            .iter()
            .map(|(name, cpu, mem)| {
                (
                    PodKey::new("jhub", *name),
                    PodUsage {
                        cpu_cores: Some(*cpu),
                        memory_working_set_bytes: Some(*mem),
                        at,
                        window: Duration::from_secs(15),
                    },
                )
            })
            .collect(),
    });
}

async fn start() -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let serving =
        tls::self_signed(&["localhost".to_string()], &["127.0.0.1".parse().unwrap()]).unwrap();
    let server_ca = tls::parse_pem_certs(serving.ca_pem.as_bytes(), "ca")
        .unwrap()
        .remove(0);
    let tls_handle =
        Arc::new(TlsConfigHandle::new(Arc::new(FixedCert(serving.key.clone())), vec![]).unwrap());

    let pods: Vec<Pod> = vec![
        fixtures::notebook_pod("jhub", "alice", "node-a", "2025-01-01T00:00:00Z"),
        fixtures::notebook_pod("jhub", "bob", "node-a", "2025-01-01T00:00:00Z"),
        fixtures::notebook_pod("other", "carol", "node-a", "2025-01-01T00:00:00Z"),
    ];
    let nodes: Vec<Node> = vec![fixtures::node("node-a", 8, 32 << 30)];
    let usage = UsageCache::new();
    publish(
        &usage,
        Timestamp::now(),
        &[("jupyter-alice", 0.5, 1e9), ("jupyter-bob", 0.0, 2e8)],
    );
    let authorizer = Arc::new(FakeAuthorizer::default());
    let state = Arc::new(State::new(
        Config::default().validate().unwrap(),
        store(pods),
        store(nodes),
        usage.clone(),
        None,
        authorizer.clone(),
        Some(tls_handle.clone()),
        Arc::new(AdapterMetrics::new()),
    ));
    let front_proxy = ca("front-proxy-ca");
    state
        .apply_request_header_config(RequestHeaderConfig {
            client_ca: vec![front_proxy.cert.clone()],
            allowed_names: vec!["front-proxy-client".to_string()],
            username_headers: vec!["X-Remote-User".to_string()],
            uid_headers: vec![],
            group_headers: vec!["X-Remote-Group".to_string()],
            extra_headers_prefix: vec!["X-Remote-Extra-".to_string()],
        })
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let handler_state = state.clone();
    tokio::spawn(serve(
        listener,
        Transport::Tls(tls_handle.subscribe()),
        move |req, conn| app::handle(handler_state.clone(), req, conn),
        ServeOptions::default(),
        shutdown.clone(),
    ));
    Harness {
        addr,
        server_ca,
        front_proxy,
        authorizer,
        usage,
        state,
        shutdown,
    }
}

struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Harness {
    fn config(
        &self,
        identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
        h2: bool,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.server_ca.clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((c, k)) => builder.with_client_auth_cert(vec![c], k).unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if h2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(config)
    }

    fn proxy_identity(&self) -> Option<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        Some(client_cert(&self.front_proxy, "front-proxy-client"))
    }

    async fn get_with(
        &self,
        config: Arc<ClientConfig>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let mut builder = Request::get(format!("https://localhost{path}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Empty::<Bytes>::new()).unwrap();
        let chain = |e: hyper::Error| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                text.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            text
        };
        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(chain)?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(chain)?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(chain)?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(chain)?
        };
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        })
    }

    /// As the aggregator: front-proxy certificate, user headers, HTTP/2.
    async fn get_as(&self, user: &str, groups: &[&str], path: &str) -> Reply {
        let mut headers = vec![("X-Remote-User", user)];
        for g in groups {
            headers.push(("X-Remote-Group", g));
        }
        self.get_with(self.config(self.proxy_identity(), true), path, &headers)
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Reply {
        self.get_as(
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
            &["system:authenticated"],
            path,
        )
        .await
    }

    fn sar_calls(&self) -> usize {
        self.authorizer.calls.lock().unwrap().len()
    }
}

const PODS_CPU: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/notebook_cpu_usage_cores?labelSelector=component%3Dsingleuser-server";

#[tokio::test]
async fn front_proxy_request_is_served_and_authorized_by_sar() {
    let h = start().await;
    let reply = h.get(PODS_CPU).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = &reply.body;
    assert_eq!(body["kind"], "MetricValueList");
    assert_eq!(body["apiVersion"], "custom.metrics.k8s.io/v1beta2");
    let items = body["items"].as_array().unwrap();
    let values: HashMap<&str, &str> = items
        .iter()
        .map(|i| {
            (
                i["describedObject"]["name"].as_str().unwrap(),
                i["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        values,
        HashMap::from([("jupyter-alice", "500m"), ("jupyter-bob", "0")])
    );
    assert_eq!(items[0]["windowSeconds"], 15);
    assert_eq!(items[0]["metric"]["selector"], Value::Null);
    assert_eq!(items[0]["describedObject"]["kind"], "Pod");

    let calls = h.authorizer.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].0,
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(
        calls[0].1,
        Attributes::Resource(ResourceAttributes {
            namespace: "jhub".into(),
            verb: "get".into(),
            group: "custom.metrics.k8s.io".into(),
            version: "v1beta2".into(),
            resource: "pods".into(),
            subresource: "notebook_cpu_usage_cores".into(),
            name: "*".into(),
        })
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn without_client_certificate_headers_are_ignored() {
    let h = start().await;
    for h2 in [false, true] {
        let reply = h
            .get_with(
                h.config(None, h2),
                PODS_CPU,
                &[
                    ("X-Remote-User", "system:admin"),
                    ("X-Remote-Group", "system:masters"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["kind"], "Status");
        assert_eq!(reply.body["reason"], "Unauthorized");
        assert_eq!(reply.body["code"], 401);
    }
    assert_eq!(h.sar_calls(), 0);
    h.shutdown.cancel();
}

#[tokio::test]
async fn certificate_with_a_name_not_allowed_is_refused() {
    let h = start().await;
    let identity = Some(client_cert(
        &h.front_proxy,
        "system:kube-controller-manager",
    ));
    let reply = h
        .get_with(
            h.config(identity, true),
            PODS_CPU,
            &[("X-Remote-User", "system:admin")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.sar_calls(), 0);
    h.shutdown.cancel();
}

#[tokio::test]
async fn certificate_from_another_ca_is_rejected() {
    let h = start().await;
    let stranger = ca("stranger");
    let identity = Some(client_cert(&stranger, "front-proxy-client"));
    let err = h
        .get_with(
            h.config(identity, false),
            PODS_CPU,
            &[("X-Remote-User", "system:admin")],
        )
        .await
        .err()
        .expect("refused");
    assert!(err.contains("UnknownCA"), "{err}");
    h.shutdown.cancel();
}

#[tokio::test]
async fn a_rotated_requestheader_ca_applies_to_new_connections() {
    let h = start().await;
    let rotated = ca("front-proxy-ca-2");
    h.state
        .apply_request_header_config(RequestHeaderConfig {
            client_ca: vec![rotated.cert.clone()],
            allowed_names: vec![],
            username_headers: vec!["X-Remote-User".into()],
            uid_headers: vec![],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefix: vec![],
        })
        .unwrap();
    let new_identity = Some(client_cert(&rotated, "anything"));
    let reply = h
        .get_with(
            h.config(new_identity, true),
            PODS_CPU,
            &[("X-Remote-User", "u")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let old_identity = h.proxy_identity();
    let err = h
        .get_with(
            h.config(old_identity, false),
            PODS_CPU,
            &[("X-Remote-User", "u")],
        )
        .await
        .err()
        .expect("old CA refused");
    assert!(err.contains("UnknownCA"), "{err}");
    h.shutdown.cancel();
}

#[tokio::test]
async fn denied_by_sar_is_forbidden_with_a_go_style_message() {
    let h = start().await;
    let reply = h
        .get_as("mallory", &["system:authenticated"], PODS_CPU)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["reason"], "Forbidden");
    assert_eq!(
        reply.body["message"],
        "pods.custom.metrics.k8s.io \"*\" is forbidden: User \"mallory\" cannot get resource \"pods/notebook_cpu_usage_cores\" in API group \"custom.metrics.k8s.io\" in the namespace \"jhub\": no RBAC policy matched"
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn system_masters_and_discovery_skip_sar() {
    let h = start().await;
    let reply = h.get_as("mallory", &["system:masters"], PODS_CPU).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = h
        .get_as("mallory", &[], "/apis/custom.metrics.k8s.io/v1beta2")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["kind"], "APIResourceList");
    let names: Vec<&str> = reply.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"pods/notebook_cpu_usage_cores"));
    assert!(names.contains(&"namespaces/jupyterhub_active_users"));
    assert_eq!(h.sar_calls(), 0);
    h.shutdown.cancel();
}

#[tokio::test]
async fn health_is_anonymous_and_readiness_waits_for_caches() {
    let h = start().await;
    let anon = h.config(None, false);
    let reply = h.get_with(anon.clone(), "/healthz", &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let reply = h.get_with(anon.clone(), "/readyz", &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text.contains("pod cache not synced"),
        "{}",
        reply.text
    );
    tokio::time::timeout(Duration::from_secs(5), app_mark_synced(&h))
        .await
        .unwrap();
    let reply = h.get_with(anon.clone(), "/readyz", &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = h.get_with(anon, "/metrics", &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    h.shutdown.cancel();
}

async fn app_mark_synced(h: &Harness) {
    headroom_metrics_adapter::watch::mark_synced(h.state.clone()).await;
}

#[tokio::test]
async fn object_external_and_v1beta1_values() {
    let h = start().await;
    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_running_servers")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let item = &reply.body["items"][0];
    assert_eq!(
        item["describedObject"],
        serde_json::json!({"kind": "Namespace", "name": "jhub", "apiVersion": "v1"})
    );
    assert_eq!(item["value"], "2");

    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/jhub/metrics/user_cpu_usage_cores?metricLabelSelector=user%3Dalice")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let item = &reply.body["items"][0];
    assert_eq!(item["metricName"], "user_cpu_usage_cores");
    assert_eq!(item["value"], "500m");
    assert_eq!(item["window"], 15);
    assert_eq!(
        item["selector"],
        serde_json::json!({"matchLabels": {"user": "alice"}})
    );

    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/statefulsets.apps/user-placeholder/jupyterhub_cpu_usage_cores")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body["items"][0]["describedObject"],
        serde_json::json!({"kind": "StatefulSet", "namespace": "jhub", "name": "user-placeholder", "apiVersion": "apps/v1"})
    );
    assert_eq!(reply.body["items"][0]["value"], "500m");

    let reply = h
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/jhub/user_memory_working_set_bytes?labelSelector=user%3Dbob")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["kind"], "ExternalMetricValueList");
    let items = reply.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metricLabels"]["user"], "bob");
    assert_eq!(items[0]["value"], "200M");

    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/jupyter-alice/notebook_memory_limit_fraction")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // 1e9 bytes of a 1Gi request.
    assert_eq!(reply.body["items"][0]["value"], "931m");
    h.shutdown.cancel();
}

#[tokio::test]
async fn stale_values_are_errors_not_numbers() {
    let h = start().await;
    publish(
        &h.usage,
        Timestamp::now() - jiff::SignedDuration::from_secs(600),
        &[("jupyter-alice", 0.5, 1e9), ("jupyter-bob", 0.0, 2e8)],
    );
    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_cpu_usage_cores")
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["reason"], "ServiceUnavailable");
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("max age 60s"),
        "{}",
        reply.text
    );
    let reply = h.get(PODS_CPU).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    h.shutdown.cancel();
}

#[tokio::test]
async fn bad_requests_name_the_problem() {
    let h = start().await;
    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/notebook_cpu_usage_cores?labelSelector=app+in+%28")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["reason"], "BadRequest");
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid labelSelector:"),
        "{}",
        reply.text
    );

    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/nope")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.body["message"],
        "the server could not find the metric nope for pods"
    );

    let reply = h
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/jupyter-nobody/notebook_cpu_usage_cores")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let reply = h.get("/openapi/v2").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["swagger"], "2.0");
    let reply = h.get("/openapi/v3").await;
    assert_eq!(reply.body, serde_json::json!({"paths": {}}));

    let aggregated = h
        .get_with(
            h.config(h.proxy_identity(), true),
            "/apis",
            &[
                ("X-Remote-User", "system:kube-aggregator"),
                ("X-Remote-Group", "system:masters"),
                (
                    "Accept",
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(aggregated.status, StatusCode::NOT_ACCEPTABLE);
    let legacy = h.get("/apis").await;
    assert_eq!(legacy.status, StatusCode::OK);
    assert_eq!(legacy.body["kind"], "APIGroupList");
    h.shutdown.cancel();
}
