//! The webhook's HTTPS server with a fixed cluster view, for load tests
//! without an API server: the same TLS, HTTP, handler and decision code as
//! `spotwright-webhook`; only the watch-fed caches are replaced by a map.
//!
//! `load_target <listen> <cert> <key>`; namespaces `team-spot` (spot) and
//! `plain` (not opted in).

use std::sync::Arc;

use anyhow::Context;
use prometheus::core::Metric;
use prometheus::Registry;
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{on_signals, Shutdown};
use spotwright_serving::tls::{acceptor, ReloadingCert, TlsFiles};
use spotwright_webhook::metrics::Metrics;
use spotwright_webhook::mutate::Settings;
use spotwright_webhook::server::{handler, Webhook};
use spotwright_webhook::view::StaticView;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotwright_serving::telemetry::init(spotwright_serving::telemetry::LogFormat::Text);
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: load_target <listen> <cert> <key>");
    };
    let certificate = ReloadingCert::load(TlsFiles {
        cert: cert.into(),
        key: key.into(),
    })?;
    let tls = acceptor(certificate)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let registry = Registry::new();
    let webhook = Arc::new(Webhook {
        view: StaticView::with_capacities(&[("team-spot", Some("spot")), ("plain", None)]),
        settings: Settings::default(),
        metrics: Metrics::register(&registry)?,
        max_request_bytes: 3 * 1024 * 1024,
    });
    let (trigger, shutdown) = Shutdown::new();
    on_signals(trigger)?;
    serve(
        listener,
        Some(tls),
        handler(webhook.clone()),
        Limits::default(),
        shutdown,
    )
    .await;
    let answered: u64 = ["mutated", "unchanged", "skipped", "invalid", "error"]
        .iter()
        .map(|o| webhook.metrics.admissions.with_label_values(&[o]).get())
        .sum();
    eprintln!("answered {answered} admissions");
    // Server-side time per admission (body read to response), from the histogram's buckets.
    let histogram = webhook.metrics.duration.metric();
    let buckets = histogram.get_histogram().get_bucket();
    let total = histogram.get_histogram().get_sample_count().max(1) as f64;
    for quantile in [0.5, 0.99, 0.999] {
        let bound = buckets
            .iter()
            .find(|b| b.cumulative_count() as f64 >= quantile * total)
            .map(|b| b.upper_bound() * 1e6);
        eprintln!(
            "server-side p{}: <= {} us",
            quantile * 100.0,
            bound.map_or("inf".to_owned(), |b| format!("{b:.0}"))
        );
    }
    Ok(())
}
