//! Where a node's kubelet serves resource metrics.

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

/// Node annotation naming the resource-metrics path (metrics-server ≥ 0.7);
/// kwok sets it to `/metrics/nodes/<node>/metrics/resource`.
pub const RESOURCE_METRICS_PATH_ANNOTATION: &str = "metrics.k8s.io/resource-metrics-path";
pub const DEFAULT_RESOURCE_METRICS_PATH: &str = "/metrics/resource";
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How to reach kubelets. Real kubelets serve HTTPS only; kwok serves both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scheme {
    #[default]
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node's resource-metrics URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KubeletTarget {
    pub node: String,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("node object has no name")]
    NoName,
    #[error("node {node}: no InternalIP in status.addresses")]
    NoInternalIp { node: String },
    #[error("node {node}: InternalIP {address:?} is not an IP address")]
    InvalidAddress { node: String, address: String },
    #[error("node {node}: kubelet port {port} in status.daemonEndpoints is out of range")]
    InvalidPort { node: String, port: i32 },
    #[error(
        "node {node}: annotation {RESOURCE_METRICS_PATH_ANNOTATION} must be an absolute URL path, got {path:?}"
    )]
    InvalidPath { node: String, path: String },
}

/// The kubelet resource-metrics URL for `node`: its first InternalIP
/// (bracketed if IPv6), `status.daemonEndpoints.kubeletEndpoint.Port`
/// (10250 when unset), and the annotated path or `/metrics/resource`.
pub fn target_for_node(node: &Node, scheme: Scheme) -> Result<KubeletTarget, TargetError> {
    let name = node.metadata.name.clone().ok_or(TargetError::NoName)?;
    let status = node.status.as_ref();
    let address = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|addrs| addrs.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.trim())
        .ok_or_else(|| TargetError::NoInternalIp { node: name.clone() })?;
    let ip: IpAddr = address.parse().map_err(|_| TargetError::InvalidAddress {
        node: name.clone(),
        address: address.to_owned(),
    })?;
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let port = match status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|e| e.port)
    {
        None | Some(0) => DEFAULT_KUBELET_PORT,
        Some(p) => u16::try_from(p).map_err(|_| TargetError::InvalidPort {
            node: name.clone(),
            port: p,
        })?,
    };
    let path = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESOURCE_METRICS_PATH_ANNOTATION))
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_RESOURCE_METRICS_PATH);
    let invalid_path = || TargetError::InvalidPath {
        node: name.clone(),
        path: path.to_owned(),
    };
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(invalid_path());
    }
    let url = format!("{scheme}://{host}:{port}{path}");
    let parsed: http::Uri = url.parse().map_err(|_| invalid_path())?;
    if parsed.authority().map(|a| a.as_str()) != Some(format!("{host}:{port}").as_str()) {
        return Err(invalid_path());
    }
    Ok(KubeletTarget { node: name, url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn internal_ip_port_and_default_path() {
        let n = node(json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1.example"},
                    {"type": "ExternalIP", "address": "203.0.113.9"},
                    {"type": "InternalIP", "address": "10.0.0.7"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}},
            }
        }));
        let t = target_for_node(&n, Scheme::Https).unwrap();
        assert_eq!(t.node, "n1");
        assert_eq!(t.url, "https://10.0.0.7:10255/metrics/resource");
    }

    #[test]
    fn kwok_annotation_path_default_port_and_http() {
        let n = node(json!({
            "metadata": {"name": "kwok-0", "annotations": {
                RESOURCE_METRICS_PATH_ANNOTATION: "/metrics/nodes/kwok-0/metrics/resource"
            }},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}
        }));
        let t = target_for_node(&n, Scheme::Http).unwrap();
        assert_eq!(
            t.url,
            "http://127.0.0.1:10250/metrics/nodes/kwok-0/metrics/resource"
        );
    }

    #[test]
    fn ipv6_is_bracketed() {
        let n = node(json!({
            "metadata": {"name": "v6"},
            "status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}
        }));
        assert_eq!(
            target_for_node(&n, Scheme::Https).unwrap().url,
            "https://[fd00::1]:10250/metrics/resource"
        );
    }

    #[test]
    fn errors_name_the_node_and_the_problem() {
        let no_ip = node(json!({"metadata": {"name": "a"}, "status": {"addresses": [
            {"type": "Hostname", "address": "a"}]}}));
        assert_eq!(
            target_for_node(&no_ip, Scheme::Https),
            Err(TargetError::NoInternalIp { node: "a".into() })
        );
        let bad_ip = node(json!({"metadata": {"name": "b"}, "status": {"addresses": [
            {"type": "InternalIP", "address": "not-an-ip"}]}}));
        assert!(matches!(
            target_for_node(&bad_ip, Scheme::Https),
            Err(TargetError::InvalidAddress { .. })
        ));
        let bad_port = node(json!({"metadata": {"name": "c"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 70000}}}}));
        assert_eq!(
            target_for_node(&bad_port, Scheme::Https),
            Err(TargetError::InvalidPort {
                node: "c".into(),
                port: 70000
            })
        );
        for path in ["metrics", "//evil.example/x", "/a b"] {
            let bad_path = node(json!({
                "metadata": {"name": "d", "annotations": {RESOURCE_METRICS_PATH_ANNOTATION: path}},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}));
            assert!(
                matches!(
                    target_for_node(&bad_path, Scheme::Https),
                    Err(TargetError::InvalidPath { .. })
                ),
                "{path}"
            );
        }
        assert_eq!(
            target_for_node(&Node::default(), Scheme::Https),
            Err(TargetError::NoName)
        );
    }
}
