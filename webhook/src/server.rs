//! The HTTP side of the webhook: `POST /mutate`, bounded, measured.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use spotwright_serving::body;

use crate::metrics::Metrics;
use crate::mutate::{ClusterView, Settings};
use crate::review;

/// Everything a request needs; shared by all connections.
pub struct Webhook<V> {
    pub view: V,
    pub settings: Settings,
    pub metrics: Metrics,
    pub max_request_bytes: usize,
}

/// The request handler to pass to [`spotwright_serving::http::serve`].
pub fn handler<V>(
    webhook: Arc<Webhook<V>>,
) -> impl Fn(Request<Incoming>) -> BoxedResponse + Clone + Send + Sync + 'static
where
    V: ClusterView + Send + Sync + 'static,
{
    move |request| {
        let webhook = webhook.clone();
        Box::pin(async move { webhook.handle(request).await })
    }
}

/// The future a handler returns.
pub type BoxedResponse = std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

impl<V: ClusterView> Webhook<V> {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/mutate" {
            return body::text(
                StatusCode::NOT_FOUND,
                "not found: the webhook serves POST /mutate",
            );
        }
        if request.method() != Method::POST {
            return body::text(StatusCode::METHOD_NOT_ALLOWED, "/mutate takes POST");
        }
        let started = Instant::now();
        let response = match body::read_bounded(request, self.max_request_bytes).await {
            Err(err) => {
                self.metrics.record_error();
                body::text(err.status(), err.to_string())
            }
            Ok(bytes) => match review::answer(&bytes, &self.view, &self.settings) {
                Ok(answer) => {
                    self.metrics.record(&answer.decision);
                    tracing::debug!(decision = ?answer.decision, "admission answered");
                    body::json(StatusCode::OK, answer.body)
                }
                Err(err) => {
                    self.metrics.record_error();
                    tracing::warn!(error = %err, "bad admission request");
                    body::text(StatusCode::BAD_REQUEST, err.to_string())
                }
            },
        };
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        response
    }
}
