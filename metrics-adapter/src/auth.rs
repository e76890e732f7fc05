//! Front-proxy authentication and SubjectAccessReview authorization, as an
//! extension API server built on `k8s.io/apiserver` does it.
//!
//! Authentication: the aggregator connects with its proxy client
//! certificate. The TLS layer verifies it against the
//! `requestheader-client-ca-file` of the ConfigMap
//! `kube-system/extension-apiserver-authentication` (the only CA this server
//! trusts for client certificates, so a CN in [`ConnInfo`] means "chained to
//! the requestheader CA"); here its CN must be in `requestheader-allowed-names`
//! (empty list: any CN). Only then are the user headers (`X-Remote-User`,
//! `X-Remote-Group`, `X-Remote-Extra-*`, `X-Remote-Uid`, or whatever the
//! ConfigMap names) trusted. Anything else is 401, and the headers of an
//! unauthenticated request are never read. Bearer tokens and direct client
//! certificates (`client-ca-file`) are not accepted: only the aggregator
//! talks to this server.
//!
//! Authorization: members of an always-allowed group (`system:masters` by
//! default, as the Go library) pass; discovery documents pass for every
//! authenticated user (RBAC's `system:discovery` grants them to all);
//! everything else is a SubjectAccessReview with the attributes Go's
//! `RequestInfoFactory` would derive from the path, cached (allow and deny)
//! for a short TTL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use headroom_common::server::ConnInfo;
use http::HeaderMap;
use rustls::pki_types::CertificateDer;

use crate::api::{CUSTOM_GROUP, EXTERNAL_GROUP, EXTERNAL_VERSION};
use crate::routes::{CustomTarget, ObjectName, Route};

/// The requestheader part of `extension-apiserver-authentication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    pub client_ca: Vec<CertificateDer<'static>>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error(
        "ConfigMap has no {0} (is the API server running with --requestheader-client-ca-file?)"
    )]
    Missing(&'static str),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn json_list(
    data: &BTreeMap<String, String>,
    key: &'static str,
    default: &[&str],
) -> Result<Vec<String>, AuthConfigError> {
    match data.get(key) {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(text) if text.trim().is_empty() => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| AuthConfigError::Invalid {
            key,
            message: format!("expected a JSON array of strings: {e}"),
        }),
    }
}

impl RequestHeaderConfig {
    /// From the ConfigMap's `data`. Header lists missing from the ConfigMap
    /// get the API server's usual values.
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self, AuthConfigError> {
        let pem = data
            .get("requestheader-client-ca-file")
            .filter(|p| !p.trim().is_empty())
            .ok_or(AuthConfigError::Missing("requestheader-client-ca-file"))?;
        let client_ca =
            headroom_common::tls::parse_pem_certs(pem.as_bytes(), "requestheader-client-ca-file")
                .map_err(|e| AuthConfigError::Invalid {
                key: "requestheader-client-ca-file",
                message: e.to_string(),
            })?;
        Ok(Self {
            client_ca,
            allowed_names: json_list(data, "requestheader-allowed-names", &[])?,
            username_headers: json_list(
                data,
                "requestheader-username-headers",
                &["X-Remote-User"],
            )?,
            uid_headers: json_list(data, "requestheader-uid-headers", &[])?,
            group_headers: json_list(data, "requestheader-group-headers", &["X-Remote-Group"])?,
            extra_headers_prefix: json_list(
                data,
                "requestheader-extra-headers-prefix",
                &["X-Remote-Extra-"],
            )?,
        })
    }
}

/// An authenticated user, as the aggregator asserted it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("the requestheader configuration has not been loaded yet")]
    NotConfigured,
    #[error("no verified client certificate")]
    NoClientCertificate,
    #[error("client certificate CN {0:?} is not in requestheader-allowed-names")]
    NameNotAllowed(String),
    #[error("no user in the request headers")]
    NoUser,
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

/// Go's `unescapeExtraKey`: the header name part after the prefix is
/// lower-cased and percent-decoded.
fn extra_key(raw: &str) -> String {
    crate::routes::percent_decode(raw, false)
        .unwrap_or_else(|| raw.to_string())
        .to_lowercase()
}

/// Front-proxy authentication of one request.
pub fn authenticate(
    headers: &HeaderMap,
    conn: &ConnInfo,
    cfg: Option<&RequestHeaderConfig>,
) -> Result<UserInfo, AuthnError> {
    let cfg = cfg.ok_or(AuthnError::NotConfigured)?;
    let cn = conn
        .client_cn
        .as_deref()
        .ok_or(AuthnError::NoClientCertificate)?;
    if !cfg.allowed_names.is_empty() && !cfg.allowed_names.iter().any(|n| n == cn) {
        return Err(AuthnError::NameNotAllowed(cn.to_string()));
    }
    let name = cfg
        .username_headers
        .iter()
        .flat_map(|h| header_values(headers, h))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .ok_or(AuthnError::NoUser)?
        .to_string();
    let uid = cfg
        .uid_headers
        .iter()
        .flat_map(|h| header_values(headers, h))
        .find(|v| !v.is_empty())
        .map(str::to_string);
    let groups = cfg
        .group_headers
        .iter()
        .flat_map(|h| header_values(headers, h))
        .map(str::to_string)
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in &cfg.extra_headers_prefix {
        let prefix_lower = prefix.to_ascii_lowercase();
        for (header, value) in headers {
            // HeaderName is always lower case.
            if let Some(rest) = header.as_str().strip_prefix(&prefix_lower)
                && !rest.is_empty()
                && let Ok(v) = value.to_str()
            {
                extra
                    .entry(extra_key(rest))
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    Ok(UserInfo {
        name,
        uid,
        groups,
        extra,
    })
}

/// `authorization.k8s.io/v1` `ResourceAttributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attributes {
    Resource(ResourceAttributes),
    NonResource { path: String, verb: String },
}

impl Attributes {
    /// What a denial message names, like Go's `forbiddenMessage`.
    pub fn describe(&self) -> String {
        match self {
            Attributes::NonResource { path, verb } => format!("cannot {verb} path \"{path}\""),
            Attributes::Resource(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let mut s = format!(
                    "cannot {} resource \"{resource}\" in API group \"{}\"",
                    r.verb, r.group
                );
                if !r.namespace.is_empty() {
                    s.push_str(&format!(" in the namespace \"{}\"", r.namespace));
                }
                s
            }
        }
    }
}

/// The attributes Go's `RequestInfoFactory` derives for a GET on this route:
/// `namespaces/{ns}/{resource}/{name}/{sub}` gives resource/name/subresource;
/// the namespace metric `namespaces/{ns}/metrics/{metric}` is resource
/// `metrics`, name `{metric}`; an external `namespaces/{ns}/{metric}` is a
/// collection, hence verb `list`. Non-resource paths (health, `/metrics`)
/// are non-resource attributes; `None` for routes needing no authorization.
pub fn attributes_for(route: &Route, path: &str) -> Option<Attributes> {
    let custom =
        |version: &str, namespace: String, resource: String, name: String, subresource: String| {
            Attributes::Resource(ResourceAttributes {
                namespace,
                verb: "get".to_string(),
                group: CUSTOM_GROUP.to_string(),
                version: version.to_string(),
                resource,
                subresource,
                name,
            })
        };
    let name_of = |n: &ObjectName| match n {
        ObjectName::All => "*".to_string(),
        ObjectName::Named(s) => s.clone(),
    };
    Some(match route {
        Route::Health(_) => return None,
        Route::Custom(c) => match &c.target {
            CustomTarget::Namespaced {
                namespace,
                resource,
                name,
            } => custom(
                c.version.as_str(),
                namespace.clone(),
                resource.clone(),
                name_of(name),
                c.metric.clone(),
            ),
            CustomTarget::Namespace { namespace } => custom(
                c.version.as_str(),
                namespace.clone(),
                "metrics".to_string(),
                c.metric.clone(),
                String::new(),
            ),
            CustomTarget::Root { resource, name } => custom(
                c.version.as_str(),
                String::new(),
                resource.clone(),
                name_of(name),
                c.metric.clone(),
            ),
        },
        Route::External(e) => Attributes::Resource(ResourceAttributes {
            namespace: e.namespace.clone(),
            verb: "list".to_string(),
            group: EXTERNAL_GROUP.to_string(),
            version: EXTERNAL_VERSION.to_string(),
            resource: e.metric.clone(),
            subresource: String::new(),
            name: String::new(),
        }),
        _ => Attributes::NonResource {
            path: path.to_string(),
            verb: "get".to_string(),
        },
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authorization check failed: {0}")]
pub struct AuthzError(pub String);

/// Decides whether a user may do something. The SAR implementation is
/// [`SarAuthorizer`]; tests inject their own.
pub trait Authorizer: Send + Sync {
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, AuthzError>>;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SarKey {
    user: UserInfo,
    attrs: Attributes,
}

/// `SubjectAccessReview` against the API server, with answers (allow and
/// deny) cached for `ttl` and concurrent identical reviews coalesced.
pub struct SarAuthorizer {
    client: kube::Client,
    timeout: Duration,
    cache: Option<moka::future::Cache<SarKey, Decision>>,
}

impl SarAuthorizer {
    pub fn new(client: kube::Client, ttl: Duration, timeout: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build()
        });
        Self {
            client,
            timeout,
            cache,
        }
    }

    async fn review(&self, key: &SarKey) -> Result<Decision, AuthzError> {
        use k8s_openapi::api::authorization::v1 as authz;
        let spec = authz::SubjectAccessReviewSpec {
            user: Some(key.user.name.clone()),
            uid: key.user.uid.clone(),
            groups: Some(key.user.groups.clone()),
            extra: (!key.user.extra.is_empty()).then(|| key.user.extra.clone()),
            resource_attributes: match &key.attrs {
                Attributes::Resource(r) => Some(authz::ResourceAttributes {
                    namespace: Some(r.namespace.clone()).filter(|s| !s.is_empty()),
                    verb: Some(r.verb.clone()),
                    group: Some(r.group.clone()),
                    version: Some(r.version.clone()),
                    resource: Some(r.resource.clone()),
                    subresource: Some(r.subresource.clone()).filter(|s| !s.is_empty()),
                    name: Some(r.name.clone()).filter(|s| !s.is_empty()),
                    ..Default::default()
                }),
                Attributes::NonResource { .. } => None,
            },
            non_resource_attributes: match &key.attrs {
                Attributes::NonResource { path, verb } => Some(authz::NonResourceAttributes {
                    path: Some(path.clone()),
                    verb: Some(verb.clone()),
                }),
                Attributes::Resource(_) => None,
            },
        };
        let review = authz::SubjectAccessReview {
            spec,
            ..Default::default()
        };
        let api: kube::Api<authz::SubjectAccessReview> = kube::Api::all(self.client.clone());
        let created = tokio::time::timeout(
            self.timeout,
            api.create(&kube::api::PostParams::default(), &review),
        )
        .await
        .map_err(|_| {
            AuthzError(format!(
                "SubjectAccessReview timed out after {:?}",
                self.timeout
            ))
        })?
        .map_err(|e| AuthzError(format!("SubjectAccessReview: {e}")))?;
        let status = created.status.unwrap_or_default();
        Ok(Decision {
            allowed: status.allowed && !status.denied.unwrap_or(false),
            reason: status.reason.unwrap_or_default(),
        })
    }
}

impl Authorizer for SarAuthorizer {
    fn authorize<'a>(
        &'a self,
        user: &'a UserInfo,
        attrs: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, AuthzError>> {
        Box::pin(async move {
            let key = SarKey {
                user: user.clone(),
                attrs: attrs.clone(),
            };
            match &self.cache {
                None => self.review(&key).await,
                Some(cache) => cache
                    .try_get_with(key.clone(), self.review(&key))
                    .await
                    .map_err(|e: Arc<AuthzError>| (*e).clone()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::parse_path;
    use http::HeaderValue;

    fn config_map(allowed: &str) -> BTreeMap<String, String> {
        let ca_pem = headroom_common::tls::self_signed(&["front-proxy-ca".into()], &[])
            .unwrap()
            .ca_pem;
        BTreeMap::from([
            ("requestheader-client-ca-file".to_string(), ca_pem),
            (
                "requestheader-allowed-names".to_string(),
                allowed.to_string(),
            ),
            (
                "requestheader-username-headers".to_string(),
                r#"["X-Remote-User"]"#.to_string(),
            ),
            (
                "requestheader-group-headers".to_string(),
                r#"["X-Remote-Group"]"#.to_string(),
            ),
            (
                "requestheader-extra-headers-prefix".to_string(),
                r#"["X-Remote-Extra-"]"#.to_string(),
            ),
            ("client-ca-file".to_string(), "unrelated".to_string()),
        ])
    }

    fn conn(cn: Option<&str>) -> ConnInfo {
        ConnInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            client_cn: cn.map(str::to_string),
            client_verified: cn.is_some(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn config_map_parsing() {
        let cfg =
            RequestHeaderConfig::from_config_map(&config_map(r#"["front-proxy-client"]"#)).unwrap();
        assert_eq!(cfg.client_ca.len(), 1);
        assert_eq!(cfg.allowed_names, vec!["front-proxy-client"]);
        assert_eq!(cfg.username_headers, vec!["X-Remote-User"]);
        assert!(cfg.uid_headers.is_empty());
        let mut missing = config_map("[]");
        missing.remove("requestheader-client-ca-file");
        assert_eq!(
            RequestHeaderConfig::from_config_map(&missing),
            Err(AuthConfigError::Missing("requestheader-client-ca-file"))
        );
        let bad = config_map("front-proxy-client");
        assert!(matches!(
            RequestHeaderConfig::from_config_map(&bad),
            Err(AuthConfigError::Invalid {
                key: "requestheader-allowed-names",
                ..
            })
        ));
        let mut defaults = config_map("[]");
        defaults.remove("requestheader-username-headers");
        defaults.remove("requestheader-group-headers");
        let cfg = RequestHeaderConfig::from_config_map(&defaults).unwrap();
        assert_eq!(cfg.username_headers, vec!["X-Remote-User"]);
        assert_eq!(cfg.group_headers, vec!["X-Remote-Group"]);
    }

    #[test]
    fn front_proxy_headers_trusted_only_with_allowed_cert() {
        let cfg =
            RequestHeaderConfig::from_config_map(&config_map(r#"["front-proxy-client"]"#)).unwrap();
        let h = headers(&[
            (
                "X-Remote-User",
                "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
            ),
            ("X-Remote-Group", "system:serviceaccounts"),
            ("X-Remote-Group", "system:authenticated"),
            (
                "X-Remote-Extra-Authentication.kubernetes.io%2fpod-Name",
                "kcm-0",
            ),
        ]);
        let user = authenticate(&h, &conn(Some("front-proxy-client")), Some(&cfg)).unwrap();
        assert_eq!(
            user.name,
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
        );
        assert_eq!(
            user.groups,
            vec!["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            vec!["kcm-0"]
        );

        assert_eq!(
            authenticate(&h, &conn(None), Some(&cfg)),
            Err(AuthnError::NoClientCertificate)
        );
        assert_eq!(
            authenticate(&h, &conn(Some("someone-else")), Some(&cfg)),
            Err(AuthnError::NameNotAllowed("someone-else".into()))
        );
        assert_eq!(
            authenticate(&h, &conn(Some("front-proxy-client")), None),
            Err(AuthnError::NotConfigured)
        );
        assert_eq!(
            authenticate(&headers(&[]), &conn(Some("front-proxy-client")), Some(&cfg)),
            Err(AuthnError::NoUser)
        );
        // Empty allowed list: any CN that chained to the CA.
        let any = RequestHeaderConfig::from_config_map(&config_map("")).unwrap();
        assert!(authenticate(&h, &conn(Some("whoever")), Some(&any)).is_ok());
    }

    #[test]
    fn attributes_like_go_request_info() {
        let path =
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jhub/pods/%2A/notebook_cpu_usage_cores";
        let attrs = attributes_for(&parse_path(path).unwrap(), path).unwrap();
        assert_eq!(
            attrs,
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
        assert_eq!(
            attrs.describe(),
            r#"cannot get resource "pods/notebook_cpu_usage_cores" in API group "custom.metrics.k8s.io" in the namespace "jhub""#
        );
        let path =
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/jhub/metrics/jupyterhub_active_users";
        let Attributes::Resource(r) = attributes_for(&parse_path(path).unwrap(), path).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("metrics", "jupyterhub_active_users", "")
        );
        let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/jhub/user_cpu_usage_cores";
        let Attributes::Resource(r) = attributes_for(&parse_path(path).unwrap(), path).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.verb.as_str(), r.resource.as_str(), r.group.as_str()),
            ("list", "user_cpu_usage_cores", "external.metrics.k8s.io")
        );
        assert_eq!(
            attributes_for(&parse_path("/metrics").unwrap(), "/metrics"),
            Some(Attributes::NonResource {
                path: "/metrics".into(),
                verb: "get".into()
            })
        );
        assert_eq!(
            attributes_for(&parse_path("/healthz").unwrap(), "/healthz"),
            None
        );
    }
}
