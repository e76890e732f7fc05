//! Wire types of the custom and external metrics APIs, field for field as the
//! Go types in `k8s.io/metrics/pkg/apis/{custom,external}_metrics` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1` serialize them:
//!
//! - custom.metrics v1beta2 `MetricValue`: `metric{name, selector}` where
//!   `selector` is a pointer without `omitempty` (so `null`), and
//!   `windowSeconds,omitempty`;
//! - custom.metrics v1beta1 `MetricValue`: `metricName`, `window,omitempty`,
//!   `selector` (again `null` when absent);
//! - external.metrics v1beta1 `ExternalMetricValue`: `metricName`,
//!   `metricLabels`, `timestamp`, `window,omitempty`, `value`;
//! - `metadata` is always present (`{}`): Go's `omitempty` never omits a struct.
//!
//! Timestamps are `metav1.Time`: RFC 3339 in UTC with whole seconds.
//! Values are Quantity strings at milli precision (the HPA reads `MilliValue()`).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::selector::LabelSelector;

pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";

/// A custom.metrics version; v1beta2 is preferred (the HPA's client picks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CustomVersion {
    V1beta1,
    V1beta2,
}

impl CustomVersion {
    pub const ALL: [CustomVersion; 2] = [CustomVersion::V1beta2, CustomVersion::V1beta1];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomVersion::V1beta1 => "v1beta1",
            CustomVersion::V1beta2 => "v1beta2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1beta1" => Some(CustomVersion::V1beta1),
            "v1beta2" => Some(CustomVersion::V1beta2),
            _ => None,
        }
    }

    pub fn group_version(self) -> &'static str {
        match self {
            CustomVersion::V1beta1 => "custom.metrics.k8s.io/v1beta1",
            CustomVersion::V1beta2 => "custom.metrics.k8s.io/v1beta2",
        }
    }
}

pub const EXTERNAL_VERSION: &str = "v1beta1";
pub const EXTERNAL_GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";

/// `metav1.Time` on the wire.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A value as the canonical Quantity string at milli precision: `250m`,
/// `2`, `1073741824`. Non-finite values have no Quantity form; callers never
/// produce them (the provider turns them into errors), and `0` is written if
/// one slips through rather than an unparsable string.
pub fn format_quantity(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_string();
    }
    let milli = (value * 1000.0).round();
    let milli = if milli >= i64::MAX as f64 {
        i64::MAX
    } else if milli <= i64::MIN as f64 {
        i64::MIN
    } else {
        milli as i64
    };
    headroom_common::quantity::format_milli(milli)
}

/// Window in whole seconds, at least 1 when present (a zero window would read
/// as "instantaneous").
pub fn window_seconds(window: Option<Duration>) -> Option<i64> {
    window.map(|w| (w.as_secs_f64().round() as i64).max(1))
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListMeta {}

/// `core/v1.ObjectReference` with the fields these APIs use (the others are
/// `omitempty` and empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub api_version: String,
}

/// One value before it is put into a version's wire shape.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricItem {
    pub described_object: ObjectReference,
    pub metric: String,
    pub selector: Option<LabelSelector>,
    pub timestamp: Timestamp,
    pub window: Option<Duration>,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricIdentifier {
    pub name: String,
    /// `*metav1.LabelSelector` without omitempty: `null` when absent.
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1beta2 {
    pub described_object: ObjectReference,
    pub metric: MetricIdentifier,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1beta1 {
    pub described_object: ObjectReference,
    pub metric_name: String,
    pub timestamp: String,
    #[serde(rename = "window", skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: String,
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueList<T> {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: ListMeta,
    pub items: Vec<T>,
}

/// Either version's list, serialized as that version.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CustomMetricList {
    V1beta1(MetricValueList<MetricValueV1beta1>),
    V1beta2(MetricValueList<MetricValueV1beta2>),
}

impl CustomMetricList {
    pub fn new(version: CustomVersion, items: Vec<MetricItem>) -> Self {
        match version {
            CustomVersion::V1beta2 => CustomMetricList::V1beta2(MetricValueList {
                kind: "MetricValueList",
                api_version: version.group_version(),
                metadata: ListMeta {},
                items: items
                    .into_iter()
                    .map(|i| MetricValueV1beta2 {
                        described_object: i.described_object,
                        metric: MetricIdentifier {
                            name: i.metric,
                            selector: i.selector,
                        },
                        timestamp: format_time(i.timestamp),
                        window_seconds: window_seconds(i.window),
                        value: format_quantity(i.value),
                    })
                    .collect(),
            }),
            CustomVersion::V1beta1 => CustomMetricList::V1beta1(MetricValueList {
                kind: "MetricValueList",
                api_version: version.group_version(),
                metadata: ListMeta {},
                items: items
                    .into_iter()
                    .map(|i| MetricValueV1beta1 {
                        described_object: i.described_object,
                        metric_name: i.metric,
                        timestamp: format_time(i.timestamp),
                        window_seconds: window_seconds(i.window),
                        value: format_quantity(i.value),
                        selector: i.selector,
                    })
                    .collect(),
            }),
        }
    }
}

/// One external series before it is put on the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalItem {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub timestamp: Timestamp,
    pub window: Option<Duration>,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    pub metric_name: String,
    pub metric_labels: BTreeMap<String, String>,
    pub timestamp: String,
    #[serde(rename = "window", skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: ListMeta,
    pub items: Vec<ExternalMetricValue>,
}

impl ExternalMetricValueList {
    pub fn new(items: Vec<ExternalItem>) -> Self {
        Self {
            kind: "ExternalMetricValueList",
            api_version: EXTERNAL_GROUP_VERSION,
            metadata: ListMeta {},
            items: items
                .into_iter()
                .map(|i| ExternalMetricValue {
                    metric_name: i.metric,
                    metric_labels: i.labels,
                    timestamp: format_time(i.timestamp),
                    window_seconds: window_seconds(i.window),
                    value: format_quantity(i.value),
                })
                .collect(),
        }
    }
}

/// `metav1.APIResource` (fields that are `omitempty` and unused are left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    pub name: String,
    /// Not omitempty in Go: always present, empty here.
    pub singular_name: String,
    pub namespaced: bool,
    pub kind: &'static str,
    pub verbs: Vec<&'static str>,
}

/// `metav1.APIResourceList`, the body of `GET /apis/<group>/<version>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub group_version: String,
    pub resources: Vec<ApiResource>,
}

impl ApiResourceList {
    pub fn new(group_version: &str, resources: Vec<ApiResource>) -> Self {
        Self {
            kind: "APIResourceList",
            api_version: "v1",
            group_version: group_version.to_string(),
            resources,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupVersionForDiscovery {
    pub group_version: String,
    pub version: String,
}

/// `metav1.APIGroup` (without `kind`/`apiVersion` inside an `APIGroupList`,
/// where Go leaves the inline TypeMeta empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<&'static str>,
    pub name: String,
    pub versions: Vec<GroupVersionForDiscovery>,
    pub preferred_version: GroupVersionForDiscovery,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub groups: Vec<ApiGroup>,
}

fn gv(group: &str, version: &str) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery {
        group_version: format!("{group}/{version}"),
        version: version.to_string(),
    }
}

/// The two groups this server serves, preferred version first.
pub fn api_groups() -> Vec<ApiGroup> {
    vec![
        ApiGroup {
            kind: None,
            api_version: None,
            name: CUSTOM_GROUP.to_string(),
            versions: CustomVersion::ALL
                .iter()
                .map(|v| gv(CUSTOM_GROUP, v.as_str()))
                .collect(),
            preferred_version: gv(CUSTOM_GROUP, CustomVersion::V1beta2.as_str()),
        },
        ApiGroup {
            kind: None,
            api_version: None,
            name: EXTERNAL_GROUP.to_string(),
            versions: vec![gv(EXTERNAL_GROUP, EXTERNAL_VERSION)],
            preferred_version: gv(EXTERNAL_GROUP, EXTERNAL_VERSION),
        },
    ]
}

pub fn api_group_list() -> ApiGroupList {
    ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups: api_groups(),
    }
}

/// `GET /apis/<group>`: the group document with its own TypeMeta.
pub fn api_group(name: &str) -> Option<ApiGroup> {
    api_groups()
        .into_iter()
        .find(|g| g.name == name)
        .map(|g| ApiGroup {
            kind: Some("APIGroup"),
            api_version: Some("v1"),
            ..g
        })
}

/// A minimal Swagger 2.0 document for `/openapi/v2`: the aggregator merges
/// it into the cluster's spec (the metric types have no schema to add).
pub fn openapi_v2() -> serde_json::Value {
    serde_json::json!({
        "swagger": "2.0",
        "info": {"title": "headroom-metrics-adapter", "version": env!("CARGO_PKG_VERSION")},
        "paths": {},
        "definitions": {}
    })
}

/// `metav1.StatusReason` values used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Reason {
    NotFound,
    BadRequest,
    Unauthorized,
    Forbidden,
    MethodNotAllowed,
    NotAcceptable,
    ServiceUnavailable,
    InternalError,
}

impl Reason {
    pub fn code(self) -> u16 {
        match self {
            Reason::NotFound => 404,
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::ServiceUnavailable => 503,
            Reason::InternalError => 500,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `metav1.Status` for failures, as the Go apiserver writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: ListMeta,
    pub status: &'static str,
    pub message: String,
    pub reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    pub code: u16,
}

impl Status {
    pub fn failure(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: ListMeta {},
            status: "Failure",
            message: message.into(),
            reason,
            details: None,
            code: reason.code(),
        }
    }

    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(details);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ts() -> Timestamp {
        "2025-01-01T00:00:00.731Z".parse().unwrap()
    }

    fn pod_ref() -> ObjectReference {
        ObjectReference {
            kind: "Pod".into(),
            namespace: Some("jhub".into()),
            name: "jupyter-alice".into(),
            api_version: "v1".into(),
        }
    }

    fn item(window: Option<Duration>, selector: Option<LabelSelector>) -> MetricItem {
        MetricItem {
            described_object: pod_ref(),
            metric: "cpu_headroom".into(),
            selector,
            timestamp: ts(),
            window,
            value: 0.25,
        }
    }

    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn v1beta2_matches_upstream_example() {
        // The example in the API reference (selector null, windowSeconds set).
        let upstream: Value = serde_json::from_str(
            r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[
 {"describedObject":{"kind":"Pod","namespace":"jhub","name":"jupyter-alice","apiVersion":"v1"},
  "metric":{"name":"cpu_headroom","selector":null},"timestamp":"2025-01-01T00:00:00Z","windowSeconds":60,"value":"250m"}]}"#,
        )
        .unwrap();
        let ours = CustomMetricList::new(
            CustomVersion::V1beta2,
            vec![item(Some(Duration::from_secs(60)), None)],
        );
        assert_eq!(to_json(&ours), upstream);
        // Field order as Go writes it.
        let text = serde_json::to_string(&ours).unwrap();
        assert!(text.starts_with(r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[{"describedObject":{"kind":"Pod","namespace":"jhub","name":"jupyter-alice","apiVersion":"v1"},"metric":{"name":"cpu_headroom","selector":null},"timestamp":"2025-01-01T00:00:00Z","windowSeconds":60,"value":"250m"}"#), "{text}");
    }

    #[test]
    fn v1beta2_omits_window_and_keeps_selector() {
        let selector = crate::selector::parse("user=alice")
            .unwrap()
            .to_label_selector();
        let ours = CustomMetricList::new(CustomVersion::V1beta2, vec![item(None, selector)]);
        let v = to_json(&ours);
        let i = &v["items"][0];
        assert!(i.get("windowSeconds").is_none());
        assert_eq!(
            i["metric"],
            json!({"name": "cpu_headroom", "selector": {"matchLabels": {"user": "alice"}}})
        );
    }

    #[test]
    fn v1beta1_shape() {
        let upstream = json!({
            "kind": "MetricValueList",
            "apiVersion": "custom.metrics.k8s.io/v1beta1",
            "metadata": {},
            "items": [{
                "describedObject": {"kind": "Pod", "namespace": "jhub", "name": "jupyter-alice", "apiVersion": "v1"},
                "metricName": "cpu_headroom",
                "timestamp": "2025-01-01T00:00:00Z",
                "window": 60,
                "value": "250m",
                "selector": null
            }]
        });
        let ours = CustomMetricList::new(
            CustomVersion::V1beta1,
            vec![item(Some(Duration::from_secs(60)), None)],
        );
        assert_eq!(to_json(&ours), upstream);
        let no_window = CustomMetricList::new(CustomVersion::V1beta1, vec![item(None, None)]);
        assert!(to_json(&no_window)["items"][0].get("window").is_none());
    }

    #[test]
    fn external_shape() {
        let upstream = json!({
            "kind": "ExternalMetricValueList",
            "apiVersion": "external.metrics.k8s.io/v1beta1",
            "metadata": {},
            "items": [{
                "metricName": "user_cpu_usage_cores",
                "metricLabels": {"user": "alice"},
                "timestamp": "2025-01-01T00:00:00Z",
                "window": 30,
                "value": "1500m"
            }, {
                "metricName": "jupyterhub_running_servers",
                "metricLabels": {},
                "timestamp": "2025-01-01T00:00:00Z",
                "value": "3"
            }]
        });
        let ours = ExternalMetricValueList::new(vec![
            ExternalItem {
                metric: "user_cpu_usage_cores".into(),
                labels: [("user".to_string(), "alice".to_string())].into(),
                timestamp: ts(),
                window: Some(Duration::from_millis(29_600)),
                value: 1.5,
            },
            ExternalItem {
                metric: "jupyterhub_running_servers".into(),
                labels: BTreeMap::new(),
                timestamp: ts(),
                window: None,
                value: 3.0,
            },
        ]);
        assert_eq!(to_json(&ours), upstream);
    }

    #[test]
    fn empty_lists_have_items_array() {
        let v = to_json(&CustomMetricList::new(CustomVersion::V1beta2, vec![]));
        assert_eq!(v["items"], json!([]));
        let v = to_json(&ExternalMetricValueList::new(vec![]));
        assert_eq!(v["items"], json!([]));
    }

    #[test]
    fn discovery_documents() {
        let list = ApiResourceList::new(
            "custom.metrics.k8s.io/v1beta2",
            vec![ApiResource {
                name: "pods/notebook_cpu_usage_cores".into(),
                singular_name: String::new(),
                namespaced: true,
                kind: "MetricValueList",
                verbs: vec!["get"],
            }],
        );
        assert_eq!(
            to_json(&list),
            json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": "custom.metrics.k8s.io/v1beta2",
                "resources": [{
                    "name": "pods/notebook_cpu_usage_cores",
                    "singularName": "",
                    "namespaced": true,
                    "kind": "MetricValueList",
                    "verbs": ["get"]
                }]
            })
        );
        assert_eq!(
            to_json(&api_group("custom.metrics.k8s.io").unwrap()),
            json!({
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": "custom.metrics.k8s.io",
                "versions": [
                    {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"},
                    {"groupVersion": "custom.metrics.k8s.io/v1beta1", "version": "v1beta1"}
                ],
                "preferredVersion": {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"}
            })
        );
        let groups = to_json(&api_group_list());
        assert_eq!(groups["kind"], "APIGroupList");
        assert_eq!(groups["groups"][1]["name"], "external.metrics.k8s.io");
        assert!(groups["groups"][0].get("kind").is_none());
        assert!(api_group("metrics.k8s.io").is_none());
    }

    #[test]
    fn status_like_go() {
        let s = Status::failure(
            Reason::NotFound,
            "the server could not find the metric nope for pods",
        )
        .with_details(StatusDetails {
            name: None,
            group: Some("custom.metrics.k8s.io".into()),
            kind: Some("pods".into()),
        });
        assert_eq!(
            to_json(&s),
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "the server could not find the metric nope for pods",
                "reason": "NotFound",
                "details": {"group": "custom.metrics.k8s.io", "kind": "pods"},
                "code": 404
            })
        );
        let s = Status::failure(Reason::Unauthorized, "Unauthorized");
        assert_eq!(
            to_json(&s),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(format_quantity(0.25), "250m");
        assert_eq!(format_quantity(0.0), "0");
        assert_eq!(format_quantity(2.0), "2");
        assert_eq!(format_quantity(1_073_741_824.0), "1073741824");
        assert_eq!(format_quantity(0.0004), "0");
        assert_eq!(format_quantity(0.0006), "1m");
        assert_eq!(format_quantity(f64::NAN), "0");
    }

    #[test]
    fn time_is_whole_seconds_utc() {
        let t: Timestamp = "2025-06-01T12:34:56.999+02:00".parse().unwrap();
        assert_eq!(format_time(t), "2025-06-01T10:34:56Z");
    }
}
