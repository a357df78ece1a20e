use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use prometheus::Registry;
use spotwright_serving::health::{serve_health, Readiness};
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{on_signals, Shutdown};
use spotwright_serving::startup;
use spotwright_serving::telemetry;
use spotwright_serving::tls::{acceptor, ReloadingCert, TlsFiles};
use spotwright_webhook::cli::Cli;
use spotwright_webhook::metrics::Metrics;
use spotwright_webhook::mutate::Settings;
use spotwright_webhook::server::{handler, Webhook};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    startup::exit_on_error("spotwright-webhook", run(cli).await);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cli.validate()?;
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let certificate = ReloadingCert::load(TlsFiles {
        cert: cli.tls_cert_file.clone(),
        key: cli.tls_key_file.clone(),
    })
    .context("loading the serving certificate")?;
    let tls = acceptor(certificate.clone()).context("configuring TLS")?;
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

    let (view, synced) = spotwright_webhook::cache::start(client);
    let ready = readiness.clone();
    tokio::spawn(async move {
        synced.await;
        tracing::info!("namespace and NodePool caches synced; ready");
        ready.set(true);
    });
    let reloads = metrics.cert_reloads.clone();
    tokio::spawn(certificate.watch(
        cli.cert_reload_interval(),
        shutdown.clone(),
        move |result| {
            reloads.with_label_values(&[result.as_label()]).inc();
        },
    ));

    let webhook = Arc::new(Webhook {
        view,
        settings: Settings {
            scheduler_name: cli.scheduler_name(),
            own_namespace: cli.namespace.clone(),
        },
        metrics,
        max_request_bytes: cli.max_request_bytes,
    });
    let limits = Limits {
        request_timeout: cli.request_timeout(),
        shutdown_grace: cli.shutdown_grace(),
        ..Limits::default()
    };
    tracing::info!(listen = %cli.listen, metrics = %cli.metrics_listen, "serving");
    serve(listener, Some(tls), handler(webhook), limits, shutdown).await;
    tracing::info!("drained; exiting");
    Ok(())
}
