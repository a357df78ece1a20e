//! The webhook served over real HTTPS with a generated CA: wire behaviour,
//! bad input, deadlines, graceful drain and certificate rotation under traffic.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use serde_json::{json, Value};
use spotwright_certs::{CertificateAuthority, ServingPair};
use spotwright_serving::http::{serve, Limits};
use spotwright_serving::shutdown::{Shutdown, ShutdownTrigger};
use spotwright_serving::tls::{acceptor, ReloadingCert, TlsFiles};
use spotwright_webhook::metrics::Metrics;
use spotwright_webhook::mutate::Settings;
use spotwright_webhook::server::{handler, Webhook};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn new_ca(name: &str) -> CertificateAuthority {
    CertificateAuthority::generate(name, YEAR, now()).expect("CA")
}

fn issue(ca: &CertificateAuthority) -> ServingPair {
    ca.issue_serving(
        &["localhost".to_owned()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        YEAR,
        now(),
    )
    .expect("serving pair")
}

/// A Secret volume's layout: `tls.crt -> ..data/tls.crt`, `..data -> ..<version>`.
struct SecretVolume {
    dir: tempfile::TempDir,
    version: u32,
}

impl SecretVolume {
    fn new(pair: &ServingPair) -> Self {
        let volume = SecretVolume {
            dir: tempfile::tempdir().expect("tempdir"),
            version: 0,
        };
        volume.write_version(0, pair);
        std::os::unix::fs::symlink("..0", volume.dir.path().join("..data")).unwrap();
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), volume.dir.path().join(file))
                .unwrap();
        }
        volume
    }

    fn write_version(&self, version: u32, pair: &ServingPair) {
        let dir = self.dir.path().join(format!("..{version}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &pair.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &pair.key_pem).unwrap();
    }

    /// What the kubelet does: write a new version, then swap `..data` atomically.
    fn swap(&mut self, pair: &ServingPair) {
        self.version += 1;
        self.write_version(self.version, pair);
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{}", self.version), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.path("tls.crt"),
            key: self.path("tls.key"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

struct Server {
    addr: SocketAddr,
    trigger: ShutdownTrigger,
    done: tokio::task::JoinHandle<()>,
    metrics: Metrics,
    registry: Registry,
}

async fn start(files: TlsFiles, max_request_bytes: usize, limits: Limits) -> Server {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let certificate = ReloadingCert::load(files).expect("cert loads");
    let tls = acceptor(certificate.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let reloads = metrics.cert_reloads.clone();
    tokio::spawn(
        certificate.watch(Duration::from_millis(50), shutdown.clone(), move |result| {
            reloads.with_label_values(&[result.as_label()]).inc();
        }),
    );
    let webhook = Arc::new(Webhook {
        view: common::view(),
        settings: Settings::default(),
        metrics: metrics.clone(),
        max_request_bytes,
    });
    let done = tokio::spawn(serve(
        listener,
        Some(tls),
        handler(webhook),
        limits,
        shutdown,
    ));
    Server {
        addr,
        trigger,
        done,
        metrics,
        registry,
    }
}

fn client(cas: &[&CertificateAuthority]) -> reqwest::ClientBuilder {
    let pems: Vec<String> = cas.iter().map(|ca| ca.cert_pem.clone()).collect();
    client_trusting(&pems)
}

fn client_trusting(ca_pems: &[String]) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    for pem in ca_pems {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    builder
}

fn review_body(namespace: &str, uid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": common::pod_json(namespace)
        }
    }))
    .unwrap()
}

fn url(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

async fn post(client: &reqwest::Client, server: &Server, body: Vec<u8>) -> reqwest::Response {
    client
        .post(url(server, "/mutate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent")
}

fn counter(server: &Server, outcome: &str) -> u64 {
    server
        .metrics
        .admissions
        .with_label_values(&[outcome])
        .get()
}

#[tokio::test]
async fn admits_over_http1_and_http2() {
    let ca = new_ca("test-ca");
    let volume = SecretVolume::new(&issue(&ca));
    let server = start(volume.files(), 1 << 20, Limits::default()).await;
    for http1 in [true, false] {
        let mut builder = client(&[&ca]);
        if http1 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let response = post(&client, &server, review_body("team-spot", "uid-1")).await;
        assert_eq!(
            response.version(),
            if http1 {
                reqwest::Version::HTTP_11
            } else {
                reqwest::Version::HTTP_2
            }
        );
        assert_eq!(response.status(), 200);
        let out: Value = response.json().await.unwrap();
        assert_eq!(out["response"]["uid"], "uid-1");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
    }
    assert_eq!(counter(&server, "mutated"), 2);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&server.registry.gather())
        .unwrap();
    assert!(
        text.contains("spotwright_webhook_admission_duration_seconds_count 2"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_statuses() {
    let ca = new_ca("test-ca");
    let volume = SecretVolume::new(&issue(&ca));
    let server = start(volume.files(), 64 * 1024, Limits::default()).await;
    let client = client(&[&ca]).build().unwrap();

    let too_big = vec![b' '; 100 * 1024];
    let response = post(&client, &server, too_big).await;
    assert_eq!(response.status(), 413);

    for body in [
        &b"{oops"[..],
        br#"{"apiVersion":"v1","kind":"Pod"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    ] {
        let response = post(&client, &server, body.to_vec()).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        let text = response.text().await.unwrap();
        assert_eq!(
            text.trim_end().lines().count(),
            1,
            "one-line reason: {text:?}"
        );
    }
    assert_eq!(
        client
            .get(url(&server, "/mutate"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        client
            .post(url(&server, "/elsewhere"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(counter(&server, "error"), 4);
    // The server is still healthy after all of that.
    assert_eq!(
        post(&client, &server, review_body("plain", "ok"))
            .await
            .status(),
        200
    );
    assert_eq!(counter(&server, "skipped"), 1);
}

#[tokio::test]
async fn a_stalled_body_hits_the_request_deadline() {
    let ca = new_ca("test-ca");
    let volume = SecretVolume::new(&issue(&ca));
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start(volume.files(), 1 << 20, limits).await;
    let client = client(&[&ca]).build().unwrap();
    let first: Result<bytes::Bytes, std::io::Error> =
        Ok(bytes::Bytes::from_static(b"{\"apiVersion\":"));
    let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
    let started = std::time::Instant::now();
    let response = client
        .post(url(&server, "/mutate"))
        .header("content-length", "5000")
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .expect("the server answers rather than hanging");
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

use futures::StreamExt;

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_ones() {
    let ca = new_ca("test-ca");
    let volume = SecretVolume::new(&issue(&ca));
    let server = start(volume.files(), 1 << 20, Limits::default()).await;
    let http1 = client(&[&ca]).http1_only().build().unwrap();
    // A request whose body arrives slowly is in flight when shutdown begins.
    let body = review_body("team-spot", "slow");
    let (head, tail) = body.split_at(20);
    let (head, tail) = (
        bytes::Bytes::copy_from_slice(head),
        bytes::Bytes::copy_from_slice(tail),
    );
    let slow = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(
        futures::stream::once(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(tail)
        }),
    );
    let in_flight = {
        let client = http1.clone();
        let url = url(&server, "/mutate");
        let len = body.len();
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-length", len)
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.trigger.trigger();
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    let late_url = url(&server, "/mutate");
    tokio::time::timeout(Duration::from_secs(5), server.done)
        .await
        .expect("server stops after draining")
        .unwrap();
    let fresh = client(&[&ca]).build().unwrap();
    assert!(fresh
        .post(late_url)
        .body(review_body("team-spot", "late"))
        .send()
        .await
        .is_err());
}

fn peer_leaf(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .expect("TLS info")
}

/// The leaf certificate a new connection trusting only `ca` is served.
async fn served_leaf(ca: &CertificateAuthority, url: &str) -> Vec<u8> {
    let response = client(&[ca])
        .build()
        .unwrap()
        .post(url)
        .body(review_body("team-spot", "probe"))
        .send()
        .await
        .expect("served");
    peer_leaf(&response)
}

fn reloads(server: &Server, result: &str) -> u64 {
    server
        .metrics
        .cert_reloads
        .with_label_values(&[result])
        .get()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn certificates_rotate_under_traffic_with_no_failed_request() {
    let old_ca = new_ca("old-ca");
    let new_ca = new_ca("new-ca");
    let first = issue(&old_ca);
    let second = issue(&new_ca);
    let mut volume = SecretVolume::new(&first);
    let server = start(volume.files(), 1 << 20, Limits::default()).await;
    let url = url(&server, "/mutate");

    // Traffic on kept-alive connections and on fresh ones throughout the swap.
    let mut workers = Vec::new();
    let both = vec![old_ca.cert_pem.clone(), new_ca.cert_pem.clone()];
    for worker in 0..4 {
        let both = both.clone();
        let kept_alive = client_trusting(&both).build().unwrap();
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..60 {
                // Even workers keep one connection alive; odd ones open a new one each time.
                let client = if worker % 2 == 0 {
                    kept_alive.clone()
                } else {
                    client_trusting(&both).build().unwrap()
                };
                let response = client
                    .post(&url)
                    .body(review_body("team-spot", &format!("{worker}-{i}")))
                    .send()
                    .await;
                statuses.push(
                    response
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    volume.swap(&second);
    let mut failures = Vec::new();
    let mut total = 0;
    for worker in workers {
        for status in worker.await.unwrap() {
            total += 1;
            if status != Ok(200) {
                failures.push(status);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {failures:?}",
        failures.len()
    );

    // A new connection now sees the new certificate, and the reload was counted.
    assert_eq!(served_leaf(&new_ca, &url).await, der_of(&second.cert_pem));
    assert_eq!(reloads(&server, "success"), 1);

    // A broken pair keeps the last good one in service and counts a failure.
    volume.swap(&ServingPair {
        cert_pem: "not a certificate".into(),
        key_pem: second.key_pem.clone(),
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_leaf(&new_ca, &url).await, der_of(&second.cert_pem));
    assert_eq!(reloads(&server, "failure"), 1);

    // A key that does not belong to the certificate is refused the same way.
    volume.swap(&ServingPair {
        cert_pem: first.cert_pem.clone(),
        key_pem: second.key_pem.clone(),
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reloads(&server, "failure"), 2);
    assert_eq!(served_leaf(&new_ca, &url).await, der_of(&second.cert_pem));
}

/// Runs `openssl s_client` with one protocol version; true when the handshake succeeds.
fn openssl_handshake(addr: SocketAddr, version_flag: &str) -> bool {
    let output = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            version_flag,
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-brief",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs (it is part of the test set-up)");
    output.status.success()
        && String::from_utf8_lossy(&output.stderr).contains("CONNECTION ESTABLISHED")
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_offered() {
    let ca = new_ca("test-ca");
    let volume = SecretVolume::new(&issue(&ca));
    let server = start(volume.files(), 1 << 20, Limits::default()).await;
    let addr = server.addr;
    let results = tokio::task::spawn_blocking(move || {
        ["-tls1", "-tls1_1", "-tls1_2", "-tls1_3"].map(|flag| (flag, openssl_handshake(addr, flag)))
    })
    .await
    .unwrap();
    assert_eq!(
        results,
        [
            ("-tls1", false),
            ("-tls1_1", false),
            ("-tls1_2", true),
            ("-tls1_3", true)
        ]
    );
}
