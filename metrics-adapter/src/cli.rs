//! Command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use headroom_common::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "headroom-metrics-adapter",
    version,
    about = "Custom and external metrics API for JupyterHub notebooks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the metrics APIs.
    Serve(Box<ServeArgs>),
    /// Validate a configuration file and print it with defaults filled in.
    CheckConfig {
        /// The YAML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// YAML configuration file (defaults for everything when absent).
    #[arg(long, env = "HEADROOM_ADAPTER_CONFIG")]
    pub config: Option<PathBuf>,

    /// HTTPS listen address.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,

    /// Serving certificate (PEM chain); re-read when it changes. Without it
    /// a self-signed certificate is generated at start.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key of --tls-cert-file (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Extra DNS name or IP for the self-signed certificate (repeatable; adds
    /// to server.selfSignedNames), e.g. `<service>.<namespace>.svc`.
    #[arg(long = "tls-san", visible_alias = "self-signed-name")]
    pub self_signed_names: Vec<String>,

    /// Write the self-signed CA certificate (PEM, for an APIService
    /// caBundle) to this file.
    #[arg(long)]
    pub write_ca_bundle: Option<PathBuf>,

    /// Plain-HTTP address serving only /metrics and health endpoints,
    /// anonymously (for Prometheus and probes).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,

    /// Kubeconfig to use. Without it: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster configuration.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Do not verify kubelet serving certificates (kubeadm kubelets are
    /// self-signed), as metrics-server's flag of the same name.
    #[arg(long)]
    pub kubelet_insecure_tls: bool,

    /// CA bundle that signed the kubelets' serving certificates.
    #[arg(long, conflicts_with = "kubelet_insecure_tls")]
    pub kubelet_ca_file: Option<PathBuf>,

    /// Kubelet scheme, overriding kubelet.scheme (http for emulated kubelets).
    #[arg(long, value_enum)]
    pub kubelet_scheme: Option<headroom_common::kubelet::Scheme>,

    /// Bearer token file for kubelets, overriding kubelet.tokenFile (default:
    /// the pod's service-account token when present).
    #[arg(long)]
    pub kubelet_token_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags() {
        let cli = Cli::try_parse_from([
            "headroom-metrics-adapter",
            "serve",
            "--listen",
            "127.0.0.1:8443",
            "--kubeconfig",
            "/tmp/kc",
            "--write-ca-bundle",
            "/tmp/ca.pem",
            "--kubelet-insecure-tls",
            "--log-format",
            "json",
            "--tls-san",
            "adapter.jhub.svc",
            "--self-signed-name",
            "10.0.0.1",
            "--kubelet-scheme=http",
            "--kubelet-token-file=/tmp/token",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(args.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert!(args.kubelet_insecure_tls);
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.self_signed_names, vec!["adapter.jhub.svc", "10.0.0.1"]);
        assert_eq!(
            args.kubelet_scheme,
            Some(headroom_common::kubelet::Scheme::Http)
        );
        assert_eq!(args.kubelet_token_file, Some(PathBuf::from("/tmp/token")));
    }

    #[test]
    fn cert_needs_key() {
        assert!(Cli::try_parse_from(["x", "serve", "--tls-cert-file", "/c"]).is_err());
        assert!(
            Cli::try_parse_from([
                "x",
                "serve",
                "--kubelet-insecure-tls",
                "--kubelet-ca-file",
                "/ca"
            ])
            .is_err()
        );
    }
}
