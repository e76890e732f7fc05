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
    /// The demo: the lab's three hosts, both services, a simulated
    /// JupyterHub and an HPA, shown as a table refreshed in place.
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Number of simulated JupyterHub users.
    #[arg(long, default_value_t = 12)]
    users: usize,
    /// Seconds between refreshes of the table (and changes of usage).
    #[arg(long, default_value_t = 3)]
    refresh: u64,
    /// Directory for the kubeconfig, certificates and logs (default: a new
    /// temporary directory, removed on exit).
    #[arg(long)]
    dir: Option<PathBuf>,
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
    /// Also run headroom-extender (wired into kube-scheduler) and
    /// headroom-metrics-adapter (registered with the aggregator); needs
    /// `cargo build --workspace --bins` first.
    #[arg(long)]
    with_services: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Demo(args) => demo(args).await,
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
    let mut cluster = Cluster::start(config)
        .await
        .context("starting the cluster")?;
    // Held until shutdown: dropping them stops the services.
    let _services = if args.with_services {
        let s = headroom_e2e::demo::start_services(&mut cluster)
            .await
            .context("starting headroom-extender and headroom-metrics-adapter")?;
        println!("extender:   {}", s.extender.url);
        println!(
            "adapter:    https://127.0.0.1:{} (APIServices registered)",
            s.adapter.port
        );
        Some(s)
    } else {
        None
    };
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

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let config = ClusterConfig {
        dir: args.dir,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::start(config)
        .await
        .context("starting the cluster")?;
    eprintln!(
        "[headroom-lab] kubeconfig: {}",
        cluster.kubeconfig.display()
    );
    let result = headroom_e2e::demo::run(
        &mut cluster,
        args.users,
        std::time::Duration::from_secs(args.refresh.max(1)),
        shutdown_signal(),
    )
    .await;
    eprintln!("[headroom-lab] stopping");
    cluster.stop().await;
    result.context("demo")
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
