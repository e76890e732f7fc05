//! `headroom-metrics-adapter serve | check-config`.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use headroom_common::kubelet::{self, KubeletClient, KubeletClientConfig, ScraperConfig};
use headroom_common::server::{ServeOptions, Transport, serve};
use headroom_common::tls::{self, CertFiles, FixedCert, ReloadingCertResolver, TlsConfigHandle};
use headroom_metrics_adapter::app::{self, State};
use headroom_metrics_adapter::auth::SarAuthorizer;
use headroom_metrics_adapter::cli::{Cli, Command, ServeArgs};
use headroom_metrics_adapter::config::{Config, KubeletScheme, SERVICE_ACCOUNT_TOKEN, Validated};
use headroom_metrics_adapter::sources::{ServerScraper, ServerScraperConfig};
use headroom_metrics_adapter::telemetry::{AdapterMetrics, ResultLabels};
use headroom_metrics_adapter::watch;
use rustls::server::ResolvesServerCert;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    // One process-wide crypto provider (ring): kube's client panics if it
    // has to choose between two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => run(*args).await,
        Command::CheckConfig { config } => check_config(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom-metrics-adapter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let validated = Config::from_file(path)?;
    println!("{:#?}", validated.config);
    Ok(())
}

async fn kube_client(args: &ServeArgs) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// Writes `contents` to `path` atomically (a reader never sees half a file).
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn serving_certificate(
    args: &ServeArgs,
    cfg: &Validated,
) -> anyhow::Result<Arc<dyn ResolvesServerCert>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
        if args.write_ca_bundle.is_some() {
            bail!(
                "--write-ca-bundle applies only to the self-signed certificate (no --tls-cert-file)"
            );
        }
        let resolver = ReloadingCertResolver::new(
            CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            cfg.config.server.cert_reload_interval.0,
        )?;
        tracing::info!(cert = %cert.display(), "serving certificate from files (reloaded on change)");
        return Ok(Arc::new(resolver));
    }
    let mut names: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
    if !args.listen.ip().is_unspecified() {
        ips.push(args.listen.ip());
    }
    for name in cfg
        .config
        .server
        .self_signed_names
        .iter()
        .chain(&args.self_signed_names)
    {
        match name.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => names.push(name.clone()),
        }
    }
    names.dedup();
    ips.dedup();
    let generated = tls::self_signed(&names, &ips)?;
    tracing::info!(?names, ?ips, "self-signed serving certificate generated");
    if let Some(path) = &args.write_ca_bundle {
        write_atomically(path, &generated.ca_pem)?;
        tracing::info!(path = %path.display(), "CA bundle written");
    }
    Ok(Arc::new(FixedCert(generated.key)))
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    headroom_common::telemetry::init_tracing(args.log_format, "info,kube=warn");
    let cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default().validate()?,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let cert = serving_certificate(&args, &cfg)?;
    // No client CA until the requestheader ConfigMap arrives: until then no
    // request authenticates (401), health probes still answer.
    let tls_handle = Arc::new(TlsConfigHandle::new(cert, Vec::new())?);

    let client = kube_client(&args).await?;
    let c = &cfg.config;
    let (pods, pods_task) = watch::pods(
        client.clone(),
        c.notebooks.namespace.as_deref(),
        &cfg.notebook_selector,
        shutdown.clone(),
    );
    tokio::spawn(pods_task);
    let (nodes, nodes_task) = watch::nodes(client.clone(), &cfg.node_selector, shutdown.clone());
    tokio::spawn(nodes_task);

    let metrics = Arc::new(AdapterMetrics::new());
    let usage = kubelet::UsageCache::new();
    let token_file = args
        .kubelet_token_file
        .clone()
        .or_else(|| c.kubelet.token_file.clone())
        .or_else(|| {
            let default = Path::new(SERVICE_ACCOUNT_TOKEN);
            default.exists().then(|| default.to_path_buf())
        });
    let kubelet_client = KubeletClient::new(KubeletClientConfig {
        ca_file: args.kubelet_ca_file.clone(),
        insecure_skip_tls_verify: args.kubelet_insecure_tls,
        token_file,
        timeout: c.kubelet.timeout.0,
        max_body_bytes: c.kubelet.max_body_bytes,
    })?;
    let observer_metrics = metrics.clone();
    let observer = Arc::new(
        move |_node: &str, result: Result<(), &kubelet::ScrapeError>, took: Duration| {
            let label = if result.is_ok() { "success" } else { "error" };
            observer_metrics
                .kubelet_scrapes
                .get_or_create(&ResultLabels { result: label })
                .inc();
            observer_metrics
                .kubelet_scrape_seconds
                .observe(took.as_secs_f64());
        },
    );
    tokio::spawn(kubelet::run_scraper_with_observer(
        nodes.clone(),
        kubelet_client,
        ScraperConfig {
            interval: c.kubelet.interval.0,
            concurrency: c.kubelet.concurrency,
            scheme: args.kubelet_scheme.unwrap_or(match c.kubelet.scheme {
                KubeletScheme::Http => kubelet::Scheme::Http,
                KubeletScheme::Https => kubelet::Scheme::Https,
            }),
        },
        usage.clone(),
        shutdown.clone(),
        observer,
    ));

    let servers = c.jupyter_server.enabled.then(|| {
        let hook_metrics = metrics.clone();
        ServerScraper::new(
            ServerScraperConfig {
                timeout: c.jupyter_server.timeout.0,
                concurrency: c.jupyter_server.concurrency,
                cache_ttl: c.jupyter_server.cache_ttl.0,
                max_body_bytes: c.jupyter_server.max_body_bytes,
                token_file: c.jupyter_server.token_file.clone(),
            },
            Some(Arc::new(move |result: Result<(), &str>, took: Duration| {
                let label = if result.is_ok() { "success" } else { "error" };
                hook_metrics
                    .server_scrapes
                    .get_or_create(&ResultLabels { result: label })
                    .inc();
                hook_metrics
                    .server_scrape_seconds
                    .observe(took.as_secs_f64());
            })),
        )
    });

    let authorizer = Arc::new(SarAuthorizer::new(
        client.clone(),
        c.auth.sar_cache_ttl.0,
        c.auth.sar_timeout.0,
    ));
    let (cm_namespace, cm_name) = (
        c.auth.config_map_namespace.clone(),
        c.auth.config_map_name.clone(),
    );
    let server_interval = c.jupyter_server.interval.0;
    let grace = c.server.shutdown_grace.0;
    let state = Arc::new(State::new(
        cfg.clone(),
        pods.clone(),
        nodes,
        usage,
        servers.clone(),
        authorizer,
        Some(tls_handle.clone()),
        metrics,
    ));
    if let Some(scraper) = servers {
        tokio::spawn(scraper.run_refresher(
            pods,
            state.notebooks.clone(),
            server_interval,
            shutdown.clone(),
        ));
    }
    tokio::spawn(watch::request_header_config(
        client,
        cm_namespace,
        cm_name,
        state.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(watch::mark_synced(state.clone()));

    let options = ServeOptions {
        shutdown_grace: grace,
        ..ServeOptions::default()
    };
    let mut tasks = Vec::new();
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-listen {addr}"))?;
        tracing::info!(%addr, "serving /metrics over plain HTTP");
        let metrics_state = state.clone();
        tasks.push(tokio::spawn(serve(
            listener,
            Transport::Plain,
            move |req, _conn| app::handle_metrics_only(metrics_state.clone(), req),
            options.clone(),
            shutdown.clone(),
        )));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    tracing::info!(addr = %args.listen, "serving the custom and external metrics APIs");
    tasks.push(tokio::spawn(serve(
        listener,
        Transport::Tls(tls_handle.subscribe()),
        move |req, conn| app::handle(state.clone(), req, conn),
        options,
        shutdown.clone(),
    )));
    for task in tasks {
        task.await.context("server task")?;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
