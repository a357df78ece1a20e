use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use prometheus::Registry;
use spotwright_api::prices::PriceCatalog;
use spotwright_extender::cli::Cli;
use spotwright_extender::index::Index;
use spotwright_extender::metrics::Metrics;
use spotwright_extender::server::{handler, Clock, Extender};
use spotwright_serving::health::{serve_health, Readiness};
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{on_signals, Shutdown};
use spotwright_serving::startup;
use spotwright_serving::telemetry;
use spotwright_serving::tls::{acceptor, ReloadingCert};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    startup::exit_on_error("spotwright-extender", run(cli).await);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cli.validate()?;
    let catalog = PriceCatalog::embedded().context("reading the embedded price snapshot")?;
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let certificate = match cli.tls_files() {
        Some(files) => Some(ReloadingCert::load(files).context("loading the serving certificate")?),
        None => None,
    };
    let tls = match &certificate {
        Some(certificate) => Some(acceptor(certificate.clone()).context("configuring TLS")?),
        None => None,
    };
    let listener = startup::bind("listen", cli.listen).await?;
    let metrics_listener = startup::bind("metrics-listen", cli.metrics_listen).await?;
    let client = startup::kube_client().await?;

    let (trigger, shutdown) = Shutdown::new();
    on_signals(trigger).context("installing signal handlers")?;
    let readiness = Readiness::default();
    tokio::spawn(serve_health(
        metrics_listener,
        registry,
        readiness.clone(),
        shutdown.clone(),
    ));

    let settings = cli.settings();
    let index = Arc::new(Index::new(catalog));
    let synced = spotwright_extender::cache::start(
        client,
        index.clone(),
        metrics.clone(),
        settings.interruption_window,
    );
    let ready = readiness.clone();
    tokio::spawn(async move {
        synced.await;
        tracing::info!("node, pod, NodeClaim and interruption caches synced; ready");
        ready.set(true);
    });
    if let Some(certificate) = certificate {
        let reloads = metrics.cert_reloads.clone();
        tokio::spawn(certificate.watch(
            cli.cert_reload_interval(),
            shutdown.clone(),
            move |result| {
                reloads.with_label_values(&[result.as_label()]).inc();
            },
        ));
    }

    let extender = Arc::new(Extender {
        index,
        settings,
        metrics,
        max_request_bytes: cli.max_request_bytes,
        clock: Clock::System,
    });
    let limits = Limits {
        request_timeout: cli.request_timeout(),
        shutdown_grace: cli.shutdown_grace(),
        ..Limits::default()
    };
    tracing::info!(
        listen = %cli.listen,
        metrics = %cli.metrics_listen,
        tls = tls.is_some(),
        prices = catalog.len(),
        "serving"
    );
    serve(listener, tls, handler(extender), limits, shutdown).await;
    tracing::info!("drained; exiting");
    Ok(())
}
