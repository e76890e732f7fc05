//! The shared [`State`] and the request handler: route, authenticate,
//! authorize, compute, answer in the requested version's wire format.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use bytes::Bytes;
use headroom_common::kubelet::UsageCache;
use headroom_common::server::{ConnInfo, json_response, text_response, with_type};
use headroom_common::tls::TlsConfigHandle;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;

use crate::api::{
    self, ApiResource, ApiResourceList, CustomMetricList, CustomVersion, ExternalItem,
    ExternalMetricValueList, MetricItem, ObjectReference, Reason, Status, StatusDetails,
};
use crate::auth::{self, Attributes, Authorizer, RequestHeaderConfig, UserInfo};
use crate::config::Validated;
use crate::provider::{
    self, EvalContext, Metric, NotebookPod, NotebookSelector, ServerLookup, ValueError,
};
use crate::routes::{
    self, CustomRequest, CustomTarget, ExternalRequest, Health, ObjectName, Route, Selectors,
};
use crate::sources::{LiveObservations, ServerScraper};
use crate::telemetry::AdapterMetrics;

/// What `/readyz` waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    pub pods_synced: AtomicBool,
    pub nodes_synced: AtomicBool,
    pub auth_loaded: AtomicBool,
}

impl Readiness {
    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.pods_synced.load(Ordering::Relaxed) {
            missing.push("pod cache not synced");
        }
        if !self.nodes_synced.load(Ordering::Relaxed) {
            missing.push("node cache not synced");
        }
        if !self.auth_loaded.load(Ordering::Relaxed) {
            missing.push("requestheader configuration not loaded");
        }
        missing
    }
}

pub struct State {
    pub cfg: Validated,
    pub notebooks: NotebookSelector,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub usage: UsageCache,
    pub servers: Option<ServerScraper>,
    pub authorizer: Arc<dyn Authorizer>,
    pub tls: Option<Arc<TlsConfigHandle>>,
    authn: RwLock<Option<Arc<RequestHeaderConfig>>>,
    pub metrics: Arc<AdapterMetrics>,
    pub readiness: Readiness,
    pub clock: fn() -> Timestamp,
}

impl State {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Validated,
        pods: Store<Pod>,
        nodes: Store<Node>,
        usage: UsageCache,
        servers: Option<ServerScraper>,
        authorizer: Arc<dyn Authorizer>,
        tls: Option<Arc<TlsConfigHandle>>,
        metrics: Arc<AdapterMetrics>,
    ) -> Self {
        let notebooks = NotebookSelector {
            selector: cfg.notebook_selector.clone(),
            username_annotation: cfg.config.notebooks.username_annotation.clone(),
        };
        Self {
            cfg,
            notebooks,
            pods,
            nodes,
            usage,
            servers,
            authorizer,
            tls,
            authn: RwLock::new(None),
            metrics,
            readiness: Readiness::default(),
            clock: Timestamp::now,
        }
    }

    /// Installs a requestheader configuration: its CA becomes the client CA
    /// of the TLS config (new connections), its names and headers the
    /// authentication rules.
    pub fn apply_request_header_config(
        &self,
        cfg: RequestHeaderConfig,
    ) -> Result<(), headroom_common::tls::TlsError> {
        if let Some(tls) = &self.tls {
            tls.set_client_ca(cfg.client_ca.clone())?;
        }
        *self.authn.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(cfg));
        self.readiness.auth_loaded.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn authn_config(&self) -> Option<Arc<RequestHeaderConfig>> {
        self.authn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn eval_context(&self) -> EvalContext {
        let c = &self.cfg.config;
        EvalContext {
            now: (self.clock)(),
            max_age: c.freshness.max_age.0,
            active_cpu_cores: c.activity.cpu_cores,
            active_within: c.activity.window.0,
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn status_response(status: Status) -> Resp {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &status)
}

fn failure(reason: Reason, message: impl Into<String>) -> Resp {
    status_response(Status::failure(reason, message))
}

fn value_error(e: &ValueError) -> Resp {
    match e {
        ValueError::NotAvailable { .. } => failure(Reason::NotFound, e.to_string()),
        ValueError::Stale { .. } | ValueError::Missing { .. } => {
            failure(Reason::ServiceUnavailable, e.to_string())
        }
    }
}

fn metric_not_found(metric: &str, resource: &str, group: &str) -> Resp {
    status_response(
        Status::failure(
            Reason::NotFound,
            format!("the server could not find the metric {metric} for {resource}"),
        )
        .with_details(StatusDetails {
            name: None,
            group: Some(group.to_string()),
            kind: Some(resource.to_string()),
        }),
    )
}

/// The hyper handler.
pub async fn handle<B>(state: Arc<State>, req: Request<B>, conn: ConnInfo) -> Resp {
    let started = Instant::now();
    let (parts, _body) = req.into_parts();
    let (kind, response) = handle_parts(&state, &parts, &conn).await;
    state
        .metrics
        .observe_request(kind, response.status().as_u16(), started.elapsed());
    response
}

/// The handler of the optional plain-HTTP listener: `/metrics` and health
/// only, anonymous.
pub async fn handle_metrics_only<B>(state: Arc<State>, req: Request<B>) -> Resp {
    let started = Instant::now();
    let route = routes::parse_path(req.uri().path()).unwrap_or(Route::NotFound);
    let response = match route {
        _ if req.method() != Method::GET => failure(
            Reason::MethodNotAllowed,
            format!("{} is not supported", req.method()),
        ),
        Route::Health(h) => health(&state, h),
        Route::Metrics => with_type(
            StatusCode::OK,
            Bytes::from(state.metrics.encode()),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => not_found(),
    };
    state.metrics.observe_request(
        "metrics_listener",
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn kind_of(route: &Route) -> &'static str {
    match route {
        Route::Health(_) => "health",
        Route::Metrics => "metrics",
        Route::Custom(_) => "custom",
        Route::External(_) => "external",
        Route::NotFound => "other",
        _ => "discovery",
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(path = %parts.uri.path()))]
async fn handle_parts(state: &State, parts: &Parts, conn: &ConnInfo) -> (&'static str, Resp) {
    let path = parts.uri.path();
    let route = match routes::parse_path(path) {
        Ok(r) => r,
        Err(e) => return ("other", failure(Reason::BadRequest, e.to_string())),
    };
    let kind = kind_of(&route);
    if parts.method != Method::GET {
        return (
            kind,
            failure(
                Reason::MethodNotAllowed,
                format!("{} is not supported", parts.method),
            ),
        );
    }
    if let Route::Health(h) = route {
        return (kind, health(state, h));
    }
    let user = match auth::authenticate(&parts.headers, conn, state.authn_config().as_deref()) {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(remote = %conn.remote, error = %e, "unauthenticated request");
            return (kind, failure(Reason::Unauthorized, "Unauthorized"));
        }
    };
    if let Err(response) = authorize(state, &user, &route, path).await {
        return (kind, response);
    }
    let response = match route {
        Route::Health(_) => unreachable_health(),
        Route::Metrics => with_type(
            StatusCode::OK,
            Bytes::from(state.metrics.encode()),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        Route::OpenApiV2 => json_response(StatusCode::OK, &api::openapi_v2()),
        Route::OpenApiV3 => json_response(StatusCode::OK, &serde_json::json!({"paths": {}})),
        Route::OpenApiOther => not_found(),
        Route::ApiGroupList => {
            let accept = parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            if routes::accepts_legacy_discovery(accept) {
                json_response(StatusCode::OK, &api::api_group_list())
            } else {
                failure(
                    Reason::NotAcceptable,
                    "only the legacy APIGroupList is served; use /apis/<group>/<version>",
                )
            }
        }
        Route::ApiGroup(group) => match api::api_group(group) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => not_found(),
        },
        Route::CustomDiscovery(version) => {
            json_response(StatusCode::OK, &custom_discovery(version))
        }
        Route::ExternalDiscovery => json_response(StatusCode::OK, &external_discovery()),
        Route::Custom(c) => match routes::parse_query(parts.uri.query()) {
            Ok(sel) => custom_metric(state, &c, &sel).await,
            Err(e) => failure(Reason::BadRequest, e.to_string()),
        },
        Route::External(e) => match routes::parse_query(parts.uri.query()) {
            Ok(sel) => external_metric(state, &e, &sel).await,
            Err(err) => failure(Reason::BadRequest, err.to_string()),
        },
        Route::NotFound => not_found(),
    };
    (kind, response)
}

fn unreachable_health() -> Resp {
    text_response(StatusCode::OK, "ok")
}

fn not_found() -> Resp {
    failure(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

fn health(state: &State, h: Health) -> Resp {
    match h {
        Health::Healthz | Health::Livez => text_response(StatusCode::OK, "ok"),
        Health::Readyz => {
            let missing = state.readiness.missing();
            if missing.is_empty() {
                text_response(StatusCode::OK, "ok")
            } else {
                text_response(StatusCode::SERVICE_UNAVAILABLE, missing.join("\n"))
            }
        }
    }
}

/// Go's forbidden message: `<resource>.<group> "<name>" is forbidden: User
/// "<user>" cannot get resource ... [: reason]`.
fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> Resp {
    let prefix = match attrs {
        Attributes::Resource(r) => {
            format!("{}.{} \"{}\" is forbidden", r.resource, r.group, r.name)
        }
        Attributes::NonResource { .. } => "forbidden".to_string(),
    };
    let mut message = format!("{prefix}: User \"{}\" {}", user.name, attrs.describe());
    if !reason.is_empty() {
        message.push_str(&format!(": {reason}"));
    }
    let details = match attrs {
        Attributes::Resource(r) => Some(StatusDetails {
            name: Some(r.name.clone()).filter(|n| !n.is_empty()),
            group: Some(r.group.clone()),
            kind: Some(r.resource.clone()),
        }),
        Attributes::NonResource { .. } => None,
    };
    let mut status = Status::failure(Reason::Forbidden, message);
    status.details = details;
    status_response(status)
}

async fn authorize(state: &State, user: &UserInfo, route: &Route, path: &str) -> Result<(), Resp> {
    let always = &state.cfg.config.auth.always_allow_groups;
    if user.groups.iter().any(|g| always.contains(g)) {
        state
            .metrics
            .authorizations
            .get_or_create(&result("always_allowed"))
            .inc();
        return Ok(());
    }
    if route.is_discovery() {
        return Ok(());
    }
    let Some(attrs) = auth::attributes_for(route, path) else {
        return Ok(());
    };
    match state.authorizer.authorize(user, &attrs).await {
        Ok(d) if d.allowed => {
            state
                .metrics
                .authorizations
                .get_or_create(&result("allowed"))
                .inc();
            Ok(())
        }
        Ok(d) => {
            state
                .metrics
                .authorizations
                .get_or_create(&result("denied"))
                .inc();
            Err(forbidden(user, &attrs, &d.reason))
        }
        Err(e) => {
            state
                .metrics
                .authorizations
                .get_or_create(&result("error"))
                .inc();
            tracing::warn!(error = %e, user = %user.name, "authorization failed");
            Err(failure(Reason::InternalError, e.to_string()))
        }
    }
}

fn result(result: &'static str) -> crate::telemetry::ResultLabels {
    crate::telemetry::ResultLabels { result }
}

fn resource(name: String, namespaced: bool, kind: &'static str) -> ApiResource {
    ApiResource {
        name,
        singular_name: String::new(),
        namespaced,
        kind,
        verbs: vec!["get"],
    }
}

/// Every `<groupResource>/<metric>` served, as custom-metrics-apiserver
/// lists them (namespace metrics as the root-scoped `namespaces/<metric>`).
pub fn custom_discovery(version: CustomVersion) -> ApiResourceList {
    let mut resources = Vec::new();
    for metric in Metric::all() {
        let name = metric.name();
        if metric.is_pod_metric() {
            resources.push(resource(format!("pods/{name}"), true, "MetricValueList"));
        } else {
            resources.push(resource(
                format!("namespaces/{name}"),
                false,
                "MetricValueList",
            ));
            for object in routes::NAMESPACE_METRIC_OBJECTS {
                resources.push(resource(
                    format!("{object}/{name}"),
                    true,
                    "MetricValueList",
                ));
            }
        }
    }
    ApiResourceList::new(version.group_version(), resources)
}

pub fn external_discovery() -> ApiResourceList {
    let resources = Metric::all()
        .into_iter()
        .filter(|m| !m.is_pod_metric())
        .map(|m| resource(m.name(), true, "ExternalMetricValueList"))
        .collect();
    ApiResourceList::new(api::EXTERNAL_GROUP_VERSION, resources)
}

static EVERYTHING: crate::selector::Selector = crate::selector::Selector {
    requirements: Vec::new(),
};

/// The notebook pods a request is about (a plain function: iterator closures
/// held inside an async fn upset its Send analysis).
fn select<'a>(
    state: &State,
    pods: &'a [Arc<Pod>],
    namespace: &str,
    label_selector: &crate::selector::Selector,
    name: Option<&str>,
) -> Vec<NotebookPod<'a>> {
    let mut candidates: Vec<&'a Pod> = Vec::new();
    for pod in pods {
        if name.is_none_or(|n| pod.metadata.name.as_deref() == Some(n)) {
            candidates.push(pod.as_ref());
        }
    }
    provider::select_pods(candidates, &state.notebooks, namespace, label_selector)
}

async fn server_lookups(
    state: &State,
    metric: Metric,
    pods: &[NotebookPod<'_>],
) -> HashMap<(String, String), ServerLookup> {
    match (&state.servers, metric.needs_server_stats()) {
        (Some(scraper), true) => scraper.lookup_many(pods).await,
        _ => HashMap::new(),
    }
}

fn pod_ref(pod: &NotebookPod<'_>) -> ObjectReference {
    ObjectReference {
        kind: "Pod".to_string(),
        namespace: Some(pod.namespace.to_string()),
        name: pod.name.to_string(),
        api_version: "v1".to_string(),
    }
}

fn omitted_reason(e: &ValueError) -> &'static str {
    match e {
        ValueError::Stale { .. } => "stale",
        ValueError::Missing { .. } => "missing",
        ValueError::NotAvailable { .. } => "not_available",
    }
}

async fn custom_metric(state: &State, req: &CustomRequest, sel: &Selectors) -> Resp {
    let group = api::CUSTOM_GROUP;
    let (resource_name, namespace) = match &req.target {
        CustomTarget::Namespaced {
            namespace,
            resource,
            ..
        } => (resource.as_str(), namespace.as_str()),
        CustomTarget::Namespace { namespace } => ("namespaces", namespace.as_str()),
        CustomTarget::Root { resource, .. } => {
            return metric_not_found(&req.metric, resource, group);
        }
    };
    let Some(metric) = Metric::parse(&req.metric) else {
        return metric_not_found(&req.metric, resource_name, group);
    };
    let on_pods = resource_name == "pods";
    if metric.is_pod_metric() != on_pods {
        return metric_not_found(&req.metric, resource_name, group);
    }
    let described = match &req.target {
        CustomTarget::Namespace { namespace } => Some(ObjectReference {
            kind: "Namespace".to_string(),
            namespace: None,
            name: namespace.clone(),
            api_version: "v1".to_string(),
        }),
        CustomTarget::Namespaced {
            resource,
            name,
            namespace,
        } if !on_pods => {
            let (Some((kind, api_version)), ObjectName::Named(name)) =
                (routes::object_kind(resource), name)
            else {
                return metric_not_found(&req.metric, resource, group);
            };
            Some(ObjectReference {
                kind: kind.to_string(),
                namespace: Some(namespace.clone()),
                name: name.clone(),
                api_version: api_version.to_string(),
            })
        }
        _ => None,
    };
    let ctx = state.eval_context();
    let all_pods = state.pods.state();
    let name_filter = match &req.target {
        CustomTarget::Namespaced {
            name: ObjectName::Named(n),
            ..
        } if on_pods => Some(n.as_str()),
        _ => None,
    };
    let label_selector = if name_filter.is_some() || !on_pods {
        &EVERYTHING
    } else {
        &sel.label_selector
    };
    let selected = select(state, &all_pods, namespace, label_selector, name_filter);
    let servers = server_lookups(state, metric, &selected).await;
    let obs = LiveObservations {
        usage: &state.usage,
        nodes: &state.nodes,
        servers: &servers,
    };
    let echo_selector = sel.metric_label_selector.to_label_selector();
    let items = match (metric, described) {
        (Metric::Pod(measure), None) => {
            if let Some(name) = name_filter {
                let Some(pod) = selected.first() else {
                    return status_response(
                        Status::failure(Reason::NotFound, format!("pods \"{name}\" not found among the notebook pods of namespace {namespace}"))
                            .with_details(StatusDetails {
                                name: Some(name.to_string()),
                                group: None,
                                kind: Some("pods".to_string()),
                            }),
                    );
                };
                if !sel.metric_label_selector.matches(&pod.series_labels()) {
                    return value_error(&ValueError::NotAvailable {
                        subject: format!("pod {namespace}/{name}"),
                        reason: "metricLabelSelector matches none of its series".to_string(),
                    });
                }
                match provider::notebook_value(measure, pod, &obs, &ctx) {
                    Ok(point) => vec![item(pod_ref(pod), &req.metric, echo_selector, point)],
                    Err(e) => return value_error(&e),
                }
            } else {
                match provider::pods_values(
                    measure,
                    &selected,
                    &sel.metric_label_selector,
                    &obs,
                    &ctx,
                ) {
                    Ok((points, errors)) => {
                        for e in &errors {
                            tracing::info!(metric = %req.metric, error = %e, "pod left out of the list");
                            state
                                .metrics
                                .omitted_pods
                                .get_or_create(&crate::telemetry::ReasonLabels {
                                    reason: omitted_reason(e),
                                })
                                .inc();
                        }
                        points
                            .into_iter()
                            .map(|p| {
                                item(pod_ref(&p.pod), &req.metric, echo_selector.clone(), p.point)
                            })
                            .collect()
                    }
                    Err(e) => return value_error(&e),
                }
            }
        }
        (metric, Some(described)) => {
            match provider::object_value(
                metric,
                &selected,
                &sel.metric_label_selector,
                namespace,
                &obs,
                &ctx,
            ) {
                Ok(point) => vec![item(described, &req.metric, echo_selector, point)],
                Err(e) => return value_error(&e),
            }
        }
        _ => return metric_not_found(&req.metric, resource_name, group),
    };
    json_response(StatusCode::OK, &CustomMetricList::new(req.version, items))
}

fn item(
    described_object: ObjectReference,
    metric: &str,
    selector: Option<crate::selector::LabelSelector>,
    point: provider::Point,
) -> MetricItem {
    MetricItem {
        described_object,
        metric: metric.to_string(),
        selector,
        timestamp: point.timestamp,
        window: point.window,
        value: point.value,
    }
}

async fn external_metric(state: &State, req: &ExternalRequest, sel: &Selectors) -> Resp {
    let metric = match Metric::parse(&req.metric) {
        Some(m) if !m.is_pod_metric() => m,
        _ => {
            return status_response(
                Status::failure(
                    Reason::NotFound,
                    format!(
                        "the server could not find the external metric {}",
                        req.metric
                    ),
                )
                .with_details(StatusDetails {
                    name: None,
                    group: Some(api::EXTERNAL_GROUP.to_string()),
                    kind: Some(req.metric.clone()),
                }),
            );
        }
    };
    let ctx = state.eval_context();
    let all_pods = state.pods.state();
    let selected = select(state, &all_pods, &req.namespace, &EVERYTHING, None);
    let servers = server_lookups(state, metric, &selected).await;
    let obs = LiveObservations {
        usage: &state.usage,
        nodes: &state.nodes,
        servers: &servers,
    };
    // For external metrics `labelSelector` selects series (the HPA puts
    // `metric.selector` there).
    match provider::external_series(
        metric,
        &selected,
        &sel.label_selector,
        &req.namespace,
        &obs,
        &ctx,
    ) {
        Ok(series) => {
            let items = series
                .into_iter()
                .map(|s| ExternalItem {
                    metric: req.metric.clone(),
                    labels: s.labels,
                    timestamp: s.point.timestamp,
                    window: s.point.window,
                    value: s.point.value,
                })
                .collect();
            json_response(StatusCode::OK, &ExternalMetricValueList::new(items))
        }
        Err(e) => value_error(&e),
    }
}
