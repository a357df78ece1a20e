//! The webhook's HTTPS server with a fixed cluster view, for load tests
//! without an API server: the same TLS, HTTP, handler and decision code as
//! `spotwright-webhook`; only the watch-fed caches are replaced by a map.
//!
//! `load_target <listen> <cert> <key>`; namespaces `team-spot` (spot) and
//! `plain` (not opted in).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use prometheus::Registry;
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{on_signals, Shutdown};
use spotwright_serving::tls::{acceptor, ReloadingCert, TlsFiles};
use spotwright_webhook::metrics::Metrics;
use spotwright_webhook::mutate::{NamespaceFacts, Settings};
use spotwright_webhook::server::{handler, Webhook};
use spotwright_webhook::view::StaticView;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    let mut namespaces = BTreeMap::new();
    namespaces.insert(
        "team-spot".to_owned(),
        NamespaceFacts {
            capacity: Some("spot".into()),
            nodepool: None,
        },
    );
    namespaces.insert("plain".to_owned(), NamespaceFacts::default());
    let registry = Registry::new();
    let webhook = Arc::new(Webhook {
        view: StaticView {
            namespaces,
            nodepools: BTreeMap::new(),
        },
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
    Ok(())
}
