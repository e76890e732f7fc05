//! `headroom-extender serve | explain | check-policy`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use headroom_common::server::{ServeOptions, Transport, serve};
use headroom_common::tls::{
    CertFiles, DEFAULT_RELOAD_CHECK, ReloadingCertResolver, TlsConfigHandle, parse_pem_certs,
};
use headroom_extender::config::{Cli, Command, ExplainArgs, ServeArgs, UsageSourceKind};
use headroom_extender::policy::reload::WatchedPolicy;
use headroom_extender::policy::{CapMode, Policy, StalePolicy};
use headroom_extender::view::{ClusterView, KubeletUsage, Reflectors, UsageSource};
use headroom_extender::{Settings, State, routes};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    // One process-wide crypto provider (ring); kube's client panics if it
    // has to pick between two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => run(args).await,
        Command::Explain(args) => explain(args).await,
        Command::CheckPolicy { file } => check_policy(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain, without a backtrace: these are user-facing errors.
            eprintln!("headroom-extender: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    headroom_common::telemetry::init_tracing(args.log_format, "info,kube=warn");
    let (policy_file, policy) = match &args.policy {
        Some(path) => {
            let (file, policy) = WatchedPolicy::load(path)?;
            (Some(file), policy)
        }
        None => {
            tracing::warn!("no --policy given: default policy, no caps");
            (None, Policy::default())
        }
    };
    tracing::info!(caps = policy.caps.len(), stale_policy = ?policy.stale_policy, "policy loaded");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    let stores = Reflectors::start(client, Arc::new(policy), shutdown.clone());

    let settings = Settings {
        url_prefix: Settings::normalize_prefix(&args.url_prefix),
        max_body_bytes: args.max_body_bytes,
    };
    let usage_cache = match args.usage_source {
        UsageSourceKind::Kubelet => Some(headroom_common::kubelet::UsageCache::default()),
        UsageSourceKind::None => None,
    };
    let view = ClusterView::new(
        stores.nodes.clone(),
        stores.pods.clone(),
        stores.index.clone(),
        usage_cache
            .clone()
            .map(|c| Arc::new(KubeletUsage::new(c)) as Arc<dyn UsageSource>),
    );
    let state = Arc::new(State::new(view, settings));

    if let Some(cache) = &usage_cache {
        headroom_extender::scrape::start(
            &args,
            stores.nodes.clone(),
            cache.clone(),
            state.clone(),
            shutdown.clone(),
        )?;
    }
    if let Some(file) = policy_file
        && !args.policy_reload_interval.is_zero()
    {
        tokio::spawn(reload_policy(
            file,
            args.policy_reload_interval,
            state.clone(),
            shutdown.clone(),
        ));
    }
    let ready_wait = usage_cache
        .filter(|_| !args.ready_wait_for_usage.is_zero())
        .map(|cache| (cache, args.ready_wait_for_usage));
    tokio::spawn(mark_ready(
        stores,
        ready_wait,
        state.clone(),
        shutdown.clone(),
    ));

    let transport = transport(&args, shutdown.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        listen = %args.listen,
        tls = matches!(transport, Transport::Tls(_)),
        prefix = %state.settings.url_prefix,
        "serving"
    );
    let handler_state = state.clone();
    // Optional client certificates at the TLS layer (probes have none);
    // required here for everything but health and metrics.
    let check_client_cert = args.tls_client_ca_file.is_some();
    serve(
        listener,
        transport,
        move |req, conn| {
            let state = handler_state.clone();
            async move {
                if check_client_cert
                    && let Some(refused) =
                        routes::require_client_cert(req.uri().path(), conn.client_verified)
                {
                    return refused;
                }
                routes::handle(state, req).await
            }
        },
        ServeOptions {
            shutdown_grace: args.shutdown_grace,
            ..ServeOptions::default()
        },
        shutdown,
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the policy file every `interval`; a changed, valid file is put in
/// force (every node's caps resolved again), an invalid one is logged and
/// counted while the policy in force stays.
async fn reload_policy(
    mut file: WatchedPolicy,
    interval: Duration,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match file.reload() {
            Ok(None) => {}
            Ok(Some(policy)) => {
                tracing::info!(
                    path = %file.path().display(),
                    caps = policy.caps.len(),
                    "policy file changed; new policy in force"
                );
                state.view.index().set_policy(Arc::new(policy));
                state.metrics.count_policy_reload("applied");
            }
            Err(e) => {
                tracing::error!(error = %e, "policy file not applied; the previous policy stays in force");
                state.metrics.count_policy_reload("invalid");
            }
        }
    }
}

/// Ready once both stores have their first full list and, with
/// `usage_wait`, every node is measured (or its kubelet failed) or the wait
/// is over.
async fn mark_ready(
    stores: Reflectors,
    usage_wait: Option<(headroom_common::kubelet::UsageCache, Duration)>,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    let synced = async {
        stores.nodes.wait_until_ready().await?;
        stores.pods.wait_until_ready().await
    };
    let synced = tokio::select! {
        () = shutdown.cancelled() => return,
        synced = synced => synced,
    };
    if let Err(e) = synced {
        tracing::error!(error = %e, "caches never synced");
        return;
    }
    tracing::info!(
        nodes = stores.nodes.len(),
        pods = stores.pods.len(),
        "caches synced"
    );
    if let Some((cache, wait)) = usage_wait {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let nodes = stores.nodes.state();
            let names = nodes.iter().filter_map(|n| n.metadata.name.as_deref());
            let awaiting = headroom_extender::scrape::awaiting_usage(names, &cache);
            if awaiting.is_empty() {
                tracing::info!("every node measured");
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    unmeasured = awaiting.len(),
                    first = %awaiting[0],
                    "not every node measured within --ready-wait-for-usage; ready, scoring those on requests"
                );
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
    tracing::info!("ready");
    state.set_ready(true);
}

fn transport(args: &ServeArgs, shutdown: CancellationToken) -> anyhow::Result<Transport> {
    let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) else {
        return Ok(Transport::Plain);
    };
    let resolver = ReloadingCertResolver::new(
        CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        DEFAULT_RELOAD_CHECK,
    )?;
    let client_ca = match &args.tls_client_ca_file {
        Some(path) => read_ca(path)?,
        None => Vec::new(),
    };
    let handle = Arc::new(TlsConfigHandle::new(Arc::new(resolver), client_ca)?);
    let rx = handle.subscribe();
    if let Some(path) = args.tls_client_ca_file.clone() {
        tokio::spawn(reload_client_ca(path, handle, shutdown));
    }
    Ok(Transport::Tls(rx))
}

fn read_ca(path: &Path) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_pem_certs(&pem, &path.display().to_string())?)
}

/// Re-read the client CA bundle now and then, so rotating it needs no restart.
async fn reload_client_ca(
    path: std::path::PathBuf,
    handle: Arc<TlsConfigHandle>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match read_ca(&path).and_then(|ca| Ok(handle.set_client_ca(ca)?)) {
            Ok(true) => tracing::info!(path = %path.display(), "client CA bundle reloaded"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "keeping the previous client CA bundle"),
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}

fn check_policy(path: &Path) -> anyhow::Result<()> {
    let policy = Policy::load(path)?;
    println!("{}: valid", path.display());
    println!(
        "weights: cpu {}, memory {}; default estimate: cpu {}, memory {}",
        policy.weights.cpu,
        policy.weights.memory,
        headroom_common::quantity::format_milli(policy.default_estimate.cpu_milli),
        headroom_extender::explain::format_bytes(policy.default_estimate.memory_bytes)
    );
    let stale = match policy.stale_policy {
        StalePolicy::RequestsOnly => "requests-only",
        StalePolicy::FailCap => "fail-cap",
    };
    println!(
        "stale usage: older than {}s -> {stale}; DaemonSets exempt: {}",
        policy.stale_max_age.as_secs(),
        policy.daemon_sets_exempt
    );
    for (i, rule) in policy.caps.iter().enumerate() {
        let mut selects = Vec::new();
        if !rule.node_names.is_empty() {
            selects.push(format!("nodes {}", rule.node_names.join(",")));
        }
        if !rule.node_labels.is_empty() {
            let labels: Vec<String> = rule
                .node_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            selects.push(format!("labels {}", labels.join(",")));
        }
        let mut limits = Vec::new();
        if let Some(p) = rule.cpu_percent {
            limits.push(format!("cpu {p}%"));
        }
        if let Some(p) = rule.memory_percent {
            limits.push(format!("memory {p}%"));
        }
        let mode = match rule.mode {
            CapMode::Hard => "hard",
            CapMode::Soft => "soft",
        };
        let reason = if rule.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", rule.reason)
        };
        println!(
            "caps[{i}]: {} -> {} {mode}{reason}",
            selects.join(" and "),
            limits.join(", ")
        );
    }
    Ok(())
}

async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Empty};
    use hyper_rustls::ConfigBuilderExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let Some((ns, name)) = args.pod.split_once('/') else {
        bail!("--pod must be NAMESPACE/NAME, got {:?}", args.pod);
    };
    let base = args.server.trim_end_matches('/');
    let format = if args.json { "json" } else { "text" };
    let url = format!("{base}/explain?pod={ns}%2F{name}&format={format}");
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid --server URL {base:?}"))?;

    let builder = rustls::ClientConfig::builder_with_provider(headroom_common::tls::provider())
        .with_safe_default_protocol_versions()?;
    let builder = match &args.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_ca(path)? {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_native_roots()?,
    };
    let tls = match (&args.cert_file, &args.key_file) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let certified = headroom_common::tls::certified_key_from_pem(
                &read(cert)?,
                &read(key)?,
                &format!("--cert-file {}", cert.display()),
            )?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        }
        _ => builder.with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let request = async {
        let response = client.get(uri).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(args.timeout, request)
        .await
        .with_context(|| format!("no answer from {base} within {:?}", args.timeout))?
        .with_context(|| format!("asking {base}"))?;
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        bail!("{base} answered {status}: {}", text.trim());
    }
    print!("{text}");
    if args.json {
        println!();
    }
    Ok(())
}
