//! The extender served in-process over real sockets, plain and with TLS
//! (the shared reloadable rustls set-up), with a fixed index: both verbs,
//! the statuses of bad requests, and the metrics they leave.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use prometheus::Registry;
use serde_json::{json, Value};
use spotwright_certs::CertificateAuthority;
use spotwright_extender::answer::Settings;
use spotwright_extender::filter::Reason;
use spotwright_extender::metrics::{Metrics, Outcome, Verb};
use spotwright_extender::server::{handler, Clock, Extender};
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{Shutdown, ShutdownTrigger};
use spotwright_serving::tls::{acceptor, ReloadingCert, TlsFiles};

struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    metrics: Metrics,
    registry: Registry,
    _trigger: ShutdownTrigger,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        let host = if self.scheme == "https" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{}://{host}:{}{path}", self.scheme, self.addr.port())
    }
}

async fn start(tls: Option<TlsFiles>, max_request_bytes: usize) -> Server {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let acceptor = tls.map(|files| acceptor(ReloadingCert::load(files).unwrap()).unwrap());
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let extender = Arc::new(Extender {
        index: Arc::new(index()),
        settings: Settings::default(),
        metrics: metrics.clone(),
        max_request_bytes,
        clock: Clock::Fixed(NOW),
    });
    tokio::spawn(serve(
        listener,
        acceptor,
        handler(extender),
        Limits::default(),
        shutdown,
    ));
    Server {
        addr,
        scheme,
        metrics,
        registry,
        _trigger: trigger,
        _dir: None,
    }
}

async fn start_tls() -> (Server, CertificateAuthority) {
    let now = time::OffsetDateTime::now_utc();
    let year = Duration::from_secs(365 * 86_400);
    let ca = CertificateAuthority::generate("extender-test-ca", year, now).unwrap();
    let pair = ca
        .issue_serving(
            &["localhost".to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            year,
            now,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.cert, &pair.cert_pem).unwrap();
    std::fs::write(&files.key, &pair.key_pem).unwrap();
    let mut server = start(Some(files), 16 << 20).await;
    server._dir = Some(dir);
    (server, ca)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent")
}

/// Posts both verbs and checks the replies against tests/common's cluster.
async fn both_verbs(client: &reqwest::Client, server: &Server) {
    let body = args_names(&["full", "empty", "tainted", "notready"]);
    let response = post(client, server, "/filter", body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["NodeNames"], json!(["full", "empty"]));
    assert_eq!(reply["FailedNodes"]["notready"], Reason::NotReady.message());
    assert_eq!(
        reply["FailedAndUnresolvableNodes"]["tainted"],
        Reason::DisruptedTaint.message()
    );

    let response = post(client, server, "/prioritize", body).await;
    assert_eq!(response.status(), 200);
    let scores = scores(&response.bytes().await.unwrap());
    assert_eq!(scores["full"], 9);
    assert_eq!(scores["empty"], 6);
    assert_eq!(scores.len(), 4);
}

fn metrics_text(server: &Server) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&server.registry.gather())
        .unwrap()
}

#[tokio::test]
async fn both_verbs_over_plain_http() {
    let server = start(None, 16 << 20).await;
    both_verbs(&client(), &server).await;
    assert_eq!(server.metrics.count(Verb::Filter, Outcome::Ok), 1);
    assert_eq!(server.metrics.count(Verb::Prioritize, Outcome::Ok), 1);
    let text = metrics_text(&server);
    for line in [
        r#"spotwright_extender_request_duration_seconds_count{verb="filter"} 1"#,
        r#"spotwright_extender_request_duration_seconds_count{verb="prioritize"} 1"#,
        r#"spotwright_extender_request_duration_seconds_bucket{verb="filter",le="0.00001"}"#,
        r#"spotwright_extender_filtered_nodes_total{reason="disrupted-taint"} 1"#,
        r#"spotwright_extender_filtered_nodes_total{reason="not-ready"} 1"#,
        r#"spotwright_extender_filtered_nodes_total{reason="drifted"} 0"#,
        r#"spotwright_extender_requests_total{outcome="bad_request",verb="filter"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn both_verbs_over_https_with_http1_and_http2() {
    let (server, ca) = start_tls().await;
    for http1 in [true, false] {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10));
        if http1 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        both_verbs(&client, &server).await;
        let response = post(&client, &server, "/filter", args_names(&[])).await;
        let expected = if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(response.version(), expected);
    }
    assert_eq!(server.metrics.count(Verb::Filter, Outcome::Ok), 4);
    // A client that does not trust the CA cannot talk to it.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .post(server.url("/filter"))
        .body(args_names(&[]))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let server = start(None, 64 * 1024).await;
    let client = client();
    for (path, body) in [
        ("/filter", &b"{oops"[..]),
        ("/filter", br#"{"Pod":{}}"#),
        ("/prioritize", br#"{"NodeNames":[]}"#),
        ("/prioritize", br#"{"Pod":{"spec":{"containers":[{"resources":{"requests":{"memory":"much"}}}]}},"NodeNames":["a"]}"#),
    ] {
        let response = post(&client, &server, path, body.to_vec()).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        let text = response.text().await.unwrap();
        assert_eq!(text.trim_end().lines().count(), 1, "one-line reason: {text:?}");
    }
    assert_eq!(server.metrics.count(Verb::Filter, Outcome::BadRequest), 2);
    assert_eq!(
        server.metrics.count(Verb::Prioritize, Outcome::BadRequest),
        2
    );

    let too_big = vec![b' '; 100 * 1024];
    let response = post(&client, &server, "/prioritize", too_big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        server.metrics.count(Verb::Prioritize, Outcome::BadRequest),
        3
    );

    let response = client.get(server.url("/filter")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let response = post(&client, &server, "/bind", args_names(&[])).await;
    assert_eq!(response.status(), 404);
    let response = post(&client, &server, "/filter/", args_names(&[])).await;
    assert_eq!(response.status(), 404);
    // Still healthy after all of that.
    both_verbs(&client, &server).await;
}
