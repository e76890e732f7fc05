//! The YAML configuration file, validated at start. Every field has a
//! default, so an empty file is valid; unknown fields are errors, and every
//! error names the field (`kubelet.interval: ...`).
//!
//! ```yaml
//! notebooks:
//!   selector: component=singleuser-server   # which pods are notebooks
//!   namespace: jhub                         # watch one namespace (default: all)
//!   usernameAnnotation: hub.jupyter.org/username
//! freshness:
//!   maxAge: 60s            # older samples are errors, not numbers
//! activity:                # jupyterhub_active_users
//!   cpuCores: 0.05         # a notebook using at least this much CPU is active…
//!   window: 5m             # …or one whose jupyter_server saw activity this recently
//! kubelet:
//!   interval: 15s
//!   timeout: 10s
//!   concurrency: 16
//!   scheme: https          # http for test kubelets
//!   nodeSelector: ""       # scrape only these nodes (e.g. hub.jupyter.org/node-purpose=user)
//!   tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
//!   maxBodyBytes: 16777216
//! jupyterServer:           # notebook pods' own /metrics (prometheus.io/* annotations)
//!   enabled: true
//!   interval: 15s
//!   timeout: 5s
//!   concurrency: 16
//!   cacheTtl: 30s
//!   maxBodyBytes: 4194304
//! auth:
//!   configMapNamespace: kube-system
//!   configMapName: extension-apiserver-authentication
//!   alwaysAllowGroups: [system:masters]
//!   sarCacheTtl: 10s
//!   sarTimeout: 10s
//! server:
//!   selfSignedNames: [localhost]   # SANs of the self-signed serving certificate
//!   certReloadInterval: 5s
//!   shutdownGrace: 10s
//! ```
//!
//! Durations are written as `500ms`, `15s`, `5m`, `1h30m`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::selector::{self, Selector};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// A duration written as `<number><unit>` groups, units `ms`, `s`, `m`, `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m or h)"))?;
        if digits == 0 {
            return Err(format!("{s:?}: expected a number"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: bad number {:?}", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("{s:?}: unknown unit {other:?} (ms, s, m or h)")),
        };
        total += Duration::try_from_secs_f64(number * scale).map_err(|e| format!("{s:?}: {e}"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Notebooks {
    pub selector: String,
    pub namespace: Option<String>,
    pub username_annotation: String,
}

impl Default for Notebooks {
    fn default() -> Self {
        Self {
            selector: "component=singleuser-server".to_string(),
            namespace: None,
            username_annotation: crate::provider::USERNAME_ANNOTATION.to_string(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Freshness {
    pub max_age: Dur,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            max_age: Dur(Duration::from_secs(60)),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Activity {
    pub cpu_cores: f64,
    pub window: Dur,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            cpu_cores: 0.05,
            window: Dur(Duration::from_secs(300)),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KubeletScheme {
    Http,
    Https,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Kubelet {
    pub interval: Dur,
    pub timeout: Dur,
    pub concurrency: usize,
    pub scheme: KubeletScheme,
    pub node_selector: String,
    pub token_file: Option<PathBuf>,
    pub max_body_bytes: usize,
}

pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl Default for Kubelet {
    fn default() -> Self {
        Self {
            interval: Dur(Duration::from_secs(15)),
            timeout: Dur(Duration::from_secs(10)),
            concurrency: 16,
            scheme: KubeletScheme::Https,
            node_selector: String::new(),
            token_file: None,
            max_body_bytes: 16 << 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JupyterServer {
    pub enabled: bool,
    pub interval: Dur,
    pub timeout: Dur,
    pub concurrency: usize,
    pub cache_ttl: Dur,
    pub max_body_bytes: usize,
    /// File holding a JupyterHub API token with the `access:servers` scope
    /// (e.g. a hub service's token, mounted from a Secret), sent to every
    /// server's `/metrics`; without it servers must set
    /// `c.ServerApp.authenticate_prometheus = False`.
    pub token_file: Option<PathBuf>,
}

impl Default for JupyterServer {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Dur(Duration::from_secs(15)),
            timeout: Dur(Duration::from_secs(5)),
            concurrency: 16,
            cache_ttl: Dur(Duration::from_secs(30)),
            max_body_bytes: 4 << 20,
            token_file: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Auth {
    pub config_map_namespace: String,
    pub config_map_name: String,
    pub always_allow_groups: Vec<String>,
    pub sar_cache_ttl: Dur,
    pub sar_timeout: Dur,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            config_map_namespace: "kube-system".to_string(),
            config_map_name: "extension-apiserver-authentication".to_string(),
            always_allow_groups: vec!["system:masters".to_string()],
            sar_cache_ttl: Dur(Duration::from_secs(10)),
            sar_timeout: Dur(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Server {
    pub self_signed_names: Vec<String>,
    pub cert_reload_interval: Dur,
    pub shutdown_grace: Dur,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            self_signed_names: vec!["localhost".to_string()],
            cert_reload_interval: Dur(Duration::from_secs(5)),
            shutdown_grace: Dur(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    pub notebooks: Notebooks,
    pub freshness: Freshness,
    pub activity: Activity,
    pub kubelet: Kubelet,
    pub jupyter_server: JupyterServer,
    pub auth: Auth,
    pub server: Server,
}

/// The parsed selectors, checked once.
#[derive(Clone, Debug)]
pub struct Validated {
    pub config: Config,
    pub notebook_selector: Selector,
    pub node_selector: Selector,
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn positive(field: &'static str, d: Dur) -> Result<(), ConfigError> {
    if d.0.is_zero() {
        return Err(invalid(field, "must be greater than zero"));
    }
    Ok(())
}

impl Config {
    pub fn from_yaml(text: &str) -> Result<Validated, ConfigError> {
        // An empty document is null in YAML; treat it as all defaults.
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?
        };
        config.validate()
    }

    pub fn from_file(path: &std::path::Path) -> Result<Validated, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    pub fn validate(self) -> Result<Validated, ConfigError> {
        let notebook_selector = selector::parse(&self.notebooks.selector)
            .map_err(|e| invalid("notebooks.selector", e.to_string()))?;
        if notebook_selector.is_empty() {
            return Err(invalid(
                "notebooks.selector",
                "must not be empty (it would make every pod a notebook)",
            ));
        }
        if let Some(ns) = &self.notebooks.namespace
            && !dns_label(ns)
        {
            return Err(invalid(
                "notebooks.namespace",
                format!("{ns:?} is not a valid namespace name"),
            ));
        }
        if self.notebooks.username_annotation.is_empty() {
            return Err(invalid("notebooks.usernameAnnotation", "must not be empty"));
        }
        positive("freshness.maxAge", self.freshness.max_age)?;
        if self.freshness.max_age.0 <= self.kubelet.interval.0 {
            return Err(invalid(
                "freshness.maxAge",
                format!(
                    "{} must be longer than kubelet.interval ({}), or values go stale between scrapes",
                    self.freshness.max_age, self.kubelet.interval
                ),
            ));
        }
        if !(self.activity.cpu_cores.is_finite() && self.activity.cpu_cores >= 0.0) {
            return Err(invalid("activity.cpuCores", "must be a number ≥ 0"));
        }
        positive("activity.window", self.activity.window)?;
        positive("kubelet.interval", self.kubelet.interval)?;
        positive("kubelet.timeout", self.kubelet.timeout)?;
        if self.kubelet.concurrency == 0 {
            return Err(invalid("kubelet.concurrency", "must be at least 1"));
        }
        if self.kubelet.max_body_bytes < 1024 {
            return Err(invalid("kubelet.maxBodyBytes", "must be at least 1024"));
        }
        let node_selector = selector::parse(&self.kubelet.node_selector)
            .map_err(|e| invalid("kubelet.nodeSelector", e.to_string()))?;
        positive("jupyterServer.interval", self.jupyter_server.interval)?;
        positive("jupyterServer.timeout", self.jupyter_server.timeout)?;
        positive("jupyterServer.cacheTtl", self.jupyter_server.cache_ttl)?;
        if self.jupyter_server.concurrency == 0 {
            return Err(invalid("jupyterServer.concurrency", "must be at least 1"));
        }
        if self.jupyter_server.max_body_bytes < 1024 {
            return Err(invalid(
                "jupyterServer.maxBodyBytes",
                "must be at least 1024",
            ));
        }
        if self
            .jupyter_server
            .token_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid(
                "jupyterServer.tokenFile",
                "must be a path (leave it out to send no token)",
            ));
        }
        if !dns_label(&self.auth.config_map_namespace) {
            return Err(invalid(
                "auth.configMapNamespace",
                "must be a namespace name",
            ));
        }
        if self.auth.config_map_name.is_empty() {
            return Err(invalid("auth.configMapName", "must not be empty"));
        }
        positive("auth.sarTimeout", self.auth.sar_timeout)?;
        if self.server.self_signed_names.iter().any(|n| n.is_empty()) {
            return Err(invalid("server.selfSignedNames", "names must not be empty"));
        }
        positive(
            "server.certReloadInterval",
            self.server.cert_reload_interval,
        )?;
        Ok(Validated {
            config: self,
            notebook_selector,
            node_selector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let v = Config::from_yaml("").unwrap();
        assert_eq!(v.config, Config::default());
        assert_eq!(
            v.notebook_selector.to_string(),
            "component=singleuser-server"
        );
        assert!(v.node_selector.is_empty());
        assert_eq!(v.config.freshness.max_age.0, Duration::from_secs(60));
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
notebooks:
  selector: component=singleuser-server,app=jupyterhub
  namespace: jhub
freshness:
  maxAge: 1m30s
activity:
  cpuCores: 0.1
  window: 10m
kubelet:
  interval: 10s
  scheme: http
  nodeSelector: hub.jupyter.org/node-purpose=user
  tokenFile: /tmp/token
jupyterServer:
  enabled: false
  tokenFile: /etc/headroom/hub-token/token
auth:
  alwaysAllowGroups: []
  sarCacheTtl: 0s
server:
  selfSignedNames: [adapter.jhub.svc, localhost]
"#;
        let v = Config::from_yaml(text).unwrap();
        assert_eq!(v.config.freshness.max_age.0, Duration::from_secs(90));
        assert_eq!(v.config.kubelet.scheme, KubeletScheme::Http);
        assert_eq!(
            v.config.kubelet.token_file,
            Some(PathBuf::from("/tmp/token"))
        );
        assert_eq!(v.config.notebooks.namespace.as_deref(), Some("jhub"));
        assert!(!v.config.jupyter_server.enabled);
        assert_eq!(
            v.config.jupyter_server.token_file,
            Some(PathBuf::from("/etc/headroom/hub-token/token"))
        );
        assert_eq!(v.config.auth.sar_cache_ttl.0, Duration::ZERO);
        assert_eq!(
            v.node_selector.to_string(),
            "hub.jupyter.org/node-purpose=user"
        );
        assert_eq!(v.config.server.self_signed_names.len(), 2);
    }

    fn err(text: &str) -> String {
        Config::from_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("notebooks:\n  selecter: x\n").contains("selecter"));
        assert!(err("notebooks:\n  selector: 'a in ('\n").starts_with("notebooks.selector:"));
        assert!(err("notebooks:\n  selector: ''\n").starts_with("notebooks.selector:"));
        assert!(err("notebooks:\n  namespace: Bad_NS\n").starts_with("notebooks.namespace:"));
        assert!(err("freshness:\n  maxAge: 10s\n").starts_with("freshness.maxAge:"));
        let e = err("freshness:\n  maxAge: 10\n");
        assert!(e.contains("freshness") && e.contains("unit"), "{e}");
        assert!(err("kubelet:\n  concurrency: 0\n").starts_with("kubelet.concurrency:"));
        assert!(err("kubelet:\n  nodeSelector: '=x'\n").starts_with("kubelet.nodeSelector:"));
        let e = err("kubelet:\n  scheme: ftp\n");
        assert!(e.contains("kubelet.scheme") || e.contains("ftp"), "{e}");
        assert!(err("activity:\n  cpuCores: -1\n").starts_with("activity.cpuCores:"));
        assert!(err("jupyterServer:\n  timeout: 0s\n").starts_with("jupyterServer.timeout:"));
        assert!(err("jupyterServer:\n  tokenFile: ''\n").starts_with("jupyterServer.tokenFile:"));
        assert!(err("auth:\n  sarTimeout: 0s\n").starts_with("auth.sarTimeout:"));
        assert!(err("bogus: 1\n").contains("bogus"));
    }

    #[test]
    fn shipped_example_is_the_defaults() {
        let example = include_str!("../config.example.yaml");
        assert_eq!(
            Config::from_yaml(example).unwrap().config,
            Config::default()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "10", "s", "5d", "1m-2s", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
