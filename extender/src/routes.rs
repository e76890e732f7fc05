//! The HTTP handler: a pure `async fn(state, request) -> response`, mounted
//! on `headroom_common::server` by the binary and called directly in tests.
//!
//! - `POST {prefix}/filter`, `POST {prefix}/prioritize`: the extender verbs.
//! - `GET /explain?pod=NAMESPACE/NAME[&format=json]`, `POST /explain` with a
//!   Pod: the per-node table (text unless JSON is asked for).
//! - `GET /healthz`, `GET /readyz` (503 until the caches have synced),
//!   `GET /metrics`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use headroom_common::server::{json_response, read_body_limited, text_response, with_type};
use http::header::{ACCEPT, ALLOW, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::State;
use crate::verbs;
use crate::wire::ExtenderArgs;

type Reply = Response<Full<Bytes>>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Paths open to clients without a certificate when the extender checks
/// client certificates: kubelet probes and Prometheus present none.
pub fn open_without_client_cert(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// With `--tls-client-ca-file`, every other path needs a verified client
/// certificate: `Some(401)` for a request without one.
pub fn require_client_cert(path: &str, client_verified: bool) -> Option<Reply> {
    if client_verified || open_without_client_cert(path) {
        return None;
    }
    Some(text_response(
        StatusCode::UNAUTHORIZED,
        "client certificate required: this extender verifies client certificates (--tls-client-ca-file)\n",
    ))
}

/// Route one request. Never panics on input: bad bodies get 400/413 with a
/// message naming the problem.
pub async fn handle<B>(state: Arc<State>, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let prefix = state.settings.url_prefix.as_str();
    let verb = path
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|v| matches!(*v, "filter" | "prioritize"));
    if let Some(verb) = verb {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let verb = verb.to_string();
        let span = tracing::info_span!("extender", verb = %verb, pod = tracing::field::Empty);
        return timed(
            &state,
            &verb,
            extender_verb(&state, &verb, req).instrument(span),
        )
        .await;
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if state.is_ready() {
                text_response(StatusCode::OK, "ok\n")
            } else {
                not_synced()
            }
        }
        (&Method::GET, "/metrics") => {
            if let Some(usage) = &state.view.usage {
                state
                    .metrics
                    .set_staleness(&usage.sample_times(), Timestamp::now());
            }
            with_type(
                StatusCode::OK,
                Bytes::from(state.metrics.encode()),
                OPENMETRICS,
            )
        }
        (&Method::GET | &Method::POST, "/explain") => {
            timed(&state, "explain", explain(&state, req)).await
        }
        (_, "/explain") => method_not_allowed("GET, POST"),
        (_, "/healthz" | "/readyz" | "/metrics") => method_not_allowed("GET"),
        _ => text_response(StatusCode::NOT_FOUND, format!("no route for {path}\n")),
    }
}

async fn timed(state: &State, verb: &str, work: impl Future<Output = Reply>) -> Reply {
    let started = Instant::now();
    let reply = work.await;
    state.metrics.observe_request(verb, started.elapsed());
    reply
}

async fn extender_verb<B>(state: &State, verb: &str, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = match read_body_limited(req, state.settings.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(error = %e, "rejected request body");
            return e.to_response();
        }
    };
    let args: ExtenderArgs = match decode("ExtenderArgs", &body) {
        Ok(args) => args,
        Err(message) => return rejected(&message),
    };
    let pod_key = format!(
        "{}/{}",
        args.pod.metadata.namespace.as_deref().unwrap_or_default(),
        args.pod.metadata.name.as_deref().unwrap_or_default()
    );
    tracing::Span::current().record("pod", pod_key.as_str());
    let now = Timestamp::now();
    if verb == "filter" {
        let result = verbs::filter(state, &args, now);
        tracing::debug!(
            passed = result
                .node_names
                .as_ref()
                .map(Vec::len)
                .or(result.nodes.as_ref().map(|l| l.items.len())),
            failed = result.failed_nodes.len() + result.failed_and_unresolvable_nodes.len(),
            error = %result.error,
            "filtered"
        );
        json_response(StatusCode::OK, &result)
    } else {
        if !state.is_ready() {
            // kube-scheduler ignores prioritize errors, so this only costs the score.
            return not_synced();
        }
        let scores = verbs::prioritize(state, &args, now);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let list: Vec<String> = scores
                .iter()
                .map(|h| format!("{}={}", h.host, h.score))
                .collect();
            tracing::debug!(scores = %list.join(","), "prioritized");
        }
        json_response(StatusCode::OK, &scores)
    }
}

async fn explain<B>(state: &State, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let query = req.uri().query().unwrap_or_default().to_string();
    let want_json = query_param(&query, "format").as_deref() == Some("json")
        || req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    let pod: Pod = if req.method() == Method::POST {
        let body = match read_body_limited(req, state.settings.max_body_bytes).await {
            Ok(body) => body,
            Err(e) => return e.to_response(),
        };
        match decode("Pod", &body) {
            Ok(pod) => pod,
            Err(message) => return rejected(&message),
        }
    } else {
        let Some(key) = query_param(&query, "pod") else {
            return bad_request("missing query parameter pod=NAMESPACE/NAME");
        };
        let Some((namespace, name)) = key
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        else {
            return bad_request(&format!("pod must be NAMESPACE/NAME, got {key:?}"));
        };
        if !state.is_ready() {
            return not_synced();
        }
        match state.view.pod(namespace, name) {
            Some(pod) => (*pod).clone(),
            None => {
                return text_response(
                    StatusCode::NOT_FOUND,
                    format!(
                        "pod {namespace}/{name} is not in the pod cache (terminal pods are not kept)\n"
                    ),
                );
            }
        }
    };
    if !state.is_ready() {
        return not_synced();
    }
    let explanation = verbs::explain(state, &pod, Timestamp::now());
    if want_json {
        json_response(StatusCode::OK, &explanation)
    } else {
        text_response(StatusCode::OK, explanation.to_text())
    }
}

/// Decode JSON, or the text of a 400 naming the path of the problem
/// (`invalid ExtenderArgs: Pod.spec.containers[0].name: invalid type: ...`).
fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, String> {
    if body.is_empty() {
        return Err(format!("empty request body; expected {what} JSON"));
    }
    // Fast path: plain serde_json (which also rejects trailing data). Path
    // tracking costs on every field, so it runs only to explain a failure.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("invalid {what}: {}", e.inner())
        } else {
            format!("invalid {what}: {path}: {}", e.inner())
        }
    })?;
    // Trailing garbage after the object is an error too.
    de.end().map_err(|e| format!("invalid {what}: {e}"))?;
    Ok(value)
}

fn rejected(message: &str) -> Reply {
    tracing::warn!(%message, "rejected request");
    bad_request(message)
}

fn not_synced() -> Reply {
    text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "node and pod caches have not synced yet\n",
    )
}

fn bad_request(message: &str) -> Reply {
    text_response(StatusCode::BAD_REQUEST, format!("{message}\n"))
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut reply = text_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}\n"),
    );
    reply
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

/// First value of `key` in a query string, percent-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
