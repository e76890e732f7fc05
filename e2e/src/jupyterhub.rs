//! A simulated JupyterHub: user pods shaped as z2jh/KubeSpawner makes them,
//! and z2jh's `user-placeholder` StatefulSet.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::kwok;

/// The label selector z2jh's NetworkPolicies and our adapter use for user pods.
pub const SINGLEUSER_SELECTOR: &str = "component=singleuser-server";
/// The annotation KubeSpawner writes with the raw user name.
pub const USERNAME_ANNOTATION: &str = "hub.jupyter.org/username";

/// One user's notebook server.
#[derive(Clone, Debug)]
pub struct Notebook {
    /// The raw JupyterHub user name.
    pub user: String,
    /// `resources.requests.cpu` (z2jh's default: none).
    pub cpu_request: Option<String>,
    /// `resources.requests.memory` (z2jh's default: 1Gi, from `1G` binary).
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    /// Emulated usage (kwok annotations).
    pub cpu_usage: String,
    pub memory_usage: String,
    /// A `schedulerName` other than the default.
    pub scheduler_name: Option<String>,
    /// Port of a [`JupyterServerEmulator`] serving this user's jupyter_server
    /// `/metrics`. The pod then uses the host network (its IP is the node's
    /// loopback address) and carries the prometheus.io scrape annotations.
    pub jupyter_metrics_port: Option<u16>,
}

impl Notebook {
    /// A notebook with z2jh's default resources (memory request 1Gi, no CPU
    /// request, no limits) using `cpu_usage` cores.
    pub fn z2jh_default(user: &str, cpu_usage: &str, memory_usage: &str) -> Self {
        Self {
            user: user.to_string(),
            cpu_request: None,
            memory_request: Some("1Gi".into()),
            cpu_limit: None,
            memory_limit: None,
            cpu_usage: cpu_usage.to_string(),
            memory_usage: memory_usage.to_string(),
            scheduler_name: None,
            jupyter_metrics_port: None,
        }
    }

    /// The pod name KubeSpawner's `safe` slug scheme gives a simple user name.
    pub fn pod_name(&self) -> String {
        let slug: String = self
            .user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!("jupyter-{slug}")
    }

    pub fn to_pod(&self, release: &str) -> Pod {
        let mut requests = serde_json::Map::new();
        let mut limits = serde_json::Map::new();
        if let Some(c) = &self.cpu_request {
            requests.insert("cpu".into(), json!(c));
        }
        if let Some(m) = &self.memory_request {
            requests.insert("memory".into(), json!(m));
        }
        if let Some(c) = &self.cpu_limit {
            limits.insert("cpu".into(), json!(c));
        }
        if let Some(m) = &self.memory_limit {
            limits.insert("memory".into(), json!(m));
        }
        let mut spec = json!({
            "containers": [{
                "name": "notebook",
                "image": "jupyter/base-notebook:latest",
                "ports": [{"name": "notebook-port", "containerPort": 8888}],
                "resources": {"requests": requests, "limits": limits},
            }],
            "restartPolicy": "OnFailure",
        });
        if let Some(s) = &self.scheduler_name {
            spec["schedulerName"] = json!(s);
        }
        let mut annotations = json!({
            USERNAME_ANNOTATION: self.user,
            "hub.jupyter.org/servername": "",
            kwok::POD_USAGE_CPU: self.cpu_usage,
            kwok::POD_USAGE_MEMORY: self.memory_usage,
        });
        if let Some(port) = self.jupyter_metrics_port {
            spec["hostNetwork"] = json!(true);
            // No containerPort: on the host network it would become a host
            // port and keep two notebooks off the same node.
            spec["containers"][0]
                .as_object_mut()
                .expect("container object")
                .remove("ports");
            annotations["prometheus.io/scrape"] = json!("true");
            annotations["prometheus.io/port"] = json!(port.to_string());
            annotations["prometheus.io/path"] = json!(format!("/user/{}/metrics", self.user));
        }
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod_name(),
                "labels": {
                    "component": "singleuser-server",
                    "app.kubernetes.io/component": "singleuser-server",
                    "app": "jupyterhub",
                    "app.kubernetes.io/name": "jupyterhub",
                    "release": release,
                    "app.kubernetes.io/instance": release,
                    "app.kubernetes.io/managed-by": "kubespawner",
                    "hub.jupyter.org/username": self.user,
                    "hub.jupyter.org/servername": "",
                    "hub.jupyter.org/network-access-hub": "true",
                },
                "annotations": annotations,
            },
            "spec": spec,
        }))
        .expect("pod JSON matches the Pod type")
    }
}

/// What one user's emulated jupyter_server reports.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    pub kernels: u32,
    /// Unix seconds of the last activity.
    pub last_activity: f64,
}

/// Emulated jupyter_server `/metrics` endpoints for many users on one
/// loopback port: `GET /user/<name>/metrics` answers in the Prometheus text
/// format with `kernel_currently_running_total` and
/// `jupyter_server_last_activity_timestamp_seconds`, as jupyter_server 2.15+
/// does.
#[derive(Clone)]
pub struct JupyterServerEmulator {
    pub port: u16,
    stats: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, ServerStats>>>,
    _task: std::sync::Arc<tokio::task::JoinHandle<()>>,
}

impl JupyterServerEmulator {
    pub async fn start() -> std::io::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stats: std::sync::Arc<
            std::sync::Mutex<std::collections::HashMap<String, ServerStats>>,
        > = Default::default();
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let stats = shared.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let user = path
                        .strip_prefix("/user/")
                        .and_then(|p| p.strip_suffix("/metrics"));
                    let found = user.and_then(|u| stats.lock().ok()?.get(u).cloned());
                    let response = match found {
                        Some(s) => {
                            let body = format!(
                                "# HELP kernel_currently_running_total counts the number of kernels currently running\n\
                                 # TYPE kernel_currently_running_total gauge\n\
                                 kernel_currently_running_total{{type=\"python3\"}} {}\n\
                                 # HELP jupyter_server_last_activity_timestamp_seconds Timestamp of last seen activity on this Jupyter Server\n\
                                 # TYPE jupyter_server_last_activity_timestamp_seconds gauge\n\
                                 jupyter_server_last_activity_timestamp_seconds {:.3}\n",
                                s.kernels, s.last_activity
                            );
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    };
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(Self {
            port,
            stats,
            _task: std::sync::Arc::new(task),
        })
    }

    /// Sets what `user`'s server reports from now on.
    pub fn set(&self, user: &str, stats: ServerStats) {
        if let Ok(mut m) = self.stats.lock() {
            m.insert(user.to_string(), stats);
        }
    }
}

/// z2jh's `user-placeholder` StatefulSet: pause pods that keep room for new
/// users, the scalable target an HPA can drive.
pub fn user_placeholder(replicas: i32, cpu: &str, memory: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "user-placeholder", "labels": {"component": "user-placeholder"}},
        "spec": {
            "podManagementPolicy": "Parallel",
            "replicas": replicas,
            "serviceName": "user-placeholder",
            "selector": {"matchLabels": {"component": "user-placeholder"}},
            "template": {
                "metadata": {"labels": {"component": "user-placeholder"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "pause",
                        "image": "pause:3.10",
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }],
                },
            },
        },
    }))
    .expect("statefulset JSON matches the type")
}

/// An autoscaling/v2 HPA on `user-placeholder` in `namespace`: one
/// placeholder per `per_placeholder` of the namespace's
/// `jupyterhub_active_users` (an Object metric served by the adapter),
/// between 1 and `max`, scaling down after `scale_down_window_secs`.
pub fn placeholder_hpa(
    namespace: &str,
    per_placeholder: &str,
    max: i32,
    scale_down_window_secs: i32,
) -> k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "user-placeholder", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "user-placeholder"},
            "minReplicas": 1,
            "maxReplicas": max,
            "metrics": [{"type": "Object", "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
                "metric": {"name": "jupyterhub_active_users"},
                "target": {"type": "AverageValue", "averageValue": per_placeholder},
            }}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": scale_down_window_secs},
            },
        },
    }))
    .expect("HPA JSON matches the type")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notebook_pod_carries_kubespawner_identity() {
        let pod = Notebook::z2jh_default("alice", "500m", "1Gi").to_pod("jhub");
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("jupyter-alice"));
        assert_eq!(
            meta.labels.as_ref().unwrap()["component"],
            "singleuser-server"
        );
        assert_eq!(
            meta.annotations.as_ref().unwrap()[USERNAME_ANNOTATION],
            "alice"
        );
        let res = pod.spec.unwrap().containers[0].resources.clone().unwrap();
        assert!(!res.requests.as_ref().unwrap().contains_key("cpu"));
        assert_eq!(res.requests.unwrap()["memory"].0, "1Gi");
    }
}
