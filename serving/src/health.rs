//! The plain-HTTP side listener every program has: `GET /metrics`
//! (Prometheus text), `/healthz` (the process is alive) and `/readyz`
//! (its caches have synced and it can serve).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::body;
use crate::http::{serve, Limits};
use crate::shutdown::Shutdown;

/// Whether a program is ready to serve; false until it says so.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until shutdown.
pub async fn serve_health(
    listener: TcpListener,
    registry: Registry,
    readiness: Readiness,
    shutdown: Shutdown,
) {
    let handler = move |request: Request<Incoming>| {
        let response = respond(&request, &registry, &readiness, &shutdown);
        async move { response }
    };
    serve(
        listener,
        None,
        handler,
        Limits::default(),
        Shutdown::never(),
    )
    .await
}

fn respond(
    request: &Request<Incoming>,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return body::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here");
    }
    match request.uri().path() {
        "/metrics" => metrics(registry),
        "/healthz" => body::text(StatusCode::OK, "ok"),
        "/readyz" if shutdown.is_triggered() => {
            body::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
        "/readyz" if readiness.is_ready() => body::text(StatusCode::OK, "ready"),
        "/readyz" => body::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches have not synced",
        ),
        _ => body::text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz",
        ),
    }
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let encoder = TextEncoder::new();
    let mut buffer = Vec::with_capacity(4096);
    match encoder.encode(&registry.gather(), &mut buffer) {
        Ok(()) => body::with_type(StatusCode::OK, prometheus::TEXT_FORMAT, Bytes::from(buffer)),
        Err(err) => body::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics encoding failed: {err}"),
        ),
    }
}
