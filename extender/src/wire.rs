//! Scheduler-extender wire types, exactly as kube-scheduler encodes them.
//!
//! Upstream: `k8s.io/kube-scheduler/extender/v1/types.go`. Those Go structs
//! carry no `json:` tags, so every key is the capitalised Go field name and
//! nothing is omitted when empty (`"Nodes": null`). Nested Pod and Node objects
//! use ordinary Kubernetes JSON.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::{Deserialize, Deserializer, Serialize};

/// Lowest score an extender may return (`MinExtenderPriority`).
pub const MIN_EXTENDER_PRIORITY: i64 = 0;
/// Highest score an extender may return (`MaxExtenderPriority`).
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// Body of `filter` and `prioritize` (Go `ExtenderArgs`).
///
/// With `nodeCacheCapable: true` only `NodeNames` is set, otherwise only
/// `Nodes`; the other one is `null`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExtenderArgs {
    #[serde(rename = "Pod")]
    pub pod: Pod,
    #[serde(rename = "Nodes", default)]
    pub nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", default)]
    pub node_names: Option<Vec<String>>,
}

/// Go `v1.NodeList` as `encoding/json` writes it: `apiVersion`/`kind` are
/// `omitempty` and empty in the scheduler's list, `metadata` is always present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ListMeta,
    /// Go encodes a nil slice as `null`; treat it as empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<Node>,
}

/// Failure reasons per node name (Go `FailedNodesMap`).
pub type FailedNodesMap = BTreeMap<String, String>;

/// Reply of `filter` (Go `ExtenderFilterResult`).
///
/// We always write both maps (possibly `{}`) and `Error` as a string (possibly
/// `""`); Go writes nil maps as `null`, which we accept when reading.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtenderFilterResult {
    #[serde(rename = "Nodes", default)]
    pub nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", default)]
    pub node_names: Option<Vec<String>>,
    #[serde(rename = "FailedNodes", default, deserialize_with = "null_as_default")]
    pub failed_nodes: FailedNodesMap,
    #[serde(
        rename = "FailedAndUnresolvableNodes",
        default,
        deserialize_with = "null_as_default"
    )]
    pub failed_and_unresolvable_nodes: FailedNodesMap,
    #[serde(rename = "Error", default, deserialize_with = "null_as_default")]
    pub error: String,
}

/// One entry of the `prioritize` reply (Go `HostPriority`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPriority {
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Score")]
    pub score: i64,
}

/// Reply of `prioritize`: a bare JSON array (Go `HostPriorityList`).
pub type HostPriorityList = Vec<HostPriority>;

impl ExtenderArgs {
    /// Names of the candidate nodes in the order given, from whichever of
    /// `NodeNames`/`Nodes` the scheduler sent (`NodeNames` wins when both are).
    /// `None` when neither is set.
    pub fn candidate_names(&self) -> Option<Vec<String>> {
        if let Some(names) = &self.node_names {
            return Some(names.clone());
        }
        self.nodes.as_ref().map(|list| {
            list.items
                .iter()
                .map(|node| node.metadata.name.clone().unwrap_or_default())
                .collect()
        })
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
