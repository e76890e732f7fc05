//! `headroom-loadgen`: load generator and benchmark driver for scheduler
//! extenders (issue 6).
//!
//! - `run`: POST filter or prioritize to a running extender at a fixed
//!   concurrency for a fixed time; p50/p99 and requests/s.
//! - `http`: a kwok cluster of up to 5,000 nodes, headroom-extender and the
//!   TAS peer under the same load and payloads.
//! - `scheduling`: kube-scheduler throughput with and without the extender.
//! - `adapter`: the metrics adapter and the prometheus-adapter + Prometheus
//!   peer: query, discovery, memory and freshness.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use headroom_e2e::bench::adapter_bench::{self, AdapterBenchOptions};
use headroom_e2e::bench::http_bench::{self, HttpBenchOptions};
use headroom_e2e::bench::loadgen::{self, ClientTls, LoadSpec, Verb};
use headroom_e2e::bench::payload::{self, NodesMode};
use headroom_e2e::bench::report;
use headroom_e2e::bench::scheduling::{self, SchedulingOptions};

#[derive(Parser)]
#[command(
    name = "headroom-loadgen",
    version,
    about = "Load generator and benchmarks for scheduler extenders"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load one verb of a running extender with synthetic nodes.
    Run(RunArgs),
    /// headroom-extender and the TAS peer over HTTP on a kwok cluster.
    Http(HttpArgs),
    /// kube-scheduler throughput, default plugins vs. with headroom-extender.
    Scheduling(SchedArgs),
    /// Metrics adapter and the prometheus-adapter + Prometheus peer:
    /// Pods-metric query and discovery through the aggregator, resident
    /// memory, freshness.
    Adapter(AdapterArgs),
}

#[derive(Args, Clone)]
struct Load {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Measured time per cell.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

impl Load {
    fn spec(&self) -> LoadSpec {
        LoadSpec {
            concurrency: self.concurrency,
            duration: self.duration,
            warmup: self.warmup,
            timeout: self.timeout,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Base URL of the extender verbs, e.g. http://127.0.0.1:9251.
    #[arg(long)]
    url: String,
    #[arg(long, value_enum)]
    verb: Verb,
    /// Nodes in the request (named node01.., as the harness names them).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[arg(long, value_enum, default_value_t = NodesMode::Names)]
    payload: NodesMode,
    /// Extra pod labels, KEY=VALUE.
    #[arg(long = "pod-label")]
    pod_labels: Vec<String>,
    /// CA bundle (PEM) for https URLs.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    #[command(flatten)]
    load: Load,
}

#[derive(Args)]
struct HttpArgs {
    /// Node counts (the cluster gets the largest).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    sizes: Vec<usize>,
    /// headroom-extender's kubelet scrape interval.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Skip headroom-extender with full Nodes over mutual TLS.
    #[arg(long)]
    no_full_nodes: bool,
    /// Skip the TAS peer.
    #[arg(long)]
    no_peer: bool,
    /// Also write the table (Markdown) here.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    load: Load,
}

#[derive(Args)]
struct SchedArgs {
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// The extender's weight in the scheduler configuration.
    #[arg(long, default_value_t = 5)]
    weight: i64,
    /// Rounds of (a) then (b).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Skip (a′), the default scheduler while the extender runs beside it.
    #[arg(long)]
    no_beside: bool,
    /// headroom-extender's kubelet scrape interval (its default).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Give up on a round after this long.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct AdapterArgs {
    /// Notebook pod counts.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// kwok nodes the pods are spread over (at most 110 pods each).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// The adapter's kubelet scrape interval, and Prometheus' for the peer.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Skip the prometheus-adapter + Prometheus peer.
    #[arg(long)]
    no_peer: bool,
    /// Freshness rounds per server at the smallest size (0: none).
    #[arg(long, default_value_t = 3)]
    freshness_rounds: usize,
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    load: Load,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    Duration::try_from(d).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let cli = Cli::parse();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Http(args) => http(args, &command_line).await,
        Command::Scheduling(args) => sched(args, &command_line).await,
        Command::Adapter(args) => adapter(args, &command_line).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let read = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        p.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| p.display().to_string()))
            .transpose()
    };
    let tls = match read(&args.ca)? {
        Some(ca_pem) => Some(ClientTls {
            ca_pem,
            cert_pem: read(&args.cert)?,
            key_pem: read(&args.key)?,
        }),
        None => None,
    };
    let client = loadgen::client(tls.as_ref()).map_err(anyhow::Error::msg)?;
    let labels: Vec<(&str, &str)> = args
        .pod_labels
        .iter()
        .map(|l| l.split_once('=').context("--pod-label wants KEY=VALUE"))
        .collect::<anyhow::Result<_>>()?;
    let pod = payload::notebook_pod("loadgen", &labels);
    let nodes = payload::synthetic_nodes(args.nodes, 10250);
    let body = Bytes::from(serde_json::to_vec(&payload::extender_args(
        &pod,
        &nodes,
        args.nodes,
        args.payload,
    ))?);
    let outcome = loadgen::run(&client, &args.url, args.verb, body, args.load.spec())
        .await
        .map_err(anyhow::Error::msg)?;
    let row = http_bench::HttpRow {
        server: args.url.clone(),
        transport: if args.url.starts_with("https") {
            "TLS"
        } else {
            "HTTP"
        },
        payload: args.payload,
        nodes: args.nodes,
        verb: args.verb,
        concurrency: args.load.concurrency,
        outcome,
    };
    print!("{}", report::http_table(std::slice::from_ref(&row)));
    Ok(())
}

fn preamble(command_line: &str) -> String {
    format!(
        "- date: {}\n- machine: {}\n- command: `{command_line}`\n\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        report::machine()
    )
}

async fn http(args: HttpArgs, command_line: &str) -> anyhow::Result<()> {
    let opts = HttpBenchOptions {
        sizes: args.sizes,
        load: args.load.spec(),
        scrape_interval: args.scrape_interval,
        full_nodes: !args.no_full_nodes,
        peer: !args.no_peer,
    };
    eprint!("{}", report::http_header());
    let (rows, notes) = http_bench::run(&opts, |row| eprint!("{}", report::http_line(row))).await?;
    let mut out = preamble(command_line);
    out.push_str(&format!(
        "- cluster: {} kwok nodes Ready {:.0} s after start; setting every node's emulated load took {:.0} s\n\
         - load: concurrency {}, {} s measured after {} s warm-up per cell, kept-alive HTTP/1.1 connections\n",
        notes.nodes,
        notes.cluster_start.as_secs_f64(),
        notes.load_annotations.as_secs_f64(),
        opts.load.concurrency,
        opts.load.duration.as_secs(),
        opts.load.warmup.as_secs(),
    ));
    if let Some(e) = &notes.peer_error {
        out.push_str(&format!("- TAS peer failed: {e}\n"));
    }
    out.push('\n');
    out.push_str(&report::http_table(&rows));
    println!("{out}");
    if let Some(path) = args.out {
        std::fs::write(&path, &out).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

async fn sched(args: SchedArgs, command_line: &str) -> anyhow::Result<()> {
    let opts = SchedulingOptions {
        nodes: args.nodes,
        pods: args.pods,
        weight: args.weight,
        scrape_interval: args.scrape_interval,
        rounds: args.rounds,
        beside: !args.no_beside,
        timeout: args.timeout,
    };
    eprint!("{}", report::scheduling_header());
    let rounds = scheduling::run(&opts, |r| eprint!("{}", report::scheduling_line(r))).await?;
    let mut out = preamble(command_line);
    out.push_str(&format!(
        "- {} kwok nodes (20 CPU, 64Gi), {} z2jh notebook pods per configuration; kube-scheduler v1.36 with client QPS/burst {}; extender weight {}, nodeCacheCapable, filter + prioritize, scrape interval {} s\n\n",
        opts.nodes,
        opts.pods,
        headroom_e2e::bench::scheduler::CLIENT_QPS,
        opts.weight,
        opts.scrape_interval.as_secs(),
    ));
    out.push_str(&report::scheduling_table(&rounds));
    println!("{out}");
    if let Some(path) = args.out {
        std::fs::write(&path, &out).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

async fn adapter(args: AdapterArgs, command_line: &str) -> anyhow::Result<()> {
    let opts = AdapterBenchOptions {
        sizes: args.sizes,
        nodes: args.nodes,
        load: args.load.spec(),
        scrape_interval: args.scrape_interval,
        peer: !args.no_peer,
        freshness_rounds: args.freshness_rounds,
    };
    eprint!("{}", report::adapter_header());
    let r = adapter_bench::run(
        &opts,
        |r| eprint!("{}", report::adapter_lines(r)),
        |r| eprint!("{}", report::freshness_line(r)),
    )
    .await?;
    let mut out = preamble(command_line);
    out.push_str(&format!(
        "- {} kwok nodes; notebook pods created bound and spread over them; scrape interval {} s (our adapter's kubelet scrape and Prometheus'); \
         requests through kube-apiserver's aggregator with the admin client certificate, the custom metrics APIServices pointed at one server then the other; \
         concurrency {}, {} s measured after {} s warm-up\n",
        opts.nodes,
        opts.scrape_interval.as_secs(),
        opts.load.concurrency,
        opts.load.duration.as_secs(),
        opts.load.warmup.as_secs(),
    ));
    if let Some(peer) = &r.peer {
        out.push_str(&format!(
            "- peer: {peer}; `{}` = `rate` over {} s, `{}` = `irate` (freshness only)\n",
            headroom_e2e::bench::prometheus_adapter::METRIC,
            opts.scrape_interval.as_secs() * 4,
            headroom_e2e::bench::prometheus_adapter::METRIC_IRATE,
        ));
    }
    for (server, adapter, prometheus) in &r.idle_rss {
        out.push_str(&format!(
            "- resident memory with no notebook pods, {server}: {}\n",
            report::adapter_memory(*adapter, *prometheus)
        ));
    }
    if let Some(e) = &r.peer_error {
        out.push_str(&format!("- the peer failed: {e}\n"));
    }
    out.push('\n');
    out.push_str(&report::adapter_header());
    for row in &r.rows {
        out.push_str(&report::adapter_lines(row));
    }
    for row in &r.rows {
        if let Some(ms) = row.prometheus_query_ms {
            out.push_str(&format!(
                "\nPrometheus' own mean time per query during the {}-pod query run (its `/api/v1/query` handler): {ms:.1} ms\n",
                row.pods
            ));
        }
    }
    if !r.freshness.is_empty() {
        out.push('\n');
        out.push_str(&report::freshness_header());
        for round in &r.freshness {
            out.push_str(&report::freshness_line(round));
        }
    }
    println!("{out}");
    if let Some(path) = args.out {
        std::fs::write(&path, &out).with_context(|| path.display().to_string())?;
    }
    Ok(())
}
