//! `spotwright-fault-proxy`: an HTTP/1.1 reverse proxy in front of moto that
//! fails EC2 `CreateFleet` overrides for chosen instance types with
//! `InsufficientInstanceCapacity`, as EC2 does for an `instant` fleet, and
//! forwards everything else unchanged.
//!
//! Only `Type=instant` fleets are faulted (EC2 reports per-override errors
//! only for those); with overrides left, the request is forwarded without
//! the faulted ones and moto's instances are merged into the answer. A
//! `CreateFleet` whose list indices do not parse is refused with 400 while a
//! fault is armed (the proxy could not tell what to fail).
//!
//! Control endpoints (answered by the proxy, never forwarded):
//! - `POST /_fault/insufficient-capacity`, body a comma list of instance
//!   types (empty clears): the types without capacity from now on.
//! - `GET /_fault/insufficient-capacity`: that list, as JSON.
//! - `GET /_fault/calls`: `{"create_fleet_calls", "faulted_calls",
//!   "faults_injected", "insufficient_capacity"}`.
//! - `POST /_fault/reset`: zeroes the counters.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use spotwright_e2e::fault::fleet::{decide, Decision};
use spotwright_e2e::fault::form::Form;
use spotwright_e2e::fault::state::{parse_type_list, FaultState};
use spotwright_e2e::fault::{all_faulted_reply, merge_reply, xml, FaultError};
use spotwright_serving::telemetry::{self, LogFormat};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "spotwright-fault-proxy",
    about = "Reverse proxy to moto that fails CreateFleet overrides with InsufficientInstanceCapacity"
)]
struct Cli {
    /// Address to listen on.
    #[arg(
        long,
        env = "SPOTWRIGHT_FAULT_PROXY_LISTEN",
        default_value = "127.0.0.1:15001"
    )]
    listen: SocketAddr,
    /// Base URL every request is forwarded to (plain http).
    #[arg(
        long,
        env = "SPOTWRIGHT_FAULT_PROXY_UPSTREAM",
        default_value = "http://127.0.0.1:15000"
    )]
    upstream: Uri,
    /// Comma-separated instance types without capacity at start.
    #[arg(
        long,
        env = "SPOTWRIGHT_FAULT_PROXY_INSUFFICIENT_CAPACITY",
        default_value = ""
    )]
    insufficient_capacity: String,
    /// Largest request or response body accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Time allowed to read a request, and for moto to answer, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    #[arg(
        long,
        env = "SPOTWRIGHT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

/// Control-endpoint bodies are instance type lists: small.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus
/// Content-Length, which is recomputed from the (possibly rewritten) body.
const HOP_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Proxy {
    state: FaultState,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Uri,
    max_body: usize,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("timed out reading the request")]
    RequestTimeout,
    #[error("reading the request: {0}")]
    Read(String),
    #[error("bad fault-control request: {0}")]
    Control(FaultError),
    #[error("unreadable CreateFleet request: {0}")]
    CreateFleet(FaultError),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    #[error("upstream answer: {0}")]
    UpstreamShape(FaultError),
    #[error("no such fault-control endpoint")]
    NotFound,
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Read(_) | Self::Control(_) | Self::CreateFleet(_) => StatusCode::BAD_REQUEST,
            Self::Upstream(_) | Self::UpstreamShape(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// An EC2-style error document, so an SDK caller sees the reason.
    fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let code = match self {
            Self::CreateFleet(_) | Self::Control(_) => "InvalidParameterValue",
            _ => "FaultProxyError",
        };
        let body = xml::ec2_error(code, &format!("spotwright-fault-proxy: {self}"), request_id);
        reply(self.status(), "text/xml;charset=UTF-8", body)
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, "application/json", value.to_string())
}

fn strip_hop_headers(headers: &mut HeaderMap) {
    for name in HOP_HEADERS {
        headers.remove(name);
    }
    headers.remove(header::CONTENT_LENGTH);
}

impl Proxy {
    /// Reads a whole body, bounded in size and time.
    async fn read_body(&self, body: Incoming, limit: usize) -> Result<Bytes, ProxyError> {
        let collect = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.timeout, collect).await {
            Err(_) => Err(ProxyError::RequestTimeout),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                Err(ProxyError::TooLarge(limit))
            }
            Ok(Err(err)) => Err(ProxyError::Read(err.to_string())),
        }
    }

    /// Sends the request to moto and returns its whole answer.
    async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ProxyError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!(
            "{}{}",
            self.upstream.to_string().trim_end_matches('/'),
            path
        )
        .parse::<Uri>()
        .map_err(|e| ProxyError::Upstream(format!("bad upstream URI: {e}")))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        // Headers go as they came (Host and the SigV4 Authorization
        // included): moto reads the region from the credential scope.
        *request.headers_mut() = parts.headers.clone();
        strip_hop_headers(request.headers_mut());
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ProxyError::Upstream(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| ProxyError::Upstream(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProxyError::UpstreamTimeout(self.timeout))?
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, ProxyError> {
        let (parts, body) = request.into_parts();
        if let Some(endpoint) = parts.uri.path().strip_prefix("/_fault/") {
            return self.control(&parts.method, endpoint, body).await;
        }
        if let Some(length) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            // Refuse early rather than read what we would drop anyway.
            if length > self.max_body {
                return Err(ProxyError::TooLarge(self.max_body));
            }
        }
        let body = self.read_body(body, self.max_body).await?;
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if parts.method == Method::POST && is_form {
            // A body that is not a valid form is not ours to judge: moto
            // answers it as it would without us.
            if let Ok(form) = Form::parse(&body) {
                if form.get("Action") == Some("CreateFleet") {
                    return self.create_fleet(&parts, body, &form).await;
                }
            }
        }
        let (status, headers, body) = self.forward(&parts, body).await?;
        Ok(upstream_response(status, headers, body))
    }

    async fn create_fleet(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        form: &Form,
    ) -> Result<Response<Full<Bytes>>, ProxyError> {
        self.state.record_create_fleet();
        let (fleet, decision) =
            decide(form, &self.state.insufficient()).map_err(ProxyError::CreateFleet)?;
        match decision {
            Decision::PassThrough => {
                let (status, headers, body) = self.forward(parts, body).await?;
                Ok(upstream_response(status, headers, body))
            }
            Decision::AllFaulted(faulted) => {
                self.state.record_faults(faulted.len());
                tracing::info!(
                    faults = faulted.len(),
                    "CreateFleet: every override faulted"
                );
                Ok(reply(
                    StatusCode::OK,
                    "text/xml;charset=UTF-8",
                    all_faulted_reply(&self.state, &fleet, &faulted),
                ))
            }
            Decision::Partial { faulted, body } => {
                let (status, headers, upstream) = self.forward(parts, Bytes::from(body)).await?;
                if status != StatusCode::OK {
                    // moto refused the rest of the request: its error says
                    // more than our faults would.
                    tracing::warn!(%status, "CreateFleet: upstream refused the non-faulted overrides");
                    return Ok(upstream_response(status, headers, upstream));
                }
                let text = String::from_utf8_lossy(&upstream);
                let merged = merge_reply(&self.state, &fleet, &faulted, &text)
                    .map_err(ProxyError::UpstreamShape)?;
                self.state.record_faults(faulted.len());
                tracing::info!(
                    faults = faulted.len(),
                    "CreateFleet: some overrides faulted, the rest forwarded"
                );
                Ok(reply(StatusCode::OK, "text/xml;charset=UTF-8", merged))
            }
        }
    }

    async fn control(
        &self,
        method: &Method,
        endpoint: &str,
        body: Incoming,
    ) -> Result<Response<Full<Bytes>>, ProxyError> {
        match (method, endpoint) {
            (&Method::GET, "calls") => Ok(json(&self.state.calls_json())),
            (&Method::GET, "insufficient-capacity") => {
                Ok(json(&serde_json::json!(self.state.insufficient())))
            }
            (&Method::POST, "insufficient-capacity") => {
                let body = self.read_body(body, MAX_CONTROL_BODY).await?;
                let text = std::str::from_utf8(&body)
                    .map_err(|_| ProxyError::Control(FaultError::NotUtf8))?;
                let types = parse_type_list(text).map_err(ProxyError::Control)?;
                tracing::info!(types = ?types, "insufficient capacity set");
                self.state.set_insufficient(types);
                Ok(json(&self.state.calls_json()))
            }
            (&Method::POST, "reset") => {
                self.state.reset_counters();
                Ok(json(&self.state.calls_json()))
            }
            _ => Err(ProxyError::NotFound),
        }
    }
}

/// `e` and its sources, since hyper's client errors say only "client error
/// (Connect)" at the top and the cause (refused, timed out) below.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn upstream_response(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response<Full<Bytes>> {
    strip_hop_headers(&mut headers);
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Err(err) = run(cli).await {
        eprintln!("spotwright-fault-proxy: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.upstream.scheme_str() != Some("http") || cli.upstream.authority().is_none() {
        anyhow::bail!(
            "--upstream must be an http://host:port URL, got {}",
            cli.upstream
        );
    }
    let insufficient =
        parse_type_list(&cli.insufficient_capacity).context("--insufficient-capacity")?;
    let timeout = Duration::from_millis(cli.timeout_ms);
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    let proxy = Arc::new(Proxy {
        state: FaultState::new(insufficient),
        client: Client::builder(TokioExecutor::new()).build(connector),
        upstream: cli.upstream.clone(),
        max_body: cli.max_body_bytes,
        timeout,
    });
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    tracing::info!(listen = %cli.listen, upstream = %cli.upstream, "fault proxy ready");
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted, exiting");
                return Ok(());
            }
        };
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let proxy = Arc::clone(&proxy);
                async move {
                    let request_id = proxy.state.new_id("");
                    let response = match proxy.handle(request).await {
                        Ok(response) => response,
                        Err(err) => {
                            tracing::warn!(error = %err, "request failed");
                            err.into_response(&request_id)
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // A client that never finishes its headers is dropped.
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
}
