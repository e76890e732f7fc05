//! Registering an extension API server that runs on loopback with the
//! apiserver's aggregation layer.
//!
//! The aggregator resolves an `ExternalName` Service to `externalName:port`
//! directly (with `--enable-aggregator-routing=false`, the default), so a
//! Service whose externalName is 127.0.0.1 reaches a process on this machine
//! without kube-proxy. It verifies the serving certificate against the
//! APIService's `caBundle` for the name `<service>.<namespace>.svc`.

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::Error;

/// The group/versions the metrics adapter serves, with their priorities
/// (v1beta2 preferred over v1beta1, as upstream's test adapter sets them).
pub const METRICS_API_VERSIONS: [(&str, &str, i32); 3] = [
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("external.metrics.k8s.io", "v1beta1", 100),
];

/// Server-side applies the namespace, the ExternalName Service and one
/// APIService per group/version pointing at 127.0.0.1:`port`.
pub async fn register_loopback(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    port: u16,
    ca_bundle_pem: &str,
    versions: &[(&str, &str, i32)],
) -> Result<(), Error> {
    let pp = PatchParams::apply("headroom-lab").force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            namespace,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            ),
        )
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    services
        .patch(
            service,
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": namespace},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "127.0.0.1",
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                },
            })),
        )
        .await?;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem.as_bytes());
    let apiservices: Api<APIService> = Api::all(client.clone());
    for (group, version, priority) in versions {
        let name = format!("{version}.{group}");
        apiservices
            .patch(
                &name,
                &pp,
                &Patch::Apply(json!({
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": name},
                    "spec": {
                        "group": group,
                        "version": version,
                        "service": {"namespace": namespace, "name": service, "port": port},
                        "caBundle": ca,
                        "groupPriorityMinimum": 100,
                        "versionPriority": priority,
                    },
                })),
            )
            .await?;
    }
    Ok(())
}

/// Whether an APIService reports `Available=True`, with the condition's
/// message when it does not.
pub async fn availability(client: &kube::Client, name: &str) -> Result<(bool, String), Error> {
    let api: Api<APIService> = Api::all(client.clone());
    let svc = api.get(name).await?;
    let cond = svc
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Available"));
    Ok(match cond {
        Some(c) => (c.status == "True", c.message.unwrap_or_default()),
        None => (false, "no Available condition yet".into()),
    })
}
