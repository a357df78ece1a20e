//! Serving HTTP/1.1 and HTTP/2, over TLS or plain, with every request
//! bounded in time and every connection drained on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::body;
use crate::shutdown::Shutdown;

/// Bounds every server applies.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deadline for one request, body read included.
    pub request_timeout: Duration,
    /// Deadline for a client to send its request headers.
    pub header_read_timeout: Duration,
    /// Deadline for a TLS handshake.
    pub handshake_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(15),
            max_concurrent_streams: 256,
        }
    }
}

/// Serves `handler` on `listener` until `shutdown`, then drains the open
/// connections for at most `limits.shutdown_grace`.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, tls.clone(), handler.clone(), limits, shutdown.clone()));
                }
                Err(err) => {
                    // Usually out of file descriptors: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.wait() => break,
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown grace elapsed; closing the remaining connections"
        );
        connections.abort_all();
    }
}

async fn serve_connection<H, F>(
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    match tls {
        None => drive(TokioIo::new(stream), handler, limits, shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => drive(TokioIo::new(stream), handler, limits, shutdown).await,
                Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn drive<I, H, F>(io: TokioIo<I>, handler: H, limits: Limits, mut shutdown: Shutdown)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |request| {
        let response = handler(request);
        async move {
            let response = match tokio::time::timeout(limits.request_timeout, response).await {
                Ok(response) => response,
                Err(_) => body::text(StatusCode::SERVICE_UNAVAILABLE, "request deadline exceeded"),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        }
        _ = shutdown.wait() => {
            connection.as_mut().graceful_shutdown();
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error while draining");
            }
        }
    }
}
