//! Command line (clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use headroom_common::kubelet::Scheme;
use headroom_common::telemetry::LogFormat;

/// kube-scheduler extender that scores nodes by percentage headroom under
/// per-node caps, from requests and measured kubelet usage.
#[derive(Debug, Parser)]
#[command(name = "headroom-extender", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the extender (filter, prioritize), explain, health and metrics.
    Serve(ServeArgs),
    /// Ask a running extender how it sees every node for one pod.
    Explain(ExplainArgs),
    /// Validate a policy file and print the caps it defines.
    CheckPolicy {
        /// The policy YAML file.
        file: PathBuf,
    },
}

/// Where measured usage comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UsageSourceKind {
    /// Scrape each node's kubelet `/metrics/resource` (needs RBAC `nodes/metrics`).
    Kubelet,
    /// No measurement: requests only.
    None,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Policy YAML file (weights, default estimate, stale usage, caps).
    /// Without it the default policy applies: no caps.
    #[arg(long, env = "HEADROOM_POLICY")]
    pub policy: Option<PathBuf>,

    /// How often the policy file is read again; a changed, valid file
    /// replaces the policy in force (an invalid one is logged and ignored).
    /// 0s: never.
    #[arg(long, default_value = "10s", value_parser = parse_duration_or_zero)]
    pub policy_reload_interval: Duration,

    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:9251")]
    pub listen: SocketAddr,

    /// Path prefix of the extender verbs: the path part of the scheduler's
    /// `urlPrefix` (verbs are served at PREFIX/filter and PREFIX/prioritize).
    #[arg(long, default_value = "")]
    pub url_prefix: String,

    /// Largest accepted request body in bytes (413 above it).
    #[arg(long, default_value_t = crate::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Where measured usage comes from.
    #[arg(long, value_enum, default_value_t = UsageSourceKind::Kubelet)]
    pub usage_source: UsageSourceKind,

    /// CA bundle to verify kubelet serving certificates with.
    #[arg(long, conflicts_with = "kubelet_insecure_tls")]
    pub kubelet_ca_file: Option<PathBuf>,

    /// Do not verify kubelet serving certificates. kubeadm's kubelets serve
    /// self-signed certificates unless serverTLSBootstrap is enabled, so
    /// this is often needed there; it exposes the token to anyone who can
    /// impersonate a node IP.
    #[arg(long)]
    pub kubelet_insecure_tls: bool,

    /// Bearer token file for the kubelet (re-read on every scrape, so
    /// projected token rotation works).
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub kubelet_token_file: PathBuf,

    /// Scheme of kubelet URLs.
    #[arg(long, value_enum, default_value_t = Scheme::Https)]
    pub kubelet_scheme: Scheme,

    /// Timeout of one kubelet scrape.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub kubelet_timeout: Duration,

    /// How often every kubelet is scraped.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: Duration,

    /// Readiness waits, after the caches sync, until every node's CPU is
    /// measured (two scrapes) or its kubelet has failed, at most this long:
    /// a restarted extender should not place pods by requests alone on a
    /// node whose load outside Kubernetes it has not seen yet. 0s: do not
    /// wait.
    #[arg(long, default_value = "60s", value_parser = parse_duration_or_zero)]
    pub ready_wait_for_usage: Duration,

    /// Kubelets scraped at the same time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub scrape_concurrency: u16,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve HTTPS with this certificate (PEM; re-read when it changes).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key of --tls-cert-file (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Require client certificates that verify against this CA bundle for
    /// filter, prioritize and explain (/healthz, /readyz and /metrics stay
    /// open for probes and Prometheus). Matches kube-scheduler's extender
    /// `tlsConfig.certFile`/`keyFile`.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Time in-flight requests get to finish on SIGTERM.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Base URL of the extender, e.g. http://127.0.0.1:9251.
    #[arg(long, default_value = "http://127.0.0.1:9251")]
    pub server: String,

    /// The pod, as NAMESPACE/NAME.
    #[arg(long)]
    pub pod: String,

    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,

    /// CA bundle to verify an https server with (default: system roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM, leaf first) for an extender that checks
    /// client certificates (`serve --tls-client-ca-file`).
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<PathBuf>,

    /// Private key of --cert-file (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<PathBuf>,

    /// Give up after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `90s`, `2m`, `1m30s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than 0"));
    }
    Ok(d)
}

/// Like [`parse_duration`], and `0s` for "off".
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("invalid duration {s:?} (write e.g. 15s or 2m): {e}"))?;
    if d.is_negative() {
        return Err(format!("duration {s:?} must not be negative"));
    }
    Duration::try_from(d).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse() {
        let cli = Cli::try_parse_from([
            "headroom-extender",
            "serve",
            "--policy",
            "p.yaml",
            "--listen",
            "127.0.0.1:9999",
            "--kubelet-insecure-tls",
            "--scrape-interval",
            "30s",
            "--usage-source",
            "none",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen.port(), 9999);
        assert_eq!(args.scrape_interval, Duration::from_secs(30));
        assert_eq!(args.usage_source, UsageSourceKind::None);
        assert!(args.kubelet_insecure_tls);
        assert_eq!(args.max_body_bytes, 8 << 20);
    }

    #[test]
    fn conflicting_and_bad_flags_are_rejected() {
        assert!(
            Cli::try_parse_from([
                "headroom-extender",
                "serve",
                "--kubelet-insecure-tls",
                "--kubelet-ca-file",
                "ca.pem"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from(["headroom-extender", "serve", "--tls-cert-file", "c.pem"])
                .is_err()
        );
        let err = Cli::try_parse_from(["headroom-extender", "serve", "--scrape-interval", "0s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be greater than 0"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration_or_zero("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration_or_zero("-1s").is_err());
    }

    #[test]
    fn off_switches_take_zero_and_defaults_hold() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["headroom-extender", "serve"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Serve(args) => args,
                _ => panic!("not serve"),
            }
        };
        let defaults = parse(&[]);
        assert_eq!(defaults.policy_reload_interval, Duration::from_secs(10));
        assert_eq!(defaults.ready_wait_for_usage, Duration::from_secs(60));
        let off = parse(&[
            "--policy-reload-interval",
            "0s",
            "--ready-wait-for-usage",
            "0s",
        ]);
        assert!(off.policy_reload_interval.is_zero());
        assert!(off.ready_wait_for_usage.is_zero());
    }
}
