//! The handler called in-process with built requests, plus one round trip
//! over a real socket through `headroom_common::server`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::{Value, json};

use super::*;
use crate::Settings;
use crate::testutil::{args_json, pod, three_node_state};
use crate::wire::{ExtenderFilterResult, HostPriorityList};

fn notebook() -> Pod {
    pod("jupyter-alice", "jhub", None, json!({}), json!({}))
}

fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::new(Bytes::new())).unwrap()
}

async fn call<B>(state: &Arc<State>, req: Request<B>) -> (StatusCode, String)
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let reply = handle(state.clone(), req).await;
    let status = reply.status();
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn body_of(names: &[&str]) -> String {
    args_json(&notebook(), names).to_string()
}

#[tokio::test]
async fn filter_over_http_answers_in_go_shape() {
    let state = Arc::new(three_node_state());
    let (status, body) = call(
        &state,
        post("/filter", body_of(&["node01", "node03", "ghost"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["NodeNames"], json!(["node01"]));
    assert_eq!(v["Nodes"], Value::Null);
    assert_eq!(
        v["FailedAndUnresolvableNodes"]["node03"],
        "node03: cpu would reach 46%% > cap 40%% (FreeIPA host)"
    );
    assert!(
        v["FailedNodes"]["ghost"]
            .as_str()
            .unwrap()
            .contains("not in")
    );
    assert_eq!(v["Error"], "");
    let _: ExtenderFilterResult = serde_json::from_str(&body).unwrap();
}

#[tokio::test]
async fn prioritize_over_http_scores_every_given_node_in_range() {
    let state = Arc::new(three_node_state());
    let (status, body) = call(
        &state,
        post(
            "/prioritize",
            body_of(&["node01", "node02", "node03", "ghost"]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: HostPriorityList = serde_json::from_str(&body).unwrap();
    let hosts: Vec<_> = list.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, vec!["node01", "node02", "node03", "ghost"]);
    assert!(list.iter().all(|h| (0..=10).contains(&h.score)), "{body}");
    assert!(list[0].score > list[2].score);
}

#[tokio::test]
async fn url_prefix_is_honoured() {
    let mut state = three_node_state();
    state.settings.url_prefix = Settings::normalize_prefix("scheduler/");
    let state = Arc::new(state);
    let (status, _) = call(&state, post("/scheduler/filter", body_of(&["node01"]))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&state, post("/filter", body_of(&["node01"]))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_problem() {
    let state = Arc::new(three_node_state());

    let (status, body) = call(&state, post("/filter", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("invalid ExtenderArgs:"), "{body}");
    assert!(body.contains("line 1 column"), "{body}");

    let bad_field = json!({
        "Pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": 7}]}},
        "Nodes": null, "NodeNames": ["node01"]
    });
    let (status, body) = call(&state, post("/filter", bad_field.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Pod.spec.containers[0].name"), "{body}");
    assert!(body.contains("invalid type"), "{body}");

    let (status, body) = call(&state, post("/prioritize", r#"{"NodeNames":["a"]}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing field `Pod`"), "{body}");

    let (status, body) = call(&state, post("/prioritize", r#"{"Pod":{},"NodeNames":"a"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("NodeNames"), "{body}");

    let (status, body) = call(&state, post("/filter", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("empty request body"), "{body}");

    let (status, body) = call(
        &state,
        post("/filter", format!("{} x", body_of(&["node01"]))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("trailing"), "{body}");
}

/// A body that streams `chunks` chunks of `size` bytes and declares no length.
struct Chunked {
    left: usize,
    size: usize,
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; self.size])))))
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mut state = three_node_state();
    state.settings.max_body_bytes = 1024;
    let state = Arc::new(state);

    let (status, body) = call(&state, post("/filter", vec![b' '; 2048])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("larger than 1024 bytes"), "{body}");

    let streamed = Request::post("/prioritize")
        .body(Chunked {
            left: 10,
            size: 200,
        })
        .unwrap();
    let (status, _) = call(&state, streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Under the limit still works.
    let (status, _) = call(&state, post("/filter", body_of(&["node01"]))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_readiness_and_methods() {
    let state = Arc::new(three_node_state());
    assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(call(&state, get("/readyz")).await.0, StatusCode::OK);
    state.set_ready(false);
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("not synced"));
    assert_eq!(
        call(&state, post("/prioritize", body_of(&["node01"])))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, body) = call(&state, post("/filter", body_of(&["node01"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("not synced"), "{body}");
    let pod_body = serde_json::to_vec(&notebook()).unwrap();
    assert_eq!(
        call(&state, post("/explain", pod_body)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let reply = handle(state.clone(), get("/filter")).await;
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers()[ALLOW], "POST");
    assert_eq!(call(&state, get("/nope")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_expose_latency_decisions_and_staleness() {
    let state = Arc::new(three_node_state());
    call(
        &state,
        post("/filter", body_of(&["node01", "node03", "ghost"])),
    )
    .await;
    call(&state, post("/prioritize", body_of(&["node01"]))).await;
    let (status, text) = call(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "headroom_extender_request_duration_seconds_count{verb=\"filter\"} 1",
        "headroom_extender_request_duration_seconds_count{verb=\"prioritize\"} 1",
        "headroom_extender_decisions_total{verdict=\"pass\"} 1",
        "headroom_extender_decisions_total{verdict=\"hard-cap\"} 1",
        "headroom_extender_decisions_total{verdict=\"unknown-node\"} 1",
        "headroom_extender_usage_staleness_seconds{node=\"node03\"}",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[tokio::test]
async fn explain_by_name_and_by_body() {
    let state = Arc::new(three_node_state());
    let (status, text) = call(&state, get("/explain?pod=jhub/jupyter-alice")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.starts_with("pod jhub/jupyter-alice: estimate cpu 500m"),
        "{text}"
    );
    assert!(
        text.contains("node03: cpu would reach 46% > cap 40% (FreeIPA host)"),
        "{text}"
    );

    let (status, body) = call(&state, get("/explain?pod=jhub%2Fjupyter-alice&format=json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);

    let big = pod("big", "jhub", None, json!({"cpu": "3"}), json!({}));
    let req = Request::post("/explain")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&big).unwrap())))
        .unwrap();
    let (status, body) = call(&state, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["estimate"]["cpu"], "3");
    assert_eq!(v["nodes"][1]["verdict"], "pass");

    assert_eq!(
        call(&state, get("/explain?pod=jhub/nobody")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = call(&state, get("/explain?pod=nobody")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("NAMESPACE/NAME"), "{body}");
    assert_eq!(
        call(&state, get("/explain")).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = call(&state, post("/explain", r#"{"spec": 5}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid Pod: spec"), "{body}");
}

#[test]
fn query_parameters_are_decoded() {
    assert_eq!(
        query_param("pod=a%2Fb&format=json", "pod").as_deref(),
        Some("a/b")
    );
    assert_eq!(
        query_param("pod=a%2Fb&format=json", "format").as_deref(),
        Some("json")
    );
    assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
    assert_eq!(query_param("x=%zz%", "x").as_deref(), Some("%zz%"));
    assert_eq!(query_param("", "pod"), None);
}

#[tokio::test]
async fn served_over_a_real_socket() {
    use headroom_common::server::{ServeOptions, Transport, serve};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio_util::sync::CancellationToken;

    let state = Arc::new(three_node_state());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let handler_state = state.clone();
    let server = tokio::spawn(serve(
        listener,
        Transport::Plain,
        move |req, _conn| handle(handler_state.clone(), req),
        ServeOptions::default(),
        shutdown.clone(),
    ));

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("http://{addr}/filter"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body_of(&["node01", "node03"]))))
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(reply.status(), StatusCode::OK);
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    let result: ExtenderFilterResult = serde_json::from_slice(&body).unwrap();
    assert_eq!(result.node_names, Some(vec!["node01".to_string()]));

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(15), server)
        .await
        .expect("server stops on shutdown")
        .unwrap();
}

#[test]
fn client_certificate_required_except_for_probes_and_metrics() {
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert!(require_client_cert(open, false).is_none(), "{open}");
    }
    for guarded in [
        "/filter",
        "/prioritize",
        "/explain",
        "/scheduler/filter",
        "/",
    ] {
        let refused = require_client_cert(guarded, false).expect(guarded);
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{guarded}");
        assert!(require_client_cert(guarded, true).is_none(), "{guarded}");
    }
}
