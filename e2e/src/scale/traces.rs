//! The API server's own timing of each webhook call, from its traces.
//!
//! `apiserver_admission_webhook_admission_duration_seconds` has 5 ms as its
//! first bucket, so a sub-millisecond p50 cannot be read from it. The API
//! server also records every webhook call as an OpenTelemetry span
//! (`Call mutating webhook`, with the webhook's name), around the same call
//! the histogram times. With a tracing configuration whose sampling rate is
//! 0 it exports only the requests that arrive with a sampled `traceparent`
//! from a privileged client (the harness's admin), so tracing costs nothing
//! during the burst. This is a minimal OTLP/gRPC trace receiver for those
//! spans: HTTP/2 without TLS, the `Export` call only, the protobuf read by
//! hand for the few fields needed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::figures::quantiles;

/// The span the API server wraps each mutating webhook call in.
pub const MUTATING_WEBHOOK_SPAN: &str = "Call mutating webhook";
/// Largest export accepted: the API server sends batches of at most 512 spans.
const MAX_EXPORT_BYTES: usize = 8 << 20;
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// One span, reduced to what the bench reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRecord {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// String attributes only.
    pub attributes: Vec<(String, String)>,
    /// The span's events (name, time), e.g. the API server's "Request
    /// completed" between the webhook's answer and applying its patch.
    pub events: Vec<(String, u64)>,
}

impl SpanRecord {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn millis(&self) -> f64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos) as f64 / 1e6
    }

    /// Milliseconds from the span's start to its first event named `event`.
    pub fn millis_to(&self, event: &str) -> Option<f64> {
        let (_, at) = self.events.iter().find(|(name, _)| name == event)?;
        Some(at.saturating_sub(self.start_unix_nanos) as f64 / 1e6)
    }
}

/// The spans received so far.
pub type Received = Arc<Mutex<Vec<SpanRecord>>>;

/// Serves OTLP/gRPC trace exports on `addr` until the process ends,
/// collecting every span into the returned list.
pub async fn receive(addr: SocketAddr) -> std::io::Result<Received> {
    let listener = TcpListener::bind(addr).await?;
    let received = Received::default();
    let spans = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let spans = spans.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| export(request, spans.clone()));
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.timer(TokioTimer::new()).max_concurrent_streams(16);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(received)
}

type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn export(
    request: Request<Incoming>,
    spans: Received,
) -> Result<Response<GrpcBody>, Infallible> {
    if request.uri().path() != EXPORT_PATH {
        return Ok(grpc_reply(12, "only TraceService/Export is served"));
    }
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(request.into_body(), MAX_EXPORT_BYTES).collect(),
    )
    .await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) => return Ok(grpc_reply(8, &format!("export unreadable: {err}"))),
        Err(_) => return Ok(grpc_reply(4, "export not read within 10 s")),
    };
    match decode_export(&body) {
        Ok(mut decoded) => {
            if let Ok(mut all) = spans.lock() {
                all.append(&mut decoded);
            }
            Ok(grpc_reply(0, ""))
        }
        Err(err) => Ok(grpc_reply(3, &err.to_string())),
    }
}

/// A gRPC reply: an empty `ExportTraceServiceResponse` and the status in
/// the trailers (`code` 0 is OK).
fn grpc_reply(code: u8, message: &str) -> Response<GrpcBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(value) = HeaderValue::from_str(message) {
        if !message.is_empty() {
            trailers.insert("grpc-message", value);
        }
    }
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = Response::new(StreamBody::new(futures::stream::iter(frames)));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// Why an export could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("gRPC frame: {0}")]
    Frame(&'static str),
    #[error("compressed gRPC messages are not supported")]
    Compressed,
    #[error("protobuf: {0}")]
    Protobuf(&'static str),
}

/// The spans of one gRPC request body holding an `ExportTraceServiceRequest`.
pub fn decode_export(body: &[u8]) -> Result<Vec<SpanRecord>, TraceError> {
    let mut spans = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (&compressed, after) = rest.split_first().ok_or(TraceError::Frame("empty"))?;
        let length = after
            .get(..4)
            .ok_or(TraceError::Frame("no length"))?
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        let message = after
            .get(4..4 + length)
            .ok_or(TraceError::Frame("shorter than its length"))?;
        if compressed != 0 {
            return Err(TraceError::Compressed);
        }
        for resource_spans in fields_numbered(message, 1) {
            for scope_spans in fields_numbered(resource_spans?, 2) {
                for span in fields_numbered(scope_spans?, 2) {
                    spans.push(span_record(span?)?);
                }
            }
        }
        rest = &after[4 + length..];
    }
    Ok(spans)
}

fn span_record(span: &[u8]) -> Result<SpanRecord, TraceError> {
    let mut record = SpanRecord {
        trace_id: Vec::new(),
        span_id: Vec::new(),
        name: String::new(),
        start_unix_nanos: 0,
        end_unix_nanos: 0,
        attributes: Vec::new(),
        events: Vec::new(),
    };
    for field in Fields(span) {
        match field? {
            (1, Value::Bytes(id)) => record.trace_id = id.to_vec(),
            (2, Value::Bytes(id)) => record.span_id = id.to_vec(),
            (5, Value::Bytes(name)) => record.name = String::from_utf8_lossy(name).into_owned(),
            (7, Value::Fixed64(at)) => record.start_unix_nanos = at,
            (8, Value::Fixed64(at)) => record.end_unix_nanos = at,
            (9, Value::Bytes(key_value)) => record.attributes.extend(string_attribute(key_value)?),
            (11, Value::Bytes(event)) => record.events.extend(span_event(event)?),
            _ => {}
        }
    }
    Ok(record)
}

/// A `Span.Event`'s name and time, if it has both.
fn span_event(event: &[u8]) -> Result<Option<(String, u64)>, TraceError> {
    let (mut at, mut name) = (None, None);
    for field in Fields(event) {
        match field? {
            (1, Value::Fixed64(t)) => at = Some(t),
            (2, Value::Bytes(n)) => name = Some(String::from_utf8_lossy(n).into_owned()),
            _ => {}
        }
    }
    Ok(name.zip(at))
}

/// A `KeyValue` whose `AnyValue` is a string.
fn string_attribute(key_value: &[u8]) -> Result<Option<(String, String)>, TraceError> {
    let (mut key, mut value) = (None, None);
    for field in Fields(key_value) {
        match field? {
            (1, Value::Bytes(k)) => key = Some(String::from_utf8_lossy(k).into_owned()),
            (2, Value::Bytes(any)) => {
                for inner in Fields(any) {
                    if let (1, Value::Bytes(s)) = inner? {
                        value = Some(String::from_utf8_lossy(s).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(key.zip(value))
}

/// One protobuf field's value, by wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one protobuf message, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u32, Value<'a>), TraceError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| TraceError::Protobuf("field number"))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take_array()?)),
            2 => {
                let length =
                    usize::try_from(self.varint()?).map_err(|_| TraceError::Protobuf("length"))?;
                Value::Bytes(self.take(length)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take_array()?)),
            _ => return Err(TraceError::Protobuf("unsupported wire type")),
        };
        Ok((number, value))
    }

    fn varint(&mut self) -> Result<u64, TraceError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .0
                .split_first()
                .ok_or(TraceError::Protobuf("truncated varint"))?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TraceError::Protobuf("varint too long"))
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], TraceError> {
        if self.0.len() < length {
            return Err(TraceError::Protobuf("truncated field"));
        }
        let (taken, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], TraceError> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }
}

/// The length-delimited fields numbered `number` of `message`.
fn fields_numbered(message: &[u8], number: u32) -> impl Iterator<Item = Result<&[u8], TraceError>> {
    Fields(message).filter_map(move |field| match field {
        Ok((n, Value::Bytes(bytes))) if n == number => Some(Ok(bytes)),
        Ok(_) => None,
        Err(err) => Some(Err(err)),
    })
}

/// The API server's event on a webhook call's span once the answer is read.
pub const ANSWER_READ_EVENT: &str = "Request completed";

/// The webhook calls among `spans` (those of the probes' traces), in
/// milliseconds: the whole call, the part until the answer was read and the
/// rest (decoding the answer, applying the patch), and the p50 of every
/// other span by name (the probe's whole request, the API server's HTTP
/// client, etcd reads).
pub fn call_figures(spans: &[SpanRecord]) -> serde_json::Value {
    let round = |x: f64| (x * 1e3).round() / 1e3;
    let calls: Vec<&SpanRecord> = spans
        .iter()
        .filter(|s| s.name == MUTATING_WEBHOOK_SPAN)
        .collect();
    let whole: Vec<f64> = calls.iter().map(|s| s.millis()).collect();
    let to_answer: Vec<f64> = calls
        .iter()
        .filter_map(|s| s.millis_to(ANSWER_READ_EVENT))
        .collect();
    let after_answer: Vec<f64> = calls
        .iter()
        .filter_map(|s| Some(s.millis() - s.millis_to(ANSWER_READ_EVENT)?))
        .collect();
    let mut others: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for span in spans.iter().filter(|s| s.name != MUTATING_WEBHOOK_SPAN) {
        others.entry(&span.name).or_default().push(span.millis());
    }
    let others: BTreeMap<&str, f64> = others
        .into_iter()
        .map(|(name, millis)| (name, round(quantiles(&millis).p50)))
        .collect();
    let q = quantiles(&whole);
    serde_json::json!({
        "spans": whole.len(), "p50": round(q.p50), "p90": round(q.p90), "max": round(q.max),
        "to_answer_p50": round(quantiles(&to_answer).p50),
        "after_answer_p50": round(quantiles(&after_answer).p50),
        "other_spans_p50": others,
    })
}

/// A W3C `traceparent` header for a new, sampled trace: `seed` makes its IDs.
pub fn sampled_traceparent(seed: u64) -> (String, Vec<u8>) {
    let trace_id: Vec<u8> = seed
        .to_be_bytes()
        .iter()
        .chain(0x5057_u64.wrapping_add(seed).to_be_bytes().iter())
        .copied()
        .collect();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let span_id = (seed | 1).to_be_bytes();
    (
        format!("00-{}-{}-01", hex(&trace_id), hex(&span_id)),
        trace_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protobuf encoding, enough to build test exports.
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(number) << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn fixed64_field(number: u32, value: u64, out: &mut Vec<u8>) {
        varint(u64::from(number) << 3 | 1, out);
        out.extend_from_slice(&value.to_le_bytes());
    }

    fn span(name: &str, start: u64, end: u64, webhook: &str) -> Vec<u8> {
        let mut any = Vec::new();
        bytes_field(1, webhook.as_bytes(), &mut any);
        let mut key_value = Vec::new();
        bytes_field(1, b"webhook", &mut key_value);
        bytes_field(2, &any, &mut key_value);
        let mut span = Vec::new();
        bytes_field(1, &[7; 16], &mut span);
        bytes_field(2, &[9; 8], &mut span);
        varint(4 << 3, &mut span); // kind, a varint: skipped
        varint(2, &mut span);
        bytes_field(5, name.as_bytes(), &mut span);
        fixed64_field(7, start, &mut span);
        fixed64_field(8, end, &mut span);
        bytes_field(9, &key_value, &mut span);
        let mut event = Vec::new();
        fixed64_field(1, start + (end - start) / 4, &mut event);
        bytes_field(2, ANSWER_READ_EVENT.as_bytes(), &mut event);
        bytes_field(11, &event, &mut span);
        span
    }

    fn export(spans: &[Vec<u8>]) -> Vec<u8> {
        let mut scope = Vec::new();
        for s in spans {
            bytes_field(2, s, &mut scope);
        }
        let mut resource = Vec::new();
        bytes_field(1, b"resource attributes, skipped", &mut resource);
        bytes_field(2, &scope, &mut resource);
        let mut request = Vec::new();
        bytes_field(1, &resource, &mut request);
        let mut frame = vec![0];
        frame.extend_from_slice(&(request.len() as u32).to_be_bytes());
        frame.extend_from_slice(&request);
        frame
    }

    #[test]
    fn an_export_reads_back_as_its_spans() {
        let body = export(&[
            span(
                MUTATING_WEBHOOK_SPAN,
                1_000_000,
                1_750_000,
                "pods.spotwright.io",
            ),
            span("POST", 0, 3_000_000, "-"),
        ]);
        let spans = decode_export(&body).expect("decoded");
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].name, MUTATING_WEBHOOK_SPAN);
        assert_eq!(spans[0].attribute("webhook"), Some("pods.spotwright.io"));
        assert_eq!(spans[0].trace_id, [7; 16]);
        assert_eq!(spans[0].span_id, [9; 8]);
        assert!((spans[0].millis() - 0.75).abs() < 1e-9);
        let to_answer = spans[0].millis_to(ANSWER_READ_EVENT);
        assert!(
            to_answer.is_some_and(|ms| (ms - 0.1875).abs() < 1e-9),
            "{to_answer:?}"
        );
        assert_eq!(spans[0].millis_to("Patch applied"), None);
        assert_eq!(spans[1].name, "POST");
    }

    #[test]
    fn a_call_is_split_at_its_answer_and_other_spans_are_named() {
        let body = export(&[
            span(MUTATING_WEBHOOK_SPAN, 0, 1_000_000, "w"),
            span(MUTATING_WEBHOOK_SPAN, 0, 3_000_000, "w"),
            span(MUTATING_WEBHOOK_SPAN, 0, 2_000_000, "w"),
            span("HTTP POST", 0, 400_000, "-"),
        ]);
        let figures = call_figures(&decode_export(&body).expect("decoded"));
        assert_eq!(figures["spans"], 3);
        assert_eq!(figures["p50"], 2.0);
        assert_eq!(figures["max"], 3.0);
        // The test spans' answer is read a quarter of the way in.
        assert_eq!(figures["to_answer_p50"], 0.5);
        assert_eq!(figures["after_answer_p50"], 1.5);
        assert_eq!(figures["other_spans_p50"]["HTTP POST"], 0.4);
        assert!(figures["other_spans_p50"][MUTATING_WEBHOOK_SPAN].is_null());
    }

    #[test]
    fn a_broken_export_is_refused_not_misread() {
        let body = export(&[span("x", 0, 1, "w")]);
        for cut in [1, 4, 6, body.len() - 1] {
            assert!(decode_export(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut compressed = body.clone();
        compressed[0] = 1;
        assert_eq!(decode_export(&compressed), Err(TraceError::Compressed));
    }

    #[test]
    fn a_traceparent_is_sampled_and_names_its_trace() {
        let (header, trace_id) = sampled_traceparent(42);
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        let hex: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parts[1], hex);
        assert_ne!(sampled_traceparent(43).1, trace_id);
    }
}
