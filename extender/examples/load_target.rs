//! The extender's server over a synthetic index, for load tests without an
//! API server: the same HTTP serving, handler, index and decision code as
//! `spotwright-extender`; only the watches are replaced by a generated
//! cluster of 5,000 nodes and 50,000 bound pods.
//!
//! `load_target <listen> <body-file> [<cert> <key>]` writes an
//! `ExtenderArgs` body naming all 5,000 nodes to `<body-file>`, then serves
//! (HTTPS when a certificate is given) until SIGTERM or SIGINT, and prints
//! its memory and its own latency quantiles per verb.

use std::sync::Arc;

use anyhow::Context;
use prometheus::core::Metric;
use prometheus::Registry;
use spotwright_extender::answer::Settings;
use spotwright_extender::fixtures::{args_with_names, synthetic, NOW};
use spotwright_extender::metrics::{Metrics, Outcome, Verb};
use spotwright_extender::server::{handler, Clock, Extender};
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{on_signals, Shutdown};
use spotwright_serving::tls::{acceptor, ReloadingCert, TlsFiles};

const NODES: usize = 5_000;
const PODS: usize = 50_000;

/// `VmRSS` or `VmHWM` of this process, in KiB.
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotwright_serving::telemetry::init(spotwright_serving::telemetry::LogFormat::Text);
    let args: Vec<String> = std::env::args().collect();
    let (listen, body_file, tls_files) = match args.as_slice() {
        [_, listen, body] => (listen, body, None),
        [_, listen, body, cert, key] => (
            listen,
            body,
            Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
        ),
        _ => anyhow::bail!("usage: load_target <listen> <body-file> [<cert> <key>]"),
    };
    let before = memory_kib("VmRSS:");
    let cluster = synthetic(NODES, PODS, 42);
    let after = memory_kib("VmRSS:");
    let sizes = cluster.index.sizes();
    eprintln!(
        "index: {} nodes, {} pods, {} NodeClaims; RSS {} MiB before, {} MiB after building it",
        sizes.nodes,
        sizes.pods,
        sizes.nodeclaims,
        before / 1024,
        after / 1024
    );
    std::fs::write(body_file, args_with_names(&cluster.names))
        .with_context(|| format!("writing {body_file}"))?;

    let tls = match tls_files {
        Some(files) => Some(acceptor(ReloadingCert::load(files)?)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let registry = Registry::new();
    let extender = Arc::new(Extender {
        index: Arc::new(cluster.index),
        settings: Settings::default(),
        metrics: Metrics::register(&registry)?,
        max_request_bytes: 16 << 20,
        clock: Clock::Fixed(NOW),
    });
    let (trigger, shutdown) = Shutdown::new();
    on_signals(trigger)?;
    serve(
        listener,
        tls,
        handler(extender.clone()),
        Limits::default(),
        shutdown,
    )
    .await;

    eprintln!("peak RSS: {} MiB", memory_kib("VmHWM:") / 1024);
    for verb in [Verb::Filter, Verb::Prioritize] {
        let ok = extender.metrics.count(verb, Outcome::Ok);
        let failed = extender.metrics.count(verb, Outcome::BadRequest)
            + extender.metrics.count(verb, Outcome::Error);
        let histogram = extender
            .metrics
            .duration
            .with_label_values(&[verb.as_label()])
            .metric();
        let buckets = histogram.get_histogram().get_bucket();
        let total = histogram.get_histogram().get_sample_count().max(1) as f64;
        let mean = histogram.get_histogram().get_sample_sum() / total;
        // Server-side time per call (body read to reply), from the histogram's buckets.
        let quantile = |q: f64| {
            buckets
                .iter()
                .find(|b| b.cumulative_count() as f64 >= q * total)
                .map_or("inf".to_owned(), |b| {
                    format!("{:.0}", b.upper_bound() * 1e6)
                })
        };
        eprintln!(
            "{}: {ok} ok, {failed} failed; server-side mean {:.0} us, p50 <= {} us, p99 <= {} us",
            verb.as_label(),
            mean * 1e6,
            quantile(0.5),
            quantile(0.99)
        );
    }
    Ok(())
}
