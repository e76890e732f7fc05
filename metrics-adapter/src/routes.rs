//! Request paths and query strings → [`Route`]. Pure.
//!
//! Paths are split on `/` and each segment percent-decoded, so client-go's
//! `%2A` arrives as the `*` wildcard. Custom metrics paths (after
//! `/apis/custom.metrics.k8s.io/<version>`):
//!
//! | path | meaning |
//! |---|---|
//! | `namespaces/{ns}/{resource}/*/{metric}` | every object of a type (`?labelSelector`) |
//! | `namespaces/{ns}/{resource}/{name}/{metric}` | one object |
//! | `namespaces/{ns}/metrics/{metric}` | the namespace itself |
//! | `{resource}/{name}/{metric}` | root-scoped objects |
//!
//! External: `/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}`.

use crate::api::{CUSTOM_GROUP, CustomVersion, EXTERNAL_GROUP, EXTERNAL_VERSION};
use crate::selector::{self, Selector};

/// Which object(s) a custom metrics request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectName {
    All,
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomTarget {
    /// `namespaces/{ns}/{resource}/{name|*}/{metric}`
    Namespaced {
        namespace: String,
        resource: String,
        name: ObjectName,
    },
    /// `namespaces/{ns}/metrics/{metric}`
    Namespace { namespace: String },
    /// `{resource}/{name|*}/{metric}` (nodes and other cluster-scoped kinds)
    Root { resource: String, name: ObjectName },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomRequest {
    pub version: CustomVersion,
    pub target: CustomTarget,
    pub metric: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRequest {
    pub namespace: String,
    pub metric: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthz,
    Readyz,
    Livez,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Health(Health),
    Metrics,
    /// `/openapi/v2` and `/openapi/v3`: minimal documents. A 404 makes the
    /// aggregator's OpenAPI controllers log an error and requeue forever
    /// (kubernetes#90434); empty documents end that.
    OpenApiV2,
    OpenApiV3,
    /// Any other `/openapi/...` path.
    OpenApiOther,
    /// `/apis`
    ApiGroupList,
    /// `/apis/<group>`
    ApiGroup(&'static str),
    /// `/apis/custom.metrics.k8s.io/<version>`
    CustomDiscovery(CustomVersion),
    /// `/apis/external.metrics.k8s.io/v1beta1`
    ExternalDiscovery,
    Custom(CustomRequest),
    External(ExternalRequest),
    NotFound,
}

impl Route {
    /// Paths anyone may read, without authentication.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Route::Health(_))
    }

    /// Discovery documents: served to every authenticated user without a
    /// SubjectAccessReview (RBAC's `system:discovery` grants them to all).
    pub fn is_discovery(&self) -> bool {
        matches!(
            self,
            Route::ApiGroupList
                | Route::ApiGroup(_)
                | Route::CustomDiscovery(_)
                | Route::ExternalDiscovery
                | Route::OpenApiV2
                | Route::OpenApiV3
                | Route::OpenApiOther
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid percent-encoding in the request path")]
    PathEncoding,
    #[error("invalid metric name {0:?}: must not be empty, '.', '..' or contain '/', '%' or '?'")]
    MetricName(String),
    #[error("invalid {param}: {source}")]
    Selector {
        param: &'static str,
        #[source]
        source: selector::SelectorError,
    },
    #[error("invalid percent-encoding in query parameter {0}")]
    QueryEncoding(String),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (and `+` as space when `plus_is_space`, for query
/// strings). `None` on a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex)?;
                let lo = bytes.get(i + 2).copied().and_then(hex)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn valid_metric_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains(['/', '%', '?']))
}

fn object_name(segment: String) -> ObjectName {
    if segment == "*" {
        ObjectName::All
    } else {
        ObjectName::Named(segment)
    }
}

/// Maps a raw (still percent-encoded) path to a route.
pub fn parse_path(raw_path: &str) -> Result<Route, RouteError> {
    let trimmed = raw_path.trim_end_matches('/');
    let segments: Vec<String> = trimmed
        .split('/')
        .skip(1)
        .map(|s| percent_decode(s, false).ok_or(RouteError::PathEncoding))
        .collect::<Result<_, _>>()?;
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match seg.as_slice() {
        ["healthz", ..] => Route::Health(Health::Healthz),
        ["readyz", ..] => Route::Health(Health::Readyz),
        ["livez", ..] => Route::Health(Health::Livez),
        ["metrics"] => Route::Metrics,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3,
        ["openapi", ..] => Route::OpenApiOther,
        ["apis"] => Route::ApiGroupList,
        ["apis", CUSTOM_GROUP] => Route::ApiGroup(CUSTOM_GROUP),
        ["apis", EXTERNAL_GROUP] => Route::ApiGroup(EXTERNAL_GROUP),
        ["apis", CUSTOM_GROUP, version, rest @ ..] => match CustomVersion::parse(version) {
            None => Route::NotFound,
            Some(version) => custom(version, rest)?,
        },
        ["apis", EXTERNAL_GROUP, EXTERNAL_VERSION] => Route::ExternalDiscovery,
        [
            "apis",
            EXTERNAL_GROUP,
            EXTERNAL_VERSION,
            "namespaces",
            ns,
            metric,
        ] => {
            if !valid_metric_name(metric) {
                return Err(RouteError::MetricName(metric.to_string()));
            }
            Route::External(ExternalRequest {
                namespace: ns.to_string(),
                metric: metric.to_string(),
            })
        }
        _ => Route::NotFound,
    };
    Ok(route)
}

fn custom(version: CustomVersion, rest: &[&str]) -> Result<Route, RouteError> {
    let (target, metric) = match rest {
        [] => return Ok(Route::CustomDiscovery(version)),
        ["namespaces", ns, "metrics", metric] => (
            CustomTarget::Namespace {
                namespace: ns.to_string(),
            },
            metric,
        ),
        ["namespaces", ns, resource, name, metric] => (
            CustomTarget::Namespaced {
                namespace: ns.to_string(),
                resource: resource.to_string(),
                name: object_name(name.to_string()),
            },
            metric,
        ),
        [resource, name, metric] if *resource != "namespaces" => (
            CustomTarget::Root {
                resource: resource.to_string(),
                name: object_name(name.to_string()),
            },
            metric,
        ),
        _ => return Ok(Route::NotFound),
    };
    if !valid_metric_name(metric) {
        return Err(RouteError::MetricName(metric.to_string()));
    }
    Ok(Route::Custom(CustomRequest {
        version,
        target,
        metric: metric.to_string(),
    }))
}

/// The selectors of a metrics request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub label_selector: Selector,
    pub metric_label_selector: Selector,
}

/// Reads `labelSelector` and `metricLabelSelector` (first occurrence wins,
/// other parameters are ignored); a bad selector is an error naming the
/// parameter.
pub fn parse_query(query: Option<&str>) -> Result<Selectors, RouteError> {
    let mut label = None;
    let mut metric_label = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key =
            percent_decode(key, true).ok_or_else(|| RouteError::QueryEncoding(key.to_string()))?;
        let slot = match key.as_str() {
            "labelSelector" => &mut label,
            "metricLabelSelector" => &mut metric_label,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(
                percent_decode(value, true)
                    .ok_or_else(|| RouteError::QueryEncoding(key.clone()))?,
            );
        }
    }
    let parse = |param: &'static str, value: Option<String>| -> Result<Selector, RouteError> {
        selector::parse(value.as_deref().unwrap_or(""))
            .map_err(|source| RouteError::Selector { param, source })
    };
    Ok(Selectors {
        label_selector: parse("labelSelector", label)?,
        metric_label_selector: parse("metricLabelSelector", metric_label)?,
    })
}

/// Kind and apiVersion for the `describedObject` of a GroupResource string,
/// for the namespaced object kinds the namespace-level metrics can describe.
pub fn object_kind(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "pods" => ("Pod", "v1"),
        "services" => ("Service", "v1"),
        "statefulsets.apps" => ("StatefulSet", "apps/v1"),
        "deployments.apps" => ("Deployment", "apps/v1"),
        "replicasets.apps" => ("ReplicaSet", "apps/v1"),
        _ => return None,
    })
}

/// Resources (besides pods and the namespace) on which the namespace-level
/// metrics are served, so an HPA can name e.g. its own StatefulSet.
pub const NAMESPACE_METRIC_OBJECTS: [&str; 4] = [
    "services",
    "statefulsets.apps",
    "deployments.apps",
    "replicasets.apps",
];

/// Whether the `Accept` header allows a plain JSON `APIGroupList` for
/// `GET /apis`. The aggregator asks only for aggregated discovery
/// (`application/json;g=apidiscovery.k8s.io;v=v2…;as=APIGroupDiscoveryList`)
/// and falls back to per-version documents on 406, which is what this server
/// wants; clients that also accept plain JSON get the legacy list.
pub fn accepts_legacy_discovery(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let has_group_param = parts.any(|p| {
            let key = p
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            key == "g" || key == "as"
        });
        !has_group_param
            && matches!(
                media.as_str(),
                "application/json" | "application/*" | "*/*" | ""
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Operator;

    fn custom_route(path: &str) -> CustomRequest {
        match parse_path(path).unwrap() {
            Route::Custom(c) => c,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn wildcard_plain_and_percent_encoded() {
        for path in [
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/*/notebook_cpu_usage_cores",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/notebook_cpu_usage_cores",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2a/notebook_cpu_usage_cores",
        ] {
            let r = custom_route(path);
            assert_eq!(r.version, CustomVersion::V1beta2);
            assert_eq!(r.metric, "notebook_cpu_usage_cores");
            assert_eq!(
                r.target,
                CustomTarget::Namespaced {
                    namespace: "jhub".into(),
                    resource: "pods".into(),
                    name: ObjectName::All
                },
                "{path}"
            );
        }
    }

    #[test]
    fn object_namespace_and_root_targets() {
        let r = custom_route(
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/jhub/pods/jupyter-alice/notebook_idle_seconds",
        );
        assert_eq!(r.version, CustomVersion::V1beta1);
        assert_eq!(
            r.target,
            CustomTarget::Namespaced {
                namespace: "jhub".into(),
                resource: "pods".into(),
                name: ObjectName::Named("jupyter-alice".into())
            }
        );
        let r = custom_route(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/metrics/jupyterhub_active_users",
        );
        assert_eq!(
            r.target,
            CustomTarget::Namespace {
                namespace: "jhub".into()
            }
        );
        let r = custom_route("/apis/custom.metrics.k8s.io/v1beta2/nodes/%2A/x");
        assert_eq!(
            r.target,
            CustomTarget::Root {
                resource: "nodes".into(),
                name: ObjectName::All
            }
        );
        let r = custom_route(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/statefulsets.apps/user-placeholder/jupyterhub_active_users",
        );
        assert!(
            matches!(r.target, CustomTarget::Namespaced { ref resource, .. } if resource == "statefulsets.apps")
        );
    }

    #[test]
    fn discovery_and_other_paths() {
        assert_eq!(parse_path("/apis").unwrap(), Route::ApiGroupList);
        assert_eq!(parse_path("/apis/").unwrap(), Route::ApiGroupList);
        assert_eq!(
            parse_path("/apis/custom.metrics.k8s.io").unwrap(),
            Route::ApiGroup(CUSTOM_GROUP)
        );
        assert_eq!(
            parse_path("/apis/external.metrics.k8s.io").unwrap(),
            Route::ApiGroup(EXTERNAL_GROUP)
        );
        assert_eq!(
            parse_path("/apis/custom.metrics.k8s.io/v1beta2").unwrap(),
            Route::CustomDiscovery(CustomVersion::V1beta2)
        );
        assert_eq!(
            parse_path("/apis/custom.metrics.k8s.io/v1beta1/").unwrap(),
            Route::CustomDiscovery(CustomVersion::V1beta1)
        );
        assert_eq!(
            parse_path("/apis/external.metrics.k8s.io/v1beta1").unwrap(),
            Route::ExternalDiscovery
        );
        assert_eq!(
            parse_path("/apis/custom.metrics.k8s.io/v2").unwrap(),
            Route::NotFound
        );
        assert_eq!(
            parse_path("/apis/metrics.k8s.io/v1beta1").unwrap(),
            Route::NotFound
        );
        assert_eq!(
            parse_path("/healthz").unwrap(),
            Route::Health(Health::Healthz)
        );
        assert_eq!(
            parse_path("/readyz").unwrap(),
            Route::Health(Health::Readyz)
        );
        assert_eq!(
            parse_path("/livez/ping").unwrap(),
            Route::Health(Health::Livez)
        );
        assert_eq!(parse_path("/metrics").unwrap(), Route::Metrics);
        assert_eq!(parse_path("/openapi/v2").unwrap(), Route::OpenApiV2);
        assert_eq!(parse_path("/openapi/v3").unwrap(), Route::OpenApiV3);
        assert_eq!(
            parse_path("/openapi/v3/apis/x/v1").unwrap(),
            Route::OpenApiOther
        );
        assert_eq!(parse_path("/").unwrap(), Route::NotFound);
        assert_eq!(
            parse_path("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub").unwrap(),
            Route::NotFound
        );
    }

    #[test]
    fn external_paths() {
        assert_eq!(
            parse_path(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/jhub/user_cpu_usage_cores"
            )
            .unwrap(),
            Route::External(ExternalRequest {
                namespace: "jhub".into(),
                metric: "user_cpu_usage_cores".into()
            })
        );
    }

    #[test]
    fn bad_paths() {
        assert_eq!(
            parse_path("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/*/%ZZ")
                .unwrap_err(),
            RouteError::PathEncoding
        );
        assert!(matches!(
            parse_path("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/*/.."),
            Err(RouteError::MetricName(_))
        ));
        assert!(matches!(
            parse_path("/apis/external.metrics.k8s.io/v1beta1/namespaces/jhub/a%2Fb"),
            Err(RouteError::MetricName(_))
        ));
        assert!(matches!(
            parse_path("/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/*/a%25b"),
            Err(RouteError::MetricName(_))
        ));
    }

    #[test]
    fn query_selectors() {
        let q = parse_query(Some(
            "labelSelector=app%3Dexpress%2Ctier+in+%28a%2Cb%29&metricLabelSelector=user%3Dalice&pretty=true",
        ))
        .unwrap();
        assert_eq!(q.label_selector.to_string(), "app=express,tier in (a,b)");
        assert_eq!(
            q.metric_label_selector.requirements[0].operator,
            Operator::Equals
        );
        assert_eq!(q.metric_label_selector.pinned_value("user"), Some("alice"));
        let none = parse_query(None).unwrap();
        assert!(none.label_selector.is_empty() && none.metric_label_selector.is_empty());
        let first_wins = parse_query(Some("labelSelector=a%3D1&labelSelector=b%3D2")).unwrap();
        assert_eq!(first_wins.label_selector.to_string(), "a=1");
        let raw_at = parse_query(Some("labelSelector=user%3Duser%40example.com")).unwrap();
        assert_eq!(
            raw_at.label_selector.pinned_value("user"),
            Some("user@example.com")
        );
    }

    #[test]
    fn bad_selector_names_the_parameter() {
        let err = parse_query(Some("labelSelector=app+in+%28")).unwrap_err();
        assert!(matches!(
            err,
            RouteError::Selector {
                param: "labelSelector",
                ..
            }
        ));
        assert!(
            err.to_string().starts_with("invalid labelSelector:"),
            "{err}"
        );
        let err = parse_query(Some("metricLabelSelector=%3Dx")).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid metricLabelSelector:"),
            "{err}"
        );
        let err = parse_query(Some("labelSelector=%ZZ")).unwrap_err();
        assert_eq!(err, RouteError::QueryEncoding("labelSelector".into()));
    }

    #[test]
    fn accept_negotiation_for_apis() {
        assert!(accepts_legacy_discovery(None));
        assert!(accepts_legacy_discovery(Some("application/json")));
        assert!(accepts_legacy_discovery(Some("application/json, */*")));
        assert!(accepts_legacy_discovery(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!accepts_legacy_discovery(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        )));
        assert!(!accepts_legacy_discovery(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        )));
        assert!(!accepts_legacy_discovery(Some(
            "application/vnd.kubernetes.protobuf"
        )));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%2A", false).as_deref(), Some("*"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%E2%9C%93", false).as_deref(), Some("✓"));
        assert_eq!(percent_decode("%FF", false), None);
        assert_eq!(percent_decode("%2", false), None);
    }
}
