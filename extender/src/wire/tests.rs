//! Our types against JSON exactly as kube-scheduler (Go `encoding/json` on
//! `k8s.io/kube-scheduler/extender/v1` types) writes and reads it.

use serde_json::{Value, json};

use super::*;

/// A filter body as kube-scheduler 1.36 sends it with `nodeCacheCapable: true`:
/// the Pod from its informer cache (no apiVersion/kind, Go's zero values
/// included), `Nodes` null, `NodeNames` set.
const FILTER_NAMES_BODY: &str = r#"{"Pod":{"metadata":{"name":"jupyter-alice","namespace":"jhub","uid":"5d9f0b1e-2c1a-4f7e-9a57-3a8e0c7b4a11","resourceVersion":"12345","creationTimestamp":"2026-12-03T10:00:00Z","labels":{"component":"singleuser-server"},"annotations":{"hub.jupyter.org/username":"alice"},"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{}}}]},"spec":{"volumes":[{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}],"defaultMode":420}}],"containers":[{"name":"notebook","image":"quay.io/jupyter/base-notebook:latest","ports":[{"name":"notebook-port","containerPort":8888,"protocol":"TCP"}],"resources":{"limits":{"memory":"1Gi"},"requests":{"memory":"1Gi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"OnFailure","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","serviceAccount":"default","securityContext":{"fsGroup":100},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"Burstable"}},"Nodes":null,"NodeNames":["node01","node02","node03"]}"#;

/// The same request with `nodeCacheCapable: false`: a `v1.NodeList` with
/// `metadata: {}` and full Node objects, `NodeNames` null.
const FILTER_NODES_BODY: &str = r#"{"Pod":{"metadata":{"name":"p","namespace":"default","creationTimestamp":null},"spec":{"containers":[{"name":"c","image":"busybox","resources":{}}]},"status":{}},"Nodes":{"metadata":{},"items":[{"metadata":{"name":"node01","uid":"0b6f","resourceVersion":"900","creationTimestamp":"2026-12-01T08:00:00Z","labels":{"kubernetes.io/hostname":"node01"}},"spec":{"podCIDR":"10.244.0.0/24"},"status":{"capacity":{"cpu":"4","memory":"8148344Ki","pods":"110"},"allocatable":{"cpu":"4","memory":"8045944Ki","pods":"110"},"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-12-03T10:00:00Z","lastTransitionTime":"2026-12-01T08:01:00Z","reason":"KubeletReady","message":"kubelet is posting ready status"}],"addresses":[{"type":"InternalIP","address":"192.0.2.11"},{"type":"Hostname","address":"node01"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":10250}},"nodeInfo":{"machineID":"","systemUUID":"","bootID":"","kernelVersion":"6.1.0","osImage":"Debian GNU/Linux 12","containerRuntimeVersion":"containerd://2.1.0","kubeletVersion":"v1.36.0","kubeProxyVersion":"","operatingSystem":"linux","architecture":"amd64"}}},{"metadata":{"name":"node02","creationTimestamp":null},"spec":{},"status":{"allocatable":{"cpu":"2","memory":"4Gi"},"daemonEndpoints":{"kubeletEndpoint":{"Port":0}},"nodeInfo":{"machineID":"","systemUUID":"","bootID":"","kernelVersion":"","osImage":"","containerRuntimeVersion":"","kubeletVersion":"","kubeProxyVersion":"","operatingSystem":"","architecture":""}}}]},"NodeNames":null}"#;

#[test]
fn decodes_node_names_request() {
    let args: ExtenderArgs = serde_json::from_str(FILTER_NAMES_BODY).unwrap();
    assert!(args.nodes.is_none());
    assert_eq!(
        args.node_names.as_deref(),
        Some(&["node01".to_string(), "node02".into(), "node03".into()][..])
    );
    assert_eq!(args.pod.metadata.name.as_deref(), Some("jupyter-alice"));
    assert_eq!(args.pod.metadata.namespace.as_deref(), Some("jhub"));
    let spec = args.pod.spec.as_ref().unwrap();
    assert_eq!(spec.containers[0].name, "notebook");
    assert_eq!(
        args.candidate_names().unwrap(),
        vec!["node01", "node02", "node03"]
    );
}

#[test]
fn decodes_full_nodes_request() {
    let args: ExtenderArgs = serde_json::from_str(FILTER_NODES_BODY).unwrap();
    assert!(args.node_names.is_none());
    let list = args.nodes.as_ref().unwrap();
    assert_eq!(list.items.len(), 2);
    let status = list.items[0].status.as_ref().unwrap();
    assert_eq!(
        status.allocatable.as_ref().unwrap()["cpu"].0,
        "4".to_string()
    );
    assert_eq!(
        status
            .daemon_endpoints
            .as_ref()
            .unwrap()
            .kubelet_endpoint
            .as_ref()
            .unwrap()
            .port,
        10250
    );
    assert_eq!(args.candidate_names().unwrap(), vec!["node01", "node02"]);
    assert_eq!(args.pod.metadata.creation_timestamp, None);
}

#[test]
fn node_names_win_when_both_are_set_and_none_when_neither() {
    let args: ExtenderArgs = serde_json::from_value(json!({
        "Pod": {"metadata": {"name": "p"}},
        "Nodes": {"metadata": {}, "items": [{"metadata": {"name": "x"}}]},
        "NodeNames": ["y"],
    }))
    .unwrap();
    assert_eq!(args.candidate_names().unwrap(), vec!["y"]);
    let args: ExtenderArgs =
        serde_json::from_value(json!({"Pod": {}, "Nodes": null, "NodeNames": null})).unwrap();
    assert_eq!(args.candidate_names(), None);
}

#[test]
fn keys_are_case_sensitive_and_pod_is_required() {
    let err = serde_json::from_str::<ExtenderArgs>(r#"{"pod":{},"nodeNames":["a"]}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `Pod`"), "{err}");
}

#[test]
fn args_round_trip_keeps_go_shape() {
    let args: ExtenderArgs = serde_json::from_str(FILTER_NAMES_BODY).unwrap();
    let v = serde_json::to_value(&args).unwrap();
    assert_eq!(
        v["Nodes"],
        Value::Null,
        "Nodes must be written as null, not omitted"
    );
    assert_eq!(v["NodeNames"], json!(["node01", "node02", "node03"]));
    assert_eq!(v["Pod"]["metadata"]["name"], "jupyter-alice");

    let args: ExtenderArgs = serde_json::from_str(FILTER_NODES_BODY).unwrap();
    let v = serde_json::to_value(&args).unwrap();
    assert_eq!(v["NodeNames"], Value::Null);
    assert_eq!(v["Nodes"]["metadata"], json!({}));
    assert!(v["Nodes"].get("kind").is_none());
    assert_eq!(v["Nodes"]["items"][0]["metadata"]["name"], "node01");
}

#[test]
fn filter_result_with_names_is_byte_exact() {
    let result = ExtenderFilterResult {
        nodes: None,
        node_names: Some(vec!["node01".into(), "node02".into()]),
        failed_nodes: [(
            "node03".to_string(),
            "node03: cpu would reach 46%% > cap 40%% (FreeIPA host)".to_string(),
        )]
        .into(),
        failed_and_unresolvable_nodes: FailedNodesMap::new(),
        error: String::new(),
    };
    assert_eq!(
        serde_json::to_string(&result).unwrap(),
        r#"{"Nodes":null,"NodeNames":["node01","node02"],"FailedNodes":{"node03":"node03: cpu would reach 46%% > cap 40%% (FreeIPA host)"},"FailedAndUnresolvableNodes":{},"Error":""}"#
    );
}

#[test]
fn filter_result_with_nodes_has_go_node_list_shape() {
    let args: ExtenderArgs = serde_json::from_str(FILTER_NODES_BODY).unwrap();
    let mut list = args.nodes.unwrap();
    list.items.truncate(1);
    let result = ExtenderFilterResult {
        nodes: Some(list),
        node_names: None,
        failed_nodes: [("node02".to_string(), "why".to_string())].into(),
        ..Default::default()
    };
    let v = serde_json::to_value(&result).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "Error",
            "FailedAndUnresolvableNodes",
            "FailedNodes",
            "NodeNames",
            "Nodes"
        ]
    );
    assert_eq!(v["NodeNames"], Value::Null);
    assert_eq!(v["Nodes"]["metadata"], json!({}));
    assert_eq!(v["Nodes"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["Nodes"]["items"][0]["metadata"]["name"], "node01");
    assert_eq!(v["FailedAndUnresolvableNodes"], json!({}));
    assert_eq!(v["Error"], "");
}

#[test]
fn filter_result_accepts_go_nil_maps() {
    // What a Go extender writes for an empty result: nil maps are null.
    let r: ExtenderFilterResult = serde_json::from_str(
        r#"{"Nodes":null,"NodeNames":null,"FailedNodes":null,"FailedAndUnresolvableNodes":null,"Error":""}"#,
    )
    .unwrap();
    assert_eq!(r, ExtenderFilterResult::default());
    let r: ExtenderFilterResult = serde_json::from_str(
        r#"{"NodeNames":["a"],"FailedNodes":{"b":"x"},"FailedAndUnresolvableNodes":{"c":"y"},"Error":"boom"}"#,
    )
    .unwrap();
    assert_eq!(r.node_names, Some(vec!["a".to_string()]));
    assert_eq!(r.failed_nodes["b"], "x");
    assert_eq!(r.failed_and_unresolvable_nodes["c"], "y");
    assert_eq!(r.error, "boom");
}

#[test]
fn host_priority_list_is_a_bare_array() {
    let list: HostPriorityList = vec![
        HostPriority {
            host: "node01".into(),
            score: 7,
        },
        HostPriority {
            host: "node03".into(),
            score: 0,
        },
    ];
    let text = serde_json::to_string(&list).unwrap();
    assert_eq!(
        text,
        r#"[{"Host":"node01","Score":7},{"Host":"node03","Score":0}]"#
    );
    let back: HostPriorityList = serde_json::from_str(&text).unwrap();
    assert_eq!(back, list);
}
