//! `headroom-lab`: a loopback Kubernetes cluster for the demo and for scale
//! tests.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use headroom_e2e::{Cluster, ClusterConfig, NodeSpec};

#[derive(Parser)]
#[command(
    name = "headroom-lab",
    version,
    about = "Loopback Kubernetes cluster for headroom"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster and keep it running until Ctrl-C or SIGTERM.
    Up(UpArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Number of nodes; 3 gives the lab's node01–node03 with node03 as the
    /// FreeIPA host.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Allocatable CPU per node (a Quantity).
    #[arg(long, default_value = "20")]
    node_cpu: String,
    /// Allocatable memory per node (a Quantity).
    #[arg(long, default_value = "64Gi")]
    node_memory: String,
    /// Directory for the kubeconfig, certificates and logs (default: a new
    /// temporary directory, removed on exit).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => up(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let nodes = if args.nodes == 3 && args.node_cpu == "20" && args.node_memory == "64Gi" {
        NodeSpec::lab_default()
    } else {
        NodeSpec::uniform(args.nodes, &args.node_cpu, &args.node_memory)
    };
    let config = ClusterConfig {
        nodes,
        dir: args.dir,
        ..ClusterConfig::default()
    };
    let cluster = Cluster::start(config)
        .await
        .context("starting the cluster")?;
    println!("kubeconfig: {}", cluster.kubeconfig.display());
    println!("logs:       {}", cluster.dir.display());
    println!(
        "try:        KUBECONFIG={} kubectl get nodes",
        cluster.kubeconfig.display()
    );
    println!("Ctrl-C stops the cluster.");
    shutdown_signal().await;
    eprintln!("[headroom-lab] stopping");
    cluster.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
