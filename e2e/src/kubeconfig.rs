//! Kubeconfig files for the components, the services and the user.

use std::path::{Path, PathBuf};

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;
use crate::pki::Pem;

/// Writes a kubeconfig for `server` that authenticates with `identity` and
/// trusts `ca_pem`; returns its path.
pub fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    identity: &Pem,
    user: &str,
) -> Result<PathBuf, Error> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "headroom-lab", "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(&identity.cert),
            "client-key-data": b64(&identity.key),
        }}],
        "contexts": [{"name": "headroom-lab", "context": {"cluster": "headroom-lab", "user": user}}],
        "current-context": "headroom-lab",
    });
    std::fs::write(path, serde_yaml::to_string(&doc)?)?;
    Ok(path.to_path_buf())
}

/// A client for the kubeconfig at `path`.
pub async fn client(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(kube::Client::try_from(config)?)
}
