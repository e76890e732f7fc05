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
                "image": "quay.io/jupyter/base-notebook:latest",
                "ports": [{"name": "notebook-port", "containerPort": 8888}],
                "resources": {"requests": requests, "limits": limits},
            }],
            "restartPolicy": "OnFailure",
        });
        if let Some(s) = &self.scheduler_name {
            spec["schedulerName"] = json!(s);
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
                "annotations": {
                    USERNAME_ANNOTATION: self.user,
                    "hub.jupyter.org/servername": "",
                    kwok::POD_USAGE_CPU: self.cpu_usage,
                    kwok::POD_USAGE_MEMORY: self.memory_usage,
                },
            },
            "spec": spec,
        }))
        .expect("pod JSON matches the Pod type")
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
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }],
                },
            },
        },
    }))
    .expect("statefulset JSON matches the type")
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
