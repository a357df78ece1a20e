//! The HTTP side: `POST /filter` and `POST /prioritize`, bounded and measured.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use spotwright_serving::body::{self, BodyError};

use crate::answer::{self, Settings};
use crate::index::Index;
use crate::metrics::{Metrics, Outcome, Verb};

/// Where "now" comes from: the system clock, or a fixed instant in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    System,
    /// Unix seconds.
    Fixed(i64),
}

impl Clock {
    /// Unix seconds.
    pub fn now(self) -> i64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Clock::Fixed(t) => t,
        }
    }
}

/// Everything a request needs; shared by all connections.
pub struct Extender {
    pub index: Arc<Index>,
    pub settings: Settings,
    pub metrics: Metrics,
    pub max_request_bytes: usize,
    pub clock: Clock,
}

/// The future a handler returns.
pub type BoxedResponse = std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// The request handler to pass to [`spotwright_serving::http::serve`].
pub fn handler(
    extender: Arc<Extender>,
) -> impl Fn(Request<Incoming>) -> BoxedResponse + Clone + Send + Sync + 'static {
    move |request| {
        let extender = extender.clone();
        Box::pin(async move { extender.handle(request).await })
    }
}

impl Extender {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let verb = match request.uri().path() {
            "/filter" => Verb::Filter,
            "/prioritize" => Verb::Prioritize,
            _ => {
                return body::text(
                    StatusCode::NOT_FOUND,
                    "not found: the extender serves POST /filter and POST /prioritize",
                )
            }
        };
        if request.method() != Method::POST {
            return body::text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("/{} takes POST", verb.as_label()),
            );
        }
        let started = Instant::now();
        let (outcome, response) = match body::read_bounded(request, self.max_request_bytes).await {
            Err(err) => {
                let outcome = match err {
                    BodyError::TooLarge { .. } => Outcome::BadRequest,
                    BodyError::Read(_) => Outcome::Error,
                };
                (outcome, body::text(err.status(), err.to_string()))
            }
            Ok(bytes) => self.answer(verb, &bytes),
        };
        self.metrics
            .record(verb, outcome, started.elapsed().as_secs_f64());
        response
    }

    /// Answers one call from its body; the status and the metric outcome.
    pub fn answer(&self, verb: Verb, bytes: &[u8]) -> (Outcome, Response<Full<Bytes>>) {
        let result = match verb {
            Verb::Filter => answer::filter(bytes, &self.index, &self.settings, self.clock.now())
                .map(|answer| {
                    self.metrics.record_rejections(&answer.rejected);
                    tracing::debug!(
                        passed = answer.passed,
                        rejected = answer.rejected.iter().sum::<u64>(),
                        "filtered"
                    );
                    answer.body
                }),
            Verb::Prioritize => {
                answer::prioritize_steering(bytes, &self.index, &self.settings, self.clock.now())
                    .map(|(reply, steering)| {
                        self.metrics.record_steering(steering);
                        tracing::debug!(scores = %String::from_utf8_lossy(&reply), "prioritized");
                        reply
                    })
            }
        };
        match result {
            Ok(reply) => (Outcome::Ok, body::json(StatusCode::OK, reply)),
            Err(err) => {
                tracing::warn!(verb = verb.as_label(), error = %err, "bad extender request");
                (
                    Outcome::BadRequest,
                    body::text(StatusCode::BAD_REQUEST, err.to_string()),
                )
            }
        }
    }
}
