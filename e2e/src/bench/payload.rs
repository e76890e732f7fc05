//! Request bodies for the extender verbs: `ExtenderArgs` as kube-scheduler
//! sends them (capitalised keys, `Nodes`/`NodeNames` with the other `null`).

use serde_json::{Value, json};

use crate::jupyterhub::Notebook;
use crate::nodes::NodeSpec;

/// How the candidate nodes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NodesMode {
    /// `nodeCacheCapable: true`: names only, the extender has its own cache.
    Names,
    /// `nodeCacheCapable: false`: whole Node objects (what extenders without
    /// a node cache, such as TAS, need).
    Full,
}

impl NodesMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Names => "NodeNames",
            Self::Full => "Nodes",
        }
    }
}

/// The pod being scheduled: a notebook pod as z2jh/KubeSpawner makes it
/// (1Gi memory request, no CPU request), bound to no node yet. `labels` are
/// added to its metadata (TAS selects its policy by a pod label).
pub fn notebook_pod(user: &str, labels: &[(&str, &str)]) -> Value {
    let pod = Notebook::z2jh_default(user, "500m", "1Gi").to_pod("jhub");
    let mut v = serde_json::to_value(pod).expect("a Pod serialises");
    v["metadata"]["namespace"] = json!("default");
    v["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", user.len()));
    for (k, val) in labels {
        v["metadata"]["labels"][*k] = json!(val);
    }
    v
}

/// The first `count` nodes of `nodes` (the cluster's own node objects when
/// sending full Nodes, so a peer sees exactly what the scheduler would send).
pub fn extender_args(pod: &Value, nodes: &[Value], count: usize, mode: NodesMode) -> Value {
    let chosen = &nodes[..count.min(nodes.len())];
    match mode {
        NodesMode::Names => json!({
            "Pod": pod,
            "Nodes": null,
            "NodeNames": chosen.iter().map(|n| n["metadata"]["name"].clone()).collect::<Vec<_>>(),
        }),
        NodesMode::Full => json!({
            "Pod": pod,
            "Nodes": {"metadata": {}, "items": chosen},
            "NodeNames": null,
        }),
    }
}

/// Node objects shaped like the harness's kwok nodes (for standalone runs
/// against an extender that is not attached to a cluster).
pub fn synthetic_nodes(count: usize, kwok_port: u16) -> Vec<Value> {
    NodeSpec::uniform(count, "20", "64Gi")
        .iter()
        .map(|spec| serde_json::to_value(spec.to_node(kwok_port)).expect("a Node serialises"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_mode_sends_names_and_null_nodes() {
        let pod = notebook_pod("alice", &[]);
        let nodes = synthetic_nodes(5, 10250);
        let args = extender_args(&pod, &nodes, 3, NodesMode::Names);
        assert_eq!(args["Nodes"], Value::Null);
        assert_eq!(args["NodeNames"], json!(["node01", "node02", "node03"]));
        assert_eq!(args["Pod"]["metadata"]["name"], "jupyter-alice");
        assert!(args["Pod"]["spec"]["containers"][0]["resources"]["requests"]["cpu"].is_null());
    }

    #[test]
    fn full_mode_sends_node_objects_and_null_names() {
        let pod = notebook_pod("bob", &[("telemetry-policy", "p")]);
        let nodes = synthetic_nodes(4, 10250);
        let args = extender_args(&pod, &nodes, 10, NodesMode::Full);
        assert_eq!(args["NodeNames"], Value::Null);
        let items = args["Nodes"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 4, "capped at the nodes available");
        assert_eq!(items[3]["metadata"]["name"], "node04");
        assert_eq!(args["Pod"]["metadata"]["labels"]["telemetry-policy"], "p");
    }
}
